//! Link-cut benchmark (issue 9): how a session reading `robot_status` at 10 Hz lives through
//! a network path that is cut for N seconds and then restored, for this SDK's [`Session`]
//! next to the official LiveKit Python client (PyPI `livekit`), through the same cuts.
//!
//! Topology (tests/live_common/netns.rs): livekit-server and the runtime
//! (tests/peers/runtime.py, official client) in a server namespace, the readers in a client
//! namespace, a router namespace between them where the cut happens:
//!
//! - `blackhole`: the router silently drops everything both ways (`ip rule … blackhole`);
//! - `interface down`: the client's interface goes down (and its routes), then up again.
//!
//! For each mode and cut length (2, 10, 20, 45 s) two readers run through the same cut, each
//! in its own room with its own runtime: (a) this SDK's [`Session`] (this example re-run as a
//! child process in the client namespace, hosting its own control-plane emulator there), and
//! (b) tests/peers/linkcut_reader.py. Both start one `runtime.state` read every 100 ms
//! whether or not earlier reads have finished (read timeout 30 s, the SDK's default), so a
//! stuck read never hides the moment reads work again. Per reader: recovered (a read started
//! after the restore succeeded), restore → first good read, first error and when (from the
//! cut), events seen after the cut (disconnected, reconnecting, participants leaving). Each
//! row is bounded: setup ≤ 60 s, 3 s of reads, the cut, then `--observe` seconds (default 20).
//!
//! Needs root (network namespaces), livekit-server and python3 with `livekit` 1.2.0:
//!
//! ```text
//! cargo run --example bench_linkcut --features livekit,dev -- [--cuts 2,10,20,45]
//!     [--modes blackhole,down] [--readers rust,python] [--observe 20] [--repeat 1]
//! ```
//!
//! `--repeat N` runs every row N times (each its own table line): a 10 s cut ends close to
//! the SDK's 15 s signal ping timeout, and which side of it the session lands on varies.
//!
//! Prints the issue-9 table (markdown) and a detail block per row. Asserts nothing.

#[path = "../tests/live_common/mod.rs"]
mod live_common;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use live_common::netns::{unix_secs, CutWindow, LineProcess, Mode, Side, Topology};
use live_common::LiveKit;
use menlo_robot_sdk::dev::{ControlPlane, Principal};
use menlo_robot_sdk::{connect, Client, ConnectOptions, NewRobot, Session, SessionEvent};
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const READ_HZ: f64 = 10.0;
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Above `READ_HZ` × `READ_TIMEOUT`, so the cap never throttles the 10 Hz schedule.
const MAX_IN_FLIGHT: usize = 400;
const WARM_UP: Duration = Duration::from_secs(3);
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const RUST_READER_ARG: &str = "--rust-reader";
const KEY_ENV: &str = "LINKCUT_LK_KEY";
const SECRET_ENV: &str = "LINKCUT_LK_SECRET";

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(RUST_READER_ARG) {
        let url = args.get(1).ok_or("usage: --rust-reader <livekit-url>")?;
        return rust_reader(url);
    }
    let plan = Plan::parse(&args)?;
    let topology = match Topology::create() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("bench_linkcut: cannot build the network namespaces: {why}");
            std::process::exit(2);
        }
    };
    let server = topology.start_livekit()?;
    let server_version = std::process::Command::new(live_common::server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    eprintln!(
        "bench_linkcut: {server_version} at {} (server ns {}), readers in {}",
        server.url,
        topology.name(Side::Server),
        topology.name(Side::Client)
    );
    let mut rows = Vec::new();
    for &mode in &plan.modes {
        for &cut in &plan.cuts {
            for _ in 0..plan.repeat {
                eprintln!("bench_linkcut: {} s, {} ...", cut, mode.label());
                let row = run_row(&topology, &server, &plan, cut, mode, rows.len());
                print_details(&row);
                rows.push(row);
            }
        }
    }
    print_table(&server_version, &plan, &rows);
    drop(server);
    drop(topology);
    Ok(())
}

