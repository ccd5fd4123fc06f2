//! libvirt's XML object model: domain, network, storage pool and storage
//! volume documents.
//!
//! * **Lossless** — documents are stored as a generic [`Element`] tree, so
//!   nothing a user wrote is dropped.
//! * **Validated** — errors name the path and the problem, e.g.
//!   `domain/devices/disk[2]/target/@dev: missing required attribute`.
//! * **Formatted like libvirt** — libvirt's element order, 2-space
//!   indentation, single-quoted attributes, units as libvirt writes them.

pub mod bandwidth;
pub mod caps;
pub mod compat;
pub mod domain;
pub mod domrules;
pub mod error;
pub mod network;
pub mod normalize;
pub mod pool;
pub mod secret;
pub mod tables;
pub mod tree;
pub mod util;
pub mod validate;
pub mod views;
pub mod volume;

mod netnorm;
mod storagenorm;

pub use domain::{Domain, ParseOptions};
pub use error::XmlError;
pub use network::Network;
pub use pool::StoragePool;
pub use secret::Secret;
pub use tree::{Element, Node};
pub use volume::{StorageVolume, VolumeParseOptions};

/// Output flags.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FormatOptions {
    /// Inactive (persistent config) form: no runtime-only data such as `id`.
    pub inactive: bool,
    /// Include security-sensitive data (e.g. graphics passwords).
    pub secure: bool,
}
