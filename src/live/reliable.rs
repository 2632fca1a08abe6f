//! Reliable data across a resume (sans-IO): the sequence numbers LiveKit stamps on reliable
//! data packets, the replay buffer of what we sent and the server may not have, and the
//! per-sender receive states that drop duplicates.
//!
//! Protocol (as livekit-server 1.13 and the official clients use it): every reliable
//! `DataPacket` a participant sends carries `sequence` = 1, 2, 3 … (lossy packets keep 0),
//! reset only by a full reconnect (a new participant). The server drops reliable packets whose
//! sequence is not above the last one it accepted from that participant, reports that last one
//! as `ReconnectResponse.last_message_seq` on a resume, and forwards packets with the original
//! `sequence` and the sender's `participant_sid`. Receivers drop a packet whose sequence is not
//! above the last one seen from the same sender sid, and report those per-sender states in
//! `SyncState.datachannel_receive_states`.

use livekit_protocol as proto;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a sender's receive state is kept after its last packet (as the official clients).
pub const RECEIVE_STATE_TTL: Duration = Duration::from_secs(30);

/// Cap on the bytes the replay buffer holds; beyond it the oldest packets are forgotten and a
/// resume that would need them must become a full reconnect.
pub const MAX_REPLAY_BYTES: usize = 16 * 1024 * 1024;

/// Hands out the `sequence` of our reliable data packets: 1, 2, 3 … until [`reset`](Self::reset).
#[derive(Debug)]
pub struct SequenceStamper {
    next: u32,
}

impl Default for SequenceStamper {
    fn default() -> Self {
        SequenceStamper { next: 1 }
    }
}

impl SequenceStamper {
    /// Stamps `packet` with the next sequence and returns it.
    ///
    /// After 2³² − 1 packets the counter wraps to 1 (never 0, which means "unsequenced"); at
    /// one packet per microsecond that is more than an hour of continuous sending.
    pub fn stamp(&mut self, packet: &mut proto::DataPacket) -> u32 {
        let seq = self.next;
        self.next = self.next.checked_add(1).unwrap_or(1);
        packet.sequence = seq;
        seq
    }

    #[cfg(test)]
    /// The sequence most recently handed out (0 if none).
    pub fn last(&self) -> u32 {
        self.next - 1
    }

    /// Starts again at 1 (a full reconnect makes us a new participant on the server).
    pub fn reset(&mut self) {
        self.next = 1;
    }
}

/// Replay after a resume would need packets the buffer no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg(test)]
pub struct ReplayIncomplete {
    /// Highest sequence that was forgotten because of [`MAX_REPLAY_BYTES`].
    pub forgotten_up_to: u32,
}

#[derive(Debug)]
struct Sent {
    seq: u32,
    bytes: Vec<u8>,
    handed_to_sctp: bool,
}

/// Reliable packets we sent that the server may not have received yet.
///
/// A packet enters when the engine encodes it. It counts as *handed to SCTP* once the peer
/// connection's own send queue no longer holds it, and it leaves once SCTP no longer buffers its
/// bytes (the channel's `buffered_amount` counts unacknowledged bytes, and the reliable channel is
/// ordered, so the oldest handed bytes are acknowledged first) or once the server reports it
/// received (`last_message_seq`).
#[derive(Debug)]
pub struct ReplayBuffer {
    packets: VecDeque<Sent>,
    bytes: usize,
    handed_bytes: usize,
    cap: usize,
    forgotten_up_to: u32,
}

impl Default for ReplayBuffer {
    fn default() -> Self {
        Self::with_cap(MAX_REPLAY_BYTES)
    }
}

impl ReplayBuffer {
    /// An empty buffer holding at most `cap` bytes.
    pub fn with_cap(cap: usize) -> Self {
        ReplayBuffer {
            packets: VecDeque::new(),
            bytes: 0,
            handed_bytes: 0,
            cap,
            forgotten_up_to: 0,
        }
    }

    /// Records an encoded reliable packet with its sequence (in sending order).
    pub fn push(&mut self, seq: u32, bytes: Vec<u8>) {
        self.bytes += bytes.len();
        self.packets.push_back(Sent {
            seq,
            bytes,
            handed_to_sctp: false,
        });
        while self.bytes > self.cap {
            let Some(oldest) = self.pop_front() else { break };
            self.forgotten_up_to = self.forgotten_up_to.max(oldest.seq);
        }
    }

