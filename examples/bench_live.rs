//! Benchmark of the live layer, in one run against one local livekit-server and one runtime
//! written with the official LiveKit Python client (tests/peers/runtime.py):
//!
//! - round trip of `session.state().get("robot_status")` from the Rust [`Session`], next to
//!   the same `runtime.state` RPC performed by the official Python client
//!   (tests/peers/bench_caller.py);
//! - `get_vision` frames per second at 1280×720 (a ~230 KB byte stream per frame), next to
//!   the same capture requested by the Python client;
//! - connect-to-first-skill time (`connect()` → `discover_skills()` returned);
//! - threads and RSS of this process with one idle connected session (2 s after connect), and
//!   before connecting; the same for a fresh process (this example re-run as a child) that
//!   holds only a client and the idle session.
//!
//! Prints figures next to their targets; asserts nothing. Needs livekit-server and python3
//! with the `livekit` package (`bash .ci/setup`):
//!
//! ```text
//! cargo run --release --example bench_live --features livekit,dev
//! ```
//!
//! `BENCH_N` sets the number of timed state reads per client (default 300).

#[path = "../tests/live_common/mod.rs"]
mod live_common;

use std::time::{Duration, Instant};

use live_common::{server_binary, thread_count, Platform, PyPeer};
use menlo_robot_sdk::{connect, CaptureOptions, ConnectOptions, Session, StateReply};

const WARMUP: usize = 50;
const FRAMES: usize = 30;
const CONNECT_SAMPLES: usize = 5;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn simplesim() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .session_ready_timeout(Duration::from_secs(30))
}

/// `p` in [0, 1] of ascending `sorted` (the same rule for every series).
fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// VmRSS of this process, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn rust_state_reads(session: &Session, n: usize) -> Res<Vec<f64>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let started = Instant::now();
        let reply = session.state().get("robot_status")?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        if !matches!(reply, StateReply::RobotStatus(_)) {
            return Err(format!("untyped robot_status reply: {reply:?}").into());
        }
        if i >= WARMUP {
            samples.push(elapsed);
        }
    }
    Ok(sorted(samples))
}

/// The child process of the "fresh process" footprint: only a client and one idle session.
/// Prints `{"threads_before","rss_before_kib","threads","rss_kib"}` on stdout.
fn idle_child() -> Res<()> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let (threads_before, rss_before) = (thread_count(), rss_kib());
    let client = menlo_robot_sdk::Client::builder()
        .rcs_url(var("BENCH_LIVE_RCS_URL")?)
        .api_key(var("BENCH_LIVE_API_KEY")?)
        .build()?;
    let session = connect(&client, &var("BENCH_LIVE_ROBOT_ID")?, simplesim())?;
    std::thread::sleep(Duration::from_secs(2));
    let (threads, rss) = (thread_count(), rss_kib());
    println!(
        "{}",
        serde_json::json!({
            "threads_before": threads_before, "rss_before_kib": rss_before,
            "threads": threads, "rss_kib": rss,
        })
    );
    session.disconnect()?;
    Ok(())
}

