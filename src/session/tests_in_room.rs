//! The session's own logic in process, against the embedded SFU (feature `dev`): call
//! deadlines, and the room events the engine reports, fed to the session as it would.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::pending::pending;
use super::*;
use crate::dev::{mint_livekit_token, LiveKitSettings, Sfu, SfuOptions, TokenOptions};

const ROBOT: &str = "rb_session_test";
const WAIT: Duration = Duration::from_secs(10);

/// A session joined to an embedded SFU's room; nothing on the platform side (the client
/// points at a closed port and is never used).
struct Harness {
    // Dropped first: the session leaves before the SFU stops.
    session: Session,
    sfu: Sfu,
}

fn token(sfu: &Sfu, identity: &str) -> String {
    let settings = LiveKitSettings {
        url: sfu.url(),
        api_key: "devkey".into(),
        api_secret: "secret".into(),
    };
    mint_livekit_token(
        &settings,
        ROBOT,
        identity,
        identity,
        Duration::from_secs(60),
        &TokenOptions::default(),
    )
}

fn start(callbacks: ConnectCallbacks) -> Harness {
    let sfu = Sfu::start(SfuOptions::default()).expect("start the embedded SFU");
    let client = Client::builder()
        .api_key("sk_test_session")
        .rcs_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    let metadata: SessionMetadata =
        serde_json::from_value(json!({"robot_id": ROBOT, "status": "active"})).unwrap();
    let inbox = Arc::new(Inbox::default());
    let options = RoomOptions {
        connect_timeout: WAIT,
        ..RoomOptions::default()
    };
    let observer: Arc<dyn RoomObserver> = inbox.clone();
    let room = Room::connect(&sfu.url(), &token(&sfu, "sdk"), options, observer).expect("join the SFU");
    let options = ConnectOptions::new()
        .runtime_identity_prefix("simplesim")
        .callbacks(callbacks);
    let session = Session::start(client, ROBOT, metadata, room, &inbox, options);
    Harness { session, sfu }
}

/// Runs one attempt of `request` at `runtime` on the executor, as a call task does.
fn call_runtime(session: &Session, runtime: &str, request: RpcRequest, timeout: Duration) -> Result<String> {
    let (done, handle) = pending("runtime call");
    let shared = Arc::clone(&session.shared);
    let runtime = runtime.to_owned();
    session.shared.room.spawn(async move {
        let deadline = Instant::now() + timeout;
        done.complete(shared.call_runtime(&runtime, &request, timeout, deadline).await);
    });
    handle.wait()
}

#[test]
fn a_call_nobody_acknowledges_fails_at_its_own_timeout_and_says_so() {
    let h = start(ConnectCallbacks::new());
    assert!(h.sfu.participant_count(ROBOT) >= 1);
    let timeout = Duration::from_millis(1500);
    let request = calls::state_request(calls::ROBOT_STATUS_KEY).unwrap();
    let started = Instant::now();
    // Nobody of that identity is in the room: the request is never acknowledged.
    let err = call_runtime(&h.session, "simplesim:absent", request, timeout).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Error::Timeout { after, may_still_be_running: false, .. } if after == timeout),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 1.500s"), "{err}");
    // Timers never fire early; the margin only absorbs the clock's granularity.
    assert!(
        elapsed >= timeout - Duration::from_millis(50),
        "failed early: {elapsed:?}"
    );
    // Before the fix the ack wait was LiveKit's own 7 s whatever the call's timeout.
    assert!(
        elapsed < timeouts::RPC_ACK,
        "waited out the 7 s ack timeout: {elapsed:?}"
    );
}

/// Every event queued now.
fn drain(session: &Session) -> Vec<SessionEvent> {
    session.events().try_iter().collect()
}

fn reconnect_events(events: Vec<SessionEvent>) -> Vec<SessionEvent> {
    events
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                SessionEvent::Reconnecting { .. }
                    | SessionEvent::Reconnected { .. }
                    | SessionEvent::Disconnected { .. }
            )
        })
        .collect()
}

