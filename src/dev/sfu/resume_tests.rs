//! Resumes through the SFU, driven by hand with the live layer's own pieces (its `Peer` over a
//! UDP socket, its resume URL builders and `SyncState`), as `live::resume_wire_check` does
//! against livekit-server: the same steps must pass here. Also a client that reaches the SFU
//! over ICE-TCP only. Loopback only, every wait bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio_tungstenite::tungstenite::Message;

use super::{Sfu, SfuOptions};
use crate::dev::token::{mint_livekit_token, TokenOptions};
use crate::dev::LiveKitSettings;
use crate::live::peer::{Peer, PeerOutput, StunTiming};
use crate::live::signal::{self, SyncStateParts};
use crate::live::ws::Ws;

const WAIT: Duration = Duration::from_secs(10);
const REASON: proto::ReconnectReason = proto::ReconnectReason::RrSignalDisconnected;

fn token(sfu: &Sfu, room: &str, identity: &str) -> String {
    let settings = LiveKitSettings {
        url: sfu.url(),
        api_key: "devkey".into(),
        api_secret: "secret".into(),
    };
    mint_livekit_token(
        &settings,
        room,
        identity,
        identity,
        Duration::from_secs(600),
        &TokenOptions::default(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next signal response within `limit`; `None` when the websocket ends or nothing comes.
async fn next_response(ws: &mut Ws, limit: Duration) -> Option<Resp> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => return Some(signal::decode_response(&b).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Every signal response until the websocket ends (or `limit`).
async fn until_closed(ws: &mut Ws, limit: Duration) -> (Vec<Resp>, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => out.push(signal::decode_response(&b).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return (out, true),
            Ok(Some(Ok(_))) => {}
            Err(_) => return (out, false),
        }
    }
}

async fn send(ws: &mut Ws, req: Req) {
    ws.send(Message::Binary(signal::encode_request(req).into()))
        .await
        .unwrap();
}

fn leave_of(msgs: &[Resp]) -> Option<&proto::LeaveRequest> {
    msgs.iter().find_map(|m| match m {
        Resp::Leave(l) => Some(l),
        _ => None,
    })
}

fn ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:").map(str::to_owned))
}

/// A bare single-PC participant: our `Peer` over a UDP socket, signalled by hand.
struct MiniClient {
    ws: Ws,
    socket: tokio::net::UdpSocket,
    peer: Peer,
    sid: String,
    open: bool,
    received: Vec<proto::DataPacket>,
    /// Signal responses other than answers and trickles, in order.
    signals: Vec<Resp>,
    signal_closed: bool,
}

impl MiniClient {
    async fn join(url: &str, token: &str) -> MiniClient {
        let url = signal::join_url(url, &signal::join_request(false)).unwrap();
        let mut ws = crate::live::ws::connect(&url, token, None, None).await.unwrap();
        let join = loop {
            match next_response(&mut ws, WAIT).await {
                Some(Resp::Join(j)) => break j,
                Some(_) => {}
                None => panic!("no JoinResponse"),
            }
        };
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let (peer, offer) = Peer::new_with_stun_timing(Instant::now(), local, StunTiming::RESILIENT).unwrap();
        let mut client = MiniClient {
            ws,
            socket,
            peer,
            sid: join.participant.unwrap_or_default().sid,
            open: false,
            received: Vec::new(),
            signals: Vec::new(),
            signal_closed: false,
        };
        client.offer(offer).await;
        client
    }

    async fn offer(&mut self, sdp: String) {
        let offer = proto::SessionDescription {
            r#type: "offer".into(),
            sdp,
            ..Default::default()
        };
        send(&mut self.ws, Req::Offer(offer)).await;
    }

    /// Resumes on a new websocket with the reconnect join.
    async fn reconnect(&mut self, base: &str, token: &str) {
        let url = signal::resume_join_url(base, &self.sid, REASON).unwrap();
        self.ws = crate::live::ws::connect(&url, token, None, None).await.unwrap();
        self.signal_closed = false;
    }

    /// Drives the peer (unless `peer_silent`) and the signal until `done` or `limit`.
    async fn pump_with(&mut self, limit: Duration, peer_silent: bool, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65_536];
        loop {
            let wake = loop {
                match self.peer.poll() {
                    PeerOutput::Transmit(packet) => {
                        if !peer_silent {
                            let _ = self.socket.send_to(&packet.data, packet.destination).await;
                        }
                    }
                    PeerOutput::Timeout(t) => break t,
                    PeerOutput::Open => self.open = true,
                    PeerOutput::Data(d) => self
                        .received
                        .push(proto::DataPacket::decode(d.as_slice()).unwrap()),
                    PeerOutput::Closed(why) => panic!("peer closed: {why}"),
                }
            };
            if done(self) || Instant::now() >= deadline {
                return;
            }
            let sleep = tokio::time::sleep_until(wake.min(deadline).into());
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let (n, from) = r.unwrap();
                    if !peer_silent {
                        let _ = self.peer.handle_receive(Instant::now(), from, &buf[..n]);
                    }
                }
                m = self.ws.next(), if !self.signal_closed => match m {
                    Some(Ok(Message::Binary(b))) => match signal::decode_response(&b).unwrap() {
                        Resp::Answer(a) => self.peer.accept_answer(&a.sdp).unwrap(),
                        Resp::Trickle(t) => {
                            let c = signal::parse_candidate_init(&t.candidate_init).unwrap();
                            let _ = self.peer.add_remote_candidate(&c.candidate);
                        }
                        m => self.signals.push(m),
                    },
                    Some(Ok(_)) => {}
                    _ => self.signal_closed = true,
                },
                _ = sleep => self.peer.handle_timeout(Instant::now()).unwrap(),
            }
        }
    }

    async fn pump(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) {
        self.pump_with(limit, false, done).await
    }

    /// Sends a reliable user packet to `to` stamped with `seq`; returns its encoding.
    fn send_user(&mut self, to: &str, payload: &str, seq: u32) -> Vec<u8> {
        let packet = proto::DataPacket {
            destination_identities: vec![to.into()],
            sequence: seq,
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                payload: payload.as_bytes().to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let bytes = packet.encode_to_vec();
        self.peer.send(true, bytes.clone()).unwrap();
        bytes
    }

    /// The user payloads received, in order (drained).
    fn user_payloads(&mut self) -> Vec<String> {
        self.received
            .drain(..)
            .filter_map(|p| match p.value {
                Some(proto::data_packet::Value::User(u)) => Some(String::from_utf8(u.payload).unwrap()),
                _ => None,
            })
            .collect()
    }

    /// The disconnect reasons of the departures of `identity` announced so far.
    fn departures_of(&self, identity: &str) -> Vec<i32> {
        let left = proto::participant_info::State::Disconnected as i32;
        self.signals
            .iter()
            .filter_map(|m| match m {
                Resp::Update(u) => Some(u.participants.iter()),
                _ => None,
            })
            .flatten()
            .filter(|p| p.identity == identity && p.state == left)
            .map(|p| p.disconnect_reason)
            .collect()
    }

    /// Sends `SyncState` and restarts ICE by its own offer, as a resuming client does; waits
    /// for ICE to reconnect.
    async fn sync_and_restart_ice(&mut self) {
        let (offer, answer) = self.peer.last_offer_answer();
        let first_ufrag = offer.as_deref().and_then(ufrag);
        let parts = SyncStateParts {
            offer,
            answer,
            auto_subscribe: false,
            data_channels: self.peer.data_channel_infos(proto::SignalTarget::Publisher),
            receive_states: Vec::new(),
        };
        send(&mut self.ws, signal::sync_state(parts)).await;
        let restart = self.peer.ice_restart().unwrap();
        assert_ne!(ufrag(&restart), first_ufrag, "new ICE credentials");
        self.offer(restart).await;
        self.pump(WAIT, |c| c.peer.ice_connected()).await;
        assert!(
            self.peer.ice_connected(),
            "ICE reconnected after the restart offer"
        );
    }
}

