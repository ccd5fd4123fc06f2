//! The storage procedures of the remote driver: pools, volumes and pool events over the
//! daemon connection.

use super::{Link, RemoteBackend, lock, rpc_error};
use crate::storage::{PoolEvent, PoolEventCallback, PoolId, PoolInfo, VolumeId, VolumeInfo};
use crate::storage_api::StorageService;
use crate::storage_api::StreamIo;
use crate::{Error, Result};
use rvirt_wire::frame::{self, STREAM_CHUNK_MAX, StreamPacket};
use rvirt_wire::protocol::{NonnullStoragePool, NonnullStorageVol};
use rvirt_wire::protocol::{REMOTE_PROGRAM, REMOTE_VERSION, RemoteError};
use rvirt_wire::remote::*;
use rvirt_wire::{Frame, Procedure, RemoteProcedure, procs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, mpsc};

/// `VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE` and `_REFRESH`.
const POOL_EVENT_LIFECYCLE: i32 = 0;
const POOL_EVENT_REFRESH: i32 = 1;

fn pool_handle(p: &PoolId) -> NonnullStoragePool {
    NonnullStoragePool {
        name: p.name.clone(),
        uuid: *p.uuid.as_bytes(),
    }
}

fn pool_id(p: NonnullStoragePool) -> PoolId {
    PoolId {
        name: p.name,
        uuid: uuid::Uuid::from_bytes(p.uuid),
    }
}

fn vol_handle(v: &VolumeId) -> NonnullStorageVol {
    NonnullStorageVol {
        pool: v.pool.clone(),
        name: v.name.clone(),
        key: v.key.clone(),
    }
}

fn vol_id(v: NonnullStorageVol) -> VolumeId {
    VolumeId {
        pool: v.pool,
        name: v.name,
        key: v.key,
    }
}

/// Stream packets queued per stream before the reader thread waits for the consumer.
const STREAM_QUEUE: usize = 32;

impl super::Link {
    /// Hands a STREAM packet to the stream its serial names (reader thread). Packets of
    /// streams that are gone are dropped, as libvirt's daemon and client drop them.
    pub(super) fn stream_packet(&self, f: &Frame) {
        let tx = lock(&self.streams).get(&f.header.serial).cloned();
        let Some(tx) = tx else {
            tracing::debug!(
                serial = f.header.serial,
                "dropping a packet of a closed stream"
            );
            return;
        };
        let packet = match StreamPacket::decode(f) {
            Ok(p) => p,
            Err(e) => StreamPacket::Abort(Some(RemoteError::new(
                rvirt_plugin_api::ErrorCode::Rpc as i32,
                rvirt_plugin_api::ErrorDomain::Rpc as i32,
                format!("undecodable stream packet from the daemon: {e}"),
            ))),
        };
        // blocks while the consumer is behind: flow control back to the daemon
        if tx.send(packet).is_err() {
            lock(&self.streams).remove(&f.header.serial);
        }
    }

    /// Sends the call that opens a stream, with the stream's packet queue registered
    /// first (the daemon may send data right after the reply).
    pub(super) fn open_stream<P: Procedure>(
        &self,
        args: &P::Args,
    ) -> Result<(u32, mpsc::Receiver<StreamPacket>)> {
        self.open_stream_ret::<P>(args).map(|(s, rx, _)| (s, rx))
    }

    /// [`Link::open_stream`], with the call's reply.
    fn open_stream_ret<P: Procedure>(
        &self,
        args: &P::Args,
    ) -> Result<(u32, mpsc::Receiver<StreamPacket>, P::Ret)> {
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(STREAM_QUEUE);
        lock(&self.streams).insert(serial, tx);
        match self.call_with_serial::<P>(serial, args) {
            Ok(ret) => Ok((serial, rx, ret)),
            Err(e) => {
                lock(&self.streams).remove(&serial);
                Err(e)
            }
        }
    }

