//! The admin API (SPEC 5) against a running wsrelay, on SQLite always and on
//! PostgreSQL when `DATABASE_URL` is set (each test in its own schema).
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::admin::*;
use support::*;
use tungstenite::Message;

#[test]
fn login_errors_tokens_and_throttling() {
    for (n, b) in backends().iter().enumerate() {
        let a = start(b, &format!("login{n}"), "");
        let r = &a.relay;
        // Wrong password and unknown account: 401, same message.
        let wrong = login(r, ADMIN_EMAIL, "not the password").unwrap_err();
        let unknown = login(r, "nobody@test.example", "whatever-password").unwrap_err();
        assert_eq!((wrong.status, unknown.status), (401, 401));
        assert_eq!(
            wrong.body["error"]["message"],
            unknown.body["error"]["message"]
        );
        assert_eq!(wrong.body["error"]["code"], "unauthorized");
        // Bad bodies are 400.
        let bad = call(
            r.admin,
            "POST",
            "/api/login",
            None,
            Some(&json!({"email": 5})),
        );
        assert_eq!(bad.status, 400, "{}", bad.text);
        let bad = call(r.admin, "POST", "/api/login", None, None);
        assert_eq!(bad.status, 400, "{}", bad.text);
        // Every route but login, health and metrics wants a valid token.
        let id = "00000000-0000-4000-8000-000000000000";
        let routes = [
            ("GET", "/api/endpoints".to_string()),
            ("POST", "/api/endpoints".into()),
            ("GET", "/api/endpoints/echo".into()),
            ("PATCH", "/api/endpoints/echo".into()),
            ("DELETE", "/api/endpoints/echo".into()),
            ("GET", "/api/endpoints/echo/stats".into()),
            ("GET", "/api/endpoints/echo/samples".into()),
            ("GET", "/api/endpoints/echo/sessions".into()),
            ("GET", "/api/sessions".into()),
            ("DELETE", format!("/api/sessions/{id}")),
            ("GET", "/api/audit".into()),
            ("GET", "/api/audit/export".into()),
            ("GET", "/api/users".into()),
            ("POST", "/api/users".into()),
            ("DELETE", format!("/api/users/{id}")),
        ];
        // (`/ops` is checked with a real upgrade in the end-to-end test.)
        // Well formed and unexpired, but signed with another secret.
        let foreign = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": "x", "email": ADMIN_EMAIL, "role": "admin", "iat": 1, "exp": 4102444800u64}),
            &jsonwebtoken::EncodingKey::from_secret(b"other").unwrap(),
        )
        .unwrap();
        for (m, p) in &routes {
            for token in [None, Some("x.y.z"), Some(foreign.as_str())] {
                let rep = call(r.admin, m, p, token, Some(&json!({})));
                assert_eq!(rep.status, 401, "{m} {p} with {token:?}: {}", rep.text);
                assert_eq!(rep.body["error"]["code"], "unauthorized", "{m} {p}");
            }
        }
        let login_ok = call(
            r.admin,
            "POST",
            "/api/login",
            None,
            Some(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        );
        assert_eq!(login_ok.body["user"]["role"], "admin");
        assert_eq!(login_ok.body["user"]["email"], ADMIN_EMAIL);
        assert!(login_ok.body["user"].get("passwordHash").is_none());

        // (Throttling under concurrency and from many addresses:
        // tests/admin_hardening.rs.)
        for _ in 0..3 {
            assert_eq!(
                login(r, ADMIN_EMAIL, "guess-guess-guess")
                    .unwrap_err()
                    .status,
                401
            );
        }
        let actions = audit_actions(&a, "&action=login.failure");
        assert_eq!(actions.len(), 5, "{actions:?}");
        assert!(audit_actions(&a, "&action=login.success").len() >= 2);
    }
}

#[test]
fn viewers_read_and_are_refused_every_write() {
    for (n, b) in backends().iter().enumerate() {
        let a = start(b, &format!("roles{n}"), "");
        let made = a.req("POST", "/api/users", Some(&json!({"email": "viewer@test.example", "password": "viewer-password-1", "role": "viewer"})));
        assert_eq!(made.status, 201, "{}", made.text);
        assert_eq!(made.body["role"], "viewer");
        // Duplicate, bad email, short password, bad role.
        assert_eq!(
            a.req(
                "POST",
                "/api/users",
                Some(&json!({"email": "viewer@test.example", "password": "viewer-password-1"}))
            )
            .status,
            409
        );
        let bad = a.req(
            "POST",
            "/api/users",
            Some(&json!({"email": "nope", "password": "viewer-password-1"})),
        );
        assert_eq!(
            (bad.status, bad.body["error"]["fields"]["email"].is_string()),
            (400, true),
            "{}",
            bad.text
        );
        let bad = a.req(
            "POST",
            "/api/users",
            Some(&json!({"email": "v2@test.example", "password": "short"})),
        );
        assert!(
            bad.body["error"]["fields"]["password"].is_string(),
            "{}",
            bad.text
        );
        let bad = a.req("POST", "/api/users", Some(&json!({"email": "v2@test.example", "password": "long-enough-pass", "role": "root"})));
        assert!(
            bad.body["error"]["fields"]["role"].is_string(),
            "{}",
            bad.text
        );

        let v = login(&a.relay, "viewer@test.example", "viewer-password-1").unwrap();
        for path in [
            "/api/endpoints",
            "/api/endpoints/echo",
            "/api/sessions",
            "/api/audit",
            "/api/endpoints/echo/stats",
        ] {
            assert_eq!(a.as_user(&v, "GET", path, None).status, 200, "{path}");
        }
        let writes: [(&str, &str, Option<Value>); 7] = [
            (
                "POST",
                "/api/endpoints",
                Some(json!({"id": "v", "targetUrl": "ws://127.0.0.1:1/"})),
            ),
            (
                "PATCH",
                "/api/endpoints/echo",
                Some(json!({"enabled": false})),
            ),
            ("DELETE", "/api/endpoints/echo", None),
            (
                "DELETE",
                "/api/sessions/00000000-0000-4000-8000-000000000000",
                None,
            ),
            ("GET", "/api/users", None),
            (
                "POST",
                "/api/users",
                Some(json!({"email": "x@test.example", "password": "long-enough-pass"})),
            ),
            (
                "DELETE",
                &format!("/api/users/{}", made.body["id"].as_str().unwrap()),
                None,
            ),
        ];
        for (m, p, body) in &writes {
            let r = a.as_user(&v, m, p, body.as_ref());
            assert_eq!(r.status, 403, "{m} {p}: {}", r.text);
            assert_eq!(r.body["error"]["code"], "forbidden");
        }
        // The admin deletes the viewer (not itself).
        let me = a.req("GET", "/api/users", None).body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == ADMIN_EMAIL)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            a.req("DELETE", &format!("/api/users/{me}"), None).status,
            409
        );
        let vid = made.body["id"].as_str().unwrap();
        assert_eq!(
            a.req("DELETE", &format!("/api/users/{vid}"), None).status,
            204
        );
        assert_eq!(
            a.req("DELETE", &format!("/api/users/{vid}"), None).status,
            404
        );
        let actions = audit_actions(&a, "&entityType=user");
        assert!(
            actions.contains(&"user.create".to_string())
                && actions.contains(&"user.delete".to_string()),
            "{actions:?}"
        );
    }
}

