//! The simulated robot served on a real livekit-server, driven by a `Session`.

use std::time::Duration;
use std::time::Instant;

use crate::live_common::{wait_until, Platform};
use menlo_robot_sdk::dev::sim::{wall_clock, SharedSimRobot, SimConfig, SimRobot, SimRuntime};
use menlo_robot_sdk::{connect, ActionStatus, CaptureOptions, ConnectOptions, Error, Session};
use serde_json::json;

/// The platform's robot served by a simulator running `time_scale` times faster than real time.
fn sim_runtime(p: &Platform, time_scale: f64) -> SimRuntime {
    let config = SimConfig {
        time_scale,
        seed: 7,
        ..SimConfig::default()
    };
    let robot = SimRobot::new(&config, wall_clock()).unwrap();
    let token = p
        .livekit
        .token(&p.robot_id, &format!("simplesim:{}", p.robot_id), false, &[]);
    SimRuntime::connect(
        &p.livekit.url,
        &token,
        SharedSimRobot::new(robot),
        Duration::from_secs(15),
    )
    .unwrap()
}

fn session(p: &Platform) -> Session {
    let options = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim");
    connect(&p.client, &p.robot_id, options).unwrap()
}

fn jpeg_size(jpeg: &[u8]) -> (u16, u16) {
    let mut i = 2;
    while i + 9 < jpeg.len() {
        let length = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] == 0xC0 {
            let height = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let width = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return (width, height);
        }
        i += 2 + length;
    }
    panic!("no SOF0 segment");
}

#[test]
fn a_session_drives_the_simulated_robot() {
    let p = Platform::start();
    let _host = sim_runtime(&p, 10.0);
    let session = session(&p);

    let skills = session.discover_skills().unwrap();
    let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["go_to", "set_velocity", "stop", "pick_entity", "place_entity"]
    );

    let result = session
        .invoke(
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": "pad_B"}}),
            None,
        )
        .unwrap();
    assert_eq!(result.status, ActionStatus::Done, "{result:?}");
    let state = session.state().robot_status().unwrap();
    let position = state.robot.pose.unwrap().position;
    assert!(
        (position[0] - 8.5).abs() < 0.05 && (position[1] - 6.5).abs() < 0.05,
        "{position:?}"
    );
    assert_eq!(
        state.runtime.last_action.unwrap().action_id,
        result.meta.action_id
    );

    let failed = session
        .invoke(
            "go_to",
            json!({"target": {"kind": "pose", "x": 5.0, "y": 3.0}}),
            None,
        )
        .unwrap();
    assert_eq!(failed.error.unwrap().code, "NAVIGATION_STUCK");
    let bad = session.invoke("set_velocity", json!({"vx": 9}), None).unwrap();
    let error = bad.error.unwrap();
    assert_eq!(error.code, "INVALID_INPUT");
    assert!(error.message.starts_with("vx"), "{}", error.message);

    let pov = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert_eq!(&pov[..3], &[0xFF, 0xD8, 0xFF]);
    assert_eq!(&pov[pov.len() - 2..], &[0xFF, 0xD9]);
    assert_eq!(jpeg_size(&pov), (1280, 720));
    let options = CaptureOptions::new().width(640).height(480).quality(0.5);
    let topdown = session.get_vision("topdown", &options).unwrap();
    assert_eq!(jpeg_size(&topdown), (640, 480));
    match session.get_vision("thermal", &CaptureOptions::new()).unwrap_err() {
        Error::Runtime { code, .. } => assert_eq!(code, "UNKNOWN_CAMERA"),
        other => panic!("a runtime error expected, got {other:?}"),
    }

    let scene = session.state().scene_state().unwrap();
    assert!(scene.entities.contains_key("cube_1"));
    let capabilities = session.get_capabilities().unwrap().unwrap();
    assert_eq!(capabilities["seed"], 7);
    session.disconnect().unwrap();
}

#[test]
fn a_long_action_is_cancelled_and_a_second_one_is_busy() {
    let p = Platform::start();
    let _host = sim_runtime(&p, 1.0);
    let session = session(&p);

    let pending = session
        .start_invoke(
            "set_velocity",
            json!({"wz": 0.5, "duration_s": 120}),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    let id = pending.action_id().to_owned();
    wait_until(Duration::from_secs(20), "the action to run", || {
        let state = session.state().robot_status().ok()?;
        state.runtime.active_action.filter(|a| a.action_id == id)
    });

    let busy = session
        .invoke(
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": "pad_C"}}),
            None,
        )
        .unwrap();
    assert_eq!(busy.error.unwrap().code, "BUSY");

    let cancelled = session.cancel_action("cancel-active").unwrap();
    assert!(cancelled.is_cancelled());
    assert_eq!(cancelled.meta.action_id, id);
    let result = pending.wait().unwrap();
    assert!(result.is_cancelled(), "{result:?}");
    assert_eq!(result.meta.action_id, id);

    match session.cancel_action("cancel-active").unwrap_err() {
        Error::Runtime { code, .. } => assert_eq!(code, "NO_ACTIVE_ACTION"),
        other => panic!("a runtime error expected, got {other:?}"),
    }
    session.disconnect().unwrap();
}

#[test]
fn dropping_the_runtime_mid_action_ends_the_call_promptly() {
    let p = Platform::start();
    let runtime = sim_runtime(&p, 1.0);
    let session = session(&p);
    let pending = session
        .start_invoke(
            "set_velocity",
            json!({"wz": 0.2, "duration_s": 300}),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    let id = pending.action_id().to_owned();
    wait_until(Duration::from_secs(20), "the action to run", || {
        runtime
            .sim()
            .with_robot(|r| r.world().active())
            .filter(|a| a.action_id == id)
    });
    let dropped = Instant::now();
    drop(runtime);
    let result = pending.wait();
    assert!(dropped.elapsed() < Duration::from_secs(15), "the call hung");
    match result {
        Ok(result) => assert!(result.is_cancelled(), "{result:?}"),
        Err(err) => assert!(
            matches!(err, Error::Disconnected { .. } | Error::Runtime { .. }),
            "{err:?}"
        ),
    }
    session.disconnect().unwrap();
}
