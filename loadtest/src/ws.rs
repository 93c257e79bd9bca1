//! Minimal WebSocket plumbing for the load generator: URL parsing and both
//! sides of the upgrade over glommio streams (`wss://` through rustls, the
//! same stream type wsrelay uses for its legs). Frames use wsrelay's own
//! codec.

use std::net::{SocketAddr, ToSocketAddrs};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::TlsConnector;
use glommio::net::TcpStream;
pub use wsrelay::shard::leg::UpStream as Stream;

/// A `ws://` or `wss://host:port/path` target.
#[derive(Clone)]
pub struct WsUrl {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// `wss://`: the TLS client and the name the certificate must carry.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl WsUrl {
    /// Parses and resolves `ws://…` or `wss://…`; a `wss://` server's
    /// certificate must chain to the webpki roots or to `ca_pem`.
    pub fn parse(s: &str, ca_pem: Option<&[u8]>) -> Result<WsUrl, String> {
        let (rest, tls) = match (s.strip_prefix("ws://"), s.strip_prefix("wss://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => return Err(format!("{s}: only ws:// and wss:// URLs are supported")),
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_string()
        } else {
            format!("{hostport}:{}", if tls { 443 } else { 80 })
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{s}: {e}"))?
            .next()
            .ok_or_else(|| format!("{s}: no address"))?;
        let tls = if tls {
            let name = hostport
                .rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
                .map_or(hostport, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = ServerName::try_from(name.to_string())
                .map_err(|e| format!("{s}: server name: {e}"))?;
            let connector = wsrelay::shard::upstream::tls_connector(ca_pem)
                .map_err(|e| format!("--ca: {e}"))?;
            Some((connector, name))
        } else {
            None
        };
        Ok(WsUrl {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
            tls,
        })
    }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Reads an HTTP head (up to the blank line); extra bytes are returned too.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<(String, Vec<u8>), String> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    loop {
        if n == buf.len() {
            return Err("HTTP head too large".into());
        }
        let k = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
        if k == 0 {
            return Err("closed during the handshake".into());
        }
        n += k;
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return Ok((head, buf[end + 4..n].to_vec()));
        }
    }
}

/// Connects (and for `wss://` completes TLS) and upgrades; returns the
/// stream and any bytes after the 101.
pub async fn connect(url: &WsUrl) -> Result<(Stream, Vec<u8>), String> {
    let tcp = TcpStream::connect(url.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", url.addr))?;
    let _ = tcp.set_nodelay(true);
    let mut s = match &url.tls {
        None => Stream::Plain(tcp),
        Some((connector, name)) => Stream::Tls(Box::new(
            connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("tls {}: {e}", url.addr))?,
        )),
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n",
        url.path, url.host
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let (head, rest) = read_head(&mut s).await?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok((s, rest))
}

/// Accepts the server side of an upgrade (any path).
pub async fn accept(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let (head, rest) = read_head(s).await?;
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .ok_or("no Sec-WebSocket-Key")?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    s.write_all(resp.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(rest)
}
