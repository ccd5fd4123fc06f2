//! Semver resolution: the newest version matching the requirement that this host can load.

use crate::index::IndexRecord;
use semver::{Version, VersionReq};

/// A version resolution left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The version.
    pub version: String,
    /// Why it was not picked.
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} skipped: {}", self.version, self.reason)
    }
}

/// The outcome of resolution.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The record picked, if any.
    pub chosen: Option<IndexRecord>,
    /// Every version newer than the one picked that was left out (when none was picked,
    /// every version matching the requirement), newest first, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Picks the newest record of `records` that matches `req`, is built for `target`, is not
/// yanked and whose plugin API a host of API `host_api` loads.
pub fn resolve(
    records: &[IndexRecord],
    req: &VersionReq,
    target: &str,
    host_api: &Version,
) -> Resolution {
    let mut sorted: Vec<&IndexRecord> = records.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.version()));
    let mut skipped = Vec::new();
    for r in sorted {
        let v = r.version();
        let reason = if semver::Version::parse(&r.facts.version).is_err() {
            Some(format!("'{}' is not a semver version", r.facts.version))
        } else if !req.matches(&v) {
            Some(format!("does not match the requirement {req}"))
        } else if r.yanked {
            Some("yanked by its publisher".to_string())
        } else if r.target != target {
            Some(format!("built for {} (this host is {target})", r.target))
        } else {
            crate::api_refusal(&r.facts.plugin_api, host_api)
        };
        match reason {
            None => {
                return Resolution {
                    chosen: Some(r.clone()),
                    skipped,
                };
            }
            Some(reason) => {
                // Several targets of one version: one line per version is enough unless
                // reasons differ.
                if !skipped
                    .iter()
                    .any(|s: &Skipped| s.version == r.facts.version && s.reason == reason)
                {
                    skipped.push(Skipped {
                        version: r.facts.version.clone(),
                        reason,
                    });
                }
            }
        }
    }
    // Nothing picked: the versions outside the requirement are noise.
    skipped.retain(|s| !s.reason.starts_with("does not match"));
    Resolution {
        chosen: None,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::PluginFacts;

    fn rec(v: &str, api: &str, target: &str, yanked: bool) -> IndexRecord {
        IndexRecord {
            facts: PluginFacts {
                name: "acme".into(),
                version: v.into(),
                kind: "hypervisor".into(),
                plugin_api: api.into(),
                ..Default::default()
            },
            target: target.into(),
            file: String::new(),
            sha256: String::new(),
            size: 0,
            publisher_key: String::new(),
            yanked,
        }
    }

    #[test]
    fn newest_loadable_version_wins_and_skips_are_explained() {
        let t = "x86_64-unknown-linux-gnu";
        let host = Version::new(1, 5, 0);
        let records = vec![
            rec("0.1.0", "1.4.0", t, false),
            rec("0.2.0", "1.5.0", t, false),
            rec("0.3.0", "1.6.0", t, false),
            rec("0.2.5", "1.5.0", t, true),
            rec("0.2.7", "1.5.0", "aarch64-unknown-linux-gnu", false),
        ];
        let r = resolve(&records, &VersionReq::STAR, t, &host);
        assert_eq!(r.chosen.unwrap().facts.version, "0.2.0");
        let s: Vec<String> = r.skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            s,
            vec![
                "0.3.0 skipped: built against plugin API 1.6.0; this host loads plugin API 1.0 to 1.5",
                "0.2.7 skipped: built for aarch64-unknown-linux-gnu (this host is x86_64-unknown-linux-gnu)",
                "0.2.5 skipped: yanked by its publisher",
            ]
        );
        let pinned = resolve(&records, &VersionReq::parse("=0.1.0").unwrap(), t, &host);
        assert_eq!(pinned.chosen.unwrap().facts.version, "0.1.0");
        let none = resolve(&records, &VersionReq::parse(">=0.3").unwrap(), t, &host);
        assert!(none.chosen.is_none());
        assert_eq!(none.skipped.len(), 1);
    }
}
