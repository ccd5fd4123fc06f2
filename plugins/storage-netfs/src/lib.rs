//! The `netfs` storage pool backend: a network file system (NFS, CIFS or GlusterFS)
//! mounted at the pool's target directory; its volumes are the image files in it.
//!
//! The pool's life cycle is libvirt's `netfs` backend:
//!
//! - **build** makes the target directory (as a `dir` pool);
//! - **start** mounts the export with the command line libvirt runs ([`mount_argv`]):
//!   `mount -t nfs HOST:DIR TARGET -o nodev,nosuid,noexec[,nfsvers=V][,OPTIONS]`; format
//!   `auto` leaves out `-t` (plain `mount` finds NFS where `-t auto` does not), `cifs`
//!   mounts `//HOST/DIR` with `guest`, `glusterfs` adds `direct-io-mode=1`; the options
//!   of `<fs:mount_opts>` come last;
//! - **check** reads `/proc/self/mountinfo`: a network file system mounted at the target;
//! - **stop** is `umount TARGET`; **delete** removes the (empty) target;
//! - **refresh** and every volume operation are the `dir` backend's
//!   ([`rvirt_storage_files`]) on the mounted target, refused while it is not mounted;
//! - **source discovery** asks the host's mount daemon for its exports (`showmount
//!   --no-headers --exports HOST`, the MOUNT protocol's EXPORT call) and answers libvirt's
//!   `<sources>` document.
//!
//! Where the kernel has no NFS client, `mount` fails and the pool does not start; the
//! error is the kernel's, passed on unchanged.

pub mod cmd;
pub mod mounts;
pub mod plugin;

use std::ffi::OsString;
use std::path::PathBuf;

use cmd::CommandError;
use rvirt_xml::StoragePool;

/// The pool type served.
pub const POOL_TYPE: &str = "netfs";

/// The source formats of a netfs pool (`auto` by default).
pub const FORMATS: &[&str] = &["auto", "nfs", "glusterfs", "cifs"];

/// The options libvirt gives every mount on Linux.
pub const DEFAULT_OPTIONS: &str = "nodev,nosuid,noexec";

/// The XML namespace of `<fs:mount_opts>`.
pub const FS_NAMESPACE: &str = "http://libvirt.org/schemas/storagepool/fs/1.0";

/// libvirt's error numbers this backend answers.
pub mod code {
    /// VIR_ERR_INTERNAL_ERROR
    pub const INTERNAL_ERROR: i32 = 1;
    /// VIR_ERR_NO_SUPPORT
    pub const NO_SUPPORT: i32 = 3;
    /// VIR_ERR_INVALID_ARG
    pub const INVALID_ARG: i32 = 8;
    /// VIR_ERR_XML_ERROR
    pub const XML_ERROR: i32 = 27;
    /// VIR_ERR_OPERATION_INVALID
    pub const OPERATION_INVALID: i32 = 55;
}

