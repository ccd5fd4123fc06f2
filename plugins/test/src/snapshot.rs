//! In-memory domain snapshots, as libvirt's test driver keeps them: a tree of named
//! snapshots per domain, each holding the definition and the state the domain had, one of
//! them current. Nothing touches a disk; reverting restores the definition and the state.

use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError, state};
use rvirt_xml::{Domain, Element, FormatOptions};

/// `VIR_DOMAIN_SNAPSHOT_LIST_*` bits.
pub mod list {
    /// `ROOTS` on a domain, `DESCENDANTS` on a snapshot (the same bit).
    pub const ROOTS: u32 = 1;
    pub const DESCENDANTS: u32 = 1;
    pub const METADATA: u32 = 1 << 1;
    pub const LEAVES: u32 = 1 << 2;
    pub const NO_LEAVES: u32 = 1 << 3;
    pub const NO_METADATA: u32 = 1 << 4;
    pub const INACTIVE: u32 = 1 << 5;
    pub const ACTIVE: u32 = 1 << 6;
    pub const DISK_ONLY: u32 = 1 << 7;
    pub const INTERNAL: u32 = 1 << 8;
    pub const EXTERNAL: u32 = 1 << 9;
    /// Every bit `virDomainListAllSnapshots` knows, up to `TOPOLOGICAL` (1 << 10): the
    /// lists are in the order the snapshots were taken, which is always topological.
    pub const ALL: u32 = (1 << 11) - 1;
}

/// `VIR_DOMAIN_SNAPSHOT_CREATE_*` bits this driver honours: `HALT` (8) stops the domain
/// after the snapshot, `LIVE` (256), `ATOMIC` (128) and `VALIDATE` (512) change nothing
/// for an in-memory snapshot.
pub mod create {
    pub const HALT: u32 = 8;
    pub const ALLOWED: u32 = HALT | 128 | 256 | 512;
}

/// `VIR_DOMAIN_SNAPSHOT_REVERT_*`: `RUNNING` (1) and `PAUSED` (2) choose the state after
/// the revert, `FORCE` (4) is accepted (nothing here is risky).
pub mod revert {
    pub const RUNNING: u32 = 1;
    pub const PAUSED: u32 = 2;
    pub const ALLOWED: u32 = RUNNING | PAUSED | 4;
}

/// `VIR_DOMAIN_SNAPSHOT_DELETE_*`: `CHILDREN` (1), `METADATA_ONLY` (2, the same as a plain
/// delete here: a snapshot is only metadata), `CHILDREN_ONLY` (4).
pub mod delete {
    pub const CHILDREN: u32 = 1;
    pub const METADATA_ONLY: u32 = 2;
    pub const CHILDREN_ONLY: u32 = 4;
    pub const ALLOWED: u32 = CHILDREN | METADATA_ONLY | CHILDREN_ONLY;
}

/// One snapshot.
#[derive(Clone)]
pub struct Snap {
    pub name: String,
    pub description: Option<String>,
    pub parent: Option<String>,
    /// The domain's state when it was taken (`state::*`).
    pub state: i32,
    pub creation_time: i64,
    /// The definition in force when it was taken.
    pub def: Domain,
}

/// A domain's snapshots, parents before children, and the current one.
#[derive(Clone, Default)]
pub struct Snapshots {
    snaps: Vec<Snap>,
    current: Option<String>,
}

fn err(code: ErrorCode, msg: String) -> PluginError {
    PluginError::new(code, ErrorDomain::Test, msg)
}

fn not_found(name: &str) -> PluginError {
    err(
        ErrorCode::NoDomainSnapshot,
        format!("Domain snapshot not found: no domain snapshot with matching name '{name}'"),
    )
}

fn state_name(s: i32) -> &'static str {
    match s {
        state::RUNNING => "running",
        state::PAUSED => "paused",
        _ => "shutoff",
    }
}

/// The parts of a `<domainsnapshot>` document a new snapshot takes.
pub struct Request {
    pub name: Option<String>,
    pub description: Option<String>,
}

