//! The live Session against a real livekit-server, with a Rust runtime peer (RuntimeHost).
//!
//! Every test starts its own livekit-server on free loopback ports and its own control-plane
//! emulator, so the tests run in parallel. Runtime handlers that block wait on channels the
//! test drops at its end, so no handler outlives its test by more than an instant.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::live_common::{fake_jpeg, free_tcp_port, robot_status, wait_until, Backend, Platform};
use crossbeam_channel as cb;
use menlo_robot_sdk::dev::Fault;
use menlo_robot_sdk::ActionPhase;
use menlo_robot_sdk::{
    connect, ActionStatus, CaptureOptions, Client, ConnectCallbacks, ConnectOptions, Error, OutgoingStream,
    ParticipantKind, RpcError, RpcErrorCode, RuntimeCall, RuntimeErrorCode, RuntimeHost, Session,
    SessionEvent, StateReply,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Runtime-side helpers
// ---------------------------------------------------------------------------------------------

fn meta(action_id: &str) -> Value {
    json!({"action_id": action_id, "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1})
}

fn done_result(action_id: &str) -> String {
    json!({"status":"done","result":{"ok":true},"meta":meta(action_id)}).to_string()
}

fn cancelled_result(action_id: &str) -> String {
    json!({
        "status": "failed",
        "error": {"code": "CANCELLED", "message": "cancelled by the caller"},
        "meta": meta(action_id),
    })
    .to_string()
}

fn payload(call: &RuntimeCall) -> Value {
    serde_json::from_str(&call.payload).expect("the SDK sends JSON payloads")
}

fn action_id(call: &RuntimeCall) -> String {
    payload(call)["options"]["action_id"]
        .as_str()
        .expect("tools_call carries options.action_id")
        .to_owned()
}

fn tools_list_reply() -> String {
    json!([{"name":"go_to","description":"go somewhere","input_schema":{"type":"object"}}]).to_string()
}

/// A runtime answering the basic methods; counts tool calls.
fn serve_basics(host: &RuntimeHost, calls: Arc<AtomicUsize>) {
    host.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    host.handle("runtime.tools_call", move |call| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(done_result(&action_id(call)))
    });
    host.handle("runtime.state", |_| Ok(robot_status()));
}

/// A participant that answers everything (so it *could* be taken for the runtime) but counts
/// every call it gets: the tests assert that the SDK never calls it.
fn serve_counting_decoy(host: &RuntimeHost) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    for method in ["runtime.tools_list", "runtime.tools_call", "runtime.state"] {
        let calls = Arc::clone(&calls);
        host.handle(method, move |call| {
            calls.fetch_add(1, Ordering::SeqCst);
            match call.method.as_str() {
                "runtime.tools_list" => Ok(tools_list_reply()),
                "runtime.tools_call" => Ok(done_result(&action_id(call))),
                _ => Ok(robot_status()),
            }
        });
    }
    calls
}

fn simplesim() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
}

/// The SimpleSim runtime of the platform's robot, with the basic handlers.
fn simplesim_runtime(p: &Platform) -> (RuntimeHost, Arc<AtomicUsize>) {
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let calls = Arc::new(AtomicUsize::new(0));
    serve_basics(&runtime, calls.clone());
    (runtime, calls)
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

fn is_invalid(err: &Error, field: &str) -> bool {
    matches!(err, Error::InvalidInput { field: f, .. } if f == field)
}

fn runtime_code(err: &Error) -> Option<&RuntimeErrorCode> {
    match err {
        Error::Runtime { code, .. } => Some(code),
        _ => None,
    }
}

fn rpc_code(err: &Error) -> Option<RpcErrorCode> {
    match err {
        Error::Rpc(rpc) => Some(rpc.code),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Basic flow
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_discover_invoke_read_and_disconnect() {
    let p = Platform::start();
    let (_runtime, calls) = simplesim_runtime(&p);

    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let skills = session.discover_skills().unwrap();
    assert_eq!(skills[0].name, "go_to");
    let result = session
        .invoke(
            "go_to",
            json!({"target":{"kind":"entity","entity_id":"pad_B"}}),
            None,
        )
        .unwrap();
    assert_eq!(result.status, ActionStatus::Done);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    match session.state().get("robot_status").unwrap() {
        StateReply::RobotStatus(state) => assert_eq!(state.robot.entity_id, "robot_1"),
        other => panic!("typed robot status expected, got {other:?}"),
    }
    session.disconnect().unwrap();
    session.disconnect().unwrap();
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "session deleted"
    );

    let events: Vec<SessionEvent> = session.events().try_iter().collect();
    assert!(
        matches!(events.first(), Some(SessionEvent::Connected { .. })),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::ActionResult(r) if r.action_id == result.meta.action_id)));
    let disconnects = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Disconnected { .. }))
        .count();
    assert_eq!(disconnects, 1, "{events:?}");
    let err = session.state().get("robot_status").unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
}

#[test]
fn live_types_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Session>();
    send_sync::<RuntimeHost>();
    send_sync::<ConnectOptions>();
    send::<menlo_robot_sdk::PendingAction>();
    send::<SessionEvent>();
}

#[test]
fn joins_succeed_whatever_order_the_server_trickles_candidates_in() {
    // LiveKit trickles one candidate per local address (e.g. `fd00::2` and `127.0.0.1`) in
    // no fixed order; a join must not fail when the unusable one comes first (it did, for
    // about one join in seven, before the engine ignored other-family candidates).
    let p = Platform::start();
    for i in 0..30 {
        let token = p.livekit.token(&p.robot_id, &format!("joiner-{i}"), false, &[]);
        let host = RuntimeHost::connect(&p.livekit.url, &token, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("join {i} failed: {e}"));
        assert!(host.is_connected());
        host.disconnect();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Readiness
// ---------------------------------------------------------------------------------------------

#[test]
fn readiness_counts_only_the_dispatched_agent_name() {
    let p = Platform::start();
    let session = connect(
        &p.client,
        &p.robot_id,
        ConnectOptions::new().worker_names(["sim-worker"]),
    )
    .unwrap();
    assert!(session
        .metadata()
        .required_participants
        .contains_key("sim-worker"));

    let started = Instant::now();
    let err = session.wait_until_ready(Duration::from_millis(300)).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains("sim-worker (0/1)"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited the timeout"
    );

    // Neither a human viewer nor an agent dispatched under another name fills the slot.
    let _viewer = p.runtime("viewer-1", false, &[]);
    let _other = p.runtime("agent-OTHER1", true, &[("lk.agent.name", "nav-worker")]);
    wait_until(Duration::from_secs(10), "the viewer and the other agent", || {
        (session.participants().len() == 2).then_some(())
    });
    let err = session.wait_until_ready(Duration::from_millis(300)).unwrap_err();
    assert!(err.to_string().contains("sim-worker (0/1)"), "{err}");

    // A dispatched agent: opaque identity, kind agent, lk.agent.name = the slot.
    let _agent = p.runtime("agent-AJ_k3Xq9", true, &[("lk.agent.name", "sim-worker")]);
    session.wait_until_ready(Duration::from_secs(10)).unwrap();
    session.wait_until_ready(Duration::from_millis(1)).unwrap();

    let agent = session
        .participants()
        .into_iter()
        .find(|p| p.identity == "agent-AJ_k3Xq9")
        .expect("the agent is listed");
    assert_eq!(agent.kind, ParticipantKind::Agent);
    assert_eq!(agent.agent_name(), Some("sim-worker"));

    // Let the pump see the join too, then count: SessionReady exactly once.
    std::thread::sleep(Duration::from_millis(300));
    let events: Vec<SessionEvent> = session.events().try_iter().collect();
    let ready = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::SessionReady))
        .count();
    assert_eq!(ready, 1, "{events:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::ParticipantJoined(p) if p.identity == "agent-AJ_k3Xq9")));
    session.disconnect().unwrap();
}

#[test]
fn connect_can_wait_for_readiness() {
    let p = Platform::start();
    let options = ConnectOptions::new()
        .worker_names(["sim-worker"])
        .wait_for_ready(true)
        .session_ready_timeout(Duration::from_secs(15));
    let started = Instant::now();
    let (session, _agent) = std::thread::scope(|s| {
        let joiner = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            p.runtime("agent-AJ_delayed", true, &[("lk.agent.name", "sim-worker")])
        });
        let session = connect(&p.client, &p.robot_id, options).unwrap();
        (session, joiner.join().unwrap())
    });
    assert!(
        started.elapsed() >= Duration::from_millis(650),
        "connect returned before the agent joined"
    );
    assert!(
        session
            .participants()
            .iter()
            .any(|p| p.identity == "agent-AJ_delayed"),
        "connect returned ready without the agent"
    );
    wait_event(&session, Duration::from_secs(5), |e| {
        matches!(e, SessionEvent::SessionReady)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !session
            .events()
            .try_iter()
            .any(|e| matches!(e, SessionEvent::SessionReady)),
        "SessionReady twice"
    );
    session.disconnect().unwrap();
}

