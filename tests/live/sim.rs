//! The simulated robot, served by the platform through the viewer flow, driven by a `Session`.

use std::time::{Duration, Instant};

use crate::live_common::wait_until;
use crate::platform::{platform, robot, simplesim, Fixture};
use menlo_robot_sdk::{connect, ActionStatus, CaptureOptions, Error, PendingAction, Session};
use serde_json::json;

/// A robot whose simulated runtime joined through the viewer flow (a room key opened by the
/// platform), and the session driving it.
fn viewer_session(f: &Fixture) -> Session {
    let p = &f.platform;
    let robot_id = robot(p);
    let session = connect(p.client(), &robot_id, simplesim()).unwrap();
    let link = p
        .client()
        .room_keys()
        .link(&robot_id, &Default::default())
        .unwrap();
    p.open_viewer(&link).unwrap();
    session
}

/// Starts turning in place for `duration_s` and waits until the runtime reports it running.
fn start_long_action(session: &Session, wz: f64, duration_s: f64) -> PendingAction {
    let pending = session
        .start_invoke(
            "set_velocity",
            json!({"wz": wz, "duration_s": duration_s}),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    let id = pending.action_id().to_owned();
    wait_until(Duration::from_secs(20), "the action to run", || {
        let state = session.state().robot_status().ok()?;
        state.runtime.active_action.filter(|a| a.action_id == id)
    });
    pending
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
    let f = platform();
    let session = viewer_session(&f);

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
    let f = platform();
    let session = viewer_session(&f);

    let pending = start_long_action(&session, 0.5, 120.0);
    let id = pending.action_id().to_owned();

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
fn a_robot_leaving_mid_action_ends_the_call_promptly() {
    let f = platform();
    let session = viewer_session(&f);
    let pending = start_long_action(&session, 0.2, 300.0);
    // The platform's robots leave with their session (the room ends with it too on the
    // embedded SFU).
    let dropped = Instant::now();
    f.platform
        .client()
        .robots()
        .delete_session(session.robot_id())
        .unwrap();
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
