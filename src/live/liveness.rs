//! Liveness of a connection (sans-IO, design §1): is the data path (the peer connection's
//! datagrams) alive, is the signal websocket alive, and when to ping the server.
//!
//! The data path counts as lost after [`LivenessConfig::data_lost_after`] without any inbound
//! datagram the peer connection accepted; with str0m's consent checks every second
//! (`StunTiming`'s `max_rto` of 1 s) a healthy path is never that quiet. The first accepted
//! datagram after a loss restores it. The signal is pinged every
//! [`LivenessConfig::ping_interval`], every [`LivenessConfig::degraded_ping_interval`] while the
//! data path is lost, and counts as lost when no websocket frame at all arrives within
//! [`LivenessConfig::signal_lost_after`] of an unanswered ping.

use std::time::{Duration, Instant};

/// Timing of the liveness decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Data path lost after this long without an inbound datagram.
    pub data_lost_after: Duration,
    /// Signal ping period while the data path is healthy.
    pub ping_interval: Duration,
    /// Signal ping period while the data path is lost.
    pub degraded_ping_interval: Duration,
    /// Signal lost when nothing arrives this long after an unanswered ping.
    pub signal_lost_after: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            data_lost_after: Duration::from_millis(2500),
            ping_interval: Duration::from_secs(5),
            degraded_ping_interval: Duration::from_secs(1),
            signal_lost_after: Duration::from_secs(3),
        }
    }
}

/// A liveness decision the engine acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessEvent {
    /// Send a `SignalRequest.ping_req` now.
    SendPing,
    /// No inbound datagram since `last_inbound`.
    DataPathLost {
        /// When the last datagram arrived.
        last_inbound: Instant,
    },
    /// A datagram arrived after a loss.
    DataPathRestored {
        /// How long the path had been silent.
        silent_for: Duration,
    },
    /// The websocket answered nothing after a ping: treat it as closed.
    SignalLost,
}

/// Data-path and signal liveness of one connection.
#[derive(Debug)]
pub struct Liveness {
    cfg: LivenessConfig,
    last_inbound: Instant,
    data_lost: bool,
    next_ping: Instant,
    unanswered_ping_since: Option<Instant>,
    signal_lost: bool,
}

impl Liveness {
    /// Starts watching a connection established at `now`.
    pub fn new(now: Instant, cfg: LivenessConfig) -> Self {
        Liveness {
            cfg,
            last_inbound: now,
            data_lost: false,
            next_ping: now + cfg.ping_interval,
            unanswered_ping_since: None,
            signal_lost: false,
        }
    }

    /// The peer connection accepted an inbound datagram.
    pub fn on_datagram(&mut self, now: Instant) -> Option<LivenessEvent> {
        let silent_for = now.saturating_duration_since(self.last_inbound);
        self.last_inbound = self.last_inbound.max(now);
        if !self.data_lost {
            return None;
        }
        self.data_lost = false;
        self.next_ping = self.next_ping.max(now + self.cfg.degraded_ping_interval);
        Some(LivenessEvent::DataPathRestored { silent_for })
    }

    /// A websocket frame (a pong or anything else) arrived.
    pub fn on_signal_frame(&mut self, _now: Instant) {
        self.unanswered_ping_since = None;
    }

    /// A new websocket replaced a lost one (resume or rejoin): watch it afresh.
    pub fn on_signal_replaced(&mut self, now: Instant) {
        self.signal_lost = false;
        self.unanswered_ping_since = None;
        self.next_ping = now + self.ping_interval();
    }

    #[cfg(test)]
    /// Whether the data path is currently considered lost.
    pub fn data_path_lost(&self) -> bool {
        self.data_lost
    }

