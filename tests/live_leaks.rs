//! Connect/disconnect cycles leak no threads and no sockets. Its own test binary, so that no
//! other test creates or ends threads while this one counts them.
#![cfg(all(feature = "livekit", feature = "dev"))]

#[path = "live_common/mod.rs"]
mod live_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use live_common::{fd_count, thread_count, Platform};
use menlo_robot_sdk::{connect, ConnectCallbacks, ConnectOptions, RuntimeHost};
use serde_json::json;

/// Threads (and file descriptors) allowed above the baseline: tokio's blocking pool may keep
/// an idle handler thread or two alive for a while. A leak of one per cycle is 100.
const SLACK: usize = 4;

fn serve(host: &RuntimeHost, calls: Arc<AtomicUsize>) {
    host.handle("runtime.tools_list", |_| {
        Ok(json!([{"name":"go_to","description":"d","input_schema":{"type":"object"}}]).to_string())
    });
    host.handle("runtime.tools_call", move |call| {
        calls.fetch_add(1, Ordering::SeqCst);
        let request: serde_json::Value = serde_json::from_str(&call.payload).unwrap();
        let id = request["options"]["action_id"].as_str().unwrap();
        Ok(json!({"status":"done","meta":{"action_id":id,"started_at_ms":1,"finished_at_ms":2,"duration_ms":1}}).to_string())
    });
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
}

/// Waits (up to 10 s) for the thread and fd counts to come back near the baseline.
fn settle(threads_before: usize, fds_before: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (threads, fds) = (thread_count(), fd_count());
        if threads <= threads_before + SLACK && fds <= fds_before + SLACK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: threads {threads_before} -> {threads}, fds {fds_before} -> {fds}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tests of this binary count the process's threads: one at a time.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn connect_disconnect_cycles_and_drops_leak_nothing() {
    let _alone = alone();
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = Arc::new(AtomicUsize::new(0));
    serve(&runtime, calls.clone());

    // Warm up: the private runtime, the handler pool, the HTTP connection pool.
    for _ in 0..3 {
        let session = connect(&p.client, &p.robot_id, options()).unwrap();
        session.invoke("go_to", json!({}), None).unwrap();
        session.disconnect().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let threads_before = thread_count();
    let fds_before = fd_count();
    assert!(threads_before > 1, "cannot count threads");

    let started = Instant::now();
    for i in 0..100 {
        let session = connect(&p.client, &p.robot_id, options()).unwrap();
        if i % 10 == 0 {
            assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
        }
        session.disconnect().unwrap();
    }
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None);
    settle(threads_before, fds_before, "100 connect/disconnect cycles");

    // Dropping a session without disconnecting leaves the room and stops its threads too
    // (the platform session stays, as documented).
    for i in 0..20 {
        let session = connect(&p.client, &p.robot_id, options()).unwrap();
        if i % 5 == 0 {
            assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
        }
        drop(session);
    }
    settle(threads_before, fds_before, "20 dropped sessions");
    // The runtime saw the SDK participants leave.
    live_common::wait_until(Duration::from_secs(10), "the SDK participants to leave", || {
        runtime.participants().is_empty().then_some(())
    });
    assert_eq!(calls.load(Ordering::SeqCst), 3 + 10 + 4);
    eprintln!("120 cycles in {:?}", started.elapsed());

    // SDK threads do not grow with the number of live sessions, callbacks included: calls
    // run on the executor and callbacks on one shared thread.
    let joins = Arc::new(AtomicUsize::new(0));
    let with_callbacks = || {
        let joins = Arc::clone(&joins);
        options().callbacks(ConnectCallbacks::new().on_participant_joined(move |_| {
            joins.fetch_add(1, Ordering::SeqCst);
        }))
    };
    let first = connect(&p.client, &p.robot_id, with_callbacks()).unwrap();
    assert!(first.invoke("go_to", json!({}), None).unwrap().is_done());
    std::thread::sleep(Duration::from_millis(300));
    let threads_with_one = thread_count();
    let mut robots = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..8 {
        let robot_id = p.create_robot();
        let runtime = p.runtime_in(&robot_id, &format!("simplesim:{robot_id}"), false, &[]);
        serve(&runtime, Arc::new(AtomicUsize::new(0)));
        let session = connect(&p.client, &robot_id, with_callbacks()).unwrap();
        assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
        robots.push(runtime);
        sessions.push(session);
    }
    live_common::wait_until(Duration::from_secs(10), "the join callbacks", || {
        (joins.load(Ordering::SeqCst) >= 9).then_some(())
    });
    let threads_with_nine = thread_count();
    assert!(
        threads_with_nine <= threads_with_one + SLACK,
        "threads grew with sessions: 1 session {threads_with_one}, 9 sessions {threads_with_nine}"
    );
    for session in sessions.iter().chain([&first]) {
        session.disconnect().unwrap();
    }
}

/// 100 embedded platforms started and stopped (every tenth with a robot driven in its room
/// when it stops): threads and file descriptors come back to where they were.
#[test]
fn platform_start_stop_cycles_leave_threads_and_descriptors_flat() {
    use menlo_robot_sdk::dev::Platform as DevPlatform;
    use menlo_robot_sdk::NewRobot;

    let _alone = alone();
    let drive_one = |platform: &DevPlatform| {
        let client = platform.client();
        let robot_id = client
            .robots()
            .create(&NewRobot::new("cycle", "asimov-v0"))
            .unwrap()
            .robot
            .id;
        let options = ConnectOptions::new()
            .worker_names(["sim-worker"])
            .wait_for_ready(true);
        let session = connect(client, &robot_id, options).unwrap();
        let reply = session.state().robot_status().unwrap();
        assert_eq!(reply.robot.entity_id, "robot_1");
        session
    };
    // Warm up: the executor, the handler pool, lazily initialised statics.
    for _ in 0..2 {
        let platform = DevPlatform::start().unwrap();
        drop(drive_one(&platform));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (threads_before, fds_before) = (thread_count(), fd_count());
    let started = Instant::now();
    for i in 0..100 {
        let platform = DevPlatform::start().unwrap();
        if i % 10 == 0 {
            let session = drive_one(&platform);
            let skills = session.discover_skills().unwrap();
            assert!(skills.iter().any(|s| s.name == "go_to"));
            drop(platform); // the robot, its room and the servers go while the session is up
            drop(session);
        }
    }
    settle(threads_before, fds_before, "100 platform start/stop cycles");
    eprintln!("100 platform cycles in {:?}", started.elapsed());
}
