//! Host capabilities (`<capabilities>`) and domain capabilities
//! (`<domainCapabilities>`) documents, built from plain data and formatted
//! like libvirt (see libvirt's formatcaps and formatdomaincaps docs).

use crate::tree::Element;

fn text(name: &str, t: &str) -> Element {
    Element::new(name).with_text(t)
}

/// A host NUMA cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCell {
    pub id: u32,
    pub memory_kib: u64,
    pub cpus: Vec<u32>,
}

/// The host CPU's `<topology>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTopology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

/// The `<host>` part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCaps {
    pub uuid: Option<uuid::Uuid>,
    pub arch: String,
    pub cpu_model: Option<String>,
    pub cpu_vendor: Option<String>,
    pub cpu_topology: Option<CpuTopology>,
    pub cells: Vec<HostCell>,
    pub migration_transports: Vec<String>,
    /// `(model, doi)` security models.
    pub secmodels: Vec<(String, String)>,
}

/// A guest machine type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    pub canonical: Option<String>,
    pub max_cpus: Option<u32>,
    /// Deprecated by the hypervisor (`deprecated='yes'`).
    pub deprecated: bool,
}

/// One `<guest>` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestCaps {
    pub os_type: String,
    pub arch: String,
    pub wordsize: u32,
    pub emulator: Option<String>,
    pub machines: Vec<Machine>,
    /// Domain types (`kvm`, `qemu`, `test`, ...).
    pub domain_types: Vec<String>,
    /// `(feature, default on, toggle)`.
    pub features: Vec<(String, bool, bool)>,
}

/// `<capabilities>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub host: HostCaps,
    pub guests: Vec<GuestCaps>,
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

impl Capabilities {
    /// The document tree.
    pub fn to_element(&self) -> Element {
        let mut root = Element::new("capabilities");
        let mut host = Element::new("host");
        if let Some(u) = self.host.uuid {
            host.push(text("uuid", &u.to_string()));
        }
        let mut cpu = Element::new("cpu");
        cpu.push(text("arch", &self.host.arch));
        if let Some(m) = &self.host.cpu_model {
            cpu.push(text("model", m));
        }
        if let Some(v) = &self.host.cpu_vendor {
            cpu.push(text("vendor", v));
        }
        if let Some(t) = &self.host.cpu_topology {
            cpu.push(
                Element::new("topology")
                    .with_attr("sockets", &t.sockets.to_string())
                    .with_attr("dies", &t.dies.to_string())
                    .with_attr("cores", &t.cores.to_string())
                    .with_attr("threads", &t.threads.to_string()),
            );
        }
        host.push(cpu);
        if !self.host.migration_transports.is_empty() {
            let mut mf = Element::new("migration_features");
            mf.push(Element::new("live"));
            let mut ut = Element::new("uri_transports");
            for t in &self.host.migration_transports {
                ut.push(text("uri_transport", t));
            }
            mf.push(ut);
            host.push(mf);
        }
        if !self.host.cells.is_empty() {
            let mut topo = Element::new("topology");
            let mut cells =
                Element::new("cells").with_attr("num", &self.host.cells.len().to_string());
            for c in &self.host.cells {
                let mut cell = Element::new("cell").with_attr("id", &c.id.to_string());
                cell.push(text("memory", &c.memory_kib.to_string()).with_attr("unit", "KiB"));
                let mut cpus = Element::new("cpus").with_attr("num", &c.cpus.len().to_string());
                for id in &c.cpus {
                    cpus.push(Element::new("cpu").with_attr("id", &id.to_string()));
                }
                cell.push(cpus);
                cells.push(cell);
            }
            topo.push(cells);
            host.push(topo);
        }
        for (model, doi) in &self.host.secmodels {
            let mut s = Element::new("secmodel");
            s.push(text("model", model));
            s.push(text("doi", doi));
            host.push(s);
        }
        root.push(host);
        for g in &self.guests {
            let mut guest = Element::new("guest");
            guest.push(text("os_type", &g.os_type));
            let mut arch = Element::new("arch").with_attr("name", &g.arch);
            arch.push(text("wordsize", &g.wordsize.to_string()));
            if let Some(e) = &g.emulator {
                arch.push(text("emulator", e));
            }
            for m in &g.machines {
                let mut me = text("machine", &m.name);
                if let Some(c) = &m.canonical {
                    me.set_attr("canonical", c);
                }
                if let Some(n) = m.max_cpus {
                    me.set_attr("maxCpus", &n.to_string());
                }
                if m.deprecated {
                    me.set_attr("deprecated", "yes");
                }
                arch.push(me);
            }
            for d in &g.domain_types {
                arch.push(Element::new("domain").with_attr("type", d));
            }
            guest.push(arch);
            if !g.features.is_empty() {
                let mut f = Element::new("features");
                for (name, default, toggle) in &g.features {
                    f.push(
                        Element::new(name.as_str())
                            .with_attr("default", if *default { "on" } else { "off" })
                            .with_attr("toggle", yes_no(*toggle)),
                    );
                }
                guest.push(f);
            }
            root.push(guest);
        }
        root
    }

    /// Formatted like libvirt.
    pub fn to_xml(&self) -> String {
        self.to_element().to_xml_string()
    }
}

/// `<domainCapabilities>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainCaps {
    pub path: String,
    pub domain: String,
    pub machine: Option<String>,
    pub arch: String,
    pub max_vcpus: u32,
    pub iothreads: bool,
    /// `<os><enum name='firmware'>` values.
    pub firmwares: Vec<String>,
    /// `<os><loader>` paths.
    pub loader_values: Vec<String>,
    pub cpu_host_passthrough: bool,
    pub cpu_maximum: bool,
    pub cpu_host_model: Option<String>,
    pub cpu_custom_models: Vec<String>,
    /// `(device element, enum name, values)`: e.g. `("disk", "bus", ["virtio", ...])`.
    pub device_enums: Vec<(String, String, Vec<String>)>,
    /// `(feature, supported)`.
    pub features: Vec<(String, bool)>,
}

