//! Binary upgrade, listener handover (SPEC 2 `serve --takeover`, 4.6): the
//! running process hands its listening sockets to its successor over the
//! Unix socket `server.control_socket`, so no connection is refused and none
//! queued is dropped (closing a `SO_REUSEPORT` listener resets the
//! connections in its accept queue; handing the socket over keeps them).
//!
//! One Unix stream connection per attempt:
//!
//! 1. the successor connects;
//! 2. old → new: `wsrelay-handover 1 data=N\n` with N + 1 descriptors
//!    (`SCM_RIGHTS`): the N data listeners, then the admin listener;
//! 3. the successor starts its shards on them (any number of shards: a
//!    listener per shard, extra listeners shared out, missing ones bound anew
//!    on the same port), prints its ready line and sends `ready\n`;
//! 4. the old process stops accepting (its copies of the listeners are
//!    closed; the sockets and their queues live on in the successor), removes
//!    its control socket, answers `released\n`, then drains its sessions as on
//!    SIGTERM (closing what is left at `drain_timeout_ms` with 1012
//!    `service restart`) and exits 0;
//! 5. the successor binds the control socket for the next upgrade.
//!
//! A successor that goes away before step 3 (or says nothing for
//! [`READY_TIMEOUT`]) changes nothing: the old process goes on serving and
//! waits for the next one.

