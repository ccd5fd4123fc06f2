//! The Xen driver (placeholder while the converter is built).
pub mod convert;
pub mod xlcfg;
