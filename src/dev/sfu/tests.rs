//! The SFU with the SDK's own live engine on both sides: joins and departures, RPC both ways
//! (v1 packets and v2 streams), a 1280×720-sized byte stream, destination filtering, rooms
//! kept apart, refusals, room deletion and shutdown. Loopback only, every wait bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Sfu, SfuOptions};
use crate::dev::token::{mint_livekit_token, TokenOptions};
use crate::dev::LiveKitSettings;
use crate::live::queue::RoomQueues;
use crate::live::{
    CallParams, LiveError, OutgoingStream, ParticipantKind, Room, RoomEvent, RoomOptions, RpcError,
    RpcErrorCode,
};

const WAIT: Duration = Duration::from_secs(10);

fn settings(sfu: &Sfu) -> LiveKitSettings {
    LiveKitSettings {
        url: sfu.url(),
        api_key: "devkey".into(),
        api_secret: "secret".into(),
    }
}

fn token(sfu: &Sfu, room: &str, identity: &str, agent: bool) -> String {
    let options = TokenOptions {
        kind: agent.then(|| "agent".to_owned()),
        attributes: if agent {
            [("lk.agent.name".to_owned(), "sim-worker".to_owned())].into()
        } else {
            Default::default()
        },
        metadata: Some(format!("{identity}-meta")),
    };
    mint_livekit_token(
        &settings(sfu),
        room,
        identity,
        identity,
        Duration::from_secs(60),
        &options,
    )
}

/// Topics the test participants receive byte streams on.
const TOPICS: [&str; 3] = ["menlo.camera_capture", "broadcast", "t"];

/// A participant: the room and the queues its observer fills.
struct Peer {
    room: Room,
    heard: Arc<RoomQueues>,
}

impl std::ops::Deref for Peer {
    type Target = Room;
    fn deref(&self) -> &Room {
        &self.room
    }
}

impl Peer {
    /// Calls a method and waits for the outcome.
    fn call(&self, params: CallParams) -> Result<String, RpcError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let wait = params.ack_timeout + params.response_timeout + WAIT;
        self.room.start_rpc(params, move |reply| {
            let _ = tx.send(reply);
        });
        rx.recv_timeout(wait).expect("an RPC outcome")
    }

    fn next_stream(&self) -> crate::live::ByteStream {
        self.heard
            .streams()
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{}: no byte stream within {WAIT:?}", self.local_identity()))
    }
}

fn options() -> RoomOptions {
    RoomOptions {
        connect_timeout: WAIT,
        stream_topics: TOPICS.iter().map(|t| t.to_string()).collect(),
        ..RoomOptions::default()
    }
}

fn join(sfu: &Sfu, room: &str, identity: &str, agent: bool) -> Peer {
    let heard = RoomQueues::new(1024);
    let room_handle = Room::connect(
        &sfu.url(),
        &token(sfu, room, identity, agent),
        options(),
        heard.clone(),
    )
    .unwrap_or_else(|e| panic!("{identity} could not join {room}: {e}"));
    Peer {
        room: room_handle,
        heard,
    }
}

/// Waits for the first event matching `pred` (others are skipped).
fn wait_event(peer: &Peer, what: &str, mut pred: impl FnMut(&RoomEvent) -> bool) -> RoomEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.heard.events().recv_timeout(left) {
            Ok(ev) if pred(&ev) => return ev,
            Ok(_) => {}
            Err(_) => panic!("{}: no {what} within {WAIT:?}", peer.local_identity()),
        }
    }
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn bytes_to(topic: &str, destinations: &[&str]) -> OutgoingStream {
    destinations.iter().fold(
        OutgoingStream::new(topic)
            .name(format!("{topic}.bin"))
            .mime_type("application/octet-stream"),
        |stream, d| stream.destination(*d),
    )
}

