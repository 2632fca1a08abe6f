//! The library's private tokio runtime: started lazily by the first room, shut down when
//! the last room handle is gone. Callers never run async code themselves.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Worker threads of the private runtime.
pub const WORKER_THREADS: usize = 2;
/// Upper bound on threads running RPC handlers (tokio's blocking pool). Threads start on
/// demand and end after 10 s idle; the bound is high so that long-running tool-call handlers
/// in one room cannot starve probes, reads and cancels of another.
pub const MAX_HANDLER_THREADS: usize = 64;

static RUNTIME: Mutex<Weak<SharedRuntime>> = Mutex::new(Weak::new());

/// A reference-counted handle to the private runtime.
pub(crate) struct SharedRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl SharedRuntime {
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        match &self.rt {
            Some(rt) => rt.handle().clone(),
            // `rt` is only taken in Drop.
            None => unreachable!("runtime used after shutdown"),
        }
    }
}

impl Drop for SharedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped from inside the runtime (e.g. a handler dropped the last room):
                // blocking shutdown is not allowed there.
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(2));
            }
            log::debug!("live runtime shut down");
        }
    }
}

/// Returns the running runtime, starting it if needed.
pub(crate) fn acquire() -> std::io::Result<Arc<SharedRuntime>> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = slot.upgrade() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_HANDLER_THREADS)
        .thread_name("menlo-live")
        .enable_all()
        .build()?;
    let shared = Arc::new(SharedRuntime { rt: Some(rt) });
    *slot = Arc::downgrade(&shared);
    log::debug!("live runtime started");
    Ok(shared)
}
