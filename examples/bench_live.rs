//! Benchmark of the live layer, in one run against one local livekit-server and one runtime
//! written with the official LiveKit Python client (tests/peers/runtime.py):
//!
//! - round trip of `session.state().get("robot_status")` from the Rust [`Session`], next to
//!   the same `runtime.state` RPC performed by the official Python client
//!   (tests/peers/bench_caller.py);
//! - `get_vision` frames per second at 1280×720 (a ~230 KB byte stream per frame), next to
//!   the same capture requested by the Python client; then the same from a [`RuntimeHost`]
//!   runtime in this process (a 1280×720-sized frame), for the Rust session and the Python client;
//! - connect-to-first-skill time (`connect()` → `discover_skills()` returned);
//! - the first call's delay after a runtime joins late: a `state` read is started on a
//!   connected session, then a [`RuntimeHost`] joins; from its handlers being registered to
//!   the reply, with a plain token and with one granting `canUpdateOwnMetadata` (the host then
//!   sets an attribute, which livekit-server announces at once instead of in its 3 s batch);
//! - threads and RSS of this process with one idle connected session (2 s after connect), and
//!   before connecting; and of a fresh process (this example re-run as a child) that holds
//!   only a client and 1, 10 or 100 idle connected sessions (one robot each).
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

use live_common::{frame_720p, serve_state_and_camera, server_binary, thread_count, Platform, PyPeer};
use menlo_robot_sdk::{connect, CaptureOptions, ConnectOptions, RuntimeHost, Session, StateReply};

const WARMUP: usize = 50;
const FRAMES: usize = 30;
const CONNECT_SAMPLES: usize = 5;
const LATE_RUNTIME_SAMPLES: usize = 6;
const IDLE_SESSION_COUNTS: [usize; 3] = [1, 10, 100];

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

/// The child process of the "fresh process" footprint: only a client and one idle session
/// per robot of `BENCH_LIVE_ROBOT_IDS` (comma-separated). Prints
/// `{"threads_before","rss_before_kib","threads","rss_kib"}` on stdout.
fn idle_child() -> Res<()> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let (threads_before, rss_before) = (thread_count(), rss_kib());
    let client = menlo_robot_sdk::Client::builder()
        .rcs_url(var("BENCH_LIVE_RCS_URL")?)
        .api_key(var("BENCH_LIVE_API_KEY")?)
        .build()?;
    let robots = var("BENCH_LIVE_ROBOT_IDS")?;
    let sessions = robots
        .split(',')
        .map(|robot_id| connect(&client, robot_id, simplesim()))
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::sleep(Duration::from_secs(2));
    let (threads, rss) = (thread_count(), rss_kib());
    println!(
        "{}",
        serde_json::json!({
            "threads_before": threads_before, "rss_before_kib": rss_before,
            "threads": threads, "rss_kib": rss,
        })
    );
    for session in sessions {
        session.disconnect()?;
    }
    Ok(())
}

/// Runs this example again as [`idle_child`] with one session on each of `robot_ids`
/// (robots of `p`'s platform) and reads its figures.
fn fresh_process_footprint(p: &Platform, robot_ids: &[String]) -> Res<serde_json::Value> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .env("BENCH_LIVE_IDLE_CHILD", "1")
        .env("BENCH_LIVE_RCS_URL", p.rcs.url())
        .env("BENCH_LIVE_API_KEY", &p.api_key)
        .env("BENCH_LIVE_ROBOT_IDS", robot_ids.join(","))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("the idle-session child failed: {}", output.status).into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// One sample of the late-runtime delay: a session on a fresh robot starts a read before
