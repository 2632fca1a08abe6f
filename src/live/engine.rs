//! The async core of a room: one task on the executor (the SDK's private tokio pool) that
//! drives the sans-IO state machines (participants, the stream gate, liveness, the reconnect
//! machine, reliable-data sequencing). RPC and data streams run in LiveKit's `livekit-rpc` /
//! `livekit-data-stream` managers on tasks of their own, which send through the engine's
//! command channel (see [`crate::live::rpc`], [`crate::live::streams`]). It talks to the
//! synchronous [`crate::live::Room`] handle only through channels.
//!
//! The task's state is split in two (design `docs/design/resilience.md` Part 2 §2): the
//! long-lived [`Engine`] (RPC managers, participants, streams, sequence / replay / receive
//! states, the call ledger) and the replaceable [`Link`] (websocket, network paths — UDP
//! socket, ICE-TCP connections: [`crate::live::net`] — and str0m peer(s)). A resume replaces
//! the link's websocket and restarts ICE when the data path was lost; a full reconnect replaces
//! the whole link. Connection attempts run on tasks of their own, up to the server's answer.
//! Commands made while the link is being replaced are held and sent once it is back.

use crate::live::error::{LiveError, RpcError, RpcErrorCode};
use crate::live::liveness::{Liveness, LivenessConfig, LivenessEvent};
use crate::live::net::{self, PathOptions, Paths};
use crate::live::participants::{Participant, ParticipantChange, ParticipantTracker};
use crate::live::peer::{Peer, PeerOutput, StunTiming};
use crate::live::proxy::LiveProxy;
use crate::live::reconnect::{
    Action, AttemptError, AttemptId, AttemptKind, Input, LeaveAction, LinkEvent, LinkState, LossReason,
    ReconnectConfig, ReconnectKind, Reconnector,
};
use crate::live::reliable::{self, CallLedger, ReceiveStates, ReplayBuffer, SequenceStamper};
use crate::live::room::OutgoingStream;
use crate::live::rpc::{self, CallParams, EngineTransport, Outbox, Rpc, RpcReply};
use crate::live::signal::{self, SyncStateParts};
use crate::live::streams::{self, ByteStream, StreamFailure, StreamGate};
use crate::live::ws::Ws;
use crossbeam_channel as cb;
use futures_util::{SinkExt, StreamExt};
use livekit_data_stream::api::{AnyStreamReader, StreamReader as _};
use livekit_data_stream::backend as ds;
use livekit_protocol as proto;
use livekit_rpc::backend::RpcServerManager;
use prost::Message as _;
use proto::data_packet::Value;
use proto::signal_response::Message as Resp;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

/// What a room's owner is told, on the executor, as it happens. Implementations must not
/// block: they run on the connection's own task (events) or a stream task (streams).
pub(crate) trait RoomObserver: Send + Sync + 'static {
    /// A participant change or the disconnection.
    fn on_event(&self, event: RoomEvent);
    /// A completely received byte stream on one of the topics the owner asked for
    /// ([`ConnectionConfig::stream_topics`]).
    fn on_stream(&self, stream: ByteStream);
}

/// Events delivered by a room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomEvent {
    /// A remote participant joined (also emitted for those present at join time).
    ParticipantJoined(Participant),
    /// A remote participant's attributes / metadata / name changed.
    ParticipantUpdated(Participant),
    /// A remote participant left.
    ParticipantLeft(Participant),
    /// The link to the server was lost; the engine is resuming or rejoining. Calls wait.
    Reconnecting {
        /// What was lost (no credentials).
        reason: String,
    },
    /// The link is back: `resumed` is true when the same participant session was resumed,
    /// false after a full reconnect as a new participant.
    Reconnected {
        /// Whether the server kept the participant (resume) or a new join was needed.
        resumed: bool,
    },
    /// The room is disconnected; no further events follow.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// Commands from the handle.
pub(crate) enum Command {
    PerformRpc {
        params: CallParams,
        reply: RpcReply,
    },
    /// Packets from the RPC managers / the outgoing stream pump, sent in order on the
    /// reliable channel.
    Transmit {
        packets: Vec<proto::DataPacket>,
        done: tokio::sync::oneshot::Sender<Result<(), LiveError>>,
    },
    SendBytes {
        options: OutgoingStream,
        data: Vec<u8>,
        reply: cb::Sender<Result<(), LiveError>>,
    },
    /// Test hook: drop the signal websocket as if the network had closed it.
    DropSignal,
    /// Test hook: ask livekit-server to simulate a scenario.
    Simulate(proto::simulate_scenario::Scenario),
    /// Test hook: the network is gone for this long (datagrams and signal frames vanish both
    /// ways, new connections fail at once, as with the interface down).
    CutLink(Duration),
    /// An encoded signal request, sent on the websocket as it is.
    Signal(Vec<u8>),
    Disconnect,
}

/// State shared with the handle (read-mostly snapshots).
#[derive(Debug)]
pub(crate) struct Shared {
    pub connected: AtomicBool,
    pub participants: Mutex<HashMap<String, Participant>>,
    /// Every recovery so far: (resumed, when), for tests and diagnostics.
    pub reconnects: Mutex<Vec<(bool, Instant)>>,
    /// The path session data last arrived on over the current link (none before the first
    /// packet of a new link, and after the end).
    pub path: net::CurrentPath,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            connected: AtomicBool::new(false),
            participants: Mutex::new(HashMap::new()),
            reconnects: Mutex::new(Vec::new()),
            path: net::CurrentPath::default(),
        }
    }
}

impl Shared {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

/// Result of the connect phase.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub local_identity: String,
    pub local_sid: String,
    pub room_name: String,
    pub server_version: String,
    /// Whether the token lets us update our own metadata and attributes.
    pub can_update_metadata: bool,
}

/// Configuration of a connection.
#[derive(Clone)]
pub(crate) struct ConnectionConfig {
    pub url: String,
    pub token: String,
    pub connect_timeout: Duration,
    pub max_stream_bytes: usize,
    /// Extra trust anchors (DER) for `wss://`, on top of the webpki roots.
    pub extra_roots_der: Vec<Vec<u8>>,
    /// Topics of the incoming byte streams the owner wants; streams on other topics (besides
    /// the RPC ones) are discarded as their packets arrive, never buffered.
    pub stream_topics: Vec<String>,
    /// How long an interrupted link may take to come back before the room is disconnected.
    pub reconnect_timeout: Duration,
    /// Which transports ICE may use (both by default; tests switch UDP off).
    pub paths: PathOptions,
    /// The HTTP proxy of the signal websocket and of TURN over TCP/TLS, if any.
    pub proxy: Option<LiveProxy>,
}

pub(crate) struct ConnectionIo {
    pub commands: cb::Receiver<Command>,
    /// A sender on the same channel, for the RPC transport.
    pub commands_tx: cb::Sender<Command>,
    pub wake: Arc<tokio::sync::Notify>,
    pub ready: cb::Sender<Result<Joined, LiveError>>,
    pub observer: Arc<dyn RoomObserver>,
    pub shared: Arc<Shared>,
    /// Handlers of incoming requests (registered directly by the handle).
    pub rpc_server: Arc<RpcServerManager>,
    /// Dropped when the task ends; the handle waits for that on drop.
    pub _done: cb::Sender<()>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs a connection to completion.
pub(crate) async fn run(cfg: ConnectionConfig, io: ConnectionIo) {
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let connected = tokio::time::timeout_at(deadline, connect_signal(&cfg)).await;
    let (ws, join, dual) = match connected {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = io.ready.send(Err(e));
            return;
        }
        Err(_) => {
            let _ = io
                .ready
                .send(Err(LiveError::Timeout("signal connection / JoinResponse")));
            return;
        }
    };
    let mut s = match Engine::new(cfg, io, ws, join, dual).await {
        Ok(s) => s,
        Err((io, e)) => {
            let _ = io.ready.send(Err(e));
            return;
        }
    };
    let reason = s.run_loop(deadline.into_std()).await;
    s.shutdown(reason).await;
}

/// What the server answered on a new signal connection.
enum SignalAnswer {
    Join(Box<proto::JoinResponse>),
    Reconnect(proto::ReconnectResponse),
    Leave(proto::LeaveRequest),
}

/// Why opening a signal connection failed; `upgraded` = the websocket had come up.
struct SignalFailure {
    error: LiveError,
    upgraded: bool,
}