/// Two connected participants, `robot` and `listener`, in `room`.
async fn pair(sfu: &Sfu, room: &str) -> (MiniClient, MiniClient) {
    let mut listener = MiniClient::join(&sfu.url(), &token(sfu, room, "listener")).await;
    let mut robot = MiniClient::join(&sfu.url(), &token(sfu, room, "robot")).await;
    tokio::join!(listener.pump(WAIT, |c| c.open), robot.pump(WAIT, |c| c.open));
    assert!(robot.open && listener.open, "reliable channels open");
    (robot, listener)
}

/// Reads the resume answer: `ReconnectResponse`, then the participant snapshot and the room.
async fn resume_answer(client: &mut MiniClient) -> (proto::ReconnectResponse, Vec<proto::ParticipantInfo>) {
    let Some(Resp::Reconnect(reconnect)) = next_response(&mut client.ws, WAIT).await else {
        panic!("ReconnectResponse expected first");
    };
    let Some(Resp::Update(update)) = next_response(&mut client.ws, WAIT).await else {
        panic!("a participant snapshot expected second");
    };
    let Some(Resp::RoomUpdate(room)) = next_response(&mut client.ws, WAIT).await else {
        panic!("a room update expected third");
    };
    assert!(room.room.is_some_and(|r| r.num_participants == 2));
    (reconnect, update.participants)
}

