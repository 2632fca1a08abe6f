//! The WebRTC side: a str0m peer connection carrying the `_reliable` and `_lossy` data
//! channels. A *publisher* peer is offered by us and carries our channels (single-PC mode: the
//! only peer, used both ways); a *subscriber* peer (dual-PC mode) is offered by the server,
//! which opens its own channels on it to send us data. Sans-IO: the connection feeds packets
//! (UDP datagrams, de-framed ICE-TCP packets) and timeouts in, and drains transmits (with their
//! transport and source candidate, see [`crate::live::net`]) and events out.

use crate::live::error::LiveError;
use crate::live::net::{Datagram, LocalCandidates};
use crate::live::sctp_clock::{self, SctpClock};
use crate::live::write_queue::WriteQueue;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Output, Rtc, RtcConfig};

/// Label of the reliable data channel.
pub const RELIABLE_LABEL: &str = "_reliable";
/// Label of the lossy data channel.
pub const LOSSY_LABEL: &str = "_lossy";

/// Adds LiveKit's data channel pair to an offer being built: `_reliable` (ordered,
/// reliable) and `_lossy` (unordered, no retransmission). Returns their ids in that order.
pub(crate) fn add_data_channels(api: &mut str0m::change::SdpApi<'_>) -> (ChannelId, ChannelId) {
    let mut channel = |label: &str, ordered: bool, reliability: Reliability| {
        api.add_channel_with_config(ChannelConfig {
            label: label.into(),
            ordered,
            reliability,
            negotiated: None,
            protocol: String::new(),
        })
    };
    let reliable = channel(RELIABLE_LABEL, true, Reliability::Reliable);
    let lossy = channel(LOSSY_LABEL, false, Reliability::MaxRetransmits { retransmits: 0 });
    (reliable, lossy)
}

/// Something the connection must act on.
#[derive(Debug)]
pub enum PeerOutput {
    /// Send this packet on the path its transport and source name.
    Transmit(Datagram),
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
    /// Our UDP host candidate (or, with UDP off, the TCP one): its IP family is ours.
    local: SocketAddr,
    locals: LocalCandidates,
    /// Bumped on every ICE restart (new local credentials): ICE-TCP needs new connections.
    ice_generation: u32,
    pending_offer: Option<SdpPendingOffer>,
    reliable: Option<ChannelId>,
    lossy: Option<ChannelId>,
    reliable_open: bool,
    lossy_open: bool,
    queue: WriteQueue,
    closed: bool,
    now: Instant,
    writes_paused: bool,
    ice_state: IceConnectionState,
    ice_restarting: bool,
    last_offer: Option<String>,
    last_answer: Option<String>,
    /// Virtual time for str0m: skipped forward so SCTP retransmits at once after a cut.
    clock: SctpClock,
    /// Remote UDP candidates kept while we have no UDP candidate: a TURN relay may come.
    parked_udp: Vec<Candidate>,
    /// A relayed (TURN) candidate was added: remote UDP candidates pair with it.
    relayed: bool,
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
    fn with_rtc(rtc: Rtc, locals: LocalCandidates, now: Instant) -> Peer {
        Peer {
            rtc,
            local: locals.udp.or(locals.tcp).unwrap_or_else(unspecified),
            locals,
            ice_generation: 0,
            pending_offer: None,
            reliable: None,
            lossy: None,
            reliable_open: false,
            lossy_open: false,
            queue: WriteQueue::default(),
            closed: false,
            now,
            writes_paused: false,
            ice_state: IceConnectionState::New,
            ice_restarting: false,
            last_offer: None,
            last_answer: None,
            clock: SctpClock::new(SctpClock::FULL_ICE_MAX_SKIP),
            parked_udp: Vec::new(),
            relayed: false,
        }
    }

    #[cfg(test)]
    fn new_rtc(now: Instant, local: SocketAddr) -> Result<Rtc, LiveError> {
        Self::new_rtc_with(Rtc::builder(), now, udp_only(local))
    }

    fn new_rtc_with(config: RtcConfig, now: Instant, locals: LocalCandidates) -> Result<Rtc, LiveError> {
        let mut rtc = config.build(now);
        let bad = |e: str0m::error::IceError| LiveError::Rtc(format!("host candidate: {e}"));
        if let Some(udp) = locals.udp {
            rtc.add_local_candidate(Candidate::host(udp, "udp").map_err(bad)?);
        }
        if let Some(tcp) = locals.tcp {
            let active = Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(TcpType::Active)
                .build()
                .map_err(bad)?;
            rtc.add_local_candidate(active);
        }
        Ok(rtc)
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
        let answer = answer.to_sdp_string();
        // New remote ICE credentials: the server restarted ICE (dual-PC subscriber re-offer).
        let restarted = self
            .last_offer
            .as_deref()
            .is_some_and(|previous| ice_ufrag(previous) != ice_ufrag(offer_sdp));
        if restarted {
            self.ice_restarting = true;
            self.ice_generation += 1;
        }
        self.last_offer = Some(offer_sdp.to_owned());
        self.last_answer = Some(answer.clone());
        Ok(answer)
    }

