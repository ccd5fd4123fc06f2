//! VMware `.vmx` files and libvirt's rules between them and domain XML.
//!
//! * [`vmx::Vmx`] reads and writes `.vmx` files, keeping the order of entries, their key
//!   spelling, comments and blank lines.
//! * [`vmx_to_xml`] and [`xml_to_vmx`] convert, as libvirt's `domxml-from-native` and
//!   `domxml-to-native vmware-vmx` do, within a [`Context`] that maps file names to the
//!   driver's view (datastore paths on ESX, plain paths for VMware Desktop).

pub mod context;
pub mod error;
pub mod to_vmx;
pub mod to_xml;
pub mod vmx;

pub use context::Context;
pub use error::VmxError;
pub use to_vmx::{domain_to_vmx, xml_to_vmx};
pub use to_xml::{vmx_text_to_xml, vmx_to_domain, vmx_to_xml};
pub use vmx::Vmx;

/// The native format name of `.vmx` in libvirt's `domxml-to-native` / `-from-native`.
pub const NATIVE_FORMAT: &str = "vmware-vmx";

#[cfg(test)]
mod tests {
    use super::*;

    fn esx() -> Context {
        Context::datastores("datastore", "vm", |_| true)
    }

    #[test]
    fn errors_name_the_element_or_key_and_value() {
        let xml = |body: &str| {
            format!("<domain type='vmware'><name>n</name><memory>4096</memory>{body}</domain>")
        };
        let e = xml_to_vmx(&xml("<vcpu>3</vcpu>"), &esx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "domain/vcpu: 3 vCPUs: VMware needs 1 or an even number"
        );
        let e = xml_to_vmx(
            &xml("<devices><disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda' bus='virtio'/></disk></devices>"),
            &esx(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "domain/devices/disk[1]/target/@bus: 'virtio' is not supported by VMware (scsi, ide, sata, fdc)"
        );
        let e = xml_to_vmx(
            "<domain type='kvm'><name>n</name><memory>1</memory></domain>",
            &esx(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "domain/@type: 'kvm' is not 'vmware'");
        let e = vmx_text_to_xml(
            "config.version = \"8\"\nvirtualHW.version = \"4\"\nethernet0.present = \"true\"\nethernet0.virtualDev = \"rtl8139\"\n",
            &esx(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "VMX entry 'ethernet0.virtualDev' has invalid value 'rtl8139': expected 'vlance', 'vmxnet', 'vmxnet3', 'e1000' or 'e1000e'"
        );
        let e = vmx_text_to_xml("config.version = \"7\"\n", &esx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VMX entry 'config.version' has invalid value '7': expected 8"
        );
    }

    #[test]
    fn vnc_both_ways() {
        let vmx = "config.version = \"8\"\nvirtualHW.version = \"4\"\ndisplayName = \"g\"\n\
                   RemoteDisplay.vnc.enabled = \"true\"\nRemoteDisplay.vnc.port = \"5903\"\n\
                   RemoteDisplay.vnc.ip = \"127.0.0.1\"\nRemoteDisplay.vnc.keymap = \"de\"\n";
        let xml = vmx_text_to_xml(vmx, &esx()).unwrap();
        assert!(
            xml.contains(
                "<graphics type='vnc' port='5903' autoport='no' listen='127.0.0.1' keymap='de'>\n      \
                 <listen type='address' address='127.0.0.1'/>"
            ),
            "{xml}"
        );
        let back = Vmx::parse(&xml_to_vmx(&xml, &esx()).unwrap()).unwrap();
        for (k, v) in [
            ("RemoteDisplay.vnc.enabled", "true"),
            ("RemoteDisplay.vnc.port", "5903"),
            ("RemoteDisplay.vnc.ip", "127.0.0.1"),
            ("RemoteDisplay.vnc.keymap", "de"),
        ] {
            assert_eq!(back.get(k), Some(v), "{k}");
        }
        let e = xml_to_vmx(&xml.replace("type='vnc'", "type='spice'"), &esx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "domain/devices/graphics[1]/@type: 'spice' is not supported by VMware (only 'vnc')"
        );
    }

    #[test]
    fn local_files_round_trip() {
        let ctx = Context::local("/vms/a");
        let vmx = "config.version = \"8\"\nvirtualHW.version = \"4\"\ndisplayName = \"a\"\n\
                   memsize = \"512\"\nscsi0.present = \"true\"\nscsi0.virtualDev = \"lsilogic\"\n\
                   scsi0:0.present = \"true\"\nscsi0:0.deviceType = \"scsi-hardDisk\"\n\
                   scsi0:0.fileName = \"a.vmdk\"\n";
        let xml = vmx_text_to_xml(vmx, &ctx).unwrap();
        assert!(xml.contains("<source file='/vms/a/a.vmdk'/>"), "{xml}");
        let back = xml_to_vmx(&xml, &ctx).unwrap();
        let v = Vmx::parse(&back).unwrap();
        assert_eq!(v.get("scsi0:0.fileName"), Some("/vms/a/a.vmdk"));
        assert_eq!(v.get("memsize"), Some("512"));
        let e = xml_to_vmx(&xml.replace("/vms/a/a.vmdk", "a.vmdk"), &ctx).unwrap_err();
        assert_eq!(
            e.to_string(),
            "domain/devices/disk[1]/source/@file: 'a.vmdk' is not an absolute path"
        );
    }
}
