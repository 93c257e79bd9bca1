//! The only types that cross threads: endpoint snapshots going to shards and
//! commands for them. Plain data, no logic beyond constructors.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::config::{EndpointConfig, TargetUrl};

/// A client-JWT check compiled once per endpoint version.
pub struct ClientAuth {
    /// The key (HS256 secret or RS256 public key).
    pub key: jsonwebtoken::DecodingKey,
    /// Algorithm pinned, `exp` required, leeway, audience and issuer.
    pub validation: jsonwebtoken::Validation,
}

/// One endpoint as a shard sees it: immutable, shared by `Arc`.
pub struct Endpoint {
    /// The endpoint's configuration.
    pub cfg: EndpointConfig,
    /// The parsed target.
    pub target: TargetUrl,
    /// Set when clients must present a JWT.
    pub auth: Option<ClientAuth>,
    /// Sessions of this endpoint on all shards. The only shared counter a
    /// session touches, and only at admission and at its end.
    pub active: Arc<AtomicUsize>,
}

/// The whole routing table, replaced as a unit.
#[derive(Default)]
pub struct EndpointSnapshot {
    /// Increases with every change.
    pub version: u64,
    /// By endpoint id.
    pub endpoints: HashMap<String, Arc<Endpoint>>,
}

/// What the control side tells a shard.
pub enum ShardCommand {
    /// Replace the routing table.
    Snapshot(Arc<EndpointSnapshot>),
    /// Stop accepting sessions, answer `/healthz` 503, close sessions after
    /// the drain timeout, then exit.
    Drain,
    /// Close every session now with this code and reason.
    CloseAll(u16, &'static str),
}
