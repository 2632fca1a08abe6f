//! TURN relays as a path of a peer connection: the last resort when neither UDP nor ICE-TCP
//! reaches the server.
//!
//! The servers come from LiveKit's `ice_servers` (join response). Allocations start when the
//! peer has been checking for [`TURN_AFTER`] without a working pair (at once when the server
//! sets `force_relay`); every allocation that succeeds becomes a local *relayed* candidate of
//! the peer. str0m's priorities (relayed below host) keep a direct path preferred whenever one
//! works. Packets str0m sends from a relayed address go through its allocation (a permission
//! for the destination's IP is installed first); packets the relay delivers come back as UDP
//! packets addressed to the relayed address.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::{Datagram, NetworkPath, PathAttempt, PathOutcome, PathRecord};
use crate::live::turn::{url_host, TurnAllocation, TurnError, TurnOptions, TurnServer, TurnTransport};
use str0m::net::Protocol;

/// How long the peer checks its direct paths before TURN allocations start.
pub const TURN_AFTER: Duration = Duration::from_millis(1500);

/// The TURN servers a peer connection may use, and how.
#[derive(Debug, Clone)]
pub struct TurnPlan {
    /// In the order the server gave them.
    pub servers: Vec<TurnServer>,
    /// TLS roots and the allocate timeout.
    pub options: TurnOptions,
    /// Allocate at once, without waiting for the direct paths (`force_relay`).
    pub force: bool,
}

/// What a relay produced: a packet, or a new relayed candidate to offer.
#[derive(Debug)]
pub enum RelayEvent {
    /// A packet from a peer through a relay, and which kind of relay.
    Packet {
        /// The packet.
        packet: Datagram,
        /// The relay's kind.
        path: NetworkPath,
    },
    /// An allocation succeeded: `relayed` is the candidate's address, `local` our end of the
    /// connection to the TURN server.
    Allocated {
        /// The relayed address.
        relayed: SocketAddr,
        /// Our socket towards the TURN server.
        local: SocketAddr,
    },
}

type AllocateResult = (NetworkPath, Result<TurnAllocation, TurnError>);

struct Relay {
    kind: NetworkPath,
    allocation: TurnAllocation,
    permitted: HashSet<IpAddr>,
    record: PathRecord,
}

/// The TURN side of [`super::Paths`].
pub(crate) struct Relays {
    plan: Option<TurnPlan>,
    start_at: Option<Instant>,
    started: bool,
    /// Allocations under way: the path and the server's `host:port`.
    pending: Vec<(NetworkPath, String)>,
    results_tx: mpsc::UnboundedSender<AllocateResult>,
    results: mpsc::UnboundedReceiver<AllocateResult>,
    active: Vec<Relay>,
    failed: Vec<PathAttempt>,
}

