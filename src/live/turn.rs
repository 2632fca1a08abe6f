//! TURN relay client (issue 10; design Part 1 F): the `ice_servers` LiveKit sends in its join
//! and reconnect responses, parsed into typed [`TurnServer`]s, and a [`TurnAllocation`] that
//! relays datagrams to and from peers through one of them, over UDP, TCP or TLS.
//!
//! The protocol is `turn-client-proto`'s sans-IO client, wrapped in [`TurnCore`] (no sockets,
//! its own clock base); [`TurnAllocation`] is the tokio task that owns the socket and drives
//! the core. TLS is ours (`tokio-rustls`, the same rustls config as the signal websocket),
//! with `turn-client-proto`'s TCP client inside the decrypted stream: the TLS error then
//! reaches the connect report as it is.
//!
//! Ports: the SDK connects to the port the URL names. LiveKit's embedded TURN always
//! advertises `turns:<domain>:443` whatever its `turn.tls_port` is (it assumes a load balancer
//! or `external_tls` in front); a deployment that serves TLS on another port must forward 443.
//!
//! How the ICE layer uses an allocation: add `Candidate::relayed(relayed_addr, local_addr,
//! "udp")` to the peer; route every str0m `Transmit` whose `source == relayed_addr` to
//! [`TurnAllocation::send_to`]; hand every [`PeerDatagram`] from [`TurnAllocation::recv`] to
//! str0m as `Receive::new(Udp, datagram.peer, relayed_addr, &datagram.data)`; call
//! [`TurnAllocation::create_permission`] for each remote candidate IP (before the checks go
//! out: LiveKit is ice-lite and only answers) and [`TurnAllocation::bind_channel`] for the
//! nominated remote.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::live::error::LiveError;
use crate::live::proxy::LiveProxy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use turn_client_proto::api::{Transmit, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::client::TurnClient;
use turn_client_proto::prelude::*;
use turn_client_proto::tcp::TurnClientTcp;
use turn_client_proto::types::stun::attribute::ErrorCode;
use turn_client_proto::types::stun::message::{IntegrityAlgorithm, Message, MessageClass, MessageHeader};
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

/// The port of a `turn:` URL that names none (RFC 7065).
pub const DEFAULT_TURN_PORT: u16 = 3478;
/// The port of a `turns:` URL that names none (RFC 7065).
pub const DEFAULT_TURNS_PORT: u16 = 5349;
/// How long [`TurnAllocation::allocate`] waits for the server by default (connect, TLS,
/// authentication and allocation together).
pub const DEFAULT_ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams waiting for their peer's permission, per allocation; more are dropped (ICE
/// retransmits its checks).
const MAX_WAITING_SENDS: usize = 64;
/// Received datagrams the ICE layer has not taken yet; more are dropped, like a full socket.
const INBOUND_CAPACITY: usize = 256;
/// Largest TURN message or ChannelData frame we read at once.
const READ_BUFFER: usize = 64 * 1024;

// ----------------------------------------------------------------------------------------------
// ICE server URLs
// ----------------------------------------------------------------------------------------------

/// How the client reaches a TURN server (the relayed side is always UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    /// `turn:…?transport=udp` (the default of `turn:`).
    Udp,
    /// `turn:…?transport=tcp`.
    Tcp,
    /// `turns:…` (TLS over TCP).
    Tls,
}

impl fmt::Display for TurnTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TurnTransport::Udp => "udp",
            TurnTransport::Tcp => "tcp",
            TurnTransport::Tls => "tls",
        })
    }
}

/// Where a TURN server is, as one ICE server URL names it (no credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnUrl {
    /// How to reach it.
    pub transport: TurnTransport,
    /// Host name or IP literal (an IPv6 literal without its brackets); also the TLS name.
    pub host: String,
    /// The URL's port, or the scheme's default.
    pub port: u16,
}

/// Why an ICE server URL is not a usable TURN server. Carries no part of the input: a
/// malformed URL could hold anything, credentials included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IceUrlError {
    /// A `stun:`/`stuns:` URL: no relay (LiveKit's own candidates already cover STUN).
    #[error("a STUN server, not a TURN server")]
    NotTurn,
    /// Neither `turn:` nor `turns:`.
    #[error("unknown ICE server URL scheme")]
    UnknownScheme,
    /// Nothing where the host goes.
    #[error("no host in the TURN URL")]
    MissingHost,
    /// A host with characters no host name or IP literal has (`@`, `/`, spaces, …).
    #[error("malformed host in the TURN URL")]
    BadHost,
    /// A port that is not a number in 1..=65535.
    #[error("malformed port in the TURN URL")]
    BadPort,
    /// `transport=` other than `udp`/`tcp`, or `turns:` with `transport=udp` (DTLS).
    #[error("unsupported TURN transport")]
    UnsupportedTransport,
    /// A query other than `transport=…`.
    #[error("unknown parameter in the TURN URL")]
    UnknownParameter,
}

/// Parses one ICE server URL: `turn:host[:port][?transport=udp|tcp]` or
/// `turns:host[:port][?transport=tcp]` (RFC 7065; IPv6 literals in brackets). Never panics.
pub fn parse_turn_url(url: &str) -> Result<TurnUrl, IceUrlError> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or(IceUrlError::UnknownScheme)?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "turn" => false,
        "turns" => true,
        "stun" | "stuns" => return Err(IceUrlError::NotTurn),
        _ => return Err(IceUrlError::UnknownScheme),
    };
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    let (host, port) = split_host_port(authority)?;
    let transport = match (secure, query_transport(query)?) {
        (false, None | Some(QueryTransport::Udp)) => TurnTransport::Udp,
        (false, Some(QueryTransport::Tcp)) => TurnTransport::Tcp,
        (true, None | Some(QueryTransport::Tcp)) => TurnTransport::Tls,
        (true, Some(QueryTransport::Udp)) => return Err(IceUrlError::UnsupportedTransport),
    };
    let default_port = if secure {
        DEFAULT_TURNS_PORT
    } else {
        DEFAULT_TURN_PORT
    };
    Ok(TurnUrl {
        transport,
        host,
        port: port.unwrap_or(default_port),
    })
}

enum QueryTransport {
    Udp,
    Tcp,
}

fn query_transport(query: Option<&str>) -> Result<Option<QueryTransport>, IceUrlError> {
    let Some(query) = query else { return Ok(None) };
    let mut transport = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(IceUrlError::UnknownParameter)?;
        if !key.eq_ignore_ascii_case("transport") {
            return Err(IceUrlError::UnknownParameter);
        }
        transport = Some(match value.to_ascii_lowercase().as_str() {
            "udp" => QueryTransport::Udp,
            "tcp" => QueryTransport::Tcp,
            _ => return Err(IceUrlError::UnsupportedTransport),
        });
    }
    Ok(transport)
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), IceUrlError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (literal, after) = bracketed.split_once(']').ok_or(IceUrlError::BadHost)?;
        literal
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| IceUrlError::BadHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(IceUrlError::BadHost)?),
        };
        (literal, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(IceUrlError::MissingHost);
    }
    let host_chars_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_chars_ok {
        return Err(IceUrlError::BadHost);
    }
    let port = port.map(parse_port).transpose()?;
    Ok((host.to_string(), port))
}