/// Opens the signalling websocket on `/rtc/v1` (one peer connection), falling back to `/rtc`
/// (two peer connections) when the server answers 404; returns it, the JoinResponse and
/// whether the dual layout is in use.
async fn connect_signal(cfg: &ConnectionConfig) -> Result<(Ws, proto::JoinResponse, bool), LiveError> {
    let v1 = signal::join_url(&cfg.url, &signal::join_request(false))?;
    let (ws, answer, dual) = match open_signal(v1, &cfg.token, &cfg.extra_roots_der, cfg.proxy.as_ref()).await
    {
        Err(SignalFailure {
            error: LiveError::Refused { status: 404, .. },
            ..
        }) => {
            log::info!("server has no /rtc/v1; falling back to /rtc with two peer connections");
            let v0 = signal::join_url_v0(&cfg.url)?;
            let (ws, answer) = open_signal(v0, &cfg.token, &cfg.extra_roots_der, cfg.proxy.as_ref())
                .await
                .map_err(|f| f.error)?;
            (ws, answer, true)
        }
        other => {
            let (ws, answer) = other.map_err(|f| f.error)?;
            (ws, answer, false)
        }
    };
    match answer {
        SignalAnswer::Join(j) => Ok((ws, *j, dual)),
        SignalAnswer::Leave(l) => Err(LiveError::Disconnected(format!(
            "server refused join: reason {}",
            l.reason
        ))),
        SignalAnswer::Reconnect(_) => Err(LiveError::Protocol("ReconnectResponse to a join".into())),
    }
}

/// Opens a signal websocket and reads up to the server's first answer (JoinResponse,
/// ReconnectResponse or LeaveRequest); the messages after it stay on the websocket.
async fn open_signal(
    url: url::Url,
    token: &str,
    extra_roots_der: &[Vec<u8>],
    proxy: Option<&LiveProxy>,
) -> Result<(Ws, SignalAnswer), SignalFailure> {
    let not_upgraded = |error| SignalFailure {
        error,
        upgraded: false,
    };
    let upgraded = |error| SignalFailure {
        error,
        upgraded: true,
    };
    let tls = if url.scheme() == "wss" {
        Some(tls_config(extra_roots_der).map_err(not_upgraded)?)
    } else {
        None
    };
    let mut ws = crate::live::ws::connect(&url, token, tls, proxy)
        .await
        .map_err(not_upgraded)?;
    loop {
        let Some(msg) = ws.next().await else {
            return Err(upgraded(LiveError::Signal(
                "closed before the server's answer".into(),
            )));
        };
        match msg.map_err(|e| upgraded(LiveError::Signal(e.to_string())))? {
            Message::Binary(b) => match signal::decode_response(&b).map_err(upgraded)? {
                Resp::Join(j) => return Ok((ws, SignalAnswer::Join(Box::new(j)))),
                Resp::Reconnect(r) => return Ok((ws, SignalAnswer::Reconnect(r))),
                Resp::Leave(l) => return Ok((ws, SignalAnswer::Leave(l))),
                other => log::debug!("signal before the answer: {}", variant_name(&other)),
            },
            Message::Close(c) => {
                return Err(upgraded(LiveError::Signal(format!(
                    "closed before the server's answer: {c:?}"
                ))))
            }
            _ => {}
        }
    }
}

/// How a reconnect attempt ended.
enum AttemptOutcome {
    /// The server took it: a resumed websocket or a new join.
    Answered(Box<(Ws, SignalAnswer)>),
    /// It failed before the server's answer.
    Failed(SignalFailure),
}

/// What a reconnect attempt needs, captured when it starts (the latest token).
struct AttemptSpec {
    url: String,
    token: String,
    extra_roots_der: Vec<Vec<u8>>,
    proxy: Option<LiveProxy>,
    participant_sid: String,
    dual: bool,
    kind: AttemptKind,
    /// Test hook: the network is cut until then.
    cut_until: Option<Instant>,
}

/// One resume or rejoin attempt: a websocket up to the server's answer.
async fn run_attempt(spec: AttemptSpec) -> AttemptOutcome {
    if spec.cut_until.is_some_and(|t| Instant::now() < t) {
        return AttemptOutcome::Failed(SignalFailure {
            error: LiveError::Signal("network unreachable (test cut)".into()),
            upgraded: false,
        });
    }
    let url = match spec.kind {
        AttemptKind::Resume { reason } if spec.dual => {
            signal::resume_join_url_v0(&spec.url, &spec.participant_sid, reason)
        }
        AttemptKind::Resume { reason } => signal::resume_join_url(&spec.url, &spec.participant_sid, reason),
        AttemptKind::Rejoin if spec.dual => signal::join_url_v0(&spec.url),
        AttemptKind::Rejoin => signal::join_url(&spec.url, &signal::join_request(false)),
    };
    let url = match url {
        Ok(u) => u,
        Err(error) => {
            return AttemptOutcome::Failed(SignalFailure {
                error,
                upgraded: false,
            })
        }
    };
    match open_signal(url, &spec.token, &spec.extra_roots_der, spec.proxy.as_ref()).await {
        Ok(answered) => AttemptOutcome::Answered(Box::new(answered)),
        Err(f) => AttemptOutcome::Failed(f),
    }
}