#[test]
fn a_resume_keeps_the_session_its_sequence_and_tells_nobody() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let robot_token = token(&sfu, "resume", "robot");
    runtime().block_on(async {
        let (mut robot, mut listener) = pair(&sfu, "resume").await;
        let mut sent = Vec::new();
        for (seq, text) in [(1, "1"), (2, "2"), (3, "3")] {
            sent.push(robot.send_user("listener", text, seq));
        }
        tokio::join!(
            robot.pump(Duration::from_millis(300), |_| false),
            listener.pump(WAIT, |c| c.received.len() == 3)
        );
        assert_eq!(listener.user_payloads(), ["1", "2", "3"]);

        // The websocket drops without a Leave: the robot stays, and nobody is told.
        robot.ws.close(None).await.ok();
        tokio::join!(
            robot.pump(Duration::from_millis(500), |_| false),
            listener.pump(Duration::from_millis(500), |_| false)
        );
        assert_eq!(sfu.participant_count("resume"), 2);
        assert!(listener.departures_of("robot").is_empty(), "no announcement");

        robot.reconnect(&sfu.url(), &robot_token).await;
        let (reconnect, snapshot) = resume_answer(&mut robot).await;
        assert_eq!(reconnect.last_message_seq, 3, "the last sequence accepted");
        assert!(reconnect.ice_servers.is_empty());
        assert!(reconnect.server_info.is_some() && reconnect.client_configuration.is_some());
        let mut identities: Vec<_> = snapshot
            .iter()
            .map(|p| (p.identity.as_str(), p.sid.as_str()))
            .collect();
        identities.sort();
        assert_eq!(
            identities,
            [("listener", listener.sid.as_str()), ("robot", robot.sid.as_str())]
        );
        robot.sync_and_restart_ice().await;

        // A resent duplicate is dropped; new data flows both ways on the same association.
        robot.peer.send(true, sent[2].clone()).unwrap();
        robot.send_user("listener", "4", 4);
        listener.send_user("robot", "back", 1);
        tokio::join!(
            robot.pump(WAIT, |c| !c.received.is_empty()),
            listener.pump(WAIT, |c| !c.received.is_empty())
        );
        listener.pump(Duration::from_millis(300), |_| false).await;
        assert_eq!(listener.user_payloads(), ["4"], "the duplicate was dropped");
        assert_eq!(robot.user_payloads(), ["back"]);
        assert!(
            listener.departures_of("robot").is_empty(),
            "still no announcement"
        );
        assert!(robot.signals.iter().all(|m| !matches!(m, Resp::Leave(_))));
    });
}

