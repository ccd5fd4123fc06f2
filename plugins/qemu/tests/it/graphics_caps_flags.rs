//! Hardening: graphics passwords (checked with a real RFB handshake), capabilities probed
//! from the installed QEMU, libvirt's flag checks.

use super::{RootGuard, qemu_present, root, runtime, small_xml, status_pid, uri};
use rvirt_host::DomainState;
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

// ---- a minimal DES, for the VNC authentication response (RFB 7.2.2) ----

const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6,
    64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61,
    53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];
const FP: [u8; 64] = [
    40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30,
    37, 5, 45, 13, 53, 21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
    34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25,
];
const E: [u8; 48] = [
    32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17, 16, 17, 18,
    19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
];
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19,
    13, 30, 6, 22, 11, 4, 25,
];
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60,
    52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29,
    21, 13, 5, 28, 20, 12, 4,
];
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, 41, 52,
    31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];
const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12,
        11, 9, 5, 3, 8, 4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9,
        1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1,
        10, 6, 9, 11, 5, 0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15,
        4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5,
        14, 12, 11, 15, 1, 13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6,
        9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2,
        12, 1, 10, 14, 9, 10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1,
        13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15,
        10, 3, 9, 8, 6, 4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14,
        2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13,
        14, 0, 11, 3, 8, 9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5,
        15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5,
        12, 2, 15, 8, 6, 1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4,
        10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6,
        11, 0, 14, 9, 2, 7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10,
        8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// Bit `table[i]` (1 = most significant of `bits`) of `input` becomes output bit `i`.
fn permute(input: u64, bits: u32, table: &[u8]) -> u64 {
    table.iter().fold(0, |out, &p| {
        (out << 1) | ((input >> (bits - u32::from(p))) & 1)
    })
}

fn des_encrypt(key: u64, block: u64) -> u64 {
    let k = permute(key, 64, &PC1);
    let (mut c, mut d) = (k >> 28, k & 0xfff_ffff);
    let rot = |v: u64, n: u32| ((v << n) | (v >> (28 - n))) & 0xfff_ffff;
    let ip = permute(block, 64, &IP);
    let (mut l, mut r) = (ip >> 32, ip & 0xffff_ffff);
    for &shift in &SHIFTS {
        c = rot(c, shift);
        d = rot(d, shift);
        let sub = permute((c << 28) | d, 56, &PC2);
        let e = permute(r, 32, &E) ^ sub;
        let mut s = 0u64;
        for (i, sbox) in S.iter().enumerate() {
            let six = (e >> (42 - 6 * i)) & 0x3f;
            let row = ((six >> 4) & 2) | (six & 1);
            let col = (six >> 1) & 0xf;
            s = (s << 4) | u64::from(sbox[(row * 16 + col) as usize]);
        }
        let f = permute(s, 32, &P);
        (l, r) = (r, l ^ f);
    }
    permute((r << 32) | l, 64, &FP)
}

/// The VNC authentication response: the challenge encrypted (DES, ECB) with the first
/// eight bytes of the password, each byte's bits mirrored.
fn vnc_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let key = u64::from_be_bytes(key);
    let mut out = [0u8; 16];
    for i in 0..2 {
        let block = u64::from_be_bytes(challenge[i * 8..i * 8 + 8].try_into().unwrap());
        out[i * 8..i * 8 + 8].copy_from_slice(&des_encrypt(key, block).to_be_bytes());
    }
    out
}

#[test]
fn des_matches_the_textbook_vector() {
    assert_eq!(
        des_encrypt(0x1334_5779_9BBC_DFF1, 0x0123_4567_89AB_CDEF),
        0x85E8_1354_0F0A_B405
    );
}

// ---- RFB ----

/// Connects, echoes the server's protocol version and returns the security types it
/// offers, with the open stream.
fn rfb_security_types(port: u16) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("VNC port listens");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut version = [0u8; 12];
    s.read_exact(&mut version).unwrap();
    assert!(
        version.starts_with(b"RFB 003.008"),
        "{:?}",
        String::from_utf8_lossy(&version)
    );
    s.write_all(&version).unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
    assert_ne!(n[0], 0, "the server refused the connection");
    let mut types = vec![0u8; n[0] as usize];
    s.read_exact(&mut types).unwrap();
    (s, types)
}

