//! Typed, borrowed views over the normalised domain tree.  They read the
//! documented model; anything they do not cover stays reachable through
//! [`View::element`].

use crate::tree::Element;
use crate::util::{parse_u64, scale_to_bytes};

/// Common access to the underlying element.
pub trait View<'a> {
    /// The element the view reads.
    fn element(&self) -> &'a Element;
    /// An attribute of the element.
    fn attr(&self, name: &str) -> Option<&'a str> {
        self.element().attr(name)
    }
}

macro_rules! view {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a>(pub &'a Element);
        impl<'a> View<'a> for $name<'a> {
            fn element(&self) -> &'a Element {
                self.0
            }
        }
    };
}

fn child_text<'a>(e: &'a Element, name: &str) -> Option<&'a str> {
    e.child(name).and_then(|c| c.text_ref())
}

fn yes(v: Option<&str>) -> bool {
    matches!(v, Some("yes" | "on"))
}

/// Every device kind of domaincommon.rng, in libvirt's formatting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Emulator,
    Disk,
    Controller,
    Lease,
    Filesystem,
    Interface,
    Smartcard,
    Serial,
    Parallel,
    Console,
    Channel,
    Input,
    Tpm,
    Graphics,
    Sound,
    Audio,
    Video,
    Hostdev,
    Redirdev,
    Redirfilter,
    Hub,
    Watchdog,
    Memballoon,
    Rng,
    Nvram,
    Panic,
    Shmem,
    Memory,
    Iommu,
    Vsock,
    Crypto,
    Pstore,
}

impl DeviceKind {
    /// All kinds with their element names.
    pub const ALL: &'static [(DeviceKind, &'static str)] = &[
        (DeviceKind::Emulator, "emulator"),
        (DeviceKind::Disk, "disk"),
        (DeviceKind::Controller, "controller"),
        (DeviceKind::Lease, "lease"),
        (DeviceKind::Filesystem, "filesystem"),
        (DeviceKind::Interface, "interface"),
        (DeviceKind::Smartcard, "smartcard"),
        (DeviceKind::Serial, "serial"),
        (DeviceKind::Parallel, "parallel"),
        (DeviceKind::Console, "console"),
        (DeviceKind::Channel, "channel"),
        (DeviceKind::Input, "input"),
        (DeviceKind::Tpm, "tpm"),
        (DeviceKind::Graphics, "graphics"),
        (DeviceKind::Sound, "sound"),
        (DeviceKind::Audio, "audio"),
        (DeviceKind::Video, "video"),
        (DeviceKind::Hostdev, "hostdev"),
        (DeviceKind::Redirdev, "redirdev"),
        (DeviceKind::Redirfilter, "redirfilter"),
        (DeviceKind::Hub, "hub"),
        (DeviceKind::Watchdog, "watchdog"),
        (DeviceKind::Memballoon, "memballoon"),
        (DeviceKind::Rng, "rng"),
        (DeviceKind::Nvram, "nvram"),
        (DeviceKind::Panic, "panic"),
        (DeviceKind::Shmem, "shmem"),
        (DeviceKind::Memory, "memory"),
        (DeviceKind::Iommu, "iommu"),
        (DeviceKind::Vsock, "vsock"),
        (DeviceKind::Crypto, "crypto"),
        (DeviceKind::Pstore, "pstore"),
    ];

    /// The kind of a device element name.
    pub fn from_name(name: &str) -> Option<DeviceKind> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }

    /// The element name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("", |(_, n)| n)
    }
}

/// One device: its kind and element.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub kind: DeviceKind,
    pub element: &'a Element,
}

impl<'a> Device<'a> {
    /// `<alias name=...>`.
    pub fn alias(&self) -> Option<&'a str> {
        self.element.child("alias").and_then(|a| a.attr("name"))
    }
    /// `<address>` element.
    pub fn address(&self) -> Option<Address<'a>> {
        self.element.child("address").map(Address)
    }
    /// `<boot order=...>`.
    pub fn boot_order(&self) -> Option<u32> {
        self.element
            .child("boot")
            .and_then(|b| b.attr("order"))
            .and_then(|o| o.trim().parse().ok())
    }
}

view!(
    /// `<address type=...>`.
    Address
);
impl<'a> Address<'a> {
    /// Address type (`pci`, `drive`, `usb`, ...).
    pub fn kind(&self) -> Option<&'a str> {
        self.0.attr("type")
    }
    /// A numeric attribute (hex or decimal).
    pub fn number(&self, name: &str) -> Option<u64> {
        let v = self.0.attr(name)?.trim();
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    }
}

