//! Data tables that drive the normaliser (libvirt's element order, units,
//! canonical spellings).  Keep these as plain data.

/// Child order of `<domain>` as libvirt formats it.
pub const DOMAIN_TOP_ORDER: &[&str] = &[
    "name",
    "uuid",
    "genid",
    "title",
    "description",
    "metadata",
    "maxMemory",
    "memory",
    "currentMemory",
    "blkiotune",
    "memtune",
    "memoryBacking",
    "vcpu",
    "vcpus",
    "iothreads",
    "iothreadids",
    "defaultiothread",
    "throttlegroups",
    "cputune",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "bootloader_args",
    "os",
    "idmap",
    "features",
    "cpu",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_lockfailure",
    "pm",
    "perf",
    "devices",
    "seclabel",
    "keywrap",
    "launchSecurity",
    "qemu:commandline",
    "qemu:capabilities",
    "qemu:override",
    "qemu:deprecation",
    "lxc:namespace",
    "bhyve:commandline",
    "xen:commandline",
];

/// Shared child order of character devices (serial, parallel, console, channel).
const CHARDEV: &[&str] = &["source", "log", "protocol", "target", "alias", "address"];

/// Child order per parent path in `<domain>` documents.  An element nested
/// in one of its own name (`backingStore` chains) uses its parent's entry.
pub const DOMAIN_ORDER: &[(&str, &[&str])] = &[
    ("domain", DOMAIN_TOP_ORDER),
    ("domain/blkiotune", &["weight", "device"]),
    (
        "domain/blkiotune/device",
        &[
            "path",
            "weight",
            "read_iops_sec",
            "write_iops_sec",
            "read_bytes_sec",
            "write_bytes_sec",
        ],
    ),
    (
        "domain/memtune",
        &[
            "hard_limit",
            "soft_limit",
            "min_guarantee",
            "swap_hard_limit",
        ],
    ),
    (
        "domain/memoryBacking",
        &[
            "hugepages",
            "nosharepages",
            "locked",
            "source",
            "access",
            "allocation",
            "discard",
        ],
    ),
    (
        "domain/cputune",
        &[
            "shares",
            "period",
            "quota",
            "global_period",
            "global_quota",
            "emulator_period",
            "emulator_quota",
            "iothread_period",
            "iothread_quota",
            "vcpupin",
            "emulatorpin",
            "iothreadpin",
            "emulatorsched",
            "vcpusched",
            "iothreadsched",
            "cachetune",
            "memorytune",
        ],
    ),
    ("domain/cputune/cachetune", &["cache", "monitor"]),
    ("domain/cputune/memorytune", &["node", "monitor"]),
    ("domain/numatune", &["memory", "memnode"]),
    ("domain/resource", &["partition", "fibrechannel"]),
    (
        "domain/sysinfo",
        &[
            "bios",
            "system",
            "baseBoard",
            "chassis",
            "processor",
            "memory",
            "oemStrings",
            "entry",
        ],
    ),
    (
        "domain/os",
        &[
            "type",
            "firmware",
            "init",
            "initarg",
            "initenv",
            "initdir",
            "inituser",
            "initgroup",
            "loader",
            "nvram",
            "varstore",
            "kernel",
            "initrd",
            "cmdline",
            "shim",
            "dtb",
            "acpi",
            "boot",
            "bootmenu",
            "smbios",
            "bios",
        ],
    ),
    ("domain/os/firmware", &["feature"]),
    ("domain/os/nvram/source", &["host", "auth"]),
    ("domain/idmap", &["uid", "gid"]),
    (
        "domain/features",
        &[
            "acpi",
            "apic",
            "pae",
            "hap",
            "viridian",
            "privnet",
            "hyperv",
            "kvm",
            "xen",
            "pvspinlock",
            "capabilities",
            "pmu",
            "vmport",
            "gic",
            "smm",
            "ioapic",
            "hpt",
            "vmcoreinfo",
            "htm",
            "nested-hv",
            "msrs",
            "ccf-assist",
            "cfpc",
            "sbbc",
            "ibs",
            "tcg",
            "async-teardown",
            "ras",
            "ps2",
            "aia",
        ],
    ),
    (
        "domain/features/hyperv",
        &[
            "relaxed",
            "vapic",
            "spinlocks",
            "vpindex",
            "runtime",
            "synic",
            "stimer",
            "reset",
            "vendor_id",
            "frequencies",
            "reenlightenment",
            "tlbflush",
            "ipi",
            "evmcs",
            "avic",
            "emsr_bitmap",
            "xmm_input",
        ],
    ),
    (
        "domain/features/kvm",
        &[
            "hidden",
            "hint-dedicated",
            "poll-control",
            "pv-ipi",
            "dirty-ring",
        ],
    ),
    (
        "domain/cpu",
        &[
            "model",
            "vendor",
            "microcode",
            "signature",
            "counter",
            "topology",
            "cache",
            "maxphysaddr",
            "feature",
            "numa",
        ],
    ),
    ("domain/cpu/numa", &["cell", "interconnects"]),
    ("domain/cpu/numa/cell", &["distances", "cache"]),
    ("domain/cpu/numa/cell/cache", &["size", "line"]),
    ("domain/cpu/numa/interconnects", &["latency", "bandwidth"]),
    ("domain/clock", &["timer"]),
    ("domain/pm", &["suspend-to-mem", "suspend-to-disk"]),
    (
        "domain/devices",
        &[
            "emulator",
            "disk",
            "controller",
            "lease",
            "filesystem",
            "interface",
            "smartcard",
            "serial",
            "parallel",
            "console",
            "channel",
            "input",
            "tpm",
            "graphics",
            "sound",
            "audio",
            "video",
            "hostdev",
            "redirdev",
            "redirfilter",
            "hub",
            "watchdog",
            "memballoon",
            "rng",
            "nvram",
            "panic",
            "shmem",
            "memory",
            "iommu",
            "vsock",
            "crypto",
            "pstore",
        ],
    ),
    (
        "domain/devices/disk",
        &[
            "driver",
            "auth",
            "source",
            "backingStore",
            "backenddomain",
            "mirror",
            "geometry",
            "blockio",
            "target",
            "iotune",
            "throttlefilters",
            "readonly",
            "shareable",
            "transient",
            "serial",
            "wwn",
            "vendor",
            "product",
            "encryption",
            "boot",
            "acpi",
            "alias",
            "address",
        ],
    ),
    (
        "domain/devices/disk/driver",
        &["metadata_cache", "iothreads"],
    ),
    (
        "domain/devices/disk/source",
        &[
            "host",
            "address",
            "snapshot",
            "config",
            "initiator",
            "reservations",
            "ssl",
            "cookies",
            "readahead",
            "timeout",
            "identity",
            "knownHosts",
            "reconnect",
            "slices",
            "auth",
            "encryption",
            "seclabel",
            "dataStore",
        ],
    ),
    (
        "domain/devices/disk/backingStore",
        &["format", "source", "backingStore"],
    ),
    (
        "domain/devices/disk/backingStore/source",
        &[
            "host",
            "address",
            "snapshot",
            "config",
            "initiator",
            "reservations",
            "ssl",
            "cookies",
            "readahead",
            "timeout",
            "identity",
            "knownHosts",
            "reconnect",
            "slices",
            "auth",
            "encryption",
            "seclabel",
            "dataStore",
        ],
    ),
    (
        "domain/devices/disk/mirror",
        &["format", "source", "backingStore"],
    ),
    (
        "domain/devices/disk/iotune",
        &[
            "total_bytes_sec",
            "read_bytes_sec",
            "write_bytes_sec",
            "total_iops_sec",
            "read_iops_sec",
            "write_iops_sec",
            "total_bytes_sec_max",
            "read_bytes_sec_max",
            "write_bytes_sec_max",
            "total_iops_sec_max",
            "read_iops_sec_max",
            "write_iops_sec_max",
            "size_iops_sec",
            "group_name",
            "total_bytes_sec_max_length",
            "read_bytes_sec_max_length",
            "write_bytes_sec_max_length",
            "total_iops_sec_max_length",
            "read_iops_sec_max_length",
            "write_iops_sec_max_length",
        ],
    ),
    (
        "domain/devices/controller",
        &[
            "model",
            "driver",
            "master",
            "pcihole64",
            "target",
            "alias",
            "address",
        ],
    ),
    ("domain/devices/lease", &["lockspace", "key", "target"]),
    (
        "domain/devices/filesystem",
        &[
            "driver",
            "binary",
            "idmap",
            "source",
            "target",
            "readonly",
            "space_hard_limit",
            "space_soft_limit",
            "boot",
            "alias",
            "address",
        ],
    ),
    (
        "domain/devices/filesystem/binary",
        &["cache", "sandbox", "lock", "thread_pool", "openfiles"],
    ),
    ("domain/devices/filesystem/idmap", &["uid", "gid"]),
    (
        "domain/devices/interface",
        &[
            "mac",
            "source",
            "vlan",
            "virtualport",
            "bandwidth",
            "ip",
            "route",
            "portForward",
            "script",
            "downscript",
            "backenddomain",
            "target",
            "guest",
            "port",
            "model",
            "driver",
            "backend",
            "filterref",
            "tune",
            "teaming",
            "link",
            "mtu",
            "coalesce",
            "boot",
            "rom",
            "acpi",
            "alias",
            "address",
        ],
    ),
    (
        "domain/devices/interface/source",
        &["ip", "address", "local", "route"],
    ),
    (
        "domain/devices/interface/bandwidth",
        &["inbound", "outbound"],
    ),
    (
        "domain/devices/smartcard",
        &[
            "source",
            "certificate",
            "database",
            "protocol",
            "alias",
            "address",
        ],
    ),
    ("domain/devices/serial", CHARDEV),
    ("domain/devices/parallel", CHARDEV),
    ("domain/devices/console", CHARDEV),
    ("domain/devices/channel", CHARDEV),
    (
        "domain/devices/channel/source",
        &["clipboard", "mouse", "reconnect", "seclabel"],
    ),
    ("domain/devices/serial/source", &["reconnect", "seclabel"]),
    (
        "domain/devices/input",
        &["driver", "source", "alias", "address"],
    ),
    ("domain/devices/tpm", &["backend", "alias", "address"]),
    (
        "domain/devices/tpm/backend",
        &[
            "device",
            "encryption",
            "source",
            "active_pcr_banks",
            "profile",
        ],
    ),
    (
        "domain/devices/graphics",
        &[
            "listen",
            "channel",
            "image",
            "jpeg",
            "zlib",
            "playback",
            "streaming",
            "mouse",
            "clipboard",
            "filetransfer",
            "gl",
            "rendernode",
            "audio",
        ],
    ),
    (
        "domain/devices/sound",
        &["codec", "audio", "alias", "address", "driver"],
    ),
    ("domain/devices/audio", &["input", "output"]),
    (
        "domain/devices/video",
        &["driver", "model", "acpi", "alias", "address"],
    ),
    (
        "domain/devices/video/model",
        &["acceleration", "resolution"],
    ),
    (
        "domain/devices/hostdev",
        &[
            "driver",
            "source",
            "teaming",
            "shareable",
            "readonly",
            "rom",
            "boot",
            "acpi",
            "alias",
            "address",
        ],
    ),
    (
        "domain/devices/hostdev/source",
        &[
            "adapter",
            "host",
            "vendor",
            "product",
            "address",
            "auth",
            "initiator",
        ],
    ),
    (
        "domain/devices/redirdev",
        &["source", "protocol", "boot", "alias", "address"],
    ),
    (
        "domain/devices/memballoon",
        &["stats", "alias", "address", "driver"],
    ),
    (
        "domain/devices/rng",
        &["rate", "backend", "driver", "alias", "address"],
    ),
    ("domain/devices/rng/backend", &["source", "protocol"]),
    (
        "domain/devices/shmem",
        &["model", "server", "size", "msi", "alias", "address"],
    ),
    (
        "domain/devices/memory",
        &["uuid", "source", "target", "alias", "address"],
    ),
    (
        "domain/devices/memory/source",
        &["path", "nodemask", "pagesize", "alignsize", "pmem"],
    ),
    (
        "domain/devices/memory/target",
        &[
            "size",
            "node",
            "label",
            "block",
            "requested",
            "current",
            "readonly",
            "address",
        ],
    ),
    ("domain/devices/iommu", &["driver", "alias", "address"]),
    (
        "domain/devices/vsock",
        &["cid", "alias", "address", "driver"],
    ),
    ("domain/devices/crypto", &["backend", "alias", "address"]),
    (
        "domain/devices/pstore",
        &["path", "size", "alias", "address"],
    ),
    ("domain/seclabel", &["label", "imagelabel", "baselabel"]),
    (
        "domain/launchSecurity",
        &[
            "cbitpos",
            "reducedPhysBits",
            "policy",
            "handle",
            "dhCert",
            "session",
            "guestVisibleWorkarounds",
            "idBlock",
            "idAuth",
            "hostData",
        ],
    ),
    ("domain/qemu:commandline", &["qemu:arg", "qemu:env"]),
    ("domain/qemu:capabilities", &["qemu:add", "qemu:del"]),
];