/// rustls client config with an explicit provider (ring), webpki roots plus `extra_roots_der`.
/// Explicit, so that it works whichever rustls crypto features other crates enable.
pub(crate) fn tls_config(extra_roots_der: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, LiveError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots_der {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| LiveError::InvalidArgument(format!("bad root certificate: {e}")))?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| LiveError::Signal(format!("tls setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

fn variant_name(m: &Resp) -> &'static str {
    match m {
        Resp::Join(_) => "join",
        Resp::Answer(_) => "answer",
        Resp::Offer(_) => "offer",
        Resp::Trickle(_) => "trickle",
        Resp::Update(_) => "update",
        Resp::Leave(_) => "leave",
        Resp::PongResp(_) => "pong",
        Resp::Reconnect(_) => "reconnect",
        Resp::RefreshToken(_) => "refresh_token",
        _ => "other",
    }
}

/// Resolves the server's address from the URL (the UDP socket is bound towards it).
async fn server_address(url: &str) -> Result<SocketAddr, LiveError> {
    let u = url::Url::parse(url).map_err(|e| LiveError::InvalidUrl(e.to_string()))?;
    let host = u
        .host_str()
        .ok_or_else(|| LiveError::InvalidUrl("missing host".into()))?
        .to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| LiveError::InvalidUrl("host does not resolve".into()))?;
    Ok(target)
}

/// The replaceable part of a connection: the signal websocket, the network paths (one
/// [`Paths`] per peer) and the peer connection(s). A resume replaces only the websocket; a full
/// reconnect replaces all of it (new paths: new UDP sockets, new ICE-TCP connections). Every
/// packet sent or received goes through [`Link::transmit`] and [`recv_datagram`].
struct Link {
    /// None once lost (until a resume or rejoin brings a new one).
    ws: Option<Ws>,
    paths: Paths,
    /// Publisher peer: our channels; in single-PC mode also the receive path.
    peer: Peer,
    /// Dual-PC mode: the subscriber peer (created on the server's offer) and its paths.
    dual: bool,
    sub: Option<Peer>,
    sub_paths: Option<Paths>,
    /// Subscriber candidates trickled before the subscriber offer.
    early_sub_candidates: Vec<String>,
    pub_open: bool,
    sub_open: bool,
    /// Signal frames produced by synchronous handlers, sent by the loop.
    pending_signal: Vec<Vec<u8>>,
    /// Test hook: until then every datagram and signal frame vanishes.
    cut_until: Option<Instant>,
}

impl Link {
    /// Opens the paths towards `server`, creates the publisher peer and queues its offer.
    fn open(
        server: SocketAddr,
        ws: Ws,
        dual: bool,
        options: PathOptions,
        turn: Option<net::TurnPlan>,
    ) -> Result<Link, LiveError> {
        let now = Instant::now();
        let mut paths = Paths::towards(server, options)?;
        let mut sub_paths = if dual {
            Some(Paths::towards(server, options)?)
        } else {
            None
        };
        if let Some(plan) = turn {
            if let Some(sub_paths) = sub_paths.as_mut() {
                sub_paths.plan_turn(plan.clone(), now);
            }
            paths.plan_turn(plan, now);
        }
        let (peer, offer) = Peer::new_on(now, paths.local_candidates(), StunTiming::RESILIENT)?;
        let mut link = Link {
            ws: Some(ws),
            paths,
            peer,
            dual,
            sub: None,
            sub_paths,
            early_sub_candidates: Vec::new(),
            pub_open: false,
            sub_open: false,
            pending_signal: Vec::new(),
            cut_until: None,
        };
        link.send_offer(offer);
        Ok(link)
    }

    fn send_offer(&mut self, sdp: String) {
        let offer = proto::signal_request::Message::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp,
            ..Default::default()
        });
        self.pending_signal.push(signal::encode_request(offer));
    }

    /// Whether the network is cut (test hook).
    fn is_cut(&self) -> bool {
        self.cut_until.is_some_and(|t| Instant::now() < t)
    }

    /// Whether the data channel(s) are open.
    fn is_open(&self) -> bool {
        self.pub_open && (!self.dual || self.sub_open)
    }

    /// Sends a packet of the publisher (or subscriber) peer on the path its transport names,
    /// for the peer's current ICE generation (ICE-TCP opens new connections after a restart).
    async fn transmit(&mut self, subscriber: bool, packet: &net::Datagram) {
        if self.is_cut() {
            return;
        }
        if subscriber {
            let generation = self.sub.as_ref().map_or(0, Peer::ice_generation);
            if let Some(paths) = self.sub_paths.as_mut() {
                paths.send(packet, generation).await;
            }
        } else {
            let generation = self.peer.ice_generation();
            self.paths.send(packet, generation).await;
        }
    }

    /// Sends the queued signal frames; an error means the websocket is lost.
    async fn flush_signal(&mut self) -> Result<(), String> {
        let frames = std::mem::take(&mut self.pending_signal);
        if self.is_cut() {
            return Ok(());
        }
        let Some(ws) = self.ws.as_mut() else {
            return Ok(()); // dropped: a resume sends what it needs afresh
        };
        for frame in frames {
            if let Err(e) = ws.send(Message::Binary(frame.into())).await {
                return Err(format!("signal send failed: {e}"));
            }
        }
        Ok(())
    }

    /// Starts TURN allocations of the paths whose peer has no working pair yet, when due.
    fn poll_turn(&mut self, now: Instant) {
        self.paths.poll_turn(now, self.peer.ice_connected());
        if let Some(sub_paths) = self.sub_paths.as_mut() {
            let connected = self.sub.as_ref().is_some_and(Peer::ice_connected);
            sub_paths.poll_turn(now, connected);
        }
    }

    /// New TURN servers (a resume's answer) for the paths that use no relay yet.
    fn replan_turn(&mut self, plan: net::TurnPlan) {
        let now = Instant::now();
        if let Some(sub_paths) = self.sub_paths.as_mut() {
            sub_paths.replan_turn(plan.clone(), now);
        }
        self.paths.replan_turn(plan, now);
    }

    /// When [`Link::poll_turn`] is due.
    fn turn_timeout(&self) -> Option<Instant> {
        let sub = self.sub_paths.as_ref().and_then(Paths::turn_timeout);
        match (self.paths.turn_timeout(), sub) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Offers a new relayed candidate to the peer whose paths allocated it (the subscriber
    /// takes its paths' relays when it is created).
    fn add_relayed(&mut self, subscriber: bool, relayed: SocketAddr, local: SocketAddr) {
        let peer = if subscriber {
            self.sub.as_mut()
        } else {
            Some(&mut self.peer)
        };
        if let Some(peer) = peer {
            if let Err(e) = peer.add_relayed_candidate(relayed, local) {
                log::warn!("ignoring relayed candidate {relayed}: {e}");
            }
        }
    }

    /// Closes the peers (best effort, non-blocking flush of their close packets) and drops
    /// the websocket without a Leave.
    fn close(&mut self) {
        self.ws = None;
        self.peer.close();
        let generation = self.peer.ice_generation();
        while let PeerOutput::Transmit(packet) = self.peer.poll() {
            self.paths.try_send(&packet, generation);
        }
        if let Some(sub) = self.sub.as_mut() {
            sub.close();
        }
    }
}

/// A packet read from one of a link's paths (`subscriber`: from the subscriber's).
struct Received {
    subscriber: bool,
    event: net::PathEvent,
}

/// Receives on the link's paths (the one receive arm of the loop). Cancel-safe.
async fn recv_datagram(paths: &mut Paths, sub_paths: Option<&mut Paths>) -> Received {
    tokio::select! {
        event = paths.next_event() => Received { subscriber: false, event },
        event = recv_opt(sub_paths) => Received { subscriber: true, event },
    }
}

/// The next frame of an optional websocket; pends forever without one.
async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws.as_mut() {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// Commands held while the link is being replaced, in order; sent once it is back.
enum Held {
    /// Reliable packets (unstamped) and who waits for them to be handed over, if anyone.
    Packets(
        Vec<proto::DataPacket>,
        Option<tokio::sync::oneshot::Sender<Result<(), LiveError>>>,
    ),
    /// A call to start once the link is back.
    Rpc(CallParams, RpcReply),
}

/// The long-lived part of a connection: RPC managers, participants, streams, reliable-data
/// state, the reconnect machine; it outlives any number of [`Link`]s.
struct Engine {
    cfg: ConnectionConfig,
    io: ConnectionIo,
    /// The server's address (resolved once; a rejoin binds its sockets towards it).
    server: SocketAddr,
    link: Link,
    join: Joined,
    tracker: ParticipantTracker,
    rpc: Arc<Rpc>,
    /// Incoming data streams go through the gate (open-stream cap, idle timeout) into
    /// `livekit-data-stream`'s incoming manager; its readers go to the RPC managers (topics
    /// `lk.rpc_request` / `lk.rpc_response`) or are collected into [`ByteStream`]s.
    streams_in: ds::incoming::ManagerInput,
    stream_gate: StreamGate,
    ready_sent: bool,
    rtt_ms: i64,
    liveness: Liveness,
    reconnector: Reconnector,
    stamper: SequenceStamper,
    replay: ReplayBuffer,
    receive_states: ReceiveStates,
    ledger: CallLedger,
    held: VecDeque<Held>,
    attempts: HashMap<AttemptId, tokio::task::JoinHandle<()>>,
    answers: HashMap<AttemptId, Box<(Ws, SignalAnswer)>>,
    attempt_tx: tokio::sync::mpsc::UnboundedSender<(AttemptId, AttemptOutcome)>,
    attempt_rx: tokio::sync::mpsc::UnboundedReceiver<(AttemptId, AttemptOutcome)>,
    /// An ICE restart was offered during a resume: the transport is ready when ICE connects.
    awaiting_ice: bool,
    /// The next participant update names everybody (first one after a resume).
    snapshot_next_update: bool,
    /// The resumed server's `last_message_seq`, applied with the SyncState.
    last_message_seq: u32,
    /// When the current link's peer connection closed, if it did: after
    /// [`PEER_LOSS_GRACE`] without a Leave explaining it, the engine joins again.
    peer_lost_at: Option<Instant>,
    /// When the current outage began (for the log line on recovery).
    outage_began: Option<Instant>,
}

/// How long a closed peer connection waits for the server's Leave (which usually follows
/// the DTLS close within milliseconds, and may say the session is over) before the engine
/// joins again.
const PEER_LOSS_GRACE: Duration = Duration::from_millis(500);

impl Engine {
    #[allow(clippy::result_large_err)]
    async fn new(
        cfg: ConnectionConfig,
        io: ConnectionIo,
        ws: Ws,
        join: proto::JoinResponse,
        dual: bool,
    ) -> Result<Engine, (ConnectionIo, LiveError)> {
        let joined = joined_of(&join);
        log::info!(
            "joined room {} as {} (server {}, protocol {}, subscriber_primary {}, ping {}s/{}s)",
            joined.room_name,
            joined.local_identity,
            joined.server_version,
            join.server_info.as_ref().map(|s| s.protocol).unwrap_or_default(),
            join.subscriber_primary,
            join.ping_interval,
            join.ping_timeout
        );
        let opened = match server_address(&cfg.url).await {
            Ok(server) => Link::open(
                server,
                ws,
                dual,
                cfg.paths,
                turn_plan(&cfg, &join.ice_servers, join.client_configuration.as_ref()),
            )
            .map(|link| (server, link)),
            Err(e) => Err(e),
        };
        let (server, link) = match opened {
            Ok(v) => v,
            Err(e) => return Err((io, e)),
        };
        let now = Instant::now();
        let mut tracker = ParticipantTracker::new(&joined.local_identity, &joined.local_sid);
        let initial = tracker.apply_join(&join.other_participants);
        let rpc = Arc::new(Rpc {
            client: livekit_rpc::backend::RpcClientManager::new(),
            server: Arc::clone(&io.rpc_server),
            transport: EngineTransport::new(
                Outbox {
                    commands: io.commands_tx.clone(),
                    wake: io.wake.clone(),
                },
                io.shared.clone(),
                server_version(&join),
                spawn_outgoing_streams(Outbox {
                    commands: io.commands_tx.clone(),
                    wake: io.wake.clone(),
                }),
            ),
        });
        let streams_in = spawn_incoming_streams(&rpc, cfg.max_stream_bytes, Arc::clone(&io.observer));
        let mut reconnector = Reconnector::new(
            ReconnectConfig {
                reconnect_timeout: cfg.reconnect_timeout,
                ..ReconnectConfig::default()
            },
            now,
        );
        if signal::resume_disabled(join.client_configuration.as_ref()) {
            reconnector.handle(now, Input::ResumeDisabled);
        }
        let (attempt_tx, attempt_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut s = Engine {
            cfg,
            io,
            server,
            link,
            join: joined,
            tracker,
            rpc,
            streams_in,
            stream_gate: StreamGate::default(),
            ready_sent: false,
            rtt_ms: 0,
            liveness: Liveness::new(now, LivenessConfig::default()),
            reconnector,
            stamper: SequenceStamper::default(),
            replay: ReplayBuffer::default(),
            receive_states: ReceiveStates::default(),
            ledger: CallLedger::default(),
            held: VecDeque::new(),
            attempts: HashMap::new(),
            answers: HashMap::new(),
            attempt_tx,
            attempt_rx,
            awaiting_ice: false,
            snapshot_next_update: false,
            last_message_seq: 0,
            peer_lost_at: None,
            outage_began: None,
        };
        s.apply_changes(initial);
        Ok(s)
    }

    fn emit(&self, ev: RoomEvent) {
        self.io.observer.on_event(ev);
    }

    fn apply_changes(&mut self, changes: Vec<ParticipantChange>) {
        for c in changes {
            let ev = match c {
                ParticipantChange::Joined(p) => {
                    self.lock_participants().insert(p.identity.clone(), p.clone());
                    RoomEvent::ParticipantJoined(p)
                }
                ParticipantChange::Updated(p) => {
                    self.lock_participants().insert(p.identity.clone(), p.clone());
                    RoomEvent::ParticipantUpdated(p)
                }
                ParticipantChange::Left(p) => {
                    self.lock_participants().remove(&p.identity);
                    self.rpc
                        .client
                        .handle_participant_disconnected(&p.identity.as_str().into());
                    self.stream_gate.participant_left(&p.identity);
                    let _ = self.streams_in.send(ds::incoming::InputEvent::AbortStreamsFrom(
                        p.identity.as_str().into(),
                    ));
                    RoomEvent::ParticipantLeft(p)
                }
            };
            self.emit(ev);
        }
    }

    fn lock_participants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Participant>> {
        self.io
            .shared
            .participants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn stream_failed(&self, f: StreamFailure) {
        log::warn!(
            "incoming stream {} from {} failed: {}",
            f.id,
            f.sender_identity,
            f.reason
        );
    }

    /// Whether incoming streams on `topic` are read: the RPC topics and the owner's.
    fn wants_topic(&self, topic: &str) -> bool {
        topic == rpc::RPC_REQUEST_TOPIC
            || topic == rpc::RPC_RESPONSE_TOPIC
            || self.cfg.stream_topics.iter().any(|wanted| wanted == topic)
    }

    /// Whether the link is being replaced (commands are held until it is back).
    fn link_down(&self) -> bool {
        matches!(
            self.reconnector.state(),
            LinkState::Resuming | LinkState::Rejoining
        )
    }

    /// The one place reliable packets are encoded: stamps the sequence, records the packet
    /// for replay and in the call ledger, and queues it on the peer.
    fn send_packet(&mut self, mut packet: proto::DataPacket) -> Result<(), LiveError> {
        let seq = self.stamper.stamp(&mut packet);
        self.ledger.on_sent(Instant::now(), &packet);
        let bytes = packet.encode_to_vec();
        self.replay.push(seq, bytes.clone());
        self.link.peer.send(true, bytes)
    }

    fn send_packets(&mut self, packets: Vec<proto::DataPacket>) -> Result<(), LiveError> {
        packets.into_iter().try_for_each(|p| self.send_packet(p))
    }

    fn start_rpc(&self, params: CallParams, reply: RpcReply) {
        // No "recipient not found" pre-check: livekit-server announces data-only
        // participants in batches (up to 3 s late) but routes to them at once.
        // (`livekit-rpc` has none either.)
        let rpc = Arc::clone(&self.rpc);
        tokio::spawn(async move {
            reply.send(rpc.perform(params).await);
        });
    }

    /// Sends what was held while the link was down, in order.
    fn release_held(&mut self) {
        while let Some(held) = self.held.pop_front() {
            match held {
                Held::Packets(packets, done) => {
                    let result = self.send_packets(packets);
                    if let Some(done) = done {
                        let _ = done.send(result);
                    }
                }
                Held::Rpc(params, reply) => self.start_rpc(params, reply),
            }
        }
    }

    /// Main loop; returns the disconnect reason.
    async fn run_loop(&mut self, connect_deadline: Instant) -> String {
        loop {
            if let Err(detail) = self.link.flush_signal().await {
                if let Some(reason) = self.on_signal_lost(detail) {
                    return reason;
                }
            }
            // Drain the peer: transmit datagrams, handle events.
            let peer_timeout = match self.drive_peer().await {
                Ok(t) => t,
                Err(reason) => return reason,
            };
            let deadline = self.next_deadline(peer_timeout, connect_deadline);
            let sleep = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                msg = next_frame(&mut self.link.ws) => {
                    if let Some(reason) = self.on_frame(msg) {
                        return reason;
                    }
                }
                d = recv_datagram(&mut self.link.paths, self.link.sub_paths.as_mut()) => {
                    if let Some(reason) = self.on_datagram(d) {
                        return reason;
                    }
                }
                Some((id, outcome)) = self.attempt_rx.recv() => {
                    if let Some(reason) = self.on_attempt_outcome(id, outcome) {
                        return reason;
                    }
                }
                _ = self.io.wake.notified() => {}
                _ = sleep => {}
            }
            if let Some(reason) = self.on_tick(connect_deadline).await {
                return reason;
            }
        }
    }

    /// Why connecting failed at the deadline: while ICE has found no working path, every path
    /// tried and its outcome; once it had one, the data channel simply did not open in time.
    fn connect_failure(&self) -> LiveError {
        let link = &self.link;
        if link.peer.ice_connected() || link.sub.as_ref().is_some_and(Peer::ice_connected) {
            return LiveError::Timeout("WebRTC data channel");
        }
        LiveError::NoPath {
            attempts: link.paths.attempts(),
        }
    }

    fn next_deadline(&self, peer_timeout: Instant, connect_deadline: Instant) -> Instant {
        let mut deadline = peer_timeout.min(self.liveness.poll_timeout());
        if let Some(t) = self.reconnector.poll_timeout() {
            deadline = deadline.min(t);
        }
        if !self.ready_sent {
            deadline = deadline.min(connect_deadline);
        }
        if let Some(t) = self.stream_gate.poll_timeout() {
            deadline = deadline.min(t);
        }
        if let Some(t) = self.peer_lost_at {
            deadline = deadline.min(t + PEER_LOSS_GRACE);
        }
        if let Some(t) = self.link.turn_timeout() {
            deadline = deadline.min(t);
        }
        deadline
    }

    /// Everything due after any wake-up: timers, commands, liveness, the reconnect machine.
    async fn on_tick(&mut self, connect_deadline: Instant) -> Option<String> {
        let now = Instant::now();
        self.link.poll_turn(now);
        if let Err(e) = self.link.peer.handle_timeout(now) {
            return Some(format!("webrtc failure: {e}"));
        }
        if let Some(sub) = self.link.sub.as_mut() {
            if let Err(e) = sub.handle_timeout(now) {
                return Some(format!("webrtc failure (subscriber): {e}"));
            }
        }
        if let Some(reason) = self.drain_commands() {
            return Some(reason);
        }
        // Streams that stopped making progress end with a trailer saying so.
        for (sender, id) in self.stream_gate.handle_timeout(now) {
            self.feed_stream(
                sender,
                ds::Packet::Trailer {
                    trailer: streams::idle_trailer(&id).into(),
                    encryption_type: Default::default(),
                },
            );
        }
        if !self.ready_sent {
            if now >= connect_deadline {
                let _ = self.io.ready.send(Err(self.connect_failure()));
                return Some("connect timeout".into());
            }
            return None;
        }
        let (queued, buffered) = self.link.peer.reliable_backlog();
        self.replay.sync(queued, buffered);
        for event in self.liveness.handle_timeout(now) {
            if let Some(reason) = self.on_liveness(event).await {
                return Some(reason);
            }
        }
        if self.peer_lost_at.is_some_and(|t| now >= t + PEER_LOSS_GRACE) {
            self.peer_lost_at = None;
            if let Some(reason) = self.input(Input::Leave(LeaveAction::Reconnect)) {
                return Some(reason);
            }
        }
        let actions = self.reconnector.handle_timeout(now);
        self.apply_actions(actions)
    }

    async fn on_liveness(&mut self, event: LivenessEvent) -> Option<String> {
        if event != LivenessEvent::SendPing {
            log::debug!("liveness: {event:?}");
        }
        if event == LivenessEvent::SendPing {
            let req = signal::ping_request(now_ms(), self.rtt_ms);
            self.link.pending_signal.push(signal::encode_request(req));
            return None;
        }
        let input = Input::from_liveness(event)?;
        if matches!(input, Input::SignalLost { .. }) {
            self.link.ws.take()?; // None: already reported
        }
        self.input(input)
    }

    /// Feeds the reconnect machine and performs what it decides.
    fn input(&mut self, input: Input) -> Option<String> {
        let actions = self.reconnector.handle(Instant::now(), input);
        self.apply_actions(actions)
    }

    /// The websocket of the current link is gone.
    fn on_signal_lost(&mut self, detail: String) -> Option<String> {
        self.link.ws = None;
        if !self.ready_sent {
            return Some(detail);
        }
        log::info!("signal connection lost: {detail}");
        self.input(Input::SignalLost { detail })
    }

    fn on_frame(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<String> {
        match msg {
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) if self.link.is_cut() => None,
            Some(Ok(Message::Binary(b))) => {
                self.liveness.on_signal_frame(Instant::now());
                match signal::decode_response(&b) {
                    Ok(m) => self.on_signal(m),
                    Err(e) => {
                        log::warn!("ignoring bad signal frame: {e}");
                        None
                    }
                }
            }
            Some(Ok(Message::Close(_))) | None => self.on_signal_lost("signal connection closed".into()),
            Some(Ok(_)) => {
                self.liveness.on_signal_frame(Instant::now());
                None
            }
            Some(Err(e)) => self.on_signal_lost(format!("signal connection failed: {e}")),
        }
    }

    fn on_datagram(&mut self, d: Received) -> Option<String> {
        let (packet, path) = match d.event {
            net::PathEvent::Packet { packet, path } => (packet, path),
            net::PathEvent::Relayed { relayed, local } => {
                self.link.add_relayed(d.subscriber, relayed, local);
                return None;
            }
        };
        if self.link.is_cut() {
            return None;
        }
        let now = Instant::now();
        let accepted = match (d.subscriber, self.link.sub.as_mut()) {
            (false, _) => self.link.peer.handle_datagram(now, &packet),
            (true, Some(sub)) => sub.handle_datagram(now, &packet),
            (true, None) => {
                log::trace!("packet before the subscriber offer");
                Ok(false)
            }
        };
        match accepted {
            Ok(true) => {
                if net::carries_session_data(&packet.data) {
                    self.io.shared.path.set(Some(path));
                }
                self.reconnector.note_inbound(now);
                let event = self.liveness.on_datagram(now)?;
                if !self.ready_sent {
                    return None;
                }
                let input = Input::from_liveness(event)?;
                self.input(input)
            }
            Ok(false) => None,
            Err(e) => {
                log::debug!("webrtc input error: {e}");
                None
            }
        }
    }

    /// Sends everything the peers want to send; handles their events. Returns the earliest
    /// peer timeout.
    async fn drive_peer(&mut self) -> Result<Instant, String> {
        let pub_timeout = loop {
            match self.link.peer.poll() {
                PeerOutput::Transmit(packet) => self.link.transmit(false, &packet).await,
                PeerOutput::Timeout(t) => break t,
                other => self.on_peer_output(false, other)?,
            }
        };
        let mut timeout = pub_timeout;
        while let Some(sub) = self.link.sub.as_mut() {
            match sub.poll() {
                PeerOutput::Transmit(packet) => self.link.transmit(true, &packet).await,
                PeerOutput::Timeout(t) => {
                    timeout = timeout.min(t);
                    break;
                }
                other => self.on_peer_output(true, other)?,
            }
        }
        if self.awaiting_ice && self.link.peer.ice_connected() {
            self.awaiting_ice = false;
            if let Some(reason) = self.input(Input::TransportReady) {
                return Err(reason);
            }
        }
        Ok(timeout)
    }

    fn on_peer_output(&mut self, subscriber: bool, out: PeerOutput) -> Result<(), String> {
        match out {
            PeerOutput::Open => {
                if subscriber {
                    self.link.sub_open = true;
                } else {
                    self.link.pub_open = true;
                }
                if !self.link.is_open() {
                    return Ok(());
                }
                if !self.ready_sent {
                    self.ready_sent = true;
                    self.io.shared.connected.store(true, Ordering::SeqCst);
                    let _ = self.io.ready.send(Ok(self.join.clone()));
                    let now = Instant::now();
                    self.liveness = Liveness::new(now, LivenessConfig::default());
                    self.reconnector.handle(now, Input::Established);
                } else if let Some(reason) = self.input(Input::TransportReady) {
                    return Err(reason);
                }
            }
            PeerOutput::Data(d) => self.on_data(&d),
            PeerOutput::Closed(reason) => {
                let reason = if subscriber {
                    format!("{reason} (subscriber)")
                } else {
                    reason
                };
                if !self.ready_sent {
                    return Err(reason);
                }
                // The association is gone: only a new participant session can bring it back,
                // unless the server's Leave (on its way) says the session is over.
                log::info!("peer connection lost: {reason}");
                self.peer_lost_at.get_or_insert_with(Instant::now);
            }
            PeerOutput::Transmit(..) | PeerOutput::Timeout(_) => {}
        }
        Ok(())
    }

    fn on_signal(&mut self, m: Resp) -> Option<String> {
        let now = Instant::now();
        match m {
            Resp::Answer(a) => {
                self.link.paths.arm_turn(now);
                if let Err(e) = self.link.peer.accept_answer(&a.sdp) {
                    if !self.ready_sent {
                        return Some(format!("SDP answer rejected: {e}"));
                    }
                    // A late answer to an offer abandoned with its websocket.
                    log::warn!("ignoring an SDP answer: {e}");
                }
            }
            Resp::Trickle(t) => self.on_trickle(t),
            Resp::Update(u) => {
                log::debug!(
                    "participant update: {:?}",
                    u.participants
                        .iter()
                        .map(|p| (&p.identity, p.state))
                        .collect::<Vec<_>>()
                );
                let changes = if std::mem::take(&mut self.snapshot_next_update) {
                    self.tracker.apply_snapshot(&u.participants)
                } else {
                    self.tracker.apply_update(&u.participants)
                };
                self.apply_changes(changes);
            }
            Resp::Leave(l) => {
                let action = signal::leave_action(&l);
                if !self.ready_sent {
                    return Some(format!("server asked to leave (reason {})", l.reason));
                }
                log::info!("server sent a leave request: {action:?}");
                return self.input(Input::Leave(action));
            }
            Resp::PongResp(p) => {
                self.rtt_ms = now_ms().saturating_sub(p.last_ping_timestamp).max(0);
            }
            Resp::RefreshToken(token) => {
                log::debug!("the server refreshed our token");
                self.cfg.token = token;
            }
            Resp::Offer(o) => return self.on_subscriber_offer(now, o),
            other => log::debug!("ignoring signal message {}", variant_name(&other)),
        }
        None
    }

    fn on_trickle(&mut self, t: proto::TrickleRequest) {
        match signal::parse_candidate_init(&t.candidate_init) {
            Ok(c) => {
                let link = &mut self.link;
                let to_sub = link.dual && t.target == proto::SignalTarget::Subscriber as i32;
                let res = match (to_sub, link.sub.as_mut()) {
                    (false, _) => link.peer.add_remote_candidate(&c.candidate),
                    (true, Some(sub)) => sub.add_remote_candidate(&c.candidate),
                    (true, None) => {
                        link.early_sub_candidates.push(c.candidate);
                        Ok(())
                    }
                };
                if let Err(e) = res {
                    log::warn!("ignoring remote candidate: {e}");
                }
            }
            Err(e) => log::warn!("{e}"),
        }
    }

    fn on_subscriber_offer(&mut self, now: Instant, o: proto::SessionDescription) -> Option<String> {
        let link = &mut self.link;
        if !link.dual {
            log::warn!("unexpected offer from server in single-PC mode; ignoring");
            return None;
        }
        let answer = match link.sub.as_mut() {
            Some(sub) => sub.accept_offer(&o.sdp),
            None => {
                let Some(locals) = link.sub_paths.as_ref().map(Paths::local_candidates) else {
                    return Some("subscriber paths unavailable".into());
                };
                Peer::new_subscriber_on(now, locals, &o.sdp, StunTiming::RESILIENT).map(
                    |(mut sub, answer)| {
                        for c in link.early_sub_candidates.drain(..) {
                            if let Err(e) = sub.add_remote_candidate(&c) {
                                log::warn!("ignoring remote candidate: {e}");
                            }
                        }
                        if let Some(sub_paths) = link.sub_paths.as_mut() {
                            sub_paths.arm_turn(now);
                            for (relayed, local) in sub_paths.relayed_candidates() {
                                if let Err(e) = sub.add_relayed_candidate(relayed, local) {
                                    log::warn!("ignoring relayed candidate {relayed}: {e}");
                                }
                            }
                        }
                        link.sub = Some(sub);
                        answer
                    },
                )
            }
        };
        match answer {
            Ok(sdp) => {
                let msg = proto::signal_request::Message::Answer(proto::SessionDescription {
                    r#type: "answer".into(),
                    sdp,
                    id: o.id,
                    ..Default::default()
                });
                link.pending_signal.push(signal::encode_request(msg));
                None
            }
            Err(e) => Some(format!("subscriber offer rejected: {e}")),
        }
    }

    fn on_data(&mut self, bytes: &[u8]) {
        let packet = match proto::DataPacket::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("ignoring undecodable data packet ({} bytes): {e}", bytes.len());
                return;
            }
        };
        let now = Instant::now();
        if !self.receive_states.accept_packet(now, &packet) {
            log::debug!(
                "dropping a duplicate reliable packet (sequence {})",
                packet.sequence
            );
            return;
        }
        self.ledger.on_received(&packet);
        let sender = packet.participant_identity;
        match packet.value {
            Some(Value::User(u)) => {
                log::debug!(
                    "ignoring a user data packet on topic {:?}",
                    u.topic.unwrap_or_default()
                );
            }
            Some(Value::RpcRequest(req)) => {
                let rpc = Arc::clone(&self.rpc);
                tokio::spawn(async move {
                    let options = rpc::request_options(sender, req);
                    rpc.server.handle_v1_request(options, &rpc.transport).await;
                });
            }
            Some(Value::RpcAck(a)) => self.rpc.client.handle_incoming_rpc_ack(a.request_id),
            Some(Value::RpcResponse(r)) => {
                let (payload, error) = rpc::response_parts(r.value);
                self.rpc
                    .client
                    .handle_v1_response_packet(r.request_id, payload, error);
            }
            // Unwanted streams are never admitted: their chunks are then unknown and dropped.
            Some(Value::StreamHeader(h)) if !self.wants_topic(&h.topic) => {
                log::debug!("discarding an incoming stream on topic {:?}", h.topic);
            }
            Some(Value::StreamHeader(h)) => match self.stream_gate.header(now, &sender, &h) {
                Ok(()) => self.feed_stream(
                    sender,
                    ds::Packet::Header {
                        header: h.into(),
                        encryption_type: Default::default(),
                    },
                ),
                Err(failure) => self.stream_failed(failure),
            },
            Some(Value::StreamChunk(c)) => {
                if self.stream_gate.chunk(now, &sender, &c.stream_id) {
                    self.feed_stream(
                        sender,
                        ds::Packet::Chunk {
                            chunk: c.into(),
                            encryption_type: Default::default(),
                        },
                    );
                } else {
                    log::debug!("chunk for unknown stream {}", c.stream_id);
                }
            }
            Some(Value::StreamTrailer(t)) => {
                if self.stream_gate.trailer(&sender, &t.stream_id) {
                    self.feed_stream(
                        sender,
                        ds::Packet::Trailer {
                            trailer: t.into(),
                            encryption_type: Default::default(),
                        },
                    );
                }
            }
            _ => log::trace!("ignoring data packet kind"),
        }
    }

    fn feed_stream(&self, sender: String, packet: ds::Packet) {
        let event = ds::incoming::PacketReceived::new(packet, sender.into());
        if self.streams_in.send(event.into()).is_err() {
            log::warn!("incoming stream manager stopped; dropping a stream packet");
        }
    }

    /// Handles queued commands. Returns a reason when the connection must end.
    fn drain_commands(&mut self) -> Option<String> {
        while let Ok(cmd) = self.io.commands.try_recv() {
            match cmd {
                Command::PerformRpc { params, reply } => {
                    if !self.ready_sent {
                        reply.send(Err(RpcError::built_in(RpcErrorCode::SendFailed)));
                    } else if self.link_down() {
                        self.held.push_back(Held::Rpc(params, reply));
                    } else {
                        self.start_rpc(params, reply);
                    }
                }
                Command::Transmit { packets, done } => {
                    if self.link_down() {
                        self.held.push_back(Held::Packets(packets, Some(done)));
                    } else {
                        let _ = done.send(self.send_packets(packets));
                    }
                }
                Command::SendBytes { options, data, reply } => {
                    // Packetized by livekit-data-stream; its batch comes back as a Transmit.
                    let rpc = Arc::clone(&self.rpc);
                    tokio::spawn(async move {
                        let _ = reply.send(rpc.transport.send_bytes(data, options).await);
                    });
                }
                Command::DropSignal => {
                    if self.ready_sent && self.link.ws.is_some() {
                        if let Some(reason) = self.on_signal_lost("dropped by a test hook".into()) {
                            return Some(reason);
                        }
                    }
                }
                Command::CutLink(duration) => {
                    log::info!("test hook: cutting the network for {duration:?}");
                    self.link.cut_until = Some(Instant::now() + duration);
                }
                Command::Simulate(scenario) => {
                    let req = signal::simulate_request(scenario);
                    self.link.pending_signal.push(signal::encode_request(req));
                }
                Command::Signal(frame) => self.link.pending_signal.push(frame),
                Command::Disconnect => {
                    let actions = self
                        .reconnector
                        .handle(Instant::now(), Input::DisconnectRequested);
                    self.apply_actions(actions);
                    return Some("client disconnected".into());
                }
            }
        }
        None
    }

    /// Performs the reconnect machine's decisions, in order; returns the reason to close.
    fn apply_actions(&mut self, actions: Vec<Action>) -> Option<String> {
        let mut later = Vec::new();
        for action in actions {
            log::debug!("reconnect machine: {action:?}");
            match action {
                Action::PauseWrites(paused) => {
                    self.link.peer.pause_writes(paused);
                }
                Action::IceRestart { reason } => self.restart_ice(reason),
                Action::StartAttempt { id, kind } => self.start_attempt(id, kind),
                Action::AbortAttempt { id } => {
                    if let Some(task) = self.attempts.remove(&id) {
                        task.abort();
                    }
                    self.answers.remove(&id);
                }
                Action::SendSyncState => {
                    if let Some(input) = self.send_sync_state() {
                        later.push(input);
                    }
                }
                Action::AdoptAttempt { id } => {
                    if let Some(input) = self.adopt(id) {
                        later.push(input);
                    }
                }
                Action::Emit(event) => self.emit_link_event(event),
                Action::Close { reason } => {
                    self.abort_attempts();
                    return Some(reason);
                }
            }
        }
        for input in later {
            if let Some(reason) = self.input(input) {
                return Some(reason);
            }
        }
        None
    }

    fn abort_attempts(&mut self) {
        for (_, task) in self.attempts.drain() {
            task.abort();
        }
        self.answers.clear();
    }

    fn restart_ice(&mut self, reason: proto::ReconnectReason) {
        if self.link.ws.is_none() {
            return; // no way to send the offer; the resume offers again
        }
        match self.link.peer.ice_restart() {
            Ok(offer) => {
                log::info!("offering an ICE restart ({})", reason.as_str_name());
                self.link.send_offer(offer);
                self.awaiting_ice = true;
            }
            Err(e) => log::debug!("no ICE restart now: {e}"),
        }
    }

    fn start_attempt(&mut self, id: AttemptId, kind: AttemptKind) {
        // The old websocket is of no more use: a resume replaces it (the server closes it), a
        // rejoin evicts its participant.
        self.link.ws = None;
        log::info!("reconnect attempt {id}: {kind:?}");
        let spec = AttemptSpec {
            url: self.cfg.url.clone(),
            token: self.cfg.token.clone(),
            extra_roots_der: self.cfg.extra_roots_der.clone(),
            proxy: self.cfg.proxy.clone(),
            participant_sid: self.join.local_sid.clone(),
            dual: self.link.dual,
            kind,
            cut_until: self.link.cut_until,
        };
        let results = self.attempt_tx.clone();
        let task = tokio::spawn(async move {
            let outcome = run_attempt(spec).await;
            let _ = results.send((id, outcome));
        });
        self.attempts.insert(id, task);
    }

    fn on_attempt_outcome(&mut self, id: AttemptId, outcome: AttemptOutcome) -> Option<String> {
        self.attempts.remove(&id)?; // None: aborted meanwhile
        let resuming = self.reconnector.state() == LinkState::Resuming;
        let input = match outcome {
            AttemptOutcome::Failed(f) => {
                log::info!("reconnect attempt {id} failed: {}", f.error);
                Input::AttemptFailed {
                    id,
                    error: AttemptError::from_live_error(&f.error, f.upgraded),
                }
            }
            AttemptOutcome::Answered(answered) => match &answered.1 {
                SignalAnswer::Leave(l) => self.on_refusal(id, resuming, l),
                SignalAnswer::Reconnect(_) => {
                    self.answers.insert(id, answered);
                    Input::ResumeAnswered { id }
                }
                SignalAnswer::Join(_) => {
                    self.answers.insert(id, answered);
                    Input::RejoinAnswered { id }
                }
            },
        };
        self.input(input)
    }

    /// The machine input for an attempt the server answered with a Leave.
    fn on_refusal(&self, id: AttemptId, resuming: bool, l: &proto::LeaveRequest) -> Input {
        match signal::leave_action(l) {
            LeaveAction::Reconnect if resuming => {
                log::info!("the server refused the resume; joining again");
                Input::Leave(LeaveAction::Reconnect)
            }
            LeaveAction::Disconnect { reason } => Input::Leave(LeaveAction::Disconnect { reason }),
            other => Input::AttemptFailed {
                id,
                error: AttemptError::Failed(format!("the server answered with a leave ({other:?})")),
            },
        }
    }

    /// Makes an answered attempt the current link. Returns an input for the machine when that
    /// failed.
    fn adopt(&mut self, id: AttemptId) -> Option<Input> {
        let (ws, answer) = *self.answers.remove(&id)?;
        self.liveness.on_signal_replaced(Instant::now());
        match answer {
            SignalAnswer::Reconnect(r) => {
                self.link.ws = Some(ws);
                // The offer in flight went out on the old websocket: its answer is lost.
                self.link.peer.abandon_pending_offer();
                self.last_message_seq = r.last_message_seq;
                // Fresh TURN credentials: used if the resumed link falls back on a relay.
                if let Some(plan) = turn_plan(&self.cfg, &r.ice_servers, r.client_configuration.as_ref()) {
                    self.link.replan_turn(plan);
                }
                if signal::resume_disabled(r.client_configuration.as_ref()) {
                    let now = Instant::now();
                    self.reconnector.handle(now, Input::ResumeDisabled);
                }
                None
            }
            SignalAnswer::Join(join) => self.adopt_join(id, ws, *join),
            SignalAnswer::Leave(_) => None,
        }
    }

    /// A rejoin was answered: a new link (new peer) for a new participant session. Packets not
    /// yet written to the old peer go out on the new one; calls written but not acknowledged
    /// fail with `CONNECTION_LOST`.
    fn adopt_join(&mut self, id: AttemptId, ws: Ws, join: proto::JoinResponse) -> Option<Input> {
        let turn = turn_plan(&self.cfg, &join.ice_servers, join.client_configuration.as_ref());
        let new_link = match Link::open(self.server, ws, self.link.dual, self.cfg.paths, turn) {
            Ok(link) => Link {
                cut_until: self.link.cut_until,
                ..link
            },
            Err(e) => {
                return Some(Input::AttemptFailed {
                    id,
                    error: AttemptError::Failed(format!("new peer connection: {e}")),
                })
            }
        };
        let mut old = std::mem::replace(&mut self.link, new_link);
        self.io.shared.path.set(None);
        let unwritten: Vec<proto::DataPacket> = old
            .peer
            .take_unwritten()
            .iter()
            .filter_map(|b| proto::DataPacket::decode(b.as_slice()).ok())
            .collect();
        old.close();
        self.peer_lost_at = None;
        self.fail_unacknowledged_calls(&unwritten);
        self.held.push_front(Held::Packets(unwritten, None));
        self.drop_orphan_stream_packets();
        self.stamper.reset();
        self.replay.clear();
        self.awaiting_ice = false;
        self.liveness = Liveness::new(Instant::now(), LivenessConfig::default());
        let joined = joined_of(&join);
        log::info!("joined again as {} ({})", joined.local_identity, joined.local_sid);
        self.tracker.set_local_sid(&joined.local_sid);
        self.join = joined;
        let changes = self.tracker.apply_snapshot(&join.other_participants);
        self.apply_changes(changes);
        if signal::resume_disabled(join.client_configuration.as_ref()) {
            self.reconnector.handle(Instant::now(), Input::ResumeDisabled);
        }
        None
    }

    /// Outgoing byte streams whose header went out on the lost link cannot be completed on
    /// the new one: their remaining packets are not sent.
    fn drop_orphan_stream_packets(&mut self) {
        let mut batches: Vec<&mut Vec<proto::DataPacket>> = self
            .held
            .iter_mut()
            .filter_map(|held| match held {
                Held::Packets(packets, _) => Some(packets),
                Held::Rpc(..) => None,
            })
            .collect();
        let dropped = reliable::drop_orphan_stream_packets(&mut batches);
        if dropped > 0 {
            log::info!("{dropped} packets of byte streams interrupted by the lost link are not sent");
        }
    }

    fn fail_unacknowledged_calls(&mut self, unwritten: &[proto::DataPacket]) {
        let mut resend: std::collections::HashSet<String> = unwritten
            .iter()
            .filter_map(|p| reliable::outgoing_request_id(p).map(str::to_owned))
            .collect();
        for held in &self.held {
            if let Held::Packets(packets, _) = held {
                resend.extend(
                    packets
                        .iter()
                        .filter_map(|p| reliable::outgoing_request_id(p).map(str::to_owned)),
                );
            }
        }
        for id in self.ledger.take_unacknowledged(&resend) {
            log::info!("call {id} was written to the lost link and never acknowledged");
            let error = proto::RpcError {
                code: rpc::CONNECTION_LOST,
                message: "the link was lost during the call; the runtime may or may not have \
                          received it"
                    .into(),
                data: String::new(),
            };
            self.rpc.client.handle_incoming_rpc_ack(id.clone());
            self.rpc.client.handle_v1_response_packet(id, None, Some(error));
        }
    }

    /// SyncState on the resumed websocket; trims the replay buffer by the server's
    /// `last_message_seq`. The association survives a resume (same peer connection), so SCTP
    /// itself delivers what is left: nothing is resent. Returns an input when the peer
    /// connection is gone after all (only a rejoin can help).
    fn send_sync_state(&mut self) -> Option<Input> {
        self.replay.acknowledge_up_to(self.last_message_seq);
        if self.link.peer.is_closed() {
            return Some(Input::Leave(LeaveAction::Reconnect));
        }
        let now = Instant::now();
        let link = &mut self.link;
        let (offer, answer, data_channels) = match link.sub.as_mut() {
            Some(sub) => {
                let (offer, answer) = sub.last_offer_answer();
                let mut channels = link.peer.data_channel_infos(proto::SignalTarget::Publisher);
                channels.extend(sub.data_channel_infos(proto::SignalTarget::Subscriber));
                (offer, answer, channels)
            }
            None => {
                let (offer, answer) = link.peer.last_offer_answer();
                (
                    offer,
                    answer,
                    link.peer.data_channel_infos(proto::SignalTarget::Publisher),
                )
            }
        };
        let parts = SyncStateParts {
            offer,
            answer,
            auto_subscribe: false,
            data_channels,
            receive_states: self.receive_states.sync_state_list(now),
        };
        link.pending_signal
            .push(signal::encode_request(signal::sync_state(parts)));
        self.snapshot_next_update = true;
        None
    }

    fn emit_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Reconnecting { reason } => {
                self.outage_began = Some(Instant::now());
                let reason = loss_description(reason).to_owned();
                log::info!("room {} reconnecting: {reason}", self.join.room_name);
                self.emit(RoomEvent::Reconnecting { reason });
            }
            LinkEvent::Reconnected { kind } => {
                let resumed = kind == ReconnectKind::Resumed;
                let took = self.outage_began.take().map(|t| t.elapsed());
                log::info!(
                    "room {} reconnected ({}) after {took:?}",
                    self.join.room_name,
                    if resumed { "resumed" } else { "joined again" }
                );
                self.release_held();
                self.io
                    .shared
                    .reconnects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((resumed, Instant::now()));
                self.emit(RoomEvent::Reconnected { resumed });
            }
        }
    }

    async fn shutdown(mut self, reason: String) {
        log::info!("room {} disconnected: {reason}", self.join.room_name);
        self.abort_attempts();
        self.io.shared.connected.store(false, Ordering::SeqCst);
        self.io.shared.path.set(None);
        // Best effort: tell the server, then close everything.
        if let Some(mut ws) = self.link.ws.take() {
            let leave = signal::encode_request(signal::leave_request());
            let _ = tokio::time::timeout(crate::session::timeouts::LEAVE_SEND, async {
                let _ = ws.send(Message::Binary(leave.into())).await;
                let _ = ws.close(None).await;
            })
            .await;
        }
        self.link.close();
        self.rpc.client.fail_all_pending();
        let _ = self.streams_in.send(ds::incoming::InputEvent::Shutdown);
        for held in std::mem::take(&mut self.held) {
            match held {
                Held::Packets(_, Some(done)) => {
                    let _ = done.send(Err(LiveError::Disconnected(reason.clone())));
                }
                Held::Packets(_, None) => {}
                Held::Rpc(_, reply) => {
                    reply.send(Err(RpcError::built_in(RpcErrorCode::RecipientDisconnected)))
                }
            }
        }
        // Fail commands that raced with the shutdown.
        while let Ok(cmd) = self.io.commands.try_recv() {
            match cmd {
                Command::PerformRpc { reply, .. } => {
                    reply.send(Err(RpcError::built_in(RpcErrorCode::RecipientDisconnected)));
                }
                Command::SendBytes { reply, .. } => {
                    let _ = reply.send(Err(LiveError::Disconnected(reason.clone())));
                }
                Command::Transmit { done, .. } => {
                    let _ = done.send(Err(LiveError::Disconnected(reason.clone())));
                }
                Command::Disconnect
                | Command::DropSignal
                | Command::Simulate(_)
                | Command::CutLink(_)
                | Command::Signal(_) => {}
            }
        }
        let left = self.tracker.clear();
        self.lock_participants().clear();
        for c in left {
            if let ParticipantChange::Left(p) = c {
                self.emit(RoomEvent::ParticipantLeft(p));
            }
        }
        if !self.ready_sent {
            let _ = self.io.ready.send(Err(LiveError::Disconnected(reason.clone())));
        }
        self.emit(RoomEvent::Disconnected { reason });
    }
}

