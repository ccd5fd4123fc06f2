//! The plugin edge: the `rbd` backend behind the plugin API's storage facet. Pools and
//! volumes arrive as libvirt XML and are parsed here; errors keep their libvirt numbers.

use crate::stream::{Download, Upload};
use crate::{Error, ImageInfo, PoolConfig, Rbd, SECRET_USAGE_CEPH, SecretRef};
use rvirt_sdk::abi::{
    ErrorDomain, HostServicesBox, PResult, PluginError, PoolRefresh, StorageBackend, Stream,
    StreamBox,
    abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec},
    log_level,
};
use rvirt_xml::{StoragePool, StorageVolume};

pub use crate::POOL_TYPE;

rvirt_sdk::export_plugin! {
    manifest: rvirt_sdk::PluginInfo {
        name: "storage-rbd",
        kind: "storage",
        schemes: &[],
        version: env!("CARGO_PKG_VERSION"),
        description: "rbd storage pools: Ceph RBD images through librados/librbd, cephx keys from the host's secrets",
    },
    storage: { pool_types: &[POOL_TYPE], open: open },
}

/// Opens the backend: cephx keys are read through the host's secrets.
pub fn open(_pool_type: &str, host: HostServicesBox) -> Result<RbdBackend, PluginError> {
    host.log(
        log_level::DEBUG,
        RStr::from_str("rbd storage backend opened"),
    );
    let keys =
        move |s: &SecretRef| match host.secret_value(SECRET_USAGE_CEPH, RStr::from_str(s.id())) {
            RResult::ROk(v) => Ok(v.into_vec()),
            RResult::RErr(e) => Err((e.code, e.message.into_string())),
        };
    Ok(RbdBackend {
        rbd: Rbd::new(Box::new(keys)),
    })
}

/// The `rbd` backend as a plugin object.
pub struct RbdBackend {
    rbd: Rbd,
}

impl RbdBackend {
    /// The backend's library object (connections by pool).
    pub fn rbd(&self) -> &Rbd {
        &self.rbd
    }
}

fn perr(e: Error) -> PluginError {
    PluginError {
        code: e.code(),
        domain: ErrorDomain::Storage as i32,
        message: e.full_message().into(),
    }
}

fn res<T>(r: Result<T, Error>) -> PResult<T> {
    r.map_err(perr).into()
}

fn pool(xml: RStr<'_>) -> Result<(StoragePool, PoolConfig), Error> {
    let p = crate::parse_pool(xml.as_str())?;
    let c = PoolConfig::from_pool(&p)?;
    Ok((p, c))
}

fn vol(
    p: &StoragePool,
    xml: RStr<'_>,
    allow_missing_capacity: bool,
) -> Result<StorageVolume, Error> {
    let opts = rvirt_xml::volume::VolumeParseOptions {
        allow_missing_capacity,
    };
    StorageVolume::parse_with(xml.as_str(), Some(p), &opts).map_err(|source| Error::Xml {
        what: "volume",
        source,
    })
}

fn vol_xml(c: &PoolConfig, i: &ImageInfo) -> RString {
    crate::volume_xml(&c.ceph_pool, i).into()
}

impl StorageBackend for RbdBackend {
    fn pool_type(&self) -> RString {
        POOL_TYPE.into()
    }

    fn check_pool(&self, pool_xml: RStr<'_>) -> PResult<bool> {
        res(pool(pool_xml).map(|(_, c)| self.rbd.check_pool(&c)))
    }

