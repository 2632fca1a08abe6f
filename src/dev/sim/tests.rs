//! Tests of the world, the skills, the dispatcher and the cameras, all on simulated time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::plan::is_clear;
use super::*;
use crate::runtime::calls::{
    parse_cancel_reply, parse_capabilities_reply, parse_capture_ack, parse_raw_reply,
    parse_runtime_state_reply, parse_scene_state_reply, parse_tools_call_reply, parse_tools_list_reply,
    CapabilitiesOutcome, CaptureAck,
};
use crate::runtime::models::{ActionStatus, LastActionStatus, RobotStatus, RuntimeStatus};
use crate::Error;

const T0: Duration = Duration::from_secs(1_700_000_000);

fn world(scene_id: &str, seed: u64) -> World {
    World::new(Scene::builtin(scene_id).unwrap(), seed)
}

fn go_to_pad(id: &str) -> Command {
    Command::GoTo(Target::Entity(id.into()))
}

/// Steps until `action_id` ends (at most `max_s` simulated seconds), checking that the robot
/// never overlaps anything.
fn run(world: &mut World, action_id: &str, max_s: f64) -> Outcome {
    let steps = (max_s / STEP_S) as usize;
    for _ in 0..steps {
        world.step_once();
        let robot = world.robot();
        assert!(
            is_clear(world.scene(), robot.x, robot.y, robot.radius_m - 1e-6),
            "the robot overlaps something at ({}, {})",
            robot.x,
            robot.y
        );
        if let Some(outcome) = world.take_outcome(action_id) {
            return outcome;
        }
    }
    panic!("{action_id} did not end within {max_s} s");
}

fn start(world: &mut World, id: &str, name: &str, command: Command) -> Option<Outcome> {
    world.start(id, name, command)
}

fn failure_code(outcome: &Outcome) -> &str {
    &outcome.result.as_ref().unwrap_err().code
}

fn near(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

// ---------------------------------------------------------------------------------------------
// World and skills

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<World>();
    send_sync::<SimRobot>();
    send_sync::<SharedSimRobot>();
    send_sync::<Scene>();
    send_sync::<SimError>();
}

#[test]
fn go_to_a_pad_plans_around_the_wall_and_arrives() {
    let mut w = world("default", 1);
    assert!(start(&mut w, "a1", "go_to", go_to_pad("pad_B")).is_none());
    assert_eq!(w.robot_status(), "moving");
    assert!(w.remaining_path().len() >= 3, "the path goes around the wall");
    let mut last_progress = -1.0;
    for _ in 0..50 {
        w.step_once();
        let progress = w.active().unwrap().progress;
        assert!(progress.0 >= last_progress && progress.2 == "m");
        last_progress = progress.0;
    }
    assert!(last_progress > 0.0);
    let outcome = run(&mut w, "a1", 60.0);
    let result = outcome.result.unwrap();
    assert_eq!(result["reached"], true);
    let robot = w.robot();
    assert!(robot.x.hypot(robot.y) > 0.0);
    assert!(near(robot.x, 8.5, 0.05) && near(robot.y, 6.5, 0.05), "{robot:?}");
    assert!(
        outcome.finished_s > outcome.started_s + 5.0,
        "it takes time to drive"
    );
    assert_eq!(w.robot_status(), "ready");
    assert!(w.last_outcome().is_some_and(|o| o.action_id == "a1"));
    assert_eq!((robot.vx, robot.vy, robot.wz), (0.0, 0.0, 0.0));
}

#[test]
fn go_to_where_the_robot_already_stands_is_done_at_once() {
    // The robot starts on pad_A: the plan is the goal alone (this used to panic).
    let mut w = world("default", 0);
    assert!(start(&mut w, "act_here", "go_to", go_to_pad("pad_A")).is_none());
    let outcome = run(&mut w, "act_here", 2.0);
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
}

#[test]
fn go_to_a_pose_ends_at_its_heading() {
    let mut w = world("default", 1);
    let target = Target::Pose {
        x: 2.5,
        y: 3.0,
        yaw_deg: Some(-90.0),
    };
    start(&mut w, "a1", "go_to", Command::GoTo(target));
    run(&mut w, "a1", 30.0).result.unwrap();
    let robot = w.robot();
    assert!(near(robot.x, 2.5, 0.05) && near(robot.y, 3.0, 0.05), "{robot:?}");
    assert!(near(robot.yaw.to_degrees(), -90.0, 1.0), "{robot:?}");
}

#[test]
fn go_to_fails_without_a_path() {
    let mut w = world("two_rooms", 0);
    let outcome = start(&mut w, "a1", "go_to", go_to_pad("pad_E")).expect("fails at once");
    assert_eq!(failure_code(&outcome), "NAVIGATION_STUCK");
    assert!(outcome.result.unwrap_err().message.contains("pad_E"));
    let inside_wall = Target::Pose {
        x: 6.0,
        y: 1.0,
        yaw_deg: None,
    };
    let outcome = start(&mut w, "a2", "go_to", Command::GoTo(inside_wall)).unwrap();
    assert_eq!(failure_code(&outcome), "NAVIGATION_STUCK");
    let outcome = start(&mut w, "a3", "go_to", go_to_pad("pad_Z")).unwrap();
    assert_eq!(failure_code(&outcome), "ENTITY_NOT_FOUND");
    let outcome = start(&mut w, "a4", "go_to", go_to_pad("wall_left")).unwrap();
    assert_eq!(failure_code(&outcome), "INVALID_INPUT");
    assert_eq!(w.robot_status(), "ready");
    assert_eq!(w.last_outcome().unwrap().action_id, "a4");
    // Through the doorway is fine.
    assert!(start(&mut w, "a5", "go_to", go_to_pad("pad_B")).is_none());
    run(&mut w, "a5", 60.0).result.unwrap();
}