impl Request {
    /// Parses a `<domainsnapshot>` document. Disk and memory choices other than the
    /// driver's own (internal, every disk) are refused by name.
    pub fn parse(xml: &str) -> Result<Request, PluginError> {
        let root = Element::parse(xml).map_err(|e| err(ErrorCode::XmlError, e.to_string()))?;
        if root.name() != "domainsnapshot" {
            return Err(err(
                ErrorCode::XmlError,
                format!(
                    "domainsnapshot: expected a <domainsnapshot> document, found <{}>",
                    root.name()
                ),
            ));
        }
        let name = root.child("name").map(|n| n.text().trim().to_string());
        if let Some(n) = &name
            && (n.is_empty() || n.contains('/') || n.starts_with('.'))
        {
            return Err(err(
                ErrorCode::XmlError,
                format!(
                    "domainsnapshot/name: invalid snapshot name '{n}' (empty, a '/' or a leading '.')"
                ),
            ));
        }
        if let Some(m) = root.child("memory").and_then(|m| m.attr("snapshot"))
            && m != "internal"
            && m != "no"
        {
            return Err(err(
                ErrorCode::ConfigUnsupported,
                format!(
                    "domainsnapshot/memory/@snapshot: '{m}' is not supported by the test driver (internal snapshots only)"
                ),
            ));
        }
        if let Some(disks) = root.child("disks") {
            for d in disks.children_named("disk") {
                if let Some(kind) = d.attr("snapshot")
                    && kind != "internal"
                    && kind != "no"
                {
                    return Err(err(
                        ErrorCode::ConfigUnsupported,
                        format!(
                            "domainsnapshot/disks/disk[@name='{}']/@snapshot: '{kind}' is not supported by the test driver (internal snapshots only)",
                            d.attr("name").unwrap_or("")
                        ),
                    ));
                }
            }
        }
        Ok(Request {
            name,
            description: root
                .child("description")
                .map(|d| d.text().trim().to_string()),
        })
    }
}

impl Snapshots {
    pub fn is_empty(&self) -> bool {
        self.snaps.is_empty()
    }

    pub fn len(&self) -> usize {
        self.snaps.len()
    }