fn parse_port(text: &str) -> Result<u16, IceUrlError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IceUrlError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(IceUrlError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// One TURN server with the credentials to use it. `Debug` shows where, never the
/// credentials (LiveKit's username embeds the API key).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// Where the server is and how to reach it.
    pub url: TurnUrl,
    username: String,
    credential: String,
}

impl TurnServer {
    /// A server at `url` with these long-term credentials.
    pub fn new(url: TurnUrl, username: impl Into<String>, credential: impl Into<String>) -> TurnServer {
        TurnServer {
            url,
            username: username.into(),
            credential: credential.into(),
        }
    }

    /// The same server and credentials at another port (a test's stand-in for the load
    /// balancer that LiveKit's `turns:…:443` assumes).
    pub fn with_port(mut self, port: u16) -> TurnServer {
        self.url.port = port;
        self
    }

    /// The same server with another credential (tests of the authentication failure).
    pub fn with_credential(mut self, credential: impl Into<String>) -> TurnServer {
        self.credential = credential.into();
        self
    }
}

impl fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnServer")
            .field("url", &self.url)
            .field("username", &"<redacted>")
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// The TURN servers among LiveKit's `ice_servers` (join or reconnect response), in the order
/// given, each URL with its entry's credentials; and why each other URL was skipped.
pub fn turn_servers(ice_servers: &[livekit_protocol::IceServer]) -> (Vec<TurnServer>, Vec<IceUrlError>) {
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for entry in ice_servers {
        for url in &entry.urls {
            match parse_turn_url(url) {
                Ok(url) => servers.push(TurnServer::new(url, &entry.username, &entry.credential)),
                Err(error) => skipped.push(error),
            }
        }
    }
    (servers, skipped)
}

// ----------------------------------------------------------------------------------------------
// Failures
// ----------------------------------------------------------------------------------------------

/// Why a TURN allocation could not be made or was lost. Names the server's address, never
/// the credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// The server's host name did not resolve.
    #[error("TURN server {host}: cannot resolve ({reason})")]
    Resolve {
        /// The URL's host.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// The TCP connection was refused.
    #[error("TURN server {server} ({transport}): connection refused")]
    Refused {
        /// The server's address.
        server: SocketAddr,
        /// The transport tried.
        transport: TurnTransport,
    },
    /// The socket could not be opened or broke (other than refused).
    #[error("TURN server {server} ({transport}): {reason}")]
    Io {
        /// The server's address.
        server: SocketAddr,
        /// The transport tried.
        transport: TurnTransport,
        /// The I/O error.
        reason: String,
    },
    /// The TLS handshake failed (certificate, name, protocol).
    #[error("TURN server {server}: TLS failed: {reason}")]
    TlsFailed {
        /// The server's address.
        server: SocketAddr,
        /// rustls's message.
        reason: String,
    },
    /// The server rejected the credentials: 401 Unauthorized to the authenticated request
    /// (pion-based servers such as LiveKit's answer 400 Bad Request instead; both land here).
    #[error("TURN server {server} ({transport}): authentication failed ({code})")]
    AuthFailed {
        /// The server's address.
        server: SocketAddr,
        /// The transport tried.
        transport: TurnTransport,
        /// The STUN error code (401, or 400 from pion).
        code: u16,
    },
    /// The server refused the allocation with another STUN error code (e.g. 486 quota).
    #[error("TURN server {server} ({transport}): allocation refused (error {code})")]
    Rejected {
        /// The server's address.
        server: SocketAddr,
        /// The transport tried.
        transport: TurnTransport,
        /// The STUN error code.
        code: u16,
    },
    /// No answer within the allocate timeout.
    #[error("TURN server {server} ({transport}): timed out after {after:?}")]
    TimedOut {
        /// The server's address.
        server: SocketAddr,
        /// The transport tried.
        transport: TurnTransport,
        /// How long we waited.
        after: Duration,
    },
    /// The HTTP proxy could not be reached or refused the CONNECT tunnel to the server.
    #[error("TURN server {server} ({transport}) via proxy {proxy}: {reason}")]
    Proxy {
        /// The server's address.
        server: SocketAddr,
        /// The transport tried.
        transport: TurnTransport,
        /// The proxy's `host:port` (never its credentials).
        proxy: String,
        /// What the proxy answered or why it could not be reached.
        reason: String,
    },
    /// The allocation ended: its refresh failed, the server closed the connection, or it was
    /// closed here.
    #[error("TURN server {server} ({transport}): allocation closed")]
    Closed {
        /// The server's address.
        server: SocketAddr,
        /// The transport used.
        transport: TurnTransport,
    },
}

/// How the sans-IO core failed (the driver adds the address and transport).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreFailure {
    /// Credentials rejected (STUN error code).
    AuthFailed(u16),
    /// Allocation refused with another STUN error code.
    Rejected(u16),
    /// The server did not answer.
    TimedOut,
    /// The allocation ended.
    Closed,
}