fn enum_el(name: &str, values: &[String]) -> Element {
    let mut e = Element::new("enum").with_attr("name", name);
    for v in values {
        e.push(text("value", v));
    }
    e
}

impl DomainCaps {
    /// The document tree.
    pub fn to_element(&self) -> Element {
        let mut root = Element::new("domainCapabilities");
        root.push(text("path", &self.path));
        root.push(text("domain", &self.domain));
        if let Some(m) = &self.machine {
            root.push(text("machine", m));
        }
        root.push(text("arch", &self.arch));
        root.push(Element::new("vcpu").with_attr("max", &self.max_vcpus.to_string()));
        root.push(Element::new("iothreads").with_attr("supported", yes_no(self.iothreads)));
        let mut os = Element::new("os").with_attr("supported", "yes");
        if !self.firmwares.is_empty() {
            os.push(enum_el("firmware", &self.firmwares));
        }
        let mut loader =
            Element::new("loader").with_attr("supported", yes_no(!self.loader_values.is_empty()));
        for v in &self.loader_values {
            loader.push(text("value", v));
        }
        os.push(loader);
        root.push(os);
        let mut cpu = Element::new("cpu");
        cpu.push(
            Element::new("mode")
                .with_attr("name", "host-passthrough")
                .with_attr("supported", yes_no(self.cpu_host_passthrough)),
        );
        cpu.push(
            Element::new("mode")
                .with_attr("name", "maximum")
                .with_attr("supported", yes_no(self.cpu_maximum)),
        );
        let mut hm = Element::new("mode")
            .with_attr("name", "host-model")
            .with_attr("supported", yes_no(self.cpu_host_model.is_some()));
        if let Some(m) = &self.cpu_host_model {
            hm.push(text("model", m).with_attr("fallback", "forbid"));
        }
        cpu.push(hm);
        let mut custom = Element::new("mode")
            .with_attr("name", "custom")
            .with_attr("supported", yes_no(!self.cpu_custom_models.is_empty()));
        for m in &self.cpu_custom_models {
            custom.push(text("model", m).with_attr("usable", "unknown"));
        }
        cpu.push(custom);
        root.push(cpu);
        let mut devices = Element::new("devices");
        let mut kinds: Vec<&str> = Vec::new();
        for (dev, _, _) in &self.device_enums {
            if !kinds.contains(&dev.as_str()) {
                kinds.push(dev);
            }
        }
        for k in kinds {
            let mut d = Element::new(k).with_attr("supported", "yes");
            for (_, name, values) in self.device_enums.iter().filter(|(dv, _, _)| dv == k) {
                d.push(enum_el(name, values));
            }
            devices.push(d);
        }
        root.push(devices);
        let mut feats = Element::new("features");
        for (f, s) in &self.features {
            feats.push(Element::new(f.as_str()).with_attr("supported", yes_no(*s)));
        }
        root.push(feats);
        root
    }

    /// Formatted like libvirt.
    pub fn to_xml(&self) -> String {
        self.to_element().to_xml_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_format() {
        let caps = Capabilities {
            host: HostCaps {
                arch: "x86_64".into(),
                cpu_vendor: Some("Intel".into()),
                cpu_topology: Some(CpuTopology {
                    sockets: 1,
                    dies: 1,
                    cores: 2,
                    threads: 1,
                }),
                cells: vec![HostCell {
                    id: 0,
                    memory_kib: 1024,
                    cpus: vec![0, 1],
                }],
                ..Default::default()
            },
            guests: vec![GuestCaps {
                os_type: "hvm".into(),
                arch: "x86_64".into(),
                wordsize: 64,
                machines: vec![
                    Machine {
                        name: "pc".into(),
                        canonical: Some("pc-i440fx-7.2".into()),
                        max_cpus: Some(255),
                        deprecated: false,
                    },
                    Machine {
                        name: "pc-i440fx-1.4".into(),
                        max_cpus: Some(255),
                        deprecated: true,
                        ..Default::default()
                    },
                ],
                domain_types: vec!["test".into()],
                ..Default::default()
            }],
        };
        let x = caps.to_xml();
        assert!(x.contains("<arch>x86_64</arch>"), "{x}");
        assert!(x.contains("<cells num='1'>"), "{x}");
        assert!(x.contains("<domain type='test'/>"), "{x}");
        assert!(
            x.contains("<vendor>Intel</vendor>\n      <topology sockets='1' dies='1' cores='2' threads='1'/>"),
            "{x}"
        );
        assert!(
            x.contains("<machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>"),
            "{x}"
        );
        assert!(
            x.contains("<machine maxCpus='255' deprecated='yes'>pc-i440fx-1.4</machine>"),
            "{x}"
        );
        assert_eq!(Element::parse(&x).map(|e| e.to_xml_string()).ok(), Some(x));
    }

    #[test]
    fn domain_capabilities_format() {
        let dc = DomainCaps {
            path: "/usr/bin/test".into(),
            domain: "test".into(),
            arch: "x86_64".into(),
            max_vcpus: 4,
            device_enums: vec![(
                "disk".into(),
                "bus".into(),
                vec!["virtio".into(), "sata".into()],
            )],
            features: vec![("gic".into(), false)],
            ..Default::default()
        };
        let x = dc.to_xml();
        assert!(x.contains("<vcpu max='4'/>"), "{x}");
        assert!(x.contains("<enum name='bus'>"), "{x}");
        assert!(x.contains("<gic supported='no'/>"), "{x}");
    }
}
