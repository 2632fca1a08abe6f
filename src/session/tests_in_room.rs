//! The session's own logic in process, against the embedded SFU (feature `dev`): call
//! deadlines, and the room events the engine reports, fed to the session as it would.

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
