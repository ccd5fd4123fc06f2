//! The domain document (`<domain>`): validation, generic post-parse defaults
//! and libvirt-style formatting on top of the lossless [`Element`] tree.

use crate::FormatOptions;
use crate::error::XmlError;
use crate::tree::{Element, Node};
use crate::util::{generate_mac, parse_u64, parse_uuid, req_attr, scale_to_bytes};

/// Hypervisor types accepted in `<domain type=...>` (domaincommon.rng).
pub const DOMAIN_TYPES: &[&str] = &[
    "qemu", "kqemu", "kvm", "xen", "lxc", "uml", "openvz", "test", "vmware", "hyperv", "vbox",
    "phyp", "vz", "bhyve", "hvf",
];

/// Options for parsing a domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Generate predictable MACs (`52:54:00:00:00:00`, counting up) instead
    /// of random ones; for tests.
    pub deterministic_macs: bool,
    /// Do not add `<boot dev='hd'/>` to an HVM guest without any boot
    /// configuration (drivers such as VMware's have no boot order).
    pub no_default_boot: bool,
}

/// A validated domain definition.  The normalised tree is the storage; the
/// accessors read from and write to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    root: Element,
}

impl Domain {
    /// Parses, validates and applies generic post-parse defaults.
    pub fn parse(xml: &str) -> Result<Domain, XmlError> {
        Domain::from_element(Element::parse(xml)?)
    }

    /// [`Domain::parse`] with explicit options.
    pub fn parse_with(xml: &str, opts: &ParseOptions) -> Result<Domain, XmlError> {
        Domain::from_element_with(Element::parse(xml)?, opts)
    }

    /// Validates an already parsed tree and applies generic defaults.
    pub fn from_element(root: Element) -> Result<Domain, XmlError> {
        Domain::from_element_with(root, &ParseOptions::default())
    }

    /// [`Domain::from_element`] with explicit options.
    pub fn from_element_with(mut root: Element, opts: &ParseOptions) -> Result<Domain, XmlError> {
        if root.name() != "domain" {
            return Err(XmlError::invalid(
                root.name().to_string(),
                "unexpected root element, expected 'domain'",
            ));
        }
        crate::normalize::normalize_domain(&mut root, opts)?;
        Ok(Domain { root })
    }

    /// The normalised tree.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// The normalised tree, mutably (the caller keeps it valid).
    pub fn element_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// Consumes the domain, returning its tree.
    pub fn into_element(self) -> Element {
        self.root
    }

    /// `<name>`.
    pub fn name(&self) -> &str {
        self.root
            .child("name")
            .and_then(|n| n.text_ref())
            .unwrap_or("")
    }

    /// Renames the domain.
    pub fn set_name(&mut self, name: &str) {
        if let Some(n) = self.root.child_mut("name") {
            n.set_text(name);
        }
    }

    /// `<uuid>` (always present after parsing).
    pub fn uuid(&self) -> uuid::Uuid {
        self.root
            .child("uuid")
            .and_then(|n| parse_uuid(&n.text()))
            .unwrap_or_else(uuid::Uuid::nil)
    }

    /// Replaces the UUID.
    pub fn set_uuid(&mut self, u: uuid::Uuid) {
        set_child_text(&mut self.root, "uuid", &u.to_string());
    }

    /// `<title>` when present.
    pub fn title(&self) -> Option<String> {
        self.root.child("title").map(|t| t.text())
    }

    /// `<description>` when present.
    pub fn description(&self) -> Option<String> {
        self.root.child("description").map(|t| t.text())
    }

    /// `<domain type=...>`.
    pub fn domain_type(&self) -> &str {
        self.root.attr("type").unwrap_or("")
    }

