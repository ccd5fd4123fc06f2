// libiscsi (Debian's libiscsi-dev): the userspace iSCSI initiator this plugin links.
fn main() {
    println!("cargo:rustc-link-lib=dylib=iscsi");
}
