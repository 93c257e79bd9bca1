//! The WebSocket frame codec used on the relay path: header parsing (checked against
//! tungstenite's `FrameHeader`), in-place (re)masking, close-payload rules and
//! the small control frames wsrelay writes itself. Nothing here allocates.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::OpCode;
use tungstenite::protocol::frame::FrameHeader;

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest control frame on the wire: 2 header + 4 mask + 125 payload.
pub const MAX_CONTROL_FRAME: usize = 131;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (low 4 bits of the first byte).
    pub opcode: u8,
    /// Masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes of header on the wire (2–14).
    pub header_len: usize,
}

impl Header {
    /// Control frames are close, ping and pong.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// A frame that breaks RFC 6455; always closes the session with 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RSV bits set without a negotiated extension.
    #[error("reserved bits set")]
    ReservedBits,
    /// Opcode 3–7 or 11–15.
    #[error("reserved opcode")]
    ReservedOpcode,
    /// Control frame longer than 125 bytes or fragmented.
    #[error("bad control frame")]
    BadControl,
    /// 64-bit length with the top bit set.
    #[error("bad length")]
    BadLength,
}

/// Parses one frame header from the front of `buf`; `Ok(None)` if incomplete.
///
/// Read straight from the bytes: on the relay path this runs once per frame,
/// and tungstenite's `FrameHeader::parse` (an `io::Read` over a `Cursor`, an
/// error type that is dropped on every call) cost 4 % of a shard's CPU at
/// 64-byte messages. It answers exactly as [`parse_header_reference`] (built
/// on tungstenite) on every input: the unit tests and the `frame_header` fuzz
/// target compare the two.
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let (first, second) = match buf {
        [a, b, ..] => (*a, *b),
        _ => return Ok(None),
    };
    let masked = second & 0x80 != 0;
    let (len, at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (
                u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                10,
            ),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let (mask, header_len) = if masked {
        match buf.get(at..at + 4) {
            Some(m) => (Some([m[0], m[1], m[2], m[3]]), at + 4),
            None => return Ok(None),
        }
    } else {
        (None, at)
    };
    let opcode = first & 0x0F;
    if matches!(opcode, 3..=7 | 11..=15) {
        return Err(FrameError::ReservedOpcode);
    }
    let header = Header {
        fin: first & 0x80 != 0,
        opcode,
        mask,
        len,
        header_len,
    };
    checked(header, first & 0x70 != 0)
}

/// The rules both parsers apply to a complete header with a known opcode:
/// no RSV bit (`rsv`), a 63-bit length, a control frame whole and short.
#[inline]
fn checked(header: Header, rsv: bool) -> Result<Option<Header>, FrameError> {
    if rsv {
        return Err(FrameError::ReservedBits);
    }
    if header.len >> 63 != 0 {
        return Err(FrameError::BadLength);
    }
    if header.is_control() && (header.len > 125 || !header.fin) {
        return Err(FrameError::BadControl);
    }
    Ok(Some(header))
}

/// The same parse through tungstenite's `FrameHeader::parse` (which finds
/// the header's fields and refuses reserved opcodes; the rules after that
/// are shared): the reference [`parse_header`] is checked against (tests and
/// fuzzing), not used on the relay path.
pub fn parse_header_reference(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut cur = Cursor::new(buf);
    let (h, len) = match FrameHeader::parse(&mut cur) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        Err(_) => return Err(FrameError::ReservedOpcode),
    };
    let opcode: u8 = match h.opcode {
        OpCode::Data(_) | OpCode::Control(_) => u8::from(h.opcode),
    };
    let header = Header {
        fin: h.is_final,
        opcode,
        mask: h.mask,
        len,
        header_len: cur.position() as usize,
    };
    checked(header, h.rsv1 || h.rsv2 || h.rsv3)
}

/// XORs `buf` with `key`, where `buf[0]` is payload byte number `phase` of
/// the frame (so a payload may be processed in pieces).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let mut k = key;
    k.rotate_left(phase & 3);
    let k64 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ k64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// Appends a frame header for a payload of `len` bytes to `out`.