#[test]
fn resumes_of_absent_participants_are_refused_and_node_failure_removes_silently() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let robot_token = token(&sfu, "refuse", "robot");
    runtime().block_on(async {
        let reconnect_now = |leave: Option<&proto::LeaveRequest>| {
            let leave = leave.expect("a Leave");
            assert_eq!(leave.reason, proto::DisconnectReason::StateMismatch as i32);
            assert_eq!(leave.action, proto::leave_request::Action::Reconnect as i32);
            assert!(leave.can_reconnect);
        };
        // An identity the room does not hold, on both paths.
        let url = signal::resume_join_url(&sfu.url(), "PA_ghost", REASON).unwrap();
        let mut ghost = crate::live::ws::connect(&url, &token(&sfu, "refuse", "ghost"), None, None)
            .await
            .unwrap();
        let (msgs, closed) = until_closed(&mut ghost, WAIT).await;
        reconnect_now(leave_of(&msgs));
        assert!(closed && msgs.len() == 1);
        let url = signal::resume_join_url_v0(&sfu.url(), "PA_ghost", REASON).unwrap();
        let mut ghost = crate::live::ws::connect(&url, &token(&sfu, "refuse", "ghost"), None, None)
            .await
            .unwrap();
        reconnect_now(leave_of(&until_closed(&mut ghost, WAIT).await.0));
        assert!(sfu.rooms().is_empty(), "a refused resume creates nothing");

        // Simulated node failure: removed, websocket closed, no Leave; others see it go.
        let (mut robot, mut listener) = pair(&sfu, "refuse").await;
        let node_failure = proto::simulate_scenario::Scenario::NodeFailure(true);
        send(&mut robot.ws, signal::simulate_request(node_failure)).await;
        let (msgs, closed) = until_closed(&mut robot.ws, WAIT).await;
        assert!(closed && leave_of(&msgs).is_none(), "closed without a Leave");
        listener
            .pump(WAIT, |c| !c.departures_of("robot").is_empty())
            .await;
        let gone = proto::DisconnectReason::ServerShutdown as i32;
        assert_eq!(listener.departures_of("robot"), [gone]);
        robot.reconnect(&sfu.url(), &robot_token).await;
        reconnect_now(leave_of(&until_closed(&mut robot.ws, WAIT).await.0));

        // A fresh join of that identity works again.
        let mut again = MiniClient::join(&sfu.url(), &robot_token).await;
        again.pump(WAIT, |c| c.open).await;
        assert!(again.open);
        assert_eq!(sfu.participant_count("refuse"), 2);
    });
}

#[test]
fn server_leave_tells_the_client_to_disconnect() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    runtime().block_on(async {
        let (mut robot, mut listener) = pair(&sfu, "leave").await;
        let server_leave = proto::simulate_scenario::Scenario::ServerLeave(true);
        send(&mut robot.ws, signal::simulate_request(server_leave)).await;
        let (msgs, closed) = until_closed(&mut robot.ws, WAIT).await;
        let leave = leave_of(&msgs).expect("a Leave");
        assert_eq!(leave.reason, proto::DisconnectReason::ServerShutdown as i32);
        assert_eq!(leave.action, proto::leave_request::Action::Disconnect as i32);
        assert!(closed && !leave.can_reconnect);
        listener
            .pump(WAIT, |c| !c.departures_of("robot").is_empty())
            .await;
        let gone = proto::DisconnectReason::ServerShutdown as i32;
        assert_eq!(listener.departures_of("robot"), [gone]);
        assert_eq!(sfu.participant_count("leave"), 1);
    });
}

#[test]
fn simulated_signal_failures_on_resume() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let robot_token = token(&sfu, "flaky", "robot");
    runtime().block_on(async {
        let (mut robot, _listener) = pair(&sfu, "flaky").await;
        // The next three resumes are cut before any message; the fourth is answered.
        let silent = proto::simulate_scenario::Scenario::DisconnectSignalOnResumeNoMessages(true);
        send(&mut robot.ws, signal::simulate_request(silent)).await;
        robot.pump(Duration::from_millis(200), |_| false).await;
        for attempt in 1..=3 {
            robot.reconnect(&sfu.url(), &robot_token).await;
            let (msgs, closed) = until_closed(&mut robot.ws, WAIT).await;
            assert!(
                closed && msgs.is_empty(),
                "attempt {attempt}: {} messages",
                msgs.len()
            );
        }
        robot.reconnect(&sfu.url(), &robot_token).await;
        resume_answer(&mut robot).await;

        // The next resume is answered, then cut.
        let after = proto::simulate_scenario::Scenario::DisconnectSignalOnResume(true);
        send(&mut robot.ws, signal::simulate_request(after)).await;
        robot.pump(Duration::from_millis(200), |_| false).await;
        robot.reconnect(&sfu.url(), &robot_token).await;
        let (msgs, closed) = until_closed(&mut robot.ws, WAIT).await;
        assert!(closed && matches!(msgs.first(), Some(Resp::Reconnect(_))));
        robot.reconnect(&sfu.url(), &robot_token).await;
        resume_answer(&mut robot).await;
        robot.sync_and_restart_ice().await;
        assert_eq!(sfu.participant_count("flaky"), 2);
    });
}