    /// Updates the buffer from the peer connection's state: `still_queued` = reliable packets the
    /// peer has not yet written to SCTP (the newest ones), `sctp_buffered` = the reliable channel's
    /// `buffered_amount()`. Drops the packets SCTP has delivered.
    pub fn sync(&mut self, still_queued: usize, sctp_buffered: usize) {
        let handed = self.packets.len().saturating_sub(still_queued);
        for p in self.packets.iter_mut().take(handed).filter(|p| !p.handed_to_sctp) {
            p.handed_to_sctp = true;
            self.handed_bytes += p.bytes.len();
        }
        while let Some(front) = self.packets.front() {
            let acknowledged = front.handed_to_sctp && self.handed_bytes - front.bytes.len() >= sctp_buffered;
            if !acknowledged {
                break;
            }
            self.pop_front();
        }
    }

    /// Applies a resume's `last_message_seq`: forgets every packet the server already accepted.
    pub fn acknowledge_up_to(&mut self, last_message_seq: u32) {
        while self.packets.front().is_some_and(|p| p.seq <= last_message_seq) {
            self.pop_front();
        }
    }

    #[cfg(test)]
    /// The packets to send again, in order, when a resume found the SCTP association gone
    /// (after [`acknowledge_up_to`](Self::acknowledge_up_to)). They count as not yet handed
    /// to SCTP. Fails when some of them were forgotten (the caller must rejoin instead).
    pub fn replay(&mut self, last_message_seq: u32) -> Result<Vec<Vec<u8>>, ReplayIncomplete> {
        if self.forgotten_up_to > last_message_seq {
            return Err(ReplayIncomplete {
                forgotten_up_to: self.forgotten_up_to,
            });
        }
        self.acknowledge_up_to(last_message_seq);
        for p in &mut self.packets {
            p.handed_to_sctp = false;
        }
        self.handed_bytes = 0;
        Ok(self.packets.iter().map(|p| p.bytes.clone()).collect())
    }

    /// Forgets everything (full reconnect: the new participant starts at sequence 1).
    pub fn clear(&mut self) {
        *self = Self::with_cap(self.cap);
    }

    #[cfg(test)]
    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    #[cfg(test)]
    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    #[cfg(test)]
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_front(&mut self) -> Option<Sent> {
        let p = self.packets.pop_front()?;
        self.bytes -= p.bytes.len();
        if p.handed_to_sctp {
            self.handed_bytes -= p.bytes.len();
        }
        Some(p)
    }
}

/// Last reliable sequence seen per sender sid, to drop duplicates (a resend after a resume,
/// the server's join-cache replay after a full reconnect).
#[derive(Debug, Default)]
pub struct ReceiveStates {
    last: HashMap<String, (u32, Instant)>,
}

impl ReceiveStates {
    /// Whether a packet is new and should be dispatched; records it if so. Packets without a
    /// sequence or a sender sid (lossy packets, servers that do not stamp) are always new.
    pub fn accept(&mut self, now: Instant, sender_sid: &str, sequence: u32) -> bool {
        if sequence == 0 || sender_sid.is_empty() {
            return true;
        }
        match self.last.get_mut(sender_sid) {
            Some((last, _)) if sequence <= *last => false,
            Some(entry) => {
                *entry = (sequence, now);
                true
            }
            None => {
                self.last.insert(sender_sid.to_owned(), (sequence, now));
                true
            }
        }
    }

    /// [`accept`](Self::accept) for a decoded packet.
    pub fn accept_packet(&mut self, now: Instant, packet: &proto::DataPacket) -> bool {
        self.accept(now, &packet.participant_sid, packet.sequence)
    }

    /// Forgets senders silent for longer than [`RECEIVE_STATE_TTL`].
    pub fn expire(&mut self, now: Instant) {
        self.last
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < RECEIVE_STATE_TTL);
    }

    /// The states to report in `SyncState.datachannel_receive_states` (expired ones dropped),
    /// sorted by sender sid.
    pub fn sync_state_list(&mut self, now: Instant) -> Vec<proto::DataChannelReceiveState> {
        self.expire(now);
        let mut list: Vec<_> = self
            .last
            .iter()
            .map(|(sid, (seq, _))| proto::DataChannelReceiveState {
                publisher_sid: sid.clone(),
                last_seq: *seq,
            })
            .collect();
        list.sort_by(|a, b| a.publisher_sid.cmp(&b.publisher_sid));
        list
    }

    #[cfg(test)]
    /// Number of senders tracked.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    #[cfg(test)]
    /// Whether no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// How long an unanswered outgoing call is remembered (far beyond any call's deadline).