#[test]
fn a_participant_fills_only_its_longest_matching_slot() {
    let p = Platform::start();
    let session = connect(
        &p.client,
        &p.robot_id,
        ConnectOptions::new().worker_names(["sim", "sim-worker"]),
    )
    .unwrap();
    let _worker = p.runtime("sim-worker-1", false, &[]);
    wait_until(Duration::from_secs(10), "the worker", || {
        (!session.participants().is_empty()).then_some(())
    });
    // `sim-worker-1` matches both slots but counts toward `sim-worker` only.
    let err = session.wait_until_ready(Duration::from_millis(300)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sim (0/1)"), "{text}");
    assert!(!text.contains("sim-worker ("), "{text}");
    let _sim = p.runtime("sim-2", false, &[]);
    session.wait_until_ready(Duration::from_secs(10)).unwrap();
    session.disconnect().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. Finding the runtime
// ---------------------------------------------------------------------------------------------

#[test]
fn resolves_the_prefixed_identity_before_any_agent_or_viewer() {
    let p = Platform::start();
    let (runtime, calls) = simplesim_runtime(&p);
    let lists = Arc::new(AtomicUsize::new(0));
    {
        let lists = Arc::clone(&lists);
        runtime.handle("runtime.tools_list", move |_| {
            lists.fetch_add(1, Ordering::SeqCst);
            Ok(tools_list_reply())
        });
    }
    let agent = p.runtime("agent-AJ_zzz", true, &[]);
    let agent_calls = serve_counting_decoy(&agent);
    let viewer = p.runtime("viewer-1", false, &[]);
    let viewer_calls = serve_counting_decoy(&viewer);

    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    wait_until(Duration::from_secs(10), "three participants", || {
        (session.participants().len() == 3).then_some(())
    });
    for _ in 0..3 {
        assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
    }
    assert!(matches!(
        session.state().get("robot_status").unwrap(),
        StateReply::RobotStatus(_)
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // One probe, then the runtime is cached for the session.
    assert_eq!(lists.load(Ordering::SeqCst), 1, "the runtime was probed again");
    assert_eq!(agent_calls.load(Ordering::SeqCst), 0, "the agent was called");
    assert_eq!(viewer_calls.load(Ordering::SeqCst), 0, "the viewer was called");
    session.disconnect().unwrap();
}

#[test]
fn a_prefix_is_not_a_bare_string_prefix() {
    let p = Platform::start();
    // `simulated-human` answers everything, but `sim` must not match it.
    let human = p.runtime("simulated-human", false, &[]);
    let human_calls = serve_counting_decoy(&human);
    let options = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("sim")
        .session_ready_timeout(Duration::from_millis(1500));
    let session = connect(&p.client, &p.robot_id, options).unwrap();
    wait_until(Duration::from_secs(10), "the human", || {
        (!session.participants().is_empty()).then_some(())
    });

    let started = Instant::now();
    let err = session.discover_skills().unwrap_err();
    assert_eq!(
        runtime_code(&err),
        Some(&RuntimeErrorCode::RuntimeNotFound),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("sim") && text.contains("simulated-human"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        human_calls.load(Ordering::SeqCst),
        0,
        "simulated-human was probed"
    );

    // `sim:<robot>` does match; resolution starts over on the next call.
    let runtime = p.runtime(&format!("sim:{}", p.robot_id), false, &[]);
    let calls = Arc::new(AtomicUsize::new(0));
    serve_basics(&runtime, calls.clone());
    wait_until(Duration::from_secs(10), "the runtime", || {
        (session.participants().len() == 2).then_some(())
    });
    assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        human_calls.load(Ordering::SeqCst),
        0,
        "simulated-human was called"
    );
    session.disconnect().unwrap();
}

#[test]
fn resolves_by_slot_name() {
    let p = Platform::start();
    let runtime = p.runtime("sim-worker-1", false, &[]);
    let calls = Arc::new(AtomicUsize::new(0));
    serve_basics(&runtime, calls.clone());
    let viewer = p.runtime("viewer-1", false, &[]);
    let viewer_calls = serve_counting_decoy(&viewer);

    let session = connect(
        &p.client,
        &p.robot_id,
        ConnectOptions::new()
            .worker_names(["sim-worker"])
            .wait_for_ready(true)
            .session_ready_timeout(Duration::from_secs(10)),
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "both participants", || {
        (session.participants().len() == 2).then_some(())
    });
    assert_eq!(session.discover_skills().unwrap()[0].name, "go_to");
    assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(viewer_calls.load(Ordering::SeqCst), 0, "the viewer was called");
    session.disconnect().unwrap();
}

#[test]
fn falls_back_to_an_agent_when_no_hinted_participant_answers() {
    let p = Platform::start();
    // Matches the slot hint but is not the runtime: its probe gets no usable answer.
    let hinted = p.runtime("sim-worker-stale", false, &[]);
    let hinted_probes = Arc::new(AtomicUsize::new(0));
    {
        let probes = Arc::clone(&hinted_probes);
        hinted.handle("runtime.tools_list", move |_| {
            probes.fetch_add(1, Ordering::SeqCst);
            Err(RpcError::built_in(RpcErrorCode::UnsupportedMethod))
        });
    }
    let hinted_calls = Arc::new(AtomicUsize::new(0));
    {
        let calls = Arc::clone(&hinted_calls);
        hinted.handle("runtime.tools_call", move |call| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(done_result(&action_id(call)))
        });
    }
    // An agent without any hint: the fall-back.
    let agent = p.runtime("agent-AJ_fallback", true, &[]);
    let agent_calls = Arc::new(AtomicUsize::new(0));
    serve_basics(&agent, agent_calls.clone());
    // A human viewer that is not hinted: never probed.
    let viewer = p.runtime("human-viewer", false, &[]);
    let viewer_calls = serve_counting_decoy(&viewer);

    let session = connect(
        &p.client,
        &p.robot_id,
        ConnectOptions::new()
            .worker_names(["sim-worker"])
            .session_ready_timeout(Duration::from_secs(10)),
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "three participants", || {
        (session.participants().len() == 3).then_some(())
    });
    assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
    assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());
    assert_eq!(agent_calls.load(Ordering::SeqCst), 2);
    assert!(
        hinted_probes.load(Ordering::SeqCst) >= 1,
        "the hinted participant is probed first"
    );
    assert_eq!(hinted_calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        viewer_calls.load(Ordering::SeqCst),
        0,
        "a human viewer was probed"
    );
    session.disconnect().unwrap();
}

#[test]
fn a_call_waits_for_a_runtime_that_joins_late() {
    let p = Platform::start();
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let started = Instant::now();
    let (skills, _runtime) = std::thread::scope(|s| {
        let joiner = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(800));
            simplesim_runtime(&p)
        });
        let skills = session.discover_skills();
        (skills, joiner.join().unwrap())
    });
    assert_eq!(skills.unwrap()[0].name, "go_to");
    assert!(started.elapsed() >= Duration::from_millis(750));
    assert!(started.elapsed() < Duration::from_secs(15));
    session.disconnect().unwrap();
}

