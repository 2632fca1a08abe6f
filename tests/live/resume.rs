//! Resume and full reconnect (issue 8): the signal connection dropped with calls in flight,
//! the server's simulate-scenario requests, a server that goes away, and a server restarted
//! on the same ports. Against livekit-server, or the embedded SFU with
//! `MENLO_LIVE_BACKEND=embedded` (the restart test always uses a livekit-server it can stop
//! and start).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::live_common::{fixture_runtime, robot_status, server_binary, wait_until, Platform, KEY, SECRET};
use menlo_robot_sdk::dev::{mint_livekit_token, ControlPlane, LiveKitSettings, Principal, TokenOptions};
use menlo_robot_sdk::{
    connect, Client, ConnectOptions, NewRobot, ReconnectKind, RuntimeHost, Session, SessionEvent,
};
use serde_json::json;

/// Serves `runtime.tools_list` and `runtime.state` (after `delay`, so that calls stay in
/// flight); counts the state calls.
fn serve_state(host: &RuntimeHost, delay: Duration) -> Arc<AtomicUsize> {
    host.handle("runtime.tools_list", |_| Ok("[]".to_owned()));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    host.handle("runtime.state", move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        Ok(robot_status())
    });
    calls
}

/// A platform, a runtime answering `state` (counting the calls) and a session that has
/// already read from it once.
fn connected_to_a_state_runtime(
    options: ConnectOptions,
) -> (Platform, RuntimeHost, Arc<AtomicUsize>, Session) {
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = serve_state(&runtime, Duration::ZERO);
    let session = connect(&p.client, &p.robot_id, options).unwrap();
    session.state().robot_status().unwrap();
    (p, runtime, calls, session)
}

fn simplesim() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
}

/// Waits for the session's `n`-th link recovery; returns (resumed, when).
fn wait_reconnect(session: &Session, n: usize, timeout: Duration) -> (bool, Instant) {
    wait_until(timeout, "the link to come back", || {
        session.reconnects_for_test().get(n - 1).copied()
    })
}

fn wait_disconnected(session: &Session, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.events().recv_timeout(left) {
            Some(SessionEvent::Disconnected { reason }) => return reason,
            Some(_) => {}
            None => panic!("no Disconnected event within {timeout:?}"),
        }
    }
}

#[test]
fn a_dropped_signal_connection_resumes_and_every_call_in_flight_is_answered_once() {
    init_log();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = serve_state(&runtime, Duration::from_millis(100));
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    let pending: Vec<_> = (0..20).map(|_| session.state().start_robot_status()).collect();
    let dropped = Instant::now();
    session.drop_signal_for_test();
    for call in pending {
        let state = call.wait().expect("every call in flight is answered");
        assert_eq!(state.robot.entity_id, "robot_1");
    }
    let (resumed, at) = wait_reconnect(&session, 1, Duration::from_secs(10));
    assert!(resumed, "the same participant session was resumed");
    wait_event(&session, Duration::from_secs(5), |e| {
        matches!(
            e,
            SessionEvent::Reconnected {
                kind: ReconnectKind::Resumed
            }
        )
    });
    println!(
        "signal dropped → Reconnected{{resumed: true}} in {:?}",
        at.duration_since(dropped)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        21,
        "each call reached the runtime once"
    );
    assert!(session.is_connected());
    // The resumed signal connection carries the session on: calls go on working.
    session.state().robot_status().unwrap();
    assert_eq!(session.reconnects_for_test().len(), 1);
    session.disconnect().unwrap();
}

