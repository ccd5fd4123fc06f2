//! What a start needs from the host besides QEMU: the build options of a domain, the
//! TAP devices and network ports of its interfaces (through the host's network
//! services), the keys of its network disks and the storage volumes of its volume disks
//! (through the host's storage services); and `domxml-to-native`, which builds a
//! command line from the same inputs without making anything.
//!
//! Architecture invariant: anything made here is undone on failure (`PortGuard`, the
//! TAPs' own drop).

use super::{Driver, DriverError, Result, io, perr};
use crate::command::{self, BuildOptions, Monitor};
use rvirt_sdk::abi::abi_stable::std_types::{RResult, RStr};
use rvirt_xml::Domain;
use std::collections::HashMap;
use std::path::Path;

impl Driver {
    pub(super) fn build_options(&self, monitor: Monitor, check: bool, dtype: &str) -> BuildOptions {
        BuildOptions {
            monitor,
            // Probed only for domains that need it: a `qemu` (TCG) start skips it.
            kvm: if dtype == "kvm" {
                command::kvm_usable()
            } else {
                Err("not probed: the domain type is not kvm".into())
            },
            check_files: check,
            nvram_dir: self.paths.nvram_dir(),
            channel_dir: self.paths.channel_dir(),
            allocate_vnc: check,
            volumes: Default::default(),
            taps: Default::default(),
            secrets: Default::default(),
        }
    }

