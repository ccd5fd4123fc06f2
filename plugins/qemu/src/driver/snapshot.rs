//! Internal domain snapshots, as libvirt's QEMU driver takes them: the VM state and every
//! writable qcow2 disk of a running or paused domain in one snapshot inside the qcow2
//! images (QMP `snapshot-save` / `snapshot-load` / `snapshot-delete` jobs, QEMU 6.0+),
//! and the disks of a shut-off domain with `qemu-img snapshot -c/-a/-d`.
//!
//! Metadata: one `<domainsnapshot>` document per snapshot, the domain definition inside
//! (secure), in `state/snapshot/DOMAIN/NAME.xml`, replaced whole ([`write_file`]: a
//! temporary file, fsync, rename); the current snapshot carries `<active>1</active>`, as
//! in libvirt's own metadata files. A driver reads them back when it loads its root.
//!
//! Architecture invariant: the disks change only under the domain's job, the metadata
//! is written after the disks, and no monitor command or `qemu-img` runs under the driver
//! lock.

use super::domains::{Durability, State, Stopping, mkdir_private, write_file};
use super::job::Job;
use super::monitor::EVENT_FALLBACK;
use super::{Driver, DriverError, Result, io, perr};
use crate::command::ResolvedVolume;
use rvirt_qmp::Qmp;
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError, event, state};
use rvirt_sdk::tool::{ToolError, Tools};
use rvirt_sdk::util::{no_domain, operation_invalid};
use rvirt_xml::{Domain, Element, FormatOptions};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `VIR_DOMAIN_SNAPSHOT_LIST_*` bits.
pub mod list {
    /// `ROOTS` on a domain, `DESCENDANTS` on a snapshot (the same bit).
    pub const ROOTS: u32 = 1;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS`.
    pub const DESCENDANTS: u32 = 1;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_METADATA`.
    pub const METADATA: u32 = 1 << 1;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_LEAVES`.
    pub const LEAVES: u32 = 1 << 2;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES`.
    pub const NO_LEAVES: u32 = 1 << 3;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA`.
    pub const NO_METADATA: u32 = 1 << 4;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE`.
    pub const INACTIVE: u32 = 1 << 5;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE`.
    pub const ACTIVE: u32 = 1 << 6;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY`.
    pub const DISK_ONLY: u32 = 1 << 7;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_INTERNAL`.
    pub const INTERNAL: u32 = 1 << 8;
    /// `VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL`.
    pub const EXTERNAL: u32 = 1 << 9;
    /// Every bit up to `TOPOLOGICAL` (1 << 10): the lists are always in the order the
    /// snapshots were taken, parents before children.
    pub const ALL: u32 = (1 << 11) - 1;
}

/// `VIR_DOMAIN_SNAPSHOT_CREATE_*` bits the driver honours: `HALT` (8) stops the domain
/// after the snapshot; `ATOMIC` (128: a failed snapshot leaves no trace, always so here)
/// and `VALIDATE` (512: the document is always validated) change nothing.
pub mod create {
    /// `VIR_DOMAIN_SNAPSHOT_CREATE_HALT`.
    pub const HALT: u32 = 8;
    /// `VIR_DOMAIN_SNAPSHOT_CREATE_LIVE`: only for external snapshots (refused by name).
    pub const LIVE: u32 = 256;
    /// What `virDomainSnapshotCreateXML` accepts.
    pub const ALLOWED: u32 = HALT | 128 | LIVE | 512;
}

/// `VIR_DOMAIN_SNAPSHOT_REVERT_*`: `RUNNING` (1) and `PAUSED` (2) choose the state after
/// the revert; `FORCE` (4) is accepted (a revert here never needs it).
pub mod revert {
    /// `VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING`.
    pub const RUNNING: u32 = 1;
    /// `VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED`.
    pub const PAUSED: u32 = 2;
    /// What `virDomainRevertToSnapshot` accepts.
    pub const ALLOWED: u32 = RUNNING | PAUSED | 4;
}

/// `VIR_DOMAIN_SNAPSHOT_DELETE_*`.
pub mod delete {
    /// `VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN`: the descendants go too.
    pub const CHILDREN: u32 = 1;
    /// `VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY`: the disks keep their snapshots.
    pub const METADATA_ONLY: u32 = 2;
    /// `VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY`: only the descendants go.
    pub const CHILDREN_ONLY: u32 = 4;
    /// What `virDomainSnapshotDelete` accepts.
    pub const ALLOWED: u32 = CHILDREN | METADATA_ONLY | CHILDREN_ONLY;
}

/// `VIR_DOMAIN_SNAPSHOT_XML_SECURE`.
pub const XML_SECURE: u32 = 1;

/// libvirt's `*_FROM_SNAPSHOT` event details and state reasons.
mod from_snapshot {
    pub const STARTED: i32 = 3;
    pub const SUSPENDED: i32 = 5;
    pub const RESUMED: i32 = 2;
    pub const RUNNING_REASON: i32 = 4;
    pub const PAUSED_REASON: i32 = 7;
    pub const SHUTOFF_REASON: i32 = 7;
}

/// The longest name a qcow2 snapshot keeps whole (QEMU's snapshot names are 256 bytes
/// with the terminating NUL).
const MAX_NAME: usize = 255;

/// Errors of snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The `<domainsnapshot>` document is malformed or names a bad value.
    #[error("{0}")]
    Document(String),
    /// A snapshot name QEMU, qemu-img or the metadata directory would misread.
    #[error("domainsnapshot/name: invalid snapshot name '{name}': {why}")]
    Name {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A part of the request this driver does not do.
    #[error("{0}")]
    Unsupported(String),
    /// A writable disk that cannot hold an internal snapshot.
    #[error(
        "internal snapshot for disk '{target}' unsupported for storage format '{format}' (only qcow2 disks hold internal snapshots)"
    )]
    DiskFormat {
        /// `<target dev>`.
        target: String,
        /// Its format.
        format: String,
    },
    /// No snapshot of that name.
    #[error("Domain snapshot not found: no domain snapshot with matching name '{0}'")]
    NotFound(String),
    /// No current snapshot.
    #[error("Domain snapshot not found: the domain does not have a current snapshot")]
    NoCurrent,
    /// A root snapshot has no parent.
    #[error("Domain snapshot not found: snapshot '{0}' does not have a parent")]
    NoParent(String),
    /// A state in which the operation is not valid.
    #[error("requested operation is not valid: {0}")]
    Invalid(String),
    /// `qemu-img` failed on a disk.
    #[error("qemu-img snapshot failed on disk '{target}'")]
    Tool {
        /// `<target dev>`.
        target: String,
        /// What failed.
        #[source]
        source: ToolError,
    },
    /// A QMP snapshot job failed.
    #[error("{command} of snapshot '{name}' failed: {error}")]
    Job {
        /// `snapshot-save`, `snapshot-load`, `snapshot-delete`.
        command: &'static str,
        /// The snapshot.
        name: String,
        /// QEMU's error text.
        error: String,
    },
    /// A metadata file does not parse.
    #[error("snapshot metadata '{}' is invalid: {why}", path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl From<SnapshotError> for PluginError {
    fn from(e: SnapshotError) -> PluginError {
        use SnapshotError as S;
        let code = match &e {
            S::Document(_) | S::Name { .. } => ErrorCode::XmlError,
            S::Unsupported(_) | S::DiskFormat { .. } => ErrorCode::ConfigUnsupported,
            S::NotFound(_) | S::NoCurrent | S::NoParent(_) => ErrorCode::NoDomainSnapshot,
            S::Invalid(_) => ErrorCode::OperationInvalid,
            S::Tool { .. } | S::Job { .. } => ErrorCode::OperationFailed,
            S::Metadata { .. } => ErrorCode::InternalError,
        };
        PluginError::new(code, ErrorDomain::Qemu, rvirt_sdk::util::error_chain(&e))
    }
}

impl From<SnapshotError> for DriverError {
    fn from(e: SnapshotError) -> DriverError {
        DriverError::Plugin(e.into())
    }
}

/// Checks a snapshot name given by the user: a file name in the metadata directory and
/// a tag QEMU and qemu-img read back as this snapshot.
pub fn check_name(name: &str) -> std::result::Result<(), SnapshotError> {
    let bad = |why| {
        Err(SnapshotError::Name {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.contains('/') {
        return bad("it contains '/'");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if name.trim() != name {
        return bad("it starts or ends with white space");
    }
    if name.len() > MAX_NAME {
        return bad("it is longer than 255 bytes (qcow2 would cut it)");
    }
    // QEMU and qemu-img look a snapshot up by its id before its name: a name of digits
    // would find another snapshot whose id it is. (The default name, the creation time
    // in seconds, is chosen by the driver: qcow2 ids are small counters.)
    if name.chars().all(|c| c.is_ascii_digit()) {
        return bad("a name of digits only is read as a snapshot id by QEMU");
    }
    Ok(())
}

fn state_name(s: i32) -> &'static str {
    match s {
        state::RUNNING => "running",
        state::PAUSED => "paused",
        _ => "shutoff",
    }
}

fn state_of(name: &str) -> Option<i32> {
    match name {
        "running" => Some(state::RUNNING),
        "paused" => Some(state::PAUSED),
        "shutoff" => Some(state::SHUTOFF),
        _ => None,
    }
}

/// The parts of a `<domainsnapshot>` document a new snapshot takes.
#[derive(Debug, Default)]
pub struct Request {
    /// `<name>`, checked.
    pub name: Option<String>,
    /// `<description>`.
    pub description: Option<String>,
    /// `<memory snapshot>`.
    pub memory: Option<String>,
    /// The `<disks>` with `snapshot='no'`.
    pub excluded: Vec<String>,
}

impl Request {
    /// Parses a `<domainsnapshot>` document. Only internal snapshots are made: external
    /// memory or disks are refused, naming the field.
    pub fn parse(xml: &str) -> std::result::Result<Request, SnapshotError> {
        let root = Element::parse(xml)
            .map_err(|e| SnapshotError::Document(format!("domainsnapshot: {e}")))?;
        if root.name() != "domainsnapshot" {
            return Err(SnapshotError::Document(format!(
                "domainsnapshot: expected a <domainsnapshot> document, found <{}>",
                root.name()
            )));
        }
        let name = root.child("name").map(|n| n.text());
        if let Some(n) = &name {
            check_name(n)?;
        }
        let memory = root
            .child("memory")
            .and_then(|m| m.attr("snapshot"))
            .map(str::to_string);
        if let Some(m) = &memory
            && m != "internal"
            && m != "no"
        {
            return Err(SnapshotError::Unsupported(format!(
                "domainsnapshot/memory/@snapshot: '{m}' is not supported by the qemu driver (internal snapshots only)"
            )));
        }
        let mut excluded = Vec::new();
        if let Some(disks) = root.child("disks") {
            for d in disks.children_named("disk") {
                let dev = d.attr("name").unwrap_or("");
                match d.attr("snapshot") {
                    None | Some("internal") => {}
                    Some("no") => excluded.push(dev.to_string()),
                    Some(kind) => {
                        return Err(SnapshotError::Unsupported(format!(
                            "domainsnapshot/disks/disk[@name='{dev}']/@snapshot: '{kind}' is not supported by the qemu driver (internal snapshots only)"
                        )));
                    }
                }
            }
        }
        Ok(Request {
            name,
            description: root
                .child("description")
                .map(|d| d.text().trim().to_string()),
            memory,
            excluded,
        })
    }
}

/// One snapshot.
#[derive(Clone, Debug)]
pub struct Snap {
    /// Its name (the tag inside the qcow2 images).
    pub name: String,
    /// `<description>`.
    pub description: Option<String>,
    /// The parent's name.
    pub parent: Option<String>,
    /// The domain's state when taken (`state::*`): running and paused ones hold the VM
    /// state.
    pub state: i32,
    /// Seconds since the epoch.
    pub creation_time: i64,
    /// The disks that hold it (`<target dev>`); the others are `snapshot='no'`.
    pub disks: Vec<String>,
    /// The definition in force when taken.
    pub def: Domain,
}

impl Snap {
    fn has_memory(&self) -> bool {
        self.state != state::SHUTOFF
    }

    /// The `<domainsnapshot>` document; `current` adds `<active>1</active>` (the metadata
    /// file's mark of the current snapshot).
    pub fn to_xml(&self, secure: bool, current: bool) -> String {
        let mut root = Element::new("domainsnapshot");
        root.push(Element::new("name").with_text(&self.name));
        if let Some(d) = &self.description {
            root.push(Element::new("description").with_text(d));
        }
        root.push(Element::new("state").with_text(state_name(self.state)));
        if let Some(p) = &self.parent {
            let mut parent = Element::new("parent");
            parent.push(Element::new("name").with_text(p));
            root.push(parent);
        }
        root.push(Element::new("creationTime").with_text(&self.creation_time.to_string()));
        root.push(Element::new("memory").with_attr(
            "snapshot",
            if self.has_memory() { "internal" } else { "no" },
        ));
        let mut disks = Element::new("disks");
        for d in self.def.devices_of("disk") {
            if let Some(t) = d.child("target").and_then(|t| t.attr("dev")) {
                let kind = if self.disks.iter().any(|x| x == t) {
                    "internal"
                } else {
                    "no"
                };
                disks.push(
                    Element::new("disk")
                        .with_attr("name", t)
                        .with_attr("snapshot", kind),
                );
            }
        }
        root.push(disks);
        let dom = self.def.to_xml(&FormatOptions {
            inactive: true,
            secure,
        });
        if let Ok(e) = Element::parse(&dom) {
            root.push(e);
        }
        if current {
            root.push(Element::new("active").with_text("1"));
        }
        root.to_xml_string()
    }

    /// Reads a metadata file's document back; returns the snapshot and whether it is the
    /// current one.
    pub fn from_xml(xml: &str) -> std::result::Result<(Snap, bool), String> {
        let root = Element::parse(xml).map_err(|e| e.to_string())?;
        if root.name() != "domainsnapshot" {
            return Err(format!(
                "expected <domainsnapshot>, found <{}>",
                root.name()
            ));
        }
        let name = root
            .child("name")
            .map(|n| n.text())
            .ok_or("domainsnapshot/name is missing")?;
        let st = root
            .child("state")
            .and_then(|s| state_of(s.text().trim()))
            .ok_or("domainsnapshot/state is missing or unknown")?;
        let dom = root
            .child("domain")
            .ok_or("domainsnapshot/domain is missing")?;
        let def = Domain::parse(&dom.to_xml_string()).map_err(|e| e.to_string())?;
        let disks = root
            .child("disks")
            .into_iter()
            .flat_map(|d| d.children_named("disk"))
            .filter(|d| d.attr("snapshot") == Some("internal"))
            .filter_map(|d| d.attr("name").map(str::to_string))
            .collect();
        Ok((
            Snap {
                name,
                description: root.child("description").map(|d| d.text()),
                parent: root
                    .child("parent")
                    .and_then(|p| p.child("name"))
                    .map(|n| n.text()),
                state: st,
                creation_time: root
                    .child("creationTime")
                    .and_then(|c| c.text().trim().parse().ok())
                    .unwrap_or(0),
                disks,
                def,
            },
            root.child("active").is_some_and(|a| a.text().trim() == "1"),
        ))
    }
}

/// A domain's snapshots, parents before children, and the current one.
#[derive(Clone, Debug, Default)]
pub struct Snapshots {
    snaps: Vec<Snap>,
    current: Option<String>,
}

impl Snapshots {
    /// How many.
    pub fn len(&self) -> usize {
        self.snaps.len()
    }

    /// None?
    pub fn is_empty(&self) -> bool {
        self.snaps.is_empty()
    }

    /// The snapshot `name`.
    pub fn find(&self, name: &str) -> std::result::Result<&Snap, SnapshotError> {
        self.snaps
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| SnapshotError::NotFound(name.to_string()))
    }

    fn children_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Snap> + 'a {
        self.snaps
            .iter()
            .filter(move |s| s.parent.as_deref() == Some(name))
    }

    /// Puts snapshots read from files in order: parents before children, older first;
    /// a snapshot whose parent is gone becomes a root. `current` is the one marked so.
    pub fn from_loaded(mut found: Vec<Snap>, current: Option<String>) -> Snapshots {
        found.sort_by(|a, b| (a.creation_time, &a.name).cmp(&(b.creation_time, &b.name)));
        let names: Vec<String> = found.iter().map(|s| s.name.clone()).collect();
        for s in &mut found {
            if s.parent.as_ref().is_some_and(|p| !names.contains(p)) {
                s.parent = None;
            }
        }
        let mut out: Vec<Snap> = Vec::new();
        while !found.is_empty() {
            let i = found
                .iter()
                .position(|s| {
                    s.parent
                        .as_ref()
                        .is_none_or(|p| out.iter().any(|o| &o.name == p))
                })
                // a cycle (files edited by hand): the oldest left becomes a root
                .unwrap_or(0);
            let mut s = found.remove(i);
            if s.parent
                .as_ref()
                .is_some_and(|p| !out.iter().any(|o| &o.name == p))
            {
                s.parent = None;
            }
            out.push(s);
        }
        let current = current.filter(|c| out.iter().any(|s| &s.name == c));
        Snapshots {
            snaps: out,
            current,
        }
    }

    /// Adds `snap` as a child of the current snapshot and makes it current.
    pub fn add(&mut self, mut snap: Snap) -> std::result::Result<(), SnapshotError> {
        if self.snaps.iter().any(|s| s.name == snap.name) {
            return Err(SnapshotError::Invalid(format!(
                "domain snapshot '{}' already exists",
                snap.name
            )));
        }
        snap.parent.clone_from(&self.current);
        self.current = Some(snap.name.clone());
        self.snaps.push(snap);
        Ok(())
    }

    /// Whether `s` passes the filter groups of `flags` (a group with no bit set passes).
    fn passes(&self, s: &Snap, flags: u32) -> bool {
        use list::*;
        let group = |bits: u32, ok: &dyn Fn(u32) -> bool| {
            let set = flags & bits;
            set == 0 || (0..32).any(|b| set & (1 << b) != 0 && ok(1 << b))
        };
        let leaf = self.children_of(&s.name).next().is_none();
        group(LEAVES | NO_LEAVES, &|b| (b == LEAVES) == leaf)
            // every snapshot here has metadata
            && group(METADATA | NO_METADATA, &|b| b == METADATA)
            && group(INACTIVE | ACTIVE, &|b| (b == ACTIVE) == s.has_memory())
            // internal, never disk-only or external
            && group(DISK_ONLY | INTERNAL | EXTERNAL, &|b| b == INTERNAL)
    }

    /// `virDomainListAllSnapshots`: parents before children.
    pub fn names(&self, flags: u32) -> Vec<String> {
        self.snaps
            .iter()
            .filter(|s| flags & list::ROOTS == 0 || s.parent.is_none())
            .filter(|s| self.passes(s, flags))
            .map(|s| s.name.clone())
            .collect()
    }

    /// `virDomainSnapshotListAllChildren`: the children (with `DESCENDANTS` every
    /// descendant) of `name`.
    pub fn children(
        &self,
        name: &str,
        flags: u32,
    ) -> std::result::Result<Vec<String>, SnapshotError> {
        self.find(name)?;
        let mut under = vec![name.to_string()];
        let mut out = Vec::new();
        // `snaps` is in topological order: one pass finds every descendant
        for s in &self.snaps {
            let Some(p) = &s.parent else { continue };
            let direct = p == name;
            if direct || (flags & list::DESCENDANTS != 0 && under.contains(p)) {
                under.push(s.name.clone());
                if self.passes(s, flags) {
                    out.push(s.name.clone());
                }
            }
        }
        Ok(out)
    }

    /// The current snapshot's name.
    pub fn current(&self) -> std::result::Result<String, SnapshotError> {
        self.current.clone().ok_or(SnapshotError::NoCurrent)
    }

    /// `name`'s parent.
    pub fn parent(&self, name: &str) -> std::result::Result<String, SnapshotError> {
        self.find(name)?
            .parent
            .clone()
            .ok_or_else(|| SnapshotError::NoParent(name.to_string()))
    }

    /// The document of `name` as clients see it.
    pub fn xml(&self, name: &str, secure: bool) -> std::result::Result<String, SnapshotError> {
        let s = self.find(name)?;
        Ok(s.to_xml(secure, self.current.as_deref() == Some(name)))
    }

    /// The snapshots a delete of `name` with `flags` removes, children before parents.
    pub fn doomed(
        &self,
        name: &str,
        flags: u32,
    ) -> std::result::Result<Vec<String>, SnapshotError> {
        self.find(name)?;
        let mut out = Vec::new();
        if flags & (delete::CHILDREN | delete::CHILDREN_ONLY) != 0 {
            out = self.children(name, list::DESCENDANTS)?;
            out.reverse();
        }
        if flags & delete::CHILDREN_ONLY == 0 {
            out.push(name.to_string());
        }
        Ok(out)
    }

    /// Removes `doomed` (from [`Snapshots::doomed`] of `name`): the children of a removed
    /// snapshot move to its parent; when the current one goes, its nearest surviving
    /// ancestor becomes current (libvirt's rule). Returns the names whose metadata
    /// changed (new parent or current mark).
    pub fn remove(&mut self, doomed: &[String]) -> Vec<String> {
        let mut changed = Vec::new();
        let parent_of = |snaps: &[Snap], n: &str| -> Option<String> {
            let mut p = snaps.iter().find(|s| s.name == n)?.parent.clone();
            while let Some(x) = &p {
                if !doomed.contains(x) {
                    break;
                }
                p = snaps.iter().find(|s| &s.name == x)?.parent.clone();
            }
            p
        };
        if let Some(c) = self.current.clone()
            && doomed.contains(&c)
        {
            self.current = parent_of(&self.snaps, &c);
            changed.extend(self.current.clone());
        }
        let new_parents: Vec<(String, Option<String>)> = self
            .snaps
            .iter()
            .filter(|s| !doomed.contains(&s.name))
            .filter(|s| s.parent.as_ref().is_some_and(|p| doomed.contains(p)))
            .map(|s| (s.name.clone(), parent_of(&self.snaps, &s.name)))
            .collect();
        for (n, p) in new_parents {
            if let Some(s) = self.snaps.iter_mut().find(|s| s.name == n) {
                s.parent = p;
                changed.push(n);
            }
        }
        self.snaps.retain(|s| !doomed.contains(&s.name));
        changed.sort();
        changed.dedup();
        changed
    }

    /// Makes `name` current; returns the previous current one.
    pub fn set_current(&mut self, name: &str) -> Option<String> {
        self.current.replace(name.to_string())
    }
}

/// A disk of a snapshot: its `<target dev>`, the qcow2 format node QEMU opened it as
/// (`libvirt-N-format`, see `command::disk`) and, for a local image, its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapDisk {
    /// `<target dev>`.
    pub target: String,
    /// The format node's name in a running QEMU.
    pub node: String,
    /// The image file or device (none for a network disk).
    pub path: Option<String>,
    /// The device's `<alias>` in a live definition.
    pub alias: Option<String>,
}

/// The disks of `def` that hold an internal snapshot: every writable disk, which must be
/// qcow2; read-only disks, CD-ROMs, floppies and those `excluded` (or `snapshot='no'`)
/// are skipped. A transient disk cannot hold one.
pub fn snapshot_disks(
    def: &Domain,
    volumes: &HashMap<String, ResolvedVolume>,
    excluded: &[String],
) -> std::result::Result<Vec<SnapDisk>, SnapshotError> {
    let disks: Vec<&Element> = def.devices_of("disk").collect();
    let mut out = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let target = d
            .child("target")
            .and_then(|t| t.attr("dev"))
            .unwrap_or("")
            .to_string();
        let device = d.attr("device").unwrap_or("disk");
        if device == "cdrom"
            || device == "floppy"
            || d.child("readonly").is_some()
            || d.attr("snapshot") == Some("no")
            || excluded.contains(&target)
        {
            continue;
        }
        if d.child("transient").is_some() {
            return Err(SnapshotError::Unsupported(format!(
                "disk '{target}' is transient: its changes are never kept, so it cannot hold an internal snapshot"
            )));
        }
        let vol = volumes.get(&target);
        let format = d
            .child("driver")
            .and_then(|x| x.attr("type"))
            .map(str::to_string)
            .or_else(|| vol.map(|v| v.format.clone()).filter(|f| !f.is_empty()))
            .unwrap_or_else(|| "raw".into());
        if format != "qcow2" {
            return Err(SnapshotError::DiskFormat { target, format });
        }
        let src = d.child("source");
        let path = match d.attr("type").unwrap_or("file") {
            "file" => src.and_then(|s| s.attr("file")).map(str::to_string),
            "block" => src.and_then(|s| s.attr("dev")).map(str::to_string),
            "volume" => vol
                .filter(|v| v.disk_type == "file" || v.disk_type == "block")
                .map(|v| v.path.clone()),
            _ => None,
        };
        out.push(SnapDisk {
            // the numbering of `command::disk` (the last disk is 1); a running QEMU's
            // own names replace it (`live_nodes`: hot-plugged disks are numbered apart)
            node: format!("libvirt-{}-format", disks.len() - i),
            target,
            path,
            alias: d
                .child("alias")
                .and_then(|a| a.attr("name"))
                .map(str::to_string),
        });
    }
    Ok(out)
}

/// The disks of a live definition with the node names the running QEMU has for them
/// (`query-block`: the node inserted in the device of the disk's alias). A disk QEMU has
/// not opened as qcow2 is refused, naming it.
fn live_nodes(
    q: &Qmp,
    mut disks: Vec<SnapDisk>,
) -> std::result::Result<Vec<SnapDisk>, DriverError> {
    let blocks = q.execute("query-block", None)?;
    for d in &mut disks {
        let Some(alias) = d.alias.clone() else {
            continue;
        };
        let qdev = format!("/machine/peripheral/{alias}/");
        let found = blocks.as_array().into_iter().flatten().find(|b| {
            b["qdev"]
                .as_str()
                .is_some_and(|p| p == alias || p.starts_with(&qdev))
        });
        if let Some(ins) = found.map(|b| &b["inserted"])
            && let Some(node) = ins["node-name"].as_str()
        {
            if ins["drv"].as_str().is_some_and(|f| f != "qcow2") {
                return Err(SnapshotError::DiskFormat {
                    target: d.target.clone(),
                    format: ins["drv"].as_str().unwrap_or_default().to_string(),
                }
                .into());
            }
            d.node = node.to_string();
        }
    }
    Ok(disks)
}

/// The driver's way of running `qemu-img`.
const QEMU_IMG: Tools = Tools {
    hint: " (apt-get install qemu-utils)",
    env: &[],
    noise: |_| false,
};

/// `qemu-img snapshot -OP NAME PATH` on every disk; on a failure the disks done are
/// undone with `undo` (when given) and the error names the disk.
fn qemu_img_all(
    disks: &[SnapDisk],
    op: &str,
    name: &str,
    undo: Option<&str>,
) -> std::result::Result<(), SnapshotError> {
    for (i, d) in disks.iter().enumerate() {
        let Some(path) = &d.path else {
            return Err(SnapshotError::Unsupported(format!(
                "disk '{}' is not a local image: internal snapshots of a shut-off domain run qemu-img on local qcow2 files",
                d.target
            )));
        };
        if let Err(source) = QEMU_IMG.run("qemu-img", &["snapshot", op, name, path]) {
            if let Some(u) = undo {
                for done in &disks[..i] {
                    if let Some(p) = &done.path {
                        let _ = QEMU_IMG.run("qemu-img", &["snapshot", u, name, p]);
                    }
                }
            }
            return Err(SnapshotError::Tool {
                target: d.target.clone(),
                source,
            });
        }
    }
    Ok(())
}

/// Deletes `name` from every disk that has it (a disk without it is left alone, as
/// libvirt's delete of an inactive snapshot).
fn qemu_img_delete(disks: &[SnapDisk], name: &str) -> std::result::Result<(), SnapshotError> {
    for d in disks {
        let Some(path) = &d.path else { continue };
        let tool = |source| SnapshotError::Tool {
            target: d.target.clone(),
            source,
        };
        let info = QEMU_IMG
            .run("qemu-img", &["info", "--output=json", path])
            .map_err(tool)?;
        if !snapshot_tags(&info).iter().any(|t| t == name) {
            continue;
        }
        QEMU_IMG
            .run("qemu-img", &["snapshot", "-d", name, path])
            .map_err(tool)?;
    }
    Ok(())
}

/// The snapshot tags `qemu-img info --output=json` lists for an image.
pub fn snapshot_tags(info: &str) -> Vec<String> {
    serde_json::from_str::<Value>(info)
        .ok()
        .and_then(|v| {
            v["snapshots"].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// How long a QMP snapshot job may take (`RVIRT_QEMU_SNAPSHOT_TIMEOUT_MS`, default 10
/// minutes: the VM state of a large guest is written at disk speed).
fn snapshot_timeout() -> Duration {
    super::job::env_ms("RVIRT_QEMU_SNAPSHOT_TIMEOUT_MS", Duration::from_secs(600))
}

/// Runs a QMP snapshot job (`snapshot-save`, `-load`, `-delete`) and waits for its
/// `JOB_STATUS_CHANGE` to `concluded` (the watch registered before the command), then
/// asks `query-jobs` once for its error and dismisses it, both in one round trip.
/// `query-jobs` is also asked every [`EVENT_FALLBACK`] as a safety net against a missed
/// event. (Asking every millisecond instead competed with the job, which runs in QEMU's
/// main loop.) QEMU's own error ends up in the error.
fn run_job(
    q: &Qmp,
    command: &'static str,
    name: &str,
    mut args: Value,
) -> std::result::Result<(), DriverError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "rvirt-{command}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    args["job-id"] = json!(id);
    args["tag"] = json!(name);
    let concluded = {
        let id = id.clone();
        q.watch(move |e| {
            e.name == "JOB_STATUS_CHANGE"
                && e.data["id"].as_str() == Some(&id)
                && e.data["status"] == "concluded"
        })
    };
    q.execute(command, Some(args))?;
    let deadline = Instant::now() + snapshot_timeout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = concluded.wait(EVENT_FALLBACK.min(left))?.is_some();
        // once concluded, its dismissal goes with the question for its error
        let jobs = q.send("query-jobs", None)?;
        let dismissed = seen.then(|| q.send("job-dismiss", Some(json!({"id": id}))));
        let jobs = jobs.wait(Duration::from_secs(60))?;
        if let Some(d) = dismissed {
            let _ = d.and_then(|d| d.wait(Duration::from_secs(60)));
        }
        let job = jobs
            .as_array()
            .and_then(|a| a.iter().find(|j| j["id"] == json!(id)))
            .cloned();
        let Some(job) = job else {
            return Err(SnapshotError::Job {
                command,
                name: name.to_string(),
                error: format!("job '{id}' vanished"),
            }
            .into());
        };
        if job["status"] == "concluded" {
            if !seen {
                let _ = q.execute("job-dismiss", Some(json!({"id": id})));
            }
            if let Some(e) = job["error"].as_str() {
                return Err(SnapshotError::Job {
                    command,
                    name: name.to_string(),
                    error: e.to_string(),
                }
                .into());
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = q.execute("job-cancel", Some(json!({"id": id})));
            return Err(SnapshotError::Job {
                command,
                name: name.to_string(),
                error: format!("not done after {:?}", snapshot_timeout()),
            }
            .into());
        }
    }
}

/// The `snapshot-save` / `snapshot-load` arguments: the VM state in the first disk, every
/// disk listed.
fn job_args(disks: &[SnapDisk]) -> std::result::Result<Value, SnapshotError> {
    let first = disks.first().ok_or_else(|| {
        SnapshotError::Unsupported(
            "the domain has no writable qcow2 disk to hold the VM state of an internal snapshot"
                .into(),
        )
    })?;
    Ok(json!({
        "vmstate": first.node,
        "devices": disks.iter().map(|d| d.node.clone()).collect::<Vec<_>>(),
    }))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What a snapshot operation needs to know of its domain, read under the driver lock.
struct Facts {
    name: String,
    def: Domain,
    persistent: bool,
    state: i32,
    /// The live definition (a running domain), formatted as a definition.
    live: Option<Domain>,
    /// The live definition itself (aliases included).
    live_full: Option<Domain>,
    qmp: Option<(Qmp, u64)>,
}

impl Driver {
    /// `state/snapshot/DOMAIN`.
    fn snapshot_dir(&self, dom: &str) -> PathBuf {
        self.paths.state.join("snapshot").join(dom)
    }

    fn facts(&self, uuid: uuid::Uuid) -> Result<Facts> {
        let st = self.lock();
        let d = st
            .doms
            .get(&uuid)
            .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
        let live = d.run.as_ref().map(|r| {
            // the live definition as a definition: what a restart from it would run
            let x = r.live.to_xml(&FormatOptions {
                inactive: true,
                secure: true,
            });
            Domain::parse(&x).unwrap_or_else(|_| d.def.clone())
        });
        Ok(Facts {
            name: d.def.name().to_string(),
            def: d.def.clone(),
            persistent: d.persistent,
            state: if d.run.is_some() {
                d.state
            } else {
                state::SHUTOFF
            },
            live,
            live_full: d.run.as_ref().map(|r| r.live.clone()),
            qmp: d
                .run
                .as_ref()
                .and_then(|r| r.qmp.clone().map(|q| (q, r.generation))),
        })
    }

    /// Reads the snapshots of every domain of the root (at load).
    pub(super) fn load_snapshots(&self) {
        let doms: Vec<(uuid::Uuid, String)> = self
            .lock()
            .doms
            .iter()
            .map(|(u, d)| (*u, d.def.name().to_string()))
            .collect();
        for (uuid, name) in doms {
            let dir = self.snapshot_dir(&name);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut found = Vec::new();
            let mut current = None;
            for e in rd.flatten() {
                let p = e.path();
                if let Some(pid) = super::domains::stale_temp_owner(&p)
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "xml") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                // A file of another domain of the same name (undefined without its
                // metadata, then defined again) is not this domain's.
                if let Ok((s, cur)) = Snap::from_xml(&text)
                    && s.def.uuid() == uuid
                {
                    if cur {
                        current = Some(s.name.clone());
                    }
                    found.push(s);
                }
            }
            if !found.is_empty() {
                self.lock()
                    .snapshots
                    .insert(uuid, Snapshots::from_loaded(found, current));
            }
        }
    }

    /// Writes the metadata files of `names` (the ones still there) of domain `dom`.
    fn save_meta(&self, dom: &str, snaps: &Snapshots, names: &[String]) -> Result<()> {
        let dir = self.snapshot_dir(dom);
        mkdir_private(&dir)?;
        for n in names {
            if let Ok(s) = snaps.find(n) {
                let current = snaps.current.as_deref() == Some(n.as_str());
                write_file(
                    &dir.join(format!("{n}.xml")),
                    s.to_xml(true, current).as_bytes(),
                    Durability::Durable,
                )?;
            }
        }
        Ok(())
    }

    /// Under the driver lock, at undefine: a shut-off domain with snapshots keeps its
    /// definition unless `VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA` (2), which removes the
    /// metadata (the disks keep their snapshots). A running domain keeps them.
    pub(super) fn snapshots_at_undefine(
        &self,
        st: &mut State,
        uuid: uuid::Uuid,
        name: &str,
        running: bool,
        flags: u32,
    ) -> Result<()> {
        let n = st.snapshots.get(&uuid).map_or(0, Snapshots::len);
        if n == 0 || running {
            return Ok(());
        }
        if flags & 2 == 0 {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                &format!("cannot delete inactive domain with {n} snapshots"),
            )));
        }
        let dir = self.snapshot_dir(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
        }
        st.snapshots.remove(&uuid);
        Ok(())
    }

    /// Under the driver lock, when a transient domain goes away: its snapshot metadata
    /// goes with it (as libvirt's); the images keep their snapshots.
    pub(super) fn forget_snapshots(&self, st: &mut State, uuid: uuid::Uuid, name: &str) {
        if st.snapshots.remove(&uuid).is_some() {
            let _ = std::fs::remove_dir_all(self.snapshot_dir(name));
        }
    }

    /// Whether the domain has snapshots (for the list filters).
    pub(super) fn snapshot_count(st: &State, uuid: &uuid::Uuid) -> usize {
        st.snapshots.get(uuid).map_or(0, Snapshots::len)
    }

    /// Runs `f` on the domain's snapshots (an empty set when it has none).
    pub fn with_snapshots<T>(
        &self,
        uuid: uuid::Uuid,
        f: impl FnOnce(&Snapshots) -> std::result::Result<T, SnapshotError>,
    ) -> std::result::Result<T, PluginError> {
        let st = self.lock();
        if !st.doms.contains_key(&uuid) {
            return Err(no_domain(ErrorDomain::Qemu, &uuid.to_string()));
        }
        let empty = Snapshots::default();
        f(st.snapshots.get(&uuid).unwrap_or(&empty)).map_err(PluginError::from)
    }

    /// virDomainSnapshotCreateXML.
    pub fn snapshot_create(
        &'static self,
        uuid: uuid::Uuid,
        xml: &str,
        flags: u32,
    ) -> Result<String> {
        let req = Request::parse(xml)?;
        if flags & create::LIVE != 0 {
            return Err(SnapshotError::Unsupported(
                "live snapshot creation is supported only using external snapshots".into(),
            )
            .into());
        }
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let f = self.facts(uuid)?;
        let running = f.live.is_some();
        if running && f.state != state::RUNNING && f.state != state::PAUSED {
            // a crashed guest kept by <on_crash>preserve</on_crash>, a guest shut down
            return Err(SnapshotError::Invalid(format!(
                "cannot take an internal snapshot of a domain in state {}",
                f.state
            ))
            .into());
        }
        if flags & create::HALT != 0 && !f.persistent {
            // halted, it would vanish with its snapshots
            return Err(SnapshotError::Invalid(
                "cannot halt after transient domain snapshot".into(),
            )
            .into());
        }
        let name = req.name.clone().unwrap_or_else(|| now_secs().to_string());
        let exists = self
            .lock()
            .snapshots
            .get(&uuid)
            .is_some_and(|s| s.find(&name).is_ok());
        if exists {
            return Err(
                SnapshotError::Invalid(format!("domain snapshot '{name}' already exists")).into(),
            );
        }
        match (running, req.memory.as_deref()) {
            (true, Some("no")) => {
                return Err(SnapshotError::Unsupported(
                    "domainsnapshot/memory/@snapshot: 'no' on a running domain would be a disk-only snapshot, which is external; internal snapshots of a running domain hold its memory".into(),
                )
                .into());
            }
            (false, Some("internal")) => {
                return Err(SnapshotError::Invalid(
                    "domainsnapshot/memory/@snapshot: a shut-off domain has no memory state to save".into(),
                )
                .into());
            }
            _ => {}
        }
        let def = f.live.clone().unwrap_or_else(|| f.def.clone());
        let snap_state;
        let disks;
        if running {
            let (q, generation) = f.qmp.clone().ok_or_else(|| {
                perr(operation_invalid(
                    ErrorDomain::Qemu,
                    "the domain's monitor is held by another process",
                ))
            })?;
            // The live definition shows volume disks with their resolved format.
            let live = f.live_full.as_ref().unwrap_or(&def);
            disks = live_nodes(&q, snapshot_disks(live, &HashMap::new(), &req.excluded)?)?;
            let args = job_args(&disks)?;
            snap_state = f.state;
            let was_running = f.state == state::RUNNING;
            // QEMU stops and restarts the guest's CPUs around the save: those STOP and
            // RESUME events are no state change (the event thread skips them).
            self.set_quiet(uuid, generation, was_running, None);
            let saved = run_job(&q, "snapshot-save", &name, args);
            self.set_quiet(uuid, generation, false, Some(q.events_read()));
            saved?;
        } else {
            let volumes = self.resolve_volumes(&def)?;
            disks = snapshot_disks(&def, &volumes, &req.excluded)?;
            qemu_img_all(&disks, "-c", &name, Some("-d"))?;
            snap_state = state::SHUTOFF;
        }
        let snap = Snap {
            name: name.clone(),
            description: req.description,
            parent: None,
            state: snap_state,
            creation_time: now_secs(),
            disks: disks.iter().map(|d| d.target.clone()).collect(),
            def,
        };
        {
            let mut st = self.lock();
            let snaps = st.snapshots.entry(uuid).or_default();
            let previous = snaps.current.clone();
            snaps.add(snap)?;
            let mut names = vec![name.clone()];
            names.extend(previous);
            let snaps = snaps.clone();
            drop(st);
            self.save_meta(&f.name, &snaps, &names)?;
        }
        if flags & create::HALT != 0 && running {
            self.stop_in_job(&job, Stopping::FromSnapshot, false)?;
        }
        Ok(name)
    }

    /// Marks the run `generation` as making a snapshot (`on`): its STOP and RESUME events
    /// are skipped; when it ends, the events up to `events_read` are known handled.
    fn set_quiet(&self, uuid: uuid::Uuid, generation: u64, on: bool, events_read: Option<u64>) {
        let mut st = self.lock();
        if let Some(run) = st
            .doms
            .get_mut(&uuid)
            .and_then(|d| d.run.as_mut())
            .filter(|r| r.generation == generation)
        {
            run.resetting = on;
            if let Some(n) = events_read {
                run.events_applied = run.events_applied.max(n);
            }
        }
    }

    /// Sets the state and reason of the running domain and emits `ev`.
    fn set_state(&self, uuid: uuid::Uuid, to: (i32, i32), ev: Option<i32>, detail: i32) {
        let mut st = self.lock();
        let Some(d) = st.doms.get_mut(&uuid) else {
            return;
        };
        let changed = d.state != to.0;
        d.state = to.0;
        d.reason = to.1;
        if let Some(run) = &d.run {
            let _ = self.write_status_locked(d, run);
        }
        let r = d.reference();
        drop(st);
        if let Some(e) = ev.filter(|_| changed) {
            self.emit(vec![(r, e, detail)]);
        }
    }

    /// Replaces the domain's definition by a snapshot's (written to its config file when
    /// persistent).
    fn restore_def(&self, uuid: uuid::Uuid, def: &Domain, persistent: bool) -> Result<()> {
        let def = Self::parse_def(&def.to_xml(&FormatOptions {
            inactive: true,
            secure: true,
        }))?;
        if persistent {
            write_file(
                &self.paths.config_file(def.name()),
                def.to_xml(&FormatOptions {
                    inactive: true,
                    secure: true,
                })
                .as_bytes(),
                Durability::Durable,
            )?;
        }
        if let Some(d) = self.lock().doms.get_mut(&uuid) {
            d.def = def;
        }
        Ok(())
    }

    /// Loads `snap` into the running (paused) domain and lets it run or stay paused.
    fn load_running(&self, uuid: uuid::Uuid, snap: &Snap, run: bool) -> Result<()> {
        let (q, generation) = self.running(uuid)?;
        // the disks as this QEMU has them (aliases, hot-plugged disks' node names)
        let live = self
            .lock()
            .doms
            .get(&uuid)
            .and_then(|d| d.run.as_ref())
            .map(|r| r.live.clone())
            .unwrap_or_else(|| snap.def.clone());
        let disks = snapshot_disks(&live, &HashMap::new(), &[])?
            .into_iter()
            .filter(|d| snap.disks.contains(&d.target))
            .collect::<Vec<_>>();
        let disks = live_nodes(&q, disks)?;
        run_job(&q, "snapshot-load", &snap.name, job_args(&disks)?)?;
        if run {
            self.cpus(uuid, "cont", Some((event::RESUMED, from_snapshot::RESUMED)))?;
        } else {
            self.set_quiet(uuid, generation, false, Some(q.events_read()));
            self.set_state(
                uuid,
                (state::PAUSED, from_snapshot::PAUSED_REASON),
                Some(event::SUSPENDED),
                from_snapshot::SUSPENDED,
            );
        }
        Ok(())
    }

    /// Runs `stop` or `cont` for a revert: the state (`*_FROM_SNAPSHOT` reason) and the
    /// event `ev` come from here, never from the event thread, which skips the STOP or
    /// RESUME (racing with it, it would report a user's pause or resume).
    fn cpus(&self, uuid: uuid::Uuid, command: &str, ev: Option<(i32, i32)>) -> Result<()> {
        let (q, generation) = self.running(uuid)?;
        self.set_quiet(uuid, generation, true, None);
        let done = q.execute(command, None);
        self.set_quiet(uuid, generation, false, Some(q.events_read()));
        done?;
        let to = if command == "cont" {
            (state::RUNNING, from_snapshot::RUNNING_REASON)
        } else {
            (state::PAUSED, from_snapshot::PAUSED_REASON)
        };
        match ev {
            Some((e, detail)) => self.set_state(uuid, to, Some(e), detail),
            None => self.set_state(uuid, to, None, 0),
        }
        Ok(())
    }

    /// Starts the domain paused from its (restored) definition, as part of a revert.
    fn start_for_revert(&'static self, job: &Job<'_>) -> Result<()> {
        self.start_in_job_as(job, 1, Some(from_snapshot::STARTED))?;
        self.set_state(
            job.uuid,
            (state::PAUSED, from_snapshot::PAUSED_REASON),
            None,
            0,
        );
        Ok(())
    }

    /// virDomainRevertToSnapshot.
    pub fn snapshot_revert(&'static self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        if flags & revert::RUNNING != 0 && flags & revert::PAUSED != 0 {
            return Err(perr(PluginError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Qemu,
                "invalid argument: flags 'VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING' and 'VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED' are mutually exclusive",
            )));
        }
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let f = self.facts(uuid)?;
        let snap = {
            let st = self.lock();
            st.snapshots
                .get(&uuid)
                .ok_or_else(|| SnapshotError::NotFound(name.to_string()))?
                .find(name)?
                .clone()
        };
        let running = f.live.is_some();
        let want_run = if flags & revert::RUNNING != 0 {
            true
        } else if flags & revert::PAUSED != 0 {
            false
        } else {
            snap.state == state::RUNNING
        };
        let starts = snap.has_memory() || flags & (revert::RUNNING | revert::PAUSED) != 0;
        if !f.persistent && !starts {
            return Err(SnapshotError::Invalid(
                "transient domain needs to request run or pause to revert to inactive snapshot"
                    .into(),
            )
            .into());
        }
        let same_def = |a: &Domain, b: &Domain| {
            let o = FormatOptions {
                inactive: true,
                secure: true,
            };
            a.to_xml(&o) == b.to_xml(&o)
        };
        if snap.has_memory() {
            let in_place = running
                && f.qmp.is_some()
                && f.live.as_ref().is_some_and(|l| same_def(l, &snap.def));
            if in_place {
                if f.state == state::RUNNING {
                    self.cpus(
                        uuid,
                        "stop",
                        Some((event::SUSPENDED, from_snapshot::SUSPENDED)),
                    )?;
                }
                self.restore_def(
                    uuid,
                    &snap.def,
                    f.persistent && !same_def(&f.def, &snap.def),
                )?;
                self.load_running(uuid, &snap, want_run)?;
            } else {
                if running {
                    self.stop_in_job(&job, Stopping::FromSnapshot, false)?;
                }
                self.restore_def(uuid, &snap.def, f.persistent)?;
                self.start_for_revert(&job)?;
                if let Err(e) = self.load_running(uuid, &snap, want_run) {
                    // a guest whose state did not load is not left running half-restored
                    let _ = self.stop_in_job(&job, Stopping::FromSnapshot, false);
                    return Err(e);
                }
            }
        } else {
            if running {
                self.stop_in_job(&job, Stopping::FromSnapshot, false)?;
            }
            self.restore_def(uuid, &snap.def, f.persistent)?;
            let volumes = self.resolve_volumes(&snap.def)?;
            let disks = snapshot_disks(&snap.def, &volumes, &[])?
                .into_iter()
                .filter(|d| snap.disks.contains(&d.target))
                .collect::<Vec<_>>();
            qemu_img_all(&disks, "-a", &snap.name, None)?;
            if let Some(d) = self.lock().doms.get_mut(&uuid) {
                d.reason = from_snapshot::SHUTOFF_REASON;
            }
            self.record_stop(&f.name, from_snapshot::SHUTOFF_REASON);
            if starts {
                self.start_for_revert(&job)?;
                if want_run {
                    self.cpus(uuid, "cont", None)?;
                } else {
                    self.set_state(
                        uuid,
                        (state::PAUSED, from_snapshot::PAUSED_REASON),
                        Some(event::SUSPENDED),
                        from_snapshot::SUSPENDED,
                    );
                }
            }
        }
        let mut st = self.lock();
        let Some(snaps) = st.snapshots.get_mut(&uuid) else {
            return Ok(());
        };
        let previous = snaps.set_current(name);
        let snaps = snaps.clone();
        drop(st);
        let mut names = vec![name.to_string()];
        names.extend(previous.filter(|p| p != name));
        self.save_meta(&f.name, &snaps, &names)
    }

    /// virDomainSnapshotDelete.
    pub fn snapshot_delete(&'static self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let f = self.facts(uuid)?;
        let (doomed, snaps) = {
            let st = self.lock();
            let snaps = st
                .snapshots
                .get(&uuid)
                .ok_or_else(|| SnapshotError::NotFound(name.to_string()))?;
            (snaps.doomed(name, flags)?, snaps.clone())
        };
        if flags & delete::METADATA_ONLY == 0 && f.live.is_some() && f.qmp.is_none() {
            // qemu-img cannot touch images a running QEMU holds
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "the domain's monitor is held by another process",
            )));
        }
        if flags & delete::METADATA_ONLY == 0 {
            for n in &doomed {
                let s = snaps.find(n)?;
                if let Some((q, _)) = &f.qmp {
                    // the disks as the running QEMU has them, that held the snapshot
                    let live = f.live_full.as_ref().unwrap_or(&f.def);
                    let held: Vec<SnapDisk> = snapshot_disks(live, &HashMap::new(), &[])
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|d| s.disks.contains(&d.target))
                        .collect();
                    let disks: Vec<String> =
                        live_nodes(q, held)?.into_iter().map(|d| d.node).collect();
                    if !disks.is_empty() {
                        run_job(q, "snapshot-delete", n, json!({"devices": disks}))?;
                    }
                } else {
                    let volumes = self.resolve_volumes(&s.def)?;
                    let disks: Vec<SnapDisk> = snapshot_disks(&s.def, &volumes, &[])?
                        .into_iter()
                        .filter(|d| s.disks.contains(&d.target))
                        .collect();
                    qemu_img_delete(&disks, n)?;
                }
            }
        }
        let mut st = self.lock();
        let Some(snaps) = st.snapshots.get_mut(&uuid) else {
            return Ok(());
        };
        let changed = snaps.remove(&doomed);
        let empty = snaps.is_empty();
        let snaps = snaps.clone();
        if empty {
            st.snapshots.remove(&uuid);
        }
        drop(st);
        let dir = self.snapshot_dir(&f.name);
        for n in &doomed {
            let p = dir.join(format!("{n}.xml"));
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io("remove", &p)(e));
            }
        }
        self.save_meta(&f.name, &snaps, &changed)?;
        if empty {
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake QEMU for [`run_job`]: the job concludes `after` its command was answered
    /// (its JOB_STATUS_CHANGE sent then, by a timer; `query-jobs` reports it running
    /// before, concluded with `error` after). Returns the commands it got, in order;
    /// `query-jobs+dismiss` for a `query-jobs` whose `job-dismiss` came before its answer
    /// was sent (the two in flight together).
    fn fake_job_qemu(
        after: Duration,
        error: Option<&'static str>,
    ) -> (Qmp, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let w = Arc::new(Mutex::new(theirs.try_clone().unwrap()));
            let send = |w: &Mutex<std::os::unix::net::UnixStream>, v: Value| {
                w.lock()
                    .unwrap()
                    .write_all(format!("{v}\r\n").as_bytes())
                    .unwrap();
            };
            theirs
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut r = BufReader::new(theirs);
            send(&w, json!({"QMP": {"version": {}, "capabilities": []}}));
            let concluded = Arc::new(AtomicBool::new(false));
            let mut job = String::new();
            let mut seen = Vec::new();
            let mut line = String::new();
            let mut next = |r: &mut BufReader<std::os::unix::net::UnixStream>| {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(n) if n > 0 => Some(serde_json::from_str::<Value>(line.trim()).unwrap()),
                    _ => None,
                }
            };
            let mut queued = None;
            while let Some(cmd) = queued.take().or_else(|| next(&mut r)) {
                let name = cmd["execute"].as_str().unwrap().to_string();
                let ret = match name.as_str() {
                    "snapshot-load" => {
                        job = cmd["arguments"]["job-id"].as_str().unwrap().into();
                        let (w, c, id) = (w.clone(), concluded.clone(), job.clone());
                        // the answer first, then the job runs
                        send(&w, json!({"return": {}, "id": cmd["id"]}));
                        std::thread::spawn(move || {
                            std::thread::sleep(after);
                            let w = w.lock().unwrap();
                            c.store(true, Ordering::SeqCst);
                            let ev = json!({"event": "JOB_STATUS_CHANGE",
                                "data": {"id": id, "status": "concluded"}});
                            let _ = (&*w).write_all(format!("{ev}\r\n").as_bytes());
                        });
                        seen.push(name);
                        continue;
                    }
                    "query-jobs" => {
                        let done = concluded.load(Ordering::SeqCst);
                        let mut j = json!({"id": job, "type": "snapshot-load",
                            "status": if done { "concluded" } else { "running" }});
                        if let (true, Some(e)) = (done, error) {
                            j["error"] = json!(e);
                        }
                        if done {
                            // is the dismissal in flight already?
                            queued = next(&mut r);
                        }
                        json!([j])
                    }
                    _ => json!({}),
                };
                let pipelined = queued
                    .as_ref()
                    .is_some_and(|c| c["execute"] == "job-dismiss");
                match name.as_str() {
                    "qmp_capabilities" => {}
                    "query-jobs" if pipelined => seen.push("query-jobs+dismiss".into()),
                    _ => seen.push(name.clone()),
                }
                send(&w, json!({"return": ret, "id": cmd["id"]}));
                if name == "job-dismiss" {
                    break;
                }
            }
            seen
        });
        let (q, _events) = Qmp::handshake(ours, Duration::from_secs(5)).unwrap();
        (q, server)
    }

    #[test]
    fn a_snapshot_job_ends_on_its_event_and_is_dismissed_with_one_question() {
        // concluded right behind the command's answer: the event is not missed, and one
        // `query-jobs` (for the error) goes out with the dismissal; a wait that missed the
        // event would ask `query-jobs` first and dismiss only after its answer
        let (q, server) = fake_job_qemu(Duration::ZERO, None);
        run_job(&q, "snapshot-load", "s1", json!({})).unwrap();
        q.close();
        assert_eq!(
            server.join().unwrap(),
            ["snapshot-load", "query-jobs+dismiss", "job-dismiss"]
        );
        // QEMU's error of the concluded job is the call's
        let (q, server) = fake_job_qemu(Duration::ZERO, Some("no such snapshot"));
        let e = run_job(&q, "snapshot-load", "s1", json!({})).unwrap_err();
        assert!(e.to_string().contains("no such snapshot"), "{e}");
        q.close();
        assert_eq!(server.join().unwrap().last().unwrap(), "job-dismiss");
    }

    #[test]
    fn a_running_snapshot_job_is_not_polled_every_millisecond() {
        // a job of 300 ms: asked every millisecond it took about 300 `query-jobs` (60 at
        // least with the old back-off to 5 ms); now only the safety net's every 50 ms,
        // and the end comes from the event
        let (q, server) = fake_job_qemu(Duration::from_millis(300), None);
        run_job(&q, "snapshot-load", "s1", json!({})).unwrap();
        q.close();
        let seen = server.join().unwrap();
        let polls = seen.iter().filter(|c| c.starts_with("query-jobs")).count();
        assert!((1..=12).contains(&polls), "{polls} query-jobs: {seen:?}");
        assert_eq!(
            seen[seen.len() - 2..],
            ["query-jobs+dismiss", "job-dismiss"]
        );
    }

    fn def(disks: &str) -> Domain {
        Domain::parse(&format!(
            "<domain type='qemu'><name>d</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>\
             <memory>65536</memory><os><type>hvm</type></os><devices>{disks}</devices></domain>"
        ))
        .unwrap()
    }

    fn qcow2(dev: &str) -> String {
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/{dev}.qcow2'/><target dev='{dev}' bus='virtio'/></disk>"
        )
    }

    fn snap(name: &str, st: i32) -> Snap {
        Snap {
            name: name.into(),
            description: None,
            parent: None,
            state: st,
            creation_time: 1_700_000_000,
            disks: vec!["vda".into()],
            def: def(&qcow2("vda")),
        }
    }

    #[test]
    fn names_qemu_would_misread_are_refused_naming_the_field() {
        for ok in ["s1", "before upgrade", "1733254000x", "a.b", "-x"] {
            check_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            "a/b",
            ".hidden",
            "..",
            "12",
            "a\nb",
            " pad",
            "pad\t",
            long.as_str(),
        ] {
            let e = check_name(bad).expect_err(bad);
            let p = PluginError::from(e);
            assert_eq!(p.code, ErrorCode::XmlError as i32);
            assert!(
                p.message
                    .starts_with("domainsnapshot/name: invalid snapshot name"),
                "{bad:?}: {}",
                p.message
            );
        }
        let e = Request::parse("<domainsnapshot><name>../x</name></domainsnapshot>").unwrap_err();
        assert!(e.to_string().contains("domainsnapshot/name"), "{e}");
        let e = Request::parse(
            "<domainsnapshot><disks><disk name='vda' snapshot='external'/></disks></domainsnapshot>",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("domainsnapshot/disks/disk[@name='vda']/@snapshot"),
            "{e}"
        );
        let e = Request::parse(
            "<domainsnapshot><memory snapshot='external' file='/m'/></domainsnapshot>",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("domainsnapshot/memory/@snapshot"),
            "{e}"
        );
        assert!(
            Request::parse("<domain/>")
                .unwrap_err()
                .to_string()
                .contains("domainsnapshot")
        );
        let r = Request::parse(
            "<domainsnapshot><name>s</name><description>d</description><disks><disk name='vdb' snapshot='no'/></disks></domainsnapshot>",
        )
        .unwrap();
        assert_eq!(
            (r.name.as_deref(), r.excluded.as_slice()),
            (Some("s"), &["vdb".to_string()][..])
        );
    }

    #[test]
    fn disks_are_qcow2_nodes_and_a_raw_writable_disk_is_named() {
        let d = def(&format!(
            "{}<disk type='file' device='cdrom'><driver type='raw'/><source file='/x.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>{}",
            qcow2("vda"),
            qcow2("vdb")
        ));
        let disks = snapshot_disks(&d, &HashMap::new(), &[]).unwrap();
        assert_eq!(
            disks.iter().map(|d| d.target.as_str()).collect::<Vec<_>>(),
            ["vda", "vdb"],
            "the cdrom is skipped"
        );
        // The node names are the ones the command line gives the disks' qcow2 layers.
        let native = crate::command::build(
            &d,
            &crate::command::BuildOptions {
                monitor: crate::command::Monitor::Path("/run/m.sock".into()),
                kvm: Err("no kvm in unit tests".into()),
                check_files: false,
                nvram_dir: "/nv".into(),
                channel_dir: "/ch".into(),
                allocate_vnc: false,
                volumes: Default::default(),
                taps: Default::default(),
                secrets: Default::default(),
            },
        )
        .unwrap();
        for disk in &disks {
            let fmt = native
                .args
                .iter()
                .find(|a| a.contains(&format!("\"node-name\":\"{}\"", disk.node)))
                .unwrap_or_else(|| panic!("{} not on {:?}", disk.node, native.args));
            assert!(fmt.contains("\"driver\":\"qcow2\""), "{fmt}");
            let storage = disk.node.replace("-format", "-storage");
            assert!(fmt.contains(&format!("\"file\":\"{storage}\"")), "{fmt}");
            let file = native
                .args
                .iter()
                .find(|a| a.contains(&format!("\"node-name\":\"{storage}\"")))
                .unwrap();
            let path = disk.path.as_deref().unwrap();
            assert!(file.contains(&format!("\"filename\":\"{path}\"")), "{file}");
        }
        let raw = def(&format!(
            "{}<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/r.img'/><target dev='vdb' bus='virtio'/></disk>",
            qcow2("vda")
        ));
        let e = PluginError::from(snapshot_disks(&raw, &HashMap::new(), &[]).unwrap_err());
        assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32);
        assert!(
            e.message
                .contains("disk 'vdb' unsupported for storage format 'raw'"),
            "{}",
            e.message
        );
        // excluded by the request, the raw disk is left out
        let only = snapshot_disks(&raw, &HashMap::new(), &["vdb".into()]).unwrap();
        assert_eq!(only.len(), 1);
        // no <driver type>: raw, as the command line opens it
        let bare = def("<disk type='file'><source file='/b'/><target dev='vda'/></disk>");
        assert!(snapshot_disks(&bare, &HashMap::new(), &[]).is_err());
    }

    #[test]
    fn metadata_round_trips_through_the_document() {
        let mut s = snap("s1", state::PAUSED);
        s.description = Some("before <upgrade>".into());
        s.parent = Some("s0".into());
        let x = s.to_xml(true, true);
        let (back, current) = Snap::from_xml(&x).unwrap();
        assert!(current);
        assert_eq!(back.name, "s1");
        assert_eq!(back.description.as_deref(), Some("before <upgrade>"));
        assert_eq!(back.parent.as_deref(), Some("s0"));
        assert_eq!(back.state, state::PAUSED);
        assert_eq!(back.creation_time, 1_700_000_000);
        assert_eq!(back.disks, ["vda"]);
        assert_eq!(back.def.uuid(), s.def.uuid());
        let flat: String = x
            .lines()
            .map(str::trim)
            .collect::<String>()
            .replace('\'', "\"");
        for part in [
            "<state>paused</state>",
            "<parent><name>s0</name></parent>",
            "<memory snapshot=\"internal\"/>",
            "<disk name=\"vda\" snapshot=\"internal\"/>",
            "<active>1</active>",
        ] {
            assert!(flat.contains(part), "{part} missing in {flat}");
        }
        let (off, cur) = Snap::from_xml(&snap("s2", state::SHUTOFF).to_xml(false, false)).unwrap();
        assert!(!cur && !off.has_memory());
        assert!(Snap::from_xml("<domainsnapshot><name>x</name></domainsnapshot>").is_err());
    }

    #[test]
    fn a_tree_lists_filters_reloads_and_deletes_as_libvirt() {
        let mut s = Snapshots::default();
        s.add(snap("a", state::RUNNING)).unwrap();
        s.add(snap("b", state::SHUTOFF)).unwrap();
        s.set_current("a");
        s.add(snap("c", state::RUNNING)).unwrap();
        s.add(snap("d", state::RUNNING)).unwrap();
        // a -> {b, c -> d}
        assert_eq!(s.names(0), ["a", "b", "c", "d"]);
        assert_eq!(s.names(list::ROOTS), ["a"]);
        assert_eq!(s.names(list::LEAVES), ["b", "d"]);
        assert_eq!(s.names(list::NO_LEAVES), ["a", "c"]);
        assert_eq!(s.names(list::INACTIVE), ["b"]);
        assert_eq!(s.names(list::ACTIVE | list::INACTIVE), ["a", "b", "c", "d"]);
        assert!(s.names(list::NO_METADATA).is_empty());
        assert!(s.names(list::EXTERNAL).is_empty());
        assert_eq!(s.children("a", 0).unwrap(), ["b", "c"]);
        assert_eq!(s.children("a", list::DESCENDANTS).unwrap(), ["b", "c", "d"]);
        assert_eq!(s.parent("d").unwrap(), "c");
        let e = PluginError::from(s.parent("a").unwrap_err());
        assert_eq!(e.code, ErrorCode::NoDomainSnapshot as i32);
        assert!(
            s.add(snap("c", state::RUNNING))
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        assert_eq!(s.current().unwrap(), "d");

        // reloaded from files in any order: the same tree and current
        let mut files: Vec<Snap> = s.snaps.iter().rev().cloned().collect();
        files[0].creation_time += 5; // d newer
        let r = Snapshots::from_loaded(files, Some("d".into()));
        assert_eq!(r.names(0), ["a", "b", "c", "d"]);
        assert_eq!(r.current().unwrap(), "d");
        assert_eq!(r.children("a", list::DESCENDANTS).unwrap(), ["b", "c", "d"]);

        // CHILDREN_ONLY of c: d goes, c becomes current
        let doomed = s.doomed("c", delete::CHILDREN_ONLY).unwrap();
        assert_eq!(doomed, ["d"]);
        s.remove(&doomed);
        assert_eq!(s.current().unwrap(), "c");
        // a plain delete of a: its children move up
        let doomed = s.doomed("a", 0).unwrap();
        let changed = s.remove(&doomed);
        assert_eq!(changed, ["b", "c"]);
        assert_eq!(s.names(list::ROOTS), ["b", "c"]);
        // CHILDREN of c with c current: nothing current is left
        s.add(snap("e", state::RUNNING)).unwrap();
        let doomed = s.doomed("c", delete::CHILDREN).unwrap();
        assert_eq!(doomed, ["e", "c"]);
        s.remove(&doomed);
        assert_eq!(s.names(0), ["b"]);
        assert!(matches!(s.current(), Err(SnapshotError::NoCurrent)));
    }

    #[test]
    fn qemu_img_info_lists_the_tags() {
        let info = r#"{"virtual-size": 8388608, "filename": "/d.qcow2", "format": "qcow2",
            "snapshots": [{"icount": 0, "vm-state-size": 35651584, "date-sec": 1, "date-nsec": 0,
            "vm-clock-sec": 5, "vm-clock-nsec": 0, "id": "1", "name": "s1"},
            {"id": "2", "name": "before upgrade", "vm-state-size": 0}]}"#;
        assert_eq!(snapshot_tags(info), ["s1", "before upgrade"]);
        assert!(snapshot_tags(r#"{"format": "qcow2"}"#).is_empty());
        assert!(snapshot_tags("not json").is_empty());
    }
}
