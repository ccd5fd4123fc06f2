//! lvm2's command lines and JSON reports.
//!
//! Every command names the pool's devices with `--devices` (lvm2 2.03.12 and later), so
//! lvm2 reads those and nothing else: a pool never scans the host's other disks. When the
//! kernel has no device-mapper (no `device-mapper` line in `/proc/misc`), every command
//! also gets `--config global{activation=0}`: lvm2 then only reads and writes metadata.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde::Deserialize;

use crate::cmd::{self, CommandError};

/// lvm2's `--config` text that turns device-mapper activation off.
pub const NO_ACTIVATION: &str = "global{activation=0}";

/// Whether this kernel has device-mapper, i.e. logical volumes can be activated.
pub fn device_mapper_available() -> bool {
    std::fs::read_to_string("/proc/misc")
        .map(|t| misc_has_device_mapper(&t))
        .unwrap_or(false)
}

/// Whether a `/proc/misc` text lists device-mapper.
pub fn misc_has_device_mapper(misc: &str) -> bool {
    misc.lines()
        .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"))
}

/// How lvm2 is run for one pool: the devices it may read and whether it may activate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lvm {
    /// The pool's source devices (`--devices`); empty for a pool named by its VG only.
    pub devices: Vec<String>,
    /// Whether device-mapper activation is possible.
    pub activation: bool,
}

impl Lvm {
    /// The arguments of `tool ARGS`: the pool's `--devices`, the activation switch, then
    /// `args`.
    pub fn argv(&self, args: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        for d in &self.devices {
            v.push("--devices".into());
            v.push(d.into());
        }
        if !self.activation {
            v.push("--config".into());
            v.push(NO_ACTIVATION.into());
        }
        v.extend(args.iter().map(OsString::from));
        v
    }

    /// Runs `tool` with [`Lvm::argv`]; answers stdout.
    pub fn run(&self, tool: &str, args: &[&str]) -> Result<String, CommandError> {
        cmd::run(tool, &self.argv(args))
    }

