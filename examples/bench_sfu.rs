//! The embedded SFU next to livekit-server, in one run, with Rust peers on both sides:
//!
//! - SFU start time (`Sfu::start` until its port accepts a connection);
//! - `session.state().get("robot_status")` round trips from a Rust `Session` to a Rust
//!   `RuntimeHost`, through each backend;
//! - the transfer time of a 1280×720-sized (230 400 B) byte stream, `get_vision` to frame;
//! - threads of this process: before anything, with the SFU running, with one session on it.
//!
//! Prints figures; asserts nothing. Needs livekit-server (`bash .ci/setup`):
//!
//! ```text
//! cargo run --release --example bench_sfu --features livekit,dev
//! ```
//!
//! `BENCH_N` sets the number of timed state reads per backend (default 300). With
//! `BENCH_ROBOTS=50` it also polls 50 robots (a `RuntimeHost` and a `Session` each, one room
//! each) at 10 Hz for `BENCH_SECS` (default 10) seconds per backend: round trip p50/p99,
//! threads and RSS of this process.

#[path = "../tests/live_common/mod.rs"]
mod live_common;

use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use live_common::{thread_count, Backend, Platform};
use menlo_robot_sdk::dev::{Sfu, SfuOptions};
use menlo_robot_sdk::{
    connect, CaptureOptions, ConnectOptions, NewRobot, OutgoingStream, RpcError, RuntimeHost, Session,
    StateReply,
};
use serde_json::json;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const WARMUP: usize = 50;
const FRAMES: usize = 30;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A runtime answering `runtime.state` and sending camera frames as byte streams.
fn runtime(p: &Platform) -> Res<Arc<RuntimeHost>> {
    runtime_for(p, &p.robot_id)
}

fn runtime_for(p: &Platform, robot_id: &str) -> Res<Arc<RuntimeHost>> {
    let identity = format!("simplesim:{robot_id}");
    let token = p.livekit.token(robot_id, &identity, false, &[]);
    let host = Arc::new(RuntimeHost::connect(
        &p.livekit.url,
        &token,
        Duration::from_secs(15),
    )?);
    host.handle("runtime.tools_list", |_| Ok("[]".to_string()));
    host.handle("runtime.state", |_| {
        Ok(json!({
            "timestamp": {"wall_time_ms": 7},
            "runtime": {"status": "ready", "accepts_tool_calls": true, "accepts_capture_requests": true},
            "robot": {"entity_id": "robot_1", "status": "ready"},
        })
        .to_string())
    });
    let weak: Weak<RuntimeHost> = Arc::downgrade(&host);
    host.handle("runtime.cameras_capture", move |call| {
        let payload: serde_json::Value = serde_json::from_str(&call.payload).unwrap_or_default();
        let host = weak.upgrade().ok_or_else(|| RpcError::application("gone"))?;
        let width = payload["options"]["width"].as_u64().unwrap_or(0) as usize;
        let height = payload["options"]["height"].as_u64().unwrap_or(0) as usize;
        let mut frame = vec![0xFF, 0xD8, 0xFF, 0xE0];
        frame.extend((4..width * height / 4 - 2).map(|i| (i * 7 % 251) as u8));
        frame.extend([0xFF, 0xD9]);
        let stream = OutgoingStream::new(payload["stream"]["topic"].as_str().unwrap_or_default())
            .name("pov.jpg")
            .mime_type("image/jpeg")
            .attribute("request_id", payload["stream"]["id"].as_str().unwrap_or_default())
            .destination(call.caller_identity.clone());
        host.send_bytes(frame, stream)
            .map_err(|e| RpcError::application(e.to_string()))?;
        Ok(json!({
            "status": "done",
            "result": {"payload": {"kind": "byte_stream"}},
            "meta": {"action_id": "cap", "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1},
        })
        .to_string())
    });
    Ok(host)
}

fn session(p: &Platform) -> Res<Session> {
    session_for(p, &p.robot_id)
}

fn session_for(p: &Platform, robot_id: &str) -> Res<Session> {
    let options = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .session_ready_timeout(Duration::from_secs(30));
    Ok(connect(&p.client, robot_id, options)?)
}

fn state_reads(session: &Session, n: usize) -> Res<Vec<f64>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let started = Instant::now();
        let reply = session.state().get("robot_status")?;
        let elapsed = ms(started.elapsed());
        if !matches!(reply, StateReply::RobotStatus(_)) {
            return Err(format!("untyped robot_status reply: {reply:?}").into());
        }
        if i >= WARMUP {
            samples.push(elapsed);
        }
    }
    Ok(sorted(samples))
}

