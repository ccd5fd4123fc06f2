//! The connection's own storage pools and networks (plugin API 1.10), as libvirt's esx
//! driver registers them with an `esx://`/`gsx://`/`vpx://` connection: the datacenter's
//! datastores are the pools, the `.vmdk` files on them (found with the datastore
//! browser's `SearchDatastoreSubFolders_Task`) the volumes, and the host's virtual
//! switches (its `HostNetworkSystem`'s `networkInfo`) the networks, with their port groups
//! as `<portgroup>`s. Every call reads the server, except volume lookups within a second of
//! a search of the same datastore (the per-volume calls that follow a `vol-list`).
//!
//! UUIDs are derived from the remote objects' identities (a datastore's URL, a virtual
//! switch's key), hashed, so they are the same on every connection to the server.

use crate::{Inventory, err, vim_err};
use rvirt_sdk::abi::{
    ConnExtension, ConnNetwork, ConnNetworkBox, ConnStorage, ConnStorageBox, ErrorCode,
    OwnedNetwork, OwnedPool, OwnedPoolInfo, OwnedVol, OwnedVolInfo, PResult, PluginError, Uuid,
    abi_stable::std_types::{ROption, RResult, RStr, RString, RVec},
};
use rvirt_xml::Element;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::soap::{MoRef, Node};
use crate::vim::{ObjectContent, Session};

/// `VIR_FROM_STORAGE`, `VIR_FROM_NETWORK`.
const FROM_STORAGE: i32 = 18;
const FROM_NETWORK: i32 = 19;

