//! A leg of a session: plain TCP, or TLS over TCP (rustls over the glommio
//! stream) — the client leg with `server.tls`, the target leg for `wss://`.
//! The relay's pumps read and write either through `AsyncRead`/`AsyncWrite`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A TLS stream over a glommio `TcpStream`.
pub trait TlsOverTcp: AsyncRead + AsyncWrite + Unpin {
    /// The TCP stream under it.
    fn tcp(&self) -> &TcpStream;
}

impl TlsOverTcp for futures_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl TlsOverTcp for futures_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Plain TCP or TLS over TCP.
pub enum Leg<T> {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://` (boxed: rustls's state is large and most legs are plain).
    Tls(Box<T>),
}

impl<T: TlsOverTcp> Leg<T> {
    /// The TCP stream (under the TLS, if any).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Leg::Plain(t) => t,
            Leg::Tls(t) => t.tcp(),
        }
    }

    /// Plain TCP (a session can move to a successor only then).
    pub fn is_plain(&self) -> bool {
        matches!(self, Leg::Plain(_))
    }
}

impl<T: TlsOverTcp> std::os::fd::AsRawFd for Leg<T> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.tcp().as_raw_fd()
    }
}

impl<T: TlsOverTcp> AsyncRead for Leg<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: TlsOverTcp> AsyncWrite for Leg<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Leg::Tls(s) => {
                // rustls buffers the record; push it out before reporting progress.
                let s = s.as_mut();
                let n = match Pin::new(&mut *s).poll_write(cx, buf) {
                    Poll::Ready(Ok(n)) => n,
                    other => return other,
                };
                let _ = Pin::new(s).poll_flush(cx);
                Poll::Ready(Ok(n))
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_flush(cx),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_close(cx),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// The target leg.
pub type UpStream = Leg<futures_rustls::client::TlsStream<TcpStream>>;
/// The client leg.
pub type ClientStream = Leg<futures_rustls::server::TlsStream<TcpStream>>;
