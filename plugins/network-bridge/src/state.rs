//! Everything a running network keeps, under the state directory.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, object};

/// The files of one network in the state directory.
#[derive(Debug, Clone)]
pub struct Files {
    /// `NAME.state`: what `start` created (bridge, table, taps).
    pub state: PathBuf,
    /// `NAME.conf`: dnsmasq's configuration.
    pub conf: PathBuf,
    /// `NAME.pid`: dnsmasq's pid.
    pub pid: PathBuf,
    /// `NAME.leases`: dnsmasq's lease file.
    pub leases: PathBuf,
    /// `NAME.hostsfile`: static DHCP hosts.
    pub hostsfile: PathBuf,
    /// `NAME.addnhosts`: DNS hosts.
    pub addnhosts: PathBuf,
}

impl Files {
    /// The paths for network `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Files {
        let f = |ext: &str| dir.join(format!("{name}.{ext}"));
        Files {
            state: f("state"),
            conf: f("conf"),
            pid: f("pid"),
            leases: f("leases"),
            hostsfile: f("hostsfile"),
            addnhosts: f("addnhosts"),
        }
    }
}

/// What `start` did, so `stop` (possibly in another process) undoes exactly that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The bridge the network uses.
    pub bridge: String,
    /// Whether this backend created the bridge (and so deletes it).
    pub created_bridge: bool,
    /// The nftables table (`inet rvirt_NAME`), when one was loaded.
    pub table: Option<String>,
    /// Whether dnsmasq was started.
    pub dnsmasq: bool,
    /// TAP devices plugged by this backend.
    pub taps: Vec<String>,
}

impl State {
    /// Text form: `key=value` lines.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "bridge={}\ncreated_bridge={}\ndnsmasq={}\n",
            self.bridge, self.created_bridge as u8, self.dnsmasq as u8
        );
        if let Some(t) = &self.table {
            s.push_str(&format!("table={t}\n"));
        }
        for t in &self.taps {
            s.push_str(&format!("tap={t}\n"));
        }
        s
    }

    /// Parses [`State::to_text`]; unknown lines are ignored.
    pub fn parse(text: &str) -> State {
        let mut st = State::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "bridge" => st.bridge = v.to_string(),
                "created_bridge" => st.created_bridge = v == "1",
                "dnsmasq" => st.dnsmasq = v == "1",
                "table" => st.table = Some(v.to_string()),
                "tap" => st.taps.push(v.to_string()),
                _ => {}
            }
        }
        st
    }

    /// Reads the state file; `None` when the network is not started.
    pub fn load(net: &str, files: &Files) -> Result<Option<State>> {
        match std::fs::read_to_string(&files.state) {
            Ok(t) => Ok(Some(State::parse(&t))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                object: object(net),
                action: "read",
                path: files.state.clone(),
                source: e,
            }),
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, net: &str, files: &Files) -> Result<()> {
        write_file(net, &files.state, &self.to_text())
    }
}

/// Writes `path` through a temporary file and a rename, owner-only.
pub fn write_file(net: &str, path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let io = |action, source| Error::Io {
        object: object(net),
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    f.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = State {
            bridge: "virbr3".into(),
            created_bridge: true,
            table: Some("inet rvirt_n".into()),
            dnsmasq: true,
            taps: vec!["vnet0".into(), "vnet1".into()],
        };
        assert_eq!(State::parse(&s.to_text()), s);
    }
}