    /// Waits for the next packet of a stream, pinging a silent daemon as calls do.
    pub(super) fn next_packet(&self, rx: &mpsc::Receiver<StreamPacket>) -> Result<StreamPacket> {
        let budget = self.keepalive.interval * self.keepalive.count.max(1);
        // silence counts from this wait at the earliest (see `Link::check_alive`)
        let started = std::time::Instant::now();
        loop {
            match rx.recv_timeout(self.keepalive.interval) {
                Ok(p) => return Ok(p),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(rpc_error("the connection to the daemon is closed"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let silent = lock(&self.last_rx).elapsed().min(started.elapsed());
            if silent >= budget {
                let why = format!(
                    "the daemon did not answer for {} s (keepalive: {} pings unanswered): the connection is dead",
                    silent.as_secs(),
                    self.keepalive.count
                );
                self.kill(&why);
                return Err(rpc_error(why));
            }
            if silent >= self.keepalive.interval {
                self.send_keepalive(rvirt_wire::protocol::KEEPALIVE_PING);
            }
        }
    }
}

fn remote_error(e: RemoteError) -> Error {
    Error::Driver {
        code: e.code,
        domain: e.domain,
        message: e.message.unwrap_or_else(|| "unknown error".into()),
    }
}

/// A volume stream over the daemon connection: STREAM packets carrying the serial of the
/// upload or download call.
pub(super) struct RemoteStream {
    link: Arc<Link>,
    procedure: i32,
    serial: u32,
    rx: mpsc::Receiver<StreamPacket>,
    /// Received bytes not yet handed out, from `pos`.
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    closed: bool,
}

impl RemoteStream {
    fn packet(&self, p: &StreamPacket) -> Result<Vec<u8>> {
        p.encode(REMOTE_PROGRAM, REMOTE_VERSION, self.procedure, self.serial)
            .map_err(|e| rpc_error(format!("cannot encode a stream packet: {e}")))
    }

    fn close(&mut self) {
        self.closed = true;
        lock(&self.link.streams).remove(&self.serial);
    }

    /// Ends the stream with `last` (End or Abort) and waits for the daemon's End.
    fn handshake(&mut self, last: StreamPacket) -> Result<()> {
        let bytes = self.packet(&last)?;
        let sent = self.link.send(&bytes);
        let r = sent.and_then(|()| {
            loop {
                match self.link.next_packet(&self.rx)? {
                    StreamPacket::End => break Ok(()),
                    StreamPacket::Abort(Some(e)) => break Err(remote_error(e)),
                    StreamPacket::Abort(None) => {
                        break Err(rpc_error("the daemon aborted the stream"));
                    }
                    // data in flight before the daemon saw our packet
                    StreamPacket::Data(_) | StreamPacket::Hole(_) => {}
                }
            }
        });
        self.close();
        r
    }
}

impl StreamIo for RemoteStream {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        if self.closed {
            return Err(rpc_error("the stream is closed"));
        }
        // the daemon reports a failed upload at once; do not keep sending into it
        while let Ok(p) = self.rx.try_recv() {
            if let StreamPacket::Abort(e) = p {
                self.close();
                return Err(e
                    .map(remote_error)
                    .unwrap_or_else(|| rpc_error("the daemon aborted the stream")));
            }
        }
        for chunk in data.chunks(STREAM_CHUNK_MAX) {
            let bytes = frame::stream_data(
                REMOTE_PROGRAM,
                REMOTE_VERSION,
                self.procedure,
                self.serial,
                chunk,
            )
            .map_err(|e| rpc_error(format!("cannot encode a stream packet: {e}")))?;
            if let Err(e) = self.link.send(&bytes) {
                self.close();
                return Err(e);
            }
        }
        Ok(())
    }

    fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        if self.closed {
            return Err(rpc_error("the stream is closed"));
        }
        while self.pos >= self.buf.len() && !self.eof {
            match self.link.next_packet(&self.rx) {
                Ok(StreamPacket::Data(d)) if d.is_empty() => self.eof = true,
                Ok(StreamPacket::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Ok(StreamPacket::Hole(_)) => {
                    self.close();
                    return Err(rpc_error("the daemon sent a hole on a non-sparse stream"));
                }
                Ok(StreamPacket::End) => self.eof = true,
                Ok(StreamPacket::Abort(e)) => {
                    self.close();
                    return Err(e
                        .map(remote_error)
                        .unwrap_or_else(|| rpc_error("the daemon aborted the stream")));
                }
                Err(e) => {
                    self.close();
                    return Err(e);
                }
            }
        }
        let n = max.max(1).min(self.buf.len() - self.pos);
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    fn finish(&mut self) -> Result<()> {
        if self.closed {
            return Err(rpc_error("the stream is closed"));
        }
        self.handshake(StreamPacket::End)
    }

    fn abort(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.handshake(StreamPacket::Abort(None))
    }
}

impl Drop for RemoteStream {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.abort();
        }
    }
}

impl super::Link {
    /// Runs the pool event callbacks for an event message (called by the reader thread).
    pub(super) fn pool_event(&self, f: &Frame) {
        let decoded = match RemoteProcedure::from_number(f.header.procedure) {
            Some(RemoteProcedure::StoragePoolEventLifecycle) => f
                .body::<StoragePoolEventLifecycleMsg>()
                .map(|m| (m.callback_id, m.pool, Some(m.event))),
            Some(RemoteProcedure::StoragePoolEventRefresh) => f
                .body::<StoragePoolEventRefreshMsg>()
                .map(|m| (m.callback_id, m.pool, None)),
            _ => return,
        };
        let (callback_id, pool, event) = match decoded {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("undecodable storage pool event: {e}");
                return;
            }
        };
        // events of registrations this connection no longer holds are stale
        let callbacks = lock(&self.pool_subscribers)
            .callbacks_if(|(l, r)| callback_id == l || callback_id == r);
        let ev = PoolEvent {
            name: pool.name,
            uuid: uuid::Uuid::from_bytes(pool.uuid),
            event,
        };
        for cb in callbacks {
            if catch_unwind(AssertUnwindSafe(|| cb(&ev))).is_err() {
                tracing::warn!("a storage pool event callback panicked");
            }
        }
    }
}

