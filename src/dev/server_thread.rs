//! A server of the embedded platform on a thread of its own, with a current-thread tokio
//! runtime: the control plane, the SFU and the page each run in one.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A running server thread; dropping it signals the server to stop and joins the thread.
pub(crate) struct ServerThread {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve(stop)` on a new thread named `name`; the server returns once `stop` fires.
    pub(crate) fn spawn<F, Fut>(name: &str, serve: F) -> std::io::Result<ServerThread>
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || runtime.block_on(serve(stop)))?;
        Ok(ServerThread {
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