/// What the user is told an outage is about.
/// The TURN servers of a join response to fall back on, if it names any (skipped URLs and
/// an unusable TLS configuration are logged, never fatal).
fn turn_plan(
    cfg: &ConnectionConfig,
    ice_servers: &[proto::IceServer],
    client_configuration: Option<&proto::ClientConfiguration>,
) -> Option<net::TurnPlan> {
    let (servers, skipped) = crate::live::turn::turn_servers(ice_servers);
    for reason in skipped {
        log::debug!("ignoring an ICE server URL: {reason}");
    }
    if servers.is_empty() {
        return None;
    }
    let options = match crate::live::turn::TurnOptions::new(&cfg.extra_roots_der) {
        Ok(options) => options.proxy(cfg.proxy.clone()),
        Err(e) => {
            log::warn!("TURN unavailable: {e}");
            return None;
        }
    };
    let force =
        client_configuration.is_some_and(|c| c.force_relay == proto::ClientConfigSetting::Enabled as i32);
    Some(net::TurnPlan {
        servers,
        options,
        force,
    })
}

fn loss_description(reason: LossReason) -> &'static str {
    match reason {
        LossReason::DataPath => "no data from the server",
        LossReason::Signal => "the signal connection was lost",
        LossReason::ServerResume => "the server asked to resume the session",
        LossReason::ServerReconnect => "the server asked to join again",
    }
}

