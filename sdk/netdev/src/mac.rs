//! MAC addresses as libvirt writes them.

/// Parses `52:54:00:aa:bb:cc` (one or two hex digits per byte, either case).
pub fn parse(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Bytes as `52:54:00:aa:bb:cc`.
pub fn format(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC address of the host side of a guest's interface: the guest's with the first
/// byte `0xfe`, so that the bridge never takes the TAP's address as its own (libvirt's
/// rule).
pub fn host_side(guest: [u8; 6]) -> [u8; 6] {
    let mut m = guest;
    m[0] = 0xfe;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_host_side() {
        assert_eq!(
            parse("52:54:00:ab:CD:0f"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0x0f])
        );
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "52:54:00:ab:cd:",
            "5254:00:ab:cd:0f:1",
            "zz:54:00:ab:cd:0f",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(format(&[0xfe, 0x54, 0, 1, 2, 3]), "fe:54:00:01:02:03");
        assert_eq!(
            host_side([0x52, 0x54, 0, 1, 2, 3]),
            [0xfe, 0x54, 0, 1, 2, 3]
        );
    }
}