impl CoreFailure {
    fn into_error(self, server: SocketAddr, transport: TurnTransport, waited: Duration) -> TurnError {
        match self {
            CoreFailure::AuthFailed(code) => TurnError::AuthFailed {
                server,
                transport,
                code,
            },
            CoreFailure::Rejected(code) => TurnError::Rejected {
                server,
                transport,
                code,
            },
            CoreFailure::TimedOut => TurnError::TimedOut {
                server,
                transport,
                after: waited,
            },
            CoreFailure::Closed => TurnError::Closed { server, transport },
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Sans-IO core
// ----------------------------------------------------------------------------------------------

/// Watches the server's answers to Allocate for the error codes `turn-client-proto` does not
/// report (it only says "failed", and waits out its retransmissions on some): the first 401 is
/// the usual challenge; a 401 or 400 after it means the credentials were refused.
#[derive(Default)]
struct AllocateAnswers {
    stream: Vec<u8>,
    challenged: bool,
    last_error: Option<u16>,
    auth_failed: Option<u16>,
}

impl AllocateAnswers {
    /// A datagram (UDP) or a piece of the byte stream (TCP/TLS) from the server.
    fn feed(&mut self, bytes: &[u8], stream: bool) {
        if !stream {
            self.message(bytes);
            return;
        }
        self.stream.extend_from_slice(bytes);
        while let Some(len) = frame_len(&self.stream) {
            if len > self.stream.len() {
                break;
            }
            let frame: Vec<u8> = self.stream.drain(..len).collect();
            self.message(&frame);
        }
    }

    fn message(&mut self, bytes: &[u8]) {
        let Ok(message) = Message::from_bytes(bytes) else {
            return;
        };
        if message.method() != turn_client_proto::types::message::ALLOCATE
            || message.class() != MessageClass::Error
        {
            return;
        }
        let Ok(error) = message.attribute::<ErrorCode>() else {
            return;
        };
        let code = error.code();
        self.last_error = Some(code);
        match code {
            ErrorCode::UNAUTHORIZED if !self.challenged => self.challenged = true,
            ErrorCode::UNAUTHORIZED | ErrorCode::BAD_REQUEST if self.challenged => {
                self.auth_failed = Some(code)
            }
            _ => {}
        }
    }
}

/// Length of the STUN message or (padded) ChannelData frame at the start of a TCP stream, once
/// its 4-byte header is there.
fn frame_len(stream: &[u8]) -> Option<usize> {
    let header = stream.get(..4)?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[0] & 0xC0 == 0 {
        Some(MessageHeader::LENGTH + len)
    } else {
        Some(4 + len.div_ceil(4) * 4)
    }
}

/// What the core has for its driver.
#[derive(Debug, PartialEq, Eq)]
pub enum CoreEvent {
    /// The allocation exists: the relayed (public) address peers reach us at.
    Allocated(SocketAddr),
    /// A permission for this peer IP was installed (`true`) or refused (`false`).
    Permission(IpAddr, bool),
    /// A datagram from a peer.
    PeerData(PeerDatagram),
    /// The allocation failed or ended; nothing more will happen.
    Failed(CoreFailure),
}

/// One datagram relayed from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDatagram {
    /// The peer's address (as the TURN server saw it).
    pub peer: SocketAddr,
    /// The payload.
    pub data: Vec<u8>,
}

/// The sans-IO TURN client of one allocation: `turn-client-proto` plus the allocate deadline,
/// the error-code watch, and sends held until their peer's permission exists. Time is
/// `std::time::Instant`, converted against the core's own base.
pub struct TurnCore {
    client: TurnClient,
    stream: bool,
    local: SocketAddr,
    server: SocketAddr,
    base: Instant,
    allocate_deadline: Option<Instant>,
    answers: AllocateAnswers,
    waiting_sends: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Bytes of held sends released by their permission, written before anything else.
    released: VecDeque<Vec<u8>>,
    events: VecDeque<CoreEvent>,
    failed: bool,
}

impl TurnCore {
    /// Starts allocating (a relayed UDP address) from `local` through `server`; `stream` for
    /// TCP and TLS (the core then sees the plaintext byte stream). Fails with
    /// [`CoreFailure::TimedOut`] unless allocated by `now + timeout`.
    pub fn new(
        stream: bool,
        local: SocketAddr,
        server: SocketAddr,
        credentials: (&str, &str),
        now: Instant,
        timeout: Duration,
    ) -> TurnCore {
        let mut config = TurnConfig::new(TurnCredentials::new(credentials.0, credentials.1));
        config.set_allocation_transport(TransportType::Udp);
        // RFC 8489 servers (PASSWORD-ALGORITHMS) get SHA-256; RFC 5389 ones (pion) stay on SHA-1.
        config.add_supported_integrity(IntegrityAlgorithm::Sha256);
        // RFC 8489's 500 ms RTO, but fewer retransmissions: the allocate deadline is ours.
        config.set_request_retransmits(
            Duration::from_millis(500),
            Duration::from_secs(3),
            5,
            Duration::from_secs(3),
        );
        let client = if stream {
            TurnClient::from(TurnClientTcp::allocate(local, server, config))
        } else {
            TurnClient::from(TurnClientUdp::allocate(local, server, config))
        };
        TurnCore {
            client,
            stream,
            local,
            server,
            base: now,
            allocate_deadline: Some(now + timeout),
            answers: AllocateAnswers::default(),
            waiting_sends: VecDeque::new(),
            released: VecDeque::new(),
            events: VecDeque::new(),
            failed: false,
        }
    }

    fn at(&self, now: Instant) -> turn_client_proto::types::Instant {
        let nanos = now.saturating_duration_since(self.base).as_nanos();
        turn_client_proto::types::Instant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    fn transport(&self) -> TransportType {
        if self.stream {
            TransportType::Tcp
        } else {
            TransportType::Udp
        }
    }

    /// The relayed address, once allocated.
    pub fn relayed_addr(&self) -> Option<SocketAddr> {
        self.client.relayed_addresses().map(|(_, addr)| addr).next()
    }

    /// Bytes from the server: one datagram (UDP) or the next piece of the stream.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.failed {
            return;
        }
        if self.allocate_deadline.is_some() {
            self.answers.feed(bytes, self.stream);
            if let Some(code) = self.answers.auth_failed {
                self.fail(CoreFailure::AuthFailed(code));
                return;
            }
        }
        let at = self.at(now);
        let transmit = Transmit::new(bytes, self.transport(), self.server, self.local);
        match self.client.recv(transmit, at) {
            TurnRecvRet::PeerData(data) => self.peer_data(data.peer, data.data().to_vec()),
            TurnRecvRet::Handled | TurnRecvRet::Ignored(_) | TurnRecvRet::PeerIcmp { .. } => {}
        }
        while let Some(data) = self.client.poll_recv(at) {
            self.peer_data(data.peer, data.data().to_vec());
        }
        self.collect_events(now);
    }

    fn peer_data(&mut self, peer: SocketAddr, data: Vec<u8>) {
        self.events
            .push_back(CoreEvent::PeerData(PeerDatagram { peer, data }));
    }

    /// Installs (and keeps refreshing) a permission for a peer IP; [`CoreEvent::Permission`]
    /// says how it went.
    pub fn create_permission(&mut self, peer: IpAddr, now: Instant) {
        if self.failed || self.client.have_permission(TransportType::Udp, peer) {
            return;
        }
        let at = self.at(now);
        // AlreadyExists: a request for it is in flight; NoAllocation: retried once allocated.
        let _ = self.client.create_permission(TransportType::Udp, peer, at);
    }

    /// Binds a channel to `peer` (4-byte ChannelData header instead of a 36-byte Send).
    pub fn bind_channel(&mut self, peer: SocketAddr, now: Instant) {
        if self.failed {
            return;
        }
        let at = self.at(now);
        let _ = self.client.bind_channel(TransportType::Udp, peer, at);
    }

    /// Relays a datagram to `peer`; the bytes for the server come out of
    /// [`poll_transmit`](Self::poll_transmit) or are returned here. Held (a few) until the
    /// peer's permission exists; dropped if the allocation failed.
    pub fn send_to(&mut self, peer: SocketAddr, data: Vec<u8>, now: Instant) -> Option<Vec<u8>> {
        if self.failed {
            return None;
        }
        if !self.client.have_permission(TransportType::Udp, peer.ip()) {
            if self.waiting_sends.len() < MAX_WAITING_SENDS {
                self.waiting_sends.push_back((peer, data));
            }
            self.create_permission(peer.ip(), now);
            return None;
        }
        let at = self.at(now);
        match self.client.send_to(TransportType::Udp, peer, data, at) {
            Ok(Some(transmit)) => Some(transmit.build().data),
            Ok(None) | Err(_) => None,
        }
    }

    /// The next bytes to write to the server.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.failed {
            return None;
        }
        if let Some(bytes) = self.released.pop_front() {
            return Some(bytes);
        }
        let at = self.at(now);
        self.client
            .poll_transmit(at)
            .map(|transmit| transmit.data.to_vec())
    }

    /// Advances timers (retransmissions, refreshes, the allocate deadline); returns when to
    /// call again.
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        if self.failed {
            return None;
        }
        if self.allocate_deadline.is_some_and(|deadline| now >= deadline) {
            let failure = match self.answers.last_error {
                Some(code) if code != ErrorCode::UNAUTHORIZED => CoreFailure::Rejected(code),
                _ => CoreFailure::TimedOut,
            };
            self.fail(failure);
            return None;
        }
        let at = self.at(now);
        let next = match self.client.poll(at) {
            TurnPollRet::WaitUntil(when) => Some(when.to_std(self.base)),
            TurnPollRet::Closed => {
                self.collect_events(now);
                if !self.failed {
                    self.fail(CoreFailure::Closed);
                }
                return None;
            }
            TurnPollRet::AllocateTcpSocket { .. } | TurnPollRet::TcpClose { .. } => Some(now),
        };
        self.collect_events(now);
        match (next, self.allocate_deadline) {
            (Some(next), Some(deadline)) => Some(next.min(deadline)),
            (next, deadline) => next.or(deadline),
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<CoreEvent> {
        self.events.pop_front()
    }

    /// The server connection broke (stream closed or socket error).
    pub fn connection_lost(&mut self) {
        if !self.failed {
            self.client.protocol_error();
            self.fail(if self.allocate_deadline.is_some() {
                CoreFailure::TimedOut
            } else {
                CoreFailure::Closed
            });
        }
    }

    /// Asks the server to delete the allocation (best effort: the bytes come out of
    /// [`poll_transmit`](Self::poll_transmit)).
    pub fn delete(&mut self, now: Instant) {
        if !self.failed {
            let at = self.at(now);
            let _ = self.client.delete(at);
        }
    }

    fn collect_events(&mut self, now: Instant) {
        while let Some(event) = self.client.poll_event() {
            match event {
                TurnEvent::AllocationCreated(_, relayed) => {
                    self.allocate_deadline = None;
                    self.events.push_back(CoreEvent::Allocated(relayed));
                }
                TurnEvent::AllocationCreateFailed(_) => {
                    let failure = match (self.answers.auth_failed, self.answers.last_error) {
                        (Some(code), _) => CoreFailure::AuthFailed(code),
                        (None, Some(code)) => CoreFailure::Rejected(code),
                        (None, None) => CoreFailure::TimedOut,
                    };
                    self.fail(failure);
                    return;
                }
                TurnEvent::PermissionCreated(_, ip) => {
                    self.events.push_back(CoreEvent::Permission(ip, true));
                    self.flush_waiting(ip, now);
                }
                TurnEvent::PermissionCreateFailed(_, ip) => {
                    self.events.push_back(CoreEvent::Permission(ip, false));
                    self.waiting_sends.retain(|(peer, _)| peer.ip() != ip);
                }
                TurnEvent::ChannelCreated(..)
                | TurnEvent::ChannelCreateFailed(..)
                | TurnEvent::TcpConnected(_)
                | TurnEvent::TcpConnectFailed(_) => {}
            }
        }
    }

    /// Sends held for `ip` go out now (through [`poll_transmit`](Self::poll_transmit)).
    fn flush_waiting(&mut self, ip: IpAddr, now: Instant) {
        let (ready, waiting): (VecDeque<_>, VecDeque<_>) = self
            .waiting_sends
            .drain(..)
            .partition(|(peer, _)| peer.ip() == ip);
        self.waiting_sends = waiting;
        for (peer, data) in ready {
            if let Some(bytes) = self.send_to(peer, data, now) {
                self.released.push_back(bytes);
            }
        }
    }

    fn fail(&mut self, failure: CoreFailure) {
        self.failed = true;
        self.waiting_sends.clear();
        self.events.push_back(CoreEvent::Failed(failure));
    }
}