#[test]
fn endpoint_crud_validation_and_live_routing() {
    let t = target(Behaviour::Echo);
    for (n, b) in backends().iter().enumerate() {
        let a = start(b, &format!("crud{n}"), &endpoint("other", &t.url(), ""));
        let (mut other, _) = connect(&a.relay.url("other")).unwrap();

        // Every rule of SPEC 3 is reported with its field at once.
        let bad = a.req("POST", "/api/endpoints", Some(&json!({
            "id": "Bad Id", "name": "n".repeat(101), "targetUrl": "http://x",
            "limits": {"maxConnections": 0, "maxMessageSize": 10, "timeoutMs": 5, "maxMessagesPerSecond": 0},
            "sampling": {"percentage": 101, "maxSamples": 100001},
            "auth": {}
        })));
        assert_eq!(bad.status, 400, "{}", bad.text);
        let fields = bad.body["error"]["fields"].as_object().unwrap();
        for f in [
            "id",
            "name",
            "targetUrl",
            "limits.maxConnections",
            "limits.maxMessageSize",
            "limits.timeoutMs",
            "limits.maxMessagesPerSecond",
            "sampling.percentage",
            "sampling.maxSamples",
            "auth",
        ] {
            assert!(fields.contains_key(f), "{f} missing in {fields:?}");
        }
        let typo = a.req(
            "POST",
            "/api/endpoints",
            Some(&json!({"id": "a", "targetUrl": "ws://x/", "limits": {"maxConnections": "many"}})),
        );
        assert!(
            typo.body["error"]["fields"]["limits.maxConnections"].is_string(),
            "{}",
            typo.text
        );
        let unknown = a.req(
            "POST",
            "/api/endpoints",
            Some(&json!({"id": "a", "targetUrl": "ws://x/", "colour": 1})),
        );
        assert_eq!(unknown.status, 400, "{}", unknown.text);
        assert_eq!(
            a.req("POST", "/api/endpoints", Some(&json!([1]))).status,
            400
        );

        // Create (id generated when absent), duplicate, read.
        let made = a.req(
            "POST",
            "/api/endpoints",
            Some(
                &json!({"id": "live", "targetUrl": t.url(), "auth": {"jwtSecret": "s3cret-value"}}),
            ),
        );
        assert_eq!(made.status, 201, "{}", made.text);
        assert_eq!(
            made.body["auth"]["jwtSecret"], "********",
            "the secret is never shown"
        );
        assert!(!made.text.contains("s3cret-value"));
        let gen = a.req(
            "POST",
            "/api/endpoints",
            Some(&json!({"targetUrl": t.url()})),
        );
        assert_eq!(gen.status, 201);
        assert!(gen.body["id"].as_str().unwrap().starts_with("ep-"));
        assert_eq!(
            a.req(
                "POST",
                "/api/endpoints",
                Some(&json!({"id": "live", "targetUrl": t.url()}))
            )
            .status,
            409
        );
        assert_eq!(
            a.req("GET", "/api/endpoints/live", None).body["targetUrl"],
            t.url()
        );
        assert_eq!(a.req("GET", "/api/endpoints/nope", None).status, 404);
        assert_eq!(
            a.req(
                "PATCH",
                "/api/endpoints/nope",
                Some(&json!({"enabled": false}))
            )
            .status,
            404
        );
        assert_eq!(a.req("DELETE", "/api/endpoints/nope", None).status, 404);
        let list = a.req("GET", "/api/endpoints", None);
        assert_eq!(list.body["items"].as_array().unwrap().len(), 3);

        // Auth is enforced by the new snapshot; patching without the secret keeps it.
        assert_eq!(status_of(connect(&a.relay.url("live")).unwrap_err()), 401);
        let p = a.req(
            "PATCH",
            "/api/endpoints/live",
            Some(&json!({"auth": null, "name": "Live"})),
        );
        assert_eq!(
            (p.status, p.body["name"].as_str()),
            (200, Some("Live")),
            "{}",
            p.text
        );
        let (mut live, _) = connect(&a.relay.url("live")).unwrap();
        live.send(Message::Text("hi".into())).unwrap();
        assert_eq!(live.read().unwrap(), Message::Text("hi".into()));
        assert_eq!(
            a.req(
                "PATCH",
                "/api/endpoints/live",
                Some(&json!({"id": "renamed"}))
            )
            .status,
            400
        );
        let p = a.req(
            "PATCH",
            "/api/endpoints/live",
            Some(&json!({"limits": {"timeoutMs": 1}})),
        );
        assert!(
            p.body["error"]["fields"]["limits.timeoutMs"].is_string(),
            "{}",
            p.text
        );

        // Disabling stops new sessions (every shard), leaving open ones.
        assert_eq!(
            a.req(
                "PATCH",
                "/api/endpoints/live",
                Some(&json!({"enabled": false}))
            )
            .status,
            200
        );
        for _ in 0..6 {
            assert_eq!(status_of(connect(&a.relay.url("live")).unwrap_err()), 403);
        }
        live.send(Message::Text("still".into())).unwrap();
        assert_eq!(live.read().unwrap(), Message::Text("still".into()));

        // Deleting closes its sessions with 1001; other endpoints' sessions go on.
        assert_eq!(a.req("DELETE", "/api/endpoints/live", None).status, 204);
        assert_eq!(read_close(&mut live).0, 1001);
        for _ in 0..6 {
            assert_eq!(status_of(connect(&a.relay.url("live")).unwrap_err()), 404);
        }
        other.send(Message::Text("other".into())).unwrap();
        assert_eq!(other.read().unwrap(), Message::Text("other".into()));

        // Audited with before and after, secrets redacted.
        let r = a.req("GET", "/api/audit?entityType=endpoint&limit=100", None);
        let items = r.body["items"].as_array().unwrap();
        let actions: Vec<&str> = items
            .iter()
            .map(|i| i["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions.iter().filter(|a| **a == "endpoint.update").count(),
            2,
            "{actions:?}"
        );
        assert!(actions.contains(&"endpoint.create") && actions.contains(&"endpoint.delete"));
        let del = items
            .iter()
            .find(|i| i["action"] == "endpoint.delete")
            .unwrap();
        assert_eq!(del["before"]["id"], "live");
        assert_eq!(del["actor"], ADMIN_EMAIL);
        assert_eq!(del["clientAddr"], "127.0.0.1");
        assert!(!r.text.contains("s3cret-value"), "{}", r.text);
    }
}

#[test]
fn end_to_end_session_seen_on_api_and_ops_killed_and_audited() {
    let t = target(Behaviour::Echo);
    for (n, b) in backends().iter().enumerate() {
        let a = start(b, &format!("e2e{n}"), "");
        assert_eq!(
            a.req(
                "POST",
                "/api/endpoints",
                Some(&json!({"id": "e2e", "targetUrl": t.url()}))
            )
            .status,
            201
        );

        // /ops needs a token.
        let no = connect(&format!("ws://{}/ops", a.relay.admin)).unwrap_err();
        assert_eq!(status_of(no), 401);
        let (mut ops, _) =
            connect(&format!("ws://{}/ops?token={}", a.relay.admin, a.token)).unwrap();
        let hello: Value = serde_json::from_str(ops.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(hello["type"], "hello");
        ops.send(Message::Text(
            json!({"type": "subscribe", "endpointId": "e2e"})
                .to_string()
                .into(),
        ))
        .unwrap();
        next(&mut ops, "subscribed");

        let (mut client, _) = connect(&a.relay.url("e2e")).unwrap();
        for i in 0..5 {
            client.send(Message::Text(format!("m{i}").into())).unwrap();
            assert_eq!(
                client.read().unwrap(),
                Message::Text(format!("m{i}").into())
            );
        }
        let started = next(&mut ops, "sessionStarted");
        let id = started["session"]["id"].as_str().unwrap().to_string();
        assert_eq!(started["session"]["endpointId"], "e2e");
        let updated = next(&mut ops, "sessionUpdated");
        assert_eq!(updated["session"]["id"], id.as_str());
        let stats = next(&mut ops, "stats");
        assert_eq!(stats["endpointId"], "e2e");
        assert!(stats["windowUs"]["in"]["count"].is_u64(), "{stats}");

        // The session is listed (all, per endpoint) with its counters.
        let listed = eventually("the session in /api/sessions", || {
            let r = a.req("GET", "/api/sessions?endpointId=e2e", None);
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id.as_str() && s["msgsIn"] == 5)
                .cloned()
        });
        assert_eq!(listed["state"], "ACTIVE");
        assert_eq!(listed["msgsOut"], 5);
        assert!(listed["shard"].as_i64().unwrap() < 2);
        assert!(
            listed["node"].is_string()
                && listed["clientAddr"]
                    .as_str()
                    .unwrap()
                    .starts_with("127.0.0.1:")
        );
        let per = a.req("GET", "/api/endpoints/e2e/sessions", None);
        assert_eq!(per.body["total"], 1, "{}", per.text);
        assert_eq!(
            a.req("GET", "/api/endpoints/nope/sessions", None).status,
            404
        );
        assert_eq!(a.req("GET", "/api/sessions?state=bogus", None).status, 400);
        assert_eq!(a.req("GET", "/api/sessions?limit=0", None).status, 400);

        let s = eventually("stats", || {
            let r = a.req("GET", "/api/endpoints/e2e/stats", None);
            (r.body["messagesIn"] == 5).then_some(r.body)
        });
        assert_eq!(s["activeSessions"], 1);
        assert!(s["latencyUs"]["in"]["p99"].as_u64().unwrap() > 0);
        assert!(s["upstreamConnectP99Us"].as_u64().unwrap() > 0);

        // Kill: unknown ids are 404; the client gets 1008.
        assert_eq!(
            a.req("DELETE", "/api/sessions/not-a-uuid", None).status,
            404
        );
        assert_eq!(
            a.req(
                "DELETE",
                "/api/sessions/00000000-0000-4000-8000-000000000000",
                None
            )
            .status,
            404
        );
        let killed_at = Instant::now();
        assert_eq!(
            a.req("DELETE", &format!("/api/sessions/{id}"), None).status,
            204
        );
        assert_eq!(
            read_close(&mut client),
            (1008, "terminated by operator".into())
        );
        eprintln!("kill → client close frame: {:?}", killed_at.elapsed());
        let ended = next(&mut ops, "sessionEnded");
        assert_eq!(ended["session"]["closeCode"], 1008);
        let closed = eventually("the session CLOSED in the store", || {
            let r = a.req("GET", "/api/sessions?state=CLOSED", None);
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id.as_str())
                .cloned()
        });
        assert_eq!(closed["closeReason"], "terminated by operator");
        assert_eq!(
            a.req("DELETE", &format!("/api/sessions/{id}"), None).status,
            404,
            "already gone"
        );

        // A second session is killed over /ops; a viewer may not.
        let (mut c2, _) = connect(&a.relay.url("e2e")).unwrap();
        let id2 = next(&mut ops, "sessionStarted")["session"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(a.req("POST", "/api/users", Some(&json!({"email": "v@test.example", "password": "viewer-password-1", "role": "viewer"}))).status, 201);
        let vt = login(&a.relay, "v@test.example", "viewer-password-1").unwrap();
        let (mut vops, _) = connect(&format!("ws://{}/ops?token={vt}", a.relay.admin)).unwrap();
        next(&mut vops, "hello");
        vops.send(Message::Text(
            json!({"type": "session.kill", "sessionId": id2})
                .to_string()
                .into(),
        ))
        .unwrap();
        assert_eq!(next(&mut vops, "error")["code"], "forbidden");
        ops.send(Message::Text(
            json!({"type": "session.kill", "sessionId": id2})
                .to_string()
                .into(),
        ))
        .unwrap();
        assert_eq!(next(&mut ops, "killed")["sessionId"], id2.as_str());
        assert_eq!(read_close(&mut c2).0, 1008);

        // Every step is in the audit log.
        let actions = audit_actions(&a, "");
        for want in [
            "login.success",
            "endpoint.create",
            "session.kill",
            "user.create",
        ] {
            assert!(
                actions.iter().any(|x| x == want),
                "{want} not in {actions:?}"
            );
        }
        let kills = a.req("GET", "/api/audit?action=session.kill", None);
        assert_eq!(kills.body["total"], 2);
        assert_eq!(kills.body["items"][1]["entityId"], id.as_str());
    }
}

#[test]
fn audit_list_filters_pages_and_exports() {
    for (n, b) in backends().iter().enumerate() {
        let a = start(b, &format!("audit{n}"), "");
        for i in 0..5 {
            let r = a.req(
                "POST",
                "/api/endpoints",
                Some(&json!({"id": format!("a{i}"), "targetUrl": "ws://127.0.0.1:9/"})),
            );
            assert_eq!(r.status, 201);
        }
        let p1 = a.req("GET", "/api/audit?entityType=endpoint&limit=2&page=1", None);
        let p3 = a.req("GET", "/api/audit?entityType=endpoint&limit=2&page=3", None);
        assert_eq!(p1.body["total"], 5);
        assert_eq!(p1.body["items"].as_array().unwrap().len(), 2);
        assert_eq!(p3.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(p1.body["items"][0]["entityId"], "a4", "newest first");
        assert_eq!(
            a.req("GET", "/api/audit?since=2000-01-01&until=2000-01-02", None)
                .body["total"],
            0
        );
        assert_eq!(a.req("GET", "/api/audit?since=yesterday", None).status, 400);

        let today = &p1.body["items"][0]["at"].as_str().unwrap()[..10];
        let csv = a.req(
            "GET",
            &format!("/api/audit/export?startDate={today}&endDate={today}&format=csv"),
            None,
        );
        assert_eq!(csv.status, 200);
        let ctype = csv
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .unwrap()
            .1
            .clone();
        assert!(ctype.starts_with("text/csv"), "{ctype}");
        let mut rd = csv::Reader::from_reader(csv.text.as_bytes());
        assert_eq!(
            rd.headers().unwrap().iter().collect::<Vec<_>>()[..4],
            ["id", "at", "actor", "action"]
        );
        let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 6, "1 login + 5 creates");
        assert_eq!(&rows[5][3], "endpoint.create");
        let nd = a.req(
            "GET",
            &format!("/api/audit/export?startDate={today}&format=ndjson"),
            None,
        );
        let lines: Vec<Value> = nd
            .text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[1]["after"]["id"], "a0", "oldest first");
        assert_eq!(
            a.req("GET", "/api/audit/export?format=xml", None).status,
            400
        );
        assert_eq!(
            a.req(
                "GET",
                "/api/audit/export?startDate=2030-01-02&endDate=2030-01-01",
                None
            )
            .status,
            400
        );
        let none = a.req(
            "GET",
            "/api/audit/export?startDate=2000-01-01&endDate=2000-01-01&format=ndjson",
            None,
        );
        assert_eq!((none.status, none.text.as_str()), (200, ""));

        // No route changes the audit log.
        for m in ["PUT", "PATCH", "DELETE", "POST"] {
            let r = a.req(m, "/api/audit", Some(&json!({})));
            assert_eq!(r.status, 405, "{m}: {}", r.text);
        }
    }
}

