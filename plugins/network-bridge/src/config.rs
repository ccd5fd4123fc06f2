//! The parts of a `<network>` definition this backend acts on, checked once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvirt_xml::{Element, Network};

use crate::error::{Error, Result, object};

/// Longest Linux interface name (`IFNAMSIZ - 1`).
pub const IFNAME_MAX: usize = 15;

/// How the network reaches the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `<forward mode='nat'>`: masquerade the subnets to the outside.
    Nat,
    /// `<forward mode='route'>`: forward without translation.
    Route,
    /// `<forward mode='open'>`: no firewall rules at all.
    Open,
    /// No `<forward>`: guests reach each other and the host only.
    Isolated,
    /// `<forward mode='bridge'>`: an existing host bridge; nothing is created.
    Bridge,
}

/// One DHCP range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
    /// Lease time in seconds; `Some(0)` is infinite, `None` dnsmasq's default (1 hour).
    pub lease: Option<u64>,
}

/// One `<dhcp><host>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    /// `mac` (IPv4).
    pub mac: Option<String>,
    /// `id` (a DUID, IPv6).
    pub id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `ip`.
    pub ip: Option<IpAddr>,
    /// Lease time in seconds (`Some(0)` infinite).
    pub lease: Option<u64>,
}

/// One `<ip>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpDef {
    /// The bridge's address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
    /// DHCP ranges.
    pub ranges: Vec<Range>,
    /// Static DHCP hosts.
    pub hosts: Vec<DhcpHost>,
    /// `<dhcp><bootp file= server=>`.
    pub bootp: Option<(String, Option<String>)>,
}

impl IpDef {
    /// Whether this address runs a DHCP service.
    pub fn has_dhcp(&self) -> bool {
        !self.ranges.is_empty() || !self.hosts.is_empty()
    }

    /// The network address with the prefix, as nftables writes it (`192.168.122.0/24`).
    pub fn subnet(&self) -> String {
        format!("{}/{}", network_addr(self.addr, self.prefix), self.prefix)
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        network_addr(ip, self.prefix) == network_addr(self.addr, self.prefix)
            && ip.is_ipv4() == self.addr.is_ipv4()
    }
}

/// `<dns><forwarder>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarder {
    /// `domain`: only names in this domain go to `addr`.
    pub domain: Option<String>,
    /// `addr`; none with a domain means "resolve locally only".
    pub addr: Option<String>,
}

/// `<dns><host>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    /// `ip`.
    pub ip: IpAddr,
    /// The `<hostname>` children.
    pub names: Vec<String>,
}

/// `<dns><txt name value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTxt {
    /// The record's name.
    pub name: String,
    /// Its text.
    pub value: String,
}

/// `<dns><srv service protocol domain target port priority weight>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSrv {
    /// `service` (`ldap`).
    pub service: String,
    /// `protocol` (`tcp`, `udp`).
    pub protocol: String,
    /// `domain`, when given.
    pub domain: Option<String>,
    /// `target` host, when given.
    pub target: Option<String>,
    /// `port`, `priority`, `weight` (with a target).
    pub port: Option<u16>,
    pub priority: Option<u16>,
    pub weight: Option<u16>,
}

/// The definition, as this backend uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `<name>`.
    pub name: String,
    /// The forward mode.
    pub mode: Mode,
    /// `<bridge name=...>` as written (may hold `%d`).
    pub bridge: Option<String>,
    /// `<forward dev=...>`: the only outgoing interface, when given.
    pub forward_dev: Option<String>,
    /// `<mac address=...>` of the bridge.
    pub mac: Option<[u8; 6]>,
    /// `<mtu size=...>`.
    pub mtu: Option<u32>,
    /// `<bridge stp=...>` (default on).
    pub stp: bool,
    /// `<bridge delay=...>` in seconds.
    pub delay: u32,
    /// `<ip>` elements in order.
    pub ips: Vec<IpDef>,
    /// `<domain name=...>`.
    pub domain: Option<String>,
    /// `<domain localOnly='yes'>`.
    pub domain_local_only: bool,
    /// `<dns enable=...>` (default yes).
    pub dns_enabled: bool,
    /// `<dns forwardPlainNames='no'>`.
    pub dns_domain_needed: bool,
    /// `<dns><forwarder>`s.
    pub forwarders: Vec<Forwarder>,
    /// `<dns><host>`s.
    pub dns_hosts: Vec<DnsHost>,
    /// `<dns><txt>` records.
    pub dns_txt: Vec<DnsTxt>,
    /// `<dns><srv>` records.
    pub dns_srv: Vec<DnsSrv>,
    /// `<forward><nat ipv6='yes'>`.
    pub nat_ipv6: bool,
}

