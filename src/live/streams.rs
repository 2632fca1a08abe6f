//! Sans-IO reassembly of incoming LiveKit data streams (header, chunks, trailer), with the
//! limits the engine needs (size, open streams, idle time). Outgoing streams are packetized
//! by `livekit-data-stream` (see `EngineTransport::send_bytes`).

use livekit_protocol as proto;
use proto::data_stream::header::ContentHeader;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Default cap on the size of one incoming stream.
pub const DEFAULT_MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on concurrently open incoming streams.
pub const DEFAULT_MAX_OPEN_STREAMS: usize = 64;
/// Default time an incoming stream may stay without progress before it is dropped.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A completely received data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteStream {
    /// Stream id.
    pub id: String,
    /// Identity of the sender.
    pub sender_identity: String,
    /// Topic.
    pub topic: String,
    /// Stream (file) name; empty for text streams.
    pub name: String,
    /// MIME type.
    pub mime_type: String,
    /// Header attributes, merged with the trailer's.
    pub attributes: HashMap<String, String>,
    /// Whether it was sent as a text stream (`data` is then UTF-8).
    pub is_text: bool,
    /// Sender's timestamp (ms since the epoch).
    pub timestamp_ms: i64,
    /// Content.
    pub data: Vec<u8>,
}

/// Why an incoming stream was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure {
    /// Stream id.
    pub id: String,
    /// Identity of the sender.
    pub sender_identity: String,
    /// Topic.
    pub topic: String,
    /// Reason.
    pub reason: String,
}

/// Result of feeding a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A stream finished.
    Complete(ByteStream),
    /// A stream was dropped.
    Failed(StreamFailure),
}

#[derive(Debug)]
struct Open {
    stream: ByteStream,
    total_length: Option<u64>,
    next_chunk: u64,
    last_progress: Instant,
}

/// Reassembles incoming streams, keyed by (sender, stream id).
#[derive(Debug)]
pub struct StreamReassembler {
    open: HashMap<(String, String), Open>,
    max_stream_bytes: usize,
    max_open: usize,
    idle_timeout: Duration,
}

impl Default for StreamReassembler {
    fn default() -> Self {
        Self::new(
            DEFAULT_MAX_STREAM_BYTES,
            DEFAULT_MAX_OPEN_STREAMS,
            DEFAULT_STREAM_IDLE_TIMEOUT,
        )
    }
}

impl StreamReassembler {
    /// Creates a reassembler with the given limits.
    pub fn new(max_stream_bytes: usize, max_open: usize, idle_timeout: Duration) -> Self {
        StreamReassembler {
            open: HashMap::new(),
            max_stream_bytes,
            max_open,
            idle_timeout,
        }
    }

    fn fail(&mut self, key: &(String, String), reason: String) -> Option<StreamEvent> {
        self.open.remove(key).map(|o| {
            StreamEvent::Failed(StreamFailure {
                id: o.stream.id,
                sender_identity: o.stream.sender_identity,
                topic: o.stream.topic,
                reason,
            })
        })
    }

