//! The plugin host's side of the backend-call channel (`wire.rs`): a thread per daemon
//! connection reads each call and runs it on the plugin's storage or network backend,
//! resolved exactly as the daemon resolves them in-process (the host library's
//! `PluginBackends` / `PluginNetBackends`, every plugin call under `catch_unwind`).

use super::wire::{self, Answer, Call, Failure, Frame, Reply, Request, StreamCall, WireError};
use rvirt_host::networks::NetBackendResolver;
use rvirt_host::storage::{BackendResolver, BackendStream};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

/// The backends one plugin host process serves.
pub struct Backends {
    /// Pool types: the process's one plugin file.
    pub pools: Arc<dyn BackendResolver>,
    /// Forward modes: the same file.
    pub nets: Arc<dyn NetBackendResolver>,
}

/// Binds `path` (0600) and serves every connection on a thread of its own.
pub fn listen(path: &Path, backends: Arc<Backends>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("rvirt-backends".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("backend-call accept failed: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                };
                let backends = Arc::clone(&backends);
                let spawned = std::thread::Builder::new()
                    .name("rvirt-backend-call".into())
                    .spawn(move || serve(conn, &backends));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a backend-call thread: {e}");
                }
            }
        })?;
    Ok(())
}

/// Answers calls on one connection until it closes.
fn serve(mut conn: UnixStream, backends: &Backends) {
    loop {
        let frame = match wire::read_frame(&mut conn) {
            Ok(f) => f,
            Err(WireError::Closed) => return,
            Err(e) => {
                tracing::debug!("closing a backend-call connection: {e}");
                return;
            }
        };
        let request: Request = match frame.message() {
            Ok(r) => r,
            Err(e) => {
                let _ = wire::write_message(&mut conn, &Reply::new(Err(internal(e.to_string()))));
                return;
            }
        };
        if request.version != wire::VERSION {
            let _ = wire::write_message(
                &mut conn,
                &Reply::new(Err(internal(format!(
                    "backend-call protocol version {} is not this plugin host's ({})",
                    request.version,
                    wire::VERSION
                )))),
            );
            return;
        }
        let api = request.call.api();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(backends, request.call)))
                .unwrap_or_else(|_| {
                    Err(internal(format!(
                        "the plugin host panicked while serving {api}"
                    )))
                });
        let ok = match outcome {
            Ok(Outcome::Answer(a)) => wire::write_message(&mut conn, &Reply::new(Ok(a))),
            Ok(Outcome::Stream(stream)) => {
                match wire::write_message(&mut conn, &Reply::new(Ok(Answer::Stream))) {
                    Ok(()) => stream_loop(&mut conn, stream),
                    Err(e) => Err(e),
                }
            }
            Err(f) => wire::write_message(&mut conn, &Reply::new(Err(f))),
        };
        if let Err(e) = ok {
            tracing::debug!("closing a backend-call connection: {e}");
            return;
        }
    }
}

enum Outcome {
    Answer(Answer),
    Stream(Box<dyn BackendStream>),
}

fn internal(message: String) -> Failure {
    Failure {
        code: ErrorCode::InternalError as i32,
        domain: ErrorDomain::Rpc as i32,
        message,
    }
}

