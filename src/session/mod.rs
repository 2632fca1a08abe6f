//! The live session: [`connect`] a robot's room and drive its runtime.
//!
//! A [`Session`] joins the robot's LiveKit room through the SDK's private engine and calls
//! `runtime.*` RPC on the runtime worker participant. Every call comes in two forms: a
//! blocking one (`invoke`, `state().get`, …) and a non-blocking `start_*` one that returns a
//! handle at once ([`PendingAction`], [`Pending`]), for game loops that must never block.
//!
//! Where the work runs:
//! - calls (including the first one, which has to find the runtime, CONTRACT §7) run as
//!   async tasks on the executor, the SDK's private tokio pool; the runtime is searched for
//!   by at most one task at a time, and the calls made meanwhile wait for its answer;
//! - room events go straight from the engine into the session's [`Events`] queue; camera
//!   frames go straight to the call waiting for them;
//! - callbacks run on one SDK thread shared by every session (see [`ConnectCallbacks`]).
//!
//! There is no thread per session.
//!
//! # When the link drops
//!
//! A lost link (Wi-Fi gone, a silent cut, a server restart) does not end the session: the SDK
//! reports [`SessionEvent::Reconnecting`] and brings the link back, first by resuming the same
//! participant session, else by joining again as a new participant, for at most
//! [`ConnectOptions::reconnect_timeout`] (60 s by default); then
//! [`SessionEvent::Reconnected`] says which ([`ReconnectKind`]). Only if it does not come
//! back in time is the session [`SessionEvent::Disconnected`]. Meanwhile:
//! - [`Session::is_connected`] stays true and [`Session::connection_state`] reads
//!   [`ConnectionState::Reconnecting`];
//! - calls made or in flight wait for the link, each within its own timeout (a call that
//!   reaches its timeout fails with [`Error::Timeout`] stating that timeout, as always);
//! - after a resume every call completes, its reply delivered once;
//! - after a full reconnect, a call whose request may or may not have reached the runtime
//!   fails with [`Error::ConnectionLost`] (saying whether the action may still be running);
//!   reads (state, tools list, capabilities) are sent again once instead, within the same
//!   timeout. The runtime is looked up again if its participant changed.

mod dispatcher;
mod errors;
mod events;
mod options;
mod pending;
#[cfg(all(test, feature = "dev"))]
mod tests_in_room;
pub(crate) mod timeouts;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::live::{
    ByteStream, CallParams, NetworkPath, Participant, Room, RoomEvent, RoomObserver, RoomOptions,
    RpcErrorCode, RpcWire,
};
use crate::models::SessionMetadata;
use crate::room_key::check_livekit_url;
use crate::runtime::calls::{self, CapabilitiesOutcome, CaptureAck, CaptureOptions, RpcRequest, StateReply};
use crate::runtime::models::{ActionResult, RuntimeEvent, RuntimeState, SceneState, ToolDescriptor};
use crate::runtime::resolve::{self, ProbeOutcome, ResolveStep, Resolver, RuntimeHints};
use crate::runtime_error::RuntimeErrorCode;

pub(crate) use errors::join_failure;
pub use events::{ConnectionState, Events, ReconnectKind, SessionEvent, EVENT_QUEUE_CAPACITY};
pub(crate) use options::ProxyChoice;
pub use options::{ConnectCallbacks, ConnectOptions, DEFAULT_SESSION_READY_TIMEOUT};
pub use pending::{Pending, PendingAction};

use events::EventQueue;
use pending::pending;