    /// Feeds a stream header.
    pub fn handle_header(
        &mut self,
        now: Instant,
        sender: &str,
        h: proto::data_stream::Header,
    ) -> Option<StreamEvent> {
        let failure = |reason: &str| {
            Some(StreamEvent::Failed(StreamFailure {
                id: h.stream_id.clone(),
                sender_identity: sender.to_string(),
                topic: h.topic.clone(),
                reason: reason.to_string(),
            }))
        };
        if h.stream_id.is_empty() {
            return failure("empty stream id");
        }
        #[allow(deprecated)] // still set by senders that encrypt
        let encrypted = h.encryption_type != proto::encryption::Type::None as i32;
        if encrypted {
            return failure("encrypted streams are not supported");
        }
        if h.compression != 0 {
            return failure("compressed streams are not supported");
        }
        if h.total_length.is_some_and(|l| l > self.max_stream_bytes as u64) {
            return failure("stream larger than the configured limit");
        }
        let key = (sender.to_string(), h.stream_id.clone());
        if !self.open.contains_key(&key) && self.open.len() >= self.max_open {
            return failure("too many open streams");
        }
        let (is_text, name) = match &h.content_header {
            Some(ContentHeader::ByteHeader(b)) => (false, b.name.clone()),
            Some(ContentHeader::TextHeader(_)) => (true, String::new()),
            None => (false, String::new()),
        };
        let stream = ByteStream {
            id: h.stream_id.clone(),
            sender_identity: sender.to_string(),
            topic: h.topic.clone(),
            name,
            mime_type: h.mime_type.clone(),
            attributes: h.attributes.clone(),
            is_text,
            timestamp_ms: h.timestamp,
            data: Vec::with_capacity(
                h.total_length
                    .map_or(0, |l| l.min(self.max_stream_bytes as u64) as usize),
            ),
        };
        if let Some(inline) = h.inline_content {
            // Single-packet stream: complete at once.
            let mut stream = stream;
            if inline.len() > self.max_stream_bytes {
                return failure("stream larger than the configured limit");
            }
            stream.data = inline;
            return Some(StreamEvent::Complete(stream));
        }
        self.open.insert(
            key,
            Open {
                stream,
                total_length: h.total_length,
                next_chunk: 0,
                last_progress: now,
            },
        );
        None
    }

    /// Feeds a chunk.
    pub fn handle_chunk(
        &mut self,
        now: Instant,
        sender: &str,
        c: proto::data_stream::Chunk,
    ) -> Option<StreamEvent> {
        let key = (sender.to_string(), c.stream_id.clone());
        let Some(open) = self.open.get_mut(&key) else {
            log::debug!("chunk for unknown stream {}", c.stream_id);
            return None;
        };
        if c.chunk_index != open.next_chunk {
            let reason = format!(
                "chunk {} out of order (expected {})",
                c.chunk_index, open.next_chunk
            );
            return self.fail(&key, reason);
        }
        #[allow(deprecated)]
        let encrypted = c.iv.as_ref().is_some_and(|iv| !iv.is_empty());
        if encrypted {
            return self.fail(&key, "encrypted chunk".into());
        }
        if open.stream.data.len() + c.content.len() > self.max_stream_bytes {
            return self.fail(&key, "stream larger than the configured limit".into());
        }
        open.stream.data.extend_from_slice(&c.content);
        open.next_chunk += 1;
        open.last_progress = now;
        None
    }

    /// Feeds a trailer; completes the stream.
    pub fn handle_trailer(&mut self, sender: &str, t: proto::data_stream::Trailer) -> Option<StreamEvent> {
        let key = (sender.to_string(), t.stream_id.clone());
        let mut open = self.open.remove(&key)?;
        if let Some(total) = open.total_length {
            if total != open.stream.data.len() as u64 {
                let reason = if t.reason.is_empty() {
                    format!("stream ended after {} of {} bytes", open.stream.data.len(), total)
                } else {
                    t.reason
                };
                return Some(StreamEvent::Failed(StreamFailure {
                    id: open.stream.id,
                    sender_identity: open.stream.sender_identity,
                    topic: open.stream.topic,
                    reason,
                }));
            }
        }
        open.stream.attributes.extend(t.attributes);
        Some(StreamEvent::Complete(open.stream))
    }

    /// The sender left: its open streams fail.
    pub fn participant_left(&mut self, identity: &str) -> Vec<StreamEvent> {
        let keys: Vec<_> = self.open.keys().filter(|(s, _)| s == identity).cloned().collect();
        keys.iter()
            .filter_map(|k| self.fail(k, "sender left".into()))
            .collect()
    }