#[test]
fn health_metrics_headers_limits_and_errors() {
    let t = target(Behaviour::Echo);
    let a = start(&None, "misc", &endpoint("echo", &t.url(), ""));
    let r = &a.relay;
    let h = call(r.admin, "GET", "/healthz", None, None);
    assert_eq!(h.status, 200);
    assert_eq!(
        (
            h.body["status"].as_str(),
            h.body["checks"]["database"].as_str(),
            h.body["checks"]["shards"].as_str()
        ),
        (Some("ok"), Some("ok"), Some("ok"))
    );
    assert!(h.body["version"].is_string() && h.body["uptime"].is_u64());
    let d = call(r.admin, "GET", "/healthz?detailed=true", None, None);
    assert_eq!(d.body["shards"].as_array().unwrap().len(), 2);
    assert!(d.body["store"]["latencyMs"].is_f64(), "{}", d.text);

    // Security headers on every admin answer, errors included; no CORS by default.
    for (m, p) in [
        ("GET", "/healthz"),
        ("GET", "/api/endpoints"),
        ("GET", "/nope"),
        ("GET", "/metrics"),
    ] {
        let rep = call(r.admin, m, p, None, None);
        let has = |k: &str, v: &str| {
            rep.headers
                .iter()
                .any(|(hk, hv)| hk.eq_ignore_ascii_case(k) && hv.contains(v))
        };
        assert!(
            has("x-content-type-options", "nosniff") && has("x-frame-options", "DENY"),
            "{p}: {:?}",
            rep.headers
        );
        assert!(
            has("content-security-policy", "default-src 'self'")
                && has("cache-control", "no-store"),
            "{p}"
        );
        assert!(!rep
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("access-control-allow-origin")));
    }
    // The UI is served from the binary, with no inline script (CSP: 'self').
    let ui = call(r.admin, "GET", "/", None, None);
    assert_eq!(ui.status, 200);
    assert!(
        ui.text
            .contains("<script type=\"module\" src=\"/ui/app.js\"></script>"),
        "{}",
        ui.text
    );
    assert_eq!(ui.text.matches("<script").count(), 1, "no inline scripts");
    for (path, ctype) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let rep = call(r.admin, "GET", path, None, None);
        assert_eq!(rep.status, 200, "{path}");
        assert!(
            rep.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with(ctype)),
            "{path}"
        );
    }
    let nf = call(r.admin, "GET", "/api/nope", Some(&a.token), None);
    assert_eq!(
        (nf.status, nf.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // A body over the limit is refused from its Content-Length, before it is
    // read (so the client sends only the head: writing the rest would race
    // the server closing the connection).
    let head = raw(
        r.admin,
        format!(
            "POST /api/endpoints HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            a.token,
            300 * 1024
        )
        .as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.contains("\"body_too_large\"") && head.contains("nosniff"),
        "{head}"
    );
    let garbage = ureq::post(&format!("http://{}/api/endpoints", r.admin))
        .set("Authorization", &format!("Bearer {}", a.token))
        .send_string("{not json");
    assert!(matches!(garbage, Err(ureq::Error::Status(400, _))));

    // Metrics after some traffic and a refusal.
    let (m, _ws) = metrics_after_traffic(r);
    for name in [
        "wsrelay_sessions_active{endpoint=\"echo\"} 1",
        "wsrelay_handshake_rejections_total{endpoint=\"\",reason=\"not_found\"} 1",
        "wsrelay_events_dropped_total 0",
        "wsrelay_relay_latency_seconds_count{endpoint=\"echo\",direction=\"in\"} 1",
        "wsrelay_store_write_batches_total",
        "wsrelay_upstream_connect_seconds_bucket{endpoint=\"echo\",le=\"+Inf\"} 1",
        "wsrelay_relay_latency_seconds_bucket{endpoint=\"echo\",direction=\"out\",le=\"+Inf\"} 1",
    ] {
        assert!(m.contains(name), "{name} missing:\n{m}");
    }
    // Logs never carry the password or a token.
    let log = r.log_text();
    assert!(!log.contains(ADMIN_PASSWORD) && !log.contains(&a.token));
}

/// One message both ways through endpoint `echo` (its session left open)
/// and one refused upgrade; `/metrics` once it shows them.
fn metrics_after_traffic(r: &Relay) -> (String, Ws) {
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    ws.send(Message::Text("x".into())).unwrap();
    ws.read().unwrap();
    assert_eq!(status_of(connect(&r.url("missing")).unwrap_err()), 404);
    let m = eventually("metrics with traffic", || {
        let m = call(r.admin, "GET", "/metrics", None, None).text;
        let both = ["in", "out"].iter().all(|d| {
            m.contains(&format!(
                "wsrelay_messages_total{{endpoint=\"echo\",direction=\"{d}\"}} 1"
            ))
        });
        let refused =
            m.contains("wsrelay_handshake_rejections_total{endpoint=\"\",reason=\"not_found\"} 1");
        (both && refused).then_some(m)
    });
    (m, ws)
}

/// The value of the one series `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_series_follow_the_endpoints_and_histograms_add_up() {
    let t = target(Behaviour::Echo);
    let a = start(&None, "series", &endpoint("echo", &t.url(), ""));
    let r = &a.relay;
    let created = a.req(
        "POST",
        "/api/endpoints",
        Some(
            &serde_json::json!({"id": "fresh", "name": "Fresh", "targetUrl": t.url(),
            "allowedOrigins": ["https://ok.example"]}),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    // Before any session: every per-endpoint series of `fresh` is there, at 0.
    let m = eventually("fresh in /metrics", || {
        let m = call(r.admin, "GET", "/metrics", None, None).text;
        m.contains("endpoint=\"fresh\"").then_some(m)
    });
    for series in [
        "wsrelay_sessions_active{endpoint=\"fresh\"}",
        "wsrelay_sessions_total{endpoint=\"fresh\"}",
        "wsrelay_messages_total{endpoint=\"fresh\",direction=\"in\"}",
        "wsrelay_closes_total{endpoint=\"fresh\",code_class=\"1000\",side=\"client\"}",
        "wsrelay_closes_total{endpoint=\"fresh\",code_class=\"1011\",side=\"target\"}",
        "wsrelay_handshake_rejections_total{endpoint=\"fresh\",reason=\"origin_not_allowed\"}",
        "wsrelay_relay_latency_seconds_bucket{endpoint=\"fresh\",direction=\"in\",le=\"0.001\"}",
        "wsrelay_relay_latency_seconds_count{endpoint=\"fresh\",direction=\"out\"}",
        "wsrelay_upstream_connect_seconds_bucket{endpoint=\"fresh\",le=\"+Inf\"}",
    ] {
        assert_eq!(sample(&m, series), Some(0.0), "{series}:\n{m}");
    }
    assert_eq!(
        sample(
            &m,
            &format!(
                "wsrelay_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    for name in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(sample(&m, name).is_some_and(|v| v > 0.0), "{name}:\n{m}");
    }

    // A refused upgrade to a known endpoint counts under it; one to an
    // unknown id under none (a client cannot invent series).
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(r.url("fresh")).unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    assert_eq!(status_of(connect_req(req).unwrap_err()), 403);
    assert_eq!(status_of(connect(&r.url("made-up")).unwrap_err()), 404);
    // Ten echoes each way on `echo`, then the session closes.
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    echo_then_close(&mut ws, 10);
    let m = eventually("refusals, messages and the close counted", || {
        let m = call(r.admin, "GET", "/metrics", None, None).text;
        let done = sample(
            &m,
            "wsrelay_handshake_rejections_total{endpoint=\"fresh\",reason=\"origin_not_allowed\"}",
        ) == Some(1.0)
            && sample(
                &m,
                "wsrelay_relay_latency_seconds_count{endpoint=\"echo\",direction=\"out\"}",
            ) == Some(10.0)
            && sample(
                &m,
                "wsrelay_closes_total{endpoint=\"echo\",code_class=\"1000\",side=\"client\"}",
            ) == Some(1.0);
        done.then_some(m)
    });
    assert!(!m.contains("made-up"), "{m}");
    assert_eq!(
        sample(
            &m,
            "wsrelay_handshake_rejections_total{endpoint=\"\",reason=\"not_found\"}"
        ),
        Some(1.0)
    );
    // Buckets are cumulative, end at the count, and `le` is in seconds.
    for dir in ["in", "out"] {
        let labels = format!("endpoint=\"echo\",direction=\"{dir}\"");
        let buckets: Vec<(f64, f64)> = m
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&format!(
                    "wsrelay_relay_latency_seconds_bucket{{{labels},le=\""
                ))?;
                let (le, v) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, v.parse().ok()?))
            })
            .collect();
        assert!(buckets.len() > 10, "{m}");
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{buckets:?}"
        );
        assert_eq!(buckets.last().unwrap().1, 10.0);
        assert_eq!(buckets[0].0, 0.000025);
        let sum = sample(
            &m,
            &format!("wsrelay_relay_latency_seconds_sum{{{labels}}}"),
        )
        .unwrap();
        assert!(sum > 0.0 && sum < 10.0, "{sum}");
    }

    // A deleted endpoint's series are gone.
    assert_eq!(a.req("DELETE", "/api/endpoints/fresh", None).status, 204);
    eventually("fresh gone from /metrics", || {
        let m = call(r.admin, "GET", "/metrics", None, None).text;
        (!m.contains("endpoint=\"fresh\"")).then_some(())
    });
}