pub mod wire;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the successor waits for the next session parcel (a shard may
/// take up to [`crate::shard::HANDOVER_LIMIT`] to finish).
pub const SESSIONS_TIMEOUT: Duration = Duration::from_secs(90);

/// First word of the handover message.
pub const PROTOCOL: &str = "wsrelay-handover 1";
/// How long the old process waits for its successor's `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long each side waits for the other's short answers.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The listeners a successor received, and the link to the old process.
pub struct Inherited {
    /// Data-port listeners (listening, `SO_REUSEPORT`).
    pub data: Vec<socket2::Socket>,
    /// The admin listener.
    pub admin: std::net::TcpListener,
    link: UnixStream,
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inherited")
            .field("data", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// `serve --takeover`: receives the running process's listeners.
pub fn take_over(path: &Path) -> Result<Inherited, String> {
    let link = UnixStream::connect(path).map_err(|e| {
        format!(
            "--takeover: no wsrelay answers on control socket {} ({e})",
            path.display()
        )
    })?;
    let fail = |e: std::io::Error| format!("--takeover: control socket {}: {e}", path.display());
    check_peer(&link, crate::sys::euid())
        .map_err(|e| format!("--takeover: control socket {}: {e}", path.display()))?;
    link.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(fail)?;
    let mut buf = [0u8; 256];
    let (n, mut fds) = crate::sys::recv_with_fds(&link, &mut buf).map_err(fail)?;
    let header = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let data = parse_header(header).ok_or_else(|| {
        format!(
            "--takeover: control socket {}: not a wsrelay handover ({:?})",
            path.display(),
            header.trim_end()
        )
    })?;
    if fds.len() != data + 1 {
        return Err(format!(
            "--takeover: control socket {}: {} descriptors for {data} data listeners and the admin listener",
            path.display(),
            fds.len()
        ));
    }
    let admin = std::net::TcpListener::from(fds.pop().expect("checked"));
    let data = fds.into_iter().map(socket2::Socket::from).collect();
    Ok(Inherited { data, admin, link })
}

/// `wsrelay-handover 1 data=N` → N.
fn parse_header(h: &str) -> Option<usize> {
    let rest = h.strip_prefix(PROTOCOL)?.strip_prefix(" data=")?;
    let n: usize = rest.trim_end().parse().ok()?;
    (n > 0 && n < crate::sys::MAX_FDS).then_some(n)
}

/// Refuses a peer running as another user than `uid` (the control socket
/// is owner-only too; this holds even for root, who ignores file modes).
pub fn check_peer(conn: &UnixStream, uid: u32) -> Result<(), String> {
    let peer = crate::sys::peer_uid(conn).map_err(|e| format!("peer credentials: {e}"))?;
    if peer == uid {
        Ok(())
    } else {
        Err(format!(
            "the peer runs as uid {peer}, this process as uid {uid}"
        ))
    }
}

/// Sessions the successor adopted and refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// Relaying in the successor.
    pub adopted: u64,
    /// Left with the old process.
    pub refused: u64,
}

impl Inherited {
    /// Tells the old process this one serves; returns once it has stopped
    /// accepting and removed its control socket.
    pub fn confirm_ready(&mut self) -> Result<(), String> {
        let mut link = &self.link;
        link.write_all(b"ready\n")
            .map_err(|e| format!("telling the old process: {e}"))?;
        // One byte at a time: the session parcels that follow carry
        // descriptors, which a buffered read would swallow.
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while b[0] != b'\n' && line.len() < 64 {
            match std::io::Read::read(&mut link, &mut b) {
                Ok(0) => break,
                Ok(_) => line.push(b[0]),
                Err(e) => return Err(format!("waiting for the old process: {e}")),
            }
        }
        let line = String::from_utf8_lossy(&line);
        if line.trim_end() != "released" {
            return Err(format!(
                "the old process answered {:?} instead of \"released\"",
                line.trim_end()
            ));
        }
        Ok(())
    }

    /// Receives the old process's live sessions (after
    /// [`Inherited::confirm_ready`]) and gives each to `adopt`, which starts
    /// its adoption and returns a wait for the outcome; the outcomes go back
    /// to the old process in order, from a thread of their own, so the next
    /// parcel is read while a shard adopts the last. Ends when the old
    /// process says there are no more. An error (a truncated or malformed
    /// parcel, a link that fails) ends it: the sessions not yet adopted stay
    /// with the old process.
    pub fn adopt_sessions(
        self,
        mut adopt: impl FnMut(Box<wire::SessionRecord>, wire::SessionFds) -> Adopting,
    ) -> Result<Adopted, (Adopted, String)> {
        let link = self.link;
        if let Err(e) = link.set_read_timeout(Some(SESSIONS_TIMEOUT)) {
            return Err((Adopted::default(), e.to_string()));
        }
        std::thread::scope(|scope| {
            let (waiting, outcomes) = std::sync::mpsc::channel::<Adopting>();
            let link = &link;
            let answers = scope.spawn(move || {
                let mut n = Adopted::default();
                for wait in outcomes {
                    let outcome = wait();
                    match &outcome {
                        Ok(()) => n.adopted += 1,
                        Err(_) => n.refused += 1,
                    }
                    if let Err(e) = wire::send_answer(link, &outcome) {
                        return Err((n, format!("answering the old process: {e}")));
                    }
                }
                Ok(n)
            });
            let read = loop {
                match wire::read_parcel(link) {
                    Ok(wire::Received::End) => break Ok(()),
                    Ok(wire::Received::Session(record, fds)) => {
                        if waiting.send(adopt(record, fds)).is_err() {
                            break Ok(()); // the answers failed: reported below
                        }
                    }
                    Err(e) => break Err(e.to_string()),
                }
            };
            drop(waiting);
            let answered = answers.join().unwrap_or_else(|_| {
                Err((Adopted::default(), "the answering thread panicked".into()))
            });
            match (answered, read) {
                (Ok(n), Ok(())) => Ok(n),
                (Ok(n), Err(e)) => Err((n, e)),
                (Err(e), _) => Err(e),
            }
        })
    }
}

/// A session's adoption under way in a shard: waits for its outcome.
pub type Adopting = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Binds the control socket (owner-only). A socket file that answers is
/// another wsrelay serving: refused, with the way to replace it; one that
/// does not is left over from a process that died, and is replaced.
pub fn bind_control(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "server.control_socket: another wsrelay serves on {} (replace it with `wsrelay serve --takeover`)",
                path.display()
            ));
        }
        std::fs::remove_file(path).map_err(|e| {
            format!(
                "server.control_socket: cannot remove the stale {}: {e}",
                path.display()
            )
        })?;
    }
    let l = UnixListener::bind(path).map_err(|e| {
        format!(
            "server.control_socket: cannot listen on {}: {e}",
            path.display()
        )
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("server.control_socket: {}: {e}", path.display()))?;
    Ok(l)
}

