//! The WebRTC side: one str0m peer connection (we are the offerer, single-PC mode) carrying
//! the `_reliable` and `_lossy` data channels. Sans-IO: the session feeds UDP datagrams and
//! timeouts in, and drains transmits and events out.

use crate::live::error::LiveError;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Label of the reliable data channel.
pub const RELIABLE_LABEL: &str = "_reliable";
/// Label of the lossy data channel.
pub const LOSSY_LABEL: &str = "_lossy";
/// Cap on bytes queued while the reliable channel is not open or is full.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Something the session must act on.
#[derive(Debug)]
pub enum PeerOutput {
    /// Send this datagram.
    Transmit(SocketAddr, Vec<u8>),
    /// Call [`Peer::handle_timeout`] at this instant (nothing else to drain).
    Timeout(Instant),
    /// The reliable channel opened: the participant can exchange data.
    Open,
    /// A data channel message arrived.
    Data(Vec<u8>),
    /// The connection is gone.
    Closed(String),
}

/// One peer connection to the SFU.
pub struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    pending_offer: Option<SdpPendingOffer>,
    reliable: ChannelId,
    lossy: ChannelId,
    reliable_open: bool,
    lossy_open: bool,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    closed: bool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("local", &self.local)
            .field("open", &self.reliable_open)
            .finish()
    }
}

