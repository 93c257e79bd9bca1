//! Test support: start wsrelay on ephemeral ports, and targets that behave or
//! misbehave on purpose. Blocking std + tungstenite; every socket has a timeout
//! so a broken relay fails a test instead of hanging it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

pub mod admin;

/// Socket timeout used everywhere in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running wsrelay process; killed on drop.
pub struct Relay {
    pub child: Child,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    pub cfg: PathBuf,
    /// What wsrelay printed before its ready line (e.g. a generated password).
    pub stdout_before_ready: String,
    /// The working directory (store, control socket).
    pub dir: PathBuf,
    _dir: Option<TempDir>,
}

/// The admin every test relay starts with.
pub const ADMIN_EMAIL: &str = "admin@test.example";
/// Its password.
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// Whether `program probe…` runs and succeeds (a tool a test needs).
/// Without it the test is skipped with `skipped: <what> is missing` — and
/// with `CI=true` that is a failure, never a skip.
pub fn tool_present(program: &str, probe: &[&str], what: &str) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {what} is missing"
        );
        eprintln!("skipped: {what} is missing");
    }
    ok
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "wsrelay-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wsrelay")
}

/// The header every test config starts with: ephemeral ports, `shards` shards.
pub fn base_config(shards: usize) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshards = {shards}\ndrain_timeout_ms = 2000\nsummary_interval_s = 0\n"
    )
}

/// An endpoint block.
pub fn endpoint(id: &str, target: &str, extra: &str) -> String {
    format!("\n[[endpoints]]\nid = \"{id}\"\ntarget_url = \"{target}\"\n{extra}\n")
}