#[test]
fn node_failure_leads_to_a_full_reconnect_and_calls_work_afterwards() {
    init_log();
    let (_platform, _runtime, calls, session) = connected_to_a_state_runtime(simplesim());
    let sid_before = session.local_identity().to_owned();

    let asked = Instant::now();
    assert!(session.simulate_scenario_for_test("node_failure"));
    let (resumed, at) = wait_reconnect(&session, 1, Duration::from_secs(15));
    assert!(!resumed, "the server forgot the participant: a full reconnect");
    wait_event(&session, Duration::from_secs(5), |e| {
        matches!(
            e,
            SessionEvent::Reconnected {
                kind: ReconnectKind::Rejoined
            }
        )
    });
    println!(
        "node_failure → Reconnected{{resumed: false}} in {:?}",
        at.duration_since(asked)
    );
    assert_eq!(session.local_identity(), sid_before, "same identity");
    for _ in 0..3 {
        session.state().robot_status().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(session.is_connected());
    session.disconnect().unwrap();
}

#[test]
fn server_leave_disconnects_without_retrying() {
    init_log();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    serve_state(&runtime, Duration::ZERO);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    let asked = Instant::now();
    assert!(session.simulate_scenario_for_test("server_leave"));
    let reason = wait_disconnected(&session, Duration::from_secs(5));
    let took = asked.elapsed();
    println!("server_leave → Disconnected in {took:?}: {reason}");
    assert!(took < Duration::from_secs(2), "no retries: {took:?}");
    assert!(reason.contains("ended the session"), "{reason}");
    assert!(session.reconnects_for_test().is_empty());
    assert!(!session.is_connected());
    session.disconnect().unwrap();
}

#[test]
fn disconnect_while_reconnecting_to_a_dead_server_returns_promptly() {
    init_log();
    let mut p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    serve_state(&runtime, Duration::ZERO);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    p.livekit.kill();
    // Let the engine notice and run a few failing attempts.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(session.is_connected(), "still reconnecting, not disconnected");
    let started = Instant::now();
    session.disconnect().unwrap();
    let took = started.elapsed();
    println!("disconnect() while reconnecting returned in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "session deleted"
    );
    drop(runtime);
}

/// A livekit-server on fixed loopback ports that can be stopped and started again.
struct RestartableServer {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    dir: PathBuf,
}

impl RestartableServer {
    fn start() -> RestartableServer {
        let (port, udp) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("menlo-lk-restart-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("livekit.yaml");
        let yaml = format!(
            "rtc:\n  udp_port: {udp}\n  node_ip: 127.0.0.1\n  use_external_ip: false\n  tcp_port: 0\n"
        );
        std::fs::write(&config, yaml).unwrap();
        let mut server = RestartableServer {
            child: None,
            port,
            config,
            dir,
        };
        server.run();
        server
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(server_binary())
            .args([
                "--dev",
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--config",
            ])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("livekit-server (set LIVEKIT_SERVER_BIN)");
        self.child = Some(child);
        wait_until(Duration::from_secs(20), "livekit-server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RestartableServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for TCP and UDP on loopback, below the ephemeral range.
fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if tcp && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[test]
fn a_restarted_server_is_rejoined_by_the_session_and_the_runtime() {
    init_log();
    let mut server = RestartableServer::start();
    let settings = LiveKitSettings {
        url: server.url(),
        api_key: KEY.into(),
        api_secret: SECRET.into(),
    };
    let rcs = ControlPlane::builder()
        .livekit(server.url(), KEY, SECRET)
        .start()
        .unwrap();
    let key = rcs.create_api_key(&Principal::new("tester", "org_live", "team_live"));
    let client = Client::builder().rcs_url(rcs.url()).api_key(key).build().unwrap();
    let robot_id = client
        .robots()
        .create(&NewRobot::new("live", "asimov-v0"))
        .unwrap()
        .robot
        .id;
    let identity = format!("simplesim:{robot_id}");
    let token = mint_livekit_token(
        &settings,
        &robot_id,
        &identity,
        &identity,
        Duration::from_secs(600),
        &TokenOptions::default(),
    );
    let runtime = RuntimeHost::connect(&server.url(), &token, Duration::from_secs(15)).unwrap();
    let calls = serve_state(&runtime, Duration::ZERO);
    let session = connect(&client, &robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.run();
    let back = Instant::now();
    let (resumed, at) = wait_reconnect(&session, 1, Duration::from_secs(20));
    assert!(!resumed, "a new server knows nobody: a full reconnect");
    println!(
        "server restart → session Reconnected{{resumed: false}} {:?} after the server listened",
        at.saturating_duration_since(back)
    );
    let runtime_back = wait_until(Duration::from_secs(20), "the runtime to rejoin", || {
        runtime.reconnects_for_test().first().copied()
    });
    assert!(!runtime_back.0);
    println!(
        "server restart → runtime Reconnected{{resumed: false}} {:?} after the server listened",
        runtime_back.1.saturating_duration_since(back)
    );
    let state = wait_until(Duration::from_secs(20), "a call to succeed again", || {
        session.state().robot_status().ok()
    });
    assert_eq!(state.robot.entity_id, "robot_1");
    assert!(calls.load(Ordering::SeqCst) >= 2);
    assert!(session.is_connected() && runtime.is_connected());
    session.disconnect().unwrap();
    drop(runtime);
}

/// Debug aid: `MENLO_TEST_LOG=1` prints the SDK's log records of these tests to stderr.
fn init_log() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.target().starts_with("menlo_robot_sdk")
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!("{:?} {} {}", std::thread::current().id(), r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if std::env::var_os("MENLO_TEST_LOG").is_some() && log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

#[test]
fn a_five_second_cut_resumes_and_calls_made_before_and_during_it_are_answered_once() {
    init_log();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = serve_state(&runtime, Duration::from_millis(50));
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    let cut = Duration::from_secs(5);
    let mut pending: Vec<_> = (0..10).map(|_| session.state().start_robot_status()).collect();
    session.cut_link_for_test(cut);
    let restored = Instant::now() + cut;
    std::thread::sleep(Duration::from_secs(3));
    pending.extend((0..5).map(|_| session.state().start_robot_status()));
    wait_event(&session, Duration::from_secs(5), |e| {
        matches!(e, SessionEvent::Reconnecting { .. })
    });
    for call in pending {
        call.wait().expect("every call is answered after the cut");
    }
    let (resumed, at) = wait_reconnect(&session, 1, Duration::from_secs(20));
    assert!(resumed, "the server still held the participant: a resume");
    println!(
        "5 s cut: link back → Reconnected{{resumed: true}} in {:?}",
        at.saturating_duration_since(restored)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        16,
        "each call reached the runtime once"
    );
    let started = Instant::now();
    session.state().robot_status().unwrap();
    println!("5 s cut: a call after recovery took {:?}", started.elapsed());
    session.disconnect().unwrap();
}

#[test]
fn a_ten_second_cut_loses_the_signal_too_and_resumes_with_an_ice_restart() {
    init_log();
    let (_platform, _runtime, calls, session) = connected_to_a_state_runtime(simplesim());

    let cut = Duration::from_secs(10);
    session.cut_link_for_test(cut);
    let restored = Instant::now() + cut;
    std::thread::sleep(Duration::from_secs(7));
    let during = session.state().start_robot_status();
    let (resumed, at) = wait_reconnect(&session, 1, Duration::from_secs(20));
    assert!(resumed, "within the server's window: a resume");
    println!(
        "10 s cut: link back → Reconnected{{resumed: true}} in {:?}",
        at.saturating_duration_since(restored)
    );
    during
        .wait()
        .expect("a call made during the cut is answered after it");
    let started = Instant::now();
    session.state().robot_status().unwrap();
    println!("10 s cut: a call after recovery took {:?}", started.elapsed());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    session.disconnect().unwrap();
}

#[test]
fn a_25_second_cut_outlives_the_server_and_ends_in_a_full_reconnect() {
    init_log();
    let (_platform, _runtime, calls, session) = connected_to_a_state_runtime(simplesim());

    let cut = Duration::from_secs(25);
    session.cut_link_for_test(cut);
    let restored = Instant::now() + cut;
    std::thread::sleep(Duration::from_secs(4));
    // Made during the cut, never written: sent on the new link.
    let during = session.state().start_robot_status();
    let (resumed, at) = wait_reconnect(&session, 1, Duration::from_secs(40));
    assert!(
        !resumed,
        "the server forgot the participant after ~20 s: a full reconnect"
    );
    println!(
        "25 s cut: link back → Reconnected{{resumed: false}} in {:?}",
        at.saturating_duration_since(restored)
    );
    during
        .wait()
        .expect("a call made during the cut is answered after it");
    session.state().robot_status().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    session.disconnect().unwrap();
}

#[test]
fn a_cut_longer_than_the_reconnect_timeout_disconnects_with_the_last_error() {
    init_log();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    serve_state(&runtime, Duration::ZERO);
    let options = simplesim().reconnect_timeout(Duration::from_secs(8));
    let session = connect(&p.client, &p.robot_id, options).unwrap();
    session.state().robot_status().unwrap();

    let cut_at = Instant::now();
    session.cut_link_for_test(Duration::from_secs(30));
    let reason = wait_disconnected(&session, Duration::from_secs(20));
    let took = cut_at.elapsed();
    println!("reconnect_timeout 8 s: Disconnected {took:?} after the cut: {reason}");
    assert!(reason.contains("could not reconnect within 8 s"), "{reason}");
    assert!(
        reason.contains("network unreachable"),
        "names the last error: {reason}"
    );
    // Counted in time from the last datagram before the cut; attempts that fail at once
    // neither shorten nor lengthen it.
    assert!(took >= Duration::from_secs(7), "{took:?}");
    assert!(took < Duration::from_secs(12), "{took:?}");
    assert!(session.reconnects_for_test().is_empty());
    session.disconnect().unwrap();
}

/// Waits up to `timeout` for the first event matching `pred`; the events before it are dropped.
fn wait_event(session: &Session, timeout: Duration, pred: impl Fn(&SessionEvent) -> bool) -> SessionEvent {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.events().recv_timeout(left) {
            Some(event) if pred(&event) => return event,
            Some(_) => {}
            None => panic!("no matching session event within {timeout:?}"),
        }
    }
}

#[test]
fn a_tool_call_written_before_a_cut_the_server_outlives_fails_as_connection_lost() {
    init_log();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    serve_state(&runtime, Duration::ZERO);
    let tool_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&tool_calls);
    runtime.handle("runtime.tools_call", move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Err(menlo_robot_sdk::RpcError::application("not expected"))
    });
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    // Cut first (the engine takes commands in order), then call at once: the request is
    // written to SCTP before the engine can notice the silence, and every datagram vanishes,
    // so it is never acknowledged. The cut outlasts the server's hold on the participant, so
    // the link comes back as a new participant.
    session.cut_link_for_test(Duration::from_secs(25));
    let pending = session
        .start_invoke("go_to", json!({}), Some(Duration::from_secs(60)))
        .unwrap();
    let err = pending.wait().unwrap_err();
    assert!(
        matches!(
            &err,
            menlo_robot_sdk::Error::ConnectionLost {
                may_still_be_running: true,
                ..
            }
        ),
        "{err:?}"
    );
    let (resumed, _) = wait_reconnect(&session, 1, Duration::from_secs(10));
    assert!(!resumed, "a full reconnect");
    assert_eq!(
        tool_calls.load(Ordering::SeqCst),
        0,
        "it never reached the runtime"
    );
    session.state().robot_status().unwrap();
    session.disconnect().unwrap();
}

#[test]
fn a_hundred_forced_resumes_fail_lose_and_duplicate_no_call() {
    init_log();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = serve_state(&runtime, Duration::from_millis(5));
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    let (rounds, per_round) = (100, 5);
    let (mut failed, mut answered) = (0, 0);
    let started = Instant::now();
    for round in 1..=rounds {
        let pending: Vec<_> = (0..per_round)
            .map(|_| session.state().start_robot_status())
            .collect();
        session.drop_signal_for_test();
        for call in pending {
            match call.wait() {
                Ok(_) => answered += 1,
                Err(e) => {
                    eprintln!("round {round}: {e}");
                    failed += 1;
                }
            }
        }
        wait_reconnect(&session, round, Duration::from_secs(10));
    }
    let reached = calls.load(Ordering::SeqCst) - 1;
    let resumed = session
        .reconnects_for_test()
        .iter()
        .filter(|(resumed, _)| *resumed)
        .count();
    println!(
        "{rounds} forced resumes ({resumed} resumed) with {per_round} state calls in flight each, \
         {:?}: {failed} failed, {} replies lost, {} duplicated",
        started.elapsed(),
        reached.saturating_sub(answered),
        answered.saturating_sub(reached),
    );
    assert_eq!((failed, resumed), (0, rounds));
    assert_eq!(reached, rounds * per_round, "each call reached the runtime once");
    session.disconnect().unwrap();
}

#[test]
fn over_two_peer_connections_a_dropped_signal_and_a_ten_second_cut_resume() {
    init_log();
    let p = Platform::start();
    let rt = fixture_runtime();
    let server_port = p.livekit.port();
    let (port, paths) = crate::fallback::start_v0_only_proxy(&rt, server_port);
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = serve_state(&runtime, Duration::from_millis(20));
    let options = simplesim().livekit_url(format!("ws://127.0.0.1:{port}"));
    let session = connect(&p.client, &p.robot_id, options).unwrap();
    session.state().robot_status().unwrap();

    let pending: Vec<_> = (0..10).map(|_| session.state().start_robot_status()).collect();
    session.drop_signal_for_test();
    for call in pending {
        call.wait().expect("every call in flight is answered");
    }
    assert!(wait_reconnect(&session, 1, Duration::from_secs(10)).0, "resumed");

    let cut = Duration::from_secs(10);
    session.cut_link_for_test(cut);
    let restored = Instant::now() + cut;
    let (resumed, at) = wait_reconnect(&session, 2, Duration::from_secs(25));
    assert!(resumed, "resumed after the cut");
    println!(
        "dual PC, 10 s cut: link back → Reconnected{{resumed: true}} in {:?}",
        at.saturating_duration_since(restored)
    );
    let started = Instant::now();
    session.state().robot_status().unwrap();
    println!(
        "dual PC, 10 s cut: a call after recovery took {:?}",
        started.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 12);
    let seen = paths.lock().unwrap().clone();
    assert!(
        seen.iter().filter(|path| *path == "/rtc").count() >= 3,
        "join and resumes over /rtc: {seen:?}"
    );
    session.disconnect().unwrap();
}

#[test]
fn an_acknowledged_tool_call_is_answered_across_a_full_reconnect() {
    init_log();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    serve_state(&runtime, Duration::ZERO);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let (started_tx, started_rx) = std::sync::mpsc::channel::<String>();
    let started_tx = std::sync::Mutex::new(started_tx);
    runtime.handle("runtime.tools_call", move |call| {
        let request: serde_json::Value = serde_json::from_str(&call.payload).unwrap();
        let id = request["options"]["action_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let _ = started_tx.lock().unwrap().send(id.clone());
        let _ = release_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
        let meta = json!({"action_id": id, "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1});
        Ok(json!({"status": "done", "result": {"ok": true}, "meta": meta}).to_string())
    });
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.state().robot_status().unwrap();

    let pending = session
        .start_invoke("slow", json!({}), Some(Duration::from_secs(30)))
        .unwrap();
    let id = started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(id, pending.action_id());
    // The handler runs once the runtime has sent its acknowledgement; give that packet time
    // to reach us (an unacknowledged call fails as ConnectionLost instead, by design).
    std::thread::sleep(Duration::from_millis(500));
    // The runtime acknowledged the call; now our participant is replaced by a new one.
    assert!(session.simulate_scenario_for_test("node_failure"));
    assert!(
        !wait_reconnect(&session, 1, Duration::from_secs(15)).0,
        "a full reconnect"
    );
    release_tx.send(()).unwrap();
    let result = pending.wait().expect("the reply reaches the new participant");
    assert!(result.is_done(), "{result:?}");
    session.disconnect().unwrap();
}
