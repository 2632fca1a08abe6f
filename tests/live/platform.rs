//! The embedded platform end to end: worker dispatch, the simulated viewer, the quickstart
//! flow, rooms that end with their sessions, and a platform that goes away mid-session.
//!
//! The LiveKit backend follows `MENLO_LIVE_BACKEND` like every live suite: a real
//! livekit-server by default (as `LiveKitBackend::External`), or with `embedded` the
//! platform's own SFU (the same tests, through a parameter).

use std::time::{Duration, Instant};

use crate::live_common::{wait_until, Backend, LiveKit};
use menlo_robot_sdk::dev::{LiveKitBackend, Platform};
use menlo_robot_sdk::{
    connect, ActionStatus, CaptureOptions, ConnectOptions, NewRobot, ParticipantKind, Session, SessionEvent,
    SessionOptions,
};
use serde_json::json;

/// A platform on the backend the environment asks for; the server (if any) lives as long.
pub(crate) struct Fixture {
    pub(crate) platform: Platform,
    server: Option<LiveKit>,
}

pub(crate) fn platform() -> Fixture {
    let builder = Platform::builder().time_scale(10.0);
    match Backend::from_env() {
        // The platform's own SFU, as `Platform::start()` gives it.
        Backend::Embedded => Fixture {
            platform: builder.start().expect("embedded platform"),
            server: None,
        },
        Backend::LiveKitServer => {
            let server = LiveKit::start_on(Backend::LiveKitServer);
            let platform = builder
                .livekit(LiveKitBackend::External(server.settings()))
                .start()
                .expect("platform on livekit-server");
            Fixture {
                platform,
                server: Some(server),
            }
        }
    }
}

pub(crate) fn robot(p: &Platform) -> String {
    p.client()
        .robots()
        .create(&NewRobot::new("test robot", "asimov-v0"))
        .unwrap()
        .robot
        .id
}

pub(crate) fn simplesim() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .session_ready_timeout(Duration::from_secs(20))
}

fn go_to(session: &Session, pad: &str) -> menlo_robot_sdk::ActionResult {
    let target = json!({"target": {"kind": "entity", "entity_id": pad}});
    session
        .invoke("go_to", target, Some(Duration::from_secs(60)))
        .unwrap()
}

fn position(session: &Session) -> [f64; 3] {
    let status = session.state().robot_status().unwrap();
    let pose = status.robot.pose.expect("a pose");
    [pose.position[0], pose.position[1], pose.position[2]]
}

#[test]
fn the_quickstart_flow_drives_a_robot_through_the_simulated_viewer() {
    let f = platform();
    let p = &f.platform;
    let robot_id = robot(p);
    let session = connect(p.client(), &robot_id, simplesim()).unwrap();
    let link = p
        .client()
        .room_keys()
        .link(&robot_id, &Default::default())
        .unwrap();
    p.open_viewer(&link).unwrap();

    let skills = session.discover_skills().unwrap();
    let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
    for skill in ["go_to", "set_velocity", "stop", "pick_entity", "place_entity"] {
        assert!(names.contains(&skill), "{skill} missing from {names:?}");
    }
    let viewer = session
        .participants()
        .into_iter()
        .find(|p| p.identity == format!("simplesim:{robot_id}"))
        .expect("the viewer joined as simplesim:<robot_id>");
    assert_eq!(viewer.kind, ParticipantKind::Standard);

    let result = go_to(&session, "pad_B");
    assert_eq!(result.status, ActionStatus::Done, "{result:?}");
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);

    session.disconnect().unwrap();
    assert!(
        p.client().sessions().get(&robot_id).unwrap().is_none(),
        "session deleted"
    );
    wait_until(Duration::from_secs(10), "the viewer leaves with the room", || {
        (p.live_robot_count() == 0).then_some(())
    });
    p.client().robots().delete(&robot_id).unwrap();
}

