//! Incoming LiveKit data streams.
//!
//! Reassembly is `livekit-data-stream`'s incoming manager (chunk order, declared lengths,
//! size cap, decompression, RPC v2 text streams). In front of it, [`StreamGate`] adds the
//! limits the engine needs and the manager lacks: at most [`DEFAULT_MAX_OPEN_STREAMS`] streams
//! in flight and an idle timeout (an idle stream is ended with a trailer carrying the reason,
//! so its reader fails instead of waiting forever). [`collect`] turns a finished reader into
//! the [`ByteStream`] the room hands out. Outgoing streams are packetized by the outgoing
//! manager (see `EngineTransport::send_bytes`).

use livekit_data_stream::api::{AnyStreamReader, StreamReader as _};
use livekit_protocol as proto;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Default cap on the size of one incoming stream.
pub const DEFAULT_MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on concurrently open incoming streams.
pub const DEFAULT_MAX_OPEN_STREAMS: usize = 64;
/// Default time an incoming stream may stay without progress before it is dropped.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Trailer reason of a stream ended for idleness.
pub const IDLE_REASON: &str = "stream idle for too long";

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

/// Admission control in front of the incoming stream manager, keyed by (sender, stream id).
#[derive(Debug)]
pub struct StreamGate {
    open: HashMap<(String, String), Instant>,
    max_open: usize,
    idle_timeout: Duration,
}

impl Default for StreamGate {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_OPEN_STREAMS, DEFAULT_STREAM_IDLE_TIMEOUT)
    }
}

impl StreamGate {
    /// Creates a gate with the given limits.
    pub fn new(max_open: usize, idle_timeout: Duration) -> Self {
        StreamGate {
            open: HashMap::new(),
            max_open,
            idle_timeout,
        }
    }

    /// A header arrived: admit it (pass it on) or refuse it with the failure to report.
    pub fn header(
        &mut self,
        now: Instant,
        sender: &str,
        h: &proto::data_stream::Header,
    ) -> Result<(), StreamFailure> {
        let failure = |reason: &str| StreamFailure {
            id: h.stream_id.clone(),
            sender_identity: sender.to_string(),
            topic: h.topic.clone(),
            reason: reason.to_string(),
        };
        if h.stream_id.is_empty() {
            return Err(failure("empty stream id"));
        }
        #[allow(deprecated)] // still set by senders that encrypt
        let encrypted = h.encryption_type != proto::encryption::Type::None as i32;
        if encrypted {
            return Err(failure("encrypted streams are not supported"));
        }
        if h.inline_content.is_some() {
            return Ok(()); // complete in one packet: nothing stays open
        }
        let key = (sender.to_string(), h.stream_id.clone());
        if !self.open.contains_key(&key) && self.open.len() >= self.max_open {
            return Err(failure("too many open streams"));
        }
        self.open.insert(key, now);
        Ok(())
    }

    /// A chunk arrived; true if it belongs to an admitted stream (then pass it on).
    pub fn chunk(&mut self, now: Instant, sender: &str, stream_id: &str) -> bool {
        match self.open.get_mut(&(sender.to_string(), stream_id.to_string())) {
            Some(last) => {
                *last = now;
                true
            }
            None => false,
        }
    }

    /// A trailer arrived; true if it ends an admitted stream (then pass it on).
    pub fn trailer(&mut self, sender: &str, stream_id: &str) -> bool {
        self.open
            .remove(&(sender.to_string(), stream_id.to_string()))
            .is_some()
    }

    /// The sender left: forget its streams (the manager aborts them).
    pub fn participant_left(&mut self, identity: &str) {
        self.open.retain(|(sender, _), _| sender != identity);
    }

    /// Earliest instant at which an idle stream expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open.values().min().map(|t| *t + self.idle_timeout)
    }

    /// Forgets streams idle for longer than the idle timeout; returns their (sender, id), to
    /// be ended with an [`IDLE_REASON`] trailer.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(String, String)> {
        let idle = self.idle_timeout;
        let expired: Vec<_> = self
            .open
            .iter()
            .filter(|(_, last)| **last + idle <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.open.remove(k);
        }
        expired
    }

    /// Number of streams in flight.
    #[cfg(test)]
    pub fn open_streams(&self) -> usize {
        self.open.len()
    }
}

/// The trailer that ends an idle stream.
pub fn idle_trailer(stream_id: &str) -> proto::data_stream::Trailer {
    proto::data_stream::Trailer {
        stream_id: stream_id.to_string(),
        reason: IDLE_REASON.to_string(),
        ..Default::default()
    }
}