/// Child order per parent path in `<network>` documents.
pub const NETWORK_ORDER: &[(&str, &[&str])] = &[
    (
        "network",
        &[
            "name",
            "uuid",
            "title",
            "description",
            "metadata",
            "forward",
            "bridge",
            "mtu",
            "mac",
            "port",
            "domain",
            "dns",
            "vlan",
            "virtualport",
            "portgroup",
            "bandwidth",
            "ip",
            "route",
            "dnsmasq:options",
        ],
    ),
    (
        "network/forward",
        &["driver", "address", "nat", "pf", "interface"],
    ),
    ("network/forward/nat", &["address", "port"]),
    ("network/dns", &["forwarder", "txt", "host", "srv"]),
    ("network/ip", &["tftp", "dhcp"]),
    ("network/ip/dhcp", &["range", "host", "bootp"]),
    ("network/portgroup", &["vlan", "virtualport", "bandwidth"]),
    ("network/bandwidth", &["inbound", "outbound"]),
];

/// Top-level order of `<network>` (kept for the UUID setter).
pub const NETWORK_TOP_ORDER: &[&str] = &[
    "name",
    "uuid",
    "title",
    "description",
    "metadata",
    "forward",
    "bridge",
    "mtu",
    "mac",
    "port",
    "domain",
    "dns",
    "vlan",
    "virtualport",
    "portgroup",
    "bandwidth",
    "ip",
    "route",
];

