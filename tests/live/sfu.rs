//! The embedded SFU over real sockets: every bad-token reason refused on the websocket
//! upgrade with livekit-server's HTTP status and a readable reason (never the token),
//! `/rtc/validate`, non-websocket requests, and start/stop cycles that leave no thread or
//! file descriptor behind. Loopback only; every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use menlo_robot_sdk::dev::{mint_livekit_token, LiveKitSettings, Sfu, SfuOptions, TokenOptions};
use serde_json::{json, Value};
use sha2::Sha256;

/// One test at a time: one of them counts this process's threads and descriptors.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An HS256 JWT with arbitrary claims.
fn sign(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn claims(room: &str, identity: &str) -> Value {
    json!({
        "iss": "devkey",
        "sub": identity,
        "nbf": now() - 5,
        "exp": now() + 600,
        "video": {"roomJoin": true, "room": room},
    })
}

/// Sends one HTTP/1.1 request (a websocket upgrade when `upgrade`); returns status and body.
fn request(sfu: &Sfu, path_and_query: &str, authorization: Option<&str>, upgrade: bool) -> (u16, String) {
    let addr = sfu.url().trim_start_matches("ws://").to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\n");
    if upgrade {
        head.push_str(
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
    } else {
        head.push_str("Connection: close\r\n");
    }
    if let Some(auth) = authorization {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            if head.starts_with("HTTP/1.1 101") || length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn upgrade(sfu: &Sfu, token: &str, query: &str) -> (u16, String) {
    let path = if query.is_empty() {
        "/rtc".to_string()
    } else {
        format!("/rtc?{query}")
    };
    request(sfu, &path, Some(&format!("Bearer {token}")), true)
}

#[test]
fn every_bad_token_reason_is_refused_with_livekit_statuses() {
    let _alone = exclusive();
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let good = sign(&claims("r", "alice"), "secret");
    assert_eq!(upgrade(&sfu, &good, "").0, 101, "a good token upgrades");

    let mut expired = claims("r", "alice");
    expired["exp"] = json!(now() - 120);
    let mut early = claims("r", "alice");
    early["nbf"] = json!(now() + 300);
    let mut no_join = claims("r", "alice");
    no_join["video"] = json!({"room": "r"});
    let mut other_key = claims("r", "alice");
    other_key["iss"] = json!("otherkey");
    let mut no_identity = claims("r", "alice");
    no_identity["sub"] = json!("");
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "bad signature",
            sign(&claims("r", "alice"), "wrong"),
            "",
            401,
            "signature is invalid",
        ),
        ("expired", sign(&expired, "secret"), "", 401, "token is expired"),
        ("not yet valid", sign(&early, "secret"), "", 401, "not valid yet"),
        (
            "no roomJoin grant",
            sign(&no_join, "secret"),
            "",
            401,
            "no permissions to access the room",
        ),
        (
            "another room",
            good.clone(),
            "room=elsewhere",
            401,
            "another room",
        ),
        (
            "another API key",
            sign(&other_key, "secret"),
            "",
            401,
            "invalid API key",
        ),
        (
            "not a JWT",
            "garbage".into(),
            "",
            401,
            "invalid authorization token",
        ),
        (
            "no identity",
            sign(&no_identity, "secret"),
            "",
            400,
            "identity cannot be empty",
        ),
    ];
    for (what, token, query, status, reason) in cases {
        let (got, body) = upgrade(&sfu, &token, query);
        assert_eq!(got, status, "{what}: {body}");
        assert!(body.contains(reason), "{what}: {body:?}");
        assert!(!body.contains(&token), "{what}: the token is never echoed");
        assert!(!body.contains("secret"), "{what}");
    }
    // The token as a query parameter works the same way; no token at all is refused.
    let (status, _) = request(&sfu, &format!("/rtc?access_token={good}"), None, true);
    assert_eq!(status, 101);
    assert_eq!(request(&sfu, "/rtc", None, true).0, 401);
    assert_eq!(request(&sfu, "/rtc", Some("Basic abc"), true).0, 401);
    assert!(sfu.rooms().iter().all(|r| r.participants.len() <= 2));
}

#[test]
fn validate_v1_and_plain_http_answer_like_livekit_server() {
    let _alone = exclusive();
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let good = sign(&claims("r", "alice"), "secret");
    let bad = sign(&claims("r", "alice"), "wrong");
    let validate =
        |path: &str, token: &str| request(&sfu, &format!("{path}?access_token={token}"), None, false);
    assert_eq!(validate("/rtc/validate", &good), (200, "success".into()));
    assert_eq!(validate("/rtc/validate", &bad).0, 401);
    // v1 needs the join request.
    assert_eq!(validate("/rtc/v1/validate", &good).0, 400);
    let wrapped = {
        use prost::Message as _;
        livekit_protocol::WrappedJoinRequest {
            compression: 0,
            join_request: livekit_protocol::JoinRequest {
                client_info: Some(livekit_protocol::ClientInfo {
                    protocol: 16,
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        }
        .encode_to_vec()
    };
    let query = format!("join_request={}&access_token={good}", URL_SAFE.encode(wrapped));
    assert_eq!(
        request(&sfu, &format!("/rtc/v1/validate?{query}"), None, false).0,
        200
    );
    // Not a websocket upgrade, or not a LiveKit path: 404.
    assert_eq!(
        request(&sfu, "/rtc", Some(&format!("Bearer {good}")), false).0,
        404
    );
    assert_eq!(
        request(&sfu, "/twirp/livekit.RoomService/ListRooms", None, false).0,
        404
    );
    assert_eq!(request(&sfu, "/", None, false), (200, "OK".into()));
}

/// A signalling-only client: a websocket on `/rtc`, no WebRTC.
struct SignalClient {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl SignalClient {
    async fn join(sfu: &Sfu, token: &str) -> (SignalClient, livekit_protocol::JoinResponse) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let url = format!("{}/rtc?protocol=16&sdk=rust", sfu.url());
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(sfu.url().trim_start_matches("ws://"))
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
        let mut client = SignalClient { ws };
        let join = loop {
            if let Resp::Join(join) = client.next().await {
                break join;
            }
        };
        (client, join)
    }

    async fn send(&mut self, msg: Req) {
        use futures_util::SinkExt as _;
        use prost::Message as _;
        let frame = livekit_protocol::SignalRequest { message: Some(msg) }.encode_to_vec();
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(frame.into()))
            .await
            .unwrap();
    }

    /// The next signal response (bounded wait).
    async fn next(&mut self) -> Resp {
        use futures_util::StreamExt as _;
        use prost::Message as _;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a signal response within 5 s")
                .expect("signal connection open")
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Binary(b) = msg {
                let resp = livekit_protocol::SignalResponse::decode(b.as_ref()).unwrap();
                if let Some(m) = resp.message {
                    return m;
                }
            }
        }
    }

    /// Skips responses until one matches.
    async fn until<T>(&mut self, mut pick: impl FnMut(Resp) -> Option<T>) -> T {
        loop {
            if let Some(v) = pick(self.next().await) {
                return v;
            }
        }
    }

    async fn update_of(&mut self, identity: &str) -> livekit_protocol::ParticipantInfo {
        self.until(|m| match m {
            Resp::Update(u) => u.participants.into_iter().find(|p| p.identity == identity),
            _ => None,
        })
        .await
    }
}

use livekit_protocol::signal_request::Message as Req;
use livekit_protocol::signal_response::Message as Resp;

#[test]
fn signalling_updates_pings_refusals_leaves_and_room_deletion() {
    let _alone = exclusive();
    use livekit_protocol::participant_info::State;
    let sfu = Sfu::start(SfuOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut a_claims = claims("r", "alice");
        a_claims["video"]["canUpdateOwnMetadata"] = json!(true);
        a_claims["kind"] = json!("agent");
        a_claims["attributes"] = json!({"lk.agent.name": "sim-worker"});
        let (mut alice, join) = SignalClient::join(&sfu, &sign(&a_claims, "secret")).await;
        let me = join.participant.clone().unwrap();
        assert_eq!(me.identity, "alice");
        assert_eq!(me.kind, livekit_protocol::participant_info::Kind::Agent as i32);
        assert_eq!(join.room.as_ref().unwrap().name, "r");
        assert!(join.room.as_ref().unwrap().sid.starts_with("RM_"));
        assert!(
            join.subscriber_primary,
            "/rtc with protocol 16: subscriber primary"
        );
        assert_eq!((join.ping_interval, join.ping_timeout), (5, 15));
        assert_eq!(
            join.server_info.as_ref().unwrap().version,
            "1.13.5",
            "RPC needs 1.8+"
        );
        assert!(join.ice_servers.is_empty());
        // On /rtc the server offers the subscriber connection right away.
        alice.until(|m| matches!(m, Resp::Offer(_)).then_some(())).await;

        let (mut bob, join) = SignalClient::join(&sfu, &sign(&claims("r", "bob"), "secret")).await;
        let others = join.other_participants;
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].attributes["lk.agent.name"], "sim-worker");
        let seen = alice.update_of("bob").await;
        assert_eq!(seen.state, State::Joined as i32);

        // Own metadata/attributes/name updates: applied, broadcast, acknowledged.
        alice
            .send(Req::UpdateMetadata(livekit_protocol::UpdateParticipantMetadata {
                metadata: "busy".into(),
                name: "Alice".into(),
                attributes: [("mode".to_string(), "auto".to_string())].into(),
                request_id: 7,
            }))
            .await;
        let updated = bob.update_of("alice").await;
        assert_eq!(
            (updated.metadata.as_str(), updated.name.as_str()),
            ("busy", "Alice")
        );
        assert_eq!(updated.attributes["mode"], "auto");
        assert_eq!(updated.attributes["lk.agent.name"], "sim-worker");
        let ack = alice
            .until(|m| match m {
                Resp::RequestResponse(r) => Some(r),
                _ => None,
            })
            .await;
        assert_eq!((ack.request_id, ack.reason), (7, 0));
        // Without canUpdateOwnMetadata: refused.
        bob.send(Req::UpdateMetadata(livekit_protocol::UpdateParticipantMetadata {
            metadata: "x".into(),
            request_id: 8,
            ..Default::default()
        }))
        .await;
        let refusal = bob
            .until(|m| match m {
                Resp::RequestResponse(r) => Some(r),
                _ => None,
            })
            .await;
        assert_eq!(refusal.request_id, 8);
        assert_eq!(
            refusal.reason,
            livekit_protocol::request_response::Reason::NotAllowed as i32
        );

        // Both ping forms.
        bob.send(Req::Ping(1)).await;
        bob.until(|m| matches!(m, Resp::Pong(t) if t > 0).then_some(()))
            .await;
        bob.send(Req::PingReq(livekit_protocol::Ping {
            timestamp: 42,
            rtt: 0,
        }))
        .await;
        let pong = bob
            .until(|m| match m {
                Resp::PongResp(p) => Some(p),
                _ => None,
            })
            .await;
        assert_eq!(pong.last_ping_timestamp, 42);

        // Media is refused.
        bob.send(Req::AddTrack(livekit_protocol::AddTrackRequest {
            cid: "mic".into(),
            name: "mic".into(),
            ..Default::default()
        }))
        .await;
        let refused = bob
            .until(|m| match m {
                Resp::RequestResponse(r) => Some(r),
                _ => None,
            })
            .await;
        assert_eq!(
            refused.reason,
            livekit_protocol::request_response::Reason::NotAllowed as i32
        );

        // A client leaving is broadcast.
        bob.send(Req::Leave(livekit_protocol::LeaveRequest::default()))
            .await;
        let gone = alice.update_of("bob").await;
        assert_eq!(gone.state, State::Disconnected as i32);
        assert_eq!(
            gone.disconnect_reason,
            livekit_protocol::DisconnectReason::ClientInitiated as i32
        );
        assert_eq!(sfu.participant_count("r"), 1);

        // Deleting the room tells the participants why.
        assert!(sfu.delete_room("r"));
        let leave = alice
            .until(|m| match m {
                Resp::Leave(l) => Some(l),
                _ => None,
            })
            .await;
        assert_eq!(
            leave.reason,
            livekit_protocol::DisconnectReason::RoomDeleted as i32
        );
        assert!(sfu.rooms().is_empty());
    });
}