/// A UUID stable across connections: a hash of the kind of object and its identity.
pub fn derived_uuid(kind: &str, identity: &str) -> uuid::Uuid {
    let mut h = Sha256::new();
    h.update(b"rvirt-esx\0");
    h.update(kind.as_bytes());
    h.update(b"\0");
    h.update(identity.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

fn abi(u: uuid::Uuid) -> Uuid {
    Uuid(*u.as_bytes())
}

fn in_domain(mut e: PluginError, domain: i32) -> PluginError {
    e.domain = domain;
    e
}

fn no_pool(what: &str) -> PluginError {
    PluginError {
        code: ErrorCode::NoStoragePool as i32,
        domain: FROM_STORAGE,
        message: format!("Storage pool not found: {what}").into(),
    }
}

/// `VIR_ERR_NO_STORAGE_VOL`.
const NO_STORAGE_VOL: i32 = 50;

fn no_vol(what: &str) -> PluginError {
    PluginError {
        code: NO_STORAGE_VOL,
        domain: FROM_STORAGE,
        message: format!("Storage volume not found: {what}").into(),
    }
}

fn no_net(what: &str) -> PluginError {
    PluginError {
        code: ErrorCode::NoNetwork as i32,
        domain: FROM_NETWORK,
        message: format!("Network not found: {what}").into(),
    }
}

fn flags_err(api: &str, flags: u32, domain: i32) -> PluginError {
    PluginError {
        code: ErrorCode::InvalidArg as i32,
        domain,
        message: format!("invalid argument: unsupported flags (0x{flags:x}) in function {api}")
            .into(),
    }
}

/// What a connection lends its storage and networks: the session and where it looks.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) session: Arc<Session>,
    pub(crate) inv: Inventory,
    /// The last datastore searches and when they were made: volume lookups within
    /// [`RECENT`] answer from them (`vol-list` asks each listed volume's path, `vol-list
    /// --details` its info); a refresh forgets them.
    pub(crate) recent: Arc<std::sync::Mutex<Option<Searched>>>,
    /// A read-only connection refuses volume creation and deletion.
    pub(crate) read_only: bool,
}

/// Volumes found by recent datastore searches, and when.
pub(crate) type Searched = (std::time::Instant, Vec<Volume>);

/// How long a datastore search answers volume lookups.
const RECENT: std::time::Duration = std::time::Duration::from_secs(1);

/// The connection's extension object (`DriverConnection::extension`).
pub(crate) struct Extension(pub(crate) Shared);

impl ConnExtension for Extension {
    fn conn_storage(&self) -> PResult<ROption<ConnStorageBox>> {
        RResult::ROk(ROption::RSome(rvirt_sdk::conn_storage_box(
            "esx",
            Storage(self.0.clone()),
        )))
    }
    fn conn_network(&self) -> PResult<ROption<ConnNetworkBox>> {
        RResult::ROk(ROption::RSome(rvirt_sdk::conn_network_box(
            "esx",
            Networks(self.0.clone()),
        )))
    }
}

// ---------------------------------------------------------------------------------------
// Datastores as pools.

/// One datastore as the pool calls read it.
#[derive(Debug, Clone)]
pub struct Datastore {
    pub obj: MoRef,
    pub name: String,
    /// `summary.url` (`ds:///vmfs/volumes/UUID/` on ESX): the pool's identity.
    pub url: String,
    pub capacity: u64,
    pub free: u64,
    pub accessible: bool,
    /// libvirt's pool type: `dir` (local), `fs` (VMFS), `netfs` (NAS).
    pub pool_type: &'static str,
    /// The mount path (target path of the pool XML).
    pub path: String,
    /// NAS: remote host, remote path and `nfs`/`cifs`.
    pub nas: Option<(String, String, String)>,
    pub browser: Option<MoRef>,
}

impl Datastore {
    fn from_content(o: &ObjectContent) -> Option<Datastore> {
        let summary = o.get("summary");
        let info = o.get("info");
        let s = |n: &str| summary.and_then(|x| x.text_of(n)).unwrap_or("").to_string();
        let num = |n: &str| s(n).parse::<u64>().unwrap_or(0);
        let name = o
            .text("name")
            .map(str::to_string)
            .unwrap_or_else(|| s("name"));
        if name.is_empty() {
            return None;
        }
        let url = s("url");
        let kind = info.and_then(|i| i.xsi_type.as_deref()).unwrap_or("");
        let mut nas = None;
        let pool_type = match kind {
            "VmfsDatastoreInfo" => "fs",
            "NasDatastoreInfo" => {
                let n = info.and_then(|i| i.child("nas"));
                let t = |k: &str| n.and_then(|n| n.text_of(k)).unwrap_or("").to_string();
                let format = if t("type").eq_ignore_ascii_case("cifs") {
                    "cifs"
                } else {
                    "nfs"
                };
                nas = Some((t("remoteHost"), t("remotePath"), format.to_string()));
                "netfs"
            }
            _ => "dir",
        };
        // the mount path: LocalDatastoreInfo's path, else the URL without its scheme
        let path = info
            .and_then(|i| i.text_of("path"))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let p = url.strip_prefix("ds://").unwrap_or(&url);
                let p = p.trim_end_matches('/');
                if p.is_empty() { "/".into() } else { p.into() }
            });
        Some(Datastore {
            accessible: s("accessible") != "false",
            capacity: num("capacity"),
            free: num("freeSpace"),
            browser: o.get("browser").and_then(Node::moref),
            obj: o.obj.clone(),
            name,
            url,
            pool_type,
            path,
            nas,
        })
    }

    fn uuid(&self) -> uuid::Uuid {
        // a datastore without a URL (none seen) is still one per name in its datacenter
        let id = if self.url.is_empty() {
            format!("name:{}", self.name)
        } else {
            self.url.clone()
        };
        derived_uuid("datastore", &id)
    }

    fn owned(&self) -> OwnedPool {
        OwnedPool {
            name: self.name.as_str().into(),
            uuid: abi(self.uuid()),
            active: self.accessible,
            persistent: true,
            autostart: true,
        }
    }

    /// The pool XML, in libvirt's esx driver's shape.
    pub fn xml(&self) -> String {
        let mut p = Element::new("pool").with_attr("type", self.pool_type);
        p.push(Element::new("name").with_text(&self.name));
        p.push(Element::new("uuid").with_text(&self.uuid().to_string()));
        let bytes = |n: &str, v: u64| {
            Element::new(n)
                .with_attr("unit", "bytes")
                .with_text(&v.to_string())
        };
        p.push(bytes("capacity", self.capacity));
        p.push(bytes("allocation", self.capacity.saturating_sub(self.free)));
        p.push(bytes("available", self.free));
        let mut source = Element::new("source");
        if let Some((host, dir, format)) = &self.nas {
            source.push(Element::new("host").with_attr("name", host));
            source.push(Element::new("dir").with_attr("path", dir));
            source.push(Element::new("format").with_attr("type", format));
        }
        p.push(source);
        let mut target = Element::new("target");
        target.push(Element::new("path").with_text(&self.path));
        p.push(target);
        p.to_xml_string()
    }
}

/// One `.vmdk` file on a datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub pool: String,
    /// The path in the datastore (`dir/disk.vmdk`): the volume's name.
    pub name: String,
    pub capacity: u64,
    pub allocation: u64,
}

