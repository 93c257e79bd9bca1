//! The admin API's JSON shapes (SPEC 3–5): camelCase names, times as RFC 3339
//! UTC strings, secrets never shown. Written once here for the REST routes,
//! `/ops` and the audit log.

use serde::Serialize;
use serde_json::Value;

use crate::admin::bodies::EndpointBody;
use crate::config::EndpointConfig;
use crate::shard::metrics::EndpointStats;
use crate::store::{AuditRecord, EndpointRecord, SampleRow, SessionRow, User};

/// What a stored secret is shown as.
pub use crate::admin::bodies::REDACTED;

/// Unix ms → `2026-11-22T21:37:54.123Z`.
pub fn time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// Parses an RFC 3339 time or a date (`2026-11-22`, midnight UTC) or Unix
/// milliseconds into Unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() * 1000)
}

/// Whether `s` holds text PostgreSQL refuses to store (a NUL character;
/// every `str` is valid UTF-8 already). Such input is a 400 on every backend.
pub fn nul_in(s: &str) -> bool {
    s.contains('\0')
}

/// The path (`a.b[2]`) of the first string or key in `v` that holds a NUL.
pub fn nul_path(v: &Value) -> Option<String> {
    fn walk(v: &Value, at: &str) -> Option<String> {
        match v {
            Value::String(s) if nul_in(s) => Some(at.to_string()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, &format!("{at}[{i}]"))),
            Value::Object(m) => m
                .iter()
                .find_map(|(k, x)| match (nul_in(k), at.is_empty()) {
                    // A key with a NUL: its object is the field at fault.
                    (true, true) => Some(".".into()),
                    (true, false) => Some(at.to_string()),
                    (false, true) => walk(x, k),
                    (false, false) => walk(x, &format!("{at}.{k}")),
                }),
            _ => None,
        }
    }
    walk(v, "")
}

/// An endpoint's configuration as the API shows it (secret redacted).
pub fn endpoint_config(e: &EndpointConfig) -> Value {
    to_value(EndpointBody::shown(e))
}

/// A stored endpoint: its configuration plus `createdAt`/`updatedAt`.
pub fn endpoint(r: &EndpointRecord) -> Value {
    let mut b = EndpointBody::shown(&r.endpoint);
    b.created_at = Some(time(r.created_at));
    b.updated_at = Some(time(r.updated_at));
    to_value(b)
}

/// A session as the API and `/ops` show it (SPEC 4.4).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionBody<'a> {
    id: &'a str,
    endpoint_id: &'a str,
    shard: i64,
    node: &'a str,
    client_addr: &'a str,
    started_at: String,
    last_seen: String,
    msgs_in: i64,
    msgs_out: i64,
    bytes_in: i64,
    bytes_out: i64,
    state: &'a str,
    close_code: Option<i64>,
    close_reason: Option<&'a str>,
    closed_by: Option<&'a str>,
    ended_at: Option<String>,
}

impl<'a> From<&'a SessionRow> for SessionBody<'a> {
    fn from(r: &'a SessionRow) -> Self {
        SessionBody {
            id: &r.id,
            endpoint_id: &r.endpoint_id,
            shard: r.shard,
            node: &r.node_id,
            client_addr: &r.client_addr,
            started_at: time(r.started_at),
            last_seen: time(r.last_seen),
            msgs_in: r.msgs_in,
            msgs_out: r.msgs_out,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            state: &r.state,
            close_code: r.close_code,
            close_reason: r.close_reason.as_deref(),
            closed_by: r.closed_by.as_deref(),
            ended_at: r.ended_at.map(time),
        }
    }
}

/// A session (SPEC 4.4), as a JSON value.
pub fn session(r: &SessionRow) -> Value {
    to_value(SessionBody::from(r))
}

/// A user as the API shows it: no password hash.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserBody<'a> {
    id: &'a str,
    email: &'a str,
    role: &'static str,
    created_at: String,
}

/// A user, without the password hash.
pub fn user(u: &User) -> Value {
    to_value(UserBody {
        id: &u.id,
        email: &u.email,
        role: u.role.as_str(),
        created_at: time(u.created_at),
    })
}

/// An audit record as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditBody<'a> {
    id: i64,
    at: String,
    actor: &'a str,
    action: &'a str,
    entity_type: &'a str,
    entity_id: Option<&'a str>,
    before: Option<Value>,
    after: Option<Value>,
    client_addr: Option<&'a str>,
}