#[test]
fn a_silent_connection_is_told_to_resume_then_removed_after_the_window() {
    let sfu = Sfu::start(SfuOptions {
        resume_window: Duration::from_secs(4),
        ..SfuOptions::default()
    })
    .unwrap();
    let robot_token = token(&sfu, "silent", "robot");
    runtime().block_on(async {
        let (mut robot, mut listener) = pair(&sfu, "silent").await;
        // The robot's peer goes silent while its websocket stays: after three quarters of
        // the window the server says "resume" and closes the websocket.
        let limit = Duration::from_secs(10);
        tokio::join!(
            robot.pump_with(limit, true, |c| c.signal_closed),
            listener.pump(Duration::from_secs(2), |_| false)
        );
        assert!(robot.signal_closed, "the websocket was closed");
        let leave = leave_of(&robot.signals).expect("a Leave").clone();
        assert_eq!(leave.action, proto::leave_request::Action::Resume as i32);
        assert_eq!(leave.reason, proto::DisconnectReason::ConnectionTimeout as i32);
        assert!(listener.departures_of("robot").is_empty(), "not announced yet");
        // It resumes within the window and comes back.
        robot.reconnect(&sfu.url(), &robot_token).await;
        resume_answer(&mut robot).await;
        robot.sync_and_restart_ice().await;
        robot.send_user("listener", "alive", 1);
        tokio::join!(
            robot.pump(Duration::from_millis(300), |_| false),
            listener.pump(WAIT, |c| !c.received.is_empty())
        );
        assert_eq!(listener.user_payloads(), ["alive"]);

        // Gone for good (no Leave, nothing more from it): removed once the window is over.
        drop(robot);
        listener.pump(Duration::from_millis(300), |_| false).await;
        assert_eq!(sfu.participant_count("silent"), 2, "kept for a resume");
        let limit = Duration::from_secs(15);
        listener
            .pump(limit, |c| !c.departures_of("robot").is_empty())
            .await;
        let gone = proto::DisconnectReason::ConnectionTimeout as i32;
        assert_eq!(listener.departures_of("robot"), [gone]);
        assert_eq!(sfu.participant_count("silent"), 1);
    });
}

#[test]
fn a_resume_on_two_peer_connections_reoffers_the_subscriber() {
    let sfu = Sfu::start(SfuOptions {
        rtc_v1: false,
        ..SfuOptions::default()
    })
    .unwrap();
    let robot_token = token(&sfu, "dual", "robot");
    let heard = crate::live::queue::RoomQueues::new(64);
    let options = crate::live::RoomOptions {
        connect_timeout: WAIT,
        ..Default::default()
    };
    let _robot = crate::live::Room::connect(&sfu.url(), &robot_token, options, heard).unwrap();
    runtime().block_on(async {
        let url = signal::resume_join_url_v0(&sfu.url(), "PA_any", REASON).unwrap();
        let mut ws = crate::live::ws::connect(&url, &robot_token, None, None)
            .await
            .unwrap();
        let Some(Resp::Reconnect(reconnect)) = next_response(&mut ws, WAIT).await else {
            panic!("ReconnectResponse expected first");
        };
        assert_eq!(reconnect.last_message_seq, 0);
        assert!(matches!(
            next_response(&mut ws, WAIT).await,
            Some(Resp::Update(_))
        ));
        assert!(matches!(
            next_response(&mut ws, WAIT).await,
            Some(Resp::RoomUpdate(_))
        ));
        let Some(Resp::Offer(offer)) = next_response(&mut ws, WAIT).await else {
            panic!("a subscriber ICE-restart offer expected");
        };
        assert!(offer.id > 1 && ufrag(&offer.sdp).is_some());
        let Some(Resp::Trickle(trickle)) = next_response(&mut ws, WAIT).await else {
            panic!("its candidates expected");
        };
        assert_eq!(trickle.target, proto::SignalTarget::Subscriber as i32);
        assert!(trickle.candidate_init.contains(&ufrag(&offer.sdp).unwrap()));
    });
}

/// A single-PC participant that can only reach the SFU over ICE-TCP: a bare str0m agent with
/// one TCP active candidate (port 9, RFC 6544), its packets framed by hand (RFC 4571).
struct TcpOnlyClient {
    ws: Ws,
    rtc: str0m::Rtc,
    reliable: str0m::channel::ChannelId,
    /// The TCP connection to the SFU's passive candidate, once str0m sends to it.
    writer: Option<(SocketAddr, tokio::net::tcp::OwnedWriteHalf)>,
    packets: tokio::sync::mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    packets_tx: tokio::sync::mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
    open: bool,
    received: Vec<proto::DataPacket>,
}