/// Forward modes of network.rng.
pub const NETWORK_FORWARD_MODES: &[&str] = &[
    "nat",
    "route",
    "open",
    "bridge",
    "passthrough",
    "private",
    "vepa",
    "hostdev",
];

/// Forward modes that hand traffic to host devices: no IP configuration.
pub const NETWORK_FORWARD_NO_IP_MODES: &[&str] =
    &["bridge", "private", "vepa", "passthrough", "hostdev"];

/// Forward modes whose `dev` and first `<interface>` are not mirrored.
pub const NETWORK_FORWARD_NO_DEV_IFACE: &[&str] = &["hostdev", "passthrough"];

/// Forward modes (besides isolated) where libvirt creates the bridge and
/// writes `stp='on' delay='0'` defaults.
pub const NETWORK_MANAGED_BRIDGE_MODES: &[&str] = &["nat", "route", "open"];

/// Child order per parent path in `<pool>` documents.
pub const POOL_ORDER: &[(&str, &[&str])] = &[
    (
        "pool",
        &[
            "name",
            "uuid",
            "capacity",
            "allocation",
            "available",
            "features",
            "source",
            "config_opts",
            "target",
            "mount_opts",
            "refresh",
        ],
    ),
    (
        "pool/source",
        &[
            "host",
            "device",
            "dir",
            "adapter",
            "initiator",
            "name",
            "auth",
            "format",
            "vendor",
            "product",
            "protocol",
        ],
    ),
    ("pool/target", &["path", "permissions"]),
    (
        "pool/target/permissions",
        &["mode", "owner", "group", "label"],
    ),
];

