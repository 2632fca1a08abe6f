//! One participant's task: its signalling websocket, its peer connection(s) and their UDP
//! sockets, driven from one `select!` loop. It registers with the room [`Registry`], forwards
//! what the client publishes, and delivers what the registry sends it ([`Outbound`]).
//!
//! Layouts, as livekit-server has them:
//! - `/rtc/v1`: one peer connection. The client offers it (possibly already in the join
//!   request) with its `_reliable`/`_lossy` channels; data flows both ways on them.
//! - `/rtc`: the client's publisher connection (client → server data) and, when subscriber
//!   primary, a subscriber connection the server offers right after the join response, on
//!   which it opens its own `_reliable`/`_lossy` channels (server → client data).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use str0m::net::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{channel, unbounded_channel, Receiver, Sender, UnboundedReceiver};
use tokio_tungstenite::tungstenite::Message;

use super::admission::Admission;
use super::http::SignalWs;
use super::peer::{LocalAddrs, PeerOutput, ServerPeer};
use super::rooms::{server_info, Outbound, Registry, Resume};
use super::tcp::{TcpIn, TcpSide, EVENT_QUEUE};
use super::{PING_INTERVAL_SECS, PING_TIMEOUT_SECS};

/// Receive and send buffer asked for each UDP socket.
const UDP_BUFFER_BYTES: usize = 4 << 20;
/// How long one signal message may take to go out before the client counts as gone.
const SIGNAL_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to bring its data channel up after joining.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a participant's task ends: the reason others are told, and whether the client is told
/// to leave (with that reason) first.
struct Ending {
    reason: proto::DisconnectReason,
    tell_client: bool,
    detail: String,
}

impl Ending {
    fn client(detail: impl Into<String>) -> Ending {
        Ending {
            reason: proto::DisconnectReason::ClientInitiated,
            tell_client: false,
            detail: detail.into(),
        }
    }

    fn server(reason: proto::DisconnectReason, detail: impl Into<String>) -> Ending {
        Ending {
            reason,
            tell_client: true,
            detail: detail.into(),
        }
    }
}

/// One peer connection with its UDP socket and its ICE-TCP listener.
struct Link {
    peer: ServerPeer,
    socket: UdpSocket,
    tcp: TcpSide,
}

impl Link {
    /// Binds the UDP socket and the ICE-TCP listener (whose events go to `tcp_events`);
    /// returns them with their addresses for the peer connection's candidates.
    async fn bind(
        subscriber: bool,
        tcp_events: &Sender<TcpIn>,
    ) -> std::io::Result<(UdpSocket, TcpSide, LocalAddrs)> {
        let (socket, udp) = Self::bind_udp()?;
        let tcp = TcpSide::bind(subscriber, tcp_events.clone()).await?;
        let local = LocalAddrs {
            udp,
            tcp: Some(tcp.local()),
        };
        Ok((socket, tcp, local))
    }

    /// A loopback UDP socket with room for a burst: a 230 kB frame arrives as ~200 datagrams
    /// at once, more than the default receive buffer holds, and every datagram dropped there
    /// costs the SCTP stream a retransmission timeout (a second).
    fn bind_udp() -> std::io::Result<(UdpSocket, SocketAddr)> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // Best effort: the kernel caps it at `net.core.rmem_max` / `wmem_max`.
        let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)).into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let addr = socket.local_addr()?;
        Ok((socket, addr))
    }

    /// Sends what the peer wants sent; returns its next timeout and the events to handle.
    async fn drain(&mut self, events: &mut Vec<PeerOutput>) -> Instant {
        loop {
            match self.peer.poll() {
                PeerOutput::Transmit(Protocol::Tcp, dest, data) => self.tcp.send(dest, &data),
                PeerOutput::Transmit(_, dest, data) => {
                    if let Err(e) = self.socket.send_to(&data, dest).await {
                        log::debug!("sfu: udp send to {dest} failed: {e}");
                    }
                }
                PeerOutput::Timeout(t) => return t,
                other => events.push(other),
            }
        }
    }
}

/// How long a simulated signal failure on resume stays armed (livekit-server: 5 s).
const SIMULATION_EXPIRY: Duration = Duration::from_secs(5);
/// How many resumes a `disconnect_signal_on_resume_no_messages` simulation fails.
const SIMULATED_SILENT_CLOSES: u32 = 3;

/// The signal failures on resume a client asked the server to simulate (`SimulateScenario`).
#[derive(Default)]
struct SimulatedResumeFailures {
    /// `disconnect_signal_on_resume`: close the websocket after the next resume's messages.
    close_after_messages: Option<Instant>,
    /// `disconnect_signal_on_resume_no_messages`: close the websocket of the next resumes
    /// before any message, [`SIMULATED_SILENT_CLOSES`] times.
    close_before_messages: Option<(Instant, u32)>,
}

