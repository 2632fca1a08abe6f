//! Clock skip: the remedy for SCTP's retransmission backoff after a cut (design §4 B, issue 9).
//!
//! str0m 0.25 runs its SCTP association (sctp-proto 0.10.8) with RTO min 1 s and max 60 s and
//! offers no way to lower the maximum. A chunk in flight when the path is cut is retransmitted
//! by the T3 timer at +1, +3, +7, +15, +31, +63 s; once the path is back, that chunk (and
//! everything behind it on the ordered reliable stream) waits for the next of those deadlines.
//!
//! str0m is sans-IO and only needs a monotonic clock, so the peer feeds it *virtual* time:
//! `real + offset`. When the path returns after a silence and the reliable channel's
//! unacknowledged bytes do not drain, [`SctpClock`] raises the offset to the estimated T3
//! deadline, so the retransmission happens now instead of seconds later. Timeouts str0m asks
//! for are converted back to real time for the caller's sleep.
//!
//! Side effects, checked against the sources (str0m 0.25.0, is 0.12.0, sctp-proto 0.10.8):
//! - ICE (full agent) sees its last checks as older: the nominated pair is re-checked at once;
//!   pairs are pruned by *unanswered count*, which a skip does not change. An ICE-lite agent
//!   (the embedded SFU) drops a pair 15 s after the last binding request it got, so it must cap
//!   a skip well below that ([`SctpClock::ICE_LITE_MAX_SKIP`]).
//! - DTLS is established (no running timers); data-channel open timers are long finished.
//! - SCTP RTT samples only use chunks sent once (Karn, sctp-proto `nsent == 1`): the chunks
//!   the skipped-to T3 expiry resends have `nsent >= 2`. A chunk that reached the peer just
//!   before the cut but whose SACK was lost is sampled when the first SACK after the restore
//!   arrives; with the skip that is at the same virtual instant as without it (the T3 deadline
//!   the skip lands on, plus a round trip), so the sample is no worse than without the remedy.
//! - Nothing on the wire carries these instants (STUN, DTLS and SCTP have no timestamps), so
//!   the remote peer never sees the offset.
//!
//! The T3 deadline is estimated by mirroring sctp-proto's timer rules from what the peer can
//! observe: the bytes it writes on the reliable channel and the channel's buffered amount. An
//! estimate too late only makes the virtual clock jump further than needed (the timer fires on
//! any input at or past its deadline); an estimate too early is caught by the next check and
//! followed by a skip to the next estimated deadline.

use std::time::{Duration, Instant};
use str0m::channel::ChannelId;
use str0m::net::Receive;
use str0m::{Input, Rtc, RtcError};

/// Inbound silence after which the next inbound packet counts as the path's return (a healthy
/// path with 1 s consent checks is never silent that long).
const SILENCE_BEFORE_RESTORE: Duration = Duration::from_millis(1500);
/// How long stuck bytes may go without any acknowledgement after the return (or after a skip)
/// before the clock is skipped: one round trip (assumed ≤ 100 ms: Wi-Fi to a nearby server)
/// plus 50 ms. On a slower path a skip costs one duplicate retransmission; the congestion
/// window has usually collapsed already, since T3 fired during the silence.
const DRAIN_GRACE: Duration = Duration::from_millis(150);
/// Skips per return of the path (a retransmission lost again is retried by the next one).
const MAX_SKIPS_PER_RESTORE: u32 = 5;
/// A return of the path is handled for this long: the ICE restart that follows a long cut
/// (resume over a new websocket) must complete within it.
const RESTORE_WINDOW: Duration = Duration::from_secs(30);
/// How far past the estimated T3 deadline a skip lands, to absorb rounding and wake-up lateness.
const SKIP_MARGIN: Duration = Duration::from_millis(20);
/// sctp-proto's RTO once a round trip has been measured on a path faster than ≈ 250 ms (its
/// minimum, `RTO_MIN`).
const RTO: Duration = Duration::from_secs(1);
/// sctp-proto's cap on the backed-off T3 interval (`RTO_MAX`).
const RTO_MAX: Duration = Duration::from_secs(60);