/// Top-level order of `<pool>` (kept for the UUID setter).
pub const POOL_TOP_ORDER: &[&str] = &[
    "name",
    "uuid",
    "capacity",
    "allocation",
    "available",
    "features",
    "source",
    "target",
    "refresh",
];

/// Child order per parent path in `<volume>` documents.
pub const VOLUME_ORDER: &[(&str, &[&str])] = &[
    (
        "volume",
        &[
            "name",
            "key",
            "source",
            "capacity",
            "allocation",
            "physical",
            "target",
            "backingStore",
        ],
    ),
    (
        "volume/target",
        &[
            "path",
            "format",
            "permissions",
            "timestamps",
            "compat",
            "encryption",
            "clusterSize",
            "nocow",
            "features",
        ],
    ),
    (
        "volume/target/permissions",
        &["mode", "owner", "group", "label"],
    ),
    ("volume/target/encryption", &["secret", "cipher", "ivgen"]),
    ("volume/target/features", &["lazy_refcounts", "extended_l2"]),
    ("volume/backingStore", &["path", "format", "permissions"]),
    (
        "volume/backingStore/permissions",
        &["mode", "owner", "group", "label"],
    ),
];

/// Pool types whose missing `<name>` is taken from `<source><name>`.
pub const POOL_NAME_FROM_SOURCE: &[&str] = &["logical"];

