//! Logs operators can grep and ship (issue 14): with
//! `WSRELAY_LOG_FORMAT=json` every line is one JSON object with the event's
//! fields at the top level; one info line per session end, per refused
//! upgrade (a flood is cut to a few lines a second, and the lines say how
//! many were left out — exactly) and per admin request; no password, token
//! or secret in any line of a run that used them all.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use serde_json::Value;
use support::admin::*;
use support::*;

const JWT_SECRET: &str = "admin-jwt-secret-for-the-log-test-0123456789";
const ENDPOINT_SECRET: &str = "endpoint-secret-for-the-log-test-0123456789";

fn client_token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"exp": exp, "sub": "log-test-client"}),
        &jsonwebtoken::EncodingKey::from_secret(ENDPOINT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Every line of the log, each parsed (a line that is not JSON fails).
fn json_lines(r: &Relay) -> Vec<Value> {
    r.log_text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn with_message<'a>(lines: &'a [Value], msg: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["message"] == msg).collect()
}

#[test]
fn json_lines_for_sessions_refusals_and_admin_requests_without_secrets() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1)
        + &endpoint(
            "auth",
            &t.url(),
            &format!("auth = {{ jwt_secret = \"{ENDPOINT_SECRET}\" }}"),
        );
    let r = Relay::start_with(
        &cfg,
        &[
            ("WSRELAY_LOG_FORMAT", "json"),
            ("WSRELAY_JWT_SECRET", JWT_SECRET),
        ],
    );
    let token = login(&r, ADMIN_EMAIL, ADMIN_PASSWORD).expect("login");
    assert_eq!(
        call(r.admin, "GET", "/api/endpoints", Some(&token), None).status,
        200
    );
    let (mut ops, _) = connect(&format!("ws://{}/ops?token={token}", r.admin)).unwrap();
    next(&mut ops, "hello");

    // A session with its token in the query: three messages each way.
    let ct = client_token();
    let (mut ws, _) = connect(&format!("{}?token={ct}", r.url("auth"))).unwrap();
    echo_then_close(&mut ws, 3);
    // Refused: a bad token for a known endpoint, an unknown endpoint.
    assert_eq!(
        status_of(connect(&format!("{}?token=forged", r.url("auth"))).unwrap_err()),
        401
    );
    assert_eq!(status_of(connect(&r.url("nowhere")).unwrap_err()), 404);

    // Lines reach the file through the log writer's thread: wait for the
    // session's end and both refusals, not just the first of them.
    let lines = eventually("the session's end and both refusals logged", || {
        let l = json_lines(&r);
        let refused = with_message(&l, "upgrade refused");
        let has = |status: u64| refused.iter().any(|x| x["status"].as_u64() == Some(status));
        (!with_message(&l, "session ended").is_empty() && has(401) && has(404)).then_some(l)
    });
    let end = with_message(&lines, "session ended")[0];
    assert_eq!(end["level"], "INFO");
    assert_eq!(end["endpoint"], "auth");
    assert!(
        end["session"]
            .as_str()
            .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
        "{end}"
    );
    assert!(
        end["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{end}"
    );
    assert!(end["duration_ms"].as_i64().is_some(), "{end}");
    assert_eq!(
        (end["msgs_in"].as_u64(), end["msgs_out"].as_u64()),
        (Some(3), Some(3)),
        "{end}"
    );
    assert!(
        end["bytes_in"].as_u64() > Some(0) && end["bytes_out"].as_u64() > Some(0),
        "{end}"
    );
    assert_eq!(
        (end["code"].as_u64(), end["closed_by"].as_str()),
        (Some(1000), Some("client")),
        "{end}"
    );
    assert_eq!(end["abnormal"], false);
    assert!(
        end.get("fields").is_none(),
        "fields are at the top level: {end}"
    );

    let refused = with_message(&lines, "upgrade refused");
    let find = |status: u64| {
        refused
            .iter()
            .find(|l| l["status"].as_u64() == Some(status))
    };
    let unauthorized = find(401).expect("the 401 logged");
    assert_eq!(
        (
            unauthorized["reason"].as_str(),
            unauthorized["endpoint"].as_str()
        ),
        (Some("unauthorized"), Some("auth"))
    );
    assert!(unauthorized["client"]
        .as_str()
        .is_some_and(|c| c.starts_with("127.0.0.1:")));
    let missing = find(404).expect("the 404 logged");
    assert_eq!(
        (missing["reason"].as_str(), missing["endpoint"].as_str()),
        (Some("not_found"), Some(""))
    );

    let admin = with_message(&lines, "admin request");
    let req = |route: &str| {
        admin
            .iter()
            .find(|l| l["route"] == route)
            .unwrap_or_else(|| panic!("no admin request line for {route}: {admin:?}"))
    };
    let list = req("/api/endpoints");
    assert_eq!(
        (list["method"].as_str(), list["status"].as_u64()),
        (Some("GET"), Some(200))
    );
    assert_eq!(list["actor"], ADMIN_EMAIL);
    assert!(list["duration_ms"].as_f64().is_some());
    assert_eq!(
        (
            req("/api/login")["status"].as_u64(),
            req("/api/login")["actor"].as_str()
        ),
        (Some(200), Some("-"))
    );
    assert_eq!(req("/ops")["actor"], ADMIN_EMAIL);

    // Not one secret in the whole log.
    let text = r.log_text();
    for secret in [
        ADMIN_PASSWORD,
        &token,
        &ct,
        JWT_SECRET,
        ENDPOINT_SECRET,
        "forged",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the log:\n{text}");
    }
}

#[test]
fn a_flood_of_refusals_is_cut_to_a_few_lines_that_count_the_rest() {
    let r = Relay::start_with(&base_config(1), &[("WSRELAY_LOG_FORMAT", "json")]);
    let flood = 300;
    for _ in 0..flood {
        assert_eq!(status_of(connect(&r.url("nowhere")).unwrap_err()), 404);
    }
    // After the flood's second, one more: its line reports what was left out.
    std::thread::sleep(std::time::Duration::from_millis(1100)); // the per-second budget renews
    assert_eq!(status_of(connect(&r.url("nowhere")).unwrap_err()), 404);
    let total = flood + 1;
    let lines = eventually("every refusal accounted for", || {
        let l = json_lines(&r);
        let refused = with_message(&l, "upgrade refused");
        let counted: u64 = refused
            .iter()
            .map(|l| 1 + l["suppressed"].as_u64().unwrap_or(0))
            .sum();
        (counted == total).then_some(refused.len())
    });
    // 20 lines a second at most: the flood (under 2 s here) and the last one.
    assert!(lines <= 3 * 20 + 1, "{lines} lines for {total} refusals");
    assert!(
        lines < total as usize / 2,
        "{lines} lines for {total} refusals"
    );
}
