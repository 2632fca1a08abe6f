//! The embedded, data-only, LiveKit-compatible SFU; see [`Sfu`].

mod admission;
mod http;
mod participant;
mod peer;
#[cfg(test)]
mod resume_tests;
mod rooms;
mod tcp;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::server_thread::ServerThread;

/// The livekit-server version the SFU reports (`ServerInfo.version`); clients gate features
/// such as RPC on it, and the SFU behaves like this version for what it supports.
pub(crate) const SERVER_VERSION: &str = "1.13.5";
/// The signalling protocol version reported in `ServerInfo.protocol`.
pub(crate) const SERVER_PROTOCOL: i32 = 17;
/// Ping interval given to clients, in seconds (as livekit-server).
pub(crate) const PING_INTERVAL_SECS: i32 = 5;
/// Ping timeout given to clients, in seconds (as livekit-server).
pub(crate) const PING_TIMEOUT_SECS: i32 = 15;

/// Options of [`Sfu::start`]. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SfuOptions {
    /// The API key tokens must be issued by (their `iss`).
    pub api_key: String,
    /// The HS256 secret tokens are signed with.
    pub api_secret: String,
    /// Address to listen on for signalling; `127.0.0.1:0` (an ephemeral port) by default.
    pub bind: SocketAddr,
    /// Whether `/rtc/v1` (one peer connection) is served; `true` by default. With `false` it
    /// answers `404`, as livekit-server before 1.9 does, and clients fall back to `/rtc`.
    pub rtc_v1: bool,
    /// How long a participant whose connection went silent is kept for a resume; 20 s by
    /// default, as livekit-server 1.13 (ICE counts as failed after three quarters of it
    /// without a packet from the client, 15 s, and the participant is removed a quarter later,
    /// 5 s, unless it resumed meanwhile). A participant that only lost its websocket while its
    /// peer connection stays alive is kept as long as the connection lives.
    pub resume_window: Duration,
}

/// livekit-server 1.13's window: pion's ICE disconnected (10 s) and failed (5 s) timeouts,
/// then its 5 s disconnect cleanup.
const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(20);

impl Default for SfuOptions {
    /// `devkey` / `secret` (what `livekit-server --dev` accepts) on `127.0.0.1:0`.
    fn default() -> Self {
        SfuOptions {
            api_key: "devkey".into(),
            api_secret: "secret".into(),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            rtc_v1: true,
            resume_window: DEFAULT_RESUME_WINDOW,
        }
    }
}

impl fmt::Debug for SfuOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SfuOptions")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("bind", &self.bind)
            .field("rtc_v1", &self.rtc_v1)
            .field("resume_window", &self.resume_window)
            .finish()
    }
}

/// A snapshot of one room of an [`Sfu`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SfuRoom {
    /// Room name (the token's `video.room`).
    pub name: String,
    /// Room SID (`RM_…`).
    pub sid: String,
    /// Identities of the participants, in join order (hidden ones included).
    pub participants: Vec<String>,
}