view!(
    /// `<os>`.
    Os
);
/// `<loader>` settings.
#[derive(Debug, Clone, Copy)]
pub struct Loader<'a> {
    pub path: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub readonly: bool,
    pub secure: bool,
}
impl<'a> Os<'a> {
    /// `<type>` content (`hvm`, `linux`, `exe`, ...).
    pub fn os_type(&self) -> Option<&'a str> {
        child_text(self.0, "type")
    }
    /// `<type arch=...>`.
    pub fn arch(&self) -> Option<&'a str> {
        self.0.child("type").and_then(|t| t.attr("arch"))
    }
    /// `<type machine=...>`.
    pub fn machine(&self) -> Option<&'a str> {
        self.0.child("type").and_then(|t| t.attr("machine"))
    }
    /// `<os firmware=...>`.
    pub fn firmware(&self) -> Option<&'a str> {
        self.0.attr("firmware")
    }
    /// `<loader>`.
    pub fn loader(&self) -> Option<Loader<'a>> {
        self.0.child("loader").map(|l| Loader {
            path: l.text_ref(),
            kind: l.attr("type"),
            readonly: yes(l.attr("readonly")),
            secure: yes(l.attr("secure")),
        })
    }
    /// `<nvram>` path (or template).
    pub fn nvram(&self) -> Option<&'a str> {
        self.0
            .child("nvram")
            .and_then(|n| n.text_ref().or_else(|| n.attr("template")))
    }
    /// `<kernel>`.
    pub fn kernel(&self) -> Option<&'a str> {
        child_text(self.0, "kernel")
    }
    /// `<initrd>`.
    pub fn initrd(&self) -> Option<&'a str> {
        child_text(self.0, "initrd")
    }
    /// `<cmdline>`.
    pub fn cmdline(&self) -> Option<&'a str> {
        child_text(self.0, "cmdline")
    }
    /// `<dtb>`.
    pub fn dtb(&self) -> Option<&'a str> {
        child_text(self.0, "dtb")
    }
    /// `<boot dev=...>` in order.
    pub fn boot_devices(&self) -> Vec<&'a str> {
        self.0
            .children_named("boot")
            .filter_map(|b| b.attr("dev"))
            .collect()
    }
    /// `<bootmenu enable=... timeout=...>`.
    pub fn bootmenu(&self) -> Option<(bool, Option<u32>)> {
        self.0.child("bootmenu").map(|b| {
            (
                yes(b.attr("enable")),
                b.attr("timeout").and_then(|t| t.trim().parse().ok()),
            )
        })
    }
    /// `<smbios mode=...>`.
    pub fn smbios_mode(&self) -> Option<&'a str> {
        self.0.child("smbios").and_then(|s| s.attr("mode"))
    }
    /// `<init>` (containers).
    pub fn init(&self) -> Option<&'a str> {
        child_text(self.0, "init")
    }
}

view!(
    /// `<cpu>`.
    Cpu
);
/// `<topology>` counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Topology {
    pub sockets: u32,
    pub dies: u32,
    pub clusters: u32,
    pub cores: u32,
    pub threads: u32,
}
/// A guest NUMA cell.
#[derive(Debug, Clone, Copy)]
pub struct NumaCell<'a> {
    pub id: Option<u32>,
    pub cpus: Option<&'a str>,
    pub memory_kib: Option<u64>,
}
impl<'a> Cpu<'a> {
    /// `mode` (default `custom`).
    pub fn mode(&self) -> &'a str {
        self.0.attr("mode").unwrap_or("custom")
    }
    /// `<model>` name.
    pub fn model(&self) -> Option<&'a str> {
        child_text(self.0, "model")
    }
    /// `<vendor>`.
    pub fn vendor(&self) -> Option<&'a str> {
        child_text(self.0, "vendor")
    }
    /// `<topology>`; absent counts are 1.
    pub fn topology(&self) -> Option<Topology> {
        let t = self.0.child("topology")?;
        let n = |a: &str| t.attr(a).and_then(|v| v.trim().parse().ok()).unwrap_or(1);
        Some(Topology {
            sockets: n("sockets"),
            dies: n("dies"),
            clusters: n("clusters"),
            cores: n("cores"),
            threads: n("threads"),
        })
    }
    /// `<feature policy=... name=...>` pairs.
    pub fn features(&self) -> Vec<(&'a str, &'a str)> {
        self.0
            .children_named("feature")
            .filter_map(|f| Some((f.attr("policy").unwrap_or("require"), f.attr("name")?)))
            .collect()
    }
    /// Guest NUMA cells.
    pub fn numa_cells(&self) -> Vec<NumaCell<'a>> {
        self.0
            .child("numa")
            .into_iter()
            .flat_map(|n| n.children_named("cell"))
            .map(|c| NumaCell {
                id: c.attr("id").and_then(|i| i.trim().parse().ok()),
                cpus: c.attr("cpus"),
                memory_kib: c
                    .attr("memory")
                    .and_then(|m| scale_to_bytes(m, c.attr("unit"), 1024).ok())
                    .map(|b| b.div_ceil(1024)),
            })
            .collect()
    }
}