fn engines_talk_through_the_sfu(single_pc: bool) {
    let sfu = Sfu::start(SfuOptions {
        rtc_v1: single_pc,
        ..SfuOptions::default()
    })
    .unwrap();
    let robot = join(&sfu, "room-a", "robot", true);
    let user = join(&sfu, "room-a", "user", false);

    // The newcomer learns about the robot from its join response, with kind and attributes.
    let RoomEvent::ParticipantJoined(seen) = wait_event(
        &user,
        "robot joined",
        |e| matches!(e, RoomEvent::ParticipantJoined(p) if p.identity == "robot"),
    ) else {
        unreachable!()
    };
    assert_eq!(seen.kind, ParticipantKind::Agent);
    assert_eq!(seen.attributes["lk.agent.name"], "sim-worker");
    assert_eq!(seen.metadata, "robot-meta");
    assert!(seen.sid.starts_with("PA_"), "{seen:?}");
    assert_eq!(
        seen.client_protocol,
        crate::live::signal::CLIENT_PROTOCOL,
        "client protocol carried for RPC v2"
    );
    // The robot is told about the user by a broadcast.
    let RoomEvent::ParticipantJoined(seen) = wait_event(
        &robot,
        "user joined",
        |e| matches!(e, RoomEvent::ParticipantJoined(p) if p.identity == "user"),
    ) else {
        unreachable!()
    };
    assert_eq!(seen.kind, ParticipantKind::Standard);

    // RPC both ways, small (v1 packets) and large (v2 streams).
    robot.register_rpc_method("runtime.state", |inv| {
        Ok(format!("{}:{}", inv.caller_identity, inv.payload))
    });
    user.register_rpc_method("viewer.echo", |inv| Ok(inv.payload.len().to_string()));
    let reply = user
        .call(CallParams::new("robot", "runtime.state", "{}"))
        .unwrap();
    assert_eq!(reply, "user:{}");
    let large = "x".repeat(40_000);
    let reply = user
        .call(CallParams::new("robot", "runtime.state", large.clone()))
        .unwrap();
    assert_eq!(reply.len(), "user:".len() + 40_000);
    let reply = robot.call(CallParams::new("user", "viewer.echo", large)).unwrap();
    assert_eq!(reply, "40000");
    let unknown = user
        .call(CallParams::new("robot", "runtime.nope", "{}"))
        .unwrap_err();
    assert_eq!(unknown.code, RpcErrorCode::UnsupportedMethod);

    // A third participant sees only what is meant for it.
    let watcher = join(&sfu, "room-a", "watcher", false);
    wait_event(
        &robot,
        "watcher joined",
        |e| matches!(e, RoomEvent::ParticipantJoined(p) if p.identity == "watcher"),
    );
    let camera = frame(1280 * 720 / 4);
    robot
        .send_bytes(camera.clone(), bytes_to("menlo.camera_capture", &["user"]))
        .unwrap();
    let got = user.next_stream();
    assert_eq!(got.sender_identity, "robot");
    assert_eq!(got.topic, "menlo.camera_capture");
    assert!(got.data == camera, "the 230 kB frame arrived intact");
    robot
        .send_bytes(b"all".to_vec(), bytes_to("broadcast", &[]))
        .unwrap();
    let first = watcher.next_stream();
    assert_eq!(first.topic, "broadcast", "the watcher never got the user's frame");
    assert_eq!(user.next_stream().data, b"all");

    // Departures are broadcast; counts follow.
    assert_eq!(sfu.participant_count("room-a"), 3);
    drop(watcher);
    wait_event(
        &robot,
        "watcher left",
        |e| matches!(e, RoomEvent::ParticipantLeft(p) if p.identity == "watcher"),
    );
    assert_eq!(sfu.participant_count("room-a"), 2);

    // Deleting the room disconnects everyone in it.
    assert!(sfu.delete_room("room-a"));
    for room in [&robot, &user] {
        wait_event(room, "disconnection", |e| {
            matches!(e, RoomEvent::Disconnected { .. })
        });
    }
    assert!(sfu.rooms().is_empty());
}

#[test]
fn engines_talk_through_the_sfu_on_one_peer_connection() {
    engines_talk_through_the_sfu(true);
}

#[test]
fn engines_fall_back_to_two_peer_connections() {
    engines_talk_through_the_sfu(false);
}

#[test]
fn rooms_are_kept_apart() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let a1 = join(&sfu, "one", "a", true);
    let b1 = join(&sfu, "one", "b", false);
    let a2 = join(&sfu, "two", "a", true);
    let b2 = join(&sfu, "two", "b", false);
    wait_event(
        &b1,
        "a in room one",
        |e| matches!(e, RoomEvent::ParticipantJoined(p) if p.identity == "a"),
    );
    wait_event(
        &b2,
        "a in room two",
        |e| matches!(e, RoomEvent::ParticipantJoined(p) if p.identity == "a"),
    );
    a1.register_rpc_method("which", |_| Ok("one".into()));
    a2.register_rpc_method("which", |_| Ok("two".into()));
    assert_eq!(b1.call(CallParams::new("a", "which", "")).unwrap(), "one");
    assert_eq!(b2.call(CallParams::new("a", "which", "")).unwrap(), "two");
    a1.send_bytes(b"1".to_vec(), bytes_to("t", &[])).unwrap();
    a2.send_bytes(b"2".to_vec(), bytes_to("t", &[])).unwrap();
    assert_eq!(b1.next_stream().data, b"1");
    assert_eq!(b2.next_stream().data, b"2");
    assert!(b1.heard.streams().try_recv().is_err() && b2.heard.streams().try_recv().is_err());
    assert_eq!(b1.participants().len(), 1);
    let names: Vec<_> = sfu
        .rooms()
        .into_iter()
        .map(|r| (r.name, r.participants.len()))
        .collect();
    assert_eq!(names, vec![("one".to_string(), 2), ("two".to_string(), 2)]);
}

#[test]
fn bad_tokens_are_refused_with_livekit_statuses() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let other_key = LiveKitSettings {
        api_secret: "not-the-secret".into(),
        ..settings(&sfu)
    };
    let bad_signature = mint_livekit_token(&other_key, "r", "x", "x", WAIT, &TokenOptions::default());
    let refused =
        |token: &str| match Room::connect(&sfu.url(), token, RoomOptions::default(), RoomQueues::new(8)) {
            Err(LiveError::Refused { status, message }) => (status, message),
            other => panic!("expected a refusal, got {other:?}"),
        };
    let (status, message) = refused(&bad_signature);
    assert_eq!(status, 401);
    assert!(message.contains("signature"), "{message}");
    assert!(!message.contains(&bad_signature));
    let (status, _) = refused("not-a-jwt");
    assert_eq!(status, 401);
    assert!(sfu.rooms().is_empty());
}

#[test]
fn dropping_the_sfu_disconnects_its_participants() {
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let room = join(&sfu, "r", "a", false);
    let started = Instant::now();
    drop(sfu);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        started.elapsed()
    );
    wait_event(&room, "disconnection", |e| {
        matches!(e, RoomEvent::Disconnected { .. })
    });
    assert!(!room.is_connected());
}