/// Virtual time for one str0m `Rtc` plus the decision when to skip it forward.
///
/// With str0m: feed every input through [`SctpClock::receive`] and [`SctpClock::timeout`],
/// report every successful write on the reliable channel with [`SctpClock::on_written`], and
/// when `poll_output` returns `Output::Timeout(at)`, sleep until [`SctpClock::drained`]`(at)`.
///
/// Those are built on a sans-IO core, unit-tested without str0m (`real` = the owner's clock):
/// [`SctpClock::on_input`] gives the virtual instant of an input and advances the T3 estimate,
/// [`SctpClock::on_inbound`] notices the path's return, [`SctpClock::on_written`] and
/// [`SctpClock::observe`] (the buffered amount, once str0m has handled received data) track
/// acknowledgements, [`SctpClock::poll_skip`] decides a skip, [`SctpClock::next_check`] and
/// [`SctpClock::to_real`] give the wake-up time.
#[derive(Debug, Clone)]
pub struct SctpClock {
    enabled: bool,
    max_skip: Duration,
    offset: Duration,
    /// Virtual instant of the last input: str0m's SCTP works at this time until the next one.
    last_input: Option<Instant>,
    last_inbound: Option<Instant>,
    skipped_since_inbound: Duration,
    /// Bytes written on the reliable channel, and how many of them were acknowledged.
    written: u64,
    acked: u64,
    t3: Option<T3Estimate>,
    /// The T3 timer as it would be had the last acknowledgement not restarted it: sctp-proto
    /// restarts it only when the earliest outstanding chunk is acknowledged, not for chunks
    /// acknowledged around a lost one, and the buffered amount does not tell which it was.
    t3_unrestarted: Option<T3Estimate>,
    restore: Option<Restore>,
    /// A datagram was fed since str0m's output was last drained.
    received_since_drained: bool,
}

/// sctp-proto's T3-rtx timer as the owner can infer it.
#[derive(Debug, Clone, Copy)]
struct T3Estimate {
    /// Virtual instant of the next expiry.
    deadline: Instant,
    /// Expiries since the timer was last (re)started by acknowledged data.
    backoffs: u32,
}

/// The path came back; bytes stuck in SCTP are being watched.
#[derive(Debug, Clone, Copy)]
struct Restore {
    /// Real instant the path returned.
    at: Instant,
    /// Real instant of the next drain check.
    check_at: Instant,
    /// The clock's `written` and `acked` at the previous check (or the return).
    written_at_mark: u64,
    acked_at_mark: u64,
    skips: u32,
}

impl SctpClock {
    /// Cap on a skip for a full ICE agent: sctp-proto's maximum T3 interval.
    pub const FULL_ICE_MAX_SKIP: Duration = RTO_MAX;
    /// Cap on the total skip between two inbound packets for an ICE-lite agent, which drops a
    /// candidate pair 15 s (of its clock) after the last binding request it received.
    #[allow(dead_code)] // For the embedded SFU's ICE-lite peer (src/dev/sfu/peer.rs).
    pub const ICE_LITE_MAX_SKIP: Duration = Duration::from_secs(10);

    /// A clock that skips by at most `max_skip` between two inbound packets
    /// ([`SctpClock::FULL_ICE_MAX_SKIP`] or [`SctpClock::ICE_LITE_MAX_SKIP`]).
    pub fn new(max_skip: Duration) -> SctpClock {
        SctpClock {
            enabled: true,
            max_skip,
            offset: Duration::ZERO,
            last_input: None,
            last_inbound: None,
            skipped_since_inbound: Duration::ZERO,
            written: 0,
            acked: 0,
            t3: None,
            t3_unrestarted: None,
            restore: None,
            received_since_drained: false,
        }
    }

    /// Feeds `rtc` a datagram received at `real`; returns whether `rtc` accepted it.
    pub fn receive(&mut self, rtc: &mut Rtc, real: Instant, datagram: Receive<'_>) -> Result<bool, RtcError> {
        let input = Input::Receive(self.virtual_now(real), datagram);
        if !rtc.accepts(&input) {
            return Ok(false);
        }
        self.on_input(real);
        rtc.handle_input(input)?;
        self.on_inbound(real);
        self.received_since_drained = true;
        Ok(true)
    }

