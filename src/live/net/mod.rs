//! The network paths of a peer connection: the UDP socket and the ICE-TCP connections.
//!
//! # Candidates and fallback order
//!
//! Each peer connection offers one UDP host candidate (the address the route to the server
//! uses) and one TCP *active* host candidate on the same IP (RFC 6544: port 9, it is only a
//! key; the real source port is whatever `connect` picks). The server's UDP candidates and its
//! `tcptype passive` TCP candidates (livekit-server listens on `rtc.tcp_port`, 7881 by
//! default) are paired with them. UDP checks start at once; a TCP connection to a passive
//! candidate is opened, in parallel, on the first packet str0m sends to it, so no time is
//! lost when UDP is blocked. str0m's candidate priorities (host UDP 126 above host TCP 90)
//! make UDP win whenever both work; TCP carries the session only when UDP does not answer.
//! Nothing is asked of the user. When neither works within 1.5 s of the first checks, the
//! TURN servers of the join response are tried too (see [`relay`]). When no path works within the connect timeout, the error
//! ([`crate::live::LiveError::NoPath`]) lists every path tried and why it failed.
//!
//! An HTTP proxy ([`crate::live::proxy`]) carries only TURN over TCP and TLS (and the signal
//! websocket): UDP and ICE over TCP always go direct, since proxies do not carry UDP and rarely
//! allow CONNECT to ports other than 443.
//!
//! Sending and receiving go through [`Paths`]; errors of one TCP connection are logged and
//! that connection dropped (a later check opens a new one), never fatal to the room.

mod network_path;
pub(crate) mod relay;
pub(crate) mod tcp;

pub use network_path::{CurrentPath, NetworkPath};

pub use relay::TurnPlan;
use relay::{RelayEvent, Relays};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use str0m::net::Protocol;
use tcp::{TcpConnection, TcpEvent, TcpFailure};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::live::error::LiveError;

/// The port of a TCP active candidate (RFC 6544 §4.5: active candidates carry port 9).
pub const TCP_ACTIVE_PORT: u16 = 9;
/// How long a failed TCP path waits before a new packet may open it again.
const TCP_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One packet on a path: what str0m sends (`source` is our candidate's base) or what arrived
/// (`destination` is our candidate's address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// UDP or TCP.
    pub proto: Protocol,
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// The packet (for TCP without its RFC 4571 length prefix).
    pub data: Vec<u8>,
}

/// Which transports a connection may use. Both by default; tests switch UDP off to force
/// ICE over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    /// Offer a UDP host candidate.
    pub udp: bool,
    /// Offer a TCP active candidate and connect to the server's passive ones.
    pub tcp: bool,
    /// Bound of one TCP connect.
    pub tcp_connect_timeout: Duration,
    /// Test hook: `turns:` servers are reached on this port instead of the advertised one
    /// (livekit-server advertises 443, what a load balancer in front of it would serve), and
    /// the other TURN servers are left out.
    pub turn_tls_port: Option<u16>,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions {
            udp: true,
            tcp: true,
            tcp_connect_timeout: Duration::from_secs(5),
            turn_tls_port: None,
        }
    }
}

/// Our host candidates' addresses (what the peer connection offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalCandidates {
    /// The UDP socket's address.
    pub udp: Option<SocketAddr>,
    /// The TCP active candidate (`ip:9`).
    pub tcp: Option<SocketAddr>,
}

/// How a path fared while connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOutcome {
    /// Switched off for this connection.
    Disabled,
    /// The server offered no candidate of this transport.
    NoServerCandidate,
    /// Checks were sent; nothing came back (UDP timed out, or a silent TCP connection).
    NoAnswer,
    /// The server answered on it.
    Answered,
    /// The TCP connect was refused.
    Refused,
    /// The TCP connect timed out.
    ConnectTimedOut,
    /// The TCP connection failed otherwise (reason).
    Failed(String),
    /// The TURN server rejected the credentials (STUN error 401, or 400 from pion).
    AuthFailed(u16),
    /// The TLS handshake with the TURN server failed (reason).
    TlsFailed(String),
    /// The TURN server did not answer in time.
    TimedOut,
    /// A relayed address was allocated; nothing came back through it.
    Allocated,
}

