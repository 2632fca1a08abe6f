//! The async core of a room: one task on the private runtime that owns the websocket, the
//! UDP socket and the str0m peer, and drives the sans-IO state machines (participants, RPC,
//! streams). It talks to the synchronous [`crate::live::Room`] handle only through channels.

use crate::live::error::{LiveError, RpcError};
use crate::live::participants::{Participant, ParticipantChange, ParticipantTracker};
use crate::live::peer::{Peer, PeerOutput};
use crate::live::rpc::{self, CallParams, Invocation, RpcClient};
use crate::live::signal;
use crate::live::streams::{self, ByteStream, OutgoingByteStream, StreamEvent, StreamReassembler};
use crossbeam_channel as cb;
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::data_packet::Value;
use proto::signal_response::Message as Resp;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::{self, Message};

/// A synchronous RPC method handler. Runs on the library's blocking thread pool.
pub type RpcHandler = Arc<dyn Fn(Invocation) -> Result<String, RpcError> + Send + Sync + 'static>;

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
    /// A user data packet arrived.
    DataReceived {
        /// Sender identity.
        sender_identity: String,
        /// Topic (empty if none).
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// An incoming data stream was dropped.
    StreamFailed(streams::StreamFailure),
    /// The room is disconnected; no further events follow.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// Where the outcome of an outgoing RPC goes: a channel a caller blocks on, or a callback
/// run on the engine (it must not block).
pub(crate) enum RpcReply {
    Channel(cb::Sender<Result<String, RpcError>>),
    Callback(Box<dyn FnOnce(Result<String, RpcError>) + Send>),
}

impl RpcReply {
    /// Delivers the outcome; false when the waiting caller is gone.
    pub(crate) fn send(self, result: Result<String, RpcError>) -> bool {
        match self {
            RpcReply::Channel(tx) => tx.send(result).is_ok(),
            RpcReply::Callback(callback) => {
                callback(result);
                true
            }
        }
    }
}

/// Commands from the handle.
pub(crate) enum Command {
    PerformRpc {
        params: CallParams,
        reply: RpcReply,
    },
    Register {
        method: String,
        handler: RpcHandler,
    },
    Unregister {
        method: String,
    },
    SendBytes {
        desc: OutgoingByteStream,
        data: Vec<u8>,
        reply: cb::Sender<Result<(), LiveError>>,
    },
    PublishData {
        packet: proto::DataPacket,
        reliable: bool,
        reply: cb::Sender<Result<(), LiveError>>,
    },
    Disconnect,
}

/// State shared with the handle (read-mostly snapshots).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub connected: AtomicBool,
    pub participants: Mutex<HashMap<String, Participant>>,
}

/// Result of the connect phase.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub local_identity: String,
    pub local_sid: String,
    pub room_name: String,
    pub server_version: String,
}

/// Configuration of a session.
#[derive(Clone)]
pub(crate) struct SessionConfig {
    pub url: String,
    pub token: String,
    pub connect_timeout: Duration,
    pub disconnect_grace: Duration,
    pub max_stream_bytes: usize,
}

pub(crate) struct SessionIo {
    pub commands: cb::Receiver<Command>,
    pub wake: Arc<tokio::sync::Notify>,
    pub ready: cb::Sender<Result<Joined, LiveError>>,
    pub events: cb::Sender<RoomEvent>,
    pub streams: cb::Sender<ByteStream>,
    pub shared: Arc<Shared>,
    /// Dropped when the task ends; the handle waits for that on drop.
    pub _done: cb::Sender<()>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs a session to completion.
pub(crate) async fn run(cfg: SessionConfig, io: SessionIo) {
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let connected = tokio::time::timeout_at(deadline, connect_signal(&cfg)).await;
    let (ws, join) = match connected {
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
    let mut s = match Session::new(cfg, io, ws, join).await {
        Ok(s) => s,
        Err((io, e)) => {
            let _ = io.ready.send(Err(e));
            return;
        }
    };
    let reason = s.run_loop(deadline.into_std()).await;
    s.shutdown(reason).await;
}

async fn connect_signal(cfg: &SessionConfig) -> Result<(Ws, proto::JoinResponse), LiveError> {
    let url = signal::join_url(&cfg.url, &signal::join_request(false))?;
    let bearer = format!("Bearer {}", cfg.token);
    if tungstenite::http::HeaderValue::from_str(&bearer).is_err() {
        return Err(LiveError::InvalidArgument(
            "token contains invalid characters".into(),
        ));
    }
    let mut ws = open_ws(&url, &bearer, &cfg.token).await?;
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

/// Opens the signalling websocket (`ws://` or `wss://`) with a handshake written here, not
/// by tungstenite: tungstenite's client handshake logs the whole request at trace level,
/// `Authorization` header (the participant token) included. The header value was validated
/// by the caller (no CR/LF can be injected).
async fn open_ws(url: &url::Url, authorization: &str, token: &str) -> Result<Ws, LiveError> {
    let host = url
        .host_str()
        .ok_or_else(|| LiveError::InvalidUrl("missing host".into()))?;
    let tls = url.scheme() == "wss";
    let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare_host, port)).await?;
    let _ = tcp.set_nodelay(true);
    let mut stream = if tls {
        tokio_tungstenite::MaybeTlsStream::Rustls(tls_connect(bare_host, tcp).await?)
    } else {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp)
    };
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let key = tungstenite::handshake::client::generate_key();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nAuthorization: {authorization}\r\n\r\n"
    );
    let rest = upgrade(&mut stream, &request, &key, token).await?;
    Ok(tokio_tungstenite::WebSocketStream::from_partially_read(
        stream,
        rest,
        tungstenite::protocol::Role::Client,
        None,
    )
    .await)
}

