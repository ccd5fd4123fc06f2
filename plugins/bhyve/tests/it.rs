//! The bhyve plugin through the host library: the built `librvirt_plugin_bhyve.so` is
//! loaded by `rvirt_host::Runtime` (as `rvirt` and the daemon load it) and
//! `bhyve:///system` is opened on this Linux machine, which has no bhyve: conversions,
//! definitions and the lifecycle errors are checked. Build the plugin first:
//! `cargo build -p rvirt-plugin-bhyve`.

use rvirt_host::{Connection, Runtime};
use rvirt_tests::built;
use std::path::PathBuf;

const UUID: &str = "df3be7e7-a104-11e3-aeb0-50e5492bd3dc";

const XML: &str = "<domain type='bhyve'>
  <name>freebsd</name>
  <uuid>df3be7e7-a104-11e3-aeb0-50e5492bd3dc</uuid>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type>hvm</type></os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'>
      <source file='/vms/freebsd.img'/>
      <target dev='hda' bus='sata'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/isos/freebsd.iso'/>
      <target dev='hdb' bus='sata'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:11:22:33'/>
      <source bridge='bridge0'/>
      <model type='virtio'/>
    </interface>
    <serial type='nmdm'>
      <source master='/dev/nmdm0A' slave='/dev/nmdm0B'/>
    </serial>
  </devices>
</domain>
";

struct Env {
    _tmp: PathBuf,
    rt: Runtime,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._tmp);
    }
}

