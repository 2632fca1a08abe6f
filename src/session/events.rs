//! Session events: what happened, in order, on a queue the caller reads whenever it likes.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel as cb;

use crate::live::queue::push_drop_oldest;
use crate::live::Participant;
use crate::runtime::RuntimeEvent;

/// How many events the events queue keeps when nobody reads it; the oldest go first.
pub const EVENT_QUEUE_CAPACITY: usize = 1024;

/// What happened in a session, in order. Read them from [`crate::Session::events`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The SDK joined the room.
    Connected {
        /// The room name (the robot id).
        room_name: String,
    },
    /// Every required participant slot is filled.
    SessionReady,
    /// A participant joined (also reported for those already present when the SDK joined).
    ParticipantJoined(Participant),
    /// A participant left.
    ParticipantLeft(Participant),
    /// An action started with [`crate::Session::invoke`] or
    /// [`crate::Session::start_invoke`] ended.
    ActionResult(Box<RuntimeEvent>),
    /// The link to the room was lost and the SDK is bringing it back (a resume of the same
    /// participant session first, a full reconnect as a new participant if the server no
    /// longer holds it), for at most [`crate::ConnectOptions::reconnect_timeout`]. Calls made
    /// or in flight meanwhile wait, each within its own timeout. Followed by
    /// [`SessionEvent::Reconnected`], or by [`SessionEvent::Disconnected`] if the link does not
    /// come back in time.
    Reconnecting {
        /// What was lost, e.g. the signal connection or the data path (no credentials).
        reason: String,
    },
    /// The link is back after [`SessionEvent::Reconnecting`]; `kind` says how.
    Reconnected {
        /// A resume (nothing lost) or a full reconnect (calls that could not be recovered
        /// failed with [`crate::Error::ConnectionLost`]).
        kind: ReconnectKind,
    },
    /// The room connection ended; no event follows.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// How the link came back after [`SessionEvent::Reconnecting`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReconnectKind {
    /// The server still held the SDK's participant and the same session resumed: nothing was
    /// lost, every call in flight completes (its reply delivered once).
    Resumed,
    /// The server no longer held the participant (a long cut, a server restart): the SDK
    /// joined again as a new participant. Replies already on their way are still delivered;
    /// a call whose request may or may not have reached the runtime failed with
    /// [`crate::Error::ConnectionLost`] (reads were sent again once instead). The runtime is
    /// looked up again if its participant changed.
    Rejoined,
}

impl ReconnectKind {
    /// From the engine's report: whether the same participant session was resumed.
    pub(crate) fn from_resumed(resumed: bool) -> Self {
        if resumed {
            ReconnectKind::Resumed
        } else {
            ReconnectKind::Rejoined
        }
    }
}

impl fmt::Display for ReconnectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReconnectKind::Resumed => "resumed",
            ReconnectKind::Rejoined => "rejoined",
        })
    }
}

/// The state of a session's link to its room ([`crate::Session::connection_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Joined and up.
    Connected,
    /// The link was lost and is being brought back ([`SessionEvent::Reconnecting`]); calls
    /// wait within their own timeouts.
    Reconnecting,
    /// The link is gone for good ([`SessionEvent::Disconnected`]); every call fails.
    Disconnected,
}

/// The events of one session, in order: a queue to read without blocking
/// ([`Events::try_recv`], [`Events::try_iter`]), with a timeout, or by iterating.
///
/// When nobody reads, the newest [`EVENT_QUEUE_CAPACITY`] events are kept and the oldest
/// dropped. After [`SessionEvent::Disconnected`] the queue closes: once it is read empty,
/// [`Events::recv`] returns `None` and iteration ends.
pub struct Events {
    rx: cb::Receiver<SessionEvent>,
}

impl Events {
    /// Blocks until the next event; `None` once the session has disconnected and every event
    /// has been read.
    pub fn recv(&self) -> Option<SessionEvent> {
        self.rx.recv().ok()
    }

    /// The next event if there is one, without blocking.
    pub fn try_recv(&self) -> Option<SessionEvent> {
        self.rx.try_recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<SessionEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Every event queued now, without blocking.
    pub fn try_iter(&self) -> impl Iterator<Item = SessionEvent> + '_ {
        self.rx.try_iter()
    }

    /// Every event, blocking for the next one; ends after the session has disconnected and
    /// every event has been read.
    pub fn iter(&self) -> impl Iterator<Item = SessionEvent> + '_ {
        self.rx.iter()
    }

    /// How many events are queued.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when no event is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = SessionEvent;
    type IntoIter = cb::Iter<'a, SessionEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.rx.iter()
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").field("queued", &self.rx.len()).finish()
    }
}

/// The writing side of a session's events: bounded, drops the oldest, closes after
/// `Disconnected`. Never blocks (it is written from the executor).
pub(crate) struct EventQueue {
    tx: Mutex<Option<cb::Sender<SessionEvent>>>,
    /// Used to drop the oldest event when the queue is full.
    overflow: cb::Receiver<SessionEvent>,
    events: Events,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = cb::bounded(capacity.max(1));
        EventQueue {
            tx: Mutex::new(Some(tx)),
            overflow: rx.clone(),
            events: Events { rx },
        }
    }

    /// The reading side.
    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    /// Queues `event`; after a `Disconnected` nothing more is queued and readers see the end.
    pub(crate) fn push(&self, event: SessionEvent) {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let closing = matches!(event, SessionEvent::Disconnected { .. });
        if let Some(sender) = tx.as_ref() {
            push_drop_oldest(sender, &self.overflow, event, "session event");
        }
        if closing {
            tx.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(identity: &str) -> SessionEvent {
        SessionEvent::ParticipantJoined(Participant::new(identity, crate::ParticipantKind::Agent))
    }

    #[test]
    fn keeps_the_newest_events_when_nobody_reads() {
        let queue = EventQueue::new(3);
        for i in 0..10 {
            queue.push(joined(&format!("p{i}")));
        }
        let names: Vec<String> = queue
            .events()
            .try_iter()
            .map(|e| match e {
                SessionEvent::ParticipantJoined(p) => p.identity,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["p7", "p8", "p9"]);
    }

    #[test]
    fn closes_after_disconnected() {
        let queue = EventQueue::new(8);
        queue.push(SessionEvent::SessionReady);
        queue.push(SessionEvent::Disconnected { reason: "bye".into() });
        queue.push(joined("late"));
        let events: Vec<SessionEvent> = queue.events().iter().collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(events[1], SessionEvent::Disconnected { .. }));
        assert_eq!(queue.events().recv(), None);
        assert_eq!(queue.events().recv_timeout(Duration::from_millis(1)), None);
    }

    #[test]
    fn reads_without_blocking_and_by_reference() {
        let queue = EventQueue::new(8);
        assert_eq!(queue.events().try_recv(), None);
        assert!(queue.events().is_empty());
        queue.push(SessionEvent::SessionReady);
        assert_eq!(queue.events().len(), 1);
        queue.push(SessionEvent::Disconnected { reason: "bye".into() });
        let mut seen = 0;
        for _ in queue.events() {
            seen += 1;
        }
        assert_eq!(seen, 2);
    }
}
