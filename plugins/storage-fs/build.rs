//! Link arguments for the plugin.
//!
//! This crate links `rvirt-storage-dir` as a library, and that crate is itself a plugin:
//! its objects define the plugin exports (`rvirt_plugin_api_version` and abi_stable's
//! root-module header) that this crate's `export_plugin!` defines too. The linker keeps
//! the first definition it meets, and this crate's own objects come before every
//! library on the command line, so the exports of the `fs` plugin are this crate's
//! (`tests/it.rs` checks the built shared object's manifest and pool types).
fn main() {
    println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
}
