//! dnsmasq's lease file.

use std::net::IpAddr;

/// One DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Expiry in seconds since the epoch; 0 for an infinite lease.
    pub expiry: u64,
    /// The client's MAC address (IPv4 leases; dnsmasq does not record it for IPv6).
    pub mac: Option<String>,
    /// The leased address.
    pub ip: IpAddr,
    /// The prefix of the network's `<ip>` holding it, when one does.
    pub prefix: Option<u8>,
    /// The client's host name.
    pub hostname: Option<String>,
    /// The client identifier (IPv4) or DUID (IPv6).
    pub client_id: Option<String>,
    /// The IPv6 IAID (`T`-prefixed for temporary addresses).
    pub iaid: Option<String>,
}

fn opt(s: Option<&str>) -> Option<String> {
    s.filter(|v| *v != "*" && !v.is_empty()).map(str::to_string)
}

/// Parses a lease file. IPv4 lines are `EXPIRY MAC IP HOSTNAME CLIENTID`; after the
/// `duid SERVER-DUID` line, IPv6 lines are `EXPIRY IAID IP HOSTNAME DUID`. Malformed
/// lines are skipped. `mac` keeps the leases of that MAC only (case-insensitive).
pub fn parse(text: &str, mac: Option<&str>) -> Vec<Lease> {
    let mut out = Vec::new();
    let mut v6 = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"duid") {
            v6 = true;
            continue;
        }
        if f.len() < 4 {
            continue;
        }
        let Ok(expiry) = f[0].parse::<u64>() else {
            continue;
        };
        let Ok(ip) = f[2].parse::<IpAddr>() else {
            continue;
        };
        let lease = if v6 || ip.is_ipv6() {
            Lease {
                expiry,
                mac: None,
                ip,
                prefix: None,
                hostname: opt(f.get(3).copied()),
                client_id: opt(f.get(4).copied()),
                iaid: opt(f.get(1).copied()),
            }
        } else {
            Lease {
                expiry,
                mac: Some(f[1].to_ascii_lowercase()),
                ip,
                prefix: None,
                hostname: opt(f.get(3).copied()),
                client_id: opt(f.get(4).copied()),
                iaid: None,
            }
        };
        if let Some(m) = mac
            && lease.mac.as_deref() != Some(m.to_ascii_lowercase().as_str())
        {
            continue;
        }
        out.push(lease);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
1700003600 52:54:00:aa:bb:01 192.168.122.50 guest1 01:52:54:00:aa:bb:01
0 52:54:00:AA:BB:02 192.168.122.51 * *
garbage line
duid 00:01:00:01:2c:00:00:01:52:54:00:00:00:01
1700007200 1234567 fd00::50 guest6 00:01:00:01:aa:bb:cc:dd
1700007200 T77 fd00::51 * 00:01:00:01:aa:bb:cc:de
";

    #[test]
    fn v4_and_v6() {
        let l = parse(FILE, None);
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].expiry, 1_700_003_600);
        assert_eq!(l[0].mac.as_deref(), Some("52:54:00:aa:bb:01"));
        assert_eq!(l[0].hostname.as_deref(), Some("guest1"));
        assert_eq!(l[0].client_id.as_deref(), Some("01:52:54:00:aa:bb:01"));
        assert_eq!(l[1].expiry, 0);
        assert_eq!(l[1].hostname, None);
        assert_eq!(l[1].client_id, None);
        assert_eq!(l[2].ip, "fd00::50".parse::<IpAddr>().expect("ip"));
        assert_eq!(l[2].iaid.as_deref(), Some("1234567"));
        assert_eq!(l[2].mac, None);
        assert_eq!(l[2].client_id.as_deref(), Some("00:01:00:01:aa:bb:cc:dd"));
        assert_eq!(l[3].iaid.as_deref(), Some("T77"));
    }

    #[test]
    fn mac_filter() {
        let l = parse(FILE, Some("52:54:00:aa:bb:02"));
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].ip.to_string(), "192.168.122.51");
        assert!(parse(FILE, Some("52:54:00:00:00:09")).is_empty());
    }
}