impl SimulatedResumeFailures {
    /// Whether this resume's websocket is closed before any message.
    fn close_before_messages(&mut self, now: Instant) -> bool {
        let Some((expiry, closed)) = self.close_before_messages.as_mut() else {
            return false;
        };
        let simulated = now < *expiry;
        if simulated {
            *closed += 1;
        }
        if *closed >= SIMULATED_SILENT_CLOSES || !simulated {
            self.close_before_messages = None;
        }
        simulated
    }

    /// Whether this resume's websocket is closed after its messages.
    fn close_after_messages(&mut self, now: Instant) -> bool {
        self.close_after_messages
            .take()
            .is_some_and(|expiry| now < expiry)
    }
}

struct Participant {
    registry: Arc<Registry>,
    room: String,
    sid: String,
    identity: String,
    admission: Admission,
    /// `None` between websockets: the client may resume on a new one.
    ws: Option<SignalWs>,
    rx: UnboundedReceiver<Outbound>,
    /// Connections, packets and departures of ICE-TCP clients, on either link.
    tcp_rx: Receiver<TcpIn>,
    publisher: Link,
    subscriber: Option<Link>,
    active: bool,
    /// The highest reliable `DataPacket.sequence` accepted from the client.
    last_reliable_seq: u32,
    joined_at: Instant,
    last_signal: Instant,
    resume_window: Duration,
    /// Silence of the peer connection(s) counts from no earlier than this: the join or the
    /// last resume (the client restarts ICE after it).
    silence_floor: Instant,
    /// When the transport counted as failed; the participant is removed once the rest of the
    /// resume window has passed without a resume.
    transport_failed_at: Option<Instant>,
    next_offer_id: u32,
    simulated: SimulatedResumeFailures,
    /// Only TCP candidates are announced (`switch_candidate_protocol` TCP, as livekit-server's
    /// "prefer TCP").
    tcp_candidates_only: bool,
}

/// Runs a participant from its upgraded websocket to its departure.
pub(super) async fn run(
    registry: Arc<Registry>,
    mut ws: SignalWs,
    admission: Admission,
    resume_window: Duration,
) {
    let (tcp_tx, tcp_rx) = channel(EVENT_QUEUE);
    let (publisher, subscriber) = match bind_links(&admission, &tcp_tx).await {
        Ok(v) => v,
        Err(e) => {
            log::warn!("sfu: cannot set up a peer connection: {e}");
            let _ = ws.close(None).await;
            return;
        }
    };
    let (subscriber, subscriber_offer) = match subscriber {
        Some((link, offer)) => (Some(link), Some(offer)),
        None => (None, None),
    };
    let (tx, rx) = unbounded_channel();
    let joined = registry.join(&admission.room, admission.info.clone(), tx);
    let now = Instant::now();
    let mut p = Participant {
        registry,
        room: admission.room.clone(),
        sid: admission.info.sid.clone(),
        identity: admission.info.identity.clone(),
        admission,
        ws: Some(ws),
        rx,
        tcp_rx,
        publisher,
        subscriber,
        active: false,
        last_reliable_seq: 0,
        joined_at: now,
        last_signal: now,
        resume_window,
        silence_floor: now,
        transport_failed_at: None,
        next_offer_id: 1,
        simulated: SimulatedResumeFailures::default(),
        tcp_candidates_only: false,
    };
    let ending = match p.start(joined, subscriber_offer).await {
        Ok(()) => p.run_loop().await,
        Err(e) => e,
    };
    p.finish(ending).await;
}

/// Serves a resume (a reconnect join): hands the websocket to the participant of that
/// identity, which answers it; refuses it when there is none, as livekit-server does.
pub(super) async fn resume(registry: &Registry, ws: SignalWs, admission: Admission) {
    let (room, identity) = (admission.room.clone(), admission.info.identity.clone());
    let resume = Box::new(Resume { ws, admission });
    if let Err(refused) = registry.hand_over(&room, &identity, resume) {
        log::debug!(
            "sfu: refusing a resume of {}: no such participant",
            refused.admission.resumed_sid
        );
        refuse_resume(refused.ws).await;
    }
}

/// `Leave{STATE_MISMATCH, RECONNECT}` (the client must join afresh), then the websocket ends.
async fn refuse_resume(mut ws: SignalWs) {
    let leave = leave_request(
        proto::DisconnectReason::StateMismatch,
        proto::leave_request::Action::Reconnect,
    );
    let frame = proto::SignalResponse {
        message: Some(Resp::Leave(leave)),
    }
    .encode_to_vec();
    let bye = async {
        let _ = ws.send(Message::Binary(frame.into())).await;
        let _ = ws.close(None).await;
    };
    let _ = tokio::time::timeout(SIGNAL_SEND_TIMEOUT, bye).await;
}

/// A server `Leave`. `action` is what clients of protocol 13 and up act on; older ones read
/// `can_reconnect`, set for every action but `DISCONNECT`.
fn leave_request(
    reason: proto::DisconnectReason,
    action: proto::leave_request::Action,
) -> proto::LeaveRequest {
    proto::LeaveRequest {
        can_reconnect: action != proto::leave_request::Action::Disconnect,
        reason: reason as i32,
        action: action as i32,
        ..Default::default()
    }
}