impl fmt::Display for PathOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathOutcome::Disabled => f.write_str("disabled"),
            PathOutcome::NoServerCandidate => f.write_str("the server offered no candidate"),
            PathOutcome::NoAnswer => f.write_str("no answer (timed out)"),
            PathOutcome::Answered => f.write_str("answered"),
            PathOutcome::Refused => f.write_str("connection refused"),
            PathOutcome::ConnectTimedOut => f.write_str("connect timed out"),
            PathOutcome::Failed(why) => write!(f, "failed: {why}"),
            PathOutcome::AuthFailed(code) => write!(f, "authentication failed ({code})"),
            PathOutcome::TlsFailed(why) => write!(f, "TLS failed: {why}"),
            PathOutcome::TimedOut => f.write_str("timed out"),
            PathOutcome::Allocated => f.write_str("relay allocated, no answer through it"),
        }
    }
}

/// One path tried while connecting: the transport, the server's address (if it offered one)
/// and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathAttempt {
    /// The transport.
    pub kind: NetworkPath,
    /// The server's address (`ip:port`, or `host:port` for a TURN server not resolved yet).
    pub remote: Option<String>,
    /// What happened.
    pub outcome: PathOutcome,
}

impl fmt::Display for PathAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.remote {
            Some(remote) => write!(f, "{} {remote}: {}", self.kind, self.outcome),
            None => write!(f, "{}: {}", self.kind, self.outcome),
        }
    }
}

/// Formats attempts as `UDP a: why; TCP b: why`.
pub fn describe_attempts(attempts: &[PathAttempt]) -> String {
    let parts: Vec<String> = attempts.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// Packets sent to and received from one server address.
#[derive(Debug, Default, Clone)]
struct PathRecord {
    sent: u64,
    received: u64,
    /// Packets that prove our packets got through: STUN success responses, DTLS. (The
    /// server's own checks arriving prove only the way back.)
    answers: u64,
    tcp_failure: Option<TcpFailure>,
}

impl PathRecord {
    fn record_received(&mut self, data: &[u8]) {
        self.received += 1;
        if is_answer(data) {
            self.answers += 1;
        }
    }
}

/// Whether a received packet answers something we sent: a STUN binding success response
/// (type 0x0101), or session data (DTLS only flows once ICE succeeded).
fn is_answer(data: &[u8]) -> bool {
    matches!(data, [0x01, 0x01, ..]) || carries_session_data(data)
}

/// Whether a packet is session data (DTLS, SCTP inside it) rather than an ICE check: STUN
/// messages start with a byte of 0 to 3 (RFC 7983), everything else is data. Data arrives on
/// the pair ICE nominated, so its path is the connection's [`NetworkPath`].
pub fn carries_session_data(data: &[u8]) -> bool {
    data.first().is_some_and(|first| *first > 3)
}

enum TcpSlot {
    Open { id: u64, conn: TcpConnection },
    Failed { retry_at: Instant },
}

/// The UDP socket and the ICE-TCP connections of one peer connection.
pub struct Paths {
    options: PathOptions,
    udp: Option<UdpSocket>,
    locals: LocalCandidates,
    /// Keyed by (server address, ICE generation): livekit-server binds a TCP connection to the
    /// ufrag of its first STUN request, so an ICE restart needs new connections.
    tcp: HashMap<(SocketAddr, u32), TcpSlot>,
    tcp_ids: HashMap<u64, (SocketAddr, u32)>,
    next_tcp_id: u64,
    newest_generation: u32,
    tcp_events_tx: mpsc::UnboundedSender<TcpEvent>,
    tcp_events: mpsc::UnboundedReceiver<TcpEvent>,
    udp_paths: BTreeMap<SocketAddr, PathRecord>,
    tcp_paths: BTreeMap<SocketAddr, PathRecord>,
    relays: Relays,
    buf: Vec<u8>,
}

/// What arrived on the paths.
#[derive(Debug)]
pub enum PathEvent {
    /// A packet, for the peer, and the path it came on.
    Packet {
        /// The packet.
        packet: Datagram,
        /// Its path.
        path: NetworkPath,
    },
    /// A TURN allocation succeeded: a relayed candidate for the peer.
    Relayed {
        /// The relayed address (the candidate's address and base).
        relayed: SocketAddr,
        /// Our end of the connection to the TURN server.
        local: SocketAddr,
    },
}

impl fmt::Debug for Paths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paths")
            .field("locals", &self.locals)
            .field("tcp_connections", &self.tcp.len())
            .finish()
    }
}