/// Reads a stream opened by the incoming manager to its end.
pub async fn collect(reader: AnyStreamReader, sender: String) -> Result<ByteStream, StreamFailure> {
    match reader {
        AnyStreamReader::Byte(r) => {
            let info = r.info();
            let stream = ByteStream {
                id: info.id.clone(),
                sender_identity: sender,
                topic: info.topic.clone(),
                name: info.name.clone(),
                mime_type: info.mime_type.clone(),
                attributes: info.attributes(),
                is_text: false,
                timestamp_ms: info.timestamp.timestamp_millis(),
                data: Vec::new(),
            };
            with_data(stream, r.read_all().await.map(|data| data.to_vec()))
        }
        AnyStreamReader::Text(r) => {
            let info = r.info();
            let stream = ByteStream {
                id: info.id.clone(),
                sender_identity: sender,
                topic: info.topic.clone(),
                name: String::new(),
                mime_type: info.mime_type.clone(),
                attributes: info.attributes(),
                is_text: true,
                timestamp_ms: info.timestamp.timestamp_millis(),
                data: Vec::new(),
            };
            with_data(stream, r.read_all().await.map(String::into_bytes))
        }
    }
}

/// The described `stream` with its content, or the failure that cut it off.
fn with_data(
    mut stream: ByteStream,
    read: Result<Vec<u8>, impl std::fmt::Display>,
) -> Result<ByteStream, StreamFailure> {
    match read {
        Ok(data) => {
            stream.data = data;
            Ok(stream)
        }
        Err(e) => Err(StreamFailure {
            id: stream.id,
            sender_identity: stream.sender_identity,
            topic: stream.topic,
            reason: e.to_string(),
        }),
    }
}