view!(
    /// `<clock>`.
    Clock
);
/// A `<timer>`.
#[derive(Debug, Clone, Copy)]
pub struct Timer<'a> {
    pub name: &'a str,
    pub present: Option<bool>,
    pub tickpolicy: Option<&'a str>,
}
impl<'a> Clock<'a> {
    /// `offset` (default `utc`).
    pub fn offset(&self) -> &'a str {
        self.0.attr("offset").unwrap_or("utc")
    }
    /// Timers.
    pub fn timers(&self) -> Vec<Timer<'a>> {
        self.0
            .children_named("timer")
            .filter_map(|t| {
                Some(Timer {
                    name: t.attr("name")?,
                    present: t.attr("present").map(|p| p == "yes"),
                    tickpolicy: t.attr("tickpolicy"),
                })
            })
            .collect()
    }
}

view!(
    /// `<features>`.
    Features
);
impl<'a> Features<'a> {
    /// Names of the features present.
    pub fn names(&self) -> Vec<&'a str> {
        self.0.elements().map(|e| e.name()).collect()
    }
    /// Whether a feature is enabled (present, and not `state='off'`).
    pub fn enabled(&self, name: &str) -> bool {
        self.0
            .child(name)
            .is_some_and(|f| f.attr("state") != Some("off"))
    }
}

view!(
    /// `<disk>`.
    Disk
);
impl<'a> Disk<'a> {
    /// `type` (default `file`).
    pub fn disk_type(&self) -> &'a str {
        self.0.attr("type").unwrap_or("file")
    }
    /// `device` (default `disk`).
    pub fn device(&self) -> &'a str {
        self.0.attr("device").unwrap_or("disk")
    }
    /// The source: file, dev, dir, pool/volume name or network name.
    pub fn source(&self) -> Option<&'a str> {
        let s = self.0.child("source")?;
        ["file", "dev", "dir", "name", "volume", "path"]
            .iter()
            .find_map(|a| s.attr(a))
    }
    /// `<source protocol=...>` for network disks.
    pub fn protocol(&self) -> Option<&'a str> {
        self.0.child("source").and_then(|s| s.attr("protocol"))
    }
    /// `<target dev=...>`.
    pub fn target_dev(&self) -> Option<&'a str> {
        self.0.child("target").and_then(|t| t.attr("dev"))
    }
    /// `<target bus=...>`.
    pub fn target_bus(&self) -> Option<&'a str> {
        self.0.child("target").and_then(|t| t.attr("bus"))
    }
    /// `<driver name=... type=...>`.
    pub fn driver(&self) -> Option<(Option<&'a str>, Option<&'a str>)> {
        self.0
            .child("driver")
            .map(|d| (d.attr("name"), d.attr("type")))
    }
    /// `<readonly/>`.
    pub fn readonly(&self) -> bool {
        self.0.child("readonly").is_some()
    }
    /// `<shareable/>`.
    pub fn shareable(&self) -> bool {
        self.0.child("shareable").is_some()
    }
    /// `<serial>`.
    pub fn serial(&self) -> Option<&'a str> {
        child_text(self.0, "serial")
    }
    /// Backing chain sources, top first.
    pub fn backing_chain(&self) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut cur = self.0.child("backingStore");
        while let Some(b) = cur {
            if let Some(s) = b
                .child("source")
                .and_then(|s| ["file", "dev", "name"].iter().find_map(|a| s.attr(a)))
            {
                out.push(s);
            }
            cur = b.child("backingStore");
        }
        out
    }
}

