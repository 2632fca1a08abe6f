//! The link-cut harness itself (tests/live_common/netns.rs): the path works, each cut mode
//! cuts it the way it claims, restoring brings it back, and nothing outlives the topology.
//! Needs root and `ip netns`; runs only with `MENLO_NETNS=1` (otherwise each test says why
//! and passes), like the rest of the namespace measurements.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::live_common::netns::{Mode, Side, Topology, SIGNAL_PORT};

fn enabled() -> bool {
    if std::env::var("MENLO_NETNS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set MENLO_NETNS=1 (root, iproute2) to run the network-namespace tests");
    false
}

/// Opens a TCP connection from the client namespace to the server's signal port; returns
/// whether it connected within 2 s, and how long the attempt took.
fn client_can_connect(topology: &Topology) -> (bool, Duration) {
    let script = format!("exec 3<>/dev/tcp/{}/{SIGNAL_PORT}", topology.server_addr());
    let started = Instant::now();
    let status = topology
        .command(Side::Client, "timeout")
        .args(["2", "bash", "-c", &script])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run a probe in the client namespace");
    (status.success(), started.elapsed())
}

fn namespaces() -> String {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn cuts_drop_the_path_and_restores_bring_it_back() {
    if !enabled() {
        return;
    }
    let topology = Topology::create().expect("create the topology");
    let server = topology
        .start_livekit()
        .expect("livekit-server in the server namespace");
    assert!(server.url.contains(&topology.server_addr().to_string()));
    assert!(client_can_connect(&topology).0, "the path works before any cut");

    topology.break_link(Mode::Blackhole).unwrap();
    let (connected, took) = client_can_connect(&topology);
    assert!(!connected, "a blackholed path carries nothing");
    assert!(
        took >= Duration::from_millis(1500),
        "blackhole drops are silent (no error), took {took:?}"
    );
    topology.restore_link(Mode::Blackhole).unwrap();
    assert!(
        client_can_connect(&topology).0,
        "the path is back after the blackhole"
    );

    topology.break_link(Mode::InterfaceDown).unwrap();
    let (connected, took) = client_can_connect(&topology);
    assert!(!connected, "no path with the interface down");
    assert!(
        took < Duration::from_millis(1500),
        "a down interface fails sends at once, took {took:?}"
    );
    topology.restore_link(Mode::InterfaceDown).unwrap();
    assert!(
        client_can_connect(&topology).0,
        "the path is back after the interface came up"
    );
}

#[test]
fn drop_removes_namespaces_and_processes_even_on_panic() {
    if !enabled() {
        return;
    }
    let names = std::thread::spawn(|| {
        let topology = Topology::create().expect("create the topology");
        let names: Vec<String> = [Side::Client, Side::Router, Side::Server]
            .map(|s| topology.name(s))
            .to_vec();
        let listed = namespaces();
        assert!(names.iter().all(|n| listed.contains(n.as_str())));
        let sleeper = topology
            .command(Side::Server, "sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = sleeper.id();
        std::mem::forget(sleeper); // leaked on purpose: the topology must still kill it
        std::panic::panic_any((names, pid));
    })
    .join()
    .expect_err("the thread panicked")
    .downcast::<(Vec<String>, u32)>()
    .expect("the panic carries the namespace names and the leaked pid");
    let (names, pid) = *names;
    let listed = namespaces();
    for name in names.iter() {
        assert!(
            !listed.split_whitespace().any(|n| n == name),
            "{name} outlived its topology"
        );
    }
    // Killed: gone, or a zombie until this process reaps it (its handle was leaked).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    assert!(
        matches!(state, None | Some(Some('Z'))),
        "the leaked process still runs: {stat}"
    );
}