/// What to run, from the command line.
struct Plan {
    cuts: Vec<u64>,
    modes: Vec<Mode>,
    rust: bool,
    python: bool,
    observe: Duration,
    /// Runs of each row (the outcome near the signal ping timeout varies between runs).
    repeat: usize,
}

impl Plan {
    fn parse(args: &[String]) -> Res<Plan> {
        let mut plan = Plan {
            cuts: vec![2, 10, 20, 45],
            modes: vec![Mode::Blackhole, Mode::InterfaceDown],
            rust: true,
            python: true,
            observe: Duration::from_secs(20),
            repeat: 1,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let items = || value.split(',').map(str::trim);
            match flag.as_str() {
                "--cuts" => plan.cuts = items().map(str::parse).collect::<Result<_, _>>()?,
                "--modes" => {
                    plan.modes = items()
                        .map(|m| match m {
                            "blackhole" => Ok(Mode::Blackhole),
                            "down" | "interface-down" => Ok(Mode::InterfaceDown),
                            other => Err(format!("unknown mode {other:?} (blackhole, down)")),
                        })
                        .collect::<Result<_, _>>()?
                }
                "--readers" => {
                    let readers: Vec<&str> = items().collect();
                    plan.rust = readers.contains(&"rust");
                    plan.python = readers.contains(&"python");
                }
                "--observe" => plan.observe = Duration::from_secs(value.parse()?),
                "--repeat" => plan.repeat = value.parse::<usize>()?.max(1),
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(plan)
    }
}

// ---------------------------------------------------------------------------------------
// The Rust reader: this example as a child process in the client namespace.

fn emit(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn now_unix() -> f64 {
    unix_secs(SystemTime::now())
}

/// Hosts a control-plane emulator on this namespace's loopback (pointing at the server's
/// LiveKit URL), creates a robot, prints its id (the parent starts the runtime in the server
/// namespace), connects a [`Session`], then reads at [`READ_HZ`] until stdin closes.
fn rust_reader(url: &str) -> Res<()> {
    let key = std::env::var(KEY_ENV).map_err(|_| format!("{KEY_ENV} is not set"))?;
    let secret = std::env::var(SECRET_ENV).map_err(|_| format!("{SECRET_ENV} is not set"))?;
    let rcs = ControlPlane::builder().livekit(url, key, secret).start()?;
    let api_key = rcs.create_api_key(&Principal::new("linkcut", "org_linkcut", "team_linkcut"));
    let client = Client::builder().rcs_url(rcs.url()).api_key(api_key).build()?;
    let robot_id = client
        .robots()
        .create(&NewRobot::new("linkcut", "asimov-v0"))?
        .robot
        .id;
    emit(json!({"event": "robot", "robot_id": robot_id}));
    let options = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .session_ready_timeout(SETUP_TIMEOUT)
        .runtime_call_timeout(READ_TIMEOUT);
    let session = match connect(&client, &robot_id, options) {
        Ok(session) => Arc::new(session),
        Err(err) => {
            emit(json!({"event": "error", "message": err.to_string()}));
            std::process::exit(1);
        }
    };
    emit(json!({"event": "ready", "sdk": format!("menlo-robot-sdk {}", env!("CARGO_PKG_VERSION"))}));
    forward_session_events(&session);
    let stop = stop_on_stdin_eof();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let period = Duration::from_secs_f64(1.0 / READ_HZ);
    let mut next_tick = Instant::now();
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if in_flight.load(Ordering::SeqCst) < MAX_IN_FLIGHT {
            seq += 1;
            spawn_read(&session, &in_flight, seq)?;
        }
        next_tick += period;
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
    emit(json!({"event": "end", "pending": in_flight.load(Ordering::SeqCst)}));
    // Reads still in flight and the session's threads must not hold the benchmark up.
    std::process::exit(0);
}

fn spawn_read(session: &Arc<Session>, in_flight: &Arc<AtomicUsize>, seq: u64) -> Res<()> {
    let (session, in_flight) = (Arc::clone(session), Arc::clone(in_flight));
    in_flight.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let start = now_unix();
            let result = session.state().get("robot_status");
            let end = now_unix();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            match result {
                Ok(_) => emit(json!({"event": "read", "seq": seq, "start": start, "end": end, "ok": true})),
                Err(err) => emit(json!({
                    "event": "read", "seq": seq, "start": start, "end": end, "ok": false,
                    "error": err.to_string(),
                })),
            }
        })?;
    Ok(())
}

fn forward_session_events(session: &Arc<Session>) {
    let session = Arc::clone(session);
    std::thread::spawn(move || {
        for event in session.events().iter() {
            let what = match event {
                SessionEvent::ActionResult(_) => continue,
                SessionEvent::Connected { .. } => "connected".to_owned(),
                SessionEvent::SessionReady => "ready".to_owned(),
                SessionEvent::ParticipantJoined(p) => format!("joined({})", p.identity),
                SessionEvent::ParticipantLeft(p) => format!("left({})", p.identity),
                SessionEvent::Disconnected { reason } => format!("disconnected({reason})"),
                other => {
                    let text = format!("{other:?}");
                    text.chars().take(80).collect()
                }
            };
            emit(json!({"event": "room", "t": now_unix(), "what": what}));
        }
    });
}

fn stop_on_stdin_eof() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut sink = String::new();
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

// ---------------------------------------------------------------------------------------
// The parent: one row = one cut through which both readers run.

/// A reader process, the runtime it reads from, and every line the reader printed.
struct ReaderRun {
    reader: LineProcess,
    _runtime: LineProcess,
    lines: Vec<String>,
}

impl ReaderRun {
    fn stop(&mut self) {
        self.reader.close_stdin();
        self.reader.finish(Duration::from_secs(3));
        self.lines.extend(self.reader.drain());
    }
}

/// Reads lines until one whose "event" is `event` (kept in `seen` with the others), or
/// fails on an "error" line, on the process's end or after `timeout`.
fn wait_event(process: &LineProcess, event: &str, timeout: Duration, seen: &mut Vec<String>) -> Res<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = process
            .next_line(left)
            .ok_or_else(|| format!("no {event:?} line within {timeout:?}"))?;
        seen.push(line.clone());
        if let Ok(value) = serde_json::from_str::<Value>(&line) {
            if value["event"] == event {
                return Ok(value);
            }
            if value["event"] == "error" {
                return Err(format!("reader failed: {}", value["message"]).into());
            }
        }
    }
}

fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn start_runtime(topology: &Topology, server: &LiveKit, room: &str, identity: &str) -> Res<LineProcess> {
    let token = server.token(room, identity, false, &[]);
    let mut command = topology.command(Side::Server, python());
    command.arg(peer_script("runtime.py")).arg(&server.url).arg(token);
    Ok(LineProcess::spawn(command)?)
}

fn start_rust_reader(topology: &Topology, server: &LiveKit) -> Res<ReaderRun> {
    let mut command = topology.command(Side::Client, std::env::current_exe()?);
    command
        .arg(RUST_READER_ARG)
        .arg(&server.url)
        .env(KEY_ENV, &server.key)
        .env(SECRET_ENV, &server.secret);
    let reader = LineProcess::spawn(command)?;
    let mut lines = Vec::new();
    let robot = wait_event(&reader, "robot", SETUP_TIMEOUT, &mut lines)?;
    let robot_id = robot["robot_id"].as_str().ok_or("no robot id")?.to_owned();
    let runtime = start_runtime(topology, server, &robot_id, &format!("simplesim:{robot_id}"))?;
    wait_event(&reader, "ready", SETUP_TIMEOUT, &mut lines)?;
    Ok(ReaderRun {
        reader,
        _runtime: runtime,
        lines,
    })
}

fn start_python_reader(topology: &Topology, server: &LiveKit, tag: &str) -> Res<ReaderRun> {
    let room = format!("linkcut-py-{tag}");
    let runtime_identity = format!("simplesim:linkcut-{tag}");
    let runtime = start_runtime(topology, server, &room, &runtime_identity)?;
    wait_event(&runtime, "ready", SETUP_TIMEOUT, &mut Vec::new())?;
    let token = server.token(&room, "linkcut-py-reader", false, &[]);
    let mut command = topology.command(Side::Client, python());
    command
        .arg(peer_script("linkcut_reader.py"))
        .arg(&server.url)
        .arg(&runtime_identity)
        .env("LINKCUT_TOKEN", token);
    let reader = LineProcess::spawn(command)?;
    let mut lines = Vec::new();
    wait_event(&reader, "ready", SETUP_TIMEOUT, &mut lines)?;
    Ok(ReaderRun {
        reader,
        _runtime: runtime,
        lines,
    })
}

