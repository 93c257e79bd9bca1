//! A small built-in WebSocket echo target on the admin port (`/echo`), so that
//! `wsrelay serve` with no configuration has a working example endpoint.
//! Blocking tungstenite on threads: it is a demo, not a data path, and it is
//! bounded to `MAX_CONNECTIONS` connections.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

/// Concurrent echo connections served; more are refused.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `/echo` (WebSocket) and `/healthz` on `listener` until the process ends.
pub fn spawn(listener: TcpListener) {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("admin-echo".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let a = active.clone();
                let _ = std::thread::Builder::new()
                    .name("echo-conn".into())
                    .spawn(move || {
                        serve(stream);
                        a.fetch_sub(1, Ordering::AcqRel);
                    });
            }
        })
        .expect("spawn the admin thread");
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn serve(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(300)));
    let mut peek = [0u8; 16];
    if matches!(stream.peek(&mut peek), Ok(n) if peek[..n].starts_with(b"GET /healthz")) {
        use std::io::Write;
        let mut s = stream;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
        return;
    }
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/echo" {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(Some("not found".into()));
            *e.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let cfg = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(16 << 20));
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(stream, check, Some(cfg)) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
