//! Unit tests of [`super::build`]: argv and live definitions of small domains and of
//! libvirt's qemuxmlconfdata cases.

use super::address::{check_assigned_addresses, check_user_addresses};
use super::disk::target_index;
use super::graphics::parse_valid_to;
use super::*;
use serde_json::json;

fn opts() -> BuildOptions {
    BuildOptions {
        monitor: Monitor::Path("/run/m.sock".into()),
        kvm: Err("no kvm in unit tests".into()),
        check_files: false,
        nvram_dir: "/var/lib/nv".into(),
        channel_dir: "/run/ch".into(),
        allocate_vnc: false,
        volumes: Default::default(),
        taps: Default::default(),
        secrets: Default::default(),
    }
}

/// libvirt's `disk-network-iscsi` case (qemuxmlconfdata): the iscsi storage nodes
/// match its `.args` member for member (portal, target, LUN, CHAP user and password
/// secret, initiator name).
#[test]
fn iscsi_network_disks_match_libvirts_blockdev_nodes() {
    let dir = rvirt_tests::shared_dir().join("corpus/qemuxmlconfdata");
    let xml = std::fs::read_to_string(dir.join("disk-network-iscsi.xml")).expect("case");
    let args =
        std::fs::read_to_string(dir.join("disk-network-iscsi.x86_64-latest.args")).expect("args");
    let want: Vec<&str> = args
        .lines()
        .filter(|l| l.starts_with("-blockdev '{\"driver\":\"iscsi\""))
        .map(|l| {
            l.trim_start_matches("-blockdev '")
                .trim_end_matches(" \\")
                .trim_end_matches('\'')
        })
        .collect();
    assert_eq!(want.len(), 7);
    let mut o = opts();
    for dev in ["vdc", "vdd", "sdc"] {
        o.secrets.insert(dev.into(), "/proc/self/fd/7".into());
    }
    let n = build(&Domain::parse(&xml).expect("parse"), &o).expect("build");
    let got: Vec<&String> = n
        .args
        .iter()
        .filter(|a| a.starts_with("{\"driver\":\"iscsi\""))
        .collect();
    assert_eq!(got.len(), 7, "{:?}", n.args);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.as_str(), *w);
    }
}

/// libvirt's `disk-network-rbd` case (qemuxmlconfdata): the rbd storage nodes match
/// its `.args` member for member; the disk with cephx auth names a secret object read
/// from an inherited descriptor, and no key is on the command line.
#[test]
fn rbd_network_disks_match_libvirts_blockdev_nodes() {
    let dir = rvirt_tests::shared_dir().join("corpus/qemuxmlconfdata");
    let xml = std::fs::read_to_string(dir.join("disk-network-rbd.xml")).expect("case");
    let args =
        std::fs::read_to_string(dir.join("disk-network-rbd.x86_64-latest.args")).expect("args");
    let want: Vec<&str> = args
        .lines()
        .filter(|l| l.starts_with("-blockdev '{\"driver\":\"rbd\""))
        .map(|l| {
            l.trim_start_matches("-blockdev '")
                .trim_end_matches(" \\")
                .trim_end_matches('\'')
        })
        .collect();
    assert_eq!(want.len(), 6);
    let mut o = opts();
    o.secrets.insert("vde".into(), "/proc/self/fd/7".into());
    let n = build(&Domain::parse(&xml).expect("parse"), &o).expect("build");
    let got: Vec<&String> = n
        .args
        .iter()
        .filter(|a| a.starts_with("{\"driver\":\"rbd\""))
        .collect();
    assert_eq!(got.len(), 6, "{:?}", n.args);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.as_str(), *w);
    }
    let secret = n
        .args
        .iter()
        .find(|a| a.contains("\"qom-type\":\"secret\""))
        .expect("secret object");
    assert_eq!(
        secret,
        "{\"qom-type\":\"secret\",\"id\":\"libvirt-2-storage-auth-secret0\",\"format\":\"raw\",\"file\":\"/proc/self/fd/7\"}"
    );
    // a protocol not served yet names itself
    let e = build_xml(
            "<domain type='qemu'><name>n</name><memory>65536</memory><os><type>hvm</type></os><devices>\
             <disk type='network'><source protocol='sheepdog' name='x'/><target dev='vda'/></disk></devices></domain>",
        )
        .expect_err("sheepdog");
    assert!(e.to_string().contains("protocol 'sheepdog'"), "{e}");
    let e = build_xml(
            "<domain type='qemu'><name>n</name><memory>65536</memory><os><type>hvm</type></os><devices>\
             <disk type='network'><source protocol='rbd' name='noslash'/><target dev='vda'/></disk></devices></domain>",
        )
        .expect_err("name");
    assert!(e.to_string().contains("'pool/image'"), "{e}");
}

fn build_xml(xml: &str) -> Result<Native, CommandError> {
    build(&Domain::parse(xml).expect("parse"), &opts())
}

