//! The client's HTTP upgrade request: parsing from raw bytes into an owned
//! [`ClientRequest`] or a [`Refusal`] (status + metric reason), and the HTTP
//! responses wsrelay writes on the data port. Pure functions, tested with
//! literal bytes.

use crate::{valid_endpoint_id, Reject};

/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// Most reads one upgrade request may take: a real client sends it in one
/// or two segments; one trickled a byte per segment is refused (400) after
/// this many, so a malicious handshake costs a bounded amount of CPU.
pub const MAX_HANDSHAKE_READS: usize = 32;

/// Whether `new` (appended to `before`) completes a header block: the parser
/// runs only then, not after every read (which made a trickled request cost
/// quadratic time). A bare-LF block is found too, to be refused.
pub fn may_be_complete(buf: &[u8], new_from: usize) -> bool {
    let from = new_from.saturating_sub(3);
    let tail = &buf[from..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// Where the request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Healthz,
    /// `GET /ws/<id>` with a valid upgrade.
    Endpoint(String),
}

/// A complete, valid request, copied out of the read buffer.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// Route.
    pub route: Route,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// `Sec-WebSocket-Protocol` offer, joined with `, `.
    pub protocols: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// Incoming `X-Forwarded-For`.
    pub forwarded_for: Option<String>,
    /// Incoming `X-Forwarded-Proto`.
    pub forwarded_proto: Option<String>,
    /// Other end-to-end headers, passed on to the target.
    pub passthrough: Vec<(String, Vec<u8>)>,
    /// Bytes of the buffer the request used.
    pub consumed: usize,
}

/// A refused request: the status to answer and the metric reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Metric label.
    pub reason: Reject,
}

fn refuse(status: u16, reason: Reject) -> Refusal {
    Refusal { status, reason }
}

/// Headers never passed on: hop-by-hop, the handshake's own, and those
/// wsrelay sets itself.
const NOT_PASSED: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
    "proxy-authorization",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "authorization",
    "origin",
];

