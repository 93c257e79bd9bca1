//! Opening the target leg: TCP connect (with timeout), TLS for `wss://`
//! (rustls over the glommio stream), and the client side of the upgrade.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::TlsConnector;
use glommio::net::TcpStream;

use crate::config::TargetUrl;

pub use crate::shard::leg::UpStream;

/// Why the target leg could not be opened; decides 502 vs 504.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No TCP connection or no upgrade answer in time: 504.
    #[error("target did not answer within {0:?}")]
    Timeout(Duration),
    /// DNS, refused, reset: 502.
    #[error("connect failed: {0}")]
    Connect(io::Error),
    /// TLS failed: 502.
    #[error("tls failed: {0}")]
    Tls(io::Error),
    /// The target answered, but not with a valid 101: 502.
    #[error("upgrade refused: {0}")]
    Handshake(String),
}

impl UpstreamError {
    /// The HTTP status to answer the client with.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Timeout(_) => 504,
            _ => 502,
        }
    }
}

/// What goes into the upstream upgrade request.
pub struct UpstreamRequest<'a> {
    /// Query after the target's own (without `?`).
    pub client_query: Option<&'a str>,
    /// Subprotocol offer.
    pub protocols: Option<&'a str>,
    /// `X-Forwarded-For` (see `shard::forwarded`).
    pub forwarded_for: &'a str,
    /// `X-Forwarded-Proto`: `http` or `https`.
    pub forwarded_proto: &'a str,
    /// Session id (`X-Request-Id`).
    pub request_id: &'a str,
    /// Extra headers passed through (`Origin`, `Authorization` when not ours, …).
    pub headers: Vec<(&'a str, &'a [u8])>,
}

/// An open, upgraded target leg.
pub struct Upgraded {
    /// The stream.
    pub stream: UpStream,
    /// Subprotocol the target chose.
    pub protocol: Option<String>,
    /// Bytes the target sent after its 101 (frames already), to relay first.
    pub leftover: Vec<u8>,
}

/// Builds the upgrade request bytes; `key` is the `Sec-WebSocket-Key`.
pub fn build_request(t: &TargetUrl, r: &UpstreamRequest<'_>, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let query = match (t.query.as_deref(), r.client_query) {
        (Some(a), Some(b)) => Some(format!("{a}&{b}")),
        (Some(a), None) => Some(a.to_string()),
        (None, Some(b)) => Some(b.to_string()),
        (None, None) => None,
    };
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(t.path.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    let (xff, xfp) = (r.forwarded_for, r.forwarded_proto);
    out.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: {xff}\r\nX-Forwarded-Proto: {xfp}\r\nX-Request-Id: {}\r\n",
            t.host_header(),
            r.request_id
        )
        .as_bytes(),
    );
    if let Some(p) = r.protocols {
        out.extend_from_slice(format!("Sec-WebSocket-Protocol: {p}\r\n").as_bytes());
    }
    for (name, value) in &r.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Checks the target's answer; returns (chosen subprotocol, bytes used).
pub fn parse_response(
    buf: &[u8],
    key: &str,
    offered: Option<&str>,
) -> Result<Option<(Option<String>, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response: {e}")),
    };
    if resp.code != Some(101) {
        return Err(format!("status {}", resp.code.unwrap_or(0)));
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if get("sec-websocket-accept") != Some(want.as_str()) {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    if get("sec-websocket-extensions").is_some_and(|e| !e.is_empty()) {
        return Err("target chose an extension that was not offered".into());
    }
    let protocol = get("sec-websocket-protocol").map(str::to_string);
    if let Some(p) = &protocol {
        let ok = offered.is_some_and(|o| o.split(',').any(|x| x.trim() == p));
        if !ok {
            return Err(format!(
                "target chose subprotocol {p:?} that was not offered"
            ));
        }
    }
    Ok(Some((protocol, n)))
}

async fn resolve(t: &TargetUrl) -> Result<Vec<SocketAddr>, UpstreamError> {
    if let Ok(ip) = t.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, t.port)]);
    }
    // getaddrinfo blocks: run it off the shard.
    let (host, port) = (t.host.clone(), t.port);
    let addrs: Vec<SocketAddr> = glommio::executor()
        .spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            (host.as_str(), port).to_socket_addrs().map(|a| a.collect())
        })
        .await
        .map_err(UpstreamError::Connect)?;
    if addrs.is_empty() {
        return Err(UpstreamError::Connect(io::Error::new(
            io::ErrorKind::NotFound,
            "no address",
        )));
    }
    Ok(addrs)
}

/// Connects to the first address that accepts, in resolver order.
async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let mut last = None;
    for &addr in addrs {
        match TcpStream::connect_timeout(addr, timeout).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                let e: io::Error = e.into();
                if e.kind() == io::ErrorKind::TimedOut {
                    return Err(UpstreamError::Timeout(timeout));
                }
                last = Some(e);
            }
        }
    }
    Err(UpstreamError::Connect(last.expect("at least one address")))
}

