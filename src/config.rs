//! Plain, documented configuration data: TOML file + environment → a validated
//! [`Config`]. Validation happens before any port is bound; every error names
//! the key it is about. Live handles (channels, counters) live elsewhere.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A configuration problem, reported as one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key / wrong type.
    #[error("config: {0}")]
    Parse(String),
    /// A key has a value outside its allowed range.
    #[error("config: {key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `endpoints[0].target_url`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[heartbeat]`
    pub heartbeat: HeartbeatConfig,
    /// `[[endpoints]]`, seeded into the registry at start.
    pub endpoints: Vec<EndpointConfig>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Data-plane listen address. Default `0.0.0.0:8080`.
    pub listen: String,
    /// Admin listen address. Default `127.0.0.1:8081`.
    pub admin_listen: String,
    /// Number of shards; 0 = one per CPU in `cpus`. Default 0.
    pub shards: usize,
    /// CPU list shards are pinned to, e.g. `"2-7"` or `"0,2"`; empty = all online.
    pub cpus: String,
    /// Store URL. Default `sqlite://wsrelay.db`.
    pub database: String,
    /// Milliseconds sessions may keep running after SIGTERM. Default 30000.
    pub drain_timeout_ms: u64,
    /// Seconds between the per-shard summary log lines; 0 = off. Default 10.
    pub summary_interval_s: u64,
    /// PEM file with extra CA certificates trusted for `wss://` targets
    /// (in addition to the webpki roots). Default: none.
    pub upstream_ca_file: String,
    /// Microseconds a shard keeps polling for work before it sleeps; trades
    /// CPU for wake-up latency. 0 (default) sleeps at once.
    pub spin_before_park_us: u64,
    /// Origins allowed to call the admin API from a browser (CORS); empty
    /// (default): CORS off, only same-origin pages may call it.
    pub admin_cors_origins: Vec<String>,
    /// Unix socket (owner-only) a successor started with `serve --takeover`
    /// connects to for the listeners (SPEC 4.6). Relative paths are relative
    /// to the working directory; empty: no binary upgrade. Default
    /// `wsrelay.sock`.
    pub control_socket: String,
    /// Milliseconds between heartbeats of this node's row (SPEC 7); a node
    /// silent for 3 intervals is marked down by a live one. Default 5000.
    pub node_heartbeat_ms: u64,
    /// `tls = { cert_file, key_file }`: both set, the data port speaks
    /// `wss://` (rustls). Reloaded on SIGHUP. Default: plain.
    pub tls: TlsFiles,
    /// Expect a PROXY protocol v1 or v2 header on every data connection
    /// (from an L4 balancer). Default false.
    pub proxy_protocol: bool,
    /// CIDRs (or single addresses) whose `X-Forwarded-For`/`-Proto` are
    /// honoured and extended; from anyone else they are replaced. Default
    /// none.
    pub trusted_proxies: Vec<String>,
}

/// `server.tls`: PEM files.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert_file: String,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

