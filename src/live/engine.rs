//! The async core of a room: one task on the executor (the SDK's private tokio pool) that owns the websocket, the
//! network paths (UDP socket, ICE-TCP connections: [`crate::live::net`]) and the str0m peer,
//! and drives the sans-IO state machines (participants, the stream gate). RPC and data streams run in LiveKit's `livekit-rpc` / `livekit-data-stream`
//! managers on tasks of their own, which send through the engine's command channel (see
//! [`crate::live::rpc`], [`crate::live::streams`]). It talks to the synchronous
//! [`crate::live::Room`] handle only through channels.

use crate::live::error::{LiveError, RpcError, RpcErrorCode};
use crate::live::net::{PathOptions, Paths};
use crate::live::participants::{Participant, ParticipantChange, ParticipantTracker};
use crate::live::peer::{Peer, PeerOutput};
use crate::live::room::OutgoingStream;
use crate::live::rpc::{self, CallParams, EngineTransport, Outbox, Rpc, RpcReply};
use crate::live::signal;
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
use std::collections::HashMap;
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
    #[allow(dead_code)] // emitted once the reconnect engine (issue 8) is wired
    Reconnecting {
        /// What was lost (no credentials).
        reason: String,
    },
    /// The link is back: `resumed` is true when the same participant session was resumed,
    /// false after a full reconnect as a new participant.
    #[allow(dead_code)] // emitted once the reconnect engine (issue 8) is wired
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
    Disconnect,
}

/// State shared with the handle (read-mostly snapshots).
#[derive(Debug)]
pub(crate) struct Shared {
    pub connected: AtomicBool,
    pub participants: Mutex<HashMap<String, Participant>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            connected: AtomicBool::new(false),
            participants: Mutex::new(HashMap::new()),
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
    #[allow(dead_code)] // read once the reconnect engine (issue 8) is wired
    pub reconnect_timeout: Duration,
    /// Which transports ICE may use (both by default; tests switch UDP off).
    pub paths: PathOptions,
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
    let mut s = match Connection::new(cfg, io, ws, join, dual).await {
        Ok(s) => s,
        Err((io, e)) => {
            let _ = io.ready.send(Err(e));
            return;
        }
    };
    let reason = s.run_loop(deadline.into_std()).await;
    s.shutdown(reason).await;
}

/// Opens the signalling websocket on `/rtc/v1` (one peer connection), falling back to `/rtc`
/// (two peer connections) when the server answers 404; returns it, the JoinResponse and
/// whether the dual layout is in use.
async fn connect_signal(cfg: &ConnectionConfig) -> Result<(Ws, proto::JoinResponse, bool), LiveError> {
    let v1 = || signal::join_url(&cfg.url, &signal::join_request(false));
    match open_signal(cfg, v1()?).await {
        Err(LiveError::Refused { status: 404, .. }) => {
            log::info!("server has no /rtc/v1; falling back to /rtc with two peer connections");
            open_signal(cfg, signal::join_url_v0(&cfg.url)?)
                .await
                .map(|(w, j)| (w, j, true))
        }
        other => other.map(|(w, j)| (w, j, false)),
    }
}

async fn open_signal(cfg: &ConnectionConfig, url: url::Url) -> Result<(Ws, proto::JoinResponse), LiveError> {
    let tls = if url.scheme() == "wss" {
        Some(tls_config(&cfg.extra_roots_der)?)
    } else {
        None
    };
    let mut ws = crate::live::ws::connect(&url, &cfg.token, tls).await?;
    loop {
        let Some(msg) = ws.next().await else {
            return Err(LiveError::Signal("closed before JoinResponse".into()));
        };
        match msg.map_err(|e| LiveError::Signal(e.to_string()))? {
            Message::Binary(b) => match signal::decode_response(&b)? {
                Resp::Join(j) => return Ok((ws, j)),
                Resp::Leave(l) => {
                    return Err(LiveError::Disconnected(format!(
                        "server refused join: reason {}",
                        l.reason
                    )))
                }
                other => log::debug!("signal before join: {}", variant_name(&other)),
            },
            Message::Close(c) => return Err(LiveError::Signal(format!("closed before JoinResponse: {c:?}"))),
            _ => {}
        }
    }
}

/// rustls client config with an explicit provider (ring), webpki roots plus `extra_roots_der`.
/// Explicit, so that it works whichever rustls crypto features other crates enable.
fn tls_config(extra_roots_der: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, LiveError> {
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
        _ => "other",
    }
}

