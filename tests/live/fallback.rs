//! The two-peer-connection fallback: a server without `/rtc/v1` answers 404 there, and the
//! session must join over `/rtc` (a publisher connection we offer, a subscriber connection the
//! server offers) and still call RPCs and receive byte streams. A proxy in front of a real
//! livekit-server plays the older server: it refuses `/rtc/v1` and forwards everything else.

use std::sync::{Arc, Mutex};

use crate::live_common::{fixture_runtime, Platform};
use menlo_robot_sdk::{connect, CaptureOptions, ConnectOptions, OutgoingStream, RpcError};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy on 127.0.0.1:0 in front of `target` that answers 404 to `/rtc/v1` requests;
/// returns its port and the request paths it saw (query strings cut off: they carry the token).
pub(super) fn start_v0_only_proxy(
    rt: &tokio::runtime::Runtime,
    target: u16,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&paths);
    rt.spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let path = line
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .split('?')
                    .next()
                    .unwrap_or("");
                seen.lock().unwrap().push(path.to_owned());
                if path.starts_with("/rtc/v1") {
                    let _ = client
                        .write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (port, paths)
}

#[test]
fn a_server_without_rtc_v1_is_joined_over_two_peer_connections() {
    let p = Platform::start();
    let rt = fixture_runtime();
    let server_port = p.livekit.port();
    let (port, paths) = start_v0_only_proxy(&rt, server_port);

    let frame: Vec<u8> = [0xFF, 0xD8, 0xFF, 0xE0]
        .into_iter()
        .chain((0..60_000u32).map(|i| i as u8))
        .collect();
    let host = Arc::new(p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]));
    host.handle("runtime.tools_list", |_| {
        Ok(json!([{"name":"wave","description":"wave","input_schema":{"type":"object"}}]).to_string())
    });
    let weak = Arc::downgrade(&host);
    let sent = frame.clone();
    host.handle("runtime.cameras_capture", move |call| {
        let request: Value = serde_json::from_str(&call.payload).map_err(|e| RpcError::application(e.to_string()))?;
        let id = request["stream"]["id"].as_str().unwrap_or_default().to_owned();
        let host = weak.upgrade().ok_or_else(|| RpcError::application("gone"))?;
        host.send_bytes(
            sent.clone(),
            OutgoingStream::new(request["stream"]["topic"].as_str().unwrap_or_default())
                .name("pov.jpg")
                .mime_type("image/jpeg")
                .attribute("request_id", id.clone())
                .destination(call.caller_identity.clone()),
        )
        .map_err(|e| RpcError::application(e.to_string()))?;
        let meta = json!({"action_id": format!("cap-{id}"), "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1});
        Ok(json!({"status":"done","result":{"payload":{"kind":"byte_stream"}},"meta":meta}).to_string())
    });

    let options = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .livekit_url(format!("ws://127.0.0.1:{port}"));
    let session = connect(&p.client, &p.robot_id, options).expect("connect through the /rtc fallback");

    let seen = paths.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("/rtc/v1"), "{seen:?}");
    assert!(
        seen.iter().any(|path| path == "/rtc"),
        "no /rtc join after the 404: {seen:?}"
    );

    assert_eq!(session.discover_skills().unwrap()[0].name, "wave");
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert!(
        jpeg == frame,
        "the frame's bytes differ ({} vs {} bytes)",
        jpeg.len(),
        frame.len()
    );
    session.disconnect().unwrap();
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None);
}
