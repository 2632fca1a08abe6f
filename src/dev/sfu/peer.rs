//! The server side of one WebRTC peer connection: a sans-IO str0m `Rtc` as an ICE-lite agent
//! with one host candidate, carrying LiveKit's `_reliable` and `_lossy` data channels.
//!
//! Two shapes, as livekit-server has them: an *answerer* takes the client's offer (the
//! publisher connection, and the only one on `/rtc/v1`), whose channels the client opens; an
//! *offerer* is the server's subscriber connection on `/rtc`, on which the server opens its own
//! channels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Output, Rtc};

use crate::live::peer::{add_data_channels, LOSSY_LABEL, RELIABLE_LABEL};
use crate::live::sctp_clock::SctpClock;
use crate::live::write_queue::WriteQueue;

/// Data written to a channel but not yet acknowledged by the client, at most (str0m's
/// default is 128 KiB). Whatever is in flight can land in the client's UDP receive buffer at
/// once; the official clients' default buffer holds about 90 full datagrams, and every one
/// dropped there costs the SCTP stream a one-second retransmission timeout (measured: a
/// 1280×720 frame every few stalled for a second at 128 KiB, none at this size). It also
/// bounds the largest message forwarded (see [`ServerPeer::send`]).
const MAX_IN_FLIGHT: usize = 64 * 1024;

/// Something the participant task must act on.
#[derive(Debug)]
pub(super) enum PeerOutput {
    /// Send this packet over UDP or ICE-TCP.
    Transmit(Protocol, SocketAddr, Vec<u8>),
    /// Nothing else to drain; call [`ServerPeer::handle_timeout`] at this instant.
    Timeout(Instant),
    /// The reliable channel opened.
    Open,
    /// A message arrived on the reliable (`true`) or lossy channel.
    Data(bool, Vec<u8>),
    /// The connection is gone: closed by the client (`by_remote`), or lost.
    Closed {
        /// The client closed it cleanly.
        by_remote: bool,
        /// What happened.
        reason: String,
    },
}

/// One server-side peer connection.
/// Where a peer connection is reached: its UDP socket and, for ICE over TCP, its passive
/// listener.
#[derive(Debug, Clone, Copy)]
pub(super) struct LocalAddrs {
    pub udp: SocketAddr,
    pub tcp: Option<SocketAddr>,
}

pub(super) struct ServerPeer {
    rtc: Rtc,
    local: LocalAddrs,
    pending_offer: Option<SdpPendingOffer>,
    /// Channel id → whether it is the reliable one (`_reliable`) or the lossy one.
    channels: HashMap<ChannelId, bool>,
    reliable: Option<ChannelId>,
    lossy: Option<ChannelId>,
    reliable_open: bool,
    queue: WriteQueue,
    closed: bool,
    /// When the client's last datagram arrived (`None`: never); the participant decides
    /// from it when the connection counts as failed.
    last_heard: Option<Instant>,
    /// str0m's virtual clock, skipped forward when reliable data is stuck behind SCTP's
    /// retransmission backoff after a cut (capped for an ICE-lite agent).
    clock: SctpClock,
    /// ICE is connected (not checking after a restart): a clock skip may happen.
    ice_connected: bool,
    now: Instant,
}

impl ServerPeer {
    fn new_rtc(now: Instant, local: LocalAddrs) -> Result<Rtc, String> {
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .set_sctp_max_buffered_amount(MAX_IN_FLIGHT)
            .build(now);
        let candidate = Candidate::host(local.udp, "udp").map_err(|e| format!("host candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        if let Some(tcp) = local.tcp {
            let candidate = Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| format!("TCP host candidate: {e}"))?;
            rtc.add_local_candidate(candidate);
        }
        Ok(rtc)
    }

    fn with_rtc(rtc: Rtc, local: LocalAddrs, now: Instant) -> ServerPeer {
        ServerPeer {
            rtc,
            local,
            pending_offer: None,
            channels: HashMap::new(),
            reliable: None,
            lossy: None,
            reliable_open: false,
            queue: WriteQueue::default(),
            closed: false,
            last_heard: None,
            clock: SctpClock::new(SctpClock::ICE_LITE_MAX_SKIP),
            ice_connected: false,
            now,
        }
    }

