//! The store suite: the same tests against SQLite (always) and PostgreSQL
//! (when `DATABASE_URL` is set; with `CI=true` a missing `DATABASE_URL` fails).

use wsrelay::config::EndpointConfig;
use wsrelay::store::{
    AuditEntry, AuditFilter, Backend, Page, Role, SampleRow, SessionFilter, SessionRow, Store,
    StoreError, User,
};

/// A fresh, migrated store per test: a new SQLite file, or a new schema in
/// the PostgreSQL database.
fn stores(test: &str) -> Vec<Store> {
    let mut out = vec![sqlite_store(test).0];
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => out.push(postgres_store(&url, test)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but DATABASE_URL is not set: the PostgreSQL store suite must run in CI")
        }
        _ => eprintln!("skipped: PostgreSQL store tests ({test}): DATABASE_URL is not set"),
    }
    out
}

/// A fresh, migrated SQLite store and its file.
fn sqlite_store(test: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wsrelay-store-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.db");
    let sqlite = Store::connect(&format!("sqlite://{}", path.display())).unwrap();
    assert_eq!(sqlite.migrate().unwrap(), 5);
    (sqlite, path)
}

fn postgres_store(url: &str, test: &str) -> Store {
    let schema = format!("t_{}_{}", std::process::id(), test.replace('-', "_"));
    let mut admin =
        postgres::Client::connect(url, postgres::NoTls).expect("DATABASE_URL reachable");
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
    let mut config: postgres::Config = url.parse().unwrap();
    config.options(&format!("-c search_path={schema}"));
    let db = wsrelay::store::postgres::PostgresDb::with_config(config).unwrap();
    let store = Store::from_db(std::sync::Arc::new(db));
    assert_eq!(store.backend(), Backend::Postgres);
    assert_eq!(store.migrate().unwrap(), 5);
    store
}

fn endpoint(id: &str) -> EndpointConfig {
    let mut e: EndpointConfig = toml::from_str(&format!(
        "id = \"{id}\"\nname = \"Endpoint {id}\"\ntarget_url = \"ws://127.0.0.1:9001/x\"\nallowed_origins = [\"https://a.example\"]\nlimits = {{ max_connections = 7, max_message_size = 2048, timeout_ms = 5000, max_messages_per_second = 3 }}\nsampling = {{ enabled = true, percentage = 25, max_samples = 10 }}\nauth = {{ jwt_secret = \"s3cret\", audience = \"aud\" }}\n"
    ))
    .unwrap();
    e.enabled = true;
    e
}

#[test]
fn migrations_apply_once() {
    for s in stores("migrate") {
        assert_eq!(s.migrate().unwrap(), 0, "{:?}", s.backend());
        assert!(s.ping().is_ok());
    }
}

#[test]
fn endpoints_round_trip_and_conflict() {
    for s in stores("endpoints") {
        let a = endpoint("alpha");
        let rec = s.insert_endpoint(&a).unwrap();
        assert_eq!(rec.endpoint, a);
        assert!(matches!(
            s.insert_endpoint(&a),
            Err(StoreError::Conflict(_))
        ));
        s.insert_endpoint(&endpoint("beta")).unwrap();

        let got = s.get_endpoint("alpha").unwrap().unwrap();
        assert_eq!(got.endpoint, a, "{:?}", s.backend());
        assert_eq!(got.created_at, rec.created_at);
        let ids: Vec<_> = s
            .list_endpoints()
            .unwrap()
            .into_iter()
            .map(|r| r.endpoint.id)
            .collect();
        assert_eq!(ids, ["alpha", "beta"]);

        let mut changed = a.clone();
        changed.enabled = false;
        changed.name = "Renamed".into();
        let upd = s.update_endpoint(&changed).unwrap().unwrap();
        assert_eq!(upd.created_at, rec.created_at);
        assert!(upd.updated_at >= rec.updated_at);
        assert_eq!(s.get_endpoint("alpha").unwrap().unwrap().endpoint, changed);
        assert!(s.update_endpoint(&endpoint("nope")).unwrap().is_none());

        assert!(s.delete_endpoint("alpha").unwrap());
        assert!(!s.delete_endpoint("alpha").unwrap());
        assert!(s.get_endpoint("alpha").unwrap().is_none());
    }
}

