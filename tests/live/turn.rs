//! The TURN client against livekit-server's embedded TURN: the credentials of a real join
//! response allocate a relayed address over UDP, over TLS (a test certificate trusted as an
//! extra root) and over plain TCP (the server's `external_tls` listener), and a datagram goes to a loopback echo peer and back through it, by Send
//! indication and then through a bound channel (odd sizes: TCP pads ChannelData). A wrong
//! credential fails as an authentication failure, not a timeout; an untrusted certificate as
//! a TLS failure.
//!
//! And TURN as a path of the engine: with the client's UDP and ICE-TCP host candidates
//! switched off (doc-hidden test knobs), a session connects through the relay over TLS (the
//! advertised `turns:…:443` mapped to the real listener by a doc-hidden test hook), reads
//! state, receives a 1280×720 frame and rides out a 2 s cut; with the certificate untrusted, the connect error
//! names the TURN/TLS failure.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use livekit_protocol::signal_response::Message as Resp;
use menlo_robot_sdk::__turn::{
    turn_servers, TurnAllocation, TurnError, TurnOptions, TurnServer, TurnTransport,
};

use crate::live_common::{assert_reads_and_frame, fixture_runtime, livekit_with_turn_for_relay, relay_only};
use crate::live_common::{LiveKit, Platform, TurnPorts};
use menlo_robot_sdk::{connect, CaptureOptions, ConnectOptions, NetworkPath};

/// A livekit-server with TURN on, the test certificate's DER, and the TURN ports.
fn server_with_turn() -> (LiveKit, Vec<u8>, TurnPorts) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (server, ports) =
        LiveKit::start_with_turn("127.0.0.1", &cert.cert.pem(), &cert.signing_key.serialize_pem());
    (server, cert.cert.der().to_vec(), ports)
}

/// Joins `room` over signalling only and returns the join response's TURN servers; the
/// websocket stays open (the participant stays in the room) until the returned guard drops.
async fn join_for_turn_servers(
    server: &LiveKit,
    room: &str,
) -> (
    Vec<TurnServer>,
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    use futures_util::StreamExt as _;
    use prost::Message as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let token = server.token(room, "turn-tester", false, &[]);
    let mut request = format!("{}/rtc?protocol=16&sdk=rust", server.url)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(server.url.trim_start_matches("ws://"))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a join response within 10 s")
            .expect("signal connection open")
            .unwrap();
        let response = livekit_protocol::SignalResponse::decode(frame.into_data().as_ref()).unwrap();
        if let Some(Resp::Join(join)) = response.message {
            let (servers, _skipped) = turn_servers(&join.ice_servers);
            return (servers, ws);
        }
    }
}

/// A UDP peer on loopback that sends every datagram back, and reports whom it came from.
async fn echo_peer() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<SocketAddr>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (seen, sources) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = seen.send(from);
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (addr, sources)
}

/// Sends `payload` through the relay and waits for the echo (re-sent each second, as ICE
/// would: the first may race the permission).
async fn round_trip(allocation: &mut TurnAllocation, peer: SocketAddr, payload: &[u8]) {
    for _ in 0..5 {
        allocation.send_to(peer, payload.to_vec()).unwrap();
        if let Ok(reply) = tokio::time::timeout(Duration::from_secs(1), allocation.recv()).await {
            let reply = reply.unwrap_or_else(|e| panic!("no datagram through {allocation:?}: {e:?}"));
            assert_eq!(reply.peer, peer);
            assert_eq!(reply.data, payload);
            return;
        }
    }
    panic!("no echo through {allocation:?}");
}

async fn relay_through(server: &TurnServer, options: &TurnOptions) {
    let (peer, mut sources) = echo_peer().await;
    let mut allocation = TurnAllocation::allocate(server, options).await.unwrap();
    assert_eq!(allocation.transport(), server.url.transport);
    assert_eq!(allocation.relayed_addr().ip(), std::net::Ipv4Addr::LOCALHOST);
    assert!(allocation.create_permission(peer.ip()).installed().await);

    round_trip(&mut allocation, peer, b"through a send indication").await;
    assert_eq!(
        sources.recv().await,
        Some(allocation.relayed_addr()),
        "the peer sees the relayed address"
    );

    allocation.bind_channel(peer);
    // Odd sizes too: ChannelData over TCP/TLS is padded to 4 bytes.
    for i in 0..20u8 {
        round_trip(&mut allocation, peer, &vec![i; 97 + usize::from(i)]).await;
    }
}