struct Connection {
    io: ConnectionIo,
    ws: Ws,
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
    join: Joined,
    tracker: ParticipantTracker,
    rpc: Arc<Rpc>,
    /// Incoming data streams go through the gate (open-stream cap, idle timeout) into
    /// `livekit-data-stream`'s incoming manager; its readers go to the RPC managers (topics
    /// `lk.rpc_request` / `lk.rpc_response`) or are collected into [`ByteStream`]s.
    streams_in: ds::incoming::ManagerInput,
    stream_gate: StreamGate,
    ready_sent: bool,
    /// See [`ConnectionConfig::stream_topics`].
    stream_topics: Vec<String>,
    ping_interval: Duration,
    ping_timeout: Duration,
    next_ping: Instant,
    last_signal: Instant,
    rtt_ms: i64,
}

impl Connection {
    #[allow(clippy::result_large_err)]
    async fn new(
        cfg: ConnectionConfig,
        io: ConnectionIo,
        mut ws: Ws,
        join: proto::JoinResponse,
        dual: bool,
    ) -> Result<Connection, (ConnectionIo, LiveError)> {
        let local = join.participant.clone().unwrap_or_default();
        let joined = Joined {
            local_identity: local.identity.clone(),
            local_sid: local.sid.clone(),
            room_name: join.room.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
            server_version: join.server_version.clone(),
        };
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
        let paths = match Paths::open(&cfg.url, cfg.paths).await {
            Ok(p) => p,
            Err(e) => return Err((io, e)),
        };
        let sub_paths = if dual {
            match Paths::open(&cfg.url, cfg.paths).await {
                Ok(p) => Some(p),
                Err(e) => return Err((io, e)),
            }
        } else {
            None
        };
        let now = Instant::now();
        let (peer, offer) = match Peer::new_on(now, paths.local_candidates()) {
            Ok(v) => v,
            Err(e) => return Err((io, e)),
        };
        let offer_req = proto::signal_request::Message::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer,
            ..Default::default()
        });
        if let Err(e) = ws
            .send(Message::Binary(signal::encode_request(offer_req).into()))
            .await
        {
            return Err((io, LiveError::Signal(e.to_string())));
        }
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
        let ping_interval = Duration::from_secs(u64::try_from(join.ping_interval).unwrap_or(0).max(1));
        let ping_timeout = Duration::from_secs(u64::try_from(join.ping_timeout).unwrap_or(0).max(2));
        let mut s = Connection {
            io,
            ws,
            paths,
            peer,
            dual,
            sub: None,
            sub_paths,
            early_sub_candidates: Vec::new(),
            pub_open: false,
            sub_open: false,
            pending_signal: Vec::new(),
            join: joined,
            tracker,
            rpc,
            streams_in,
            stream_gate: StreamGate::default(),
            ready_sent: false,
            stream_topics: cfg.stream_topics.clone(),
            ping_interval,
            ping_timeout,
            next_ping: now + ping_interval,
            last_signal: now,
            rtt_ms: 0,
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
            || self.stream_topics.iter().any(|wanted| wanted == topic)
    }

    fn send_packet(&mut self, packet: &proto::DataPacket, reliable: bool) -> Result<(), LiveError> {
        self.peer.send(reliable, packet.encode_to_vec())
    }

    /// Main loop; returns the disconnect reason.
    async fn run_loop(&mut self, connect_deadline: Instant) -> String {
        loop {
            for frame in std::mem::take(&mut self.pending_signal) {
                if let Err(e) = self.ws.send(Message::Binary(frame.into())).await {
                    return format!("signal send failed: {e}");
                }
            }
            // Drain the peer: transmit datagrams, handle events.
            let peer_timeout = match self.drive_peer().await {
                Ok(t) => t,
                Err(reason) => return reason,
            };
            let mut deadline = peer_timeout
                .min(self.next_ping)
                .min(self.last_signal + self.ping_timeout);
            if !self.ready_sent {
                deadline = deadline.min(connect_deadline);
            }
            if let Some(t) = self.stream_gate.poll_timeout() {
                deadline = deadline.min(t);
            }
            let sleep = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                msg = self.ws.next() => {
                    match msg {
                        Some(Ok(Message::Binary(b))) => {
                            self.last_signal = Instant::now();
                            match signal::decode_response(&b) {
                                Ok(m) => if let Some(reason) = self.on_signal(m) { return reason; },
                                Err(e) => log::warn!("ignoring bad signal frame: {e}"),
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return "signal connection closed".into(),
                        Some(Ok(_)) => { self.last_signal = Instant::now(); }
                        Some(Err(e)) => return format!("signal connection failed: {e}"),
                    }
                }
                packet = self.paths.recv() => {
                    if let Err(e) = self.peer.handle_datagram(Instant::now(), &packet) {
                        log::debug!("webrtc input error: {e}");
                    }
                }
                packet = recv_opt(self.sub_paths.as_mut()) => {
                    match self.sub.as_mut() {
                        Some(sub) => {
                            if let Err(e) = sub.handle_datagram(Instant::now(), &packet) {
                                log::debug!("webrtc input error (subscriber): {e}");
                            }
                        }
                        None => log::trace!("packet before the subscriber offer"),
                    }
                }
                _ = self.io.wake.notified() => {}
                _ = sleep => {}
            }
            let now = Instant::now();
            if let Err(e) = self.peer.handle_timeout(now) {
                return format!("webrtc failure: {e}");
            }
            if let Some(sub) = self.sub.as_mut() {
                if let Err(e) = sub.handle_timeout(now) {
                    return format!("webrtc failure (subscriber): {e}");
                }
            }
            if let Some(reason) = self.drain_commands() {
                return reason;
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
            if !self.ready_sent && now >= connect_deadline {
                let _ = self.io.ready.send(Err(self.connect_failure()));
                return "connect timeout".into();
            }
            if now >= self.last_signal + self.ping_timeout {
                return "signal ping timeout".into();
            }
            if now >= self.next_ping {
                self.next_ping = now + self.ping_interval;
                let req = signal::ping_request(now_ms(), self.rtt_ms);
                if let Err(e) = self
                    .ws
                    .send(Message::Binary(signal::encode_request(req).into()))
                    .await
                {
                    return format!("signal send failed: {e}");
                }
            }
        }
    }

    /// Why connecting failed at the deadline: while ICE has found no working path, every path
    /// tried and its outcome; once it had one, the data channel simply did not open in time.
    fn connect_failure(&self) -> LiveError {
        if self.peer.ice_connected() || self.sub.as_ref().is_some_and(Peer::ice_connected) {
            return LiveError::Timeout("WebRTC data channel");
        }
        LiveError::NoPath {
            attempts: self.paths.attempts(),
        }
    }

    /// Sends everything the peers want to send; handles their events. Returns the earliest
    /// peer timeout.
    async fn drive_peer(&mut self) -> Result<Instant, String> {
        let pub_timeout = loop {
            let out = self.peer.poll();
            match out {
                PeerOutput::Transmit(packet) => {
                    let generation = self.peer.ice_generation();
                    self.paths.send(&packet, generation).await;
                }
                PeerOutput::Timeout(t) => break t,
                other => self.on_peer_output(false, other)?,
            }
        };
        let mut timeout = pub_timeout;
        while let Some(sub) = self.sub.as_mut() {
            match sub.poll() {
                PeerOutput::Transmit(packet) => {
                    let generation = sub.ice_generation();
                    if let Some(paths) = self.sub_paths.as_mut() {
                        paths.send(&packet, generation).await;
                    }
                }
                PeerOutput::Timeout(t) => {
                    timeout = timeout.min(t);
                    break;
                }
                other => self.on_peer_output(true, other)?,
            }
        }
        Ok(timeout)
    }

    fn on_peer_output(&mut self, subscriber: bool, out: PeerOutput) -> Result<(), String> {
        match out {
            PeerOutput::Open => {
                if subscriber {
                    self.sub_open = true;
                } else {
                    self.pub_open = true;
                }
                if !self.ready_sent && self.pub_open && (!self.dual || self.sub_open) {
                    self.ready_sent = true;
                    self.io.shared.connected.store(true, Ordering::SeqCst);
                    let _ = self.io.ready.send(Ok(self.join.clone()));
                }
            }
            PeerOutput::Data(d) => self.on_data(&d),
            PeerOutput::Closed(reason) => {
                return Err(if subscriber {
                    format!("{reason} (subscriber)")
                } else {
                    reason
                })
            }
            PeerOutput::Transmit(..) | PeerOutput::Timeout(_) => {}
        }
        Ok(())
    }

    fn on_signal(&mut self, m: Resp) -> Option<String> {
        let now = Instant::now();
        match m {
            Resp::Answer(a) => {
                if let Err(e) = self.peer.accept_answer(&a.sdp) {
                    return Some(format!("SDP answer rejected: {e}"));
                }
            }
            Resp::Trickle(t) => match signal::parse_candidate_init(&t.candidate_init) {
                Ok(c) => {
                    let to_sub = self.dual && t.target == proto::SignalTarget::Subscriber as i32;
                    let res = match (to_sub, self.sub.as_mut()) {
                        (false, _) => self.peer.add_remote_candidate(&c.candidate),
                        (true, Some(sub)) => sub.add_remote_candidate(&c.candidate),
                        (true, None) => {
                            self.early_sub_candidates.push(c.candidate);
                            Ok(())
                        }
                    };
                    if let Err(e) = res {
                        log::warn!("ignoring remote candidate: {e}");
                    }
                }
                Err(e) => log::warn!("{e}"),
            },
            Resp::Update(u) => {
                log::debug!(
                    "participant update: {:?}",
                    u.participants
                        .iter()
                        .map(|p| (&p.identity, p.state))
                        .collect::<Vec<_>>()
                );
                let changes = self.tracker.apply_update(&u.participants);
                self.apply_changes(changes);
            }
            Resp::Leave(l) => {
                return Some(format!("server asked to leave (reason {})", l.reason));
            }
            Resp::PongResp(p) => {
                self.rtt_ms = now_ms().saturating_sub(p.last_ping_timestamp).max(0);
            }
            Resp::Offer(o) => {
                if !self.dual {
                    log::warn!("unexpected offer from server in single-PC mode; ignoring");
                    return None;
                }
                let answer = match self.sub.as_mut() {
                    Some(sub) => sub.accept_offer(&o.sdp),
                    None => {
                        let Some(locals) = self.sub_paths.as_ref().map(Paths::local_candidates) else {
                            return Some("subscriber paths unavailable".into());
                        };
                        Peer::new_subscriber_on(now, locals, &o.sdp).map(|(mut sub, answer)| {
                            for c in self.early_sub_candidates.drain(..) {
                                if let Err(e) = sub.add_remote_candidate(&c) {
                                    log::warn!("ignoring remote candidate: {e}");
                                }
                            }
                            self.sub = Some(sub);
                            answer
                        })
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
                        self.pending_signal.push(signal::encode_request(msg));
                    }
                    Err(e) => return Some(format!("subscriber offer rejected: {e}")),
                }
            }
            other => log::debug!("ignoring signal message {}", variant_name(&other)),
        }
        None
    }

    fn on_data(&mut self, bytes: &[u8]) {
        let packet = match proto::DataPacket::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("ignoring undecodable data packet ({} bytes): {e}", bytes.len());
                return;
            }
        };
        let sender = packet.participant_identity;
        let now = Instant::now();
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
                        continue;
                    }
                    // No "recipient not found" pre-check: livekit-server announces data-only
                    // participants in batches (up to 3 s late) but routes to them at once.
                    // (`livekit-rpc` has none either.)
                    let rpc = Arc::clone(&self.rpc);
                    tokio::spawn(async move {
                        reply.send(rpc.perform(params).await);
                    });
                }
                Command::Transmit { packets, done } => {
                    let mut result = Ok(());
                    for pkt in &packets {
                        if let Err(e) = self.send_packet(pkt, true) {
                            result = Err(e);
                            break;
                        }
                    }
                    let _ = done.send(result);
                }
                Command::SendBytes { options, data, reply } => {
                    // Packetized by livekit-data-stream; its batch comes back as a Transmit.
                    let rpc = Arc::clone(&self.rpc);
                    tokio::spawn(async move {
                        let _ = reply.send(rpc.transport.send_bytes(data, options).await);
                    });
                }
                Command::Disconnect => return Some("client disconnected".into()),
            }
        }
        None
    }

    async fn shutdown(mut self, reason: String) {
        log::info!("room {} disconnected: {reason}", self.join.room_name);
        self.io.shared.connected.store(false, Ordering::SeqCst);
        // Best effort: tell the server, then close everything.
        let leave = signal::encode_request(signal::leave_request());
        let _ = tokio::time::timeout(crate::session::timeouts::LEAVE_SEND, async {
            let _ = self.ws.send(Message::Binary(leave.into())).await;
            let _ = self.ws.close(None).await;
        })
        .await;
        self.peer.close();
        if let Some(sub) = self.sub.as_mut() {
            sub.close();
        }
        // Let str0m flush its close packets (best effort, non-blocking sends).
        let generation = self.peer.ice_generation();
        while let PeerOutput::Transmit(packet) = self.peer.poll() {
            self.paths.try_send(&packet, generation);
        }
        self.rpc.client.fail_all_pending();
        let _ = self.streams_in.send(ds::incoming::InputEvent::Shutdown);
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
                Command::Disconnect => {}
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
async fn recv_opt(paths: Option<&mut Paths>) -> crate::live::net::Datagram {
    match paths {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}