/// Every failure of the `netfs` backend; [`Error::code`] is libvirt's number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What the `dir` functions report (the target directory, the volumes).
    #[error(transparent)]
    Dir(#[from] rvirt_storage_files::Error),
    /// A definition field is unusable.
    #[error("{object}: {field}: {reason}")]
    InvalidArg {
        /// `pool 'NAME'`.
        object: String,
        /// The field, as an XML path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The document does not parse.
    #[error("{what}: {source}")]
    Xml {
        /// `pool` or `source`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: rvirt_xml::XmlError,
    },
    /// Flags the operation does not know.
    #[error("invalid argument: unsupported flags (0x{flags:x}) in function {function}")]
    Flags {
        /// libvirt's API.
        function: &'static str,
        /// The unknown bits.
        flags: u32,
    },
    /// Not valid now (already mounted, not mounted).
    #[error("{0}")]
    OperationInvalid(String),
    /// Not done by this backend.
    #[error("{0}")]
    NoSupport(String),
    /// A tool failed (`mount`, `umount`, `showmount`).
    #[error("{object}: cannot {action}")]
    Command {
        /// `pool 'NAME'`.
        object: String,
        /// What was attempted.
        action: String,
        /// The tool's failure, with its stderr.
        #[source]
        source: Box<CommandError>,
    },
    /// A system call failed.
    #[error("{object}: cannot {action} '{}'", path.display())]
    Io {
        /// `pool 'NAME'`.
        object: String,
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// libvirt's `virErrorNumber`.
    pub fn code(&self) -> i32 {
        match self {
            Error::Dir(e) => e.code(),
            Error::InvalidArg { .. } | Error::Flags { .. } => code::INVALID_ARG,
            Error::Xml { .. } => code::XML_ERROR,
            Error::OperationInvalid(_) => code::OPERATION_INVALID,
            Error::NoSupport(_) => code::NO_SUPPORT,
            Error::Command { .. } | Error::Io { .. } => code::INTERNAL_ERROR,
        }
    }

    /// The message with its causes, `: `-separated.
    pub fn full_message(&self) -> String {
        if let Error::Dir(e) = self {
            return e.full_message();
        }
        rvirt_sdk::util::error_chain(self)
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn check_flags(function: &'static str, flags: u32, known: u32) -> Result<()> {
    if flags & !known != 0 {
        return Err(Error::Flags {
            function,
            flags: flags & !known,
        });
    }
    Ok(())
}

/// Parses a pool document.
pub fn parse_pool(xml: &str) -> Result<StoragePool> {
    StoragePool::parse(xml).map_err(|source| Error::Xml {
        what: "pool",
        source,
    })
}

/// What a netfs pool mounts where, read from its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `pool 'NAME'`.
    pub object: String,
    /// The server (`<source><host name>`).
    pub host: String,
    /// The exported directory (`<source><dir path>`).
    pub dir: String,
    /// `auto`, `nfs`, `glusterfs` or `cifs`.
    pub format: String,
    /// `<source><protocol ver>` (NFS version).
    pub protocol_ver: Option<String>,
    /// `<fs:mount_opts><fs:option name>`s.
    pub options: Vec<String>,
    /// The target directory.
    pub target: PathBuf,
}

fn bad(object: &str, field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArg {
        object: object.to_string(),
        field,
        reason: reason.into(),
    }
}

impl Export {
    /// Reads and checks the pool's definition.
    pub fn of(pool: &StoragePool) -> Result<Export> {
        let object = format!("pool '{}'", pool.name());
        if pool.pool_type() != POOL_TYPE {
            return Err(bad(
                &object,
                "pool/@type",
                format!("'{}' is not a netfs pool", pool.pool_type()),
            ));
        }
        let hosts = pool.source_hosts();
        let host = match hosts.as_slice() {
            [(h, _)] if !h.is_empty() => h.to_string(),
            [] => return Err(bad(&object, "pool/source/host", "missing source host")),
            _ => {
                return Err(bad(
                    &object,
                    "pool/source/host",
                    "a netfs pool takes exactly one source host",
                ));
            }
        };
        if host.starts_with('-') || host.contains(char::is_whitespace) || host.contains('/') {
            return Err(bad(
                &object,
                "pool/source/host/@name",
                format!("'{host}' is not a host name"),
            ));
        }
        let dir = pool
            .source_dir()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| bad(&object, "pool/source/dir", "missing source path"))?
            .to_string();
        let format = pool.source_format().unwrap_or("auto").to_string();
        if !FORMATS.contains(&format.as_str()) {
            return Err(bad(
                &object,
                "pool/source/format/@type",
                format!("unknown netfs pool format type '{format}' (auto, nfs, glusterfs, cifs)"),
            ));
        }
        let source = pool.element().child("source");
        let protocol_ver = source
            .and_then(|s| s.child("protocol"))
            .and_then(|p| p.attr("ver"))
            .map(str::to_string);
        if let Some(v) = &protocol_ver {
            if format != "nfs" && format != "auto" {
                return Err(bad(
                    &object,
                    "pool/source/protocol/@ver",
                    format!("a protocol version applies to NFS only, not '{format}'"),
                ));
            }
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Err(bad(
                    &object,
                    "pool/source/protocol/@ver",
                    format!("'{v}' is not an NFS protocol version"),
                ));
            }
        }
        let mut options = Vec::new();
        for mo in pool
            .element()
            .elements()
            .filter(|e| e.local_name() == "mount_opts")
        {
            for o in mo.elements().filter(|e| e.local_name() == "option") {
                let name = o.attr("name").unwrap_or("");
                if name.is_empty() || name.contains(',') || name.contains(char::is_whitespace) {
                    return Err(bad(
                        &object,
                        "pool/mount_opts/option/@name",
                        format!("'{name}' is not a mount option"),
                    ));
                }
                options.push(name.to_string());
            }
        }
        let target = match pool.target_path() {
            Some(p) if p.starts_with('/') && !p.contains('\0') => PathBuf::from(p),
            Some(p) => {
                return Err(bad(
                    &object,
                    "pool/target/path",
                    format!("'{p}' is not an absolute path"),
                ));
            }
            None => return Err(bad(&object, "pool/target/path", "missing")),
        };
        Ok(Export {
            object,
            host,
            dir,
            format,
            protocol_ver,
            options,
            target,
        })
    }

    /// What `mount` is given as the source: `//HOST/DIR` for CIFS, `HOST:DIR` otherwise.
    pub fn source(&self) -> String {
        if self.format == "cifs" {
            format!("//{}/{}", self.host, self.dir)
        } else {
            format!("{}:{}", self.host, self.dir)
        }
    }

    /// The `-o` argument: libvirt's defaults, then the format's own option (`nfsvers=`,
    /// `guest`, `direct-io-mode=1`), then the pool's mount options.
    pub fn options(&self) -> String {
        let mut o = vec![DEFAULT_OPTIONS.to_string()];
        match self.format.as_str() {
            "cifs" => o.push("guest".into()),
            "glusterfs" => o.push("direct-io-mode=1".into()),
            _ => {
                if let Some(v) = &self.protocol_ver {
                    o.push(format!("nfsvers={v}"));
                }
            }
        }
        o.extend(self.options.iter().cloned());
        o.join(",")
    }
}

/// The arguments of `mount` for the pool, as libvirt runs it (see the crate
/// documentation).
pub fn mount_argv(e: &Export) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::new();
    if e.format != "auto" {
        v.push("-t".into());
        v.push(e.format.clone().into());
    }
    v.push(e.source().into());
    v.push(e.target.clone().into());
    v.push("-o".into());
    v.push(e.options().into());
    v
}