#[test]
fn set_velocity_turns_and_drives_then_stops() {
    let mut w = world("default", 0);
    let turn = Command::SetVelocity {
        vx: 0.0,
        vy: 0.0,
        wz: 0.8,
        duration_s: 2.0,
    };
    start(&mut w, "a1", "set_velocity", turn);
    assert_eq!(w.robot_status(), "moving");
    let outcome = run(&mut w, "a1", 5.0);
    assert!(near(outcome.finished_s - outcome.started_s, 2.0, 1e-6));
    assert!(near(w.robot().yaw, 1.6, 1e-6), "{:?}", w.robot());
    assert_eq!((w.robot().x, w.robot().y), (1.5, 4.0), "turning in place");

    let sideways = Command::SetVelocity {
        vx: 0.0,
        vy: -0.5,
        wz: 0.0,
        duration_s: 1.0,
    };
    start(&mut w, "a2", "set_velocity", sideways);
    run(&mut w, "a2", 5.0).result.unwrap();
    // Facing 1.6 rad (≈ north), "right" is ≈ east.
    assert!(
        near(w.robot().x, 1.5 + 0.5 * 1.6f64.sin(), 1e-3),
        "{:?}",
        w.robot()
    );
}

#[test]
fn set_velocity_into_an_obstacle_is_a_collision() {
    let mut w = world("default", 0);
    // Facing east towards the wall at x = 4.8, 3.05 m ahead of the body.
    let forward = Command::SetVelocity {
        vx: 1.0,
        vy: 0.0,
        wz: 0.0,
        duration_s: 10.0,
    };
    start(&mut w, "a1", "set_velocity", forward);
    let outcome = run(&mut w, "a1", 10.0);
    assert_eq!(failure_code(&outcome), "COLLISION");
    assert!(outcome.finished_s < 4.0, "ended at the wall, not after 10 s");
    let robot = w.robot();
    assert!(
        robot.x > 4.4 && robot.x + robot.radius_m <= 4.8 + 1e-9,
        "{robot:?}"
    );
    assert_eq!(w.robot_status(), "ready");
}

#[test]
fn a_second_mutating_call_is_busy_and_stop_cancels() {
    let mut w = world("default", 0);
    start(&mut w, "a1", "go_to", go_to_pad("pad_B"));
    w.advance_to(1.0);
    let busy = start(&mut w, "a2", "go_to", go_to_pad("pad_C")).unwrap();
    assert_eq!(failure_code(&busy), "BUSY");
    assert!(busy.result.unwrap_err().message.contains("a1"));
    assert_eq!(w.active().unwrap().action_id, "a1", "the running action goes on");

    let stop = start(&mut w, "s1", "stop", Command::Stop).unwrap();
    assert_eq!(stop.result.unwrap()["stopped_action_id"], "a1");
    let stopped = w.take_outcome("a1").unwrap();
    assert_eq!(failure_code(&stopped), CANCELLED);
    assert!(!w.is_busy());
    let (x, y) = (w.robot().x, w.robot().y);
    w.advance_to(5.0);
    assert_eq!((w.robot().x, w.robot().y), (x, y), "it stands still");
    // Stop with nothing running is fine too.
    let idle = start(&mut w, "s2", "stop", Command::Stop).unwrap();
    assert_eq!(idle.result.unwrap()["stopped_action_id"], Value::Null);
}

#[test]
fn cancel_by_id_or_active() {
    let mut w = world("default", 0);
    assert_eq!(w.cancel(None).unwrap_err().code, "NO_ACTIVE_ACTION");
    start(&mut w, "a1", "go_to", go_to_pad("pad_B"));
    assert_eq!(w.cancel(Some("other")).unwrap_err().code, "ACTION_NOT_FOUND");
    let cancelled = w.cancel(Some("a1")).unwrap();
    assert_eq!(failure_code(&cancelled), CANCELLED);
    assert!(w.take_outcome("a1").is_some(), "the waiting call sees it too");
    start(&mut w, "a2", "go_to", go_to_pad("pad_B"));
    assert_eq!(w.cancel(None).unwrap().action_id, "a2");
}

