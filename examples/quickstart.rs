//! The quickstart, step by step with the time each step took: create a robot, connect to its
//! session, open the viewer (the runtime), discover skills, drive to `pad_B`, grab a camera
//! frame, disconnect and clean up.
//!
//! Without `MENLO_API_KEY` it runs against the embedded platform (simulated robot, data-only
//! LiveKit SFU, control-plane emulator), so it works on a fresh machine with no account:
//!
//! ```text
//! cargo run --example quickstart --features dev
//! ```
//!
//! With `MENLO_API_KEY` set it uses the real platform and asks you to open the viewer link in
//! Chrome.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use common::{step, Res, Target};
use menlo_robot_sdk::{connect, CaptureOptions, ConnectOptions, NewRobot};
use serde_json::json;

fn main() -> Res<()> {
    let target = Target::from_env()?;
    let client = target.client();

    let created = step("create a robot", || {
        Ok(client.robots().create(&NewRobot::new("My bot", "asimov-v0"))?)
    })?;
    let robot_id = created.robot.id.clone();
    println!("    robot {robot_id}");
    if created.pin_code.is_some() {
        println!("    the platform returned its show-once PIN: store it securely, it is never shown again");
    }

    let session = step("connect (worker_names [], runtime prefix simplesim)", || {
        let options = ConnectOptions::new()
            .worker_names(Vec::<String>::new()) // SimpleSim: the viewer tab is the runtime
            .runtime_identity_prefix("simplesim");
        Ok(connect(client, &robot_id, options)?)
    })?;

    let link = step("mint a room key link", || {
        Ok(client.room_keys().link(&robot_id, &Default::default())?)
    })?;
    step("open the viewer", || target.open_viewer(&link))?;

    let skills = step("discover skills", || Ok(session.discover_skills()?))?;
    let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
    println!("    {}", names.join(", "));

    let result = step("go_to pad_B", || {
        let target = json!({"target": {"kind": "entity", "entity_id": "pad_B"}});
        Ok(session.invoke("go_to", target, Some(Duration::from_secs(300)))?)
    })?;
    println!(
        "    {} {:?}",
        result.status,
        result.error.as_ref().map(|e| &e.code)
    );

    let jpeg = step("get_vision(\"pov\")", || {
        Ok(session.get_vision("pov", &CaptureOptions::new())?)
    })?;
    let path = std::env::temp_dir().join(format!("{robot_id}-pov.jpg"));
    std::fs::write(&path, &jpeg)?;
    println!("    wrote {} ({} bytes)", path.display(), jpeg.len());

    step("disconnect and delete the session", || Ok(session.disconnect()?))?;
    step("delete the robot", || Ok(client.robots().delete(&robot_id)?))?;
    Ok(())
}