    fn start_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        res(pool(pool_xml).and_then(|(_, c)| self.rbd.start_pool(&c)))
    }

    fn stop_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        res(pool(pool_xml).map(|(_, c)| self.rbd.stop_pool(&c)))
    }

    fn refresh_pool(&self, pool_xml: RStr<'_>) -> PResult<PoolRefresh> {
        res(pool(pool_xml).and_then(|(_, c)| {
            let r = self.rbd.refresh_pool(&c)?;
            Ok(PoolRefresh {
                capacity: r.capacity,
                allocation: r.allocation,
                available: r.available,
                volumes: r.images.iter().map(|i| vol_xml(&c, i)).collect(),
            })
        }))
    }

    fn create_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml_in: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        res(pool(pool_xml).and_then(|(p, c)| {
            crate::check_flags("create_volume", flags, 0)?;
            let v = vol(&p, vol_xml_in, false)?;
            let made = self.rbd.create_volume(&c, &v)?;
            Ok(vol_xml(&c, &made))
        }))
    }

    fn create_volume_from(
        &self,
        pool_xml: RStr<'_>,
        vol_xml_in: RStr<'_>,
        src_pool_xml: RStr<'_>,
        src_vol_xml: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        res(pool(pool_xml).and_then(|(p, c)| {
            crate::check_flags("create_volume_from", flags, 0)?;
            let v = vol(&p, vol_xml_in, true)?;
            let sp = crate::parse_pool(src_pool_xml.as_str())?;
            if sp.pool_type() != crate::POOL_TYPE {
                return Err(Error::NoSupport {
                    object: crate::vol_object(&c.name, v.name()),
                    what: format!(
                        "cloning a volume of a '{}' pool into an rbd pool (upload it instead)",
                        sp.pool_type()
                    ),
                });
            }
            let sc = PoolConfig::from_pool(&sp)?;
            let sv = vol(&sp, src_vol_xml, true)?;
            let made = self.rbd.clone_volume(&c, &v, &sc, &sv)?;
            Ok(vol_xml(&c, &made))
        }))
    }

    fn delete_volume(&self, pool_xml: RStr<'_>, vol_xml_in: RStr<'_>, flags: u32) -> PResult<()> {
        res(pool(pool_xml).and_then(|(p, c)| {
            let v = vol(&p, vol_xml_in, true)?;
            self.rbd.delete_volume(&c, &v, flags)
        }))
    }

    fn resize_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml_in: RStr<'_>,
        capacity: u64,
        flags: u32,
    ) -> PResult<()> {
        res(pool(pool_xml).and_then(|(p, c)| {
            let v = vol(&p, vol_xml_in, true)?;
            self.rbd.resize_volume(&c, &v, capacity, flags)
        }))
    }

    fn wipe_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml_in: RStr<'_>,
        algorithm: u32,
        flags: u32,
    ) -> PResult<()> {
        res(pool(pool_xml).and_then(|(p, c)| {
            let v = vol(&p, vol_xml_in, true)?;
            self.rbd.wipe_volume(&c, &v, algorithm, flags)
        }))
    }

    fn refresh_volume(&self, pool_xml: RStr<'_>, vol_xml_in: RStr<'_>) -> PResult<RString> {
        res(pool(pool_xml).and_then(|(p, c)| {
            let v = vol(&p, vol_xml_in, true)?;
            let i = self.rbd.volume_info(&c, &v)?;
            Ok(vol_xml(&c, &i))
        }))
    }

    fn upload(
        &self,
        pool_xml: RStr<'_>,
        vol_xml_in: RStr<'_>,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> PResult<StreamBox> {
        res(pool(pool_xml).and_then(|(p, c)| {
            crate::check_flags("upload", flags, 0)?;
            let v = vol(&p, vol_xml_in, true)?;
            let up = self.rbd.upload(&c, v.name(), offset, length)?;
            Ok(rvirt_sdk::stream_box(
                "storage-rbd",
                RbdStream::Up(Some(up)),
            ))
        }))
    }

    fn download(
        &self,
        pool_xml: RStr<'_>,
        vol_xml_in: RStr<'_>,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> PResult<StreamBox> {
        res(pool(pool_xml).and_then(|(p, c)| {
            crate::check_flags("download", flags, 0)?;
            let v = vol(&p, vol_xml_in, true)?;
            let down = self.rbd.download(&c, v.name(), offset, length)?;
            Ok(rvirt_sdk::stream_box("storage-rbd", RbdStream::Down(down)))
        }))
    }
}

/// An upload (the host sends) or a download (the host receives).
enum RbdStream {
    Up(Option<Upload>),
    Down(Download),
}

fn wrong_way(op: &str) -> PluginError {
    PluginError {
        code: crate::code::OPERATION_INVALID,
        domain: ErrorDomain::Storage as i32,
        message: format!("requested operation is not valid: {op} on a stream going the other way")
            .into(),
    }
}

impl Stream for RbdStream {
    fn send(&mut self, data: RSlice<'_, u8>) -> PResult<()> {
        match self {
            RbdStream::Up(Some(u)) => res(u.send(data.as_slice())),
            RbdStream::Up(None) => RResult::RErr(wrong_way("virStreamSend after finish")),
            RbdStream::Down(_) => RResult::RErr(wrong_way("virStreamSend")),
        }
    }

    fn recv(&mut self, max: u64) -> PResult<RVec<u8>> {
        match self {
            RbdStream::Down(d) => {
                let n = usize::try_from(max.min(1 << 22)).unwrap_or(1 << 22);
                res(d.recv(n).map(RVec::from))
            }
            RbdStream::Up(_) => RResult::RErr(wrong_way("virStreamRecv")),
        }
    }

    fn finish(&mut self) -> PResult<()> {
        match self {
            RbdStream::Up(u) => match u.take() {
                Some(mut up) => res(up.finish()),
                None => RResult::ROk(()),
            },
            RbdStream::Down(_) => RResult::ROk(()),
        }
    }

    fn abort(&mut self) -> PResult<()> {
        // what was written stays, as libvirt's; requests in flight are waited for
        if let RbdStream::Up(u) = self {
            u.take();
        }
        RResult::ROk(())
    }
}
