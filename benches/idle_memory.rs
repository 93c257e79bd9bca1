//! RSS per idle relayed session: starts wsrelay (1 shard on CPU 0) in front of
//! a minimal echo target, opens N sessions that each relay one message both
//! ways and then stay idle, and reports wsrelay's RSS growth per session.
//!
//!     cargo bench --bench idle_memory -- [N] [--tls]   (default 5000)
//!
//! `--tls`: the data port speaks TLS (`server.tls`, a certificate made here)
//! and the clients are rustls clients: what an idle `wss://` session costs.
//!
//! Client and target run in this process on one glommio executor (CPU 1).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use wsrelay::shard::leg::UpStream;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn read_head<S: futures_lite::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::with_capacity(512);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            panic!("closed during the handshake");
        }
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The target: completes the upgrade, echoes small masked text frames.
async fn target_conn(mut s: TcpStream) {
    let head = read_head(&mut s).await;
    let key = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    s.write_all(resp.as_bytes()).await.unwrap();
    let mut f = [0u8; 131];
    loop {
        if s.read_exact(&mut f[..2]).await.is_err() {
            return;
        }
        let len = (f[1] & 0x7f) as usize;
        assert!(len < 126 && f[1] & 0x80 != 0);
        s.read_exact(&mut f[2..6 + len]).await.unwrap();
        if f[0] & 0x0f == 8 {
            return;
        }
        let mut out = [0u8; 127];
        out[0] = f[0];
        out[1] = len as u8;
        for i in 0..len {
            out[2 + i] = f[6 + i] ^ f[2 + i % 4];
        }
        s.write_all(&out[..2 + len]).await.unwrap();
    }
}

/// A client: upgrade, one message there and back, then idle.
async fn client(relay: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(relay).await.unwrap();
    upgrade(&mut s).await;
    s
}

/// A `wss://` client (rustls): the same, over TLS.
async fn tls_client(
    relay: SocketAddr,
    tls: futures_rustls::TlsConnector,
) -> futures_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(relay).await.unwrap();
    let name = futures_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tls.connect(name, tcp).await.unwrap();
    upgrade(&mut s).await;
    s
}

/// The upgrade and one message there and back.
async fn upgrade<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"GET /ws/idle HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let head = read_head(s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .await
        .unwrap();
    s.flush().await.unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, [0x81, 2, b'h', b'i']);
}

/// A certificate for `localhost`, written to `dir`: the server's files and
/// a client trusting it.
fn tls_setup(dir: &std::path::Path) -> (String, futures_rustls::TlsConnector) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    // The client wsrelay itself uses for wss:// targets, trusting this one.
    let connector = wsrelay::shard::upstream::tls_connector(Some(c.cert.pem().as_bytes())).unwrap();
    (
        format!(
            "tls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n",
            cert.display(),
            key.display()
        ),
        connector,
    )
}

/// A held session of either kind (held open, never read again).
async fn open(relay: SocketAddr, tls: &Option<futures_rustls::TlsConnector>) -> UpStream {
    match tls {
        None => UpStream::Plain(client(relay).await),
        Some(c) => UpStream::Tls(Box::new(tls_client(relay, c.clone()).await)),
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let with_tls = std::env::args().any(|a| a == "--tls");
    LocalExecutorBuilder::new(Placement::Fixed(1 % num_cpus()))
        .io_memory(256 << 10)
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let target = listener.local_addr().unwrap();
            glommio::spawn_local(async move {
                loop {
                    let s = listener.accept().await.unwrap();
                    glommio::spawn_local(target_conn(s)).detach();
                }
            })
            .detach();

            let dir = std::env::temp_dir().join(format!("wsrelay-idle-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = dir.join("c.toml");
            let (tls_line, tls) = if with_tls {
                let (line, c) = tls_setup(&dir);
                (line, Some(c))
            } else {
                (String::new(), None)
            };
            std::fs::write(
                &cfg,
                format!(
                    "[server]\n{tls_line}listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://:memory:\"\nshards = 1\ncpus = \"0\"\nsummary_interval_s = 0\n[limits]\nmax_connections = {m}\n[heartbeat]\nping_interval_ms = 3600000\n[[endpoints]]\nid = \"idle\"\ntarget_url = \"ws://{target}/\"\nlimits = {{ max_connections = {m}, timeout_ms = 3600000 }}\n",
                    m = n + 100
                ),
            )
            .unwrap();
            // This thread is pinned to CPU 1 and children inherit that: taskset
            // gives wsrelay CPU 0.
            let mut child = Command::new("taskset")
                .args(["-c", "0", env!("CARGO_BIN_EXE_wsrelay"), "serve", "--config"])
                .arg(&cfg)
                .env("WSRELAY_LOG", "warn")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            // Lines before the ready line (a generated admin password) are skipped.
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            while !line.starts_with("wsrelay ready") {
                line.clear();
                assert!(out.read_line(&mut line).unwrap() > 0, "wsrelay exited before its ready line");
            }
            let relay: SocketAddr = line.split_whitespace().find_map(|w| w.strip_prefix("data=")).unwrap().parse().unwrap();
            let pid = child.id();

            // Warm up (pool buffers, allocator arenas), then measure from there.
            let mut held = Vec::with_capacity(n);
            for _ in 0..100 {
                held.push(open(relay, &tls).await);
            }
            let before = rss_kib(pid);
            let start = Instant::now();
            let held = Rc::new(std::cell::RefCell::new(held));
            let batch = 200;
            let mut opened = 0;
            while opened < n {
                let k = batch.min(n - opened);
                let tasks: Vec<_> = (0..k)
                    .map(|_| {
                        let tls = tls.clone();
                        glommio::spawn_local(async move { open(relay, &tls).await })
                    })
                    .collect();
                for t in tasks {
                    let s = t.await;
                    held.borrow_mut().push(s);
                }
                opened += k;
                if opened % 1000 == 0 {
                    eprintln!("idle_memory: {opened}/{n} sessions open");
                }
            }
            let after = rss_kib(pid);
            let per = (after.saturating_sub(before) as f64) * 1024.0 / n as f64;
            println!(
                "idle_memory: {n} idle relayed {}sessions (each relayed one message both ways): wsrelay RSS {before} KiB -> {after} KiB, {:.0} bytes ({:.2} KiB) per session; opened in {:.1} s",
                if with_tls { "TLS " } else { "" },
                per,
                per / 1024.0,
                start.elapsed().as_secs_f64()
            );
            println!("{{\"bench\":\"idle_memory\",\"tls\":{with_tls},\"sessions\":{n},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"bytes_per_session\":{per:.0}}}");
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        })
        .unwrap()
        .join()
        .unwrap();
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
