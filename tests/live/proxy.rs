//! Sessions behind an HTTP proxy (`ConnectOptions::proxy`): the signal websocket and TURN over
//! TLS go through CONNECT tunnels of a loopback proxy fixture (with Basic credentials) while
//! the client's UDP and ICE-TCP host candidates are off, so the relay is the only path; a
//! proxy answering 407 or 403 makes `connect` fail with the proxy's refusal, within the
//! connect timeout, rolled back and without the proxy password; `no_proxy()` bypasses it.
//! `wss://` signalling runs its TLS inside the tunnel; a TURN host only the proxy can resolve
//! still relays; a proxy refusing only the TURN port shows in the connect error's path report.
use std::time::{Duration, Instant};

use crate::live_common::proxy::{ConnectProxy, ProxyMode, PROXY_ONLY_HOST};
use crate::live_common::{assert_reads_and_frame, fixture_runtime, livekit_with_turn_for_relay, relay_only};
use crate::live_common::{LiveKit, Platform, TurnPorts};
use menlo_robot_sdk::{connect, ConnectOptions};

const USER: &str = "robot-op";
const PASSWORD: &str = "pr0xy-s3cret";

fn simplesim() -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
}

/// A livekit-server with TURN/TLS (a test certificate) whose candidates carry the primary
/// IPv4, or `None` after saying why the test is skipped.
fn server_with_turn() -> Option<(LiveKit, Vec<u8>, TurnPorts)> {
    livekit_with_turn_for_relay("127.0.0.1")
}

/// `host:port` of a `ws://host:port` URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("ws://").trim_end_matches('/').to_owned()
}

#[test]
fn behind_a_proxy_the_session_connects_through_turn_tls_in_a_tunnel() {
    let Some((livekit, cert_der, ports)) = server_with_turn() else {
        return;
    };
    let signal = authority(&livekit.url);
    let p = Platform::on_livekit(livekit);
    let (_runtime, frame) = p.runtime_serving_a_frame();
    let proxy = ConnectProxy::start(ProxyMode::RequireAuth {
        user: USER,
        password: PASSWORD,
    });

    let options = relay_only(ports)
        .add_root_certificate(cert_der)
        .proxy(proxy.url_with(USER, PASSWORD));
    assert!(!format!("{options:?}").contains(PASSWORD));
    let session = connect(&p.client, &p.robot_id, options).unwrap_or_else(|e| {
        panic!(
            "no connection through the proxy: {e}\nCONNECTs: {:?}\nserver log:\n{}",
            proxy.targets(),
            p.livekit.server_log()
        )
    });
    assert_reads_and_frame(&session, 3, &frame, "through the tunnel");
    let targets = proxy.targets();
    assert!(
        targets.contains(&signal),
        "no CONNECT to the signal port: {targets:?}"
    );
    let turn_tls = format!("127.0.0.1:{}", ports.tls);
    assert!(targets.contains(&turn_tls), "no CONNECT to TURN/TLS: {targets:?}");
    session.disconnect().unwrap();
}

/// Connects through `proxy_url` to a plain server and returns the error text, after checking
/// the bound and the rollback.
fn refused_connect(proxy_url: String) -> String {
    let p = Platform::start();
    let timeout = Duration::from_secs(8);
    let started = Instant::now();
    let options = simplesim().proxy(proxy_url).connect_timeout(timeout);
    let error = match connect(&p.client, &p.robot_id, options) {
        Ok(_) => panic!("connected through a refusing proxy"),
        Err(e) => {
            assert!(matches!(e, menlo_robot_sdk::Error::Transport { .. }), "{e:?}");
            format!("{e} / {e:?}")
        }
    };
    assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
    assert_eq!(
        p.client.sessions().get(&p.robot_id).unwrap(),
        None,
        "leftover session"
    );
    assert!(!error.contains(PASSWORD), "{error}");
    error
}

#[test]
fn a_proxy_refusing_connect_fails_connect_with_its_answer() {
    let forbidding = ConnectProxy::start(ProxyMode::Refuse(403, "Forbidden"));
    let error = refused_connect(forbidding.url_with(USER, PASSWORD));
    assert!(
        error.contains(&format!("proxy {}", forbidding.address)) && error.contains("403 Forbidden"),
        "{error}"
    );
    assert!(error.contains("refused CONNECT to 127.0.0.1:"), "{error}");
    assert_eq!(forbidding.targets().len(), 1);

    let wants_auth = ConnectProxy::start(ProxyMode::RequireAuth {
        user: USER,
        password: "another-password",
    });
    let error = refused_connect(wants_auth.url_with(USER, PASSWORD));
    assert!(error.contains("407 Proxy Authentication Required"), "{error}");
}

