//! A fixed 60 Hz loop that drives a robot without ever blocking a frame: actions and state
//! reads start with `start_*` and are polled each frame; events are drained with
//! `try_iter`. Prints the frame-time p99 and max at the end (the time spent in each frame's
//! SDK work, not counting the sleep to the next tick).
//!
//! ```text
//! cargo run --example game_loop --features dev
//! ```
//!
//! `GAME_LOOP_SECONDS` sets the length of the run (default 10).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{percentile, Res, Target};
use menlo_robot_sdk::{connect, ConnectOptions, NewRobot};
use serde_json::json;

const TICK: Duration = Duration::from_micros(16_667);

fn main() -> Res<()> {
    let target = Target::from_env()?;
    let client = target.client();
    let robot_id = client
        .robots()
        .create(&NewRobot::new("game loop", "asimov-v0"))?
        .robot
        .id;
    let session = connect(
        client,
        &robot_id,
        ConnectOptions::new().worker_names(["sim-worker"]),
    )?;
    let seconds: u64 = std::env::var("GAME_LOOP_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let pads = ["pad_A", "pad_B"];
    let mut next_pad = 0;
    let mut action = None;
    let mut reading = None;
    let (mut actions_done, mut reads_done, mut events) = (0u32, 0u32, 0u32);
    let mut frame_ms = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tick = Instant::now();
    while tick < end {
        let frame = Instant::now();
        events += session.events().try_iter().count() as u32;
        if action.is_none() {
            let target = json!({"target": {"kind": "entity", "entity_id": pads[next_pad % pads.len()]}});
            action = Some(session.start_invoke("go_to", target, None)?);
            next_pad += 1;
        }
        if let Some(pending) = action.as_mut() {
            if let Some(outcome) = pending.poll() {
                let result = outcome?;
                actions_done += 1;
                println!("frame {:>4}: go_to ended {}", frame_ms.len(), result.status);
                action = None;
            }
        }
        match reading.as_mut() {
            None => reading = Some(session.state().start_robot_status()),
            Some(pending) => {
                if let Some(state) = pending.poll() {
                    state?;
                    reads_done += 1;
                    reading = None;
                }
            }
        }
        frame_ms.push(frame.elapsed().as_secs_f64() * 1000.0);
        tick += TICK;
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    frame_ms.sort_by(f64::total_cmp);
    println!(
        "{} frames at 60 Hz: SDK work per frame p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {actions_done} actions, {reads_done} state reads, {events} events",
        frame_ms.len(),
        percentile(&frame_ms, 0.5),
        percentile(&frame_ms, 0.99),
        frame_ms.last().copied().unwrap_or_default()
    );
    drop(action);
    session.disconnect()?;
    client.robots().delete(&robot_id)?;
    Ok(())
}