#[test]
fn pick_carry_and_place() {
    let mut w = world("default", 0);
    let pick = |id: &str| Command::Pick { entity_id: id.into() };
    let far = start(&mut w, "p0", "pick_entity", pick("cube_2")).unwrap();
    assert_eq!(failure_code(&far), "TOO_FAR");
    assert_eq!(
        failure_code(&start(&mut w, "p1", "pick_entity", pick("pad_B")).unwrap()),
        "NOT_PICKABLE"
    );
    assert_eq!(
        failure_code(&start(&mut w, "p2", "pick_entity", pick("nope")).unwrap()),
        "ENTITY_NOT_FOUND"
    );
    let place = Command::Place {
        entity_id: None,
        on: None,
    };
    assert_eq!(
        failure_code(&start(&mut w, "p3", "place_entity", place.clone()).unwrap()),
        "NOT_HOLDING"
    );

    start(&mut w, "g1", "go_to", go_to_pad("cube_1"));
    run(&mut w, "g1", 30.0).result.unwrap();
    assert!(start(&mut w, "p4", "pick_entity", pick("cube_1")).is_none());
    let picked = run(&mut w, "p4", 2.0);
    assert!(near(picked.finished_s - picked.started_s, HANDLING_S, 1e-6));
    assert_eq!(w.robot_status(), "holding");
    assert_eq!(w.robot().held, ["cube_1"]);
    assert_eq!(
        failure_code(&start(&mut w, "p5", "pick_entity", pick("cube_1")).unwrap()),
        "ALREADY_HELD"
    );

    // Carried along to pad_D, and put down on it.
    start(&mut w, "g2", "go_to", go_to_pad("pad_D"));
    assert_eq!(w.robot_status(), "moving");
    run(&mut w, "g2", 30.0).result.unwrap();
    let cube = w.objects().iter().find(|o| o.id == "cube_1").unwrap();
    assert_eq!((cube.x, cube.y), (w.robot().x, w.robot().y));
    let on_pad = Command::Place {
        entity_id: Some("cube_1".into()),
        on: Some("pad_D".into()),
    };
    start(&mut w, "p6", "place_entity", on_pad);
    run(&mut w, "p6", 2.0).result.unwrap();
    let cube = w.objects().iter().find(|o| o.id == "cube_1").unwrap();
    assert_eq!((cube.x, cube.y, cube.held_by.clone()), (3.0, 7.0, None));
    assert_eq!(w.robot_status(), "ready");
    assert!(w.robot().held.is_empty());
}

#[test]
fn place_checks_reach_and_room() {
    let mut w = world("default", 0);
    start(&mut w, "g1", "go_to", go_to_pad("cube_1"));
    run(&mut w, "g1", 30.0).result.unwrap();
    start(
        &mut w,
        "p1",
        "pick_entity",
        Command::Pick {
            entity_id: "cube_1".into(),
        },
    );
    run(&mut w, "p1", 2.0).result.unwrap();
    let hands_full = start(
        &mut w,
        "p2",
        "pick_entity",
        Command::Pick {
            entity_id: "cube_2".into(),
        },
    )
    .unwrap();
    assert_eq!(failure_code(&hands_full), "HANDS_FULL");
    let far_pad = Command::Place {
        entity_id: None,
        on: Some("pad_B".into()),
    };
    assert_eq!(
        failure_code(&start(&mut w, "p3", "place_entity", far_pad).unwrap()),
        "TOO_FAR"
    );
    let other = Command::Place {
        entity_id: Some("cube_2".into()),
        on: None,
    };
    assert_eq!(
        failure_code(&start(&mut w, "p4", "place_entity", other).unwrap()),
        "NOT_HOLDING"
    );
    // Face the floor's north edge from close by: no room in front.
    let to_edge = Target::Pose {
        x: 2.0,
        y: 7.6,
        yaw_deg: Some(90.0),
    };
    start(&mut w, "g2", "go_to", Command::GoTo(to_edge));
    run(&mut w, "g2", 30.0).result.unwrap();
    let blocked = Command::Place {
        entity_id: None,
        on: None,
    };
    assert_eq!(
        failure_code(&start(&mut w, "p5", "place_entity", blocked).unwrap()),
        "PLACE_BLOCKED"
    );
}

/// Robot poses `(x, y, yaw)` while going to `cube_2`, and where the objects started.
type Trajectory = (Vec<(f64, f64, f64)>, Vec<(f64, f64)>);

fn trajectory(seed: u64) -> Trajectory {
    let mut w = world("default", seed);
    let objects = w.objects().iter().map(|o| (o.x, o.y)).collect();
    start(&mut w, "g1", "go_to", go_to_pad("cube_2"));
    let mut poses = Vec::new();
    for _ in 0..2000 {
        w.step_once();
        let r = w.robot();
        poses.push((r.x, r.y, r.yaw));
    }
    (poses, objects)
}

#[test]
fn same_seed_same_world_and_trajectory() {
    let (poses_a, objects_a) = trajectory(42);
    let (poses_b, objects_b) = trajectory(42);
    assert_eq!(objects_a, objects_b);
    assert!(poses_a == poses_b, "same seed, different trajectory");
    let (poses_c, objects_c) = trajectory(43);
    assert_ne!(objects_a, objects_c, "the seed places the objects");
    assert_ne!(poses_a.last(), poses_c.last(), "so the approach differs");
    // Lazy stepping: advancing in one go or in pieces lands on the same state.
    let mut one = world("default", 7);
    let mut pieces = world("default", 7);
    start(&mut one, "g", "go_to", go_to_pad("pad_C"));
    start(&mut pieces, "g", "go_to", go_to_pad("pad_C"));
    one.advance_to(3.0);
    for i in 1..=30 {
        pieces.advance_to(f64::from(i) * 0.1 + 0.0001);
    }
    assert_eq!(one.step_count(), 150);
    assert_eq!(one.step_count(), pieces.step_count());
    assert_eq!(one.robot(), pieces.robot());
}

// ---------------------------------------------------------------------------------------------
// The dispatcher: replies parse with the SDK's own parsers

fn robot(scale: f64) -> SimRobot {
    SimRobot::new(
        &SimConfig {
            time_scale: scale,
            ..SimConfig::default()
        },
        T0,
    )
    .unwrap()
}

fn json_reply(reply: Result<Reply, SimError>) -> String {
    match reply.unwrap() {
        Reply::Json(json) => json,
        other => panic!("JSON reply expected, got {other:?}"),
    }
}