    /// Feeds `rtc` a timeout at `real`, then skips the clock when bytes on the `reliable`
    /// channel are stuck behind SCTP's retransmission backoff after the path returned, so the
    /// T3 timer fires now. `path_ready`: ICE is connected (not in the middle of a restart).
    /// Skips only once str0m's SCTP has been handed every datagram received (it is, while
    /// polled), so none of them is processed at the skipped time; until then the check waits.
    pub fn timeout(
        &mut self,
        rtc: &mut Rtc,
        real: Instant,
        reliable: Option<ChannelId>,
        path_ready: bool,
    ) -> Result<(), RtcError> {
        rtc.handle_input(Input::Timeout(self.on_input(real)))?;
        if self.received_since_drained {
            return Ok(());
        }
        self.observe(buffered_amount(rtc, reliable));
        let Some(jump) = self.poll_skip(real, path_ready) else {
            return Ok(());
        };
        log::debug!("SCTP clock skipped {jump:?}: reliable data stuck behind a retransmission");
        rtc.handle_input(Input::Timeout(self.on_input(real)))
    }

    /// `rtc`'s output is drained: `poll_output` returned `Output::Timeout(at)`. Returns the real
    /// instant to wake up at (earlier than `at` when a check is due before).
    pub fn drained(&mut self, rtc: &mut Rtc, reliable: Option<ChannelId>, at: Instant) -> Instant {
        // str0m handled received SCTP data while polled: acknowledgements are in.
        self.observe(buffered_amount(rtc, reliable));
        self.received_since_drained = false;
        let at = self.to_real(at);
        self.next_check().map_or(at, |check| at.min(check))
    }

    /// A clock that never skips (virtual time = real time): the behaviour without the remedy.
    #[allow(dead_code)] // Used by the tests that measure the behaviour without the remedy.
    pub fn never_skipping() -> SctpClock {
        SctpClock {
            enabled: false,
            ..SctpClock::new(Duration::ZERO)
        }
    }

    /// The virtual instant for the real instant `real`.
    pub fn virtual_now(&self, real: Instant) -> Instant {
        real + self.offset
    }

    /// The real instant of str0m's virtual instant `at` (for the caller's sleep).
    pub fn to_real(&self, at: Instant) -> Instant {
        at.checked_sub(self.offset).unwrap_or(at)
    }

    /// How far virtual time is ahead of real time.
    #[allow(dead_code)] // Diagnostics and tests.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// An input is about to be fed to str0m at `real`: returns the instant to give it.
    pub fn on_input(&mut self, real: Instant) -> Instant {
        let now = self.virtual_now(real);
        for t3 in [&mut self.t3, &mut self.t3_unrestarted].into_iter().flatten() {
            if now >= t3.deadline {
                t3.backoffs += 1;
                t3.deadline = now + backed_off_rto(t3.backoffs);
            }
        }
        self.last_input = Some(now);
        now
    }

    /// A datagram str0m accepted arrived at `real`. After a silence it marks the return of the
    /// path.
    pub fn on_inbound(&mut self, real: Instant) {
        let returned = self
            .last_inbound
            .is_some_and(|last| real.saturating_duration_since(last) >= SILENCE_BEFORE_RESTORE);
        if returned && self.enabled {
            self.restore = Some(Restore {
                at: real,
                check_at: real + DRAIN_GRACE,
                written_at_mark: self.written,
                acked_at_mark: self.acked,
                skips: 0,
            });
        }
        self.last_inbound = Some(real);
        self.skipped_since_inbound = Duration::ZERO;
    }

    /// `bytes` were written on the reliable channel. Into an empty backlog, they start
    /// sctp-proto's T3 timer when str0m sends them, at the time of the last input.
    pub fn on_written(&mut self, bytes: usize) {
        if self.written == self.acked {
            if let Some(started) = self.last_input {
                self.t3 = Some(T3Estimate {
                    deadline: started + RTO,
                    backoffs: 0,
                });
            }
        }
        self.written += bytes as u64;
    }

