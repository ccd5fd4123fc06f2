//! The plugin edge: the `iscsi-direct` backend behind the plugin API's storage facet. CHAP
//! secrets come from the host's services (`secret_value`); volume creation, deletion and
//! resizing keep the facet's default answer (no-support, naming the API and the backend).

use crate::{Error, Lun, Target, ffi::Session};
use rvirt_sdk::abi::{
    ErrorCode, ErrorDomain, HostServicesBox, PResult, PluginError, PoolRefresh, StorageBackend,
    Stream, StreamBox,
    abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec},
};
use rvirt_xml::StoragePool;

pub use crate::POOL_TYPE;

rvirt_sdk::export_plugin! {
    manifest: rvirt_sdk::PluginInfo {
        name: "storage-iscsi-direct",
        kind: "storage",
        schemes: &[],
        version: env!("CARGO_PKG_VERSION"),
        description: "iscsi-direct storage pools: the LUNs of an iSCSI target through libiscsi's userspace initiator (CHAP from the secret driver)",
    },
    storage: { pool_types: &[POOL_TYPE], open: open },
}

/// Opens the backend (stateless: every call logs in anew).
pub fn open(_pool_type: &str, host: HostServicesBox) -> Result<IscsiDirectBackend, PluginError> {
    Ok(IscsiDirectBackend { host })
}

/// The `iscsi-direct` backend as a plugin object.
pub struct IscsiDirectBackend {
    host: HostServicesBox,
}

fn perr(e: Error) -> PluginError {
    PluginError {
        code: e.code(),
        domain: ErrorDomain::Storage as i32,
        message: e.full_message().into(),
    }
}

fn target(xml: RStr<'_>) -> Result<Target, PluginError> {
    let p: StoragePool = crate::parse_pool(xml.as_str()).map_err(perr)?;
    Target::of(&p).map_err(perr)
}

fn vol_name(xml: RStr<'_>) -> Result<String, PluginError> {
    let e = rvirt_xml::Element::parse(xml.as_str()).map_err(|source| {
        perr(Error::Xml {
            what: "volume",
            source,
        })
    })?;
    Ok(e.child("name").map(|n| n.text()).unwrap_or_default())
}

/// Offsets and lengths of a stream must be whole blocks.
fn blocks(t: &Target, l: &Lun, offset: u64, length: u64) -> Result<(u64, u64), PluginError> {
    let bs = u64::from(l.block_size.max(1));
    let size = l.bytes();
    let len = if length == 0 {
        size.saturating_sub(offset)
    } else {
        length
    };
    if !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) || offset.saturating_add(len) > size {
        return Err(PluginError::new(
            ErrorCode::InvalidArg,
            ErrorDomain::Storage,
            format!(
                "{}: LUN {} moves whole blocks of {bs} bytes within its {size} bytes: offset {offset} and length {len} do not fit",
                t.object, l.lun
            ),
        ));
    }
    Ok((offset / bs, len))
}

impl IscsiDirectBackend {
    fn secret(&self, usage_type: i32, id: &str) -> Result<Vec<u8>, (i32, String)> {
        match self.host.secret_value(usage_type, RStr::from_str(id)) {
            RResult::ROk(v) => Ok(v.into_vec()),
            RResult::RErr(e) => Err((e.code, e.message.into_string())),
        }
    }

    fn session(&self, t: &Target) -> Result<Session, PluginError> {
        t.login(&|u, id| self.secret(u, id)).map_err(perr)
    }

    fn lun(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
    ) -> Result<(Target, Session, Lun), PluginError> {
        let t = target(pool_xml)?;
        let name = vol_name(vol_xml)?;
        let mut s = self.session(&t)?;
        let l = crate::find_lun(&t, &mut s, &name).map_err(perr)?;
        Ok((t, s, l))
    }
}

impl StorageBackend for IscsiDirectBackend {
    fn pool_type(&self) -> RString {
        POOL_TYPE.into()
    }

    fn check_pool(&self, pool_xml: RStr<'_>) -> PResult<bool> {
        // nothing on the host to find (a session lives only during a call): the pool is
        // active again when the target still lets us in
        target(pool_xml).map(|t| self.session(&t).is_ok()).into()
    }