/// Binds the publisher link and, on `/rtc`, the subscriber link with the server's offer.
async fn bind_links(
    a: &Admission,
    tcp_events: &Sender<TcpIn>,
) -> Result<(Link, Option<(Link, String)>), String> {
    let now = Instant::now();
    let (socket, tcp, local) = Link::bind(false, tcp_events).await.map_err(|e| e.to_string())?;
    let publisher = Link {
        peer: ServerPeer::answerer(now, local)?,
        socket,
        tcp,
    };
    if a.single_pc {
        return Ok((publisher, None));
    }
    let (socket, tcp, local) = Link::bind(true, tcp_events).await.map_err(|e| e.to_string())?;
    let (peer, offer) = ServerPeer::offerer(now, local)?;
    Ok((publisher, Some((Link { peer, socket, tcp }, offer))))
}

impl Participant {
    /// Sends a signal message; without a websocket (between two) it is dropped, as
    /// livekit-server drops them: a resume starts with a full snapshot.
    async fn send_signal(&mut self, msg: Resp) -> Result<(), Ending> {
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        log::trace!("sfu: to {}: {msg:?}", self.sid);
        let frame = proto::SignalResponse { message: Some(msg) }.encode_to_vec();
        // A client that stops reading must not stall its task (and its queue) forever.
        match tokio::time::timeout(SIGNAL_SEND_TIMEOUT, ws.send(Message::Binary(frame.into()))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => self.signal_lost(&format!("signal send failed: {e}")),
            Err(_) => self.signal_lost("signal send timed out"),
        }
    }

    /// The websocket is gone (closed, failed or silent). A participant whose connection is up
    /// stays for a resume, and nobody is told; one that never connected leaves, as on
    /// livekit-server.
    fn signal_lost(&mut self, detail: &str) -> Result<(), Ending> {
        self.ws = None;
        if !self.active {
            return Err(Ending::client(detail));
        }
        log::debug!(
            "sfu: participant {} lost its signal connection ({detail}); kept for a resume",
            self.sid
        );
        Ok(())
    }