impl Volume {
    /// `[datastore] dir/disk.vmdk`: the volume's path and key.
    pub fn ds_path(&self) -> String {
        format!("[{}] {}", self.pool, self.name)
    }
    fn owned(&self) -> OwnedVol {
        OwnedVol {
            pool: self.pool.as_str().into(),
            name: self.name.as_str().into(),
            key: self.ds_path().into(),
        }
    }
    fn xml(&self) -> String {
        let mut v = Element::new("volume").with_attr("type", "file");
        v.push(Element::new("name").with_text(&self.name));
        v.push(Element::new("key").with_text(&self.ds_path()));
        let bytes = |n: &str, x: u64| {
            Element::new(n)
                .with_attr("unit", "bytes")
                .with_text(&x.to_string())
        };
        v.push(bytes("capacity", self.capacity));
        v.push(bytes("allocation", self.allocation));
        let mut target = Element::new("target");
        target.push(Element::new("path").with_text(&self.ds_path()));
        target.push(Element::new("format").with_attr("type", "vmdk"));
        v.push(target);
        v.to_xml_string()
    }
}

/// `[ds] dir/file` (or the simulator's `[ds]/dir`) split into the datastore's name and
/// the path in it.
pub fn split_ds_path(p: &str) -> Option<(&str, &str)> {
    let rest = p.trim().strip_prefix('[')?;
    let (ds, path) = rest.split_once(']')?;
    Some((ds, path.trim_start_matches([' ', '/'])))
}

impl Shared {
    fn fail(&self, api: &str, e: crate::vim::VimError) -> PluginError {
        vim_err(api, e)
    }

    /// Every datastore of the connection's datacenter, in one retrieval.
    pub fn datastores(&self, api: &str) -> Result<Vec<Datastore>, PluginError> {
        let s = &self.session;
        let view = s
            .container_view(&self.inv.datacenter, "Datastore")
            .map_err(|e| self.fail(api, e))?;
        let r = s.retrieve(
            &view,
            true,
            "Datastore",
            &["name", "summary", "info", "browser"],
        );
        s.destroy_view(&view);
        let mut out: Vec<Datastore> = r
            .map_err(|e| self.fail(api, e))?
            .iter()
            .filter_map(Datastore::from_content)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn datastore(&self, api: &str, name: &str) -> Result<Datastore, PluginError> {
        self.datastores(api)?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| no_pool(&format!("no storage pool with matching name '{name}'")))
    }

