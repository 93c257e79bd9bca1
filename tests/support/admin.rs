//! Admin API helpers shared by the admin test files: the backends to run on,
//! HTTP calls, login, `/ops` reads.
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

/// The backends to run each test on: SQLite, and PostgreSQL if configured.
pub fn backends() -> Vec<Option<String>> {
    let mut v = vec![None];
    match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(u) => v.push(Some(u)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but DATABASE_URL is not set: the PostgreSQL half cannot be skipped")
        }
        None => eprintln!("skipped: PostgreSQL half (DATABASE_URL not set)"),
    }
    v
}

/// A URL for a fresh schema of its own in the PostgreSQL database.
pub fn pg_schema_url(url: &str, test: &str) -> String {
    let schema = format!("api_{}_{}", std::process::id(), test);
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("DATABASE_URL reachable");
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

pub struct Admin {
    pub relay: Relay,
    pub token: String,
    /// The store it uses (to change it behind the API's back).
    pub store_url: String,
}

pub fn start(backend: &Option<String>, test: &str, endpoints: &str) -> Admin {
    start_config(backend, test, &(base_config(2) + endpoints))
}

/// [`start`] with a whole configuration file.
pub fn start_config(backend: &Option<String>, test: &str, cfg: &str) -> Admin {
    let db = backend.as_ref().map(|u| pg_schema_url(u, test));
    let mut env = vec![];
    if let Some(url) = &db {
        env.push(("DATABASE_URL", url.as_str()));
    }
    let relay = Relay::start_with(cfg, &env);
    let token = login(&relay, ADMIN_EMAIL, ADMIN_PASSWORD).expect("admin logs in");
    let store_url = match db {
        Some(url) => url,
        None => format!(
            "sqlite://{}",
            relay.cfg.parent().unwrap().join("wsrelay.db").display()
        ),
    };
    Admin {
        relay,
        token,
        store_url,
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

pub fn call(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut req = ureq::request(method, &format!("http://{admin}{path}")).timeout(IO_TIMEOUT);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => req.send_string(&b.to_string()),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let retry_after = resp.header("Retry-After").map(str::to_string);
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| (n.clone(), resp.header(&n).unwrap_or("").to_string()))
        .collect();
    let text = resp.into_string().unwrap_or_default();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        retry_after,
        headers,
        text,
    }
}

impl Admin {
    pub fn req(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        call(self.relay.admin, method, path, Some(&self.token), body)
    }
    pub fn as_user(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
        call(self.relay.admin, method, path, Some(token), body)
    }
}

pub fn login(r: &Relay, email: &str, password: &str) -> Result<String, Reply> {
    let rep = call(
        r.admin,
        "POST",
        "/api/login",
        None,
        Some(&json!({"email": email, "password": password})),
    );
    if rep.status == 200 {
        Ok(rep.body["token"].as_str().unwrap().to_string())
    } else {
        Err(rep)
    }
}

/// The next `/ops` message of type `kind` (others are skipped).
pub fn next(ops: &mut Ws, kind: &str) -> Value {
    loop {
        let m: Value = serde_json::from_str(ops.read().unwrap().to_text().unwrap()).unwrap();
        if m["type"] == kind {
            return m;
        }
    }
}

/// Polls `f` (an HTTP read of state that changes asynchronously) until it
/// returns `Some`, for at most 5 s.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25)); // polling, not synchronising
    }
}

pub fn audit_actions(a: &Admin, query: &str) -> Vec<String> {
    let r = a.req("GET", &format!("/api/audit?limit=1000{query}"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap().to_string())
        .collect()
}
