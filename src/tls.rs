//! The data port's TLS (`server.tls`): the rustls server configuration read
//! from PEM files — at start, by `check-config`, and again on SIGHUP (a bad
//! file keeps the old configuration).

use std::sync::Arc;

use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::ServerConfig;

use crate::config::TlsFiles;

/// A problem with one of the files, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TlsError {
    /// `server.tls.cert_file` or `server.tls.key_file`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

/// The server configuration for `files` (which must be [`TlsFiles::enabled`]):
/// the chain and key checked against each other, ALPN `http/1.1`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    const CERT: &str = "server.tls.cert_file";
    const KEY: &str = "server.tls.key_file";
    let pem = std::fs::read(&files.cert_file)
        .map_err(|e| err(CERT, format!("cannot read {}: {e}", files.cert_file)))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(CERT, format!("{}: bad PEM: {e}", files.cert_file)))?;
    if certs.is_empty() {
        return Err(err(
            CERT,
            format!("{}: no certificate in the file", files.cert_file),
        ));
    }
    let pem = std::fs::read(&files.key_file)
        .map_err(|e| err(KEY, format!("cannot read {}: {e}", files.key_file)))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| err(KEY, format!("{}: no private key: {e}", files.key_file)))?;
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(CERT, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(KEY, format!("does not match the certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumption by stateless tickets only (keys made per process, rotated
    // every 6 h), as nginx and HAProxy do by default: a returning client
    // skips the certificate and its signature. rustls's default server-side
    // session cache is a map behind a mutex shared by every shard; it is
    // turned off so no handshake takes a lock another core holds.
    cfg.ticketer = futures_rustls::rustls::crypto::ring::Ticketer::new()
        .map_err(|e| err(CERT, format!("session tickets: {e}")))?;
    cfg.session_storage = Arc::new(futures_rustls::rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path, cert: &str, key: &str) -> TlsFiles {
        std::fs::write(dir.join("c.pem"), cert).unwrap();
        std::fs::write(dir.join("k.pem"), key).unwrap();
        TlsFiles {
            cert_file: dir.join("c.pem").display().to_string(),
            key_file: dir.join("k.pem").display().to_string(),
        }
    }

    #[test]
    fn a_matching_pair_loads_and_every_bad_file_names_its_key() {
        let dir = std::env::temp_dir().join(format!("wsrelay-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (a.cert.pem(), a.key_pair.serialize_pem());
        let ok = server_config(&files(&dir, &cert, &key)).unwrap();
        assert_eq!(ok.alpn_protocols, vec![b"http/1.1".to_vec()]);

        let e = server_config(&files(&dir, "nothing", &key)).unwrap_err();
        assert_eq!(e.key, "server.tls.cert_file", "{e}");
        let e = server_config(&files(&dir, &cert, "nothing")).unwrap_err();
        assert_eq!(e.key, "server.tls.key_file", "{e}");
        let other_key = b.key_pair.serialize_pem();
        let e = server_config(&files(&dir, &cert, &other_key)).unwrap_err();
        assert!(e.message.contains("does not match"), "{e}");
        let missing = TlsFiles {
            cert_file: dir.join("absent.pem").display().to_string(),
            key_file: dir.join("k.pem").display().to_string(),
        };
        let e = server_config(&missing).unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