/// A running embedded, data-only, LiveKit-compatible SFU (feature `dev`).
///
/// [`Sfu`] speaks enough of livekit-server 1.13's protocol for this SDK's live layer and the
/// official LiveKit clients to join rooms and exchange data through it, in process, on
/// loopback, with no external binary:
///
/// - **Signalling** on `/rtc` (the classic layout: the client's publisher connection plus a
///   subscriber connection the server offers, on which the server opens its own `_reliable`
///   and `_lossy` channels to send data back) and `/rtc/v1` (one peer connection offered by the
///   client, join request in the `join_request` query parameter; data goes back on the
///   client's own channels). `/rtc/validate` and `/rtc/v1/validate` answer `success` or the
///   refusal. The token comes from `Authorization: Bearer …` or the `access_token` parameter.
/// - **Tokens** are HS256 JWTs verified with the configured key pair (`exp`/`nbf` with
///   livekit-server's one-minute leeway). Refusals carry livekit-server's HTTP status and a
///   readable reason as the body, never the token:
///
///   | refusal                                                   | status | body starts with                      |
///   |-----------------------------------------------------------|--------|---------------------------------------|
///   | bad signature, expired, not yet valid (`nbf`)             | 401    | `invalid token: …`                    |
///   | issued for another API key (`iss`)                        | 401    | `invalid API key`                     |
///   | not an HS256 JWT                                          | 401    | `invalid authorization token`         |
///   | no token, no `roomJoin` grant, `room` parameter naming another room, join-time metadata without `canUpdateOwnMetadata` | 401 | `no permissions to access the room` |
///   | `Authorization` not `Bearer …`                            | 401    | `invalid authorization header…`       |
///   | empty identity, empty room, bad or missing v1 join request | 400   | e.g. `identity cannot be empty`       |
///
///   The room is always the token's (`video.room`), as on livekit-server.
/// - **WebRTC** with str0m (the live layer's stack) as an ICE-lite agent with two host
///   candidates on `127.0.0.1` per peer connection: a UDP socket, and a TCP listener for ICE
///   over TCP (RFC 6544, `tcptype passive`, packets framed as RFC 4571 says) for clients that
///   cannot use UDP. Both are in the SDP and trickled; clients prefer UDP when it works.
/// - **Rooms**: the join response lists the room, the participant (SID, identity, name, kind,
///   metadata, attributes) and the others; joins (`JOINED`, then `ACTIVE` once its data
///   channel is open), updates and departures (`DISCONNECTED` with the reason) are broadcast
///   at once (livekit-server batches them). Clients update their own name, metadata and
///   attributes when the token grants `canUpdateOwnMetadata`. A participant joining with an
///   identity already present replaces it (`DUPLICATE_IDENTITY`). A room is created by its
///   first participant and **ends as soon as its last participant leaves** (no departure
///   timeout); [`Sfu::delete_room`] ends it at once, telling everyone (`ROOM_DELETED`).
/// - **Data**: every `DataPacket` a participant publishes (with `canPublishData`) is stamped
///   with its identity and SID and forwarded, otherwise intact, to everyone else or to its
///   destination identities, on the same kind of channel: reliable packets in order, lossy
///   ones best effort. RPC (v1 packets, v2 streams) and byte/text streams therefore just
///   flow through. Reliable packets replaying an already forwarded sequence number are
///   dropped, as livekit-server does. At most 64 KiB per client is in flight unacknowledged
///   (more overflows the official clients' UDP receive buffers, and SCTP then stalls for a
///   second), which also caps one packet at 64 KiB (LiveKit clients send at most 15 KiB);
///   larger ones are dropped with a warning. After a cut, reliable data waiting behind SCTP's
///   retransmission backoff goes out as soon as the client is heard again (the live layer's
///   SCTP clock skip, capped for an ICE-lite agent), not at the next backed-off timer.
/// - **Media** is refused: `AddTrack` and data-track requests get a `RequestResponse`
///   `NOT_ALLOWED`.
/// - **Resume**, as livekit-server 1.13.5: a participant whose websocket drops without a
///   `Leave` stays in the room, unannounced, while its peer connection lives; one whose
///   connection goes silent is told to resume (`Leave{RESUME, CONNECTION_TIMEOUT}`, clients of
///   protocol 13 and up), loses its websocket, and is removed (`CONNECTION_TIMEOUT`) when
///   [`SfuOptions::resume_window`] (20 s) has passed without a resume. A resume (`/rtc/v1`
///   join request with `reconnect`, or `/rtc?reconnect=1&sid=…`) is keyed on the token's
///   identity and answered on the new websocket with `ReconnectResponse` (no ICE servers,
///   `last_message_seq` = the last reliable sequence accepted from the client), a snapshot of
///   every participant and a `RoomUpdate`; on `/rtc` the server re-offers its subscriber
///   connection with new ICE credentials, on `/rtc/v1` the client's ICE-restart offer is
///   answered on the same peer connection (same DTLS and SCTP association). `SyncState` is
///   accepted. A resume of an identity the room does not hold gets
///   `Leave{STATE_MISMATCH, RECONNECT}` and the websocket ends; a fresh join of an identity
///   already present replaces the old participant.
/// - **Simulated scenarios** (`SignalRequest.simulate`): `node_failure` and `migration`
///   (removed without a `Leave`, websocket closed), `server_leave`
///   (`Leave{DISCONNECT, SERVER_SHUTDOWN}`), `disconnect_signal_on_resume` and
///   `disconnect_signal_on_resume_no_messages` (armed for 5 s), `switch_candidate_protocol`
///   TCP (from then on answers, offers and trickles carry only the TCP candidate; on `/rtc`
///   the subscriber is re-offered with new ICE credentials) and UDP (both again); the others,
///   TLS included, are ignored.
/// - Pings: both forms (`ping` → `pong`, `ping_req` → `pong_resp`); a websocket silent for
///   longer than the ping timeout it was given is dropped (the participant stays for a
///   resume, as above).
/// - **Not supported**: TURN (no ICE servers are given, so no relay and no TLS path),
///   candidates on other interfaces than loopback, media of any kind.
///
/// Everything runs on one background thread with a single-threaded tokio runtime; dropping
/// the [`Sfu`] tells every participant the server is shutting down, then stops that thread,
/// closing every socket; [`Sfu::abort`] stops it without a word, as a killed server.
///
/// ```no_run
/// use menlo_robot_sdk::dev::{Sfu, SfuOptions};
///
/// let sfu = Sfu::start(SfuOptions::default())?;
/// println!("LiveKit URL: {}", sfu.url());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Sfu {
    addr: SocketAddr,
    server: Arc<http::Server>,
    _thread: ServerThread,
}

