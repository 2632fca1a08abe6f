//! The callback dispatcher: one SDK thread, shared by every session of the process, that
//! runs lifecycle callbacks so that neither callers nor the engine ever run user code.
//!
//! Started by the first session that has callbacks and kept for the life of the process
//! (one thread, whatever the number of sessions). Jobs run in the order they were queued,
//! so one session's callbacks run in event order.

use std::sync::{Mutex, OnceLock};

use crossbeam_channel as cb;

type Job = Box<dyn FnOnce() + Send>;

static JOBS: OnceLock<Mutex<Option<cb::Sender<Job>>>> = OnceLock::new();

/// Queues `job` on the dispatcher thread, starting it if needed. Never blocks; if the thread
/// cannot be started, the job is dropped with a warning.
pub(crate) fn dispatch(job: impl FnOnce() + Send + 'static) {
    let slot = JOBS.get_or_init(|| Mutex::new(start()));
    let sender = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match sender {
        Some(sender) if sender.send(Box::new(job)).is_ok() => {}
        _ => {
            log::warn!(target: "menlo_robot_sdk", "the callback thread is not running; a callback was skipped")
        }
    }
}

fn start() -> Option<cb::Sender<Job>> {
    let (tx, rx) = cb::unbounded::<Job>();
    let started = std::thread::Builder::new()
        .name("menlo-callbacks".into())
        .spawn(move || {
            for job in rx {
                // Callbacks contain their own panics; this keeps the thread alive regardless.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        });
    match started {
        Ok(_) => Some(tx),
        Err(err) => {
            log::warn!(target: "menlo_robot_sdk", "cannot start the callback thread: {err}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dispatch;
    use std::time::Duration;

    #[test]
    fn runs_jobs_in_order_on_one_other_thread() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let caller = std::thread::current().id();
        for i in 0..50 {
            let tx = tx.clone();
            dispatch(move || {
                let _ = tx.send((i, std::thread::current().id()));
            });
        }
        let seen: Vec<_> = (0..50)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(
            seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..50).collect::<Vec<_>>()
        );
        let thread = seen[0].1;
        assert_ne!(thread, caller);
        assert!(seen.iter().all(|(_, t)| *t == thread));
    }
}
