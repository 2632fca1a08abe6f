//! A bounded queue that keeps the newest items: the SDK's policy wherever network input is
//! queued for a reader that may never come (session events, a host's streams).

use crossbeam_channel as cb;

/// Sends on a bounded channel, dropping the oldest queued item while it is full.
pub(crate) fn push_drop_oldest<T>(tx: &cb::Sender<T>, rx: &cb::Receiver<T>, mut item: T, what: &str) {
    loop {
        match tx.try_send(item) {
            Ok(()) | Err(cb::TrySendError::Disconnected(_)) => return,
            Err(cb::TrySendError::Full(back)) => {
                item = back;
                if rx.try_recv().is_ok() {
                    log::warn!("{what} queue full: dropped the oldest entry");
                }
            }
        }
    }
}

/// A [`crate::live::RoomObserver`] that queues what it hears, for crate-internal tests that
/// drive a [`crate::live::Room`] directly: room events and byte streams on bounded queues
/// that keep the newest items.
#[cfg(test)]
pub(crate) struct RoomQueues {
    events: (
        cb::Sender<crate::live::RoomEvent>,
        cb::Receiver<crate::live::RoomEvent>,
    ),
    streams: (
        cb::Sender<crate::live::ByteStream>,
        cb::Receiver<crate::live::ByteStream>,
    ),
}

#[cfg(test)]
impl RoomQueues {
    /// Queues of `capacity` events and `capacity` streams.
    pub(crate) fn new(capacity: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(RoomQueues {
            events: cb::bounded(capacity.max(1)),
            streams: cb::bounded(capacity.max(1)),
        })
    }

    /// The room events heard so far, in order.
    pub(crate) fn events(&self) -> &cb::Receiver<crate::live::RoomEvent> {
        &self.events.1
    }

    /// The byte streams received so far (only on [`crate::live::RoomOptions::stream_topics`]).
    pub(crate) fn streams(&self) -> &cb::Receiver<crate::live::ByteStream> {
        &self.streams.1
    }
}

#[cfg(test)]
impl crate::live::RoomObserver for RoomQueues {
    fn on_event(&self, event: crate::live::RoomEvent) {
        push_drop_oldest(&self.events.0, &self.events.1, event, "room event");
    }

    fn on_stream(&self, stream: crate::live::ByteStream) {
        push_drop_oldest(&self.streams.0, &self.streams.1, stream, "byte stream");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn full_queue_drops_oldest() {
        let (tx, rx) = crossbeam_channel::bounded(2);
        let overflow = rx.clone();
        for i in 0..5 {
            super::push_drop_oldest(&tx, &overflow, i, "test");
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn room_queues_keep_the_newest_events() {
        use crate::live::RoomObserver as _;
        let queues = super::RoomQueues::new(2);
        for i in 0..3 {
            queues.on_event(crate::live::RoomEvent::Disconnected {
                reason: format!("r{i}"),
            });
        }
        let reasons: Vec<String> = queues
            .events()
            .try_iter()
            .map(|e| match e {
                crate::live::RoomEvent::Disconnected { reason } => reason,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(reasons, ["r1", "r2"]);
        assert!(queues.streams().is_empty());
    }
}