view!(
    /// `<interface>`.
    Interface
);
impl<'a> Interface<'a> {
    /// `type`.
    pub fn iface_type(&self) -> Option<&'a str> {
        self.0.attr("type")
    }
    /// `<mac address=...>`.
    pub fn mac(&self) -> Option<&'a str> {
        self.0.child("mac").and_then(|m| m.attr("address"))
    }
    /// The source: network, bridge or host device name.
    pub fn source(&self) -> Option<&'a str> {
        let s = self.0.child("source")?;
        ["network", "bridge", "dev", "path", "name"]
            .iter()
            .find_map(|a| s.attr(a))
    }
    /// `<model type=...>`.
    pub fn model(&self) -> Option<&'a str> {
        self.0.child("model").and_then(|m| m.attr("type"))
    }
    /// `<target dev=...>`.
    pub fn target_dev(&self) -> Option<&'a str> {
        self.0.child("target").and_then(|t| t.attr("dev"))
    }
    /// `<mtu size=...>`.
    pub fn mtu(&self) -> Option<u32> {
        self.0
            .child("mtu")
            .and_then(|m| m.attr("size"))
            .and_then(|s| s.trim().parse().ok())
    }
}

view!(
    /// `<graphics>`.
    Graphics
);
impl<'a> Graphics<'a> {
    /// `type`.
    pub fn graphics_type(&self) -> Option<&'a str> {
        self.0.attr("type")
    }
    /// `port` (`-1` = automatic).
    pub fn port(&self) -> Option<i32> {
        self.0.attr("port").and_then(|p| p.trim().parse().ok())
    }
    /// `autoport='yes'`.
    pub fn autoport(&self) -> bool {
        yes(self.0.attr("autoport"))
    }
    /// `<listen>` entries as `(type, address/network/socket)`.
    pub fn listens(&self) -> Vec<(&'a str, Option<&'a str>)> {
        self.0
            .children_named("listen")
            .map(|l| {
                let ty = l.attr("type").unwrap_or("address");
                (
                    ty,
                    l.attr("address")
                        .or_else(|| l.attr("network"))
                        .or_else(|| l.attr("socket")),
                )
            })
            .collect()
    }
}

view!(
    /// `<controller>`.
    Controller
);
impl<'a> Controller<'a> {
    /// `type`.
    pub fn controller_type(&self) -> Option<&'a str> {
        self.0.attr("type")
    }
    /// `index`.
    pub fn index(&self) -> Option<u32> {
        self.0.attr("index").and_then(|i| i.trim().parse().ok())
    }
    /// `model`.
    pub fn model(&self) -> Option<&'a str> {
        self.0.attr("model")
    }
}

view!(
    /// `<hostdev>`.
    Hostdev
);
impl<'a> Hostdev<'a> {
    /// `mode` (default `subsystem`).
    pub fn mode(&self) -> &'a str {
        self.0.attr("mode").unwrap_or("subsystem")
    }
    /// `type`.
    pub fn hostdev_type(&self) -> Option<&'a str> {
        self.0.attr("type")
    }
    /// `managed='yes'`.
    pub fn managed(&self) -> bool {
        yes(self.0.attr("managed"))
    }
}

view!(
    /// `<video>`.
    Video
);
impl<'a> Video<'a> {
    /// `<model type=...>`.
    pub fn model(&self) -> Option<&'a str> {
        self.0.child("model").and_then(|m| m.attr("type"))
    }
    /// `<model vram=...>` (KiB).
    pub fn vram_kib(&self) -> Option<u64> {
        self.0
            .child("model")
            .and_then(|m| m.attr("vram"))
            .and_then(parse_u64)
    }
    /// `<model heads=...>`.
    pub fn heads(&self) -> Option<u32> {
        self.0
            .child("model")
            .and_then(|m| m.attr("heads"))
            .and_then(|h| h.trim().parse().ok())
    }
    /// `<model primary='yes'>`.
    pub fn primary(&self) -> bool {
        yes(self.0.child("model").and_then(|m| m.attr("primary")))
    }
}

view!(
    /// A character device (`serial`, `parallel`, `console`, `channel`).
    Chardev
);
impl<'a> Chardev<'a> {
    /// Source type (`pty`, `file`, `unix`, `tcp`, ...; default `pty`).
    pub fn source_type(&self) -> &'a str {
        self.0.attr("type").unwrap_or("pty")
    }
    /// `<source path=...>`.
    pub fn source_path(&self) -> Option<&'a str> {
        self.0.child("source").and_then(|s| s.attr("path"))
    }
    /// `<target type=...>`.
    pub fn target_type(&self) -> Option<&'a str> {
        self.0.child("target").and_then(|t| t.attr("type"))
    }
    /// `<target port=...>`.
    pub fn target_port(&self) -> Option<u32> {
        self.0
            .child("target")
            .and_then(|t| t.attr("port"))
            .and_then(|p| p.trim().parse().ok())
    }
    /// `<target name=...>` (channels).
    pub fn target_name(&self) -> Option<&'a str> {
        self.0.child("target").and_then(|t| t.attr("name"))
    }
}