    /// Makes the TAP devices of the bridge and network interfaces of `def` (see
    /// [`crate::tap`]); a network interface first gets a port of its network through the
    /// host's services, which names the bridge. On failure everything made is undone.
    pub(super) fn make_taps(&self, def: &Domain) -> Result<Vec<MadeTap>> {
        let mut out: Vec<MadeTap> = Vec::new();
        for t in command::tap_interfaces(def) {
            match self.make_tap(def, &t) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => {}
                Err(e) => {
                    for m in &out {
                        if let Some((net, portid, _)) = &m.port {
                            self.release_port(net, portid);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Makes the TAP device of one bridge or network interface `t` of `def` (a network
    /// port first for a network interface); nothing is left made on failure.
    pub(super) fn make_tap(
        &self,
        def: &Domain,
        t: &command::TapInterface,
    ) -> Result<Option<MadeTap>> {
        let k = t.index;
        let guest = rvirt_netdev::mac::parse(&t.mac)
            .ok_or_else(|| iface_err(k, &format!("no valid MAC address ('{}')", t.mac)))?;
        let bandwidth = t
            .bandwidth
            .clone()
            .map_err(|e| iface_err(k, &e.to_string()))?
            .unwrap_or_default();
        let (bridge, port) = match (&t.bridge, &t.network) {
            (Some(b), _) => (b.clone(), None),
            (None, Some(net)) => {
                let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let Some(host) = host else {
                    return Err(iface_err(
                        k,
                        &format!(
                            "network '{net}' cannot be joined: the host lent no network services (plugin API 1.5 or later)"
                        ),
                    ));
                };
                let portid = uuid::Uuid::new_v4().to_string();
                let port_xml = {
                    use rvirt_xml::Element;
                    let mut owner = Element::new("owner");
                    owner.push(Element::new("name").with_text(def.name()));
                    owner.push(Element::new("uuid").with_text(&def.uuid().to_string()));
                    let mut port = Element::new("networkport");
                    port.push(Element::new("uuid").with_text(&portid));
                    port.push(owner);
                    port.push(Element::new("mac").with_attr("address", &t.mac));
                    bandwidth.store_in(&mut port);
                    port.to_xml_string()
                };
                let done = match host
                    .network_port_create(RStr::from_str(net), RStr::from_str(&port_xml))
                {
                    RResult::ROk(x) => x.into_string(),
                    RResult::RErr(mut e) => {
                        e.message =
                            format!("{} (interface {k}, network '{net}')", e.message).into();
                        return Err(perr(e));
                    }
                };
                let Some(bridge) = plug_bridge(&done) else {
                    let _ = host.network_port_delete(RStr::from_str(net), RStr::from_str(&portid));
                    return Err(iface_err(
                        k,
                        &format!("network '{net}' plugged the port on no bridge"),
                    ));
                };
                (bridge.clone(), Some((net.clone(), portid, bridge)))
            }
            (None, None) => return Ok(None),
        };
        let made = crate::tap::create("vnet%d", &bridge, guest, t.virtio)
            .map_err(|e| rvirt_sdk::util::error_chain(&e))
            .and_then(|tap| {
                if bandwidth.is_empty() {
                    return Ok(tap);
                }
                rvirt_netdev::bandwidth::apply(&tap.name, &bandwidth)
                    .map(|()| tap)
                    .map_err(|e| rvirt_sdk::util::error_chain(&e))
            });
        match made {
            Ok(tap) => Ok(Some(MadeTap {
                index: k,
                tap,
                port,
            })),
            Err(e) => {
                if let Some((net, portid, _)) = &port {
                    self.release_port(net, portid);
                }
                Err(iface_err(k, &format!("on bridge '{bridge}': {e}")))
            }
        }
    }

    /// Gives back a network port (best effort: the guest is gone either way).
    pub(super) fn release_port(&self, network: &str, portid: &str) {
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(host) = host
            && let RResult::RErr(e) =
                host.network_port_delete(RStr::from_str(network), RStr::from_str(portid))
        {
            host.log(
                rvirt_sdk::abi::log_level::WARN,
                RStr::from_str(&format!(
                    "cannot release port {portid} of network '{network}': {}",
                    e.message
                )),
            );
        }
    }

    /// Releases the network ports a stopped domain's live definition held.
    pub(super) fn release_ports(&self, live: &Domain) {
        for (net, portid) in command::network_ports(live) {
            self.release_port(&net, &portid);
        }
    }

    /// The keys of the `<auth>` of `def`'s network disks, read through the host's
    /// secrets, each written to a memfd (close-on-exec until the spawn clears it for
    /// QEMU), by target device.
    pub(super) fn disk_secrets(
        &self,
        def: &Domain,
        volumes: &HashMap<String, command::ResolvedVolume>,
    ) -> Result<Vec<(String, std::os::fd::OwnedFd)>> {
        let auths = command::network_auths(def, volumes)?;
        let mut out = Vec::new();
        if auths.is_empty() {
            return Ok(out);
        }
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (dev, a) in auths {
            let Some(host) = &host else {
                return Err(command::CommandError::Unsupported(format!(
                    "disk '{dev}': the {} secret '{}' cannot be read: the host lent no services",
                    a.secret_type, a.secret
                ))
                .into());
            };
            let value = match host.secret_value(a.usage_type(), RStr::from_str(&a.secret)) {
                RResult::ROk(v) => v,
                RResult::RErr(mut e) => {
                    e.message = format!("{} (disk '{dev}' auth)", e.message).into();
                    return Err(perr(e));
                }
            };
            let fd = rustix::fs::memfd_create("rvirt-disk-secret", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| {
                    io("create a memfd for the secret of disk", Path::new(&dev))(
                        std::io::Error::from(e),
                    )
                })?;
            rustix::io::write(&fd, value.as_slice()).map_err(|e| {
                io("write the secret of disk", Path::new(&dev))(std::io::Error::from(e))
            })?;
            out.push((dev, fd));
        }
        Ok(out)
    }

    /// Resolves the `<disk type='volume'>` disks of `def` through the host's storage
    /// pools (libvirt's translation of volume disks, done at start), by target device.
    pub(super) fn resolve_volumes(
        &self,
        def: &Domain,
    ) -> Result<HashMap<String, command::ResolvedVolume>> {
        let disks = command::volume_disks(def)?;
        let mut out = HashMap::new();
        if disks.is_empty() {
            return Ok(out);
        }
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for disk in disks {
            let Some(host) = &host else {
                return Err(command::CommandError::Unsupported(format!(
                    "disk '{}': volume '{}' of storage pool '{}' cannot be resolved: the host lent no storage services (volume disks need a host of plugin API 1.4 or later)",
                    disk.target, disk.volume, disk.pool
                ))
                .into());
            };
            let v = match host
                .volume_source(RStr::from_str(&disk.pool), RStr::from_str(&disk.volume))
            {
                RResult::ROk(v) => v,
                RResult::RErr(mut e) => {
                    e.message = format!("{} (disk '{}')", e.message, disk.target).into();
                    return Err(perr(e));
                }
            };
            if disk.mode.is_some() && v.pool_type.as_str() != "iscsi" {
                // libvirt's check, once the pool's type is known.
                return Err(command::CommandError::Invalid(format!(
                    "disk '{}': disk source mode is only valid when storage pool is of iscsi type",
                    disk.target
                ))
                .into());
            }
            let backing = rvirt_xml::StorageVolume::parse(v.volume_xml.as_str(), None)
                .ok()
                .is_some_and(|vol| vol.backing_store().is_some());
            // a volume of a network pool: the pool's <source> names servers and auth
            let pool_xml = if v.disk_type.as_str() == "network" {
                match host.storage_pool_xml(RStr::from_str(&disk.pool)) {
                    RResult::ROk(x) => x.into_string(),
                    RResult::RErr(mut e) => {
                        e.message = format!("{} (disk '{}')", e.message, disk.target).into();
                        return Err(perr(e));
                    }
                }
            } else {
                String::new()
            };
            out.insert(
                disk.target.clone(),
                command::ResolvedVolume {
                    pool: disk.pool,
                    volume: disk.volume,
                    disk_type: v.disk_type.into_string(),
                    path: v.path.into_string(),
                    format: v.format.into_string(),
                    pool_type: v.pool_type.into_string(),
                    backing,
                    pool_xml,
                },
            );
        }
        Ok(out)
    }

    /// `domxml-to-native qemu-argv`.
    pub fn to_native(&self, xml: &str) -> Result<String> {
        let def = Domain::parse(xml).map_err(DriverError::Xml)?;
        let volumes = self.resolve_volumes(&def)?;
        let n = command::build(
            &def,
            &BuildOptions {
                kvm: Ok(()),
                volumes,
                ..self.build_options(Monitor::Path(self.paths.monitor(def.name())), false, "qemu")
            },
        )?;
        Ok(command::to_argv_text(&n))
    }
}

/// Network ports plugged for a start, released on drop unless the start succeeded.
pub(super) struct PortGuard<'a> {
    pub(super) driver: &'a Driver,
    pub(super) ports: Vec<(String, String)>,
}

impl Drop for PortGuard<'_> {
    fn drop(&mut self) {
        for (net, id) in &self.ports {
            self.driver.release_port(net, id);
        }
    }
}

/// A TAP device made for an interface at start, with the network port plugged for it.
pub(super) struct MadeTap {
    pub(super) index: usize,
    pub(super) tap: crate::tap::Tap,
    pub(super) port: Option<(String, String, String)>,
}

pub(super) fn iface_err(k: usize, what: &str) -> DriverError {
    DriverError::from(command::CommandError::Invalid(format!(
        "interface {k}: {what}"
    )))
}

/// The `<plug bridge>` of a `<networkport>` document.
pub(super) fn plug_bridge(port_xml: &str) -> Option<String> {
    let e = rvirt_xml::Element::parse(port_xml).ok()?;
    e.child("plug")?.attr("bridge").map(str::to_string)
}