    /// Closes the websocket from our side (the client is expected to resume).
    async fn close_signal(&mut self, detail: &str) -> Result<(), Ending> {
        if let Some(mut ws) = self.ws.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
        }
        self.signal_lost(detail)
    }

    /// Our SDP as announced: without its UDP candidates while only TCP ones are.
    fn announced(&self, sdp: String) -> String {
        if self.tcp_candidates_only {
            without_udp_candidates(&sdp)
        } else {
            sdp
        }
    }

    fn take_offer_id(&mut self) -> u32 {
        let id = self.next_offer_id;
        self.next_offer_id += 1;
        id
    }

    /// Join response, then the subscriber offer (`/rtc`) or the answer to an offer carried in
    /// the join request (`/rtc/v1`).
    async fn start(
        &mut self,
        joined: super::rooms::Joined,
        subscriber_offer: Option<String>,
    ) -> Result<(), Ending> {
        let mut me = self.admission.info.clone();
        me.state = proto::participant_info::State::Joined as i32;
        me.version = 1;
        let join = proto::JoinResponse {
            room: Some(joined.room),
            participant: Some(me),
            other_participants: joined.others,
            server_version: joined.server_info.version.clone(),
            server_info: Some(joined.server_info),
            subscriber_primary: self.admission.subscriber_primary,
            ping_interval: PING_INTERVAL_SECS,
            ping_timeout: PING_TIMEOUT_SECS,
            ..Default::default()
        };
        self.send_signal(Resp::Join(join)).await?;
        if let Some(sdp) = subscriber_offer {
            self.send_subscriber_offer(sdp).await?;
        }
        if let Some(offer) = self.admission.publisher_offer.take() {
            self.answer_offer(offer).await?;
        }
        Ok(())
    }

    async fn send_subscriber_offer(&mut self, sdp: String) -> Result<(), Ending> {
        let offer = proto::SessionDescription {
            r#type: "offer".into(),
            sdp: self.announced(sdp),
            id: self.take_offer_id(),
            ..Default::default()
        };
        let sdp = offer.sdp.clone();
        self.send_signal(Resp::Offer(offer)).await?;
        self.trickle_local_candidates(&sdp, proto::SignalTarget::Subscriber)
            .await
    }

    /// Answers a resume on its new websocket, as livekit-server does: `ReconnectResponse`
    /// (with the last reliable sequence accepted from the client), a snapshot of every
    /// participant and the room, then, on `/rtc`, an ICE-restart offer of the subscriber
    /// connection. On `/rtc/v1` the client restarts ICE by its own offer.
    async fn on_resume(&mut self, resume: Resume) -> Result<(), Ending> {
        let now = Instant::now();
        log::debug!(
            "sfu: participant {} resumes (reason {})",
            self.sid,
            resume.admission.reconnect_reason
        );
        if let Some(mut old) = self.ws.replace(resume.ws) {
            let _ = tokio::time::timeout(Duration::from_millis(100), old.close(None)).await;
        }
        self.last_signal = now;
        self.silence_floor = now;
        self.transport_failed_at = None;
        if self.simulated.close_before_messages(now) {
            return self
                .close_signal("simulated signal loss on resume, before any message")
                .await;
        }
        let reconnect = proto::ReconnectResponse {
            ice_servers: Vec::new(),
            client_configuration: Some(proto::ClientConfiguration::default()),
            server_info: Some(server_info()),
            last_message_seq: self.last_reliable_seq,
        };
        self.send_signal(Resp::Reconnect(reconnect)).await?;
        if let Some((room, participants)) = self.registry.room_snapshot(&self.room) {
            self.send_signal(Resp::Update(proto::ParticipantUpdate { participants }))
                .await?;
            self.send_signal(Resp::RoomUpdate(proto::RoomUpdate { room: Some(room) }))
                .await?;
        }
        self.restart_subscriber_ice().await?;
        if self.simulated.close_after_messages(now) {
            return self.close_signal("simulated signal loss on resume").await;
        }
        Ok(())
    }

    /// Re-offers the subscriber connection (if any, and once it was negotiated) with new ICE
    /// credentials.
    async fn restart_subscriber_ice(&mut self) -> Result<(), Ending> {
        let Some(link) = self.subscriber.as_mut() else {
            return Ok(());
        };
        if link.peer.awaits_answer() {
            return Ok(());
        }
        let sdp = link.peer.ice_restart_offer().map_err(|e| {
            Ending::server(
                proto::DisconnectReason::StateMismatch,
                format!("ICE restart: {e}"),
            )
        })?;
        self.send_subscriber_offer(sdp).await
    }

    async fn answer_offer(&mut self, offer: proto::SessionDescription) -> Result<(), Ending> {
        match self.publisher.peer.accept_offer(&offer.sdp) {
            Ok(sdp) => {
                let answer = proto::SessionDescription {
                    r#type: "answer".into(),
                    sdp: self.announced(sdp),
                    id: offer.id,
                    mid_to_track_id: Default::default(),
                };
                let sdp = answer.sdp.clone();
                self.send_signal(Resp::Answer(answer)).await?;
                self.trickle_local_candidates(&sdp, proto::SignalTarget::Publisher)
                    .await
            }
            Err(e) => Err(Ending::server(
                proto::DisconnectReason::StateMismatch,
                format!("publisher offer rejected: {e}"),
            )),
        }
    }

    /// Trickles our candidates for the first m-section that is not rejected, as livekit-server
    /// does. str0m writes them only into the first m-section of its SDP, and clients that
    /// bundle on a later one (the official clients offer media sections before the data one)
    /// ignore candidates of a rejected section.
    async fn trickle_local_candidates(
        &mut self,
        sdp: &str,
        target: proto::SignalTarget,
    ) -> Result<(), Ending> {
        for init in candidate_inits(sdp) {
            let trickle = proto::TrickleRequest {
                candidate_init: init,
                target: target as i32,
                r#final: false,
            };
            self.send_signal(Resp::Trickle(trickle)).await?;
        }
        Ok(())
    }

    async fn run_loop(&mut self) -> Ending {
        let mut buf = vec![0u8; 65_536];
        let mut sub_buf = vec![0u8; 65_536];
        loop {
            let deadline = match self.drive_peers().await {
                Ok(t) => t,
                Err(e) => return e,
            };
            let deadline = deadline.min(self.next_check());
            let step = tokio::select! {
                msg = next_frame(self.ws.as_mut()) => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        self.last_signal = Instant::now();
                        self.on_signal_frame(&b).await
                    }
                    Some(Ok(Message::Close(_))) | None => self.signal_lost("signal connection closed"),
                    Some(Ok(_)) => {
                        self.last_signal = Instant::now();
                        Ok(())
                    }
                    Some(Err(e)) => self.signal_lost(&format!("signal connection failed: {e}")),
                },
                out = self.rx.recv() => match out {
                    Some(out) => self.on_outbound(out).await,
                    None => Err(Ending::server(proto::DisconnectReason::ServerShutdown, "server stopped")),
                },
                r = self.publisher.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.publisher.peer.handle_receive(Instant::now(), Protocol::Udp, from, &buf[..n]);
                    }
                    Ok(())
                }
                r = recv_opt(self.subscriber.as_ref().map(|l| &l.socket), &mut sub_buf) => {
                    if let (Ok((n, from)), Some(link)) = (r, self.subscriber.as_mut()) {
                        link.peer.handle_receive(Instant::now(), Protocol::Udp, from, &sub_buf[..n]);
                    }
                    Ok(())
                }
                Some(event) = self.tcp_rx.recv() => {
                    self.on_tcp(event);
                    Ok(())
                }
                _ = tokio::time::sleep_until(deadline.into()) => Ok(()),
            };
            if let Err(e) = step {
                return e;
            }
            if let Err(e) = self.check_timers(Instant::now()).await {
                return e;
            }
        }
    }

    fn ping_timeout() -> Duration {
        Duration::from_secs(PING_TIMEOUT_SECS as u64)
    }

    /// An ICE-TCP connection event, or a packet on one, for the link it belongs to.
    fn on_tcp(&mut self, event: TcpIn) {
        let subscriber = match &event {
            TcpIn::Connected(s, ..) | TcpIn::Packet(s, ..) | TcpIn::Closed(s, ..) => *s,
        };
        let link = match (subscriber, self.subscriber.as_mut()) {
            (true, Some(link)) => link,
            (true, None) => return,
            (false, _) => &mut self.publisher,
        };
        link.tcp.on_event(&event);
        if let TcpIn::Packet(_, from, packet) = event {
            link.peer
                .handle_receive(Instant::now(), Protocol::Tcp, from, &packet);
        }
    }

    /// Silence after which the transport counts as failed: three quarters of the window.
    fn transport_failure_after(&self) -> Duration {
        self.resume_window * 3 / 4
    }

    /// Since when the client has been silent on a connection it used (the earliest last
    /// datagram of its connections, not before the join or the last resume).
    fn silent_since(&self) -> Instant {
        std::iter::once(&self.publisher)
            .chain(self.subscriber.as_ref())
            .filter_map(|link| link.peer.last_heard())
            .min()
            .unwrap_or(self.silence_floor)
            .max(self.silence_floor)
    }

    /// The next instant a timer of [`Participant::check_timers`] may fire.
    fn next_check(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let signal = self
            .ws
            .as_ref()
            .map_or(far, |_| self.last_signal + Self::ping_timeout());
        let connect = if self.active {
            far
        } else {
            self.joined_at + CONNECT_TIMEOUT
        };
        let transport = match self.transport_failed_at {
            Some(failed) => failed + (self.resume_window - self.transport_failure_after()),
            None if self.active => self.silent_since() + self.transport_failure_after(),
            None => far,
        };
        signal.min(connect).min(transport)
    }

    /// Signal silence (the websocket is dropped), a connection that never came up, a failed
    /// transport (the client is told to resume), a resume window that ran out, peer timers.
    async fn check_timers(&mut self, now: Instant) -> Result<(), Ending> {
        if self.ws.is_some() && now >= self.last_signal + Self::ping_timeout() {
            self.close_signal("signal ping timeout").await?;
        }
        if !self.active && now >= self.joined_at + CONNECT_TIMEOUT {
            return Err(Ending::server(
                proto::DisconnectReason::JoinFailure,
                "data channel did not open in time",
            ));
        }
        match self.transport_failed_at {
            Some(failed) if now >= failed + (self.resume_window - self.transport_failure_after()) => {
                return Err(Ending {
                    reason: proto::DisconnectReason::ConnectionTimeout,
                    tell_client: false,
                    detail: "not resumed in time after the connection failed".into(),
                });
            }
            None if self.active && now >= self.silent_since() + self.transport_failure_after() => {
                self.on_transport_failed(now).await?;
            }
            _ => {}
        }
        for link in std::iter::once(&mut self.publisher).chain(self.subscriber.as_mut()) {
            if let Err(e) = link.peer.handle_timeout(now) {
                return Err(Ending::server(proto::DisconnectReason::ConnectionTimeout, e));
            }
        }
        Ok(())
    }

    /// The client went silent on its connection: as livekit-server, tell it to resume
    /// (protocol 13 and up), close the websocket and wait the rest of the window for it.
    async fn on_transport_failed(&mut self, now: Instant) -> Result<(), Ending> {
        log::debug!(
            "sfu: participant {}: connection failed, waiting for a resume",
            self.sid
        );
        self.transport_failed_at = Some(now);
        if self.admission.protocol > 12 {
            let leave = leave_request(
                proto::DisconnectReason::ConnectionTimeout,
                proto::leave_request::Action::Resume,
            );
            self.send_signal(Resp::Leave(leave)).await?;
        }
        self.close_signal("connection failed").await
    }

    /// Drains both peers, handles their events; returns the earliest timeout.
    async fn drive_peers(&mut self) -> Result<Instant, Ending> {
        let mut events = Vec::new();
        let mut deadline = self.publisher.drain(&mut events).await;
        for event in std::mem::take(&mut events) {
            self.on_peer_event(false, event)?;
        }
        if let Some(link) = self.subscriber.as_mut() {
            deadline = deadline.min(link.drain(&mut events).await);
        }
        for event in events {
            self.on_peer_event(true, event)?;
        }
        Ok(deadline)
    }

    /// The link data goes to the client on: the subscriber on `/rtc`, else the publisher.
    fn data_link(&mut self) -> &mut Link {
        match self.subscriber.as_mut() {
            Some(link) => link,
            None => &mut self.publisher,
        }
    }

    fn on_peer_event(&mut self, subscriber: bool, event: PeerOutput) -> Result<(), Ending> {
        match event {
            PeerOutput::Open => {
                let data_link_open = self.data_link().peer.is_open();
                if !self.active && data_link_open {
                    self.active = true;
                    self.registry.set_active(&self.room, &self.sid);
                }
            }
            PeerOutput::Data(reliable, bytes) => self.on_data(reliable, &bytes),
            PeerOutput::Closed { by_remote, reason } => {
                let which = if subscriber { "subscriber" } else { "publisher" };
                let detail = format!("{which} connection: {reason}");
                // A client that closes its peer connection is leaving (its `Leave` may follow).
                return Err(if by_remote {
                    Ending::client(detail)
                } else {
                    Ending::server(proto::DisconnectReason::ConnectionTimeout, detail)
                });
            }
            PeerOutput::Transmit(..) | PeerOutput::Timeout(_) => {}
        }
        Ok(())
    }

    /// A packet the client published: stamped with its identity and SID, then routed.
    /// Reliable packets at or below the last sequence accepted from the client are resends
    /// after a resume and are dropped, as livekit-server does.
    fn on_data(&mut self, reliable: bool, bytes: &[u8]) {
        if !self.admission.can_publish_data {
            return;
        }
        let Ok(mut packet) = proto::DataPacket::decode(bytes) else {
            log::debug!("sfu: dropping an undecodable data packet from {}", self.sid);
            return;
        };
        if reliable && packet.sequence > 0 {
            if packet.sequence <= self.last_reliable_seq {
                log::debug!(
                    "sfu: dropping reliable packet {} from {} (already accepted up to {})",
                    packet.sequence,
                    self.sid,
                    self.last_reliable_seq
                );
                return;
            }
            self.last_reliable_seq = packet.sequence;
        }
        stamp(&mut packet, &self.sid, &self.identity, reliable);
        self.registry.route(&self.room, &self.sid, &packet, reliable);
    }

    async fn on_outbound(&mut self, out: Outbound) -> Result<(), Ending> {
        match out {
            Outbound::Signal(msg) => self.send_signal(*msg).await,
            Outbound::Data(reliable, bytes) => self
                .data_link()
                .peer
                .send(reliable, bytes)
                .map_err(|e| Ending::server(proto::DisconnectReason::ConnectionTimeout, e)),
            Outbound::Close(reason) => Err(Ending::server(reason, "asked to leave")),
            Outbound::Resume(resume) => self.on_resume(*resume).await,
        }
    }

    async fn on_signal_frame(&mut self, frame: &[u8]) -> Result<(), Ending> {
        let Ok(req) = proto::SignalRequest::decode(frame) else {
            log::debug!("sfu: ignoring an undecodable signal frame");
            return Ok(());
        };
        let Some(msg) = req.message else {
            return Ok(());
        };
        self.on_signal(msg).await
    }

    async fn on_signal(&mut self, msg: Req) -> Result<(), Ending> {
        log::trace!("sfu: {} sent {msg:?}", self.sid);
        match msg {
            Req::Offer(offer) => self.answer_offer(offer).await?,
            Req::Answer(answer) => {
                if let Some(link) = self.subscriber.as_mut() {
                    if let Err(e) = link.peer.accept_answer(&answer.sdp) {
                        return Err(Ending::server(
                            proto::DisconnectReason::StateMismatch,
                            format!("subscriber answer rejected: {e}"),
                        ));
                    }
                }
            }
            Req::Trickle(t) => self.on_trickle(&t),
            Req::Leave(_) => return Err(Ending::client("client left")),
            Req::Ping(_) => {
                self.send_signal(Resp::Pong(now_ms())).await?;
            }
            Req::PingReq(ping) => {
                let pong = proto::Pong {
                    last_ping_timestamp: ping.timestamp,
                    timestamp: now_ms(),
                };
                self.send_signal(Resp::PongResp(pong)).await?;
            }
            Req::UpdateMetadata(update) => self.on_update_metadata(update).await?,
            Req::AddTrack(add) => {
                let refusal = proto::RequestResponse {
                    reason: proto::request_response::Reason::NotAllowed as i32,
                    message: "this SFU carries data only; media tracks are not supported".into(),
                    request: Some(proto::request_response::Request::AddTrack(add)),
                    ..Default::default()
                };
                self.send_signal(Resp::RequestResponse(refusal)).await?;
            }
            Req::PublishDataTrackRequest(request) => {
                let refusal = proto::RequestResponse {
                    reason: proto::request_response::Reason::NotAllowed as i32,
                    message: "data tracks are not supported".into(),
                    request: Some(proto::request_response::Request::PublishDataTrack(request)),
                    ..Default::default()
                };
                self.send_signal(Resp::RequestResponse(refusal)).await?;
            }
            // A data-only participant publishes and subscribes to no track; its SDPs, channels
            // and receive states need nothing from the server (livekit-server ignores them too).
            Req::SyncState(_) => {}
            Req::Simulate(simulate) => self.on_simulate(simulate).await?,
            _ => log::trace!("sfu: ignoring a signal request"),
        }
        Ok(())
    }

    /// The scenarios of livekit-server's `SimulateScenario` that concern a data-only
    /// participant: node failure and migration (removed without a `Leave`, the websocket
    /// closed), server leave (`Leave{DISCONNECT, SERVER_SHUTDOWN}`), and signal failures on
    /// the next resume(s) within 5 s.
    async fn on_simulate(&mut self, simulate: proto::SimulateScenario) -> Result<(), Ending> {
        use proto::simulate_scenario::Scenario;
        let silently = |reason, detail: &str| Ending {
            reason,
            tell_client: false,
            detail: detail.to_string(),
        };
        let expiry = Instant::now() + SIMULATION_EXPIRY;
        match simulate.scenario {
            Some(Scenario::NodeFailure(_)) => Err(silently(
                proto::DisconnectReason::ServerShutdown,
                "simulated node failure",
            )),
            Some(Scenario::Migration(_)) => Err(silently(
                proto::DisconnectReason::Migration,
                "simulated migration",
            )),
            Some(Scenario::ServerLeave(_)) => Err(Ending::server(
                proto::DisconnectReason::ServerShutdown,
                "simulated server leave",
            )),
            Some(Scenario::SwitchCandidateProtocol(protocol)) => {
                // TLS means TURN/TLS, which this SFU does not serve: nothing changes.
                match proto::CandidateProtocol::try_from(protocol) {
                    Ok(proto::CandidateProtocol::Tcp) => self.tcp_candidates_only = true,
                    Ok(proto::CandidateProtocol::Udp) => self.tcp_candidates_only = false,
                    _ => return Ok(()),
                }
                // As livekit-server: an ICE restart, which only re-offers the subscriber; on
                // `/rtc/v1` the client's next (restart) offer gets the filtered answer.
                self.restart_subscriber_ice().await
            }
            Some(Scenario::DisconnectSignalOnResume(_)) => {
                self.simulated.close_after_messages = Some(expiry);
                Ok(())
            }
            Some(Scenario::DisconnectSignalOnResumeNoMessages(_)) => {
                self.simulated.close_before_messages = Some((expiry, 0));
                Ok(())
            }
            _ => {
                log::trace!("sfu: ignoring a simulated scenario");
                Ok(())
            }
        }
    }

    fn on_trickle(&mut self, t: &proto::TrickleRequest) {
        let Ok(init) = serde_json::from_str::<serde_json::Value>(&t.candidate_init) else {
            return;
        };
        let candidate = init["candidate"].as_str().unwrap_or_default();
        let to_subscriber = t.target == proto::SignalTarget::Subscriber as i32;
        let link = match (to_subscriber, self.subscriber.as_mut()) {
            (true, Some(link)) => link,
            _ => &mut self.publisher,
        };
        if let Err(e) = link.peer.add_remote_candidate(candidate) {
            log::debug!("sfu: ignoring a remote candidate: {e}");
        }
    }

    /// The client's own name / metadata / attributes update, applied and broadcast when the
    /// token grants `canUpdateOwnMetadata`; answered with a `RequestResponse` as livekit-server
    /// does (success answers only for protocol 15 and up).
    async fn on_update_metadata(&mut self, update: proto::UpdateParticipantMetadata) -> Result<(), Ending> {
        let allowed = self.admission.can_update_metadata;
        if allowed {
            let u = update.clone();
            self.registry.update(&self.room, &self.sid, true, move |info| {
                if !u.name.is_empty() {
                    info.name = u.name;
                }
                if !u.metadata.is_empty() {
                    info.metadata = u.metadata;
                }
                for (k, v) in u.attributes {
                    if v.is_empty() {
                        info.attributes.remove(&k);
                    } else {
                        info.attributes.insert(k, v);
                    }
                }
            });
        }
        if allowed && self.admission.protocol <= 14 {
            return Ok(());
        }
        let (reason, message) = if allowed {
            (proto::request_response::Reason::Ok, String::new())
        } else {
            (
                proto::request_response::Reason::NotAllowed,
                "does not have permission to update own metadata".to_string(),
            )
        };
        let response = proto::RequestResponse {
            request_id: update.request_id,
            reason: reason as i32,
            message,
            request: Some(proto::request_response::Request::UpdateMetadata(update)),
        };
        self.send_signal(Resp::RequestResponse(response)).await
    }

    /// Leaves the room, tells the client why when the server ends it, closes everything.
    async fn finish(mut self, ending: Ending) {
        log::debug!("sfu: participant {} leaves: {}", self.sid, ending.detail);
        self.registry.leave(&self.room, &self.sid, ending.reason);
        // Resumes handed over before the registry let go of this participant are refused.
        let mut refused = Vec::new();
        while let Ok(out) = self.rx.try_recv() {
            if let Outbound::Resume(resume) = out {
                refused.push(resume.ws);
            }
        }
        if ending.tell_client {
            let leave = leave_request(ending.reason, proto::leave_request::Action::Disconnect);
            let _ =
                tokio::time::timeout(Duration::from_millis(500), self.send_signal(Resp::Leave(leave))).await;
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
        }
        for ws in refused {
            refuse_resume(ws).await;
        }
        self.publisher.peer.close();
        if let Some(link) = self.subscriber.as_mut() {
            link.peer.close();
        }
    }
}