    /// The volume group `vg`, or `None` when lvm2 does not find it on the devices.
    pub fn vg(&self, vg: &str) -> Result<Option<VgRow>, CommandError> {
        let out = match self.run(
            "vgs",
            &[
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size",
                vg,
            ],
        ) {
            Ok(o) => o,
            // vgs exits 5 for a VG it does not find
            Err(CommandError::Failed { code: Some(5), .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(parse_report(&out)?.vg.into_iter().find(|r| r.vg_name == vg))
    }

    /// The logical volumes of `vg` (all, or the one named `lv`).
    pub fn lvs(&self, vg: &str, lv: Option<&str>) -> Result<Vec<LvRow>, CommandError> {
        let what = match lv {
            Some(l) => format!("{vg}/{l}"),
            None => vg.to_string(),
        };
        let out = self.run(
            "lvs",
            &[
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_path,origin,segtype,devices",
                &what,
            ],
        )?;
        Ok(merge_segments(parse_report(&out)?.lv))
    }

    /// The volume group `vg` and its logical volumes in one `vgs` run (an empty group
    /// answers no row, and costs a second run for its sizes); `None` when lvm2 does not
    /// find the group on the devices.
    pub fn group(&self, vg: &str) -> Result<Option<(VgRow, Vec<LvRow>)>, CommandError> {
        let out = match self.run(
            "vgs",
            &[
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,lv_name,lv_uuid,lv_size,lv_attr,lv_path,origin,segtype,devices",
                vg,
            ],
        ) {
            Ok(o) => o,
            Err(CommandError::Failed { code: Some(5), .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let rows = parse_rows(&out, "vg")?;
        let Some(first) = rows.first() else {
            return Ok(self.vg(vg)?.map(|g| (g, Vec::new())));
        };
        let group: VgRow = serde_json::from_value(first.clone()).map_err(unreadable)?;
        let mut lvs = Vec::new();
        for r in rows {
            if r.get("lv_name")
                .and_then(|n| n.as_str())
                .is_none_or(str::is_empty)
            {
                continue;
            }
            lvs.push(serde_json::from_value::<LvRow>(r).map_err(unreadable)?);
        }
        Ok(Some((group, merge_segments(lvs))))
    }

    /// The physical volumes among the devices, with their volume groups.
    pub fn pvs(&self) -> Result<Vec<PvRow>, CommandError> {
        let out = self.run(
            "pvs",
            &["--reportformat", "json", "-o", "pv_name,vg_name,pv_uuid"],
        )?;
        Ok(parse_report(&out)?.pv)
    }
}

/// A `vgs` row (sizes in bytes).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct VgRow {
    /// The VG's name.
    pub vg_name: String,
    /// Its UUID.
    #[serde(default)]
    pub vg_uuid: String,
    /// Its size.
    #[serde(deserialize_with = "bytes")]
    pub vg_size: u64,
    /// Its free space.
    #[serde(deserialize_with = "bytes")]
    pub vg_free: u64,
    /// Its extent size.
    #[serde(deserialize_with = "bytes", default)]
    pub vg_extent_size: u64,
}

/// An `lvs` row (sizes in bytes).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LvRow {
    /// The LV's name.
    pub lv_name: String,
    /// Its VG.
    #[serde(default)]
    pub vg_name: String,
    /// Its UUID: the volume's key, as libvirt's.
    pub lv_uuid: String,
    /// Its size.
    #[serde(deserialize_with = "bytes")]
    pub lv_size: u64,
    /// lvm's attribute string (`-wi-a-----`; fifth character `a` when active).
    pub lv_attr: String,
    /// `/dev/VG/LV`.
    #[serde(default)]
    pub lv_path: String,
    /// The origin of a snapshot.
    #[serde(default)]
    pub origin: String,
    /// `linear`, `striped`, `thin-pool`, ...
    #[serde(default)]
    pub segtype: String,
    /// Where its extents are (`/dev/loop0(0)`, comma-separated).
    #[serde(default)]
    pub devices: String,
}

impl LvRow {
    /// Whether the LV is active (its device node exists).
    pub fn active(&self) -> bool {
        self.lv_attr.chars().nth(4) == Some('a')
    }

    /// Whether it is a thin pool, or a hidden/internal volume libvirt does not list.
    pub fn is_internal(&self) -> bool {
        matches!(
            self.lv_attr.chars().next(),
            Some('t') | Some('i') | Some('l') | Some('e')
        ) || self.lv_name.starts_with('[')
    }
}

/// A `pvs` row.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PvRow {
    /// The device.
    pub pv_name: String,
    /// Its VG (empty when it is in none).
    #[serde(default)]
    pub vg_name: String,
    /// Its UUID.
    #[serde(default)]
    pub pv_uuid: String,
}

#[derive(Debug, Default, Deserialize)]
struct Sections {
    #[serde(default)]
    vg: Vec<VgRow>,
    #[serde(default)]
    lv: Vec<LvRow>,
    #[serde(default)]
    pv: Vec<PvRow>,
}

#[derive(Debug, Deserialize)]
struct Report {
    report: Vec<Sections>,
}

fn bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    let t = s.trim().trim_end_matches(['B', 'b']);
    if t.is_empty() {
        return Ok(0);
    }
    t.parse()
        .map_err(|_| serde::de::Error::custom(format!("not a size in bytes: '{s}'")))
}

/// One row per segment: a multi-segment LV's rows merged into one (devices joined).
fn merge_segments(rows: Vec<LvRow>) -> Vec<LvRow> {
    let mut seen: BTreeMap<String, LvRow> = BTreeMap::new();
    let mut order = Vec::new();
    for r in rows {
        match seen.get_mut(&r.lv_name) {
            Some(prev) => {
                if !r.devices.is_empty() {
                    prev.devices = format!("{},{}", prev.devices, r.devices);
                }
            }
            None => {
                order.push(r.lv_name.clone());
                seen.insert(r.lv_name.clone(), r);
            }
        }
    }
    order.into_iter().filter_map(|n| seen.remove(&n)).collect()
}

fn unreadable(e: serde_json::Error) -> CommandError {
    CommandError::Failed {
        command: "lvm2 --reportformat json".into(),
        status: "unreadable report".into(),
        stderr: e.to_string(),
        code: None,
    }
}

/// The raw rows of section `section` of an lvm2 JSON report.
fn parse_rows(text: &str, section: &str) -> Result<Vec<serde_json::Value>, CommandError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(unreadable)?;
    let mut rows = Vec::new();
    for s in v
        .get("report")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(a) = s.get(section).and_then(|a| a.as_array()) {
            rows.extend(a.iter().cloned());
        }
    }
    Ok(rows)
}

