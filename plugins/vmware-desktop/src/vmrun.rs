//! The VMware Desktop products and their `vmrun` tool, run as libvirt's vmware driver runs
//! it: `vmrun -T TYPE COMMAND [VMX] [ARG]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A VMware Desktop product: which URI scheme, which `-T` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Player,
    Workstation,
    Fusion,
}

impl Product {
    /// The product of a URI scheme.
    pub fn from_scheme(scheme: &str) -> Option<Product> {
        match scheme {
            "vmwareplayer" => Some(Product::Player),
            "vmwarews" => Some(Product::Workstation),
            "vmwarefusion" => Some(Product::Fusion),
            _ => None,
        }
    }

    /// The URI scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Product::Player => "vmwareplayer",
            Product::Workstation => "vmwarews",
            Product::Fusion => "vmwarefusion",
        }
    }

    /// `vmrun -T` type.
    pub fn vmrun_type(self) -> &'static str {
        match self {
            Product::Player => "player",
            Product::Workstation => "ws",
            Product::Fusion => "fusion",
        }
    }

    /// The product's name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Product::Player => "VMware Player",
            Product::Workstation => "VMware Workstation",
            Product::Fusion => "VMware Fusion",
        }
    }

    /// The program whose `-v` prints the product version (none known for Fusion).
    fn version_program(self) -> Option<&'static str> {
        match self {
            Product::Player => Some("vmplayer"),
            Product::Workstation => Some("vmware"),
            Product::Fusion => None,
        }
    }
}

/// Finds `prog` along `PATH`.
pub fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A `vmrun` that failed.
#[derive(Debug)]
pub struct VmrunError {
    pub command: String,
    pub detail: String,
}

impl std::fmt::Display for VmrunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' failed: {}", self.command, self.detail)
    }
}

/// The `vmrun` tool for one product.
#[derive(Debug, Clone)]
pub struct Vmrun {
    pub path: PathBuf,
    pub product: Product,
}

impl Vmrun {
    /// `vmrun -T TYPE ARGS...`: its standard output.
    pub fn run(&self, args: &[&str]) -> Result<String, VmrunError> {
        let mut cmd = Command::new(&self.path);
        cmd.arg("-T").arg(self.product.vmrun_type()).args(args);
        let shown = format!(
            "{} -T {} {}",
            self.path.display(),
            self.product.vmrun_type(),
            args.join(" ")
        );
        let out = cmd.output().map_err(|e| VmrunError {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
        if !out.status.success() {
            let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if detail.is_empty() {
                detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            if detail.is_empty() {
                detail = out.status.to_string();
            }
            return Err(VmrunError {
                command: shown,
                detail,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The `.vmx` paths `vmrun list` reports running.
    pub fn list(&self) -> Result<Vec<PathBuf>, VmrunError> {
        let out = self.run(&["list"])?;
        Ok(out
            .lines()
            .filter(|l| !l.starts_with("Total running VMs") && !l.trim().is_empty())
            .map(|l| PathBuf::from(l.trim()))
            .collect())
    }
}

/// The product's version as libvirt encodes it (major * 1,000,000 + minor * 1,000 +
/// micro), from `vmware -v` / `vmplayer -v`; 0 when it cannot be read.
pub fn product_version(product: Product) -> u64 {
    let Some(prog) = product.version_program().and_then(find_in_path) else {
        return 0;
    };
    let Ok(out) = Command::new(prog).arg("-v").output() else {
        return 0;
    };
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// The first `N.N[.N]` word of a version line.
pub fn parse_version(text: &str) -> u64 {
    for word in text.split_whitespace() {
        let parts: Vec<&str> = word.split('.').collect();
        if (2..=3).contains(&parts.len()) && parts.iter().all(|p| p.parse::<u64>().is_ok()) {
            let n: Vec<u64> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
            return n[0] * 1_000_000 + n[1] * 1000 + n.get(2).copied().unwrap_or(0);
        }
    }
    0
}

/// The process id VMware recorded in the VM's `vmware.log` (`... pid=N ...`), the id
/// libvirt's driver gives a running domain.
pub fn vm_pid(vmx: &Path) -> Option<i32> {
    let log = std::fs::read_to_string(vmx.parent()?.join("vmware.log")).ok()?;
    log.lines().find_map(|l| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .and_then(|n| n.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("VMware Workstation 16.2.4 build-20089737"),
            16_002_004
        );
        assert_eq!(parse_version("VMware Player 7.1 build-1"), 7_001_000);
        assert_eq!(parse_version("nothing"), 0);
    }
}