    /// Runtime id (`<domain id=...>`) when running.
    pub fn id(&self) -> Option<i32> {
        self.root
            .attr("id")
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|v| *v >= 0)
    }

    /// Sets or clears the runtime id; the live form shows `id='N'`.
    pub fn set_id(&mut self, id: Option<i32>) {
        match id {
            Some(v) if v >= 0 => {
                let pos = self
                    .root
                    .attrs()
                    .iter()
                    .position(|(k, _)| k == "type")
                    .map_or(0, |p| p + 1);
                self.root.insert_attr(pos, "id", &v.to_string());
            }
            _ => self.root.remove_attr("id"),
        }
    }

    /// `<memory>` in KiB.
    pub fn memory_kib(&self) -> u64 {
        kib_of(self.root.child("memory"))
    }

    /// Sets `<memory>` (KiB).
    pub fn set_memory_kib(&mut self, kib: u64) {
        set_kib(&mut self.root, "memory", kib);
    }

    /// `<currentMemory>` in KiB (defaults to `<memory>`).
    pub fn current_memory_kib(&self) -> u64 {
        match self.root.child("currentMemory") {
            Some(c) => kib_of(Some(c)),
            None => self.memory_kib(),
        }
    }

    /// Sets `<currentMemory>` (KiB).
    pub fn set_current_memory_kib(&mut self, kib: u64) {
        set_kib(&mut self.root, "currentMemory", kib);
    }

    /// `<maxMemory>` in KiB and its slot count, when present.
    pub fn max_memory_kib(&self) -> Option<(u64, Option<u32>)> {
        let m = self.root.child("maxMemory")?;
        Some((
            kib_of(Some(m)),
            m.attr("slots").and_then(|s| s.trim().parse().ok()),
        ))
    }

    /// `<vcpu>` (maximum vCPUs, default 1).
    pub fn max_vcpus(&self) -> u32 {
        self.root
            .child("vcpu")
            .and_then(|v| v.text().trim().parse::<u32>().ok())
            .unwrap_or(1)
    }

    /// `<vcpu current=...>` (defaults to the maximum).
    pub fn current_vcpus(&self) -> u32 {
        self.root
            .child("vcpu")
            .and_then(|v| v.attr("current"))
            .and_then(|c| c.trim().parse::<u32>().ok())
            .unwrap_or_else(|| self.max_vcpus())
    }

    /// `<os><type>` content, e.g. `hvm`.
    pub fn os_type(&self) -> &str {
        self.root
            .child("os")
            .and_then(|o| o.child("type"))
            .and_then(|t| t.text_ref())
            .unwrap_or("")
    }

    /// `<os><type arch=...>`.
    pub fn os_arch(&self) -> Option<&str> {
        self.root
            .child("os")
            .and_then(|o| o.child("type"))
            .and_then(|t| t.attr("arch"))
    }

    /// `<os><type machine=...>`.
    pub fn os_machine(&self) -> Option<&str> {
        self.root
            .child("os")
            .and_then(|o| o.child("type"))
            .and_then(|t| t.attr("machine"))
    }

    /// `<devices>` children (all device elements in order).
    pub fn devices(&self) -> impl Iterator<Item = &Element> {
        self.root
            .child("devices")
            .into_iter()
            .flat_map(|d| d.elements())
    }

    /// Devices of one kind (`disk`, `interface`, ...).
    pub fn devices_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.root
            .child("devices")
            .into_iter()
            .flat_map(move |d| d.children_named(kind))
    }

    /// `<metadata>`: the raw elements, namespace declarations kept.
    pub fn metadata(&self) -> Option<&Element> {
        self.root.child("metadata")
    }

    /// The metadata element of one namespace URI.
    pub fn metadata_for(&self, uri: &str) -> Option<&Element> {
        self.metadata()?.elements().find(|e| {
            e.attrs()
                .iter()
                .any(|(k, v)| k.starts_with("xmlns") && v == uri)
        })
    }

    /// `<memoryBacking>`.
    pub fn memory_backing(&self) -> Option<&Element> {
        self.root.child("memoryBacking")
    }

    /// `<iothreads>` count (0 when absent).
    pub fn iothreads(&self) -> u32 {
        self.root
            .child("iothreads")
            .and_then(|i| i.text().trim().parse().ok())
            .unwrap_or(0)
    }

    /// `<vcpus>`: per-vCPU `(id, enabled, hotpluggable, order)`.
    pub fn vcpu_list(&self) -> Vec<(u32, bool, bool, Option<u32>)> {
        self.root
            .child("vcpus")
            .into_iter()
            .flat_map(|v| v.children_named("vcpu"))
            .filter_map(|v| {
                Some((
                    v.attr("id")?.trim().parse().ok()?,
                    v.attr("enabled") == Some("yes"),
                    v.attr("hotpluggable") == Some("yes"),
                    v.attr("order").and_then(|o| o.trim().parse().ok()),
                ))
            })
            .collect()
    }

    /// `<cputune>`.
    pub fn cputune(&self) -> Option<&Element> {
        self.root.child("cputune")
    }

    /// `<numatune>`.
    pub fn numatune(&self) -> Option<&Element> {
        self.root.child("numatune")
    }

    /// `<resource><partition>`.
    pub fn resource_partition(&self) -> Option<&str> {
        self.root
            .child("resource")
            .and_then(|r| r.child("partition"))
            .and_then(|p| p.text_ref())
    }

    /// `<sysinfo>` blocks.
    pub fn sysinfo(&self) -> impl Iterator<Item = &Element> {
        self.root.children_named("sysinfo")
    }

    /// `<os>`.
    pub fn os(&self) -> Option<crate::views::Os<'_>> {
        self.root.child("os").map(crate::views::Os)
    }

    /// `<features>`.
    pub fn features(&self) -> Option<crate::views::Features<'_>> {
        self.root.child("features").map(crate::views::Features)
    }

    /// `<cpu>`.
    pub fn cpu(&self) -> Option<crate::views::Cpu<'_>> {
        self.root.child("cpu").map(crate::views::Cpu)
    }

    /// `<clock>`.
    pub fn clock(&self) -> Option<crate::views::Clock<'_>> {
        self.root.child("clock").map(crate::views::Clock)
    }

    /// `<on_poweroff>` (default `destroy`).
    pub fn on_poweroff(&self) -> &str {
        self.root
            .child("on_poweroff")
            .and_then(|e| e.text_ref())
            .unwrap_or("destroy")
    }

    /// `<on_reboot>` (default `restart`).
    pub fn on_reboot(&self) -> &str {
        self.root
            .child("on_reboot")
            .and_then(|e| e.text_ref())
            .unwrap_or("restart")
    }

    /// `<on_crash>` (default `destroy`).
    pub fn on_crash(&self) -> &str {
        self.root
            .child("on_crash")
            .and_then(|e| e.text_ref())
            .unwrap_or("destroy")
    }

    /// `<pm>` settings as `(suspend-to-mem, suspend-to-disk)` enabled flags.
    pub fn pm(&self) -> (Option<bool>, Option<bool>) {
        let get = |n: &str| {
            self.root
                .child("pm")
                .and_then(|p| p.child(n))
                .and_then(|e| e.attr("enabled"))
                .map(|v| v == "yes")
        };
        (get("suspend-to-mem"), get("suspend-to-disk"))
    }

    /// All devices with their kinds, in document order.
    pub fn device_list(&self) -> Vec<crate::views::Device<'_>> {
        self.devices()
            .filter_map(|e| {
                crate::views::DeviceKind::from_name(e.name())
                    .map(|kind| crate::views::Device { kind, element: e })
            })
            .collect()
    }

    /// `<emulator>`.
    pub fn emulator(&self) -> Option<&str> {
        self.devices_of("emulator")
            .next()
            .and_then(|e| e.text_ref())
    }

    /// Disks.
    pub fn disks(&self) -> impl Iterator<Item = crate::views::Disk<'_>> {
        self.devices_of("disk").map(crate::views::Disk)
    }

    /// Network interfaces.
    pub fn interfaces(&self) -> impl Iterator<Item = crate::views::Interface<'_>> {
        self.devices_of("interface").map(crate::views::Interface)
    }

    /// Graphics.
    pub fn graphics(&self) -> impl Iterator<Item = crate::views::Graphics<'_>> {
        self.devices_of("graphics").map(crate::views::Graphics)
    }

    /// Controllers.
    pub fn controllers(&self) -> impl Iterator<Item = crate::views::Controller<'_>> {
        self.devices_of("controller").map(crate::views::Controller)
    }

    /// Host devices.
    pub fn hostdevs(&self) -> impl Iterator<Item = crate::views::Hostdev<'_>> {
        self.devices_of("hostdev").map(crate::views::Hostdev)
    }

    /// Video devices (the primary one first).
    pub fn videos(&self) -> impl Iterator<Item = crate::views::Video<'_>> {
        self.devices_of("video").map(crate::views::Video)
    }

    /// Character devices: serial, parallel, console and channel, in order.
    pub fn chardevs(&self) -> impl Iterator<Item = crate::views::Chardev<'_>> {
        self.devices()
            .filter(|e| matches!(e.name(), "serial" | "parallel" | "console" | "channel"))
            .map(crate::views::Chardev)
    }

    /// Domain-level `<seclabel>`s.
    pub fn seclabels(&self) -> impl Iterator<Item = crate::views::Seclabel<'_>> {
        self.root
            .children_named("seclabel")
            .map(crate::views::Seclabel)
    }

    /// `<qemu:commandline>` arguments.
    pub fn qemu_args(&self) -> Vec<&str> {
        self.root
            .child("qemu:commandline")
            .into_iter()
            .flat_map(|c| c.children_named("qemu:arg"))
            .filter_map(|a| a.attr("value"))
            .collect()
    }

    /// `<qemu:commandline>` environment `(name, value)` pairs.
    pub fn qemu_env(&self) -> Vec<(&str, Option<&str>)> {
        self.root
            .child("qemu:commandline")
            .into_iter()
            .flat_map(|c| c.children_named("qemu:env"))
            .filter_map(|a| Some((a.attr("name")?, a.attr("value"))))
            .collect()
    }

    /// Formats the domain like libvirt.
    pub fn to_xml(&self, opts: &FormatOptions) -> String {
        if !crate::domrules::format_changes(&self.root, opts.inactive, opts.secure) {
            return self.root.to_xml_string();
        }
        let mut root = self.root.clone();
        crate::normalize::format_filter_domain(&mut root, opts);
        root.to_xml_string()
    }

    /// Formats the domain as [`Domain::to_xml`] would after [`Domain::set_id`]`(id)`,
    /// without copying the tree when nothing else changes: what a driver's `XMLDesc`
    /// answers from the definition it keeps, many times a second.
    pub fn to_xml_with_id(&self, opts: &FormatOptions, id: Option<i32>) -> String {
        let id = id.filter(|v| *v >= 0);
        let current = self.root.attr("id");
        // the inactive form never shows the id; an unchanged id needs no variant
        let same = match id {
            None => current.is_none(),
            Some(v) => current.is_some_and(|c| c.parse::<i32>().ok() == Some(v)),
        };
        if same || (opts.inactive && current.is_none()) {
            return self.to_xml(opts);
        }
        if opts.inactive || crate::domrules::format_changes(&self.root, opts.inactive, opts.secure)
        {
            let mut d = self.clone();
            d.set_id(id);
            return d.to_xml(opts);
        }
        let text = id.map(|v| v.to_string());
        let mut attrs: Vec<(&str, &str)> = Vec::with_capacity(self.root.attrs().len() + 1);
        // where set_id puts it: in place of the old one, else after `type`
        for (k, v) in self.root.attrs() {
            match (k.as_str(), &text) {
                ("id", Some(t)) => attrs.push(("id", t)),
                ("id", None) => {}
                _ => attrs.push((k, v)),
            }
        }
        if let (None, Some(t)) = (current, &text) {
            let pos = attrs
                .iter()
                .position(|(k, _)| *k == "type")
                .map_or(0, |p| p + 1);
            attrs.insert(pos, ("id", t));
        }
        self.root.to_xml_string_with_attrs(&attrs)
    }
}