fn joined_of(join: &proto::JoinResponse) -> Joined {
    let local = join.participant.clone().unwrap_or_default();
    Joined {
        local_identity: local.identity,
        local_sid: local.sid,
        room_name: join.room.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
        server_version: join.server_version.clone(),
        can_update_metadata: local.permission.as_ref().is_some_and(|p| p.can_update_metadata),
    }
}

/// The server version `livekit-rpc` checks RPC support against.
fn server_version(join: &proto::JoinResponse) -> Option<String> {
    join.server_info
        .as_ref()
        .map(|i| i.version.clone())
        .filter(|v| !v.is_empty())
        .or_else(|| Some(join.server_version.clone()).filter(|v| !v.is_empty()))
}

/// `livekit-data-stream`'s outgoing manager (used for RPC v2 text streams), with a task that
/// pumps its packet batches into the engine. The task ends when the manager is dropped.
fn spawn_outgoing_streams(outbox: Outbox) -> ds::outgoing::Manager {
    let (manager, mut packets) = ds::outgoing::Manager::new();
    tokio::spawn(async move {
        while let Ok((batch, responder)) = packets.recv().await {
            let result = outbox
                .transmit(batch)
                .await
                .map_err(|_| livekit_data_stream::api::SendError);
            let _ = responder.respond(result);
        }
    });
    manager
}