    /// Earliest instant at which an idle stream expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|o| o.last_progress + self.idle_timeout)
            .min()
    }

    /// Drops streams idle for longer than the idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<StreamEvent> {
        let idle = self.idle_timeout;
        let keys: Vec<_> = self
            .open
            .iter()
            .filter(|(_, o)| o.last_progress + idle <= now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| self.fail(k, "stream idle for too long".into()))
            .collect()
    }

    /// Number of streams being received.
    pub fn open_streams(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::data_packet::Value;

    /// Bytes of content per chunk packet (same as LiveKit's SDKs).
    const CHUNK_SIZE: usize = 15_000;

    /// Description of an outgoing byte stream.
    #[derive(Debug, Clone, Default)]
    struct OutgoingByteStream {
        /// Stream id (random if empty).
        pub id: String,
        /// Topic.
        pub topic: String,
        /// Stream (file) name.
        pub name: String,
        /// MIME type (`application/octet-stream` if empty).
        pub mime_type: String,
        /// Attributes.
        pub attributes: HashMap<String, String>,
        /// Destination identities (everybody if empty).
        pub destinations: Vec<String>,
    }

    /// Classic packetization (header, chunks, trailer), as LiveKit's SDKs send a byte stream.
    fn byte_stream_packets(s: &OutgoingByteStream, data: &[u8], timestamp_ms: i64) -> Vec<proto::DataPacket> {
        let packet = |value| proto::DataPacket {
            destination_identities: s.destinations.clone(),
            value: Some(value),
            ..Default::default()
        };
        let mime_type = if s.mime_type.is_empty() {
            "application/octet-stream".to_string()
        } else {
            s.mime_type.clone()
        };
        let mut out = Vec::with_capacity(data.len() / CHUNK_SIZE + 3);
        out.push(packet(Value::StreamHeader(proto::data_stream::Header {
            stream_id: s.id.clone(),
            timestamp: timestamp_ms,
            topic: s.topic.clone(),
            mime_type,
            total_length: Some(data.len() as u64),
            attributes: s.attributes.clone(),
            content_header: Some(ContentHeader::ByteHeader(proto::data_stream::ByteHeader {
                name: s.name.clone(),
            })),
            ..Default::default()
        })));
        for (i, chunk) in data.chunks(CHUNK_SIZE).enumerate() {
            out.push(packet(Value::StreamChunk(proto::data_stream::Chunk {
                stream_id: s.id.clone(),
                chunk_index: i as u64,
                content: chunk.to_vec(),
                ..Default::default()
            })));
        }
        out.push(packet(Value::StreamTrailer(proto::data_stream::Trailer {
            stream_id: s.id.clone(),
            ..Default::default()
        })));
        out
    }

    fn feed(r: &mut StreamReassembler, sender: &str, pkts: Vec<proto::DataPacket>) -> Vec<StreamEvent> {
        let now = Instant::now();
        let mut out = Vec::new();
        for p in pkts {
            let ev = match p.value.unwrap() {
                Value::StreamHeader(h) => r.handle_header(now, sender, h),
                Value::StreamChunk(c) => r.handle_chunk(now, sender, c),
                Value::StreamTrailer(t) => r.handle_trailer(sender, t),
                _ => None,
            };
            out.extend(ev);
        }
        out
    }

    fn desc() -> OutgoingByteStream {
        OutgoingByteStream {
            id: "s1".into(),
            topic: "menlo.camera_capture".into(),
            name: "frame.jpg".into(),
            mime_type: "image/jpeg".into(),
            attributes: [("request_id".to_string(), "r1".to_string())].into(),
            destinations: vec!["me".into()],
        }
    }

    #[test]
    fn jpeg_sized_round_trip() {
        let data: Vec<u8> = (0..1280 * 720 / 4).map(|i| (i % 251) as u8).collect();
        let pkts = byte_stream_packets(&desc(), &data, 1);
        assert_eq!(pkts.len(), data.len().div_ceil(CHUNK_SIZE) + 2);
        let mut r = StreamReassembler::default();
        let ev = feed(&mut r, "robot", pkts);
        assert_eq!(ev.len(), 1);
        let StreamEvent::Complete(s) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(s.data, data);
        assert_eq!(s.topic, "menlo.camera_capture");
        assert_eq!(s.name, "frame.jpg");
        assert_eq!(s.attributes["request_id"], "r1");
        assert_eq!(s.sender_identity, "robot");
        assert_eq!(r.open_streams(), 0);
    }

    #[test]
    fn out_of_order_and_oversize_fail() {
        let data = vec![7u8; CHUNK_SIZE * 3];
        let mut pkts = byte_stream_packets(&desc(), &data, 1);
        pkts.swap(1, 2);
        let ev = feed(&mut StreamReassembler::default(), "robot", pkts);
        assert!(matches!(&ev[0], StreamEvent::Failed(f) if f.reason.contains("out of order")));

        let mut small = StreamReassembler::new(CHUNK_SIZE, 4, DEFAULT_STREAM_IDLE_TIMEOUT);
        let ev = feed(&mut small, "robot", byte_stream_packets(&desc(), &data, 1));
        assert!(matches!(&ev[0], StreamEvent::Failed(f) if f.reason.contains("limit")));
    }

    #[test]
    fn truncated_stream_and_sender_leaving() {
        let data = vec![1u8; CHUNK_SIZE * 2];
        let mut pkts = byte_stream_packets(&desc(), &data, 1);
        pkts.remove(2);
        let ev = feed(&mut StreamReassembler::default(), "robot", pkts.clone());
        assert!(matches!(&ev[0], StreamEvent::Failed(_)));

        let mut r = StreamReassembler::default();
        feed(&mut r, "robot", pkts[..2].to_vec());
        assert_eq!(r.open_streams(), 1);
        assert_eq!(r.participant_left("robot").len(), 1);
        assert_eq!(r.open_streams(), 0);
    }

    #[test]
    fn idle_streams_expire_and_inline_completes() {
        let mut r = StreamReassembler::new(1 << 20, 4, Duration::from_secs(1));
        let now = Instant::now();
        let pkts = byte_stream_packets(&desc(), &[1, 2, 3], 1);
        if let Some(Value::StreamHeader(h)) = pkts[0].value.clone() {
            assert!(r.handle_header(now, "x", h.clone()).is_none());
            assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(1)));
            assert_eq!(r.handle_timeout(now + Duration::from_secs(1)).len(), 1);
            let mut inline = h;
            inline.inline_content = Some(vec![9, 9]);
            assert!(
                matches!(r.handle_header(now, "x", inline), Some(StreamEvent::Complete(s)) if s.data == vec![9, 9])
            );
        }
    }

    /// What the engine sends (livekit-data-stream's packetizer) reassembles here, for a
    /// recipient that advertises nothing (classic chunks) and one on data streams v2 (inline).
    #[test]
    fn livekit_data_stream_packets_reassemble() {
        use livekit_common::{ClientCapability, ParticipantIdentity, RemoteParticipantRegistry};
        use livekit_data_stream::api::SendByteOptions;
        struct Registry(i32);
        impl RemoteParticipantRegistry for Registry {
            fn remote_client_protocol(&self, _: &ParticipantIdentity) -> i32 {
                self.0
            }
            fn remote_capabilities(&self, _: &ParticipantIdentity) -> Vec<ClientCapability> {
                Vec::new()
            }
            fn remote_identities(&self) -> Vec<ParticipantIdentity> {
                vec!["me".into()]
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for (protocol, data) in [(0, vec![5u8; CHUNK_SIZE * 2 + 7]), (2, vec![6u8; 100])] {
            let packets = rt.block_on(async {
                let (manager, mut rx) = livekit_data_stream::backend::outgoing::Manager::new();
                let pump = tokio::spawn(async move {
                    let (batch, responder) = rx.recv().await.unwrap();
                    let _ = responder.respond(Ok(()));
                    batch
                });
                let mut options = SendByteOptions::new_with_topic("menlo.camera_capture");
                options.name = Some("frame.jpg".into());
                options.attributes.insert("request_id".into(), "r1".into());
                options.destination_identities = vec!["me".into()];
                manager
                    .send_bytes(&data, options, &Registry(protocol))
                    .await
                    .unwrap();
                pump.await.unwrap()
            });
            assert_eq!(packets.len(), if protocol == 0 { 5 } else { 1 }, "{protocol}");
            let ev = feed(&mut StreamReassembler::default(), "robot", packets);
            let [StreamEvent::Complete(s)] = ev.as_slice() else {
                panic!("{ev:?}")
            };
            assert_eq!(
                (s.data.as_slice(), s.name.as_str()),
                (data.as_slice(), "frame.jpg")
            );
            assert_eq!(s.attributes["request_id"], "r1");
            assert_eq!(s.topic, "menlo.camera_capture");
        }
    }
}