impl RemoteBackend {
    fn pool_call<P: Procedure<Args = StoragePoolArgs>>(&self, p: &PoolId) -> Result<P::Ret> {
        self.call::<P>(&StoragePoolArgs {
            pool: pool_handle(p),
        })
    }

    fn pool_flags<P: Procedure<Args = StoragePoolFlagsArgs>>(
        &self,
        p: &PoolId,
        flags: u32,
    ) -> Result<P::Ret> {
        self.call::<P>(&StoragePoolFlagsArgs {
            pool: pool_handle(p),
            flags,
        })
    }

    fn vol_flags<P: Procedure<Args = StorageVolFlagsArgs>>(
        &self,
        v: &VolumeId,
        flags: u32,
    ) -> Result<P::Ret> {
        self.call::<P>(&StorageVolFlagsArgs {
            vol: vol_handle(v),
            flags,
        })
    }
}

impl RemoteBackend {
    /// `DOMAIN_SCREENSHOT`: the MIME type from the reply, the image from its stream.
    pub(super) fn download_screenshot(
        &self,
        uuid: uuid::Uuid,
        screen: u32,
        flags: u32,
    ) -> Result<(String, Vec<u8>)> {
        let args = DomainScreenshotArgs {
            dom: rvirt_wire::protocol::NonnullDomain {
                name: String::new(),
                uuid: *uuid.as_bytes(),
                id: -1,
            },
            screen,
            flags,
        };
        let (serial, rx, ret) = self
            .link
            .open_stream_ret::<procs::DomainScreenshot>(&args)?;
        let mut s = RemoteStream {
            link: Arc::clone(&self.link),
            procedure: procs::DomainScreenshot::PROC.number(),
            serial,
            rx,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            closed: false,
        };
        let mut data = Vec::new();
        loop {
            let chunk = s.recv(STREAM_CHUNK_MAX)?;
            if chunk.is_empty() {
                break;
            }
            data.extend_from_slice(&chunk);
        }
        s.finish()?;
        Ok((ret.mime.unwrap_or_default(), data))
    }