fn env(tag: &str) -> Env {
    let so = built("librvirt_plugin_bhyve.so");
    let tmp = std::env::temp_dir().join(format!("rvirt-bhyve-it-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("plugins")).unwrap();
    std::fs::create_dir_all(tmp.join("root")).unwrap();
    std::fs::copy(&so, tmp.join("plugins/librvirt_plugin_bhyve.so")).unwrap();
    let rt =
        Runtime::with_search_path(vec![tmp.join("plugins")]).with_system_root(tmp.join("root"));
    Env { _tmp: tmp, rt }
}

impl Env {
    fn open(&self) -> Connection {
        self.rt
            .open("bhyve:///system", false)
            .expect("open bhyve:///system")
    }
}

#[test]
fn opens_the_system_uri_only() {
    let e = env("open");
    let c = e.open();
    assert_eq!(c.get_uri().unwrap(), "bhyve:///system");
    assert_eq!(c.get_type().unwrap(), "BHYVE");
    let caps = c.get_capabilities().unwrap();
    assert!(caps.contains("<domain type='bhyve'/>"), "{caps}");
    assert!(c.node_get_info().unwrap().cpus >= 1);
    // (a URI with a host name goes to the remote driver, not to the plugin)
    for bad in ["bhyve:///session", "bhyve:///"] {
        let Err(err) = e.rt.open(bad, false) else {
            panic!("{bad} opened");
        };
        let err = err.to_string();
        assert!(err.contains("bhyve:///system"), "{bad}: {err}");
    }
}

#[test]
fn converts_both_ways_through_the_connection() {
    let e = env("conv");
    let c = e.open();
    let native = c.domain_xml_to_native("bhyve-argv", XML, 0).unwrap();
    assert_eq!(
        native,
        "/usr/sbin/bhyveload -m 512 -d /vms/freebsd.img freebsd\n\
         /usr/sbin/bhyve -c 2 -m 512 -A -I -u -H -P -s 0:0,hostbridge -s 1:0,lpc \
         -s 2:0,ahci,hd:/vms/freebsd.img,cd:/isos/freebsd.iso \
         -s 3:0,virtio-net,tap0,mac=52:54:00:11:22:33 -l com1,/dev/nmdm0A freebsd\n"
    );
    // back to XML, and that XML gives the same command lines
    let xml = c.domain_xml_from_native("bhyve-argv", &native, 0).unwrap();
    for want in [
        "<name>freebsd</name>",
        "<memory unit='KiB'>524288</memory>",
        "<vcpu placement='static'>2</vcpu>",
        "<source file='/isos/freebsd.iso'/>",
        "<mac address='52:54:00:11:22:33'/>",
        "<source master='/dev/nmdm0A' slave='/dev/nmdm0B'/>",
    ] {
        assert!(xml.contains(want), "{want} missing from\n{xml}");
    }
    assert_eq!(
        c.domain_xml_to_native("bhyve-argv", &xml, 0).unwrap(),
        native
    );

    // grub-bhyve with the device map named by the driver
    let grub = XML.replace(
        "<os>",
        "<bootloader>/usr/local/sbin/grub-bhyve</bootloader><os>",
    );
    let native = c.domain_xml_to_native("bhyve-argv", &grub, 0).unwrap();
    assert!(
        native.starts_with(
            "/usr/local/sbin/grub-bhyve --root cd --device-map '<device.map>' --memory 512 --cons-dev /dev/nmdm0A freebsd\n"
        ),
        "{native}"
    );

    // a UEFI loader must be read-only pflash, as libvirt's conversion requires
    let uefi = XML.replace(
        "<os><type>hvm</type></os>",
        "<os><type>hvm</type><loader>/fw.fd</loader></os>",
    );
    let err = c
        .domain_xml_to_native("bhyve-argv", &uefi, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Only read-only pflash is supported"), "{err}");
    let uefi = uefi.replace("<loader>", "<loader readonly='yes' type='pflash'>");
    let native = c.domain_xml_to_native("bhyve-argv", &uefi, 0).unwrap();
    assert!(native.starts_with("/usr/sbin/bhyve -c 2 -m 512 -A -I -u -H -P -s 0:0,hostbridge -l bootrom,/fw.fd -s 1:0,lpc "), "{native}");

    // errors name what is wrong
    let err = c
        .domain_xml_to_native("qemu-argv", XML, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported config type qemu-argv"), "{err}");
    let bad = XML.replace("<model type='virtio'/>", "<model type='rtl8139'/>");
    let err = c
        .domain_xml_to_native("bhyve-argv", &bad, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NIC model is not supported"), "{err}");
    let err = c
        .domain_xml_from_native("bhyve-argv", "bhyve -c 1 -m 256 -s 5,nvme,/x vm", 0)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "unsupported bhyve device 'nvme' in '-s 5,nvme,/x'");
    let err = c
        .domain_xml_from_native("bhyve-argv", "bhyve -D -m 256 vm", 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported bhyve option '-D'"), "{err}");
}

#[test]
fn defines_and_answers_lifecycle_calls_with_what_is_missing() {
    assert!(
        !std::path::Path::new("/dev/vmm").exists(),
        "this machine has /dev/vmm (a FreeBSD host with bhyve): this test checks the error of a host without it"
    );
    let e = env("life");
    let c = e.open();
    let mut d = c.define_xml(XML, 0).unwrap();
    assert_eq!(d.uuid().to_string(), UUID);
    let names: Vec<String> = c
        .list_all_domains(0)
        .unwrap()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    assert_eq!(names, ["freebsd"]);
    // a second connection sees the definition (it is kept under the system root)
    let c2 = e.open();
    let d2 = c2.lookup_domain_by_name("freebsd").unwrap();
    assert_eq!(d2.uuid().to_string(), UUID);
    assert!(
        d2.get_xml_desc(0)
            .unwrap()
            .contains("<source file='/vms/freebsd.img'/>")
    );
    let info = d2.get_info().unwrap();
    assert_eq!(info.memory_kib, 512 * 1024);
    assert_eq!(info.nr_virt_cpu, 2);
    assert!(!d2.is_active().unwrap());

    let err = d.create(0).unwrap_err().to_string();
    assert!(err.contains("virDomainCreateWithFlags"), "{err}");
    assert!(
        err.contains("not a FreeBSD host with bhyve (/dev/vmm is missing)"),
        "{err}"
    );
    assert!(
        err.contains("would run: /usr/sbin/bhyveload -m 512 -d /vms/freebsd.img freebsd, then /usr/sbin/bhyve -c 2"),
        "{err}"
    );
    for (r, api, cmd) in [
        (
            d2.destroy(0),
            "virDomainDestroyFlags",
            "bhyvectl --destroy --vm=freebsd",
        ),
        (d2.shutdown(0), "virDomainShutdownFlags", "kill -TERM"),
        (
            d2.reboot(0),
            "virDomainReboot",
            "bhyvectl --force-reset --vm=freebsd",
        ),
    ] {
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains(api) && err.contains("/dev/vmm is missing") && err.contains(cmd),
            "{err}"
        );
        assert!(err.contains("not supported"), "{err}");
    }
    let err = c.create_xml(XML, 0).unwrap_err().to_string();
    assert!(
        err.contains("virDomainCreateXML") && err.contains("/dev/vmm is missing"),
        "{err}"
    );
    let err = d2.suspend().unwrap_err().to_string();
    assert!(
        err.contains("virDomainSuspend") && err.contains("bhyve"),
        "{err}"
    );

    // a definition bhyve cannot run is refused with the reason
    let bad = XML
        .replace("<name>freebsd</name>", "<name>bad</name>")
        .replace(UUID, "11111111-2222-3333-4444-555555555555")
        .replace("<devices>", "<devices><controller type='isa' index='1'/>");
    let err = c.define_xml(&bad, 0).unwrap_err().to_string();
    assert!(
        err.contains("ISA controller can only have index '0'"),
        "{err}"
    );
    // what only the command line cannot hold fails when the domain would start
    let ide = bad
        .replace("<controller type='isa' index='1'/>", "")
        .replace("bus='sata'", "bus='ide'");
    let mut d3 = c.define_xml(&ide, 0).unwrap();
    let err = d3.create(0).unwrap_err().to_string();
    assert!(err.contains("unsupported disk device"), "{err}");
    d3.undefine(0).unwrap();
    // the same name with another UUID
    let clash = XML.replace(UUID, "11111111-2222-3333-4444-555555555555");
    let err = c.define_xml(&clash, 0).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");

    // read-only connections cannot define
    let ro = e.rt.open("bhyve:///system", true).unwrap();
    let err = ro.define_xml(XML, 0).unwrap_err().to_string();
    assert!(err.contains("read only"), "{err}");

    d2.undefine(0).unwrap();
    assert!(c.list_all_domains(0).unwrap().is_empty());
}