impl Relay {
    /// Starts wsrelay with `config` and waits for its ready line.
    pub fn start(config: &str) -> Relay {
        Relay::start_with(config, &[])
    }

    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Relay {
        let dir = TempDir::new();
        let cfg = dir.0.join("wsrelay.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut r = Relay::spawn(&dir.0, &cfg, "wsrelay.log", &[], env);
        r._dir = Some(dir);
        r
    }

    /// `wsrelay serve --takeover` with this relay's config and directory;
    /// returns once the successor printed its ready line.
    pub fn take_over(&self, log: &str) -> Relay {
        Relay::spawn(&self.dir, &self.cfg, log, &["--takeover"], &[])
    }

    /// Starts `wsrelay serve` (extra `args`, extra `env`) in `dir` with
    /// config `cfg`, logging to `log`; waits for the ready line.
    pub fn spawn(
        dir: &std::path::Path,
        cfg: &std::path::Path,
        log: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Relay {
        let cfg = cfg.to_path_buf();
        let log = dir.join(log);
        let mut cmd = Command::new(bin());
        cmd.arg("serve").args(args).arg("--config").arg(&cfg);
        cmd.env_remove("WSRELAY_LISTEN")
            .env_remove("WSRELAY_SHARDS")
            .env_remove("DATABASE_URL");
        // The default store (sqlite://wsrelay.db) lands in the test's own directory.
        cmd.current_dir(dir);
        cmd.env("WSRELAY_LOG", "info")
            .env("WSRELAY_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("WSRELAY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("WSRELAY_JWT_SECRET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        let mut child = cmd.spawn().expect("start wsrelay");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut before = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 || line.starts_with("wsrelay ready") {
                break;
            }
            before.push_str(&line);
        }
        if !line.starts_with("wsrelay ready") {
            let _ = child.wait();
            panic!(
                "wsrelay did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let field = |k: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap()
                .parse()
                .unwrap()
        };
        Relay {
            data: field("data="),
            admin: field("admin="),
            child,
            log,
            cfg,
            stdout_before_ready: before,
            dir: dir.to_path_buf(),
            _dir: None,
        }
    }

    /// `ws://…/ws/<id>`
    pub fn url(&self, id: &str) -> String {
        format!("ws://{}/ws/{id}", self.data)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Sends `sig` (e.g. `-HUP`) to the relay process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "wsrelay did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(20)); // polling a process, not synchronising
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs wsrelay with `args` to completion: (exit code, stderr).
pub fn run_to_exit(args: &[&str], config: Option<&str>) -> (i32, String) {
    let dir = TempDir::new();
    let mut cmd = Command::new(bin());
    cmd.args(args);
    if let Some(c) = config {
        let p = dir.0.join("c.toml");
        std::fs::write(&p, c).unwrap();
        cmd.arg("--config").arg(p);
    }
    cmd.env_remove("WSRELAY_LISTEN")
        .env_remove("WSRELAY_SHARDS")
        .env_remove("DATABASE_URL")
        .current_dir(&dir.0);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub type Ws = WebSocket<TcpStream>;

/// Connects a WebSocket client.
pub fn connect(
    url: &str,
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    connect_req(req)
}

pub fn connect_req(
    req: tungstenite::handshake::client::Request,
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let host = req.uri().host().unwrap().to_string();
    let port = req.uri().port_u16().unwrap();
    let s = TcpStream::connect((host.as_str(), port)).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    tungstenite::client::client_with_config(req, s, Some(cfg)).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })
}

/// The HTTP status of a failed upgrade.
pub fn status_of(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Sends raw bytes, returns everything the relay answers until it closes.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until a close arrives; returns (code, reason).
pub fn read_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

/// `n` text messages there and back (each echo read), then a 1000 close
/// from the client, answered.
pub fn echo_then_close(ws: &mut Ws, n: usize) {
    for i in 0..n {
        ws.send(Message::Text(format!("m{i}").into())).unwrap();
        ws.read().unwrap();
    }
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }))
    .unwrap();
    let _ = read_close(ws);
}

/// What a target saw of one upgrade request.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a test target behaves after (or instead of) the upgrade.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// Echo every data message; answer the close handshake.
    Echo,
    /// Upgrade, then never read again.
    NeverRead,
    /// Upgrade, echo the first message, then drop TCP without a close frame.
    DieAfterFirst,
    /// Upgrade, then send one binary message of this many bytes.
    SendBig(usize),
    /// Answer the upgrade with 403.
    Refuse,
    /// Accept TCP, never answer the upgrade.
    Silent,
    /// Upgrade, then send close(4001, "target says bye") after the first message.
    CloseAfterFirst,
    /// Upgrade, then send close(code, reason) after the first message.
    CloseAfterFirstWith(u16, &'static str),
}

/// A target on an ephemeral port; `seen` receives each upgrade request, and
/// `closes` each close frame the target received (code).
pub struct Target {
    pub addr: SocketAddr,
    pub seen: mpsc::Receiver<Seen>,
    pub closes: mpsc::Receiver<Option<u16>>,
    pub held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Target {
    pub fn url(&self) -> String {
        format!("ws://{}/target", self.addr)
    }
}

pub fn target(b: Behaviour) -> Target {
    target_with_protocol(b, None)
}

/// A target; `protocol` is the subprotocol it picks if offered.
pub fn target_with_protocol(b: Behaviour, protocol: Option<&'static str>) -> Target {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let (close_tx, closes) = mpsc::channel();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let (seen_tx, close_tx, held) = (seen_tx.clone(), close_tx.clone(), held2.clone());
            thread::spawn(move || serve_target(s, b, protocol, seen_tx, close_tx, held));
        }
    });
    Target {
        addr,
        seen,
        closes,
        held,
    }
}