impl Peer {
    /// Creates the peer with a host candidate on `local` and returns it with the SDP offer.
    pub fn new(now: Instant, local: SocketAddr) -> Result<(Peer, String), LiveError> {
        let mut rtc = Rtc::builder().build(now);
        let cand =
            Candidate::host(local, "udp").map_err(|e| LiveError::Rtc(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let reliable = api.add_channel_with_config(ChannelConfig {
            label: RELIABLE_LABEL.into(),
            ordered: true,
            reliability: Reliability::Reliable,
            negotiated: None,
            protocol: String::new(),
        });
        let lossy = api.add_channel_with_config(ChannelConfig {
            label: LOSSY_LABEL.into(),
            ordered: false,
            reliability: Reliability::MaxRetransmits { retransmits: 0 },
            negotiated: None,
            protocol: String::new(),
        });
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| LiveError::Rtc("no offer produced".into()))?;
        let peer = Peer {
            rtc,
            local,
            pending_offer: Some(pending),
            reliable,
            lossy,
            reliable_open: false,
            lossy_open: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            closed: false,
        };
        Ok((peer, offer.to_sdp_string()))
    }

    /// Local UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the reliable channel is open.
    pub fn is_open(&self) -> bool {
        self.reliable_open && !self.closed
    }

    /// Applies the server's SDP answer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), LiveError> {
        let Some(pending) = self.pending_offer.take() else {
            return Err(LiveError::Protocol("answer without a pending offer".into()));
        };
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| LiveError::Protocol(format!("bad SDP answer: {e}")))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| LiveError::Rtc(format!("answer rejected: {e}")))
    }

    /// Adds a remote ICE candidate (`candidate:...` attribute, with or without the `a=`).
    pub fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), LiveError> {
        let c = candidate.trim().trim_start_matches("a=");
        if c.is_empty() {
            return Ok(()); // end-of-candidates
        }
        let cand =
            Candidate::from_sdp_string(c).map_err(|e| LiveError::Protocol(format!("bad candidate: {e}")))?;
        if cand.proto() != Protocol::Udp {
            return Ok(());
        }
        // Our only local candidate is `self.local`: a remote candidate of the other address
        // family can never pair with it. Handing it to str0m anyway is harmful: when it is the
        // first remote candidate (LiveKit trickles e.g. `fd00::2` and `127.0.0.1` in either
        // order), the ICE agent has candidates but no pairs and reports `Disconnected`, which
        // would end the connection before the usable candidate arrives.
        if cand.addr().is_ipv4() != self.local.is_ipv4() {
            log::debug!("ignoring a remote candidate of another address family");
            return Ok(());
        }
        self.rtc.add_remote_candidate(cand);
        Ok(())
    }

    /// Feeds a received datagram. Datagrams str0m does not recognise are ignored.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> Result<(), LiveError> {
        let Ok(recv) = Receive::new(Protocol::Udp, source, self.local, data) else {
            log::trace!("ignoring unrecognised datagram from {source}");
            return Ok(());
        };
        let input = Input::Receive(now, recv);
        if !self.rtc.accepts(&input) {
            return Ok(());
        }
        self.rtc
            .handle_input(input)
            .map_err(|e| LiveError::Rtc(e.to_string()))
    }

    /// Advances time.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LiveError> {
        self.rtc
            .handle_input(Input::Timeout(now))
            .map_err(|e| LiveError::Rtc(e.to_string()))
    }

    /// Queues a message on the reliable channel, or sends it on the lossy one (dropped if the
    /// lossy channel is not open or full).
    pub fn send(&mut self, reliable: bool, data: Vec<u8>) -> Result<(), LiveError> {
        if self.closed {
            return Err(LiveError::Disconnected("peer connection closed".into()));
        }
        if !reliable {
            if self.lossy_open {
                if let Some(mut ch) = self.rtc.channel(self.lossy) {
                    let _ = ch.write(true, &data);
                }
            }
            return Ok(());
        }
        if self.queued_bytes + data.len() > MAX_QUEUED_BYTES {
            return Err(LiveError::Rtc("send queue full".into()));
        }
        self.queued_bytes += data.len();
        self.queue.push_back(data);
        self.flush();
        Ok(())
    }

    /// Bytes waiting to be accepted by the SCTP stack.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    fn flush(&mut self) {
        if !self.reliable_open {
            return;
        }
        while let Some(front) = self.queue.front() {
            let Some(mut ch) = self.rtc.channel(self.reliable) else {
                return;
            };
            match ch.write(true, front) {
                Ok(true) => {
                    self.queued_bytes -= front.len();
                    self.queue.pop_front();
                }
                Ok(false) => return, // full: retried on BufferedAmountLow / next poll
                Err(e) => {
                    log::warn!("data channel write failed: {e}");
                    return;
                }
            }
        }
    }

    /// Drains the next output. Call until it returns [`PeerOutput::Timeout`].
    pub fn poll(&mut self) -> PeerOutput {
        loop {
            if self.closed {
                return PeerOutput::Timeout(Instant::now() + std::time::Duration::from_secs(3600));
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.closed = true;
                    return PeerOutput::Closed(format!("webrtc failure: {e}"));
                }
            };
            match out {
                Output::Transmit(t) => return PeerOutput::Transmit(t.destination, t.contents.to_vec()),
                Output::Timeout(t) => {
                    // A good moment to push queued data (buffer may have drained).
                    if !self.queue.is_empty() && self.reliable_open {
                        let before = self.queue.len();
                        self.flush();
                        if self.queue.len() != before {
                            continue;
                        }
                    }
                    return PeerOutput::Timeout(t);
                }
                Output::Event(ev) => match ev {
                    Event::ChannelOpen(id, label) => {
                        log::debug!("data channel {label} open");
                        if id == self.lossy {
                            self.lossy_open = true;
                        }
                        if id == self.reliable {
                            self.reliable_open = true;
                            if let Some(mut ch) = self.rtc.channel(id) {
                                ch.set_buffered_amount_low_threshold(64 * 1024);
                            }
                            self.flush();
                            return PeerOutput::Open;
                        }
                    }
                    Event::ChannelData(d) => return PeerOutput::Data(d.data),
                    Event::ChannelBufferedAmountLow(_) => self.flush(),
                    Event::ChannelClose(id) => {
                        if id == self.reliable {
                            self.closed = true;
                            return PeerOutput::Closed("reliable data channel closed".into());
                        }
                        if id == self.lossy {
                            self.lossy_open = false;
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.closed = true;
                        return PeerOutput::Closed("ICE disconnected".into());
                    }
                    Event::Closed => {
                        self.closed = true;
                        return PeerOutput::Closed("DTLS/SCTP closed by the server".into());
                    }
                    other => log::trace!("rtc event {other:?}"),
                },
            }
        }
    }

    /// Closes the connection locally.
    pub fn close(&mut self) {
        self.closed = true;
        self.rtc.disconnect();
    }
}
