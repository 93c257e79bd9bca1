//! The feed: events published once into a bounded broadcast ring that every
//! `/ops` reader follows at its own pace.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::SessionRow;

/// Events kept for readers that are behind; a reader further behind is dropped.
pub const RING: usize = 4096;

/// What kind of message an event is (for subscription filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// sessionStarted / sessionUpdated / sessionEnded.
    Session,
    /// Per-endpoint stats.
    Stats,
    /// A sampled payload.
    Sample,
    /// Per-message metadata (only to readers that asked).
    Meta,
}

/// One message for `/ops` readers, serialized once.
#[derive(Debug)]
pub struct OpsEvent {
    /// The endpoint it concerns.
    pub endpoint: String,
    /// Its kind.
    pub kind: Kind,
    /// The JSON text sent.
    pub text: String,
}

impl OpsEvent {
    /// A session message of `kind` (`sessionStarted`, …).
    pub fn session(kind: &'static str, row: &SessionRow) -> OpsEvent {
        #[derive(serde::Serialize)]
        struct Message<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            session: crate::admin::json::SessionBody<'a>,
        }
        OpsEvent {
            endpoint: row.endpoint_id.clone(),
            kind: Kind::Session,
            text: message(&Message {
                kind,
                session: row.into(),
            }),
        }
    }

    /// A `sampledPayload` message.
    pub fn sample(row: &crate::store::SampleRow) -> OpsEvent {
        OpsEvent {
            endpoint: row.endpoint_id.clone(),
            kind: Kind::Sample,
            text: message(&Typed {
                kind: "sampledPayload",
                body: crate::admin::json::SampleBody::from(row),
            }),
        }
    }

    /// A `messageMeta` message.
    pub fn meta(m: &crate::bridge::MessageMeta) -> OpsEvent {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            session_id: String,
            endpoint_id: &'a str,
            direction: &'static str,
            opcode: u8,
            size: u64,
            at: String,
        }
        OpsEvent {
            endpoint: m.endpoint.clone(),
            kind: Kind::Meta,
            text: message(&Meta {
                kind: "messageMeta",
                session_id: m.session.hyphenated().to_string(),
                endpoint_id: &m.endpoint,
                direction: m.dir.stored(),
                opcode: m.opcode,
                size: m.size,
                at: crate::admin::json::time(m.at_ms),
            }),
        }
    }

    /// A `stats` message.
    pub fn stats(endpoint: &str, stats: crate::admin::json::StatsBody) -> OpsEvent {
        OpsEvent {
            endpoint: endpoint.to_string(),
            kind: Kind::Stats,
            text: message(&Typed {
                kind: "stats",
                body: stats,
            }),
        }
    }
}

/// A body with its `/ops` message `type` beside its fields.
#[derive(serde::Serialize)]
struct Typed<B> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: B,
}

/// A message's JSON text.
pub(crate) fn message(m: &impl serde::Serialize) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

/// The publishing end; cheap to clone.
#[derive(Clone)]
pub struct OpsFeed(broadcast::Sender<Arc<OpsEvent>>);

impl Default for OpsFeed {
    fn default() -> Self {
        OpsFeed(broadcast::channel(RING).0)
    }
}

impl OpsFeed {
    /// Publishes to every reader (nothing is kept when there is none).
    pub fn publish(&self, e: OpsEvent) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(Arc::new(e));
        }
    }

    /// Whether anybody listens (to skip building messages).
    pub fn has_readers(&self) -> bool {
        self.0.receiver_count() > 0
    }

    /// Connected `/ops` readers.
    pub fn readers(&self) -> usize {
        self.0.receiver_count()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<OpsEvent>> {
        self.0.subscribe()
    }
}