fn at(seconds: f64) -> Duration {
    T0 + Duration::from_secs_f64(seconds)
}

fn call_tool(name: &str, input: Value, id: &str) -> String {
    json!({"name": name, "input": input, "options": {"action_id": id}}).to_string()
}

#[test]
fn tools_list_state_scene_and_capabilities_parse() {
    let mut sim = robot(1.0);
    let tools = parse_tools_list_reply(&json_reply(sim.handle("runtime.tools_list", "{}", T0))).unwrap();
    assert_eq!(tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), SKILLS);

    let state = parse_runtime_state_reply(&json_reply(sim.handle("runtime.state", "{}", at(1.0)))).unwrap();
    assert_eq!(state.runtime.status, RuntimeStatus::Ready);
    assert!(state.runtime.accepts_tool_calls && state.runtime.accepts_capture_requests);
    assert_eq!(state.robot.entity_id, "robot_1");
    assert_eq!(state.robot.status, RobotStatus::Ready);
    assert_eq!(state.robot.pose.as_ref().unwrap().position, [1.5, 4.0, 0.0]);
    assert_eq!(state.timestamp.wall_time_ms, 1_700_000_001_000);
    assert_eq!(state.timestamp.step, Some(50));

    let scene = parse_scene_state_reply(&json_reply(sim.handle("runtime.scene_state", "", T0))).unwrap();
    for id in ["robot_1", "pad_A", "pad_B", "wall_1", "pillar_1", "cube_1"] {
        assert!(scene.entities.contains_key(id), "{id}");
    }
    assert_eq!(scene.entities["pad_B"].state.as_ref().unwrap()["kind"], "pad");

    let caps = json_reply(sim.handle("runtime.capabilities", "{}", T0));
    let caps = parse_capabilities_reply(CapabilitiesOutcome::Reply(&caps))
        .unwrap()
        .unwrap();
    assert_eq!(caps["concurrency"]["mutating_call_while_busy"], "BUSY");

    let unknown = sim.handle("runtime.dance", "{}", T0).unwrap_err();
    assert_eq!(unknown.code, "METHOD_NOT_FOUND");
    let guard = unknown.guard_envelope();
    assert_eq!(
        parse_capabilities_reply(CapabilitiesOutcome::Reply(&guard)).unwrap(),
        None
    );
    match parse_raw_reply("runtime.dance", &unknown.guard_envelope()).unwrap_err() {
        Error::Runtime { code, .. } => assert_eq!(code.as_str(), "METHOD_NOT_FOUND"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sim.handle("runtime.state", "[1]", T0).unwrap_err().code,
        "INVALID_INPUT"
    );
}

#[test]
fn a_tool_call_runs_until_done_with_state_along_the_way() {
    let mut sim = robot(1.0);
    let payload = call_tool(
        "go_to",
        json!({"target": {"kind": "entity", "entity_id": "pad_B"}}),
        "act_000000000001",
    );
    let reply = sim.handle("runtime.tools_call", &payload, T0).unwrap();
    assert_eq!(
        reply,
        Reply::Running {
            action_id: "act_000000000001".into()
        }
    );
    let state = parse_runtime_state_reply(&json_reply(sim.handle("runtime.state", "{}", at(2.0)))).unwrap();
    assert_eq!(state.runtime.status, RuntimeStatus::Busy);
    assert!(!state.runtime.accepts_tool_calls);
    assert_eq!(state.robot.status, RobotStatus::Moving);
    let active = state.runtime.active_action.unwrap();
    assert_eq!(active.action_id, "act_000000000001");
    assert_eq!(active.started_at_ms, 1_700_000_000_000);
    let progress = active.progress.unwrap();
    assert!(
        progress.current.unwrap() > 0.5 && progress.total.unwrap() > 7.0,
        "{progress:?}"
    );

    assert!(sim.poll_action("act_000000000001", at(3.0)).is_none());
    let mut t = 3.0;
    let result = loop {
        t += 0.5;
        if let Some(result) = sim.poll_action("act_000000000001", at(t)) {
            break result;
        }
        assert!(t < 60.0, "never arrived");
    };
    let result = parse_tools_call_reply(&result, "act_000000000001").unwrap();
    assert_eq!(result.status, ActionStatus::Done);
    assert_eq!(result.meta.action_id, "act_000000000001");
    assert!(
        result.meta.duration_ms > 5_000
            && result.meta.finished_at_ms <= 1_700_000_000_000 + (t * 1000.0) as u64
    );
    let after = result.typed_runtime_state().unwrap().unwrap();
    assert_eq!(after.runtime.last_action.unwrap().status, LastActionStatus::Done);
}

#[test]
fn a_time_scale_speeds_the_world_up() {
    let mut sim = robot(10.0);
    let payload = call_tool("set_velocity", json!({"wz": 1.0, "duration_s": 5.0}), "act_a");
    sim.handle("runtime.tools_call", &payload, T0).unwrap();
    assert!(sim.poll_action("act_a", at(0.45)).is_none());
    let result = parse_tools_call_reply(&sim.poll_action("act_a", at(0.5)).unwrap(), "act_a").unwrap();
    assert!(result.is_done());
    assert_eq!(result.meta.duration_ms, 500, "wall-clock milliseconds");
}

