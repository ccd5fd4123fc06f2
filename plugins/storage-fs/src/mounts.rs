//! What is mounted where (`/proc/self/mountinfo`) and which loop device is backed by which
//! file (`/sys/block/loopN/loop/backing_file`): the backend keeps no state, it reads both
//! every time.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted file system's device.
    pub dev: (u32, u32),
    /// Where it is mounted (octal escapes decoded).
    pub mount_point: PathBuf,
    /// The file system type.
    pub fstype: String,
    /// The mount source as the kernel shows it (`/dev/loop3`).
    pub source: String,
}

/// Decodes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(c) = u8::try_from(v) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of a mountinfo file; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 3 {
                return None;
            }
            let (maj, min) = fields[2].split_once(':')?;
            Some(MountEntry {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                mount_point: PathBuf::from(unescape(fields[4])),
                fstype: unescape(fields[sep + 1]),
                source: unescape(fields[sep + 2]),
            })
        })
        .collect()
}

/// The mounts of this process's namespace, in mount order.
pub fn mounts() -> std::io::Result<Vec<MountEntry>> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse_mountinfo(&t))
}

/// The file behind the loop device `dev`, when `dev` is a bound loop device.
pub fn loop_backing_file(dev: (u32, u32)) -> Option<PathBuf> {
    let p = format!("/sys/dev/block/{}:{}/loop/backing_file", dev.0, dev.1);
    let s = std::fs::read_to_string(p).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

/// The loop devices (`/dev/loopN`, with their numbers) bound to `file` (a canonical path).
pub fn loops_backed_by(file: &Path) -> Vec<(PathBuf, (u32, u32))> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(b.trim_end_matches('\n')) != file {
            continue;
        }
        let Some(dev) = std::fs::read_to_string(e.path().join("dev"))
            .ok()
            .and_then(|d| {
                let (a, b) = d.trim().split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
        else {
            continue;
        };
        out.push((PathBuf::from("/dev").join(&name), dev));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
36 35 7:3 / /srv/my\\040pool rw,nosuid,nodev,noexec shared:7 master:1 - ext4 /dev/loop3 rw
bad line
37 35 8:1 / /a\\134b rw - xfs /dev/sda1 rw,attr2
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].dev, (7, 3));
        assert_eq!(m[1].mount_point, Path::new("/srv/my pool"));
        assert_eq!(m[1].fstype, "ext4");
        assert_eq!(m[1].source, "/dev/loop3");
        assert_eq!(m[2].mount_point, Path::new("/a\\b"));
        assert_eq!(unescape("\\0"), "\\0");
        assert_eq!(unescape("a\\011b"), "a\tb");
    }

    #[test]
    fn this_process_sees_its_root() {
        assert!(
            mounts()
                .expect("mountinfo")
                .iter()
                .any(|m| m.mount_point == Path::new("/"))
        );
    }
}