    /// The `.vmdk` files of a datastore: `SearchDatastoreSubFolders_Task` from its root
    /// with a `VmDiskFileQuery`, asking for each file's size and capacity.
    pub fn volumes(&self, api: &str, ds: &Datastore) -> Result<Vec<Volume>, PluginError> {
        let browser = ds.browser.as_ref().ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                format!("{api}: datastore '{}' has no browser", ds.name),
            )
        })?;
        let root = format!("[{}]", ds.name);
        let result = self
            .session
            .task("SearchDatastoreSubFolders_Task", browser, |b| {
                b.text("datastorePath", &root);
                b.open("searchSpec", |b| {
                    b.open_typed("query", Some("VmDiskFileQuery"), |b| {
                        b.open("details", |b| {
                            b.text("diskType", "false");
                            b.text("capacityKb", "true");
                            b.text("hardwareVersion", "false");
                        });
                    });
                    b.open("details", |b| {
                        b.text("fileType", "true");
                        b.text("fileSize", "true");
                        b.text("modification", "false");
                        b.text("fileOwner", "false");
                    });
                    b.text("matchPattern", "*.vmdk");
                });
            })
            .map_err(|e| self.fail(api, e))?;
        let mut out = Vec::new();
        for folder in result.iter().flat_map(|r| r.children.iter()) {
            let Some((_, dir)) = folder.text_of("folderPath").and_then(split_ds_path) else {
                continue;
            };
            let dir = dir.trim_end_matches('/');
            for f in folder.children_named("file") {
                let Some(file) = f.text_of("path").filter(|p| !p.is_empty()) else {
                    continue;
                };
                let num = |n: &str| f.text_of(n).and_then(|t| t.parse::<u64>().ok());
                out.push(Volume {
                    pool: ds.name.clone(),
                    name: if dir.is_empty() {
                        file.to_string()
                    } else {
                        format!("{dir}/{file}")
                    },
                    capacity: num("capacityKb").map_or(0, |k| k * 1024),
                    allocation: num("fileSize").unwrap_or(0),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// [`Shared::volumes`], remembered as the recent search.
    fn search(&self, api: &str, ds: &Datastore) -> Result<Vec<Volume>, PluginError> {
        let v = self.volumes(api, ds)?;
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // keep the other datastores' recent volumes, replace this one's
        let mut kept: Vec<Volume> = match recent.take() {
            Some((t, old)) if t.elapsed() < RECENT => {
                old.into_iter().filter(|o| o.pool != ds.name).collect()
            }
            _ => Vec::new(),
        };
        kept.extend(v.iter().cloned());
        *recent = Some((std::time::Instant::now(), kept));
        Ok(v)
    }

    fn forget(&self) {
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn volume(&self, api: &str, pool: &str, name: &str) -> Result<Volume, PluginError> {
        if let Some((t, vols)) = &*self.recent.lock().unwrap_or_else(|e| e.into_inner())
            && t.elapsed() < RECENT
            && let Some(v) = vols.iter().find(|v| v.pool == pool && v.name == name)
        {
            return Ok(v.clone());
        }
        let ds = self.datastore(api, pool)?;
        self.search(api, &ds)?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| no_vol(&format!("no storage vol with matching name '{name}'")))
    }

    fn volume_at(&self, api: &str, path: &str) -> Result<Volume, PluginError> {
        let (ds, name) = split_ds_path(path)
            .ok_or_else(|| no_vol(&format!("no storage vol with matching path '{path}'")))?;
        self.volume(api, ds, name).map_err(|e| {
            if e.code == ErrorCode::NoStoragePool as i32 || e.code == NO_STORAGE_VOL {
                no_vol(&format!("no storage vol with matching path '{path}'"))
            } else {
                e
            }
        })
    }
}

impl Shared {
    fn writable(&self, api: &str) -> Result<(), PluginError> {
        if self.read_only {
            return Err(rvirt_sdk::util::read_only_denied(api));
        }
        self.forget();
        Ok(())
    }

    fn disk_manager(&self, api: &str) -> Result<&MoRef, PluginError> {
        self.session
            .content
            .virtual_disk_manager
            .as_ref()
            .ok_or_else(|| {
                err(
                    ErrorCode::NoSupport,
                    format!(
                        "this function is not supported by the connection driver: {api} (esx driver: the server has no VirtualDiskManager)"
                    ),
                )
            })
    }

    /// `FileManager.MakeDirectory` of the directory holding `name` (`dir/disk.vmdk`) on the
    /// datastore, with its parents; one that exists is fine.
    fn make_parent(&self, api: &str, ds: &str, name: &str) -> Result<(), PluginError> {
        let Some((dir, _)) = name.rsplit_once('/') else {
            return Ok(());
        };
        let Some(fm) = self.session.content.file_manager.as_ref() else {
            return Ok(());
        };
        let path = format!("[{ds}] {dir}");
        match self.session.invoke("MakeDirectory", fm, |b| {
            b.text("name", &path);
            b.moref("datacenter", &self.inv.datacenter);
            b.text("createParentDirectories", "true");
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.fault() == Some("FileAlreadyExists") => Ok(()),
            Err(e) => Err(vim_err(api, e)),
        }
    }

    /// The name a new volume's `<volume>` document gives, checked as libvirt's esx driver
    /// does: a `.vmdk` file (format `vmdk` or none), thin (allocation 0) or thick
    /// (allocation equal to capacity).
    fn new_volume(
        &self,
        api: &str,
        pool: &str,
        xml: &str,
    ) -> Result<(Datastore, String, u64, &'static str), PluginError> {
        let ds = self.datastore(api, pool)?;
        // an esx volume's name is a path in the datastore (`dir/disk.vmdk`), which the
        // generic volume rules refuse: validate the rest under a stand-in name
        let xml_err = |e: rvirt_xml::XmlError| err(ErrorCode::XmlError, e.to_string());
        let mut root = Element::parse(xml).map_err(xml_err)?;
        let name = root
            .child("name")
            .map(|n| n.text().trim().trim_start_matches('/').to_string())
            .unwrap_or_default();
        if let Some(n) = root.child_mut("name") {
            n.set_text("volume.vmdk");
        }
        let v = rvirt_xml::volume::StorageVolume::from_element(root, None).map_err(xml_err)?;
        if name.is_empty() || name.split('/').any(|p| p.is_empty() || p == "..") {
            return Err(err(
                ErrorCode::InvalidArg,
                format!("invalid argument: volume name '{name}' is not a path in the datastore"),
            ));
        }
        if !name.ends_with(".vmdk") {
            return Err(err(
                ErrorCode::ConfigUnsupported,
                format!("unsupported configuration: volume name '{name}' has no .vmdk suffix"),
            ));
        }
        if let Some(f) = v.format_type()
            && f != "vmdk"
        {
            return Err(err(
                ErrorCode::ConfigUnsupported,
                format!("unsupported configuration: volume format '{f}' (only vmdk)"),
            ));
        }
        let (capacity, allocation) = (v.capacity_bytes(), v.allocation_bytes());
        let disk_type = if allocation == 0 {
            "thin"
        } else if allocation == capacity {
            "thick"
        } else {
            return Err(err(
                ErrorCode::ConfigUnsupported,
                format!(
                    "unsupported configuration: allocation {allocation} with capacity {capacity} (a vmdk is thin, allocation 0, or thick, allocation equal to capacity)"
                ),
            ));
        };
        Ok((ds, name, capacity, disk_type))
    }

    fn created(&self, ds: &Datastore, name: &str) -> OwnedVol {
        Volume {
            pool: ds.name.clone(),
            name: name.to_string(),
            capacity: 0,
            allocation: 0,
        }
        .owned()
    }

    /// `VirtualDiskManager.CreateVirtualDisk_Task` of a `FileBackedVirtualDiskSpec`.
    pub fn create_volume(
        &self,
        pool: &str,
        xml: &str,
        flags: u32,
    ) -> Result<OwnedVol, PluginError> {
        let api = "virStorageVolCreateXML";
        if flags != 0 {
            return Err(flags_err(api, flags, FROM_STORAGE));
        }
        self.writable(api)?;
        let (ds, name, capacity, disk_type) = self.new_volume(api, pool, xml)?;
        let vdm = self.disk_manager(api)?;
        self.make_parent(api, &ds.name, &name)?;
        let path = format!("[{}] {name}", ds.name);
        self.session
            .task("CreateVirtualDisk_Task", vdm, |b| {
                b.text("name", &path);
                b.moref("datacenter", &self.inv.datacenter);
                b.open_typed("spec", Some("FileBackedVirtualDiskSpec"), |b| {
                    b.text("diskType", disk_type);
                    b.text("adapterType", "busLogic");
                    b.text("capacityKb", &capacity.div_ceil(1024).to_string());
                });
            })
            .map_err(|e| vim_err(api, e))?;
        self.forget();
        Ok(self.created(&ds, &name))
    }

    /// `VirtualDiskManager.CopyVirtualDisk_Task` of the source volume to the new name.
    pub fn create_volume_from(
        &self,
        pool: &str,
        xml: &str,
        from_pool: &str,
        from_name: &str,
        flags: u32,
    ) -> Result<OwnedVol, PluginError> {
        let api = "virStorageVolCreateXMLFrom";
        if flags != 0 {
            return Err(flags_err(api, flags, FROM_STORAGE));
        }
        self.writable(api)?;
        let src = self.volume(api, from_pool, from_name)?;
        let (ds, name, _, _) = self.new_volume(api, pool, xml)?;
        let vdm = self.disk_manager(api)?;
        self.make_parent(api, &ds.name, &name)?;
        let dest = format!("[{}] {name}", ds.name);
        self.session
            .task("CopyVirtualDisk_Task", vdm, |b| {
                b.text("sourceName", &src.ds_path());
                b.moref("sourceDatacenter", &self.inv.datacenter);
                b.text("destName", &dest);
                b.moref("destDatacenter", &self.inv.datacenter);
                b.text("force", "false");
            })
            .map_err(|e| vim_err(api, e))?;
        self.forget();
        Ok(self.created(&ds, &name))
    }

    /// `VirtualDiskManager.DeleteVirtualDisk_Task`.
    pub fn delete_volume(&self, pool: &str, name: &str, flags: u32) -> Result<(), PluginError> {
        let api = "virStorageVolDelete";
        if flags != 0 {
            return Err(flags_err(api, flags, FROM_STORAGE));
        }
        self.writable(api)?;
        let v = self.volume(api, pool, name)?;
        let vdm = self.disk_manager(api)?;
        self.session
            .task("DeleteVirtualDisk_Task", vdm, |b| {
                b.text("name", &v.ds_path());
                b.moref("datacenter", &self.inv.datacenter);
            })
            .map_err(|e| vim_err(api, e))?;
        self.forget();
        Ok(())
    }
}

/// `VIR_CONNECT_LIST_STORAGE_POOLS_*` type bits this driver's pools can match.
const POOL_TYPE_BITS: &[(&str, u32)] = &[("dir", 1 << 6), ("fs", 1 << 7), ("netfs", 1 << 8)];
/// Every `VIR_CONNECT_LIST_STORAGE_POOLS_*` bit (states and types up to `iscsi-direct`).
const POOL_LIST_ALL: u32 = (1 << 21) - 1;

struct Storage(Shared);

fn r<T>(x: Result<T, PluginError>) -> PResult<T> {
    x.into()
}

impl ConnStorage for Storage {
    fn list_pools(&self, flags: u32) -> PResult<RVec<OwnedPool>> {
        let api = "virConnectListAllStoragePools";
        if flags & !POOL_LIST_ALL != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_STORAGE));
        }
        let types = flags & !63;
        r(self.0.datastores(api).map(|v| {
            v.iter()
                .filter(|d| {
                    types == 0
                        || POOL_TYPE_BITS
                            .iter()
                            .any(|(t, bit)| *t == d.pool_type && types & bit != 0)
                })
                .map(Datastore::owned)
                .collect()
        }))
    }
    fn pool_by_name(&self, name: RStr<'_>) -> PResult<OwnedPool> {
        r(self
            .0
            .datastore("virStoragePoolLookupByName", name.as_str())
            .map(|d| d.owned()))
    }
    fn pool_by_uuid(&self, uuid: Uuid) -> PResult<OwnedPool> {
        let api = "virStoragePoolLookupByUUID";
        let want = uuid::Uuid::from_bytes(uuid.0);
        r(self.0.datastores(api).and_then(|v| {
            v.iter()
                .find(|d| d.uuid() == want)
                .map(Datastore::owned)
                .ok_or_else(|| no_pool(&format!("no storage pool with matching uuid '{want}'")))
        }))
    }
    fn pool_info(&self, pool: RStr<'_>) -> PResult<OwnedPoolInfo> {
        r(self
            .0
            .datastore("virStoragePoolGetInfo", pool.as_str())
            .map(|d| OwnedPoolInfo {
                // VIR_STORAGE_POOL_RUNNING, VIR_STORAGE_POOL_INACCESSIBLE
                state: if d.accessible { 2 } else { 4 },
                capacity: d.capacity,
                allocation: d.capacity.saturating_sub(d.free),
                available: d.free,
            }))
    }
    fn pool_xml(&self, pool: RStr<'_>, flags: u32) -> PResult<RString> {
        let api = "virStoragePoolGetXMLDesc";
        // VIR_STORAGE_XML_INACTIVE: the same document (the server holds one definition)
        if flags & !1 != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_STORAGE));
        }
        r(self.0.datastore(api, pool.as_str()).map(|d| d.xml().into()))
    }
    fn pool_refresh(&self, pool: RStr<'_>, flags: u32) -> PResult<()> {
        let api = "virStoragePoolRefresh";
        if flags != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_STORAGE));
        }
        // a refresh forgets the recent searches and asks the server to re-read the datastore
        self.0.forget();
        let ds = match self.0.datastore(api, pool.as_str()) {
            Ok(d) => d,
            Err(e) => return RResult::RErr(e),
        };
        let r = self.0.session.invoke("RefreshDatastore", &ds.obj, |_| {});
        match r {
            Ok(_) => RResult::ROk(()),
            // a server without RefreshDatastore (or a datastore reference it does not
            // know) has nothing to refresh: the next read asks it again anyway
            Err(e)
                if matches!(
                    e.fault(),
                    Some("MethodNotFound") | Some("NotImplemented") | Some("NotSupported")
                ) =>
            {
                RResult::ROk(())
            }
            Err(e) => RResult::RErr(vim_err(api, e)),
        }
    }
    fn list_volumes(&self, pool: RStr<'_>, flags: u32) -> PResult<RVec<OwnedVol>> {
        let api = "virStoragePoolListAllVolumes";
        if flags != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_STORAGE));
        }
        r(self
            .0
            .datastore(api, pool.as_str())
            .and_then(|d| self.0.search(api, &d))
            .map(|v| v.iter().map(Volume::owned).collect()))
    }
    fn volume_by_name(&self, pool: RStr<'_>, name: RStr<'_>) -> PResult<OwnedVol> {
        r(self
            .0
            .volume("virStorageVolLookupByName", pool.as_str(), name.as_str())
            .map(|v| v.owned()))
    }
    fn volume_by_key(&self, key: RStr<'_>) -> PResult<OwnedVol> {
        r(self
            .0
            .volume_at("virStorageVolLookupByKey", key.as_str())
            .map(|v| v.owned()))
    }
    fn volume_by_path(&self, path: RStr<'_>) -> PResult<OwnedVol> {
        r(self
            .0
            .volume_at("virStorageVolLookupByPath", path.as_str())
            .map(|v| v.owned()))
    }
    fn volume_info(&self, pool: RStr<'_>, name: RStr<'_>, flags: u32) -> PResult<OwnedVolInfo> {
        let api = "virStorageVolGetInfoFlags";
        if flags != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_STORAGE));
        }
        r(self
            .0
            .volume(api, pool.as_str(), name.as_str())
            .map(|v| OwnedVolInfo {
                kind: 0,
                capacity: v.capacity,
                allocation: v.allocation,
            }))
    }
    fn volume_xml(&self, pool: RStr<'_>, name: RStr<'_>, flags: u32) -> PResult<RString> {
        let api = "virStorageVolGetXMLDesc";
        if flags != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_STORAGE));
        }
        r(self
            .0
            .volume(api, pool.as_str(), name.as_str())
            .map(|v| v.xml().into()))
    }
    fn volume_path(&self, pool: RStr<'_>, name: RStr<'_>) -> PResult<RString> {
        r(self
            .0
            .volume("virStorageVolGetPath", pool.as_str(), name.as_str())
            .map(|v| v.ds_path().into()))
    }
    fn create_volume(&self, pool: RStr<'_>, xml: RStr<'_>, flags: u32) -> PResult<OwnedVol> {
        r(self.0.create_volume(pool.as_str(), xml.as_str(), flags))
    }
    fn create_volume_from(
        &self,
        pool: RStr<'_>,
        xml: RStr<'_>,
        from_pool: RStr<'_>,
        from_name: RStr<'_>,
        flags: u32,
    ) -> PResult<OwnedVol> {
        r(self.0.create_volume_from(
            pool.as_str(),
            xml.as_str(),
            from_pool.as_str(),
            from_name.as_str(),
            flags,
        ))
    }
    fn delete_volume(&self, pool: RStr<'_>, name: RStr<'_>, flags: u32) -> PResult<()> {
        r(self.0.delete_volume(pool.as_str(), name.as_str(), flags))
    }
}

