//! The LXC driver against the real kernel: busybox containers with namespaces, cgroups
//! and consoles (needs root and cgroup write access; says so and fails otherwise), bad
//! input, reattachment by a new driver instance, and libvirt's lxcxml2xml corpus through
//! the driver's define and dumpxml.

mod common;
mod containers;
mod corpus;
mod defs;
