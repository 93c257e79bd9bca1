//! Who the client is behind a balancer (`server.trusted_proxies`): the
//! `X-Forwarded-For`/`-Proto` a trusted peer sent are honoured and extended;
//! from anyone else they are ignored and replaced, so a client cannot forge
//! its address (per-IP limits, logs, sessions) or its scheme.

use std::net::IpAddr;

use ipnet::IpNet;

/// What the relay uses and what it tells the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address as wsrelay believes it.
    pub client: IpAddr,
    /// Whether `client` came from `X-Forwarded-For` (its port is unknown).
    pub from_header: bool,
    /// `X-Forwarded-For` for the target.
    pub for_header: String,
    /// `X-Forwarded-Proto` for the target.
    pub proto: String,
}

/// Whether `ip` is one of `trusted`.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|n| n.contains(&ip))
}

/// `peer` (the TCP peer, or the PROXY header's source) sent `xff` and
/// `proto`; `tls`: the client leg is TLS.
pub fn resolve(
    peer: IpAddr,
    xff: Option<&str>,
    proto: Option<&str>,
    tls: bool,
    trusted: &[IpNet],
) -> Forwarded {
    let own_proto = if tls { "https" } else { "http" };
    let xff = xff.map(str::trim).filter(|v| !v.is_empty());
    if !is_trusted(peer, trusted) {
        return Forwarded {
            client: peer,
            from_header: false,
            for_header: peer.to_string(),
            proto: own_proto.to_string(),
        };
    }
    // Right to left, past the trusted proxies: the first address that is
    // not one of them is the client (nginx's real_ip_recursive). A value
    // that is not an address stops the walk: nothing left of it is trusted.
    let mut client = None;
    if let Some(list) = xff {
        for item in list.rsplit(',') {
            match item.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(ip, trusted) => client = Some(ip),
                Ok(ip) => {
                    client = Some(ip);
                    break;
                }
                Err(_) => break,
            }
        }
    }
    let proto = proto
        .and_then(|p| p.split(',').next())
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| own_proto.to_string());
    Forwarded {
        client: client.unwrap_or(peer),
        from_header: client.is_some(),
        for_header: match xff {
            Some(list) => format!("{list}, {peer}"),
            None => peer.to_string(),
        },
        proto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| crate::config::parse_cidr(s).unwrap())
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_forge_its_address_or_scheme() {
        let t = nets(&["10.0.0.0/8"]);
        let f = resolve(
            ip("198.51.100.9"),
            Some("1.2.3.4"),
            Some("https"),
            false,
            &t,
        );
        assert_eq!(
            f,
            Forwarded {
                client: ip("198.51.100.9"),
                from_header: false,
                for_header: "198.51.100.9".into(),
                proto: "http".into()
            }
        );
        // TLS clients are https, whatever they claim.
        let f = resolve(ip("198.51.100.9"), None, Some("http"), true, &t);
        assert_eq!(f.proto, "https");
        // No trusted proxies at all: the same.
        assert_eq!(
            resolve(ip("10.0.0.2"), Some("1.2.3.4"), None, false, &[]).client,
            ip("10.0.0.2")
        );
    }

    #[test]
    fn a_trusted_peer_is_honoured_and_extended() {
        let t = nets(&["10.0.0.0/8", "192.0.2.1"]);
        let f = resolve(
            ip("10.0.0.5"),
            Some("203.0.113.7, 192.0.2.1"),
            Some("HTTPS"),
            false,
            &t,
        );
        assert_eq!(
            f,
            Forwarded {
                client: ip("203.0.113.7"),
                from_header: true,
                for_header: "203.0.113.7, 192.0.2.1, 10.0.0.5".into(),
                proto: "https".into()
            }
        );
        // A client that forged an entry before the real one: the rightmost
        // untrusted address wins, not the forged leftmost one.
        let f = resolve(
            ip("10.0.0.5"),
            Some("6.6.6.6, 203.0.113.7"),
            None,
            false,
            &t,
        );
        assert_eq!(f.client, ip("203.0.113.7"));
        assert_eq!(f.proto, "http");
        // Garbage stops the walk; without a header the peer stands.
        let f = resolve(
            ip("10.0.0.5"),
            Some("bogus, 10.1.1.1"),
            Some("gopher"),
            true,
            &t,
        );
        assert_eq!((f.client, f.proto.as_str()), (ip("10.1.1.1"), "https"));
        let f = resolve(ip("10.0.0.5"), None, None, false, &t);
        assert_eq!(
            (f.client, f.from_header, f.for_header.as_str()),
            (ip("10.0.0.5"), false, "10.0.0.5")
        );
        // IPv4-mapped IPv6 peers match IPv4 ranges.
        assert!(is_trusted(ip("::ffff:10.0.0.5"), &t));
        assert!(!is_trusted(ip("::ffff:11.0.0.5"), &t));
    }
}