/// any runtime is there; a [`RuntimeHost`] then joins (its token granting
/// `canUpdateOwnMetadata` when `announcing`). Returns the time from the host's handlers
/// being registered (`runtime.tools_list` last: that announces it) to the read's reply.
fn first_call_after_late_join(p: &Platform, announcing: bool) -> Res<f64> {
    let robot_id = p.create_robot();
    let session = connect(&p.client, &robot_id, simplesim())?;
    let read = session.state().start_get("ping")?;
    std::thread::sleep(Duration::from_millis(200));
    let identity = format!("simplesim:{robot_id}");
    let token = if announcing {
        p.livekit.token_updating_own_metadata(&robot_id, &identity)
    } else {
        p.livekit.token(&robot_id, &identity, false, &[])
    };
    let host = RuntimeHost::connect(&p.livekit.url, &token, Duration::from_secs(15))?;
    host.handle("runtime.ping", |_| Ok("{}".to_owned()));
    host.handle("runtime.tools_list", |_| Ok("[]".to_owned()));
    let joined = Instant::now();
    read.wait()?;
    let delay = joined.elapsed().as_secs_f64() * 1e3;
    session.disconnect()?;
    host.disconnect();
    Ok(delay)
}
/// 1280×720-sized frames from a [`RuntimeHost`] runtime (this process), captured by the Rust
/// [`Session`] and by the official Python client in turn: (fps, p50 ms) for each.
fn runtime_host_frames(p: &Platform) -> Res<((f64, f64), (f64, f64))> {
    let robot = p.create_robot();
    let identity = format!("simplesim:{robot}");
    let host = std::sync::Arc::new(p.runtime_in(&robot, &identity, false, &[]));
    serve_state_and_camera(&host, frame_720p());
    let session = connect(&p.client, &robot, simplesim())?;
    let capture = CaptureOptions::new().width(1280).height(720);
    for _ in 0..3 {
        session.get_vision("pov", &capture)?;
    }
    let mut rust = Vec::with_capacity(FRAMES);
    let started = Instant::now();
    for _ in 0..FRAMES {
        let t = Instant::now();
        session.get_vision("pov", &capture)?;
        rust.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rust_fps = FRAMES as f64 / started.elapsed().as_secs_f64();
    session.disconnect()?;
    let token = p.livekit.token(&robot, "py-bench-host", false, &[]);
    let caller = PyPeer::spawn(
        "bench_caller.py",
        &[&p.livekit.url, &token, &identity, "20", "5", &FRAMES.to_string()],
    );
    caller.wait_event("bench", Duration::from_secs(180));
    let py = caller.wait_event("capture_bench", Duration::from_secs(180));
    let py_latencies = sorted(
        py["latencies_ms"]
            .as_array()
            .ok_or("bench_caller.py printed no capture latencies")?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect(),
    );
    let py_fps = FRAMES as f64 / py["elapsed_s"].as_f64().unwrap_or(f64::NAN);
    Ok((
        (rust_fps, pct(&sorted(rust), 0.5)),
        (py_fps, pct(&py_latencies, 0.5)),
    ))
}

fn late_runtime_delays(p: &Platform, announcing: bool) -> Res<Vec<f64>> {
    let samples = (0..LATE_RUNTIME_SAMPLES).map(|_| first_call_after_late_join(p, announcing));
    Ok(sorted(samples.collect::<Res<Vec<_>>>()?))
}

fn list_ms(samples: &[f64]) -> String {
    let shown: Vec<String> = samples.iter().map(|ms| format!("{ms:.0}")).collect();
    shown.join(", ")
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

    let ((host_fps, host_p50), (host_py_fps, host_py_p50)) = runtime_host_frames(&p)?;
    let late_plain = late_runtime_delays(&p, false)?;
    let late_announced = late_runtime_delays(&p, true)?;

    let mut idle = Vec::new();
    let mut robots = vec![p.robot_id.clone()];
    for count in IDLE_SESSION_COUNTS {
        while robots.len() < count {
            robots.push(p.create_robot());
        }
        idle.push((count, fresh_process_footprint(&p, &robots[..count])?));
    }

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
    let join_samples = list_ms(&joins);
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
        "{:<48} {:<34} <= 0.5: {}",
        "state p50 ratio, Rust / Python",
        format!("{:.2}", rp50 / pp50),
        verdict(rp50 / pp50 <= 0.5)
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
        "{:<48} {:<34} >= Python: {}",
        format!("same size from a RuntimeHost runtime, Rust, {FRAMES}"),
        format!("{host_fps:.1} fps  (frame p50 {host_p50:.1} ms)"),
        verdict(host_fps >= host_py_fps)
    );
    println!(
        "{:<48} {:<34} (reference)",
        format!("same, by the Python client, {FRAMES} frames"),
        format!("{host_py_fps:.1} fps  (frame p50 {host_py_p50:.1} ms)"),
    );
    println!(
        "{:<48} {:<34} -",
        format!("connect -> first skill, median of {CONNECT_SAMPLES}"),
        format!("{:.0} ms  [{join_samples}]", pct(&joins, 0.5)),
    );
    for (label, delays) in [
        ("plain token", &late_plain),
        ("token granting canUpdateOwnMetadata", &late_announced),
    ] {
        println!(
            "{:<48} {:<34} -",
            format!("first call after a late runtime joins, {label}"),
            format!("median {:.0} ms  [{}]", pct(delays, 0.5), list_ms(delays)),
        );
    }
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
    println!(
        "{:<48} {:<34} target",
        "idle sessions, fresh process", "threads    VmRSS MiB   per session"
    );
    for (count, figures) in &idle {
        let threads = figures["threads"].as_u64().unwrap_or(0);
        let kib = figures["rss_kib"].as_u64().unwrap_or(0);
        let before_kib = figures["rss_before_kib"].as_u64().unwrap_or(0);
        println!(
            "{:<48} {:<34} threads constant: {}",
            format!("  {count} idle session(s)"),
            format!(
                "{threads:<10} {:<11.1} {:+.2} MiB",
                mib(kib),
                (kib as f64 - before_kib as f64) / 1024.0 / *count as f64
            ),
            verdict(threads <= idle[0].1["threads"].as_u64().unwrap_or(0)),
        );
    }
    println!(
        "  (X / Y = with the idle session / before connect. \"this process\" also runs the \
         control-plane emulator thread and the Python peer's stdout reader; the fresh process \
         only a client and its sessions. livekit-server and Python run in other processes; \
         the machine is shared with other builds, so figures are noisy.)"
    );
    drop(runtime);
    Ok(())
}