#[test]
fn failed_tool_calls_are_failed_results() {
    let mut sim = robot(1.0);
    let cases = [
        (
            "go_to",
            json!({"target": {"kind": "pose", "x": 1}}),
            "INVALID_INPUT",
            "target.y",
        ),
        ("set_velocity", json!({"vx": 5}), "INVALID_INPUT", "vx"),
        (
            "go_to",
            json!({"target": {"kind": "pose", "x": 5.0, "y": 3.0}}),
            "NAVIGATION_STUCK",
            "no path",
        ),
        ("teleport", json!({}), "TOOL_NOT_FOUND", "teleport"),
    ];
    for (name, input, code, needle) in cases {
        let reply = json_reply(sim.handle("runtime.tools_call", &call_tool(name, input, "act_x"), T0));
        let result = parse_tools_call_reply(&reply, "act_x").unwrap();
        let error = result.error.unwrap();
        assert_eq!((result.status, error.code.as_str()), (ActionStatus::Failed, code));
        assert!(error.message.contains(needle), "{}", error.message);
        assert_eq!(result.meta.action_id, "act_x");
    }
    let state = parse_runtime_state_reply(&json_reply(sim.handle("runtime.state", "{}", T0))).unwrap();
    let last = state.runtime.last_action.unwrap();
    assert_eq!(
        (last.status, last.error.unwrap().code),
        (
            LastActionStatus::Failed,
            crate::RuntimeErrorCode::from_wire("TOOL_NOT_FOUND")
        )
    );
}

