//! The live session: [`connect`] a robot's room and drive its runtime with blocking calls.
//!
//! A [`Session`] joins the robot's LiveKit room through the SDK's private engine and calls
//! `runtime.*` RPC on the runtime worker participant. Every method blocks the calling thread;
//! the engine's async tasks run on a runtime the SDK owns. Events (participants, action
//! results, disconnection) arrive on a channel the caller polls whenever it likes, which
//! suits game loops and simulation harnesses.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::live::{ByteStream, CallParams, LiveError, Room, RoomEvent, RoomOptions, RpcError};
use crate::models::{SessionMetadata, SessionOptions};
use crate::room_key::check_livekit_url;
use crate::runtime::calls::{self, CapabilitiesOutcome, CaptureAck, CaptureOptions, RpcRequest, StateReply};
use crate::runtime::models::{ActionResult, RuntimeEvent, RuntimeState, SceneState, ToolDescriptor};
use crate::runtime::resolve::{
    self, Participant, ParticipantKind, ProbeOutcome, ResolveStep, Resolver, RuntimeHints,
};

/// How long [`Session::wait_until_ready`] and runtime resolution wait by default.
pub const DEFAULT_SESSION_READY_TIMEOUT: Duration = resolve::DEFAULT_READY_TIMEOUT;
/// How many events the events channel keeps when nobody reads it; the oldest go first.
pub const EVENT_QUEUE_CAPACITY: usize = 1024;
/// Bound of the identities waiting to be forgotten as the runtime (participants that left
/// while a caller held the resolver).
const MAX_FORGOTTEN: usize = 256;
/// How long to wait for the camera frame after the capture was acknowledged.
const CAPTURE_GRACE: Duration = calls::CAPTURE_STREAM_TIMEOUT;

/// What happened in a session, in order. Read them from [`Session::events`].
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
    /// An action started with [`Session::invoke`] or [`Session::start_invoke`] ended.
    ActionResult(Box<RuntimeEvent>),
    /// The room connection ended; no event follows.
    Disconnected {
        /// Why.
        reason: String,
    },
}

type Callback<T> = Option<Arc<dyn Fn(&T) + Send + Sync>>;

/// Callbacks for session lifecycle events, for parity with the Python SDK's
/// `ConnectCallbacks`. They run in order on one SDK thread, never on the caller's; a callback
/// that panics is contained. The [`Session::events`] channel delivers the same events.
#[derive(Clone, Default)]
pub struct ConnectCallbacks {
    on_connected: Callback<String>,
    on_session_ready: Callback<()>,
    on_participant_joined: Callback<Participant>,
    on_participant_left: Callback<Participant>,
    on_action_result: Callback<RuntimeEvent>,
    on_disconnected: Callback<String>,
}

impl ConnectCallbacks {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called with the room name once the SDK has joined.
    pub fn on_connected(mut self, f: impl Fn(&String) + Send + Sync + 'static) -> Self {
        self.on_connected = Some(Arc::new(f));
        self
    }

    /// Called when every required slot is filled.
    pub fn on_session_ready(mut self, f: impl Fn(&()) + Send + Sync + 'static) -> Self {
        self.on_session_ready = Some(Arc::new(f));
        self
    }

    /// Called when a participant joins.
    pub fn on_participant_joined(mut self, f: impl Fn(&Participant) + Send + Sync + 'static) -> Self {
        self.on_participant_joined = Some(Arc::new(f));
        self
    }

    /// Called when a participant leaves.
    pub fn on_participant_left(mut self, f: impl Fn(&Participant) + Send + Sync + 'static) -> Self {
        self.on_participant_left = Some(Arc::new(f));
        self
    }

    /// Called with the terminal event of each action.
    pub fn on_action_result(mut self, f: impl Fn(&RuntimeEvent) + Send + Sync + 'static) -> Self {
        self.on_action_result = Some(Arc::new(f));
        self
    }

    /// Called with the reason once the room connection ends.
    pub fn on_disconnected(mut self, f: impl Fn(&String) + Send + Sync + 'static) -> Self {
        self.on_disconnected = Some(Arc::new(f));
        self
    }

    fn is_empty(&self) -> bool {
        self.on_connected.is_none()
            && self.on_session_ready.is_none()
            && self.on_participant_joined.is_none()
            && self.on_participant_left.is_none()
            && self.on_action_result.is_none()
            && self.on_disconnected.is_none()
    }