/// VNC authentication with `password`: whether the server accepts it.
fn vnc_auth(port: u16, password: &str) -> bool {
    let (mut s, types) = rfb_security_types(port);
    assert!(types.contains(&2), "{types:?}");
    s.write_all(&[2]).unwrap();
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).unwrap();
    s.write_all(&vnc_response(password, &challenge)).unwrap();
    let mut result = [0u8; 4];
    s.read_exact(&mut result).unwrap();
    u32::from_be_bytes(result) == 0
}

fn vnc_port(live: &str) -> u16 {
    live.split("<graphics type='vnc' port='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no vnc port in the live XML:\n{live}"))
}

fn with_graphics(name: &str, graphics: &str) -> String {
    small_xml(name, "", "qemu").replace("<memballoon", &format!("{graphics}<memballoon"))
}

#[test]
fn vnc_passwd_demands_vnc_authentication_and_stays_secret() {
    if !qemu_present() {
        return;
    }
    let r = root("vncpw");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let secret = "s3cr3t";
    let xml = with_graphics(
        "vp",
        &format!(
            "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd='{secret}'/>"
        ),
    );
    // Not in what domxml-to-native prints (QEMU gets `password=on`, the password comes
    // over the monitor), nor in the inactive XML without VIR_DOMAIN_XML_SECURE.
    let argv = conn.domain_xml_to_native("qemu-argv", &xml, 0).unwrap();
    assert!(argv.contains("password=on"), "{argv}");
    assert!(!argv.contains(secret), "{argv}");
    let mut vp = conn.define_xml(&xml, 0).unwrap();
    let inactive = vp.get_xml_desc(0).unwrap();
    assert!(!inactive.contains("passwd"), "{inactive}");
    assert!(
        vp.get_xml_desc(1).unwrap().contains("passwd='s3cr3t'"),
        "VIR_DOMAIN_XML_SECURE shows it"
    );
    vp.create(0).unwrap();
    let vn = conn
        .create_xml(
            &with_graphics(
                "vn",
                "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>",
            ),
            0,
        )
        .unwrap();
    // Expired already: QEMU refuses even the right password.
    let vx = conn
        .create_xml(
            &with_graphics(
                "vx",
                &format!(
                    "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd='{secret}' passwdValidTo='2010-04-09T15:51:00'/>"
                ),
            ),
            0,
        )
        .unwrap();

    let live = vp.get_xml_desc(0).unwrap();
    assert!(!live.contains("passwd"), "{live}");
    assert!(vp.get_xml_desc(1).unwrap().contains("passwd='s3cr3t'"));
    let port = vnc_port(&live);
    let (_, types) = rfb_security_types(port);
    assert!(
        types.contains(&2) && !types.contains(&1),
        "security types {types:?}"
    );
    assert!(!vnc_auth(port, "wrong"), "a wrong password is refused");
    assert!(
        vnc_auth(port, secret),
        "the password of the XML is accepted"
    );

    let (_, open) = rfb_security_types(vnc_port(&vn.get_xml_desc(0).unwrap()));
    assert_eq!(open, vec![1], "no passwd: security type None");
    assert!(
        !vnc_auth(vnc_port(&vx.get_xml_desc(0).unwrap()), secret),
        "an expired password is refused"
    );

    // Nowhere on QEMU's command line or in its log.
    let pid = status_pid(&r, "vp");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("password=on"), "{cmdline}");
    assert!(!cmdline.contains(secret), "{cmdline}");
    let log = std::fs::read_to_string(r.join("log/qemu/vp.log")).unwrap();
    assert!(
        log.contains("password=on") && !log.contains(secret),
        "{log}"
    );

    // The files that hold it (libvirt's secure XML) are the owner's only.
    use std::os::unix::fs::PermissionsExt;
    for f in ["etc/qemu/vp.xml", "run/qemu/vp.status"] {
        let mode = std::fs::metadata(r.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is {mode:o}");
    }

    for d in [&vp, &vn, &vx] {
        d.destroy(0).unwrap();
    }
    vp.undefine(0).unwrap();
}

