//! The test plugin's storage facet: an in-memory backend for pool type `mock`.
//!
//! Pools are keyed by name and volumes are byte vectors, in one process-wide table (the
//! "disk" every backend opened in the process sees, as every `dir` backend sees the same
//! file system). It implements the pool and volume life cycle, refresh and streams, and
//! leaves resize, wipe, clone and source discovery to the no-support defaults. A pool
//! named `panic-me` makes every operation panic, for the host's panic tests.

use rvirt_sdk::abi::{
    ErrorCode, ErrorDomain, HostServicesBox, PResult, PluginError, PoolRefresh, StorageBackend,
    Stream, StreamBox,
    abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec},
    log_level,
};
use rvirt_xml::{Element, StorageVolume};
use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, OnceLock},
};

/// The pool type this backend serves.
pub const POOL_TYPE: &str = "mock";

/// The size every mock pool reports, in bytes (1 GiB).
pub const POOL_CAPACITY: u64 = 1 << 30;

#[derive(Default)]
struct MockPool {
    active: bool,
    volumes: BTreeMap<String, Vec<u8>>,
}

fn table() -> MutexGuard<'static, BTreeMap<String, MockPool>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, MockPool>>> = OnceLock::new();
    TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn err(code: ErrorCode, message: String) -> PluginError {
    PluginError::new(code, ErrorDomain::Storage, message)
}

fn xml_err(e: impl std::fmt::Display) -> PluginError {
    err(ErrorCode::XmlError, format!("invalid storage XML: {e}"))
}

/// The pool's name from its XML; panics for `panic-me`.
fn pool_name(pool_xml: RStr<'_>) -> Result<String, PluginError> {
    let root = Element::parse(pool_xml.as_str()).map_err(xml_err)?;
    if root.name() != "pool" || root.attr("type") != Some(POOL_TYPE) {
        return Err(err(
            ErrorCode::InvalidArg,
            format!("the mock backend serves <pool type='{POOL_TYPE}'> only"),
        ));
    }
    let name = root
        .child("name")
        .and_then(|n| n.text_ref())
        .unwrap_or("")
        .to_string();
    if name == "panic-me" {
        panic!("the mock backend was asked to panic");
    }
    if name.is_empty() {
        return Err(xml_err("the pool has no name"));
    }
    Ok(name)
}

fn volume(vol_xml: RStr<'_>) -> Result<StorageVolume, PluginError> {
    StorageVolume::parse_with(
        vol_xml.as_str(),
        None,
        &rvirt_xml::VolumeParseOptions {
            allow_missing_capacity: true,
        },
    )
    .map_err(xml_err)
}

fn no_pool(name: &str) -> PluginError {
    err(
        ErrorCode::NoStoragePool,
        format!("storage pool not found: no mock pool with matching name '{name}'"),
    )
}

fn no_volume(name: &str) -> PluginError {
    // VIR_ERR_NO_STORAGE_VOL
    PluginError {
        code: 50,
        domain: ErrorDomain::Storage as i32,
        message: format!("storage volume not found: no storage vol with matching name '{name}'")
            .into(),
    }
}

/// The volume's XML as this backend reports it.
fn volume_xml(pool: &str, name: &str, data: &[u8]) -> String {
    let len = data.len();
    format!(
        "<volume type='file'><name>{name}</name><key>mock/{pool}/{name}</key>\
         <capacity unit='bytes'>{len}</capacity><allocation unit='bytes'>{len}</allocation>\
         <target><path>mock://{pool}/{name}</path><format type='raw'/></target></volume>"
    )
}

fn with_pool<T>(
    pool_xml: RStr<'_>,
    f: impl FnOnce(&str, &mut MockPool) -> Result<T, PluginError>,
) -> PResult<T> {
    let r = pool_name(pool_xml).and_then(|name| {
        let mut t = table();
        let pool = t.get_mut(&name).ok_or_else(|| no_pool(&name))?;
        f(&name, pool)
    });
    r.into()
}