fn has_token(v: &[u8], token: &str) -> bool {
    std::str::from_utf8(v)
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// The comma-separated tokens of every `name` header, in order.
fn list_tokens<'a>(headers: &[httparse::Header<'a>], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    // 16 bytes, base64: 22 characters + "==".
    k.len() == 24
        && k.ends_with("==")
        && k[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Parses `buf`. `Ok(None)`: incomplete, read more (unless `buf` already
/// holds `max_header_bytes`, which is a 431).
pub fn parse_request(
    buf: &[u8],
    max_header_bytes: usize,
) -> Result<Option<ClientRequest>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_header_bytes {
                Err(refuse(431, Reject::HeadersTooLarge))
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, Reject::HeadersTooLarge)),
        Err(_) => return Err(refuse(400, Reject::BadRequest)),
    };
    if consumed > max_header_bytes {
        return Err(refuse(431, Reject::HeadersTooLarge));
    }
    // Lines end with CRLF (RFC 9112 allows a recipient to accept a bare LF;
    // a proxy that does invites request smuggling past stricter peers).
    let head = &buf[..consumed];
    if head
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
    {
        return Err(refuse(400, Reject::BadRequest));
    }
    let method = req.method.unwrap_or("");
    let full_path = req.path.unwrap_or("");
    let (path, query) = match full_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (full_path, None),
    };
    if path == "/healthz" && (method == "GET" || method == "HEAD") {
        return Ok(Some(ClientRequest {
            route: Route::Healthz,
            query: None,
            key: String::new(),
            protocols: None,
            origin: None,
            authorization: None,
            forwarded_for: None,
            forwarded_proto: None,
            passthrough: Vec::new(),
            consumed,
        }));
    }
    let id = match path.strip_prefix("/ws/") {
        Some(id) => id,
        None => return Err(refuse(404, Reject::NotFound)),
    };
    if method != "GET" || req.version != Some(1) {
        return Err(refuse(400, Reject::BadRequest));
    }
    let get = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    };
    let text = |name: &str| {
        get(name)
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    // Headers that must appear once: two answers to one question are an
    // attack on whichever peer picks the other one.
    for once in [
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "upgrade",
    ] {
        if req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(once))
            .count()
            > 1
        {
            return Err(refuse(400, Reject::BadRequest));
        }
    }
    match get("upgrade") {
        Some(h) if has_token(h.value, "websocket") => {}
        _ => return Err(refuse(426, Reject::UpgradeRequired)),
    }
    match get("connection") {
        Some(h) if has_token(h.value, "upgrade") => {}
        _ => return Err(refuse(400, Reject::BadRequest)),
    }
    if text("sec-websocket-version") != Some("13") {
        return Err(refuse(400, Reject::BadRequest));
    }
    let key = match text("sec-websocket-key") {
        Some(k) if valid_key(k) => k.to_string(),
        _ => return Err(refuse(400, Reject::BadRequest)),
    };
    if !valid_endpoint_id(id) {
        return Err(refuse(404, Reject::NotFound));
    }
    let protocols = list_tokens(req.headers, "sec-websocket-protocol");
    // Headers the client named in `Connection:` are hop-by-hop too (RFC 9110
    // 7.6.1): they are for wsrelay, not for the target.
    let hop = list_tokens(req.headers, "connection");
    let passthrough = req
        .headers
        .iter()
        .filter(|h| !NOT_PASSED.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
        .filter(|h| !hop.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    Ok(Some(ClientRequest {
        route: Route::Endpoint(id.to_string()),
        query: query.map(str::to_string),
        key,
        protocols: (!protocols.is_empty()).then(|| protocols.join(", ")),
        origin: text("origin").map(str::to_string),
        authorization: text("authorization").map(str::to_string),
        forwarded_for: text("x-forwarded-for").map(str::to_string),
        forwarded_proto: text("x-forwarded-proto").map(str::to_string),
        passthrough,
        consumed,
    }))
}

impl ClientRequest {
    /// The client's JWT: `Authorization: Bearer …`, else `?token=`.
    pub fn token(&self) -> Option<&str> {
        if let Some(a) = &self.authorization {
            if a.len() > 7 && a[..7].eq_ignore_ascii_case("bearer ") {
                return Some(a[7..].trim());
            }
        }
        self.query
            .as_deref()?
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .filter(|t| !t.is_empty())
    }

    /// The query without any `token` parameter (it is wsrelay's, not the target's).
    pub fn query_without_token(&self) -> Option<String> {
        let q = self.query.as_deref()?;
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| !(kv.starts_with("token=") || *kv == "token"))
            .collect();
        (!kept.is_empty()).then(|| kept.join("&"))
    }

    /// Is `Origin` allowed by `allowed` (empty = any)?
    pub fn origin_allowed(&self, allowed: &[String]) -> bool {
        allowed.is_empty()
            || self
                .origin
                .as_deref()
                .is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)))
    }
}

/// Reason phrase of a status wsrelay answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A complete `Connection: close` response with a short text body.
pub fn simple_response(status: u16, body: &str, retry_after: Option<u64>) -> Vec<u8> {
    let mut extra = String::new();
    if let Some(s) = retry_after {
        extra.push_str(&format!("Retry-After: {s}\r\n"));
    }
    match status {
        426 => extra.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"),
        400 => extra.push_str("Sec-WebSocket-Version: 13\r\n"),
        401 => extra.push_str("WWW-Authenticate: Bearer\r\n"),
        _ => {}
    }
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        reason_phrase(status),
        body.len() + 1,
    )
    .into_bytes()
    .into_iter()
    .chain(std::iter::once(b'\n'))
    .collect()
}

/// The 101 answer to the client.
pub fn switching_protocols(client_key: &str, protocol: Option<&str>) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(client_key.as_bytes());
    let mut s = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        s.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

#[cfg(test)]
mod tests;