#[test]
fn turn_relays_over_udp_and_tls_with_the_join_credentials() {
    let (server, cert_der, ports) = server_with_turn();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (servers, _signal) = join_for_turn_servers(&server, "turn-relay").await;
        let udp = servers
            .iter()
            .find(|s| s.url.transport == TurnTransport::Udp)
            .expect("a turn: UDP server");
        let tls = servers
            .iter()
            .find(|s| s.url.transport == TurnTransport::Tls)
            .expect("a turns: server");
        assert_eq!((udp.url.host.as_str(), udp.url.port), ("127.0.0.1", ports.udp));
        // LiveKit always advertises 443 (it assumes a TLS front); the SDK uses the URL's port,
        // so the test points it at the real listener.
        assert_eq!((tls.url.host.as_str(), tls.url.port), ("127.0.0.1", 443));
        let tls = tls.clone().with_port(ports.tls);

        let options = TurnOptions::new(&[cert_der]).unwrap();
        relay_through(udp, &options).await;
        relay_through(&tls, &options).await;
    });
}

#[test]
fn turn_with_a_wrong_credential_fails_as_auth_not_timeout() {
    let (server, cert_der, ports) = server_with_turn();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (servers, _signal) = join_for_turn_servers(&server, "turn-auth").await;
        let options = TurnOptions::new(&[cert_der]).unwrap();
        for server in servers {
            let server = match server.url.transport {
                TurnTransport::Tls => server.with_port(ports.tls),
                _ => server,
            };
            let wrong = server.with_credential("not-the-credential");
            let started = std::time::Instant::now();
            let error = TurnAllocation::allocate(&wrong, &options).await.unwrap_err();
            assert!(matches!(error, TurnError::AuthFailed { .. }), "{error}");
            assert!(error.to_string().contains("authentication failed"), "{error}");
            assert!(!error.to_string().contains("not-the-credential"));
            assert!(
                started.elapsed() < options.allocate_timeout,
                "answered, not waited out"
            );
        }
    });
}

#[test]
fn turns_with_an_untrusted_certificate_fails_as_tls() {
    let (server, _cert_der, ports) = server_with_turn();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (servers, _signal) = join_for_turn_servers(&server, "turn-tls").await;
        let tls = servers
            .into_iter()
            .find(|s| s.url.transport == TurnTransport::Tls)
            .unwrap();
        let options = TurnOptions::new(&[]).unwrap();
        let error = TurnAllocation::allocate(&tls.with_port(ports.tls), &options)
            .await
            .unwrap_err();
        assert!(matches!(error, TurnError::TlsFailed { .. }), "{error}");
    });
}

#[test]
fn turn_relays_over_tcp_with_the_join_credentials() {
    // livekit-server serves TURN over plain TCP only behind a TLS-terminating front
    // (`external_tls`); the client then reaches the listener itself with `transport=tcp`.
    let (server, ports) = LiveKit::start_with_turn_over_plain_tcp();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (servers, _signal) = join_for_turn_servers(&server, "turn-tcp").await;
        let advertised = servers
            .iter()
            .find(|s| s.url.transport == TurnTransport::Tls)
            .expect("a turns: server");
        let mut tcp = advertised.clone().with_port(ports.tls);
        tcp.url.transport = TurnTransport::Tcp;
        relay_through(&tcp, &TurnOptions::new(&[]).unwrap()).await;
    });
}

/// [`livekit_with_turn_for_relay`] for a TURN server named by the loopback address.
fn server_with_turn_for_relay() -> Option<(LiveKit, Vec<u8>, TurnPorts)> {
    livekit_with_turn_for_relay("127.0.0.1")
}

