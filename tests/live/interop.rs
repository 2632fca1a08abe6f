//! Interoperability with the official LiveKit Python client (PyPI `livekit`), through a real
//! livekit-server on loopback:
//!
//! - the Rust [`Session`] drives a runtime written with the Python SDK (tests/peers/runtime.py);
//! - a Python client (tests/peers/caller.py) calls a Rust [`RuntimeHost`].
//!
//! Needs python3 with the `livekit` package and livekit-server (`bash .ci/setup` installs
//! both); without them these tests fail, they never skip. Every wait is bounded and every child
//! process is killed when its guard drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::live_common::{Platform, PyPeer};
use menlo_robot_sdk::{
    connect, ActionStatus, CaptureOptions, ConnectOptions, OutgoingStream, RpcError, RuntimeCall,
    RuntimeHost, SessionEvent, StateReply,
};
use menlo_robot_sdk::{RobotStatus, RuntimeStatus};
use serde_json::{json, Value};

/// Python start-up (importing the SDK's native library) plus joining the room.
const PEER_START: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(30);

/// The Python runtime of the platform's robot, joined as the SimpleSim tab does
/// (`simplesim:<robot_id>`, a standard participant).
fn python_runtime(p: &Platform) -> PyPeer {
    let identity = format!("simplesim:{}", p.robot_id);
    let token = p.livekit.token(&p.robot_id, &identity, false, &[]);
    let peer = PyPeer::spawn("runtime.py", &[&p.livekit.url, &token]);
    let ready = peer.wait_event("ready", PEER_START);
    assert_eq!(ready["identity"], identity.as_str(), "{ready}");
    peer
}

fn simplesim() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .session_ready_timeout(STEP)
}

#[test]
fn rust_session_drives_the_python_runtime() {
    let p = Platform::start();
    let runtime = python_runtime(&p);

    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();

    let skills = session.discover_skills().unwrap();
    assert_eq!(skills.len(), 1, "{skills:?}");
    assert_eq!(skills[0].name, "go_to");
    assert_eq!(skills[0].title.as_deref(), Some("Go to"));
    assert_eq!(skills[0].input_schema["required"], json!(["target"]));
    assert_eq!(
        skills[0].annotations.as_ref().and_then(|a| a.mutating),
        Some(true)
    );

    let result = session
        .invoke(
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": "pad_B"}}),
            Some(STEP),
        )
        .unwrap();
    let seen = runtime.wait_event("tool_call", STEP);
    assert_eq!(result.status, ActionStatus::Done, "{result:?}");
    assert!(
        result.meta.action_id.starts_with("act_"),
        "{}",
        result.meta.action_id
    );
    assert_eq!(
        seen["action_id"],
        result.meta.action_id.as_str(),
        "the runtime got the SDK's action id: {seen}"
    );
    assert_eq!(seen["name"], "go_to");
    assert_eq!(seen["caller"], session.local_identity());
    assert_eq!(
        seen["input"],
        json!({"target": {"kind": "entity", "entity_id": "pad_B"}})
    );
    assert!(result.meta.finished_at_ms >= result.meta.started_at_ms);
    assert!(result.meta.started_at_ms > 1_600_000_000_000, "{:?}", result.meta);
    assert_eq!(result.result.as_ref().unwrap()["arrived"], true);

    match session.state().get("robot_status").unwrap() {
        StateReply::RobotStatus(state) => {
            assert_eq!(state.runtime.status, RuntimeStatus::Ready);
            assert!(state.runtime.accepts_tool_calls);
            assert!(state.runtime.accepts_capture_requests);
            let last = state.runtime.last_action.as_ref().expect("last_action");
            assert_eq!(last.action_id, result.meta.action_id);
            assert_eq!(last.name, "go_to");
            assert_eq!(state.robot.entity_id, "robot_1");
            assert_eq!(state.robot.status, RobotStatus::Ready);
            let pose = state.robot.pose.as_ref().expect("pose");
            assert_eq!(pose.frame_id, "world");
            assert_eq!(pose.position, [1.0, 2.0, 0.0]);
            assert!(state.timestamp.wall_time_ms > 1_600_000_000_000);
        }
        other => panic!("typed robot status expected, got {other:?}"),
    }

    for (width, height) in [(1280u32, 720u32), (640, 480)] {
        let frame = session
            .get_vision("pov", &CaptureOptions::new().width(width).height(height))
            .unwrap();
        let asked = runtime.wait_event("capture", STEP);
        assert_eq!(asked["camera"], "pov", "{asked}");
        assert_eq!(
            (asked["width"].as_u64(), asked["height"].as_u64()),
            (Some(width.into()), Some(height.into()))
        );
        assert_eq!(asked["caller"], session.local_identity());
        assert_eq!(frame.len(), (width * height / 4) as usize, "{width}x{height}");
        assert_eq!(&frame[..3], &[0xFF, 0xD8, 0xFF]);
        assert_eq!(&frame[frame.len() - 2..], &[0xFF, 0xD9]);
    }

    session.disconnect().unwrap();
    assert!(!session.is_connected());
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "session deleted"
    );
    let events: Vec<SessionEvent> = session.events().try_iter().collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::ActionResult(r) if r.action_id == result.meta.action_id
        )),
        "{events:?}"
    );
}