/// Feeds packets through `gate` into a fresh incoming manager, as the engine does, and
/// collects every stream that comes out (for tests and fuzzing; blocks on a runtime of its own).
#[cfg(any(test, fuzzing))]
pub(crate) fn receive(
    gate: &mut StreamGate,
    max_bytes: usize,
    sender: &str,
    pkts: Vec<proto::DataPacket>,
    idle_at: Option<Instant>,
) -> Vec<Result<ByteStream, StreamFailure>> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return Vec::new();
    };
    rt.block_on(async {
        let (manager, input, mut output) =
            livekit_data_stream::backend::incoming::Manager::new(Some(max_bytes));
        tokio::spawn(manager.run());
        let now = Instant::now();
        let mut refused = Vec::new();
        let feed = |packet: livekit_data_stream::backend::Packet| {
            let event = livekit_data_stream::backend::incoming::PacketReceived::new(packet, sender.into());
            let _ = input.send(event.into());
        };
        let none = livekit_common::EncryptionType::None;
        for p in pkts {
            match p.value.unwrap() {
                proto::data_packet::Value::StreamHeader(h) => match gate.header(now, sender, &h) {
                    Ok(()) => feed(livekit_data_stream::backend::Packet::Header {
                        header: h.into(),
                        encryption_type: none,
                    }),
                    Err(f) => refused.push(Err(f)),
                },
                proto::data_packet::Value::StreamChunk(c) if gate.chunk(now, sender, &c.stream_id) => {
                    feed(livekit_data_stream::backend::Packet::Chunk {
                        chunk: c.into(),
                        encryption_type: none,
                    })
                }
                proto::data_packet::Value::StreamTrailer(t) if gate.trailer(sender, &t.stream_id) => {
                    feed(livekit_data_stream::backend::Packet::Trailer {
                        trailer: t.into(),
                        encryption_type: none,
                    })
                }
                _ => {}
            }
        }
        if let Some(at) = idle_at {
            for (_, id) in gate.handle_timeout(at) {
                feed(livekit_data_stream::backend::Packet::Trailer {
                    trailer: idle_trailer(&id).into(),
                    encryption_type: none,
                });
            }
        }
        let _ = input.send(livekit_data_stream::backend::incoming::InputEvent::Shutdown);
        let mut out = refused;
        while let Some(ev) = output.recv().await {
            if let livekit_data_stream::backend::incoming::OutputEvent::StreamOpened(o) = ev {
                out.push(collect(o.stream_reader, o.participant_identity.0).await);
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::data_packet::Value;
    use proto::data_stream::header::ContentHeader;

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
        let mut gate = StreamGate::default();
        let out = receive(&mut gate, DEFAULT_MAX_STREAM_BYTES, "robot", pkts, None);
        let [Ok(s)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(s.data, data);
        assert_eq!(s.topic, "menlo.camera_capture");
        assert_eq!(s.name, "frame.jpg");
        assert_eq!(s.mime_type, "image/jpeg");
        assert_eq!(s.attributes["request_id"], "r1");
        assert_eq!(s.sender_identity, "robot");
        assert_eq!(s.timestamp_ms, 1);
        assert_eq!(gate.open_streams(), 0);
    }

    #[test]
    fn out_of_order_oversize_and_truncated_fail() {
        let data = vec![7u8; CHUNK_SIZE * 3];
        let mut pkts = byte_stream_packets(&desc(), &data, 1);
        pkts.swap(1, 2);
        let out = receive(
            &mut StreamGate::default(),
            DEFAULT_MAX_STREAM_BYTES,
            "robot",
            pkts,
            None,
        );
        assert!(matches!(out.as_slice(), [Err(f)] if f.id == "s1"), "{out:?}");

        let pkts = byte_stream_packets(&desc(), &data, 1);
        let out = receive(&mut StreamGate::default(), CHUNK_SIZE, "robot", pkts, None);
        assert!(
            matches!(out.as_slice(), [Err(f)] if f.topic == "menlo.camera_capture"),
            "{out:?}"
        );

        let mut pkts = byte_stream_packets(&desc(), &data, 1);
        pkts.remove(2);
        let out = receive(
            &mut StreamGate::default(),
            DEFAULT_MAX_STREAM_BYTES,
            "robot",
            pkts,
            None,
        );
        assert!(matches!(out.as_slice(), [Err(_)]), "{out:?}");
    }

    #[test]
    fn gate_limits_open_and_idle_streams() {
        let now = Instant::now();
        let mut gate = StreamGate::new(2, Duration::from_secs(1));
        let header = |id: &str| proto::data_stream::Header {
            stream_id: id.into(),
            topic: "t".into(),
            ..Default::default()
        };
        assert!(gate.header(now, "a", &header("1")).is_ok());
        assert!(gate.header(now, "b", &header("1")).is_ok());
        let refused = gate.header(now, "a", &header("2")).unwrap_err();
        assert_eq!(refused.reason, "too many open streams");
        let mut inline = header("3");
        inline.inline_content = Some(vec![1]);
        assert!(
            gate.header(now, "a", &inline).is_ok(),
            "inline streams never stay open"
        );
        assert!(gate.header(now, "a", &header("")).is_err());
        assert!(!gate.chunk(now, "a", "2"));
        assert!(gate.chunk(now + Duration::from_millis(500), "a", "1"));
        assert_eq!(gate.poll_timeout(), Some(now + Duration::from_secs(1)));
        assert_eq!(
            gate.handle_timeout(now + Duration::from_secs(1)),
            vec![("b".into(), "1".into())]
        );
        gate.participant_left("a");
        assert_eq!(gate.open_streams(), 0);
        assert!(!gate.trailer("a", "1"));

        // An idle stream's reader fails with the reason.
        let data = vec![1u8; CHUNK_SIZE * 2];
        let pkts = byte_stream_packets(&desc(), &data, 1);
        let later = Instant::now() + DEFAULT_STREAM_IDLE_TIMEOUT + Duration::from_secs(1);
        let out = receive(
            &mut StreamGate::default(),
            DEFAULT_MAX_STREAM_BYTES,
            "robot",
            pkts[..2].to_vec(),
            Some(later),
        );
        assert!(
            matches!(out.as_slice(), [Err(f)] if f.reason.contains(IDLE_REASON)),
            "{out:?}"
        );
    }

    #[test]
    fn text_and_inline_streams() {
        let mut h = proto::data_stream::Header {
            stream_id: "x".into(),
            topic: "chat".into(),
            mime_type: "text/plain".into(),
            total_length: Some(2),
            inline_content: Some(b"hi".to_vec()),
            content_header: Some(proto::data_stream::header::ContentHeader::TextHeader(
                Default::default(),
            )),
            ..Default::default()
        };
        let packet = |h: proto::data_stream::Header| proto::DataPacket {
            value: Some(Value::StreamHeader(h)),
            ..Default::default()
        };
        let out = receive(
            &mut StreamGate::default(),
            1024,
            "p",
            vec![packet(h.clone())],
            None,
        );
        assert!(
            matches!(out.as_slice(), [Ok(s)] if s.is_text && s.data == b"hi"),
            "{out:?}"
        );
        h.inline_content = Some(vec![0; 2048]);
        h.total_length = None;
        let out = receive(&mut StreamGate::default(), 1024, "p", vec![packet(h)], None);
        assert!(matches!(out.as_slice(), [Err(_)]), "over the cap: {out:?}");
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
            let out = receive(
                &mut StreamGate::default(),
                DEFAULT_MAX_STREAM_BYTES,
                "robot",
                packets,
                None,
            );
            let [Ok(s)] = out.as_slice() else {
                panic!("{out:?}")
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