/// The active candidate's address (RFC 6544: active candidates carry port 9).
const TCP_ACTIVE: &str = "127.0.0.1:9";

impl TcpOnlyClient {
    async fn join(url: &str, token: &str) -> (TcpOnlyClient, String) {
        use str0m::net::TcpType;
        let url = signal::join_url(url, &signal::join_request(false)).unwrap();
        let mut ws = crate::live::ws::connect(&url, token, None, None).await.unwrap();
        while !matches!(next_response(&mut ws, WAIT).await, Some(Resp::Join(_))) {}
        let mut rtc = str0m::Rtc::builder().clear_codecs().build(Instant::now());
        let active = str0m::Candidate::builder()
            .tcp()
            .host(TCP_ACTIVE.parse().unwrap())
            .tcptype(TcpType::Active)
            .build()
            .unwrap();
        rtc.add_local_candidate(active);
        let mut api = rtc.sdp_api();
        let (reliable, _lossy) = crate::live::peer::add_data_channels(&mut api);
        let (offer, pending) = api.apply().unwrap();
        let offer = proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.to_sdp_string(),
            ..Default::default()
        };
        send(&mut ws, Req::Offer(offer)).await;
        let answer = loop {
            match next_response(&mut ws, WAIT).await {
                Some(Resp::Answer(a)) => break a.sdp,
                Some(_) => {}
                None => panic!("no answer"),
            }
        };
        let parsed = str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap();
        rtc.sdp_api().accept_answer(pending, parsed).unwrap();
        let (packets_tx, packets) = tokio::sync::mpsc::unbounded_channel();
        let client = TcpOnlyClient {
            ws,
            rtc,
            reliable,
            writer: None,
            packets,
            packets_tx,
            open: false,
            received: Vec::new(),
        };
        (client, answer)
    }

    /// Writes a packet for the SFU's passive candidate `dest`, connecting first.
    async fn transmit(&mut self, dest: SocketAddr, packet: &[u8]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.writer.as_ref().is_none_or(|(to, _)| *to != dest) {
            let stream = tokio::net::TcpStream::connect(dest).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut read, write) = stream.into_split();
            let tx = self.packets_tx.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while read.read_exact(&mut len).await.is_ok() {
                    let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if read.read_exact(&mut packet).await.is_err() || tx.send((dest, packet)).is_err() {
                        return;
                    }
                }
            });
            self.writer = Some((dest, write));
        }
        let (_, write) = self.writer.as_mut().unwrap();
        let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(packet);
        write.write_all(&framed).await.unwrap();
    }

    /// Drives the agent, its TCP connection and the signal until `done` or `limit`.
    async fn pump(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) {
        use str0m::net::{Protocol, Receive};
        use str0m::{Event, Input, Output};
        let deadline = Instant::now() + limit;
        loop {
            let wake = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Transmit(t) => {
                        assert_eq!(t.proto, Protocol::Tcp, "only TCP is possible");
                        let contents = t.contents.to_vec();
                        self.transmit(t.destination, &contents).await;
                    }
                    Output::Timeout(t) => break t,
                    Output::Event(Event::ChannelOpen(id, _)) if id == self.reliable => self.open = true,
                    Output::Event(Event::ChannelData(d)) => self
                        .received
                        .push(proto::DataPacket::decode(d.data.as_slice()).unwrap()),
                    Output::Event(_) => {}
                }
            };
            if done(self) || Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                Some((from, packet)) = self.packets.recv() => {
                    let local = TCP_ACTIVE.parse().unwrap();
                    let recv = Receive::new(Protocol::Tcp, from, local, &packet).unwrap();
                    self.rtc.handle_input(Input::Receive(Instant::now(), recv)).unwrap();
                }
                m = self.ws.next() => {
                    if let Some(Ok(Message::Binary(b))) = m {
                        if let Ok(Resp::Trickle(t)) = signal::decode_response(&b) {
                            let init = signal::parse_candidate_init(&t.candidate_init).unwrap();
                            let c = init.candidate.trim_start_matches("a=");
                            let candidate = str0m::Candidate::from_sdp_string(c).unwrap();
                            if candidate.proto() == Protocol::Tcp {
                                self.rtc.add_remote_candidate(candidate);
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.min(deadline).into()) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
                }
            }
        }
    }

    fn send_user(&mut self, to: &str, payload: &str) {
        let packet = proto::DataPacket {
            destination_identities: vec![to.into()],
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                payload: payload.as_bytes().to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut channel = self.rtc.channel(self.reliable).unwrap();
        channel.write(true, &packet.encode_to_vec()).unwrap();
    }
}