/// A host whose token grants `canUpdateOwnMetadata` sets `menlo.runtime_host` on itself
/// once it answers `runtime.tools_list` (so livekit-server announces it at once rather than
/// in its next 3 s batch); a host without the grant joins and serves all the same, without.
#[test]
fn a_runtime_host_announces_itself_when_its_token_allows() {
    let p = Platform::start();
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let attribute_of = |identity: &str| {
        let participant = session
            .participants()
            .into_iter()
            .find(|participant| participant.identity == identity)?;
        Some(participant.attributes.get("menlo.runtime_host").cloned())
    };

    let token = p.livekit.token_updating_own_metadata(&p.robot_id, "announced");
    let announced = RuntimeHost::connect(&p.livekit.url, &token, Duration::from_secs(15)).unwrap();
    announced.handle("runtime.state", |_| Ok(robot_status()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        attribute_of("announced").flatten(),
        None,
        "not before it answers tools_list"
    );
    announced.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    let seen = wait_until(Duration::from_secs(10), "the announced host", || {
        attribute_of("announced").flatten()
    });
    assert_eq!(seen, "ready");

    let quiet = p.runtime("quiet", false, &[]);
    quiet.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    let seen = wait_until(Duration::from_secs(10), "the quiet host", || {
        attribute_of("quiet")
    });
    assert_eq!(seen, None, "no grant, no attribute");
    assert!(quiet.is_connected() && announced.is_connected());
    session.disconnect().unwrap();
}

#[test]
fn without_hint_or_runtime_slot_runtime_calls_fail_at_once() {
    let p = Platform::start();
    let agent = p.runtime("agent-AJ_any", true, &[]);
    let agent_calls = serve_counting_decoy(&agent);
    let session = connect(
        &p.client,
        &p.robot_id,
        ConnectOptions::new().worker_names(Vec::<String>::new()),
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the agent", || {
        (!session.participants().is_empty()).then_some(())
    });
    let started = Instant::now();
    let err = session.discover_skills().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "not at once");
    assert_eq!(
        runtime_code(&err),
        Some(&RuntimeErrorCode::RuntimeNotFound),
        "{err}"
    );
    assert!(err.to_string().contains("prefix"), "{err}");
    let err = session.invoke("go_to", json!({}), None).unwrap_err();
    assert_eq!(
        runtime_code(&err),
        Some(&RuntimeErrorCode::RuntimeNotFound),
        "{err}"
    );
    assert_eq!(agent_calls.load(Ordering::SeqCst), 0);
    session.disconnect().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 3. Guard envelopes, 4. unknown methods, 5. payload cap
// ---------------------------------------------------------------------------------------------

#[test]
fn guard_envelopes_become_failed_results_or_runtime_errors() {
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let guard =
        json!({"status":"failed","error":{"code":"NOT_READY","message":"the scene is loading"}}).to_string();
    let seen_ids = Arc::new(Mutex::new(Vec::new()));
    runtime.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    {
        let guard = guard.clone();
        let seen_ids = Arc::clone(&seen_ids);
        runtime.handle("runtime.tools_call", move |call| {
            seen_ids.lock().unwrap().push(action_id(call));
            Ok(guard.clone())
        });
    }
    {
        let guard = guard.clone();
        runtime.handle("runtime.state", move |_| Ok(guard.clone()));
    }
    runtime.handle("runtime.scene_state", |_| {
        Ok(json!({"status":"failed","error":{}}).to_string())
    });

    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let pending = session.start_invoke("go_to", json!({}), None).unwrap();
    let id = pending.action_id().to_owned();
    assert!(id.starts_with("act_") && id.len() == 16, "{id}");
    let result = pending.wait().unwrap();
    assert_eq!(result.status, ActionStatus::Failed);
    assert_eq!(result.meta.action_id, id);
    assert_eq!(result.meta.started_at_ms, 0);
    let error = result.error.as_ref().expect("the guard's error");
    assert_eq!(error.code, RuntimeErrorCode::NotReady);
    assert_eq!(error.message, "the scene is loading");
    assert_eq!(seen_ids.lock().unwrap().as_slice(), std::slice::from_ref(&id));
    // The same through invoke.
    let result = session.invoke("go_to", json!({}), None).unwrap();
    assert_eq!(result.status, ActionStatus::Failed);
    assert_eq!(seen_ids.lock().unwrap()[1], result.meta.action_id);

    let err = session.state().get("robot_status").unwrap_err();
    match &err {
        Error::Runtime { code, message, .. } => {
            assert_eq!(*code, RuntimeErrorCode::NotReady);
            assert_eq!(message, "the scene is loading");
        }
        other => panic!("runtime error expected, got {other:?}"),
    }
    let err = session.state().robot_status().unwrap_err();
    assert_eq!(runtime_code(&err), Some(&RuntimeErrorCode::NotReady), "{err}");
    // Missing code and message take the defaults.
    let err = session.state().scene_state().unwrap_err();
    match &err {
        Error::Runtime { code, message, .. } => {
            assert_eq!(*code, RuntimeErrorCode::RuntimeFailed);
            assert_eq!(message, "runtime call failed");
        }
        other => panic!("runtime error expected, got {other:?}"),
    }
    session.disconnect().unwrap();
}

#[test]
fn unknown_methods_mean_no_capabilities_or_an_unsupported_method_error() {
    let p = Platform::start();
    let (runtime, _) = simplesim_runtime(&p);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();

    assert_eq!(session.get_capabilities().unwrap(), None);
    let err = session.state().get("battery").unwrap_err();
    assert_eq!(rpc_code(&err), Some(RpcErrorCode::UnsupportedMethod), "{err}");

    // Once the runtime answers them, the same calls return its replies.
    runtime.handle("runtime.capabilities", |_| {
        Ok(json!({"cameras":["pov","topdown"]}).to_string())
    });
    runtime.handle("runtime.battery", |_| Ok(json!({"percent": 87}).to_string()));
    // Registration is asynchronous on the runtime side: retry briefly.
    let caps = wait_until(Duration::from_secs(5), "the capabilities handler", || {
        session.get_capabilities().unwrap()
    });
    assert_eq!(caps, json!({"cameras":["pov","topdown"]}));
    match session.state().get("battery").unwrap() {
        StateReply::Raw(value) => assert_eq!(value, json!({"percent": 87})),
        other => panic!("raw reply expected, got {other:?}"),
    }
    // A METHOD_NOT_FOUND guard also means "no descriptor".
    runtime.handle("runtime.capabilities", |_| {
        Ok(json!({"status":"failed","error":{"code":"METHOD_NOT_FOUND","message":"no"}}).to_string())
    });
    wait_until(Duration::from_secs(5), "the guard", || {
        session.get_capabilities().unwrap().is_none().then_some(())
    });
    session.disconnect().unwrap();
}