/// What the Rust runtime saw of each call: method → (caller identity, payload).
type Seen = Arc<Mutex<HashMap<String, (String, Value)>>>;

fn record(seen: &Seen, call: &RuntimeCall) -> Value {
    let payload: Value = serde_json::from_str(&call.payload).expect("a JSON payload");
    seen.lock().unwrap().insert(
        call.method.clone(),
        (call.caller_identity.clone(), payload.clone()),
    );
    payload
}

/// A JPEG-looking frame of `len` bytes: `FF D8 FF E0`, a pattern, `FF D9`.
fn fake_jpeg(len: usize) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((4..len - 2).map(|i| (i * 7 % 251) as u8));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

fn serve(host: &Arc<RuntimeHost>, seen: &Seen) {
    let s = seen.clone();
    host.handle("runtime.tools_list", move |call| {
        record(&s, call);
        Ok(
            json!([{"name": "go_to", "description": "go somewhere", "input_schema": {"type": "object"}}])
                .to_string(),
        )
    });
    let s = seen.clone();
    host.handle("runtime.tools_call", move |call| {
        let payload = record(&s, call);
        let id = payload["options"]["action_id"].clone();
        Ok(json!({
            "status": "done",
            "result": {"echo": payload["input"]},
            "meta": {"action_id": id, "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1},
        })
        .to_string())
    });
    let s = seen.clone();
    host.handle("runtime.state", move |call| {
        record(&s, call);
        Ok(json!({
            "timestamp": {"wall_time_ms": 7},
            "runtime": {"status": "ready", "accepts_tool_calls": true, "accepts_capture_requests": true},
            "robot": {"entity_id": "robot_rs", "status": "ready"},
        })
        .to_string())
    });
    let s = seen.clone();
    host.handle("runtime.echo", move |call| {
        let payload = record(&s, call);
        Ok(json!({"pad": payload["pad"]}).to_string())
    });
    let s = seen.clone();
    host.handle("runtime.fail", move |call| {
        record(&s, call);
        Err(RpcError::new(4042u32, "battery too low"))
    });
    let s = seen.clone();
    let weak = Arc::downgrade(host);
    host.handle("runtime.cameras_capture", move |call| {
        let payload = record(&s, call);
        let host = weak.upgrade().ok_or_else(|| RpcError::application("gone"))?;
        let width = payload["options"]["width"].as_u64().unwrap_or(0) as usize;
        let height = payload["options"]["height"].as_u64().unwrap_or(0) as usize;
        let stream = OutgoingStream::new(payload["stream"]["topic"].as_str().unwrap_or_default())
            .name("pov.jpg")
            .mime_type("image/jpeg")
            .attribute("request_id", payload["stream"]["id"].as_str().unwrap_or_default())
            .destination(call.caller_identity.clone());
        host.send_bytes(fake_jpeg(width * height / 4), stream)
            .map_err(|e| RpcError::application(e.to_string()))?;
        Ok(json!({
            "status": "done",
            "result": {"payload": {"kind": "byte_stream"}},
            "meta": {"action_id": "cap", "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1},
        })
        .to_string())
    });
}

/// The Python runtime's answer to a raw state read of `key`.
fn raw_read(session: &menlo_robot_sdk::Session, key: &str) -> Value {
    match session.state().get(key).unwrap() {
        StateReply::Raw(value) => value,
        other => panic!("raw reply expected for {key}, got {other:?}"),
    }
}

/// `state` goes as one v1 packet each way (its reply is small); the Python client answers a
/// v1 request with a v1 response. Proof that the request really went as v1: once the state
/// grows over 15 KiB, the v1 attempt fails with 1504 at the runtime and the SDK reads once
/// more as v2, so the runtime counts two reads for one `state()`.
#[test]
fn state_reads_go_as_v1_packets_to_the_python_runtime() {
    let p = Platform::start();
    let _runtime = python_runtime(&p);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();

    let StateReply::RobotStatus(state) = session.state().get("robot_status").unwrap() else {
        panic!("typed robot status expected");
    };
    assert_eq!(state.robot.entity_id, "robot_1");
    assert_eq!(raw_read(&session, "peer_stats")["state_reads"], 1);

    assert_eq!(raw_read(&session, "pad_state")["pad_bytes"], 20_000);
    let StateReply::RobotStatus(state) = session.state().get("robot_status").unwrap() else {
        panic!("typed robot status expected");
    };
    let pad = state.robot.extra.as_ref().and_then(|e| e["pad"].as_str());
    assert_eq!(pad.map(str::len), Some(20_000), "the large state arrived whole");
    assert_eq!(
        raw_read(&session, "peer_stats")["state_reads"],
        3,
        "a v1 attempt refused as too large, then one v2 read"
    );
}

#[test]
fn python_client_calls_the_rust_runtime_host() {
    let p = Platform::start();
    let host = Arc::new(p.runtime("rust-runtime", true, &[]));
    let seen: Seen = Arc::default();
    serve(&host, &seen);

    let token = p.livekit.token(&p.robot_id, "py-caller", false, &[]);
    let caller = PyPeer::spawn("caller.py", &[&p.livekit.url, &token, "rust-runtime"]);
    caller.wait_event("joined", PEER_START);

    let tools = caller.wait_event("tools_list", STEP);
    assert_eq!(tools["ok"], true, "{tools}");
    assert_eq!(tools["reply"][0]["name"], "go_to", "{tools}");

    let called = caller.wait_event("tools_call", STEP);
    assert_eq!(called["ok"], true, "{called}");
    assert_eq!(called["reply"]["status"], "done", "{called}");
    assert_eq!(
        called["reply"]["meta"]["action_id"], "act_0123456789ab",
        "{called}"
    );
    assert_eq!(
        called["reply"]["result"]["echo"],
        json!({"target": {"kind": "entity", "entity_id": "pad_B"}})
    );

    let state = caller.wait_event("state", STEP);
    assert_eq!(state["ok"], true, "{state}");
    assert_eq!(state["reply"]["robot"]["entity_id"], "robot_rs", "{state}");
    assert_eq!(state["reply"]["runtime"]["status"], "ready", "{state}");

    let unknown = caller.wait_event("unknown", STEP);
    assert_eq!(unknown["ok"], false, "{unknown}");
    assert_eq!(unknown["code"], 1400, "LiveKit UNSUPPORTED_METHOD: {unknown}");

    let failing = caller.wait_event("failing", STEP);
    assert_eq!(failing["ok"], false, "{failing}");
    assert_eq!(failing["code"], 4042, "{failing}");
    assert_eq!(failing["message"], "battery too low", "{failing}");

    let capture = caller.wait_event("capture", STEP);
    assert_eq!(capture["ok"], true, "{capture}");
    assert_eq!(capture["reply"]["result"]["payload"]["kind"], "byte_stream");
    let stream = &capture["stream"];
    assert!(stream.is_object(), "no byte stream reached Python: {capture}");
    assert_eq!(stream["sender"], "rust-runtime", "{capture}");
    assert_eq!(stream["topic"], "menlo.camera_capture", "{capture}");
    assert_eq!(stream["name"], "pov.jpg", "{capture}");
    assert_eq!(stream["mime_type"], "image/jpeg", "{capture}");
    assert_eq!(stream["attributes"]["request_id"], "cap-py-1", "{capture}");
    assert_eq!(stream["size"], 320 * 240 / 4, "{capture}");
    assert_eq!(stream["head"], "ffd8ffe0", "{capture}");

    // 40 kB each way is over RPC v1's 15 KiB cap: this round trip only works because both
    // sides speak RPC v2 (request and response as text data streams).
    let large = caller.wait_event("large", STEP);
    assert_eq!(large["ok"], true, "{large}");
    assert_eq!(large["reply"]["pad_len"], 40_000, "{large}");

    caller.wait_event("done", STEP);

    // What the Rust side saw: the Python caller's identity and its JSON payloads.
    let seen = seen.lock().unwrap();
    for method in [
        "runtime.tools_list",
        "runtime.tools_call",
        "runtime.state",
        "runtime.fail",
        "runtime.cameras_capture",
        "runtime.echo",
    ] {
        let (caller_identity, _) = seen
            .get(method)
            .unwrap_or_else(|| panic!("{method} never reached the Rust runtime"));
        assert_eq!(caller_identity, "py-caller", "{method}");
    }
    assert_eq!(
        seen["runtime.tools_call"].1["options"]["action_id"],
        "act_0123456789ab"
    );
    assert_eq!(seen["runtime.echo"].1["pad"].as_str().map(str::len), Some(40_000));
    assert!(!seen.contains_key("runtime.no_such_method"));
    assert!(host.is_connected());
}