impl Relays {
    pub(crate) fn new() -> Relays {
        let (results_tx, results) = mpsc::unbounded_channel();
        Relays {
            plan: None,
            start_at: None,
            started: false,
            pending: Vec::new(),
            results_tx,
            results,
            active: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Sets the servers (an empty list switches TURN off). With `force`, allocations start
    /// on the next [`Relays::poll`].
    pub(crate) fn plan(&mut self, plan: TurnPlan, now: Instant) {
        if plan.servers.is_empty() || self.started {
            return;
        }
        if plan.force {
            self.start_at = Some(now);
        }
        self.plan = Some(plan);
    }

    /// The peer started checking: allocations start [`TURN_AFTER`] from now unless a pair
    /// works by then.
    pub(crate) fn arm(&mut self, now: Instant) {
        if self.plan.is_some() && self.start_at.is_none() {
            self.start_at = Some(now + TURN_AFTER);
        }
    }

    /// When [`Relays::poll`] has something to do.
    pub(crate) fn timeout(&self) -> Option<Instant> {
        self.start_at.filter(|_| !self.started && self.plan.is_some())
    }

    /// Starts the allocations when due and no pair works yet (`ice_connected`).
    pub(crate) fn poll(&mut self, now: Instant, ice_connected: bool) {
        let Some(start_at) = self.timeout() else {
            return;
        };
        if now < start_at {
            return;
        }
        self.started = true;
        let Some(plan) = self.plan.take() else {
            return;
        };
        if ice_connected && !plan.force {
            log::debug!("TURN not needed: a direct path works");
            return;
        }
        for server in plan.servers {
            let kind = kind_of(server.url.transport);
            log::info!(
                "TURN: allocating on {kind} {}:{}",
                server.url.host,
                server.url.port
            );
            self.pending.push((
                kind,
                format!("{}:{}", url_host(&server.url.host), server.url.port),
            ));
            let options = plan.options.clone();
            let results = self.results_tx.clone();
            tokio::spawn(async move {
                let result = TurnAllocation::allocate(&server, &options).await;
                let _ = results.send((kind, result));
            });
        }
    }

    /// Whether an allocation is up.
    pub(crate) fn has_relay(&self) -> bool {
        !self.active.is_empty()
    }

    /// The relayed candidates so far: (relayed address, local address).
    pub(crate) fn candidates(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.active
            .iter()
            .map(|r| (r.allocation.relayed_addr(), r.allocation.local_addr()))
            .collect()
    }

    /// Sends `packet` through the relay whose address is its source; `false` if none is.
    pub(crate) fn route(&mut self, packet: &Datagram) -> bool {
        if packet.proto != Protocol::Udp {
            return false;
        }
        let Some(index) = self
            .active
            .iter()
            .position(|r| r.allocation.relayed_addr() == packet.source)
        else {
            return false;
        };
        let relay = &mut self.active[index];
        let peer_ip = packet.destination.ip();
        if relay.permitted.insert(peer_ip) {
            // Queued ahead of the packet; the allocation holds packets until it is installed.
            drop(relay.allocation.create_permission(peer_ip));
        }
        relay.record.sent += 1;
        if let Err(e) = relay.allocation.send_to(packet.destination, packet.data.clone()) {
            log::debug!("TURN relay lost: {e}");
            self.fail(index, e);
        }
        true
    }

    /// The next event of any relay. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> RelayEvent {
        loop {
            tokio::select! {
                Some((kind, result)) = self.results.recv() => {
                    if let Some(pos) = self.pending.iter().position(|(k, _)| *k == kind) {
                        self.pending.remove(pos);
                    }
                    match result {
                        Ok(allocation) => {
                            let (relayed, local) = (allocation.relayed_addr(), allocation.local_addr());
                            log::info!("TURN: relayed candidate {relayed} via {kind} {}", allocation.server_addr());
                            self.active.push(Relay {
                                kind,
                                allocation,
                                permitted: HashSet::new(),
                                record: PathRecord::default(),
                            });
                            return RelayEvent::Allocated { relayed, local };
                        }
                        Err(e) => {
                            log::info!("TURN: {e}");
                            self.failed.push(attempt_of_error(kind, &e));
                        }
                    }
                }
                (index, received) = recv_any(&mut self.active) => match received {
                    Ok(datagram) => {
                        let relay = &mut self.active[index];
                        relay.record.record_received(&datagram.data);
                        let packet = Datagram {
                            proto: Protocol::Udp,
                            source: datagram.peer,
                            destination: relay.allocation.relayed_addr(),
                            data: datagram.data,
                        };
                        return RelayEvent::Packet { packet, path: relay.kind };
                    }
                    Err(e) => {
                        log::info!("TURN relay lost: {e}");
                        self.fail(index, e);
                    }
                },
            }
        }
    }

    fn fail(&mut self, index: usize, error: TurnError) {
        let relay = self.active.remove(index);
        self.failed.push(attempt_of_error(relay.kind, &error));
    }

    /// Every TURN path tried and how it fared; nothing when TURN was not used.
    pub(crate) fn attempts(&self) -> Vec<PathAttempt> {
        let mut attempts = self.failed.clone();
        for relay in &self.active {
            attempts.push(PathAttempt {
                kind: relay.kind,
                remote: Some(relay.allocation.server_addr().to_string()),
                outcome: if relay.record.answers > 0 {
                    PathOutcome::Answered
                } else {
                    PathOutcome::Allocated
                },
            });
        }
        for (kind, server) in &self.pending {
            attempts.push(PathAttempt {
                kind: *kind,
                remote: Some(server.clone()),
                outcome: PathOutcome::TimedOut,
            });
        }
        attempts.sort_by_key(|a| a.kind);
        attempts
    }
}

async fn recv_any(relays: &mut [Relay]) -> (usize, Result<crate::live::turn::PeerDatagram, TurnError>) {
    if relays.is_empty() {
        return std::future::pending().await;
    }
    let receives = relays
        .iter_mut()
        .enumerate()
        .map(|(i, r)| Box::pin(async move { (i, r.allocation.recv().await) }));
    futures_util::future::select_all(receives).await.0
}

fn kind_of(transport: TurnTransport) -> NetworkPath {
    match transport {
        TurnTransport::Udp => NetworkPath::TurnUdp,
        TurnTransport::Tcp => NetworkPath::TurnTcp,
        TurnTransport::Tls => NetworkPath::TurnTls,
    }
}

/// The report line of a failed allocation (the error names addresses, never credentials).
fn attempt_of_error(kind: NetworkPath, error: &TurnError) -> PathAttempt {
    let (remote, outcome) = match error {
        TurnError::Resolve { host, .. } => (None, PathOutcome::Failed(format!("cannot resolve {host}"))),
        TurnError::Refused { server, .. } => (Some(*server), PathOutcome::Refused),
        TurnError::Io { server, reason, .. } => (Some(*server), PathOutcome::Failed(reason.clone())),
        TurnError::TlsFailed { server, reason } => (Some(*server), PathOutcome::TlsFailed(reason.clone())),
        TurnError::AuthFailed { server, code, .. } => (Some(*server), PathOutcome::AuthFailed(*code)),
        TurnError::Rejected { server, code, .. } => (
            Some(*server),
            PathOutcome::Failed(format!("allocation refused (error {code})")),
        ),
        TurnError::TimedOut { server, .. } => (Some(*server), PathOutcome::TimedOut),
        TurnError::Closed { server, .. } => (Some(*server), PathOutcome::Failed("allocation closed".into())),
        TurnError::Proxy {
            server,
            proxy,
            reason,
            ..
        } => (
            Some(*server),
            PathOutcome::Failed(format!("via proxy {proxy}: {reason}")),
        ),
    };
    PathAttempt {
        kind,
        remote: remote.map(|addr| addr.to_string()),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_failures_are_reported_by_kind_without_credentials() {
        let server: SocketAddr = "127.0.0.1:5349".parse().unwrap();
        let auth = attempt_of_error(
            NetworkPath::TurnTls,
            &TurnError::AuthFailed {
                server,
                transport: TurnTransport::Tls,
                code: 401,
            },
        );
        assert_eq!(
            auth.to_string(),
            "TURN/TLS 127.0.0.1:5349: authentication failed (401)"
        );
        let tls = attempt_of_error(
            NetworkPath::TurnTls,
            &TurnError::TlsFailed {
                server,
                reason: "invalid peer certificate".into(),
            },
        );
        assert_eq!(
            tls.to_string(),
            "TURN/TLS 127.0.0.1:5349: TLS failed: invalid peer certificate"
        );
        let timed_out = attempt_of_error(
            NetworkPath::TurnUdp,
            &TurnError::TimedOut {
                server,
                transport: TurnTransport::Udp,
                after: Duration::from_secs(5),
            },
        );
        assert_eq!(timed_out.to_string(), "TURN/UDP 127.0.0.1:5349: timed out");
    }

    #[test]
    fn allocations_wait_for_the_direct_paths_unless_forced() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let now = Instant::now();
            let server = TurnServer::new(
                crate::live::turn::parse_turn_url("turn:127.0.0.1:3478").unwrap(),
                "user",
                "secret",
            );
            let options = TurnOptions::new(&[]).unwrap();
            let mut relays = Relays::new();
            relays.plan(
                TurnPlan {
                    servers: vec![server.clone()],
                    options: options.clone(),
                    force: false,
                },
                now,
            );
            assert_eq!(relays.timeout(), None, "not before checking starts");
            relays.arm(now);
            assert_eq!(relays.timeout(), Some(now + TURN_AFTER));
            relays.poll(now + TURN_AFTER, true);
            assert_eq!(relays.timeout(), None);
            assert!(relays.attempts().is_empty(), "a working direct path: no TURN");

            let mut forced = Relays::new();
            forced.plan(
                TurnPlan {
                    servers: vec![server],
                    options,
                    force: true,
                },
                now,
            );
            assert_eq!(forced.timeout(), Some(now));
        });
    }
}