    fn dispatch(&self, event: &SessionEvent) {
        fn call<T>(callback: &Callback<T>, value: &T) {
            if let Some(callback) = callback {
                if catch_unwind(AssertUnwindSafe(|| callback(value))).is_err() {
                    log::warn!(target: "menlo_robot_sdk", "a session callback panicked");
                }
            }
        }
        match event {
            SessionEvent::Connected { room_name } => call(&self.on_connected, room_name),
            SessionEvent::SessionReady => call(&self.on_session_ready, &()),
            SessionEvent::ParticipantJoined(p) => call(&self.on_participant_joined, p),
            SessionEvent::ParticipantLeft(p) => call(&self.on_participant_left, p),
            SessionEvent::ActionResult(e) => call(&self.on_action_result, e),
            SessionEvent::Disconnected { reason } => call(&self.on_disconnected, reason),
        }
    }
}

impl fmt::Debug for ConnectCallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectCallbacks").finish_non_exhaustive()
    }
}

/// Options of [`connect`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    session: SessionOptions,
    environment_id: Option<String>,
    runtime_identity_prefix: Option<String>,
    livekit_url: Option<String>,
    session_ready_timeout: Duration,
    wait_for_ready: bool,
    runtime_call_timeout: Option<Duration>,
    connect_timeout: Duration,
    root_certificates: Vec<Vec<u8>>,
    callbacks: ConnectCallbacks,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            session: SessionOptions::new(),
            environment_id: None,
            runtime_identity_prefix: None,
            livekit_url: None,
            session_ready_timeout: DEFAULT_SESSION_READY_TIMEOUT,
            wait_for_ready: false,
            runtime_call_timeout: None,
            connect_timeout: Duration::from_secs(15),
            root_certificates: Vec::new(),
            callbacks: ConnectCallbacks::new(),
        }
    }
}

impl ConnectOptions {
    /// Platform defaults: default dispatch, no readiness wait.
    pub fn new() -> Self {
        Self::default()
    }

    /// Dispatch one agent per name; an empty list dispatches nothing (SimpleSim: the viewer
    /// tab is the runtime).
    pub fn worker_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.session = self.session.worker_names(names);
        self
    }

    /// The scene to load.
    pub fn scene_id(mut self, scene_id: impl Into<String>) -> Self {
        self.session = self.session.scene_id(scene_id);
        self
    }

    /// Environments are not available yet: [`connect`] fails with [`Error::NotAvailable`].
    pub fn environment_id(mut self, environment_id: impl Into<String>) -> Self {
        self.environment_id = Some(environment_id.into());
        self
    }

    /// How to recognise the runtime in the room, e.g. `simplesim` for the SimpleSim tab
    /// (`simplesim:<robot_id>`). Matches the identity itself, or `prefix-…` / `prefix:…`.
    pub fn runtime_identity_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.runtime_identity_prefix = Some(prefix.into());
        self
    }

    /// Join this LiveKit server instead of the one the platform returned (`ws://`/`wss://`).
    pub fn livekit_url(mut self, url: impl Into<String>) -> Self {
        self.livekit_url = Some(url.into());
        self
    }

    /// Bound of readiness waits and runtime resolution (default 120 s).
    pub fn session_ready_timeout(mut self, timeout: Duration) -> Self {
        self.session_ready_timeout = timeout;
        self
    }

    /// Make [`connect`] wait until every required slot is filled.
    pub fn wait_for_ready(mut self, wait: bool) -> Self {
        self.wait_for_ready = wait;
        self
    }

    /// Default reply timeout of every runtime call (defaults: 90 s for tool calls, 30 s for
    /// reads and cancel).
    pub fn runtime_call_timeout(mut self, timeout: Duration) -> Self {
        self.runtime_call_timeout = Some(timeout);
        self
    }

    /// Bound of joining the room: signaling, ICE, DTLS, data channel (default 15 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts this CA certificate (DER) for a `wss://` LiveKit server, besides the built-in
    /// web roots: for self-hosted servers behind a private CA.
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(der.into());
        self
    }

    /// Lifecycle callbacks.
    pub fn callbacks(mut self, callbacks: ConnectCallbacks) -> Self {
        self.callbacks = callbacks;
        self
    }
}

/// Creates the robot's session, joins its room and returns the live [`Session`].
///
/// Any failure after the session was created rolls back: the SDK leaves the room, deletes
/// the session, and returns the original error.
pub fn connect(client: &Client, robot_id: &str, options: ConnectOptions) -> Result<Session> {
    if options.environment_id.is_some() {
        return Err(Error::NotAvailable {
            feature: "environment_id".into(),
            issue: "environments are blocked on upstream platform work".into(),
        });
    }
    if let Some(url) = &options.livekit_url {
        check_livekit_url(url)?;
    }
    let created = client.robots().create_session(robot_id, &options.session)?;
    let url = options
        .livekit_url
        .clone()
        .unwrap_or_else(|| created.livekit_url.clone());
    let joined = check_livekit_url(&url).and_then(|()| {
        let room_options = RoomOptions {
            connect_timeout: options.connect_timeout,
            extra_root_certs_der: options.root_certificates.clone(),
            ..RoomOptions::default()
        };
        Room::connect(&url, created.participant_token.expose(), room_options)
            .map_err(|e| live_error(&e, &url, options.connect_timeout))
    });
    let room = match joined {
        Ok(room) => room,
        Err(err) => {
            rollback_session(client, robot_id);
            return Err(err);
        }
    };
    let session = Session::start(
        client.clone(),
        robot_id,
        created.room_metadata,
        room,
        options.clone(),
    );
    if options.wait_for_ready {
        if let Err(err) = session.wait_until_ready(options.session_ready_timeout) {
            let _ = session.disconnect(true);
            return Err(err);
        }
    }
    Ok(session)
}

