//! The plugin edge: the `dir` backend behind the plugin API's storage facet (exported by
//! the `rvirt-storage-dir` plugin crate; `rvirt-storage-fs` serves its volumes with it). Pools and
//! volumes arrive as libvirt XML, are parsed here, handed to the library functions, and
//! what they return goes back as XML; errors keep their libvirt numbers.

use crate::{Download, Error, Upload};
use rvirt_sdk::abi::{
    ErrorDomain, HostServicesBox, PResult, PluginError, PoolRefresh, StorageBackend, Stream,
    StreamBox,
    abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec},
    log_level,
};
use rvirt_xml::{FormatOptions, StoragePool, StorageVolume};
use std::io::{Read, Write};

/// The pool type served.
pub const POOL_TYPE: &str = "dir";

/// Opens the backend (stateless: every call carries its pool).
pub fn open(_pool_type: &str, host: HostServicesBox) -> Result<DirBackend, PluginError> {
    host.log(
        log_level::DEBUG,
        RStr::from_str("dir storage backend opened"),
    );
    Ok(DirBackend {
        _host: host,
        refreshed: crate::RefreshCache::default(),
    })
}

/// The `dir` backend as a plugin object.
pub struct DirBackend {
    _host: HostServicesBox,
    /// What the last refresh of each target found (see [`crate::refresh_pool_xml`]).
    refreshed: crate::RefreshCache,
}

fn perr(e: Error) -> PluginError {
    PluginError {
        code: e.code(),
        domain: ErrorDomain::Storage as i32,
        message: e.full_message().into(),
    }
}

fn opts() -> FormatOptions {
    FormatOptions {
        inactive: false,
        secure: true,
    }
}

fn pool(xml: RStr<'_>) -> Result<StoragePool, PluginError> {
    crate::parse_pool(xml.as_str()).map_err(perr)
}

fn vol(
    p: &StoragePool,
    xml: RStr<'_>,
    allow_missing_capacity: bool,
) -> Result<StorageVolume, PluginError> {
    crate::parse_volume(p, xml.as_str(), allow_missing_capacity).map_err(perr)
}

fn res<T>(r: Result<T, PluginError>) -> PResult<T> {
    r.into()
}

impl StorageBackend for DirBackend {
    fn pool_type(&self) -> RString {
        POOL_TYPE.into()
    }

    fn check_pool(&self, pool_xml: RStr<'_>) -> PResult<bool> {
        res(pool(pool_xml).and_then(|p| crate::check_pool(&p).map_err(perr)))
    }

    fn build_pool(&self, pool_xml: RStr<'_>, flags: u32) -> PResult<()> {
        res(pool(pool_xml).and_then(|p| crate::build_pool(&p, flags).map_err(perr)))
    }