fn kib_of(e: Option<&Element>) -> u64 {
    e.and_then(|m| parse_u64(&m.text())).unwrap_or(0)
}

pub(crate) fn set_child_text(root: &mut Element, name: &str, text: &str) {
    if let Some(c) = root.child_mut(name) {
        c.set_text(text);
    } else {
        root.push(Element::new(name).with_text(text));
        crate::normalize::order_domain_top(root);
    }
}

fn set_kib(root: &mut Element, name: &str, kib: u64) {
    if root.child(name).is_none() {
        root.push(Element::new(name));
    }
    if let Some(c) = root.child_mut(name) {
        c.set_attr("unit", "KiB");
        c.set_text(&kib.to_string());
    }
    crate::normalize::order_domain_top(root);
}

/// Scales a `<memory unit=...>N</memory>`-style element to KiB in place.
pub(crate) fn scale_mem_element(e: &mut Element, path: &str) -> Result<u64, XmlError> {
    let text = e.text();
    let bytes = scale_to_bytes(&text, e.attr("unit"), 1024)
        .map_err(|p| XmlError::invalid(path.to_string(), p))?;
    let kib = bytes.div_ceil(1024);
    e.set_attr("unit", "KiB");
    e.set_text(&kib.to_string());
    Ok(kib)
}