/// The control socket's file, removed once: when a successor took over
/// (it binds its own there next), when the process starts draining (a
/// draining process offers no takeover, and a plain `serve` may start beside
/// it) or when it exits.
#[derive(Debug)]
pub struct ControlFile {
    path: PathBuf,
    released: std::sync::atomic::AtomicBool,
}

impl ControlFile {
    /// The file at `path`, bound by this process.
    pub fn new(path: PathBuf) -> ControlFile {
        ControlFile {
            path,
            released: Default::default(),
        }
    }

    /// Removes the file unless it was already released.
    pub fn release(&self) {
        if !self
            .released
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the running process hands over: its own copies of its listeners.
pub struct Listeners {
    /// Data listeners.
    pub data: Vec<OwnedFd>,
    /// The admin listener.
    pub admin: OwnedFd,
}

/// Where the shards' sessions come from once they hand over.
pub struct SessionSource {
    /// Parcels from every shard.
    pub parcels: async_channel::Receiver<crate::bridge::Parcel>,
    /// Shards that will each end with [`crate::bridge::Parcel::ShardDone`].
    pub shards: usize,
}

/// Serves the control socket on a thread of its own until a successor
/// reports ready; then closes the socket, removes its file, lets the
/// successor go on and calls `handed_over` (which stops this process
/// accepting, has its shards send their sessions and drains it), and passes
/// the sessions on to the successor.
pub fn serve_control(
    listener: UnixListener,
    file: std::sync::Arc<ControlFile>,
    fds: Listeners,
    handed_over: impl FnOnce() -> SessionSource + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("control socket: {e}");
                        continue;
                    }
                };
                match hand_over(&conn, &fds) {
                    Ok(()) => {
                        drop(listener);
                        file.release();
                        // The successor binds the socket once it reads this.
                        let mut c = &conn;
                        let _ = c.write_all(b"released\n");
                        tracing::info!(
                            "listeners handed over to the successor; draining this process"
                        );
                        drop(fds);
                        let sessions = handed_over();
                        move_sessions(&conn, sessions);
                        return;
                    }
                    Err(e) => tracing::warn!(
                        "a successor failed before it was ready ({e}); still serving"
                    ),
                }
            }
        })
        .map(|_| ())
}

