//! ICE over TCP (RFC 6544): the RFC 4571 framing and one task per TCP connection.
//!
//! On a TCP connection every STUN, DTLS (or RTP) packet is preceded by its length as two
//! big-endian bytes. [`encode`] and [`Deframer`] are sans-IO: they only move bytes, so the
//! framing is tested (and fuzzed) without sockets. [`spawn_connection`] runs one connection to a
//! remote passive candidate on the executor: connect (bounded), then frame what the engine sends
//! and de-frame what arrives, reporting everything as [`TcpEvent`]s.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Largest packet a frame can carry (the length prefix is 16 bits).
#[cfg_attr(not(any(test, fuzzing)), allow(dead_code))]
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// Bytes of the length prefix.
const PREFIX_LEN: usize = 2;

/// Framing failures. None is fatal to the room: the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A packet does not fit a frame.
    #[error("packet of {0} bytes exceeds the 65535-byte ICE-TCP frame")]
    TooLarge(usize),
    /// A frame holds something that is neither STUN, DTLS nor RTP: the peer does not speak
    /// ICE-TCP (or the stream lost its framing).
    #[error("not an ICE-TCP stream: a frame starts with byte {0:#04x}")]
    NotIce(u8),
}

/// Appends `packet` to `out` as one frame.
pub fn encode(packet: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = u16::try_from(packet.len()).map_err(|_| FrameError::TooLarge(packet.len()))?;
    out.reserve(PREFIX_LEN + packet.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    Ok(())
}

/// Whether `first` can start a packet ICE-TCP carries (RFC 7983 demultiplexing: STUN 0–3,
/// DTLS 20–63, RTP/RTCP 128–191).
fn is_ice_packet_start(first: u8) -> bool {
    matches!(first, 0..=3 | 20..=63 | 128..=191)
}

/// Splits a TCP byte stream back into packets, whatever the read boundaries: a frame split
/// over several reads waits for its rest, several frames in one read all come out. Zero-length
/// frames carry nothing and are skipped. Holds at most one partial frame plus the last read.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf` (compacted on the next push).
    read: usize,
}

impl Deframer {
    /// A deframer with nothing buffered.
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.read > 0 {
            self.buf.drain(..self.read);
            self.read = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete packet, `Ok(None)` when more bytes are needed. After an error the
    /// stream cannot be trusted: drop the connection.
    pub fn next_packet(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            let pending = &self.buf[self.read..];
            let Some((prefix, rest)) = pending.split_first_chunk::<PREFIX_LEN>() else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes(*prefix));
            if len == 0 {
                self.read += PREFIX_LEN;
                continue;
            }
            let Some(packet) = rest.get(..len) else {
                return Ok(None);
            };
            if !is_ice_packet_start(packet[0]) {
                return Err(FrameError::NotIce(packet[0]));
            }
            let packet = packet.to_vec();
            self.read += PREFIX_LEN + len;
            return Ok(Some(packet));
        }
    }

    /// Bytes received but not yet returned as packets.
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.read
    }
}

/// Why a TCP path failed (addresses only, never credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpFailure {
    /// The server answered the connect with a reset (nothing listens there).
    Refused,
    /// The connect did not complete within the connect timeout.
    TimedOut,
    /// Anything else (unreachable network, reset, framing), with the reason.
    Failed(String),
}

impl std::fmt::Display for TcpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TcpFailure::Refused => f.write_str("connection refused"),
            TcpFailure::TimedOut => f.write_str("connect timed out"),
            TcpFailure::Failed(why) => f.write_str(why),
        }
    }
}

impl From<std::io::Error> for TcpFailure {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => TcpFailure::Refused,
            std::io::ErrorKind::TimedOut => TcpFailure::TimedOut,
            _ => TcpFailure::Failed(e.to_string()),
        }
    }
}