/// The arguments of `umount` for the pool.
pub fn umount_argv(e: &Export) -> Vec<OsString> {
    vec![e.target.clone().into()]
}

/// The same pool seen as a `dir` pool over its target: what [`rvirt_storage_files`] is
/// given.
pub fn dir_view(pool: &StoragePool) -> Result<StoragePool> {
    Export::of(pool)?;
    let mut root = pool.element().clone();
    root.set_attr("type", "dir");
    root.remove_children(|c| c.name() == "source" || c.local_name() == "mount_opts");
    StoragePool::from_element(root).map_err(|source| Error::Xml {
        what: "pool",
        source,
    })
}

/// The network file system mounted at the target, if any.
pub fn mounted(e: &Export) -> Result<Option<mounts::MountEntry>> {
    let target = match std::fs::canonicalize(&e.target) {
        Ok(t) => t,
        Err(_) => return Ok(None),
    };
    let all = mounts::mounts().map_err(|source| Error::Io {
        object: e.object.clone(),
        action: "read",
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    Ok(all
        .into_iter()
        .rfind(|m| m.mount_point == target && mounts::is_network_fs(&m.fstype)))
}

/// Whether the export is mounted at the target (libvirt's `checkPool`).
pub fn check_pool(pool: &StoragePool) -> Result<bool> {
    Ok(mounted(&Export::of(pool)?)?.is_some())
}

/// Makes the target directory.
pub fn build_pool(pool: &StoragePool, flags: u32) -> Result<()> {
    check_flags("virStoragePoolBuild", flags, 0)?;
    Export::of(pool)?;
    Ok(rvirt_storage_files::build_pool(&dir_view(pool)?, 0)?)
}

/// Mounts the export at the target.
pub fn start_pool(pool: &StoragePool) -> Result<()> {
    let e = Export::of(pool)?;
    // a missing target or a file: the dir backend's clear errors
    rvirt_storage_files::start_pool(&dir_view(pool)?)?;
    if let Some(m) = mounted(&e)? {
        return Err(Error::OperationInvalid(format!(
            "{}: target '{}' is already mounted ({} from '{}')",
            e.object,
            e.target.display(),
            m.fstype,
            m.source
        )));
    }
    cmd::run("mount", &mount_argv(&e)).map_err(|source| Error::Command {
        object: e.object.clone(),
        action: format!("mount '{}' on '{}'", e.source(), e.target.display()),
        source: Box::new(source),
    })?;
    Ok(())
}

/// Unmounts the target (nothing to do when it is not mounted).
pub fn stop_pool(pool: &StoragePool) -> Result<()> {
    let e = Export::of(pool)?;
    if mounted(&e)?.is_none() {
        return Ok(());
    }
    cmd::run("umount", &umount_argv(&e)).map_err(|source| Error::Command {
        object: e.object.clone(),
        action: format!("unmount '{}'", e.target.display()),
        source: Box::new(source),
    })?;
    Ok(())
}

/// Removes the (empty) target; refused while mounted.
pub fn delete_pool(pool: &StoragePool, flags: u32) -> Result<()> {
    check_flags("virStoragePoolDelete", flags, 0)?;
    let e = Export::of(pool)?;
    if mounted(&e)?.is_some() {
        return Err(Error::OperationInvalid(format!(
            "{}: cannot delete the pool while '{}' is mounted",
            e.object,
            e.target.display()
        )));
    }
    Ok(rvirt_storage_files::delete_pool(&dir_view(pool)?, 0)?)
}

/// The `dir` pool the volume operations run on, refused unless the export is mounted.
pub fn volume_pool(pool: &StoragePool) -> Result<StoragePool> {
    let e = Export::of(pool)?;
    if mounted(&e)?.is_none() {
        return Err(Error::OperationInvalid(format!(
            "{}: '{}' is not mounted at '{}'",
            e.object,
            e.source(),
            e.target.display()
        )));
    }
    dir_view(pool)
}

/// The host's exports, as libvirt's `<sources>` (see [`find_pool_sources`]).
pub fn sources_xml(host: &str, format: &str, exports: &[String]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\'', "&apos;")
    };
    let mut x = String::from("<sources>\n");
    for d in exports {
        x.push_str(&format!(
            "  <source>\n    <host name='{}'/>\n    <dir path='{}'/>\n    <format type='{format}'/>\n  </source>\n",
            esc(host),
            esc(d)
        ));
    }
    x.push_str("</sources>\n");
    x
}