/// The `mock` backend.
pub struct MockBackend {
    host: HostServicesBox,
}

/// Opens the backend (the facet's `open`).
pub fn open(pool_type: &str, host: HostServicesBox) -> Result<MockBackend, PluginError> {
    host.log(
        log_level::DEBUG,
        RStr::from_str(&format!("opening the {pool_type} storage backend")),
    );
    Ok(MockBackend { host })
}

impl StorageBackend for MockBackend {
    fn pool_type(&self) -> RString {
        POOL_TYPE.into()
    }

    fn check_pool(&self, pool_xml: RStr<'_>) -> PResult<bool> {
        let r = pool_name(pool_xml).map(|name| table().get(&name).is_some_and(|p| p.active));
        r.into()
    }

    fn build_pool(&self, pool_xml: RStr<'_>, flags: u32) -> PResult<()> {
        let r = pool_name(pool_xml).and_then(|name| {
            if flags != 0 {
                return Err(err(
                    ErrorCode::InvalidArg,
                    format!("unsupported flags (0x{flags:x}) in function virStoragePoolBuild"),
                ));
            }
            table().entry(name).or_default();
            Ok(())
        });
        r.into()
    }

    fn start_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        with_pool(pool_xml, |_, p| {
            p.active = true;
            Ok(())
        })
    }

    fn stop_pool(&self, pool_xml: RStr<'_>) -> PResult<()> {
        with_pool(pool_xml, |_, p| {
            p.active = false;
            Ok(())
        })
    }

    fn delete_pool(&self, pool_xml: RStr<'_>, _flags: u32) -> PResult<()> {
        let r = pool_name(pool_xml).and_then(|name| {
            let mut t = table();
            match t.get(&name) {
                None => Err(no_pool(&name)),
                Some(p) if !p.volumes.is_empty() => Err(err(
                    ErrorCode::OperationInvalid,
                    format!("storage pool '{name}' still holds volumes"),
                )),
                Some(_) => {
                    t.remove(&name);
                    Ok(())
                }
            }
        });
        r.into()
    }

    fn refresh_pool(&self, pool_xml: RStr<'_>) -> PResult<PoolRefresh> {
        with_pool(pool_xml, |name, p| {
            let allocation: u64 = p.volumes.values().map(|v| v.len() as u64).sum();
            Ok(PoolRefresh {
                capacity: POOL_CAPACITY,
                allocation,
                available: POOL_CAPACITY.saturating_sub(allocation),
                volumes: p
                    .volumes
                    .iter()
                    .map(|(v, data)| RString::from(volume_xml(name, v, data)))
                    .collect(),
            })
        })
    }

    fn create_volume(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        with_pool(pool_xml, |name, p| {
            let vol = volume(vol_xml)?;
            if p.volumes.contains_key(vol.name()) {
                return Err(err(
                    ErrorCode::OperationFailed,
                    format!("storage volume '{}' already exists", vol.name()),
                ));
            }
            let size = usize::try_from(vol.capacity_bytes()).unwrap_or(usize::MAX);
            if size as u64 > POOL_CAPACITY {
                return Err(err(
                    ErrorCode::OperationFailed,
                    format!("not enough space in mock pool '{name}'"),
                ));
            }
            let data = vec![0; size];
            let xml = volume_xml(name, vol.name(), &data);
            p.volumes.insert(vol.name().to_string(), data);
            Ok(xml.into())
        })
    }

    fn delete_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>, _flags: u32) -> PResult<()> {
        with_pool(pool_xml, |_, p| {
            let vol = volume(vol_xml)?;
            p.volumes
                .remove(vol.name())
                .map(|_| ())
                .ok_or_else(|| no_volume(vol.name()))
        })
    }

    fn refresh_volume(&self, pool_xml: RStr<'_>, vol_xml: RStr<'_>) -> PResult<RString> {
        with_pool(pool_xml, |name, p| {
            let vol = volume(vol_xml)?;
            let data = p
                .volumes
                .get(vol.name())
                .ok_or_else(|| no_volume(vol.name()))?;
            Ok(volume_xml(name, vol.name(), data).into())
        })
    }

    fn upload(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        with_pool(pool_xml, |name, p| {
            let vol = volume(vol_xml)?;
            if !p.volumes.contains_key(vol.name()) {
                return Err(no_volume(vol.name()));
            }
            Ok(rvirt_sdk::stream_box(
                "test",
                Upload {
                    pool: name.to_string(),
                    volume: vol.name().to_string(),
                    offset: usize::try_from(offset).unwrap_or(usize::MAX),
                    length: (length != 0).then_some(length),
                    data: Vec::new(),
                },
            ))
        })
    }

    fn download(
        &self,
        pool_xml: RStr<'_>,
        vol_xml: RStr<'_>,
        offset: u64,
        length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        with_pool(pool_xml, |_, p| {
            let vol = volume(vol_xml)?;
            let data = p
                .volumes
                .get(vol.name())
                .ok_or_else(|| no_volume(vol.name()))?;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = match length {
                0 => data.len(),
                n => start.saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
            }
            .min(data.len());
            self.host.log(
                log_level::DEBUG,
                RStr::from_str(&format!("download of {} bytes", end - start)),
            );
            Ok(rvirt_sdk::stream_box(
                "test",
                Download {
                    data: data[start..end].to_vec(),
                    pos: 0,
                },
            ))
        })
    }
}