#[test]
fn rpc_payloads_over_15_kib_are_refused_before_sending() {
    let p = Platform::start();
    let (_runtime, calls) = simplesim_runtime(&p);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();

    let err = session
        .invoke("go_to", json!({"blob": "x".repeat(15_400)}), None)
        .unwrap_err();
    assert!(is_invalid(&err, "payload"), "{err:?}");
    assert!(err.to_string().contains("15360"), "{err}");
    let err = session
        .start_invoke("go_to", json!({"blob": "x".repeat(16_000)}), None)
        .unwrap_err();
    assert!(is_invalid(&err, "payload"), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler was called");

    // Just under the cap goes through.
    let result = session
        .invoke("go_to", json!({"blob": "x".repeat(15_200)}), None)
        .unwrap();
    assert!(result.is_done());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    session.disconnect().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. Camera capture
// ---------------------------------------------------------------------------------------------

/// How the capture handler answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CaptureMode {
    /// Stream with attribute `request_id`, ack `byte_stream`.
    Stream,
    /// Stream named after the request id without the attribute, ack `byte_stream`.
    StreamByName,
    /// JPEG inline in the ack.
    Inline,
    /// A failed ack without an error code.
    Fail,
}

struct CameraRuntime {
    host: Arc<RuntimeHost>,
    mode: Arc<Mutex<CaptureMode>>,
    requests: Arc<Mutex<Vec<Value>>>,
    calls: Arc<AtomicUsize>,
}

fn camera_runtime(p: &Platform, frame: Vec<u8>, small: Vec<u8>) -> CameraRuntime {
    let host = Arc::new(p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]));
    let calls = Arc::new(AtomicUsize::new(0));
    {
        let calls = Arc::clone(&calls);
        host.handle("runtime.tools_list", move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(tools_list_reply())
        });
    }
    let mode = Arc::new(Mutex::new(CaptureMode::Stream));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let weak = Arc::downgrade(&host);
    let (mode2, requests2, calls2) = (Arc::clone(&mode), Arc::clone(&requests), Arc::clone(&calls));
    host.handle("runtime.cameras_capture", move |call| {
        calls2.fetch_add(1, Ordering::SeqCst);
        let request = payload(call);
        requests2.lock().unwrap().push(request.clone());
        let id = request["stream"]["id"]
            .as_str()
            .ok_or_else(|| RpcError::application("no stream.id"))?
            .to_owned();
        let mode = *mode2.lock().unwrap();
        let ack_meta = json!({"action_id": format!("cap-{id}"), "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1});
        match mode {
            CaptureMode::Stream | CaptureMode::StreamByName => {
                let host = weak.upgrade().ok_or_else(|| RpcError::application("gone"))?;
                let mut attributes = HashMap::new();
                let name = if mode == CaptureMode::Stream {
                    attributes.insert("request_id".to_owned(), id.clone());
                    "pov.jpg".to_owned()
                } else {
                    id.clone()
                };
                host.send_bytes(
                    frame.clone(),
                    attributes.into_iter().fold(
                        OutgoingStream::new(request["stream"]["topic"].as_str().unwrap_or_default())
                            .name(name)
                            .mime_type("image/jpeg")
                            .destination(call.caller_identity.clone()),
                        |stream, (key, value)| stream.attribute(key, value),
                    ),
                )
                .map_err(|e| RpcError::application(e.to_string()))?;
                Ok(json!({"status":"done","result":{"payload":{"kind":"byte_stream"}},"meta":ack_meta}).to_string())
            }
            CaptureMode::Inline => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(&small);
                Ok(json!({"status":"done","result":{"payload":{"kind":"inline_base64","base64":b64}},"meta":ack_meta}).to_string())
            }
            CaptureMode::Fail => Ok(json!({"status":"failed","error":{"message":"the camera is off"},"meta":ack_meta}).to_string()),
        }
    });
    CameraRuntime {
        host,
        mode,
        requests,
        calls,
    }
}

#[test]
fn get_vision_receives_a_full_frame_over_the_byte_stream() {
    let p = Platform::start();
    let frame = fake_jpeg(1280 * 720 / 4, 7);
    assert!(frame.len() >= 200_000);
    let camera = camera_runtime(&p, frame.clone(), Vec::new());
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();

    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert_eq!(jpeg.len(), frame.len());
    assert!(jpeg == frame, "the frame's bytes differ");
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);

    let request = camera.requests.lock().unwrap()[0].clone();
    assert_eq!(request["selector"], json!({"kind":"id","id":"pov"}));
    assert_eq!(request["options"]["width"], 1280);
    assert_eq!(request["options"]["height"], 720);
    assert_eq!(request["options"]["quality"], 0.7);
    assert_eq!(request["stream"]["topic"], "menlo.camera_capture");
    assert!(request["stream"]["id"].as_str().is_some_and(|id| !id.is_empty()));

    // The stream's name stands in for a missing `request_id` attribute.
    *camera.mode.lock().unwrap() = CaptureMode::StreamByName;
    let options = CaptureOptions::new().width(640).height(480).quality(0.5);
    let jpeg = session.get_vision("topdown", &options).unwrap();
    assert!(jpeg == frame, "the frame's bytes differ");
    let request = camera.requests.lock().unwrap()[1].clone();
    assert_eq!(request["selector"]["id"], "topdown");
    assert_eq!(request["options"]["width"], 640);
    assert_ne!(
        request["stream"]["id"],
        camera.requests.lock().unwrap()[0]["stream"]["id"],
        "each capture has its own request id"
    );
    session.disconnect().unwrap();
    drop(camera.host);
}

