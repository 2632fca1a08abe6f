//! The live Session against a real livekit-server, with a Rust runtime peer (RuntimeHost).
#![cfg(all(feature = "livekit", feature = "dev"))]

#[path = "live_common/mod.rs"]
mod live_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use live_common::Platform;
use menlo_robot_sdk::{connect, ActionStatus, ConnectOptions, Error, RuntimeHost, SessionEvent, StateReply};
use serde_json::{json, Value};

fn done_result(action_id: &str) -> String {
    json!({"status":"done","result":{"ok":true},"meta":{"action_id":action_id,"started_at_ms":1,"finished_at_ms":2,"duration_ms":1}}).to_string()
}

fn robot_status() -> String {
    json!({
        "timestamp": {"wall_time_ms": 1},
        "runtime": {"status": "ready", "accepts_tool_calls": true, "accepts_capture_requests": true},
        "robot": {"entity_id": "robot_1", "status": "ready"}
    })
    .to_string()
}

/// A runtime answering the basic methods; counts tool calls.
fn serve_basics(host: &RuntimeHost, calls: Arc<AtomicUsize>) {
    host.handle("runtime.tools_list", |_| {
        Ok(
            json!([{"name":"go_to","description":"go somewhere","input_schema":{"type":"object"}}])
                .to_string(),
        )
    });
    host.handle("runtime.tools_call", move |call| {
        calls.fetch_add(1, Ordering::SeqCst);
        let request: Value = serde_json::from_str(&call.payload).unwrap();
        Ok(done_result(request["options"]["action_id"].as_str().unwrap()))
    });
    host.handle("runtime.state", |_| Ok(robot_status()));
}

fn simplesim() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
}

#[test]
fn connect_discover_invoke_read_and_disconnect() {
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = Arc::new(AtomicUsize::new(0));
    serve_basics(&runtime, calls.clone());

    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let skills = session.discover_skills().unwrap();
    assert_eq!(skills[0].name, "go_to");
    let result = session
        .invoke(
            "go_to",
            json!({"target":{"kind":"entity","entity_id":"pad_B"}}),
            None,
        )
        .unwrap();
    assert_eq!(result.status, ActionStatus::Done);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    match session.state().get("robot_status").unwrap() {
        StateReply::RobotStatus(state) => assert_eq!(state.robot.entity_id, "robot_1"),
        other => panic!("typed robot status expected, got {other:?}"),
    }
    session.disconnect(true).unwrap();
    session.disconnect(true).unwrap();
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "session deleted"
    );

    let events: Vec<SessionEvent> = session.events().try_iter().collect();
    assert!(
        matches!(events.first(), Some(SessionEvent::Connected { .. })),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::ActionResult(r) if r.action_id == result.meta.action_id)));
    let disconnects = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Disconnected { .. }))
        .count();
    assert_eq!(disconnects, 1, "{events:?}");
    let err = session.state().get("robot_status").unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
}
