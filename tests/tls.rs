//! TLS on the data port (`server.tls`, issue 14): clients connect with
//! `wss://` — a rustls client here and Python's `websockets` with an `ssl`
//! context (a real client, not ours) — against a certificate the test
//! makes; SIGHUP swaps the certificate without dropping a session, and a bad
//! file keeps the old one; a client that does not speak TLS is refused and
//! counted; the target hears `X-Forwarded-Proto: https`.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls;
use rustls::pki_types::{CertificateDer, ServerName};
use support::admin::{call, eventually};
use support::*;
use tungstenite::{Message, WebSocket};

type TlsWs = WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A CA and a certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a leaf named like its issuer for
    // self-signed.
    ca.distinguished_name
        .push(DnType::CommonName, "wsrelay test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes `p`'s certificate and key where the config points.
fn install(p: &Pki, dir: &Path) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, &p.cert_pem).unwrap();
    std::fs::write(&k, &p.key_pem).unwrap();
    (c, k)
}

fn tls_config(cert: &Path, key: &Path, extra: &str) -> String {
    base_config(2).replace(
        "[server]\n",
        &format!(
            "[server]\ntls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n{extra}",
            cert.display(),
            key.display()
        ),
    )
}

/// A client configuration trusting only `ca` (with rustls's default
/// session cache, so a second connection may resume).
fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS connection to `addr` trusting only `ca`.
fn tls_stream(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, std::io::Error> {
    tls_stream_with(addr, client_config(ca))
}

/// A TLS connection to `addr` with `cfg`, handshake completed.
fn tls_stream_with(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, std::io::Error> {
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake now, so a refusal shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// A `wss://` WebSocket to endpoint `id`.
fn wss(r: &Relay, id: &str, ca: &CertificateDer<'static>) -> Result<TlsWs, String> {
    let s = tls_stream(r.data, ca).map_err(|e| e.to_string())?;
    let url = format!("wss://localhost:{}/ws/{id}", r.data.port());
    tungstenite::client(url, s)
        .map(|(ws, _)| ws)
        .map_err(|e| format!("{e:?}"))
}

/// A relay with TLS on (a fresh certificate) in front of an echo target.
struct TlsEcho {
    dir: TempDir,
    p: Pki,
    t: Target,
    r: Relay,
}

fn tls_echo() -> TlsEcho {
    let dir = TempDir::new();
    let p = pki();
    let (cert, key) = install(&p, &dir.0);
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(tls_config(&cert, &key, "") + &endpoint("echo", &t.url(), "")));
    TlsEcho { dir, p, t, r }
}

fn echo(ws: &mut TlsWs, text: &str) {
    ws.send(Message::Text(text.into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text(text.into()));
}

#[test]
fn wss_clients_relay_and_the_target_hears_https() {
    let TlsEcho { dir: _dir, p, t, r } = tls_echo();
    let mut ws = wss(&r, "echo", &p.ca_der).expect("wss connects");
    for i in 0..20 {
        echo(&mut ws, &format!("message {i}"));
    }
    // A message bigger than a TLS record (16 KiB) both ways.
    let big = "x".repeat(100_000);
    echo(&mut ws, &big);
    let seen = t.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    ws.close(None).unwrap();
    while ws.read().is_ok() {}

    // /healthz over TLS too.
    let mut s = tls_stream(r.data, &p.ca_der).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Someone speaking plain HTTP to the TLS port gets no upgrade, and the
    // refusal is counted.
    let plain = connect(&r.url("echo"));
    assert!(plain.is_err());
    let m = eventually("the TLS refusal counted", || {
        let m = call(r.admin, "GET", "/metrics", None, None).text;
        m.contains("wsrelay_handshake_rejections_total{endpoint=\"\",reason=\"tls_handshake\"} 1")
            .then_some(m)
    });
    assert!(
        m.contains("wsrelay_sessions_total{endpoint=\"echo\"} 1"),
        "{m}"
    );
    // A certificate from another CA is not trusted by the client.
    let other = pki();
    assert!(tls_stream(r.data, &other.ca_der).is_err());
}

#[test]
fn sighup_swaps_the_certificate_without_dropping_a_session() {
    let dir = TempDir::new();
    let first = pki();
    let (cert, key) = install(&first, &dir.0);
    let t = target(Behaviour::Echo);
    let cfg = tls_config(&cert, &key, "") + &endpoint("echo", &t.url(), "");
    let cfg_path = dir.0.join("wsrelay.toml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let r = Relay::start(&cfg);
    let mut before = wss(&r, "echo", &first.ca_der).unwrap();
    echo(&mut before, "before");

    // A bad key: logged, nothing changes.
    std::fs::write(&key, "not a key").unwrap();
    r.signal("-HUP");
    eventually("the bad file logged", || {
        r.log_text()
            .contains("TLS reload failed, keeping the current certificate")
            .then_some(())
    });
    echo(&mut before, "after a bad reload");
    let mut still = wss(&r, "echo", &first.ca_der).expect("the old certificate is served");
    echo(&mut still, "old cert");

    // A new certificate from another CA: new connections get it, the
    // sessions opened before keep relaying.
    let second = pki();
    install(&second, &dir.0);
    r.signal("-HUP");
    let mut after = eventually("the new certificate served", || {
        wss(&r, "echo", &second.ca_der).ok()
    });
    echo(&mut after, "new cert");
    assert!(
        wss(&r, "echo", &first.ca_der).is_err(),
        "the old CA no longer verifies new connections"
    );
    echo(&mut before, "still relaying");
    echo(&mut still, "still relaying too");
    assert!(r.log_text().contains("TLS certificate reloaded"));
}

/// Python's `websockets` with an `ssl` context that trusts only the test's
/// CA: a client that is not ours.
#[test]
fn a_python_websockets_client_connects_over_tls() {
    if !tool_present(
        "python3",
        &["-c", "import websockets, ssl"],
        "python3 with websockets",
    ) {
        return;
    }
    let TlsEcho { dir, p, t: _t, r } = tls_echo();
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, &p.ca_pem).unwrap();
    let script = r#"
import asyncio, ssl, sys
import websockets

async def main(url, ca):
    ctx = ssl.create_default_context(cafile=ca)
    async with websockets.connect(url, ssl=ctx) as ws:
        for i in range(10):
            await ws.send(f"py {i}")
            got = await ws.recv()
            assert got == f"py {i}", got
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"
    print("ok", ws.close_code)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(format!("wss://localhost:{}/ws/echo", r.data.port()))
        .arg(&ca)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert_eq!(said.trim(), "ok 1000", "{said}");
}

#[test]
fn idle_waits_for_tls_within_the_handshake_timeout() {
    let dir = TempDir::new();
    let p = pki();
    let (cert, key) = install(&p, &dir.0);
    let cfg = tls_config(&cert, &key, "").replace(
        "[server]\n",
        "[limits]\nhandshake_timeout_ms = 300\n\n[server]\n",
    );
    let r = Relay::start(&cfg);
    // Connects and says nothing: closed after the timeout, counted.
    let mut s = TcpStream::connect(r.data).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed without an answer");
    eventually("the timeout counted", || {
        call(r.admin, "GET", "/metrics", None, None)
            .text
            .contains(
                "wsrelay_handshake_rejections_total{endpoint=\"\",reason=\"handshake_timeout\"} 1",
            )
            .then_some(())
    });
}

/// A binary upgrade with TLS on: sessions with a TLS client leg cannot
/// move (their rustls state stays in the old process): they keep relaying
/// there until its drain deadline and then get 1012; the successor serves
/// new wss:// clients with the same certificate.
#[test]
fn tls_sessions_stay_with_the_old_process_and_get_1012_on_an_upgrade() {
    let dir = TempDir::new();
    let p = pki();
    let (cert, key) = install(&p, &dir.0);
    let t = target(Behaviour::Echo);
    let cfg = tls_config(&cert, &key, "").replace("shards = 2", "shards = 1")
        + &endpoint("echo", &t.url(), "");
    let mut first = Relay::start(&cfg);
    let mut old = wss(&first, "echo", &p.ca_der).unwrap();
    echo(&mut old, "before");
    let second = first.take_over("second.log");
    echo(&mut old, "during the drain");
    let mut new = eventually("the successor serves wss://", || {
        wss(&second, "echo", &p.ca_der).ok()
    });
    echo(&mut new, "on the successor");
    let status = first.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    match old.read() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!(
                (u16::from(f.code), f.reason.as_str()),
                (1012, "service restart")
            )
        }
        other => panic!("expected 1012, got {other:?}"),
    }
    assert!(first.log_text().contains("TLS on a leg"));
    echo(&mut new, "still on the successor");
}

/// Session tickets (as nginx and HAProxy issue by default): a client that
/// comes back resumes, skipping the certificate and its signature.
#[test]
fn a_returning_client_resumes_its_tls_session() {
    let TlsEcho {
        dir: _dir,
        p,
        t: _t,
        r,
    } = tls_echo();
    let cfg = client_config(&p.ca_der);
    let kinds: Vec<_> = (0..2)
        .map(|_| {
            let s = tls_stream_with(r.data, cfg.clone()).unwrap();
            let kind = s.conn.handshake_kind();
            let url = format!("wss://localhost:{}/ws/echo", r.data.port());
            let (mut ws, _) = tungstenite::client(url, s).unwrap();
            // The echo also reads the tickets the server sent after the handshake.
            echo(&mut ws, "hello");
            ws.close(None).unwrap();
            while ws.read().is_ok() {}
            kind
        })
        .collect();
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}
