//! `wsrelay check-config` (SPEC 2, issue 14): exit 0 with the effective
//! configuration and no secret in it, or exit 2 with one line naming the key
//! — for the file, the environment, endpoints, TLS files and the database
//! URL, without binding or connecting.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::process::{Command, Stdio};

use support::*;

/// Runs `check-config` on `config` (written to a file) with `env`; exit
/// code, stdout, stderr.
fn check(config: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = TempDir::new();
    let p = dir.0.join("wsrelay.toml");
    std::fs::write(&p, config).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("check-config").arg("--config").arg(&p);
    for k in [
        "WSRELAY_LISTEN",
        "WSRELAY_ADMIN_LISTEN",
        "WSRELAY_SHARDS",
        "DATABASE_URL",
        "WSRELAY_JWT_SECRET",
        "WSRELAY_ADMIN_PASSWORD",
        "WSRELAY_LOG",
        "WSRELAY_LOG_FORMAT",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied()).current_dir(&dir.0);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A certificate and its key as PEM files in `dir`; a second key that does
/// not match.
fn cert_files(dir: &std::path::Path) -> (String, String, String) {
    let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    (
        write("cert.pem", a.cert.pem()),
        write("key.pem", a.key_pair.serialize_pem()),
        write("other-key.pem", b.key_pair.serialize_pem()),
    )
}

#[test]
fn a_valid_configuration_is_printed_with_secrets_redacted() {
    let dir = TempDir::new();
    let (cert, key, _) = cert_files(&dir.0);
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:8443"
tls = {{ cert_file = "{cert}", key_file = "{key}" }}
proxy_protocol = true
trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]

[[endpoints]]
id = "chat"
target_url = "wss://chat.example:443/ws"
auth = {{ jwt_secret = "endpoint-secret-endpoint-secret-0123" }}
"#
    );
    let (code, out, err) = check(
        &cfg,
        &[
            (
                "DATABASE_URL",
                "postgres://wsrelay:db-password-42@db.example/wsrelay",
            ),
            ("WSRELAY_JWT_SECRET", "admin-jwt-secret-admin-jwt-secret"),
            ("WSRELAY_ADMIN_PASSWORD", "first-admin-password"),
            ("WSRELAY_SHARDS", "1"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("wsrelay check-config: "), "{out}");
    assert!(
        out.contains(" ok (1 shard(s)") && out.contains("with TLS"),
        "{out}"
    );
    for shown in [
        "listen = \"127.0.0.1:8443\"",
        "proxy_protocol = true",
        "\"10.0.0.0/8\"",
        "[[endpoints]]",
        "id = \"chat\"",
        "postgres://wsrelay:***@db.example/wsrelay",
        "# WSRELAY_JWT_SECRET is set (<redacted>)",
        "# WSRELAY_ADMIN_PASSWORD is set (<redacted>)",
        "shards = 1",
    ] {
        assert!(out.contains(shown), "{shown} missing:\n{out}");
    }
    for secret in [
        "db-password-42",
        "endpoint-secret",
        "admin-jwt-secret",
        "first-admin-password",
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} shown:\n{out}{err}"
        );
    }
}

#[test]
fn every_problem_is_one_line_naming_its_key_and_exit_2() {
    let dir = TempDir::new();
    let (cert, key, other_key) = cert_files(&dir.0);
    let ep = "\n[[endpoints]]\nid = \"e\"\ntarget_url = \"ws://127.0.0.1:9001\"\n";
    /// A configuration, its environment, and the key its error must name.
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "[server]\nlisten = \"nowhere\"\n".into(),
            vec![],
            "server.listen",
        ),
        ("[server]\nlisten_on = \"x\"\n".into(), vec![], "listen_on"),
        (
            "[server]\n".into(),
            vec![("WSRELAY_SHARDS", "many")],
            "WSRELAY_SHARDS",
        ),
        (
            format!("[server]\ntls = {{ cert_file = \"{cert}\" }}\n"),
            vec![],
            "server.tls.key_file",
        ),
        (
            format!(
                "[server]\ntls = {{ cert_file = \"{}/absent.pem\", key_file = \"{key}\" }}\n",
                dir.0.display()
            ),
            vec![],
            "server.tls.cert_file",
        ),
        (
            format!("[server]\ntls = {{ cert_file = \"{cert}\", key_file = \"{other_key}\" }}\n"),
            vec![],
            "server.tls.key_file",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n".into(),
            vec![],
            "server.trusted_proxies[0]",
        ),
        (
            "[server]\n".into(),
            vec![("DATABASE_URL", "postgres://u:pw-secret@db:port/x")],
            "server.database",
        ),
        (
            "[server]\n\n[[endpoints]]\nid = \"e\"\ntarget_url = \"http://x\"\n".into(),
            vec![],
            "target_url",
        ),
        (
            format!(
                "[server]\nupstream_ca_file = \"{}/none.pem\"\n{ep}",
                dir.0.display()
            ),
            vec![],
            "server.upstream_ca_file",
        ),
        (
            "[server]\n".into(),
            vec![("WSRELAY_LOG_FORMAT", "xml")],
            "WSRELAY_LOG_FORMAT",
        ),
    ];
    for (cfg, env, key) in cases {
        let (code, out, err) = check(&cfg, &env);
        assert_eq!(code, 2, "{key}: {out}{err}");
        assert!(out.is_empty(), "{key}: printed {out}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{key}: {err}");
        assert!(
            lines[0].starts_with("wsrelay check-config: ") && lines[0].contains(key),
            "{key} not named: {err}"
        );
        assert!(!err.contains("pw-secret"), "{err}");
    }
}

#[test]
fn serve_refuses_what_check_config_refuses() {
    let dir = TempDir::new();
    let (cert, _, other_key) = cert_files(&dir.0);
    let cfg = base_config(1).replace(
        "[server]\n",
        &format!("[server]\ntls = {{ cert_file = \"{cert}\", key_file = \"{other_key}\" }}\n"),
    );
    let (code, err) = run_to_exit(&["serve"], Some(&cfg));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("server.tls.key_file"), "{err}");
}