    /// A connection that answers the client's offer (see [`ServerPeer::accept_offer`]).
    pub(super) fn answerer(now: Instant, local: LocalAddrs) -> Result<ServerPeer, String> {
        Ok(Self::with_rtc(Self::new_rtc(now, local)?, local, now))
    }

    /// A connection the server offers, with its own `_reliable` and `_lossy` channels;
    /// returns it with the SDP offer.
    pub(super) fn offerer(now: Instant, local: LocalAddrs) -> Result<(ServerPeer, String), String> {
        let mut rtc = Self::new_rtc(now, local)?;
        let mut api = rtc.sdp_api();
        let (reliable, lossy) = add_data_channels(&mut api);
        let (offer, pending) = api.apply().ok_or("no offer produced")?;
        let mut peer = Self::with_rtc(rtc, local, now);
        peer.pending_offer = Some(pending);
        peer.reliable = Some(reliable);
        peer.lossy = Some(lossy);
        peer.channels.insert(reliable, true);
        peer.channels.insert(lossy, false);
        Ok((peer, offer.to_sdp_string()))
    }

    /// Applies a (re)offer from the client; returns the SDP answer.
    pub(super) fn accept_offer(&mut self, sdp: &str) -> Result<String, String> {
        let sdp = with_bundled_ice_credentials(sdp);
        let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| format!("bad SDP offer: {e}"))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("offer rejected: {e}"))?;
        Ok(answer.to_sdp_string())
    }

    /// Offers an ICE restart (new ICE credentials, the same DTLS and SCTP association), as
    /// livekit-server re-offers its subscriber connection when a participant resumes; returns
    /// the SDP offer. The client's answer goes to [`ServerPeer::accept_answer`].
    pub(super) fn ice_restart_offer(&mut self) -> Result<String, String> {
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply().ok_or("no ICE restart offer produced")?;
        self.pending_offer = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// Whether an offer of ours awaits the client's answer.
    pub(super) fn awaits_answer(&self) -> bool {
        self.pending_offer.is_some()
    }

    /// When the client was last heard on this connection (`None`: never).
    pub(super) fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// Applies the client's answer to our offer.
    pub(super) fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let pending = self
            .pending_offer
            .take()
            .ok_or("answer without a pending offer")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("bad SDP answer: {e}"))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("answer rejected: {e}"))
    }

    /// Adds a trickled remote candidate (`candidate:…`, with or without `a=`). An ICE-lite
    /// agent learns the client's address from its checks anyway; other transports and
    /// address families than ours are ignored.
    pub(super) fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), String> {
        let c = candidate.trim().trim_start_matches("a=");
        if c.is_empty() {
            return Ok(());
        }
        let cand = Candidate::from_sdp_string(c).map_err(|e| format!("bad candidate: {e}"))?;
        if cand.proto() == Protocol::Udp && cand.addr().is_ipv4() == self.local.udp.is_ipv4() {
            self.rtc.add_remote_candidate(cand);
        }
        Ok(())
    }

    /// Feeds a datagram received on this connection's UDP socket, or a packet de-framed from
    /// one of its ICE-TCP connections (`Protocol::Tcp`).
    pub(super) fn handle_receive(&mut self, now: Instant, proto: Protocol, source: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        let destination = match (proto, self.local.tcp) {
            (Protocol::Udp, _) => self.local.udp,
            (Protocol::Tcp, Some(tcp)) => tcp,
            _ => return,
        };
        let Ok(recv) = Receive::new(proto, source, destination, data) else {
            return;
        };
        match self.clock.receive(&mut self.rtc, now, recv) {
            Ok(true) => self.last_heard = Some(now),
            Ok(false) => {}
            Err(e) => {
                self.last_heard = Some(now);
                log::debug!("sfu: webrtc input error: {e}");
            }
        }
    }

    /// Advances time.
    pub(super) fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        self.now = self.now.max(now);
        self.clock
            .timeout(&mut self.rtc, now, self.reliable, self.ice_connected)
            .map_err(|e| e.to_string())
    }

    /// Whether the reliable channel is open.
    pub(super) fn is_open(&self) -> bool {
        self.reliable_open
    }

    /// Queues a message on the reliable channel (sent once it is open, in order), or sends it
    /// on the lossy one (dropped when that is not open). Messages over [`MAX_IN_FLIGHT`]
    /// (64 KiB; LiveKit clients send at most 15 KiB per packet) are dropped with a warning.
    /// Errors when the queue overflows.
    pub(super) fn send(&mut self, reliable: bool, data: Vec<u8>) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        if data.len() > MAX_IN_FLIGHT {
            log::warn!(
                "sfu: dropping a {} B data packet (over {MAX_IN_FLIGHT} B)",
                data.len()
            );
            return Ok(());
        }
        if !reliable {
            if let Some(mut ch) = self.lossy.and_then(|id| self.rtc.channel(id)) {
                let _ = ch.write(true, &data);
            }
            return Ok(());
        }
        if !self.queue.push(data) {
            return Err("reliable send queue overflow".into());
        }
        self.flush();
        Ok(())
    }

    fn flush(&mut self) {
        let (true, Some(id)) = (self.reliable_open, self.reliable) else {
            return;
        };
        self.queue.flush(&mut self.rtc, id, &mut self.clock);
    }

    /// Drains the next output; call until it returns [`PeerOutput::Timeout`].
    pub(super) fn poll(&mut self) -> PeerOutput {
        loop {
            if self.closed {
                return PeerOutput::Timeout(self.now + Duration::from_secs(3600));
            }
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.closed = true;
                    return lost(&format!("webrtc failure: {e}"));
                }
            };
            match output {
                Output::Transmit(t) => {
                    return PeerOutput::Transmit(t.proto, t.destination, t.contents.to_vec())
                }
                Output::Timeout(t) => {
                    let before = self.queue.len();
                    self.flush();
                    if self.queue.len() != before {
                        continue;
                    }
                    return PeerOutput::Timeout(self.clock.drained(&mut self.rtc, self.reliable, t));
                }
                Output::Event(event) => {
                    if let Some(out) = self.on_event(event) {
                        return out;
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Option<PeerOutput> {
        match event {
            Event::IceConnectionStateChange(state) => {
                self.ice_connected = matches!(
                    state,
                    IceConnectionState::Connected | IceConnectionState::Completed
                );
            }
            Event::ChannelOpen(id, label) => return self.on_channel_open(id, &label),
            Event::ChannelData(d) => match self.channels.get(&d.id) {
                Some(&reliable) => return Some(PeerOutput::Data(reliable, d.data)),
                None => log::trace!("sfu: data on an unknown channel"),
            },
            Event::ChannelBufferedAmountLow(_) => self.flush(),
            Event::ChannelClose(id) if Some(id) == self.reliable => {
                self.closed = true;
                return Some(PeerOutput::Closed {
                    by_remote: true,
                    reason: "reliable data channel closed".into(),
                });
            }
            Event::Closed => {
                self.closed = true;
                return Some(PeerOutput::Closed {
                    by_remote: true,
                    reason: "DTLS/SCTP closed".into(),
                });
            }
            _ => {}
        }
        None
    }

    /// Adopts channels the client opened, by label; reports the reliable one opening.
    fn on_channel_open(&mut self, id: ChannelId, label: &str) -> Option<PeerOutput> {
        if self.reliable.is_none() && label == RELIABLE_LABEL {
            self.reliable = Some(id);
            self.channels.insert(id, true);
        }
        if self.lossy.is_none() && label == LOSSY_LABEL {
            self.lossy = Some(id);
            self.channels.insert(id, false);
        }
        if Some(id) == self.reliable && !self.reliable_open {
            self.reliable_open = true;
            if let Some(mut ch) = self.rtc.channel(id) {
                ch.set_buffered_amount_low_threshold(64 * 1024);
            }
            self.flush();
            return Some(PeerOutput::Open);
        }
        None
    }

    /// Closes the connection (best effort: the caller drains the last datagrams).
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.rtc.disconnect();
    }
}

/// `sdp` with the ICE credentials of its first live (port ≠ 0) m-section copied into its
/// rejected ones. str0m takes the remote credentials from the first m-section that has any,
/// while libwebrtc, on an ICE restart, gives each rejected section fresh random ones (the
/// official clients offer media sections, rejected by us, before the data one): str0m would
/// then expect the wrong ufrag and refuse every check of the restarted client.
fn with_bundled_ice_credentials(sdp: &str) -> String {
    let sections: Vec<&str> = sdp.split_inclusive("\nm=").collect();
    let is_rejected = |section: &str| section.split_whitespace().nth(1) == Some("0");
    let attribute = |section: &str, name: &str| {
        section
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(name).map(str::to_owned))
    };
    let live = sections.iter().skip(1).find(|s| !is_rejected(s));
    let Some((ufrag, pwd)) =
        live.and_then(|s| Some((attribute(s, "a=ice-ufrag:")?, attribute(s, "a=ice-pwd:")?)))
    else {
        return sdp.to_owned();
    };
    let mut out = String::with_capacity(sdp.len());
    for (index, section) in sections.iter().enumerate() {
        if index == 0 || !is_rejected(section) {
            out.push_str(section);
            continue;
        }
        for line in section.split_inclusive('\n') {
            let ending = &line[line.trim_end().len()..];
            if line.starts_with("a=ice-ufrag:") {
                out.push_str(&format!("a=ice-ufrag:{ufrag}{ending}"));
            } else if line.starts_with("a=ice-pwd:") {
                out.push_str(&format!("a=ice-pwd:{pwd}{ending}"));
            } else {
                out.push_str(line);
            }
        }
    }
    out
}