/// Bound of the identities waiting to be forgotten as the runtime (participants that left
/// while a task held the resolver).
const MAX_FORGOTTEN: usize = 256;

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
    options.check()?;
    let proxy = options.live_proxy()?;
    if let Some(url) = &options.livekit_url {
        check_livekit_url(url)?;
    }
    let created = client.robots().create_session(robot_id, &options.session)?;
    let url = options
        .livekit_url
        .clone()
        .unwrap_or_else(|| created.livekit_url.clone());
    let inbox = Arc::new(Inbox::default());
    let joined = check_livekit_url(&url).and_then(|()| {
        let room_options = RoomOptions {
            connect_timeout: options.connect_timeout,
            extra_root_certs_der: options.root_certificates.clone(),
            stream_topics: vec![calls::CAMERA_CAPTURE_TOPIC.to_owned()],
            paths: crate::live::net::PathOptions {
                udp: options.ice_udp,
                tcp: options.ice_tcp,
                turn_tls_port: options.turn_tls_port,
                ..Default::default()
            },
            reconnect_timeout: options.reconnect_timeout,
            proxy,
            ..RoomOptions::default()
        };
        let observer: Arc<dyn RoomObserver> = inbox.clone();
        Room::connect(&url, created.participant_token.expose(), room_options, observer)
            .map_err(|e| join_failure(e, &url, options.connect_timeout))
    });
    let room = match joined {
        Ok(room) => room,
        Err(err) => {
            rollback_session(client, robot_id);
            return Err(err);
        }
    };
    let wait_for_ready = options.wait_for_ready.then_some(options.session_ready_timeout);
    let session = Session::start(
        client.clone(),
        robot_id,
        created.room_metadata,
        room,
        &inbox,
        options,
    );
    if let Some(timeout) = wait_for_ready {
        if let Err(err) = session.wait_until_ready(timeout) {
            let _ = session.disconnect();
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
/// **Drop** leaves the room and stops this session's tasks and sockets, but leaves the
/// platform session running (as [`Session::leave`] does). Only [`Session::disconnect`] also
/// deletes the session on the platform.
#[must_use = "dropping a Session leaves the room"]
pub struct Session {
    shared: Arc<Shared>,
    lifecycle: Mutex<Lifecycle>,
}

#[derive(Default)]
struct Lifecycle {
    left_room: bool,
    session_deleted: bool,
}

/// What the session, its call tasks and its pending handles share.
pub(crate) struct Shared {
    client: Client,
    robot_id: String,
    room_name: String,
    metadata: SessionMetadata,
    room: Room,
    hints: RuntimeHints,
    /// Held by the one task searching for the runtime; calls made meanwhile queue on it.
    resolver: tokio::sync::Mutex<Option<Resolver>>,
    /// Identities to stop treating as the runtime, applied by the next resolution. Recorded
    /// here when the resolver is busy: the engine (which reports departures) never waits.
    forgotten: Mutex<Vec<String>>,
    /// The runtime's identity and participant sid when it was found: a new sid under the
    /// same identity (it joined again) means it must be found again.
    runtime_participant: Mutex<Option<(String, String)>>,
    call_timeout: Option<Duration>,
    events: EventQueue,
    callbacks: Option<Arc<ConnectCallbacks>>,
    captures: Mutex<HashMap<String, tokio::sync::oneshot::Sender<ByteStream>>>,
    /// Participant-change counter, for blocking readiness waits.
    changes: (Mutex<u64>, Condvar),
    /// The same, for async waits (resolution).
    changed: tokio::sync::Notify,
    ready_emitted: AtomicBool,
    /// Between `Reconnecting` and `Reconnected` (or the end).
    reconnecting: AtomicBool,
    disconnected_emitted: AtomicBool,
}

impl Session {
    fn start(
        client: Client,
        robot_id: &str,
        metadata: SessionMetadata,
        room: Room,
        inbox: &Inbox,
        options: ConnectOptions,
    ) -> Session {
        let hints = RuntimeHints::from_slots(
            options.runtime_identity_prefix.as_deref(),
            &metadata.required_participants,
        );
        let resolver = Resolver::new(hints.clone(), options.session_ready_timeout).ok();
        let callbacks = (!options.callbacks.is_empty()).then(|| Arc::new(options.callbacks));
        let shared = Arc::new(Shared {
            client,
            robot_id: robot_id.to_owned(),
            room_name: room.room_name().to_owned(),
            metadata,
            room,
            hints,
            resolver: tokio::sync::Mutex::new(resolver),
            forgotten: Mutex::new(Vec::new()),
            runtime_participant: Mutex::new(None),
            call_timeout: options.runtime_call_timeout,
            events: EventQueue::new(EVENT_QUEUE_CAPACITY),
            callbacks,
            captures: Mutex::new(HashMap::new()),
            changes: (Mutex::new(0), Condvar::new()),
            changed: tokio::sync::Notify::new(),
            ready_emitted: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
            disconnected_emitted: AtomicBool::new(false),
        });
        shared.emit(SessionEvent::Connected {
            room_name: shared.room_name.clone(),
        });
        inbox.attach(&shared);
        Session {
            shared,
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

    /// Whether the session still has its room: true while connected **and while
    /// reconnecting** (calls then wait for the link within their timeouts), false once the
    /// session is disconnected for good. [`Session::connection_state`] tells the two apart.
    pub fn is_connected(&self) -> bool {
        self.shared.link_up()
    }

    /// Connected, reconnecting (see [`SessionEvent::Reconnecting`]) or disconnected.
    pub fn connection_state(&self) -> ConnectionState {
        self.shared.connection_state()
    }

    /// The network path the session rides on now: UDP, ICE over TCP, or a TURN relay
    /// ([`NetworkPath::is_relayed`]), i.e. where the session's data arrives. Cheap (an atomic
    /// read).
    ///
    /// It follows the link: an ICE restart that moves the data to another path (UDP blocked
    /// meanwhile, say) or a full reconnect changes it. `None` unless
    /// [`ConnectionState::Connected`]: while reconnecting, once disconnected, and in the
    /// moment after connecting before the first data arrives.
    pub fn network_path(&self) -> Option<NetworkPath> {
        if self.connection_state() != ConnectionState::Connected {
            return None;
        }
        self.shared.room.network_path()
    }

    /// The other participants in the room now.
    pub fn participants(&self) -> Vec<Participant> {
        self.shared.room.participants()
    }

    /// Session events, in order. Read without blocking ([`Events::try_recv`]), with a
    /// timeout, or by iterating. When nobody reads, the newest [`EVENT_QUEUE_CAPACITY`]
    /// events are kept.
    pub fn events(&self) -> &Events {
        self.shared.events.events()
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
                return Err(Error::disconnected(
                    "the room connection ended while waiting for readiness",
                ));
            }
            if !self.shared.wait_for_change(deadline) {
                return Err(Error::Timeout {
                    operation: format!(
                        "waiting for session readiness (missing: {})",
                        readiness.missing_description()
                    ),
                    after: timeout,
                    may_still_be_running: false,
                    source: None,
                });
            }
        }
    }

    /// The runtime's skills (`runtime.tools_list`). Blocking form of
    /// [`Session::start_discover_skills`].
    pub fn discover_skills(&self) -> Result<Vec<ToolDescriptor>> {
        self.start_discover_skills().wait()
    }

    /// Starts `runtime.tools_list` without waiting.
    pub fn start_discover_skills(&self) -> Pending<Vec<ToolDescriptor>> {
        self.shared.start_read(calls::tools_list_request(), |_, reply| {
            calls::parse_tools_list_reply(&reply?)
        })
    }

    /// Runs a skill and blocks until it ends, returning the terminal [`ActionResult`]
    /// (`done` or `failed`; a failed result is an outcome, not an error).
    ///
    /// `timeout` defaults to the session's runtime call timeout, else 90 s. On timeout the
    /// error says the action may still be running on the robot.
    pub fn invoke(&self, skill: &str, params: Value, timeout: Option<Duration>) -> Result<ActionResult> {
        self.start_invoke(skill, params, timeout)?.wait()
    }

    /// Starts a skill without waiting (not even for the runtime to be found): poll the
    /// returned [`PendingAction`], wait on it, or cancel it. Fails at once only for
    /// arguments that cannot be sent (an empty skill name, a payload over 15 KiB).
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
        let id = action_id.clone();
        let reply = self.shared.start_call(request, timeout, move |shared, reply| {
            let outcome = calls::parse_tools_call_reply(&reply?, &id);
            if let Ok(result) = &outcome {
                let event = RuntimeEvent::from_result(result);
                shared.emit(SessionEvent::ActionResult(Box::new(event)));
            }
            outcome
        });
        Ok(PendingAction {
            action_id,
            reply,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Reads runtime state.
    pub fn state(&self) -> StateReader<'_> {
        StateReader { session: self }
    }

    /// Cancels an action by id and returns the cancelled action's result (see also
    /// [`Session::cancel_active`]). Blocking form of [`Session::start_cancel_action`].
    pub fn cancel_action(&self, action_id: &str) -> Result<ActionResult> {
        self.start_cancel_action(action_id)?.wait()
    }

    /// Starts cancelling an action by id without waiting.
    pub fn start_cancel_action(&self, action_id: &str) -> Result<Pending<ActionResult>> {
        self.shared.start_cancel(action_id)
    }

    /// Cancels whatever action the runtime is running now (`"cancel-active"`), and returns
    /// the cancelled action's result.
    pub fn cancel_active(&self) -> Result<ActionResult> {
        self.start_cancel_active().wait()
    }

    /// Starts cancelling the running action without waiting.
    pub fn start_cancel_active(&self) -> Pending<ActionResult> {
        self.shared
            .start_cancel(calls::CANCEL_ACTIVE)
            .unwrap_or_else(|err| failed("runtime.cancel", err))
    }

    /// The runtime's capability descriptor (`runtime.capabilities`), or `None` on runtimes
    /// that predate it. Blocking form of [`Session::start_get_capabilities`].
    pub fn get_capabilities(&self) -> Result<Option<Value>> {
        self.start_get_capabilities().wait()
    }

    /// Starts reading the capability descriptor without waiting.
    pub fn start_get_capabilities(&self) -> Pending<Option<Value>> {
        self.shared
            .start_read(calls::capabilities_request(), |_, reply| match reply {
                Ok(reply) => calls::parse_capabilities_reply(CapabilitiesOutcome::Reply(&reply)),
                Err(Error::Rpc(err)) if err.code == RpcErrorCode::UnsupportedMethod => {
                    calls::parse_capabilities_reply(CapabilitiesOutcome::UnsupportedMethod)
                }
                Err(err) => Err(err),
            })
    }

    /// One JPEG frame from a camera (`"pov"`, `"topdown"`, …), delivered over a LiveKit byte
    /// stream so full-resolution frames pass the 15 KiB RPC cap. Defaults: 1280×720, quality
    /// 0.7. Blocking form of [`Session::start_get_vision`].
    pub fn get_vision(&self, camera: &str, options: &CaptureOptions) -> Result<Vec<u8>> {
        self.start_get_vision(camera, options)?.wait()
    }

    /// Starts a camera capture without waiting; the handle gives the JPEG bytes.
    pub fn start_get_vision(&self, camera: &str, options: &CaptureOptions) -> Result<Pending<Vec<u8>>> {
        let request_id = calls::new_capture_request_id();
        let request = calls::cameras_capture_request(camera, options, &request_id)?;
        let frame = self.shared.expect_capture(&request_id);
        let timeout = self.shared.timeout_of(&request, None);
        let (done, handle) = pending(calls::method::CAMERAS_CAPTURE);
        let shared = Arc::clone(&self.shared);
        self.shared.room.spawn(async move {
            let ack = shared.call(request, timeout, OnLost::Fail).await;
            let jpeg = match ack {
                Ok(reply) => match calls::parse_capture_ack(&reply) {
                    Ok(CaptureAck::InlineJpeg(bytes)) => Ok(bytes),
                    Ok(CaptureAck::ByteStream) => frame.wait(timeouts::CAPTURE_FRAME).await,
                    Err(err) => Err(err),
                },
                // The frame may already be on its way: the runtime streams it before it acks.
                Err(err) if err.is_timeout() => frame.wait(timeouts::CAPTURE_FRAME).await.map_err(|_| err),
                Err(err) => Err(err),
            };
            done.complete(jpeg.and_then(|jpeg| {
                calls::check_jpeg(&jpeg, "camera frame")?;
                Ok(jpeg)
            }));
        });
        Ok(handle)
    }

    /// Forwards an opaque envelope to the runtime (`runtime.forward_envelope`). Blocking
    /// form of [`Session::start_forward_envelope`].
    pub fn forward_envelope(&self, envelope: &[u8]) -> Result<Value> {
        self.start_forward_envelope(envelope)?.wait()
    }

    /// Starts forwarding an envelope without waiting.
    pub fn start_forward_envelope(&self, envelope: &[u8]) -> Result<Pending<Value>> {
        let request = calls::forward_envelope_request(envelope)?;
        Ok(self.shared.start_call(request, None, |_, reply| {
            calls::parse_raw_reply(calls::method::FORWARD_ENVELOPE, &reply?)
        }))
    }

    /// Runtime logs are not available yet: always [`Error::NotAvailable`].
    pub fn get_logs(&self) -> Result<Vec<String>> {
        Err(Error::NotAvailable {
            feature: "get_logs".into(),
            issue: "runtime logs are blocked on upstream platform work".into(),
        })
    }

    /// Leaves the room (emitting [`SessionEvent::Disconnected`] once) and deletes the
    /// platform session (404, already gone, counts as success).
    ///
    /// Safe to call twice and from several threads at once. A failed delete is returned and
    /// retried by the next call.
    pub fn disconnect(&self) -> Result<()> {
        let mut lifecycle = lock(&self.lifecycle);
        self.leave_once(&mut lifecycle);
        if !lifecycle.session_deleted {
            match self.shared.client.robots().delete_session(&self.shared.robot_id) {
                Ok(()) => lifecycle.session_deleted = true,
                Err(err) if err.status() == Some(404) => lifecycle.session_deleted = true,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Leaves the room (emitting [`SessionEvent::Disconnected`] once) but keeps the platform
    /// session running, e.g. for a session someone else owns. Safe to call twice and from
    /// several threads at once; [`Session::disconnect`] afterwards still deletes the session.
    pub fn leave(&self) {
        self.leave_once(&mut lock(&self.lifecycle));
    }

    /// Test hook: drops the room's signal websocket as if the network had closed it.
    #[doc(hidden)]
    pub fn drop_signal_for_test(&self) {
        self.shared.room.drop_signal_for_test();
    }

    /// Test hook: asks livekit-server to simulate a scenario (e.g. `node_failure`,
    /// `server_leave`, `switch_candidate_protocol_tcp`); false for an unknown name.
    #[doc(hidden)]
    pub fn simulate_scenario_for_test(&self, scenario: &str) -> bool {
        self.shared.room.simulate_for_test(scenario)
    }

    /// Test hook: the room's network is gone for `duration` (datagrams and signal frames
    /// vanish both ways, new connections fail at once).
    #[doc(hidden)]
    pub fn cut_link_for_test(&self, duration: Duration) {
        self.shared.room.cut_link_for_test(duration);
    }

    /// Test hook: every recovery of the room's link so far, as (resumed, when).
    #[doc(hidden)]
    pub fn reconnects_for_test(&self) -> Vec<(bool, Instant)> {
        self.shared.room.reconnects()
    }

    fn leave_once(&self, lifecycle: &mut Lifecycle) {
        self.leave_room(lifecycle, "disconnected by the application");
    }

    /// Leaves the room once. `Disconnected` goes out first, with the application's reason:
    /// the engine's own report of the closing comes after it and is not repeated.
    fn leave_room(&self, lifecycle: &mut Lifecycle, reason: &str) {
        if !lifecycle.left_room {
            self.shared.emit_disconnected(reason);
            self.shared.room.close();
            lifecycle.left_room = true;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut lifecycle = lock(&self.lifecycle);
        self.leave_room(&mut lifecycle, "the session was dropped");
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
    /// (read with `runtime.<key>`) as raw JSON. Blocking form of [`StateReader::start_get`].
    pub fn get(&self, key: &str) -> Result<StateReply> {
        self.start_get(key)?.wait()
    }

    /// Starts reading a state key without waiting.
    pub fn start_get(&self, key: &str) -> Result<Pending<StateReply>> {
        let request = calls::state_request(key)?;
        let key = key.to_owned();
        Ok(self
            .session
            .shared
            .start_read(request, move |_, reply| calls::parse_state_reply(&key, &reply?)))
    }

    /// The runtime and robot status (`runtime.state`).
    pub fn robot_status(&self) -> Result<RuntimeState> {
        self.start_robot_status().wait()
    }

    /// Starts reading the runtime and robot status without waiting.
    pub fn start_robot_status(&self) -> Pending<RuntimeState> {
        self.start_typed(calls::ROBOT_STATUS_KEY, |reply| {
            calls::parse_runtime_state_reply(reply)
        })
    }

    /// The scene's entities (`runtime.scene_state`).
    pub fn scene_state(&self) -> Result<SceneState> {
        self.start_scene_state().wait()
    }

    /// Starts reading the scene's entities without waiting.
    pub fn start_scene_state(&self) -> Pending<SceneState> {
        self.start_typed(calls::SCENE_STATE_KEY, |reply| {
            calls::parse_scene_state_reply(reply)
        })
    }

    /// Every standard state key and its value: `robot_status` and `scene_state` (read
    /// concurrently).
    pub fn list(&self) -> Result<BTreeMap<String, StateReply>> {
        let reads = [calls::ROBOT_STATUS_KEY, calls::SCENE_STATE_KEY]
            .into_iter()
            .map(|key| Ok((key.to_owned(), self.start_get(key)?)))
            .collect::<Result<Vec<_>>>()?;
        reads
            .into_iter()
            .map(|(key, read)| Ok((key, read.wait()?)))
            .collect()
    }

    fn start_typed<T: Send + 'static>(
        &self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T> + Send + 'static,
    ) -> Pending<T> {
        match calls::state_request(key) {
            Ok(request) => self
                .session
                .shared
                .start_read(request, move |_, reply| parse(&reply?)),
            Err(err) => failed(calls::method::STATE, err),
        }
    }
}

/// A handle that has already failed with `err`.
fn failed<T>(operation: &'static str, err: Error) -> Pending<T> {
    let (done, handle) = pending(operation);
    done.complete(Err(err));
    handle
}

impl Shared {
    /// Pushes an event to the queue (dropping the oldest if full) and to the callbacks.
    /// Nothing follows `Disconnected` (e.g. the departures the engine reports as it closes).
    fn emit(&self, event: SessionEvent) {
        let closing = matches!(event, SessionEvent::Disconnected { .. });
        if !closing && self.disconnected_emitted.load(Ordering::SeqCst) {
            return;
        }
        if let Some(callbacks) = &self.callbacks {
            let callbacks = Arc::clone(callbacks);
            let for_callbacks = event.clone();
            dispatcher::dispatch(move || callbacks.run(&for_callbacks));
        }
        self.events.push(event);
    }

    fn emit_disconnected(&self, reason: &str) {
        if !self.disconnected_emitted.swap(true, Ordering::SeqCst) {
            self.emit(SessionEvent::Disconnected {
                reason: reason.to_owned(),
            });
        }
        self.note_change();
    }

    /// The engine's connected flag stays up while it reconnects and drops as it gives up,
    /// before it fails the calls still pending (which must then read as disconnected); between
    /// `Reconnecting` and `Reconnected` the session reads `Reconnecting`.
    fn connection_state(&self) -> ConnectionState {
        if self.disconnected_emitted.load(Ordering::SeqCst) || !self.room.is_connected() {
            ConnectionState::Disconnected
        } else if self.reconnecting.load(Ordering::SeqCst) {
            ConnectionState::Reconnecting
        } else {
            ConnectionState::Connected
        }
    }

    /// The room is connected or reconnecting: calls may still succeed.
    fn link_up(&self) -> bool {
        self.connection_state() != ConnectionState::Disconnected
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
        self.changed.notify_waiters();
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

    /// The reply timeout of `request`: the caller's, else the session's, else the method's.
    fn timeout_of(&self, request: &RpcRequest, timeout: Option<Duration>) -> Duration {
        timeout.or(self.call_timeout).unwrap_or(request.timeout)
    }

    /// Starts one runtime call on the executor; `finish` turns its reply (or failure) into
    /// the handle's result and runs there too (it must not block). A reply lost to a full
    /// reconnect fails the call ([`Error::ConnectionLost`]): it may have acted.
    fn start_call<T: Send + 'static>(
        self: &Arc<Self>,
        request: RpcRequest,
        timeout: Option<Duration>,
        finish: impl FnOnce(&Shared, Result<String>) -> Result<T> + Send + 'static,
    ) -> Pending<T> {
        self.spawn_call(request, timeout, OnLost::Fail, finish)
    }

    /// [`Shared::start_call`] for a read, which is sent again (once, within its timeout) when
    /// a full reconnect loses its reply.
    fn start_read<T: Send + 'static>(
        self: &Arc<Self>,
        request: RpcRequest,
        finish: impl FnOnce(&Shared, Result<String>) -> Result<T> + Send + 'static,
    ) -> Pending<T> {
        self.spawn_call(request, None, OnLost::ResendOnce, finish)
    }

    fn spawn_call<T: Send + 'static>(
        self: &Arc<Self>,
        request: RpcRequest,
        timeout: Option<Duration>,
        on_lost: OnLost,
        finish: impl FnOnce(&Shared, Result<String>) -> Result<T> + Send + 'static,
    ) -> Pending<T> {
        let timeout = self.timeout_of(&request, timeout);
        let (done, handle) = pending(method_name(&request));
        let shared = Arc::clone(self);
        self.room.spawn(async move {
            let reply = shared.call(request, timeout, on_lost).await;
            done.complete(finish(&shared, reply));
        });
        handle
    }

    fn start_cancel(self: &Arc<Self>, action_id: &str) -> Result<Pending<ActionResult>> {
        let request = calls::cancel_request(action_id)?;
        Ok(self.start_call(request, None, |_, reply| calls::parse_cancel_reply(&reply?)))
    }

    /// One runtime call: finds the runtime (once, bounded by the session ready timeout), then
    /// sends the request and waits for the reply, that part bounded by `timeout` end to end
    /// (a resend after a lost reply included).
    async fn call(&self, request: RpcRequest, timeout: Duration, on_lost: OnLost) -> Result<String> {
        let runtime = self.runtime().await?;
        let deadline = Instant::now() + timeout;
        match self.call_runtime(&runtime, &request, timeout, deadline).await {
            Err(err) if err.is_connection_lost() && on_lost == OnLost::ResendOnce => {
                self.resend(&request, timeout, deadline).await
            }
            outcome => outcome,
        }
    }

    /// Sends a read again after a full reconnect lost its reply: to the runtime as found now
    /// (it is looked up again if its participant changed), within the same deadline.
    async fn resend(&self, request: &RpcRequest, timeout: Duration, deadline: Instant) -> Result<String> {
        log::debug!(target: "menlo_robot_sdk", "{}: reply lost to a full reconnect; sending it again", request.method);
        let runtime = match tokio::time::timeout_at(deadline.into(), self.runtime()).await {
            Ok(found) => found?,
            Err(_) => return Err(errors::timed_out(&request.method, timeout)),
        };
        self.call_runtime(&runtime, request, timeout, deadline).await
    }

    /// Sends `request` to `runtime` and waits for the reply until `deadline` (the call's
    /// `timeout` counted from its first send): the acknowledgement and the response share
    /// what is left, and the runtime is told that much time to answer.
    async fn call_runtime(
        &self,
        runtime: &str,
        request: &RpcRequest,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<String> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let params = call_params(runtime, request, budget);
        let reply = match tokio::time::timeout_at(deadline.into(), self.room.call(params)).await {
            Ok(reply) => reply,
            Err(_) => return Err(errors::timed_out(&request.method, timeout)),
        };
        reply.map_err(|err| {
            let failure = errors::call_failure(err, &request.method, timeout, self.link_up());
            if failure.runtime_gone {
                self.forget_runtime(runtime);
            }
            failure.error
        })
    }

    /// The runtime worker's identity, resolved (CONTRACT §7) by one task at a time and
    /// cached; concurrent callers wait for that task's answer.
    async fn runtime(&self) -> Result<String> {
        let mut guard = self.resolver.lock().await;
        let Some(resolver) = guard.as_mut() else {
            return Err(self.hints.check().err().unwrap_or_else(|| Error::Runtime {
                code: RuntimeErrorCode::RuntimeNotFound,
                message: "no runtime hint".into(),
            }));
        };
        loop {
            // Registered before looking, so that a change while we look is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.link_up() {
                return Err(Error::disconnected("the room connection ended"));
            }
            let forgotten = std::mem::take(&mut *lock(&self.forgotten));
            for identity in forgotten {
                if resolver.cached() == Some(identity.as_str()) {
                    resolver.invalidate();
                }
            }
            let participants = self.room.participants();
            match resolver.poll(Instant::now(), &participants) {
                ResolveStep::Resolved(identity) => {
                    self.note_runtime_found(&identity, &participants);
                    return Ok(identity);
                }
                ResolveStep::Failed(err) => return Err(err),
                ResolveStep::WaitUntil(at) => {
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                ResolveStep::Probe { identity, timeout } => {
                    let outcome = self.probe(&identity, timeout).await;
                    resolver.on_probe(&identity, outcome, Instant::now());
                }
            }
        }
    }

    /// Asks `identity` for `runtime.tools_list`: any answer, even an application error,
    /// means a runtime is there.
    async fn probe(&self, identity: &str, timeout: Duration) -> ProbeOutcome {
        let params = CallParams {
            response_timeout: timeout,
            ack_timeout: timeout.min(timeouts::RPC_ACK),
            ..CallParams::new(identity.to_owned(), calls::method::TOOLS_LIST, "{}")
        };
        match self.room.call(params).await {
            Ok(_) => ProbeOutcome::Answered,
            Err(err) if err.code == RpcErrorCode::ApplicationError => ProbeOutcome::Answered,
            Err(_) => ProbeOutcome::NoAnswer,
        }
    }

    /// Records the participant sid of the runtime just found (kept until it is forgotten).
    fn note_runtime_found(&self, identity: &str, participants: &[Participant]) {
        let mut found = lock(&self.runtime_participant);
        if found.as_ref().is_some_and(|(known, _)| known == identity) {
            return;
        }
        *found = participants
            .iter()
            .find(|p| p.identity == identity)
            .map(|p| (identity.to_owned(), p.sid.clone()));
    }

    /// Forgets the runtime if `participant` is its identity under a new sid: the runtime
    /// joined again (its own full reconnect, a restart), so it is looked up again (probed)
    /// before the next call relies on it.
    fn check_runtime_participant(&self, participant: &Participant) {
        let rejoined = lock(&self.runtime_participant)
            .as_ref()
            .is_some_and(|(identity, sid)| {
                *identity == participant.identity && !sid.is_empty() && *sid != participant.sid
            });
        if rejoined {
            self.forget_runtime(&participant.identity);
        }
    }

    /// Stops treating `identity` as the runtime (it left, or stopped answering). Never
    /// blocks: runs on the engine and on call tasks.
    fn forget_runtime(&self, identity: &str) {
        {
            let mut found = lock(&self.runtime_participant);
            if found.as_ref().is_some_and(|(known, _)| known == identity) {
                *found = None;
            }
        }
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

    fn expect_capture(self: &Arc<Self>, request_id: &str) -> CaptureWait {
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.captures).insert(request_id.to_owned(), tx);
        CaptureWait {
            shared: Arc::downgrade(self),
            request_id: request_id.to_owned(),
            frame: rx,
        }
    }

    /// Hands a camera frame to the call waiting for it (runs on the executor).
    fn route_stream(&self, stream: ByteStream) {
        let request_id = stream
            .attributes
            .get(calls::CAPTURE_REQUEST_ID_ATTRIBUTE)
            .cloned()
            .unwrap_or_else(|| stream.name.clone());
        match lock(&self.captures).remove(&request_id) {
            Some(waiter) => {
                let _ = waiter.send(stream);
            }
            None => log::debug!(target: "menlo_robot_sdk", "a camera frame arrived that nobody waits for"),
        }
    }

    /// Turns a room event into session events (runs on the engine: must not block).
    fn on_room_event(&self, event: RoomEvent) {
        match event {
            RoomEvent::ParticipantJoined(p) => {
                self.check_runtime_participant(&p);
                self.emit(SessionEvent::ParticipantJoined(p));
                self.check_ready();
            }
            RoomEvent::ParticipantUpdated(p) => {
                self.check_runtime_participant(&p);
                self.check_ready();
            }
            RoomEvent::ParticipantLeft(p) => {
                self.forget_runtime(&p.identity);
                self.emit(SessionEvent::ParticipantLeft(p));
            }
            RoomEvent::Disconnected { reason } => self.emit_disconnected(&reason),
            RoomEvent::Reconnecting { reason } => {
                if !self.reconnecting.swap(true, Ordering::SeqCst) {
                    self.emit(SessionEvent::Reconnecting { reason });
                }
            }
            RoomEvent::Reconnected { resumed } => {
                self.reconnecting.store(false, Ordering::SeqCst);
                if !resumed {
                    // A new participant of ours sees the room afresh: the runtime may have
                    // changed while we were away.
                    for p in self.room.participants() {
                        self.check_runtime_participant(&p);
                    }
                }
                self.emit(SessionEvent::Reconnected {
                    kind: ReconnectKind::from_resumed(resumed),
                });
            }
        }
        self.note_change();
    }

    fn check_ready(&self) {
        if !self.ready_emitted.load(Ordering::SeqCst)
            && resolve::readiness(&self.metadata.required_participants, &self.room.participants()).is_ready()
        {
            self.note_ready();
        }
    }
}

/// What a call does when a full reconnect loses its reply ([`Error::ConnectionLost`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnLost {
    /// Fail with it: the call may have acted on the robot (tool calls, captures, cancel,
    /// envelopes).
    Fail,
    /// Send it again, once, within the same deadline: a read.
    ResendOnce,
}

/// The RPC parameters of one attempt at `request` with `budget` left: the acknowledgement may
/// take all of it and the response gets twice as much, so that neither of LiveKit's own
/// timeouts fires before the caller's deadline (which cuts the call at `budget`); LiveKit tells
/// the runtime the difference, `budget`, as its time to answer.
fn call_params(runtime: &str, request: &RpcRequest, budget: Duration) -> CallParams {
    CallParams {
        ack_timeout: budget,
        response_timeout: budget.saturating_mul(2),
        wire: wire_for(&request.method),
        ..CallParams::new(runtime, request.method.clone(), request.payload.clone())
    }
}

/// The name of `request`'s method, for errors (the known ones are static).
fn method_name(request: &RpcRequest) -> &'static str {
    use calls::method::*;
    [
        TOOLS_LIST,
        TOOLS_CALL,
        STATE,
        SCENE_STATE,
        CAPABILITIES,
        CANCEL,
        CAMERAS_CAPTURE,
        FORWARD_ENVELOPE,
    ]
    .into_iter()
    .find(|known| *known == request.method)
    .unwrap_or("runtime call")
}

/// How a runtime call with `method` travels: as one v1 packet each way when its reply is
/// known to stay small (a v1 request gets a v1 reply, capped at 15 KiB), as the runtime
/// advertises (v2 streams) otherwise. A `state` reply that grew too large is read again
/// as advertised; a cancel is never sent twice.
fn wire_for(method: &str) -> RpcWire {
    match method {
        calls::method::STATE => RpcWire::PacketsOrRepeat,
        calls::method::CANCEL => RpcWire::Packets,
        _ => RpcWire::Advertised,
    }
}

/// A registered wait for one camera frame; unregisters itself when dropped.
struct CaptureWait {
    shared: Weak<Shared>,
    request_id: String,
    frame: tokio::sync::oneshot::Receiver<ByteStream>,
}

impl CaptureWait {
    async fn wait(mut self, timeout: Duration) -> Result<Vec<u8>> {
        match tokio::time::timeout(timeout, &mut self.frame).await {
            Ok(Ok(stream)) => Ok(stream.data),
            _ => Err(Error::Timeout {
                operation: format!("camera frame on {}", calls::CAMERA_CAPTURE_TOPIC),
                after: timeout,
                may_still_be_running: false,
                source: None,
            }),
        }
    }
}

impl Drop for CaptureWait {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.captures).remove(&self.request_id);
        }
    }
}