// ----------------------------------------------------------------------------------------------
// The driver (tokio)
// ----------------------------------------------------------------------------------------------

/// How allocations connect.
#[derive(Clone)]
pub struct TurnOptions {
    /// The TLS configuration for `turns:` servers.
    pub tls: Arc<rustls::ClientConfig>,
    /// The budget of [`TurnAllocation::allocate`]: resolve, connect, TLS, authenticate and
    /// allocate.
    pub allocate_timeout: Duration,
    /// HTTP proxy for TURN over TCP and TLS (UDP never goes through it).
    proxy: Option<LiveProxy>,
}

impl TurnOptions {
    /// TLS with the ring provider, webpki roots plus `extra_roots_der` (as the signal
    /// websocket does), and [`DEFAULT_ALLOCATE_TIMEOUT`]. Fails on a malformed root.
    pub fn new(extra_roots_der: &[Vec<u8>]) -> Result<TurnOptions, String> {
        Ok(TurnOptions {
            tls: crate::live::engine::tls_config(extra_roots_der).map_err(|e| e.to_string())?,
            allocate_timeout: DEFAULT_ALLOCATE_TIMEOUT,
            proxy: None,
        })
    }

    /// Reaches TCP and TLS servers through `proxy` (a CONNECT tunnel; TLS runs inside),
    /// unless its NO_PROXY list names the server's host.
    pub fn proxy(mut self, proxy: Option<LiveProxy>) -> TurnOptions {
        self.proxy = proxy;
        self
    }
}

impl fmt::Debug for TurnOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnOptions")
            .field("allocate_timeout", &self.allocate_timeout)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// The socket to the TURN server.
enum Link {
    Udp(UdpSocket),
    Stream(Box<dyn ByteStream>),
}

impl Link {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Udp(socket) => socket.recv(buf).await,
            Link::Stream(stream) => stream.read(buf).await,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            // A datagram the kernel drops (full buffer, ICMP) is a lost packet, not a failure.
            Link::Udp(socket) => {
                let _ = socket.send(bytes).await;
                Ok(())
            }
            Link::Stream(stream) => {
                stream.write_all(bytes).await?;
                // TLS may hold records back until flushed.
                stream.flush().await
            }
        }
    }
}

enum Command {
    Send(SocketAddr, Vec<u8>),
    Permit(IpAddr, Option<oneshot::Sender<bool>>),
    Bind(SocketAddr),
}

/// A relayed UDP address on a TURN server, kept alive (refreshed) by a task on the tokio
/// runtime it was made on. Dropping it deletes the allocation (best effort) and ends the task.
pub struct TurnAllocation {
    server: SocketAddr,
    transport: TurnTransport,
    local: SocketAddr,
    relayed: SocketAddr,
    commands: mpsc::Sender<Command>,
    inbound: mpsc::Receiver<PeerDatagram>,
    failure: Arc<std::sync::Mutex<Option<TurnError>>>,
}