    /// The reliable channel's buffered (unacknowledged) amount is `buffered`.
    pub fn observe(&mut self, buffered: usize) {
        let acked = self.written.saturating_sub(buffered as u64);
        if acked <= self.acked {
            return;
        }
        self.acked = acked;
        // Newly acknowledged data resets the backoff, and restarts T3 if it was the earliest
        // outstanding chunk; while bytes remain, both may be.
        let (restarted, unrestarted) = match self.last_input {
            Some(now) if buffered > 0 => {
                let unrestarted =
                    latest(self.t3, self.t3_unrestarted).map(|t3| T3Estimate { backoffs: 0, ..t3 });
                let restarted = T3Estimate {
                    deadline: now + RTO,
                    backoffs: 0,
                };
                (Some(restarted), unrestarted)
            }
            _ => (None, None),
        };
        self.t3 = restarted;
        self.t3_unrestarted = unrestarted;
    }

    /// When [`SctpClock::poll_skip`] wants to be called next (real time).
    pub fn next_check(&self) -> Option<Instant> {
        self.restore.map(|r| r.check_at)
    }

    /// Decides at `real` whether to skip the clock. `path_ready`: ICE is connected (not in the
    /// middle of a restart), so a retransmission can reach the peer. Returns the jump made, if
    /// any; the caller must then feed str0m a timeout at [`SctpClock::on_input`] so the T3
    /// timer fires.
    pub fn poll_skip(&mut self, real: Instant, path_ready: bool) -> Option<Duration> {
        let restore = self.restore?;
        if real < restore.check_at {
            return None;
        }
        if self.written == self.acked || real >= restore.at + RESTORE_WINDOW {
            self.restore = None; // Nothing (more) to recover.
            return None;
        }
        let jump = if self.is_stuck(&restore) && path_ready {
            self.jump_to_t3(real)
        } else {
            None
        };
        let skips = restore.skips + u32::from(jump.is_some());
        self.restore = (skips < MAX_SKIPS_PER_RESTORE).then_some(Restore {
            check_at: real + DRAIN_GRACE,
            written_at_mark: self.written,
            acked_at_mark: self.acked,
            skips,
            ..restore
        });
        let jump = jump?;
        self.offset += jump;
        self.skipped_since_inbound += jump;
        Some(jump)
    }

    /// Whether unacknowledged bytes are stuck behind a retransmission: nothing was acknowledged
    /// for a whole grace period, or (before the first skip) more bytes are outstanding than were
    /// written during it: some written before it, in the cut, are still unacknowledged while
    /// later ones were acknowledged around them. After a skip, a flow of acknowledgements means
    /// the retransmission got through (a long transfer may legitimately keep more bytes
    /// outstanding than it writes in a grace period; it must not be skipped again).
    fn is_stuck(&self, restore: &Restore) -> bool {
        let outstanding = self.written - self.acked;
        let written_since = self.written - restore.written_at_mark;
        let acked_around_a_hole = restore.skips == 0 && outstanding > written_since;
        self.acked == restore.acked_at_mark || acked_around_a_hole
    }

    /// The jump that moves virtual time just past the estimated T3 deadline (the later one if
    /// it is unknown whether the last acknowledgement restarted the timer), within the cap.
    fn jump_to_t3(&self, real: Instant) -> Option<Duration> {
        let target = latest(self.t3, self.t3_unrestarted)?.deadline + SKIP_MARGIN;
        let wanted = target.saturating_duration_since(self.virtual_now(real));
        let allowed = self.max_skip.saturating_sub(self.skipped_since_inbound);
        let jump = wanted.min(allowed);
        (!jump.is_zero()).then_some(jump)
    }
}

