//! Handles of calls that run off the caller's thread: [`Pending`] for any runtime call and
//! [`PendingAction`] for a skill started with [`crate::Session::start_invoke`].
//!
//! A handle never blocks unless asked to: [`Pending::poll`] hands the owned result once it
//! is there, [`Pending::wait`] blocks until it is, [`Pending::wait_timeout`] blocks at most
//! so long. The call itself (finding the runtime, the RPC, reading the reply) runs on the
//! SDK's executor and is bounded by its own timeouts, so `wait` always returns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel as cb;

use super::Shared;
use crate::error::{Error, Result};
use crate::runtime::ActionResult;

/// A runtime call in flight. Dropping it does not stop the call; its result is discarded.
#[must_use = "a pending call's result is lost unless it is polled or waited for"]
pub struct Pending<T> {
    operation: &'static str,
    rx: cb::Receiver<Result<T>>,
    taken: bool,
}

/// The executor's end of a [`Pending`].
pub(crate) struct Completer<T> {
    tx: cb::Sender<Result<T>>,
}

impl<T> Completer<T> {
    /// Hands the result to the handle (ignored if the handle is gone).
    pub(crate) fn complete(self, result: Result<T>) {
        let _ = self.tx.send(result);
    }
}

/// A new handle for `operation` (named in errors) and the end that completes it.
pub(crate) fn pending<T>(operation: &'static str) -> (Completer<T>, Pending<T>) {
    let (tx, rx) = cb::bounded(1);
    let handle = Pending {
        operation,
        rx,
        taken: false,
    };
    (Completer { tx }, handle)
}

impl<T> Pending<T> {
    /// The result if the call has ended, without blocking. Hands it out once: later polls
    /// return `None`.
    pub fn poll(&mut self) -> Option<Result<T>> {
        if self.taken {
            return None;
        }
        let outcome = match self.rx.try_recv() {
            Ok(result) => result,
            Err(cb::TryRecvError::Empty) => return None,
            Err(cb::TryRecvError::Disconnected) => Err(self.abandoned()),
        };
        self.taken = true;
        Some(outcome)
    }

    /// Blocks until the call ends, at most `timeout`; `None` if it is still running (the
    /// handle stays usable). Like [`Pending::poll`], hands the result out once.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<T>> {
        if self.taken {
            return None;
        }
        let outcome = match self.rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(cb::RecvTimeoutError::Timeout) => return None,
            Err(cb::RecvTimeoutError::Disconnected) => Err(self.abandoned()),
        };
        self.taken = true;
        Some(outcome)
    }

    /// Blocks until the call ends and returns its result. Fails with
    /// [`Error::InvalidInput`] if [`Pending::poll`] or [`Pending::wait_timeout`] already
    /// handed the result out.
    pub fn wait(self) -> Result<T> {
        if self.taken {
            return Err(Error::invalid(self.operation, "the result was already taken"));
        }
        self.rx.recv().unwrap_or_else(|_| Err(self.abandoned()))
    }

    /// True once the result is waiting to be taken (or was taken).
    pub fn is_finished(&self) -> bool {
        self.taken || !self.rx.is_empty()
    }

    /// The call's task ended without a result: the executor stopped under it.
    fn abandoned(&self) -> Error {
        Error::disconnected(format!(
            "{} was abandoned: the session's engine stopped",
            self.operation
        ))
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("operation", &self.operation)
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// An action started with [`crate::Session::start_invoke`]: its id at once, its
/// [`ActionResult`] when it ends. Dropping the handle does not cancel the action; its end is
/// still reported as [`crate::SessionEvent::ActionResult`].
#[must_use = "dropping a PendingAction does not cancel the action; poll, wait or cancel it"]
pub struct PendingAction {
    pub(crate) action_id: String,
    pub(crate) reply: Pending<ActionResult>,
    pub(crate) shared: Arc<Shared>,
}

impl PendingAction {
    /// The action id (`act_…`), usable with [`crate::Session::cancel_action`].
    pub fn action_id(&self) -> &str {
        &self.action_id
    }

    /// The terminal result if the action has ended, without blocking; handed out once.
    pub fn poll(&mut self) -> Option<Result<ActionResult>> {
        self.reply.poll()
    }

    /// Blocks until the action ends, at most `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<ActionResult>> {
        self.reply.wait_timeout(timeout)
    }

    /// Blocks until the action ends (bounded by the call's reply timeout; on that timeout the
    /// error says the action may still be running on the robot).
    pub fn wait(self) -> Result<ActionResult> {
        self.reply.wait()
    }

    /// True once the action's result is there.
    pub fn is_finished(&self) -> bool {
        self.reply.is_finished()
    }

    /// Asks the runtime to cancel this action, without waiting: the returned handle gives
    /// the cancelled action's result. This handle then ends too (with the action's
    /// `CANCELLED` result).
    pub fn cancel(&self) -> Result<Pending<ActionResult>> {
        self.shared.start_cancel(&self.action_id)
    }
}

impl fmt::Debug for PendingAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAction")
            .field("action_id", &self.action_id)
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_hands_the_owned_result_once() {
        let (done, mut handle) = pending::<u32>("runtime.state");
        assert!(handle.poll().is_none());
        assert!(!handle.is_finished());
        done.complete(Ok(7));
        assert!(handle.is_finished());
        assert_eq!(handle.poll().unwrap().unwrap(), 7);
        assert!(handle.poll().is_none());
        assert!(handle.wait_timeout(Duration::from_millis(1)).is_none());
        assert!(matches!(handle.wait(), Err(Error::InvalidInput { .. })));
    }

    #[test]
    fn wait_timeout_keeps_the_handle_until_the_result_comes() {
        let (done, mut handle) = pending::<&str>("runtime.tools_list");
        assert!(handle.wait_timeout(Duration::from_millis(5)).is_none());
        let worker = std::thread::spawn(move || done.complete(Ok("late")));
        assert_eq!(
            handle.wait_timeout(Duration::from_secs(5)).unwrap().unwrap(),
            "late"
        );
        worker.join().unwrap();
    }

    #[test]
    fn wait_blocks_for_the_result_and_errors_pass_through() {
        let (done, handle) = pending::<()>("runtime.cancel");
        let worker = std::thread::spawn(move || done.complete(Err(Error::invalid("x", "y"))));
        assert!(matches!(handle.wait(), Err(Error::InvalidInput { .. })));
        worker.join().unwrap();
    }

    #[test]
    fn an_abandoned_call_is_a_disconnection_not_a_hang() {
        let (done, mut handle) = pending::<()>("runtime.state");
        drop(done);
        assert!(matches!(handle.poll(), Some(Err(Error::Disconnected { .. }))));
        let (done, handle) = pending::<()>("runtime.state");
        drop(done);
        let err = handle.wait().unwrap_err();
        assert!(err.to_string().contains("runtime.state"), "{err}");
    }
}