impl Plan {
    /// Reads and checks the definition.
    pub fn from_network(net: &Network) -> Result<Plan> {
        let name = net.name().to_string();
        let obj = object(&name);
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::Config {
                object: obj,
                field: "network/name".into(),
                reason: "the name must not be empty, contain '/' or start with '.'".into(),
            });
        }
        let root = net.element();
        let mode = match net.forward_mode() {
            None => Mode::Isolated,
            Some("nat") => Mode::Nat,
            Some("route") => Mode::Route,
            Some("open") => Mode::Open,
            Some("bridge") => Mode::Bridge,
            Some(other) => {
                return Err(Error::Config {
                    object: obj,
                    field: "network/forward/@mode".into(),
                    reason: format!(
                        "forward mode '{other}' is not supported by the bridge backend"
                    ),
                });
            }
        };
        let bridge_el = root.child("bridge");
        let bridge = net.bridge_name().map(str::to_string);
        if let Some(b) = &bridge {
            check_ifname(&name, "network/bridge/@name", b)?;
        } else if mode == Mode::Bridge {
            return Err(Error::Config {
                object: obj,
                field: "network/bridge/@name".into(),
                reason: "forward mode 'bridge' needs the name of an existing host bridge".into(),
            });
        }
        let stp = bridge_el.and_then(|b| b.attr("stp")) != Some("off");
        let delay = match bridge_el.and_then(|b| b.attr("delay")) {
            None => 0,
            Some(d) => d.trim().parse().map_err(|_| Error::Config {
                object: obj.clone(),
                field: "network/bridge/@delay".into(),
                reason: format!("'{d}' is not a number of seconds"),
            })?,
        };
        let mac = match net.mac() {
            None => None,
            Some(m) => Some(parse_mac(m).ok_or_else(|| Error::Config {
                object: obj.clone(),
                field: "network/mac/@address".into(),
                reason: format!("'{m}' is not a MAC address"),
            })?),
        };
        let mut ips = Vec::new();
        for (i, ip) in root.children_named("ip").enumerate() {
            ips.push(parse_ip(&name, i + 1, ip)?);
        }
        let domain_el = root.child("domain");
        let dns = root.child("dns");
        let mut forwarders = Vec::new();
        let mut dns_hosts = Vec::new();
        let mut dns_txt = Vec::new();
        let mut dns_srv = Vec::new();
        if let Some(dns) = dns {
            for (i, t) in dns.children_named("txt").enumerate() {
                let p = format!("network/dns/txt[{}]", i + 1);
                let need = |k: &str| {
                    t.attr(k).map(str::to_string).ok_or_else(|| Error::Config {
                        object: object(&name),
                        field: format!("{p}/@{k}"),
                        reason: "missing required attribute".into(),
                    })
                };
                dns_txt.push(DnsTxt {
                    name: need("name")?,
                    value: need("value")?,
                });
            }
            for (i, r) in dns.children_named("srv").enumerate() {
                let p = format!("network/dns/srv[{}]", i + 1);
                let need = |k: &str| {
                    r.attr(k).map(str::to_string).ok_or_else(|| Error::Config {
                        object: object(&name),
                        field: format!("{p}/@{k}"),
                        reason: "missing required attribute".into(),
                    })
                };
                let num = |k: &str| -> Result<Option<u16>> {
                    r.attr(k)
                        .map(|v| {
                            v.trim().parse::<u16>().map_err(|_| Error::Config {
                                object: object(&name),
                                field: format!("{p}/@{k}"),
                                reason: format!("'{v}' is not a number from 0 to 65535"),
                            })
                        })
                        .transpose()
                };
                dns_srv.push(DnsSrv {
                    service: need("service")?,
                    protocol: need("protocol")?,
                    domain: r.attr("domain").map(str::to_string),
                    target: r.attr("target").map(str::to_string),
                    port: num("port")?,
                    priority: num("priority")?,
                    weight: num("weight")?,
                });
            }
            for f in dns.children_named("forwarder") {
                forwarders.push(Forwarder {
                    domain: f.attr("domain").map(str::to_string),
                    addr: f.attr("addr").map(str::to_string),
                });
            }
            for (i, h) in dns.children_named("host").enumerate() {
                let field = format!("network/dns/host[{}]/@ip", i + 1);
                let ip = parse_addr(&name, &field, h.attr("ip"))?;
                let names = h
                    .children_named("hostname")
                    .map(|n| n.text().trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                dns_hosts.push(DnsHost { ip, names });
            }
        }
        let nat_ipv6 = root
            .child("forward")
            .and_then(|f| f.child("nat"))
            .and_then(|n| n.attr("ipv6"))
            == Some("yes");
        let plan = Plan {
            mode,
            bridge,
            forward_dev: net.forward_dev().map(str::to_string),
            mac,
            mtu: net.mtu(),
            stp,
            delay,
            ips,
            domain: domain_el.and_then(|d| d.attr("name")).map(str::to_string),
            domain_local_only: domain_el.and_then(|d| d.attr("localOnly")) == Some("yes"),
            dns_enabled: dns.and_then(|d| d.attr("enable")) != Some("no"),
            dns_domain_needed: dns.and_then(|d| d.attr("forwardPlainNames")) == Some("no"),
            forwarders,
            dns_hosts,
            dns_txt,
            dns_srv,
            nat_ipv6,
            name,
        };
        plan.check_tokens()?;
        Ok(plan)
    }

    /// Refuses values that would change the meaning of the dnsmasq configuration or the
    /// nftables batch they are written into (a newline, a comma, a quote...).
    fn check_tokens(&self) -> Result<()> {
        let net = self.name.as_str();
        if let Some(d) = &self.forward_dev {
            check_ifname(net, "network/forward/@dev", d)?;
        }
        let mut fields: Vec<(String, &str, &str)> = Vec::new();
        if let Some(d) = &self.domain {
            fields.push(("network/domain/@name".into(), d, "/"));
        }
        for (i, f) in self.forwarders.iter().enumerate() {
            let p = format!("network/dns/forwarder[{}]", i + 1);
            if let Some(d) = &f.domain {
                fields.push((format!("{p}/@domain"), d, "/"));
            }
            if let Some(a) = &f.addr {
                fields.push((format!("{p}/@addr"), a, "/"));
            }
        }
        for (i, h) in self.dns_hosts.iter().enumerate() {
            for n in &h.names {
                fields.push((format!("network/dns/host[{}]/hostname", i + 1), n, "/"));
            }
        }
        for (i, t) in self.dns_txt.iter().enumerate() {
            let p = format!("network/dns/txt[{}]", i + 1);
            fields.push((format!("{p}/@name"), &t.name, "/"));
            // the value is written quoted: only the quote, backslash and control characters matter
            if let Some(c) = t
                .value
                .chars()
                .find(|c| c.is_control() || matches!(c, '"' | '\\'))
            {
                return Err(Error::Config {
                    object: object(net),
                    field: format!("{p}/@value"),
                    reason: format!("character {c:?} is not allowed in '{}'", t.value),
                });
            }
        }
        for (i, r) in self.dns_srv.iter().enumerate() {
            let p = format!("network/dns/srv[{}]", i + 1);
            fields.push((format!("{p}/@service"), &r.service, "/"));
            fields.push((format!("{p}/@protocol"), &r.protocol, "/"));
            if let Some(d) = &r.domain {
                fields.push((format!("{p}/@domain"), d, "/"));
            }
            if let Some(t) = &r.target {
                fields.push((format!("{p}/@target"), t, "/"));
            }
        }
        for (i, ip) in self.ips.iter().enumerate() {
            for (j, h) in ip.hosts.iter().enumerate() {
                let p = format!("network/ip[{}]/dhcp/host[{}]", i + 1, j + 1);
                for (attr, v) in [("mac", &h.mac), ("id", &h.id), ("name", &h.name)] {
                    if let Some(v) = v {
                        fields.push((format!("{p}/@{attr}"), v, "/"));
                    }
                }
            }
            if let Some((file, server)) = &ip.bootp {
                let p = format!("network/ip[{}]/dhcp/bootp", i + 1);
                fields.push((format!("{p}/@file"), file, ""));
                if let Some(sv) = server {
                    fields.push((format!("{p}/@server"), sv, "/"));
                }
            }
        }
        for (field, v, extra) in fields {
            if let Some(c) = v.chars().find(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, ',' | '#' | '"' | '\\' | '\'')
                    || extra.contains(*c)
            }) {
                return Err(Error::Config {
                    object: object(net),
                    field,
                    reason: format!("character {c:?} is not allowed in '{v}'"),
                });
            }
        }
        Ok(())
    }

    /// Whether the network needs dnsmasq: a managed bridge with an address that serves
    /// DNS (unless `<dns enable='no'>`) or DHCP.
    pub fn needs_dnsmasq(&self) -> bool {
        if self.mode == Mode::Bridge || self.ips.is_empty() {
            return false;
        }
        self.dns_enabled || self.ips.iter().any(IpDef::has_dhcp)
    }

    /// Whether the network installs firewall rules (not for `open` and `bridge`).
    pub fn needs_firewall(&self) -> bool {
        !matches!(self.mode, Mode::Open | Mode::Bridge)
    }
}