/// Adds `<mac address=...>` to every interface lacking one.
pub(crate) fn ensure_macs(root: &mut Element, opts: &ParseOptions) -> Result<(), XmlError> {
    let mut counter = 0u32;
    let mut next_mac = || {
        if opts.deterministic_macs {
            let c = counter;
            counter += 1;
            format!(
                "52:54:00:{:02x}:{:02x}:{:02x}",
                (c >> 16) & 0xff,
                (c >> 8) & 0xff,
                c & 0xff
            )
        } else {
            generate_mac()
        }
    };
    let Some(devs) = root.child_mut("devices") else {
        return Ok(());
    };
    let snapshot = crate::util::Siblings::of(devs);
    for (k, iface) in devs.children_named_mut("interface").enumerate() {
        let path = snapshot.path("domain/devices", "interface", k);
        match iface.child_mut("mac") {
            Some(mac) => {
                let addr = req_attr(mac, &format!("{path}/mac"), "address")?;
                let canon = crate::util::canonical_mac(addr).ok_or_else(|| {
                    XmlError::invalid(
                        format!("{path}/mac/@address"),
                        format!("invalid mac address '{addr}'"),
                    )
                })?;
                if canon == "00:00:00:00:00:00" {
                    mac.set_attr("address", &next_mac());
                } else if u8::from_str_radix(&canon[..2], 16)
                    .map(|b| b & 1 == 1)
                    .unwrap_or(false)
                {
                    return Err(XmlError::invalid(
                        format!("{path}/mac/@address"),
                        format!("expected unicast mac address, found multicast '{canon}'"),
                    ));
                } else {
                    mac.set_attr("address", &canon);
                }
            }
            None => {
                let mac = Element::new("mac").with_attr("address", &next_mac());
                iface.nodes_mut().insert(0, Node::Element(mac));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "<domain type='kvm'><name>d</name><memory unit='MiB'>512</memory>\
        <os><type>hvm</type></os><devices><interface type='network'><source network='default'/></interface></devices></domain>";

    #[test]
    fn defaults_applied() {
        let d = Domain::parse(MIN).expect("parse");
        assert_eq!(d.name(), "d");
        assert_eq!(d.domain_type(), "kvm");
        assert_eq!(d.memory_kib(), 524288);
        assert_eq!(d.current_memory_kib(), 524288);
        assert_eq!(d.max_vcpus(), 1);
        assert_eq!(d.current_vcpus(), 1);
        assert_eq!(d.os_type(), "hvm");
        assert!(!d.uuid().is_nil());
        let iface = d.devices_of("interface").next().expect("iface");
        assert!(iface.child("mac").and_then(|m| m.attr("address")).is_some());
    }

    #[test]
    fn formatting_with_an_id_equals_setting_it_first() {
        let graphics = "<domain type='qemu' id='7'><name>g</name><memory unit='MiB'>64</memory>\
            <os><type>hvm</type></os><devices><graphics type='vnc' passwd='s'/>\
            <serial type='pty'><source path='/dev/pts/3'/></serial>\
            <description>mixed <b>text</b></description></devices></domain>";
        let id_first = "<domain id='3' type='kvm'><name>n</name><memory>1024</memory><os><type>hvm</type></os></domain>";
        for xml in [MIN, graphics, id_first] {
            let d = Domain::parse(xml).expect("parse");
            for id in [None, Some(-1), Some(0), Some(7), Some(12)] {
                for (inactive, secure) in
                    [(false, false), (false, true), (true, false), (true, true)]
                {
                    let opts = FormatOptions { inactive, secure };
                    let mut slow = d.clone();
                    slow.set_id(id);
                    assert_eq!(
                        d.to_xml_with_id(&opts, id),
                        slow.to_xml(&opts),
                        "{xml} id {id:?} inactive {inactive} secure {secure}"
                    );
                }
            }
        }
    }

    #[test]
    fn live_and_inactive_forms() {
        let mut d = Domain::parse(MIN).expect("parse");
        d.set_id(Some(1));
        assert_eq!(d.id(), Some(1));
        let live = d.to_xml(&FormatOptions::default());
        assert!(live.starts_with("<domain type='kvm' id='1'>"), "{live}");
        let inactive = d.to_xml(&FormatOptions {
            inactive: true,
            secure: false,
        });
        assert!(inactive.starts_with("<domain type='kvm'>"), "{inactive}");
        d.set_id(None);
        assert_eq!(d.id(), None);
    }

    #[test]
    fn errors_name_the_path() {
        let e = Domain::parse(
            "<domain type='kvm'><memory>1</memory><os><type>hvm</type></os></domain>",
        )
        .expect_err("no name");
        assert_eq!(e.to_string(), "domain/name: missing required element");
        let e = Domain::parse("<domain><name>x</name></domain>").expect_err("no type");
        assert_eq!(e.to_string(), "domain/@type: missing required attribute");
        let e = Domain::parse("<domain type='kvm'><name>x</name><uuid>zz</uuid><memory>1</memory><os><type>hvm</type></os></domain>")
            .expect_err("bad uuid");
        assert_eq!(e.path(), "domain/uuid");
    }

    /// Regressions found by the fuzz target: whatever parses must format to
    /// something that parses again.
    #[test]
    fn fuzz_regressions() {
        let base = |devs: &str| {
            format!(
                "<domain type='kvm'><name>f</name><memory>1</memory><os><type>hvm</type></os><devices>{devs}</devices></domain>"
            )
        };
        let e = Domain::parse(&base("<controller index='0'/><controller/>"))
            .expect_err("typeless controller");
        assert_eq!(
            e.to_string(),
            "domain/devices/controller[1]/@type: missing required attribute"
        );
        let x = base(
            "<controller type='pci' model='pcie-root'/><controller type='pci' index='0' model='pci-root'/>",
        );
        if let Ok(d) = Domain::parse(&x) {
            let out = d.to_xml(&FormatOptions::default());
            assert!(Domain::parse(&out).is_ok(), "{out}");
        }
        // text in element-only content is stray (libvirt ignores it); control characters are not XML
        let d = Domain::parse(&base("junk<disk type='file'>x<target dev='vda'/></disk>"))
            .expect("stray text");
        let out = d.to_xml(&FormatOptions::default());
        assert!(!out.contains("junk") && !out.contains(">x<"), "{out}");
        assert_eq!(
            Domain::parse(&out)
                .map(|d2| d2.to_xml(&FormatOptions::default()))
                .ok(),
            Some(out)
        );
        assert!(Domain::parse(&base("<disk type='file'>\u{0}<target dev='vda'/></disk>")).is_err());
        for g in [
            "<graphics type='vnc' port='-2'/>",
            "<graphics type='vnc' port='-2' autoport='no'/>",
        ] {
            let once = Domain::parse(&base(g))
                .expect("graphics")
                .to_xml(&FormatOptions::default());
            let twice = Domain::parse(&once)
                .expect("reparse")
                .to_xml(&FormatOptions::default());
            assert_eq!(once, twice);
        }
        let e = Domain::parse(&base(
            "<controller type='pci' index='-1' model='pci-bridge'/>",
        ))
        .expect_err("negative index");
        assert_eq!(e.path(), "domain/devices/controller/@index");
    }

    #[test]
    fn setters() {
        let mut d = Domain::parse(MIN).expect("parse");
        d.set_memory_kib(1024);
        d.set_current_memory_kib(512);
        assert_eq!(d.memory_kib(), 1024);
        assert_eq!(d.current_memory_kib(), 512);
        let u = uuid::Uuid::new_v4();
        d.set_uuid(u);
        assert_eq!(d.uuid(), u);
        let again = Domain::parse(&d.to_xml(&FormatOptions::default())).expect("reparse");
        assert_eq!(again.uuid(), u);
        assert_eq!(again.current_memory_kib(), 512);
    }
}