#[test]
fn graphics_whose_password_cannot_be_honoured_do_not_start() {
    if !qemu_present() {
        return;
    }
    let r = root("spicepw");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let xml = with_graphics(
        "sp",
        "<graphics type='spice' autoport='yes' passwd='s3cr3t'/>",
    );
    // The driver has no SPICE: the start fails before QEMU runs, and leaves nothing.
    let e = conn.create_xml(&xml, 0).unwrap_err();
    assert_eq!(e.code(), 67, "{e}");
    assert!(e.to_string().contains("graphics type 'spice'"), "{e}");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    assert!(conn.list_all_domains(0).unwrap().is_empty());
    let mut d = conn.define_xml(&xml, 0).unwrap();
    let e = d.create(0).unwrap_err();
    assert_eq!(e.code(), 67, "{e}");
    assert_eq!(d.get_state().unwrap().0, DomainState::Shutoff);
    let run: Vec<_> = std::fs::read_dir(r.join("run/qemu"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with("autostarted"))
        .collect();
    assert!(run.is_empty(), "left behind: {run:?}");
    let log = std::fs::read_to_string(r.join("log/qemu/sp.log")).unwrap_or_default();
    assert!(!log.contains("starting"), "qemu was spawned: {log}");
    d.undefine(0).unwrap();
}

// ---- capabilities ----

#[test]
fn capabilities_come_from_the_probed_emulator() {
    if !qemu_present() {
        return;
    }
    let r = root("caps");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let text = conn.get_capabilities().unwrap();
    let caps = rvirt_xml::Element::parse(&text).expect("capabilities parse");
    assert_eq!(caps.name(), "capabilities");
    let host_arch = caps
        .child("host")
        .and_then(|h| h.child("cpu"))
        .and_then(|c| c.child("arch"))
        .map(|a| a.text());
    assert_eq!(host_arch.as_deref(), Some(std::env::consts::ARCH));
    let guest = caps
        .children_named("guest")
        .find(|g| g.child("arch").and_then(|a| a.attr("name")) == Some("x86_64"))
        .unwrap_or_else(|| panic!("no x86_64 guest:\n{text}"));
    let arch = guest.child("arch").unwrap();
    assert_eq!(
        arch.child("emulator").map(|e| e.text()).as_deref(),
        Some(super::QEMU)
    );
    // The machine types are the ones the binary lists itself.
    let help = Command::new(super::QEMU)
        .args(["-machine", "help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut want: Vec<&str> = help
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    want.sort_unstable();
    let mut got: Vec<String> = arch.children_named("machine").map(|m| m.text()).collect();
    got.sort_unstable();
    assert_eq!(got, want, "{text}");
    let canonical_of = |alias: &str| {
        arch.children_named("machine")
            .find(|m| m.text() == alias)
            .and_then(|m| m.attr("canonical").map(str::to_string))
    };
    for (alias, family) in [("pc", "pc-i440fx-"), ("q35", "pc-q35-")] {
        let c = canonical_of(alias).unwrap_or_else(|| panic!("{alias} is an alias:\n{text}"));
        assert!(c.starts_with(family), "{alias} -> {c}");
        assert!(
            help.lines()
                .any(|l| l.starts_with(alias) && l.contains(&format!("alias of {c}"))),
            "{help}"
        );
    }
    assert!(
        arch.children_named("machine")
            .all(|m| m.attr("maxCpus").is_some()),
        "{text}"
    );
    // kvm only where KVM is usable.
    let types: Vec<&str> = arch
        .children_named("domain")
        .filter_map(|d| d.attr("type"))
        .collect();
    let kvm = rvirt_plugin_qemu::command::kvm_usable().is_ok();
    assert_eq!(types.contains(&"kvm"), kvm, "{types:?}");
    assert!(types.contains(&"qemu"));
    let module = std::path::Path::new("/sys/module/kvm_intel").exists()
        || std::path::Path::new("/sys/module/kvm_amd").exists();
    if !module {
        assert!(!types.contains(&"kvm"), "no KVM module, yet kvm: {types:?}");
    }
    // The version comes from the same binary.
    let v = Command::new(super::QEMU).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&v.stdout);
    let dotted = v
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap()
        .to_string();
    let n: Vec<u64> = dotted
        .split('.')
        .map(|x| x.parse().unwrap_or(0))
        .chain([0, 0])
        .take(3)
        .collect();
    assert_eq!(
        conn.get_version().unwrap(),
        n[0] * 1_000_000 + n[1] * 1_000 + n[2],
        "{v}"
    );
    // Probed once per binary.
    let p = std::path::Path::new(super::QEMU);
    let a = rvirt_plugin_qemu::caps::probe(p).unwrap();
    let b = rvirt_plugin_qemu::caps::probe(p).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

// ---- flags ----

#[test]
fn unknown_flags_are_rejected_naming_the_function() {
    if !qemu_present() {
        return;
    }
    let r = root("flags");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let invalid = |res: Result<(), rvirt_host::Error>, function: &str| {
        let e = res.unwrap_err();
        assert_eq!(e.code(), 8, "{e}");
        assert!(
            e.to_string().contains(&format!("in function {function}")),
            "{e}"
        );
    };
    let xml = small_xml("fl", "", "qemu");
    invalid(
        conn.define_xml(&xml, 2).map(drop),
        "virDomainDefineXMLFlags",
    );
    let mut d = conn.define_xml(&xml, 1).unwrap();
    invalid(d.create(0x8000_0000), "virDomainCreateWithFlags");
    // VIR_DOMAIN_START_AUTODESTROY is not implemented: refused, not ignored.
    invalid(d.create(2), "virDomainCreateWithFlags");
    assert_eq!(d.get_state().unwrap().0, DomainState::Shutoff);
    invalid(d.get_xml_desc(0x10).map(drop), "virDomainGetXMLDesc");
    invalid(d.get_xml_desc(8).map(drop), "virDomainGetXMLDesc");
    d.get_xml_desc(3).unwrap();
    invalid(d.undefine(0x80), "virDomainUndefineFlags");
    invalid(d.destroy(1), "virDomainDestroyFlags");
    invalid(d.shutdown(2), "virDomainShutdownFlags");
    invalid(d.reboot(4), "virDomainReboot");
    invalid(d.get_vcpus_flags(8).map(drop), "virDomainGetVcpusFlags");
    invalid(
        d.has_managed_save_image(1).map(drop),
        "virDomainHasManagedSaveImage",
    );
    invalid(
        conn.domain_xml_to_native("qemu-argv", &xml, 1).map(drop),
        "virConnectDomainXMLToNative",
    );
    invalid(
        conn.list_all_domains(0x10000).map(drop),
        "virConnectListAllDomains",
    );
    invalid(
        conn.create_xml(&small_xml("cx", "", "qemu"), 2).map(drop),
        "virDomainCreateXML",
    );
    assert_eq!(
        conn.list_all_domains(0).unwrap().len(),
        1,
        "nothing started"
    );
    // What is accepted is honoured.
    assert_eq!(d.get_vcpus_flags(4).unwrap(), 1);
    assert_eq!(d.get_vcpus_flags(2).unwrap(), 1);
    assert_eq!(d.get_vcpus_flags(1).unwrap_err().code(), 55);
    assert_eq!(d.get_vcpus_flags(3).unwrap_err().code(), 8);
    assert!(conn.list_all_domains(0x4000).unwrap().is_empty());
    assert_eq!(conn.list_all_domains(0x8000).unwrap().len(), 1);
    assert_eq!(d.undefine(4 | 8).unwrap_err().code(), 55);
    d.undefine(1 | 2 | 16).unwrap();
    assert!(conn.list_all_domains(0).unwrap().is_empty());
    // VIR_DOMAIN_UNDEFINE_NVRAM removes the definition's own NVRAM file; KEEP_NVRAM keeps it.
    for (flag, kept) in [(4, false), (8, true)] {
        let vars = r.join(format!("own-{flag}_VARS.fd"));
        std::fs::write(&vars, b"vars").unwrap();
        let xml = small_xml("nv", "", "qemu")
            .replace("</os>", &format!("<nvram>{}</nvram></os>", vars.display()));
        conn.define_xml(&xml, 0).unwrap().undefine(flag).unwrap();
        assert_eq!(vars.exists(), kept, "undefine flags {flag}");
    }
}