/// An audit record; `before`/`after` as JSON when they are.
pub fn audit(r: &AuditRecord) -> Value {
    let doc = |s: &Option<String>| {
        s.as_deref()
            .map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.into())))
    };
    to_value(AuditBody {
        id: r.id,
        at: time(r.entry.at),
        actor: &r.entry.actor,
        action: &r.entry.action,
        entity_type: &r.entry.entity_type,
        entity_id: r.entry.entity_id.as_deref(),
        before: doc(&r.entry.before),
        after: doc(&r.entry.after),
        client_addr: r.entry.client_addr.as_deref(),
    })
}

/// A traffic sample as the API shows it: text as text, binary as base64.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleBody<'a> {
    session_id: &'a str,
    endpoint_id: &'a str,
    direction: &'static str,
    opcode: i64,
    size: i64,
    captured_at: String,
    encoding: &'static str,
    payload: String,
}

impl<'a> From<&'a SampleRow> for SampleBody<'a> {
    fn from(s: &'a SampleRow) -> Self {
        use base64::Engine;
        let text = (s.opcode == 1)
            .then(|| std::str::from_utf8(&s.payload).ok())
            .flatten();
        SampleBody {
            session_id: &s.session_id,
            endpoint_id: &s.endpoint_id,
            direction: s.direction.stored(),
            opcode: s.opcode,
            size: s.size,
            captured_at: time(s.captured_at),
            encoding: if text.is_some() { "text" } else { "base64" },
            payload: text
                .map(str::to_string)
                .unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode(&s.payload)),
        }
    }
}

/// A traffic sample: text as text, binary as base64.
pub fn sample(s: &SampleRow) -> Value {
    to_value(SampleBody::from(s))
}

/// A typed body as a JSON value (for lists and `/ops` messages).
pub fn to_value(body: impl Serialize) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// Percentiles of a latency histogram (µs).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    count: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl From<&hdrhistogram::Histogram<u64>> for Latency {
    fn from(h: &hdrhistogram::Histogram<u64>) -> Self {
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// `{"in": {...}, "out": {...}}`: percentiles by direction.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyPair {
    #[serde(rename = "in")]
    inbound: Latency,
    #[serde(rename = "out")]
    outbound: Latency,
}

/// Percentiles of both directions.
pub fn latency_pair(h: &[hdrhistogram::Histogram<u64>; 2]) -> LatencyPair {
    use crate::bridge::Direction;
    LatencyPair {
        inbound: (&h[Direction::In.index()]).into(),
        outbound: (&h[Direction::Out.index()]).into(),
    }
}

/// An endpoint's merged statistics (SPEC 5, `/api/endpoints/:id/stats`,
/// and `/ops` `stats` messages with `windowUs`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsBody {
    endpoint_id: String,
    active_sessions: u64,
    total_sessions: u64,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    latency_us: LatencyPair,
    upstream_connect_p99_us: u64,
    /// `/ops` only: latency of the messages since the previous message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_us: Option<LatencyPair>,
}

/// An endpoint's merged statistics (zeros for one without traffic yet).
pub fn stats(id: &str, t: Option<&EndpointStats>) -> StatsBody {
    let empty = EndpointStats::new(id);
    let t = t.unwrap_or(&empty);
    StatsBody {
        endpoint_id: id.to_string(),
        active_sessions: t.sessions_active,
        total_sessions: t.sessions_total,
        messages_in: t.messages[0],
        messages_out: t.messages[1],
        bytes_in: t.bytes[0],
        bytes_out: t.bytes[1],
        latency_us: latency_pair(&t.latency_us),
        upstream_connect_p99_us: t.connect_us.value_at_quantile(0.99),
        window_us: None,
    }
}

/// A list answer: `{items}`, `{items, total}` or a page
/// `{items, total, page, limit}` (SPEC 4).
#[derive(Serialize)]
pub struct List<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// Items in all pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// The page, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Items per page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl<T> List<T> {
    /// Every item, no count.
    pub fn all(items: Vec<T>) -> List<T> {
        List {
            items,
            total: None,
            page: None,
            limit: None,
        }
    }

    /// Every item and their count.
    pub fn counted(items: Vec<T>) -> List<T> {
        let total = Some(items.len() as i64);
        List {
            items,
            total,
            page: None,
            limit: None,
        }
    }

    /// Page `page` of `total` items.
    pub fn page(items: Vec<T>, total: i64, page: crate::store::Page) -> List<T> {
        List {
            items,
            total: Some(total),
            page: Some(page.page),
            limit: Some(page.limit),
        }
    }
}

/// `POST /api/auth/login` → `{token, user}`.
#[derive(Serialize)]
pub struct LoginReply {
    /// The JWT.
    pub token: String,
    /// The user it names.
    pub user: Value,
}
