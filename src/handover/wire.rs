//! Live sessions on the control socket (SPEC 4.6): after `released`, the
//! old process sends each session that came to rest at a frame boundary as
//! one parcel, and the successor answers each in order.
//!
//! - old → new, per session: a 4-byte big-endian length, then that many
//!   bytes of [`SessionRecord`] (JSON), sent in one `sendmsg` with exactly
//!   two descriptors attached: the client's socket, then the target's;
//! - new → old: `adopted\n` once the session relays in the successor, or
//!   `refused <why>\n` (the old process keeps it and closes it with 1012 at
//!   its drain deadline);
//! - old → new: a length of 0 ends the sessions.
//!
//! A parcel is refused whole when it is truncated, too long, not a record,
//! or carries any number of descriptors but two.

use std::io::{Read, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::shard::relay::PumpState;

/// The largest record accepted (a record is a few hundred bytes; its
/// unparsed bytes are at most a control frame).
pub const MAX_RECORD: usize = 64 * 1024;

/// A live session as it moves: everything the successor needs to resume
/// relaying it with the same id. Times are ages, not instants (clocks of
/// two processes do not compare).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// Session id (kept in the API, `/ops` and the store).
    pub id: uuid::Uuid,
    /// The node it runs on.
    pub node: String,
    /// Endpoint id.
    pub endpoint: String,
    /// The client's address.
    pub client: std::net::SocketAddr,
    /// Unix ms of the session's start.
    pub started_at_ms: i64,
    /// Client → target.
    pub c2u: PumpState,
    /// Target → client.
    pub u2c: PumpState,
    /// Milliseconds since wsrelay's unanswered heartbeat ping was sent.
    pub ping_ago_ms: Option<u64>,
    /// Heartbeat pings in a row the client left unanswered.
    pub missed_pongs: u32,
    /// The heartbeat ping counter.
    pub ping_seq: u64,
}

/// A session's two descriptors, in parcel order.
pub struct SessionFds {
    /// The client's socket.
    pub client: OwnedFd,
    /// The target's socket.
    pub target: OwnedFd,
}

/// Sends one session (old side).
pub fn send_session(
    link: &UnixStream,
    record: &SessionRecord,
    client: RawFd,
    target: RawFd,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let mut msg = Vec::with_capacity(4 + body.len());
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    crate::sys::send_with_fds(link, &msg, &[client, target])
}

/// Ends the sessions (old side).
pub fn send_end(mut link: &UnixStream) -> std::io::Result<()> {
    link.write_all(&0u32.to_be_bytes())
}

/// What the successor read.
pub enum Received {
    /// One session.
    Session(Box<SessionRecord>, SessionFds),
    /// No more sessions.
    End,
}

fn invalid(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

/// Reads the next parcel (successor side). Any error ends the handover of
/// sessions; the descriptors of a refused parcel are closed.
pub fn read_parcel(link: &UnixStream) -> std::io::Result<Received> {
    let mut len = [0u8; 4];
    // The descriptors come with the parcel's first bytes.
    let (n, mut fds) = crate::sys::recv_with_fds(link, &mut len)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the old process closed the control link without ending the sessions",
        ));
    }
    (&*link)
        .read_exact(&mut len[n..])
        .map_err(|e| truncated("length", e))?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        if !fds.is_empty() {
            return Err(invalid(format!(
                "{} descriptors with the end of sessions",
                fds.len()
            )));
        }
        return Ok(Received::End);
    }
    if len > MAX_RECORD {
        return Err(invalid(format!(
            "a session record of {len} bytes (at most {MAX_RECORD})"
        )));
    }
    let mut body = vec![0u8; len];
    (&*link)
        .read_exact(&mut body)
        .map_err(|e| truncated("session record", e))?;
    if fds.len() != 2 {
        return Err(invalid(format!(
            "a session with {} descriptors (two expected)",
            fds.len()
        )));
    }
    let record: SessionRecord =
        serde_json::from_slice(&body).map_err(|e| invalid(format!("not a session record: {e}")))?;
    let target = fds.pop().expect("two");
    let client = fds.pop().expect("two");
    Ok(Received::Session(
        Box::new(record),
        SessionFds { client, target },
    ))
}

fn truncated(what: &str, e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        invalid(format!("truncated {what}"))
    } else {
        e
    }
}

/// The successor's answer to one parcel.
pub fn send_answer(mut link: &UnixStream, outcome: &Result<(), String>) -> std::io::Result<()> {
    let line = match outcome {
        Ok(()) => "adopted\n".to_string(),
        Err(why) => format!("refused {}\n", why.replace('\n', " ")),
    };
    link.write_all(line.as_bytes())
}