fn rollback_session(client: &Client, robot_id: &str) {
    if let Err(err) = client.robots().delete_session(robot_id) {
        if err.status() != Some(404) {
            log::warn!(target: "menlo_robot_sdk", "rolling back the session of {robot_id} failed: {err}");
        }
    }
}

/// A live robot session: the room, the runtime worker in it, and the calls to drive it.
///
/// `Send + Sync`: share it between threads by reference or in an `Arc`; calls from several
/// threads run concurrently.
///
/// **Drop** leaves the room and stops the SDK's threads and sockets for this session, but
/// leaves the platform session running. Only [`Session::disconnect`] with
/// `delete_session = true` also deletes the session on the platform.
pub struct Session {
    shared: Arc<Shared>,
    pump: Mutex<Option<JoinHandle<()>>>,
    lifecycle: Mutex<Lifecycle>,
}

#[derive(Default)]
struct Lifecycle {
    left_room: bool,
    session_deleted: bool,
}

/// What the session, its pump thread and pending actions share.
struct Shared {
    client: Client,
    robot_id: String,
    room_name: String,
    metadata: SessionMetadata,
    room: Room,
    hints: RuntimeHints,
    resolver: Mutex<Option<Resolver>>,
    /// Identities to stop treating as the runtime, applied by the next [`Shared::runtime`].
    /// Recorded here rather than in `resolver`, whose lock a caller searching for the
    /// runtime holds for seconds: the pump and the engine (which completes started calls)
    /// must never wait for it.
    forgotten: Mutex<Vec<String>>,
    call_timeout: Option<Duration>,
    events_tx: cb::Sender<SessionEvent>,
    events_rx: cb::Receiver<SessionEvent>,
    jobs: Option<cb::Sender<Job>>,
    callbacks: ConnectCallbacks,
    captures: Mutex<HashMap<String, cb::Sender<ByteStream>>>,
    changes: (Mutex<u64>, Condvar),
    ready_emitted: AtomicBool,
    disconnected_emitted: AtomicBool,
}

/// Work for the pump thread besides room events.
enum Job {
    Callback(SessionEvent),
    Stop,
}

impl Session {
    fn start(
        client: Client,
        robot_id: &str,
        metadata: SessionMetadata,
        room: Room,
        options: ConnectOptions,
    ) -> Session {
        let (events_tx, events_rx) = cb::bounded(EVENT_QUEUE_CAPACITY);
        let (jobs_tx, jobs_rx) = cb::unbounded();
        let hints = RuntimeHints::from_slots(
            options.runtime_identity_prefix.as_deref(),
            &metadata.required_participants,
        );
        let resolver = Resolver::new(hints.clone(), options.session_ready_timeout).ok();
        let shared = Arc::new(Shared {
            client,
            robot_id: robot_id.to_owned(),
            room_name: room.room_name().to_owned(),
            metadata,
            room,
            hints,
            resolver: Mutex::new(resolver),
            forgotten: Mutex::new(Vec::new()),
            call_timeout: options.runtime_call_timeout,
            events_tx,
            events_rx,
            jobs: Some(jobs_tx),
            callbacks: options.callbacks,
            captures: Mutex::new(HashMap::new()),
            changes: (Mutex::new(0), Condvar::new()),
            ready_emitted: AtomicBool::new(false),
            disconnected_emitted: AtomicBool::new(false),
        });
        shared.emit(SessionEvent::Connected {
            room_name: shared.room_name.clone(),
        });
        let pump_shared = Arc::clone(&shared);
        let pump = std::thread::Builder::new()
            .name("menlo-session".into())
            .spawn(move || pump(&pump_shared, &jobs_rx))
            .ok();
        Session {
            shared,
            pump: Mutex::new(pump),
            lifecycle: Mutex::new(Lifecycle::default()),
        }
    }

    /// The robot this session drives.
    pub fn robot_id(&self) -> &str {
        &self.shared.robot_id
    }

    /// The LiveKit room name.
    pub fn room_name(&self) -> &str {
        &self.shared.room_name
    }