#[test]
fn without_udp_and_tcp_the_session_connects_through_turn_tls() {
    let Some((livekit, cert_der, ports)) = server_with_turn_for_relay() else {
        return;
    };
    let p = Platform::on_livekit(livekit);
    let (_runtime, frame) = p.runtime_serving_a_frame();

    let started = Instant::now();
    let session = connect(
        &p.client,
        &p.robot_id,
        relay_only(ports).add_root_certificate(cert_der),
    )
    .unwrap_or_else(|e| {
        panic!(
            "no TURN/TLS connection: {e}\nserver log:\n{}",
            p.livekit.server_log()
        )
    });
    let over_turn = started.elapsed();
    let path = session.network_path();
    assert_eq!(path, Some(NetworkPath::TurnTls), "the session reports the relay");
    assert!(path.is_some_and(NetworkPath::is_relayed));
    assert_reads_and_frame(&session, 5, &frame, "through the relay");

    // A 2 s cut (every packet and signal frame dropped both ways) is recovered through it.
    session.cut_link_for_test(Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    let restored = Instant::now();
    let deadline = restored + Duration::from_secs(30);
    while let Err(e) = session.state().get("robot_status") {
        assert!(
            Instant::now() < deadline,
            "no read within 30 s of the restore: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered = restored.elapsed();
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert!(
        jpeg == frame,
        "a frame after the cut arrives intact through the relay"
    );
    crate::live_common::wait_until(Duration::from_secs(10), "TURN/TLS after the cut", || {
        (session.network_path() == Some(NetworkPath::TurnTls)).then_some(())
    });
    session.disconnect().unwrap();
    assert_eq!(session.network_path(), None, "no path once disconnected");

    // The same room over UDP, for the figure next to it.
    let started = Instant::now();
    let direct = connect(
        &p.client,
        &p.robot_id,
        ConnectOptions::new()
            .worker_names(Vec::<String>::new())
            .runtime_identity_prefix("simplesim"),
    )
    .unwrap();
    let over_udp = started.elapsed();
    direct.state().get("robot_status").unwrap();
    // With UDP allowed, no relay (UDP wins whenever it works).
    let path = crate::live_common::wait_until(Duration::from_secs(10), "the direct session on UDP", || {
        direct.network_path().filter(|path| *path == NetworkPath::Udp)
    });
    assert!(!path.is_relayed());
    direct.disconnect().unwrap();
    eprintln!(
        "connect: TURN/TLS {over_turn:?} (host paths off), UDP {over_udp:?}; \
         TURN/TLS 2 s cut: first read {recovered:?} after the restore"
    );
}

#[test]
fn when_only_an_untrusted_turn_tls_is_left_the_error_says_so() {
    let Some((livekit, _cert_der, ports)) = server_with_turn_for_relay() else {
        return;
    };
    let secret = livekit.secret.clone();
    let p = Platform::on_livekit(livekit);
    let _runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let started = Instant::now();
    let options = relay_only(ports).connect_timeout(Duration::from_secs(8));
    let error = match connect(&p.client, &p.robot_id, options) {
        Ok(_) => panic!("connected without a trusted relay"),
        Err(e) => e.to_string(),
    };
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the connect timeout"
    );
    assert!(error.contains("UDP: disabled"), "{error}");
    assert!(error.contains("TCP: disabled"), "{error}");
    assert!(
        error.contains(&format!("TURN/TLS 127.0.0.1:{}: TLS failed", ports.tls)),
        "{error}"
    );
    assert!(!error.contains(&secret) && !error.contains(&p.api_key), "{error}");
}

#[test]
fn over_two_peer_connections_both_are_relayed_through_turn_tls() {
    let Some((livekit, cert_der, ports)) = server_with_turn_for_relay() else {
        return;
    };
    let p = Platform::on_livekit(livekit);
    let (_runtime, frame) = p.runtime_serving_a_frame();
    // A front that refuses `/rtc/v1` makes the session join on `/rtc`: a publisher and a
    // subscriber peer connection, each of which must find the relay on its own.
    let proxy_runtime = fixture_runtime();
    let (port, seen) = crate::fallback::start_v0_only_proxy(&proxy_runtime, p.livekit.port());
    let options = relay_only(ports)
        .add_root_certificate(cert_der)
        .livekit_url(format!("ws://127.0.0.1:{port}"));
    let session = connect(&p.client, &p.robot_id, options).unwrap_or_else(|e| {
        panic!(
            "no TURN/TLS connection over two peer connections: {e}\nserver log:\n{}",
            p.livekit.server_log()
        )
    });
    let joined_on = seen.lock().unwrap().clone();
    assert!(
        joined_on.iter().any(|path| path == "/rtc"),
        "joined on {joined_on:?}"
    );
    // Requests go out on the publisher connection, replies and the frame come back on the
    // subscriber's.
    session.state().get("robot_status").unwrap();
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert!(jpeg == frame, "the 1280×720 frame arrives intact");
    assert_eq!(session.network_path(), Some(NetworkPath::TurnTls));
    session.disconnect().unwrap();
}