fn run(b: &Backends, call: Call) -> Result<Outcome, Failure> {
    let fail = |e: rvirt_host::Error| Failure::from(&e);
    let pool = |t: &str| b.pools.backend(t).map_err(fail);
    let net = |m: &str| b.nets.backend(m).map_err(fail);
    let answer = |a: rvirt_host::Result<Answer>| a.map(Outcome::Answer).map_err(fail);
    match call {
        Call::CheckPool { pool_type, pool: p } => {
            answer(pool(&pool_type)?.check_pool(&p).map(Answer::Bool))
        }
        Call::BuildPool {
            pool_type,
            pool: p,
            flags,
        } => answer(
            pool(&pool_type)?
                .build_pool(&p, flags)
                .map(|()| Answer::Done),
        ),
        Call::StartPool { pool_type, pool: p } => {
            answer(pool(&pool_type)?.start_pool(&p).map(|()| Answer::Done))
        }
        Call::StopPool { pool_type, pool: p } => {
            answer(pool(&pool_type)?.stop_pool(&p).map(|()| Answer::Done))
        }
        Call::DeletePool {
            pool_type,
            pool: p,
            flags,
        } => answer(
            pool(&pool_type)?
                .delete_pool(&p, flags)
                .map(|()| Answer::Done),
        ),
        Call::RefreshPool { pool_type, pool: p } => answer(
            pool(&pool_type)?
                .refresh_pool(&p)
                .map(|r| Answer::Refresh(r.into())),
        ),
        Call::CreateVolume {
            pool_type,
            pool: p,
            vol,
            flags,
        } => answer(
            pool(&pool_type)?
                .create_volume(&p, &vol, flags)
                .map(Answer::Text),
        ),
        Call::CreateVolumeFrom {
            pool_type,
            pool: p,
            vol,
            src_pool,
            src_vol,
            flags,
        } => answer(
            pool(&pool_type)?
                .create_volume_from(&p, &vol, &src_pool, &src_vol, flags)
                .map(Answer::Text),
        ),
        Call::DeleteVolume {
            pool_type,
            pool: p,
            vol,
            flags,
        } => answer(
            pool(&pool_type)?
                .delete_volume(&p, &vol, flags)
                .map(|()| Answer::Done),
        ),
        Call::ResizeVolume {
            pool_type,
            pool: p,
            vol,
            capacity,
            flags,
        } => answer(
            pool(&pool_type)?
                .resize_volume(&p, &vol, capacity, flags)
                .map(|()| Answer::Done),
        ),
        Call::WipeVolume {
            pool_type,
            pool: p,
            vol,
            algorithm,
            flags,
        } => answer(
            pool(&pool_type)?
                .wipe_volume(&p, &vol, algorithm, flags)
                .map(|()| Answer::Done),
        ),
        Call::RefreshVolume {
            pool_type,
            pool: p,
            vol,
        } => answer(pool(&pool_type)?.refresh_volume(&p, &vol).map(Answer::Text)),
        Call::UploadVolume {
            pool_type,
            pool: p,
            vol,
            offset,
            length,
            flags,
        } => pool(&pool_type)?
            .upload_volume(&p, &vol, offset, length, flags)
            .map(Outcome::Stream)
            .map_err(fail),
        Call::DownloadVolume {
            pool_type,
            pool: p,
            vol,
            offset,
            length,
            flags,
        } => pool(&pool_type)?
            .download_volume(&p, &vol, offset, length, flags)
            .map(Outcome::Stream)
            .map_err(fail),
        Call::FindPoolSources {
            pool_type,
            spec,
            flags,
        } => answer(
            pool(&pool_type)?
                .find_pool_sources(&spec, flags)
                .map(Answer::Text),
        ),
        Call::StartNetwork {
            mode,
            net: n,
            state_dir,
        } => answer(net(&mode)?.start_network(&n, &state_dir).map(Answer::Text)),
        Call::StopNetwork {
            mode,
            net: n,
            state_dir,
        } => answer(
            net(&mode)?
                .stop_network(&n, &state_dir)
                .map(|()| Answer::Done),
        ),
        Call::CheckNetwork {
            mode,
            net: n,
            state_dir,
        } => answer(net(&mode)?.check_network(&n, &state_dir).map(Answer::Bool)),
        Call::PlugPort { mode, net: n, port } => answer(
            net(&mode)?
                .plug_port(&n, &port)
                .map(|p| Answer::Plug(p.into())),
        ),
        Call::UnplugPort { mode, net: n, port } => {
            answer(net(&mode)?.unplug_port(&n, &port).map(|()| Answer::Done))
        }
        Call::DhcpLeases { mode, net: n, mac } => answer(
            net(&mode)?
                .dhcp_leases(&n, &mac)
                .map(|l| Answer::Leases(l.into_iter().map(Into::into).collect())),
        ),
        Call::UpdateNetwork {
            mode,
            net: n,
            command,
            section,
            parent_index,
            xml,
            flags,
        } => answer(
            net(&mode)?
                .update(&n, command, section, parent_index, &xml, flags)
                .map(|()| Answer::Done),
        ),
    }
}

