//! Where files live: the mapping between a `.vmx` file name and the `<source>` a domain
//! XML shows, which depends on the driver (datastore paths on ESX, plain paths for VMware
//! Desktop), and the other facts a conversion needs from outside the documents.

use crate::error::VmxError;

type ParseFn = dyn Fn(&str) -> Result<Option<String>, VmxError> + Send + Sync;
type FormatFn = dyn Fn(&str) -> Result<String, VmxError> + Send + Sync;

/// The conversion context.
pub struct Context {
    /// `.vmx` file name → `<source>` text; `None` drops the source (an unknown datastore).
    pub parse_file_name: Box<ParseFn>,
    /// `<source>` text → `.vmx` file name.
    pub format_file_name: Box<FormatFn>,
    /// The virtual hardware version written by domain XML → `.vmx` (4 at least).
    pub virtual_hw_version: u32,
    /// The SCSI controller model for a controller none of whose disks names one
    /// (`<driver name>`); libvirt asks the driver, which may read the disk's descriptor.
    pub default_scsi_model: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("virtual_hw_version", &self.virtual_hw_version)
            .field("default_scsi_model", &self.default_scsi_model)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The datastore mapping of an ESX host, as libvirt's own vmx tests set it up: a file
    /// name without `/` lives in the VM's directory (`[vm_datastore] vm_dir/NAME`),
    /// `/vmfs/volumes/DS/PATH` is `[DS] PATH` when `DS` is a known datastore (name or
    /// UUID; `known` answers) and has no source otherwise, any other absolute path is
    /// kept. Back, `[DS] PATH` is `/vmfs/volumes/DS/PATH` and an absolute path is kept.
    pub fn datastores(
        vm_datastore: &str,
        vm_dir: &str,
        known: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Context {
        let ds = vm_datastore.to_string();
        let dir = vm_dir.trim_end_matches('/').to_string();
        Context {
            parse_file_name: Box::new(move |name| {
                if let Some(rest) = name.strip_prefix("/vmfs/volumes/") {
                    let (store, path) = rest.split_once('/').unwrap_or((rest, ""));
                    if !known(store) {
                        return Ok(None);
                    }
                    Ok(Some(format!("[{store}] {path}")))
                } else if name.starts_with('/') {
                    Ok(Some(name.to_string()))
                } else if name.contains('/') {
                    Err(VmxError::bad(
                        "fileName",
                        name,
                        "a relative file name must not name a directory",
                    ))
                } else if dir.is_empty() {
                    Ok(Some(format!("[{ds}] {name}")))
                } else {
                    Ok(Some(format!("[{ds}] {dir}/{name}")))
                }
            }),
            format_file_name: Box::new(|src| {
                if let Some((store, path)) = parse_datastore_path(src) {
                    Ok(format!("/vmfs/volumes/{store}/{path}"))
                } else if src.starts_with('/') {
                    Ok(src.to_string())
                } else {
                    Err(VmxError::xml(
                        "source",
                        format!(
                            "'{src}' is neither a datastore path ('[datastore] path') nor an absolute path"
                        ),
                    ))
                }
            }),
            virtual_hw_version: 4,
            default_scsi_model: Some("lsilogic".to_string()),
        }
    }

    /// Local files, as VMware Desktop (Workstation, Player, Fusion) keeps them: a relative
    /// name is relative to the directory of the `.vmx`; back, only absolute paths.
    pub fn local(vmx_dir: &str) -> Context {
        let dir = vmx_dir.trim_end_matches('/').to_string();
        Context {
            parse_file_name: Box::new(move |name| {
                if name.starts_with('/') {
                    Ok(Some(name.to_string()))
                } else {
                    Ok(Some(format!("{dir}/{name}")))
                }
            }),
            format_file_name: Box::new(|src| {
                if src.starts_with('/') {
                    Ok(src.to_string())
                } else {
                    Err(VmxError::xml(
                        "source",
                        format!("'{src}' is not an absolute path"),
                    ))
                }
            }),
            virtual_hw_version: 4,
            default_scsi_model: Some("lsilogic".to_string()),
        }
    }
}

/// Splits `[datastore] path` into its datastore and path.
pub fn parse_datastore_path(src: &str) -> Option<(&str, &str)> {
    let rest = src.strip_prefix('[')?;
    let (store, path) = rest.split_once(']')?;
    Some((store, path.trim_start()))
}
