//! Drives a robot through several skills: go_to, pick and place, a velocity command, a
//! failure (a target that does not exist, an unreachable pose), a long action cancelled
//! half-way, and state reads in between.
//!
//! ```text
//! cargo run --example drive --features dev
//! ```
//!
//! Dispatches a `sim-worker` (on the real platform: whatever worker that name dispatches).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{step, Res, Target};
use menlo_robot_sdk::{connect, ActionResult, ConnectOptions, NewRobot, Session};
use serde_json::{json, Value};

fn main() -> Res<()> {
    let target = Target::from_env()?;
    let client = target.client();
    let robot_id = client
        .robots()
        .create(&NewRobot::new("drive example", "asimov-v0"))?
        .robot
        .id;
    let session = connect(
        client,
        &robot_id,
        ConnectOptions::new()
            .worker_names(["sim-worker"])
            .wait_for_ready(true),
    )?;
    let outcome = drive(&session);
    session.disconnect()?;
    client.robots().delete(&robot_id)?;
    outcome
}

fn drive(session: &Session) -> Res<()> {
    let skills = step("discover skills", || Ok(session.discover_skills()?))?;
    println!(
        "    {}",
        skills
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    show(&step("go_to pad_A", || {
        run(
            session,
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": "pad_A"}}),
        )
    })?);
    print_pose(session)?;

    let scene = session.state().scene_state()?;
    // A pickable object: the simulator marks objects with `state.kind == "object"`.
    let object = scene
        .entities
        .values()
        .find(|e| {
            e.state
                .as_ref()
                .and_then(|s| s.get("kind"))
                .and_then(Value::as_str)
                == Some("object")
        })
        .map(|e| e.entity_id.clone());
    if let Some(object) = object {
        show(&step(&format!("go_to {object}"), || {
            run(
                session,
                "go_to",
                json!({"target": {"kind": "entity", "entity_id": object}}),
            )
        })?);
        show(&step(&format!("pick_entity {object}"), || {
            run(session, "pick_entity", json!({"entity_id": object}))
        })?);
        show(&step("go_to pad_B", || {
            run(
                session,
                "go_to",
                json!({"target": {"kind": "entity", "entity_id": "pad_B"}}),
            )
        })?);
        show(&step(&format!("place_entity {object}"), || {
            run(session, "place_entity", json!({"entity_id": object}))
        })?);
    }
    show(&step("set_velocity wz=0.8 for 1 s", || {
        run(session, "set_velocity", json!({"wz": 0.8, "duration_s": 1.0}))
    })?);
    print_pose(session)?;

    println!("  failures are outcomes, not errors:");
    show(&step("go_to nowhere", || {
        run(
            session,
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": "no_such_pad"}}),
        )
    })?);
    show(&step("set_velocity vx=\"fast\"", || {
        run(session, "set_velocity", json!({"vx": "fast", "duration_s": 1.0}))
    })?);

    println!("  cancel a long action half-way:");
    let long = session.start_invoke("set_velocity", json!({"wz": 0.3, "duration_s": 60.0}), None)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let status = session.state().robot_status()?;
    if let Some(active) = &status.runtime.active_action {
        println!("    running: {} ({})", active.name, active.action_id);
    }
    let cancelled = long.cancel()?.wait()?;
    show(&cancelled);
    let ended = long.wait()?;
    println!(
        "    the action ended after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        describe(&ended)
    );
    Ok(())
}

fn run(session: &Session, skill: &str, input: Value) -> Res<ActionResult> {
    Ok(session.invoke(skill, input, Some(Duration::from_secs(120)))?)
}

fn describe(result: &ActionResult) -> String {
    match &result.error {
        Some(error) => format!("{} {}: {}", result.status, error.code, error.message),
        None => result.status.to_string(),
    }
}

fn show(result: &ActionResult) {
    println!("    → {}", describe(result));
}

fn print_pose(session: &Session) -> Res<()> {
    let status = session.state().robot_status()?;
    if let Some(pose) = &status.robot.pose {
        println!(
            "    pose {:?} yaw {:?}°, status {}",
            pose.position, pose.yaw_deg, status.robot.status
        );
    }
    Ok(())
}