#[test]
fn get_vision_inline_fallback_failed_ack_and_invalid_options() {
    let p = Platform::start();
    let small = fake_jpeg(6_000, 3);
    let camera = camera_runtime(&p, Vec::new(), small.clone());
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();

    // Invalid options are refused before any RPC (not even the runtime probe).
    let err = session
        .get_vision("pov", &CaptureOptions::new().width(0))
        .unwrap_err();
    assert!(is_invalid(&err, "width"), "{err:?}");
    let err = session
        .get_vision("pov", &CaptureOptions::new().quality(1.5))
        .unwrap_err();
    assert!(is_invalid(&err, "quality"), "{err:?}");
    let err = session.get_vision("", &CaptureOptions::new()).unwrap_err();
    assert!(is_invalid(&err, "camera_id"), "{err:?}");
    assert_eq!(camera.calls.load(Ordering::SeqCst), 0, "an RPC was sent");

    *camera.mode.lock().unwrap() = CaptureMode::Inline;
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert!(jpeg == small, "the inline frame's bytes differ");

    *camera.mode.lock().unwrap() = CaptureMode::Fail;
    let started = Instant::now();
    let err = session.get_vision("pov", &CaptureOptions::new()).unwrap_err();
    match &err {
        Error::Runtime { code, message, .. } => {
            assert_eq!(*code, RuntimeErrorCode::CaptureFailed);
            assert!(message.contains("the camera is off"), "{message}");
        }
        other => panic!("runtime error expected, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a failed ack must not wait for the stream"
    );
    session.disconnect().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 7. Cancel
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_ends_a_long_action_as_cancelled() {
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    runtime.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    let (started_tx, started_rx) = cb::unbounded::<String>();
    let (cancel_tx, cancel_rx) = cb::unbounded::<String>();
    let active: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    {
        let active = Arc::clone(&active);
        runtime.handle("runtime.tools_call", move |call| {
            let id = action_id(call);
            *active.lock().unwrap() = Some(id.clone());
            let _ = started_tx.send(id.clone());
            // Runs until cancelled (bounded, so a broken test cannot hang a handler thread).
            match cancel_rx.recv_timeout(Duration::from_secs(25)) {
                Ok(_) => Ok(cancelled_result(&id)),
                Err(_) => Ok(done_result(&id)),
            }
        });
    }
    let cancel_requests = Arc::new(Mutex::new(Vec::new()));
    {
        let requests = Arc::clone(&cancel_requests);
        let active = Arc::clone(&active);
        runtime.handle("runtime.cancel", move |call| {
            let request = payload(call);
            requests.lock().unwrap().push(request.clone());
            let wanted = request["options"]["action_id"].as_str().unwrap_or_default().to_owned();
            let id = active.lock().unwrap().take();
            match id {
                Some(id) if wanted == "cancel-active" || wanted == id => {
                    let _ = cancel_tx.send(id.clone());
                    Ok(cancelled_result(&id))
                }
                _ => Ok(json!({"status":"failed","error":{"code":"NO_ACTIVE_ACTION","message":"nothing to cancel"}}).to_string()),
            }
        });
    }

    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let mut pending = session
        .start_invoke(
            "go_to",
            json!({"target":{"kind":"entity","entity_id":"pad_B"}}),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    let id = pending.action_id().to_owned();
    assert_eq!(started_rx.recv_timeout(Duration::from_secs(10)).unwrap(), id);
    assert!(pending.poll().is_none(), "ended before the cancel");

    let cancelled = session.cancel_action("cancel-active").unwrap();
    assert!(cancelled.is_cancelled());
    assert_eq!(cancelled.meta.action_id, id);
    assert_eq!(
        cancel_requests.lock().unwrap()[0],
        json!({"options":{"action_id":"cancel-active"}})
    );

    let result = wait_until(Duration::from_secs(10), "the pending action to end", || {
        pending.poll()
    })
    .unwrap();
    assert_eq!(result.status, ActionStatus::Failed);
    assert_eq!(result.error.as_ref().unwrap().code, RuntimeErrorCode::Cancelled);
    assert_eq!(result.meta.action_id, id);
    let event = wait_event(
        &session,
        Duration::from_secs(5),
        |e| matches!(e, SessionEvent::ActionResult(r) if r.action_id == id),
    );
    match event {
        SessionEvent::ActionResult(event) => assert_eq!(event.phase, ActionPhase::Cancelled),
        _ => unreachable!(),
    }
    // The owned result is handed out once.
    assert!(pending.poll().is_none());
    assert!(pending.is_finished());
    assert!(matches!(pending.wait(), Err(Error::InvalidInput { .. })));

    // PendingAction::cancel names its own action.
    let mut pending = session
        .start_invoke("go_to", json!({}), Some(Duration::from_secs(60)))
        .unwrap();
    let id = pending.action_id().to_owned();
    assert_eq!(started_rx.recv_timeout(Duration::from_secs(10)).unwrap(), id);
    let cancelled = pending.cancel().unwrap().wait().unwrap();
    assert_eq!(cancelled.meta.action_id, id);
    assert_eq!(
        cancel_requests.lock().unwrap()[1],
        json!({"options":{"action_id": id.clone()}})
    );
    let result = pending
        .wait_timeout(Duration::from_secs(10))
        .expect("the cancelled action to end")
        .unwrap();
    assert!(result.is_cancelled());
    assert_eq!(result.meta.action_id, id);

    // Nothing left to cancel: the runtime's guard envelope is a runtime error.
    let err = session.cancel_action("cancel-active").unwrap_err();
    assert_eq!(
        runtime_code(&err),
        Some(&RuntimeErrorCode::Other("NO_ACTIVE_ACTION".into())),
        "{err}"
    );
    session.disconnect().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 8. Runtime leaving, 9. server killed
// ---------------------------------------------------------------------------------------------

/// A runtime whose `slow` tool runs until `release` is dropped; `started` reports each call.
fn slow_runtime(host: &RuntimeHost, release: cb::Receiver<()>, started: cb::Sender<String>) {
    host.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    host.handle("runtime.tools_call", move |call| {
        let id = action_id(call);
        let _ = started.send(id.clone());
        if payload(call)["name"] == "slow" {
            let _ = release.recv_timeout(Duration::from_secs(25));
        }
        Ok(done_result(&id))
    });
}

#[test]
fn runtime_leaving_mid_invoke_fails_the_call_promptly() {
    let p = Platform::start();
    let identity = format!("simplesim:{}", p.robot_id);
    let runtime = p.runtime(&identity, false, &[]);
    let (release_tx, release_rx) = cb::bounded::<()>(0);
    let (started_tx, started_rx) = cb::unbounded();
    slow_runtime(&runtime, release_rx.clone(), started_tx.clone());
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.discover_skills().unwrap();

    let leaver = std::thread::spawn(move || {
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        runtime.disconnect();
        started_rx
    });
    let started = Instant::now();
    let err = session
        .invoke("slow", json!({}), Some(Duration::from_secs(60)))
        .unwrap_err();
    let elapsed = started.elapsed();
    let started_rx = leaver.join().unwrap();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(
        rpc_code(&err) == Some(RpcErrorCode::RecipientDisconnected),
        "{err:?}"
    );
    assert!(session.is_connected());
    wait_event(
        &session,
        Duration::from_secs(5),
        |e| matches!(e, SessionEvent::ParticipantLeft(p) if p.identity == identity),
    );

    // A runtime that comes back is found again.
    let runtime = p.runtime(&identity, false, &[]);
    slow_runtime(&runtime, release_rx, started_tx);
    let result = session.invoke("quick", json!({}), None).unwrap();
    assert!(result.is_done());
    assert_eq!(
        started_rx.recv_timeout(Duration::from_secs(1)).unwrap(),
        result.meta.action_id
    );
    drop(release_tx);
    session.disconnect().unwrap();
}

#[test]
fn a_failing_call_does_not_stall_a_concurrent_runtime_search() {
    // An in-flight invoke fails because the runtime left while another thread is already
    // searching for a new runtime: neither may wait for the other (the failing call's
    // completion runs on the engine, the search holds the resolver for seconds).
    let p = Platform::start();
    let identity = format!("simplesim:{}", p.robot_id);
    let runtime = p.runtime(&identity, false, &[]);
    let (release_tx, release_rx) = cb::bounded::<()>(0);
    let (started_tx, started_rx) = cb::unbounded();
    slow_runtime(&runtime, release_rx.clone(), started_tx.clone());
    let session = connect(
        &p.client,
        &p.robot_id,
        simplesim().session_ready_timeout(Duration::from_secs(20)),
    )
    .unwrap();
    session.discover_skills().unwrap();

    let started = Instant::now();
    let (invoke, search, _replacement) = std::thread::scope(|s| {
        let invoke = s.spawn(|| {
            let result = session.invoke("slow", json!({}), Some(Duration::from_secs(60)));
            (result, started.elapsed())
        });
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        runtime.disconnect();
        // As soon as the session saw the runtime go (the invoke fails ~0.5 s later), start
        // a call that has to search for a new runtime.
        wait_until(Duration::from_secs(10), "the runtime to leave", || {
            (!session.participants().iter().any(|p| p.identity == identity)).then_some(())
        });
        let search = s.spawn(|| {
            let result = session.discover_skills();
            (result, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(1000));
        let replacement = p.runtime(&identity, false, &[]);
        slow_runtime(&replacement, release_rx.clone(), started_tx.clone());
        (invoke.join().unwrap(), search.join().unwrap(), replacement)
    });
    let (invoke_result, invoke_elapsed) = invoke;
    let err = invoke_result.unwrap_err();
    assert!(
        rpc_code(&err) == Some(RpcErrorCode::RecipientDisconnected),
        "{err:?}"
    );
    assert!(
        invoke_elapsed < Duration::from_secs(8),
        "the invoke took {invoke_elapsed:?}"
    );
    let (search_result, search_elapsed) = search;
    assert_eq!(search_result.unwrap()[0].name, "go_to");
    assert!(
        search_elapsed < Duration::from_secs(12),
        "the search took {search_elapsed:?} (resolution timeout 20 s)"
    );
    drop(release_tx);
    session.disconnect().unwrap();
}

#[test]
fn a_reply_timeout_says_the_action_may_still_be_running() {
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let (release_tx, release_rx) = cb::bounded::<()>(0);
    let (started_tx, started_rx) = cb::unbounded();
    slow_runtime(&runtime, release_rx, started_tx);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.discover_skills().unwrap();

    let started = Instant::now();
    let err = session
        .invoke("slow", json!({}), Some(Duration::from_millis(1500)))
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(started_rx.try_recv().is_ok(), "the runtime got the call");
    match &err {
        Error::Timeout {
            may_still_be_running, ..
        } => assert!(*may_still_be_running),
        other => panic!("timeout expected, got {other:?}"),
    }
    assert!(err.to_string().contains("may still be running"), "{err}");
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(8),
        "took {elapsed:?}"
    );
    // The session is fine afterwards.
    assert!(session.invoke("quick", json!({}), None).unwrap().is_done());
    drop(release_tx);
    session.disconnect().unwrap();
}

#[test]
fn get_vision_takes_the_frame_even_when_the_ack_times_out() {
    let p = Platform::start();
    let frame = fake_jpeg(50_000, 11);
    let host = Arc::new(p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]));
    host.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    let (release_tx, release_rx) = cb::bounded::<()>(0);
    let weak = Arc::downgrade(&host);
    {
        let frame = frame.clone();
        host.handle("runtime.cameras_capture", move |call| {
            let request = payload(call);
            let id = request["stream"]["id"].as_str().unwrap_or_default().to_owned();
            let host = weak.upgrade().ok_or_else(|| RpcError::application("gone"))?;
            host.send_bytes(
                frame.clone(),
                OutgoingStream::new("menlo.camera_capture")
                    .name("pov.jpg")
                    .mime_type("image/jpeg")
                    .attribute("request_id", id.clone())
                    .destination(call.caller_identity.clone()),
            )
            .map_err(|e| RpcError::application(e.to_string()))?;
            // The ack is late (the render thread is busy, say).
            let _ = release_rx.recv_timeout(Duration::from_secs(25));
            Ok(
                json!({"status":"done","result":{"payload":{"kind":"byte_stream"}},"meta":meta(&id)})
                    .to_string(),
            )
        });
    }
    let session = connect(
        &p.client,
        &p.robot_id,
        simplesim().runtime_call_timeout(Duration::from_millis(1500)),
    )
    .unwrap();
    let started = Instant::now();
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert!(jpeg == frame, "the frame's bytes differ");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(release_tx);
    session.disconnect().unwrap();
}

#[test]
fn server_killed_mid_session_fails_calls_and_disconnects() {
    let mut p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let (release_tx, release_rx) = cb::bounded::<()>(0);
    let (started_tx, started_rx) = cb::unbounded();
    slow_runtime(&runtime, release_rx, started_tx);
    // The engine tries to get the server back for `reconnect_timeout`, then gives up.
    let options = simplesim().reconnect_timeout(Duration::from_secs(2));
    let session = connect(&p.client, &p.robot_id, options).unwrap();
    session.discover_skills().unwrap();

    let mut pending = session
        .start_invoke("slow", json!({}), Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        pending.action_id()
    );
    p.livekit.kill();
    let started = Instant::now();
    let err = pending
        .wait_timeout(Duration::from_secs(60))
        .expect("the action to fail")
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");

    wait_event(&session, Duration::from_secs(10), |e| {
        matches!(e, SessionEvent::Disconnected { .. })
    });
    assert!(!session.is_connected());
    let err = session.discover_skills().unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    let err = session.invoke("go_to", json!({}), None).unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    let err = session.state().get("robot_status").unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    let err = session.get_vision("pov", &CaptureOptions::new()).unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    let err = session.cancel_action("cancel-active").unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");

    // The platform is still there: disconnect deletes the session; no second Disconnected.
    session.disconnect().unwrap();
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None);
    assert!(!session
        .events()
        .try_iter()
        .any(|e| matches!(e, SessionEvent::Disconnected { .. })));
    drop(release_tx);
}

// ---------------------------------------------------------------------------------------------
// 10. Connect rollback, 11. blocked features
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_rolls_back_when_the_room_cannot_be_joined() {
    let p = Platform::start();
    let closed = format!("ws://127.0.0.1:{}", free_tcp_port());
    let started = Instant::now();
    let err = connect(&p.client, &p.robot_id, simplesim().livekit_url(closed)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        matches!(err, Error::Transport { .. }),
        "a refused connection is a transport error: {err:?}"
    );
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "leftover session"
    );
    let requests = p.rcs.requests();
    let session_path = format!("/v1/robots/{}/session", p.robot_id);
    assert!(requests
        .iter()
        .any(|r| r.method == "POST" && r.path == session_path));
    assert!(requests
        .iter()
        .any(|r| r.method == "DELETE" && r.path == session_path));

    // A URL that is not ws:// is refused before any request.
    p.rcs.clear_requests();
    let err = connect(
        &p.client,
        &p.robot_id,
        simplesim().livekit_url("http://127.0.0.1:1"),
    )
    .unwrap_err();
    assert!(is_invalid(&err, "livekit_url"), "{err:?}");
    assert!(p.rcs.requests().is_empty());
}

#[test]
fn connect_times_out_against_a_silent_server_and_rolls_back() {
    let p = Platform::start();
    // Accepts TCP connections but never answers the websocket handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let err = connect(
        &p.client,
        &p.robot_id,
        simplesim()
            .livekit_url(url)
            .connect_timeout(Duration::from_millis(800)),
    )
    .unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        Error::Timeout { after, .. } => assert_eq!(*after, Duration::from_millis(800)),
        other => panic!("timeout expected, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(6),
        "took {elapsed:?}"
    );
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "leftover session"
    );
    drop(silent);
}

