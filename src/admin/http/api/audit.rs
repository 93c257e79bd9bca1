//! `/api/audit`: the append-only audit log, listed with filters and
//! exported (streamed) as CSV or NDJSON. No route changes it.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::{db, page, ApiError, AppState, Authed};
use crate::admin::json::{self, List};
use crate::store::{AuditFilter, AuditRecord};

/// Records read from the store per export chunk.
pub const EXPORT_CHUNK: u32 = 1000;

fn time_param(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    q.get(key)
        .map(|v| {
            json::parse_time(v).ok_or_else(|| {
                ApiError::field(
                    key,
                    "must be an RFC 3339 time, a date (YYYY-MM-DD) or Unix ms",
                )
            })
        })
        .transpose()
}

/// `GET /api/audit?page=&limit=&action=&entityType=&since=&until=`, newest first.
pub async fn list(
    State(st): State<AppState>,
    _: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<List<Value>>, ApiError> {
    let page = page(&q)?;
    let filter = AuditFilter {
        action: q.get("action").cloned().filter(|s| !s.is_empty()),
        entity_type: q.get("entityType").cloned().filter(|s| !s.is_empty()),
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
    };
    let (rows, total) = db(&st, move |s| s.list_audit(&filter, page)).await?;
    let items: Vec<Value> = rows.iter().map(json::audit).collect();
    Ok(Json(List::page(items, total, page)))
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 9] = [
    "id",
    "at",
    "actor",
    "action",
    "entityType",
    "entityId",
    "clientAddr",
    "before",
    "after",
];

fn csv_rows(rows: &[AuditRecord], header: bool) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        let _ = w.write_record(CSV_HEADER);
    }
    for r in rows {
        let e = &r.entry;
        let _ = w.write_record([
            r.id.to_string(),
            json::time(e.at),
            e.actor.clone(),
            e.action.clone(),
            e.entity_type.clone(),
            e.entity_id.clone().unwrap_or_default(),
            e.client_addr.clone().unwrap_or_default(),
            e.before.clone().unwrap_or_default(),
            e.after.clone().unwrap_or_default(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

/// `GET /api/audit/export?startDate=&endDate=&format=csv|ndjson`: oldest
/// first, read in chunks and streamed, so any range costs bounded memory.
/// `endDate` as a date includes that whole day.
pub async fn export(
    State(st): State<AppState>,
    _: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let csv = match q.get("format").map(String::as_str) {
        None | Some("csv") => true,
        Some("ndjson") => false,
        Some(_) => return Err(ApiError::field("format", "must be csv or ndjson")),
    };
    let since = time_param(&q, "startDate")?.unwrap_or(0);
    let mut until = time_param(&q, "endDate")?.unwrap_or(i64::MAX);
    if q.get("endDate").is_some_and(|d| d.len() == 10) {
        until = until.saturating_add(86_400_000); // the whole end day
    }
    if until <= since {
        return Err(ApiError::field("endDate", "must be after startDate"));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut after = 0;
        let mut first = true;
        loop {
            let rows = match store.audit_chunk(since, until, after, EXPORT_CHUNK) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("audit export failed: {e}");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let bytes = if csv {
                csv_rows(&rows, first)
            } else {
                let mut b = Vec::new();
                for r in &rows {
                    b.extend_from_slice(json::audit(r).to_string().as_bytes());
                    b.push(b'\n');
                }
                b
            };
            first = false;
            if !bytes.is_empty() && tx.blocking_send(Ok(bytes)).is_err() {
                return; // the client went away
            }
            match rows.last() {
                Some(last) if rows.len() == EXPORT_CHUNK as usize => after = last.id,
                _ => return,
            }
        }
    });
    let stream = futures_lite::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (ctype, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "ndjson")
    };
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"wsrelay-audit.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
