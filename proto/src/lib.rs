//! The wire formats wsrelay parses, apart from everything else so that they
//! can be fuzzed and tested on their own (issue 11): WebSocket frame headers
//! and close payloads (`frame`), and the client's HTTP upgrade request and
//! wsrelay's HTTP answers (`handshake`). Pure functions on byte slices; no
//! I/O, no allocation on the frame path.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod frame;
pub mod handshake;
pub mod proxy;

/// Why an upgrade was refused (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Reject {
    BadRequest,
    UpgradeRequired,
    HeadersTooLarge,
    HandshakeTimeout,
    NotFound,
    Disabled,
    OriginNotAllowed,
    Unauthorized,
    RateLimited,
    EndpointFull,
    GlobalFull,
    Draining,
    UpstreamFailed,
    UpstreamTimeout,
    Fragmented,
    Memory,
    ProxyHeader,
    TlsHandshake,
}

impl Reject {
    /// Every reason, for reports.
    pub const ALL: [Reject; 18] = [
        Reject::BadRequest,
        Reject::UpgradeRequired,
        Reject::HeadersTooLarge,
        Reject::HandshakeTimeout,
        Reject::NotFound,
        Reject::Disabled,
        Reject::OriginNotAllowed,
        Reject::Unauthorized,
        Reject::RateLimited,
        Reject::EndpointFull,
        Reject::GlobalFull,
        Reject::Draining,
        Reject::UpstreamFailed,
        Reject::UpstreamTimeout,
        Reject::Fragmented,
        Reject::Memory,
        Reject::ProxyHeader,
        Reject::TlsHandshake,
    ];

    /// This reason's place in [`Reject::ALL`] (the declaration order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reject::BadRequest => "bad_request",
            Reject::UpgradeRequired => "upgrade_required",
            Reject::HeadersTooLarge => "headers_too_large",
            Reject::HandshakeTimeout => "handshake_timeout",
            Reject::NotFound => "not_found",
            Reject::Disabled => "disabled",
            Reject::OriginNotAllowed => "origin_not_allowed",
            Reject::Unauthorized => "unauthorized",
            Reject::RateLimited => "rate_limited",
            Reject::EndpointFull => "endpoint_full",
            Reject::GlobalFull => "global_full",
            Reject::Draining => "draining",
            Reject::UpstreamFailed => "upstream_failed",
            Reject::UpstreamTimeout => "upstream_timeout",
            Reject::Fragmented => "fragmented_request",
            Reject::Memory => "memory",
            Reject::ProxyHeader => "proxy_header",
            Reject::TlsHandshake => "tls_handshake",
        }
    }
}

/// Is `id` a valid endpoint slug?
pub fn valid_endpoint_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::Reject;

    #[test]
    fn every_reason_has_its_own_index_and_label() {
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let mut labels: Vec<_> = Reject::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reject::ALL.len());
    }
}