view!(
    /// `<seclabel>`.
    Seclabel
);
impl<'a> Seclabel<'a> {
    /// `type` (`dynamic`, `static`, `none`).
    pub fn label_type(&self) -> Option<&'a str> {
        self.0.attr("type")
    }
    /// `model`.
    pub fn model(&self) -> Option<&'a str> {
        self.0.attr("model")
    }
    /// `<label>`.
    pub fn label(&self) -> Option<&'a str> {
        child_text(self.0, "label")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Domain;

    const X: &str = "<domain type='kvm'><name>v</name><memory>1024</memory><vcpu>2</vcpu>\
        <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/l.fd</loader>\
        <kernel>/k</kernel><cmdline>c</cmdline><bootmenu enable='yes' timeout='3'/></os>\
        <features><acpi/><apic/><vmport state='off'/></features>\
        <cpu mode='custom'><model>Haswell</model><topology sockets='1' cores='2' threads='1'/>\
        <feature policy='disable' name='vmx'/><numa><cell id='0' cpus='0-1' memory='1' unit='MiB'/></numa></cpu>\
        <clock offset='localtime'><timer name='rtc' tickpolicy='catchup'/></clock>\
        <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/a.qcow2'/>\
        <backingStore type='file'><format type='raw'/><source file='/b.raw'/></backingStore>\
        <target dev='vda' bus='virtio'/><boot order='1'/></disk>\
        <interface type='bridge'><mac address='52:54:00:aa:bb:cc'/><source bridge='br0'/><model type='virtio'/></interface>\
        <graphics type='vnc' port='5901'/><video><model type='qxl' vram='65536' heads='1'/></video>\
        <serial type='pty'><target port='0'/></serial><controller type='usb' index='0' model='qemu-xhci'/></devices>\
        <seclabel type='static' model='selinux'><label>l</label></seclabel></domain>";

    #[test]
    fn views_read_the_model() {
        let d = Domain::parse(X).expect("parse");
        let os = d.os().expect("os");
        assert_eq!(os.machine(), Some("q35"));
        assert_eq!(os.firmware(), Some("efi"));
        assert_eq!(
            os.loader().map(|l| (l.path, l.readonly)),
            Some((Some("/l.fd"), true))
        );
        assert_eq!(os.kernel(), Some("/k"));
        assert_eq!(os.bootmenu(), Some((true, Some(3))));
        let cpu = d.cpu().expect("cpu");
        assert_eq!(cpu.model(), Some("Haswell"));
        assert_eq!(cpu.topology().map(|t| t.cores), Some(2));
        assert_eq!(cpu.features(), vec![("disable", "vmx")]);
        assert_eq!(cpu.numa_cells()[0].memory_kib, Some(1024));
        assert_eq!(d.clock().map(|c| c.offset()), Some("localtime"));
        let f = d.features().expect("features");
        assert!(f.enabled("acpi") && !f.enabled("vmport"));
        let disk = d.disks().next().expect("disk");
        assert_eq!(disk.source(), Some("/a.qcow2"));
        assert_eq!(disk.target_dev(), Some("vda"));
        assert_eq!(disk.backing_chain(), vec!["/b.raw"]);
        let nic = d.interfaces().next().expect("nic");
        assert_eq!(
            (nic.source(), nic.model(), nic.mac()),
            (Some("br0"), Some("virtio"), Some("52:54:00:aa:bb:cc"))
        );
        let g = d.graphics().next().expect("graphics");
        assert_eq!((g.port(), g.autoport()), (Some(5901), false));
        assert!(d.videos().next().expect("video").primary());
        assert_eq!(
            d.device_list()
                .iter()
                .filter(|x| x.kind == DeviceKind::Disk)
                .count(),
            1
        );
        assert_eq!(d.device_list()[0].boot_order(), Some(1));
        assert_eq!(d.seclabels().next().and_then(|s| s.label()), Some("l"));
        assert_eq!(d.on_poweroff(), "destroy");
    }
}