#[test]
fn worker_names_dispatch_simulated_agents_as_the_platform_does() {
    let f = platform();
    let p = &f.platform;

    // ["sim-worker"]: one agent, kind agent, lk.agent.name filling the slot.
    let robot_id = robot(p);
    let options = ConnectOptions::new()
        .worker_names(["sim-worker"])
        .wait_for_ready(true)
        .session_ready_timeout(Duration::from_secs(20));
    let session = connect(p.client(), &robot_id, options).unwrap();
    let agent = session
        .participants()
        .into_iter()
        .find(|p| p.kind == ParticipantKind::Agent)
        .expect("a dispatched agent");
    assert_eq!(
        agent.attributes.get("lk.agent.name").map(String::as_str),
        Some("sim-worker")
    );
    assert!(agent.identity.starts_with("agent-"), "{}", agent.identity);
    assert_eq!(go_to(&session, "pad_A").status, ActionStatus::Done);
    session.disconnect().unwrap();

    // []: nothing is dispatched.
    let quiet = robot(p);
    let session = connect(p.client(), &quiet, simplesim()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(session.participants().is_empty(), "{:?}", session.participants());
    session.disconnect().unwrap();

    // Omitted: the platform's default dispatch (sim-worker).
    let default = robot(p);
    let created = p
        .client()
        .robots()
        .create_session(&default, &SessionOptions::new())
        .unwrap();
    assert_eq!(
        created.room_metadata.dispatched_agent_names,
        Some(vec!["sim-worker".to_owned()])
    );
    wait_until(Duration::from_secs(10), "the default agent joins", || {
        (p.live_robot_count() == 1).then_some(())
    });
    p.client().robots().delete_session(&default).unwrap();
}

#[test]
fn two_robots_in_two_rooms_do_not_see_each_other() {
    let f = platform();
    let p = &f.platform;
    let (a, b) = (robot(p), robot(p));
    let options = || {
        ConnectOptions::new()
            .worker_names(["sim-worker"])
            .wait_for_ready(true)
    };
    let session_a = connect(p.client(), &a, options()).unwrap();
    let session_b = connect(p.client(), &b, options()).unwrap();
    let before_b = position(&session_b);

    assert_eq!(go_to(&session_a, "pad_B").status, ActionStatus::Done);
    assert_eq!(position(&session_b), before_b, "robot B moved with A");
    assert_ne!(position(&session_a), before_b);
    for session in [&session_a, &session_b] {
        let agents = session
            .participants()
            .into_iter()
            .filter(|p| p.kind == ParticipantKind::Agent)
            .count();
        assert_eq!(agents, 1, "one robot per room");
    }
    session_a.disconnect().unwrap();
    session_b.disconnect().unwrap();
}

#[test]
fn deleting_the_session_ends_the_room_and_its_robot() {
    let f = platform();
    let p = &f.platform;
    let robot_id = robot(p);
    let session = connect(
        p.client(),
        &robot_id,
        ConnectOptions::new()
            .worker_names(["sim-worker"])
            .wait_for_ready(true),
    )
    .unwrap();
    // The agent is visible in the room a moment before its own join returns.
    wait_until(Duration::from_secs(10), "the platform counts its robot", || {
        (p.live_robot_count() == 1).then_some(())
    });
    p.client().robots().delete_session(&robot_id).unwrap();
    wait_until(Duration::from_secs(10), "the robot leaves", || {
        (p.live_robot_count() == 0).then_some(())
    });
    if f.server.is_none() {
        // The embedded SFU ends the room and tells everyone, as livekit-server does when a room
        // is deleted; (an external server keeps the room until it empties).
        let gone = wait_until(Duration::from_secs(10), "the session hears the room end", || {
            session
                .events()
                .try_iter()
                .find(|e| matches!(e, SessionEvent::Disconnected { .. }))
        });
        assert!(matches!(gone, SessionEvent::Disconnected { .. }));
    }
}

#[test]
fn a_platform_dropped_mid_session_disconnects_the_session_promptly() {
    let f = platform();
    let robot_id = robot(&f.platform);
    let session = connect(
        f.platform.client(),
        &robot_id,
        ConnectOptions::new()
            .worker_names(["sim-worker"])
            .wait_for_ready(true)
            // The engine tries to get the server back for this long, then gives up.
            .reconnect_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let slow = session
        .start_invoke("set_velocity", json!({"wz": 0.2, "duration_s": 600.0}), None)
        .unwrap();
    let dropped = Instant::now();
    drop(f);
    let outcome = slow.wait();
    assert!(outcome.is_err(), "the action cannot end: {outcome:?}");
    assert!(
        dropped.elapsed() < Duration::from_secs(20),
        "the pending call ended only after {:?}",
        dropped.elapsed()
    );
    wait_until(
        Duration::from_secs(20),
        "the session reports Disconnected",
        || {
            session
                .events()
                .try_iter()
                .find(|e| matches!(e, SessionEvent::Disconnected { .. }))
        },
    );
    assert!(!session.is_connected());
    assert!(session.state().robot_status().is_err());
}

/// The platform's page in a real headless Chromium (Debian's, driven by playwright-core from
/// npm; `bash .ci/setup` installs both): every live robot has a tile whose top-down view keeps
/// changing, with a status line each. The frame rate is printed, not asserted (the page asks
/// for one every 120 ms; a loaded machine serves fewer). Saves a screenshot next to the test
/// binaries (`target/dev-platform.png`), the one the README shows.
#[test]
fn the_page_shows_every_live_robot_with_updating_frames() {
    let f = platform();
    let p = &f.platform;
    let robots: Vec<String> = (0..3).map(|_| robot(p)).collect();
    let sessions: Vec<Session> = robots
        .iter()
        .map(|id| {
            connect(
                p.client(),
                id,
                ConnectOptions::new()
                    .worker_names(["sim-worker"])
                    .wait_for_ready(true),
            )
            .unwrap()
        })
        .collect();
    let _moving = sessions[0]
        .start_invoke(
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": "pad_D"}}),
            None,
        )
        .unwrap();

    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let screenshot = manifest.join("target").join("dev-platform.png");
    let output = std::process::Command::new("node")
        .arg(manifest.join("tests/browser/page_check.mjs"))
        .arg(p.page_url())
        .arg(robots.len().to_string())
        .arg(&screenshot)
        .arg("3")
        .output()
        .expect("node (bash .ci/setup installs it with playwright-core and chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "page check failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(report["tiles"], robots.len(), "{report}");
    for id in &robots {
        let fps = report["fps"][id].as_f64().unwrap_or(0.0);
        assert!(fps > 0.0, "{id}'s view never changed: {report}");
        let status = report["status"][id].as_str().unwrap_or("");
        assert!(status.contains(id.as_str()), "status line of {id}: {status:?}");
    }
    println!("page: {report}; screenshot {}", screenshot.display());
    assert!(std::fs::metadata(&screenshot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
    for session in sessions {
        session.disconnect().unwrap();
    }
}

#[test]
fn a_scene_added_to_the_platform_is_chosen_by_scene_id() {
    let text = include_str!("../../src/dev/sim/scenes/two_rooms.json");
    let mut scene = menlo_robot_sdk::dev::scene::Scene::from_json(text).unwrap();
    scene.scene_id = "warehouse_test".into();
    let platform = Platform::builder().add_scene(scene).start().unwrap();
    let robot_id = robot(&platform);
    let options = ConnectOptions::new()
        .worker_names(["sim-worker"])
        .scene_id("warehouse_test")
        .wait_for_ready(true);
    let session = connect(platform.client(), &robot_id, options).unwrap();
    let entities = session.state().scene_state().unwrap().entities;
    assert!(entities.contains_key("pad_E"), "{:?}", entities.keys());
    // pad_E sits in a closed pen in this scene: no path.
    let stuck = go_to(&session, "pad_E");
    assert_eq!(
        stuck.error.map(|e| e.code.as_str().to_owned()).as_deref(),
        Some("NAVIGATION_STUCK")
    );
    session.disconnect().unwrap();

    let bad = Platform::builder().time_scale(0.0).start().unwrap_err();
    assert!(bad.to_string().contains("time_scale"), "{bad}");
}