    /// The session's room metadata as the platform returned it (slots, dispatches, scene).
    pub fn metadata(&self) -> &SessionMetadata {
        &self.shared.metadata
    }

    /// The SDK's own identity in the room.
    pub fn local_identity(&self) -> &str {
        self.shared.room.local_identity()
    }

    /// Whether the room connection is up.
    pub fn is_connected(&self) -> bool {
        self.shared.room.is_connected()
    }

    /// The other participants in the room now.
    pub fn participants(&self) -> Vec<Participant> {
        self.shared.participants()
    }

    /// Session events, in order. Poll without blocking (`try_recv`), with a timeout, or in a
    /// `select!`. When nobody reads, the newest [`EVENT_QUEUE_CAPACITY`] events are kept.
    pub fn events(&self) -> &cb::Receiver<SessionEvent> {
        &self.shared.events_rx
    }

    /// Blocks until every required participant slot is filled, or fails after `timeout`
    /// naming the missing slots as `name (have/need)`.
    pub fn wait_until_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let readiness =
                resolve::readiness(&self.shared.metadata.required_participants, &self.participants());
            if readiness.is_ready() {
                self.shared.note_ready();
                return Ok(());
            }
            if !self.is_connected() {
                return Err(Error::Disconnected {
                    reason: "the room connection ended while waiting for readiness".into(),
                });
            }
            if !self.shared.wait_for_change(deadline) {
                return Err(Error::Timeout {
                    operation: format!(
                        "waiting for session readiness (missing: {})",
                        readiness.missing_description()
                    ),
                    after: timeout,
                    may_still_be_running: false,
                });
            }
        }
    }

    /// The runtime's skills (`runtime.tools_list`).
    pub fn discover_skills(&self) -> Result<Vec<ToolDescriptor>> {
        let reply = self.shared.call(calls::tools_list_request(), None)?;
        calls::parse_tools_list_reply(&reply)
    }

    /// Runs a skill and blocks until it ends, returning the terminal [`ActionResult`]
    /// (`done` or `failed`; a failed result is an outcome, not an error).
    ///
    /// `timeout` defaults to the session's runtime call timeout, else 90 s. On timeout the
    /// error says the action may still be running on the robot.
    pub fn invoke(&self, skill: &str, params: Value, timeout: Option<Duration>) -> Result<ActionResult> {
        self.start_invoke(skill, params, timeout)?.wait_for_reply()
    }

    /// Starts a skill without waiting: poll the returned [`PendingAction`], wait on it, or
    /// cancel it. Resolves the runtime first if this is the session's first runtime call.
    pub fn start_invoke(
        &self,
        skill: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<PendingAction> {
        if skill.trim().is_empty() {
            return Err(Error::invalid("skill", "must not be empty"));
        }
        let action_id = calls::new_action_id();
        let request = calls::tools_call_request(skill, &params, &action_id)?;
        let timeout = timeout.or(self.shared.call_timeout).unwrap_or(request.timeout);
        let runtime = self.shared.runtime()?;
        let (tx, rx) = cb::bounded(1);
        let shared = Arc::clone(&self.shared);
        let id = action_id.clone();
        let params = CallParams {
            response_timeout: timeout,
            ..CallParams::new(runtime.clone(), request.method.clone(), request.payload)
        };
        self.shared.room.start_rpc(params, move |reply| {
            let outcome = shared.action_outcome(&runtime, &id, timeout, reply);
            if let Ok(result) = &outcome {
                shared.emit(SessionEvent::ActionResult(Box::new(RuntimeEvent::from_result(
                    result,
                ))));
            }
            let _ = tx.try_send(outcome);
        });
        Ok(PendingAction {
            action_id,
            timeout,
            reply: rx,
            outcome: None,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Reads runtime state.
    pub fn state(&self) -> StateReader<'_> {
        StateReader { session: self }
    }

    /// Cancels an action by id, or the active one with `"cancel-active"`, and returns the
    /// cancelled action's result.
    pub fn cancel_action(&self, action_id: &str) -> Result<ActionResult> {
        self.shared.cancel(action_id)
    }

    /// The runtime's capability descriptor (`runtime.capabilities`), or `None` on runtimes
    /// that predate it.
    pub fn get_capabilities(&self) -> Result<Option<Value>> {
        let request = calls::capabilities_request();
        match self.shared.call(request, None) {
            Ok(reply) => calls::parse_capabilities_reply(CapabilitiesOutcome::Reply(&reply)),
            Err(Error::Runtime { code, .. }) if code == "UNSUPPORTED_METHOD" => {
                calls::parse_capabilities_reply(CapabilitiesOutcome::UnsupportedMethod)
            }
            Err(err) => Err(err),
        }
    }

    /// One JPEG frame from a camera (`"pov"`, `"topdown"`, …), delivered over a LiveKit byte
    /// stream so full-resolution frames pass the 15 KiB RPC cap. Defaults: 1280×720, quality 0.7.
    pub fn get_vision(&self, camera: &str, options: &CaptureOptions) -> Result<Vec<u8>> {
        let request_id = calls::new_capture_request_id();
        let request = calls::cameras_capture_request(camera, options, &request_id)?;
        let frames = self.shared.expect_capture(&request_id);
        let ack = self.shared.call(request, None);
        let jpeg = match ack {
            Ok(reply) => match calls::parse_capture_ack(&reply) {
                Ok(CaptureAck::InlineJpeg(bytes)) => Ok(bytes),
                Ok(CaptureAck::ByteStream) => frames.wait(CAPTURE_GRACE),
                Err(err) => Err(err),
            },
            // The frame may already be on its way: the runtime streams it before it acks.
            Err(err) if err.is_timeout() => frames.wait(CAPTURE_GRACE).map_err(|_| err),
            Err(err) => Err(err),
        }?;
        calls::check_jpeg(&jpeg, "camera frame")?;
        Ok(jpeg)
    }

    /// Forwards an opaque envelope to the runtime (`runtime.forward_envelope`).
    pub fn forward_envelope(&self, envelope: &[u8]) -> Result<Value> {
        let request = calls::forward_envelope_request(envelope)?;
        let method = request.method.clone();
        let reply = self.shared.call(request, None)?;
        calls::parse_raw_reply(&method, &reply)
    }

    /// Runtime logs are not available yet: always [`Error::NotAvailable`].
    pub fn get_logs(&self) -> Result<Vec<String>> {
        Err(Error::NotAvailable {
            feature: "get_logs".into(),
            issue: "runtime logs are blocked on upstream platform work".into(),
        })
    }

    /// Leaves the room (emitting [`SessionEvent::Disconnected`] once) and, with
    /// `delete_session`, deletes the platform session (404 = already gone = success).
    ///
    /// Safe to call twice and from several threads at once. A failed delete is returned and
    /// retried by the next call; `delete_session = false` leaves a session someone else owns
    /// running.
    pub fn disconnect(&self, delete_session: bool) -> Result<()> {
        let mut lifecycle = lock(&self.lifecycle);
        if !lifecycle.left_room {
            self.leave_room("disconnected by the application");
            lifecycle.left_room = true;
        }
        if delete_session && !lifecycle.session_deleted {
            match self.shared.client.robots().delete_session(&self.shared.robot_id) {
                Ok(()) => lifecycle.session_deleted = true,
                Err(err) if err.status() == Some(404) => lifecycle.session_deleted = true,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    fn leave_room(&self, reason: &str) {
        self.shared.room.close();
        self.shared.emit_disconnected(reason);
        if let Some(jobs) = &self.shared.jobs {
            let _ = jobs.send(Job::Stop);
        }
        if let Some(pump) = lock(&self.pump).take() {
            let _ = pump.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let left = lock(&self.lifecycle).left_room;
        if !left {
            self.leave_room("the session was dropped");
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("robot_id", &self.shared.robot_id)
            .field("room_name", &self.shared.room_name)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Reads runtime state. Get one with [`Session::state`].
#[derive(Clone, Copy, Debug)]
pub struct StateReader<'s> {
    session: &'s Session,
}

impl StateReader<'_> {
    /// Reads a state key: `robot_status` and `scene_state` come back typed, any other key
    /// (read with `runtime.<key>`) as raw JSON.
    pub fn get(&self, key: &str) -> Result<StateReply> {
        let request = calls::state_request(key)?;
        let reply = self.session.shared.call(request, None)?;
        calls::parse_state_reply(key, &reply)
    }

    /// The runtime and robot status (`runtime.state`).
    pub fn robot_status(&self) -> Result<RuntimeState> {
        let reply = self
            .session
            .shared
            .call(calls::state_request(calls::ROBOT_STATUS_KEY)?, None)?;
        calls::parse_runtime_state_reply(&reply)
    }

    /// The scene's entities (`runtime.scene_state`).
    pub fn scene_state(&self) -> Result<SceneState> {
        let reply = self
            .session
            .shared
            .call(calls::state_request(calls::SCENE_STATE_KEY)?, None)?;
        calls::parse_scene_state_reply(&reply)
    }

    /// Every standard state key and its value: `robot_status` and `scene_state`.
    pub fn list(&self) -> Result<BTreeMap<String, StateReply>> {
        [calls::ROBOT_STATUS_KEY, calls::SCENE_STATE_KEY]
            .into_iter()
            .map(|key| Ok((key.to_owned(), self.get(key)?)))
            .collect()
    }
}

/// An action started with [`Session::start_invoke`].
pub struct PendingAction {
    action_id: String,
    timeout: Duration,
    reply: cb::Receiver<Result<ActionResult>>,
    outcome: Option<Result<ActionResult>>,
    shared: Arc<Shared>,
}

impl PendingAction {
    /// The action id (`act_…`), usable with [`Session::cancel_action`].
    pub fn action_id(&self) -> &str {
        &self.action_id
    }

    /// The outcome if the action has ended, without blocking.
    pub fn poll(&mut self) -> Option<&Result<ActionResult>> {
        if self.outcome.is_none() {
            self.outcome = self.reply.try_recv().ok();
        }
        self.outcome.as_ref()
    }

    /// Blocks until the action ends or `timeout` passes. On timeout the error says the
    /// action may still be running.
    pub fn wait(mut self, timeout: Duration) -> Result<ActionResult> {
        if let Some(outcome) = self.outcome.take() {
            return outcome;
        }
        self.reply.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(Error::Timeout {
                operation: format!("runtime.tools_call {}", self.action_id),
                after: timeout,
                may_still_be_running: true,
            })
        })
    }

    /// Asks the runtime to cancel this action; returns the cancelled action's result.
    pub fn cancel(&self) -> Result<ActionResult> {
        self.shared.cancel(&self.action_id)
    }

    /// Waits as long as the RPC may take (its reply timeout plus the engine's margin).
    fn wait_for_reply(self) -> Result<ActionResult> {
        let timeout = self.timeout + Duration::from_secs(5);
        self.wait(timeout)
    }
}

impl fmt::Debug for PendingAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAction")
            .field("action_id", &self.action_id)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn participants(&self) -> Vec<Participant> {
        self.room.participants().into_iter().map(to_participant).collect()
    }

    /// Pushes an event to the channel (dropping the oldest if full) and to the callbacks.
    fn emit(&self, event: SessionEvent) {
        if let Some(jobs) = self.jobs.as_ref().filter(|_| !self.callbacks.is_empty()) {
            let _ = jobs.send(Job::Callback(event.clone()));
        }
        if let Err(cb::TrySendError::Full(event)) = self.events_tx.try_send(event) {
            let _ = self.events_rx.try_recv();
            let _ = self.events_tx.try_send(event);
        }
    }

    fn emit_disconnected(&self, reason: &str) {
        if !self.disconnected_emitted.swap(true, Ordering::SeqCst) {
            self.emit(SessionEvent::Disconnected {
                reason: reason.to_owned(),
            });
        }
        self.note_change();
    }

    fn note_ready(&self) {
        if !self.ready_emitted.swap(true, Ordering::SeqCst) {
            self.emit(SessionEvent::SessionReady);
        }
    }

    fn note_change(&self) {
        let (count, changed) = &self.changes;
        *lock(count) += 1;
        changed.notify_all();
    }

    /// Waits until the participants change or `deadline` passes; false at the deadline.
    fn wait_for_change(&self, deadline: Instant) -> bool {
        let (count, changed) = &self.changes;
        let guard = lock(count);
        let seen = *guard;
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return false;
        };
        let (guard, _) = changed
            .wait_timeout_while(guard, left, |now| *now == seen)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard != seen || Instant::now() < deadline
    }

    /// The runtime worker's identity, resolved once (CONTRACT §7) and cached.
    fn runtime(&self) -> Result<String> {
        let mut guard = lock(&self.resolver);
        let Some(resolver) = guard.as_mut() else {
            return Err(self.hints.check().err().unwrap_or_else(|| Error::Runtime {
                code: resolve::RUNTIME_NOT_FOUND.into(),
                message: "no runtime hint".into(),
            }));
        };
        loop {
            if !self.room.is_connected() {
                return Err(Error::Disconnected {
                    reason: "the room connection ended".into(),
                });
            }
            for identity in std::mem::take(&mut *lock(&self.forgotten)) {
                if resolver.cached() == Some(identity.as_str()) {
                    resolver.invalidate();
                }
            }
            match resolver.poll(Instant::now(), &self.participants()) {
                ResolveStep::Resolved(identity) => return Ok(identity),
                ResolveStep::Failed(err) => return Err(err),
                ResolveStep::WaitUntil(at) => {
                    self.wait_for_change(at);
                }
                ResolveStep::Probe { identity, timeout } => {
                    let params = CallParams {
                        response_timeout: timeout,
                        ack_timeout: timeout.min(CallParams::new("", "", "").ack_timeout),
                        ..CallParams::new(identity.clone(), "runtime.tools_list", "{}")
                    };
                    let outcome = match self.room.perform_rpc_with(params) {
                        Ok(_) => ProbeOutcome::Answered,
                        Err(err) if err.code == RpcError::APPLICATION_ERROR => ProbeOutcome::Answered,
                        Err(_) => ProbeOutcome::NoAnswer,
                    };
                    resolver.on_probe(&identity, outcome, Instant::now());
                }
            }
        }
    }

    /// Stops treating `identity` as the runtime (it left, or stopped answering). Never
    /// blocks: runs on the pump and on the engine.
    fn forget_runtime(&self, identity: &str) {
        match self.resolver.try_lock() {
            Ok(mut resolver) => {
                if let Some(resolver) = resolver.as_mut().filter(|r| r.cached() == Some(identity)) {
                    resolver.invalidate();
                }
            }
            Err(_) => {
                let mut forgotten = lock(&self.forgotten);
                if !forgotten.iter().any(|known| known == identity) {
                    if forgotten.len() >= MAX_FORGOTTEN {
                        forgotten.remove(0);
                    }
                    forgotten.push(identity.to_owned());
                }
            }
        }
    }

    /// One runtime call, blocking until the reply.
    fn call(&self, request: RpcRequest, timeout: Option<Duration>) -> Result<String> {
        let timeout = timeout.or(self.call_timeout).unwrap_or(request.timeout);
        let runtime = self.runtime()?;
        let method = request.method.clone();
        let params = CallParams {
            response_timeout: timeout,
            ..CallParams::new(runtime.clone(), request.method, request.payload)
        };
        self.room
            .perform_rpc_with(params)
            .map_err(|err| self.rpc_error(&runtime, &method, timeout, err))
    }

    fn cancel(&self, action_id: &str) -> Result<ActionResult> {
        let reply = self.call(calls::cancel_request(action_id)?, None)?;
        calls::parse_cancel_reply(&reply)
    }

    fn action_outcome(
        &self,
        runtime: &str,
        action_id: &str,
        timeout: Duration,
        reply: std::result::Result<String, RpcError>,
    ) -> Result<ActionResult> {
        match reply {
            Ok(reply) => calls::parse_tools_call_reply(&reply, action_id),
            Err(err) => Err(self.rpc_error(runtime, "runtime.tools_call", timeout, err)),
        }
    }

    /// Maps a LiveKit RPC failure onto the SDK's error type.
    fn rpc_error(&self, runtime: &str, method: &str, timeout: Duration, err: RpcError) -> Error {
        let may_still_be_running = matches!(method, "runtime.tools_call" | "runtime.cameras_capture");
        match err.code {
            RpcError::RESPONSE_TIMEOUT | RpcError::CONNECTION_TIMEOUT => Error::Timeout {
                operation: method.to_owned(),
                after: timeout,
                may_still_be_running,
            },
            RpcError::RECIPIENT_DISCONNECTED | RpcError::RECIPIENT_NOT_FOUND if !self.room.is_connected() => {
                Error::Disconnected {
                    reason: "the room connection ended".into(),
                }
            }
            code => {
                if matches!(
                    code,
                    RpcError::RECIPIENT_DISCONNECTED | RpcError::RECIPIENT_NOT_FOUND
                ) {
                    self.forget_runtime(runtime);
                }
                Error::Runtime {
                    code: rpc_code_name(code),
                    message: err.message,
                }
            }
        }
    }

    fn expect_capture(self: &Arc<Self>, request_id: &str) -> CaptureWait {
        let (tx, rx) = cb::bounded(1);
        lock(&self.captures).insert(request_id.to_owned(), tx);
        CaptureWait {
            shared: Arc::clone(self),
            request_id: request_id.to_owned(),
            frames: rx,
        }
    }

    fn route_stream(&self, stream: ByteStream) {
        if stream.topic != calls::CAMERA_CAPTURE_TOPIC {
            log::debug!(target: "menlo_robot_sdk", "ignoring a byte stream on topic {:?}", stream.topic);
            return;
        }
        let request_id = stream
            .attributes
            .get(calls::CAPTURE_REQUEST_ID_ATTRIBUTE)
            .cloned()
            .unwrap_or_else(|| stream.name.clone());
        match lock(&self.captures).remove(&request_id) {
            Some(waiter) => {
                let _ = waiter.try_send(stream);
            }
            None => log::debug!(target: "menlo_robot_sdk", "a camera frame arrived that nobody waits for"),
        }
    }

    fn on_room_event(&self, event: RoomEvent) -> bool {
        match event {
            RoomEvent::ParticipantJoined(p) => {
                self.emit(SessionEvent::ParticipantJoined(to_participant(p)));
                self.check_ready();
            }
            RoomEvent::ParticipantUpdated(_) => self.check_ready(),
            RoomEvent::ParticipantLeft(p) => {
                let participant = to_participant(p);
                self.forget_runtime(&participant.identity);
                self.emit(SessionEvent::ParticipantLeft(participant));
            }
            RoomEvent::Disconnected { reason } => {
                self.emit_disconnected(&reason);
                return false;
            }
            _ => {}
        }
        self.note_change();
        true
    }

    fn check_ready(&self) {
        if !self.ready_emitted.load(Ordering::SeqCst)
            && resolve::readiness(&self.metadata.required_participants, &self.participants()).is_ready()
        {
            self.note_ready();
        }
    }
}

/// A registered wait for one camera frame; unregisters itself when dropped.
struct CaptureWait {
    shared: Arc<Shared>,
    request_id: String,
    frames: cb::Receiver<ByteStream>,
}

impl CaptureWait {
    fn wait(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.frames
            .recv_timeout(timeout)
            .map(|stream| stream.data)
            .map_err(|_| Error::Timeout {
                operation: format!("camera frame on {}", calls::CAMERA_CAPTURE_TOPIC),
                after: timeout,
                may_still_be_running: false,
            })
    }
}

impl Drop for CaptureWait {
    fn drop(&mut self) {
        lock(&self.shared.captures).remove(&self.request_id);
    }
}

/// The session's own thread: turns room events into session events, routes camera frames,
/// and runs callbacks. Ends on `Job::Stop` or when the session is gone.
fn pump(shared: &Arc<Shared>, jobs: &cb::Receiver<Job>) {
    let mut events = shared.room.events().clone();
    let mut streams = shared.room.byte_streams().clone();
    loop {
        cb::select! {
            recv(jobs) -> job => match job {
                Ok(Job::Callback(event)) => shared.callbacks.dispatch(&event),
                Ok(Job::Stop) | Err(_) => break,
            },
            recv(events) -> event => match event {
                Ok(event) => {
                    if !shared.on_room_event(event) {
                        events = cb::never();
                    }
                }
                Err(_) => {
                    shared.emit_disconnected("the room connection ended");
                    events = cb::never();
                }
            },
            recv(streams) -> stream => match stream {
                Ok(stream) => shared.route_stream(stream),
                Err(_) => streams = cb::never(),
            },
        }
    }
    // Run the callbacks of events emitted before the stop (such as `Disconnected`).
    while let Ok(Job::Callback(event)) = jobs.try_recv() {
        shared.callbacks.dispatch(&event);
    }
}

pub(crate) fn to_participant(p: crate::live::Participant) -> Participant {
    use crate::live::ParticipantKind as Kind;
    let kind = match p.kind {
        Kind::Standard => ParticipantKind::Standard,
        Kind::Agent => ParticipantKind::Agent,
        other => ParticipantKind::Other(format!("{other:?}").to_ascii_lowercase()),
    };
    Participant {
        identity: p.identity,
        kind,
        attributes: p.attributes.into_iter().collect(),
    }
}

fn rpc_code_name(code: u32) -> String {
    match code {
        RpcError::APPLICATION_ERROR => "APPLICATION_ERROR".into(),
        RpcError::RECIPIENT_DISCONNECTED => "RECIPIENT_DISCONNECTED".into(),
        RpcError::RESPONSE_PAYLOAD_TOO_LARGE => "RESPONSE_PAYLOAD_TOO_LARGE".into(),
        RpcError::SEND_FAILED => "SEND_FAILED".into(),
        RpcError::UNSUPPORTED_METHOD => "UNSUPPORTED_METHOD".into(),
        RpcError::RECIPIENT_NOT_FOUND => "RECIPIENT_NOT_FOUND".into(),
        RpcError::REQUEST_PAYLOAD_TOO_LARGE => "REQUEST_PAYLOAD_TOO_LARGE".into(),
        RpcError::UNSUPPORTED_SERVER => "UNSUPPORTED_SERVER".into(),
        RpcError::UNSUPPORTED_VERSION => "UNSUPPORTED_VERSION".into(),
        other => format!("RPC_{other}"),
    }
}

/// Maps an engine failure while joining `url` (bounded by `connect_timeout`) onto the SDK's
/// error type (never with the token).
pub(crate) fn live_error(err: &LiveError, url: &str, connect_timeout: Duration) -> Error {
    match err {
        LiveError::Io(io) => Error::Transport {
            method: "CONNECT".into(),
            url: url.to_owned(),
            reason: io.to_string(),
            source: Box::new(std::io::Error::new(io.kind(), io.to_string())),
        },
        LiveError::Timeout(what) => Error::Timeout {
            operation: format!("joining the room ({what})"),
            after: connect_timeout,
            may_still_be_running: false,
        },
        LiveError::InvalidUrl(_) | LiveError::InvalidArgument(_) => {
            Error::invalid("livekit_url", err.to_string())
        }
        other => Error::Disconnected {
            reason: other.to_string(),
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