/// The session's ear in the engine, registered before the room is joined: room events that
/// arrive before the session exists (the participants already present) wait here, so that
/// `Connected` is always the first event.
#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
}

enum InboxState {
    Early(Vec<RoomEvent>),
    Attached(Weak<Shared>),
}

impl Default for InboxState {
    fn default() -> Self {
        InboxState::Early(Vec::new())
    }
}

impl Inbox {
    /// Delivers the early events to `shared`, then everything as it comes.
    fn attach(&self, shared: &Arc<Shared>) {
        let mut state = lock(&self.state);
        if let InboxState::Early(early) = &mut *state {
            for event in std::mem::take(early) {
                shared.on_room_event(event);
            }
        }
        *state = InboxState::Attached(Arc::downgrade(shared));
    }
}

impl RoomObserver for Inbox {
    fn on_event(&self, event: RoomEvent) {
        let mut state = lock(&self.state);
        match &mut *state {
            InboxState::Early(early) => early.push(event),
            InboxState::Attached(shared) => {
                if let Some(shared) = shared.upgrade() {
                    shared.on_room_event(event);
                }
            }
        }
    }

    fn on_stream(&self, stream: ByteStream) {
        let shared = match &*lock(&self.state) {
            InboxState::Attached(shared) => shared.upgrade(),
            InboxState::Early(_) => None,
        };
        match shared {
            Some(shared) => shared.route_stream(stream),
            None => log::debug!(target: "menlo_robot_sdk", "a byte stream arrived before the session"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync_where_shared() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Session>();
        send_sync::<Events>();
        send::<PendingAction>();
        send::<Pending<Vec<u8>>>();
    }

    #[test]
    fn method_names_are_the_wire_names() {
        let request = calls::capabilities_request();
        assert_eq!(method_name(&request), "runtime.capabilities");
        let request = calls::state_request("battery").unwrap();
        assert_eq!(method_name(&request), "runtime call");
    }

    #[test]
    fn an_attempt_fits_ack_and_response_in_its_budget_and_tells_the_runtime_so() {
        let request = calls::state_request(calls::ROBOT_STATUS_KEY).unwrap();
        let budget = Duration::from_millis(1500);
        let params = call_params("simplesim:rb_1", &request, budget);
        assert_eq!(
            (params.destination.as_str(), params.method.as_str()),
            ("simplesim:rb_1", "runtime.state")
        );
        // Neither LiveKit timeout may fire before the caller's deadline…
        assert_eq!(params.ack_timeout, budget);
        assert!(params.response_timeout >= budget);
        // …and LiveKit tells the runtime `response - ack` as its time to answer.
        assert_eq!(params.response_timeout - params.ack_timeout, budget);
    }

    #[test]
    fn a_zero_reconnect_timeout_is_refused_before_anything_is_created() {
        // Nothing listens on port 9: a request would fail as a transport error.
        let client = Client::builder()
            .api_key("sk_test_reconnect")
            .rcs_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let options = ConnectOptions::new().reconnect_timeout(Duration::ZERO);
        let err = connect(&client, "rb_1", options).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "reconnect_timeout"),
            "{err}"
        );
    }

    #[test]
    fn only_calls_with_small_replies_go_as_packets() {
        assert_eq!(wire_for(calls::method::STATE), RpcWire::PacketsOrRepeat);
        assert_eq!(wire_for(calls::method::CANCEL), RpcWire::Packets);
        for method in [
            calls::method::TOOLS_LIST,
            calls::method::TOOLS_CALL,
            calls::method::SCENE_STATE,
            calls::method::CAPABILITIES,
            calls::method::CAMERAS_CAPTURE,
            calls::method::FORWARD_ENVELOPE,
            "runtime.battery",
        ] {
            assert_eq!(wire_for(method), RpcWire::Advertised, "{method}");
        }
    }

    #[test]
    fn a_failed_handle_reports_at_once() {
        let mut handle = failed::<()>("runtime.cancel", Error::invalid("action_id", "empty"));
        assert!(matches!(handle.poll(), Some(Err(Error::InvalidInput { .. }))));
    }
}