/// Runs tests/peers/pair.py (two official Python clients) against `sfu`; returns its JSON
/// lines by event. Killed after 60 s.
fn python_pair(sfu: &Sfu) -> std::collections::HashMap<String, Value> {
    let settings = LiveKitSettings {
        url: sfu.url(),
        ..LiveKitSettings::default()
    };
    let agent = TokenOptions {
        kind: Some("agent".into()),
        attributes: [("lk.agent.name".to_owned(), "sim-worker".to_owned())].into(),
        ..TokenOptions::default()
    };
    let ttl = Duration::from_secs(120);
    let token_a = mint_livekit_token(&settings, "py", "py-a", "A", ttl, &TokenOptions::default());
    let token_b = mint_livekit_token(&settings, "py", "py-b", "B", ttl, &agent);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pair.py");
    let mut child = std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .args([&sfu.url(), &token_a, &token_b])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with the livekit package (bash .ci/setup)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pair.py did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(status.success(), "pair.py failed: {stdout}");
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["event"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

#[test]
fn official_python_clients_meet_on_both_layouts() {
    let _alone = exclusive();
    for rtc_v1 in [true, false] {
        let sfu = Sfu::start(SfuOptions {
            rtc_v1,
            ..SfuOptions::default()
        })
        .unwrap();
        let events = python_pair(&sfu);
        let joined = &events["joined"];
        assert_eq!(joined["a_sees"], json!(["py-b"]), "{joined}");
        assert_eq!(joined["b_sees"], json!(["py-a"]), "{joined}");
        assert_eq!(
            joined["b_kind"], 4,
            "agent kind (ParticipantInfo.Kind.AGENT): {joined}"
        );
        assert_eq!(joined["b_attributes"]["lk.agent.name"], "sim-worker", "{joined}");
        let rpc = &events["rpc"];
        assert_eq!(rpc["reply"], json!({"caller": "py-a", "len": 40000}), "{rpc}");
        let data = &events["data"];
        assert_eq!(data["reliable"], "reliable-1", "{data}");
        assert_eq!(data["sender"], "py-a", "stamped by the SFU: {data}");
        assert!(events.contains_key("done"), "rtc_v1={rtc_v1}: {events:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sfu.rooms().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the room ends with its last participant"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
