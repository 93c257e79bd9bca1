//! The admin API's JSON shapes (SPEC 3–5): camelCase names, times as RFC 3339
//! UTC strings, secrets never shown. Written once here for the REST routes,
//! `/ops` and the audit log.

use serde_json::{json, Map, Value};

use crate::config::EndpointConfig;
use crate::shard::metrics::EndpointStats;
use crate::store::{AuditRecord, EndpointRecord, SampleRow, SessionRow, User};

/// What a stored secret is shown as.
pub const REDACTED: &str = "********";

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

/// snake_case keys → camelCase, recursively.
pub fn camel_keys(v: Value) -> Value {
    rename_keys(v, &crate::config::camel_case_path)
}

/// camelCase keys → snake_case, recursively.
pub fn snake_keys(v: Value) -> Value {
    rename_keys(v, &|k: &str| {
        let mut out = String::with_capacity(k.len() + 4);
        for c in k.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    })
}

fn rename_keys(v: Value, f: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (f(&k), rename_keys(v, f)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| rename_keys(v, f)).collect()),
        v => v,
    }
}

/// An endpoint's configuration as the API shows it (secret redacted).
pub fn endpoint_config(e: &EndpointConfig) -> Value {
    let mut v = camel_keys(serde_json::to_value(e).unwrap_or(Value::Null));
    if let Some(secret) = v.pointer_mut("/auth/jwtSecret") {
        if !secret.is_null() {
            *secret = Value::String(REDACTED.into());
        }
    }
    if let Some(Value::Object(limits)) = v.get_mut("limits") {
        limits.retain(|_, v| !v.is_null());
    }
    if let Some(Value::Object(auth)) = v.get_mut("auth") {
        auth.retain(|_, v| !v.is_null());
    }
    v
}

/// A stored endpoint: its configuration plus `createdAt`/`updatedAt`.
pub fn endpoint(r: &EndpointRecord) -> Value {
    let mut v = endpoint_config(&r.endpoint);
    if let Value::Object(m) = &mut v {
        m.insert("createdAt".into(), time(r.created_at).into());
        m.insert("updatedAt".into(), time(r.updated_at).into());
    }
    v
}

/// A session (SPEC 4.4).
pub fn session(r: &SessionRow) -> Value {
    json!({
        "id": r.id,
        "endpointId": r.endpoint_id,
        "shard": r.shard,
        "node": r.node_id,
        "clientAddr": r.client_addr,
        "startedAt": time(r.started_at),
        "lastSeen": time(r.last_seen),
        "msgsIn": r.msgs_in,
        "msgsOut": r.msgs_out,
        "bytesIn": r.bytes_in,
        "bytesOut": r.bytes_out,
        "state": r.state,
        "closeCode": r.close_code,
        "closeReason": r.close_reason,
        "closedBy": r.closed_by,
        "endedAt": r.ended_at.map(time),
    })
}

/// A user, without the password hash.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "role": u.role.as_str(),
        "createdAt": time(u.created_at),
    })
}

/// An audit record; `before`/`after` as JSON when they are.
pub fn audit(r: &AuditRecord) -> Value {
    let doc = |s: &Option<String>| {
        s.as_deref()
            .map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.into())))
    };
    json!({
        "id": r.id,
        "at": time(r.entry.at),
        "actor": r.entry.actor,
        "action": r.entry.action,
        "entityType": r.entry.entity_type,
        "entityId": r.entry.entity_id,
        "before": doc(&r.entry.before),
        "after": doc(&r.entry.after),
        "clientAddr": r.entry.client_addr,
    })
}

/// A traffic sample: text as text, binary as base64.
pub fn sample(s: &SampleRow) -> Value {
    use base64::Engine;
    let text = (s.opcode == 1)
        .then(|| std::str::from_utf8(&s.payload).ok())
        .flatten();
    json!({
        "sessionId": s.session_id,
        "endpointId": s.endpoint_id,
        "direction": s.direction.stored(),
        "opcode": s.opcode,
        "size": s.size,
        "capturedAt": time(s.captured_at),
        "encoding": if text.is_some() { "text" } else { "base64" },
        "payload": text.map(str::to_string).unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode(&s.payload)),
    })
}

/// Percentiles of a latency histogram (µs).
fn latency(h: &hdrhistogram::Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// `{"in": {...}, "out": {...}}` percentiles by direction.
pub fn latency_pair(h: &[hdrhistogram::Histogram<u64>; 2]) -> Value {
    crate::bridge::Direction::BOTH
        .iter()
        .map(|d| (d.label().to_string(), latency(&h[d.index()])))
        .collect::<Map<_, _>>()
        .into()
}

/// An endpoint's merged statistics (SPEC 5, `/api/endpoints/:id/stats`).
pub fn stats(id: &str, t: Option<&EndpointStats>) -> Value {
    let empty = EndpointStats::new(id);
    let t = t.unwrap_or(&empty);
    json!({
        "endpointId": id,
        "activeSessions": t.sessions_active,
        "totalSessions": t.sessions_total,
        "messagesIn": t.messages[0],
        "messagesOut": t.messages[1],
        "bytesIn": t.bytes[0],
        "bytesOut": t.bytes[1],
        "latencyUs": latency_pair(&t.latency_us),
        "upstreamConnectP99Us": t.connect_us.value_at_quantile(0.99),
    })
}