    /// Creates the publisher peer (our `_reliable` / `_lossy` channels) with a UDP host
    /// candidate on `local`, and returns it with the SDP offer.
    #[cfg(test)]
    pub fn new(now: Instant, local: SocketAddr) -> Result<(Peer, String), LiveError> {
        Self::new_publisher(Self::new_rtc(now, local)?, now, udp_only(local))
    }

    fn new_publisher(
        mut rtc: Rtc,
        now: Instant,
        locals: LocalCandidates,
    ) -> Result<(Peer, String), LiveError> {
        let mut api = rtc.sdp_api();
        let (reliable, lossy) = add_data_channels(&mut api);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| LiveError::Rtc("no offer produced".into()))?;
        let mut peer = Self::with_rtc(rtc, locals, now);
        peer.pending_offer = Some(pending);
        peer.reliable = Some(reliable);
        peer.lossy = Some(lossy);
        let offer = offer.to_sdp_string();
        peer.last_offer = Some(offer.clone());
        Ok((peer, offer))
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
            .map_err(|e| LiveError::Rtc(format!("answer rejected: {e}")))?;
        self.last_answer = Some(sdp.to_owned());
        Ok(())
    }

    /// Adds a remote ICE candidate (`candidate:...` attribute, with or without the `a=`).
    pub fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), LiveError> {
        let c = candidate.trim().trim_start_matches("a=");
        if c.is_empty() {
            return Ok(()); // end-of-candidates
        }
        let cand =
            Candidate::from_sdp_string(c).map_err(|e| LiveError::Protocol(format!("bad candidate: {e}")))?;
        if cand.proto() == Protocol::Udp && self.locals.udp.is_none() && !self.relayed {
            // Pairless candidates make str0m's agent report Disconnected; a relayed
            // candidate added later takes these along.
            self.parked_udp.push(cand);
            return Ok(());
        }
        self.add_usable_remote(cand);
        Ok(())
    }

    /// Adds a TURN relayed candidate (`relayed` is its address and base, `local` our socket
    /// towards the TURN server); remote UDP candidates pair with it.
    pub fn add_relayed_candidate(&mut self, relayed: SocketAddr, local: SocketAddr) -> Result<(), LiveError> {
        let candidate = Candidate::relayed(relayed, local, "udp")
            .map_err(|e| LiveError::Rtc(format!("relayed candidate: {e}")))?;
        if self.locals.udp.is_none() && self.locals.tcp.is_none() {
            self.local = relayed;
        }
        self.rtc.add_local_candidate(candidate);
        self.relayed = true;
        for cand in std::mem::take(&mut self.parked_udp) {
            self.add_usable_remote(cand);
        }
        Ok(())
    }

    fn add_usable_remote(&mut self, cand: Candidate) {
        let usable = match cand.proto() {
            Protocol::Udp => self.locals.udp.is_some() || self.relayed,
            // We only connect out (active); the SFU listens (passive).
            Protocol::Tcp => self.locals.tcp.is_some() && cand.tcptype() == Some(TcpType::Passive),
            _ => false,
        };
        if !usable {
            log::debug!(
                "ignoring a remote {:?} candidate we have no path for",
                cand.proto()
            );
            return;
        }
        // Our local candidates share `self.local`'s IP: a remote candidate of the other address
        // family can never pair with them. Handing it to str0m anyway is harmful: when it is the
        // first remote candidate (LiveKit trickles e.g. `fd00::2` and `127.0.0.1` in either
        // order), the ICE agent has candidates but no pairs and reports `Disconnected`.
        if cand.addr().is_ipv4() != self.local.is_ipv4() {
            log::debug!("ignoring a remote candidate of another address family");
            return;
        }
        self.rtc.add_remote_candidate(cand);
    }

    /// Feeds a received UDP datagram; returns whether this connection accepted it (a sign of
    /// a live data path). Datagrams str0m does not recognise are ignored.
    #[cfg(test)]
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<bool, LiveError> {
        self.handle_packet(now, Protocol::Udp, source, self.local, data)
    }

    /// Feeds a packet received on any path ([`crate::live::net::Paths::recv`]); returns
    /// whether this connection accepted it, as [`Peer::handle_receive`].
    pub fn handle_datagram(&mut self, now: Instant, packet: &Datagram) -> Result<bool, LiveError> {
        self.handle_packet(now, packet.proto, packet.source, packet.destination, &packet.data)
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> Result<bool, LiveError> {
        self.now = self.now.max(now);
        let Ok(recv) = Receive::new(proto, source, destination, data) else {
            log::trace!("ignoring unrecognised packet from {source}");
            return Ok(false);
        };
        self.clock
            .receive(&mut self.rtc, now, recv)
            .map_err(|e| LiveError::Rtc(e.to_string()))
    }

    /// Advances time.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LiveError> {
        self.now = self.now.max(now);
        let path_ready = self.ice_connected();
        self.clock
            .timeout(&mut self.rtc, now, self.reliable, path_ready)
            .map_err(|e| LiveError::Rtc(e.to_string()))
    }

    /// Bytes written on the reliable channel that SCTP has not had acknowledged.
    fn reliable_buffered(&mut self) -> usize {
        sctp_clock::buffered_amount(&mut self.rtc, self.reliable)
    }

    /// Turns the SCTP clock skip off (tests measure the behaviour without it).
    #[cfg(test)]
    fn disable_sctp_clock_skip(&mut self) {
        self.clock = SctpClock::never_skipping();
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
        if !self.queue.push(data) {
            return Err(LiveError::Rtc("send queue full".into()));
        }
        self.flush();
        Ok(())
    }

    fn flush(&mut self) {
        if self.writes_paused {
            return;
        }
        let (true, Some(id)) = (self.reliable_open, self.reliable) else {
            return;
        };
        self.queue.flush(&mut self.rtc, id, &mut self.clock);
    }

    /// Drains the next output. Call until it returns [`PeerOutput::Timeout`].
    pub fn poll(&mut self) -> PeerOutput {
        loop {
            if self.closed {
                return PeerOutput::Timeout(self.now + std::time::Duration::from_secs(3600));
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.closed = true;
                    return PeerOutput::Closed(format!("webrtc failure: {e}"));
                }
            };
            match out {
                Output::Transmit(t) => {
                    return PeerOutput::Transmit(Datagram {
                        proto: t.proto,
                        source: t.source,
                        destination: t.destination,
                        data: t.contents.to_vec(),
                    })
                }
                Output::Timeout(t) => {
                    // A good moment to push queued data (buffer may have drained).
                    if !self.queue.is_empty() && self.reliable_open {
                        let before = self.queue.len();
                        self.flush();
                        if self.queue.len() != before {
                            continue;
                        }
                    }
                    let t = self.clock.drained(&mut self.rtc, self.reliable, t);
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
                        self.ice_state = state;
                        self.ice_restarting &= !matches!(
                            state,
                            IceConnectionState::Connected | IceConnectionState::Completed
                        );
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

    /// The ICE generation: 0, then one more after every ICE restart (ours or the server's).
    /// Transmits go out with it so ICE-TCP uses a fresh connection per generation.
    pub fn ice_generation(&self) -> u32 {
        self.ice_generation
    }

    /// Closes the connection locally.
    pub fn close(&mut self) {
        self.closed = true;
        self.rtc.disconnect();
    }

    /// Like [`Peer::new`], with the given STUN timing.
    #[cfg(test)]
    pub fn new_with_stun_timing(
        now: Instant,
        local: SocketAddr,
        timing: StunTiming,
    ) -> Result<(Peer, String), LiveError> {
        Self::new_on(now, udp_only(local), timing)
    }

    /// The publisher peer offering the given host candidates (UDP and/or TCP active), with
    /// the given STUN timing; returns it with the SDP offer.
    pub fn new_on(
        now: Instant,
        locals: LocalCandidates,
        timing: StunTiming,
    ) -> Result<(Peer, String), LiveError> {
        let rtc = Self::new_rtc_with(timing.rtc_config(), now, locals)?;
        Self::new_publisher(rtc, now, locals)
    }

    /// A subscriber peer from the server's SDP offer, with a UDP host candidate on `local` and
    /// the given STUN timing; returns it with our answer.
    #[cfg(test)]
    pub fn new_subscriber_with_stun_timing(
        now: Instant,
        local: SocketAddr,
        offer_sdp: &str,
        timing: StunTiming,
    ) -> Result<(Peer, String), LiveError> {
        Self::new_subscriber_on(now, udp_only(local), offer_sdp, timing)
    }

    /// Like [`Peer::new_subscriber_with_stun_timing`], offering the given host candidates (UDP
    /// and/or TCP active).
    pub fn new_subscriber_on(
        now: Instant,
        locals: LocalCandidates,
        offer_sdp: &str,
        timing: StunTiming,
    ) -> Result<(Peer, String), LiveError> {
        let rtc = Self::new_rtc_with(timing.rtc_config(), now, locals)?;
        let mut peer = Self::with_rtc(rtc, locals, now);
        let answer = peer.accept_offer(offer_sdp)?;
        Ok((peer, answer))
    }

    /// Offers an ICE restart (new ICE credentials, same DTLS/SCTP association, host candidate
    /// kept); returns the SDP offer to send. Apply the answer with [`Peer::accept_answer`].
    /// Fails while another offer of ours awaits its answer (never two in flight). A subscriber
    /// peer restarts by accepting the server's re-offer ([`Peer::accept_offer`]) instead.
    pub fn ice_restart(&mut self) -> Result<String, LiveError> {
        if self.pending_offer.is_some() {
            return Err(LiveError::Rtc(
                "an offer is already waiting for its answer".into(),
            ));
        }
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| LiveError::Rtc("ICE restart produced no offer".into()))?;
        self.pending_offer = Some(pending);
        self.ice_restarting = true;
        self.ice_generation += 1;
        let offer = offer.to_sdp_string();
        self.last_offer = Some(offer.clone());
        Ok(offer)
    }

    /// Forgets an offer whose answer can no longer come (the websocket it went out on is
    /// gone), so that [`Peer::ice_restart`] may offer again.
    pub fn abandon_pending_offer(&mut self) {
        self.pending_offer = None;
    }

    /// Takes the reliable messages not yet written into SCTP, oldest first (a full reconnect
    /// sends them on the new connection).
    pub fn take_unwritten(&mut self) -> Vec<Vec<u8>> {
        self.queue.take()
    }

    /// Stops (true) or restarts (false) writing reliable messages into SCTP. While paused they
    /// wait in our queue, where they start no SCTP retransmission timer (a lost link would
    /// otherwise grow SCTP's backoff with every message written into it).
    pub fn pause_writes(&mut self, paused: bool) {
        self.writes_paused = paused;
        if !paused {
            self.flush();
        }
    }

    /// Whether ICE is connected (or completed). After [`Peer::ice_restart`] it turns true only
    /// once the restarted checks succeed: the path is back.
    pub fn ice_connected(&self) -> bool {
        !self.ice_restarting
            && matches!(
                self.ice_state,
                IceConnectionState::Connected | IceConnectionState::Completed
            )
    }

    /// Whether the connection (and so its SCTP association) is gone.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// (Reliable messages still in our queue, bytes SCTP has not had acknowledged on the
    /// reliable channel): what `reliable::ReplayBuffer::sync` needs.
    pub fn reliable_backlog(&mut self) -> (usize, usize) {
        (self.queue.len(), self.reliable_buffered())
    }

    /// The last offer and answer exchanged on this peer connection (whichever side made them),
    /// for `SyncState`.
    pub fn last_offer_answer(&self) -> (Option<String>, Option<String>) {
        (self.last_offer.clone(), self.last_answer.clone())
    }

    /// Our data channels as `SyncState.data_channels` entries (label, SCTP stream id, target).
    pub fn data_channel_infos(
        &mut self,
        target: livekit_protocol::SignalTarget,
    ) -> Vec<livekit_protocol::DataChannelInfo> {
        let labelled = [(RELIABLE_LABEL, self.reliable), (LOSSY_LABEL, self.lossy)];
        let api = self.rtc.direct_api();
        labelled
            .into_iter()
            .filter_map(|(label, id)| {
                let stream = api.sctp_stream_id_by_channel_id(id?)?;
                Some(livekit_protocol::DataChannelInfo {
                    label: label.to_owned(),
                    id: u32::from(stream),
                    target: target as i32,
                })
            })
            .collect()
    }
}

/// Host candidates: UDP only, on `local`.
#[cfg(test)]
fn udp_only(local: SocketAddr) -> LocalCandidates {
    LocalCandidates {
        udp: Some(local),
        tcp: None,
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// The `a=ice-ufrag` value of an SDP (session or first media level).
fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
}

/// str0m's ICE (STUN) timing (design §1). [`StunTiming::RESILIENT`]: a nominated pair is
/// re-checked every second (consent), so a healthy path is never silent for 2.5 s and the first
/// answer after a cut marks the restore; and it is kept probing for about a minute instead of
/// being pruned after ≈ 20 s (pruned pairs never come back without an ICE restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunTiming {
    /// First retransmission timeout of a check (str0m default 250 ms).
    pub initial_rto: Duration,
    /// Cap of the retransmission timeout, and the re-check period of a working pair (default 3 s).
    pub max_rto: Duration,
    /// Unanswered checks before a pair is pruned (default 9).
    pub max_retransmits: usize,
}

impl StunTiming {
    /// Consent every second, a pair kept for about a minute without answers.
    pub const RESILIENT: StunTiming = StunTiming {
        initial_rto: Duration::from_millis(250),
        max_rto: Duration::from_secs(1),
        max_retransmits: 60,
    };

    fn rtc_config(&self) -> RtcConfig {
        let mut config = Rtc::builder();
        config.set_initial_stun_rto(self.initial_rto);
        config.set_max_stun_rto(self.max_rto);
        config.set_max_stun_retransmits(self.max_retransmits);
        config
    }
}

#[cfg(test)]
mod tests {
    //! Two str0m peers over an in-memory link with virtual time.
    use super::*;

    const CLIENT: &str = "10.0.0.1:5000";
    const SERVER: &str = "10.0.0.2:6000";

    /// A client (publisher, our `_reliable` channel) and a "server" (answering, adopting the
    /// channel by label) over a link that can be cut; time is virtual.
    struct Pair {
        client: Peer,
        server: Peer,
        now: Instant,
        link_up: bool,
        received: Vec<Vec<u8>>,
        /// Virtual arrival time of each entry of `received`.
        arrived: Vec<Instant>,
        /// What the client received, and when (virtual time).
        client_received: Vec<(Vec<u8>, Instant)>,
        client_open: bool,
        lost: usize,
    }

    impl Pair {
        fn connect(timing: StunTiming) -> Pair {
            let now = Instant::now();
            let (client, offer) = Peer::new_with_stun_timing(now, CLIENT.parse().unwrap(), timing).unwrap();
            let (server, answer) =
                Peer::new_subscriber_with_stun_timing(now, SERVER.parse().unwrap(), &offer, timing).unwrap();
            Self::connect_peers(now, client, server, &answer)
        }

        /// Like [`Pair::connect`], with an ICE-lite server that caps its clock skips as the
        /// embedded SFU must ([`SctpClock::ICE_LITE_MAX_SKIP`]).
        fn connect_to_ice_lite_server() -> Pair {
            let now = Instant::now();
            let timing = StunTiming::RESILIENT;
            let (client, offer) = Peer::new_with_stun_timing(now, CLIENT.parse().unwrap(), timing).unwrap();
            let local = SERVER.parse().unwrap();
            let rtc =
                Peer::new_rtc_with(timing.rtc_config().set_ice_lite(true), now, udp_only(local)).unwrap();
            let mut server = Peer::with_rtc(rtc, udp_only(local), now);
            server.clock = SctpClock::new(SctpClock::ICE_LITE_MAX_SKIP);
            let answer = server.accept_offer(&offer).unwrap();
            Self::connect_peers(now, client, server, &answer)
        }

        fn connect_peers(now: Instant, mut client: Peer, server: Peer, answer: &str) -> Pair {
            client.accept_answer(answer).unwrap();
            let mut pair = Pair {
                client,
                server,
                now,
                link_up: true,
                received: Vec::new(),
                arrived: Vec::new(),
                client_received: Vec::new(),
                client_open: false,
                lost: 0,
            };
            pair.run_until(now + Duration::from_secs(5), |p| p.client_open);
            assert!(pair.client_open, "reliable channel open");
            pair
        }

        /// Drains both peers, delivering transmits over the link; returns the earliest timeout.
        fn drain(&mut self) -> Instant {
            loop {
                let mut delivered = false;
                let client_timeout = loop {
                    match self.client.poll() {
                        PeerOutput::Transmit(Datagram {
                            destination: dest,
                            data,
                            ..
                        }) => {
                            assert_eq!(dest, SERVER.parse().unwrap());
                            delivered = true;
                            if self.link_up {
                                // As the engine does: a timeout right after each datagram.
                                self.server
                                    .handle_receive(self.now, CLIENT.parse().unwrap(), &data)
                                    .unwrap();
                                self.server.handle_timeout(self.now).unwrap();
                            } else {
                                self.lost += 1;
                            }
                        }
                        PeerOutput::Timeout(t) => break t,
                        PeerOutput::Open => self.client_open = true,
                        PeerOutput::Data(d) => self.client_received.push((d, self.now)),
                        PeerOutput::Closed(why) => panic!("client closed: {why}"),
                    }
                };
                let server_timeout = loop {
                    match self.server.poll() {
                        PeerOutput::Transmit(Datagram {
                            destination: dest,
                            data,
                            ..
                        }) => {
                            assert_eq!(dest, CLIENT.parse().unwrap());
                            delivered = true;
                            if self.link_up {
                                self.client
                                    .handle_receive(self.now, SERVER.parse().unwrap(), &data)
                                    .unwrap();
                                self.client.handle_timeout(self.now).unwrap();
                            } else {
                                self.lost += 1;
                            }
                        }
                        PeerOutput::Timeout(t) => break t,
                        PeerOutput::Data(d) => {
                            self.received.push(d);
                            self.arrived.push(self.now);
                        }
                        PeerOutput::Open => {}
                        PeerOutput::Closed(why) => panic!("server closed: {why}"),
                    }
                };
                if !delivered {
                    return client_timeout.min(server_timeout);
                }
            }
        }

        /// Runs until `done` or `until`, advancing virtual time from timeout to timeout.
        fn run_until(&mut self, until: Instant, mut done: impl FnMut(&Pair) -> bool) {
            while self.now < until && !done(self) {
                let next = self.drain().clamp(self.now + Duration::from_millis(1), until);
                self.now = next;
                self.client.handle_timeout(next).unwrap();
                self.server.handle_timeout(next).unwrap();
            }
            self.drain();
        }

        fn send(&mut self, i: u32) {
            self.client.send(true, i.to_be_bytes().to_vec()).unwrap();
        }

        /// Writes message `i` padded to `len` bytes.
        fn send_padded(&mut self, i: u32, len: usize) {
            let mut data = i.to_be_bytes().to_vec();
            data.resize(len, 0);
            self.client.send(true, data).unwrap();
        }

        /// The number each received message starts with.
        fn received_numbers(&self) -> Vec<u32> {
            self.received
                .iter()
                .map(|d| u32::from_be_bytes(d[..4].try_into().unwrap()))
                .collect()
        }
    }

    #[test]
    fn data_flows_between_two_in_memory_peers() {
        let mut p = Pair::connect(StunTiming::RESILIENT);
        assert!(p.client.ice_connected());
        for i in 0..10 {
            p.send(i);
        }
        let until = p.now + Duration::from_secs(1);
        p.run_until(until, |p| p.received.len() == 10);
        assert_eq!(p.received_numbers(), (0..10).collect::<Vec<_>>());
        let infos = p
            .client
            .data_channel_infos(livekit_protocol::SignalTarget::Publisher);
        let labels: Vec<_> = infos.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, [RELIABLE_LABEL, LOSSY_LABEL]);
        let (offer, answer) = p.client.last_offer_answer();
        assert!(offer.unwrap().contains("webrtc-datachannel") && answer.is_some());
    }

    #[test]
    fn only_one_offer_in_flight_and_paused_writes_stay_queued() {
        let mut p = Pair::connect(StunTiming::RESILIENT);
        p.client.pause_writes(true);
        p.send(1);
        p.send(2);
        let until = p.now + Duration::from_secs(2);
        p.run_until(until, |_| false);
        assert!(p.received.is_empty());
        assert_eq!(p.client.reliable_backlog(), (2, 0));
        p.client.pause_writes(false);
        assert_eq!(p.client.reliable_backlog().0, 0, "written into SCTP at once");
        let until = p.now + Duration::from_secs(1);
        p.run_until(until, |p| p.received.len() == 2);
        assert_eq!(p.received_numbers(), [1, 2]);

        assert_eq!(p.client.ice_generation(), 0);
        let offer = p.client.ice_restart().unwrap();
        assert_eq!(p.client.ice_generation(), 1, "ICE-TCP needs new connections");
        assert!(
            p.client.ice_restart().is_err(),
            "a second offer before the answer"
        );
        assert!(!p.client.ice_connected(), "restarting");
        let answer = p.server.accept_offer(&offer).unwrap();
        assert!(
            !p.server.ice_connected(),
            "the answering side sees the restart too"
        );
        assert_eq!(p.server.ice_generation(), 1);
        p.client.accept_answer(&answer).unwrap();
        let until = p.now + Duration::from_secs(3);
        p.run_until(until, |p| p.client.ice_connected() && p.server.ice_connected());
        assert!(p.client.ice_connected() && p.server.ice_connected());
        assert!(p.client.ice_restart().is_ok(), "the next restart may be offered");
    }

    /// When the messages written around a cut arrived, relative to the restore (virtual time).
    #[derive(Debug)]
    struct CutDelivery {
        /// The last of the messages written into SCTP in the cut, before it was noticed.
        stuck: Duration,
        /// The last message overall.
        last: Duration,
    }

    /// Cuts the link for `cut` (every datagram lost both ways): a message is written 50 ms
    /// before the cut, three at the cut and one a second into it (these reach SCTP and are
    /// lost). Then, if `busy`, three more after 2.5 s of silence, when writes are paused as the
    /// engine will. Restores the path, offers an ICE restart and, once ICE is back, resumes
    /// writes and (if `busy`) writes one more. Asserts that nothing closes and every message
    /// arrives once and in order; returns the arrival times after the restore.
    fn cut_and_restore(cut: Duration, clock_skip: bool, busy: bool) -> CutDelivery {
        let mut p = Pair::connect(StunTiming::RESILIENT);
        if !clock_skip {
            p.client.disable_sctp_clock_skip();
            p.server.disable_sctp_clock_skip();
        }
        let offer_before = p.client.last_offer_answer().0.unwrap();
        let mut next = 0u32;
        let mut send = |p: &mut Pair, n: u32| {
            for _ in 0..n {
                p.send(next);
                next += 1;
            }
        };
        send(&mut p, 5);
        let until = p.now + Duration::from_millis(500);
        p.run_until(until, |_| false);
        assert_eq!(p.received.len(), 5);
        send(&mut p, 1);
        let until = p.now + Duration::from_millis(50);
        p.run_until(until, |_| false);
        assert_eq!(p.received.len(), 6, "written just before the cut");

        p.link_up = false;
        let cut_at = p.now;
        // Written before the loss is noticed: these reach SCTP and start its timer.
        send(&mut p, 3);
        p.run_until(cut_at + Duration::from_secs(1), |_| false);
        send(&mut p, 1);
        let stuck = 9; // the index of that last message
        p.run_until(cut_at + Duration::from_millis(2500).min(cut), |_| false);
        p.client.pause_writes(true);
        if busy {
            // Calls made once the loss is noticed wait in our queue.
            send(&mut p, 3);
        }
        p.run_until(cut_at + cut, |_| false);
        assert!(p.lost > 0);
        let paused = if busy { 3 } else { 0 };
        assert_eq!(
            p.client.reliable_backlog().0,
            paused,
            "paused messages never reached SCTP"
        );
        assert!(!p.client.is_closed() && !p.server.is_closed());

        p.link_up = true;
        let restored_at = p.now;
        let offer = p.client.ice_restart().unwrap();
        assert_ne!(offer, offer_before);
        let answer = p.server.accept_offer(&offer).unwrap();
        p.client.accept_answer(&answer).unwrap();
        p.run_until(restored_at + Duration::from_secs(5), |p| p.client.ice_connected());
        assert!(p.client.ice_connected(), "ICE back after the restart");
        p.client.pause_writes(false);
        if busy {
            send(&mut p, 1);
        }
        let total = next as usize;
        p.run_until(restored_at + Duration::from_secs(70), |p| {
            p.received.len() == total
        });
        assert_eq!(p.received_numbers(), (0..next).collect::<Vec<_>>());
        let after_restore = |i: usize| p.arrived[i].saturating_duration_since(restored_at);
        CutDelivery {
            stuck: after_restore(stuck),
            last: after_restore(total - 1),
        }
    }

    /// The embedded SFU's direction: an ICE-lite server's messages in flight at a cut (and one
    /// written just before it) reach the client within 1 s of the restore when the server's
    /// clock skips too, capped at 10 s between inbound packets (its pairs die 15 s after the
    /// last binding request). Returns when the last one arrived after the restore.
    fn server_data_across_a_cut(cut: Duration, clock_skip: bool) -> Duration {
        let mut p = Pair::connect_to_ice_lite_server();
        if !clock_skip {
            p.server.disable_sctp_clock_skip();
        }
        let until = p.now + Duration::from_millis(200);
        p.run_until(until, |_| false);
        let send = |p: &mut Pair, i: u32| p.server.send(true, i.to_be_bytes().to_vec()).unwrap();
        send(&mut p, 0);
        let until = p.now + Duration::from_millis(50);
        p.run_until(until, |_| false);
        p.link_up = false;
        let cut_at = p.now;
        for i in 1..4 {
            send(&mut p, i);
        }
        p.run_until(cut_at + cut, |_| false);
        p.link_up = true;
        let restored_at = p.now;
        let offer = p.client.ice_restart().unwrap();
        let answer = p.server.accept_offer(&offer).unwrap();
        p.client.accept_answer(&answer).unwrap();
        p.run_until(restored_at + Duration::from_secs(70), |p| {
            p.client_received.len() == 4
        });
        let numbers: Vec<u32> = p
            .client_received
            .iter()
            .map(|(d, _)| u32::from_be_bytes(d.as_slice().try_into().unwrap()))
            .collect();
        assert_eq!(numbers, [0, 1, 2, 3]);
        p.client_received[3].1 - restored_at
    }

    #[test]
    fn an_ice_lite_servers_stuck_data_arrives_within_1_s_of_the_restore() {
        for cut in [10, 20] {
            let cut = Duration::from_secs(cut);
            let without = server_data_across_a_cut(cut, false);
            let with = server_data_across_a_cut(cut, true);
            eprintln!(
                "{:>2} s cut, ICE-lite server to client: delivered {without:?} after the restore without clock skip, {with:?} with",
                cut.as_secs()
            );
            assert!(with <= Duration::from_secs(1), "{cut:?} cut: {with:?}");
            assert!(without > with);
        }
    }

    /// A 10 s cut with messages stuck in SCTP, then 256 KiB written at once (more than str0m buffers) when ICE is back:
    /// returns when its last message arrived after the restore (virtual time).
    fn bulk_after_a_cut(clock_skip: bool) -> Duration {
        const TOTAL: u32 = 3 + 64;
        let mut p = Pair::connect(StunTiming::RESILIENT);
        if !clock_skip {
            p.client.disable_sctp_clock_skip();
        }
        p.link_up = false;
        let cut_at = p.now;
        for i in 0..3 {
            p.send(i);
        }
        p.run_until(cut_at + Duration::from_secs(10), |_| false);
        p.link_up = true;
        let restored_at = p.now;
        let offer = p.client.ice_restart().unwrap();
        let answer = p.server.accept_offer(&offer).unwrap();
        p.client.accept_answer(&answer).unwrap();
        p.run_until(restored_at + Duration::from_secs(5), |p| p.client.ice_connected());
        for i in 3..TOTAL {
            p.send_padded(i, 4096);
        }
        p.run_until(restored_at + Duration::from_secs(120), |p| {
            p.received.len() == TOTAL as usize
        });
        assert_eq!(p.received_numbers(), (0..TOTAL).collect::<Vec<_>>());
        p.arrived[TOTAL as usize - 1] - restored_at
    }

    /// The clock skip speeds up the stuck messages and does not slow down a long transfer
    /// that follows them (a skip in the middle of it would cut SCTP's window back).
    #[test]
    fn a_long_transfer_after_a_cut_is_not_slowed_by_the_clock_skip() {
        let without = bulk_after_a_cut(false);
        let with = bulk_after_a_cut(true);
        eprintln!(
            "10 s cut then 256 KiB: delivered {without:?} after the restore without clock skip, {with:?} with"
        );
        assert!(with < without && with <= Duration::from_secs(1), "{with:?}");
    }

    #[test]
    fn offers_a_tcp_active_candidate_and_parses_the_servers_tcp_ones() {
        let locals = LocalCandidates {
            udp: Some(CLIENT.parse().unwrap()),
            tcp: Some("10.0.0.1:9".parse().unwrap()),
        };
        let (mut peer, offer) = Peer::new_on(Instant::now(), locals, StunTiming::RESILIENT).unwrap();
        let candidates: Vec<&str> = offer.lines().filter(|l| l.starts_with("a=candidate")).collect();
        assert!(candidates
            .iter()
            .any(|c| c.contains(" udp ") && c.contains("10.0.0.1 5000")));
        assert!(
            candidates
                .iter()
                .any(|c| c.contains(" tcp ") && c.contains("10.0.0.1 9 typ host tcptype active")),
            "{candidates:?}"
        );
        for remote in [
            "candidate:1 1 tcp 1671430143 10.0.0.2 7881 typ host tcptype passive",
            "candidate:2 1 tcp 1671430143 10.0.0.2 7882 typ host tcptype active",
            "candidate:3 1 udp 2130706431 10.0.0.2 7883 typ host",
        ] {
            peer.add_remote_candidate(remote).unwrap();
        }
        let tcp_only = LocalCandidates {
            udp: None,
            tcp: Some("10.0.0.1:9".parse().unwrap()),
        };
        let (_, offer) = Peer::new_on(Instant::now(), tcp_only, StunTiming::RESILIENT).unwrap();
        assert!(!offer.contains(" udp "), "no UDP candidate when UDP is off");
    }

    /// Design Part 4 step 4: the peers survive a 30 s cut through an ICE restart.
    #[test]
    fn peers_survive_a_30_s_cut_through_an_ice_restart() {
        cut_and_restore(Duration::from_secs(30), true, true);
    }

    /// Issue 9's cut lengths. Without the SCTP clock skip, what was in flight at the cut waits
    /// for SCTP's retransmission backoff (T3 doubling from 1 s, design D2): until the next
    /// expiry when nothing else is written ("quiet"), about a second when later messages are
    /// acknowledged around the lost ones ("busy"). With it (design §4 B), everything arrives
    /// within 1 s of the restore. Prints both.
    #[test]
    fn after_2_10_20_and_45_s_cuts_stuck_data_arrives_within_1_s_of_the_restore() {
        for cut in [2, 10, 20, 45] {
            let cut = Duration::from_secs(cut);
            for busy in [false, true] {
                let without = cut_and_restore(cut, false, busy);
                let with = cut_and_restore(cut, true, busy);
                eprintln!(
                    "{:>2} s cut, {}: delivered after the restore (virtual time): without clock skip {:?} (last {:?}), with {:?} (last {:?})",
                    cut.as_secs(),
                    if busy { "busy" } else { "quiet" },
                    without.stuck,
                    without.last,
                    with.stuck,
                    with.last,
                );
                assert!(with.last <= Duration::from_secs(1), "{cut:?} cut: {with:?}");
                assert!(without.stuck > with.stuck, "{cut:?} cut: {without:?}");
            }
        }
    }
}
