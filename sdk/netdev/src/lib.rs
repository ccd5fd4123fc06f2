//! Host network devices shared by the hypervisor and network plugins.
//!
//! - [`mac`]: MAC address text, and the host-side rule (the guest's address with the
//!   first byte `fe`, libvirt's, so a bridge never takes a guest's address as its own).
//!   Every TAP maker follows it, which is how a network finds a guest's TAP again.
//! - [`tap`]: TAP devices: the non-persistent kind a hypervisor hands to its guest
//!   process as a descriptor, and the persistent kind a network makes for itself.
//! - [`bandwidth`]: libvirt's `<bandwidth>` element (inbound and outbound rates) and
//!   its application to a device with `tc` (one `tc -batch` run).

pub mod bandwidth;
pub mod mac;
pub mod tap;