#[test]
fn seeding_inserts_only_absent_endpoints() {
    for s in stores("seed") {
        let mut kept = endpoint("kept");
        s.insert_endpoint(&kept).unwrap();
        kept.name = "from the file".into();
        let seeded = s.seed_endpoints(&[kept.clone(), endpoint("new")]).unwrap();
        assert_eq!(seeded, ["new"]);
        // The stored one wins over the file.
        assert_eq!(
            s.get_endpoint("kept").unwrap().unwrap().endpoint.name,
            "Endpoint kept"
        );
    }
}

#[test]
fn users_and_settings() {
    for s in stores("users") {
        assert_eq!(s.count_users().unwrap(), 0);
        let u = User {
            id: "u1".into(),
            email: "ops@example.com".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$x$y".into(),
            role: Role::Viewer,
            created_at: 5,
        };
        s.insert_user(&u).unwrap();
        let dup = User {
            id: "u2".into(),
            ..u.clone()
        };
        assert!(matches!(s.insert_user(&dup), Err(StoreError::Conflict(_))));
        assert_eq!(s.user_by_email("ops@example.com").unwrap().unwrap(), u);
        assert!(s.user_by_email("other@example.com").unwrap().is_none());
        assert_eq!(s.list_users().unwrap(), std::slice::from_ref(&u));
        assert!(s.delete_user("u1").unwrap());
        assert_eq!(s.count_users().unwrap(), 0);

        assert_eq!(s.setting("jwt_secret").unwrap(), None);
        assert_eq!(s.setting_or_insert("jwt_secret", "first").unwrap(), "first");
        // A second node generating its own secret gets the stored one.
        assert_eq!(
            s.setting_or_insert("jwt_secret", "second").unwrap(),
            "first"
        );
    }
}

fn first_100(s: &Store, f: &AuditFilter) -> (Vec<wsrelay::store::AuditRecord>, i64) {
    s.list_audit(
        f,
        Page {
            page: 1,
            limit: 100,
        },
    )
    .unwrap()
}

#[test]
fn audit_is_filtered_paged_and_append_only() {
    for s in stores("audit") {
        for i in 0..25 {
            let action = if i % 5 == 0 {
                "session.kill"
            } else {
                "endpoint.update"
            };
            s.append_audit(&AuditEntry {
                at: 1_000 + i,
                actor: "admin@example.com".into(),
                action: action.into(),
                entity_type: if i % 5 == 0 { "session" } else { "endpoint" }.into(),
                entity_id: Some(format!("e{i}")),
                before: Some("{\"a\":1}".into()),
                after: None,
                client_addr: Some("127.0.0.1".into()),
            })
            .unwrap();
        }
        let all = AuditFilter::default();
        let (page1, total) = s.list_audit(&all, Page { page: 1, limit: 10 }).unwrap();
        assert_eq!(total, 25);
        assert_eq!(page1.len(), 10);
        assert_eq!(page1[0].entry.at, 1_024, "newest first");
        assert_eq!(page1[0].entry.before.as_deref(), Some("{\"a\":1}"));
        assert_eq!(page1[0].entry.after, None);
        let (page3, _) = s.list_audit(&all, Page { page: 3, limit: 10 }).unwrap();
        assert_eq!(page3.len(), 5);
        assert_eq!(page3[4].entry.at, 1_000);

        let kills = AuditFilter {
            action: Some("session.kill".into()),
            ..Default::default()
        };
        let (rows, total) = first_100(&s, &kills);
        assert_eq!(total, 5);
        assert!(rows.iter().all(|r| r.entry.action == "session.kill"));
        let window = AuditFilter {
            since: Some(1_010),
            until: Some(1_015),
            entity_type: Some("endpoint".into()),
            ..Default::default()
        };
        let (rows, total) = first_100(&s, &window);
        assert_eq!(
            total, 4,
            "1010 and 1015 are session kills; 1015 is excluded anyway"
        );
        assert!(rows.iter().all(|r| (1_010..1_015).contains(&r.entry.at)));
    }
}

