//! The crate's only `unsafe` code: handing a bound socket to glommio,
//! taking ownership of descriptors received over a Unix socket, reading
//! process limits and the CPU affinity mask.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, IntoRawFd};

/// Wraps a bound, listening socket as a glommio listener on this executor.
pub fn listener_from_socket(s: socket2::Socket) -> glommio::net::TcpListener {
    let fd = s.into_raw_fd();
    // SAFETY: `fd` is an open, listening TCP socket whose ownership moves here.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}

/// Wraps a connected TCP socket (received from the predecessor of a binary
/// upgrade) as a glommio stream on this executor.
pub fn stream_from_fd(fd: std::os::fd::OwnedFd) -> glommio::net::TcpStream {
    let fd = fd.into_raw_fd();
    // SAFETY: `fd` is an open, connected TCP socket whose ownership moves here.
    unsafe { glommio::net::TcpStream::from_raw_fd(fd) }
}

/// A second descriptor for the open socket `fd` (close-on-exec).
pub fn dup_fd(fd: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: callers pass the descriptor of a stream they own and keep open
    // for the duration of this call.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// The user id of the process at the other end of a Unix socket.
pub fn peer_uid(sock: &std::os::unix::net::UnixStream) -> std::io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    use std::os::fd::AsFd;
    let cred = getsockopt(&sock.as_fd(), PeerCredentials)?;
    Ok(cred.uid())
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sends `bytes` with the descriptors `fds` attached (`SCM_RIGHTS`) on a
/// Unix stream socket.
pub fn send_with_fds(
    sock: &std::os::unix::net::UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let iov = [std::io::IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    if sent != bytes.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short write with descriptors",
        ));
    }
    Ok(())
}

/// Receives one message of at most `buf.len()` bytes and up to `MAX_FDS`
/// descriptors (close-on-exec) on a Unix stream socket: (bytes, descriptors).
pub fn recv_with_fds(
    sock: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    let mut fds = Vec::new();
    for c in msg.cmsgs() {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in this process for
                // this message; nothing else owns it.
                fds.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if truncated {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {MAX_FDS} descriptors"),
        ));
    }
    Ok((msg.bytes, fds))
}

/// Descriptors one handover message may carry.
pub const MAX_FDS: usize = 256;

/// This process's resident set size in bytes (`/proc/self/statm`).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The standard `process_*` figures Prometheus clients export, from
/// `/proc/self` (Linux).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on file descriptors.
    pub max_fds: u64,
}

/// Reads [`ProcessStats`]; `None` where `/proc` is not mounted.
pub fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. Field 3 (state) is then the first.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Option<u64> { f.get(i - 3)?.parse().ok() };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)? as f64;
    let cpu_seconds = (num(14)? + num(15)?) as f64 / ticks;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let start_time_seconds = boot as f64 + num(22)? as f64 / ticks;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`.
    let max_fds = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    };
    Some(ProcessStats {
        cpu_seconds,
        start_time_seconds,
        virtual_bytes: num(23)?,
        open_fds,
        max_fds,
    })
}

/// Returns memory the allocator holds free to the kernel (glibc keeps freed
/// heap memory for reuse, so resident memory would not fall after sessions
/// end; elsewhere this does nothing).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes (`None` = unlimited).
pub fn memlock_limit() -> std::io::Result<Option<u64>> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid out-pointer for getrlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur))
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    if !ok {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Shuts a socket down both ways right now (a plain syscall, no waiting).
pub fn shutdown_now(s: &impl std::os::fd::AsRawFd) {
    // SAFETY: `s` owns an open socket for the duration of the call.
    unsafe {
        libc::shutdown(s.as_raw_fd(), libc::SHUT_RDWR);
    }
}

/// Bounds a socket's kernel buffers (`SO_SNDBUF`/`SO_RCVBUF`; 0 leaves one to
/// the kernel's autotuning). Best effort: a refusal is not worth a session.
pub fn set_socket_buffers(s: &impl std::os::fd::AsRawFd, send: usize, recv: usize) {
    let fd = s.as_raw_fd();
    for (opt, v) in [(libc::SO_SNDBUF, send), (libc::SO_RCVBUF, recv)] {
        if v == 0 {
            continue;
        }
        let v = libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is an open socket for the call; the value is a c_int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                std::ptr::addr_of!(v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Raises the soft open-files limit to the hard one (each session uses two
/// descriptors); returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer / in-pointer for getrlimit/setrlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
    }
    r.rlim_cur
}
