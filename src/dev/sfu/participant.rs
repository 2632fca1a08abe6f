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
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::admission::Admission;
use super::peer::{PeerOutput, ServerPeer};
use super::rooms::{Outbound, Registry};
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

/// One peer connection with its socket.
struct Link {
    peer: ServerPeer,
    socket: UdpSocket,
}

impl Link {
    /// A loopback UDP socket with room for a burst: a 230 kB frame arrives as ~200 datagrams
    /// at once, more than the default receive buffer holds, and every datagram dropped there
    /// costs the SCTP stream a retransmission timeout (a second).
    async fn bind() -> std::io::Result<(UdpSocket, SocketAddr)> {
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
                PeerOutput::Transmit(dest, data) => {
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

type Ws<S> = WebSocketStream<S>;

struct Participant<S> {
    registry: Arc<Registry>,
    room: String,
    sid: String,
    identity: String,
    admission: Admission,
    ws: Ws<S>,
    rx: UnboundedReceiver<Outbound>,
    publisher: Link,
    subscriber: Option<Link>,
    active: bool,
    last_reliable_seq: u32,
    joined_at: Instant,
}

/// Runs a participant from its upgraded websocket to its departure.
pub(super) async fn run<S>(registry: Arc<Registry>, mut ws: Ws<S>, admission: Admission)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (publisher, subscriber) = match bind_links(&admission).await {
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
    let mut p = Participant {
        registry,
        room: admission.room.clone(),
        sid: admission.info.sid.clone(),
        identity: admission.info.identity.clone(),
        admission,
        ws,
        rx,
        publisher,
        subscriber,
        active: false,
        last_reliable_seq: 0,
        joined_at: Instant::now(),
    };
    let ending = match p.start(joined, subscriber_offer).await {
        Ok(()) => p.run_loop().await,
        Err(e) => e,
    };
    p.finish(ending).await;
}

/// Binds the publisher link and, on `/rtc`, the subscriber link with the server's offer.
async fn bind_links(a: &Admission) -> Result<(Link, Option<(Link, String)>), String> {
    let now = Instant::now();
    let (socket, addr) = Link::bind().await.map_err(|e| e.to_string())?;
    let publisher = Link {
        peer: ServerPeer::answerer(now, addr)?,
        socket,
    };
    if a.single_pc {
        return Ok((publisher, None));
    }
    let (socket, addr) = Link::bind().await.map_err(|e| e.to_string())?;
    let (peer, offer) = ServerPeer::offerer(now, addr)?;
    Ok((publisher, Some((Link { peer, socket }, offer))))
}

impl<S> Participant<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    async fn send_signal(&mut self, msg: Resp) -> Result<(), Ending> {
        log::trace!("sfu: to {}: {msg:?}", self.sid);
        let frame = proto::SignalResponse { message: Some(msg) }.encode_to_vec();
        // A client that stops reading must not stall its task (and its queue) forever.
        match tokio::time::timeout(SIGNAL_SEND_TIMEOUT, self.ws.send(Message::Binary(frame.into()))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Ending::client(format!("signal send failed: {e}"))),
            Err(_) => Err(Ending::client("signal send timed out")),
        }
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
            let offer = proto::SessionDescription {
                r#type: "offer".into(),
                sdp,
                id: 1,
                ..Default::default()
            };
            self.send_signal(Resp::Offer(offer.clone())).await?;
            self.trickle_local_candidates(&offer.sdp, proto::SignalTarget::Subscriber)
                .await?;
        }
        if let Some(offer) = self.admission.publisher_offer.take() {
            self.answer_offer(offer).await?;
        }
        Ok(())
    }

    async fn answer_offer(&mut self, offer: proto::SessionDescription) -> Result<(), Ending> {
        match self.publisher.peer.accept_offer(&offer.sdp) {
            Ok(sdp) => {
                let answer = proto::SessionDescription {
                    r#type: "answer".into(),
                    sdp,
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
        let mut last_signal = Instant::now();
        let ping_timeout = Duration::from_secs(PING_TIMEOUT_SECS as u64);
        loop {
            let deadline = match self.drive_peers().await {
                Ok(t) => t,
                Err(e) => return e,
            };
            let mut deadline = deadline.min(last_signal + ping_timeout);
            if !self.active {
                deadline = deadline.min(self.joined_at + CONNECT_TIMEOUT);
            }
            tokio::select! {
                msg = self.ws.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        last_signal = Instant::now();
                        if let Err(e) = self.on_signal_frame(&b).await {
                            return e;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return Ending::client("signal connection closed"),
                    Some(Ok(_)) => last_signal = Instant::now(),
                    Some(Err(e)) => return Ending::client(format!("signal connection failed: {e}")),
                },
                out = self.rx.recv() => match out {
                    Some(out) => if let Err(e) = self.on_outbound(out).await { return e; },
                    None => return Ending::server(proto::DisconnectReason::ServerShutdown, "server stopped"),
                },
                r = self.publisher.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.publisher.peer.handle_receive(Instant::now(), from, &buf[..n]);
                    }
                }
                r = recv_opt(self.subscriber.as_ref().map(|l| &l.socket), &mut sub_buf) => {
                    if let (Ok((n, from)), Some(link)) = (r, self.subscriber.as_mut()) {
                        link.peer.handle_receive(Instant::now(), from, &sub_buf[..n]);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            if now >= last_signal + ping_timeout {
                return Ending::server(proto::DisconnectReason::SignalClose, "signal ping timeout");
            }
            if !self.active && now >= self.joined_at + CONNECT_TIMEOUT {
                return Ending::server(
                    proto::DisconnectReason::JoinFailure,
                    "data channel did not open in time",
                );
            }
            for link in std::iter::once(&mut self.publisher).chain(self.subscriber.as_mut()) {
                if let Err(e) = link.peer.handle_timeout(now) {
                    return Ending::server(proto::DisconnectReason::ConnectionTimeout, e);
                }
            }
        }
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
    fn on_data(&mut self, reliable: bool, bytes: &[u8]) {
        if !self.admission.can_publish_data {
            return;
        }
        let Ok(mut packet) = proto::DataPacket::decode(bytes) else {
            log::debug!("sfu: dropping an undecodable data packet from {}", self.sid);
            return;
        };
        if reliable && packet.sequence > 0 {
            // Replays after a resume carry sequences already forwarded.
            if packet.sequence <= self.last_reliable_seq {
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
            _ => log::trace!("sfu: ignoring a signal request"),
        }
        Ok(())
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
        if ending.tell_client {
            let leave = proto::LeaveRequest {
                can_reconnect: false,
                reason: ending.reason as i32,
                action: proto::leave_request::Action::Disconnect as i32,
                ..Default::default()
            };
            let _ =
                tokio::time::timeout(Duration::from_millis(500), self.send_signal(Resp::Leave(leave))).await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.ws.close(None)).await;
        self.publisher.peer.close();
        if let Some(link) = self.subscriber.as_mut() {
            link.peer.close();
        }
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