impl Paths {
    /// Binds the UDP socket (if enabled) on the local address whose route reaches `server`,
    /// and prepares the TCP candidate on the same IP. Synchronous (no DNS): a full reconnect
    /// opens new paths inside the engine's loop. Needs a tokio runtime context.
    pub fn towards(server: SocketAddr, options: PathOptions) -> Result<Paths, LiveError> {
        Self::on_ip(local_ip_towards(server)?, options)
    }

    /// Like [`Paths::towards`], on a given local IP.
    pub fn on_ip(ip: IpAddr, options: PathOptions) -> Result<Paths, LiveError> {
        let udp = if options.udp {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
            socket.set_nonblocking(true)?;
            Some(UdpSocket::from_std(socket)?)
        } else {
            None
        };
        let locals = LocalCandidates {
            udp: udp.as_ref().map(UdpSocket::local_addr).transpose()?,
            tcp: options.tcp.then(|| SocketAddr::new(ip, TCP_ACTIVE_PORT)),
        };
        let (tcp_events_tx, tcp_events) = mpsc::unbounded_channel();
        Ok(Paths {
            options,
            udp,
            locals,
            tcp: HashMap::new(),
            tcp_ids: HashMap::new(),
            next_tcp_id: 0,
            newest_generation: 0,
            tcp_events_tx,
            tcp_events,
            udp_paths: BTreeMap::new(),
            tcp_paths: BTreeMap::new(),
            relays: Relays::new(),
            // Datagrams are MTU-sized; a larger buffer only guards against truncation.
            buf: vec![0u8; 65_536],
        })
    }

    /// The candidates to offer.
    pub fn local_candidates(&self) -> LocalCandidates {
        self.locals
    }

    /// The TURN servers to fall back on (join response); `force` (or no host path at all)
    /// starts them at once.
    pub fn plan_turn(&mut self, mut plan: TurnPlan, now: Instant) {
        if let Some(port) = self.options.turn_tls_port {
            plan.servers
                .retain(|s| s.url.transport == crate::live::turn::TurnTransport::Tls);
            plan.servers = plan.servers.into_iter().map(|s| s.with_port(port)).collect();
        }
        // Without host paths there is nothing to wait for.
        plan.force |= !self.options.udp && !self.options.tcp;
        self.relays.plan(plan, now);
    }

    /// New TURN servers (a resume's answer): without a working relay, they replace the old
    /// ones and TURN may start again once the peer checks anew ([`Paths::arm_turn`]).
    pub fn replan_turn(&mut self, mut plan: TurnPlan, now: Instant) {
        if self.relays.has_relay() {
            return;
        }
        self.relays = Relays::new();
        plan.force = false;
        self.plan_turn(plan, now);
    }

    /// The peer started its connectivity checks (its answer arrived): TURN starts 1.5 s
    /// later unless a pair works by then.
    pub fn arm_turn(&mut self, now: Instant) {
        self.relays.arm(now);
    }

    /// Starts the TURN allocations when due (not when `ice_connected`).
    pub fn poll_turn(&mut self, now: Instant, ice_connected: bool) {
        self.relays.poll(now, ice_connected);
    }

    /// When [`Paths::poll_turn`] is due.
    pub fn turn_timeout(&self) -> Option<Instant> {
        self.relays.timeout()
    }