#[test]
fn the_engine_reports_become_events_callbacks_and_the_connection_state() {
    let (tx, rx) = crossbeam_channel::unbounded::<(String, std::thread::ThreadId)>();
    let (a, b, c) = (tx.clone(), tx.clone(), tx);
    let callbacks = ConnectCallbacks::new()
        .on_reconnecting(move |reason| {
            let _ = a.send((format!("reconnecting: {reason}"), std::thread::current().id()));
        })
        .on_reconnected(move |kind| {
            let _ = b.send((format!("reconnected: {kind}"), std::thread::current().id()));
        })
        .on_disconnected(move |reason| {
            let _ = c.send((format!("disconnected: {reason}"), std::thread::current().id()));
        });
    let h = start(callbacks);
    let shared = &h.session.shared;
    assert_eq!(h.session.connection_state(), ConnectionState::Connected);
    drain(&h.session);

    shared.on_room_event(RoomEvent::Reconnecting {
        reason: "signal lost".into(),
    });
    assert_eq!(h.session.connection_state(), ConnectionState::Reconnecting);
    assert!(
        h.session.is_connected(),
        "a reconnecting session still has its room"
    );
    // The engine may report the same outage again (a resume that turned into a rejoin).
    shared.on_room_event(RoomEvent::Reconnecting {
        reason: "resume refused".into(),
    });
    shared.on_room_event(RoomEvent::Reconnected { resumed: true });
    assert_eq!(h.session.connection_state(), ConnectionState::Connected);
    shared.on_room_event(RoomEvent::Reconnecting {
        reason: "data path lost".into(),
    });
    shared.on_room_event(RoomEvent::Reconnected { resumed: false });
    assert_eq!(h.session.connection_state(), ConnectionState::Connected);

    assert_eq!(
        reconnect_events(drain(&h.session)),
        [
            SessionEvent::Reconnecting {
                reason: "signal lost".into()
            },
            SessionEvent::Reconnected {
                kind: ReconnectKind::Resumed
            },
            SessionEvent::Reconnecting {
                reason: "data path lost".into()
            },
            SessionEvent::Reconnected {
                kind: ReconnectKind::Rejoined
            },
        ]
    );
    let heard: Vec<_> = (0..4)
        .map(|_| rx.recv_timeout(WAIT).expect("a callback"))
        .collect();
    assert_eq!(
        heard.iter().map(|(what, _)| what.as_str()).collect::<Vec<_>>(),
        [
            "reconnecting: signal lost",
            "reconnected: resumed",
            "reconnecting: data path lost",
            "reconnected: rejoined"
        ]
    );
    let caller = std::thread::current().id();
    assert!(heard
        .iter()
        .all(|(_, thread)| *thread != caller && *thread == heard[0].1));

    // Giving up: the engine reports the end; nothing follows it.
    shared.on_room_event(RoomEvent::Reconnecting {
        reason: "signal lost".into(),
    });
    shared.on_room_event(RoomEvent::Disconnected {
        reason: "could not reconnect within 60 s".into(),
    });
    shared.on_room_event(RoomEvent::Reconnected { resumed: true });
    assert_eq!(h.session.connection_state(), ConnectionState::Disconnected);
    assert!(!h.session.is_connected());
    let tail = reconnect_events(drain(&h.session));
    assert!(
        matches!(tail.last(), Some(SessionEvent::Disconnected { reason }) if reason.contains("60 s")),
        "{tail:?}"
    );
    assert_eq!(tail.len(), 2, "{tail:?}");
}

fn serve_runtime(host: &crate::RuntimeHost) {
    host.handle("runtime.tools_list", |_| Ok("[]".into()));
}

fn cached_runtime(session: &Session) -> Option<String> {
    let resolver = session.shared.resolver.try_lock().expect("no call is resolving");
    resolver.as_ref().and_then(|r| r.cached().map(str::to_owned))
}

