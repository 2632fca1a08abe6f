//! A sim harness: N robots (default 20) on one platform, each on its own mission (a tour of
//! the pads from its own starting pad, reading state between legs), all at once from one
//! thread per robot; a summary table at the end.
//!
//! ```text
//! cargo run --release --example sim_harness --features dev
//! ```
//!
//! `SIM_ROBOTS` sets N; `SIM_LEGS` the legs per mission (default 3).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{percentile, Res, Target};
use menlo_robot_sdk::{connect, Client, ConnectOptions, NewRobot};
use serde_json::json;

const PADS: [&str; 2] = ["pad_A", "pad_B"];

struct Report {
    robot_id: String,
    legs_done: usize,
    failures: usize,
    mission: Duration,
    read_ms: Vec<f64>,
    error: Option<String>,
}

fn main() -> Res<()> {
    let robots: usize = env_number("SIM_ROBOTS", 20);
    let legs: usize = env_number("SIM_LEGS", 3);
    let target = Target::from_env()?;
    let client = target.client();
    let started = Instant::now();
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..robots)
            .map(|i| scope.spawn(move || mission(client, i, legs)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("mission thread"))
            .collect()
    });
    println!(
        "{robots} robots, {legs} legs each, {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<18} {:>5} {:>8} {:>10} {:>12} {:>12}  note",
        "robot", "legs", "failed", "mission", "state p50", "state p99"
    );
    let mut all_reads = Vec::new();
    for report in &reports {
        let mut reads = report.read_ms.clone();
        reads.sort_by(f64::total_cmp);
        all_reads.extend_from_slice(&reads);
        println!(
            "{:<18} {:>5} {:>8} {:>8.1} s {:>9.2} ms {:>9.2} ms  {}",
            report.robot_id,
            report.legs_done,
            report.failures,
            report.mission.as_secs_f64(),
            percentile(&reads, 0.5),
            percentile(&reads, 0.99),
            report.error.as_deref().unwrap_or("")
        );
    }
    all_reads.sort_by(f64::total_cmp);
    println!(
        "all robots: {} state reads, p50 {:.2} ms, p99 {:.2} ms; {} missions failed",
        all_reads.len(),
        percentile(&all_reads, 0.5),
        percentile(&all_reads, 0.99),
        reports.iter().filter(|r| r.error.is_some()).count()
    );
    Ok(())
}

fn mission(client: &Client, index: usize, legs: usize) -> Report {
    let started = Instant::now();
    let mut report = Report {
        robot_id: String::new(),
        legs_done: 0,
        failures: 0,
        mission: Duration::ZERO,
        read_ms: Vec::new(),
        error: None,
    };
    if let Err(err) = run_mission(client, index, legs, &mut report) {
        report.error = Some(err.to_string());
    }
    report.mission = started.elapsed();
    report
}

fn run_mission(client: &Client, index: usize, legs: usize, report: &mut Report) -> Res<()> {
    let robot_id = client
        .robots()
        .create(&NewRobot::new(format!("harness {index}"), "asimov-v0"))?
        .robot
        .id;
    report.robot_id = robot_id.clone();
    let session = connect(
        client,
        &robot_id,
        ConnectOptions::new().worker_names(["sim-worker"]),
    )?;
    for leg in 0..legs {
        let pad = PADS[(index + leg) % PADS.len()];
        let result = session.invoke(
            "go_to",
            json!({"target": {"kind": "entity", "entity_id": pad}}),
            None,
        )?;
        if result.error.is_some() {
            report.failures += 1;
        }
        report.legs_done += 1;
        for _ in 0..5 {
            let read = Instant::now();
            session.state().robot_status()?;
            report.read_ms.push(read.elapsed().as_secs_f64() * 1000.0);
        }
    }
    session.disconnect()?;
    client.robots().delete(&robot_id)?;
    Ok(())
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