/// One cut length and mode, both readers.
struct Row {
    cut: u64,
    mode: Mode,
    rust: Option<Outcome>,
    python: Option<Outcome>,
}

fn run_row(topology: &Topology, server: &LiveKit, plan: &Plan, cut: u64, mode: Mode, index: usize) -> Row {
    let tag = format!("{index}-{}", std::process::id());
    let mut rust = plan.rust.then(|| start_rust_reader(topology, server));
    let mut python = plan.python.then(|| start_python_reader(topology, server, &tag));
    let started = rust.iter().chain(python.iter()).any(|r| r.is_ok());
    let window = if started {
        std::thread::sleep(WARM_UP);
        match topology.cut(Duration::from_secs(cut), mode) {
            Ok(window) => {
                let until = window.restored + plan.observe;
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                Ok(window)
            }
            Err(e) => Err(e),
        }
    } else {
        Err("no reader started".to_owned())
    };
    let finish = |run: &mut Option<Res<ReaderRun>>| {
        run.as_mut().map(|result| match (result, &window) {
            (Ok(run), Ok(window)) => {
                run.stop();
                analyse(&run.lines, window)
            }
            (Err(setup), _) => Outcome::failed(format!("setup failed: {setup}")),
            (Ok(_), Err(cut)) => Outcome::failed(format!("cut failed: {cut}")),
        })
    };
    Row {
        cut,
        mode,
        rust: finish(&mut rust),
        python: finish(&mut python),
    }
}

// ---------------------------------------------------------------------------------------
// Analysis and output.

/// What one reader went through, times in seconds.
struct Outcome {
    /// Set when the reader never ran (setup failure).
    failure: Option<String>,
    /// A read started after the restore succeeded.
    recovered: bool,
    /// Restore → the first successful read to complete after the restore (any start time).
    first_good: Option<f64>,
    /// Restore → completion of the first successful read started after the restore.
    first_fresh: Option<f64>,
    /// (seconds from the cut, message) of the first failed read.
    first_error: Option<(f64, String)>,
    /// The message of the last failed read.
    last_error: Option<String>,
    /// (seconds from the cut, what) of the reader's room/session events from the cut on.
    events: Vec<(f64, String)>,
    ok: usize,
    failed: usize,
    /// The longest time a successful read took (an answer that came late).
    slowest_ok: f64,
    /// Reads still in flight when the reader stopped.
    pending: u64,
}

impl Outcome {
    fn failed(why: String) -> Outcome {
        Outcome {
            failure: Some(why),
            recovered: false,
            first_good: None,
            first_fresh: None,
            first_error: None,
            last_error: None,
            events: Vec::new(),
            ok: 0,
            failed: 0,
            slowest_ok: 0.0,
            pending: 0,
        }
    }
}

fn min_f64(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.min_by(f64::total_cmp)
}

fn analyse(lines: &[String], window: &CutWindow) -> Outcome {
    let (cut, restored) = (unix_secs(window.cut_at), unix_secs(window.restored_at));
    let values: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let reads: Vec<(f64, f64, bool, String)> = values
        .iter()
        .filter(|v| v["event"] == "read")
        .map(|v| {
            let t = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let error = v["error"].as_str().unwrap_or("").to_owned();
            (t("start"), t("end"), v["ok"] == true, error)
        })
        .collect();
    let good = || reads.iter().filter(|r| r.2);
    let first_error = reads
        .iter()
        .filter(|r| !r.2)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|r| (r.1 - cut, r.3.chars().take(120).collect()));
    let last_error = reads
        .iter()
        .filter(|r| !r.2)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|r| r.3.chars().take(120).collect());
    let events = values
        .iter()
        .filter(|v| v["event"] == "room")
        .filter_map(|v| Some((v["t"].as_f64()? - cut, v["what"].as_str()?.to_owned())))
        .filter(|(t, _)| *t >= 0.0)
        .collect();
    Outcome {
        failure: None,
        recovered: good().any(|r| r.0 >= restored),
        first_good: min_f64(good().filter(|r| r.1 >= restored).map(|r| r.1 - restored)),
        first_fresh: min_f64(good().filter(|r| r.0 >= restored).map(|r| r.1 - restored)),
        first_error,
        last_error,
        events,
        ok: good().count(),
        failed: reads.iter().filter(|r| !r.2).count(),
        slowest_ok: good().map(|r| r.1 - r.0).fold(0.0, f64::max),
        pending: values
            .iter()
            .find(|v| v["event"] == "end")
            .and_then(|v| v["pending"].as_u64())
            .unwrap_or(0),
    }
}