    fn find(&self, name: &str) -> Result<&Snap, PluginError> {
        self.snaps
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| not_found(name))
    }

    fn children_of<'a>(&'a self, name: Option<&'a str>) -> impl Iterator<Item = &'a Snap> + 'a {
        self.snaps
            .iter()
            .filter(move |s| s.parent.as_deref() == name)
    }

    fn is_leaf(&self, name: &str) -> bool {
        self.children_of(Some(name)).next().is_none()
    }

    /// Adds a snapshot of `def` in state `st` as a child of the current one, and makes
    /// it current. Returns its name.
    pub fn take(&mut self, req: Request, def: &Domain, st: i32) -> Result<String, PluginError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // libvirt's default name is the creation time in seconds
        let name = req.name.unwrap_or_else(|| now.to_string());
        if self.snaps.iter().any(|s| s.name == name) {
            return Err(err(
                ErrorCode::OperationInvalid,
                format!(
                    "requested operation is not valid: domain snapshot '{name}' already exists"
                ),
            ));
        }
        self.snaps.push(Snap {
            name: name.clone(),
            description: req.description,
            parent: self.current.clone(),
            state: st,
            creation_time: now,
            def: def.clone(),
        });
        self.current = Some(name.clone());
        Ok(name)
    }

    /// Whether `s` passes the filter groups of `flags` (a group with no bit set passes).
    fn passes(&self, s: &Snap, flags: u32) -> bool {
        use list::*;
        let group = |bits: u32, ok: &dyn Fn(u32) -> bool| {
            let set = flags & bits;
            set == 0 || (0..32).any(|b| set & (1 << b) != 0 && ok(1 << b))
        };
        let leaf = self.is_leaf(&s.name);
        group(LEAVES | NO_LEAVES, &|b| (b == LEAVES) == leaf)
            // every snapshot here has metadata
            && group(METADATA | NO_METADATA, &|b| b == METADATA)
            && group(INACTIVE | ACTIVE, &|b| (b == ACTIVE) == (s.state != state::SHUTOFF))
            // internal, never disk-only or external
            && group(DISK_ONLY | INTERNAL | EXTERNAL, &|b| b == INTERNAL)
    }

    /// The names `virDomainListAllSnapshots` answers for `flags`, parents before children.
    pub fn names(&self, flags: u32) -> Vec<String> {
        self.snaps
            .iter()
            .filter(|s| flags & list::ROOTS == 0 || s.parent.is_none())
            .filter(|s| self.passes(s, flags))
            .map(|s| s.name.clone())
            .collect()
    }

    /// The children (or, with `DESCENDANTS`, every descendant) of `name`.
    pub fn children(&self, name: &str, flags: u32) -> Result<Vec<String>, PluginError> {
        self.find(name)?;
        let mut out = Vec::new();
        let mut parents = vec![name.to_string()];
        while let Some(p) = parents.pop() {
            for c in self.children_of(Some(&p)) {
                if flags & list::DESCENDANTS != 0 {
                    parents.push(c.name.clone());
                }
                if self.passes(c, flags) {
                    out.push(c.name.clone());
                }
            }
        }
        // parents before children: the order they were taken in
        out.sort_by_key(|n| self.snaps.iter().position(|s| &s.name == n));
        Ok(out)
    }

    pub fn current(&self) -> Result<String, PluginError> {
        self.current.clone().ok_or_else(|| {
            err(
                ErrorCode::NoDomainSnapshot,
                "Domain snapshot not found: the domain does not have a current snapshot".into(),
            )
        })
    }

    pub fn parent(&self, name: &str) -> Result<String, PluginError> {
        self.find(name)?.parent.clone().ok_or_else(|| {
            err(
                ErrorCode::NoDomainSnapshot,
                format!("Domain snapshot not found: snapshot '{name}' does not have a parent"),
            )
        })
    }

    /// The `<domainsnapshot>` document of `name` (the domain inside formatted with
    /// `secure`).
    pub fn xml(&self, name: &str, secure: bool) -> Result<String, PluginError> {
        let s = self.find(name)?;
        let mut root = Element::new("domainsnapshot");
        root.push(Element::new("name").with_text(&s.name));
        if let Some(d) = &s.description {
            root.push(Element::new("description").with_text(d));
        }
        root.push(Element::new("state").with_text(state_name(s.state)));
        if let Some(p) = &s.parent {
            let mut parent = Element::new("parent");
            parent.push(Element::new("name").with_text(p));
            root.push(parent);
        }
        root.push(Element::new("creationTime").with_text(&s.creation_time.to_string()));
        let memory = if s.state == state::SHUTOFF {
            "no"
        } else {
            "internal"
        };
        root.push(Element::new("memory").with_attr("snapshot", memory));
        let mut disks = Element::new("disks");
        for d in s.def.devices_of("disk") {
            if let Some(t) = d.child("target").and_then(|t| t.attr("dev")) {
                disks.push(
                    Element::new("disk")
                        .with_attr("name", t)
                        .with_attr("snapshot", "internal"),
                );
            }
        }
        root.push(disks);
        let dom_xml = s.def.to_xml(&FormatOptions {
            inactive: true,
            secure,
        });
        let dom =
            Element::parse(&dom_xml).map_err(|e| err(ErrorCode::InternalError, e.to_string()))?;
        root.push(dom);
        if self.current.as_deref() == Some(name) {
            root.push(Element::new("active").with_text("1"));
        }
        Ok(root.to_xml_string())
    }

    /// The snapshot to revert to: its definition and state; it becomes current.
    pub fn revert_to(&mut self, name: &str) -> Result<(Domain, i32), PluginError> {
        let s = self.find(name)?;
        let out = (s.def.clone(), s.state);
        self.current = Some(name.to_string());
        Ok(out)
    }

    /// Deletes `name` (and its descendants with `CHILDREN`, or only them with
    /// `CHILDREN_ONLY`). Children of a deleted snapshot move to its parent; when the
    /// current one goes, its parent becomes current.
    pub fn delete(&mut self, name: &str, flags: u32) -> Result<(), PluginError> {
        let parent = self.find(name)?.parent.clone();
        let mut doomed = Vec::new();
        if flags & (delete::CHILDREN | delete::CHILDREN_ONLY) != 0 {
            let mut stack = vec![name.to_string()];
            while let Some(p) = stack.pop() {
                for c in self.children_of(Some(&p)) {
                    stack.push(c.name.clone());
                    doomed.push(c.name.clone());
                }
            }
        }
        if flags & delete::CHILDREN_ONLY == 0 {
            doomed.push(name.to_string());
        }
        if self.current.as_ref().is_some_and(|c| doomed.contains(c)) {
            self.current = if flags & delete::CHILDREN_ONLY != 0 {
                Some(name.to_string())
            } else {
                parent.clone()
            };
        }
        self.snaps.retain(|s| !doomed.contains(&s.name));
        for s in &mut self.snaps {
            if s.parent.as_deref() == Some(name) && flags & delete::CHILDREN_ONLY == 0 {
                s.parent.clone_from(&parent);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Domain {
        Domain::parse(
            "<domain type='test'><name>d</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>\
             <memory>8192</memory><os><type>hvm</type></os><devices>\
             <disk type='file' device='disk'><source file='/x.img'/><target dev='vda' bus='virtio'/></disk>\
             </devices></domain>",
        )
        .unwrap()
    }

    fn req(name: &str) -> Request {
        Request::parse(&format!(
            "<domainsnapshot><name>{name}</name></domainsnapshot>"
        ))
        .unwrap()
    }

    #[test]
    fn a_tree_of_snapshots_lists_filters_and_deletes_as_libvirt() {
        let mut s = Snapshots::default();
        s.take(req("a"), &def(), state::RUNNING).unwrap();
        s.take(req("b"), &def(), state::SHUTOFF).unwrap();
        s.revert_to("a").unwrap();
        s.take(req("c"), &def(), state::RUNNING).unwrap();
        // a -> {b, c}
        assert_eq!(s.names(0), ["a", "b", "c"]);
        assert_eq!(s.names(list::ROOTS), ["a"]);
        assert_eq!(s.names(list::LEAVES), ["b", "c"]);
        assert_eq!(s.names(list::NO_LEAVES), ["a"]);
        assert_eq!(s.names(list::ACTIVE), ["a", "c"]);
        assert_eq!(s.names(list::INACTIVE), ["b"]);
        assert!(s.names(list::NO_METADATA).is_empty());
        assert!(s.names(list::EXTERNAL).is_empty());
        assert_eq!(s.children("a", 0).unwrap(), ["b", "c"]);
        assert_eq!(s.parent("c").unwrap(), "a");
        assert_eq!(
            s.parent("a").unwrap_err().code,
            ErrorCode::NoDomainSnapshot as i32
        );
        assert_eq!(s.current().unwrap(), "c");
        assert!(
            s.take(req("c"), &def(), state::RUNNING)
                .unwrap_err()
                .message
                .contains("already exists")
        );
        // deleting a reparents its children and, being no longer there, is not current
        s.delete("a", 0).unwrap();
        assert_eq!(s.names(list::ROOTS), ["b", "c"]);
        s.delete("c", 0).unwrap();
        assert!(s.current().is_err(), "c's parent was gone: no current");
        s.take(req("d"), &def(), state::RUNNING).unwrap();
        s.take(req("e"), &def(), state::RUNNING).unwrap();
        s.delete("d", delete::CHILDREN_ONLY).unwrap();
        assert_eq!(s.names(0), ["b", "d"]);
        assert_eq!(s.current().unwrap(), "d");
        s.delete("d", delete::CHILDREN).unwrap();
        assert_eq!(s.names(0), ["b"]);
    }

    #[test]
    fn the_document_names_its_parts_and_bad_requests_name_the_field() {
        let mut s = Snapshots::default();
        s.take(req("a"), &def(), state::RUNNING).unwrap();
        s.take(
            Request::parse(
                "<domainsnapshot><name>b</name><description>two</description></domainsnapshot>",
            )
            .unwrap(),
            &def(),
            state::PAUSED,
        )
        .unwrap();
        // the document without the indentation between elements, double quotes
        let x: String = s
            .xml("b", false)
            .unwrap()
            .lines()
            .map(str::trim)
            .collect::<String>()
            .replace('\'', "\"");
        for part in [
            "<name>b</name>",
            "<description>two</description>",
            "<state>paused</state>",
            "<parent><name>a</name></parent>",
            "<memory snapshot=\"internal\"/>",
            "<disk name=\"vda\" snapshot=\"internal\"/>",
            "<name>d</name>",
            "<active>1</active>",
        ] {
            assert!(x.contains(part), "{part} missing in {x}");
        }
        for (bad, field) in [
            (
                "<domainsnapshot><name>../x</name></domainsnapshot>",
                "domainsnapshot/name",
            ),
            (
                "<domainsnapshot><name>a/b</name></domainsnapshot>",
                "domainsnapshot/name",
            ),
            (
                "<domainsnapshot><memory snapshot='external' file='/m'/></domainsnapshot>",
                "domainsnapshot/memory/@snapshot",
            ),
            (
                "<domainsnapshot><disks><disk name='vda' snapshot='external'/></disks></domainsnapshot>",
                "domainsnapshot/disks/disk[@name='vda']/@snapshot",
            ),
            ("<domain/>", "domainsnapshot"),
            ("<domainsnapshot>", ""),
        ] {
            let Err(e) = Request::parse(bad) else {
                panic!("{bad} was accepted")
            };
            assert!(e.message.contains(field), "{bad}: {}", e.message);
        }
    }
}