fn serve_target(
    s: TcpStream,
    b: Behaviour,
    protocol: Option<&'static str>,
    seen_tx: mpsc::Sender<Seen>,
    close_tx: mpsc::Sender<Option<u16>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if b == Behaviour::Silent {
        held.lock().unwrap().push(s);
        return;
    }
    let cb = |req: &Request, mut resp: Response| {
        let seen = Seen {
            uri: req.uri().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        };
        let offered = seen.header("sec-websocket-protocol").map(str::to_string);
        let _ = seen_tx.send(seen);
        if b == Behaviour::Refuse {
            let mut e = tungstenite::handshake::server::ErrorResponse::new(Some("no".into()));
            *e.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
            return Err(e);
        }
        if let (Some(p), Some(o)) = (protocol, offered) {
            if o.split(',').any(|x| x.trim() == p) {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
            }
        }
        Ok(resp)
    };
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(s, cb, Some(cfg)) else {
        return;
    };
    match b {
        Behaviour::NeverRead => {
            let s = ws.get_ref().try_clone().unwrap();
            held.lock().unwrap().push(s);
            loop {
                thread::park(); // holds the socket open, unread, until the test process ends
            }
        }
        Behaviour::SendBig(n) => {
            let _ = ws.send(Message::Binary(vec![7u8; n].into()));
        }
        _ => {}
    }
    let mut first = true;
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if b == Behaviour::DieAfterFirst && !first {
                    return;
                }
                if ws.send(m).is_err() {
                    return;
                }
                if b == Behaviour::DieAfterFirst {
                    let _ = ws.flush();
                    let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
                    return;
                }
                let close = match b {
                    Behaviour::CloseAfterFirst => Some((4001, "target says bye")),
                    Behaviour::CloseAfterFirstWith(c, r) => Some((c, r)),
                    _ => None,
                };
                if let Some((code, reason)) = close.filter(|_| first) {
                    let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
                        code: code.into(),
                        reason: reason.into(),
                    }));
                }
                first = false;
            }
            Ok(Message::Close(f)) => {
                let _ = close_tx.send(f.map(|f| u16::from(f.code)));
                // tungstenite answers the close on the next write/flush.
                let _ = ws.flush();
                while ws.read().is_ok() {}
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// A TCP listener that never accepts and whose backlog is full, so further
/// connects hang in SYN-SENT: a target that never answers the TCP connect.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<socket2::Socket>,
}

pub fn blackhole() -> Blackhole {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    // Backlog 0 queues one connection; with it queued and never accepted,
    // the kernel drops further SYNs.
    let filler = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    filler
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let fillers = vec![filler];
    Blackhole {
        addr,
        _listener: l,
        _fillers: fillers,
    }
}

/// RSS of a process in KiB.
/// An HS256 JWT of `claims` signed with `secret`.
pub fn hs256(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A `wss://` echo target on 127.0.0.1 with a fresh self-signed certificate
/// for `localhost`; returns its address and the certificate (PEM) to trust.
pub fn tls_echo_target() -> (SocketAddr, String) {
    use futures_rustls::rustls::pki_types::PrivateKeyDer;
    use futures_rustls::rustls::{ServerConfig, ServerConnection, StreamOwned};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = ck.cert.pem();
    let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let cfg = Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let cfg = cfg.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let tls = StreamOwned::new(ServerConnection::new(cfg).unwrap(), s);
                let Ok(mut ws) = tungstenite::accept(tls) else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, pem)
}

/// A TCP forwarder to the database that the test can cut and restore.
pub struct DbLink {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pipes: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl DbLink {
    pub fn new(to: std::net::SocketAddr) -> DbLink {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let link = DbLink {
            addr: l.local_addr().unwrap(),
            up: Default::default(),
            pipes: Default::default(),
        };
        link.up.store(true, Ordering::SeqCst);
        let (up, pipes) = (link.up.clone(), link.pipes.clone());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "down"
                }
                let Ok(s) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                pipes
                    .lock()
                    .unwrap()
                    .extend([c.try_clone().unwrap(), s.try_clone().unwrap()]);
                for (mut from, mut to) in [(c.try_clone().unwrap(), s.try_clone().unwrap()), (s, c)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        link
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for p in self.pipes.lock().unwrap().drain(..) {
            let _ = p.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `url` (a PostgreSQL URL) through `link` instead of directly.
pub fn via_link(url: &str, link: &DbLink) -> String {
    let mut via = url::Url::parse(url).unwrap();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(link.addr.port())).unwrap();
    via.to_string()
}

/// A link to the PostgreSQL server `url` names.
pub fn db_link(url: &str) -> DbLink {
    let cfg: postgres::Config = url.parse().unwrap();
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    DbLink::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}