/// TLS to the signalling server, verified against the webpki roots, with the ring provider
/// named explicitly (several rustls providers may be compiled into one program).
async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, LiveError> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LiveError::Signal(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| LiveError::InvalidUrl(format!("not a valid TLS server name: {host}")))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| LiveError::Signal(format!("TLS handshake failed: {e}")))
}

/// Sends the upgrade request and reads the answer; returns the bytes read past the response
/// head (the first websocket frames). A refusal keeps a credential-free body excerpt.
async fn upgrade<S>(stream: &mut S, request: &str, key: &str, token: &str) -> Result<Vec<u8>, LiveError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const MAX_HEAD_BYTES: usize = 16 * 1024;
    const MAX_BODY_BYTES: usize = 4 * 1024;

    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(LiveError::Signal("websocket handshake response too large".into()));
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(LiveError::Signal(
                "connection closed during the websocket handshake".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let rest = buf.split_off(head_len);
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| LiveError::Signal("malformed websocket handshake response".into()))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    if status != 101 {
        let wanted = header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(MAX_BODY_BYTES)
            .min(MAX_BODY_BYTES);
        let mut body = rest;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while body.len() < wanted {
                let mut chunk = [0u8; 1024];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        return Err(LiveError::Refused {
            status,
            message: refusal_excerpt(&String::from_utf8_lossy(&body), token),
        });
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if header("sec-websocket-accept").as_deref() != Some(expected.as_str()) {
        return Err(LiveError::Signal(
            "websocket handshake: wrong Sec-WebSocket-Accept".into(),
        ));
    }
    Ok(rest)
}

/// Longest excerpt of a refusal body kept in [`LiveError::Refused`].
const REFUSAL_EXCERPT_BYTES: usize = 256;

/// The server's refusal text, credential-free and cut to [`REFUSAL_EXCERPT_BYTES`].
///
/// LiveKit echoes the token it rejects (`invalid token: <jwt>, error: …`), so the token
/// itself, and any other JWT-looking word (base64 of `{"` starts `eyJ`), is replaced before
/// the text goes into an error (which applications log).
fn refusal_excerpt(body: &str, token: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let body = if token.is_empty() {
        body.to_owned()
    } else {
        body.replace(token, REDACTED)
    };
    let is_separator = |c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '\'' | '(' | ')');
    let mut out = String::with_capacity(body.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(if word.contains("eyJ") { REDACTED } else { word });
        word.clear();
    };
    for c in body.chars() {
        if is_separator(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    let mut end = out.len().min(REFUSAL_EXCERPT_BYTES);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
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

/// Picks the local address used to reach `host:port` (the server), bound to port 0.
async fn bind_udp_towards(url: &str) -> Result<UdpSocket, LiveError> {
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
    let any: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| LiveError::InvalidUrl("addr".into()))?;
    let probe = UdpSocket::bind(any).await?;
    probe.connect(target).await?;
    let local_ip = probe.local_addr()?.ip();
    drop(probe);
    Ok(UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?)
}

struct Session {
    io: SessionIo,
    ws: Ws,
    socket: UdpSocket,
    peer: Peer,
    join: Joined,
    tracker: ParticipantTracker,
    rpc: RpcClient<RpcReply>,
    reassembler: StreamReassembler,
    handlers: HashMap<String, RpcHandler>,
    handler_tx: tokio::sync::mpsc::UnboundedSender<(Invocation, Result<String, RpcError>)>,
    handler_rx: tokio::sync::mpsc::UnboundedReceiver<(Invocation, Result<String, RpcError>)>,
    ready_sent: bool,
    ping_interval: Duration,
    ping_timeout: Duration,
    next_ping: Instant,
    last_signal: Instant,
    rtt_ms: i64,
    next_request: u64,
}

impl Session {
    #[allow(clippy::result_large_err)]
    async fn new(
        cfg: SessionConfig,
        io: SessionIo,
        mut ws: Ws,
        join: proto::JoinResponse,
    ) -> Result<Session, (SessionIo, LiveError)> {
        let local = join.participant.clone().unwrap_or_default();
        let joined = Joined {
            local_identity: local.identity.clone(),
            local_sid: local.sid.clone(),
            room_name: join.room.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
            server_version: join.server_version.clone(),
        };
        log::info!(
            "joined room {} as {} (server {}, protocol {}, subscriber_primary {})",
            joined.room_name,
            joined.local_identity,
            joined.server_version,
            join.server_info.as_ref().map(|s| s.protocol).unwrap_or_default(),
            join.subscriber_primary
        );
        let socket = match bind_udp_towards(&cfg.url).await {
            Ok(s) => s,
            Err(e) => return Err((io, e)),
        };
        let local_addr = match socket.local_addr() {
            Ok(a) => a,
            Err(e) => return Err((io, e.into())),
        };
        let now = Instant::now();
        let (peer, offer) = match Peer::new(now, local_addr) {
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
        let (handler_tx, handler_rx) = tokio::sync::mpsc::unbounded_channel();
        let ping_interval = Duration::from_secs(u64::try_from(join.ping_interval).unwrap_or(0).max(1));
        let ping_timeout = Duration::from_secs(u64::try_from(join.ping_timeout).unwrap_or(0).max(2));
        let mut s = Session {
            io,
            ws,
            socket,
            peer,
            join: joined,
            tracker,
            rpc: RpcClient::new(cfg.disconnect_grace),
            reassembler: StreamReassembler::new(
                cfg.max_stream_bytes,
                streams::DEFAULT_MAX_OPEN_STREAMS,
                streams::DEFAULT_STREAM_IDLE_TIMEOUT,
            ),
            handlers: HashMap::new(),
            handler_tx,
            handler_rx,
            ready_sent: false,
            ping_interval,
            ping_timeout,
            next_ping: now + ping_interval,
            last_signal: now,
            rtt_ms: 0,
            next_request: 0,
        };
        s.apply_changes(now, initial);
        Ok(s)
    }

    fn emit(&self, ev: RoomEvent) {
        if let Err(cb::TrySendError::Full(ev)) = self.io.events.try_send(ev) {
            log::warn!("room event queue full, dropping {ev:?}");
        }
    }

    fn apply_changes(&mut self, now: Instant, changes: Vec<ParticipantChange>) {
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
                    self.rpc.participant_left(now, &p.identity);
                    for f in self.reassembler.participant_left(&p.identity) {
                        self.stream_event(f);
                    }
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

    fn stream_event(&self, ev: StreamEvent) {
        match ev {
            StreamEvent::Complete(s) => {
                if let Err(cb::TrySendError::Full(s)) = self.io.streams.try_send(s) {
                    log::warn!(
                        "byte stream queue full, dropping stream {} ({} bytes)",
                        s.id,
                        s.data.len()
                    );
                }
            }
            StreamEvent::Failed(f) => {
                log::warn!(
                    "incoming stream {} from {} failed: {}",
                    f.id,
                    f.sender_identity,
                    f.reason
                );
                self.emit(RoomEvent::StreamFailed(f));
            }
        }
    }

    fn send_packet(&mut self, packet: &proto::DataPacket, reliable: bool) -> Result<(), LiveError> {
        self.peer.send(reliable, packet.encode_to_vec())
    }

    /// Main loop; returns the disconnect reason.
    async fn run_loop(&mut self, connect_deadline: Instant) -> String {
        let mut buf = vec![0u8; 2048];
        loop {
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
            if let Some(t) = self.rpc.poll_timeout() {
                deadline = deadline.min(t);
            }
            if let Some(t) = self.reassembler.poll_timeout() {
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
                r = self.socket.recv_from(&mut buf) => {
                    match r {
                        Ok((n, from)) => {
                            if let Err(e) = self.peer.handle_receive(Instant::now(), from, &buf[..n]) {
                                log::warn!("webrtc input error: {e}");
                            }
                        }
                        Err(e) => log::debug!("udp recv error: {e}"),
                    }
                }
                _ = self.io.wake.notified() => {}
                Some((inv, result)) = self.handler_rx.recv() => {
                    let pkt = rpc::response_packet(&inv.caller_identity, &inv.request_id, result);
                    if let Err(e) = self.send_packet(&pkt, true) {
                        log::warn!("could not send RPC response: {e}");
                    }
                }
                _ = sleep => {}
            }
            let now = Instant::now();
            if let Err(e) = self.peer.handle_timeout(now) {
                return format!("webrtc failure: {e}");
            }
            if let Some(reason) = self.drain_commands() {
                return reason;
            }
            for (reply, result) in self.rpc.handle_timeout(now) {
                let _ = reply.send(result);
            }
            for ev in self.reassembler.handle_timeout(now) {
                self.stream_event(ev);
            }
            if !self.ready_sent && now >= connect_deadline {
                let _ = self.io.ready.send(Err(LiveError::Timeout("WebRTC data channel")));
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

    /// Sends everything str0m wants to send; handles its events. Returns its next timeout.
    async fn drive_peer(&mut self) -> Result<Instant, String> {
        loop {
            match self.peer.poll() {
                PeerOutput::Transmit(dest, data) => {
                    if let Err(e) = self.socket.send_to(&data, dest).await {
                        log::debug!("udp send to {dest} failed: {e}");
                    }
                }
                PeerOutput::Timeout(t) => return Ok(t),
                PeerOutput::Open => {
                    if !self.ready_sent {
                        self.ready_sent = true;
                        self.io.shared.connected.store(true, Ordering::SeqCst);
                        let _ = self.io.ready.send(Ok(self.join.clone()));
                    }
                }
                PeerOutput::Data(d) => self.on_data(&d),
                PeerOutput::Closed(reason) => return Err(reason),
            }
        }
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
                    if let Err(e) = self.peer.add_remote_candidate(&c.candidate) {
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
                self.apply_changes(now, changes);
            }
            Resp::Leave(l) => {
                return Some(format!("server asked to leave (reason {})", l.reason));
            }
            Resp::PongResp(p) => {
                self.rtt_ms = now_ms().saturating_sub(p.last_ping_timestamp);
            }
            Resp::Offer(_) => log::warn!("unexpected offer from server in single-PC mode; ignoring"),
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
                self.emit(RoomEvent::DataReceived {
                    sender_identity: sender,
                    topic: u.topic.unwrap_or_default(),
                    payload: u.payload,
                });
            }
            Some(Value::RpcRequest(req)) => {
                let handlers = &self.handlers;
                let outcome = rpc::handle_request(&sender, req, |m| handlers.contains_key(m));
                if let Err(e) = self.send_packet(&outcome.ack, true) {
                    log::warn!("could not ack RPC: {e}");
                }
                match outcome.action {
                    Err(resp) => {
                        if let Err(e) = self.send_packet(&resp, true) {
                            log::warn!("could not send RPC error: {e}");
                        }
                    }
                    Ok(inv) => {
                        let Some(handler) = self.handlers.get(&inv.method).cloned() else {
                            return;
                        };
                        let tx = self.handler_tx.clone();
                        let wake = self.io.wake.clone();
                        tokio::task::spawn_blocking(move || {
                            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                handler(inv.clone())
                            }))
                            .unwrap_or_else(|_| Err(RpcError::built_in(RpcError::APPLICATION_ERROR)));
                            let _ = tx.send((inv, result));
                            wake.notify_one();
                        });
                    }
                }
            }
            Some(Value::RpcAck(a)) => self.rpc.handle_ack(now, &a.request_id),
            Some(Value::RpcResponse(r)) => {
                if let Some((reply, result)) = self.rpc.handle_response(r) {
                    let _ = reply.send(result);
                }
            }
            Some(Value::StreamHeader(h)) => {
                if let Some(ev) = self.reassembler.handle_header(now, &sender, h) {
                    self.stream_event(ev);
                }
            }
            Some(Value::StreamChunk(c)) => {
                if let Some(ev) = self.reassembler.handle_chunk(now, &sender, c) {
                    self.stream_event(ev);
                }
            }
            Some(Value::StreamTrailer(t)) => {
                if let Some(ev) = self.reassembler.handle_trailer(&sender, t) {
                    self.stream_event(ev);
                }
            }
            _ => log::trace!("ignoring data packet kind"),
        }
    }

    /// Handles queued commands. Returns a reason when the session must end.
    fn drain_commands(&mut self) -> Option<String> {
        while let Ok(cmd) = self.io.commands.try_recv() {
            match cmd {
                Command::PerformRpc { params, reply } => {
                    if !self.ready_sent {
                        let _ = reply.send(Err(RpcError::built_in(RpcError::SEND_FAILED)));
                        continue;
                    }
                    if self.tracker.get(&params.destination).is_none() {
                        let _ = reply.send(Err(RpcError::built_in(RpcError::RECIPIENT_NOT_FOUND)));
                        continue;
                    }
                    self.next_request += 1;
                    let id = new_request_id(self.next_request);
                    match self.rpc.start_call(Instant::now(), reply, id.clone(), params) {
                        Ok(pkt) => {
                            if let Err(e) = self.send_packet(&pkt, true) {
                                if let Some(reply) = self.rpc.cancel(&id) {
                                    let _ = reply.send(Err(RpcError::new(
                                        RpcError::SEND_FAILED,
                                        "Failed to send",
                                        Some(e.to_string()),
                                    )));
                                }
                            }
                        }
                        Err((reply, e)) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Command::Register { method, handler } => {
                    self.handlers.insert(method, handler);
                }
                Command::Unregister { method } => {
                    self.handlers.remove(&method);
                }
                Command::SendBytes {
                    mut desc,
                    data,
                    reply,
                } => {
                    if desc.id.is_empty() {
                        self.next_request += 1;
                        desc.id = new_request_id(self.next_request);
                    }
                    let mut result = Ok(());
                    for pkt in streams::byte_stream_packets(&desc, &data, now_ms()) {
                        if let Err(e) = self.send_packet(&pkt, true) {
                            result = Err(e);
                            break;
                        }
                    }
                    let _ = reply.send(result);
                }
                Command::PublishData {
                    packet,
                    reliable,
                    reply,
                } => {
                    let _ = reply.send(self.send_packet(&packet, reliable));
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
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let _ = self.ws.send(Message::Binary(leave.into())).await;
            let _ = self.ws.close(None).await;
        })
        .await;
        self.peer.close();
        // Let str0m flush its close packets (best effort, non-blocking sends).
        while let PeerOutput::Transmit(dest, data) = self.peer.poll() {
            let _ = self.socket.try_send_to(&data, dest);
        }
        for (reply, result) in self.rpc.fail_all() {
            let _ = reply.send(result);
        }
        // Fail commands that raced with the shutdown.
        while let Ok(cmd) = self.io.commands.try_recv() {
            match cmd {
                Command::PerformRpc { reply, .. } => {
                    let _ = reply.send(Err(RpcError::built_in(RpcError::RECIPIENT_DISCONNECTED)));
                }
                Command::SendBytes { reply, .. } | Command::PublishData { reply, .. } => {
                    let _ = reply.send(Err(LiveError::Disconnected(reason.clone())));
                }
                _ => {}
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

/// Request / stream ids: random 64-bit prefix plus a counter, formatted like a UUID v4.
fn new_request_id(counter: u64) -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..) ^ counter;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a as u16) & 0x0fff,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_look_like_uuids_and_differ() {
        let a = super::new_request_id(1);
        let b = super::new_request_id(2);
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn refusal_excerpts_never_carry_the_token() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let body =
            format!("invalid token: {token}, error: go-jose/go-jose: error in cryptographic primitive\n");
        let excerpt = super::refusal_excerpt(&body, token);
        assert_eq!(
            excerpt,
            "invalid token: <redacted>, error: go-jose/go-jose: error in cryptographic primitive\n"
        );
        // Another JWT (or a truncated one) is scrubbed too, and the excerpt stays short.
        let other = format!("invalid token: {}", "eyJ".repeat(200));
        let excerpt = super::refusal_excerpt(&other, token);
        assert_eq!(excerpt, "invalid token: <redacted>");
        let long = format!("{} é", "x".repeat(255));
        assert!(super::refusal_excerpt(&long, token).len() <= 256);
    }
}