#[test]
fn connect_rolls_back_when_readiness_times_out() {
    let p = Platform::start();
    let viewer = p.runtime("viewer-1", false, &[]);
    let options = ConnectOptions::new()
        .worker_names(["sim-worker"])
        .wait_for_ready(true)
        .session_ready_timeout(Duration::from_millis(400));
    let err = connect(&p.client, &p.robot_id, options).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains("sim-worker (0/1)"), "{err}");
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "leftover session"
    );
    // The SDK left the room too.
    wait_until(Duration::from_secs(10), "the SDK to leave the room", || {
        viewer.participants().is_empty().then_some(())
    });
}

#[test]
fn disconnect_is_idempotent_concurrent_and_retries_a_failed_delete() {
    let p = Platform::start();
    let (_runtime, _) = simplesim_runtime(&p);
    let session_path = format!("/v1/robots/{}/session", p.robot_id);
    let deletes = || {
        p.rcs
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path == session_path)
            .count()
    };
    let disconnected_events = |session: &Session| {
        session
            .events()
            .try_iter()
            .filter(|e| matches!(e, SessionEvent::Disconnected { .. }))
            .count()
    };

    // Several threads at once: one leave, one DELETE, one Disconnected event.
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let before = deletes();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| session.disconnect())).collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
    });
    assert_eq!(deletes() - before, 1);
    assert_eq!(disconnected_events(&session), 1);
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None);

    // delete_session = false leaves the platform session running.
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    session.leave();
    assert!(!session.is_connected());
    assert!(p.client.sessions().get(&p.robot_id).unwrap().is_some());
    // ... and a later disconnect(true) still deletes it.
    session.disconnect().unwrap();
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None);

    // A failed DELETE is returned, and retried by the next call.
    let no_retries = Client::builder()
        .rcs_url(p.rcs.url())
        .api_key(p.api_key.clone())
        .max_retries(0)
        .build()
        .unwrap();
    let session = connect(&no_retries, &p.robot_id, simplesim()).unwrap();
    p.rcs
        .inject_fault(Fault::status(500).method("DELETE").path(session_path.clone()));
    let err = session.disconnect().unwrap_err();
    assert_eq!(err.status(), Some(500), "{err:?}");
    assert!(p.client.sessions().get(&p.robot_id).unwrap().is_some());
    session.disconnect().unwrap();
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None);
    assert_eq!(disconnected_events(&session), 1);
}