    fn start_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        res(pool(pool_xml).and_then(|p| crate::start_pool(&p).map_err(perr)))
    }

    fn stop_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        res(pool(pool_xml).and_then(|p| crate::stop_pool(&p).map_err(perr)))
    }

    fn delete_pool(&self, pool_xml: RStr<'_>, flags: u32) -> PResult<()> {
        res(pool(pool_xml).and_then(|p| crate::delete_pool(&p, flags).map_err(perr)))
    }

    fn refresh_pool(&self, pool_xml: RStr<'_>) -> PResult<PoolRefresh> {
        res(pool(pool_xml).and_then(|p| {
            let r = crate::refresh_pool_xml(&p, &self.refreshed).map_err(perr)?;
            Ok(PoolRefresh {
                capacity: r.capacity,
                allocation: r.allocation,
                available: r.available,
                volumes: r.volumes.into_iter().map(RString::from).collect(),
            })
        }))
    }

    fn create_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>, flags: u32) -> PResult<RString> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, false)?;
            let made = crate::create_volume(&p, &v, flags).map_err(perr)?;
            Ok(made.to_xml(&opts()).into())
        }))
    }

    fn create_volume_from(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        src_pool_xml: RStr<'_>,
        src_vol_xml: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, true)?;
            let sp = pool(src_pool_xml)?;
            let sv = vol(&sp, src_vol_xml, false)?;
            let made = crate::create_volume_from(&p, &v, &sp, &sv, flags).map_err(perr)?;
            Ok(made.to_xml(&opts()).into())
        }))
    }

    fn delete_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>, flags: u32) -> PResult<()> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, true)?;
            crate::delete_volume(&p, &v, flags).map_err(perr)
        }))
    }

    fn resize_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        capacity: u64,
        flags: u32,
    ) -> PResult<()> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, true)?;
            crate::resize_volume(&p, &v, capacity, flags)
                .map(|_| ())
                .map_err(perr)
        }))
    }

    fn wipe_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        algorithm: u32,
        flags: u32,
    ) -> PResult<()> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, true)?;
            crate::wipe_volume(&p, &v, algorithm, flags)
                .map(|_| ())
                .map_err(perr)
        }))
    }

    fn refresh_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>) -> PResult<RString> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, true)?;
            let now = crate::refresh_volume(&p, &v).map_err(perr)?;
            Ok(now.to_xml(&opts()).into())
        }))
    }

    fn upload(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, true)?;
            let up = crate::upload(&p, &v, offset, length).map_err(perr)?;
            Ok(rvirt_sdk::stream_box(
                "storage-dir",
                DirStream::Up(Some(up)),
            ))
        }))
    }

    fn download(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        res(pool(pool_xml).and_then(|p| {
            let v = vol(&p, vol_xml, true)?;
            let down = crate::download(&p, &v, offset, length).map_err(perr)?;
            Ok(rvirt_sdk::stream_box("storage-dir", DirStream::Down(down)))
        }))
    }
}

/// An upload (the host sends) or a download (the host receives).
enum DirStream {
    Up(Option<Upload>),
    Down(Download),
}

fn io_perr(what: &str, e: std::io::Error) -> PluginError {
    PluginError {
        code: crate::code::SYSTEM_ERROR,
        domain: ErrorDomain::Storage as i32,
        message: format!("cannot {what} the volume: {e}").into(),
    }
}

fn wrong_way(op: &str) -> PluginError {
    PluginError {
        code: crate::code::OPERATION_INVALID,
        domain: ErrorDomain::Storage as i32,
        message: format!("requested operation is not valid: {op} on a stream going the other way")
            .into(),
    }
}

impl Stream for DirStream {
    fn send(&mut self, data: RSlice<'_, u8>) -> PResult<()> {
        res(match self {
            DirStream::Up(Some(u)) => u
                .write_all(data.as_slice())
                .map_err(|e| io_perr("write", e)),
            DirStream::Up(None) => Err(wrong_way("virStreamSend after finish")),
            DirStream::Down(_) => Err(wrong_way("virStreamSend")),
        })
    }

    fn recv(&mut self, max: u64) -> PResult<RVec<u8>> {
        res(match self {
            DirStream::Down(d) => {
                let n = usize::try_from(max.min(1 << 22)).unwrap_or(1 << 22);
                let mut buf = vec![0u8; n];
                d.read(&mut buf)
                    .map(|got| {
                        buf.truncate(got);
                        RVec::from(buf)
                    })
                    .map_err(|e| io_perr("read", e))
            }
            DirStream::Up(_) => Err(wrong_way("virStreamRecv")),
        })
    }

    fn finish(&mut self) -> PResult<()> {
        res(match self {
            DirStream::Up(u) => match u.take() {
                Some(up) => up.finish().map(|_| ()).map_err(perr),
                None => Ok(()),
            },
            DirStream::Down(_) => Ok(()),
        })
    }

    fn abort(&mut self) -> PResult<()> {
        // an aborted upload keeps what was written so far, as libvirt's does
        if let DirStream::Up(u) = self {
            u.take();
        }
        RResult::ROk(())
    }
}
