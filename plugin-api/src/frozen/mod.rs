//! Frozen copies of the root module's whole type closure as each released minor of the
//! API defined it.
//!
//! abi_stable refuses to view a plugin's prefix types through a host type with *more*
//! fields than the plugin has, so a host of API 1.2 cannot check a 1.0 plugin against the
//! 1.2 layout. Instead it checks the plugin against the frozen 1.0 layout kept here, and,
//! since every later minor only appends fields to prefix types, then views it through the
//! current types, whose accessors report the appended methods as absent.
//!
//! Each module is self-contained: every type reachable from its `PluginMod` (the plain
//! values, `PluginError`, the `EventSink` and `DriverConnection` trait objects) is a copy
//! living under `frozen/`, never a re-export of a current type, so that editing a current
//! type cannot silently change a frozen layout. A minor reuses the previous minor's types
//! where it did not change them (`v1_1` and `v1_2` reuse `v1_0`'s values and event sink,
//! `v1_3` reuses `v1_2`'s connection, `v1_4` reuses `v1_3`'s storage backend and stream, `v1_5` reuses everything of `v1_4`'s, `v1_6` reuses `v1_5`'s values and backends, `v1_7` reuses `v1_6`'s facets and host services, `v1_8` reuses `v1_7`'s, `v1_9` reuses `v1_8`'s, `v1_10` reuses `v1_9`'s).
//! The test `plugin-api/tests/layouts.rs` checks that the current types extend every
//! frozen layout, with the same layout checker the loader runs.
//!
//! Architecture invariant: a file here is never edited after its minor is released (beyond
//! making it self-contained); each new minor adds its own frozen copy before it ships.
#![allow(missing_docs)]

pub mod v1_0;
pub mod v1_1;
pub mod v1_10;
pub mod v1_2;
pub mod v1_3;
pub mod v1_4;
pub mod v1_5;
pub mod v1_6;
pub mod v1_7;
pub mod v1_8;
pub mod v1_9;