impl TlsFiles {
    /// Both files are set: TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() && !self.key_file.is_empty()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            shards: 0,
            cpus: String::new(),
            database: "sqlite://wsrelay.db".into(),
            drain_timeout_ms: 30_000,
            summary_interval_s: 10,
            upstream_ca_file: String::new(),
            spin_before_park_us: 0,
            admin_cors_origins: Vec::new(),
            control_socket: "wsrelay.sock".into(),
            node_heartbeat_ms: 5_000,
            tls: TlsFiles::default(),
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[limits]`: global, per process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sessions across all shards. Default 100000.
    pub max_connections: usize,
    /// Milliseconds for a client to send a complete upgrade request. Default 5000.
    pub handshake_timeout_ms: u64,
    /// Bytes of request line + headers accepted. Default 8192.
    pub max_header_bytes: usize,
    /// Milliseconds for the target's TCP connect + upgrade answer. Default 5000.
    pub upstream_connect_timeout_ms: u64,
    /// Connects per client address per second (token bucket); 0 = off.
    pub connects_per_ip_per_second: u32,
    /// Bytes buffered per session and direction while relaying. Default 32768.
    pub relay_buffer_bytes: usize,
    /// Control frames (ping, pong, close) a peer may send per second, per
    /// session and direction; more close the session with 1008. 0 = off.
    /// Default 100.
    pub control_frames_per_second: u32,
    /// Milliseconds a write toward a peer may make no progress before the
    /// session is closed (1008 toward the other side), like nginx's
    /// `send_timeout`. Default 30000.
    pub send_timeout_ms: u64,
    /// `SO_SNDBUF` of relayed sockets (client and target), bytes; the kernel
    /// doubles it. 0 = the kernel's autotuning. Default 262144.
    pub socket_send_buffer_bytes: usize,
    /// `SO_RCVBUF` of relayed sockets, bytes; the kernel doubles it. 0 = the
    /// kernel's autotuning. Default 262144.
    pub socket_recv_buffer_bytes: usize,
    /// Resident memory (RSS) ceiling in bytes: above 90 % of it new upgrades
    /// get 503 (`memory`), below 80 % they are admitted again. 0 = off.
    pub max_memory_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            handshake_timeout_ms: 5_000,
            max_header_bytes: 8_192,
            upstream_connect_timeout_ms: 5_000,
            connects_per_ip_per_second: 0,
            relay_buffer_bytes: 32_768,
            control_frames_per_second: 100,
            send_timeout_ms: 30_000,
            socket_send_buffer_bytes: 262_144,
            socket_recv_buffer_bytes: 262_144,
            max_memory_bytes: 0,
        }
    }
}

/// `[heartbeat]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Milliseconds of client silence before wsrelay pings it. Default 30000.
    pub ping_interval_ms: u64,
    /// Milliseconds to wait for the pong. Default 5000.
    pub pong_timeout_ms: u64,
    /// Unanswered pings before the session is dropped. Default 3.
    pub max_missed_pongs: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            ping_interval_ms: 30_000,
            pong_timeout_ms: 5_000,
            max_missed_pongs: 3,
        }
    }
}

/// One `[[endpoints]]` entry (SPEC section 3).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Slug `[a-z0-9-]{1,64}`.
    pub id: String,
    /// 1–100 characters. Defaults to the id.
    #[serde(default)]
    pub name: String,
    /// `ws://` or `wss://` URL.
    pub target_url: String,
    /// Disabled endpoints answer 403. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Per-endpoint limits.
    #[serde(default)]
    pub limits: EndpointLimits,
    /// Payload sampling.
    #[serde(default)]
    pub sampling: Sampling,
    /// Client JWT requirement.
    #[serde(default)]
    pub auth: Option<EndpointAuth>,
    /// Allowed `Origin` values; empty = any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `limits` of an endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointLimits {
    /// 1–1,000,000 sessions across all shards. Default 100.
    pub max_connections: usize,
    /// Bytes per message, 1 KiB–64 MiB. Default 1 MiB.
    pub max_message_size: u64,
    /// Idle timeout in ms, 1,000–86,400,000. Default 30000.
    pub timeout_ms: u64,
    /// Messages per second per session and direction; exceeding closes with 1008.
    pub max_messages_per_second: Option<u32>,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        EndpointLimits {
            max_connections: 100,
            max_message_size: 1 << 20,
            timeout_ms: 30_000,
            max_messages_per_second: None,
        }
    }
}

/// `sampling` of an endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Default false.
    pub enabled: bool,
    /// 0–100. Default 10.
    pub percentage: u32,
    /// 0–100,000. Default 1000.
    pub max_samples: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            enabled: false,
            percentage: 10,
            max_samples: 1000,
        }
    }
}

/// `auth` of an endpoint: exactly one of the two keys.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointAuth {
    /// HS256 shared secret.
    pub jwt_secret: Option<String>,
    /// RS256 public key, PEM.
    pub jwt_public_key_pem: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
}

/// A data-plane target URL, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    /// `wss://`?
    pub tls: bool,
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// Port (default 80 / 443).
    pub port: u16,
    /// Path (at least `/`), without the query.
    pub path: String,
    /// The target's own query, without `?`; the client's is appended.
    pub query: Option<String>,
}

