//! Entry points for `fuzz/` into the engine's network parsers and the runtime plane's
//! request builders, reply parsers and resolver (built only with
//! `--cfg fuzzing`, which cargo-fuzz sets; never part of the public API).

use std::time::{Duration, Instant};

/// The TURN client: ICE server URL parsing and the sans-IO allocation core (private otherwise).
pub use crate::live::turn;
/// The runtime plane's request builders and reply interpreters (private otherwise).
pub use crate::runtime::calls;
/// Slot readiness and runtime-worker resolution (private otherwise).
pub use crate::runtime::resolve;

use livekit_protocol as proto;
use prost::Message as _;

/// Feeds one frame from the network to every engine decoder and state machine that reads
/// network input: signal responses, trickled candidates, the websocket upgrade answer, data
/// packets (RPC requests, acks, responses, stream headers, chunks, trailers) and participant
/// updates. Must never panic.
pub fn network_frame(bytes: &[u8]) {
    let now = Instant::now();
    let _ = crate::live::signal::decode_response(bytes);
    let _ = crate::live::signal::parse_candidate_init(&String::from_utf8_lossy(bytes));
    let _ = crate::live::ws::parse_response(bytes);
    let mut gate = crate::live::streams::StreamGate::new(4, Duration::from_secs(1));
    // LiveKit's RPC client manager (its pending calls live in async tasks; here it sees
    // acks and responses for ids it does not know, which must be ignored).
    let rpc = livekit_rpc::backend::RpcClientManager::new();
    let mut tracker = crate::live::participants::ParticipantTracker::new("me", "PA_me");
    if let Ok(packet) = proto::DataPacket::decode(bytes) {
        use proto::data_packet::Value;
        match packet.value {
            Some(Value::StreamHeader(h)) if gate.header(now, "peer", &h).is_ok() => {
                // An admitted header also goes through livekit-data-stream's incoming manager
                // (inline content, declared lengths, decompression), then is read to its end.
                let packet = proto::DataPacket {
                    value: Some(Value::StreamHeader(h)),
                    ..Default::default()
                };
                let mut fresh = crate::live::streams::StreamGate::default();
                drop(crate::live::streams::receive(
                    &mut fresh,
                    1 << 16,
                    "peer",
                    vec![packet],
                    None,
                ));
            }
            Some(Value::StreamChunk(c)) => {
                let _ = gate.chunk(now, "peer", &c.stream_id);
            }
            Some(Value::StreamTrailer(t)) => {
                let _ = gate.trailer("peer", &t.stream_id);
            }
            Some(Value::RpcAck(a)) => rpc.handle_incoming_rpc_ack(a.request_id),
            Some(Value::RpcResponse(r)) => {
                let (payload, error) = crate::live::rpc::response_parts(r.value);
                rpc.handle_v1_response_packet(r.request_id, payload, error);
            }
            Some(Value::RpcRequest(r)) => drop(crate::live::rpc::request_options("peer".into(), r)),
            _ => {}
        }
    }
    if let Ok(update) = proto::ParticipantUpdate::decode(bytes) {
        drop(tracker.apply_update(&update.participants));
    }
    drop(gate.handle_timeout(now + Duration::from_secs(2)));
    rpc.fail_all_pending();
}

/// Feeds `bytes` to the HTTP proxy's CONNECT answer reader one byte at a time, as the
/// tunnel reads it, up to its decision; returns the answer, if it completed. Checks: the
/// reason phrase is printable ASCII of at most 64 characters, and no decision needs more than
/// the head bound. Must never panic.
pub fn proxy_answer(bytes: &[u8]) -> Option<crate::live::proxy::ConnectAnswer> {
    for end in 1..=bytes.len() {
        match crate::live::proxy::answer_so_far(&bytes[..end]) {
            Ok(None) => continue,
            Ok(Some(answer)) => {
                assert!(answer.reason.len() <= 64);
                assert!(answer.reason.chars().all(|c| c.is_ascii_graphic() || c == ' '));
                return Some(answer);
            }
            Err(_) => {
                assert!(end <= 8 * 1024 + 1, "the head bound decides by 8 KiB");
                return None;
            }
        }
    }
    None
}

/// Feeds `bytes` to the ICE-TCP (RFC 4571) deframer as a TCP stream cut into reads at
/// boundaries taken from the input itself; returns the packets it yielded before the end or
/// its first error. Checks: every packet is 1..=65535 bytes, and re-framing the packets and
/// deframing them again in one read gives the same packets. Must never panic.
pub fn ice_tcp_stream(bytes: &[u8]) -> Vec<Vec<u8>> {
    use crate::live::net::tcp::{encode, Deframer, MAX_FRAME_LEN};
    let mut deframer = Deframer::new();
    let mut packets = Vec::new();
    let mut rest = bytes;
    'reads: while let Some((&cut, tail)) = rest.split_first() {
        let n = usize::from(cut).min(tail.len());
        let (read, after) = tail.split_at(n);
        rest = after;
        deframer.push(read);
        loop {
            match deframer.next_packet() {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(_) => break 'reads,
            }
        }
    }
    let mut reframed = Vec::new();
    for p in &packets {
        assert!(!p.is_empty() && p.len() <= MAX_FRAME_LEN);
        encode(p, &mut reframed).expect("a deframed packet fits a frame");
    }
    let mut again = Deframer::new();
    again.push(&reframed);
    let mut round_trip = Vec::new();
    while let Ok(Some(p)) = again.next_packet() {
        round_trip.push(p);
    }
    assert_eq!(round_trip, packets, "re-framed packets deframe to themselves");
    assert_eq!(again.buffered(), 0);
    packets
}

/// The TURN servers of `bytes` read as a protobuf `JoinResponse`, if they decode as one.
pub fn join_turn_servers(bytes: &[u8]) -> Option<(Vec<turn::TurnServer>, Vec<turn::IceUrlError>)> {
    let join = proto::JoinResponse::decode(bytes).ok()?;
    Some(turn::turn_servers(&join.ice_servers))
}

/// Feeds `bytes` to a fresh TURN allocation's core as the server's answer to its first
/// Allocate (a UDP datagram; then a TCP stream, whole and in two pieces), then runs its timers
/// past the deadline. Must never panic.
pub fn turn_server_answer(bytes: &[u8]) {
    let local: std::net::SocketAddr = ([127, 0, 0, 1], 40_000).into();
    let server: std::net::SocketAddr = ([127, 0, 0, 1], 3478).into();
    let split = bytes.len() / 2;
    let feeds: [&[&[u8]]; 3] = [&[bytes], &[bytes], &[&bytes[..split], &bytes[split..]]];
    for (index, pieces) in feeds.iter().enumerate() {
        let now = Instant::now();
        let mut core = turn::TurnCore::new(
            index > 0,
            local,
            server,
            ("user", "pass"),
            now,
            Duration::from_secs(1),
        );
        core.poll(now);
        while core.poll_transmit(now).is_some() {}
        for piece in pieces.iter() {
            core.receive(piece, now);
        }
        core.create_permission(server.ip(), now);
        drop(core.send_to(server, bytes.to_vec(), now));
        core.poll(now + Duration::from_secs(2));
        while core.poll_transmit(now).is_some() {}
        while core.poll_event().is_some() {}
    }
}
