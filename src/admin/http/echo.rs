//! A small built-in WebSocket echo target on the admin port (`/echo`), so
//! that `wsrelay serve` with no configuration has a working example
//! endpoint. Bounded to [`MAX_CONNECTIONS`] connections.

use std::sync::atomic::Ordering;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::admin::state::AppState;

/// Concurrent echo connections served; more are refused with 503.
pub const MAX_CONNECTIONS: usize = 64;

/// `GET /echo` (WebSocket): sends every text and binary message back.
pub async fn handler(State(st): State<AppState>, ws: WebSocketUpgrade) -> Response {
    if st.echo_active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        st.echo_active.fetch_sub(1, Ordering::AcqRel);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "echo: too many connections",
        )
            .into_response();
    }
    let st2 = st.clone();
    ws.max_message_size(16 << 20)
        .on_failed_upgrade(move |_| {
            st2.echo_active.fetch_sub(1, Ordering::AcqRel);
        })
        .on_upgrade(move |mut socket| async move {
            // A close is answered by tungstenite on the next read, which
            // then ends the loop: breaking out at the close would drop the
            // connection without the closing handshake.
            while let Some(Ok(m)) = socket.recv().await {
                let reply = match m {
                    m @ (Message::Text(_) | Message::Binary(_)) => m,
                    _ => continue,
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
            st.echo_active.fetch_sub(1, Ordering::AcqRel);
        })
}