impl fmt::Debug for TurnAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnAllocation")
            .field("server", &self.server)
            .field("transport", &self.transport)
            .field("local", &self.local)
            .field("relayed", &self.relayed)
            .finish_non_exhaustive()
    }
}

/// A permission being installed: await it for the outcome, or drop it (it still goes on).
#[derive(Debug)]
pub struct PermissionPending(Option<oneshot::Receiver<bool>>);

impl PermissionPending {
    /// `true` once the server installed the permission; `false` if it refused or the
    /// allocation ended.
    pub async fn installed(self) -> bool {
        match self.0 {
            Some(answer) => answer.await.unwrap_or(false),
            None => false,
        }
    }
}

impl TurnAllocation {
    /// Connects to `server` (UDP, TCP or TLS as its URL says, at the URL's port), authenticates
    /// with its credentials and allocates a relayed UDP address, all within
    /// `options.allocate_timeout`. Must run on a tokio runtime (the task is spawned on it).
    pub async fn allocate(server: &TurnServer, options: &TurnOptions) -> Result<TurnAllocation, TurnError> {
        let started = Instant::now();
        let deadline = started + options.allocate_timeout;
        let transport = server.url.transport;
        let addr = match resolve(&server.url).await {
            Ok(addr) => addr,
            // Behind a proxy the local resolver may know no outside names: the tunnel names
            // the host and the proxy resolves it. The address is then only a label.
            Err(e) => match proxy_for(server, options) {
                Some(proxy) => {
                    log::debug!("{e}; the proxy {} resolves it", proxy.address());
                    SocketAddr::new(IpAddr::from([0, 0, 0, 0]), server.url.port)
                }
                None => return Err(e),
            },
        };
        let timed_out = || TurnError::TimedOut {
            server: addr,
            transport,
            after: started.elapsed(),
        };
        let (link, local) = tokio::time::timeout_at(deadline.into(), connect(server, addr, options))
            .await
            .map_err(|_| timed_out())??;
        let now = Instant::now();
        let credentials = (server.username.as_str(), server.credential.as_str());
        let core = TurnCore::new(
            transport != TurnTransport::Udp,
            local,
            addr,
            credentials,
            now,
            deadline.saturating_duration_since(now),
        );
        let (commands, command_rx) = mpsc::channel(1024);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
        let (allocated_tx, allocated_rx) = oneshot::channel();
        let failure = Arc::new(std::sync::Mutex::new(None));
        let driver = Driver {
            core,
            link,
            commands: command_rx,
            inbound: inbound_tx,
            allocated: Some(allocated_tx),
            permission_waiters: Vec::new(),
            failure: failure.clone(),
            server: addr,
            transport,
            started,
        };
        tokio::spawn(driver.run());
        let relayed = allocated_rx.await.unwrap_or_else(|_| Err(timed_out()))?;
        Ok(TurnAllocation {
            server: addr,
            transport,
            local,
            relayed,
            commands,
            inbound,
            failure,
        })
    }

    /// The relayed address peers send to (the candidate's address).
    pub fn relayed_addr(&self) -> SocketAddr {
        self.relayed
    }

    /// Our end of the connection to the TURN server (the relayed candidate's base).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The TURN server's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// How the server is reached.
    pub fn transport(&self) -> TurnTransport {
        self.transport
    }

    /// Installs a permission for `peer` (kept refreshed); datagrams to it wait for it.
    pub fn create_permission(&self, peer: IpAddr) -> PermissionPending {
        let (answer, installed) = oneshot::channel();
        match self.commands.try_send(Command::Permit(peer, Some(answer))) {
            Ok(()) => PermissionPending(Some(installed)),
            Err(_) => PermissionPending(None),
        }
    }

    /// Binds a channel to `peer` (the nominated remote): smaller headers from then on.
    pub fn bind_channel(&self, peer: SocketAddr) {
        let _ = self.commands.try_send(Command::Bind(peer));
    }

    /// Relays a datagram to `peer`, without waiting. Dropped when the queue is full, like a
    /// datagram; an error only once the allocation has ended.
    pub fn send_to(&self, peer: SocketAddr, data: Vec<u8>) -> Result<(), TurnError> {
        match self.commands.try_send(Command::Send(peer, data)) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.ended()),
        }
    }

    /// The next datagram from a peer; the reason once the allocation has ended.
    pub async fn recv(&mut self) -> Result<PeerDatagram, TurnError> {
        match self.inbound.recv().await {
            Some(datagram) => Ok(datagram),
            None => Err(self.ended()),
        }
    }

    fn ended(&self) -> TurnError {
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        failure.unwrap_or(TurnError::Closed {
            server: self.server,
            transport: self.transport,
        })
    }
}

async fn resolve(url: &TurnUrl) -> Result<SocketAddr, TurnError> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, url.port));
    }
    let resolve_error = |reason: String| TurnError::Resolve {
        host: url.host.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| resolve_error(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| resolve_error("no address".into()))
}

async fn connect(
    server: &TurnServer,
    addr: SocketAddr,
    options: &TurnOptions,
) -> Result<(Link, SocketAddr), TurnError> {
    let transport = server.url.transport;
    let io_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => TurnError::Refused {
            server: addr,
            transport,
        },
        _ => TurnError::Io {
            server: addr,
            transport,
            reason: e.to_string(),
        },
    };
    if transport == TurnTransport::Udp {
        let any: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(any).await.map_err(io_error)?;
        socket.connect(addr).await.map_err(io_error)?;
        let local = socket.local_addr().map_err(io_error)?;
        return Ok((Link::Udp(socket), local));
    }
    let tcp = match proxy_for(server, options) {
        Some(proxy) => tunnel(proxy, server, addr).await?,
        None => TcpStream::connect(addr).await.map_err(io_error)?,
    };
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().map_err(io_error)?;
    if transport == TurnTransport::Tcp {
        return Ok((Link::Stream(Box::new(tcp)), local));
    }
    let tls_failed = |reason: String| TurnError::TlsFailed { server: addr, reason };
    let name = rustls::pki_types::ServerName::try_from(server.url.host.clone())
        .map_err(|_| tls_failed("the host is not a valid TLS name".into()))?;
    let tls = tokio_rustls::TlsConnector::from(options.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| tls_failed(e.to_string()))?;
    Ok((Link::Stream(Box::new(tls)), local))
}

/// The proxy for a TCP or TLS connection to `server`, unless NO_PROXY exempts its host.
fn proxy_for<'a>(server: &TurnServer, options: &'a TurnOptions) -> Option<&'a LiveProxy> {
    if server.url.transport == TurnTransport::Udp {
        return None;
    }
    let host = url_host(&server.url.host);
    options.proxy.as_ref().filter(|proxy| proxy.applies_to(&host))
}