pub const CALL_MEMORY: Duration = Duration::from_secs(600);

/// Attribute of an RPC v2 request / response stream naming the request (`livekit-rpc`).
const RPC_REQUEST_ID_ATTRIBUTE: &str = "lk.rpc_request_id";

/// The in-flight ledger (design Part 2 §3, minimal): outgoing RPC requests we wrote, by
/// request id, and whether the callee acknowledged them. After a full reconnect, a request
/// that was written to the old link but never acknowledged cannot be known delivered.
#[derive(Debug, Default)]
pub struct CallLedger {
    calls: HashMap<String, (bool, Instant)>,
}

impl CallLedger {
    /// A reliable packet of ours was stamped and handed to the peer connection.
    pub fn on_sent(&mut self, now: Instant, packet: &proto::DataPacket) {
        if let Some(id) = outgoing_request_id(packet) {
            self.calls.insert(id.to_owned(), (false, now));
            self.calls
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < CALL_MEMORY);
        }
    }

    /// A packet arrived: an ack marks its call acknowledged, a response ends it.
    pub fn on_received(&mut self, packet: &proto::DataPacket) {
        use proto::data_packet::Value;
        match &packet.value {
            Some(Value::RpcAck(a)) => {
                if let Some((acked, _)) = self.calls.get_mut(&a.request_id) {
                    *acked = true;
                }
            }
            Some(Value::RpcResponse(r)) => {
                self.calls.remove(&r.request_id);
            }
            Some(Value::StreamHeader(h)) if h.topic == crate::live::rpc::RPC_RESPONSE_TOPIC => {
                if let Some(id) = h.attributes.get(RPC_REQUEST_ID_ATTRIBUTE) {
                    self.calls.remove(id);
                }
            }
            _ => {}
        }
    }

    /// Removes and returns the calls written but not acknowledged, except those in `resend`
    /// (their requests never left us and go out again on the new link).
    pub fn take_unacknowledged(&mut self, resend: &std::collections::HashSet<String>) -> Vec<String> {
        let lost: Vec<String> = self
            .calls
            .iter()
            .filter(|(id, (acked, _))| !*acked && !resend.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lost {
            self.calls.remove(id);
        }
        lost
    }

    #[cfg(test)]
    /// Number of calls remembered.
    pub fn len(&self) -> usize {
        self.calls.len()
    }
}

/// The request id of an outgoing RPC request (v1 packet, or the header of a v2 stream).
pub fn outgoing_request_id(packet: &proto::DataPacket) -> Option<&str> {
    use proto::data_packet::Value;
    match &packet.value {
        Some(Value::RpcRequest(r)) => Some(r.id.as_str()),
        Some(Value::StreamHeader(h)) if h.topic == crate::live::rpc::RPC_REQUEST_TOPIC => {
            h.attributes.get(RPC_REQUEST_ID_ATTRIBUTE).map(String::as_str)
        }
        _ => None,
    }
}