#[test]
fn a_client_without_udp_connects_over_ice_tcp() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    runtime().block_on(async {
        let mut listener = MiniClient::join(&sfu.url(), &token(&sfu, "tcp", "listener")).await;
        let (mut robot, answer) = TcpOnlyClient::join(&sfu.url(), &token(&sfu, "tcp", "robot")).await;
        assert!(
            answer
                .lines()
                .any(|l| l.contains(" tcp ") && l.contains("tcptype passive")),
            "a passive TCP candidate in the answer"
        );
        tokio::join!(listener.pump(WAIT, |c| c.open), robot.pump(WAIT, |c| c.open));
        assert!(robot.open, "the data channel opened over ICE-TCP");
        robot.send_user("listener", "over tcp");
        listener.send_user("robot", "back", 1);
        tokio::join!(
            robot.pump(WAIT, |c| !c.received.is_empty()),
            listener.pump(WAIT, |c| !c.received.is_empty())
        );
        assert_eq!(listener.user_payloads(), ["over tcp"]);
        let Some(proto::data_packet::Value::User(back)) = robot.received.pop().and_then(|p| p.value) else {
            panic!("a user packet back");
        };
        assert_eq!(back.payload, b"back");
    });
}

#[test]
fn switch_candidate_protocol_tcp_announces_only_tcp_candidates() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    runtime().block_on(async {
        let (mut robot, _listener) = pair(&sfu, "switch").await;
        let tcp = proto::CandidateProtocol::Tcp as i32;
        let switch = proto::simulate_scenario::Scenario::SwitchCandidateProtocol(tcp);
        send(&mut robot.ws, signal::simulate_request(switch)).await;
        let restart = robot.peer.ice_restart().unwrap();
        robot.offer(restart).await;
        let mut candidates = Vec::new();
        let answer = loop {
            match next_response(&mut robot.ws, WAIT).await {
                Some(Resp::Answer(a)) => break a.sdp,
                Some(_) => {}
                None => panic!("no answer to the restart offer"),
            }
        };
        while let Some(Resp::Trickle(t)) = next_response(&mut robot.ws, Duration::from_millis(500)).await {
            candidates.push(signal::parse_candidate_init(&t.candidate_init).unwrap().candidate);
        }
        candidates.extend(
            answer
                .lines()
                .filter_map(|l| l.strip_prefix("a=").map(str::to_owned)),
        );
        candidates.retain(|c| c.starts_with("candidate:"));
        assert!(!candidates.is_empty());
        for candidate in &candidates {
            assert!(
                candidate.contains(" tcp ") && candidate.contains("tcptype passive"),
                "{candidate}"
            );
        }
    });
}

#[test]
fn consecutive_resumes_each_restart_ice_on_the_same_connection() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let robot_token = token(&sfu, "twice", "robot");
    runtime().block_on(async {
        let (mut robot, mut listener) = pair(&sfu, "twice").await;
        for round in 1..=3u32 {
            robot.ws.close(None).await.ok();
            robot.reconnect(&sfu.url(), &robot_token).await;
            resume_answer(&mut robot).await;
            robot.sync_and_restart_ice().await;
            robot.send_user("listener", &format!("r{round}"), round);
            tokio::join!(
                robot.pump(Duration::from_millis(300), |_| false),
                listener.pump(WAIT, |c| !c.received.is_empty())
            );
            assert_eq!(listener.user_payloads(), [format!("r{round}")]);
        }
    });
}

#[test]
fn an_aborted_sfu_ends_every_websocket_without_a_leave() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    runtime().block_on(async {
        let (mut robot, _listener) = pair(&sfu, "abort").await;
        sfu.abort();
        let (msgs, closed) = until_closed(&mut robot.ws, WAIT).await;
        assert!(closed, "the websocket ended");
        assert!(leave_of(&msgs).is_none(), "no Leave, as from a killed server");
    });
}