/// Serves an open volume stream until it ends; dropping it unfinished (the daemon went
/// away) aborts it.
fn stream_loop(conn: &mut UnixStream, mut stream: Box<dyn BackendStream>) -> Result<(), WireError> {
    let fail = |e: rvirt_host::Error| Reply::new(Err(Failure::from(&e)));
    let mut buf = Vec::new();
    loop {
        match wire::read_frame(conn)? {
            Frame::Data(data) => {
                let reply = match stream.send(&data) {
                    Ok(()) => Reply::new(Ok(Answer::Done)),
                    Err(e) => fail(e),
                };
                wire::write_message(conn, &reply)?;
            }
            frame => match frame.message::<StreamCall>()? {
                StreamCall::Recv { max } => {
                    let max = usize::try_from(max)
                        .unwrap_or(wire::MAX_DATA)
                        .min(wire::MAX_DATA);
                    buf.clear();
                    match stream.recv_into(&mut buf, max) {
                        Ok(_) => wire::write_data(conn, &buf)?,
                        Err(e) => wire::write_message(conn, &fail(e))?,
                    }
                    if buf.capacity() > 4 << 20 {
                        buf = Vec::new();
                    }
                }
                StreamCall::Finish => {
                    let reply = match stream.finish() {
                        Ok(()) => Reply::new(Ok(Answer::Done)),
                        Err(e) => fail(e),
                    };
                    return wire::write_message(conn, &reply);
                }
                StreamCall::Abort => {
                    let reply = match stream.abort() {
                        Ok(()) => Reply::new(Ok(Answer::Done)),
                        Err(e) => fail(e),
                    };
                    return wire::write_message(conn, &reply);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvirt_host::Result;
    use rvirt_host::networks::NetBackend;
    use rvirt_host::storage::{PoolBackend, PoolRefresh};

    /// A backend whose refresh panics and whose other calls answer from memory.
    struct Fixture;

    impl PoolBackend for Fixture {
        fn check_pool(&self, pool: &str) -> Result<bool> {
            Ok(pool.contains("active"))
        }
        fn build_pool(&self, _: &str, _: u32) -> Result<()> {
            Ok(())
        }
        fn start_pool(&self, _: &str) -> Result<()> {
            Ok(())
        }
        fn stop_pool(&self, _: &str) -> Result<()> {
            Ok(())
        }
        fn delete_pool(&self, _: &str, _: u32) -> Result<()> {
            Ok(())
        }
        fn refresh_pool(&self, _: &str) -> Result<PoolRefresh> {
            panic!("the backend's bug")
        }
        fn create_volume(&self, _: &str, vol: &str, _: u32) -> Result<String> {
            Ok(vol.to_string())
        }
        fn create_volume_from(&self, _: &str, _: &str, _: &str, _: &str, _: u32) -> Result<String> {
            Ok(String::new())
        }
        fn delete_volume(&self, _: &str, _: &str, _: u32) -> Result<()> {
            Err(rvirt_host::Error::driver(
                ErrorCode::NoStoragePool,
                ErrorDomain::Storage,
                "no storage vol",
            ))
        }
        fn resize_volume(&self, _: &str, _: &str, _: u64, _: u32) -> Result<()> {
            Ok(())
        }
        fn wipe_volume(&self, _: &str, _: &str, _: u32, _: u32) -> Result<()> {
            Ok(())
        }
        fn refresh_volume(&self, _: &str, vol: &str) -> Result<String> {
            Ok(vol.to_string())
        }
    }

    struct One;

    impl BackendResolver for One {
        fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
            match pool_type {
                "dir" => Ok(Arc::new(Fixture)),
                t => Err(rvirt_host::storage_bind::no_backend(t)),
            }
        }
    }

    impl NetBackendResolver for One {
        fn backend(&self, mode: &str) -> Result<Arc<dyn NetBackend>> {
            Err(rvirt_host::network_bind::no_backend(mode, "nothing"))
        }
    }

    fn served() -> (tempfile::TempDir, UnixStream) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        listen(
            &path,
            Arc::new(Backends {
                pools: Arc::new(One),
                nets: Arc::new(One),
            }),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let s = UnixStream::connect(&path).unwrap();
        (dir, s)
    }

    fn ask(s: &mut UnixStream, version: u32, call: Call) -> Reply {
        wire::write_message(s, &Request { version, call }).unwrap();
        wire::read_frame(s).unwrap().message().unwrap()
    }

    fn pool(op: &str) -> Call {
        let v = serde_json::json!({"op": op, "pool_type": "dir", "pool": "<pool>active</pool>"});
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn calls_reach_the_backend_and_errors_keep_their_numbers() {
        let (_d, mut s) = served();
        assert_eq!(
            ask(&mut s, wire::VERSION, pool("check_pool")).result,
            Ok(Answer::Bool(true))
        );
        let r = ask(
            &mut s,
            wire::VERSION,
            Call::DeleteVolume {
                pool_type: "dir".into(),
                pool: "<pool/>".into(),
                vol: "<volume/>".into(),
                flags: 0,
            },
        );
        let f = r.result.unwrap_err();
        assert_eq!(f.code, ErrorCode::NoStoragePool as i32);
        assert_eq!(f.domain, ErrorDomain::Storage as i32);
        // an unknown pool type names it
        let r = ask(
            &mut s,
            wire::VERSION,
            Call::CheckPool {
                pool_type: "zfs".into(),
                pool: "<pool/>".into(),
            },
        );
        assert!(r.result.unwrap_err().message.contains("'zfs'"));
    }

    #[test]
    fn a_panicking_backend_answers_an_error_and_the_connection_serves_on() {
        let (_d, mut s) = served();
        let f = ask(&mut s, wire::VERSION, pool("refresh_pool"))
            .result
            .unwrap_err();
        assert_eq!(f.code, ErrorCode::InternalError as i32, "{f:?}");
        assert!(f.message.contains("panicked"), "{f:?}");
        assert_eq!(
            ask(&mut s, wire::VERSION, pool("check_pool")).result,
            Ok(Answer::Bool(true))
        );
    }

    #[test]
    fn another_version_is_refused_and_oversized_frames_close_the_connection() {
        let (_d, mut s) = served();
        let f = ask(&mut s, wire::VERSION + 1, pool("check_pool"))
            .result
            .unwrap_err();
        assert!(
            f.message
                .contains("backend-call protocol version 2 is not this plugin host's (1)"),
            "{f:?}"
        );
        let (_d, mut s) = served();
        use std::io::Write;
        s.write_all(&(wire::MAX_FRAME + 1).to_be_bytes()).unwrap();
        s.write_all(&[wire::KIND_MESSAGE]).unwrap();
        assert!(matches!(wire::read_frame(&mut s), Err(WireError::Closed)));
    }
}