// ---------------------------------------------------------------------------------------
// Virtual switches as networks.

/// One virtual switch of the host, with its port groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VSwitch {
    pub name: String,
    /// `key-vim.host.VirtualSwitch-NAME` (the simulator leaves it empty).
    pub key: String,
    /// Physical NICs (`vmnic0`).
    pub pnics: Vec<String>,
    /// Port group names.
    pub portgroups: Vec<String>,
}

impl VSwitch {
    fn uuid(&self) -> uuid::Uuid {
        let id = if self.key.is_empty() {
            format!("key-vim.host.VirtualSwitch-{}", self.name)
        } else {
            self.key.clone()
        };
        derived_uuid("vswitch", &id)
    }

    fn owned(&self) -> OwnedNetwork {
        OwnedNetwork {
            name: self.name.as_str().into(),
            uuid: abi(self.uuid()),
            active: true,
            persistent: true,
            autostart: true,
        }
    }

    /// The network XML: a bridge to the switch's physical NICs (none: an isolated
    /// network) with one `<portgroup>` per port group, as libvirt's esx driver.
    pub fn xml(&self) -> String {
        let mut n = Element::new("network");
        n.push(Element::new("name").with_text(&self.name));
        n.push(Element::new("uuid").with_text(&self.uuid().to_string()));
        if !self.pnics.is_empty() {
            let mut f = Element::new("forward").with_attr("mode", "bridge");
            for p in &self.pnics {
                f.push(Element::new("interface").with_attr("dev", p));
            }
            n.push(f);
        }
        for pg in &self.portgroups {
            n.push(Element::new("portgroup").with_attr("name", pg));
        }
        n.to_xml_string()
    }
}

