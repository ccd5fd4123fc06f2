//! The plugin edge: the `logical` backend behind the plugin API's storage facet. Pools and
//! volumes arrive as libvirt XML, are parsed here and handed to the crate's functions;
//! errors keep their libvirt numbers.

use crate::Error;
use rvirt_sdk::abi::{
    ErrorDomain, HostServicesBox, PResult, PluginError, PoolRefresh, StorageBackend, StreamBox,
    abi_stable::std_types::{RStr, RString, RVec},
    log_level,
};
use rvirt_xml::{StoragePool, StorageVolume};

pub use crate::POOL_TYPE;

rvirt_sdk::export_plugin! {
    manifest: rvirt_sdk::PluginInfo {
        name: "storage-logical",
        kind: "storage",
        schemes: &[],
        version: env!("CARGO_PKG_VERSION"),
        description: "logical storage pools: LVM volume groups through lvm2's tools (metadata only where the kernel has no device-mapper)",
    },
    storage: { pool_types: &[POOL_TYPE], open: open },
}

/// Opens the backend (stateless: every call carries its pool).
pub fn open(_pool_type: &str, host: HostServicesBox) -> Result<LogicalBackend, PluginError> {
    if !crate::lvm::device_mapper_available() {
        host.log(
            log_level::INFO,
            RStr::from_str(
                "logical storage backend: this kernel has no device-mapper; volume groups run with activation off (metadata only)",
            ),
        );
    }
    Ok(LogicalBackend { host })
}

/// The `logical` backend as a plugin object.
pub struct LogicalBackend {
    host: HostServicesBox,
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

fn with_vol<T>(
    pool_xml: RStr<'_>,
    vol_xml: RStr<'_>,
    f: impl FnOnce(&StoragePool, &StorageVolume) -> crate::Result<T>,
) -> PResult<T> {
    let r = pool(pool_xml).and_then(|p| {
        let v = crate::parse_volume(&p, vol_xml.as_str()).map_err(perr)?;
        f(&p, &v).map_err(perr)
    });
    r.into()
}

impl StorageBackend for LogicalBackend {
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
            .map(|skipped| {
                if let Some(why) = skipped {
                    self.host.log(log_level::WARN, RStr::from_str(&why));
                }
            })
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
        pool(pool_xml)
            .and_then(|p| crate::refresh_pool(&p).map_err(perr))
            .map(|r| PoolRefresh {
                capacity: r.capacity,
                allocation: r.allocation,
                available: r.available,
                volumes: r
                    .volumes
                    .into_iter()
                    .map(RString::from)
                    .collect::<RVec<_>>(),
            })
            .into()
    }

    fn create_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>, flags: u32) -> PResult<RString> {
        with_vol(pool_xml, vol_xml, |p, v| {
            crate::create_volume(p, v, flags).map(RString::from)
        })
    }

    fn create_volume_from(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        _src_pool_xml: RStr<'_>,
        _src_vol_xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        with_vol(pool_xml, vol_xml, |p, v| Err(crate::cannot_copy_into(p, v)))
    }

    fn delete_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>, flags: u32) -> PResult<()> {
        with_vol(pool_xml, vol_xml, |p, v| crate::delete_volume(p, v, flags))
    }

    fn resize_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        capacity: u64,
        flags: u32,
    ) -> PResult<()> {
        with_vol(pool_xml, vol_xml, |p, v| {
            crate::resize_volume(p, v, capacity, flags)
        })
    }

    fn wipe_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        _algorithm: u32,
        _flags: u32,
    ) -> PResult<()> {
        with_vol(pool_xml, vol_xml, |p, v| {
            Err(crate::needs_active(p, v, "wipe"))
        })
    }

    fn refresh_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>) -> PResult<RString> {
        with_vol(pool_xml, vol_xml, |p, v| {
            crate::refresh_volume(p, v).map(RString::from)
        })
    }

    fn upload(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        _offset: u64,
        _length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        with_vol(pool_xml, vol_xml, |p, v| {
            Err(crate::needs_active(p, v, "upload to"))
        })
    }

    fn download(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        _offset: u64,
        _length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        with_vol(pool_xml, vol_xml, |p, v| {
            Err(crate::needs_active(p, v, "download from"))
        })
    }

    fn find_pool_sources(&self, source_spec_xml: RStr<'_>, flags: u32) -> PResult<RString> {
        let r = if flags != 0 {
            Err(perr(Error::Flags {
                function: "virConnectFindStoragePoolSources",
                flags,
            }))
        } else {
            crate::find_pool_sources(Some(source_spec_xml.as_str()))
                .map(RString::from)
                .map_err(perr)
        };
        r.into()
    }
}
