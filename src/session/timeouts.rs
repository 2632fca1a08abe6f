//! Every timeout of the live layer, and every margin added to one, in one place.
//!
//! Two kinds of numbers live here:
//! - **bounds** the SDK enforces (how long to wait for a join, a reply, a frame);
//! - **margins**: where one side of a channel enforces a bound and the other side waits for
//!   its verdict, the waiting side waits a little longer than the bound, so that the precise
//!   error of the side that enforces it (e.g. "response timeout" from the RPC engine) arrives
//!   first and the margin only ever fires if that side is gone. A margin never changes when
//!   a call fails; it only decides which error reports it.
//!
//! Other modules use these names; nothing else in the live layer spells a duration.

use std::time::Duration;

// ---- Joining a room ------------------------------------------------------------------------

/// Default bound of joining a room: signaling, ICE, DTLS and the data channel
/// ([`crate::ConnectOptions::connect_timeout`], [`crate::RuntimeHost::connect`]'s argument).
/// One value for every way in (the engine's own default used to be 10 s, the session's 15 s).
pub(crate) const CONNECT: Duration = Duration::from_secs(15);

/// How long an interrupted room link may take to come back (resume, then full reconnect)
/// before the session is disconnected. The official clients give up after 10 attempts
/// (about 40 s); this counts time, so attempts that fail at once (interface down) do not
/// use it up.
pub(crate) const RECONNECT: Duration = Duration::from_secs(60);

/// Margin on [`CONNECT`]: the connection task enforces the connect timeout and reports why it
/// failed (which step timed out); the blocking `Room::connect` waits this much longer for
/// that report before it gives up on its own.
pub(crate) const CONNECT_RESULT_MARGIN: Duration = Duration::from_secs(2);

/// After a failed join, how long `Room::connect` waits for the connection task to release
/// its sockets before returning the error.
pub(crate) const FAILED_CONNECT_CLEANUP: Duration = Duration::from_secs(2);

// ---- Leaving a room ------------------------------------------------------------------------

/// How long closing (or dropping) a room waits for its connection task to end. The task
/// sends its leave within [`LEAVE_SEND`] and then only releases resources.
pub(crate) const CLOSE: Duration = Duration::from_secs(3);

/// Bound of telling the server we leave (best effort: the socket may already be gone).
pub(crate) const LEAVE_SEND: Duration = Duration::from_millis(500);

/// Bound of the executor's shutdown once the last room is gone.
pub(crate) const EXECUTOR_SHUTDOWN: Duration = Duration::from_secs(2);

// ---- RPC -----------------------------------------------------------------------------------

/// LiveKit's acknowledgement timeout: a request not acknowledged within this fails with
/// `ConnectionTimeout` (the recipient is unreachable or not answering at all). The default of
/// engine-level calls, and the cap of a probe's; a runtime call instead gives its
/// acknowledgement its whole timeout (the call's deadline is its own, end to end).
pub(crate) const RPC_ACK: Duration = Duration::from_secs(7);

/// The engine's default response timeout (every runtime call sets its own, see below).
pub(crate) const RPC_RESPONSE_DEFAULT: Duration = Duration::from_secs(15);

/// Margin on ack + response timeout for the caller's wait on the engine's verdict: 2 s of
/// `livekit-rpc`'s grace after a recipient leaves (it fails pending calls 2 s later), plus
/// 1 s of scheduling slack.
pub(crate) const RPC_RESULT_MARGIN: Duration = Duration::from_secs(3);

// ---- Runtime calls -------------------------------------------------------------------------

// A runtime call's timeout is its whole deadline once the runtime is found: the request, its
// acknowledgement, the reply, a wait for a lost link to come back and a read's one resend
// after a full reconnect all fit in it.

/// Default reply timeout of `runtime.tools_call` (an action runs to its end before replying).
pub(crate) const TOOL_CALL: Duration = Duration::from_secs(90);

/// Default reply timeout of reads, cancel, capabilities, capture acks and envelopes.
pub(crate) const READ: Duration = Duration::from_secs(30);

/// How long `get_vision` waits for the camera frame after the capture was acknowledged (or
/// after the ack timed out: the runtime may stream the frame before it acks).
pub(crate) const CAPTURE_FRAME: Duration = Duration::from_secs(30);

// ---- Finding the runtime (CONTRACT §6, §7) --------------------------------------------------

/// Default bound of readiness waits and of finding the runtime worker
/// ([`crate::ConnectOptions::session_ready_timeout`]).
pub(crate) const SESSION_READY: Duration = Duration::from_secs(120);

/// How long one candidate gets to answer the `runtime.tools_list` probe (its ack timeout is
/// the smaller of this and [`RPC_ACK`]).
pub(crate) const PROBE: Duration = Duration::from_secs(5);

/// The pause between two rounds of probes when no candidate answered.
pub(crate) const PROBE_RETRY: Duration = Duration::from_millis(500);

// ---- Sending -------------------------------------------------------------------------------

/// Bound of queuing a byte stream on the reliable channel (`RuntimeHost::send_bytes`).
pub(crate) const SEND_BYTES: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_are_shorter_than_the_bounds_they_extend() {
        assert!(CONNECT_RESULT_MARGIN < CONNECT);
        assert!(RPC_RESULT_MARGIN < RPC_ACK);
        // A probe is one call: it must not outlast resolution's own bound.
        assert!(PROBE + RPC_RESULT_MARGIN < SESSION_READY);
        assert!(PROBE_RETRY < PROBE);
    }

    #[test]
    fn leaving_fits_in_the_close_wait() {
        assert!(LEAVE_SEND < CLOSE);
    }
}