#[test]
fn no_proxy_connects_directly() {
    let p = Platform::start();
    let _runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let proxy = ConnectProxy::start(ProxyMode::Refuse(403, "Forbidden"));
    let session = connect(&p.client, &p.robot_id, simplesim().proxy(proxy.url()).no_proxy()).unwrap();
    session.disconnect().unwrap();
    assert!(proxy.targets().is_empty(), "{:?}", proxy.targets());
}

#[test]
fn an_unsupported_proxy_is_refused_before_anything_is_created() {
    let p = Platform::start();
    p.rcs.clear_requests();
    let error = connect(
        &p.client,
        &p.robot_id,
        simplesim().proxy(format!("socks5://{USER}:{PASSWORD}@127.0.0.1:1080")),
    )
    .unwrap_err();
    assert!(
        matches!(&error, menlo_robot_sdk::Error::InvalidInput { field, .. } if field == "proxy"),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains(PASSWORD));
    assert!(p.rcs.requests().is_empty());
}

#[test]
fn wss_signalling_runs_its_tls_inside_the_tunnel() {
    let p = Platform::start();
    let rt = fixture_runtime();
    let server_port = p.livekit.port();
    let (port, ca) = crate::tls::start_tls_proxy(&rt, server_port);
    let _runtime = p.runtime_serving_a_frame();
    let proxy = ConnectProxy::start(ProxyMode::Tunnel);
    let options = simplesim()
        .livekit_url(format!("wss://127.0.0.1:{port}"))
        .add_root_certificate(ca)
        .proxy(proxy.url());
    let session = connect(&p.client, &p.robot_id, options).expect("wss through the proxy");
    session.state().get("robot_status").unwrap();
    assert_eq!(proxy.targets(), [format!("127.0.0.1:{port}")]);
    session.disconnect().unwrap();
}

#[test]
fn a_proxy_refusing_the_turn_port_shows_in_the_path_report() {
    let Some((livekit, cert_der, ports)) = server_with_turn() else {
        return;
    };
    let p = Platform::on_livekit(livekit);
    let _runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let proxy = ConnectProxy::start(ProxyMode::RefusePort {
        port: ports.tls,
        code: 403,
        reason: "Forbidden",
    });
    let timeout = Duration::from_secs(6);
    let options = relay_only(ports)
        .add_root_certificate(cert_der)
        .proxy(proxy.url())
        .connect_timeout(timeout);
    let started = Instant::now();
    let error = match connect(&p.client, &p.robot_id, options) {
        Ok(_) => panic!("connected although the proxy refuses the relay"),
        Err(e) => e.to_string(),
    };
    assert!(
        started.elapsed() < timeout + Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let turn_tls = format!("127.0.0.1:{}", ports.tls);
    let expected = format!(
        "TURN/TLS {turn_tls}: failed: via proxy {}: refused CONNECT to {turn_tls} (403 Forbidden)",
        proxy.address
    );
    assert!(error.contains(&expected), "{expected:?} missing in {error}");
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None, "rolled back");
}

#[test]
fn a_turn_host_only_the_proxy_resolves_still_relays() {
    let Some((livekit, cert_der, ports)) = livekit_with_turn_for_relay(PROXY_ONLY_HOST) else {
        return;
    };
    let p = Platform::on_livekit(livekit);
    let _runtime = p.runtime_serving_a_frame();
    let proxy = ConnectProxy::start(ProxyMode::Tunnel);
    let options = relay_only(ports)
        .add_root_certificate(cert_der)
        .proxy(proxy.url());
    let session = connect(&p.client, &p.robot_id, options)
        .unwrap_or_else(|e| panic!("no relay through the proxy: {e}\nCONNECTs: {:?}", proxy.targets()));
    session.state().get("robot_status").unwrap();
    let turn_tls = format!("{PROXY_ONLY_HOST}:{}", ports.tls);
    assert!(proxy.targets().contains(&turn_tls), "{:?}", proxy.targets());
    session.disconnect().unwrap();
}