/// The estimate with the later deadline.
fn latest(a: Option<T3Estimate>, b: Option<T3Estimate>) -> Option<T3Estimate> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.deadline > a.deadline { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Bytes written on `channel` that SCTP has not had acknowledged (0 without the channel).
pub fn buffered_amount(rtc: &mut Rtc, channel: Option<ChannelId>) -> usize {
    match channel.and_then(|id| rtc.channel(id)) {
        Some(mut ch) => ch.buffered_amount(),
        None => 0,
    }
}

/// sctp-proto's T3 interval after `backoffs` expiries: RTO doubled each time, capped.
fn backed_off_rto(backoffs: u32) -> Duration {
    RTO.checked_mul(1u32.checked_shl(backoffs).unwrap_or(u32::MAX))
        .unwrap_or(RTO_MAX)
        .min(RTO_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);

    /// A clock that saw an inbound packet and an input at `t0`, then a write of 100 bytes that
    /// is never acknowledged, and inputs at each of `times` (ms after `t0`).
    fn stuck_since(max_skip: Duration, t0: Instant, times: &[u64]) -> SctpClock {
        let mut clock = SctpClock::new(max_skip);
        clock.on_inbound(t0);
        clock.on_input(t0);
        clock.observe(0);
        clock.on_written(100);
        for &ms in times {
            clock.on_input(t0 + MS * ms as u32);
            clock.observe(100);
        }
        clock
    }

    #[test]
    fn the_t3_estimate_follows_sctp_protos_backoff() {
        assert_eq!(backed_off_rto(1), 2 * SECOND);
        assert_eq!(backed_off_rto(5), 32 * SECOND);
        assert_eq!(backed_off_rto(6), RTO_MAX);
        assert_eq!(backed_off_rto(40), RTO_MAX);

        let t0 = Instant::now();
        // Written after the input at t0: T3 runs from t0; expiries at +1, +3, +7 s.
        let clock = stuck_since(RTO_MAX, t0, &[500, 1000, 2000, 3000, 5000, 7000, 8000]);
        let t3 = clock.t3.unwrap();
        assert_eq!((t3.deadline, t3.backoffs), (t0 + 15 * SECOND, 3));
    }

    #[test]
    fn acknowledged_bytes_restart_the_estimate_and_an_empty_backlog_stops_it() {
        let t0 = Instant::now();
        let mut clock = stuck_since(RTO_MAX, t0, &[1000, 2000]);
        clock.on_written(50);
        assert_eq!(clock.t3.unwrap().deadline, t0 + 3 * SECOND, "already running");
        clock.on_input(t0 + 2500 * MS);
        clock.observe(60);
        let t3 = clock.t3.unwrap();
        assert_eq!((t3.deadline, t3.backoffs), (t0 + 3500 * MS, 0));
        clock.observe(0);
        assert!(clock.t3.is_none());
        clock.on_written(10);
        assert_eq!(clock.t3.unwrap().deadline, t0 + 3500 * MS);
    }

    #[test]
    fn a_return_with_stuck_bytes_skips_to_the_next_t3_deadline_once_ready() {
        let t0 = Instant::now();
        let mut clock = stuck_since(RTO_MAX, t0, &[1000, 3000, 7000, 9000]); // cut t0..t0+9 s
        assert_eq!(clock.next_check(), None, "no return yet");

        let back = t0 + 9 * SECOND;
        clock.on_inbound(back);
        assert_eq!(clock.poll_skip(back, true), None, "grace first");
        let check = clock.next_check().unwrap();
        assert_eq!(check, back + DRAIN_GRACE);
        assert_eq!(clock.poll_skip(check, false), None, "ICE still restarting");
        let check = clock.next_check().unwrap();
        let jump = clock.poll_skip(check, true).unwrap();
        // The next expiry is at +15 s.
        assert_eq!(check + jump, t0 + 15 * SECOND + SKIP_MARGIN);
        let fed = clock.on_input(check);
        assert_eq!(fed, t0 + 15 * SECOND + SKIP_MARGIN);
        assert_eq!(clock.to_real(fed), check);
        assert_eq!(clock.t3.unwrap().backoffs, 4, "the estimate saw the expiry");
    }

    #[test]
    fn no_skip_while_bytes_drain_nor_when_none_are_stuck_nor_when_disabled() {
        let t0 = Instant::now();
        let back = t0 + 4 * SECOND;
        let check = back + DRAIN_GRACE;

        let mut draining = stuck_since(RTO_MAX, t0, &[1000, 3000]);
        draining.on_inbound(back);
        draining.on_written(60);
        draining.on_input(back);
        draining.observe(60); // the old 100 bytes acknowledged, the new 60 in flight
        assert_eq!(draining.poll_skip(check, true), None);
        assert_eq!(draining.next_check(), Some(check + DRAIN_GRACE), "still watched");
        let jump = draining.poll_skip(check + DRAIN_GRACE, true).unwrap();
        // T3 restarted by the acknowledgement (back + 1 s) or not (t0 + 7 s): the later one.
        assert_eq!(check + DRAIN_GRACE + jump, t0 + 7 * SECOND + SKIP_MARGIN);

        let mut drained = stuck_since(RTO_MAX, t0, &[1000, 3000]);
        drained.on_inbound(back);
        drained.observe(0);
        assert_eq!(drained.poll_skip(check, true), None);
        assert_eq!(drained.next_check(), None);

        let mut disabled = SctpClock::never_skipping();
        disabled.on_inbound(t0);
        disabled.on_written(100);
        disabled.on_inbound(back);
        assert_eq!(disabled.next_check(), None);
        assert_eq!(disabled.poll_skip(check, true), None);
        assert_eq!(disabled.offset(), Duration::ZERO);
    }

    #[test]
    fn bytes_acknowledged_around_a_lost_chunk_do_not_delay_the_skip() {
        let t0 = Instant::now();
        let mut clock = stuck_since(RTO_MAX, t0, &[1000, 3000]);
        let back = t0 + 4 * SECOND;
        clock.on_inbound(back);
        clock.on_written(20);
        clock.on_input(back);
        clock.observe(100); // the 20 new bytes acknowledged, the 100 old ones still missing
        let check = back + DRAIN_GRACE;
        let jump = clock.poll_skip(check, true).unwrap();
        assert_eq!(
            check + jump,
            t0 + 7 * SECOND + SKIP_MARGIN,
            "acknowledgements around a lost chunk do not restart T3"
        );

        // The retransmission got through; a long transfer follows, acknowledged as it goes.
        clock.on_input(check);
        clock.on_written(1000);
        clock.observe(900);
        let check = clock.next_check().unwrap();
        assert_eq!(clock.poll_skip(check, true), None, "acknowledgements flow");
        assert!(clock.next_check().is_some(), "still watched");
    }

    #[test]
    fn an_ice_lite_clock_skips_at_most_10_s_between_inbound_packets() {
        let t0 = Instant::now();
        let max_skip = SctpClock::ICE_LITE_MAX_SKIP;
        let mut clock = stuck_since(max_skip, t0, &[1000, 3000, 7000, 15000, 31000]);
        let back = t0 + 32 * SECOND; // the next expiry is at +63 s
        clock.on_inbound(back);
        let mut last_inbound = back;
        let mut jumps = Vec::new();
        while let Some(real) = clock.next_check() {
            if real - last_inbound >= SECOND {
                clock.on_inbound(real); // the remote's consent checks, every second
                last_inbound = real;
            }
            let Some(jump) = clock.poll_skip(real, true) else {
                continue;
            };
            jumps.push(jump);
            if clock.on_input(real) >= t0 + 63 * SECOND {
                clock.observe(0); // the retransmission got through
            }
        }
        assert_eq!(jumps.len(), 3, "{jumps:?}");
        assert_eq!(jumps[..2], [max_skip; 2]);
        assert_eq!(clock.virtual_now(last_inbound), t0 + 63 * SECOND + SKIP_MARGIN);
    }

    #[test]
    fn a_return_is_given_up_after_five_skips() {
        let t0 = Instant::now();
        let mut clock = stuck_since(RTO_MAX, t0, &[1000]);
        clock.on_inbound(t0 + 2 * SECOND);
        let mut skips = 0;
        while let Some(real) = clock.next_check() {
            if clock.poll_skip(real, true).is_some() {
                skips += 1;
                clock.on_input(real);
            }
        }
        assert_eq!(skips, MAX_SKIPS_PER_RESTORE);
    }
}
