//! The private live engine: a data-only LiveKit participant (feature `livekit`).
//!
//! Signaling over LiveKit's single-peer-connection protocol (`/rtc/v1`, falling back to the
//! two-connection `/rtc`), WebRTC data channels over str0m (pure Rust, so no prebuilt
//! libwebrtc), LiveKit RPC (LiveKit's `livekit-rpc` managers; see [`rpc`]) and data streams
//! (LiveKit's `livekit-data-stream` managers; see [`streams`]). Every async task runs on the
//! executor (the SDK's private tokio pool); [`Room`] is the only door in, with blocking methods and crossbeam
//! channels. Our own protocol logic (participants, the stream gate, signaling, the websocket
//! upgrade) lives in sans-IO state machines tested without sockets.
#![allow(unreachable_pub)]

pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod executor;
#[cfg(fuzzing)]
pub mod fuzzing;
pub(crate) mod net;
pub(crate) mod participants;
pub(crate) mod peer;
pub(crate) mod proxy;
pub(crate) mod queue;
pub(crate) mod room;
pub(crate) mod rpc;
pub(crate) mod sctp_clock;
pub(crate) mod signal;
pub(crate) mod streams;
pub(crate) mod write_queue;
// TURN relay client (issue 10); the ICE paths (`net/`) plug it in as relayed candidates.
#[allow(dead_code)]
pub mod turn;
pub(crate) mod ws;
// Sans-IO building blocks of resume / reconnect (issue 8, design Part 4 steps 2-5).
pub(crate) mod liveness;
pub(crate) mod reconnect;
pub(crate) mod reliable;
#[cfg(all(test, feature = "dev"))]
mod resume_wire_check;

pub(crate) use engine::{RoomEvent, RoomObserver};
pub(crate) use error::LiveError;
pub use error::{RpcError, RpcErrorCode};
pub use net::NetworkPath;
pub use participants::{Participant, ParticipantKind};
pub use room::OutgoingStream;
pub(crate) use room::{Room, RoomOptions};
pub(crate) use rpc::{CallParams, Invocation, RpcWire};
pub(crate) use streams::ByteStream;

#[cfg(test)]
mod robustness {
    //! Garbage from the network must produce errors, never panics.
    use livekit_protocol as proto;
    use prost::Message as _;
    use std::time::{Duration, Instant};

    fn random_bytes(rng: &mut fastrand::Rng, max: usize) -> Vec<u8> {
        let n = rng.usize(..max);
        (0..n).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn handle_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::live::Room>();
        check::<crate::live::RoomEvent>();
        check::<crate::live::ByteStream>();
        check::<crate::live::RpcError>();
        check::<crate::live::LiveError>();
    }

    #[test]
    fn random_frames_do_not_panic_decoders_or_state_machines() {
        let mut rng = fastrand::Rng::with_seed(7);
        let now = Instant::now();
        let mut gate = crate::live::streams::StreamGate::new(4, Duration::from_secs(1));
        // LiveKit's RPC client manager, fed acks and responses for unknown and known ids.
        let rpc = livekit_rpc::backend::RpcClientManager::new();
        let mut tracker = crate::live::participants::ParticipantTracker::new("me", "PA_me");
        for i in 0..20_000 {
            let bytes = random_bytes(&mut rng, 256);
            let _ = crate::live::signal::decode_response(&bytes);
            let _ = crate::live::signal::parse_candidate_init(&String::from_utf8_lossy(&bytes));
            if let Ok(p) = proto::DataPacket::decode(bytes.as_slice()) {
                match p.value {
                    Some(proto::data_packet::Value::StreamHeader(h)) if gate.header(now, "x", &h).is_ok() => {
                        // Admitted headers also go through livekit-data-stream's incoming
                        // manager (inline content, declared lengths, decompression).
                        let packet = proto::DataPacket {
                            value: Some(proto::data_packet::Value::StreamHeader(h)),
                            ..Default::default()
                        };
                        let mut fresh = crate::live::streams::StreamGate::default();
                        drop(crate::live::streams::receive(
                            &mut fresh,
                            1 << 16,
                            "x",
                            vec![packet],
                            None,
                        ));
                    }
                    Some(proto::data_packet::Value::StreamChunk(c)) => {
                        let _ = gate.chunk(now, "x", &c.stream_id);
                    }
                    Some(proto::data_packet::Value::StreamTrailer(t)) => {
                        let _ = gate.trailer("x", &t.stream_id);
                    }
                    Some(proto::data_packet::Value::RpcAck(a)) => rpc.handle_incoming_rpc_ack(a.request_id),
                    Some(proto::data_packet::Value::RpcResponse(r)) => {
                        let (payload, error) = crate::live::rpc::response_parts(r.value);
                        rpc.handle_v1_response_packet(r.request_id, payload, error);
                    }
                    Some(proto::data_packet::Value::RpcRequest(r)) => {
                        drop(crate::live::rpc::request_options("x".into(), r))
                    }
                    _ => {}
                }
            }
            if let Ok(u) = proto::ParticipantUpdate::decode(bytes.as_slice()) {
                tracker.apply_update(&u.participants);
            }
            if i % 100 == 0 {
                gate.handle_timeout(now + Duration::from_secs(2));
                rpc.handle_participant_disconnected(&"x".into());
                rpc.fail_all_pending();
            }
        }
    }

    #[test]
    fn random_datagrams_and_sdp_do_not_panic_the_peer() {
        let mut rng = fastrand::Rng::with_seed(11);
        let now = Instant::now();
        let local = "127.0.0.1:40000".parse().unwrap();
        let (mut peer, offer) = crate::live::peer::Peer::new(now, local).unwrap();
        assert!(offer.contains("webrtc-datachannel"));
        assert!(peer.accept_answer("v=0\r\ngarbage").is_err());
        assert!(peer.add_remote_candidate("candidate:garbage").is_err());
        let from = "127.0.0.1:50000".parse().unwrap();
        for _ in 0..5_000 {
            let mut d = random_bytes(&mut rng, 300);
            // Bias towards the STUN / DTLS / RTP demux ranges.
            if let Some(b) = d.first_mut() {
                *b = [0u8, 1, 20, 22, 23, 128, 129][rng.usize(..7)];
            }
            let _ = peer.handle_receive(now, from, &d);
            while let crate::live::peer::PeerOutput::Transmit(..) = peer.poll() {}
        }
    }
}
