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