/// Runs this example again as [`idle_child`] against `p`'s platform and reads its figures.
fn fresh_process_footprint(p: &Platform) -> Res<serde_json::Value> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .env("BENCH_LIVE_IDLE_CHILD", "1")
        .env("BENCH_LIVE_RCS_URL", p.rcs.url())
        .env("BENCH_LIVE_API_KEY", &p.api_key)
        .env("BENCH_LIVE_ROBOT_ID", &p.robot_id)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("the idle-session child failed: {}", output.status).into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn main() -> Res<()> {
    if std::env::var_os("BENCH_LIVE_IDLE_CHILD").is_some() {
        return idle_child();
    }
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let server_version = std::process::Command::new(server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    let p = Platform::start();
    let identity = format!("simplesim:{}", p.robot_id);
    let token = p.livekit.token(&p.robot_id, &identity, false, &[]);
    let runtime = PyPeer::spawn("runtime.py", &[&p.livekit.url, &token]);
    let ready = runtime.wait_event("ready", Duration::from_secs(60));

    // Idle session footprint: this process before connect (main thread, the control-plane
    // emulator's thread, the Python peer's stdout reader) and 2 s after connect.
    std::thread::sleep(Duration::from_millis(500));
    let (threads_before, rss_before) = (thread_count(), rss_kib());
    let session = connect(&p.client, &p.robot_id, simplesim())?;
    std::thread::sleep(Duration::from_secs(2));
    let (threads_idle, rss_idle) = (thread_count(), rss_kib());

    // runtime.state round trips: Rust Session, then the official Python client (its own process).
    let rust = rust_state_reads(&session, n)?;
    let py_token = p.livekit.token(&p.robot_id, "py-bench", false, &[]);
    let py_caller = PyPeer::spawn(
        "bench_caller.py",
        &[
            &p.livekit.url,
            &py_token,
            &identity,
            &n.to_string(),
            &WARMUP.to_string(),
            &FRAMES.to_string(),
        ],
    );
    let bench = py_caller.wait_event("bench", Duration::from_secs(180));
    let py_capture = py_caller.wait_event("capture_bench", Duration::from_secs(180));
    drop(py_caller);
    let python = sorted(
        bench["latencies_ms"]
            .as_array()
            .ok_or("bench_caller.py printed no latencies")?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect(),
    );

    // get_vision at 1280x720, one frame after the other.
    let capture = CaptureOptions::new().width(1280).height(720);
    let mut frame_len = 0;
    for _ in 0..3 {
        frame_len = session.get_vision("pov", &capture)?.len();
    }
    let mut frames = Vec::with_capacity(FRAMES);
    let started = Instant::now();
    for _ in 0..FRAMES {
        let t = Instant::now();
        let frame = session.get_vision("pov", &capture)?;
        frames.push(t.elapsed().as_secs_f64() * 1e3);
        if frame.len() != frame_len {
            return Err(format!("frame of {} bytes, expected {frame_len}", frame.len()).into());
        }
    }
    let fps = FRAMES as f64 / started.elapsed().as_secs_f64();
    let frames = sorted(frames);
    session.disconnect()?;
    drop(session);

    let fresh = fresh_process_footprint(&p)?;

    // connect() -> discover_skills() returned, fresh session each time.
    let mut joins = Vec::with_capacity(CONNECT_SAMPLES);
    for _ in 0..CONNECT_SAMPLES {
        let started = Instant::now();
        let session = connect(&p.client, &p.robot_id, simplesim())?;
        let skills = session.discover_skills()?;
        joins.push(started.elapsed().as_secs_f64() * 1e3);
        if skills.is_empty() {
            return Err("the runtime listed no skills".into());
        }
        session.disconnect()?;
    }
    let join_samples = joins
        .iter()
        .map(|ms| format!("{ms:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    let joins = sorted(joins);

    let (rp50, rp99) = (pct(&rust, 0.5), pct(&rust, 0.99));
    let (pp50, pp99) = (pct(&python, 0.5), pct(&python, 0.99));
    let (extra_threads, extra_kib) = (
        threads_idle as i64 - threads_before as i64,
        rss_idle as i64 - rss_before as i64,
    );
    println!(
        "bench_live: {server_version} on loopback; runtime tests/peers/runtime.py ({}); {} build",
        ready["sdk"].as_str().unwrap_or("python livekit"),
        if cfg!(debug_assertions) {
            "DEBUG (figures not representative; use --release)"
        } else {
            "release"
        }
    );
    println!("{:<48} {:<34} target", "measure", "result");
    println!(
        "{:<48} {:<34} Rust p50 <= Python p50: {}",
        format!("state(robot_status) RTT, Rust Session, n={}", rust.len()),
        format!("p50 {rp50:.2} ms  p99 {rp99:.2} ms"),
        verdict(rp50 <= pp50)
    );
    println!(
        "{:<48} {:<34} (reference)",
        format!("runtime.state RTT, Python client, n={}", python.len()),
        format!("p50 {pp50:.2} ms  p99 {pp99:.2} ms"),
    );
    println!(
        "{:<48} {:<34} -",
        format!("get_vision pov 1280x720 ({frame_len} B), {FRAMES} frames"),
        format!("{fps:.1} fps  (frame p50 {:.1} ms)", pct(&frames, 0.5)),
    );
    let py_frames = sorted(
        py_capture["latencies_ms"]
            .as_array()
            .ok_or("bench_caller.py printed no capture latencies")?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect(),
    );
    println!(
        "{:<48} {:<34} (reference)",
        format!("same capture by the Python client, {FRAMES} frames"),
        format!(
            "{:.1} fps  (frame p50 {:.1} ms)",
            FRAMES as f64 / py_capture["elapsed_s"].as_f64().unwrap_or(f64::NAN),
            pct(&py_frames, 0.5)
        ),
    );
    println!(
        "{:<48} {:<34} -",
        format!("connect -> first skill, median of {CONNECT_SAMPLES}"),
        format!("{:.0} ms  [{join_samples}]", pct(&joins, 0.5)),
    );
    println!(
        "{:<48} {:<34} <= 4: {} (session alone +{extra_threads}: {})",
        "threads, idle session, this process",
        format!("{threads_idle} / {threads_before}"),
        verdict(threads_idle <= 4),
        verdict(extra_threads <= 4),
    );
    println!(
        "{:<48} {:<34} <= 25 MB: {} (session alone {:+.1} MiB: {})",
        "VmRSS MiB, idle session, this process",
        format!("{:.1} / {:.1}", mib(rss_idle), mib(rss_before)),
        verdict(rss_idle <= 25 * 1024),
        extra_kib as f64 / 1024.0,
        verdict(extra_kib <= 25 * 1024),
    );
    let fresh_threads = fresh["threads"].as_u64().unwrap_or(0);
    let fresh_kib = fresh["rss_kib"].as_u64().unwrap_or(0);
    println!(
        "{:<48} {:<34} <= 4: {}",
        "threads, idle session, fresh process",
        format!(
            "{fresh_threads} / {}",
            fresh["threads_before"].as_u64().unwrap_or(0)
        ),
        verdict(fresh_threads <= 4),
    );
    println!(
        "{:<48} {:<34} <= 25 MB: {}",
        "VmRSS MiB, idle session, fresh process",
        format!(
            "{:.1} / {:.1}",
            mib(fresh_kib),
            mib(fresh["rss_before_kib"].as_u64().unwrap_or(0))
        ),
        verdict(fresh_kib <= 25 * 1024),
    );
    println!(
        "  (X / Y = with the idle session / before connect. \"this process\" also runs the \
         control-plane emulator thread and the Python peer's stdout reader; the fresh process \
         only a client and the session. livekit-server and Python run in other processes.)"
    );
    drop(runtime);
    Ok(())
}