/// Per pool type defaults applied after parsing.
#[derive(Debug)]
pub struct PoolDefaults {
    pub pool_type: &'static str,
    /// `<source><format type=...>` when absent.
    pub source_format: Option<&'static str>,
    /// `<source><name>` defaults to the pool name.
    pub source_name_from_pool: bool,
    /// `<source><dir path=...>` when absent.
    pub source_dir: Option<&'static str>,
    /// `<target><path>` when absent; `{source_name}` is substituted.
    pub target_path: Option<&'static str>,
}

const fn pd(
    pool_type: &'static str,
    source_format: Option<&'static str>,
    source_name_from_pool: bool,
    source_dir: Option<&'static str>,
    target_path: Option<&'static str>,
) -> PoolDefaults {
    PoolDefaults {
        pool_type,
        source_format,
        source_name_from_pool,
        source_dir,
        target_path,
    }
}

/// Pool defaults table.
pub const POOL_DEFAULTS: &[PoolDefaults] = &[
    //  type        source format    name<-pool source dir  target path
    pd("netfs", Some("auto"), false, None, None),
    pd("fs", Some("auto"), false, None, None),
    pd(
        "logical",
        Some("lvm2"),
        true,
        None,
        Some("/dev/{source_name}"),
    ),
    pd("disk", Some("unknown"), false, None, None),
    pd("zfs", None, false, None, Some("/dev/zvol/{source_name}")),
    pd("gluster", None, false, Some("/"), None),
];

/// Per pool type defaults for the volumes in it.
#[derive(Debug)]
pub struct VolumeDefaults {
    pub pool_type: &'static str,
    /// `<volume type=...>` when absent.
    pub volume_type: Option<&'static str>,
    /// `<target><format type=...>` when absent.
    pub default_format: Option<&'static str>,
    /// `<target><path>` is `<pool target path>/<name>` when absent.
    pub path_from_pool: bool,
}

const fn vd(
    pool_type: &'static str,
    volume_type: Option<&'static str>,
    default_format: Option<&'static str>,
    path_from_pool: bool,
) -> VolumeDefaults {
    VolumeDefaults {
        pool_type,
        volume_type,
        default_format,
        path_from_pool,
    }
}

/// Volume defaults table.
pub const VOLUME_DEFAULTS: &[VolumeDefaults] = &[
    vd("dir", Some("file"), Some("raw"), true),
    vd("fs", Some("file"), Some("raw"), true),
    vd("netfs", Some("file"), Some("raw"), true),
    vd("logical", Some("block"), None, false),
    vd("disk", Some("block"), None, false),
    vd("gluster", Some("network"), Some("raw"), false),
    vd("iscsi", Some("block"), None, false),
    vd("scsi", Some("block"), None, false),
    vd("mpath", Some("block"), None, false),
    vd("zfs", Some("block"), None, false),
    vd("vstorage", Some("file"), Some("raw"), true),
    vd("rbd", Some("network"), None, false),
    vd("sheepdog", Some("network"), None, false),
    vd("iscsi-direct", Some("network"), None, false),
];