/// Merges the sections of an lvm2 JSON report.
fn parse_report(text: &str) -> Result<Sections, CommandError> {
    let r: Report = serde_json::from_str(text).map_err(unreadable)?;
    let mut all = Sections::default();
    for s in r.report {
        all.vg.extend(s.vg);
        all.lv.extend(s.lv);
        all.pv.extend(s.pv);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_names_the_devices_and_switches_activation_off() {
        let l = Lvm {
            devices: vec!["/dev/loop0".into(), "/dev/loop1".into()],
            activation: false,
        };
        let v: Vec<String> = l
            .argv(&["-y", "-n", "lv1", "vg"])
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            v,
            [
                "--devices",
                "/dev/loop0",
                "--devices",
                "/dev/loop1",
                "--config",
                "global{activation=0}",
                "-y",
                "-n",
                "lv1",
                "vg"
            ]
        );
        let l = Lvm {
            devices: vec![],
            activation: true,
        };
        assert_eq!(l.argv(&["vg"]), [OsString::from("vg")]);
    }

    #[test]
    fn reports_parse() {
        let lvs = r#"  {
      "report": [
          {
              "lv": [
                  {"lv_name":"lv1", "vg_name":"v", "lv_uuid":"h5hb", "lv_size":"16777216", "lv_attr":"-wi-XX----", "lv_path":"/dev/v/lv1", "origin":"", "segtype":"linear", "devices":"/dev/loop0(0)"},
                  {"lv_name":"lv1", "vg_name":"v", "lv_uuid":"h5hb", "lv_size":"16777216", "lv_attr":"-wi-XX----", "lv_path":"/dev/v/lv1", "origin":"", "segtype":"linear", "devices":"/dev/loop1(0)"},
                  {"lv_name":"tp", "vg_name":"v", "lv_uuid":"x", "lv_size":"4194304", "lv_attr":"twi-a-tz--", "lv_path":"", "origin":"", "segtype":"thin-pool", "devices":""}
              ]
          }
      ]
  }"#;
        let s = parse_report(lvs).unwrap();
        assert_eq!(s.lv.len(), 3);
        assert_eq!(s.lv[0].lv_size, 16 << 20);
        assert!(!s.lv[0].active() && !s.lv[0].is_internal());
        assert!(s.lv[2].active() && s.lv[2].is_internal());
        let vgs = r#"{"report":[{"vg":[{"vg_name":"v","vg_uuid":"u","vg_size":"130023424","vg_free":"113246208","vg_extent_size":"4194304"}]}]}"#;
        let v = &parse_report(vgs).unwrap().vg[0];
        assert_eq!((v.vg_size, v.vg_free), (130023424, 113246208));
        assert!(parse_report("{").is_err());
        let both = r#"{"report":[{"vg":[
            {"vg_name":"v","vg_uuid":"u","vg_size":"130023424","vg_free":"113246208","vg_extent_size":"4194304","lv_name":"a","lv_uuid":"x","lv_size":"8388608","lv_attr":"-wi-XX----","lv_path":"","origin":"","segtype":"linear","devices":"/dev/loop0(0)"},
            {"vg_name":"v","vg_uuid":"u","vg_size":"130023424","vg_free":"113246208","vg_extent_size":"4194304","lv_name":"a","lv_uuid":"x","lv_size":"8388608","lv_attr":"-wi-XX----","lv_path":"","origin":"","segtype":"linear","devices":"/dev/loop0(9)"}]}]}"#;
        let rows = parse_rows(both, "vg").unwrap();
        assert_eq!(rows.len(), 2);
        let lvs: Vec<LvRow> = rows
            .into_iter()
            .map(|r| serde_json::from_value(r).unwrap())
            .collect();
        let merged = merge_segments(lvs);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].devices, "/dev/loop0(0),/dev/loop0(9)");
        assert!(misc_has_device_mapper(" 58 rfkill\n236 device-mapper\n"));
        assert!(!misc_has_device_mapper(" 58 rfkill\n200 tun\n"));
    }
}
