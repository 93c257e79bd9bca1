//! `wsrelay check-config [--config FILE]` (SPEC 2): validates what `serve`
//! would load — the file, the environment, the endpoints, the TLS files, the
//! database URL's syntax — and prints the effective configuration with
//! secrets redacted. Exit 0, or 2 with one line naming the key (like
//! `nginx -t`). Nothing is bound and no database is contacted.

use std::path::Path;

use crate::config::Config;

/// Shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Environment variables that hold secrets: reported as set, never shown.
const SECRET_ENV: [&str; 2] = ["WSRELAY_JWT_SECRET", "WSRELAY_ADMIN_PASSWORD"];

/// Checks `path` (or the defaults) with the process environment; returns
/// the report for stdout, or the one-line error.
pub fn check(path: Option<&Path>) -> Result<String, String> {
    let source = path.map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let cfg = Config::load(path).map_err(|e| format!("{source}: {e}"))?;
    let checked =
        crate::admin::start::preflight::check(&cfg).map_err(|e| format!("{source}: {}", e.0))?;
    if let Ok(f) = std::env::var("WSRELAY_LOG") {
        tracing_subscriber::EnvFilter::try_new(&f)
            .map_err(|e| format!("{source}: WSRELAY_LOG: {f:?}: {e}"))?;
    }
    match std::env::var("WSRELAY_LOG_FORMAT").as_deref() {
        Ok("json") | Ok("pretty") | Ok("") | Err(_) => {}
        Ok(other) => {
            return Err(format!(
                "{source}: WSRELAY_LOG_FORMAT: {other:?} must be json or pretty"
            ))
        }
    }
    let mut out = format!(
        "wsrelay check-config: {source}: ok ({} shard(s) on CPUs {:?}, {} endpoint(s) in the file, data port {}{})\n",
        checked.cpus.len(),
        checked.cpus,
        cfg.endpoints.len(),
        cfg.server.listen,
        if checked.server_tls.is_some() { " with TLS" } else { "" },
    );
    out.push_str("# The effective configuration (file, then environment); secrets redacted.\n");
    if cfg.endpoints.is_empty() {
        out.push_str("# No endpoints in the file: the store's are served (on a new store, the example `echo`).\n");
    }
    for var in SECRET_ENV {
        if std::env::var(var).is_ok_and(|v| !v.is_empty()) {
            out.push_str(&format!("# {var} is set ({REDACTED})\n"));
        }
    }
    out.push_str(&effective_toml(&cfg).map_err(|e| format!("{source}: {e}"))?);
    Ok(out)
}

/// `cfg` as TOML with the database password and endpoint secrets redacted.
pub fn effective_toml(cfg: &Config) -> Result<String, String> {
    let mut shown = cfg.clone();
    shown.server.database = crate::store::redact_url(&shown.server.database);
    for e in &mut shown.endpoints {
        if let Some(auth) = &mut e.auth {
            if auth.jwt_secret.is_some() {
                auth.jwt_secret = Some(REDACTED.into());
            }
        }
    }
    let text =
        toml::to_string(&shown).map_err(|e| format!("cannot print the configuration: {e}"))?;
    // An empty list prints as `endpoints = []` above `[server]`: leave it out.
    Ok(text.replacen("endpoints = []\n\n", "", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_configuration_hides_secrets_and_reads_back() {
        let cfg = Config::from_toml(
            r#"
[server]
database = "postgres://wsrelay:hunter2@db.example/wsrelay"
[[endpoints]]
id = "a"
target_url = "ws://127.0.0.1:9001"
auth = { jwt_secret = "topsecret-topsecret-topsecret-32" }
"#,
        )
        .unwrap();
        let text = effective_toml(&cfg).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("topsecret"),
            "{text}"
        );
        assert!(text.contains(REDACTED) && text.contains("***"), "{text}");
        // What is printed is itself a valid configuration.
        let back = Config::from_toml(&text).unwrap();
        assert_eq!(back.endpoints[0].id, "a");
        assert_eq!(back.server.listen, cfg.server.listen);
    }
}
