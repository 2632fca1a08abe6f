//! The synchronous room handle.

use crate::live::engine::{self, Command, ConnectionConfig, ConnectionIo, Joined, RoomObserver, Shared};
use crate::live::error::{LiveError, RpcError, RpcErrorCode};
use crate::live::executor::{self, Executor};
use crate::live::net::NetworkPath;
use crate::live::participants::Participant;
use crate::live::rpc::{self, CallParams, Invocation, RpcReply};
use crate::session::timeouts;
use crossbeam_channel as cb;
use livekit_rpc::backend::RpcServerManager;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Options of [`Room::connect`].
#[derive(Debug, Clone)]
pub struct RoomOptions {
    /// Time allowed for signalling, ICE, DTLS and the data channel to come up.
    pub connect_timeout: Duration,
    /// Largest incoming data stream accepted.
    pub max_stream_bytes: usize,
    /// Extra trusted root certificates (DER) for `wss://` servers, e.g. a private CA.
    pub extra_root_certs_der: Vec<Vec<u8>>,
    /// Topics of the incoming byte streams to read and hand to the observer; streams on any
    /// other topic are discarded as their packets arrive.
    pub stream_topics: Vec<String>,
    /// How long an interrupted link may take to come back (resume or full reconnect) before
    /// the room is disconnected.
    pub reconnect_timeout: Duration,
    /// Which transports ICE may use (UDP and ICE over TCP by default).
    pub paths: crate::live::net::PathOptions,
    /// HTTP proxy of the signal websocket and TURN over TCP/TLS (none by default).
    pub proxy: Option<crate::live::proxy::LiveProxy>,
}

impl Default for RoomOptions {
    fn default() -> Self {
        RoomOptions {
            connect_timeout: timeouts::CONNECT,
            max_stream_bytes: crate::live::streams::DEFAULT_MAX_STREAM_BYTES,
            extra_root_certs_der: Vec::new(),
            stream_topics: Vec::new(),
            reconnect_timeout: timeouts::RECONNECT,
            paths: crate::live::net::PathOptions::default(),
            proxy: None,
        }
    }
}

/// A connected, data-only LiveKit participant.
///
/// All methods are blocking and may be called from any thread; the async machinery runs on
/// the executor. Dropping the room leaves it and releases its sockets and tasks; the
/// executor stops when the last room is gone.
pub struct Room {
    commands: cb::Sender<Command>,
    wake: Arc<tokio::sync::Notify>,
    shared: Arc<Shared>,
    rpc_server: Arc<RpcServerManager>,
    done: cb::Receiver<()>,
    joined: Joined,
    // Last field: dropped after the connection task has been waited for.
    executor: Option<Arc<Executor>>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("room", &self.joined.room_name)
            .field("identity", &self.joined.local_identity)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// A byte stream to send (a camera frame, say): its topic, name, type, attributes and
/// recipients. Used by [`crate::RuntimeHost::send_bytes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct OutgoingStream {
    /// Topic, e.g. `menlo.camera_capture`.
    pub topic: String,
    /// Stream (file) name.
    pub name: String,
    /// MIME type, e.g. `image/jpeg` (`application/octet-stream` when empty).
    pub mime_type: String,
    /// Attributes, e.g. `request_id`.
    pub attributes: HashMap<String, String>,
    /// Recipients by identity (everybody when empty).
    pub destinations: Vec<String>,
}

impl OutgoingStream {
    /// A stream on `topic` to everybody, with no name, type or attributes.
    pub fn new(topic: impl Into<String>) -> Self {
        OutgoingStream {
            topic: topic.into(),
            ..OutgoingStream::default()
        }
    }

    /// Sets the stream name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the MIME type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = mime_type.into();
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Adds a recipient (the stream goes to everybody while there is none).
    pub fn destination(mut self, identity: impl Into<String>) -> Self {
        self.destinations.push(identity.into());
        self
    }
}

