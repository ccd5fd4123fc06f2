//! What the bhyve binaries on the host can do, and the host facts a command line depends
//! on. libvirt probes these from `bhyve -h` and friends; its test harness sets them per
//! case. Here they are a value the generator takes; [`Caps::default`] is a current
//! FreeBSD bhyve (14.x) with grub-bhyve's `--cons-dev`.

/// bhyve and grub-bhyve capabilities (libvirt's `BHYVE_CAP_*` and `BHYVE_GRUB_CAP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `-u`: RTC keeps UTC.
    pub rtc_utc: bool,
    /// One AHCI controller takes up to 32 drives (`ahci,hd:...,cd:...`); without it every
    /// drive is its own `ahci-hd`/`ahci-cd` controller.
    pub ahci32slot: bool,
    /// The `e1000` NIC.
    pub net_e1000: bool,
    /// `-l bootrom,FILE` (UEFI).
    pub lpc_bootrom: bool,
    /// The `fbuf` framebuffer (VNC).
    pub fbuf: bool,
    /// The `xhci` USB controller with a tablet.
    pub xhci: bool,
    /// `-c cpus=N,sockets=S,cores=C,threads=T`.
    pub cputopology: bool,
    /// The `hda` sound device.
    pub sound_hda: bool,
    /// `fbuf`'s `password=`.
    pub vnc_password: bool,
    /// The `virtio-9p` file system share.
    pub virtio_9p: bool,
    /// The `virtio-rnd` entropy device.
    pub virtio_rnd: bool,
    /// grub-bhyve's `--cons-dev`.
    pub grub_consdev: bool,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps::all()
    }
}

impl Caps {
    /// Every capability.
    pub const fn all() -> Caps {
        Caps {
            rtc_utc: true,
            ahci32slot: true,
            net_e1000: true,
            lpc_bootrom: true,
            fbuf: true,
            xhci: true,
            cputopology: true,
            sound_hda: true,
            vnc_password: true,
            virtio_9p: true,
            virtio_rnd: true,
            grub_consdev: true,
        }
    }

    /// Sets a capability by its libvirt name (`AHCI32SLOT`, `GRUB_CONSDEV`, ...), for test
    /// data that names them.
    pub fn set(&mut self, name: &str, on: bool) -> Result<(), String> {
        let f = match name {
            "RTC_UTC" => &mut self.rtc_utc,
            "AHCI32SLOT" => &mut self.ahci32slot,
            "NET_E1000" => &mut self.net_e1000,
            "LPC_BOOTROM" => &mut self.lpc_bootrom,
            "FBUF" => &mut self.fbuf,
            "XHCI" => &mut self.xhci,
            "CPUTOPOLOGY" => &mut self.cputopology,
            "SOUND_HDA" => &mut self.sound_hda,
            "VNC_PASSWORD" => &mut self.vnc_password,
            "VIRTIO_9P" => &mut self.virtio_9p,
            "VIRTIO_RND" => &mut self.virtio_rnd,
            "GRUB_CONSDEV" => &mut self.grub_consdev,
            other => return Err(format!("unknown bhyve capability '{other}'")),
        };
        *f = on;
        Ok(())
    }
}

/// Where the firmware list comes from.
#[derive(Debug, Clone)]
pub enum Firmwares {
    /// Read the firmware directory.
    ReadDir,
    /// These file names (a test harness's fake directory).
    Listed(Vec<String>),
}

/// Host facts and settings a command line depends on.
#[derive(Clone)]
pub struct Options {
    pub caps: Caps,
    /// The bhyve binaries.
    pub bhyve: String,
    pub bhyveload: String,
    /// The tap device a NIC's argument names (libvirt names `tap0` in a dry run; the real
    /// device is created when the domain starts).
    pub tap: String,
    /// The grub device map file named on grub-bhyve's command line.
    pub devmap_file: String,
    /// The UEFI firmware directory (`firmware_dir` in bhyve.conf).
    pub firmware_dir: String,
    pub firmwares: Firmwares,
    /// The port an autoport VNC display gets (the first of libvirt's 5900-65535 range).
    pub vnc_autoport: u16,
    /// Generates the MAC address of an interface that has none.
    pub mac: fn() -> String,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("caps", &self.caps)
            .field("tap", &self.tap)
            .field("firmware_dir", &self.firmware_dir)
            .finish_non_exhaustive()
    }
}

/// A random MAC address with libvirt's `52:54:00` prefix.
pub fn random_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

impl Default for Options {
    /// A FreeBSD host's paths, a dry run (`domxml-to-native`).
    fn default() -> Options {
        Options {
            caps: Caps::default(),
            bhyve: "/usr/sbin/bhyve".into(),
            bhyveload: "/usr/sbin/bhyveload".into(),
            tap: "tap0".into(),
            devmap_file: "/usr/local/var/run/libvirt/bhyve/grub_bhyve-device.map".into(),
            firmware_dir: "/usr/local/share/uefi-firmware".into(),
            firmwares: Firmwares::ReadDir,
            vnc_autoport: 5900,
            mac: random_mac,
        }
    }
}

impl Options {
    /// The options of libvirt's `bhyvexml2argvtest`: fake tap `faketapdev`, device map
    /// `<device.map>`, firmware directory `fakefirmwaredir` holding `BHYVE_UEFI.fd`, and
    /// the all-zero generated MAC of its mock.
    pub fn for_tests() -> Options {
        Options {
            tap: "faketapdev".into(),
            devmap_file: "<device.map>".into(),
            firmware_dir: "fakefirmwaredir".into(),
            firmwares: Firmwares::Listed(vec!["BHYVE_UEFI.fd".into()]),
            mac: || "52:54:00:00:00:00".into(),
            ..Options::default()
        }
    }

    /// The firmware files, hidden files left out, sorted by name.
    pub fn firmware_files(&self) -> Vec<String> {
        let mut v: Vec<String> = match &self.firmwares {
            Firmwares::Listed(v) => v.clone(),
            Firmwares::ReadDir => std::fs::read_dir(&self.firmware_dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        };
        v.retain(|f| !f.starts_with('.'));
        v.sort();
        v
    }
}