    fn start_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        target(pool_xml)
            .and_then(|t| self.session(&t).map(drop))
            .into()
    }

    fn stop_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        target(pool_xml).map(drop).into()
    }

    fn refresh_pool(&self, pool_xml: RStr<'_>) -> PResult<PoolRefresh> {
        target(pool_xml)
            .and_then(|t| crate::refresh(&t, &|u, id| self.secret(u, id)).map_err(perr))
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

    fn refresh_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>) -> PResult<RString> {
        self.lun(pool_xml, vol_xml)
            .map(|(t, _, l)| RString::from(crate::volume_xml(&t, &l)))
            .into()
    }

    fn wipe_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        algorithm: u32,
        flags: u32,
    ) -> PResult<()> {
        let r = rvirt_sdk::util::check_flags(
            ErrorDomain::Storage,
            "virStorageVolWipePattern",
            flags,
            0,
        )
        .and_then(|()| {
            if algorithm != WIPE_ALG_ZERO {
                return Err(PluginError::new(
                    ErrorCode::NoSupport,
                    ErrorDomain::Storage,
                    format!(
                        "this function is not supported by the connection driver: wipe algorithm {algorithm} (storage backend 'iscsi-direct' writes zeros only)"
                    ),
                ));
            }
            self.lun(pool_xml, vol_xml)
        })
        .and_then(|(t, mut s, l)| {
            crate::zero(&t, &mut s, &l).map_err(perr)
        });
        r.into()
    }

    fn find_pool_sources(&self, source_spec_xml: RStr<'_>, flags: u32) -> PResult<RString> {
        rvirt_sdk::util::check_flags(
            ErrorDomain::Storage,
            "virConnectFindStoragePoolSources",
            flags,
            0,
        )
        .and_then(|()| {
            crate::find_pool_sources(source_spec_xml.as_str(), &|u, id| self.secret(u, id))
                .map(RString::from)
                .map_err(perr)
        })
        .into()
    }

    fn upload(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> PResult<StreamBox> {
        let r = rvirt_sdk::util::check_flags(ErrorDomain::Storage, "virStorageVolUpload", flags, 0)
            .and_then(|()| self.lun(pool_xml, vol_xml))
            .and_then(|(t, s, l)| {
                let (lba, len) = blocks(&t, &l, offset, length)?;
                Ok(rvirt_sdk::stream_box(
                    "storage-iscsi-direct",
                    LunStream {
                        object: format!("{}: LUN {}", t.object, l.lun),
                        session: Some(s),
                        lun: l.lun,
                        block: l.block_size,
                        lba,
                        left: len,
                        buf: Vec::new(),
                        upload: true,
                    },
                ))
            });
        r.into()
    }

    fn download(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> PResult<StreamBox> {
        let r =
            rvirt_sdk::util::check_flags(ErrorDomain::Storage, "virStorageVolDownload", flags, 0)
                .and_then(|()| self.lun(pool_xml, vol_xml))
                .and_then(|(t, s, l)| {
                    let (lba, len) = blocks(&t, &l, offset, length)?;
                    Ok(rvirt_sdk::stream_box(
                        "storage-iscsi-direct",
                        LunStream {
                            object: format!("{}: LUN {}", t.object, l.lun),
                            session: Some(s),
                            lun: l.lun,
                            block: l.block_size,
                            lba,
                            left: len,
                            buf: Vec::new(),
                            upload: false,
                        },
                    ))
                });
        r.into()
    }
}

/// `VIR_STORAGE_VOL_WIPE_ALG_ZERO`.
const WIPE_ALG_ZERO: u32 = 0;

/// Bytes moved per SCSI command.
const CHUNK: u64 = 1 << 20;

/// An upload or download of a LUN's blocks over its own session.
struct LunStream {
    object: String,
    session: Option<Session>,
    lun: u16,
    block: u32,
    /// The next block to read or write.
    lba: u64,
    /// Bytes still to read, or that may still be written.
    left: u64,
    /// Read ahead (download) or not yet written (upload).
    buf: Vec<u8>,
    upload: bool,
}

impl LunStream {
    fn fail(&self, what: String) -> PluginError {
        PluginError::new(
            ErrorCode::InternalError,
            ErrorDomain::Storage,
            format!("{}: {what}", self.object),
        )
    }

    fn session(&mut self) -> Result<&mut Session, PluginError> {
        let o = self.object.clone();
        self.session.as_mut().ok_or_else(|| {
            PluginError::new(
                ErrorCode::OperationInvalid,
                ErrorDomain::Storage,
                format!("{o}: the stream is closed"),
            )
        })
    }

    /// Writes the whole blocks of the buffer (all of it when `all`).
    fn flush(&mut self, all: bool) -> Result<(), PluginError> {
        let bs = self.block as usize;
        let whole = self.buf.len() / bs * bs;
        if all && whole != self.buf.len() {
            return Err(self.fail(format!(
                "the upload ended inside a block ({} bytes past a multiple of {bs})",
                self.buf.len() - whole
            )));
        }
        let mut done = 0;
        while done < whole {
            let n = (whole - done).min(CHUNK as usize);
            let (lun, lba, block) = (self.lun, self.lba, self.block);
            let mut chunk = self.buf[done..done + n].to_vec();
            let r = self.session()?.write(lun, lba, block, &mut chunk);
            r.map_err(|e| self.fail(e.to_string()))?;
            self.lba += (n / bs) as u64;
            done += n;
        }
        self.buf.drain(..whole);
        Ok(())
    }
}

impl Stream for LunStream {
    fn send(&mut self, data: RSlice<'_, u8>) -> PResult<()> {
        let r = (|| {
            if !self.upload {
                return Err(self.fail("a download takes no data".into()));
            }
            let n = data.len() as u64;
            if n > self.left {
                return Err(self.fail(format!(
                    "the upload goes past the end of the range ({} more bytes allowed)",
                    self.left
                )));
            }
            self.left -= n;
            self.buf.extend_from_slice(data.as_slice());
            if self.buf.len() as u64 >= CHUNK {
                self.flush(false)?;
            }
            Ok(())
        })();
        r.into()
    }

    fn recv(&mut self, max: u64) -> PResult<RVec<u8>> {
        let r = (|| {
            if self.upload {
                return Err(self.fail("an upload gives no data".into()));
            }
            if self.buf.is_empty() && self.left > 0 {
                let n = self.left.min(CHUNK) as usize;
                let mut b = vec![0u8; n];
                let (lun, lba, block) = (self.lun, self.lba, self.block);
                let r = self.session()?.read(lun, lba, block, &mut b);
                r.map_err(|e| self.fail(e.to_string()))?;
                self.lba += (n / block as usize) as u64;
                self.left -= n as u64;
                self.buf = b;
            }
            let n = self
                .buf
                .len()
                .min(usize::try_from(max).unwrap_or(usize::MAX));
            Ok(RVec::from(self.buf.drain(..n).collect::<Vec<u8>>()))
        })();
        r.into()
    }

    fn finish(&mut self) -> PResult<()> {
        let r = if self.upload {
            self.flush(true)
        } else {
            Ok(())
        };
        self.session = None;
        r.into()
    }

    fn abort(&mut self) -> PResult<()> {
        self.session = None;
        self.buf.clear();
        PResult::ROk(())
    }
}