    #[cfg(test)]
    /// Whether a datagram arrived within `window` before `now` (resume: skip the ICE restart
    /// when the path is demonstrably healthy).
    pub fn data_path_heard_within(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last_inbound) < window
    }

    #[cfg(test)]
    /// Whether the websocket was declared lost (until [`on_signal_replaced`](Self::on_signal_replaced)).
    pub fn signal_lost(&self) -> bool {
        self.signal_lost
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self.next_ping;
        if !self.data_lost {
            at = at.min(self.last_inbound + self.cfg.data_lost_after);
        }
        if let (false, Some(since)) = (self.signal_lost, self.unanswered_ping_since) {
            at = at.min(since + self.cfg.signal_lost_after);
        }
        at
    }

    /// Advances time; returns the decisions due, in order.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<LivenessEvent> {
        let mut out = Vec::new();
        if !self.data_lost && now >= self.last_inbound + self.cfg.data_lost_after {
            self.data_lost = true;
            out.push(LivenessEvent::DataPathLost {
                last_inbound: self.last_inbound,
            });
            // Ask the signal path at once whether it is alive too.
            self.next_ping = now;
        }
        if self.signal_lost {
            return out;
        }
        if let Some(since) = self.unanswered_ping_since {
            if now >= since + self.cfg.signal_lost_after {
                self.signal_lost = true;
                out.push(LivenessEvent::SignalLost);
                return out;
            }
        }
        if now >= self.next_ping {
            out.push(LivenessEvent::SendPing);
            self.unanswered_ping_since.get_or_insert(now);
            self.next_ping = now + self.ping_interval();
        }
        out
    }

    fn ping_interval(&self) -> Duration {
        if self.data_lost {
            self.cfg.degraded_ping_interval
        } else {
            self.cfg.ping_interval
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs the machine over `[from, to]` at its own deadlines; returns (offset from t0, event).
    fn run(l: &mut Liveness, t0: Instant, to: Duration) -> Vec<(Duration, LivenessEvent)> {
        let mut out = Vec::new();
        loop {
            let at = l.poll_timeout();
            if at > t0 + to {
                return out;
            }
            for e in l.handle_timeout(at) {
                out.push((at - t0, e));
            }
        }
    }

    #[test]
    fn healthy_path_pings_every_five_seconds_and_is_never_lost() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, LivenessConfig::default());
        for i in 1..=20 {
            let now = t0 + ms(i * 1000);
            assert_eq!(l.on_datagram(now), None);
            l.on_signal_frame(now);
            let due: Vec<_> = std::iter::from_fn(|| (l.poll_timeout() <= now).then(|| l.handle_timeout(now)))
                .flatten()
                .collect();
            let expect: &[LivenessEvent] = if i % 5 == 0 {
                &[LivenessEvent::SendPing]
            } else {
                &[]
            };
            assert_eq!(due, expect, "at {i} s");
        }
        assert!(!l.data_path_lost() && !l.signal_lost());
    }

    #[test]
    fn data_path_lost_at_2_5_s_then_pings_every_second_while_the_signal_answers() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, LivenessConfig::default());
        let events = run(&mut l, t0, ms(2500));
        assert_eq!(
            events,
            [
                (ms(2500), LivenessEvent::DataPathLost { last_inbound: t0 }),
                (ms(2500), LivenessEvent::SendPing)
            ]
        );
        assert!(l.data_path_lost());
        l.on_signal_frame(t0 + ms(2600)); // pong
        let events = run(&mut l, t0, ms(4000));
        assert_eq!(events, [(ms(3500), LivenessEvent::SendPing)]);
        l.on_signal_frame(t0 + ms(3550));
        assert_eq!(run(&mut l, t0, ms(4600)), [(ms(4500), LivenessEvent::SendPing)]);
        // The first datagram restores the path; pings slow down again.
        let restored = l.on_datagram(t0 + ms(4700));
        assert_eq!(
            restored,
            Some(LivenessEvent::DataPathRestored { silent_for: ms(4700) })
        );
        assert!(!l.data_path_lost());
        assert!(l.data_path_heard_within(t0 + ms(5000), ms(1000)));
        assert_eq!(l.on_datagram(t0 + ms(4800)), None);
    }

    #[test]
    fn signal_lost_three_seconds_after_an_unanswered_ping() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, LivenessConfig::default());
        let mut now = t0;
        // Data keeps flowing; the websocket goes silent.
        let mut events = Vec::new();
        while now < t0 + ms(9000) {
            now += ms(500);
            l.on_datagram(now);
            if l.poll_timeout() <= now {
                events.extend(l.handle_timeout(now).into_iter().map(|e| (now - t0, e)));
            }
        }
        assert_eq!(
            events,
            [
                (ms(5000), LivenessEvent::SendPing),
                (ms(8000), LivenessEvent::SignalLost)
            ]
        );
        assert!(l.signal_lost());
        // No more pings until a new websocket replaces it.
        l.on_datagram(t0 + ms(19_900));
        assert!(l.handle_timeout(t0 + ms(20_000)).is_empty());
        l.on_signal_replaced(t0 + ms(20_000));
        assert!(!l.signal_lost());
        l.on_datagram(t0 + ms(24_000));
        assert_eq!(
            l.poll_timeout(),
            t0 + ms(25_000),
            "next ping, 5 s after the replacement"
        );
    }

    #[test]
    fn a_late_frame_before_the_deadline_keeps_the_signal() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, LivenessConfig::default());
        l.on_datagram(t0 + ms(4000));
        assert_eq!(l.handle_timeout(t0 + ms(5000)), [LivenessEvent::SendPing]);
        l.on_datagram(t0 + ms(6000));
        l.on_signal_frame(t0 + ms(7900));
        l.on_datagram(t0 + ms(8000));
        assert!(l.handle_timeout(t0 + ms(8000)).is_empty());
        assert!(!l.signal_lost());
    }
}