#[test]
fn cors_is_answered_only_for_allowed_origins() {
    let relay = Relay::start(&base_config(1).replace(
        "[server]\n",
        "[server]\nadmin_cors_origins = [\"https://ops.example\"]\n",
    ));
    let pre = |origin: &str| {
        ureq::request("OPTIONS", &format!("http://{}/api/endpoints", relay.admin))
            .set("Origin", origin)
            .set("Access-Control-Request-Method", "GET")
            .call()
            .map(|r| r.header("access-control-allow-origin").map(str::to_string))
            .unwrap_or(None)
    };
    assert_eq!(
        pre("https://ops.example").as_deref(),
        Some("https://ops.example")
    );
    assert_eq!(pre("https://evil.example"), None);
}

#[test]
fn a_generated_admin_password_is_printed_once_and_works() {
    let relay = Relay::start_with(
        &base_config(1),
        &[("WSRELAY_ADMIN_PASSWORD", ""), ("WSRELAY_ADMIN_EMAIL", "")],
    );
    let line = relay
        .stdout_before_ready
        .lines()
        .find(|l| l.contains("created admin"))
        .expect("printed");
    let password = line
        .split("password ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(password.len() >= 20);
    assert!(login(&relay, "admin@localhost.localdomain", password).is_ok());
    assert!(!relay.log_text().contains(password), "not in the log");
}

#[test]
fn sampling_and_message_metadata_reach_the_store_and_ops() {
    let t = target(Behaviour::Echo);
    for (n, b) in backends().iter().enumerate() {
        let a = start(b, &format!("sample{n}"), "");
        let made = a.req(
            "POST",
            "/api/endpoints",
            Some(&json!({
                "id": "s", "targetUrl": t.url(),
                "sampling": {"enabled": true, "percentage": 100, "maxSamples": 3}
            })),
        );
        assert_eq!(made.status, 201, "{}", made.text);
        let (mut ops, _) =
            connect(&format!("ws://{}/ops?token={}", a.relay.admin, a.token)).unwrap();
        ops.send(Message::Text(
            json!({"type": "subscribe", "messageMeta": true})
                .to_string()
                .into(),
        ))
        .unwrap();
        assert_eq!(
            next(&mut ops, "error")["code"],
            "bad_request",
            "metadata needs an endpoint"
        );
        ops.send(Message::Text(
            json!({"type": "subscribe", "endpointId": "s", "messageMeta": true})
                .to_string()
                .into(),
        ))
        .unwrap();
        assert_eq!(next(&mut ops, "subscribed")["messageMeta"], true);
        // The shards learn about the interest through their command channel;
        // wait until a message shows its metadata.
        let (mut c, _) = connect(&a.relay.url("s")).unwrap();
        // Every probe is sampled (100 %), so each round ends with the sample
        // of its echo; a round that also carried metadata ends the wait.
        let (meta, sample) = eventually("messageMeta", || {
            c.send(Message::Text("probe".into())).unwrap();
            c.read().unwrap();
            let mut meta = None;
            loop {
                let m: Value =
                    serde_json::from_str(ops.read().unwrap().to_text().unwrap()).unwrap();
                match m["type"].as_str() {
                    Some("messageMeta") => meta = Some(m),
                    Some("sampledPayload") if m["direction"] == "target_to_client" => {
                        return meta.map(|meta| (meta, m));
                    }
                    _ => {}
                }
            }
        });
        assert_eq!(
            (
                meta["endpointId"].as_str(),
                meta["opcode"].as_u64(),
                meta["size"].as_u64()
            ),
            (Some("s"), Some(1), Some(5))
        );
        assert_eq!(
            (sample["encoding"].as_str(), sample["payload"].as_str()),
            (Some("text"), Some("probe"))
        );

        c.send(Message::Binary(vec![0, 1, 2, 255].into())).unwrap();
        c.read().unwrap();
        let bin = loop {
            let s = next(&mut ops, "sampledPayload");
            if s["opcode"] == 2 {
                break s;
            }
        };
        assert_eq!(
            (
                bin["encoding"].as_str(),
                bin["payload"].as_str(),
                bin["size"].as_u64()
            ),
            (Some("base64"), Some("AAEC/w=="), Some(4))
        );
        let dirs: Vec<String> = (0..2)
            .map(|_| {
                next(&mut ops, "messageMeta")["direction"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(
            dirs.iter()
                .all(|d| d == "client_to_target" || d == "target_to_client"),
            "{dirs:?}"
        );

        // The store keeps the newest maxSamples (3) of the endpoint.
        let items = eventually("samples in the store", || {
            let r = a.req("GET", "/api/endpoints/s/samples", None);
            let items = r.body["items"].as_array().unwrap().clone();
            (items.len() == 3 && items[0]["opcode"] == 2).then_some(items)
        });
        assert_eq!(items[0]["payload"], "AAEC/w==");
        assert_eq!(
            a.req("GET", "/api/endpoints/nope/samples", None).status,
            404
        );
    }
}

#[test]
fn metrics_pass_promtool_check() {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    if !tool_present(&promtool, &["--version"], "promtool (set PROMTOOL)") {
        return;
    }
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(base_config(2) + &endpoint("echo", &t.url(), "")));
    let (text, _ws) = metrics_after_traffic(&r);
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}

#[test]
fn a_lost_database_refuses_writes_with_503_while_relaying_goes_on() {
    let Some(url) = backends().into_iter().flatten().next() else {
        eprintln!("skipped: needs PostgreSQL (DATABASE_URL) to take the database away");
        return;
    };
    let t = target(Behaviour::Echo);
    let schema_url = pg_schema_url(&url, "lost");
    let link = db_link(&schema_url);
    let via = via_link(&schema_url, &link);
    let relay = Relay::start_with(
        &(base_config(2) + &endpoint("e", &t.url(), "")),
        &[("DATABASE_URL", via.as_str())],
    );
    let a = Admin {
        token: login(&relay, ADMIN_EMAIL, ADMIN_PASSWORD).unwrap(),
        relay,
        store_url: schema_url.clone(),
    };
    let (mut before, _) = connect(&a.relay.url("e")).unwrap();
    before.send(Message::Text("1".into())).unwrap();
    before.read().unwrap();

    link.cut();
    let refused = a.req(
        "POST",
        "/api/endpoints",
        Some(&json!({"id": "new", "targetUrl": t.url()})),
    );
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "database_unavailable");
    assert!(refused.retry_after.is_some());
    let h = call(a.relay.admin, "GET", "/healthz", None, None);
    assert_eq!(
        (h.status, h.body["status"].as_str()),
        (503, Some("degraded"))
    );
    assert!(h.body["checks"]["database"]
        .as_str()
        .unwrap()
        .starts_with("error"));
    // Relaying goes on: the open session and a new one.
    before.send(Message::Text("2".into())).unwrap();
    assert_eq!(before.read().unwrap(), Message::Text("2".into()));
    let (mut during, _) = connect(&a.relay.url("e")).unwrap();
    during.send(Message::Text("3".into())).unwrap();
    assert_eq!(during.read().unwrap(), Message::Text("3".into()));
    during.close(None).unwrap();
    let _ = read_close(&mut during);

    link.restore();
    // The writer retried: both sessions are stored, each once, the one that
    // ran during the outage with its end.
    let rows = eventually("sessions written after the outage", || {
        let r = a.req("GET", "/api/sessions?state=ALL&endpointId=e", None);
        (r.status == 200 && r.body["total"] == 2 && r.body["items"][0]["state"] == "CLOSED")
            .then_some(r.body)
    });
    assert_eq!(rows["items"][0]["msgsIn"], 1);
    let m = call(a.relay.admin, "GET", "/metrics", None, None).text;
    let errors: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("wsrelay_store_write_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 1, "{m}");
    assert!(m.contains("wsrelay_store_rows_dropped_total 0"));
    let ok = a.req(
        "POST",
        "/api/endpoints",
        Some(&json!({"id": "new", "targetUrl": t.url()})),
    );
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[test]
fn a_slow_ops_reader_is_dropped() {
    let t = target(Behaviour::Echo);
    let a = start(&None, "slow", "");
    let made = a.req(
        "POST",
        "/api/endpoints",
        Some(&json!({
            "id": "big", "targetUrl": t.url(),
            "sampling": {"enabled": true, "percentage": 100, "maxSamples": 10},
            "limits": {"maxMessageSize": 65536}
        })),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    let readers = || {
        call(a.relay.admin, "GET", "/healthz?detailed=true", None, None).body["opsReaders"]
            .as_u64()
            .unwrap()
    };
    // A reader with a small receive buffer that never reads.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&a.relay.admin.into()).unwrap();
    let stream: std::net::TcpStream = sock.into();
    let url = format!("ws://{}/ops?token={}", a.relay.admin, a.token);
    let (_slow, _) = tungstenite::client::client(url.as_str(), stream).unwrap();
    // Counted once the server side has finished its upgrade, which may be
    // just after the client saw the 101.
    eventually("the /ops reader counted", || (readers() == 1).then_some(()));
    // Each 4 KiB message is sampled both ways: ~11 KB of /ops text each.
    let (mut c, _) = connect(&a.relay.url("big")).unwrap();
    let payload = vec![b'x'; 4096];
    let started = Instant::now();
    let mut sent = 0u64;
    while readers() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the slow reader is still connected after {sent} messages"
        );
        for _ in 0..20 {
            c.send(Message::Binary(payload.clone().into())).unwrap();
            c.read().unwrap();
            sent += 1;
        }
    }
    eprintln!(
        "slow /ops reader dropped after {sent} messages, {:?}",
        started.elapsed()
    );
    // The admin side and the relay go on.
    c.send(Message::Text("after".into())).unwrap();
    assert_eq!(c.read().unwrap(), Message::Text("after".into()));
    let rss = std::fs::read_to_string(format!("/proc/{}/status", a.relay.child.id())).unwrap();
    let kib: u64 = rss
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    assert!(kib < 256 * 1024, "RSS {kib} KiB");
}

/// The test config with `shards` shards and a store kept in the file `db`
/// (so that it outlives the process).
fn file_store_config(shards: usize, db: &std::path::Path) -> String {
    base_config(shards).replace(
        "[server]\n",
        &format!("[server]\ndatabase = \"sqlite://{}\"\n", db.display()),
    )
}

#[test]
fn a_restarted_node_closes_its_stale_sessions() {
    let t = target(Behaviour::Echo);
    let dir = TempDir::new();
    let db = dir.0.join("keep.db");
    let cfg = file_store_config(1, &db) + &endpoint("e", &t.url(), "");
    let env = [("WSRELAY_NODE_ID", "node-a")];
    let mut first = Relay::start_with(&cfg, &env);
    let token = login(&first, ADMIN_EMAIL, ADMIN_PASSWORD).unwrap();
    let (_ws, _) = connect(&first.url("e")).unwrap();
    let listed = eventually("the session stored", || {
        let r = call(first.admin, "GET", "/api/sessions", Some(&token), None);
        r.body["items"].as_array().unwrap().first().cloned()
    });
    assert_eq!(
        (listed["node"].as_str(), listed["state"].as_str()),
        (Some("node-a"), Some("ACTIVE"))
    );
    first.child.kill().unwrap(); // no drain: the row stays ACTIVE
    first.child.wait().unwrap();

    let second = Relay::start_with(&cfg, &env);
    let r = call(
        second.admin,
        "GET",
        "/api/sessions?state=ALL",
        Some(&token),
        None,
    );
    assert_eq!(r.body["total"], 1, "{}", r.text);
    assert_eq!(r.body["items"][0]["state"], "CLOSED");
    assert_eq!(r.body["items"][0]["closeReason"], "node restarted");
    assert_eq!(r.body["items"][0]["id"], listed["id"]);
}

#[test]
fn the_built_in_example_endpoint_echoes_and_closes_cleanly() {
    let relay = Relay::start(&base_config(1));
    let (mut ws, _) = connect(&relay.url("echo")).unwrap();
    ws.send(Message::Text("hello".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hello".into()));
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    assert_eq!(
        read_close(&mut ws),
        (1000, "bye".into()),
        "the echo target completes the handshake"
    );
}

#[test]
fn a_drained_process_stores_its_sessions_ends_before_exiting() {
    let t = target(Behaviour::Echo);
    let dir = TempDir::new();
    let db = dir.0.join("drain.db");
    let cfg = file_store_config(2, &db) + &endpoint("e", &t.url(), "");
    let mut relay = Relay::start(&cfg);
    let (mut ws, _) = connect(&relay.url("e")).unwrap();
    ws.send(Message::Text("x".into())).unwrap();
    ws.read().unwrap();
    relay.sigterm();
    assert_eq!(read_close(&mut ws), (1001, "going away".into()));
    let _ = ws.flush(); // tungstenite sends its close reply
    assert_eq!(relay.wait_exit(Duration::from_secs(15)).code(), Some(0));

    let store = wsrelay::store::Store::connect(&format!("sqlite://{}", db.display())).unwrap();
    let (rows, total) = store
        .list_sessions(
            &wsrelay::store::SessionFilter::default(),
            wsrelay::store::Page { page: 1, limit: 10 },
        )
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(rows[0].state, "CLOSED", "{rows:?}");
    assert_eq!(rows[0].close_code, Some(1001));
    assert_eq!(rows[0].msgs_in, 1);
}