#[test]
fn the_database_refuses_to_change_the_audit_log() {
    let entry = AuditEntry {
        at: 1,
        actor: "a".into(),
        action: "x".into(),
        entity_type: "y".into(),
        ..Default::default()
    };
    let (s, path) = sqlite_store("audit-ro");
    s.append_audit(&entry).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let err = c
        .execute("DELETE FROM audit_log", [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only"), "{err}");
    let err = c
        .execute("UPDATE audit_log SET actor = 'b'", [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only"), "{err}");
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let pg = postgres_store(&url, "audit_ro");
        pg.append_audit(&entry).unwrap();
        let schema = format!("t_{}_audit_ro", std::process::id());
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let err = c
            .batch_execute(&format!("DELETE FROM {schema}.audit_log"))
            .unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{err:?}");
    }
}

#[test]
fn stale_sessions_of_this_node_are_closed() {
    for s in stores("stale") {
        s.register_node("node-a", "host-a", "1.0.0").unwrap();
        // Re-registering after a restart is not a conflict.
        s.register_node("node-a", "host-a", "1.0.1").unwrap();
        s.insert_session("s1", "node-a", "echo", "127.0.0.1:1", 10)
            .unwrap();
        s.insert_session("s2", "node-a", "echo", "127.0.0.1:2", 11)
            .unwrap();
        s.insert_session("s3", "node-b", "echo", "127.0.0.1:3", 12)
            .unwrap();
        assert_eq!(s.close_stale_sessions("node-a").unwrap(), 2);
        assert_eq!(s.session_ids("node-a", "CLOSED").unwrap(), ["s1", "s2"]);
        assert!(s.session_ids("node-a", "ACTIVE").unwrap().is_empty());
        // Another node's sessions are not this node's to close.
        assert_eq!(s.session_ids("node-b", "ACTIVE").unwrap(), ["s3"]);
        assert_eq!(s.close_stale_sessions("node-a").unwrap(), 0);
    }
}

/// Node `id` as the store lists it.
fn node(s: &Store, id: &str) -> wsrelay::store::NodeRow {
    s.list_nodes()
        .unwrap()
        .into_iter()
        .find(|n| n.id == id)
        .unwrap()
}

/// The node directory: heartbeats, listing, and the sweep of silent
/// nodes, which marks each once and closes its sessions once.
#[test]
fn silent_nodes_are_swept_once() {
    for s in stores("sweep") {
        s.register_node("a", "host", "1").unwrap();
        s.register_node("b", "host", "1").unwrap();
        s.heartbeat_node("b", "draining", 3).unwrap();
        let b = node(&s, "b");
        assert_eq!(
            (b.state.as_str(), b.sessions, b.version.as_str()),
            ("draining", 3, "1")
        );
        s.insert_session("sb", "b", "echo", "127.0.0.1:1", 10)
            .unwrap();
        s.insert_session("sa", "a", "echo", "127.0.0.1:2", 10)
            .unwrap();
        // Nobody is silent before the cutoff.
        assert_eq!(s.sweep_lost_nodes("a", 0).unwrap(), (vec![], 0));
        // b is; a never sweeps itself.
        let future = wsrelay::store::now_ms() + 1000;
        assert_eq!(
            s.sweep_lost_nodes("a", future).unwrap(),
            (vec!["b".to_string()], 1)
        );
        let row = s.get_session("sb").unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.close_reason.as_deref()),
            ("CLOSED", Some("node lost"))
        );
        assert_eq!(s.get_session("sa").unwrap().unwrap().state, "ACTIVE");
        // A second live node finds nothing left to do.
        assert_eq!(
            s.sweep_lost_nodes("c", future).unwrap(),
            (vec!["a".to_string()], 1),
            "{:?}",
            s.backend()
        );
        assert_eq!(s.sweep_lost_nodes("c", future).unwrap(), (vec![], 0));
        // Registering again brings a node back up.
        s.register_node("b", "host", "2").unwrap();
        let b = node(&s, "b");
        assert_eq!((b.state.as_str(), b.version.as_str()), ("up", "2"));
        s.node_down("b").unwrap();
        let b = node(&s, "b");
        assert_eq!(b.state, "down");
    }
}

#[test]
fn bad_and_unreachable_databases_are_clear_errors() {
    let e = Store::connect("mysql://x").unwrap_err();
    assert!(matches!(e, StoreError::BadUrl(_)), "{e}");
    // Nothing listens on port 1: the error says so and hides the password.
    let e = Store::connect("postgres://wsrelay:hunter2@127.0.0.1:1/wsrelay").unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = Store::connect("sqlite:///nonexistent-dir/sub/wsrelay.db")
        .and_then(|s| s.migrate().map(|_| ()));
    assert!(e.is_err());
}

fn session_row(id: &str, endpoint: &str, started_at: i64) -> SessionRow {
    SessionRow::started(
        id.into(),
        "n1",
        endpoint,
        1,
        "127.0.0.1:9".into(),
        started_at,
    )
}

#[test]
fn batches_upsert_sessions_and_insert_samples() {
    for s in stores("batch") {
        // More rows than one statement holds, to cross a chunk boundary.
        let n = wsrelay::store::ROWS_PER_STATEMENT + 3;
        let rows: Vec<SessionRow> = (0..n)
            .map(|i| {
                session_row(
                    &format!("s{i:04}"),
                    if i % 2 == 0 { "even" } else { "odd" },
                    i as i64,
                )
            })
            .collect();
        let sample = SampleRow {
            session_id: "s0000".into(),
            endpoint_id: "even".into(),
            direction: wsrelay::bridge::Direction::In,
            opcode: 2,
            size: 70000,
            payload: vec![0, 159, 146, 150],
            captured_at: 5,
        };
        s.write_batch(&rows, std::slice::from_ref(&sample), &[])
            .unwrap();
        let all = SessionFilter::default();
        assert_eq!(
            s.list_sessions(&all, Page { page: 1, limit: 10 })
                .unwrap()
                .1,
            n as i64
        );

        // Writing a session again (as a retry or a later state) updates its row.
        let mut closed = rows[0].clone();
        closed.state = "CLOSED".into();
        closed.ended_at = Some(99);
        closed.close_code = Some(1008);
        closed.close_reason = Some("terminated by operator".into());
        closed.closed_by = Some("wsrelay".into());
        closed.msgs_in = 5;
        closed.bytes_out = 1 << 40;
        s.write_batch(&[closed.clone()], &[], &[]).unwrap();
        assert_eq!(
            s.list_sessions(&all, Page { page: 1, limit: 10 })
                .unwrap()
                .1,
            n as i64,
            "{:?}",
            s.backend()
        );
        assert_eq!(s.get_session("s0000").unwrap().unwrap(), closed);
        // A late ACTIVE row of the same session (the old process of a binary
        // upgrade writing after its successor closed it) reopens nothing.
        s.write_batch(&[rows[0].clone()], &[], &[]).unwrap();
        assert_eq!(
            s.get_session("s0000").unwrap().unwrap(),
            closed,
            "{:?}",
            s.backend()
        );

        let even_active = SessionFilter {
            endpoint_id: Some("even".into()),
            state: Some("ACTIVE".into()),
        };
        let (page, total) = s
            .list_sessions(&even_active, Page { page: 1, limit: 3 })
            .unwrap();
        assert_eq!(total, (n as i64 + 1) / 2 - 1);
        assert_eq!(page.len(), 3);
        assert!(page[0].started_at > page[1].started_at, "newest first");

        assert_eq!(
            s.list_samples("even", 10).unwrap(),
            std::slice::from_ref(&sample)
        );
        assert!(s.list_samples("odd", 10).unwrap().is_empty());

        // An endpoint keeps its newest maxSamples samples.
        let more: Vec<SampleRow> = (0..5)
            .map(|i| SampleRow {
                captured_at: 10 + i,
                payload: vec![i as u8],
                ..sample.clone()
            })
            .collect();
        s.write_batch(&[], &more, &[("even".into(), 3)]).unwrap();
        let kept: Vec<i64> = s
            .list_samples("even", 10)
            .unwrap()
            .iter()
            .map(|r| r.captured_at)
            .collect();
        assert_eq!(kept, [14, 13, 12], "{:?}", s.backend());
    }
}

#[test]
fn a_failed_batch_writes_nothing() {
    for s in stores("atomic") {
        let good = session_row("ok", "e", 1);
        let mut bad = session_row("bad", "e", 2);
        bad.state = "NEITHER".into(); // violates the CHECK constraint
        assert!(s.write_batch(&[good.clone(), bad], &[], &[]).is_err());
        assert!(s.get_session("ok").unwrap().is_none(), "{:?}", s.backend());
        s.write_batch(&[good], &[], &[]).unwrap();
        assert!(s.get_session("ok").unwrap().is_some());
    }
}

#[test]
fn audit_export_chunks_walk_the_range_oldest_first() {
    for s in stores("chunks") {
        for i in 0..7 {
            s.append_audit(&AuditEntry {
                at: 1000 + i,
                actor: "a".into(),
                action: "x".into(),
                entity_type: "endpoint".into(),
                entity_id: None,
                before: None,
                after: None,
                client_addr: None,
            })
            .unwrap();
        }
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let chunk = s.audit_chunk(1001, 1006, after, 2).unwrap();
            if chunk.is_empty() {
                break;
            }
            after = chunk.last().unwrap().id;
            seen.extend(chunk.into_iter().map(|r| r.entry.at));
        }
        assert_eq!(seen, [1001, 1002, 1003, 1004, 1005]);
    }
}
