//! The plugin edge: the `netfs` backend behind the plugin API's storage facet. The pool's
//! life cycle (mount, unmount, discovery) is this crate's; refresh and the volume
//! operations are the `dir` backend's plugin object
//! ([`rvirt_storage_files::plugin::DirBackend`], streams included), handed the pool seen
//! as a `dir` pool over its mounted target ([`crate::volume_pool`]).

use crate::Error;
use rvirt_sdk::abi::{
    ErrorDomain, HostServicesBox, PResult, PluginError, PoolRefresh, StorageBackend, StreamBox,
    abi_stable::std_types::{RStr, RString},
};
use rvirt_storage_files::plugin::DirBackend;
use rvirt_xml::{FormatOptions, StoragePool};

pub use crate::POOL_TYPE;

rvirt_sdk::export_plugin! {
    manifest: rvirt_sdk::PluginInfo {
        name: "storage-netfs",
        kind: "storage",
        schemes: &[],
        version: env!("CARGO_PKG_VERSION"),
        description: "netfs storage pools: an NFS, CIFS or GlusterFS export mounted at the target (libvirt's mount command); NFS export discovery (showmount)",
    },
    storage: { pool_types: &[POOL_TYPE], open: open },
}

/// Opens the backend (stateless: every call carries its pool).
pub fn open(_pool_type: &str, host: HostServicesBox) -> Result<NetfsBackend, PluginError> {
    Ok(NetfsBackend {
        dir: rvirt_storage_files::plugin::open(rvirt_storage_files::plugin::POOL_TYPE, host)?,
    })
}

/// The `netfs` backend as a plugin object.
pub struct NetfsBackend {
    dir: DirBackend,
}

fn perr(e: Error) -> PluginError {
    PluginError {
        code: e.code(),
        domain: ErrorDomain::Storage as i32,
        message: e.full_message().into(),
    }
}

fn pool(xml: RStr<'_>) -> Result<StoragePool, PluginError> {
    crate::parse_pool(xml.as_str()).map_err(perr)
}

/// The pool as the `dir` backend sees it (XML), once the export is mounted.
fn volume_pool(xml: RStr<'_>) -> Result<String, PluginError> {
    let p = pool(xml)?;
    let d = crate::volume_pool(&p).map_err(perr)?;
    Ok(d.to_xml(&FormatOptions {
        inactive: false,
        secure: true,
    }))
}

/// Runs a `dir` backend call on the pool's `dir` view.
fn on_dir<T>(pool_xml: RStr<'_>, f: impl FnOnce(RStr<'_>) -> PResult<T>) -> PResult<T> {
    match volume_pool(pool_xml) {
        Ok(d) => f(RStr::from_str(&d)),
        Err(e) => PResult::RErr(e),
    }
}

impl StorageBackend for NetfsBackend {
    fn pool_type(&self) -> RString {
        POOL_TYPE.into()
    }

    fn check_pool(&self, pool_xml: RStr<'_>) -> PResult<bool> {
        pool(pool_xml)
            .and_then(|p| crate::check_pool(&p).map_err(perr))
            .into()
    }

    fn build_pool(&self, pool_xml: RStr<'_>, flags: u32) -> PResult<()> {
        pool(pool_xml)
            .and_then(|p| crate::build_pool(&p, flags).map_err(perr))
            .into()
    }

    fn start_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        pool(pool_xml)
            .and_then(|p| crate::start_pool(&p).map_err(perr))
            .into()
    }

    fn stop_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        pool(pool_xml)
            .and_then(|p| crate::stop_pool(&p).map_err(perr))
            .into()
    }

    fn delete_pool(&self, pool_xml: RStr<'_>, flags: u32) -> PResult<()> {
        pool(pool_xml)
            .and_then(|p| crate::delete_pool(&p, flags).map_err(perr))
            .into()
    }

    fn refresh_pool(&self, pool_xml: RStr<'_>) -> PResult<PoolRefresh> {
        on_dir(pool_xml, |d| self.dir.refresh_pool(d))
    }

    fn create_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>, flags: u32) -> PResult<RString> {
        on_dir(pool_xml, |d| self.dir.create_volume(d, vol_xml, flags))
    }

    fn create_volume_from(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        src_pool_xml: RStr<'_>,
        src_vol_xml: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        // a source volume in another netfs pool is read through that pool's dir view too
        let src = match crate::parse_pool(src_pool_xml.as_str()) {
            Ok(p) if p.pool_type() == POOL_TYPE => match volume_pool(src_pool_xml) {
                Ok(x) => x,
                Err(e) => return PResult::RErr(e),
            },
            _ => src_pool_xml.as_str().to_string(),
        };
        on_dir(pool_xml, |d| {
            self.dir
                .create_volume_from(d, vol_xml, RStr::from_str(&src), src_vol_xml, flags)
        })
    }

    fn delete_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>, flags: u32) -> PResult<()> {
        on_dir(pool_xml, |d| self.dir.delete_volume(d, vol_xml, flags))
    }

    fn resize_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        capacity: u64,
        flags: u32,
    ) -> PResult<()> {
        on_dir(pool_xml, |d| {
            self.dir.resize_volume(d, vol_xml, capacity, flags)
        })
    }

    fn wipe_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        algorithm: u32,
        flags: u32,
    ) -> PResult<()> {
        on_dir(pool_xml, |d| {
            self.dir.wipe_volume(d, vol_xml, algorithm, flags)
        })
    }

    fn refresh_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>) -> PResult<RString> {
        on_dir(pool_xml, |d| self.dir.refresh_volume(d, vol_xml))
    }

    fn upload(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> PResult<StreamBox> {
        on_dir(pool_xml, |d| {
            self.dir.upload(d, vol_xml, offset, length, flags)
        })
    }

    fn download(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> PResult<StreamBox> {
        on_dir(pool_xml, |d| {
            self.dir.download(d, vol_xml, offset, length, flags)
        })
    }

    fn find_pool_sources(&self, source_spec_xml: RStr<'_>, flags: u32) -> PResult<RString> {
        crate::find_pool_sources(source_spec_xml.as_str(), flags)
            .map(RString::from)
            .map_err(perr)
            .into()
    }
}