    fn open_vol_stream<P: Procedure<Args = StorageVolTransferArgs>>(
        &self,
        v: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        let args = StorageVolTransferArgs {
            vol: vol_handle(v),
            offset,
            length,
            flags,
        };
        let (serial, rx) = self.link.open_stream::<P>(&args)?;
        Ok(Box::new(RemoteStream {
            link: Arc::clone(&self.link),
            procedure: P::PROC.number(),
            serial,
            rx,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            closed: false,
        }))
    }
}

impl StorageService for RemoteBackend {
    fn upload_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        self.open_vol_stream::<procs::StorageVolUpload>(vol, offset, length, flags)
    }
    fn download_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        self.open_vol_stream::<procs::StorageVolDownload>(vol, offset, length, flags)
    }
    fn list_pools(&self, flags: u32) -> Result<Vec<PoolId>> {
        let ret = self.call::<procs::ConnectListAllStoragePools>(&ListAllArgs {
            need_results: 1,
            flags,
        })?;
        Ok(ret.pools.into_iter().map(pool_id).collect())
    }
    fn pool_by_name(&self, name: &str) -> Result<PoolId> {
        let a = NameArgs { name: name.into() };
        Ok(pool_id(
            self.call::<procs::StoragePoolLookupByName>(&a)?.pool,
        ))
    }
    fn pool_by_uuid(&self, uuid: uuid::Uuid) -> Result<PoolId> {
        let a = UuidArgs {
            uuid: *uuid.as_bytes(),
        };
        Ok(pool_id(
            self.call::<procs::StoragePoolLookupByUuid>(&a)?.pool,
        ))
    }
    fn pool_by_target_path(&self, path: &str) -> Result<PoolId> {
        let a = PathArgs { path: path.into() };
        Ok(pool_id(
            self.call::<procs::StoragePoolLookupByTargetPath>(&a)?.pool,
        ))
    }
    fn pool_by_volume(&self, vol: &VolumeId) -> Result<PoolId> {
        let a = StorageVolArgs {
            vol: vol_handle(vol),
        };
        Ok(pool_id(
            self.call::<procs::StoragePoolLookupByVolume>(&a)?.pool,
        ))
    }
    fn define_pool(&self, xml: &str, flags: u32) -> Result<PoolId> {
        let a = XmlFlagsArgs {
            xml: xml.into(),
            flags,
        };
        Ok(pool_id(self.call::<procs::StoragePoolDefineXml>(&a)?.pool))
    }
    fn create_pool_xml(&self, xml: &str, flags: u32) -> Result<PoolId> {
        let a = XmlFlagsArgs {
            xml: xml.into(),
            flags,
        };
        Ok(pool_id(self.call::<procs::StoragePoolCreateXml>(&a)?.pool))
    }
    fn find_pool_sources(&self, pool_type: &str, spec: Option<&str>, flags: u32) -> Result<String> {
        let a = ConnectFindStoragePoolSourcesArgs {
            r#type: pool_type.into(),
            src_spec: spec.map(str::to_string),
            flags,
        };
        Ok(self.call::<procs::ConnectFindStoragePoolSources>(&a)?.xml)
    }
    fn pool_capabilities(&self, flags: u32) -> Result<String> {
        let a = ConnectGetStoragePoolCapabilitiesArgs { flags };
        Ok(self
            .call::<procs::ConnectGetStoragePoolCapabilities>(&a)?
            .capabilities)
    }
    fn create_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pool_flags::<procs::StoragePoolCreate>(pool, flags)
    }
    fn build_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pool_flags::<procs::StoragePoolBuild>(pool, flags)
    }
    fn destroy_pool(&self, pool: &PoolId) -> Result<()> {
        self.pool_call::<procs::StoragePoolDestroy>(pool)
    }
    fn delete_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pool_flags::<procs::StoragePoolDelete>(pool, flags)
    }
    fn undefine_pool(&self, pool: &PoolId) -> Result<()> {
        self.pool_call::<procs::StoragePoolUndefine>(pool)
    }
    fn refresh_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pool_flags::<procs::StoragePoolRefresh>(pool, flags)
    }
    fn pool_info(&self, pool: &PoolId) -> Result<PoolInfo> {
        let i = self.pool_call::<procs::StoragePoolGetInfo>(pool)?;
        Ok(PoolInfo {
            state: i32::from(i.state),
            capacity: i.capacity,
            allocation: i.allocation,
            available: i.available,
        })
    }
    fn pool_xml(&self, pool: &PoolId, flags: u32) -> Result<String> {
        Ok(self
            .pool_flags::<procs::StoragePoolGetXmlDesc>(pool, flags)?
            .xml)
    }
    fn pool_autostart(&self, pool: &PoolId) -> Result<bool> {
        Ok(self
            .pool_call::<procs::StoragePoolGetAutostart>(pool)?
            .autostart
            != 0)
    }
    fn set_pool_autostart(&self, pool: &PoolId, on: bool) -> Result<()> {
        let a = StoragePoolSetAutostartArgs {
            pool: pool_handle(pool),
            autostart: i32::from(on),
        };
        self.call::<procs::StoragePoolSetAutostart>(&a)
    }
    fn pool_is_active(&self, pool: &PoolId) -> Result<bool> {
        Ok(self.pool_call::<procs::StoragePoolIsActive>(pool)?.active != 0)
    }
    fn pool_is_persistent(&self, pool: &PoolId) -> Result<bool> {
        Ok(self
            .pool_call::<procs::StoragePoolIsPersistent>(pool)?
            .persistent
            != 0)
    }
    fn list_volumes(&self, pool: &PoolId, flags: u32) -> Result<Vec<VolumeId>> {
        let a = StoragePoolListAllVolumesArgs {
            pool: pool_handle(pool),
            need_results: 1,
            flags,
        };
        let ret = self.call::<procs::StoragePoolListAllVolumes>(&a)?;
        Ok(ret.vols.into_iter().map(vol_id).collect())
    }
    fn volume_by_name(&self, pool: &PoolId, name: &str) -> Result<VolumeId> {
        let a = StorageVolLookupByNameArgs {
            pool: pool_handle(pool),
            name: name.into(),
        };
        Ok(vol_id(self.call::<procs::StorageVolLookupByName>(&a)?.vol))
    }
    fn volume_by_key(&self, key: &str) -> Result<VolumeId> {
        let a = StorageVolLookupByKeyArgs { key: key.into() };
        Ok(vol_id(self.call::<procs::StorageVolLookupByKey>(&a)?.vol))
    }
    fn volume_by_path(&self, path: &str) -> Result<VolumeId> {
        let a = PathArgs { path: path.into() };
        Ok(vol_id(self.call::<procs::StorageVolLookupByPath>(&a)?.vol))
    }
    fn create_volume(&self, pool: &PoolId, xml: &str, flags: u32) -> Result<VolumeId> {
        let a = StorageVolCreateXmlArgs {
            pool: pool_handle(pool),
            xml: xml.into(),
            flags,
        };
        Ok(vol_id(self.call::<procs::StorageVolCreateXml>(&a)?.vol))
    }
    fn create_volume_from(
        &self,
        pool: &PoolId,
        xml: &str,
        from: &VolumeId,
        flags: u32,
    ) -> Result<VolumeId> {
        let a = StorageVolCreateXmlFromArgs {
            pool: pool_handle(pool),
            xml: xml.into(),
            clonevol: vol_handle(from),
            flags,
        };
        Ok(vol_id(self.call::<procs::StorageVolCreateXmlFrom>(&a)?.vol))
    }
    fn delete_volume(&self, vol: &VolumeId, flags: u32) -> Result<()> {
        self.vol_flags::<procs::StorageVolDelete>(vol, flags)
    }
    fn wipe_volume(&self, vol: &VolumeId, algorithm: u32, flags: u32) -> Result<()> {
        if algorithm == 0 {
            return self.vol_flags::<procs::StorageVolWipe>(vol, flags);
        }
        let a = StorageVolWipePatternArgs {
            vol: vol_handle(vol),
            algorithm,
            flags,
        };
        self.call::<procs::StorageVolWipePattern>(&a)
    }
    fn resize_volume(&self, vol: &VolumeId, capacity: u64, flags: u32) -> Result<()> {
        let a = StorageVolResizeArgs {
            vol: vol_handle(vol),
            capacity,
            flags,
        };
        self.call::<procs::StorageVolResize>(&a)
    }
    fn volume_info(&self, vol: &VolumeId, flags: u32) -> Result<VolumeInfo> {
        let i = if flags == 0 {
            self.call::<procs::StorageVolGetInfo>(&StorageVolArgs {
                vol: vol_handle(vol),
            })?
        } else {
            self.vol_flags::<procs::StorageVolGetInfoFlags>(vol, flags)?
        };
        Ok(VolumeInfo {
            kind: i32::from(i.r#type),
            capacity: i.capacity,
            allocation: i.allocation,
        })
    }
    fn volume_xml(&self, vol: &VolumeId, flags: u32) -> Result<String> {
        Ok(self
            .vol_flags::<procs::StorageVolGetXmlDesc>(vol, flags)?
            .xml)
    }
    fn volume_path(&self, vol: &VolumeId) -> Result<String> {
        let a = StorageVolArgs {
            vol: vol_handle(vol),
        };
        Ok(self.call::<procs::StorageVolGetPath>(&a)?.name)
    }

    fn subscribe_pool_events(&self, callback: PoolEventCallback) -> Result<u64> {
        let _serial = lock(&self.link.registration);
        let (id, needs_remote) = lock(&self.link.pool_subscribers).add(callback);
        if needs_remote {
            let register = |event_id| {
                self.call::<procs::ConnectStoragePoolEventRegisterAny>(
                    &ConnectStoragePoolEventRegisterAnyArgs {
                        event_id,
                        pool: None,
                    },
                )
                .map(|r| r.callback_id)
            };
            let both =
                register(POOL_EVENT_LIFECYCLE).and_then(|l| match register(POOL_EVENT_REFRESH) {
                    Ok(r) => Ok((l, r)),
                    Err(e) => {
                        let _ = self.call::<procs::ConnectStoragePoolEventDeregisterAny>(
                            &CallbackIdArgs { callback_id: l },
                        );
                        Err(e)
                    }
                });
            match both {
                Ok(ids) => lock(&self.link.pool_subscribers).remote = Some(ids),
                Err(e) => {
                    lock(&self.link.pool_subscribers).forget(id);
                    return Err(e);
                }
            }
        }
        Ok(id)
    }

    fn unsubscribe_pool_events(&self, id: u64) -> Result<()> {
        let _serial = lock(&self.link.registration);
        let remote = lock(&self.link.pool_subscribers).remove(id, "storage pool event")?;
        if let Some((l, r)) = remote {
            for callback_id in [l, r] {
                self.call::<procs::ConnectStoragePoolEventDeregisterAny>(&CallbackIdArgs {
                    callback_id,
                })?;
            }
        }
        Ok(())
    }
}
