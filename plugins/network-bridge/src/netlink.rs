//! A small synchronous rtnetlink client: links, bridges and addresses.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// What a bridge is created with.
#[derive(Debug, Clone, Default)]
pub struct BridgeSpec {
    /// Its MAC address.
    pub mac: Option<[u8; 6]>,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// Spanning tree on.
    pub stp: bool,
    /// Forward delay in seconds.
    pub delay: u32,
}

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`bridge`, `tun`, `veth`).
    pub kind: Option<String>,
    /// Index of the bridge it is a port of.
    pub master: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// MAC address.
    pub mac: Option<Vec<u8>>,
}

/// A route netlink socket.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { sock, seq: 0 })
    }

    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        hdr.sequence_number = seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            let mut off = 0;
            while off < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(c) => Err(io::Error::from_raw_os_error(c.get().abs())),
                            None => Ok(out),
                        };
                    }
                    NetlinkPayload::InnerMessage(i) => out.push(i),
                    _ => {}
                }
            }
        }
    }

    /// Every link.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, if any.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates bridge `name` (fails with `EEXIST` when the name is taken).
    pub fn add_bridge(&mut self, name: &str, spec: &BridgeSpec) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = spec.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = spec.mac {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        // the delay first: the kernel refuses a delay under 2 s once STP is on
        let data = vec![
            InfoBridge::ForwardDelay(spec.delay.saturating_mul(100)),
            InfoBridge::StpState(if spec.stp {
                BridgeStpState::KernelStp
            } else {
                BridgeStpState::Disabled
            }),
        ];
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(data)),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Deletes link `index`.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), 0).map(drop)
    }

    /// Sets the state, master, MTU and MAC of link `index` (each when given).
    pub fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        master: Option<u32>,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
    ) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some(up) = up {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
        }
        if let Some(b) = master {
            m.attributes.push(LinkAttribute::Controller(b));
        }
        if let Some(v) = mtu {
            m.attributes.push(LinkAttribute::Mtu(v));
        }
        if let Some(a) = mac {
            m.attributes.push(LinkAttribute::Address(a.to_vec()));
        }
        self.request(RouteNetlinkMessage::SetLink(m), 0).map(drop)
    }

    /// Adds `addr/prefix` to link `index` (IPv6 without duplicate address detection, so
    /// it is usable at once).
    pub fn add_addr(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = prefix;
        match addr {
            IpAddr::V4(v4) => {
                m.header.family = AddressFamily::Inet;
                m.attributes.push(AddressAttribute::Local(addr));
                m.attributes.push(AddressAttribute::Address(addr));
                if prefix < 31 {
                    let host = u32::MAX.checked_shr(prefix as u32).unwrap_or(0);
                    let bcast = std::net::Ipv4Addr::from(u32::from(v4) | host);
                    m.attributes.push(AddressAttribute::Broadcast(bcast));
                }
            }
            IpAddr::V6(_) => {
                m.header.family = AddressFamily::Inet6;
                m.attributes.push(AddressAttribute::Address(addr));
                m.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The addresses of link `index`, as `(address, prefix)`.
    pub fn addrs(&mut self, index: u32) -> io::Result<Vec<(IpAddr, u8)>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let p = a.header.prefix_len;
                    a.attributes.into_iter().find_map(|at| match at {
                        AddressAttribute::Address(ip) => Some((ip, p)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }
}

fn to_link(l: LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        kind: None,
        master: None,
        up: l.header.flags.contains(LinkFlags::Up),
        mtu: None,
        mac: None,
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Controller(m) => link.master = Some(m),
            LinkAttribute::Mtu(m) => link.mtu = Some(m),
            LinkAttribute::Address(a) => link.mac = Some(a),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}