/// What a connection task reports. `id` tells connections to the same address apart.
#[derive(Debug)]
pub enum TcpEvent {
    /// The connection is established.
    Connected {
        /// The connection.
        id: u64,
    },
    /// A packet arrived.
    Packet {
        /// The connection.
        id: u64,
        /// The packet, without its length prefix.
        data: Vec<u8>,
    },
    /// The connection failed or was closed by the peer; the task has ended.
    Closed {
        /// The connection.
        id: u64,
        /// Why.
        failure: TcpFailure,
    },
}

/// Packets queued for a connection that is still connecting or slow; more are dropped, as a
/// full UDP socket would (ICE and SCTP retransmit).
pub const OUTGOING_QUEUE: usize = 256;

/// The engine's side of a connection task: packets to send. Dropping it ends the task.
#[derive(Debug)]
pub struct TcpConnection {
    outgoing: mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpConnection {
    /// Queues `packet` for sending; false when the queue is full or the task ended.
    pub fn send(&self, packet: Vec<u8>) -> bool {
        self.outgoing.try_send(packet).is_ok()
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a connection to `remote` on the current tokio runtime (nodelay, connect bounded by
/// `connect_timeout`) and runs it until it fails or the returned handle is dropped.
pub fn spawn_connection(
    id: u64,
    remote: SocketAddr,
    connect_timeout: Duration,
    events: mpsc::UnboundedSender<TcpEvent>,
) -> TcpConnection {
    let (outgoing, queued) = mpsc::channel(OUTGOING_QUEUE);
    let task = tokio::spawn(async move {
        let failure = run_connection(id, remote, connect_timeout, queued, &events).await;
        let _ = events.send(TcpEvent::Closed { id, failure });
    });
    TcpConnection { outgoing, task }
}

async fn run_connection(
    id: u64,
    remote: SocketAddr,
    connect_timeout: Duration,
    mut queued: mpsc::Receiver<Vec<u8>>,
    events: &mpsc::UnboundedSender<TcpEvent>,
) -> TcpFailure {
    let stream = match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(remote)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return e.into(),
        Err(_) => return TcpFailure::TimedOut,
    };
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("ICE-TCP {remote}: nodelay not set: {e}");
    }
    let _ = events.send(TcpEvent::Connected { id });
    let (mut reader, mut writer) = stream.into_split();
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut framed = Vec::new();
    loop {
        tokio::select! {
            packet = queued.recv() => {
                let Some(packet) = packet else {
                    return TcpFailure::Failed("closed locally".into());
                };
                framed.clear();
                if let Err(e) = encode(&packet, &mut framed) {
                    log::debug!("ICE-TCP {remote}: {e}");
                    continue;
                }
                if let Err(e) = writer.write_all(&framed).await {
                    return e.into();
                }
            }
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return TcpFailure::Failed("closed by the server".into()),
                    Ok(n) => n,
                    Err(e) => return e.into(),
                };
                deframer.push(&buf[..n]);
                loop {
                    match deframer.next_packet() {
                        Ok(Some(data)) => {
                            let _ = events.send(TcpEvent::Packet { id, data });
                        }
                        Ok(None) => break,
                        Err(e) => return TcpFailure::Failed(e.to_string()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_like(len: usize, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; len];
        p[0] = 0x01;
        p
    }

    fn framed(packets: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            encode(p, &mut out).unwrap();
        }
        out
    }

    fn drain(d: &mut Deframer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(p) = d.next_packet().unwrap() {
            out.push(p);
        }
        out
    }

    #[test]
    fn encode_prefixes_the_big_endian_length() {
        let mut out = Vec::new();
        encode(&[0x00, 0x01, 0x02], &mut out).unwrap();
        assert_eq!(out, [0x00, 0x03, 0x00, 0x01, 0x02]);
        let big = stun_like(0x1234, 7);
        let mut out = Vec::new();
        encode(&big, &mut out).unwrap();
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(out.len(), 2 + 0x1234);
    }

    #[test]
    fn the_cap_is_65535_bytes() {
        let mut out = Vec::new();
        encode(&stun_like(MAX_FRAME_LEN, 1), &mut out).unwrap();
        assert_eq!(&out[..2], &[0xff, 0xff]);
        let mut d = Deframer::new();
        d.push(&out);
        assert_eq!(drain(&mut d), [stun_like(MAX_FRAME_LEN, 1)]);
        assert_eq!(
            encode(&stun_like(MAX_FRAME_LEN + 1, 1), &mut Vec::new()),
            Err(FrameError::TooLarge(MAX_FRAME_LEN + 1))
        );
    }

    #[test]
    fn merged_reads_yield_every_packet_in_order() {
        let packets = vec![stun_like(20, 1), vec![22, 9, 9], stun_like(1, 0), vec![128]];
        let mut d = Deframer::new();
        d.push(&framed(&packets));
        assert_eq!(drain(&mut d), packets);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn split_reads_wait_for_the_rest_at_every_boundary() {
        let packets = vec![stun_like(300, 5), vec![23, 1, 2, 3], stun_like(2, 2)];
        let stream = framed(&packets);
        for chunk in [1, 2, 3, 7, 299, 301] {
            let mut d = Deframer::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                got.extend(drain(&mut d));
            }
            assert_eq!(got, packets, "chunks of {chunk}");
            assert_eq!(d.buffered(), 0);
        }
        // A lone prefix byte, then the rest.
        let mut d = Deframer::new();
        d.push(&stream[..1]);
        assert_eq!(d.next_packet(), Ok(None));
        d.push(&stream[1..]);
        assert_eq!(drain(&mut d), packets);
    }

    #[test]
    fn zero_length_frames_are_skipped() {
        let mut d = Deframer::new();
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_packet(), Ok(None));
        d.push(&[0, 1, 0x01, 0, 0]);
        assert_eq!(drain(&mut d), [vec![0x01]]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Deframer::new();
        // A length prefix that happens to fit, then text: not ICE.
        d.push(b"\x00\x04GET /");
        assert_eq!(d.next_packet(), Err(FrameError::NotIce(b'G')));
        // Plain text reads as a huge length: it waits for more, never a bogus packet.
        let mut d = Deframer::new();
        d.push(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        assert_eq!(d.next_packet(), Ok(None));
        let mut rng = fastrand::Rng::with_seed(4571);
        for _ in 0..2_000 {
            let mut d = Deframer::new();
            for _ in 0..rng.usize(1..8) {
                let bytes: Vec<u8> = (0..rng.usize(..600)).map(|_| rng.u8(..)).collect();
                d.push(&bytes);
                while let Ok(Some(p)) = d.next_packet() {
                    assert!(!p.is_empty() && p.len() <= MAX_FRAME_LEN);
                }
            }
        }
    }

    #[test]
    fn failures_read_as_what_happened() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(TcpFailure::from(refused), TcpFailure::Refused);
        assert_eq!(TcpFailure::TimedOut.to_string(), "connect timed out");
    }

    #[test]
    fn a_connection_frames_both_ways_over_loopback() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let conn = spawn_connection(7, addr, Duration::from_secs(5), events_tx);
            let (mut server, _) = listener.accept().await.unwrap();
            assert!(matches!(events.recv().await, Some(TcpEvent::Connected { id: 7 })));
            assert!(conn.send(stun_like(5, 3)));
            let mut got = [0u8; 7];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [0, 5, 1, 3, 3, 3, 3]);
            // Two frames in one write, a zero-length frame between them.
            server.write_all(&[0, 2, 22, 1, 0, 0, 0, 1, 0]).await.unwrap();
            for want in [vec![22, 1], vec![0]] {
                match events.recv().await {
                    Some(TcpEvent::Packet { id: 7, data }) => assert_eq!(data, want),
                    other => panic!("expected a packet, got {other:?}"),
                }
            }
            drop(server);
            assert!(matches!(
                events.recv().await,
                Some(TcpEvent::Closed { id: 7, .. })
            ));
        });
    }

    #[test]
    fn a_refused_connect_is_reported_as_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let addr = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let _conn = spawn_connection(1, addr, Duration::from_secs(5), events_tx);
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
            assert!(matches!(
                event,
                Ok(Some(TcpEvent::Closed {
                    id: 1,
                    failure: TcpFailure::Refused
                }))
            ));
        });
    }
}
