//! Frozen copies of the root module as older minors of the API defined it.
//!
//! abi_stable refuses to view a plugin's prefix types through a host type with *more*
//! fields than the plugin has, so a host of API 1.1 cannot check a 1.0 plugin against the
//! 1.1 layout. Instead it checks the plugin against the frozen 1.0 layout kept here, and,
//! since every later minor only appends fields to prefix types, then views it through the
//! current types, whose accessors report the appended methods as absent.
//!
//! Architecture invariant: a file here is never edited after its minor is released; each
//! new minor adds the previous one's frozen copy.
#![allow(missing_docs)]

pub mod v1_0;
pub mod v1_1;