#[test]
fn cancel_replies_with_the_cancelled_result() {
    let mut sim = robot(1.0);
    let go = call_tool(
        "go_to",
        json!({"target": {"kind": "entity", "entity_id": "pad_C"}}),
        "act_1",
    );
    sim.handle("runtime.tools_call", &go, T0).unwrap();
    let busy = json_reply(sim.handle(
        "runtime.tools_call",
        &call_tool("stop", json!({}), "act_2"),
        at(0.1),
    ));
    assert!(
        parse_tools_call_reply(&busy, "act_2").unwrap().is_done(),
        "stop is allowed mid-action"
    );
    assert!(
        parse_tools_call_reply(&sim.poll_action("act_1", at(0.1)).unwrap(), "act_1")
            .unwrap()
            .is_cancelled()
    );

    sim.handle("runtime.tools_call", &go.replace("act_1", "act_3"), at(0.2))
        .unwrap();
    let busy = json_reply(sim.handle("runtime.tools_call", &go.replace("act_1", "act_4"), at(0.3)));
    assert_eq!(
        parse_tools_call_reply(&busy, "act_4")
            .unwrap()
            .error
            .unwrap()
            .code,
        crate::RuntimeErrorCode::from_wire("BUSY")
    );
    let cancel = json!({"options": {"action_id": "cancel-active"}}).to_string();
    let cancelled = parse_cancel_reply(&json_reply(sim.handle("runtime.cancel", &cancel, at(1.0)))).unwrap();
    assert!(cancelled.is_cancelled());
    assert_eq!(cancelled.meta.action_id, "act_3");
    assert_eq!(cancelled.meta.duration_ms, 800);
    let waited = parse_tools_call_reply(&sim.poll_action("act_3", at(1.0)).unwrap(), "act_3").unwrap();
    assert_eq!(waited.error, cancelled.error);

    let by_id = json!({"options": {"action_id": "act_3"}}).to_string();
    let err = sim.handle("runtime.cancel", &by_id, at(1.0)).unwrap_err();
    assert_eq!(err.code, "NO_ACTIVE_ACTION");
    match parse_cancel_reply(&err.guard_envelope()).unwrap_err() {
        Error::Runtime { code, .. } => assert_eq!(code.as_str(), "NO_ACTIVE_ACTION"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sim.handle("runtime.cancel", "{}", T0).unwrap_err().code,
        "INVALID_INPUT"
    );
    let state = parse_runtime_state_reply(&json_reply(sim.handle("runtime.state", "{}", at(1.0)))).unwrap();
    assert_eq!(
        state.runtime.last_action.unwrap().status,
        LastActionStatus::Cancelled
    );
}

#[test]
fn odd_payloads_are_answered_not_panicked_on() {
    let mut sim = robot(1000.0);
    let odd_inputs = [
        json!({"target": {"kind": "pose", "x": 1e308, "y": -1e308, "yaw_deg": 1e308}}),
        json!({"target": {"kind": "pose", "x": -0.0, "y": 0.0}}),
        json!({"target": {"kind": "entity", "entity_id": "robot_1"}}),
        json!({"target": {"kind": "entity", "entity_id": "🤖"}}),
        json!({"vx": -1e-300, "wz": -2.0, "duration_s": 1e-9}),
        json!({"entity_id": "x".repeat(10_000)}),
        json!("go"),
        json!(null),
        json!([]),
    ];
    for (i, input) in odd_inputs.iter().enumerate() {
        for name in SKILLS {
            let id = format!("act_{i}_{name}");
            if let Ok(Reply::Running { action_id }) =
                sim.handle("runtime.tools_call", &call_tool(name, input.clone(), &id), T0)
            {
                // Runs to its end (at most 600 s of simulated time, 0.6 s here).
                assert!(sim.poll_action(&action_id, at(1.0)).is_some() || sim.world().is_busy());
                let _ = sim.handle(
                    "runtime.cancel",
                    r#"{"options":{"action_id":"cancel-active"}}"#,
                    at(1.0),
                );
            }
        }
    }
    let odd_payloads = [
        "",
        "null",
        "nul",
        "[]",
        "1",
        "\"x\"",
        "{\"name\":5}",
        "{\"options\":[]}",
        "{\"selector\":{\"kind\":\"id\",\"id\":5}}",
    ];
    for method in SERVED_METHODS {
        for payload in odd_payloads {
            let _ = sim.handle(method, payload, at(2.0));
        }
    }
    let state = sim.runtime_state(at(2.0));
    assert!(state.robot.pose.unwrap().position.iter().all(|v| v.is_finite()));
}

#[test]
fn forward_envelope_is_acknowledged() {
    let mut sim = robot(1.0);
    let reply = json_reply(sim.handle("runtime.forward_envelope", r#"{"envelope":"aGVsbG8="}"#, T0));
    let value = parse_raw_reply("runtime.forward_envelope", &reply).unwrap();
    assert_eq!(value["bytes"], 5);
    let err = sim
        .handle("runtime.forward_envelope", r#"{"envelope":"%%"}"#, T0)
        .unwrap_err();
    assert_eq!(err.code, "INVALID_INPUT");
}

#[test]
fn unknown_scenes_and_bad_time_scales_are_refused() {
    let config = SimConfig {
        scene_id: "moon".into(),
        ..SimConfig::default()
    };
    assert_eq!(SimRobot::new(&config, T0).unwrap_err().code, "UNKNOWN_SCENE");
    let err = SimRobot::with_scene(Scene::default_scene(), 0, 0.0, T0).unwrap_err();
    assert!(err.message.starts_with("time_scale"));
}

#[test]
fn shared_robot_blocks_a_tool_call_until_another_thread_cancels_it() {
    // A clock that only moves when the test says so: the tool call cannot end by itself.
    let micros = Arc::new(AtomicU64::new(0));
    let clock_micros = Arc::clone(&micros);
    let clock: Clock = Arc::new(move || T0 + Duration::from_micros(clock_micros.load(Ordering::SeqCst)));
    let sim = SharedSimRobot::with_clock(robot(1.0), clock);
    let caller = {
        let sim = sim.clone();
        std::thread::spawn(move || {
            let payload = call_tool("set_velocity", json!({"wz": 0.5, "duration_s": 100}), "act_long");
            sim.call("runtime.tools_call", &payload, Duration::from_secs(30))
        })
    };
    let running = |sim: &SharedSimRobot| sim.with_robot(|r| r.world().is_busy());
    while !running(&sim) {
        std::thread::sleep(Duration::from_millis(1));
    }
    micros.store(2_000_000, Ordering::SeqCst);
    let state = sim.call("runtime.state", "{}", Duration::ZERO).unwrap();
    let Reply::Json(state) = state else { panic!() };
    let state = parse_runtime_state_reply(&state).unwrap();
    assert_eq!(
        state.runtime.active_action.unwrap().progress.unwrap().current,
        Some(2.0)
    );
    let cancel = json!({"options": {"action_id": "act_long"}}).to_string();
    let Reply::Json(cancelled) = sim.call("runtime.cancel", &cancel, Duration::ZERO).unwrap() else {
        panic!()
    };
    assert!(parse_cancel_reply(&cancelled).unwrap().is_cancelled());
    let Reply::Json(result) = caller.join().unwrap().unwrap() else {
        panic!()
    };
    let result = parse_tools_call_reply(&result, "act_long").unwrap();
    assert!(result.is_cancelled());
    assert_eq!(result.meta.duration_ms, 2000);
}

#[test]
fn closing_releases_a_waiting_call_and_refuses_later_ones() {
    let clock: Clock = Arc::new(|| T0);
    let sim = SharedSimRobot::with_clock(robot(1.0), clock);
    let caller = {
        let sim = sim.clone();
        std::thread::spawn(move || {
            let payload = call_tool("set_velocity", json!({"wz": 0.5, "duration_s": 100}), "act_1");
            sim.call("runtime.tools_call", &payload, Duration::from_secs(30))
        })
    };
    while !sim.with_robot(|r| r.world().is_busy()) {
        std::thread::sleep(Duration::from_millis(1));
    }
    sim.close();
    let Reply::Json(result) = caller.join().unwrap().unwrap() else {
        panic!()
    };
    let result = parse_tools_call_reply(&result, "act_1").unwrap();
    assert!(result.is_cancelled());
    assert!(result.error.unwrap().message.contains("shutting down"));
    let err = sim.call("runtime.state", "{}", Duration::ZERO).unwrap_err();
    assert_eq!(err.code, "NOT_READY");
    assert!(sim.with_robot(|r| r.is_closed()));
}

#[test]
fn a_refused_call_reusing_the_running_id_does_not_take_its_result() {
    let mut sim = robot(1.0);
    let turn = call_tool("set_velocity", json!({"wz": 0.5, "duration_s": 1.0}), "act_1");
    sim.handle("runtime.tools_call", &turn, T0).unwrap();
    let again = json_reply(sim.handle("runtime.tools_call", &turn, at(0.1)));
    assert_eq!(
        parse_tools_call_reply(&again, "act_1")
            .unwrap()
            .error
            .unwrap()
            .code,
        crate::RuntimeErrorCode::from_wire("BUSY")
    );
    assert!(sim.poll_action("act_1", at(0.5)).is_none(), "still running");
    let done = parse_tools_call_reply(&sim.poll_action("act_1", at(1.0)).unwrap(), "act_1").unwrap();
    assert!(done.is_done());
}

#[test]
fn replies_fit_in_an_rpc_payload() {
    for scene_id in Scene::builtin_ids() {
        let config = SimConfig {
            scene_id: scene_id.into(),
            ..SimConfig::default()
        };
        let mut sim = SimRobot::new(&config, T0).unwrap();
        let go = call_tool(
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": "pad_B"}}),
            "act_1",
        );
        sim.handle("runtime.tools_call", &go, T0).unwrap();
        for method in [
            "runtime.tools_list",
            "runtime.state",
            "runtime.scene_state",
            "runtime.capabilities",
        ] {
            let reply = json_reply(sim.handle(method, "{}", at(1.0)));
            assert!(
                reply.len() < 15 * 1024,
                "{scene_id} {method}: {} bytes",
                reply.len()
            );
        }
        let cancel = json!({"options": {"action_id": "act_1"}}).to_string();
        assert!(json_reply(sim.handle("runtime.cancel", &cancel, at(1.0))).len() < 15 * 1024);
    }
}

#[test]
fn shared_robot_times_out_a_call_whose_action_never_ends() {
    let clock: Clock = Arc::new(|| T0);
    let sim = SharedSimRobot::with_clock(robot(1.0), clock);
    let payload = call_tool("set_velocity", json!({"wz": 0.5}), "act_1");
    let err = sim
        .call("runtime.tools_call", &payload, Duration::from_millis(30))
        .unwrap_err();
    assert_eq!(err.code, "TIMEOUT");
    assert!(sim.with_robot(|r| r.world().is_busy()), "the action goes on");
}

// ---------------------------------------------------------------------------------------------
// Cameras

/// Width and height from a baseline JPEG's SOF0 segment.
fn jpeg_size(jpeg: &[u8]) -> (u16, u16) {
    let mut i = 2;
    while i + 9 < jpeg.len() {
        assert_eq!(jpeg[i], 0xFF, "segment marker expected at {i}");
        let marker = jpeg[i + 1];
        let length = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if marker == 0xC0 {
            let height = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let width = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return (width, height);
        }
        i += 2 + length;
    }
    panic!("no SOF0 segment");
}

fn capture(sim: &mut SimRobot, camera: &str, options: Value) -> Result<CameraFrame, SimError> {
    let payload = json!({"selector": {"kind": "id", "id": camera}, "options": options,
                         "stream": {"id": "req_1", "topic": "menlo.camera_capture"}});
    sim.handle("runtime.cameras_capture", &payload.to_string(), T0)
        .map(|reply| match reply {
            Reply::Frame(frame) => frame,
            other => panic!("a frame expected, got {other:?}"),
        })
}

fn pixel(image: &RgbImage, x: u32, y: u32) -> [u8; 3] {
    let at = ((y * image.width + x) * 3) as usize;
    [image.pixels[at], image.pixels[at + 1], image.pixels[at + 2]]
}

fn close_to(actual: [u8; 3], expected: [u8; 3], tolerance: i32) -> bool {
    actual
        .iter()
        .zip(expected)
        .all(|(a, e)| (i32::from(*a) - i32::from(e)).abs() <= tolerance)
}

#[test]
fn captures_are_real_jpegs_at_the_requested_size() {
    let mut sim = robot(1.0);
    for camera in CAMERAS {
        for (width, height, quality) in [(1280, 720, 0.7), (320, 240, 0.2), (17, 9, 1.0)] {
            let frame = capture(
                &mut sim,
                camera,
                json!({"width": width, "height": height, "quality": quality}),
            )
            .unwrap();
            assert_eq!(&frame.jpeg[..3], &[0xFF, 0xD8, 0xFF], "SOI");
            assert_eq!(&frame.jpeg[frame.jpeg.len() - 2..], &[0xFF, 0xD9], "EOI");
            assert_eq!(jpeg_size(&frame.jpeg), (width, height));
            assert_eq!(frame.request_id, "req_1");
            assert_eq!(frame.topic, "menlo.camera_capture");
            assert_eq!(parse_capture_ack(&frame.ack).unwrap(), CaptureAck::ByteStream);
        }
    }
    let small = capture(
        &mut sim,
        "pov",
        json!({"width": 640, "height": 480, "quality": 0.1}),
    )
    .unwrap();
    let large = capture(
        &mut sim,
        "pov",
        json!({"width": 640, "height": 480, "quality": 0.95}),
    )
    .unwrap();
    assert!(small.jpeg.len() < large.jpeg.len(), "quality matters");
    let default = capture(&mut sim, "topdown", Value::Null).unwrap();
    assert_eq!(jpeg_size(&default.jpeg), (1280, 720));
}

#[test]
fn shared_captures_render_a_copy_of_the_world_now() {
    let sim = SharedSimRobot::with_clock(robot(1.0), Arc::new(|| T0));
    let payload = json!({"selector": {"kind": "id", "id": "topdown"}, "options": {"width": 64, "height": 48},
                         "stream": {"id": "req_9"}})
    .to_string();
    let Reply::Frame(frame) = sim
        .call("runtime.cameras_capture", &payload, Duration::ZERO)
        .unwrap()
    else {
        panic!("a frame expected")
    };
    let expected = encode_jpeg(
        &sim.with_robot(|r| render(r.world(), "topdown", 64, 48)).unwrap(),
        0.7,
    )
    .unwrap();
    assert_eq!(frame.jpeg, expected);
    assert_eq!(
        (frame.request_id.as_str(), frame.topic.as_str()),
        ("req_9", "menlo.camera_capture")
    );
    sim.close();
    let err = sim
        .call("runtime.cameras_capture", &payload, Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.code, "NOT_READY");
}

#[test]
fn bad_capture_requests_are_refused() {
    let mut sim = robot(1.0);
    let err = capture(&mut sim, "thermal", Value::Null).unwrap_err();
    assert_eq!(err.code, "UNKNOWN_CAMERA");
    match parse_capture_ack(&err.guard_envelope()).unwrap_err() {
        Error::Runtime { code, .. } => assert_eq!(code.as_str(), "UNKNOWN_CAMERA"),
        other => panic!("{other:?}"),
    }
    for (options, field) in [
        (json!({"width": 0}), "options.width"),
        (json!({"height": 5000}), "options.height"),
        (json!({"quality": 0}), "options.quality"),
        (json!({"quality": 1.5}), "options.quality"),
    ] {
        let err = capture(&mut sim, "pov", options).unwrap_err();
        assert!(
            err.code == "INVALID_INPUT" && err.message.starts_with(field),
            "{err}"
        );
    }
    let no_stream = json!({"selector": {"kind": "id", "id": "pov"}}).to_string();
    let err = sim.handle("runtime.cameras_capture", &no_stream, T0).unwrap_err();
    assert!(err.message.starts_with("stream.id"), "{err}");
}

#[test]
fn pov_shows_the_wall_ahead_the_pad_underfoot_and_the_sky() {
    let w = world("default", 0);
    let image = render(&w, "pov", 320, 240).unwrap();
    // Facing east: the grey wall (x = 4.8) fills the centre; pad_A (blue) is underfoot.
    let centre = pixel(&image, 160, 120);
    assert!(close_to(centre, [96, 104, 116], 40), "centre {centre:?}");
    let floor = pixel(&image, 160, 236);
    assert!(
        close_to(floor, [188, 184, 176], 30) || close_to(floor, [206, 202, 194], 30),
        "floor {floor:?}"
    );
    let sky = pixel(&image, 160, 2);
    assert!(sky[2] > 200 && sky[2] > sky[0], "sky {sky:?}");
    // Turned to face the pillar's side of the room, the picture changes.
    let mut turned = world("default", 0);
    turned.start(
        "t",
        "set_velocity",
        Command::SetVelocity {
            vx: 0.0,
            vy: 0.0,
            wz: 1.0,
            duration_s: 1.0,
        },
    );
    turned.advance_to(2.0);
    assert_ne!(render(&turned, "pov", 320, 240).unwrap(), image);

    // 1.5 m before pad_B, facing it: the green pad lies on the floor ahead.
    let mut w = world("default", 0);
    let before_pad = Target::Pose {
        x: 7.0,
        y: 6.5,
        yaw_deg: Some(0.0),
    };
    start(&mut w, "g", "go_to", Command::GoTo(before_pad));
    run(&mut w, "g", 60.0).result.unwrap();
    let image = render(&w, "pov", 320, 240).unwrap();
    // Row of a floor point 1.5 m ahead: horizon + 0.5 m × focal / 1.5 m.
    let pad = pixel(&image, 160, 120 + 160 / 3);
    assert!(
        pad[1] > pad[0] + 40 && pad[1] > pad[2],
        "pad_B is green, got {pad:?}"
    );
}

#[test]
fn topdown_shows_pads_obstacles_robot_and_path() {
    let mut w = world("default", 0);
    let image = render(&w, "topdown", 500, 400).unwrap();
    // 10 × 8 m on 500 × 400 with a 16 px margin: 46 px/m, floor from (18, 16).
    let to_px = |x: f64, y: f64| ((18.0 + x * 46.0) as u32, (16.0 + (8.0 - y) * 46.0) as u32);
    let (bx, by) = to_px(8.5 + 0.25, 6.5 + 0.25);
    let pad_b = pixel(&image, bx, by);
    assert!(
        pad_b[1] > pad_b[0] + 40 && pad_b[1] > pad_b[2],
        "pad_B is green, got {pad_b:?}"
    );
    let (wx, wy) = to_px(5.0, 3.0);
    assert!(close_to(pixel(&image, wx, wy), [127, 140, 141], 10), "wall_1");
    let (rx, ry) = to_px(1.5 - 0.1, 4.0 + 0.1);
    assert!(
        close_to(pixel(&image, rx, ry), [250, 250, 250], 10),
        "the robot's body"
    );
    assert_eq!(pixel(&image, 2, 2), [40, 44, 52], "off the floor");

    start(&mut w, "g", "go_to", go_to_pad("pad_B"));
    let with_path = render(&w, "topdown", 500, 400).unwrap();
    let blue = with_path
        .pixels
        .chunks_exact(3)
        .filter(|p| p[0] < 40 && p[1] > 100 && p[1] < 145 && p[2] > 220)
        .count();
    assert!(blue > 200, "the path is drawn ({blue} path pixels)");
    dump_if_asked(&w);
}

/// `SIM_DUMP_DIR=/some/dir cargo test …` writes the frames there to look at.
fn dump_if_asked(world: &World) {
    let Ok(dir) = std::env::var("SIM_DUMP_DIR") else {
        return;
    };
    for camera in CAMERAS {
        let image = render(world, camera, 960, 540).unwrap();
        let jpeg = encode_jpeg(&image, 0.85).unwrap();
        std::fs::write(format!("{dir}/{camera}.jpg"), jpeg).unwrap();
    }
}
