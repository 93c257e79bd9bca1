//! `floor`: a minimal TCP byte relay, the cost of relaying on this machine
//! (issue 11). One thread, plain epoll, edge-triggered: every socket is
//! registered once for its life (in, out, hang-up); bytes go from one side's
//! buffer to the other without any parsing. A read shorter than the buffer
//! means the socket was drained, so no read is made just to see EAGAIN;
//! a write is made only when there are bytes and the socket was writable.
//! No WebSocket awareness at all: the upgrade passes through like any bytes.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

/// Bytes buffered per direction of a pair.
const BUF: usize = 16 * 1024;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;
/// The listener's token (pairs use `index << 1 | side`).
const LISTENER: u64 = u64::MAX;

struct Dir {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

struct Pair {
    fds: [RawFd; 2],
    /// `dirs[s]`: bytes read from side `s`, to be written to side `1 - s`.
    dirs: [Dir; 2],
    readable: [bool; 2],
    writable: [bool; 2],
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn register(ep: RawFd, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: valid epoll and socket descriptors; `ev` lives for the call.
    cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
}

fn set_nonblocking_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: plain fcntl/setsockopt on an owned socket.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A non-blocking connect to `target` (completes when the socket turns
/// writable).
fn connect_nonblocking(target: SocketAddr) -> io::Result<RawFd> {
    let domain = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: a new socket; the address is built by socket2-free std types
    // below and outlives the call.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) })?;
    set_nonblocking_nodelay(fd);
    let r = match target {
        SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sa` is a valid sockaddr_in for the call.
            unsafe {
                libc::connect(
                    fd,
                    std::ptr::addr_of!(sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: `sa` is a valid sockaddr_in6 for the call.
            unsafe {
                libc::connect(
                    fd,
                    std::ptr::addr_of!(sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            // SAFETY: closing the socket made above.
            unsafe { libc::close(fd) };
            return Err(e);
        }
    }
    Ok(fd)
}

impl Pair {
    /// Moves bytes both ways as far as readiness allows; `false` once a side
    /// ended (EOF or error): the pair is then closed.
    fn pump(&mut self) -> bool {
        for src in 0..2 {
            let dst = 1 - src;
            loop {
                let d = &mut self.dirs[src];
                if d.start < d.end {
                    if !self.writable[dst] {
                        break;
                    }
                    // SAFETY: writing initialised bytes of our own buffer.
                    let n = unsafe {
                        libc::send(
                            self.fds[dst],
                            d.buf[d.start..].as_ptr().cast(),
                            d.end - d.start,
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    if n < 0 {
                        if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                            self.writable[dst] = false;
                            break;
                        }
                        return false;
                    }
                    d.start += n as usize;
                    if d.start < d.end {
                        self.writable[dst] = false; // short write: the socket is full
                        break;
                    }
                    d.start = 0;
                    d.end = 0;
                }
                if !self.readable[src] {
                    break;
                }
                // SAFETY: reading into our own buffer.
                let n =
                    unsafe { libc::recv(self.fds[src], d.buf.as_mut_ptr().cast(), d.buf.len(), 0) };
                if n == 0 {
                    return false;
                }
                if n < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                        self.readable[src] = false;
                        break;
                    }
                    return false;
                }
                d.end = n as usize;
                if d.end < d.buf.len() {
                    // A short read drained the socket: the next edge says
                    // when there is more (no read just to see EAGAIN).
                    self.readable[src] = false;
                }
            }
        }
        true
    }

    fn close(&self) {
        for fd in self.fds {
            // SAFETY: both descriptors are owned by the pair.
            unsafe { libc::close(fd) };
        }
    }
}

/// Relays every connection accepted on `listen` to `target`, forever.
pub fn serve(listen: SocketAddr, target: SocketAddr) -> Result<(), String> {
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    // The target must answer now, or the floor would measure nothing.
    TcpStream::connect(target).map_err(|e| format!("target {target}: {e}"))?;
    // SAFETY: a new epoll instance.
    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).map_err(|e| e.to_string())?;
    register(ep, listener.as_raw_fd(), LISTENER, libc::EPOLLIN as u32)
        .map_err(|e| e.to_string())?;
    eprintln!("floor relaying {listen} -> {target}");
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let edge = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
    loop {
        // SAFETY: `events` has room for EVENTS entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), EVENTS as libc::c_int, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        for ev in &events[..n as usize] {
            let (flags, token) = (ev.events, ev.u64);
            if token == LISTENER {
                while let Ok((client, _)) = listener.accept() {
                    let Ok(up) = connect_nonblocking(target) else {
                        continue; // dropping `client` closes it
                    };
                    let cfd = client.into_raw_fd();
                    set_nonblocking_nodelay(cfd);
                    let idx = free.pop().unwrap_or_else(|| {
                        pairs.push(None);
                        pairs.len() - 1
                    });
                    let dir = || Dir {
                        buf: vec![0u8; BUF].into_boxed_slice(),
                        start: 0,
                        end: 0,
                    };
                    pairs[idx] = Some(Pair {
                        fds: [cfd, up],
                        dirs: [dir(), dir()],
                        readable: [false; 2],
                        writable: [false; 2],
                    });
                    let ok = register(ep, cfd, (idx as u64) << 1, edge).is_ok()
                        && register(ep, up, (idx as u64) << 1 | 1, edge).is_ok();
                    if !ok {
                        if let Some(p) = pairs[idx].take() {
                            p.close();
                        }
                        free.push(idx);
                    }
                }
                continue;
            }
            let (idx, side) = ((token >> 1) as usize, (token & 1) as usize);
            let Some(p) = pairs.get_mut(idx).and_then(Option::as_mut) else {
                continue; // an event for a pair closed earlier in this batch
            };
            let r = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if flags & r != 0 {
                p.readable[side] = true;
            }
            if flags & libc::EPOLLOUT as u32 != 0 {
                p.writable[side] = true;
            }
            if !p.pump() {
                p.close(); // closing removes both from the epoll set
                pairs[idx] = None;
                free.push(idx);
            }
        }
    }
}