/// Opens and upgrades the target leg within `timeout`.
pub async fn open(
    t: &TargetUrl,
    req: &UpstreamRequest<'_>,
    timeout: Duration,
    tls: &TlsConnector,
) -> Result<Upgraded, UpstreamError> {
    let work = async {
        let addrs = resolve(t).await?;
        let tcp = connect_any(&addrs, timeout).await?;
        let _ = tcp.set_nodelay(true);
        let mut stream = if t.tls {
            let name = ServerName::try_from(t.host.clone())
                .map_err(|e| UpstreamError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
            UpStream::Tls(Box::new(
                tls.connect(name, tcp).await.map_err(UpstreamError::Tls)?,
            ))
        } else {
            UpStream::Plain(tcp)
        };
        let key = new_key();
        stream
            .write_all(&build_request(t, req, &key))
            .await
            .map_err(UpstreamError::Connect)?;
        stream.flush().await.map_err(UpstreamError::Connect)?;
        let mut buf = vec![0u8; 1024];
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                if buf.len() >= 64 * 1024 {
                    return Err(UpstreamError::Handshake(
                        "response headers too large".into(),
                    ));
                }
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream
                .read(&mut buf[filled..])
                .await
                .map_err(UpstreamError::Connect)?;
            if n == 0 {
                return Err(UpstreamError::Handshake("closed before answering".into()));
            }
            filled += n;
            if let Some((protocol, used)) = parse_response(&buf[..filled], &key, req.protocols)
                .map_err(UpstreamError::Handshake)?
            {
                buf.copy_within(used..filled, 0);
                buf.truncate(filled - used);
                return Ok(Upgraded {
                    stream,
                    protocol,
                    leftover: buf,
                });
            }
        }
    };
    futures_lite::future::or(work, async {
        glommio::timer::Timer::new(timeout).await;
        Err(UpstreamError::Timeout(timeout))
    })
    .await
}

fn new_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// The TLS client configuration: webpki roots plus `extra_ca_pem`, if any.
pub fn tls_connector(extra_ca_pem: Option<&[u8]>) -> Result<TlsConnector, String> {
    use futures_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut n = 0;
        use futures_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad certificate: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err("no certificate in the file".into());
        }
    }
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_ca_files_are_read_as_pem() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pem = cert.cert.pem();
        assert!(tls_connector(Some(pem.as_bytes())).is_ok());
        let two = format!("{pem}\n{pem}");
        assert!(tls_connector(Some(two.as_bytes())).is_ok());
        let e = tls_connector(Some(b"not pem at all")).err().unwrap();
        assert!(e.contains("no certificate"), "{e}");
        let bad = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = tls_connector(Some(bad.as_bytes())).err().unwrap();
        assert!(e.contains("bad PEM"), "{e}");
    }

    fn target() -> TargetUrl {
        TargetUrl::parse("ws://127.0.0.1:9001/sock?v=2").unwrap()
    }

    #[test]
    fn request_carries_host_query_and_forwarding_headers() {
        let r = UpstreamRequest {
            client_query: Some("a=1"),
            protocols: Some("chat, v2"),
            forwarded_for: "1.2.3.4, 10.0.0.9",
            forwarded_proto: "https",
            request_id: "rid",
            headers: vec![("Origin", b"https://o")],
        };
        let s = String::from_utf8(build_request(&target(), &r, "KEY")).unwrap();
        assert!(
            s.starts_with("GET /sock?v=2&a=1 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"),
            "{s}"
        );
        for h in [
            "X-Forwarded-For: 1.2.3.4, 10.0.0.9\r\n",
            "X-Forwarded-Proto: https\r\n",
            "X-Request-Id: rid\r\n",
            "Sec-WebSocket-Protocol: chat, v2\r\n",
            "Origin: https://o\r\n",
        ] {
            assert!(s.contains(h), "{h} in {s}");
        }
        assert!(!s.contains("Extensions"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn response_checks() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v2\r\n\r\n\x01\x00";
        let (p, n) = parse_response(ok.as_bytes(), key, Some("chat, v2"))
            .unwrap()
            .unwrap();
        assert_eq!(p.as_deref(), Some("v2"));
        assert_eq!(n, ok.len() - 2, "the frame after the headers is left over");
        assert!(
            parse_response(ok.as_bytes(), key, Some("chat")).is_err(),
            "unoffered subprotocol"
        );
        assert!(parse_response(&ok.as_bytes()[..20], key, None)
            .unwrap()
            .is_none());
        let bad = ok.replace("s3pP", "xxxx");
        assert!(parse_response(bad.as_bytes(), key, Some("v2")).is_err());
        let e = parse_response(b"HTTP/1.1 403 Forbidden\r\n\r\n", key, None).unwrap_err();
        assert!(e.contains("403"));
    }
}