/// Refuses interface names the kernel would refuse.
pub fn check_ifname(network: &str, field: &str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "the interface name is empty".to_string()
    } else if name.len() > IFNAME_MAX {
        format!(
            "interface name '{name}' is {} characters long, the limit is {IFNAME_MAX}",
            name.len()
        )
    } else if name.contains(['/', ':', '"', '\\', '\''])
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
        || name == "."
        || name == ".."
    {
        format!("'{name}' is not a valid interface name")
    } else {
        return Ok(());
    };
    Err(Error::Config {
        object: object(network),
        field: field.into(),
        reason,
    })
}

pub use rvirt_netdev::mac::{format as format_mac, parse as parse_mac};

fn parse_addr(net: &str, field: &str, v: Option<&str>) -> Result<IpAddr> {
    let v = v.ok_or_else(|| Error::Config {
        object: object(net),
        field: field.into(),
        reason: "missing address".into(),
    })?;
    v.trim().parse().map_err(|_| Error::Config {
        object: object(net),
        field: field.into(),
        reason: format!("'{v}' is not an IP address"),
    })
}

/// Converts `<lease expiry= unit=>` to seconds (`Some(0)` infinite).
fn parse_lease(net: &str, field: &str, el: Option<&Element>) -> Result<Option<u64>> {
    let Some(l) = el else { return Ok(None) };
    let Some(e) = l.attr("expiry") else {
        return Ok(None);
    };
    let n: u64 = e.trim().parse().map_err(|_| Error::Config {
        object: object(net),
        field: format!("{field}/lease/@expiry"),
        reason: format!("'{e}' is not a number"),
    })?;
    let mult = match l.attr("unit").unwrap_or("minutes") {
        "seconds" => 1,
        "minutes" => 60,
        "hours" => 3600,
        u => {
            return Err(Error::Config {
                object: object(net),
                field: format!("{field}/lease/@unit"),
                reason: format!("unknown unit '{u}'"),
            });
        }
    };
    Ok(Some(n.saturating_mul(mult)))
}

