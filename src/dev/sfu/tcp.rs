//! ICE over TCP, passive side (RFC 6544), framed as RFC 4571 says: each STUN, DTLS or SCTP
//! packet preceded by its length as two big-endian bytes. One listener per peer connection
//! (like its UDP socket), announced as a `tcptype passive` host candidate; the client connects
//! to it (again after an ICE restart, as livekit-server's mux wants) and every connection is
//! keyed by the client's address, which is what the ICE agent sees as the source.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, Sender, UnboundedReceiver, UnboundedSender};
use tokio::task::{JoinHandle, JoinSet};

/// Connections one listener holds at most (a client needs one per ICE generation).
const MAX_CONNECTIONS: usize = 8;
/// Events queued for a participant's task at most; a client sending faster than the task
/// reads is slowed down by TCP itself rather than queued without bound.
pub(super) const EVENT_QUEUE: usize = 1024;

/// What the TCP side of a participant's connections reports to its task.
#[derive(Debug)]
pub(super) enum TcpIn {
    /// A client connected to the listener of the subscriber (`true`) or publisher connection;
    /// frames for it go to the sender.
    Connected(bool, SocketAddr, UnboundedSender<Vec<u8>>),
    /// A de-framed packet from that client.
    Packet(bool, SocketAddr, Vec<u8>),
    /// The connection from that client ended.
    Closed(bool, SocketAddr),
}

/// The passive ICE-TCP listener of one peer connection and its connections; everything it
/// spawned stops when it is dropped.
pub(super) struct TcpSide {
    local: SocketAddr,
    task: JoinHandle<()>,
    writers: HashMap<SocketAddr, UnboundedSender<Vec<u8>>>,
}

impl Drop for TcpSide {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpSide {
    /// Listens on loopback, port 0; reports to `events` tagged with `subscriber`.
    pub(super) async fn bind(subscriber: bool, events: Sender<TcpIn>) -> std::io::Result<TcpSide> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, subscriber, events));
        Ok(TcpSide {
            local,
            task,
            writers: HashMap::new(),
        })
    }

    /// The listening address (the candidate's).
    pub(super) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Applies a connection event (a new client, or one gone).
    pub(super) fn on_event(&mut self, event: &TcpIn) {
        match event {
            TcpIn::Connected(_, remote, writer) => {
                self.writers.insert(*remote, writer.clone());
            }
            TcpIn::Closed(_, remote) => {
                self.writers.remove(remote);
            }
            TcpIn::Packet(..) => {}
        }
    }

    /// Sends one packet, framed, to the client connected from `dest` (dropped, as a lost
    /// datagram would be, when there is no such connection).
    pub(super) fn send(&self, dest: SocketAddr, packet: &[u8]) {
        let Some(writer) = self.writers.get(&dest) else {
            log::trace!("sfu: no ICE-TCP connection from {dest}");
            return;
        };
        match frame(packet) {
            Some(framed) => {
                let _ = writer.send(framed);
            }
            None => log::debug!("sfu: a {} B packet does not fit an RFC 4571 frame", packet.len()),
        }
    }
}

/// `packet` behind its two-byte big-endian length; `None` over 65 535 bytes.
fn frame(packet: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(packet);
    Some(framed)
}

async fn accept_loop(listener: TcpListener, subscriber: bool, events: Sender<TcpIn>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, remote)) = accepted else { continue };
                if connections.len() >= 2 * MAX_CONNECTIONS {
                    log::debug!("sfu: refusing an ICE-TCP connection: too many");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let (read, write) = stream.into_split();
                let (writer, frames) = unbounded_channel();
                if events.send(TcpIn::Connected(subscriber, remote, writer)).await.is_err() {
                    return;
                }
                connections.spawn(read_frames(read, subscriber, remote, events.clone()));
                connections.spawn(write_frames(write, frames));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Reads RFC 4571 frames until the connection ends, then reports it closed.
async fn read_frames(mut read: OwnedReadHalf, subscriber: bool, remote: SocketAddr, events: Sender<TcpIn>) {
    let mut len = [0u8; 2];
    loop {
        if read.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if read.read_exact(&mut packet).await.is_err() {
            break;
        }
        if events
            .send(TcpIn::Packet(subscriber, remote, packet))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = events.send(TcpIn::Closed(subscriber, remote)).await;
}

async fn write_frames(mut write: OwnedWriteHalf, mut frames: UnboundedReceiver<Vec<u8>>) {
    while let Some(framed) = frames.recv().await {
        if write.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_big_endian_length() {
        assert_eq!(frame(b"abc").unwrap(), [0, 3, b'a', b'b', b'c']);
        assert_eq!(frame(&[]).unwrap(), [0, 0]);
        assert_eq!(frame(&vec![7u8; 65_535]).unwrap()[..2], [0xff, 0xff]);
        assert!(frame(&vec![0u8; 65_536]).is_none());
    }
}
