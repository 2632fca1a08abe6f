//! The WebRTC side: a str0m peer connection carrying the `_reliable` and `_lossy` data
//! channels. A *publisher* peer is offered by us and carries our channels (single-PC mode: the
//! only peer, used both ways); a *subscriber* peer (dual-PC mode) is offered by the server,
//! which opens its own channels on it to send us data. Sans-IO: the connection feeds UDP
//! datagrams and timeouts in, and drains transmits and events out.

use crate::live::error::LiveError;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Label of the reliable data channel.
pub const RELIABLE_LABEL: &str = "_reliable";
/// Label of the lossy data channel.
pub const LOSSY_LABEL: &str = "_lossy";
/// How long ICE may stay disconnected before the connection is declared lost
/// (str0m's `Disconnected` is transient, like the browser's `disconnected`).
pub const ICE_DISCONNECTED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Cap on bytes queued while the reliable channel is not open or is full.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Something the connection must act on.
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
    reliable: Option<ChannelId>,
    lossy: Option<ChannelId>,
    reliable_open: bool,
    lossy_open: bool,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    closed: bool,
    ice_disconnected_at: Option<Instant>,
    now: Instant,
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
    fn with_rtc(rtc: Rtc, local: SocketAddr, now: Instant) -> Peer {
        Peer {
            rtc,
            local,
            pending_offer: None,
            reliable: None,
            lossy: None,
            reliable_open: false,
            lossy_open: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            closed: false,
            ice_disconnected_at: None,
            now,
        }
    }

    fn new_rtc(now: Instant, local: SocketAddr) -> Result<Rtc, LiveError> {
        let mut rtc = Rtc::builder().build(now);
        let cand =
            Candidate::host(local, "udp").map_err(|e| LiveError::Rtc(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(cand);
        Ok(rtc)
    }

    /// Creates a subscriber peer from the server's SDP offer; returns it with our answer.
    pub fn new_subscriber(
        now: Instant,
        local: SocketAddr,
        offer_sdp: &str,
    ) -> Result<(Peer, String), LiveError> {
        let rtc = Self::new_rtc(now, local)?;
        let mut peer = Self::with_rtc(rtc, local, now);
        let answer = peer.accept_offer(offer_sdp)?;
        Ok((peer, answer))
    }

    /// Applies a (re)offer from the server; returns our SDP answer.
    pub fn accept_offer(&mut self, offer_sdp: &str) -> Result<String, LiveError> {
        let offer = SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| LiveError::Protocol(format!("bad SDP offer: {e}")))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| LiveError::Rtc(format!("offer rejected: {e}")))?;
        Ok(answer.to_sdp_string())
    }

    /// Creates the publisher peer (our `_reliable` / `_lossy` channels) with a host candidate
    /// on `local`, and returns it with the SDP offer.
    pub fn new(now: Instant, local: SocketAddr) -> Result<(Peer, String), LiveError> {
        let mut rtc = Self::new_rtc(now, local)?;
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
        let mut peer = Self::with_rtc(rtc, local, now);
        peer.pending_offer = Some(pending);
        peer.reliable = Some(reliable);
        peer.lossy = Some(lossy);
        Ok((peer, offer.to_sdp_string()))
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
        // order), the ICE agent has candidates but no pairs and reports `Disconnected`.
        if cand.addr().is_ipv4() != self.local.is_ipv4() {
            log::debug!("ignoring a remote candidate of another address family");
            return Ok(());
        }
        self.rtc.add_remote_candidate(cand);
        Ok(())
    }

    /// Feeds a received datagram. Datagrams str0m does not recognise are ignored.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> Result<(), LiveError> {
        self.now = self.now.max(now);
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
        self.now = self.now.max(now);
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
            if let (true, Some(id)) = (self.lossy_open, self.lossy) {
                if let Some(mut ch) = self.rtc.channel(id) {
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

    fn flush(&mut self) {
        let (true, Some(id)) = (self.reliable_open, self.reliable) else {
            return;
        };
        while let Some(front) = self.queue.front() {
            let Some(mut ch) = self.rtc.channel(id) else {
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
                return PeerOutput::Timeout(self.now + std::time::Duration::from_secs(3600));
            }
            if let Some(since) = self.ice_disconnected_at {
                if self.now >= since + ICE_DISCONNECTED_TIMEOUT {
                    self.closed = true;
                    return PeerOutput::Closed("ICE disconnected".into());
                }
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
                    let t = match self.ice_disconnected_at {
                        Some(since) => t.min(since + ICE_DISCONNECTED_TIMEOUT),
                        None => t,
                    };
                    return PeerOutput::Timeout(t);
                }
                Output::Event(ev) => match ev {
                    Event::ChannelOpen(id, label) => {
                        log::debug!("data channel {label} open");
                        // Channels opened by the server (subscriber peer) are adopted by label.
                        if self.lossy.is_none() && label == LOSSY_LABEL {
                            self.lossy = Some(id);
                        }
                        if self.reliable.is_none() && label == RELIABLE_LABEL {
                            self.reliable = Some(id);
                        }
                        if Some(id) == self.lossy {
                            self.lossy_open = true;
                        }
                        if Some(id) == self.reliable {
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
                        if Some(id) == self.reliable {
                            self.closed = true;
                            return PeerOutput::Closed("reliable data channel closed".into());
                        }
                        if Some(id) == self.lossy {
                            self.lossy_open = false;
                        }
                    }
                    Event::IceConnectionStateChange(state) => {
                        log::debug!("ICE state {state:?}");
                        if state == IceConnectionState::Disconnected {
                            self.ice_disconnected_at.get_or_insert(self.now);
                        } else {
                            self.ice_disconnected_at = None;
                        }
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