fn parse_ip(net: &str, idx: usize, ip: &Element) -> Result<IpDef> {
    let p = format!("network/ip[{idx}]");
    let addr = parse_addr(net, &format!("{p}/@address"), ip.attr("address"))?;
    let prefix = if let Some(pfx) = ip.attr("prefix") {
        pfx.trim().parse::<u8>().ok()
    } else if let Some(mask) = ip.attr("netmask") {
        mask.trim()
            .parse::<Ipv4Addr>()
            .ok()
            .map(u32::from)
            .filter(|m| m.leading_ones() + m.trailing_zeros() == 32)
            .map(|m| m.leading_ones() as u8)
    } else if addr.is_ipv4() {
        // libvirt's classful default
        let first = match addr {
            IpAddr::V4(a) => a.octets()[0],
            IpAddr::V6(_) => 0,
        };
        Some(if first < 128 {
            8
        } else if first < 192 {
            16
        } else {
            24
        })
    } else {
        Some(64)
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.filter(|p| *p <= max).ok_or_else(|| Error::Config {
        object: object(net),
        field: format!("{p}/@prefix"),
        reason: "invalid prefix or netmask".into(),
    })?;
    let mut def = IpDef {
        addr,
        prefix,
        ranges: Vec::new(),
        hosts: Vec::new(),
        bootp: None,
    };
    let Some(dhcp) = ip.child("dhcp") else {
        return Ok(def);
    };
    for (i, r) in dhcp.children_named("range").enumerate() {
        let rp = format!("{p}/dhcp/range[{}]", i + 1);
        let start = parse_addr(net, &format!("{rp}/@start"), r.attr("start"))?;
        let end = parse_addr(net, &format!("{rp}/@end"), r.attr("end"))?;
        for (what, a) in [("start", start), ("end", end)] {
            if !def.contains(a) {
                return Err(Error::Config {
                    object: object(net),
                    field: format!("{rp}/@{what}"),
                    reason: format!(
                        "address {a} is outside the network's subnet {}",
                        def.subnet()
                    ),
                });
            }
        }
        if ip_value(start) > ip_value(end) {
            return Err(Error::Config {
                object: object(net),
                field: rp,
                reason: format!("range start {start} is after its end {end}"),
            });
        }
        let lease = parse_lease(net, &rp, r.child("lease"))?;
        def.ranges.push(Range { start, end, lease });
    }
    for (i, h) in dhcp.children_named("host").enumerate() {
        let hp = format!("{p}/dhcp/host[{}]", i + 1);
        let hip = match h.attr("ip") {
            None => None,
            Some(v) => Some(parse_addr(net, &format!("{hp}/@ip"), Some(v))?),
        };
        if let Some(a) = hip
            && !def.contains(a)
        {
            return Err(Error::Config {
                object: object(net),
                field: format!("{hp}/@ip"),
                reason: format!(
                    "address {a} is outside the network's subnet {}",
                    def.subnet()
                ),
            });
        }
        def.hosts.push(DhcpHost {
            mac: h.attr("mac").map(str::to_string),
            id: h.attr("id").map(str::to_string),
            name: h.attr("name").map(str::to_string),
            ip: hip,
            lease: parse_lease(net, &hp, h.child("lease"))?,
        });
    }
    if let Some(b) = dhcp.child("bootp")
        && let Some(f) = b.attr("file")
    {
        def.bootp = Some((f.to_string(), b.attr("server").map(str::to_string)));
    }
    Ok(def)
}

/// The address as a number (for ordering and counting).
pub fn ip_value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

/// The network address of `a/prefix`.
pub fn network_addr(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let m = u32::MAX
                .checked_shl(32 - prefix.min(32) as u32)
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = u128::MAX
                .checked_shl(128 - prefix.min(128) as u32)
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// The IPv4 netmask of a prefix.
pub fn netmask_v4(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - prefix.min(32) as u32)
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(xml: &str) -> Result<Plan> {
        Plan::from_network(&Network::parse(xml).expect("xml"))
    }

    #[test]
    fn reads_a_nat_network() {
        let p = plan(
            "<network><name>n</name><forward mode='nat'/><bridge name='br9' stp='off' delay='2'/>\
             <mac address='52:54:00:0a:0b:0c'/><mtu size='1400'/><domain name='ex.test' localOnly='yes'/>\
             <dns><forwarder addr='192.0.2.53'/><host ip='10.1.0.7'><hostname>h7</hostname></host></dns>\
             <ip address='10.1.0.1' netmask='255.255.255.0'><dhcp><range start='10.1.0.10' end='10.1.0.20'>\
             <lease expiry='2' unit='hours'/></range><host mac='52:54:00:00:00:01' ip='10.1.0.5' name='a'/></dhcp></ip>\
             <ip family='ipv6' address='fd00::1' prefix='64'/></network>",
        )
        .expect("plan");
        assert_eq!(p.mode, Mode::Nat);
        assert!(!p.stp);
        assert_eq!(p.delay, 2);
        assert_eq!(p.mac, Some([0x52, 0x54, 0, 0x0a, 0x0b, 0x0c]));
        assert_eq!(p.ips[0].prefix, 24);
        assert_eq!(p.ips[0].subnet(), "10.1.0.0/24");
        assert_eq!(p.ips[0].ranges[0].lease, Some(7200));
        assert_eq!(p.ips[1].subnet(), "fd00::/64");
        assert!(p.needs_dnsmasq() && p.needs_firewall());
    }

    #[test]
    fn refuses_bad_input() {
        // rvirt_xml refuses a range outside the subnet already; the backend checks again
        let e = Network::parse(
            "<network><name>n</name><ip address='10.1.0.1' prefix='24'><dhcp>\
             <range start='10.2.0.10' end='10.2.0.20'/></dhcp></ip></network>",
        )
        .expect_err("outside");
        assert!(
            e.to_string().contains("not entirely within the network"),
            "{e}"
        );
        let e = plan("<network><name>n</name><bridge name='abcdefghijklmnop'/></network>")
            .expect_err("long");
        assert_eq!(
            e.to_string(),
            "network 'n': network/bridge/@name: interface name 'abcdefghijklmnop' is 16 characters long, the limit is 15"
        );
        // the backend's own checks, on elements the XML layer did not see
        let ip = Element::parse(
            "<ip address='10.1.0.1' prefix='24'><dhcp><range start='10.2.0.10' end='10.2.0.20'/></dhcp></ip>",
        )
        .expect("xml");
        let e = parse_ip("n", 1, &ip).expect_err("outside");
        assert_eq!(
            e.to_string(),
            "network 'n': network/ip[1]/dhcp/range[1]/@start: address 10.2.0.10 is outside the network's subnet 10.1.0.0/24"
        );
        let ip = Element::parse(
            "<ip address='10.1.0.1' prefix='24'><dhcp><range start='10.1.0.20' end='10.1.0.10'/></dhcp></ip>",
        )
        .expect("xml");
        let e = parse_ip("n", 1, &ip).expect_err("reversed");
        assert!(e.to_string().contains("is after its end"), "{e}");
    }

    #[test]
    fn refuses_injection() {
        let e = plan(
            "<network><name>n</name><domain name='a&#10;user=x'/><ip address='10.1.0.1' prefix='24'/></network>",
        )
        .expect_err("newline");
        assert_eq!(
            e.to_string(),
            "network 'n': network/domain/@name: character '\\n' is not allowed in 'a\nuser=x'"
        );
        let e = plan("<network><name>n</name><forward mode='nat' dev='eth\"0'/></network>")
            .expect_err("quote");
        assert!(e.to_string().contains("network/forward/@dev"), "{e}");
        let e = plan(
            "<network><name>n</name><dns><host ip='10.1.0.5'><hostname>a,b</hostname></host></dns></network>",
        )
        .expect_err("comma");
        assert!(
            e.to_string().contains("network/dns/host[1]/hostname"),
            "{e}"
        );
    }

    #[test]
    fn dnsmasq_need() {
        let p = plan("<network><name>n</name><dns enable='no'/><ip address='10.1.0.1' prefix='24'/></network>")
            .expect("plan");
        assert!(!p.needs_dnsmasq());
        let p = plan("<network><name>n</name><ip address='10.1.0.1' prefix='24'/></network>")
            .expect("plan");
        assert!(p.needs_dnsmasq(), "dns runs without dhcp");
        let p = plan("<network><name>n</name></network>").expect("plan");
        assert!(!p.needs_dnsmasq());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:0f"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0x0f])
        );
        assert_eq!(parse_mac("52:54:00:ab:cd"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:ef:01"), None);
        assert_eq!(format_mac(&[0xfe, 0x54, 0, 1, 2, 3]), "fe:54:00:01:02:03");
    }
}