/// Events worth a table cell: the connection's own (participants leaving and joining, and
/// state changes that repeat the named events, stay in the details).
fn notable(events: &[(f64, String)]) -> Vec<String> {
    const DETAIL_ONLY: [&str; 5] = ["state(", "joined(", "left(", "connected", "ready"];
    events
        .iter()
        .filter(|(_, what)| !DETAIL_ONLY.iter().any(|p| what.starts_with(p)))
        .map(|(t, what)| format!("{what} +{t:.1} s"))
        .collect()
}

fn cell(outcome: &Option<Outcome>) -> String {
    let Some(o) = outcome else {
        return "(not run)".into();
    };
    if let Some(why) = &o.failure {
        return why.clone();
    }
    let events = notable(&o.events).join(", ");
    match (o.recovered, o.first_good) {
        (true, Some(first)) if events.is_empty() => format!("yes, {first:.1} s"),
        (true, Some(first)) => format!("yes, {first:.1} s ({events})"),
        _ => {
            let last = o
                .last_error
                .as_ref()
                .map(|e| format!("; reads then fail with `{e}`"))
                .unwrap_or_default();
            if events.is_empty() {
                format!("no{last}")
            } else {
                format!("no: {events}{last}")
            }
        }
    }
}

fn print_details(row: &Row) {
    for (who, outcome) in [("python", &row.python), ("rust", &row.rust)] {
        let Some(o) = outcome else { continue };
        if let Some(why) = &o.failure {
            println!("  {} s {:<14} {who:<6}: {why}", row.cut, row.mode.label());
            continue;
        }
        let secs = |v: Option<f64>| v.map_or("-".to_owned(), |s| format!("{s:.2} s"));
        println!(
            "  {} s {:<14} {who:<6}: recovered {}, first good {} (fresh read {}), reads ok {} / \
             failed {} / pending {}, slowest answer {:.1} s",
            row.cut,
            row.mode.label(),
            if o.recovered { "yes" } else { "no" },
            secs(o.first_good),
            secs(o.first_fresh),
            o.ok,
            o.failed,
            o.pending,
            o.slowest_ok,
        );
        if let Some((t, e)) = &o.first_error {
            println!("      first error at +{t:.1} s: {e}");
        }
        if let Some(e) = &o.last_error {
            println!("      last error: {e}");
        }
        let events: Vec<String> = o.events.iter().map(|(t, w)| format!("{w} +{t:.1} s")).collect();
        println!(
            "      events from the cut on: {}",
            if events.is_empty() {
                "none".into()
            } else {
                events.join(", ")
            }
        );
    }
}

fn print_table(server_version: &str, plan: &Plan, rows: &[Row]) {
    println!();
    println!(
        "bench_linkcut: {server_version}; readers at {READ_HZ} Hz, read timeout {} s, observed {} s \
         after each restore; times from the cut (+) or from the restore; {} build",
        READ_TIMEOUT.as_secs(),
        plan.observe.as_secs(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!();
    println!("| cut | mode | official engine (Python livekit 1.2.0): recovered, restore → first good read | this SDK (`Session`) |");
    println!("|---|---|---|---|");
    for row in rows {
        println!(
            "| {} s | {} | {} | {} |",
            row.cut,
            row.mode.label(),
            cell(&row.python),
            cell(&row.rust)
        );
    }
}
