//! Where an app may point: never at the edge itself, and not at
//! link-local or cloud-metadata addresses unless the app says so.
//!
//! An app whose internal URL is the edge's own admin address would publish
//! the admin API on a public listener; one that is a public listener makes
//! every request loop until the edge runs out of sockets. Hosts are
//! compared by what they *reach*, not by how they are spelt: `localhost`,
//! `127.0.0.2`, `[::1]`, `[::ffff:127.0.0.1]`, `0.0.0.0`, and the numeric
//! spellings resolvers accept (`2130706433`, `0x7f.1`, `0177.0.0.1`) are
//! all this machine. Names that only DNS can resolve to the edge are
//! caught at run time by the loop guard (`Via`, 508).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{EdgeSettings, ListenerConfig};

/// The address a host literal stands for, in any spelling a resolver
/// accepts: IPv6 in brackets, or IPv4 as `inet_aton` reads it (one to
/// four parts, each decimal, octal with a leading `0`, or hex with `0x`).
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        nums.push(if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        });
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut v: u64 = 0;
    for (i, &n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i);
    }
    v |= last;
    Some(IpAddr::V4(Ipv4Addr::from(v as u32)))
}

/// IPv4-mapped IPv6 addresses as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `host` is this machine whatever network it is on.
fn is_local(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host == "localhost" || host.ends_with(".localhost") || host == "localhost.localdomain" {
        return true;
    }
    literal_ip(host)
        .map(canonical)
        .is_some_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Whether `host` is a link-local or cloud-metadata address.
pub fn is_link_local(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if matches!(
        host,
        "metadata" | "metadata.google.internal" | "instance-data"
    ) {
        return true;
    }
    match literal_ip(host).map(canonical) {
        Some(IpAddr::V4(v4)) => v4.is_link_local(),
        Some(IpAddr::V6(v6)) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
        None => false,
    }
}

/// What of the edge `host:port` reaches, if anything: a listener, the
/// admin API or the tunnel listener.
pub fn edge_itself(
    host: &str,
    port: u16,
    listeners: &[ListenerConfig],
    edge: &EdgeSettings,
) -> Option<String> {
    let ip = literal_ip(host.trim_end_matches('.')).map(canonical);
    let local = is_local(host);
    let reaches = |a: SocketAddr| {
        a.port() == port
            && (local || ip.is_some_and(|ip| ip == canonical(a.ip()) || a.ip().is_unspecified()))
    };
    for l in listeners {
        if reaches(l.address) {
            return Some(format!(
                "the edge's own {} listener {}",
                l.scheme, l.address
            ));
        }
    }
    if reaches(edge.admin_address) {
        return Some(format!("the edge's admin API {}", edge.admin_address));
    }
    if let Some(m) = edge.metrics_address.filter(|m| reaches(*m)) {
        return Some(format!("the edge's metrics listener {m}"));
    }
    match edge.tunnel_address {
        Some(t) if reaches(t) => Some(format!("the edge's tunnel listener {t}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_spellings_are_read_as_resolvers_read_them() {
        let v4 = |s: &str| literal_ip(s).map(|ip| ip.to_string());
        assert_eq!(v4("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("2130706433").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("0177.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("0").as_deref(), Some("0.0.0.0"));
        assert_eq!(
            v4("[::ffff:127.0.0.1]").as_deref(),
            Some("::ffff:127.0.0.1")
        );
        assert_eq!(v4("[::1]").as_deref(), Some("::1"));
        for name in [
            "app.corp",
            "256.1.1.1",
            "1.2.3.4.5",
            "08.1.1.1",
            "",
            "[",
            "[]",
            "1.2.3.256",
        ] {
            assert_eq!(literal_ip(name), None, "{name}");
        }
    }

    #[test]
    fn local_and_link_local() {
        for h in [
            "localhost",
            "a.localhost",
            "127.0.0.2",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "0.0.0.0",
            "[::]",
            "2130706433",
        ] {
            assert!(is_local(h), "{h}");
        }
        for h in ["app.corp", "10.0.0.1", "[2001:db8::1]"] {
            assert!(!is_local(h), "{h}");
        }
        for h in [
            "169.254.169.254",
            "[fe80::1]",
            "metadata.google.internal",
            "[fd00:ec2::254]",
            "[::ffff:169.254.1.1]",
        ] {
            assert!(is_link_local(h), "{h}");
        }
        assert!(!is_link_local("10.0.0.1"));
    }
}