/// `host` as it goes into a URL or a CONNECT target (IPv6 addresses in brackets).
pub(crate) fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A CONNECT tunnel through `proxy` to the server, named by its URL's host so that the proxy
/// resolves it.
async fn tunnel(proxy: &LiveProxy, server: &TurnServer, addr: SocketAddr) -> Result<TcpStream, TurnError> {
    let host = url_host(&server.url.host);
    proxy
        .tunnel(&host, server.url.port)
        .await
        .map_err(|e| TurnError::Proxy {
            server: addr,
            transport: server.url.transport,
            proxy: proxy.address(),
            reason: match e {
                LiveError::Proxy { reason, .. } => reason,
                other => other.to_string(),
            },
        })
}

/// The task behind a [`TurnAllocation`].
struct Driver {
    core: TurnCore,
    link: Link,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<PeerDatagram>,
    allocated: Option<oneshot::Sender<Result<SocketAddr, TurnError>>>,
    permission_waiters: Vec<(IpAddr, oneshot::Sender<bool>)>,
    failure: Arc<std::sync::Mutex<Option<TurnError>>>,
    server: SocketAddr,
    transport: TurnTransport,
    started: Instant,
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let next = self.core.poll(Instant::now());
            if self.flush().await.is_err() {
                self.core.connection_lost();
            }
            if self.dispatch_events() {
                return;
            }
            let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
            tokio::select! {
                read = self.link.read(&mut buf) => match read {
                    Ok(0) if matches!(self.link, Link::Stream(_)) => self.core.connection_lost(),
                    Ok(n) => self.core.receive(&buf[..n], Instant::now()),
                    // A UDP socket reports ICMP errors as reads; the server may still answer.
                    Err(_) if matches!(self.link, Link::Udp(_)) => {}
                    Err(_) => self.core.connection_lost(),
                },
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => {
                        self.core.delete(Instant::now());
                        let _ = self.flush().await;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    async fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Send(peer, data) => {
                if let Some(bytes) = self.core.send_to(peer, data, now) {
                    if self.link.write(&bytes).await.is_err() {
                        self.core.connection_lost();
                    }
                }
            }
            Command::Permit(ip, answer) => {
                self.core.create_permission(ip, now);
                if let Some(answer) = answer {
                    if self.core.client.have_permission(TransportType::Udp, ip) {
                        let _ = answer.send(true);
                    } else {
                        self.permission_waiters.push((ip, answer));
                    }
                }
            }
            Command::Bind(peer) => self.core.bind_channel(peer, now),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(bytes) = self.core.poll_transmit(Instant::now()) {
            self.link.write(&bytes).await?;
        }
        Ok(())
    }

    /// Hands the core's events on; `true` once the allocation has ended.
    fn dispatch_events(&mut self) -> bool {
        while let Some(event) = self.core.poll_event() {
            match event {
                CoreEvent::Allocated(relayed) => {
                    if let Some(allocated) = self.allocated.take() {
                        let _ = allocated.send(Ok(relayed));
                    }
                }
                CoreEvent::Permission(ip, installed) => {
                    for (_, answer) in extract_waiters(&mut self.permission_waiters, ip) {
                        let _ = answer.send(installed);
                    }
                }
                // A full queue drops the datagram, as a full socket buffer would.
                CoreEvent::PeerData(datagram) => drop(self.inbound.try_send(datagram)),
                CoreEvent::Failed(failure) => {
                    let error = failure.into_error(self.server, self.transport, self.started.elapsed());
                    *self
                        .failure
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.clone());
                    if let Some(allocated) = self.allocated.take() {
                        let _ = allocated.send(Err(error));
                    }
                    return true;
                }
            }
        }
        false
    }
}