/// The next frame of the websocket; pends forever without one.
async fn next_frame(
    ws: Option<&mut SignalWs>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// Stamps the sender on a packet as livekit-server does: its SID, its identity (also inside
/// user packets), and the kind of channel it arrived on.
// The user packet's own sender and destination fields are deprecated but still read by
// older clients, so they are kept in step as livekit-server does.
#[allow(deprecated)]
fn stamp(packet: &mut proto::DataPacket, sid: &str, identity: &str, reliable: bool) {
    packet.participant_sid = sid.to_string();
    packet.participant_identity = identity.to_string();
    packet.kind = if reliable {
        proto::data_packet::Kind::Reliable as i32
    } else {
        proto::data_packet::Kind::Lossy as i32
    };
    if let Some(proto::data_packet::Value::User(user)) = packet.value.as_mut() {
        user.participant_sid = sid.to_string();
        user.participant_identity = identity.to_string();
        if packet.destination_identities.is_empty() {
            packet.destination_identities = user.destination_identities.clone();
        } else {
            user.destination_identities = packet.destination_identities.clone();
        }
    }
}

/// `sdp` without its UDP `a=candidate` lines.
fn without_udp_candidates(sdp: &str) -> String {
    let is_udp_candidate = |line: &str| {
        line.strip_prefix("a=candidate:")
            .and_then(|c| c.split_whitespace().nth(2))
            .is_some_and(|transport| transport.eq_ignore_ascii_case("udp"))
    };
    sdp.split_inclusive('\n')
        .filter(|line| !is_udp_candidate(line))
        .collect()
}

/// `candidate_init` JSON for every candidate of `sdp`, addressed to its first m-section whose
/// port is not 0 (the bundled transport).
fn candidate_inits(sdp: &str) -> Vec<String> {
    let mut sections = sdp.split("\nm=").skip(1).enumerate();
    let Some((index, section)) = sections.find(|(_, s)| s.split_whitespace().nth(1) != Some("0")) else {
        return Vec::new();
    };
    let attribute = |name: &str| {
        section
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(name).map(str::to_string))
    };
    let mid = attribute("a=mid:").unwrap_or_default();
    let ufrag = attribute("a=ice-ufrag:");
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|candidate| {
            serde_json::json!({
                "candidate": candidate,
                "sdpMid": mid,
                "sdpMLineIndex": index,
                "usernameFragment": ufrag,
            })
            .to_string()
        })
        .collect()
}

