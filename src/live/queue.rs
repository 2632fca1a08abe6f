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
}
