//! The network's firewall: one nftables table, loaded and removed in one batch each.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::config::{Mode, Plan};
use crate::dnsmasq::find_program;
use crate::error::{Error, Result, object};

/// The table of network `name`: `inet rvirt_NAME` (characters nftables does not take in
/// an identifier become `_`, and then a hash of the name keeps tables apart).
pub fn table_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == name {
        format!("inet rvirt_{clean}")
    } else {
        // FNV-1a: stable across builds
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("inet rvirt_{clean}_{h:08x}")
    }
}

/// The rules of `plan` on `bridge`, as an `nft -f` batch that replaces any table of the
/// same name. `None` for modes without rules (`open`, `bridge`).
pub fn ruleset(plan: &Plan, bridge: &str) -> Option<String> {
    if !plan.needs_firewall() {
        return None;
    }
    let table = table_name(&plan.name);
    let br = format!("\"{bridge}\"");
    let out = plan
        .forward_dev
        .as_ref()
        .map(|d| format!(" oifname \"{d}\""))
        .unwrap_or_default();
    let inb = plan
        .forward_dev
        .as_ref()
        .map(|d| format!(" iifname \"{d}\""))
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "add table {table}");
    let _ = writeln!(s, "delete table {table}");
    let _ = writeln!(s, "table {table} {{");
    s.push_str("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n");
    let _ = writeln!(s, "\t\tiifname {br} udp dport {{ 53, 67, 547 }} accept");
    let _ = writeln!(s, "\t\tiifname {br} tcp dport 53 accept");
    s.push_str("\t}\n");
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
    let _ = writeln!(s, "\t\tiifname {br} oifname {br} accept");
    for ip in &plan.ips {
        let fam = if ip.addr.is_ipv4() { "ip" } else { "ip6" };
        let net = ip.subnet();
        let masq = plan.mode == Mode::Nat && (ip.addr.is_ipv4() || plan.nat_ipv6);
        match plan.mode {
            Mode::Nat | Mode::Route => {
                let _ = writeln!(s, "\t\tiifname {br}{out} {fam} saddr {net} accept");
                if masq {
                    let _ = writeln!(
                        s,
                        "\t\toifname {br}{inb} {fam} daddr {net} ct state established,related accept"
                    );
                } else {
                    let _ = writeln!(s, "\t\toifname {br}{inb} {fam} daddr {net} accept");
                }
            }
            Mode::Isolated | Mode::Open | Mode::Bridge => {}
        }
    }
    let _ = writeln!(s, "\t\tiifname {br} reject");
    let _ = writeln!(s, "\t\toifname {br} reject");
    s.push_str("\t}\n");
    let masq: Vec<_> = plan
        .ips
        .iter()
        .filter(|ip| plan.mode == Mode::Nat && (ip.addr.is_ipv4() || plan.nat_ipv6))
        .collect();
    if !masq.is_empty() {
        s.push_str(
            "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
        );
        for ip in masq {
            let net = ip.subnet();
            if ip.addr.is_ipv4() {
                let _ = writeln!(s, "\t\tip saddr {net} ip daddr 224.0.0.0/24 return");
                let _ = writeln!(s, "\t\tip saddr {net} ip daddr 255.255.255.255 return");
                let _ = writeln!(s, "\t\tip saddr {net} ip daddr != {net}{out} masquerade");
            } else {
                let _ = writeln!(s, "\t\tip6 saddr {net} ip6 daddr != {net}{out} masquerade");
            }
        }
        s.push_str("\t}\n");
    }
    s.push_str("}\n");
    Some(s)
}

/// Runs `nft -f -` on `batch`.
pub fn apply(net: &str, batch: &str) -> Result<()> {
    let prog = find_program("nft").ok_or_else(|| Error::MissingProgram {
        object: object(net),
        program: "nft",
        package: "nftables",
    })?;
    let io = |action, source| Error::Io {
        object: object(net),
        action,
        path: prog.clone(),
        source,
    };
    let mut child = Command::new(&prog)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io("run", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| io("write to", e))?;
    }
    let out = child.wait_with_output().map_err(|e| io("wait for", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Program {
            object: object(net),
            program: "nft",
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Removes `table` (idempotent: a missing table is not an error).
pub fn remove(net: &str, table: &str) -> Result<()> {
    apply(net, &format!("add table {table}\ndelete table {table}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvirt_xml::Network;

    fn plan(xml: &str) -> Plan {
        Plan::from_network(&Network::parse(xml).expect("xml")).expect("plan")
    }

    #[test]
    fn nat_rules() {
        let p = plan(
            "<network><name>default</name><forward mode='nat'/>\
             <ip address='192.168.122.1' prefix='24'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>",
        );
        let expected = "\
add table inet rvirt_default
delete table inet rvirt_default
table inet rvirt_default {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"virbr0\" udp dport { 53, 67, 547 } accept
\t\tiifname \"virbr0\" tcp dport 53 accept
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"virbr0\" oifname \"virbr0\" accept
\t\tiifname \"virbr0\" ip saddr 192.168.122.0/24 accept
\t\toifname \"virbr0\" ip daddr 192.168.122.0/24 ct state established,related accept
\t\tiifname \"virbr0\" ip6 saddr fd00::/64 accept
\t\toifname \"virbr0\" ip6 daddr fd00::/64 accept
\t\tiifname \"virbr0\" reject
\t\toifname \"virbr0\" reject
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 192.168.122.0/24 ip daddr 224.0.0.0/24 return
\t\tip saddr 192.168.122.0/24 ip daddr 255.255.255.255 return
\t\tip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade
\t}
}
";
        assert_eq!(ruleset(&p, "virbr0").as_deref(), Some(expected));
    }

    #[test]
    fn route_isolated_open() {
        let p = plan(
            "<network><name>r</name><forward mode='route' dev='eth0'/><ip address='10.0.5.1' prefix='24'/></network>",
        );
        let r = ruleset(&p, "br5").expect("rules");
        assert!(
            r.contains("iifname \"br5\" oifname \"eth0\" ip saddr 10.0.5.0/24 accept\n"),
            "{r}"
        );
        assert!(
            r.contains("oifname \"br5\" iifname \"eth0\" ip daddr 10.0.5.0/24 accept\n"),
            "{r}"
        );
        assert!(!r.contains("masquerade"), "{r}");
        let p = plan("<network><name>iso</name><ip address='10.0.6.1' prefix='24'/></network>");
        let r = ruleset(&p, "br6").expect("rules");
        assert!(!r.contains("saddr") && !r.contains("postrouting"), "{r}");
        assert!(
            r.contains("\t\tiifname \"br6\" reject\n\t\toifname \"br6\" reject\n"),
            "{r}"
        );
        let p = plan(
            "<network><name>o</name><forward mode='open'/><ip address='10.0.7.1' prefix='24'/></network>",
        );
        assert_eq!(ruleset(&p, "br7"), None);
    }

    #[test]
    fn table_names() {
        assert_eq!(table_name("default"), "inet rvirt_default");
        let t = table_name("my-net.1");
        assert!(t.starts_with("inet rvirt_my_net_1_"), "{t}");
        assert_ne!(t, table_name("my_net_1"));
    }
}
