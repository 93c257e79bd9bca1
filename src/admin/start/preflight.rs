//! What `serve` checks before it binds anything, shared with
//! `wsrelay check-config` (which stops there): CPUs, the TLS files, the
//! upstream CA file, the database URL's syntax and the configured
//! endpoints. Each failure is one line naming the key.

use std::sync::Arc;

use futures_rustls::rustls::ServerConfig;
use futures_rustls::TlsConnector;

use crate::admin::start::runtime::StartError;
use crate::config::Config;

/// What the checks produced, for `serve` to use.
pub struct Checked {
    /// The CPU of each shard.
    pub cpus: Vec<usize>,
    /// The client TLS configuration for `wss://` targets.
    pub upstream_tls: TlsConnector,
    /// The data port's TLS, when `server.tls` is set.
    pub server_tls: Option<Arc<ServerConfig>>,
}

fn fail(key: &str, message: impl std::fmt::Display) -> StartError {
    StartError(format!("config: {key}: {message}"))
}

/// Runs every check `serve` runs before binding (the configuration itself
/// is already loaded and validated).
pub fn check(cfg: &Config) -> Result<Checked, StartError> {
    let cpus = crate::admin::start::serve::shard_cpus(cfg)?;
    let extra = if cfg.server.upstream_ca_file.is_empty() {
        None
    } else {
        Some(std::fs::read(&cfg.server.upstream_ca_file).map_err(|e| {
            fail(
                "server.upstream_ca_file",
                format!("{}: {e}", cfg.server.upstream_ca_file),
            )
        })?)
    };
    let upstream_tls = crate::shard::upstream::tls_connector(extra.as_deref())
        .map_err(|m| fail("server.upstream_ca_file", m))?;
    let server_tls = if cfg.server.tls.enabled() {
        Some(crate::tls::server_config(&cfg.server.tls).map_err(|e| fail(e.key, e.message))?)
    } else {
        None
    };
    database_url(&cfg.server.database)?;
    crate::registry::Registry::default()
        .snapshot(&cfg.endpoints)
        .map_err(|m| StartError(format!("config: {m}")))?;
    Ok(Checked {
        cpus,
        upstream_tls,
        server_tls,
    })
}

/// The store URL's syntax (no connection is made).
fn database_url(url: &str) -> Result<(), StartError> {
    const KEY: &str = "server.database (or DATABASE_URL)";
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.trim().is_empty() {
            return Err(fail(KEY, "sqlite:// needs a file path"));
        }
        return Ok(());
    }
    url.parse::<postgres::Config>()
        .map(|_| ())
        .map_err(|e| fail(KEY, format!("{}: {e}", crate::store::redact_url(url))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_checked_without_connecting() {
        assert!(database_url("sqlite://wsrelay.db").is_ok());
        assert!(database_url("postgres://u:p@db.example:5432/wsrelay").is_ok());
        let e = database_url("sqlite://").unwrap_err().0;
        assert!(e.contains("needs a file path"), "{e}");
        let e = database_url("postgres://u:secret@db:notaport/x")
            .unwrap_err()
            .0;
        assert!(
            e.contains("server.database") && !e.contains("secret"),
            "{e}"
        );
    }
}
