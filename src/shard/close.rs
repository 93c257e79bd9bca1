//! Why a session ended. One [`CloseReason`] decides the close code and
//! reason wsrelay writes, the side the end is charged to (the
//! `wsrelay_closes_total` label, `closedBy` in the store and `/ops`), and
//! whether the end is abnormal (a field of its log line).

use crate::bridge::Side;
use crate::shard::relay::Fault;

/// How a session ended; the first close decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A peer sent a close frame: its code (1005 when it had none). wsrelay
    /// relays the frame as it came.
    PeerClose {
        /// The peer that closed.
        by: Side,
        /// Its code.
        code: u16,
    },
    /// The client's connection ended without a close frame, or it stopped
    /// answering wsrelay's pings.
    ClientGone,
    /// The target's connection ended without a close frame.
    TargetGone,
    /// No message either way for the endpoint's `timeout_ms`.
    IdleTimeout,
    /// A write made no progress for `send_timeout_ms`.
    SendTimeout,
    /// A peer broke the protocol or a limit (found by a pump).
    Fault(Fault),
    /// The shard asked: a kill, a drain, a shutdown.
    Requested {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
}

impl CloseReason {
    /// The close code (on the wire, in the store and the metric's class).
    pub fn code(&self) -> u16 {
        match *self {
            CloseReason::PeerClose { code, .. } => code,
            CloseReason::ClientGone | CloseReason::IdleTimeout => 1001,
            CloseReason::TargetGone => 1014,
            CloseReason::SendTimeout => 1008,
            CloseReason::Fault(f) => f.code,
            CloseReason::Requested { code, .. } => code,
        }
    }

    /// The reason wsrelay writes in its own close frames and stores ("" for
    /// a peer's close: its own reason is relayed and stored).
    pub fn reason(&self) -> &'static str {
        match *self {
            CloseReason::PeerClose { .. } => "",
            CloseReason::ClientGone => "client went away",
            CloseReason::TargetGone => "target went away",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::SendTimeout => "send timeout",
            CloseReason::Fault(f) => f.reason,
            CloseReason::Requested { reason, .. } => reason,
        }
    }

    /// Whose action ended the session.
    pub fn side(&self) -> Side {
        match *self {
            CloseReason::PeerClose { by, .. } => by,
            CloseReason::ClientGone => Side::Client,
            CloseReason::TargetGone => Side::Target,
            CloseReason::IdleTimeout
            | CloseReason::SendTimeout
            | CloseReason::Fault(_)
            | CloseReason::Requested { .. } => Side::Wsrelay,
        }
    }

    /// Whether the end is abnormal (the `abnormal` field of the session's
    /// end line): a target that vanished, a peer that broke the protocol or
    /// a limit, a peer that stalled — what an operator looks for.
    pub fn abnormal(&self) -> bool {
        matches!(
            self,
            CloseReason::TargetGone | CloseReason::Fault(_) | CloseReason::SendTimeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_knows_its_code_side_and_whether_it_is_abnormal() {
        let fault = Fault {
            code: 1009,
            reason: "message too big",
        };
        let cases = [
            (
                CloseReason::PeerClose {
                    by: Side::Target,
                    code: 4001,
                },
                4001,
                "",
                Side::Target,
                false,
            ),
            (
                CloseReason::ClientGone,
                1001,
                "client went away",
                Side::Client,
                false,
            ),
            (
                CloseReason::TargetGone,
                1014,
                "target went away",
                Side::Target,
                true,
            ),
            (
                CloseReason::IdleTimeout,
                1001,
                "idle timeout",
                Side::Wsrelay,
                false,
            ),
            (
                CloseReason::SendTimeout,
                1008,
                "send timeout",
                Side::Wsrelay,
                true,
            ),
            (
                CloseReason::Fault(fault),
                1009,
                "message too big",
                Side::Wsrelay,
                true,
            ),
            (
                CloseReason::Requested {
                    code: 1008,
                    reason: "killed",
                },
                1008,
                "killed",
                Side::Wsrelay,
                false,
            ),
        ];
        for (r, code, reason, side, abnormal) in cases {
            assert_eq!(
                (r.code(), r.reason(), r.side(), r.abnormal()),
                (code, reason, side, abnormal),
                "{r:?}"
            );
        }
    }

    #[test]
    fn wsrelay_writes_only_codes_allowed_on_the_wire() {
        for r in [
            CloseReason::ClientGone,
            CloseReason::TargetGone,
            CloseReason::IdleTimeout,
            CloseReason::SendTimeout,
        ] {
            assert!(crate::shard::frame::close_code_allowed(r.code()), "{r:?}");
        }
    }
}
