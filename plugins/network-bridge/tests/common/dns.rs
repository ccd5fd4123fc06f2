//! A tiny DNS client: one A query over UDP, for the tests and the benchmark.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Asks `server` for the A records of `name`; `Ok(vec![])` for NXDOMAIN or no answer.
pub fn query_a(server: Ipv4Addr, name: &str, timeout: Duration) -> std::io::Result<Vec<Ipv4Addr>> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_read_timeout(Some(timeout))?;
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, SocketAddr::from((server, 53)))?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf)?;
    let r = &buf[..n];
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "short dns reply");
    if r.len() < 12 || r[0] != 0x12 || r[1] != 0x34 {
        return Err(bad());
    }
    let ancount = u16::from_be_bytes([r[6], r[7]]) as usize;
    let mut off = 12;
    // skip the question
    off = skip_name(r, off).ok_or_else(bad)? + 4;
    let mut out = Vec::new();
    for _ in 0..ancount {
        off = skip_name(r, off).ok_or_else(bad)?;
        let h = r.get(off..off + 10).ok_or_else(bad)?;
        let typ = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[8], h[9]]) as usize;
        off += 10;
        let data = r.get(off..off + len).ok_or_else(bad)?;
        if typ == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        off += len;
    }
    Ok(out)
}

fn skip_name(r: &[u8], mut off: usize) -> Option<usize> {
    loop {
        let l = *r.get(off)?;
        if l == 0 {
            return Some(off + 1);
        }
        if l & 0xc0 == 0xc0 {
            return Some(off + 2);
        }
        off += 1 + l as usize;
    }
}
