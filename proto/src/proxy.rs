//! The PROXY protocol header an L4 balancer sends before anything else
//! (HAProxy's spec, v1 text and v2 binary), parsed by the `ppp` crate. This
//! module only bounds it and reduces it to what wsrelay uses: how many bytes
//! it took and the client's address.

use std::net::SocketAddr;

use ppp::{v1, v2};

/// The v2 signature (12 bytes).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the spec's 107 bytes).
pub const V1_MAX: usize = 107;
/// The longest v2 header accepted: 16 bytes, the addresses (216 for UNIX)
/// and room for TLVs (balancers add a few: ALPN, authority, VPC ids).
pub const V2_MAX: usize = 1024;
/// Bytes to read before a header can be judged complete or too long.
pub const MAX: usize = V2_MAX;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet.
    Incomplete,
    /// A header of `len` bytes. `client`: the original source, or `None`
    /// when the header names none (v1 `UNKNOWN`, v2 `LOCAL` — the balancer's
    /// own health check — or a non-IP family): the TCP peer stands.
    Header {
        /// Bytes the header takes.
        len: usize,
        /// The original client.
        client: Option<SocketAddr>,
    },
    /// Not a valid PROXY header (or one over the size bound).
    Invalid(String),
}

/// Parses the start of a connection. The header's end is found here (CRLF
/// for v1, the length field for v2) and only a whole header is given to
/// `ppp`, so a partial one is never judged and anything after it never read.
pub fn parse(buf: &[u8]) -> Parsed {
    let n = buf.len();
    if buf.starts_with(V2_SIGNATURE) || V2_SIGNATURE.starts_with(buf) {
        if n < 16 {
            return Parsed::Incomplete;
        }
        let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX {
            return Parsed::Invalid(format!("v2 header of {len} bytes (at most {V2_MAX})"));
        }
        if n < len {
            return Parsed::Incomplete;
        }
        return match v2::Header::try_from(&buf[..len]) {
            Ok(h) => Parsed::Header {
                len,
                client: match (h.command, h.addresses) {
                    (v2::Command::Local, _) => None,
                    (_, v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (_, v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
                },
            },
            Err(e) => Parsed::Invalid(format!("v2: {e}")),
        };
    }
    if buf.starts_with(b"PROXY ") || b"PROXY ".starts_with(buf) {
        let window = &buf[..n.min(V1_MAX)];
        let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
            return if n >= V1_MAX {
                Parsed::Invalid(format!("v1 header longer than {V1_MAX} bytes"))
            } else {
                Parsed::Incomplete
            };
        };
        let len = cr + 2;
        return match v1::Header::try_from(&buf[..len]) {
            Ok(h) => Parsed::Header {
                len,
                client: match h.addresses {
                    v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v1::Addresses::Unknown => None,
                },
            },
            Err(e) => Parsed::Invalid(format!("v1: {e}")),
        };
    }
    Parsed::Invalid("no PROXY header".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addr: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | command);
        b.push(family);
        b.extend_from_slice(&((addr.len() + extra.len()) as u16).to_be_bytes());
        b.extend_from_slice(addr);
        b.extend_from_slice(extra);
        b
    }

    const V4: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 1, 0x30, 0x39, 0x1f, 0x90];

    #[test]
    fn v1_headers_give_the_client_and_their_length() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 12345 8080\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(h),
            Parsed::Header {
                len: 42,
                client: Some("192.0.2.7:12345".parse().unwrap())
            }
        );
        let h6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        assert_eq!(
            parse(h6),
            Parsed::Header {
                len: h6.len(),
                client: Some("[2001:db8::7]:4000".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                client: None
            }
        );
    }

    #[test]
    fn v2_headers_give_the_client_and_their_length() {
        let h = v2(1, 0x11, &V4, &[]);
        let mut with_body = h.clone();
        with_body.extend_from_slice(b"\x16\x03\x01"); // a TLS ClientHello follows
        assert_eq!(
            parse(&with_body),
            Parsed::Header {
                len: 28,
                client: Some("192.0.2.7:12345".parse().unwrap())
            }
        );
        // TLVs count in the length.
        let tlv = [
            0x01, 0x00, 0x08, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ];
        assert_eq!(
            parse(&v2(1, 0x11, &V4, &tlv)),
            Parsed::Header {
                len: 28 + tlv.len(),
                client: Some("192.0.2.7:12345".parse().unwrap())
            }
        );
        // LOCAL: the balancer's own connection.
        assert_eq!(
            parse(&v2(0, 0x00, &[], &[])),
            Parsed::Header {
                len: 16,
                client: None
            }
        );
    }

    #[test]
    fn partial_headers_wait_and_every_prefix_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 12345 8080\r\n";
        let v2h = v2(1, 0x11, &V4, &[]);
        for h in [&v1[..], &v2h[..]] {
            for n in 1..h.len() {
                assert_eq!(parse(&h[..n]), Parsed::Incomplete, "{n} bytes");
            }
        }
    }

    #[test]
    fn malformed_forged_and_oversized_headers_are_invalid() {
        for bad in [
            &b"GET /ws/echo HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"PROXY TCP4 999.0.2.7 10.0.0.1 12345 8080\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 8080\r\n",
            b"PROXY TCP9 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7\r\n",
            b"proxy tcp4 192.0.2.7 10.0.0.1 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // v1 without an end of line within 107 bytes.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
        // v2 announcing more than the bound: refused from its 16 bytes.
        let mut big = v2(1, 0x11, &V4, &[]);
        big[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert!(matches!(parse(&big[..16]), Parsed::Invalid(_)));
        // v2 with a bad version or command.
        let mut bad = v2(1, 0x11, &V4, &[]);
        bad[12] = 0x31;
        assert!(matches!(parse(&bad), Parsed::Invalid(_)));
    }
}