#[test]
fn disconnect_unblocks_calls_in_progress() {
    let p = Platform::start();
    // No runtime at first: a call waits for one to join.
    let session = connect(
        &p.client,
        &p.robot_id,
        simplesim().session_ready_timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let started = Instant::now();
    let waiting = std::thread::scope(|s| {
        let waiter = s.spawn(|| session.discover_skills());
        std::thread::sleep(Duration::from_millis(500));
        session.leave();
        waiter.join().unwrap()
    });
    let err = waiting.unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // An action in flight fails as soon as the application leaves.
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let (release_tx, release_rx) = cb::bounded::<()>(0);
    let (started_tx, started_rx) = cb::unbounded();
    slow_runtime(&runtime, release_rx, started_tx);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let mut pending = session
        .start_invoke("slow", json!({}), Some(Duration::from_secs(60)))
        .unwrap();
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    session.disconnect().unwrap();
    let err = pending
        .wait_timeout(Duration::from_secs(30))
        .expect("the action to fail")
        .unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    drop(release_tx);
}

#[test]
fn blocked_features_are_not_available() {
    let p = Platform::start();
    p.rcs.clear_requests();
    let err = connect(&p.client, &p.robot_id, simplesim().environment_id("env_kitchen")).unwrap_err();
    match &err {
        Error::NotAvailable { feature, .. } => assert_eq!(feature, "environment_id"),
        other => panic!("NotAvailable expected, got {other:?}"),
    }
    assert!(p.rcs.requests().is_empty(), "{:?}", p.rcs.requests());

    let (_runtime, _) = simplesim_runtime(&p);
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let err = session.get_logs().unwrap_err();
    assert!(
        matches!(&err, Error::NotAvailable { feature, .. } if feature == "get_logs"),
        "{err:?}"
    );
    session.disconnect().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 13. Concurrency, 14. callbacks
// ---------------------------------------------------------------------------------------------

#[test]
fn eight_threads_invoke_on_one_session() {
    let p = Platform::start();
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    runtime.handle("runtime.tools_list", |_| Ok(tools_list_reply()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    {
        let (seen, active, most) = (Arc::clone(&seen), Arc::clone(&active), Arc::clone(&most));
        runtime.handle("runtime.tools_call", move |call| {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let request = payload(call);
            let id = action_id(call);
            seen.lock().unwrap().push(id.clone());
            std::thread::sleep(Duration::from_millis(300));
            active.fetch_sub(1, Ordering::SeqCst);
            Ok(json!({"status":"done","result":{"n": request["input"]["n"]},"meta":meta(&id)}).to_string())
        });
    }
    let session = connect(&p.client, &p.robot_id, simplesim()).unwrap();
    let session_ref = &session;
    let results: Vec<(u64, _)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|n| s.spawn(move || (n, session_ref.invoke("echo", json!({"n": n}), None))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = HashSet::new();
    for (n, result) in results {
        let result = result.unwrap_or_else(|e| panic!("invoke {n} failed: {e}"));
        assert!(result.is_done());
        assert_eq!(
            result.result,
            Some(json!({"n": n})),
            "thread {n} got another's result"
        );
        ids.insert(result.meta.action_id.clone());
    }
    assert_eq!(ids.len(), 8, "action ids are not distinct");
    let seen: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(seen, ids);
    assert!(
        most.load(Ordering::SeqCst) >= 2,
        "the calls were serialized: the runtime never had two at once"
    );
    session.disconnect().unwrap();
}

#[test]
fn callbacks_run_on_an_sdk_thread_and_survive_a_panic() {
    let p = Platform::start();
    let (_runtime, _) = simplesim_runtime(&p);
    let caller = std::thread::current().id();
    let threads = Arc::new(Mutex::new(Vec::new()));
    let joined = Arc::new(Mutex::new(Vec::<String>::new()));
    let results = Arc::new(Mutex::new(Vec::<String>::new()));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let callbacks = {
        let (t1, t2, t3) = (Arc::clone(&threads), Arc::clone(&threads), Arc::clone(&threads));
        let (joined, results, disconnects) = (
            Arc::clone(&joined),
            Arc::clone(&results),
            Arc::clone(&disconnects),
        );
        ConnectCallbacks::new()
            .on_participant_joined(move |participant| {
                t1.lock().unwrap().push(std::thread::current().id());
                let first = {
                    let mut joined = joined.lock().unwrap();
                    joined.push(participant.identity.clone());
                    joined.len() == 1
                };
                if first {
                    panic!("a deliberately panicking callback (expected in this test)");
                }
            })
            .on_action_result(move |event| {
                t2.lock().unwrap().push(std::thread::current().id());
                results.lock().unwrap().push(event.action_id.clone());
            })
            .on_disconnected(move |_| {
                t3.lock().unwrap().push(std::thread::current().id());
                disconnects.fetch_add(1, Ordering::SeqCst);
            })
    };
    let session = connect(&p.client, &p.robot_id, simplesim().callbacks(callbacks)).unwrap();
    wait_until(Duration::from_secs(10), "the first join callback", || {
        (!joined.lock().unwrap().is_empty()).then_some(())
    });

    // The session still works after the panic, and later callbacks still run.
    let result = session.invoke("go_to", json!({}), None).unwrap();
    wait_until(Duration::from_secs(5), "the action result callback", || {
        results
            .lock()
            .unwrap()
            .contains(&result.meta.action_id)
            .then_some(())
    });
    let _viewer = p.runtime("viewer-2", false, &[]);
    wait_until(Duration::from_secs(10), "the second join callback", || {
        joined
            .lock()
            .unwrap()
            .contains(&"viewer-2".to_owned())
            .then_some(())
    });
    assert!(session.invoke("go_to", json!({}), None).unwrap().is_done());

    session.disconnect().unwrap();
    wait_until(Duration::from_secs(5), "the disconnected callback", || {
        (disconnects.load(Ordering::SeqCst) == 1).then_some(())
    });
    session.disconnect().unwrap();
    drop(session);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(disconnects.load(Ordering::SeqCst), 1, "disconnected fired twice");
    let threads = threads.lock().unwrap();
    assert!(threads.len() >= 4, "{threads:?}");
    assert!(
        threads.iter().all(|t| *t != caller),
        "a callback ran on the caller's thread"
    );
}

#[test]
fn start_calls_never_wait_for_the_runtime_and_share_one_search() {
    let p = Platform::start();
    let session = connect(
        &p.client,
        &p.robot_id,
        simplesim().session_ready_timeout(Duration::from_secs(60)),
    )
    .unwrap();

    // No runtime in the room yet: every start_* call hands back a handle, nothing has ended.
    let mut action = session.start_invoke("go_to", json!({}), None).unwrap();
    let mut status = session.state().start_robot_status();
    let mut capabilities = session.start_get_capabilities();
    assert!(action.poll().is_none());
    assert!(status.poll().is_none());
    assert!(capabilities.poll().is_none());

    // The runtime joins only now, from this thread: a start_* call that waited for it would
    // never have returned. Its probes are counted while they run: one search, one probe at a
    // time, however many calls wait for it.
    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let probes = Arc::new(Mutex::new((0usize, 0usize))); // (in flight, most at once)
    {
        let probes = Arc::clone(&probes);
        runtime.handle("runtime.tools_list", move |_| {
            {
                let mut probes = probes.lock().unwrap();
                probes.0 += 1;
                probes.1 = probes.1.max(probes.0);
            }
            std::thread::sleep(Duration::from_millis(100));
            probes.lock().unwrap().0 -= 1;
            Ok(tools_list_reply())
        });
    }
    runtime.handle("runtime.tools_call", |call| Ok(done_result(&action_id(call))));
    runtime.handle("runtime.state", |_| Ok(robot_status()));

    let result = action
        .wait_timeout(Duration::from_secs(30))
        .expect("the action to end")
        .unwrap();
    assert!(result.is_done());
    assert!(status
        .wait_timeout(Duration::from_secs(30))
        .expect("the read")
        .is_ok());
    // This runtime predates runtime.capabilities: no descriptor.
    assert_eq!(
        capabilities
            .wait_timeout(Duration::from_secs(30))
            .expect("the read")
            .unwrap(),
        None
    );
    assert_eq!(probes.lock().unwrap().1, 1, "more than one search probed at once");
    session.disconnect().unwrap();
}

/// Environment of the child process of `a_host_that_never_reads_holds_no_streams`: the
/// LiveKit URL and the token of the host it runs.
const QUIET_HOST_ENV: &str = "MENLO_TEST_QUIET_HOST";

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child's side: a host that joins, says so, and never reads anything until its stdin
/// closes. A no-op in a normal test run.
#[test]
fn quiet_host_child() {
    let Ok(spec) = std::env::var(QUIET_HOST_ENV) else {
        return;
    };
    let (url, token) = spec.split_once(' ').unwrap();
    let host = RuntimeHost::connect(url, token, Duration::from_secs(15)).unwrap();
    println!("joined {}", host.identity());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

#[test]
fn a_host_that_never_reads_holds_no_streams() {
    const STREAMS: usize = 80;
    const STREAM_BYTES: usize = 512 << 10;
    let p = Platform::start();
    // The quiet host runs in its own process, so that its memory is its own.
    let token = p.livekit.token(&p.robot_id, "quiet-host", false, &[]);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "session::quiet_host_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(QUIET_HOST_ENV, format!("{} {token}", p.livekit.url))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert!(lines.any(|line| line.is_ok_and(|l| l.contains("joined quiet-host"))));
    let pid = child.id();

    let sender = p.runtime("stream-sender", false, &[]);
    wait_until(Duration::from_secs(10), "the quiet host in the room", || {
        sender
            .participants()
            .iter()
            .any(|q| q.identity == "quiet-host")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    // 20 MiB on a topic the host never asked for, then 20 MiB on the camera topic (which it
    // did not ask for either). Before topics were filtered, the host kept the last 64 streams
    // it never read: 32 MiB here.
    for (i, topic) in ["robot.telemetry", "menlo.camera_capture"]
        .into_iter()
        .flat_map(|topic| std::iter::repeat_n(topic, STREAMS / 2))
        .enumerate()
    {
        let stream = OutgoingStream::new(topic)
            .name(format!("blob-{i}"))
            .destination("quiet-host");
        // The sender's channel buffer is finite: pace the sends when it is full.
        let data = fake_jpeg(STREAM_BYTES, i as u64);
        let mut attempts = 0;
        while let Err(err) = sender.send_bytes(data.clone(), stream.clone()) {
            attempts += 1;
            assert!(attempts < 200, "stream {i} not sent: {err}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Let the last packets arrive and the host's memory settle.
    let mut after = rss_kib(pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = rss_kib(pid);
        if now.abs_diff(after) < 512 || Instant::now() > deadline {
            after = after.max(now);
            break;
        }
        after = now;
    }
    drop(child.stdin.take());
    let _ = child.wait();
    let grown_mib = after.saturating_sub(before) / 1024;
    let sent_mib = (STREAMS * STREAM_BYTES) >> 20;
    eprintln!("quiet host: {before} KiB -> {after} KiB after {sent_mib} MiB sent");
    assert!(before > 0, "cannot read the child's memory");
    assert!(
        grown_mib < 12,
        "a host that never reads grew by {grown_mib} MiB after {sent_mib} MiB of streams"
    );
}

// ---------------------------------------------------------------------------------------------
// Call deadlines: a runtime that stops acknowledging
// ---------------------------------------------------------------------------------------------

const FROZEN_RUNTIME_ENV: &str = "MENLO_TEST_FROZEN_RUNTIME";

/// The child's side: a runtime that answers the basics until the test freezes its process
/// (SIGSTOP), then acknowledges nothing. A no-op in a normal test run.
#[test]
fn frozen_runtime_child() {
    let Ok(spec) = std::env::var(FROZEN_RUNTIME_ENV) else {
        return;
    };
    let (url, token) = spec.split_once(' ').unwrap();
    let host = RuntimeHost::connect(url, token, Duration::from_secs(15)).unwrap();
    serve_basics(&host, Arc::new(AtomicUsize::new(0)));
    println!("joined {}", host.identity());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

/// Whether every thread of process `pid` is in the stopped state (`T` in `/proc`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
            .unwrap_or(false)
    })
}

/// A child process, killed (even when stopped) and reaped when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_call_the_runtime_never_acknowledges_fails_at_its_own_timeout() {
    let p = Platform::start();
    let identity = format!("simplesim:{}", p.robot_id);
    let token = p.livekit.token(&p.robot_id, &identity, false, &[]);
    let mut child = Child(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "session::frozen_runtime_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FROZEN_RUNTIME_ENV, format!("{} {token}", p.livekit.url))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.0.stdout.take().unwrap()));
    assert!(lines.any(|line| line.is_ok_and(|l| l.contains("joined simplesim:"))));

    let timeout = Duration::from_millis(1500);
    let session = connect(&p.client, &p.robot_id, simplesim().runtime_call_timeout(timeout)).unwrap();
    session
        .state()
        .robot_status()
        .expect("the runtime answers while it runs");

    // Frozen, the runtime stays in the room (the server notices only after ~15 s of silence)
    // but acknowledges nothing.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    // kill(2) returns before the stop: one thread takes SIGSTOP and stops the others when it
    // next runs, so on a loaded machine the rest can still answer a call for a while.
    wait_until(
        Duration::from_secs(10),
        "every thread of the runtime stopped",
        || all_threads_stopped(child.0.id()).then_some(()),
    );
    let started = Instant::now();
    let err = session.state().robot_status().unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, Error::Timeout { after, may_still_be_running: false, .. } if *after == timeout),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 1.500s"), "{err}");
    assert!(
        elapsed >= timeout - Duration::from_millis(50),
        "failed early: {elapsed:?}"
    );
    // LiveKit's own acknowledgement timeout (7 s) used to apply whatever the call's timeout.
    assert!(
        elapsed < Duration::from_secs(7),
        "waited out the 7 s ack timeout: {elapsed:?}"
    );
    drop(child);
    session.disconnect().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Reconnection as the session reports it (needs the reconnect engine)
// ---------------------------------------------------------------------------------------------

fn reconnect_callbacks() -> (ConnectCallbacks, cb::Receiver<String>) {
    let (tx, rx) = cb::unbounded();
    let (a, b) = (tx.clone(), tx);
    let callbacks = ConnectCallbacks::new()
        .on_reconnecting(move |reason| {
            let _ = a.send(format!("reconnecting: {reason}"));
        })
        .on_reconnected(move |kind| {
            let _ = b.send(format!("reconnected: {kind}"));
        });
    (callbacks, rx)
}

#[test]
fn a_dropped_signal_resumes_and_the_session_says_so() {
    // livekit-server's resume and simulate-scenario; the embedded SFU answers resumes once
    // its own resume work lands.
    let p = Platform::start_on(Backend::LiveKitServer);
    let (_runtime, _) = simplesim_runtime(&p);
    let (callbacks, heard) = reconnect_callbacks();
    let session = connect(&p.client, &p.robot_id, simplesim().callbacks(callbacks)).unwrap();
    session.state().robot_status().unwrap();
    let reads: Vec<_> = (0..20).map(|_| session.state().start_robot_status()).collect();
    session.drop_signal_for_test();
    let reconnecting = wait_event(&session, Duration::from_secs(10), |e| {
        matches!(e, SessionEvent::Reconnecting { .. })
    });
    eprintln!("{reconnecting:?}");
    let back = wait_event(&session, Duration::from_secs(20), |e| {
        matches!(e, SessionEvent::Reconnected { .. })
    });
    assert_eq!(
        back,
        SessionEvent::Reconnected {
            kind: menlo_robot_sdk::ReconnectKind::Resumed
        }
    );
    for read in reads {
        read.wait().expect("a read in flight across a resume completes");
    }
    assert_eq!(
        session.connection_state(),
        menlo_robot_sdk::ConnectionState::Connected
    );
    session.state().robot_status().unwrap();
    let first = heard.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(first.starts_with("reconnecting: "), "{first}");
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(5)).unwrap(),
        "reconnected: resumed"
    );
    session.disconnect().unwrap();
}

#[test]
fn a_node_failure_rejoins_and_calls_still_reach_the_runtime() {
    // livekit-server's resume and simulate-scenario; the embedded SFU answers resumes once
    // its own resume work lands.
    let p = Platform::start_on(Backend::LiveKitServer);
    let (_runtime, _) = simplesim_runtime(&p);
    let (callbacks, heard) = reconnect_callbacks();
    let session = connect(&p.client, &p.robot_id, simplesim().callbacks(callbacks)).unwrap();
    session.state().robot_status().unwrap();
    assert!(session.simulate_scenario_for_test("node_failure"));
    wait_event(&session, Duration::from_secs(10), |e| {
        matches!(e, SessionEvent::Reconnecting { .. })
    });
    let back = wait_event(&session, Duration::from_secs(30), |e| {
        matches!(e, SessionEvent::Reconnected { .. })
    });
    assert_eq!(
        back,
        SessionEvent::Reconnected {
            kind: menlo_robot_sdk::ReconnectKind::Rejoined
        }
    );
    session
        .state()
        .robot_status()
        .expect("the runtime is reached after a rejoin");
    assert!(session.discover_skills().is_ok());
    let mut seen = Vec::new();
    while let Ok(line) = heard.recv_timeout(Duration::from_secs(2)) {
        seen.push(line);
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("reconnected: rejoined"),
        "{seen:?}"
    );
    session.disconnect().unwrap();
}
