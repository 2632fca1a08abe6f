//! The executor: the SDK's private tokio runtime, started lazily by the first room and shut
//! down when the last handle to it is gone. Callers never run async code themselves.
//!
//! ("Runtime" in this crate means the robot runtime worker; the tokio pool is the executor.)

use std::sync::{Arc, Mutex, Weak};

/// Worker threads of the executor.
pub const WORKER_THREADS: usize = 2;
/// Upper bound on threads running RPC handlers (tokio's blocking pool). Threads start on
/// demand and end after 10 s idle; the bound is high so that long-running tool-call handlers
/// in one room cannot starve probes, reads and cancels of another.
pub const MAX_HANDLER_THREADS: usize = 64;

static EXECUTOR: Mutex<Weak<Executor>> = Mutex::new(Weak::new());

/// A reference-counted handle to the executor.
pub(crate) struct Executor {
    rt: Option<tokio::runtime::Runtime>,
}

impl Executor {
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        match &self.rt {
            Some(rt) => rt.handle().clone(),
            // `rt` is only taken in Drop.
            None => unreachable!("executor used after shutdown"),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped from inside the executor (e.g. a handler dropped the last room):
                // blocking shutdown is not allowed there.
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(crate::session::timeouts::EXECUTOR_SHUTDOWN);
            }
            log::debug!("live executor shut down");
        }
    }
}

/// Returns the running executor, starting it if needed.
pub(crate) fn acquire() -> std::io::Result<Arc<Executor>> {
    let mut slot = EXECUTOR.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(executor) = slot.upgrade() {
        return Ok(executor);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_HANDLER_THREADS)
        .thread_name("menlo-live")
        .enable_all()
        .build()?;
    let executor = Arc::new(Executor { rt: Some(rt) });
    *slot = Arc::downgrade(&executor);
    log::debug!("live executor started");
    Ok(executor)
}