/// Passes each session parcel to the successor and its answer back to the
/// session, until every shard is done; then ends the sessions. Parcels go
/// out as they come (a thread of its own reads the answers, which come in
/// the same order), so the sessions' pause is not one round trip each in a
/// row. Once the link fails, every session not yet answered stays (its
/// shard closes it with 1012 at the drain deadline).
fn move_sessions(conn: &UnixStream, from: SessionSource) {
    use crate::bridge::Parcel;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    type Reply = async_channel::Sender<Result<(), String>>;
    let _ = conn.set_read_timeout(Some(REPLY_TIMEOUT));
    let failed = std::sync::OnceLock::<String>::new();
    let fail = |e: std::io::Error| {
        let m = format!("the successor failed: {e}");
        if failed.set(m.clone()).is_ok() {
            tracing::warn!(
                "the successor failed during the session handover ({e}); the rest stay here"
            );
        }
        m
    };
    let (moved, stayed) = (AtomicU64::new(0), AtomicU64::new(0));
    let answer = |reply: Reply, outcome: Result<(), String>| {
        match outcome {
            Ok(()) => moved.fetch_add(1, Relaxed),
            Err(_) => stayed.fetch_add(1, Relaxed),
        };
        let _ = reply.send_blocking(outcome);
    };
    std::thread::scope(|scope| {
        let (waiting, answered) = std::sync::mpsc::channel::<Reply>();
        scope.spawn(|| {
            let mut answers = BufReader::new(conn);
            for reply in answered {
                let outcome = match failed.get() {
                    Some(e) => Err(e.clone()),
                    None => wire::read_answer(&mut answers).unwrap_or_else(|e| Err(fail(e))),
                };
                answer(reply, outcome);
            }
        });
        let mut done = 0;
        while done < from.shards {
            let Ok(parcel) = from.parcels.recv_blocking() else {
                break;
            };
            let Parcel::Session { record, fds, reply } = parcel else {
                done += 1;
                continue;
            };
            if let Some(e) = failed.get() {
                answer(reply, Err(e.clone()));
                continue;
            }
            let sent = wire::send_session(
                conn,
                &record,
                fds.client.as_raw_fd(),
                fds.target.as_raw_fd(),
            );
            match sent {
                Ok(()) => {
                    let _ = waiting.send(reply);
                }
                Err(e) => answer(reply, Err(fail(e))),
            }
        }
        if failed.get().is_none() {
            let _ = wire::send_end(conn);
        }
        // The reader answers what is still waiting, then ends.
        drop(waiting);
    });
    tracing::info!(
        moved = moved.load(Relaxed),
        stayed = stayed.load(Relaxed),
        "live sessions handed over to the successor"
    );
    // A session that came to rest after its shard was done stays.
    while let Ok(p) = from.parcels.recv_blocking() {
        if let Parcel::Session { reply, .. } = p {
            let _ = reply.send_blocking(Err("the handover is over".into()));
        }
    }
}