const BASE: &str = "<domain type='qemu'><name>t</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid><memory unit='KiB'>219100</memory><vcpu>2</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>";

fn has_pair(n: &Native, flag: &str, val: &str) -> bool {
    n.args.windows(2).any(|w| w[0] == flag && w[1] == val)
}

#[test]
fn target_indexes() {
    assert_eq!(target_index("vda"), Some(0));
    assert_eq!(target_index("hdc"), Some(2));
    assert_eq!(target_index("sdaa"), Some(26));
    assert_eq!(target_index("x"), None);
}

#[test]
fn basic_machine_memory_and_smp() {
    let n = build_xml(&format!("{BASE}<devices/></domain>")).unwrap();
    assert!(has_pair(
        &n,
        "-machine",
        "pc,usb=off,dump-guest-core=off,memory-backend=pc.ram,acpi=off"
    ));
    assert!(has_pair(&n, "-accel", "tcg"));
    assert!(has_pair(&n, "-m", "size=219136k"));
    assert!(has_pair(&n, "-smp", "2,sockets=2,cores=1,threads=1"));
    assert!(has_pair(&n, "-cpu", "qemu64"));
    assert!(has_pair(&n, "-display", "none"));
    // Implicit USB controller and balloon get PCI addresses, visible in the live XML.
    assert!(
        n.args
            .iter()
            .any(|a| a.contains("\"piix3-usb-uhci\"") && a.contains("0x1.0x2"))
    );
    assert!(
        n.args
            .iter()
            .any(|a| a.contains("virtio-balloon-pci") && a.contains("\"addr\":\"0x2\""))
    );
    let live = n.live.to_xml(&Default::default());
    assert!(live.contains("<alias name='balloon0'/>"), "{live}");
    assert!(live.contains("model='pci-root'"), "{live}");
}

#[test]
fn kvm_requires_usable_kvm() {
    let e = build_xml(
        "<domain type='kvm'><name>t</name><memory>1024</memory><os><type>hvm</type></os></domain>",
    )
    .unwrap_err();
    assert!(e.to_string().contains("domain requires KVM"), "{e}");
}