impl fmt::Debug for Sfu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sfu")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl Sfu {
    /// Binds the signalling socket and starts serving on a background thread.
    pub fn start(options: SfuOptions) -> std::io::Result<Sfu> {
        let listener = StdTcpListener::bind(options.bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let server = Arc::new(http::Server {
            registry: Arc::new(rooms::Registry::default()),
            api_key: options.api_key,
            api_secret: options.api_secret,
            participants: Arc::new(()),
            single_pc: options.rtc_v1,
            resume_window: options.resume_window,
            aborted: Default::default(),
        });
        let serving = Arc::clone(&server);
        let thread = ServerThread::spawn("menlo-dev-sfu", move |stop| http::serve(listener, serving, stop))?;
        Ok(Sfu {
            addr,
            server,
            _thread: thread,
        })
    }

    /// The LiveKit URL clients connect to, `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Ends a room now: its participants get a `Leave` with reason `ROOM_DELETED` and are
    /// disconnected, as livekit-server does when a room is deleted. Returns whether the room
    /// existed.
    pub fn delete_room(&self, name: &str) -> bool {
        self.server.registry.delete(name)
    }

    /// Stops at once without telling anyone, as a killed livekit-server: no `Leave`, the
    /// websockets and peer connections just end (dropping the [`Sfu`] instead says
    /// `SERVER_SHUTDOWN` first, as livekit-server does when it is stopped). Clients see a
    /// server gone away and try to resume or reconnect.
    pub fn abort(self) {
        self.server
            .aborted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The rooms with participants, sorted by name.
    pub fn rooms(&self) -> Vec<SfuRoom> {
        self.server.registry.snapshot()
    }

    /// Number of participants in `room` (0 when there is no such room).
    pub fn participant_count(&self, room: &str) -> usize {
        self.rooms()
            .into_iter()
            .find(|r| r.name == room)
            .map_or(0, |r| r.participants.len())
    }
}