fn now_ms() -> i64 {
    crate::dev::token::unix_now().as_millis() as i64
}

/// Receives on an optional socket; pends forever without one.
async fn recv_opt(sock: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_candidates_can_be_left_out() {
        let sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=candidate:1 1 udp 2130706175 127.0.0.1 5000 typ host\r\na=candidate:2 1 tcp 1500 127.0.0.1 5001 typ host tcptype passive\r\na=mid:0\r\n";
        let tcp_only = without_udp_candidates(sdp);
        assert_eq!(
            tcp_only,
            "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=candidate:2 1 tcp 1500 127.0.0.1 5001 typ host tcptype passive\r\na=mid:0\r\n"
        );
        assert_eq!(candidate_inits(&tcp_only).len(), 1);
    }

    #[test]
    fn candidates_are_trickled_for_the_bundled_section() {
        let sdp = "v=0\r\na=ice-lite\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=candidate:1 1 udp 2130706175 127.0.0.1 5000 typ host\r\na=mid:0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=ice-ufrag:uf\r\na=mid:6\r\n";
        let inits = candidate_inits(sdp);
        assert_eq!(inits.len(), 1);
        let init: serde_json::Value = serde_json::from_str(&inits[0]).unwrap();
        assert_eq!(init["sdpMid"], "6");
        assert_eq!(init["sdpMLineIndex"], 1);
        assert_eq!(init["usernameFragment"], "uf");
        assert_eq!(
            init["candidate"],
            "candidate:1 1 udp 2130706175 127.0.0.1 5000 typ host"
        );
        assert!(candidate_inits("v=0\r\n").is_empty());
    }

    #[test]
    #[allow(deprecated)] // the user packet's own sender fields
    fn stamping_overrides_the_claimed_sender() {
        let mut packet = proto::DataPacket {
            participant_identity: "someone-else".into(),
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                participant_identity: "forged".into(),
                destination_identities: vec!["b".into()],
                payload: b"hi".to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        stamp(&mut packet, "PA_a", "a", true);
        assert_eq!(packet.participant_identity, "a");
        assert_eq!(packet.participant_sid, "PA_a");
        assert_eq!(packet.destination_identities, vec!["b".to_string()]);
        let Some(proto::data_packet::Value::User(user)) = packet.value else {
            panic!("user packet expected");
        };
        assert_eq!(
            (user.participant_identity.as_str(), user.payload.as_slice()),
            ("a", &b"hi"[..])
        );
    }
}