#[test]
fn cpu_modes_topology_kernel_and_acpi() {
    let n = build_xml(&format!("{BASE}<features><acpi/></features><cpu mode='custom'><model>Haswell</model><feature policy='require' name='vmx'/><feature policy='disable' name='avx'/><topology sockets='1' dies='1' cores='2' threads='1'/></cpu><devices/></domain>").replace("<os><type arch='x86_64' machine='pc'>hvm</type></os>", "<os><type arch='x86_64' machine='q35'>hvm</type><kernel>/k</kernel><initrd>/i</initrd><cmdline>console=ttyS0</cmdline></os>")).unwrap();
    assert!(has_pair(&n, "-cpu", "Haswell,vmx=on,avx=off"));
    assert!(has_pair(
        &n,
        "-smp",
        "2,sockets=1,dies=1,clusters=1,cores=2,threads=1"
    ));
    assert!(
        has_pair(&n, "-kernel", "/k")
            && has_pair(&n, "-initrd", "/i")
            && has_pair(&n, "-append", "console=ttyS0")
    );
    assert!(
        n.args
            .iter()
            .any(|a| a.starts_with("q35,") && a.ends_with("acpi=on"))
    );
    // q35: devices sit behind PCIe root ports.
    assert!(n.args.iter().any(|a| a.contains("pcie-root-port")));
    assert!(
        n.args
            .iter()
            .any(|a| a.contains("qemu-xhci") && a.contains("\"bus\":\"pci."))
    );
    let e = build_xml(&format!(
        "{BASE}<cpu mode='host-passthrough'/><devices/></domain>"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("host-passthrough"));
    let n = build_xml(&format!(
        "{BASE}<cpu mode='host-model'/><devices/></domain>"
    ))
    .unwrap();
    assert!(has_pair(&n, "-cpu", "max"));
}

#[test]
fn disks_nics_serial_and_friends() {
    let n = build_xml(&format!("{BASE}<devices>\
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/a.qcow2'/><target dev='vda' bus='virtio'/></disk>\
            <disk type='file' device='cdrom'><source file='/b.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>\
            <disk type='file' device='disk'><source file='/c.raw'/><target dev='sda' bus='scsi'/></disk>\
            <interface type='user'><mac address='52:54:00:11:22:33'/><model type='virtio'/></interface>\
            <interface type='ethernet'><target dev='tap7'/><model type='e1000'/></interface>\
            <serial type='file'><source path='/tmp/s.log'/></serial>\
            <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
            <graphics type='vnc' port='5905'/><video><model type='virtio'/></video>\
            <input type='tablet' bus='usb'/><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\
            <watchdog model='i6300esb' action='poweroff'/></devices></domain>")).unwrap();
    let a = n.args.join("\n");
    assert!(a.contains(r#"{"driver":"file","filename":"/a.qcow2","node-name":"libvirt-3-storage","auto-read-only":true,"discard":"unmap"}"#), "{a}");
    assert!(
        a.contains(r#""driver":"qcow2","file":"libvirt-3-storage""#),
        "{a}"
    );
    assert!(
        a.contains(r#""driver":"virtio-blk-pci""#) && a.contains(r#""drive":"libvirt-3-format""#)
    );
    assert!(a.contains(
        r#"{"driver":"file","filename":"/b.iso","node-name":"libvirt-2-storage","read-only":true}"#
    ));
    assert!(a.contains(r#"{"driver":"ide-cd","bus":"ide.1","unit":0,"drive":"libvirt-2-storage","id":"ide0-1-0"}"#), "{a}");
    assert!(a.contains("virtio-scsi-pci") && a.contains(r#""driver":"scsi-hd""#));
    assert!(a.contains(r#"{"type":"user","id":"hostnet0"}"#));
    assert!(a.contains(r#""mac":"52:54:00:11:22:33""#));
    assert!(
        a.contains(r#""type":"tap""#)
            && a.contains(r#""ifname":"tap7""#)
            && a.contains(r#""driver":"e1000""#)
    );
    assert!(a.contains("file,id=charserial0,path=/tmp/s.log"));
    assert!(a.contains(
        "socket,id=charchannel0,path=/run/ch/t.org.qemu.guest_agent.0,server=on,wait=off"
    ));
    assert!(a.contains("virtio-serial-pci") && a.contains(r#""name":"org.qemu.guest_agent.0""#));
    assert!(a.contains("127.0.0.1:5,audiodev=audio1"));
    assert!(a.contains(r#""driver":"virtio-vga""#) && a.contains(r#""addr":"0x2""#));
    assert!(a.contains("usb-tablet") && a.contains("virtio-rng-pci") && a.contains("i6300esb"));
    assert!(has_pair(&n, "-watchdog-action", "poweroff"));
    // A console mirrors the first serial port in the live XML.
    let live = n.live.to_xml(&Default::default());
    assert!(live.contains("<console type='file'>"), "{live}");
}

#[test]
fn transient_disk_and_missing_source() {
    let xml = format!(
        "{BASE}<devices><disk type='file' device='disk'><source file='/nonexistent/x.raw'/><target dev='vda' bus='virtio'/><transient/></disk></devices></domain>"
    );
    let n = build_xml(&xml).unwrap();
    assert_eq!(n.transient.len(), 1);
    assert!(
        n.args[n.transient[0].arg_index].contains("/nonexistent/x.raw"),
        "{:?}",
        n.args
    );
    let mut o = opts();
    o.check_files = true;
    let e = build(&Domain::parse(&xml).unwrap(), &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot access storage file '/nonexistent/x.raw'"
    );
}

#[test]
fn uefi_uses_ovmf_and_a_per_domain_nvram() {
    let n = build_xml(&format!("{BASE}<devices/></domain>").replace("<os>", "<os firmware='efi'>"))
        .unwrap();
    let a = n.args.join(" ");
    assert!(
        a.contains(OVMF_CODE) && a.contains("pflash0=libvirt-pflash0-format"),
        "{a}"
    );
    assert_eq!(
        n.nvram.as_ref().unwrap().1,
        PathBuf::from("/var/lib/nv/t_VARS.fd")
    );
}

#[test]
fn vnc_password_is_set_over_qmp_and_never_on_the_command_line() {
    let n = build_xml(&format!(
            "{BASE}<devices><graphics type='vnc' port='5901' listen='127.0.0.1' passwd='s3cr3t' \
             passwdValidTo='2010-04-09T15:51:00'/><graphics type='vnc' port='5902'/></devices></domain>"
        ))
        .unwrap();
    assert!(
        has_pair(&n, "-vnc", "127.0.0.1:1,password=on,audiodev=audio1"),
        "{:?}",
        n.args
    );
    assert!(
        has_pair(&n, "-vnc", "127.0.0.1:2,audiodev=audio1"),
        "{:?}",
        n.args
    );
    assert!(!n.args.iter().any(|a| a.contains("s3cr3t")), "{:?}", n.args);
    assert!(!to_argv_text(&n).contains("s3cr3t"));
    assert!(
        !format!("{:?}", n.passwords).contains("s3cr3t"),
        "Debug redacts the password"
    );
    assert_eq!(
        n.passwords,
        vec![GraphicsPassword {
            protocol: "vnc",
            password: "s3cr3t".into(),
            valid_to: Some(1_270_828_260),
        }]
    );
    let cmds = password_commands(&n.passwords, 1_000_000_000);
    assert_eq!(
        cmds,
        vec![
            (
                "set_password",
                json!({"protocol": "vnc", "password": "s3cr3t"})
            ),
            (
                "expire_password",
                json!({"protocol": "vnc", "time": "1270828260"})
            ),
        ]
    );
    // Expired already: `now`; no passwdValidTo: `never`.
    assert_eq!(
        password_commands(&n.passwords, 2_000_000_000)[1].1["time"],
        "now"
    );
    let never = GraphicsPassword {
        valid_to: None,
        ..n.passwords[0].clone()
    };
    assert_eq!(password_commands(&[never], 0)[1].1["time"], "never");
    let e = build_xml(&format!(
            "{BASE}<devices><graphics type='vnc' port='5901' passwd='x' passwdValidTo='tomorrow'/></devices></domain>"
        ))
        .unwrap_err();
    assert!(matches!(e, CommandError::Invalid(_)), "{e}");
}

#[test]
fn valid_to_times() {
    assert_eq!(parse_valid_to("1970-01-01T00:00:00"), Some(0));
    assert_eq!(parse_valid_to("2000-03-01T00:00:01"), Some(951_868_801));
    assert_eq!(parse_valid_to("2024-02-29T23:59:59"), Some(1_709_251_199));
    for bad in [
        "",
        "2010-04-09",
        "2010-13-01T00:00:00",
        "2010-04-09T24:00:00",
        "2010-04-09T1:2:3:4",
        "a-b-cTd:e:f",
    ] {
        assert_eq!(parse_valid_to(bad), None, "{bad}");
    }
}

#[test]
fn graphics_that_cannot_get_a_password_do_not_build() {
    let e = build_xml(&format!(
        "{BASE}<devices><graphics type='spice' autoport='yes' passwd='s3cr3t'/></devices></domain>"
    ))
    .unwrap_err();
    assert!(matches!(e, CommandError::Unsupported(_)), "{e}");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

#[test]
fn clashing_user_addresses_are_the_users_error() {
    let addr = |slot: u32, func: u32| {
        format!(
            "<address type='pci' domain='0x0000' bus='0x00' slot='0x{slot:02x}' function='0x{func:x}'/>"
        )
    };
    // Two devices at one address: rvirt-xml rejects the XML, and so does the driver
    // for a definition that skipped validation.
    let devs = Element::parse(&format!(
        "<devices><rng model='virtio'>{}</rng><memballoon model='virtio'>{}</memballoon></devices>",
        addr(5, 0),
        addr(5, 0)
    ))
    .unwrap();
    let e = check_user_addresses(&devs, false).unwrap_err();
    assert!(matches!(e, CommandError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("0000:00:05.0"), "{e}");
    // A device in the PIIX3 slot of pc; the IDE controller there is fine.
    let e = build_xml(&format!(
        "{BASE}<devices><memballoon model='virtio'>{}</memballoon></devices></domain>",
        addr(1, 3)
    ))
    .unwrap_err();
    assert!(matches!(e, CommandError::Invalid(_)), "{e}");
    build_xml(&format!(
        "{BASE}<devices><controller type='ide' index='0'>{}</controller>\
             <memballoon model='virtio'>{}</memballoon></devices></domain>",
        addr(1, 1),
        addr(6, 0)
    ))
    .unwrap();
}

#[test]
fn clashing_driver_addresses_are_internal_errors() {
    let devs = Element::parse(
            "<devices><memballoon model='virtio'><address type='pci' bus='0x00' slot='0x03' function='0x0'/></memballoon>\
             <rng model='virtio'><address type='pci' bus='0x00' slot='0x03' function='0x0'/></rng></devices>",
        )
        .unwrap();
    let e = check_assigned_addresses(&devs).unwrap_err();
    assert!(matches!(e, CommandError::Internal(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("internal error of the qemu driver: PCI address 0000:00:03.0"),
        "{e}"
    );
    // Everything the driver places itself is distinct.
    let n = build_xml(&format!(
            "{BASE}<devices><disk type='file' device='disk'><source file='/a.img'/><target dev='vda' bus='virtio'/></disk>\
             <interface type='user'><model type='virtio'/></interface><graphics type='vnc' port='5901'/>\
             <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices></domain>"
        ))
        .unwrap();
    check_assigned_addresses(n.live.element().child("devices").unwrap()).unwrap();
}

fn resolved(pool: &str, volume: &str, disk_type: &str, path: &str, format: &str) -> ResolvedVolume {
    ResolvedVolume {
        pool: pool.into(),
        volume: volume.into(),
        disk_type: disk_type.into(),
        path: path.into(),
        format: format.into(),
        pool_type: "dir".into(),
        backing: false,
        pool_xml: String::new(),
    }
}

fn build_with_volumes(
    xml: &str,
    volumes: &[(&str, ResolvedVolume)],
) -> Result<Native, CommandError> {
    let mut o = opts();
    o.volumes = volumes
        .iter()
        .map(|(t, v)| (t.to_string(), v.clone()))
        .collect();
    build(&Domain::parse(xml).expect("parse"), &o)
}

#[test]
fn a_resolved_volume_disk_opens_the_volume_path_with_the_volume_format() {
    let xml = format!(
        "{BASE}<devices><disk type='volume' device='disk'><source pool='p1' volume='v1.qcow2'/><target dev='vda' bus='virtio'/></disk>\
             <disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='p1' volume='v2' mode='host'/><target dev='vdb' bus='virtio'/></disk>\
             <disk type='volume' device='disk'><source pool='p2' volume='lv'/><target dev='vdc' bus='virtio'/></disk></devices></domain>"
    );
    let n = build_with_volumes(
        &xml,
        &[
            (
                "vda",
                resolved("p1", "v1.qcow2", "file", "/pool/v1.qcow2", "qcow2"),
            ),
            ("vdb", resolved("p1", "v2", "file", "/pool/v2", "qcow2")),
            ("vdc", resolved("p2", "lv", "block", "/dev/vg/lv", "")),
        ],
    )
    .unwrap();
    let a = n.args.join(" ");
    // No <driver type>: the volume's format (qcow2), over a file node.
    assert!(
            a.contains(r#"{"driver":"file","filename":"/pool/v1.qcow2","node-name":"libvirt-3-storage","auto-read-only":true,"discard":"unmap"}"#),
            "{a}"
        );
    // A format read from the volume never opens a backing file named in its header.
    assert!(
            a.contains(r#"{"node-name":"libvirt-3-format","read-only":false,"driver":"qcow2","file":"libvirt-3-storage","backing":null}"#),
            "{a}"
        );
    // An explicit <driver type> wins over the volume's format.
    assert!(
            a.contains(r#"{"driver":"file","filename":"/pool/v2","node-name":"libvirt-2-storage","read-only":false}"#),
            "{a}"
        );
    // A block volume opens as a host device; no format reported means raw.
    assert!(
            a.contains(r#"{"driver":"host_device","filename":"/dev/vg/lv","node-name":"libvirt-1-storage","read-only":false}"#),
            "{a}"
        );
    // The live XML keeps the volume form, with the format it resolved to.
    let live = n.live.to_xml(&rvirt_xml::FormatOptions::default());
    assert!(
        live.contains("<source pool='p1' volume='v1.qcow2'/>"),
        "{live}"
    );
    assert!(
        live.contains("<source pool='p1' volume='v2' mode='host'/>"),
        "{live}"
    );
    assert!(!live.contains("/pool/v1.qcow2"), "{live}");
    let vda = n
        .live
        .element()
        .child("devices")
        .unwrap()
        .children_named("disk")
        .find(|d| attr(d, &["target"], "dev") == Some("vda"))
        .unwrap();
    assert_eq!(vda.attr("type"), Some("volume"));
    assert_eq!(attr(vda, &["driver"], "type"), Some("qcow2"));
    assert_eq!(attr(vda, &["driver"], "name"), Some("qemu"));
    let vdb = n
        .live
        .element()
        .child("devices")
        .unwrap()
        .children_named("disk")
        .find(|d| attr(d, &["target"], "dev") == Some("vdb"))
        .unwrap();
    assert_eq!(attr(vdb, &["driver"], "type"), Some("raw"));
}

#[test]
fn a_volume_with_a_backing_file_needs_its_format_declared() {
    let disk = |driver: &str| {
        format!(
            "{BASE}<devices><disk type='volume' device='disk'>{driver}<source pool='p' volume='o.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
        )
    };
    let mut v = resolved("p", "o.qcow2", "file", "/pool/o.qcow2", "qcow2");
    v.backing = true;
    let e = build_with_volumes(&disk(""), &[("vda", v.clone())]).unwrap_err();
    assert!(matches!(e, CommandError::Unsupported(_)), "{e}");
    assert!(
            e.to_string().contains(
                "disk 'vda': volume 'o.qcow2' of storage pool 'p' has a backing file: declare its format in <driver type>"
            ),
            "{e}"
        );
    // Declared, QEMU opens the image's backing chain as for a file disk.
    let n = build_with_volumes(&disk("<driver name='qemu' type='qcow2'/>"), &[("vda", v)]).unwrap();
    let a = n.args.join(" ");
    assert!(
            a.contains(r#"{"node-name":"libvirt-1-format","read-only":false,"driver":"qcow2","file":"libvirt-1-storage"}"#),
            "{a}"
        );
}

#[test]
fn an_unresolved_or_unsupported_volume_disk_is_refused() {
    let xml = format!(
        "{BASE}<devices><disk type='volume' device='disk'><source pool='p1' volume='v1'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
    );
    let e = build_with_volumes(&xml, &[]).unwrap_err();
    assert!(matches!(e, CommandError::Unsupported(_)), "{e}");
    assert!(
        e.to_string()
            .contains("disk 'vda': volume 'v1' of storage pool 'p1' was not resolved"),
        "{e}"
    );
    // a network volume opens as a network disk of its pool's protocol: rbd only
    let e = build_with_volumes(
        &xml,
        &[("vda", resolved("p1", "v1", "network", "rbd/v1", "raw"))],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("disk 'vda': volumes of 'dir' pools are not supported as network disks"),
        "{e}"
    );
    let mut v = resolved("p1", "v1", "network", "rbd/v1", "raw");
    v.pool_type = "rbd".into();
    v.pool_xml = "<pool type='rbd'><name>p1</name><source><name>rbd</name>\
            <host name='mon1' port='6789'/><host name='mon2'/>\
            <auth type='ceph' username='admin'><secret usage='ceph-admin'/></auth></source></pool>"
        .into();
    let n = build_with_volumes(&xml, &[("vda", v)]).expect("rbd volume");
    assert!(
            n.args.iter().any(|a| a == "{\"driver\":\"rbd\",\"pool\":\"rbd\",\"image\":\"v1\",\"server\":[{\"host\":\"mon1\",\"port\":\"6789\"},{\"host\":\"mon2\",\"port\":\"6789\"}],\"user\":\"admin\",\"auth-client-required\":[\"cephx\",\"none\"],\"key-secret\":\"libvirt-1-storage-auth-secret0\",\"node-name\":\"libvirt-1-storage\",\"read-only\":false}"),
            "{:?}",
            n.args
        );
    // An empty volume cdrom needs nothing resolved.
    let n = build_with_volumes(
            &format!(
                "{BASE}<devices><disk type='volume' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>"
            ),
            &[],
        )
        .unwrap();
    assert!(!n.args.join(" ").contains("libvirt-1-storage"));
}

#[test]
fn volume_disks_need_a_pool_and_a_volume_named_validly() {
    let disk = |src: &str| {
        Domain::parse(&format!(
                "{BASE}<devices><disk type='volume' device='disk'>{src}<target dev='vdb' bus='virtio'/></disk></devices></domain>"
            ))
            .unwrap()
    };
    let e = volume_disks(&disk("<source volume='v'/>")).unwrap_err();
    assert!(matches!(e, CommandError::Invalid(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "invalid domain definition: disk 'vdb': the <source> of a volume disk needs the 'pool' attribute"
    );
    let e = volume_disks(&disk("<source pool='p' volume=''/>")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("disk 'vdb': the <source> of a volume disk needs the 'volume' attribute"),
        "{e}"
    );
    let e = volume_disks(&disk("<source pool='a/b' volume='v'/>")).unwrap_err();
    assert!(e.to_string().contains("invalid pool name 'a/b'"), "{e}");
    let e = volume_disks(&disk("<source pool='p' volume='v' mode='odd'/>")).unwrap_err();
    assert!(e.to_string().contains("unknown source mode 'odd'"), "{e}");
    assert_eq!(
        volume_disks(&disk("<source pool='p' volume='v' mode='direct'/>")).unwrap(),
        vec![VolumeDisk {
            target: "vdb".into(),
            pool: "p".into(),
            volume: "v".into(),
            mode: Some("direct".into()),
        }]
    );
    assert!(volume_disks(&disk("")).unwrap().is_empty());
}

#[test]
fn volume_disks_round_trip_with_pool_volume_and_mode() {
    let xml = format!(
        "{BASE}<devices><disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='pool-disk' volume='dir+vol1' mode='direct'/><target dev='vda' bus='virtio'/></disk>\
             <disk device='cdrom' type='volume'><readonly/><target bus='ide' dev='hda'/><source volume='block+cdrom' pool='pool-disk'/></disk></devices></domain>"
    );
    let def = Domain::parse(&xml).unwrap();
    let out = def.to_xml(&rvirt_xml::FormatOptions::default());
    let again = Domain::parse(&out).unwrap();
    let sources: Vec<(String, String, Option<String>)> = again
        .element()
        .child("devices")
        .unwrap()
        .children_named("disk")
        .map(|d| {
            assert_eq!(d.attr("type"), Some("volume"), "{out}");
            let s = d.child("source").unwrap();
            (
                s.attr("pool").unwrap().to_string(),
                s.attr("volume").unwrap().to_string(),
                s.attr("mode").map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        sources,
        vec![
            ("pool-disk".into(), "dir+vol1".into(), Some("direct".into())),
            ("pool-disk".into(), "block+cdrom".into(), None),
        ]
    );
    assert_eq!(volume_disks(&again).unwrap().len(), 2);
}

#[test]
fn i686_runs_on_qemu_system_i386() {
    assert_eq!(default_emulator("i686"), "/usr/bin/qemu-system-i386");
    assert_eq!(default_emulator("x86_64"), "/usr/bin/qemu-system-x86_64");
}

/// The domain `virt-install --osinfo linux2022 --import --machine q35 --graphics none`
/// writes (fourteen `pcie-root-port`s and a `pcie-root` without index, a guest agent
/// channel without a path): the argv builds, the root ports are libvirt's (00:01.0-7,
/// 00:02.0-5 without a video device, chassis = index, port = slot << 3 | function), as
/// in libvirt's `x86_64-q35-headless` case; every PCIe endpoint sits
/// alone on one of them (no port added) and the agent's socket is under the channel
/// directory.
#[test]
fn virt_install_q35_domain_builds_with_its_root_ports_used() {
    let xml = include_str!("../../tests/fixtures/virt-install-q35-nographics.xml");
    let n = build(&Domain::parse(xml).expect("parse"), &opts()).expect("build");
    let devs = n.live.element().child("devices").expect("devices");
    let ports: Vec<&Element> = devs
        .children_named("controller")
        .filter(|c| c.attr("model") == Some("pcie-root-port"))
        .collect();
    assert_eq!(ports.len(), 14, "no root port added");
    for (k, p) in ports.iter().enumerate() {
        let idx = k as u32 + 1;
        let (slot, func) = (1 + k as u32 / 8, k as u32 % 8);
        assert_eq!(p.attr("index"), Some(idx.to_string().as_str()));
        assert_eq!(
            address::explicit_pci(p),
            Some((0, slot, func)),
            "port {idx}"
        );
        assert_eq!(
            attr(p, &["target"], "chassis"),
            Some(idx.to_string().as_str())
        );
        assert_eq!(
            attr(p, &["target"], "port"),
            Some(format!("0x{:x}", (slot << 3) | func).as_str())
        );
        assert_eq!(attr(p, &["model"], "name"), Some("pcie-root-port"));
        assert_eq!(
            attr(p, &["alias"], "name"),
            Some(format!("pci.{idx}").as_str())
        );
    }
    let rp = n
        .args
        .iter()
        .filter(|a| a.starts_with("{\"driver\":\"pcie-root-port\""))
        .count();
    assert_eq!(rp, 14);
    assert!(n.args.contains(
        &r#"{"driver":"pcie-root-port","port":8,"chassis":1,"id":"pci.1","bus":"pcie.0","multifunction":true,"addr":"0x1"}"#.to_string()
    ));
    assert!(n.args.contains(
        &r#"{"driver":"pcie-root-port","port":21,"chassis":14,"id":"pci.14","bus":"pcie.0","addr":"0x2.0x5"}"#.to_string()
    ));
    // the PCIe endpoints: each alone at slot 0 of a root port, in libvirt's order
    let bus_of = |name: &str| {
        let e = devs.child(name).unwrap_or_else(|| panic!("no {name}"));
        address::explicit_pci(e).unwrap_or_else(|| panic!("{name} has no PCI address"))
    };
    let usb = devs
        .children_named("controller")
        .find(|c| c.attr("type") == Some("usb"))
        .expect("usb");
    let vser = devs
        .children_named("controller")
        .find(|c| c.attr("type") == Some("virtio-serial"))
        .expect("virtio-serial controller added for the agent channel");
    let placed = [
        address::explicit_pci(usb).expect("usb address"),
        address::explicit_pci(vser).expect("virtio-serial address"),
        bus_of("disk"),
        bus_of("memballoon"),
        bus_of("rng"),
    ];
    let mut buses: Vec<u32> = placed.iter().map(|a| a.0).collect();
    assert!(
        placed
            .iter()
            .all(|a| a.0 >= 1 && a.0 <= 14 && a.1 == 0 && a.2 == 0),
        "{placed:?}"
    );
    buses.sort_unstable();
    buses.dedup();
    assert_eq!(
        buses.len(),
        placed.len(),
        "one endpoint per port: {placed:?}"
    );
    let joined = n.args.join("\n");
    assert!(
        joined.contains(
            r#"{"driver":"qemu-xhci","p2":15,"p3":15,"id":"usb","bus":"pci.1","addr":"0x0"}"#
        ),
        "{joined}"
    );
    assert!(
        joined.contains(r#""driver":"virtio-blk-pci","bus":"pci.3","addr":"0x0""#),
        "{joined}"
    );
    // the guest agent: a socket QEMU listens on, under the channel directory
    let ch = devs.child("channel").expect("channel");
    assert_eq!(
        attr(ch, &["source"], "path"),
        Some("/run/ch/vi1.org.qemu.guest_agent.0")
    );
    assert!(
        joined.contains(
            "socket,id=charchannel0,path=/run/ch/vi1.org.qemu.guest_agent.0,server=on,wait=off"
        ),
        "{joined}"
    );
    assert!(
        joined.contains(r#""name":"org.qemu.guest_agent.0""#),
        "{joined}"
    );
}

/// The same with virt-install's default display (`virt-install --osinfo linux2022
/// --import --machine q35`): SPICE with its agent channel and two USB redirections, an
/// ICH9 sound card and a QXL video. The video owns 00:01.0, so the root ports start at
/// 00:02.0, as in libvirt's `q35-virt-manager-basic` case.
#[test]
fn virt_install_q35_domain_with_spice_builds() {
    let xml = include_str!("../../tests/fixtures/virt-install-q35.xml");
    let n = build(&Domain::parse(xml).expect("parse"), &opts()).expect("build");
    let joined = n.args.join("\n");
    for want in [
        r#"{"driver":"pcie-root-port","port":16,"chassis":1,"id":"pci.1","bus":"pcie.0","multifunction":true,"addr":"0x2"}"#,
        r#"{"driver":"qxl-vga","id":"video0","max_outputs":1,"ram_size":67108864,"vram_size":67108864,"vram64_size_mb":0,"vgamem_mb":16,"bus":"pcie.0","addr":"0x1"}"#,
        r#"{"driver":"ich9-intel-hda","id":"sound0","bus":"pcie.0","addr":"0x1b"}"#,
        r#"{"driver":"hda-duplex","id":"sound0-codec0","bus":"sound0.0","cad":0,"audiodev":"audio1"}"#,
        "spicevmc,id=charchannel1,name=vdagent",
        r#"{"driver":"virtserialport","bus":"virtio-serial0.0","nr":2,"chardev":"charchannel1","id":"channel1","name":"com.redhat.spice.0"}"#,
        r#"{"driver":"usb-tablet","id":"input0","bus":"usb.0","port":"1"}"#,
        "spicevmc,id=charredir0,name=usbredir",
        r#"{"driver":"usb-redir","chardev":"charredir0","id":"redir0","bus":"usb.0","port":"2"}"#,
        r#"{"driver":"usb-redir","chardev":"charredir1","id":"redir1","bus":"usb.0","port":"3"}"#,
        "port=5900,addr=127.0.0.1,image-compression=off,disable-ticketing=on,seamless-migration=on",
        r#"{"id":"audio1","driver":"spice"}"#,
    ] {
        assert!(joined.contains(want), "missing {want}:\n{joined}");
    }
    let devs = n.live.element().child("devices").expect("devices");
    let ports = devs
        .children_named("controller")
        .filter(|c| c.attr("model") == Some("pcie-root-port"))
        .count();
    assert_eq!(ports, 14);
}

/// Devices the driver does not build are refused, not dropped; a TPM emulator names
/// swtpm when it is missing.
#[test]
fn unbuilt_devices_are_refused_and_a_tpm_emulator_names_swtpm() {
    let e = build_xml(&format!(
        "{BASE}<devices><tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm></devices></domain>"
    ))
    .unwrap_err();
    assert!(matches!(e, CommandError::Unsupported(_)), "{e}");
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("swtpm").is_file()));
    if !on_path {
        assert!(e.to_string().contains("needs swtpm"), "{e}");
    }
    let e = build_xml(&format!("{BASE}<devices><panic/></devices></domain>")).unwrap_err();
    assert!(
        e.to_string().contains("device <panic> is not supported"),
        "{e}"
    );
}

#[test]
fn the_balloon_statistics_period_comes_from_its_stats_element() {
    let d = |b: &str| Domain::parse(&format!("{BASE}<devices>{b}</devices></domain>")).unwrap();
    assert_eq!(
        balloon_period(&d(
            "<memballoon model='virtio'><stats period='5'/></memballoon>"
        )),
        Some(5)
    );
    assert_eq!(
        balloon_period(&d(
            "<memballoon model='virtio'><stats period='0'/></memballoon>"
        )),
        None
    );
    assert_eq!(balloon_period(&d("<memballoon model='virtio'/>")), None);
    assert_eq!(
        balloon_period(&d(
            "<memballoon model='none'><stats period='5'/></memballoon>"
        )),
        None
    );
}

#[test]
fn numa_cells_get_a_ram_backend_and_a_node_each() {
    let d = Domain::parse(
        "<domain type='qemu'><name>t</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>\
         <memory unit='KiB'>219100</memory><vcpu>4</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>\
         <cpu><numa><cell id='1' cpus='1-2' memory='109550' unit='KiB'/>\
         <cell id='0' cpus='0,3' memory='107' unit='MiB'/></numa></cpu></domain>",
    )
    .unwrap();
    let n = build(&d, &opts()).unwrap();
    let a = &n.args;
    assert!(has_pair(&n, "-m", "size=219136k"), "{a:?}");
    assert!(!a.iter().any(|x| x.contains("pc.ram")), "{a:?}");
    assert!(
        has_pair(&n, "-numa", "node,nodeid=0,cpus=0,cpus=3,memdev=ram-node0"),
        "{a:?}"
    );
    assert!(
        has_pair(&n, "-numa", "node,nodeid=1,cpus=1-2,memdev=ram-node1"),
        "{a:?}"
    );
    assert!(
        a.iter()
            .any(|x| x.contains("\"id\":\"ram-node1\"") && x.contains("112197632")),
        "{a:?}"
    );
    for (extra, want) in [
        ("memAccess='shared'", "memAccess"),
        ("discard='yes'", "discard"),
    ] {
        let x = d
            .to_xml(&Default::default())
            .replace("cpus='1-2'", &format!("cpus='1-2' {extra}"));
        let e = build(&Domain::parse(&x).unwrap(), &opts()).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
}