/// Reads the successor's answer: `Ok(true)` adopted, `Ok(false)` refused.
pub fn read_answer(reader: &mut impl std::io::BufRead) -> std::io::Result<Result<(), String>> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    if line == "adopted" {
        Ok(Ok(()))
    } else if let Some(why) = line.strip_prefix("refused") {
        Ok(Err(why.trim().to_string()))
    } else if line.is_empty() {
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the successor went away",
        ))
    } else {
        Err(invalid(format!("the successor said {line:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn record() -> SessionRecord {
        let pump = PumpState {
            messages: 3,
            bytes: 120,
            msg_open: true,
            msg_size: 10,
            msg_opcode: 1,
            pending: vec![0x80, 0x85],
            last_msg_ago_ms: 40,
            last_rx_ago_ms: 5,
            pong_token: Some(*b"12345678"),
        };
        SessionRecord {
            id: uuid::Uuid::new_v4(),
            node: "host:8080".into(),
            endpoint: "echo".into(),
            client: "127.0.0.1:5555".parse().unwrap(),
            started_at_ms: 1_700_000_000_000,
            c2u: pump.clone(),
            u2c: PumpState {
                pong_token: None,
                ..pump
            },
            ping_ago_ms: Some(7),
            missed_pongs: 1,
            ping_seq: 99,
        }
    }

    /// Two sockets to stand for a session's legs.
    fn legs() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    #[test]
    fn a_session_crosses_with_its_record_and_both_descriptors() {
        let (old, new) = UnixStream::pair().unwrap();
        let (a, b) = legs();
        let r = record();
        send_session(&old, &r, a.as_raw_fd(), b.as_raw_fd()).unwrap();
        send_end(&old).unwrap();
        match read_parcel(&new).unwrap() {
            Received::Session(got, fds) => {
                assert_eq!(*got, r);
                // The same sockets arrived: `a` and `b` are a pair, so a
                // byte written on the one is read on the other.
                let mut client = UnixStream::from(fds.client);
                client.write_all(b"x").unwrap();
                let mut target = UnixStream::from(fds.target);
                let mut buf = [0u8; 1];
                target.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"x");
            }
            Received::End => panic!("a session was sent"),
        }
        assert!(matches!(read_parcel(&new).unwrap(), Received::End));
    }

    #[test]
    fn a_truncated_record_is_refused() {
        let (old, new) = UnixStream::pair().unwrap();
        let (a, b) = legs();
        let body = serde_json::to_vec(&record()).unwrap();
        let mut msg = (body.len() as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body[..body.len() / 2]);
        crate::sys::send_with_fds(&old, &msg, &[a.as_raw_fd(), b.as_raw_fd()]).unwrap();
        drop(old);
        let e = read_parcel(&new).err().expect("refused");
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn a_record_without_its_two_descriptors_is_refused() {
        let (old, new) = UnixStream::pair().unwrap();
        let (a, _b) = legs();
        let body = serde_json::to_vec(&record()).unwrap();
        let mut msg = (body.len() as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        crate::sys::send_with_fds(&old, &msg, &[a.as_raw_fd()]).unwrap();
        let e = read_parcel(&new).err().expect("refused");
        assert!(e.to_string().contains("1 descriptors"), "{e}");
    }

    #[test]
    fn garbage_and_oversized_records_are_refused() {
        let (old, new) = UnixStream::pair().unwrap();
        let (a, b) = legs();
        let mut msg = 5u32.to_be_bytes().to_vec();
        msg.extend_from_slice(b"hello");
        crate::sys::send_with_fds(&old, &msg, &[a.as_raw_fd(), b.as_raw_fd()]).unwrap();
        let e = read_parcel(&new).err().expect("refused");
        assert!(e.to_string().contains("not a session record"), "{e}");
        (&old)
            .write_all(&(MAX_RECORD as u32 + 1).to_be_bytes())
            .unwrap();
        let e = read_parcel(&new).err().expect("refused");
        assert!(e.to_string().contains("at most"), "{e}");
    }

    #[test]
    fn answers_round_trip_and_silence_is_an_error() {
        let (old, new) = UnixStream::pair().unwrap();
        send_answer(&new, &Ok(())).unwrap();
        send_answer(&new, &Err("endpoint\ngone".into())).unwrap();
        (&new).write_all(b"what\n").unwrap();
        drop(new);
        let mut r = std::io::BufReader::new(&old);
        assert_eq!(read_answer(&mut r).unwrap(), Ok(()));
        assert_eq!(read_answer(&mut r).unwrap(), Err("endpoint gone".into()));
        assert!(read_answer(&mut r).is_err());
        assert!(read_answer(&mut r).is_err(), "EOF");
    }
}