impl TargetUrl {
    /// Parses a `ws://` or `wss://` URL.
    pub fn parse(s: &str) -> Result<TargetUrl, String> {
        let u = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        let tls = match u.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(format!("scheme must be ws or wss, not {other}")),
        };
        let host = match u.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err("has no host".into()),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err("must not carry credentials".into());
        }
        if u.fragment().is_some() {
            return Err("must not have a #fragment".into());
        }
        Ok(TargetUrl {
            tls,
            port: u
                .port_or_known_default()
                .unwrap_or(if tls { 443 } else { 80 }),
            host,
            path: u.path().to_string(),
            query: u.query().map(str::to_string),
        })
    }

    /// The `Host` header value: `host:port`, IPv6 in brackets.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

pub use wsrelay_proto::valid_endpoint_id;

impl EndpointConfig {
    /// Checks every rule of SPEC section 3; `key` prefixes error keys. Reports
    /// the first violation (see [`EndpointConfig::field_errors`] for all).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match self.field_errors().into_iter().next() {
            Some((field, message)) => Err(invalid(format!("{key}.{field}"), message)),
            None => Ok(()),
        }
    }

    /// Every violated rule of SPEC section 3, as (field path in the config's
    /// snake_case, e.g. `limits.max_connections`; message), in field order.
    /// The admin API answers them all at once (see [`camel_case_path`]).
    pub fn field_errors(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &'static str, message: &str| {
            if !ok {
                errors.push((field, message.to_string()));
            }
        };
        check(
            valid_endpoint_id(&self.id),
            "id",
            "must match [a-z0-9-]{1,64}",
        );
        check(
            self.name.chars().count() <= 100,
            "name",
            "must be 1-100 characters",
        );
        // The one character a PostgreSQL text column refuses (a config file
        // can spell it "\u0000"; the API refuses it in any field).
        check(
            !self.name.contains('\0'),
            "name",
            "must not contain a NUL character",
        );
        if let Err(m) = TargetUrl::parse(&self.target_url) {
            check(false, "target_url", &m);
        }
        let l = &self.limits;
        check(
            (1..=1_000_000).contains(&l.max_connections),
            "limits.max_connections",
            "must be 1-1000000",
        );
        check(
            (1024..=64 << 20).contains(&l.max_message_size),
            "limits.max_message_size",
            "must be 1024-67108864 bytes",
        );
        check(
            (1_000..=86_400_000).contains(&l.timeout_ms),
            "limits.timeout_ms",
            "must be 1000-86400000 ms",
        );
        check(
            l.max_messages_per_second != Some(0),
            "limits.max_messages_per_second",
            "must be at least 1 (omit it for no limit)",
        );
        check(
            self.sampling.percentage <= 100,
            "sampling.percentage",
            "must be 0-100",
        );
        check(
            self.sampling.max_samples <= 100_000,
            "sampling.max_samples",
            "must be 0-100000",
        );
        if let Some(a) = &self.auth {
            match (&a.jwt_secret, &a.jwt_public_key_pem) {
                (Some(s), None) if !s.is_empty() => {}
                (None, Some(p)) => {
                    if let Err(e) = jsonwebtoken::DecodingKey::from_rsa_pem(p.as_bytes()) {
                        check(
                            false,
                            "auth.jwt_public_key_pem",
                            &format!("not an RSA public key PEM ({e})"),
                        );
                    }
                }
                _ => check(
                    false,
                    "auth",
                    "needs exactly one of jwt_secret (non-empty) or jwt_public_key_pem",
                ),
            }
        }
        errors
    }
}

