//! The `dir` storage pool plugin: exports the storage facet whose backend is
//! [`rvirt_storage_files::plugin::DirBackend`]. The logic lives in `rvirt-storage-files`, so
//! other backends (`fs`) reuse it without linking a second plugin's exports.

use rvirt_storage_files::plugin::{POOL_TYPE, open};

rvirt_sdk::export_plugin! {
    manifest: rvirt_sdk::PluginInfo {
        name: "storage-dir",
        kind: "storage",
        schemes: &[],
        version: env!("CARGO_PKG_VERSION"),
        description: "dir storage pools: a directory of raw and qcow2 image files (qemu-img)",
    },
    storage: { pool_types: &[POOL_TYPE], open: open },
}