/// The directories of `showmount --no-headers --exports` output (each line: the path,
/// then who may mount it).
pub fn parse_showmount(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with('/'))
        .map(|l| match l.rsplit_once(char::is_whitespace) {
            Some((dir, _clients)) => dir.trim_end().to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// `virConnectFindStoragePoolSources` for netfs: the NFS exports of the spec's host.
pub fn find_pool_sources(spec: &str, flags: u32) -> Result<String> {
    check_flags("virConnectFindStoragePoolSources", flags, 0)?;
    let obj = "netfs source discovery";
    if spec.trim().is_empty() {
        return Err(bad(
            obj,
            "source",
            "hostname must be specified for netfs sources",
        ));
    }
    let e = rvirt_xml::Element::parse(spec).map_err(|source| Error::Xml {
        what: "source",
        source,
    })?;
    let host = e
        .child("host")
        .and_then(|h| h.attr("name"))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            bad(
                obj,
                "source/host/@name",
                "hostname must be specified for netfs sources",
            )
        })?;
    if host.starts_with('-') || host.contains(char::is_whitespace) {
        return Err(bad(
            obj,
            "source/host/@name",
            format!("'{host}' is not a host name"),
        ));
    }
    let format = e
        .child("format")
        .and_then(|f| f.attr("type"))
        .unwrap_or("nfs");
    match format {
        "nfs" | "auto" => {}
        other => {
            return Err(Error::NoSupport(format!(
                "this function is not supported by the connection driver: virConnectFindStoragePoolSources of '{other}' exports (storage backend 'netfs' finds NFS exports)"
            )));
        }
    }
    let args: Vec<OsString> = ["--no-headers", "--exports", host]
        .map(OsString::from)
        .to_vec();
    let out = cmd::run("showmount", &args).map_err(|source| Error::Command {
        object: obj.into(),
        action: format!("list the exports of '{host}'"),
        source: Box::new(source),
    })?;
    Ok(sources_xml(host, "nfs", &parse_showmount(&out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(xml: &str) -> Export {
        Export::of(&parse_pool(xml).expect("pool")).expect("export")
    }

    fn argv(e: &Export) -> Vec<String> {
        mount_argv(e)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn mount_command_lines_are_libvirts() {
        let nfs = export(
            "<pool type='netfs'><name>n</name><source><host name='localhost'/><dir path='/var/lib/libvirt/images'/><format type='nfs'/></source><target><path>/mnt</path></target></pool>",
        );
        assert_eq!(
            argv(&nfs),
            [
                "-t",
                "nfs",
                "localhost:/var/lib/libvirt/images",
                "/mnt",
                "-o",
                "nodev,nosuid,noexec"
            ]
        );
        assert_eq!(umount_argv(&nfs), [OsString::from("/mnt")]);

        let ver = export(
            "<pool type='netfs'><name>n</name><source><host name='localhost'/><dir path='/var/lib/libvirt/images'/><format type='nfs'/><protocol ver='4.1'/></source><target><path>/mnt</path></target></pool>",
        );
        assert_eq!(
            argv(&ver),
            [
                "-t",
                "nfs",
                "localhost:/var/lib/libvirt/images",
                "/mnt",
                "-o",
                "nodev,nosuid,noexec,nfsvers=4.1"
            ]
        );

        let opts = export(
            "<pool type='netfs' xmlns:fs='http://libvirt.org/schemas/storagepool/fs/1.0'><name>n</name><source><host name='localhost'/><dir path='/var/lib/libvirt/images'/><format type='nfs'/><protocol ver='3'/></source><target><path>/mnt</path></target><fs:mount_opts><fs:option name='sync'/><fs:option name='lazytime'/></fs:mount_opts></pool>",
        );
        assert_eq!(
            argv(&opts),
            [
                "-t",
                "nfs",
                "localhost:/var/lib/libvirt/images",
                "/mnt",
                "-o",
                "nodev,nosuid,noexec,nfsvers=3,sync,lazytime"
            ]
        );

        // auto: no -t (plain mount finds nfs)
        let auto = export(
            "<pool type='netfs'><name>n</name><source><host name='localhost'/><dir path='/var/lib/libvirt/images'/></source><target><path>/mnt</path></target></pool>",
        );
        assert_eq!(auto.format, "auto");
        assert_eq!(
            argv(&auto),
            [
                "localhost:/var/lib/libvirt/images",
                "/mnt",
                "-o",
                "nodev,nosuid,noexec"
            ]
        );

        let cifs = export(
            "<pool type='netfs'><source><host name='example.com'/><format type='cifs'/><dir path='samba_share'/></source><name>netfs-cifs</name><target><path>/mnt/cifs</path></target></pool>",
        );
        assert_eq!(
            argv(&cifs),
            [
                "-t",
                "cifs",
                "//example.com/samba_share",
                "/mnt/cifs",
                "-o",
                "nodev,nosuid,noexec,guest"
            ]
        );

        let gluster = export(
            "<pool type='netfs'><source><host name='example.com'/><format type='glusterfs'/><dir path='/volume'/></source><name>g</name><target><path>/mnt/gluster</path></target></pool>",
        );
        assert_eq!(
            argv(&gluster),
            [
                "-t",
                "glusterfs",
                "example.com:/volume",
                "/mnt/gluster",
                "-o",
                "nodev,nosuid,noexec,direct-io-mode=1"
            ]
        );
    }

    #[test]
    fn bad_definitions_name_the_field() {
        for (xml, field) in [
            (
                "<pool type='netfs'><name>n</name><source><dir path='/x'/></source><target><path>/mnt</path></target></pool>",
                "pool/source/host",
            ),
            (
                "<pool type='netfs'><name>n</name><source><host name='h'/></source><target><path>/mnt</path></target></pool>",
                "pool/source/dir",
            ),
            (
                "<pool type='netfs'><name>n</name><source><host name='-oops'/><dir path='/x'/></source><target><path>/mnt</path></target></pool>",
                "pool/source/host/@name",
            ),
            (
                "<pool type='netfs'><name>n</name><source><host name='h'/><dir path='/x'/><format type='cifs'/><protocol ver='3'/></source><target><path>/mnt</path></target></pool>",
                "pool/source/protocol/@ver",
            ),
            (
                "<pool type='netfs'><name>n</name><source><host name='h'/><dir path='/x'/></source><target><path>rel</path></target></pool>",
                "pool/target/path",
            ),
        ] {
            let p = parse_pool(xml).expect("parses");
            let e = Export::of(&p).expect_err(field);
            assert_eq!(e.code(), code::INVALID_ARG);
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn showmount_output_becomes_sources() {
        let out = "/srv/export *\n/srv/with space 10.0.0.0/24,host1\n";
        let dirs = parse_showmount(out);
        assert_eq!(dirs, ["/srv/export", "/srv/with space"]);
        assert_eq!(
            sources_xml("10.1.2.3", "nfs", &dirs[..1]),
            "<sources>\n  <source>\n    <host name='10.1.2.3'/>\n    <dir path='/srv/export'/>\n    <format type='nfs'/>\n  </source>\n</sources>\n"
        );
        assert_eq!(sources_xml("h", "nfs", &[]), "<sources>\n</sources>\n");
        let e = find_pool_sources("", 0).expect_err("no host");
        assert!(e.to_string().contains("hostname must be specified"), "{e}");
        let e = find_pool_sources("<source><host name='h'/><format type='cifs'/></source>", 0)
            .expect_err("cifs");
        assert_eq!(e.code(), code::NO_SUPPORT);
    }

    #[test]
    fn dir_view_drops_the_source_and_mount_options() {
        let p = parse_pool(
            "<pool type='netfs' xmlns:fs='http://libvirt.org/schemas/storagepool/fs/1.0'><name>n</name><source><host name='h'/><dir path='/x'/></source><target><path>/srv/n</path></target><fs:mount_opts><fs:option name='sync'/></fs:mount_opts></pool>",
        )
        .unwrap();
        let d = dir_view(&p).unwrap();
        assert_eq!(d.pool_type(), "dir");
        assert_eq!(d.target_path(), Some("/srv/n"));
        assert!(d.element().child("source").is_none() || d.source_hosts().is_empty());
        let x = d.to_xml(&rvirt_xml::FormatOptions {
            inactive: false,
            secure: true,
        });
        assert!(!x.contains("mount_opts"), "{x}");
    }
}