/// `livekit-data-stream`'s incoming manager, with a task routing each opened stream: text
/// streams on the RPC topics to the RPC server (requests) or client (responses), everything
/// else (only the owner's topics get this far) read to its end and handed to the observer.
/// The tasks end when the returned input is dropped or shut down.
fn spawn_incoming_streams(
    rpc: &Arc<Rpc>,
    max_bytes: usize,
    observer: Arc<dyn RoomObserver>,
) -> ds::incoming::ManagerInput {
    let (manager, input, mut output) = ds::incoming::Manager::new(Some(max_bytes));
    tokio::spawn(manager.run());
    let rpc = Arc::clone(rpc);
    tokio::spawn(async move {
        while let Some(event) = output.recv().await {
            let ds::incoming::OutputEvent::StreamOpened(opened) = event else {
                continue;
            };
            let sender = opened.participant_identity;
            match opened.stream_reader {
                AnyStreamReader::Text(reader) if reader.info().topic == rpc::RPC_REQUEST_TOPIC => {
                    let rpc = Arc::clone(&rpc);
                    tokio::spawn(async move {
                        rpc.server
                            .handle_v2_request_stream(reader, sender, &rpc.transport)
                            .await;
                    });
                }
                AnyStreamReader::Text(reader) if reader.info().topic == rpc::RPC_RESPONSE_TOPIC => {
                    let rpc = Arc::clone(&rpc);
                    tokio::spawn(async move { rpc.client.handle_v2_response_stream(reader).await });
                }
                reader => {
                    let observer = Arc::clone(&observer);
                    tokio::spawn(async move {
                        match streams::collect(reader, sender.0).await {
                            Ok(stream) => observer.on_stream(stream),
                            Err(f) => log::warn!(
                                "incoming stream {} from {} failed: {}",
                                f.id,
                                f.sender_identity,
                                f.reason
                            ),
                        }
                    });
                }
            }
        }
    });
    input
}

/// Receives on optional paths; pends forever without them.
async fn recv_opt(paths: Option<&mut Paths>) -> net::PathEvent {
    match paths {
        Some(p) => p.next_event().await,
        None => std::future::pending().await,
    }
}