    /// The relayed candidates allocated so far: (relayed address, local address).
    pub fn relayed_candidates(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.relays.candidates()
    }

    /// Sends what str0m produced, by its transport: UDP from the socket, TCP on the
    /// connection to the destination for this ICE generation (opened on first use).
    pub async fn send(&mut self, packet: &Datagram, ice_generation: u32) {
        if self.relays.route(packet) {
            return;
        }
        match packet.proto {
            Protocol::Udp => {
                let Some(socket) = &self.udp else {
                    return;
                };
                self.udp_paths.entry(packet.destination).or_default().sent += 1;
                if let Err(e) = socket.send_to(&packet.data, packet.destination).await {
                    log::debug!("udp send to {} failed: {e}", packet.destination);
                }
            }
            Protocol::Tcp => self.send_tcp(packet, ice_generation),
            other => log::debug!("no path for {other:?} packets"),
        }
    }

    /// Best-effort, non-blocking [`Paths::send`] (for the last packets at shutdown).
    pub fn try_send(&mut self, packet: &Datagram, ice_generation: u32) {
        if self.relays.route(packet) {
            return;
        }
        match packet.proto {
            Protocol::Udp => {
                if let Some(socket) = &self.udp {
                    let _ = socket.try_send_to(&packet.data, packet.destination);
                }
            }
            Protocol::Tcp => self.send_tcp(packet, ice_generation),
            _ => {}
        }
    }

    fn send_tcp(&mut self, packet: &Datagram, ice_generation: u32) {
        if !self.options.tcp {
            return;
        }
        if ice_generation > self.newest_generation {
            self.newest_generation = ice_generation;
            // Keep the previous generation: data keeps flowing on it during a restart.
            let stale: Vec<_> = self
                .tcp
                .keys()
                .filter(|(_, g)| g.saturating_add(1) < ice_generation)
                .copied()
                .collect();
            for key in stale {
                self.remove_tcp(key);
            }
        }
        let key = self.tcp_key_for(packet, ice_generation);
        self.tcp_paths.entry(key.0).or_default().sent += 1;
        let now = Instant::now();
        let reopen = match self.tcp.get(&key) {
            None => true,
            Some(TcpSlot::Failed { retry_at }) => now >= *retry_at,
            Some(TcpSlot::Open { .. }) => false,
        };
        if reopen {
            self.open_tcp(key);
        }
        if let Some(TcpSlot::Open { conn, .. }) = self.tcp.get(&key) {
            if !conn.send(packet.data.clone()) {
                log::trace!("ICE-TCP queue to {} full; packet dropped", key.0);
            }
        }
    }

    /// STUN goes on the connection of its own ICE generation; anything else (DTLS, SCTP) on
    /// the newest connection to that address, which is the one ICE validated.
    fn tcp_key_for(&self, packet: &Datagram, ice_generation: u32) -> (SocketAddr, u32) {
        let is_stun = packet.data.first().is_some_and(|b| *b < 2);
        if !is_stun {
            let newest = self
                .tcp
                .iter()
                .filter(|((addr, _), slot)| {
                    *addr == packet.destination && matches!(slot, TcpSlot::Open { .. })
                })
                .map(|((_, g), _)| *g)
                .max();
            if let Some(g) = newest {
                return (packet.destination, g);
            }
        }
        (packet.destination, ice_generation)
    }

    fn open_tcp(&mut self, key: (SocketAddr, u32)) {
        let id = self.next_tcp_id;
        self.next_tcp_id += 1;
        log::debug!("ICE-TCP: connecting to {} (generation {})", key.0, key.1);
        let conn = tcp::spawn_connection(
            id,
            key.0,
            self.options.tcp_connect_timeout,
            self.tcp_events_tx.clone(),
        );
        if let Some(TcpSlot::Open { id: old, .. }) = self.tcp.insert(key, TcpSlot::Open { id, conn }) {
            self.tcp_ids.remove(&old);
        }
        self.tcp_ids.insert(id, key);
    }

