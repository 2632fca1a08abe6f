//! The resume signalling pieces against a real livekit-server (wire check for the engine
//! integration; `#[ignore]`d because lib tests do not otherwise need a server). Run with
//! `cargo test --all-features --lib live::resume_wire_check -- --ignored` (uses
//! `LIVEKIT_SERVER_BIN`, else the binary `.ci/setup` installs).
use crate::live::reconnect::LeaveAction;
use crate::live::signal::{self, SyncStateParts};
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use proto::signal_response::Message as Resp;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// livekit-server on loopback, killed on drop.
struct Server {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for TCP and UDP, below the ephemeral range.
fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn start_server() -> Server {
    let (port, udp) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("menlo-resume-check-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("livekit.yaml");
    let yaml =
        format!("rtc:\n  udp_port: {udp}\n  node_ip: 127.0.0.1\n  use_external_ip: false\n  tcp_port: 0\n");
    std::fs::write(&config, yaml).unwrap();
    let binary = std::env::var("LIVEKIT_SERVER_BIN").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.local/share/menlo-robot-sdk/bin/livekit-server")
    });
    let child = Command::new(binary)
        .args([
            "--dev",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("livekit-server (set LIVEKIT_SERVER_BIN)");
    let server = Server {
        child,
        url: format!("ws://127.0.0.1:{port}"),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "livekit-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Up to `n` signal responses, each within 3 s.
async fn responses(ws: &mut crate::live::ws::Ws, n: usize) -> Vec<Resp> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => out.push(signal::decode_response(&b).unwrap()),
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    out
}

async fn send(ws: &mut crate::live::ws::Ws, req: proto::signal_request::Message) {
    let frame = signal::encode_request(req);
    ws.send(Message::Binary(frame.into())).await.unwrap();
}

fn leave_of(msgs: &[Resp]) -> Option<&proto::LeaveRequest> {
    msgs.iter().find_map(|m| match m {
        Resp::Leave(l) => Some(l),
        _ => None,
    })
}

#[test]
#[ignore = "needs livekit-server; run with --ignored"]
fn resume_urls_sync_state_leave_and_simulate_against_livekit_server() {
    let server = start_server();
    let settings = crate::dev::LiveKitSettings {
        url: server.url.clone(),
        api_key: "devkey".into(),
        api_secret: "secret".into(),
    };
    let token = |identity: &str| {
        let ttl = Duration::from_secs(600);
        crate::dev::mint_livekit_token(&settings, "resume", identity, identity, ttl, &Default::default())
    };
    let robot = token("robot");
    // A connected participant (the engine joined it; its peer connection is up).
    let room = crate::live::Room::connect(&server.url, &robot, Default::default()).unwrap();
    let reason = proto::ReconnectReason::RrSignalDisconnected;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The server keys a resume on the token's identity; the sid only goes to its logs.
        let url = signal::resume_join_url(&server.url, "PA_unused", reason).unwrap();
        let mut ws = crate::live::ws::connect(&url, &robot, None).await.unwrap();
        let msgs = responses(&mut ws, 3).await;
        assert!(
            matches!(msgs.first(), Some(Resp::Reconnect(_))),
            "ReconnectResponse first"
        );
        let snapshot = msgs
            .iter()
            .any(|m| matches!(m, Resp::Update(u) if u.participants.iter().any(|p| p.identity == "robot")));
        assert!(snapshot, "a participant snapshot follows");
        send(
            &mut ws,
            signal::sync_state(SyncStateParts {
                offer: Some("v=0\r\n".into()),
                data_channels: vec![proto::DataChannelInfo {
                    label: "_reliable".into(),
                    id: 0,
                    target: proto::SignalTarget::Publisher as i32,
                }],
                receive_states: vec![proto::DataChannelReceiveState {
                    publisher_sid: "PA_other".into(),
                    last_seq: 3,
                }],
                ..Default::default()
            }),
        )
        .await;
        send(&mut ws, signal::ping_request(1, 0)).await;
        let msgs = responses(&mut ws, 2).await;
        assert!(leave_of(&msgs).is_none());
        assert!(
            msgs.iter().any(|m| matches!(m, Resp::PongResp(_))),
            "alive after SyncState"
        );

        // An identity the server does not hold: refused with Leave{STATE_MISMATCH, RECONNECT}.
        let mut ghost = crate::live::ws::connect(&url, &token("ghost"), None)
            .await
            .unwrap();
        let leave = responses(&mut ghost, 1).await;
        assert_eq!(
            leave_of(&leave).map(signal::leave_action),
            Some(LeaveAction::Reconnect)
        );

        // The /rtc form is accepted too.
        let url = signal::resume_join_url_v0(&server.url, "PA_unused", reason).unwrap();
        let mut ws = crate::live::ws::connect(&url, &robot, None).await.unwrap();
        let msgs = responses(&mut ws, 1).await;
        assert!(matches!(msgs.first(), Some(Resp::Reconnect(_))));

        // simulate-scenario server_leave: Leave{DISCONNECT, SERVER_SHUTDOWN}.
        send(
            &mut ws,
            signal::simulate_request(proto::simulate_scenario::Scenario::ServerLeave(true)),
        )
        .await;
        let msgs = responses(&mut ws, 5).await;
        let expected = LeaveAction::Disconnect {
            reason: proto::DisconnectReason::ServerShutdown,
        };
        assert_eq!(leave_of(&msgs).map(signal::leave_action), Some(expected));
    });
    room.close();
}
