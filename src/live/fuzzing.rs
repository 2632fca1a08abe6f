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
    let mut rpc = crate::live::rpc::RpcClient::<u32>::new(Duration::from_millis(1));
    let _ = rpc.start_call(
        now,
        1,
        "req".into(),
        crate::live::rpc::CallParams::new("peer", "m", "{}"),
    );
    let mut tracker = crate::live::participants::ParticipantTracker::new("me", "PA_me");
    if let Ok(packet) = proto::DataPacket::decode(bytes) {
        use proto::data_packet::Value;
        match packet.value {
            Some(Value::StreamHeader(h)) => drop(streams.handle_header(now, "peer", h)),
            Some(Value::StreamChunk(c)) => drop(streams.handle_chunk(now, "peer", c)),
            Some(Value::StreamTrailer(t)) => drop(streams.handle_trailer("peer", t)),
            Some(Value::RpcAck(a)) => rpc.handle_ack(now, &a.request_id),
            Some(Value::RpcResponse(r)) => drop(rpc.handle_response(r)),
            Some(Value::RpcRequest(r)) => drop(crate::live::rpc::handle_request("peer", r, |_| true)),
            _ => {}
        }
    }
    if let Ok(update) = proto::ParticipantUpdate::decode(bytes) {
        drop(tracker.apply_update(&update.participants));
    }
    drop(streams.handle_timeout(now + Duration::from_secs(2)));
    drop(rpc.handle_timeout(now + Duration::from_secs(60)));
}