    fn remove_tcp(&mut self, key: (SocketAddr, u32)) {
        if let Some(TcpSlot::Open { id, .. }) = self.tcp.remove(&key) {
            self.tcp_ids.remove(&id);
        }
    }

    /// The next packet from any path, ignoring new relayed candidates (tests).
    #[cfg(test)]
    pub async fn recv(&mut self) -> Datagram {
        loop {
            if let PathEvent::Packet { packet, .. } = self.next_event().await {
                return packet;
            }
        }
    }

    /// The next packet from any path, or a new relayed candidate. Cancel-safe (use it in
    /// `select!`).
    pub async fn next_event(&mut self) -> PathEvent {
        loop {
            tokio::select! {
                received = recv_udp(self.udp.as_ref(), &mut self.buf) => match received {
                    Ok((n, source)) => {
                        self.udp_paths
                            .entry(source)
                            .or_default()
                            .record_received(&self.buf[..n]);
                        if let Some(destination) = self.locals.udp {
                            let packet = Datagram {
                                proto: Protocol::Udp,
                                source,
                                destination,
                                data: self.buf[..n].to_vec(),
                            };
                            return PathEvent::Packet { packet, path: NetworkPath::Udp };
                        }
                    }
                    Err(e) => log::debug!("udp recv error: {e}"),
                },
                Some(event) = self.tcp_events.recv() => {
                    if let Some(packet) = self.on_tcp_event(event) {
                        return PathEvent::Packet { packet, path: NetworkPath::Tcp };
                    }
                }
                event = self.relays.recv() => {
                    return match event {
                        RelayEvent::Packet { packet, path } => PathEvent::Packet { packet, path },
                        RelayEvent::Allocated { relayed, local } => PathEvent::Relayed { relayed, local },
                    };
                }
            }
        }
    }

    fn on_tcp_event(&mut self, event: TcpEvent) -> Option<Datagram> {
        match event {
            TcpEvent::Connected { id } => {
                if let Some((remote, generation)) = self.tcp_ids.get(&id) {
                    log::debug!("ICE-TCP: connected to {remote} (generation {generation})");
                }
                None
            }
            TcpEvent::Packet { id, data } => {
                let (source, _) = *self.tcp_ids.get(&id)?;
                self.tcp_paths.entry(source).or_default().record_received(&data);
                Some(Datagram {
                    proto: Protocol::Tcp,
                    source,
                    destination: self.locals.tcp?,
                    data,
                })
            }
            TcpEvent::Closed { id, failure } => {
                let key = self.tcp_ids.remove(&id)?;
                log::debug!("ICE-TCP connection to {} dropped: {failure}", key.0);
                self.tcp_paths.entry(key.0).or_default().tcp_failure = Some(failure);
                self.tcp.insert(
                    key,
                    TcpSlot::Failed {
                        retry_at: Instant::now() + TCP_RETRY_AFTER,
                    },
                );
                None
            }
        }
    }

    /// Every path tried so far and how it fared, UDP first, TURN last (for the connect
    /// error).
    pub fn attempts(&self) -> Vec<PathAttempt> {
        let mut attempts = Vec::new();
        let kinds = [
            (NetworkPath::Udp, self.options.udp, &self.udp_paths),
            (NetworkPath::Tcp, self.options.tcp, &self.tcp_paths),
        ];
        for (kind, enabled, records) in kinds {
            if !enabled {
                attempts.push(PathAttempt {
                    kind,
                    remote: None,
                    outcome: PathOutcome::Disabled,
                });
                continue;
            }
            if records.is_empty() {
                attempts.push(PathAttempt {
                    kind,
                    remote: None,
                    outcome: PathOutcome::NoServerCandidate,
                });
            }
            for (remote, record) in records {
                attempts.push(PathAttempt {
                    kind,
                    remote: Some(remote.to_string()),
                    outcome: outcome_of(record),
                });
            }
        }
        attempts.extend(self.relays.attempts());
        attempts
    }

