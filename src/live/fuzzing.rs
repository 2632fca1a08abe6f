//! Entry points for `fuzz/` into the engine's network parsers (built only with
//! `--cfg fuzzing`, which cargo-fuzz sets; never part of the public API).

use std::time::{Duration, Instant};

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
    let mut streams = crate::live::streams::StreamReassembler::new(1 << 16, 4, Duration::from_secs(1));
    // LiveKit's RPC client manager (its pending calls live in async tasks; here it sees
    // acks and responses for ids it does not know, which must be ignored).
    let rpc = livekit_rpc::backend::RpcClientManager::new();
    let mut tracker = crate::live::participants::ParticipantTracker::new("me", "PA_me");
    if let Ok(packet) = proto::DataPacket::decode(bytes) {
        use proto::data_packet::Value;
        match packet.value {
            Some(Value::StreamHeader(h)) => drop(streams.handle_header(now, "peer", h)),
            Some(Value::StreamChunk(c)) => drop(streams.handle_chunk(now, "peer", c)),
            Some(Value::StreamTrailer(t)) => drop(streams.handle_trailer("peer", t)),
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
    drop(streams.handle_timeout(now + Duration::from_secs(2)));
    rpc.fail_all_pending();
}