/// `<compat>` written when qcow2 v3 features are requested without one.
pub const QCOW2_DEFAULT_COMPAT: &str = "1.1";

/// `<address type=...>` attributes and their hex width (0 = decimal).
pub const ADDRESS_FORMATS: &[(&str, &[(&str, usize)])] = &[
    (
        "pci",
        &[("domain", 4), ("bus", 2), ("slot", 2), ("function", 1)],
    ),
    ("ccw", &[("cssid", 1), ("ssid", 1), ("devno", 4)]),
    (
        "drive",
        &[("controller", 0), ("bus", 0), ("target", 0), ("unit", 0)],
    ),
    (
        "virtio-serial",
        &[("controller", 0), ("bus", 0), ("port", 0)],
    ),
    ("ccid", &[("controller", 0), ("slot", 0)]),
    ("isa", &[("iobase", 1), ("irq", 1)]),
    ("spapr-vio", &[("reg", 8)]),
];

/// Disk target prefixes and the bus each implies (longest prefixes first).
pub const DISK_PREFIXES: &[(&str, &str)] = &[
    ("xvd", "xen"),
    ("ubd", "uml"),
    ("hd", "ide"),
    ("sd", "scsi"),
    ("vd", "virtio"),
    ("fd", "fdc"),
    ("ub", "usb"),
    ("nvme", "nvme"),
];

/// Attributes holding CPU/NUMA bitmaps, written in canonical range form.
pub const BITMAP_ATTRS: &[(&str, &str)] = &[
    ("vcpu", "cpuset"),
    ("vcpus/vcpu", "id"),
    ("cputune/vcpupin", "cpuset"),
    ("cputune/emulatorpin", "cpuset"),
    ("cputune/iothreadpin", "cpuset"),
    ("cputune/vcpusched", "vcpus"),
    ("cputune/iothreadsched", "iothreads"),
    ("cputune/cachetune", "vcpus"),
    ("cputune/cachetune/monitor", "vcpus"),
    ("cputune/memorytune", "vcpus"),
    ("cputune/memorytune/monitor", "vcpus"),
    ("numatune/memory", "nodeset"),
    ("numatune/memnode", "nodeset"),
    ("cpu/numa/cell", "cpus"),
    ("iothreadids/iothread", "cpuset"),
];

/// Attribute values that are the default and not written back.
pub const DEFAULT_ATTR_VALUES: &[(&str, &str, &str)] =
    &[("devices/disk/driver", "cache", "default")];

/// Enumerations matched case-insensitively and written in lower case.
pub const CASE_INSENSITIVE_ENUMS: &[(&str, &str, &[&str])] = &[(
    "devices/interface/model",
    "type",
    &[
        "virtio",
        "e1000",
        "e1000e",
        "rtl8139",
        "ne2k_pci",
        "pcnet",
        "i82551",
        "i82557b",
        "i82559er",
        "igb",
        "virtio-transitional",
        "virtio-non-transitional",
        "vmxnet3",
        "usb-net",
        "spapr-vlan",
        "lan9118",
        "smc91c111",
    ],
)];

/// Octal permission attributes, written with four digits.
pub const OCTAL_ATTRS: &[(&str, &str)] = &[
    ("devices/filesystem", "fmode"),
    ("devices/filesystem", "dmode"),
];

/// `<memtune>` values at or above this (KiB) mean "unlimited" and are omitted.
pub const MEMORY_PARAM_UNLIMITED_KIB: u64 = 9_007_199_254_740_991;

/// Canonical prefixes of libvirt's driver namespaces in domain XML.
pub const DOMAIN_NAMESPACES: &[(&str, &str)] = &[
    ("qemu", "http://libvirt.org/schemas/domain/qemu/1.0"),
    ("lxc", "http://libvirt.org/schemas/domain/lxc/1.0"),
    ("bhyve", "http://libvirt.org/schemas/domain/bhyve/1.0"),
    ("xen", "http://libvirt.org/schemas/domain/xen/1.0"),
    ("vmx", "http://libvirt.org/schemas/domain/vmware/1.0"),
];