impl Room {
    /// Joins the room at `url` (e.g. `ws://127.0.0.1:7880`) with an access token and waits
    /// until the data channel is usable. The token is sent as a bearer header and never logged.
    /// `observer` hears of participant changes, the disconnection and the byte streams on
    /// [`RoomOptions::stream_topics`], on the executor, from the first participant on.
    pub fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
        observer: Arc<dyn RoomObserver>,
    ) -> Result<Room, LiveError> {
        let rt = executor::acquire()?;
        let (cmd_tx, cmd_rx) = cb::unbounded();
        let (ready_tx, ready_rx) = cb::bounded(1);
        let (done_tx, done_rx) = cb::bounded::<()>(0);
        let wake = Arc::new(tokio::sync::Notify::new());
        let shared = Arc::new(Shared::default());
        let rpc_server = Arc::new(RpcServerManager::new());
        let cfg = ConnectionConfig {
            url: url.to_string(),
            token: token.to_string(),
            connect_timeout: options.connect_timeout,
            max_stream_bytes: options.max_stream_bytes,
            extra_roots_der: options.extra_root_certs_der.clone(),
            stream_topics: options.stream_topics.clone(),
            reconnect_timeout: options.reconnect_timeout,
            paths: options.paths,
            proxy: options.proxy.clone(),
        };
        let io = ConnectionIo {
            commands: cmd_rx,
            commands_tx: cmd_tx.clone(),
            wake: wake.clone(),
            ready: ready_tx,
            observer,
            shared: shared.clone(),
            rpc_server: rpc_server.clone(),
            _done: done_tx,
        };
        rt.handle().spawn(engine::run(cfg, io));
        let wait = options.connect_timeout + timeouts::CONNECT_RESULT_MARGIN;
        let joined = match ready_rx.recv_timeout(wait) {
            Ok(Ok(j)) => j,
            Ok(Err(e)) => {
                let _ = done_rx.recv_timeout(timeouts::FAILED_CONNECT_CLEANUP);
                return Err(e);
            }
            Err(_) => {
                let _ = cmd_tx.send(Command::Disconnect);
                wake.notify_one();
                let _ = done_rx.recv_timeout(timeouts::FAILED_CONNECT_CLEANUP);
                return Err(LiveError::Timeout("connect"));
            }
        };
        Ok(Room {
            commands: cmd_tx,
            wake,
            shared,
            rpc_server,
            done: done_rx,
            joined,
            executor: Some(rt),
        })
    }

    // The command comes back whole on failure so its reply can still be completed.
    #[allow(clippy::result_large_err)]
    fn try_send(&self, cmd: Command) -> Result<(), cb::SendError<Command>> {
        let sent = self.commands.send(cmd);
        self.wake.notify_one();
        sent
    }

    fn send(&self, cmd: Command) -> bool {
        let ok = self.commands.send(cmd).is_ok();
        self.wake.notify_one();
        ok
    }

    /// Our identity in the room.
    pub fn local_identity(&self) -> &str {
        &self.joined.local_identity
    }

    /// Room name.
    pub fn room_name(&self) -> &str {
        &self.joined.room_name
    }

    /// Whether the token lets this participant update its own metadata and attributes.
    pub(crate) fn can_update_metadata(&self) -> bool {
        self.joined.can_update_metadata
    }

    /// Sets `attributes` on this participant (merged into the ones it has); a server
    /// announces such a change to the room at once. Fire and forget (the server refuses it
    /// without [`Room::can_update_metadata`]); false when the room is closed.
    pub(crate) fn set_attributes(&self, attributes: HashMap<String, String>) -> bool {
        let update = livekit_protocol::UpdateParticipantMetadata {
            attributes,
            ..Default::default()
        };
        let request = livekit_protocol::signal_request::Message::UpdateMetadata(update);
        self.send(Command::Signal(crate::live::signal::encode_request(request)))
    }

    /// Whether the room is still connected.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// The path session data arrives on: `None` until the first data packet of the current
    /// link (and during a full reconnect until the new link carries data), and once closed.
    pub fn network_path(&self) -> Option<NetworkPath> {
        if !self.is_connected() {
            return None;
        }
        self.shared.path.get()
    }

    /// Snapshot of the remote participants.
    pub fn participants(&self) -> Vec<Participant> {
        self.shared
            .participants
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Runs `task` on the executor (which this room keeps alive).
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(executor) = &self.executor {
            executor.handle().spawn(task);
        }
    }

    /// Calls a method; resolves with the response, an error or a timeout. The engine bounds
    /// the call by its ack and response timeouts; the wait here adds
    /// [`timeouts::RPC_RESULT_MARGIN`] so that the engine's own verdict arrives first.
    pub(crate) async fn call(&self, params: CallParams) -> Result<String, RpcError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wait = params.ack_timeout + params.response_timeout + timeouts::RPC_RESULT_MARGIN;
        self.start_rpc(params, move |reply| {
            let _ = tx.send(reply);
        });
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(RpcError::built_in(RpcErrorCode::RecipientDisconnected)),
            Err(_) => Err(RpcError::built_in(RpcErrorCode::ResponseTimeout)),
        }
    }

    /// Starts a call without waiting; `on_done` runs on the executor with the outcome
    /// (exactly once) and must not block.
    pub fn start_rpc(
        &self,
        params: CallParams,
        on_done: impl FnOnce(Result<String, RpcError>) + Send + 'static,
    ) {
        let reply = RpcReply::callback(on_done);
        if let Err(cb::SendError(Command::PerformRpc { reply, .. })) =
            self.try_send(Command::PerformRpc { params, reply })
        {
            reply.send(Err(RpcError::built_in(RpcErrorCode::RecipientDisconnected)));
        }
    }

    /// Test hook: drops the signal websocket as if the network had closed it (the engine
    /// then resumes).
    #[doc(hidden)]
    pub fn drop_signal_for_test(&self) {
        self.send(Command::DropSignal);
    }

    /// Test hook: asks the server to simulate a scenario (livekit-server acts on it for any
    /// client): `node_failure`, `migration`, `server_leave`, `disconnect_signal_on_resume`
    /// or `disconnect_signal_on_resume_no_messages`. Returns false for another name.
    #[doc(hidden)]
    pub fn simulate_for_test(&self, scenario: &str) -> bool {
        use livekit_protocol::simulate_scenario::Scenario;
        let scenario = match scenario {
            "node_failure" => Scenario::NodeFailure(true),
            "migration" => Scenario::Migration(true),
            "server_leave" => Scenario::ServerLeave(true),
            "disconnect_signal_on_resume" => Scenario::DisconnectSignalOnResume(true),
            "disconnect_signal_on_resume_no_messages" => Scenario::DisconnectSignalOnResumeNoMessages(true),
            "switch_candidate_protocol_tcp" => {
                Scenario::SwitchCandidateProtocol(livekit_protocol::CandidateProtocol::Tcp as i32)
            }
            "switch_candidate_protocol_udp" => {
                Scenario::SwitchCandidateProtocol(livekit_protocol::CandidateProtocol::Udp as i32)
            }
            _ => return false,
        };
        self.send(Command::Simulate(scenario))
    }

    /// Test hook: the network is gone for `duration` (datagrams and signal frames vanish both
    /// ways, new connections fail at once, as with the interface down).
    #[doc(hidden)]
    pub fn cut_link_for_test(&self, duration: Duration) {
        self.send(Command::CutLink(duration));
    }

    /// Every recovery of the link so far: (resumed, when it completed).
    #[doc(hidden)]
    pub fn reconnects(&self) -> Vec<(bool, std::time::Instant)> {
        self.shared
            .reconnects
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Leaves the room and waits for the engine task to end. Pending calls fail at once.
    /// Idempotent; dropping the room does the same.
    pub fn close(&self) {
        self.send(Command::Disconnect);
        let _ = self.done.recv_timeout(timeouts::CLOSE);
    }

    /// Registers (or replaces) the handler of `method`; effective for every request that
    /// arrives after this returns. Handlers run on the library's blocking thread pool
    /// (at most `MAX_HANDLER_THREADS` at once); a panicking handler answers `APPLICATION_ERROR`.
    pub fn register_rpc_method<F>(&self, method: &str, handler: F)
    where
        F: Fn(Invocation) -> Result<String, RpcError> + Send + Sync + 'static,
    {
        rpc::register_handler(&self.rpc_server, method, Arc::new(handler));
    }

    /// Removes the handler of `method` (later calls get `UNSUPPORTED_METHOD`).
    pub fn unregister_rpc_method(&self, method: &str) {
        self.rpc_server.unregister_method(method);
    }

    /// Sends `data` as a byte stream (packetized by `livekit-data-stream`: inline or
    /// compressed when every recipient advertises support). Returns once every packet is
    /// queued on the reliable channel (delivery is then up to SCTP).
    pub fn send_bytes(&self, data: Vec<u8>, options: OutgoingStream) -> Result<(), LiveError> {
        let (tx, rx) = cb::bounded(1);
        if !self.send(Command::SendBytes {
            options,
            data,
            reply: tx,
        }) {
            return Err(LiveError::Disconnected("room closed".into()));
        }
        rx.recv_timeout(timeouts::SEND_BYTES)
            .unwrap_or_else(|_| Err(LiveError::Disconnected("room closed".into())))
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.send(Command::Disconnect);
        // Wait for the connection task to finish (it drops its end of `done`).
        let _ = self.done.recv_timeout(timeouts::CLOSE);
        drop(self.executor.take());
    }
}