#[test]
fn the_runtime_is_looked_up_again_only_when_its_participant_changed() {
    let h = start(ConnectCallbacks::new());
    let identity = format!("simplesim:{ROBOT}");
    let runtime = crate::RuntimeHost::connect(&h.sfu.url(), &token(&h.sfu, &identity), WAIT).unwrap();
    serve_runtime(&runtime);
    h.session.discover_skills().expect("the runtime answers");
    assert_eq!(cached_runtime(&h.session).as_deref(), Some(identity.as_str()));
    let present = h
        .session
        .participants()
        .into_iter()
        .find(|p| p.identity == identity)
        .expect("the runtime is in the room");
    assert!(!present.sid.is_empty());

    // A full reconnect of ours that finds the same runtime participant keeps it.
    h.session.shared.on_room_event(RoomEvent::Reconnecting {
        reason: "signal lost".into(),
    });
    h.session
        .shared
        .on_room_event(RoomEvent::Reconnected { resumed: false });
    assert_eq!(cached_runtime(&h.session).as_deref(), Some(identity.as_str()));
    // An update of the same participant keeps it too.
    h.session
        .shared
        .on_room_event(RoomEvent::ParticipantUpdated(present.clone()));
    assert_eq!(cached_runtime(&h.session).as_deref(), Some(identity.as_str()));

    // The same identity under a new sid (the runtime joined again): found again on the next
    // call, by a probe.
    let mut rejoined = present.clone();
    rejoined.sid = "PA_rejoined".into();
    h.session
        .shared
        .on_room_event(RoomEvent::ParticipantUpdated(rejoined));
    assert_eq!(cached_runtime(&h.session), None);
    h.session.discover_skills().expect("found again");
    assert_eq!(cached_runtime(&h.session).as_deref(), Some(identity.as_str()));
    drop(runtime);
}

/// A runtime whose replies are lost to a full reconnect as the engine reports it: each
/// handler answers `CONNECTION_LOST` for its first `lost` calls. Counts every call.
fn lossy_runtime(h: &Harness, lost: usize) -> (crate::RuntimeHost, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use crate::live::rpc::CONNECTION_LOST;
    let identity = format!("simplesim:{ROBOT}");
    let runtime = crate::RuntimeHost::connect(&h.sfu.url(), &token(&h.sfu, &identity), WAIT).unwrap();
    serve_runtime(&runtime);
    let (reads, actions) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::clone(&reads);
    runtime.handle("runtime.battery", move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < lost {
            return Err(crate::RpcError::new(CONNECTION_LOST, "lost to a full reconnect"));
        }
        Ok(r#"{"level":0.5}"#.into())
    });
    let seen = Arc::clone(&actions);
    runtime.handle("runtime.tools_call", move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        Err(crate::RpcError::new(CONNECTION_LOST, "lost to a full reconnect"))
    });
    (runtime, reads, actions)
}

#[test]
fn a_read_whose_reply_was_lost_is_sent_again_once() {
    let h = start(ConnectCallbacks::new());
    let (runtime, reads, _) = lossy_runtime(&h, 1);
    let reply = h
        .session
        .state()
        .get("battery")
        .expect("the second attempt answers");
    assert!(format!("{reply:?}").contains("0.5"), "{reply:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 2);
    drop(runtime);
}

#[test]
fn a_read_lost_twice_fails_as_connection_lost() {
    let h = start(ConnectCallbacks::new());
    let (runtime, reads, _) = lossy_runtime(&h, 2);
    let err = h.session.state().get("battery").unwrap_err();
    assert!(
        matches!(&err, Error::ConnectionLost { operation, may_still_be_running: false } if operation == "runtime.battery"),
        "{err:?}"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 2, "one resend, not more");
    drop(runtime);
}

#[test]
fn an_action_whose_reply_was_lost_is_not_sent_again() {
    let h = start(ConnectCallbacks::new());
    let (runtime, _, actions) = lossy_runtime(&h, 1);
    let err = h.session.invoke("go_to", json!({}), Some(WAIT)).unwrap_err();
    assert!(
        matches!(&err, Error::ConnectionLost { operation, may_still_be_running: true } if operation == "runtime.tools_call"),
        "{err:?}"
    );
    assert!(err.is_connection_lost());
    assert_eq!(
        actions.load(Ordering::SeqCst),
        1,
        "a tool call is never sent twice"
    );
    drop(runtime);
}