    /// Packets (sent, received) per transport, for tests and diagnostics.
    #[cfg(test)]
    pub fn counters(&self, kind: NetworkPath) -> (u64, u64) {
        let records = match kind {
            NetworkPath::Udp => &self.udp_paths,
            _ => &self.tcp_paths,
        };
        records
            .values()
            .fold((0, 0), |(s, r), p| (s + p.sent, r + p.received))
    }
}

fn outcome_of(record: &PathRecord) -> PathOutcome {
    if record.answers > 0 {
        return PathOutcome::Answered;
    }
    match &record.tcp_failure {
        Some(TcpFailure::Refused) => PathOutcome::Refused,
        Some(TcpFailure::TimedOut) => PathOutcome::ConnectTimedOut,
        Some(TcpFailure::Failed(why)) => PathOutcome::Failed(why.clone()),
        None => PathOutcome::NoAnswer,
    }
}

async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The local IP whose route reaches `server` (a connected UDP probe, nothing sent).
fn local_ip_towards(server: SocketAddr) -> Result<IpAddr, LiveError> {
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn loopback() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn stun(tag: u8) -> Vec<u8> {
        vec![0x00, 0x01, 0, 0, tag]
    }

    async fn recv_within(paths: &mut Paths) -> Datagram {
        tokio::time::timeout(Duration::from_secs(10), paths.recv())
            .await
            .expect("a packet within 10 s")
    }

    #[test]
    fn udp_goes_to_the_socket_and_comes_back_with_its_addresses() {
        runtime().block_on(async {
            let mut paths = Paths::on_ip(loopback(), PathOptions::default()).unwrap();
            let local = paths.local_candidates();
            assert_eq!(local.tcp, Some(SocketAddr::new(loopback(), TCP_ACTIVE_PORT)));
            let udp_local = local.udp.unwrap();
            let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let server_addr = server.local_addr().unwrap();
            let out = Datagram {
                proto: Protocol::Udp,
                source: udp_local,
                destination: server_addr,
                data: stun(1),
            };
            paths.send(&out, 0).await;
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&stun(1)[..], udp_local));
            // A check from the server (binding request) proves only the way back.
            server.send_to(&stun(2), udp_local).await.unwrap();
            recv_within(&mut paths).await;
            assert_eq!(paths.attempts()[0].outcome, PathOutcome::NoAnswer);
            server.send_to(&stun(2), udp_local).await.unwrap();
            let back = recv_within(&mut paths).await;
            assert_eq!(
                back,
                Datagram {
                    proto: Protocol::Udp,
                    source: server_addr,
                    destination: udp_local,
                    data: stun(2)
                }
            );
            assert_eq!(paths.counters(NetworkPath::Udp), (1, 2));
            server.send_to(&[0x01, 0x01, 0, 0], udp_local).await.unwrap();
            recv_within(&mut paths).await;
            assert_eq!(paths.attempts()[0].outcome, PathOutcome::Answered);
        });
    }

    #[test]
    fn tcp_opens_one_connection_per_generation_and_frames_both_ways() {
        runtime().block_on(async {
            let options = PathOptions {
                udp: false,
                ..PathOptions::default()
            };
            let mut paths = Paths::on_ip(loopback(), options).unwrap();
            let tcp_local = paths.local_candidates().tcp.unwrap();
            assert_eq!(paths.local_candidates().udp, None);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server_addr = listener.local_addr().unwrap();
            let to_server = |data: Vec<u8>| Datagram {
                proto: Protocol::Tcp,
                source: tcp_local,
                destination: server_addr,
                data,
            };
            paths.send(&to_server(stun(1)), 0).await;
            paths.send(&to_server(vec![22, 7]), 0).await;
            let (mut conn0, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 11];
            conn0.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [0, 5, 0, 1, 0, 0, 1, 0, 2, 22, 7]);
            conn0.write_all(&[0, 2, 22, 9]).await.unwrap();
            let back = recv_within(&mut paths).await;
            assert_eq!(
                (back.proto, back.source, back.destination, back.data),
                (Protocol::Tcp, server_addr, tcp_local, vec![22, 9])
            );

            // An ICE restart: STUN of the new generation opens a second connection, DTLS
            // keeps using the newest open one.
            paths.send(&to_server(stun(3)), 1).await;
            let (mut conn1, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 7];
            conn1.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [0, 5, 0, 1, 0, 0, 3]);
            paths.send(&to_server(vec![23, 1]), 1).await;
            let mut got = [0u8; 4];
            conn1.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [0, 2, 23, 1]);
            assert_eq!(paths.counters(NetworkPath::Tcp), (4, 1));
        });
    }

    #[test]
    fn a_refused_tcp_path_is_reported_and_never_fatal() {
        runtime().block_on(async {
            let mut paths = Paths::on_ip(loopback(), PathOptions::default()).unwrap();
            let closed = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            let silent_udp = {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.local_addr().unwrap()
            };
            let local = paths.local_candidates();
            paths
                .send(
                    &Datagram {
                        proto: Protocol::Tcp,
                        source: local.tcp.unwrap(),
                        destination: closed,
                        data: stun(1),
                    },
                    0,
                )
                .await;
            paths
                .send(
                    &Datagram {
                        proto: Protocol::Udp,
                        source: local.udp.unwrap(),
                        destination: silent_udp,
                        data: stun(1),
                    },
                    0,
                )
                .await;
            // The failure arrives as an event; recv keeps waiting for packets.
            let waited = tokio::time::timeout(Duration::from_millis(500), paths.recv()).await;
            assert!(waited.is_err(), "no packet arrives");
            let attempts = paths.attempts();
            assert_eq!(
                attempts,
                [
                    PathAttempt {
                        kind: NetworkPath::Udp,
                        remote: Some(silent_udp.to_string()),
                        outcome: PathOutcome::NoAnswer
                    },
                    PathAttempt {
                        kind: NetworkPath::Tcp,
                        remote: Some(closed.to_string()),
                        outcome: PathOutcome::Refused
                    },
                ]
            );
            assert_eq!(
                describe_attempts(&attempts),
                format!("UDP {silent_udp}: no answer (timed out); TCP {closed}: connection refused")
            );
        });
    }

    async fn next_packet_and_path(paths: &mut Paths) -> (Vec<u8>, NetworkPath) {
        let event = tokio::time::timeout(Duration::from_secs(10), paths.next_event()).await;
        match event.expect("a packet within 10 s") {
            PathEvent::Packet { packet, path } => (packet.data, path),
            other => panic!("a packet expected, got {other:?}"),
        }
    }

    #[test]
    fn packets_come_with_their_path_and_only_non_stun_ones_are_session_data() {
        runtime().block_on(async {
            let mut paths = Paths::on_ip(loopback(), PathOptions::default()).unwrap();
            let local = paths.local_candidates();
            let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            server.send_to(&[22, 254, 253], local.udp.unwrap()).await.unwrap();
            assert_eq!(
                next_packet_and_path(&mut paths).await,
                (vec![22, 254, 253], NetworkPath::Udp)
            );

            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let to_server = Datagram {
                proto: Protocol::Tcp,
                source: local.tcp.unwrap(),
                destination: listener.local_addr().unwrap(),
                data: stun(1),
            };
            paths.send(&to_server, 0).await;
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(&[0, 2, 23, 3]).await.unwrap();
            assert_eq!(
                next_packet_and_path(&mut paths).await,
                (vec![23, 3], NetworkPath::Tcp)
            );
        });
        assert!(carries_session_data(&[22, 254, 253]), "DTLS");
        assert!(!carries_session_data(&stun(1)), "a STUN request");
        assert!(!carries_session_data(&[0x01, 0x01, 0, 0]), "a STUN response");
        assert!(!carries_session_data(&[]));
    }

    #[test]
    fn disabled_and_unoffered_paths_are_named() {
        runtime().block_on(async {
            let options = PathOptions {
                udp: false,
                ..PathOptions::default()
            };
            let paths = Paths::on_ip(loopback(), options).unwrap();
            assert_eq!(
                describe_attempts(&paths.attempts()),
                "UDP: disabled; TCP: the server offered no candidate"
            );
        });
    }
}