fn extract_waiters(
    waiters: &mut Vec<(IpAddr, oneshot::Sender<bool>)>,
    ip: IpAddr,
) -> Vec<(IpAddr, oneshot::Sender<bool>)> {
    let (matching, rest) = std::mem::take(waiters)
        .into_iter()
        .partition(|(waiting, _)| *waiting == ip);
    *waiters = rest;
    matching
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(transport: TurnTransport, host: &str, port: u16) -> TurnUrl {
        TurnUrl {
            transport,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_livekit_urls() {
        assert_eq!(
            parse_turn_url("turn:10.0.0.5:3478?transport=udp"),
            Ok(url(TurnTransport::Udp, "10.0.0.5", 3478))
        );
        assert_eq!(
            parse_turn_url("turns:turn.example.com:443?transport=tcp"),
            Ok(url(TurnTransport::Tls, "turn.example.com", 443))
        );
        assert_eq!(
            parse_turn_url("turn:turn.example.com:3478?transport=tcp"),
            Ok(url(TurnTransport::Tcp, "turn.example.com", 3478))
        );
    }

    #[test]
    fn defaults_transport_and_port_per_scheme() {
        assert_eq!(
            parse_turn_url("turn:relay.example"),
            Ok(url(TurnTransport::Udp, "relay.example", 3478))
        );
        assert_eq!(
            parse_turn_url("turns:relay.example"),
            Ok(url(TurnTransport::Tls, "relay.example", 5349))
        );
        assert_eq!(
            parse_turn_url(" TURN:relay.example?TRANSPORT=TCP "),
            Ok(url(TurnTransport::Tcp, "relay.example", 3478))
        );
    }

    #[test]
    fn parses_ipv6_literals() {
        assert_eq!(
            parse_turn_url("turn:[2001:db8::1]:3479"),
            Ok(url(TurnTransport::Udp, "2001:db8::1", 3479))
        );
        assert_eq!(
            parse_turn_url("turns:[::1]"),
            Ok(url(TurnTransport::Tls, "::1", 5349))
        );
        assert_eq!(parse_turn_url("turn:[::1]x"), Err(IceUrlError::BadHost));
        assert_eq!(parse_turn_url("turn:[nope]:1"), Err(IceUrlError::BadHost));
        assert_eq!(parse_turn_url("turn:[::1"), Err(IceUrlError::BadHost));
    }

    #[test]
    fn rejects_what_is_not_a_turn_server() {
        assert_eq!(
            parse_turn_url("stun:stun.example:3478"),
            Err(IceUrlError::NotTurn)
        );
        assert_eq!(
            parse_turn_url("https://relay.example"),
            Err(IceUrlError::UnknownScheme)
        );
        assert_eq!(parse_turn_url("relay.example"), Err(IceUrlError::UnknownScheme));
        assert_eq!(parse_turn_url(""), Err(IceUrlError::UnknownScheme));
        assert_eq!(parse_turn_url("turn:"), Err(IceUrlError::MissingHost));
        assert_eq!(parse_turn_url("turn::3478"), Err(IceUrlError::MissingHost));
        assert_eq!(parse_turn_url("turn:host:0"), Err(IceUrlError::BadPort));
        assert_eq!(parse_turn_url("turn:host:65536"), Err(IceUrlError::BadPort));
        assert_eq!(parse_turn_url("turn:host:+1"), Err(IceUrlError::BadPort));
        assert_eq!(parse_turn_url("turn:host:"), Err(IceUrlError::BadPort));
        assert_eq!(
            parse_turn_url("turn:host?transport=sctp"),
            Err(IceUrlError::UnsupportedTransport)
        );
        assert_eq!(
            parse_turn_url("turns:host?transport=udp"),
            Err(IceUrlError::UnsupportedTransport)
        );
        assert_eq!(
            parse_turn_url("turn:host?ttl=5"),
            Err(IceUrlError::UnknownParameter)
        );
        assert_eq!(
            parse_turn_url("turn:host?transport"),
            Err(IceUrlError::UnknownParameter)
        );
    }

    #[test]
    fn never_echoes_userinfo_in_errors() {
        let error = parse_turn_url("turn:alice:hunter2@relay.example:3478").unwrap_err();
        assert_eq!(error, IceUrlError::BadPort);
        let error = parse_turn_url("turn:alice@relay.example").unwrap_err();
        assert_eq!(error, IceUrlError::BadHost);
        assert!(!error.to_string().contains("alice"));
    }

    #[test]
    fn collects_servers_with_their_credentials_and_skips_the_rest() {
        let ice_servers = vec![
            livekit_protocol::IceServer {
                urls: vec![
                    "turn:10.0.0.5:3478?transport=udp".into(),
                    "stun:10.0.0.5:3478".into(),
                ],
                username: "user-one".into(),
                credential: "secret-one".into(),
            },
            livekit_protocol::IceServer {
                urls: vec!["turns:turn.example.com:443?transport=tcp".into(), "bogus".into()],
                username: "user-two".into(),
                credential: "secret-two".into(),
            },
        ];
        let (servers, skipped) = turn_servers(&ice_servers);
        assert_eq!(
            servers,
            vec![
                TurnServer::new(
                    url(TurnTransport::Udp, "10.0.0.5", 3478),
                    "user-one",
                    "secret-one"
                ),
                TurnServer::new(
                    url(TurnTransport::Tls, "turn.example.com", 443),
                    "user-two",
                    "secret-two"
                ),
            ]
        );
        assert_eq!(skipped, vec![IceUrlError::NotTurn, IceUrlError::UnknownScheme]);
        assert_eq!(servers[1].clone().with_port(5349).url.port, 5349);
    }

    #[test]
    fn debug_never_shows_credentials() {
        let server = TurnServer::new(
            url(TurnTransport::Udp, "10.0.0.5", 3478),
            "APIkey-user",
            "s3cr3t-cred",
        );
        let shown = format!("{server:?} {:#?}", server.clone().with_credential("other-s3cr3t"));
        assert!(shown.contains("10.0.0.5"));
        for secret in ["APIkey-user", "s3cr3t-cred", "other-s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    fn canonical(url: &TurnUrl) -> String {
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let scheme = if url.transport == TurnTransport::Tls {
            "turns"
        } else {
            "turn"
        };
        let transport = if url.transport == TurnTransport::Udp {
            "udp"
        } else {
            "tcp"
        };
        format!("{scheme}:{host}:{}?transport={transport}", url.port)
    }

    #[test]
    fn garbage_never_panics_and_what_parses_round_trips() {
        let mut rng = fastrand::Rng::with_seed(10);
        let schemes = ["turn:", "turns:", "TURN:", "stun:", "", "turn:["];
        let alphabet = b"turns:[]?&=:/@.0123456789abcdefTCPUDP \x7f";
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.usize(..40);
            let tail: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                .collect();
            let text = format!("{}{tail}", schemes[rng.usize(..schemes.len())]);
            if let Ok(url) = parse_turn_url(&text) {
                accepted += 1;
                assert!(!url.host.is_empty() && url.port != 0, "{text:?}");
                assert_eq!(parse_turn_url(&canonical(&url)), Ok(url), "{text:?}");
            }
        }
        assert!(accepted > 100, "the generator reaches accepted URLs ({accepted})");
    }

    fn allocate_error(code: u16) -> Vec<u8> {
        use turn_client_proto::types::stun::message::MessageWriteVec;
        use turn_client_proto::types::stun::prelude::*;
        let request = Message::builder_request(
            turn_client_proto::types::message::ALLOCATE,
            MessageWriteVec::new(),
        );
        let mut error = Message::builder_error(
            &Message::from_bytes(&request.finish()).unwrap(),
            MessageWriteVec::new(),
        );
        error
            .add_attribute(&ErrorCode::builder(code).build().unwrap())
            .unwrap();
        error.finish()
    }

    #[test]
    fn a_second_401_or_a_400_after_the_challenge_is_an_auth_failure() {
        let mut answers = AllocateAnswers::default();
        answers.feed(&allocate_error(401), false);
        assert_eq!(answers.auth_failed, None, "the first 401 is the challenge");
        answers.feed(&allocate_error(401), false);
        assert_eq!(answers.auth_failed, Some(401));

        let mut answers = AllocateAnswers::default();
        answers.feed(&allocate_error(400), false);
        assert_eq!(
            answers.auth_failed, None,
            "400 before any challenge is not about credentials"
        );
        assert_eq!(answers.last_error, Some(400));
        answers.feed(&allocate_error(401), false);
        answers.feed(&allocate_error(400), false);
        assert_eq!(answers.auth_failed, Some(400));
    }

    #[test]
    fn stream_answers_are_reassembled_across_reads() {
        let mut stream = allocate_error(401);
        stream.extend(allocate_error(401));
        let mut answers = AllocateAnswers::default();
        for piece in stream.chunks(7) {
            answers.feed(piece, true);
        }
        assert_eq!(answers.auth_failed, Some(401));
        assert!(answers.stream.is_empty());
    }

    #[test]
    fn an_unanswered_allocation_times_out() {
        let start = Instant::now();
        let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut core = TurnCore::new(false, local, server, ("u", "p"), start, Duration::from_secs(2));
        core.poll(start);
        assert!(
            core.poll_transmit(start).is_some(),
            "the first Allocate goes out at once"
        );
        let mut now = start;
        while let Some(next) = core.poll(now) {
            assert!(next <= start + Duration::from_secs(2));
            while core.poll_transmit(next).is_some() {}
            now = next.max(now + Duration::from_millis(1));
        }
        assert_eq!(core.poll_event(), Some(CoreEvent::Failed(CoreFailure::TimedOut)));
        assert_eq!(core.send_to(server, vec![1], now), None);
    }
}

/// `TurnCore` against `turn-server-proto`'s sans-IO server, on fake time: allocation, held
/// sends released by their permission, relaying both ways, refreshes that keep the allocation
/// (and permission) alive for half an hour, and refused credentials.
#[cfg(test)]
mod against_a_server {
    use super::*;
    use turn_server_proto::api::{TurnServerApi, TurnServerPollRet};
    use turn_server_proto::server::TurnServer as ProtoServer;

    const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 40_000);
    const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 3478);
    const RELAYED: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 50_000);
    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3)), 9);

    /// Client core, server and peer wired by hand; time only moves when the test moves it.
    struct Net {
        /// The client reaches the server over TCP (else UDP).
        stream: bool,
        core: TurnCore,
        server: ProtoServer,
        start: Instant,
        now: Instant,
        at_peer: Vec<(SocketAddr, Vec<u8>)>,
        events: Vec<CoreEvent>,
    }

    impl Net {
        fn new(stream: bool, server_password: &str) -> Net {
            let start = Instant::now();
            let transport = if stream {
                TransportType::Tcp
            } else {
                TransportType::Udp
            };
            let mut server = ProtoServer::new(transport, SERVER, "realm".into());
            server.add_user("user".into(), server_password.into());
            let core = TurnCore::new(
                stream,
                CLIENT,
                SERVER,
                ("user", "pass"),
                start,
                Duration::from_secs(10),
            );
            Net {
                stream,
                core,
                server,
                start,
                now: start,
                at_peer: Vec::new(),
                events: Vec::new(),
            }
        }

        fn server_now(&self) -> turn_client_proto::types::Instant {
            let nanos = self.now.duration_since(self.start).as_nanos();
            turn_client_proto::types::Instant::from_nanos(i64::try_from(nanos).unwrap())
        }

        fn route(&mut self, transmit: Transmit<Vec<u8>>) {
            if transmit.to == CLIENT {
                self.core.receive(&transmit.data, self.now);
            } else {
                self.at_peer.push((transmit.from, transmit.data));
            }
        }

        fn deliver_to_server(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
            let at = self.server_now();
            let transport = if self.stream && from == CLIENT {
                TransportType::Tcp
            } else {
                TransportType::Udp
            };
            if let Some(reply) = self.server.recv(Transmit::new(bytes, transport, from, to), at) {
                self.route(reply.build());
            }
        }

        /// Exchanges everything pending until nobody has anything to say.
        fn pump(&mut self) {
            for _ in 0..100 {
                let mut busy = false;
                self.core.poll(self.now);
                while let Some(bytes) = self.core.poll_transmit(self.now) {
                    busy = true;
                    self.deliver_to_server(CLIENT, SERVER, &bytes);
                }
                let at = self.server_now();
                while let TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } = self.server.poll(at)
                {
                    busy = true;
                    self.server.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        Ok(RELAYED),
                        at,
                    );
                }
                while let Some(transmit) = self.server.poll_transmit(at) {
                    busy = true;
                    self.route(transmit);
                }
                while let Some(event) = self.core.poll_event() {
                    busy = true;
                    self.events.push(event);
                }
                if !busy {
                    return;
                }
            }
            panic!("the exchange never settles");
        }

        /// Lets `span` pass: time jumps to each wake-up the core asks for (its requests are
        /// paced, its refreshes timed), exchanging at each; stops early once the core has failed.
        fn run_for(&mut self, span: Duration) {
            let until = self.now + span;
            loop {
                self.pump();
                match self.core.poll(self.now) {
                    None => return,
                    Some(next) if next >= until => {
                        self.now = until;
                        self.pump();
                        return;
                    }
                    Some(next) => self.now = next.max(self.now + Duration::from_millis(1)),
                }
            }
        }

        fn failed(&self) -> Option<CoreFailure> {
            self.events.iter().find_map(|event| match event {
                CoreEvent::Failed(failure) => Some(*failure),
                _ => None,
            })
        }
    }

    #[test]
    fn allocates_relays_both_ways_and_stays_alive_past_every_lifetime_over_udp() {
        relays_both_ways_and_stays_alive(false);
    }

    #[test]
    fn allocates_relays_both_ways_and_stays_alive_past_every_lifetime_over_tcp() {
        relays_both_ways_and_stays_alive(true);
    }

    fn relays_both_ways_and_stays_alive(stream: bool) {
        let mut net = Net::new(stream, "pass");
        net.run_for(Duration::from_millis(200));
        assert_eq!(net.events.first(), Some(&CoreEvent::Allocated(RELAYED)));
        assert_eq!(net.core.relayed_addr(), Some(RELAYED));

        // Before the permission exists the datagram is held, then released by it.
        assert_eq!(net.core.send_to(PEER, b"first".to_vec(), net.now), None);
        net.run_for(Duration::from_millis(200));
        assert!(net.events.contains(&CoreEvent::Permission(PEER.ip(), true)));
        assert_eq!(net.at_peer, vec![(RELAYED, b"first".to_vec())]);

        net.deliver_to_server(PEER, RELAYED, b"reply");
        net.pump();
        assert!(net.events.contains(&CoreEvent::PeerData(PeerDatagram {
            peer: PEER,
            data: b"reply".to_vec()
        })));

        net.core.bind_channel(PEER, net.now);
        net.run_for(Duration::from_millis(200));

        // Half an hour: several allocation (600 s), permission (300 s) and channel lifetimes.
        net.run_for(Duration::from_secs(30 * 60));
        assert_eq!(net.failed(), None);
        net.at_peer.clear();
        if let Some(bytes) = net.core.send_to(PEER, b"still here".to_vec(), net.now) {
            net.deliver_to_server(CLIENT, SERVER, &bytes);
        }
        net.pump();
        assert_eq!(net.at_peer, vec![(RELAYED, b"still here".to_vec())]);
        net.events.clear();
        // 9 bytes: over TCP the ChannelData frame is padded to 12.
        net.deliver_to_server(PEER, RELAYED, b"and back!");
        net.pump();
        assert_eq!(
            net.events,
            vec![CoreEvent::PeerData(PeerDatagram {
                peer: PEER,
                data: b"and back!".to_vec()
            })]
        );
    }

    #[test]
    fn refused_credentials_fail_as_auth_at_once() {
        for stream in [false, true] {
            let mut net = Net::new(stream, "another password");
            // Less than the first retransmission timeout (500 ms): answered, not waited out.
            net.run_for(Duration::from_millis(300));
            assert_eq!(
                net.failed(),
                Some(CoreFailure::AuthFailed(ErrorCode::UNAUTHORIZED)),
                "stream: {stream}"
            );
        }
    }
}

#[cfg(test)]
mod garbage {
    use super::*;

    /// What the fuzz target `turn` does, on a fixed budget of random server answers.
    #[test]
    fn random_server_answers_never_panic_the_core() {
        let mut rng = fastrand::Rng::with_seed(5766);
        let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        for round in 0..2_000 {
            let now = Instant::now();
            let mut core = TurnCore::new(
                round % 2 == 1,
                local,
                server,
                ("u", "p"),
                now,
                Duration::from_secs(1),
            );
            core.poll(now);
            let mut answer = core.poll_transmit(now).unwrap_or_default();
            // Mostly the client's own Allocate with bytes flipped, so headers and
            // transaction ids often still match.
            for _ in 0..rng.usize(1..8) {
                if answer.is_empty() {
                    break;
                }
                let at = rng.usize(..answer.len());
                answer[at] = rng.u8(..);
            }
            answer.truncate(rng.usize(..=answer.len()));
            core.receive(&answer, now);
            core.receive(&answer, now);
            drop(core.send_to(server, answer, now));
            core.poll(now + Duration::from_secs(2));
            while core.poll_transmit(now).is_some() {}
            while core.poll_event().is_some() {}
        }
    }
}