/// Drops, from packets about to go out on a new connection (in order), the chunks and
/// trailers of byte streams whose header is not among them: that header went out on the lost
/// connection, so the receiver could never put the rest together. Returns how many were
/// dropped.
pub fn drop_orphan_stream_packets(batches: &mut [&mut Vec<proto::DataPacket>]) -> usize {
    use proto::data_packet::Value;
    let headers: std::collections::HashSet<String> = batches
        .iter()
        .flat_map(|batch| batch.iter())
        .filter_map(|p| match &p.value {
            Some(Value::StreamHeader(h)) => Some(h.stream_id.clone()),
            _ => None,
        })
        .collect();
    let mut dropped = 0;
    for batch in batches.iter_mut() {
        let before = batch.len();
        batch.retain(|p| match &p.value {
            Some(Value::StreamChunk(c)) => headers.contains(&c.stream_id),
            Some(Value::StreamTrailer(t)) => headers.contains(&t.stream_id),
            _ => true,
        });
        dropped += before - batch.len();
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> proto::DataPacket {
        proto::DataPacket::default()
    }

    #[test]
    fn stamps_one_two_three_and_restarts_after_reset() {
        let mut s = SequenceStamper::default();
        assert_eq!(s.last(), 0);
        let seqs: Vec<u32> = (0..3)
            .map(|_| {
                let mut p = packet();
                let seq = s.stamp(&mut p);
                assert_eq!(p.sequence, seq);
                seq
            })
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(s.last(), 3);
        s.reset();
        assert_eq!(s.stamp(&mut packet()), 1);
    }

    #[test]
    fn stamper_wraps_to_one_never_zero() {
        let mut s = SequenceStamper { next: u32::MAX };
        assert_eq!(s.stamp(&mut packet()), u32::MAX);
        assert_eq!(s.stamp(&mut packet()), 1);
    }

    fn buffer_with(sizes: &[usize]) -> ReplayBuffer {
        let mut b = ReplayBuffer::default();
        for (i, n) in sizes.iter().enumerate() {
            b.push(i as u32 + 1, vec![i as u8; *n]);
        }
        b
    }

    #[test]
    fn packets_still_queued_in_the_peer_are_never_trimmed() {
        let mut b = buffer_with(&[10, 20, 30]);
        b.sync(3, 0);
        assert_eq!(b.len(), 3);
        // Two handed over, SCTP still buffers all their bytes.
        b.sync(1, 30);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn trims_what_sctp_no_longer_buffers() {
        let mut b = buffer_with(&[10, 20, 30]);
        b.sync(0, 60);
        assert_eq!(b.len(), 3);
        // 10 bytes acknowledged: the first packet is delivered.
        b.sync(0, 50);
        assert_eq!((b.len(), b.bytes()), (2, 50));
        // Part of the second is acknowledged: it stays.
        b.sync(0, 45);
        assert_eq!(b.len(), 2);
        b.sync(0, 30);
        assert_eq!(b.len(), 1);
        b.sync(0, 0);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn resume_drops_what_the_server_accepted_and_replays_the_rest_in_order() {
        let mut b = buffer_with(&[1, 2, 3, 4]);
        b.sync(1, 6); // three handed over, none acknowledged
        b.acknowledge_up_to(2);
        assert_eq!(b.len(), 2);
        let again = b.replay(2).unwrap();
        assert_eq!(again, vec![vec![2u8; 3], vec![3u8; 4]]);
        // Replayed packets count as queued again: SCTP's old buffered amount must not trim them.
        b.sync(2, 0);
        assert_eq!(b.len(), 2);
        b.sync(0, 0);
        assert!(b.is_empty());
    }

    #[test]
    fn replay_fails_when_needed_packets_were_forgotten() {
        let mut b = ReplayBuffer::with_cap(10);
        b.push(1, vec![0; 6]);
        b.push(2, vec![0; 6]); // forgets seq 1
        assert_eq!((b.len(), b.bytes()), (1, 6));
        assert_eq!(b.replay(0), Err(ReplayIncomplete { forgotten_up_to: 1 }));
        // The server already had seq 1: nothing lost.
        assert_eq!(b.replay(1).unwrap().len(), 1);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.replay(0).unwrap().len(), 0);
    }

    #[test]
    fn receive_states_drop_duplicates_per_sender() {
        let t0 = Instant::now();
        let mut r = ReceiveStates::default();
        assert!(r.accept(t0, "PA_a", 1));
        assert!(r.accept(t0, "PA_a", 2));
        assert!(!r.accept(t0, "PA_a", 2), "same sequence twice");
        assert!(!r.accept(t0, "PA_a", 1), "older sequence");
        assert!(r.accept(t0, "PA_a", 5), "gaps are fine");
        assert!(r.accept(t0, "PA_b", 1), "another sender has its own state");
        // Unsequenced packets are never deduplicated.
        assert!(r.accept(t0, "PA_a", 0));
        assert!(r.accept(t0, "PA_a", 0));
        assert!(r.accept(t0, "", 3));
        assert!(r.accept(t0, "", 3));
        let dup = proto::DataPacket {
            sequence: 5,
            participant_sid: "PA_a".into(),
            ..Default::default()
        };
        assert!(!r.accept_packet(t0, &dup));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn receive_states_expire_after_the_ttl_and_feed_sync_state() {
        let t0 = Instant::now();
        let mut r = ReceiveStates::default();
        r.accept(t0, "PA_b", 7);
        r.accept(t0 + Duration::from_secs(20), "PA_a", 3);
        let list = r.sync_state_list(t0 + Duration::from_secs(25));
        let pairs: Vec<_> = list
            .iter()
            .map(|s| (s.publisher_sid.as_str(), s.last_seq))
            .collect();
        assert_eq!(pairs, [("PA_a", 3), ("PA_b", 7)]);
        let list = r.sync_state_list(t0 + RECEIVE_STATE_TTL);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].publisher_sid, "PA_a");
        // An expired sender starts afresh.
        assert!(r.accept(t0 + RECEIVE_STATE_TTL, "PA_b", 1));
        r.expire(t0 + Duration::from_secs(120));
        assert!(r.is_empty());
    }

    fn request(id: &str) -> proto::DataPacket {
        proto::DataPacket {
            value: Some(proto::data_packet::Value::RpcRequest(proto::RpcRequest {
                id: id.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn v2_header(topic: &str, id: &str) -> proto::DataPacket {
        proto::DataPacket {
            value: Some(proto::data_packet::Value::StreamHeader(
                proto::data_stream::Header {
                    topic: topic.into(),
                    attributes: [(RPC_REQUEST_ID_ATTRIBUTE.to_owned(), id.to_owned())].into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn ledger_fails_only_written_unacknowledged_calls() {
        use proto::data_packet::Value;
        let now = Instant::now();
        let mut ledger = CallLedger::default();
        for id in ["acked", "lost", "queued", "answered"] {
            ledger.on_sent(now, &request(id));
        }
        ledger.on_sent(now, &v2_header(crate::live::rpc::RPC_REQUEST_TOPIC, "v2"));
        ledger.on_sent(now, &v2_header("other", "not-a-call"));
        let ack = |id: &str| proto::DataPacket {
            value: Some(Value::RpcAck(proto::RpcAck {
                request_id: id.into(),
            })),
            ..Default::default()
        };
        ledger.on_received(&ack("acked"));
        ledger.on_received(&ack("answered"));
        ledger.on_received(&proto::DataPacket {
            value: Some(Value::RpcResponse(proto::RpcResponse {
                request_id: "answered".into(),
                ..Default::default()
            })),
            ..Default::default()
        });
        assert_eq!(ledger.len(), 4);
        let resend = ["queued".to_owned()].into();
        let mut lost = ledger.take_unacknowledged(&resend);
        lost.sort();
        assert_eq!(lost, ["lost", "v2"]);
        assert_eq!(ledger.len(), 2, "acked and queued calls stay");
        ledger.on_received(&v2_header(crate::live::rpc::RPC_RESPONSE_TOPIC, "acked"));
        assert_eq!(ledger.len(), 1);
        let later = now + CALL_MEMORY;
        ledger.on_sent(later, &request("new"));
        assert_eq!(ledger.len(), 1, "old entries are forgotten");
    }

    #[test]
    fn chunks_of_streams_whose_header_was_lost_are_dropped() {
        use proto::data_packet::Value;
        let header = |id: &str| proto::DataPacket {
            value: Some(Value::StreamHeader(proto::data_stream::Header {
                stream_id: id.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let chunk = |id: &str| proto::DataPacket {
            value: Some(Value::StreamChunk(proto::data_stream::Chunk {
                stream_id: id.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let trailer = |id: &str| proto::DataPacket {
            value: Some(Value::StreamTrailer(proto::data_stream::Trailer {
                stream_id: id.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        // "old" started on the lost link; "new" starts in the unwritten batch and ends in a
        // batch held later.
        let mut unwritten = vec![chunk("old"), header("new"), chunk("new"), request("call")];
        let mut held = vec![trailer("old"), chunk("new"), trailer("new")];
        assert_eq!(drop_orphan_stream_packets(&mut [&mut unwritten, &mut held]), 2);
        assert_eq!(unwritten, [header("new"), chunk("new"), request("call")]);
        assert_eq!(held, [chunk("new"), trailer("new")]);
    }
}