/// Live-only data left out of the inactive form: `(path, attribute)`, or
/// `(path, None)` for a whole element.  Paths are relative to `<domain>`.
pub const LIVE_ONLY: &[(&str, Option<&str>)] = &[
    ("devices/disk/source", Some("index")),
    ("devices/disk/mirror", None),
    ("devices/interface/source", Some("portid")),
    ("devices/channel/target", Some("state")),
    ("seclabel/imagelabel", None),
];

/// Rust architecture names mapped to libvirt's.
pub const ARCH_NAMES: &[(&str, &str)] = &[
    ("x86_64", "x86_64"),
    ("x86", "i686"),
    ("aarch64", "aarch64"),
    ("arm", "armv7l"),
    ("powerpc64", "ppc64"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
    ("loongarch64", "loongarch64"),
    ("mips64", "mips64"),
];

/// Lifecycle actions written when absent.
pub const LIFECYCLE_DEFAULTS: &[(&str, &str)] = &[
    ("on_poweroff", "destroy"),
    ("on_reboot", "restart"),
    ("on_crash", "destroy"),
];

/// What the domain model deliberately does not carry into the formatted
/// (inactive) XML, each for a documented reason: runtime-only state,
/// values equal to the default, or data libvirt regenerates.  Paths start at
/// the root; a leading `*` matches any path ending so.
pub const DOCUMENTED_DROPS: &[&str] = &[
    "domain/@id",                              // runtime id (live form only)
    "domain/devices/disk/source/@index",       // live-only backing-chain index
    "domain/devices/disk/mirror",              // live-only block job state
    "domain/devices/interface/source/@portid", // live-only port binding
    "domain/devices/channel/target/@state",    // live-only agent state
    "domain/seclabel/imagelabel",              // generated at start
    "*/@index",                                // backing chain indexes
    "domain/devices/disk/source/seclabel",     // labelskip markers are live-only
    "domain/devices/disk/driver/@cache",       // cache='default'
    "domain/devices/disk/target/@tray",        // tray='closed' is the default
    "domain/devices/disk/target/@removable",   // only meaningful on usb
    "domain/devices/channel/source",           // unix source without a path
    "domain/devices/parallel/protocol",        // only tcp chardevs have a protocol
    "domain/devices/smartcard/protocol",
    "domain/devices/serial/protocol",
    "domain/devices/console/protocol",
    "domain/devices/channel/protocol",
    "domain/devices/redirfilter/usbdev/@class", // -1 means any
    "domain/devices/redirfilter/usbdev/@vendor",
    "domain/devices/redirfilter/usbdev/@product",
    "domain/devices/redirfilter/usbdev/@version",
    "domain/devices/interface/coalesce", // max='0' is the default
    "domain/devices/video/model/@primary", // primary='no' is the default
    "domain/devices/graphics/@port",     // ignored with autoport/socket
    "domain/devices/graphics/@autoport",
    "domain/devices/graphics/@listen",    // superseded by socket
    "domain/cpu/model",                   // empty host-model fallback
    "domain/cputune/vcpusched/@priority", // only for fifo/rr
    "domain/cputune/iothreadsched/@priority",
    "domain/cputune/cachetune", // tunes for vCPUs that don't exist
    "domain/cputune/memorytune",
    "domain/memtune",                  // unlimited values
    "domain/numatune/memory/@nodeset", // ignored with placement='auto'
    "domain/os/bootmenu/@timeout",     // ignored with enable='no'
    "domain/metadata",                 // elements without a namespace, duplicates
    "domain/devices/interface/driver", // tunables of virtio NICs only
    "domain/devices/interface/backend/@vhost",
    "domain/devices/interface/filterref", // not with hostdev NICs
];

/// USB2 controllers that can have companion controllers.
pub const USB_MASTERS: &[&str] = &["ich9-ehci1"];

/// USB1 companion controllers and their default `<master startport>`.
pub const USB_COMPANIONS: &[(&str, u32)] =
    &[("ich9-uhci1", 0), ("ich9-uhci2", 2), ("ich9-uhci3", 4)];

/// Enumerated attributes of domaincommon.rng checked at parse time:
/// `(path below <domain>, attribute, allowed values)`.
pub const DOMAIN_ENUMS: &[(&str, &str, &[&str])] = &[
    ("features/gic", "version", &["2", "3", "host"]),
    ("cpu/numa/cell", "memAccess", &["shared", "private"]),
    ("cpu/numa/cell", "discard", &["yes", "no"]),
    (
        "cpu",
        "mode",
        &["custom", "host-model", "host-passthrough", "maximum"],
    ),
    ("cpu", "match", &["minimum", "exact", "strict"]),
    ("cpu", "check", &["none", "partial", "full"]),
    (
        "clock",
        "offset",
        &["utc", "localtime", "timezone", "variable", "absolute"],
    ),
    (
        "devices/disk",
        "device",
        &["disk", "cdrom", "floppy", "lun"],
    ),
    (
        "devices/disk",
        "type",
        &[
            "file",
            "block",
            "dir",
            "network",
            "volume",
            "nvme",
            "vhostuser",
            "vhostvdpa",
        ],
    ),
    (
        "devices/disk/target",
        "bus",
        &[
            "ide", "fdc", "scsi", "virtio", "xen", "usb", "uml", "sata", "sd", "nvme",
        ],
    ),
    (
        "devices/graphics",
        "type",
        &[
            "sdl",
            "vnc",
            "spice",
            "rdp",
            "desktop",
            "egl-headless",
            "dbus",
        ],
    ),
    (
        "devices/input",
        "type",
        &["tablet", "mouse", "keyboard", "passthrough", "evdev"],
    ),
    (
        "devices/memballoon",
        "model",
        &[
            "virtio",
            "xen",
            "none",
            "virtio-transitional",
            "virtio-non-transitional",
        ],
    ),
];

/// Attributes that must hold non-negative integers.
pub const NON_NEGATIVE_ATTRS: &[(&str, &str)] = &[
    ("devices/interface/driver", "queues"),
    ("devices/controller", "index"),
    ("devices/controller/driver", "queues"),
    ("devices/disk/driver", "queues"),
    ("devices/video/model", "vram"),
    ("devices/video/model", "heads"),
];

/// Attributes domaincommon.rng requires: `(path below <domain>, attribute)`.
pub const DOMAIN_REQUIRED_ATTRS: &[(&str, &str)] = &[
    ("devices/controller", "type"),
    ("devices/interface", "type"),
    ("devices/graphics", "type"),
    ("devices/input", "type"),
    ("devices/sound", "model"),
    ("devices/rng", "model"),
    ("devices/memballoon", "model"),
    ("devices/watchdog", "model"),
    ("devices/interface/mac", "address"),
];

/// Address types a disk on each bus may have.
pub const DISK_BUS_ADDRESS_TYPES: &[(&str, &[&str])] = &[
    ("ide", &["drive"]),
    ("fdc", &["drive"]),
    ("scsi", &["drive"]),
    ("sata", &["drive"]),
    ("usb", &["usb"]),
];

/// Address types a mediated device of each model may have.
pub const MDEV_MODEL_ADDRESS_TYPES: &[(&str, &[&str])] =
    &[("vfio-pci", &["pci"]), ("vfio-ccw", &["ccw"])];

/// Elements whose content is free-form XML (kept verbatim, text included).
pub const FREE_FORM_ELEMENTS: &[&str] = &["metadata", "description", "title"];

/// NIC models that have virtio driver tunables.
pub const VIRTIO_NET_MODELS: &[&str] =
    &["virtio", "virtio-transitional", "virtio-non-transitional"];

/// Highest bit accepted in a CPU/NUMA bitmap.
pub const BITMAP_MAX_BIT: u32 = 65_535;

/// Values of the lifecycle elements.
pub const LIFECYCLE_VALUES: &[(&str, &[&str])] = &[
    (
        "on_poweroff",
        &["destroy", "restart", "preserve", "rename-restart"],
    ),
    (
        "on_reboot",
        &["destroy", "restart", "preserve", "rename-restart"],
    ),
    (
        "on_crash",
        &[
            "destroy",
            "restart",
            "preserve",
            "rename-restart",
            "coredump-destroy",
            "coredump-restart",
        ],
    ),
    (
        "on_lockfailure",
        &["poweroff", "restart", "pause", "ignore"],
    ),
];