fn strip_key<'a>(s: &'a str, prefix: &str) -> &'a str {
    s.strip_prefix(prefix).unwrap_or(s)
}

impl Shared {
    /// The host's virtual switches: `configManager.networkSystem` of the connection's host,
    /// then that `HostNetworkSystem`'s `networkInfo.vswitch` and `networkInfo.portgroup`.
    pub fn vswitches(&self, api: &str) -> Result<Vec<VSwitch>, PluginError> {
        let fail = |e| in_domain(vim_err(api, e), FROM_NETWORK);
        let host = self.inv.host.as_ref().ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                format!("{api}: the compute resource has no host"),
            )
        })?;
        let h = self
            .session
            .retrieve_one(host, &["configManager.networkSystem"])
            .map_err(fail)?;
        let ns = h
            .get("configManager.networkSystem")
            .and_then(Node::moref)
            .ok_or_else(|| {
                err(
                    ErrorCode::OperationFailed,
                    format!("{api}: the host has no network system"),
                )
            })?;
        let info = self
            .session
            .retrieve_one(&ns, &["networkInfo.vswitch", "networkInfo.portgroup"])
            .map_err(fail)?;
        // port group keys → names, and names by switch (the simulator lists names in the
        // switch's `portgroup`, ESX lists keys)
        let mut pg_names: Vec<(String, String, String)> = Vec::new();
        if let Some(pgs) = info.get("networkInfo.portgroup") {
            for pg in &pgs.children {
                let name = pg
                    .path("spec/name")
                    .map(|n| n.text.trim().to_string())
                    .unwrap_or_default();
                let switch = pg
                    .path("spec/vswitchName")
                    .map(|n| n.text.trim().to_string())
                    .unwrap_or_default();
                pg_names.push((pg.text_of("key").unwrap_or("").to_string(), name, switch));
            }
        }
        let mut out = Vec::new();
        if let Some(sws) = info.get("networkInfo.vswitch") {
            for sw in &sws.children {
                let Some(name) = sw.text_of("name").filter(|n| !n.is_empty()) else {
                    continue;
                };
                let mut portgroups: Vec<String> = sw
                    .children_named("portgroup")
                    .map(|p| {
                        let t = p.text.trim();
                        pg_names
                            .iter()
                            .find(|(k, _, _)| k == t)
                            .map(|(_, n, _)| n.clone())
                            .unwrap_or_else(|| strip_key(t, "key-vim.host.PortGroup-").to_string())
                    })
                    .filter(|n| !n.is_empty())
                    .collect();
                // port groups naming this switch the switch does not list
                for (_, n, s) in &pg_names {
                    if s == name && !n.is_empty() && !portgroups.contains(n) {
                        portgroups.push(n.clone());
                    }
                }
                portgroups.sort();
                let mut pnics: Vec<String> = sw
                    .children_named("pnic")
                    .map(|p| strip_key(p.text.trim(), "key-vim.host.PhysicalNic-").to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
                pnics.sort();
                out.push(VSwitch {
                    name: name.to_string(),
                    key: sw.text_of("key").unwrap_or("").to_string(),
                    pnics,
                    portgroups,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn vswitch(&self, api: &str, name: &str) -> Result<VSwitch, PluginError> {
        self.vswitches(api)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| no_net(&format!("no network with matching name '{name}'")))
    }
}

struct Networks(Shared);

impl ConnNetwork for Networks {
    fn list_networks(&self, flags: u32) -> PResult<RVec<OwnedNetwork>> {
        let api = "virConnectListAllNetworks";
        if flags & !63 != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_NETWORK));
        }
        self.0
            .vswitches(api)
            .map(|v| v.iter().map(VSwitch::owned).collect())
            .into()
    }
    fn network_by_name(&self, name: RStr<'_>) -> PResult<OwnedNetwork> {
        self.0
            .vswitch("virNetworkLookupByName", name.as_str())
            .map(|s| s.owned())
            .into()
    }
    fn network_by_uuid(&self, uuid: Uuid) -> PResult<OwnedNetwork> {
        let want = uuid::Uuid::from_bytes(uuid.0);
        self.0
            .vswitches("virNetworkLookupByUUID")
            .and_then(|v| {
                v.iter()
                    .find(|s| s.uuid() == want)
                    .map(VSwitch::owned)
                    .ok_or_else(|| no_net(&format!("no network with matching uuid '{want}'")))
            })
            .into()
    }
    fn network_xml(&self, name: RStr<'_>, flags: u32) -> PResult<RString> {
        let api = "virNetworkGetXMLDesc";
        // VIR_NETWORK_XML_INACTIVE: the same document
        if flags & !1 != 0 {
            return RResult::RErr(flags_err(api, flags, FROM_NETWORK));
        }
        self.0
            .vswitch(api, name.as_str())
            .map(|s| s.xml().into())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_paths_split_as_esx_and_the_simulator_write_them() {
        assert_eq!(
            split_ds_path("[ds1] vm/disk.vmdk"),
            Some(("ds1", "vm/disk.vmdk"))
        );
        assert_eq!(split_ds_path("[LocalDS_0]/vm0"), Some(("LocalDS_0", "vm0")));
        assert_eq!(split_ds_path("[ds 2]"), Some(("ds 2", "")));
        assert_eq!(split_ds_path("vm/disk.vmdk"), None);
    }

    #[test]
    fn derived_uuids_are_stable_and_distinct() {
        let a = derived_uuid("datastore", "ds:///vmfs/volumes/1/");
        assert_eq!(a, derived_uuid("datastore", "ds:///vmfs/volumes/1/"));
        assert_ne!(a, derived_uuid("datastore", "ds:///vmfs/volumes/2/"));
        assert_ne!(a, derived_uuid("vswitch", "ds:///vmfs/volumes/1/"));
    }

    #[test]
    fn a_nas_datastore_is_a_netfs_pool() {
        let d = Datastore {
            obj: MoRef::new("Datastore", "datastore-1"),
            name: "nfs1".into(),
            url: "ds:///vmfs/volumes/abc/".into(),
            capacity: 100,
            free: 40,
            accessible: true,
            pool_type: "netfs",
            path: "/vmfs/volumes/abc".into(),
            nas: Some(("filer".into(), "/export".into(), "nfs".into())),
            browser: None,
        };
        let x = d.xml();
        assert!(
            x.contains("<pool type=\"netfs\">") || x.contains("<pool type='netfs'>"),
            "{x}"
        );
        assert!(
            x.contains("filer") && x.contains("/export") && x.contains("nfs"),
            "{x}"
        );
        assert!(x.contains(">60</allocation>"), "{x}");
    }
}
