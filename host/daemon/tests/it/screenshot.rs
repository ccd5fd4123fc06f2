//! `virsh screenshot` through rvirtd (plugin API 1.9): the QEMU plugin's `screendump` of
//! the running guest's VGA display comes back as the call's download stream, a PPM image
//! of the display's size; read-only clients are refused, as libvirt refuses them.

use super::Daemon;
use super::qemu::{ok, tools_missing, virsh, wait_for};
use super::qemu_save::{Console, guest_xml};
use rvirt_tests::guest;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn virsh_screenshot_streams_the_guests_display_as_ppm() {
    if tools_missing() {
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_plugin_qemu.so").is_file(),
        "the qemu plugin is missing next to rvirtd: build rvirt-plugin-qemu first"
    );
    let g = guest();
    let d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let disk = root.join("disk.qcow2");
    let conv = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(g.join("disk.raw"))
        .arg(&disk)
        .output()
        .unwrap();
    assert!(conv.status.success(), "{conv:?}");
    let sock = root.join("serial.sock");
    let file = root.join("vshot.xml");
    let xml = guest_xml("vshot", &g, &sock, &disk)
        .replace("</devices>", "<video><model type='vga'/></video></devices>");
    std::fs::write(&file, xml).unwrap();
    ok(&uri, &["define", file.to_str().unwrap()]);
    ok(&uri, &["start", "vshot"]);
    let con = Console::connect(&sock);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });
    let image = root.join("shot.ppm");
    let out = ok(&uri, &["screenshot", "vshot", image.to_str().unwrap()]);
    assert!(out.contains("image/x-portable-pixmap"), "{out}");
    let data = std::fs::read(&image).unwrap();
    // "P6\nW H\n255\n" then W * H * 3 bytes
    let text = String::from_utf8_lossy(&data[..data.len().min(32)]).to_string();
    let mut fields = text.split_whitespace();
    assert_eq!(fields.next(), Some("P6"), "{text:?}");
    let w: usize = fields.next().unwrap().parse().unwrap();
    let h: usize = fields.next().unwrap().parse().unwrap();
    assert!(w >= 320 && h >= 200, "a display's size: {w}x{h}");
    assert!(data.len() >= w * h * 3, "{} bytes for {w}x{h}", data.len());

    let ro = format!("qemu+unix:///system?socket={}", d.socket_ro().display());
    let o = virsh(&ro, &["screenshot", "vshot", image.to_str().unwrap()]);
    assert!(!o.status.success(), "a read-only client took a screenshot");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("read only"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&uri, &["destroy", "vshot"]);
}