fn lost(reason: &str) -> PeerOutput {
    PeerOutput::Closed {
        by_remote: false,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_sections_take_the_bundled_ice_credentials() {
        let offer = "v=0\r\na=group:BUNDLE 2\r\nm=audio 0 RTP 0\r\na=ice-ufrag:old1\r\na=ice-pwd:p1\r\na=mid:0\r\nm=video 0 RTP 0\r\na=ice-ufrag:old2\r\na=ice-pwd:p2\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=ice-ufrag:live\r\na=ice-pwd:livepwd\r\na=mid:2\r\n";
        let fixed = with_bundled_ice_credentials(offer);
        assert_eq!(fixed.matches("a=ice-ufrag:live\r\n").count(), 3, "{fixed}");
        assert_eq!(fixed.matches("a=ice-pwd:livepwd\r\n").count(), 3, "{fixed}");
        assert!(!fixed.contains("old") && fixed.contains("a=mid:0\r\n") && fixed.ends_with("a=mid:2\r\n"));
        assert_eq!(with_bundled_ice_credentials("garbage"), "garbage");
        let unchanged = "v=0\r\nm=application 9 X\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\n";
        assert_eq!(with_bundled_ice_credentials(unchanged), unchanged);
    }

    #[test]
    fn garbage_sdp_candidates_and_datagrams_do_not_panic() {
        let mut rng = fastrand::Rng::with_seed(3);
        let now = Instant::now();
        let local = LocalAddrs {
            udp: "127.0.0.1:40000".parse().unwrap(),
            tcp: Some("127.0.0.1:40001".parse().unwrap()),
        };
        let (mut offerer, offer) = ServerPeer::offerer(now, local).unwrap();
        assert!(offer.contains("webrtc-datachannel") && offer.contains("a=ice-lite"));
        assert!(offer.contains("tcptype passive"), "{offer}");
        let mut answerer = ServerPeer::answerer(now, local).unwrap();
        assert!(answerer.accept_offer("v=0\r\ngarbage").is_err());
        assert!(offerer.accept_answer("garbage").is_err());
        assert!(answerer.add_remote_candidate("candidate:garbage").is_err());
        assert!(answerer.add_remote_candidate("").is_ok());
        let from = "127.0.0.1:50000".parse().unwrap();
        for _ in 0..3_000 {
            let mut d: Vec<u8> = (0..rng.usize(..300)).map(|_| rng.u8(..)).collect();
            if let Some(b) = d.first_mut() {
                *b = [0u8, 1, 20, 22, 23, 128][rng.usize(..6)];
            }
            for peer in [&mut offerer, &mut answerer] {
                peer.handle_receive(now, Protocol::Udp, from, &d);
                peer.handle_receive(now, Protocol::Tcp, from, &d);
                while let PeerOutput::Transmit(..) = peer.poll() {}
            }
        }
    }
}