/// Sends the listeners and waits for `ready`.
fn hand_over(conn: &UnixStream, fds: &Listeners) -> std::io::Result<()> {
    check_peer(conn, crate::sys::euid())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
    let mut raw: Vec<RawFd> = fds.data.iter().map(|f| f.as_raw_fd()).collect();
    raw.push(fds.admin.as_raw_fd());
    let header = format!("{PROTOCOL} data={}\n", fds.data.len());
    crate::sys::send_with_fds(conn, header.as_bytes(), &raw)?;
    conn.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    if line.trim_end() == "ready" {
        Ok(())
    } else if line.is_empty() {
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "it went away",
        ))
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it said {:?}", line.trim_end()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_data_listeners() {
        assert_eq!(parse_header("wsrelay-handover 1 data=2\n"), Some(2));
        assert_eq!(parse_header("wsrelay-handover 1 data=0\n"), None);
        assert_eq!(parse_header("wsrelay-handover 2 data=2\n"), None);
        assert_eq!(parse_header("HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse_header("wsrelay-handover 1 data=99999\n"), None);
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("wsrelay-{name}-{}.sock", std::process::id()))
    }

    /// A running process's side: a control socket served with one data and
    /// one admin listener; `done` hears of the handover.
    struct Old {
        path: PathBuf,
        data: std::net::SocketAddr,
        admin: std::net::SocketAddr,
        done: std::sync::mpsc::Receiver<()>,
    }

    impl Old {
        fn serve(name: &str) -> Old {
            let path = temp_path(name);
            let _ = std::fs::remove_file(&path);
            let control = bind_control(&path).expect("bind");
            let data = std::net::TcpListener::bind("127.0.0.1:0").expect("data");
            let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("admin");
            let (data_addr, admin_addr) = (data.local_addr().unwrap(), admin.local_addr().unwrap());
            let (done_tx, done) = std::sync::mpsc::channel();
            serve_control(
                control,
                std::sync::Arc::new(ControlFile::new(path.clone())),
                Listeners {
                    data: vec![OwnedFd::from(data)],
                    admin: OwnedFd::from(admin),
                },
                move || {
                    done_tx.send(()).unwrap();
                    SessionSource {
                        parcels: async_channel::bounded(1).1,
                        shards: 0,
                    }
                },
            )
            .expect("serve");
            Old {
                path,
                data: data_addr,
                admin: admin_addr,
                done,
            }
        }
    }

    /// Listeners go over the socket and stay the same sockets: a connection
    /// queued on the old process's listener is accepted by the successor.
    #[test]
    fn listeners_and_their_queues_reach_the_successor() {
        let old = Old::serve("handover");
        let (path, addr, admin_addr, done) = (&old.path, old.data, old.admin, &old.done);
        // Queued before the handover, never accepted by the old side.
        let queued = std::net::TcpStream::connect(addr).expect("connect");
        let mut got = take_over(path).expect("take over");
        assert_eq!(got.data.len(), 1);
        assert_eq!(got.admin.local_addr().unwrap(), admin_addr);
        let listener: std::net::TcpListener = got.data[0].try_clone().unwrap().into();
        assert_eq!(listener.local_addr().unwrap(), addr);
        got.confirm_ready().expect("released");
        done.recv_timeout(REPLY_TIMEOUT).expect("handed over");
        assert!(!path.exists(), "the old control socket is gone");
        let (mut s, _) = listener.accept().expect("the queued connection");
        let mut q = queued;
        q.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut s, &mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    /// A successor that goes away before it is ready changes nothing: the
    /// next one gets the listeners.
    #[test]
    fn a_successor_that_fails_before_ready_changes_nothing() {
        let old = Old::serve("failed");
        let (path, done) = (&old.path, &old.done);
        let first = take_over(path).expect("first");
        drop(first); // dies before ready
        assert!(
            done.try_recv().is_err(),
            "nothing was handed over to a successor that failed"
        );
        let mut second = take_over(path).expect("second");
        second.confirm_ready().expect("released");
        done.recv_timeout(REPLY_TIMEOUT).expect("handed over");
    }

    #[test]
    fn a_peer_of_another_user_is_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(check_peer(&a, crate::sys::euid()), Ok(()));
        let e = check_peer(&a, crate::sys::euid() + 1).unwrap_err();
        assert!(e.contains("runs as uid"), "{e}");
    }

    /// The control socket is owner-only; even with its mode opened up (or
    /// for root, who ignores modes) a process of another user gets nothing.
    #[test]
    fn the_old_process_hands_nothing_to_another_user() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let old = Old::serve("uid");
        let mode = std::fs::metadata(&old.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
        if crate::sys::euid() != 0 {
            eprintln!("skipped: connecting as another user needs root");
            return;
        }
        std::fs::set_permissions(&old.path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect(sys.argv[1])\nprint(len(s.recv(256)))")
            .arg(&old.path)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "nothing sent"
        );
        assert!(old.done.try_recv().is_err(), "nothing handed over");
        // The owner's successor still gets the listeners.
        let mut got = take_over(&old.path).expect("take over");
        got.confirm_ready().expect("released");
        old.done.recv_timeout(REPLY_TIMEOUT).expect("handed over");
    }

    #[test]
    fn no_process_on_the_socket_is_one_line() {
        let path = temp_path("nobody");
        let _ = std::fs::remove_file(&path);
        let e = take_over(&path).unwrap_err();
        assert!(e.contains("no wsrelay answers on control socket"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn a_live_control_socket_is_not_taken_by_a_second_serve() {
        let path = temp_path("live");
        let _ = std::fs::remove_file(&path);
        let _l = bind_control(&path).expect("bind");
        let e = bind_control(&path).unwrap_err();
        assert!(e.contains("--takeover"), "{e}");
        drop(_l);
        // A file left by a dead process is replaced.
        assert!(bind_control(&path).is_ok());
        let _ = std::fs::remove_file(&path);
    }
}