/// `limits.max_connections` → `limits.maxConnections`: a config field path as
/// the admin API's JSON names it.
pub fn camel_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Config {
    /// Reads `path` (if any), applies the environment, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::from_toml(&text)?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (no environment, no validation).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's message spans several lines with a source excerpt; keep one line.
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let at = span.start.min(text.len());
                    let line = text[..at].matches('\n').count() + 1;
                    let src = text.lines().nth(line - 1).unwrap_or("").trim();
                    ConfigError::Parse(format!("line {line} `{src}`: {msg}"))
                }
                None => ConfigError::Parse(msg),
            }
        })
    }

    /// Environment overrides (SPEC section 2). `get` reads one variable.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("WSRELAY_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = get("WSRELAY_ADMIN_LISTEN") {
            self.server.admin_listen = v;
        }
        if let Some(v) = get("WSRELAY_SHARDS") {
            self.server.shards = v
                .trim()
                .parse()
                .map_err(|_| invalid("WSRELAY_SHARDS", "must be a whole number"))?;
        }
        if let Some(v) = get("DATABASE_URL") {
            self.server.database = v;
        }
        Ok(())
    }

    /// Checks every key; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_addr(&self.server.listen, "server.listen")?;
        parse_addr(&self.server.admin_listen, "server.admin_listen")?;
        if !self.server.cpus.trim().is_empty() {
            parse_cpu_list(&self.server.cpus).map_err(|m| invalid("server.cpus", m))?;
        }
        if self.server.spin_before_park_us > 10_000 {
            return Err(invalid("server.spin_before_park_us", "must be 0-10000"));
        }
        if self.server.shards > 1024 {
            return Err(invalid("server.shards", "must be 0-1024"));
        }
        let tls = &self.server.tls;
        if tls.cert_file.is_empty() != tls.key_file.is_empty() {
            let key = if tls.cert_file.is_empty() {
                "server.tls.cert_file"
            } else {
                "server.tls.key_file"
            };
            return Err(invalid(key, "set both cert_file and key_file (or neither)"));
        }
        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            parse_cidr(p).map_err(|m| invalid(format!("server.trusted_proxies[{i}]"), m))?;
        }
        if !(100..=600_000).contains(&self.server.node_heartbeat_ms) {
            return Err(invalid("server.node_heartbeat_ms", "must be 100-600000"));
        }
        let db = &self.server.database;
        if !(db.starts_with("sqlite://")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "server.database",
                "must start with sqlite:// or postgres://",
            ));
        }
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if !(256..=1 << 20).contains(&l.max_header_bytes) {
            return Err(invalid("limits.max_header_bytes", "must be 256-1048576"));
        }
        if l.handshake_timeout_ms == 0 {
            return Err(invalid("limits.handshake_timeout_ms", "must be at least 1"));
        }
        if l.upstream_connect_timeout_ms == 0 {
            return Err(invalid(
                "limits.upstream_connect_timeout_ms",
                "must be at least 1",
            ));
        }
        if !(4096..=1 << 20).contains(&l.relay_buffer_bytes) {
            return Err(invalid("limits.relay_buffer_bytes", "must be 4096-1048576"));
        }
        if !(100..=86_400_000).contains(&l.send_timeout_ms) {
            return Err(invalid("limits.send_timeout_ms", "must be 100-86400000"));
        }
        for (key, v) in [
            (
                "limits.socket_send_buffer_bytes",
                l.socket_send_buffer_bytes,
            ),
            (
                "limits.socket_recv_buffer_bytes",
                l.socket_recv_buffer_bytes,
            ),
        ] {
            if v != 0 && !(4096..=64 << 20).contains(&v) {
                return Err(invalid(
                    key,
                    "must be 0 (kernel autotuning) or 4096-67108864",
                ));
            }
        }
        let h = &self.heartbeat;
        if h.ping_interval_ms < 100 || h.pong_timeout_ms == 0 || h.max_missed_pongs == 0 {
            return Err(invalid(
                "heartbeat",
                "ping_interval_ms must be >= 100, pong_timeout_ms and max_missed_pongs >= 1",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = format!("endpoints[{i}]");
            e.validate(&key)?;
            if !seen.insert(e.id.as_str()) {
                return Err(invalid(
                    format!("{key}.id"),
                    format!("duplicate id {:?}", e.id),
                ));
            }
        }
        Ok(())
    }

    /// The validated data listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        parse_addr(&self.server.listen, "server.listen").expect("validated")
    }
}

fn parse_addr(s: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    s.parse::<SocketAddr>()
        .map_err(|_| invalid(key, format!("{s:?} is not an address like 0.0.0.0:8080")))
}

/// A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (its own /32 or
/// /128).
pub fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("{s:?} is not an address or CIDR (e.g. 10.0.0.0/8)"))
}

/// Parses a CPU list such as `"0-3,6"`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{part:?} is not a CPU number or range like 2-7");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b > 4095 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err("is empty".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