pub fn encode_header(out: &mut Vec<u8>, fin: bool, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let m = if mask.is_some() { 0x80 } else { 0 };
    match len {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
}

/// Appends one frame to `out` (header, masking key, payload masked with it).
/// For peers wsrelay talks to in tests, benches and the load generator; the
/// relay itself rewrites frames in place and never calls this.
pub fn encode(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_header(out, fin, opcode, payload.len(), mask);
    let at = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[at..], k, 0);
    }
}

/// Why a close payload is refused, with the close code to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// Length 1, or a code that may not be sent: 1002.
    Protocol,
    /// Reason is not UTF-8: 1007.
    BadUtf8,
}

impl CloseError {
    /// The close code to answer with.
    pub fn code(self) -> u16 {
        match self {
            CloseError::Protocol => 1002,
            CloseError::BadUtf8 => 1007,
        }
    }
}

/// May `code` appear in a close frame on the wire? (RFC 6455 7.4, IANA registry.)
/// 1005, 1006 and 1015 never may.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Validates an (unmasked) close payload; returns the code, if any.
pub fn check_close_payload(p: &[u8]) -> Result<Option<u16>, CloseError> {
    match p.len() {
        0 => Ok(None),
        1 => Err(CloseError::Protocol),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            if !close_code_allowed(code) {
                return Err(CloseError::Protocol);
            }
            std::str::from_utf8(&p[2..]).map_err(|_| CloseError::BadUtf8)?;
            Ok(Some(code))
        }
    }
}

/// A control frame wsrelay writes itself (close or ping): kept as its
/// ingredients (about 40 bytes, not the 131 of a rendered frame, since every
/// session has room for two) and rendered when written.
#[derive(Debug, Clone, Copy)]
pub struct ControlFrame {
    /// Opcode of the frame.
    pub opcode: u8,
    code: u16,
    reason: &'static str,
    ping: [u8; 8],
    ping_len: u8,
    mask: Option<[u8; 4]>,
}

impl ControlFrame {
    /// A close frame with `code` and `reason` (cut to fit 123 bytes on a char
    /// boundary). `code` must be one that may go on the wire.
    pub fn close(code: u16, reason: &'static str, mask: Option<[u8; 4]>) -> ControlFrame {
        debug_assert!(close_code_allowed(code), "{code} may not go on the wire");
        ControlFrame {
            opcode: OP_CLOSE,
            code,
            reason,
            ping: [0; 8],
            ping_len: 0,
            mask,
        }
    }

    /// A ping frame carrying `payload` (at most 8 bytes).
    pub fn ping(payload: &[u8], mask: Option<[u8; 4]>) -> ControlFrame {
        let n = payload.len().min(8);
        let mut ping = [0u8; 8];
        ping[..n].copy_from_slice(&payload[..n]);
        ControlFrame {
            opcode: OP_PING,
            code: 0,
            reason: "",
            ping,
            ping_len: n as u8,
            mask,
        }
    }

    /// Renders the frame into `out`; returns its length.
    pub fn render(&self, out: &mut [u8; MAX_CONTROL_FRAME]) -> usize {
        let mut p = [0u8; 125];
        let plen = if self.opcode == OP_CLOSE {
            p[..2].copy_from_slice(&self.code.to_be_bytes());
            let mut r = self.reason.len().min(123);
            while !self.reason.is_char_boundary(r) {
                r -= 1;
            }
            p[2..2 + r].copy_from_slice(&self.reason.as_bytes()[..r]);
            2 + r
        } else {
            let n = self.ping_len as usize;
            p[..n].copy_from_slice(&self.ping[..n]);
            n
        };
        out[0] = 0x80 | self.opcode;
        out[1] = plen as u8 | if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        if let Some(m) = self.mask {
            out[2..6].copy_from_slice(&m);
            at = 6;
        }
        out[at..at + plen].copy_from_slice(&p[..plen]);
        if let Some(m) = self.mask {
            apply_mask(&mut out[at..at + plen], m, 0);
        }
        at + plen
    }

    /// The rendered bytes (for tests and logs).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = [0u8; MAX_CONTROL_FRAME];
        let n = self.render(&mut out);
        out[..n].to_vec()
    }
}

#[cfg(test)]
mod tests;
