//! ICE over TCP (issue 10) on loopback against a real livekit-server (its ICE-TCP port on a
//! free port per server): with the client's UDP switched off (a doc-hidden test knob), the
//! session must connect over TCP, and RPC and a 1280×720 frame must work over it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::live_common::{Backend, LiveKit, Platform};
use menlo_robot_sdk::{
    connect, CaptureOptions, ConnectOptions, OutgoingStream, RpcError, RuntimeHost, StateReply,
};
use serde_json::{json, Value};

fn robot_status() -> String {
    json!({
        "timestamp": {"wall_time_ms": 1},
        "runtime": {"status": "ready", "accepts_tool_calls": true, "accepts_capture_requests": true},
        "robot": {"entity_id": "robot_1", "status": "ready"}
    })
    .to_string()
}

/// A JPEG-looking 1280×720-sized frame: `FF D8 FF E0`, noise, `FF D9`.
pub fn frame_720p() -> Vec<u8> {
    let len = 1280 * 720 / 4;
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x = 720u64;
    while bytes.len() < len - 2 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        bytes.push((x >> 33) as u8);
    }
    bytes.extend([0xFF, 0xD9]);
    bytes
}

/// Answers `runtime.tools_list`, `runtime.state` and `runtime.cameras_capture` (the frame as a byte stream).
pub fn serve_state_and_camera(host: &Arc<RuntimeHost>, frame: Vec<u8>) {
    host.handle("runtime.tools_list", |_| {
        Ok(
            json!([{"name":"go_to","description":"go somewhere","input_schema":{"type":"object"}}])
                .to_string(),
        )
    });
    host.handle("runtime.state", |_| Ok(robot_status()));
    let weak = Arc::downgrade(host);
    host.handle("runtime.cameras_capture", move |call| {
        let request: Value = serde_json::from_str(&call.payload).map_err(|e| RpcError::application(e.to_string()))?;
        let id = request["stream"]["id"].as_str().unwrap_or_default().to_owned();
        let topic = request["stream"]["topic"].as_str().unwrap_or_default().to_owned();
        let host = weak.upgrade().ok_or_else(|| RpcError::application("gone"))?;
        let attributes: HashMap<String, String> = [("request_id".to_owned(), id.clone())].into();
        let stream = attributes.into_iter().fold(
            OutgoingStream::new(topic)
                .name("pov.jpg")
                .mime_type("image/jpeg")
                .destination(call.caller_identity.clone()),
            |stream, (key, value)| stream.attribute(key, value),
        );
        host.send_bytes(frame.clone(), stream)
            .map_err(|e| RpcError::application(e.to_string()))?;
        let meta = json!({"action_id": format!("cap-{id}"), "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1});
        Ok(json!({"status":"done","result":{"payload":{"kind":"byte_stream"}},"meta":meta}).to_string())
    });
}

pub fn simplesim_over_tcp() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .ice_udp_for_tests(false)
}

#[test]
fn without_udp_the_session_connects_over_ice_tcp_and_rpc_and_a_720p_frame_work() {
    if Backend::from_env() == Backend::Embedded {
        eprintln!("skipped: the embedded SFU has no ICE-TCP listener yet");
        return;
    }
    let Some(livekit) = LiveKit::start_for_ice_tcp() else {
        eprintln!("skipped: no non-loopback IPv4 address for the server's ICE-TCP candidates");
        return;
    };
    let p = Platform::on_livekit(livekit);
    let runtime = Arc::new(p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]));
    let frame = frame_720p();
    serve_state_and_camera(&runtime, frame.clone());

    let started = Instant::now();
    let session = connect(&p.client, &p.robot_id, simplesim_over_tcp()).unwrap_or_else(|e| {
        panic!(
            "no ICE-TCP connection: {e}\nserver log:\n{}",
            p.livekit.server_log()
        )
    });
    eprintln!("connected over ICE-TCP in {:?}", started.elapsed());
    for _ in 0..5 {
        match session.state().get("robot_status").unwrap() {
            StateReply::RobotStatus(state) => assert_eq!(state.robot.entity_id, "robot_1"),
            other => panic!("typed robot status expected, got {other:?}"),
        }
    }
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert!(jpeg == frame, "the 1280×720 frame arrives intact over TCP");
    session.disconnect().unwrap();
    assert!(started.elapsed() < Duration::from_secs(120));
}