fn frame_times(session: &Session) -> Res<Vec<f64>> {
    let options = CaptureOptions::new().width(1280).height(720);
    let mut samples = Vec::new();
    for _ in 0..FRAMES {
        let started = Instant::now();
        let frame = session.get_vision("pov", &options)?;
        samples.push(ms(started.elapsed()));
        if frame.len() != 1280 * 720 / 4 {
            return Err(format!("frame of {} bytes", frame.len()).into());
        }
    }
    Ok(sorted(samples))
}

fn backend_figures(backend: Backend, n: usize) -> Res<()> {
    let p = Platform::start_on(backend);
    let host = runtime(&p)?;
    let threads_before = thread_count();
    let session = session(&p)?;
    std::thread::sleep(Duration::from_millis(500));
    let threads_with_session = thread_count();
    let state = state_reads(&session, n)?;
    let frames = frame_times(&session)?;
    println!(
        "{backend:?}: state p50 {:.2} ms, p99 {:.2} ms (n={n}); 1280x720 frame p50 {:.1} ms, p99 {:.1} ms (n={FRAMES}); threads {threads_before} -> {threads_with_session} with the session",
        pct(&state, 0.5),
        pct(&state, 0.99),
        pct(&frames, 0.5),
        pct(&frames, 0.99),
    );
    session.disconnect()?;
    drop(host);
    Ok(())
}

/// VmRSS of this process, MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// `robots` robots polled at 10 Hz for `secs` seconds, each from its own thread.
fn fleet_figures(backend: Backend, robots: usize, secs: u64) -> Res<()> {
    let p = Platform::start_on(backend);
    let mut pairs = Vec::new();
    for i in 0..robots {
        let id = p
            .client
            .robots()
            .create(&NewRobot::new(format!("fleet-{i}"), "asimov-v0"))?
            .robot
            .id;
        let host = runtime_for(&p, &id)?;
        pairs.push((host, Arc::new(session_for(&p, &id)?)));
    }
    let until = Instant::now() + Duration::from_secs(secs);
    let pollers: Vec<_> = pairs
        .iter()
        .map(|(_, session)| {
            let session = Arc::clone(session);
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut next = Instant::now();
                while Instant::now() < until {
                    let started = Instant::now();
                    if session.state().get("robot_status").is_ok() {
                        samples.push(ms(started.elapsed()));
                    }
                    next += Duration::from_millis(100);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                samples
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs / 2));
    let (threads, rss) = (thread_count(), rss_mib());
    let mut all = Vec::new();
    for poller in pollers {
        all.extend(poller.join().map_err(|_| "a poller panicked")?);
    }
    let all = sorted(all);
    println!(
        "{backend:?}: {robots} robots at 10 Hz for {secs} s: state p50 {:.2} ms, p99 {:.2} ms (n={}); this process: {threads} threads, {rss:.0} MiB RSS (pollers included)",
        pct(&all, 0.5),
        pct(&all, 0.99),
        all.len()
    );
    for (host, session) in pairs {
        if let Ok(session) = Arc::try_unwrap(session) {
            let _ = session.disconnect();
        }
        drop(host);
    }
    Ok(())
}

fn main() -> Res<()> {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let threads_idle = thread_count();
    let mut starts = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let sfu = Sfu::start(SfuOptions::default())?;
        TcpStream::connect(sfu.url().trim_start_matches("ws://"))?;
        starts.push(ms(started.elapsed()));
    }
    let starts = sorted(starts);
    let sfu = Sfu::start(SfuOptions::default())?;
    let threads_sfu = thread_count();
    drop(sfu);
    println!(
        "SFU start: p50 {:.2} ms, max {:.2} ms (n={}); threads {threads_idle} -> {threads_sfu} with an SFU running",
        pct(&starts, 0.5),
        starts[starts.len() - 1],
        starts.len()
    );
    backend_figures(Backend::Embedded, n)?;
    backend_figures(Backend::LiveKitServer, n)?;
    let robots: usize = std::env::var("BENCH_ROBOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    if robots > 0 {
        fleet_figures(Backend::Embedded, robots, secs)?;
        fleet_figures(Backend::LiveKitServer, robots, secs)?;
    }
    Ok(())
}