/// An upload: collects the chunks, writes them into the volume on `finish`.
struct Upload {
    pool: String,
    volume: String,
    offset: usize,
    length: Option<u64>,
    data: Vec<u8>,
}

impl Stream for Upload {
    fn send(&mut self, data: RSlice<'_, u8>) -> PResult<()> {
        if let Some(max) = self.length
            && (self.data.len() + data.len()) as u64 > max
        {
            return RResult::RErr(err(
                ErrorCode::InvalidArg,
                format!(
                    "upload of volume '{}' exceeds its length {max}",
                    self.volume
                ),
            ));
        }
        self.data.extend_from_slice(data.as_slice());
        RResult::ROk(())
    }

    fn recv(&mut self, _max: u64) -> PResult<RVec<u8>> {
        RResult::RErr(err(
            ErrorCode::OperationInvalid,
            "an upload stream cannot be read".into(),
        ))
    }

    fn finish(&mut self) -> PResult<()> {
        let mut t = table();
        let Some(vol) = t
            .get_mut(&self.pool)
            .and_then(|p| p.volumes.get_mut(&self.volume))
        else {
            return RResult::RErr(no_volume(&self.volume));
        };
        let end = self.offset.saturating_add(self.data.len());
        if vol.len() < end {
            vol.resize(end, 0);
        }
        vol[self.offset..end].copy_from_slice(&self.data);
        self.data.clear();
        RResult::ROk(())
    }

    fn abort(&mut self) -> PResult<()> {
        self.data.clear();
        RResult::ROk(())
    }
}

/// A download: hands out a copy of the volume's bytes.
struct Download {
    data: Vec<u8>,
    pos: usize,
}

impl Stream for Download {
    fn send(&mut self, _data: RSlice<'_, u8>) -> PResult<()> {
        RResult::RErr(err(
            ErrorCode::OperationInvalid,
            "a download stream cannot be written".into(),
        ))
    }

    fn recv(&mut self, max: u64) -> PResult<RVec<u8>> {
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.data.len() - self.pos);
        let chunk = RVec::from(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        RResult::ROk(chunk)
    }

    fn finish(&mut self) -> PResult<()> {
        RResult::ROk(())
    }

    fn abort(&mut self) -> PResult<()> {
        self.pos = self.data.len();
        RResult::ROk(())
    }
}
