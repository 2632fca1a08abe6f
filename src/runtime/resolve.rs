//! Session readiness and runtime-worker resolution (CONTRACT §6, §7), as pure functions over
//! a view of the room's participants, plus a sans-IO [`Resolver`] state machine.
//!
//! Nothing here touches a socket or a clock: the caller passes the participants it sees and
//! the current [`Instant`], and carries out the probes the resolver asks for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::live::{Participant, ParticipantKind};
use crate::models::RequiredParticipant;
use crate::runtime_error::RuntimeErrorCode;

/// Slot names that are never the runtime worker.
pub const NON_RUNTIME_SLOTS: [&str; 2] = ["robot", "controller"];

/// How long one candidate gets to answer `runtime.tools_list`.
pub const PROBE_TIMEOUT: Duration = crate::session::timeouts::PROBE;

/// The pause between two rounds of probes.
pub const RETRY_INTERVAL: Duration = crate::session::timeouts::PROBE_RETRY;

/// Default time allowed for the session to become ready and the runtime to be found.
#[cfg(test)]
pub const DEFAULT_READY_TIMEOUT: Duration = crate::session::timeouts::SESSION_READY;

/// True when `participant` fills slot `slot`: identity `slot` or `slot-…`, or agent name `slot`.
pub fn matches_slot(participant: &Participant, slot: &str) -> bool {
    if slot.is_empty() {
        return false;
    }
    let identity = participant.identity.as_str();
    identity == slot
        || identity
            .strip_prefix(slot)
            .is_some_and(|rest| rest.starts_with('-'))
        || participant.agent_name() == Some(slot)
}

/// The single slot `participant` counts toward: the longest matching one (ties go to the
/// first in `slots` order).
pub fn best_slot<'a, I>(participant: &Participant, slots: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<&'a str> = None;
    for slot in slots {
        if matches_slot(participant, slot) && best.is_none_or(|b| slot.len() > b.len()) {
            best = Some(slot);
        }
    }
    best
}

/// How full one required slot is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotFill {
    /// The slot name.
    pub name: String,
    /// Participants counted toward it.
    pub have: u32,
    /// Its `min_count`.
    pub need: u32,
}

impl SlotFill {
    /// True when the slot has enough participants.
    pub fn is_filled(&self) -> bool {
        self.have >= self.need
    }
}

/// Whether a session's required slots are filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Every required slot (`min_count > 0`), in slot-name order.
    pub slots: Vec<SlotFill>,
}

impl Readiness {
    /// True when every required slot has at least `min_count` participants (trivially true
    /// with no required slots).
    pub fn is_ready(&self) -> bool {
        self.slots.iter().all(SlotFill::is_filled)
    }

    /// The unfilled slots as `name (have/need)`.
    pub fn missing(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|slot| !slot.is_filled())
            .map(|slot| format!("{} ({}/{})", slot.name, slot.have, slot.need))
            .collect()
    }

    /// The unfilled slots joined with `, ` (empty when ready), for timeout messages.
    pub fn missing_description(&self) -> String {
        self.missing().join(", ")
    }
}

/// Readiness of the slots `required` given the `participants` present (pass everyone who
/// should count, typically all remote participants).
///
/// Each participant counts toward only its longest matching slot (`sim-worker` beats `sim`).
pub fn readiness(
    required: &BTreeMap<String, RequiredParticipant>,
    participants: &[Participant],
) -> Readiness {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for participant in participants {
        if let Some(slot) = best_slot(participant, required.keys().map(String::as_str)) {
            *counts.entry(slot).or_default() += 1;
        }
    }
    let slots = required
        .iter()
        .filter(|(_, slot)| slot.min_count > 0)
        .map(|(name, slot)| SlotFill {
            name: name.clone(),
            have: counts.get(name.as_str()).copied().unwrap_or(0),
            need: slot.min_count,
        })
        .collect();
    Readiness { slots }
}

/// The slot names that may be the runtime worker: every key of `required` except `robot`
/// and `controller`, in key order.
pub fn runtime_slot_names(required: &BTreeMap<String, RequiredParticipant>) -> Vec<String> {
    required
        .keys()
        .filter(|name| !NON_RUNTIME_SLOTS.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// True when `identity` matches hint `hint`: equal, or starting with `hint-` or `hint:`
/// (not a bare prefix: `sim` does not match `simulated-human`).
pub fn matches_hint(identity: &str, hint: &str) -> bool {
    if hint.is_empty() {
        return false;
    }
    identity == hint
        || identity
            .strip_prefix(hint)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with(':'))
}

/// What the SDK knows about where the runtime worker is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeHints {
    /// An explicit identity prefix, e.g. `simplesim` (the SimpleSim tab is `simplesim:<robot>`).
    pub identity_prefix: Option<String>,
    /// Runtime slot names of the session (see [`runtime_slot_names`]).
    pub slots: Vec<String>,
}

impl RuntimeHints {
    /// Hints from an optional identity prefix (blank counts as none) and the runtime slots.
    pub fn new(identity_prefix: Option<&str>, slots: Vec<String>) -> Self {
        RuntimeHints {
            identity_prefix: identity_prefix
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            slots: slots.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Hints from an optional identity prefix and the session's `required_participants`.
    pub fn from_slots(
        identity_prefix: Option<&str>,
        required: &BTreeMap<String, RequiredParticipant>,
    ) -> Self {
        Self::new(identity_prefix, runtime_slot_names(required))
    }

    /// True with neither an identity prefix nor a runtime slot.
    pub fn is_empty(&self) -> bool {
        self.identity_prefix.is_none() && self.slots.is_empty()
    }

    /// All hints, prefix first, for messages.
    pub fn names(&self) -> Vec<String> {
        self.identity_prefix
            .iter()
            .chain(self.slots.iter())
            .cloned()
            .collect()
    }

    /// Fails at once when there is nothing to look for (no prefix, no runtime slot).
    pub fn check(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::Runtime {
                code: RuntimeErrorCode::RuntimeNotFound,
                message: "cannot find the runtime worker: no runtime identity prefix was given and the session has no \
                          runtime slot; pass the runtime's identity prefix (e.g. \"simplesim\" for the browser viewer) \
                          or dispatch a runtime worker"
                    .to_owned(),
            });
        }
        Ok(())
    }
}

/// The identities worth probing, best first, without duplicates: participants matching the
/// identity prefix, then those matching a runtime slot (by identity hint rule or agent name),
/// then the remaining agents. A standard participant is never a candidate unless hinted.
/// Within each group, identities are in lexical order.
///
/// Pass the remote participants only (never the SDK's own participant).
pub fn candidates(hints: &RuntimeHints, participants: &[Participant]) -> Vec<String> {
    let mut sorted: Vec<&Participant> = participants.iter().collect();
    sorted.sort_by(|a, b| a.identity.cmp(&b.identity));
    sorted.dedup_by(|a, b| a.identity == b.identity);

    let mut out: Vec<String> = Vec::new();
    let push = |identity: &str, out: &mut Vec<String>| {
        if !out.iter().any(|seen| seen == identity) {
            out.push(identity.to_owned());
        }
    };
    if let Some(prefix) = &hints.identity_prefix {
        for participant in sorted.iter().filter(|p| matches_hint(&p.identity, prefix)) {
            push(&participant.identity, &mut out);
        }
    }
    for slot in &hints.slots {
        for participant in sorted
            .iter()
            .filter(|p| matches_hint(&p.identity, slot) || p.agent_name() == Some(slot.as_str()))
        {
            push(&participant.identity, &mut out);
        }
    }
    for participant in sorted.iter().filter(|p| p.kind == ParticipantKind::Agent) {
        push(&participant.identity, &mut out);
    }
    out
}

/// The message when no runtime worker answered in time: names the hints and the identities seen.
pub fn resolution_failed_message<S: AsRef<str>>(
    hints: &RuntimeHints,
    waited: Duration,
    seen: &[S],
) -> String {
    let hint_list = hints.names();
    let hints_text = if hint_list.is_empty() {
        "none".to_owned()
    } else {
        hint_list.join(", ")
    };
    let seen_text = if seen.is_empty() {
        "none".to_owned()
    } else {
        seen.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
    };
    format!(
        "no runtime worker answered runtime.tools_list within {:.1}s (hints: {hints_text}; participants seen: {seen_text})",
        waited.as_secs_f64()
    )
}

/// [`resolution_failed_message`] as an [`Error::Runtime`] with code [`RuntimeErrorCode::RuntimeNotFound`].
pub fn resolution_failed<S: AsRef<str>>(hints: &RuntimeHints, waited: Duration, seen: &[S]) -> Error {
    Error::Runtime {
        code: RuntimeErrorCode::RuntimeNotFound,
        message: resolution_failed_message(hints, waited, seen),
    }
}

/// How a probe (`runtime.tools_list` to one candidate) went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The candidate replied (any reply payload, even a guard envelope such as `NOT_READY`):
    /// it is the runtime.
    Answered,
    /// No usable answer: timeout, LiveKit `UNSUPPORTED_METHOD`, recipient gone, …
    NoAnswer,
}

/// What the driver of a [`Resolver`] must do next.
#[derive(Debug)]
pub enum ResolveStep {
    /// Send `runtime.tools_list` to `identity` with this reply timeout, then report with
    /// [`Resolver::on_probe`].
    Probe {
        /// The candidate identity.
        identity: String,
        /// The reply timeout (5 s, less near the deadline).
        timeout: Duration,
    },
    /// Nothing to probe now: wait until this instant (or until the participants change), then poll again.
    WaitUntil(Instant),
    /// The runtime worker is this identity (cached for later polls).
    Resolved(String),
    /// The deadline passed without an answer ([`Error::Runtime`] `RUNTIME_NOT_FOUND`).
    Failed(Error),
}

#[derive(Debug)]
struct Attempt {
    started: Instant,
    deadline: Instant,
    queue: VecDeque<String>,
    in_flight: Option<String>,
    next_round_at: Option<Instant>,
    seen: BTreeSet<String>,
}

/// Finds the runtime worker without doing I/O: probes candidates in order, one at a time,
/// retries the whole set every [`RETRY_INTERVAL`] until the deadline, caches the winner.
///
/// Keep one per session behind a mutex and drive it while holding the lock, so resolution
/// runs at most once concurrently:
///
/// ```text
/// loop {
///     match resolver.poll(Instant::now(), &remote_participants()) {
///         ResolveStep::Probe { identity, timeout } => {
///             let outcome = if probe(&identity, timeout) { ProbeOutcome::Answered } else { ProbeOutcome::NoAnswer };
///             resolver.on_probe(&identity, outcome, Instant::now());
///         }
///         ResolveStep::WaitUntil(at) => sleep_until(at),
///         ResolveStep::Resolved(identity) => break Ok(identity),
///         ResolveStep::Failed(err) => break Err(err),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Resolver {
    hints: RuntimeHints,
    timeout: Duration,
    cached: Option<String>,
    attempt: Option<Attempt>,
}

impl Resolver {
    /// A resolver for `hints`, each resolution bounded by `timeout` (default
    /// `timeouts::SESSION_READY`). Fails at once when `hints` is empty.
    pub fn new(hints: RuntimeHints, timeout: Duration) -> Result<Self> {
        hints.check()?;
        Ok(Resolver {
            hints,
            timeout,
            cached: None,
            attempt: None,
        })
    }

    /// The cached runtime worker, if found.
    pub fn cached(&self) -> Option<&str> {
        self.cached.as_deref()
    }

    /// Forgets the cached worker (e.g. it left or stopped answering) and any attempt in progress.
    pub fn invalidate(&mut self) {
        self.cached = None;
        self.attempt = None;
    }

    /// The next step, given the time and the remote participants now.
    ///
    /// A cached worker that is still present resolves at once; one that left is forgotten
    /// and a new attempt starts, with a deadline `timeout` from `now`.
    pub fn poll(&mut self, now: Instant, participants: &[Participant]) -> ResolveStep {
        if let Some(cached) = &self.cached {
            if participants.iter().any(|p| &p.identity == cached) {
                self.attempt = None;
                return ResolveStep::Resolved(cached.clone());
            }
            self.cached = None;
        }
        let timeout = self.timeout;
        let attempt = self.attempt.get_or_insert_with(|| Attempt {
            started: now,
            deadline: now + timeout,
            queue: VecDeque::new(),
            in_flight: None,
            next_round_at: None,
            seen: BTreeSet::new(),
        });
        attempt
            .seen
            .extend(participants.iter().map(|p| p.identity.clone()));

        if let Some(identity) = &attempt.in_flight {
            // The driver polled again without reporting: treat the probe as unanswered.
            let identity = identity.clone();
            attempt.in_flight = None;
            attempt.queue.retain(|queued| queued != &identity);
        }
        if now >= attempt.deadline {
            return self.fail(now);
        }
        if attempt.queue.is_empty() {
            if let Some(at) = attempt.next_round_at {
                if now < at {
                    return ResolveStep::WaitUntil(at.min(attempt.deadline));
                }
            }
            attempt.next_round_at = None;
            attempt.queue = candidates(&self.hints, participants).into();
            if attempt.queue.is_empty() {
                // Nothing to pace: the next poll (the driver polls on every participant
                // change) looks again at once, so a runtime is probed as soon as it shows.
                return ResolveStep::WaitUntil((now + RETRY_INTERVAL).min(attempt.deadline));
            }
        }
        // Skip candidates that left since the round began.
        while let Some(identity) = attempt.queue.pop_front() {
            if participants.iter().any(|p| p.identity == identity) {
                attempt.in_flight = Some(identity.clone());
                let timeout = PROBE_TIMEOUT.min(attempt.deadline.saturating_duration_since(now));
                return ResolveStep::Probe { identity, timeout };
            }
        }
        let at = (now + RETRY_INTERVAL).min(attempt.deadline);
        attempt.next_round_at = Some(at);
        ResolveStep::WaitUntil(at)
    }

    /// Reports how the probe of `identity` went. An answer caches `identity` as the runtime;
    /// when the round is exhausted, the next round starts [`RETRY_INTERVAL`] after `now`.
    pub fn on_probe(&mut self, identity: &str, outcome: ProbeOutcome, now: Instant) {
        let Some(attempt) = &mut self.attempt else {
            return;
        };
        if attempt.in_flight.as_deref() != Some(identity) {
            return;
        }
        attempt.in_flight = None;
        match outcome {
            ProbeOutcome::Answered => {
                self.cached = Some(identity.to_owned());
                self.attempt = None;
            }
            ProbeOutcome::NoAnswer => {
                if attempt.queue.is_empty() {
                    attempt.next_round_at = Some(now + RETRY_INTERVAL);
                }
            }
        }
    }

    fn fail(&mut self, now: Instant) -> ResolveStep {
        let attempt = self.attempt.take();
        let (waited, seen) = match attempt {
            Some(attempt) => (
                now.saturating_duration_since(attempt.started),
                attempt.seen.into_iter().collect(),
            ),
            None => (Duration::ZERO, Vec::new()),
        };
        ResolveStep::Failed(resolution_failed(&self.hints, waited, &seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std(identity: &str) -> Participant {
        Participant::new(identity, ParticipantKind::Standard)
    }

    fn agent(identity: &str) -> Participant {
        Participant::new(identity, ParticipantKind::Agent)
    }

    fn slots(spec: &[(&str, u32)]) -> BTreeMap<String, RequiredParticipant> {
        spec.iter()
            .map(|(name, min)| {
                let slot: RequiredParticipant = serde_json::from_value(
                    serde_json::json!({"participant_type": "agent", "min_count": min}),
                )
                .unwrap();
                (name.to_string(), slot)
            })
            .collect()
    }

    #[test]
    fn slot_matching() {
        assert!(matches_slot(&std("sim"), "sim"));
        assert!(matches_slot(&std("sim-1"), "sim"));
        assert!(!matches_slot(&std("simulated-human"), "sim"));
        assert!(!matches_slot(&std("sim:1"), "sim"));
        assert!(matches_slot(
            &agent("agent-AJ_x").with_attribute("lk.agent.name", "sim-worker"),
            "sim-worker"
        ));
        assert!(matches_slot(
            &agent("agent-AJ_x").with_attribute("lk.agent_name", "rcw"),
            "rcw"
        ));
        let both = agent("agent-1")
            .with_attribute("lk.agent.name", "a")
            .with_attribute("lk.agent_name", "b");
        assert!(matches_slot(&both, "a") && !matches_slot(&both, "b"));
        assert!(!matches_slot(&std(""), ""));
    }

    #[test]
    fn longest_slot_wins() {
        let required = slots(&[("sim", 1), ("sim-worker", 1)]);
        let names = || required.keys().map(String::as_str);
        assert_eq!(best_slot(&std("sim-worker-7"), names()), Some("sim-worker"));
        assert_eq!(best_slot(&std("sim-7"), names()), Some("sim"));
        let ready = readiness(&required, &[std("sim-worker-7")]);
        assert!(!ready.is_ready());
        assert_eq!(ready.missing(), ["sim (0/1)"]);
        assert!(readiness(&required, &[std("sim-worker-7"), std("sim-2")]).is_ready());
    }

    #[test]
    fn readiness_counts_and_messages() {
        let required = slots(&[("controller", 0), ("rcw", 2), ("robot", 1)]);
        let ready = readiness(
            &required,
            &[
                std("robot-1"),
                agent("agent-x").with_attribute("lk.agent.name", "rcw"),
            ],
        );
        assert!(!ready.is_ready());
        assert_eq!(ready.missing_description(), "rcw (1/2)");
        assert_eq!(ready.slots.len(), 2, "optional slots are not listed");
        let ready = readiness(
            &required,
            &[
                std("robot"),
                std("rcw-a"),
                std("rcw:b"),
                agent("agent-y").with_attribute("lk.agent.name", "rcw"),
            ],
        );
        assert!(ready.is_ready(), "{:?}", ready);
        assert!(ready.missing().is_empty());
        assert!(readiness(&slots(&[]), &[]).is_ready());
        assert!(readiness(&slots(&[("viewer", 0)]), &[]).is_ready());
    }

    #[test]
    fn runtime_slots_exclude_robot_and_controller() {
        let required = slots(&[("controller", 1), ("robot", 1), ("sim-worker", 1), ("rcw", 0)]);
        assert_eq!(runtime_slot_names(&required), ["rcw", "sim-worker"]);
    }

    #[test]
    fn hint_matching_is_not_a_bare_prefix() {
        assert!(matches_hint("sim", "sim"));
        assert!(matches_hint("sim-1", "sim"));
        assert!(matches_hint("simplesim:rb_1", "simplesim"));
        assert!(!matches_hint("simulated-human", "sim"));
        assert!(!matches_hint("simplesimx", "simplesim"));
        assert!(!matches_hint("anything", ""));
    }

    #[test]
    fn candidate_order() {
        let participants = [
            agent("agent-zzz"),
            std("viewer-human"),
            std("simplesim:rb_1"),
            agent("agent-abc").with_attribute("lk.agent.name", "sim-worker"),
            std("rcw-1"),
            agent("agent-bbb"),
            std("simulated-human"),
        ];
        let hints = RuntimeHints::new(Some("simplesim"), vec!["rcw".into(), "sim-worker".into()]);
        assert_eq!(
            candidates(&hints, &participants),
            ["simplesim:rb_1", "rcw-1", "agent-abc", "agent-bbb", "agent-zzz"]
        );
        // Deterministic whatever the input order.
        let mut reversed = participants.to_vec();
        reversed.reverse();
        assert_eq!(candidates(&hints, &reversed), candidates(&hints, &participants));
        // A human viewer is never bound unless hinted; `sim` does not match `simulated-human`.
        let hints = RuntimeHints::new(Some("sim"), vec![]);
        let found = candidates(&hints, &participants);
        assert!(
            !found.contains(&"simulated-human".to_owned()) && !found.contains(&"viewer-human".to_owned())
        );
        assert_eq!(found, ["agent-abc", "agent-bbb", "agent-zzz"]);
    }

    #[test]
    fn candidates_have_no_duplicates() {
        let participants = [
            agent("rcw-1").with_attribute("lk.agent.name", "rcw"),
            agent("rcw-1"),
        ];
        let hints = RuntimeHints::new(Some("rcw"), vec!["rcw".into()]);
        assert_eq!(candidates(&hints, &participants), ["rcw-1"]);
    }

    #[test]
    fn no_hints_fail_at_once() {
        let hints = RuntimeHints::new(Some("  "), vec![]);
        assert!(hints.is_empty());
        let err = Resolver::new(hints, DEFAULT_READY_TIMEOUT).unwrap_err();
        match err {
            Error::Runtime { code, message } => {
                assert_eq!(code, RuntimeErrorCode::RuntimeNotFound);
                assert!(message.contains("identity prefix"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let required = slots(&[("robot", 1), ("controller", 1)]);
        assert!(RuntimeHints::from_slots(None, &required).check().is_err());
        assert!(RuntimeHints::from_slots(Some("simplesim"), &required)
            .check()
            .is_ok());
    }

    #[test]
    fn failure_message_names_hints_and_identities() {
        let hints = RuntimeHints::new(Some("simplesim"), vec!["rcw".into()]);
        let message = resolution_failed_message(&hints, Duration::from_secs(120), &["viewer-1", "agent-x"]);
        assert_eq!(
            message,
            "no runtime worker answered runtime.tools_list within 120.0s (hints: simplesim, rcw; participants seen: viewer-1, agent-x)"
        );
        let none: [&str; 0] = [];
        assert!(resolution_failed_message(&hints, Duration::ZERO, &none).contains("participants seen: none"));
    }

    fn expect_probe(step: ResolveStep) -> (String, Duration) {
        match step {
            ResolveStep::Probe { identity, timeout } => (identity, timeout),
            other => panic!("expected a probe, got {other:?}"),
        }
    }

    #[test]
    fn resolver_probes_in_order_and_caches() {
        let t0 = Instant::now();
        let mut resolver = Resolver::new(
            RuntimeHints::new(Some("simplesim"), vec![]),
            Duration::from_secs(10),
        )
        .unwrap();
        let room = [agent("agent-b"), std("simplesim:rb_1"), std("human")];
        let (first, timeout) = expect_probe(resolver.poll(t0, &room));
        assert_eq!((first.as_str(), timeout), ("simplesim:rb_1", PROBE_TIMEOUT));
        resolver.on_probe(&first, ProbeOutcome::NoAnswer, t0 + Duration::from_secs(5));
        let (second, _) = expect_probe(resolver.poll(t0 + Duration::from_secs(5), &room));
        assert_eq!(second, "agent-b");
        resolver.on_probe(&second, ProbeOutcome::NoAnswer, t0 + Duration::from_secs(6));
        // Round exhausted: wait 0.5 s before the next round.
        match resolver.poll(t0 + Duration::from_secs(6), &room) {
            ResolveStep::WaitUntil(at) => assert_eq!(at, t0 + Duration::from_millis(6500)),
            other => panic!("{other:?}"),
        }
        let (again, timeout) = expect_probe(resolver.poll(t0 + Duration::from_millis(6500), &room));
        assert_eq!(again, "simplesim:rb_1");
        assert_eq!(
            timeout,
            Duration::from_millis(3500),
            "probe clipped to the deadline"
        );
        resolver.on_probe(&again, ProbeOutcome::Answered, t0 + Duration::from_secs(7));
        assert_eq!(resolver.cached(), Some("simplesim:rb_1"));
        assert!(
            matches!(resolver.poll(t0 + Duration::from_secs(60), &room), ResolveStep::Resolved(id) if id == "simplesim:rb_1")
        );

        // The worker left: forget it and resolve again with a fresh deadline.
        let later = t0 + Duration::from_secs(100);
        let (next, _) = expect_probe(resolver.poll(later, &[agent("agent-b")]));
        assert_eq!(next, "agent-b");
        assert_eq!(resolver.cached(), None);
    }

    #[test]
    fn a_runtime_that_shows_while_none_is_there_is_probed_at_once() {
        let t0 = Instant::now();
        let mut resolver = Resolver::new(
            RuntimeHints::new(Some("simplesim"), vec![]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(matches!(
            resolver.poll(t0, &[std("viewer")]),
            ResolveStep::WaitUntil(_)
        ));
        let shown = t0 + Duration::from_millis(10);
        let room = [std("viewer"), std("simplesim:rb_1")];
        let (identity, _) = expect_probe(resolver.poll(shown, &room));
        assert_eq!(identity, "simplesim:rb_1");
    }

    #[test]
    fn resolver_waits_for_candidates_then_fails_naming_hints_and_seen() {
        let t0 = Instant::now();
        let mut resolver = Resolver::new(
            RuntimeHints::new(None, vec!["sim-worker".into()]),
            Duration::from_secs(1),
        )
        .unwrap();
        let room = [std("simulated-human"), std("sim")];
        match resolver.poll(t0, &room) {
            ResolveStep::WaitUntil(at) => assert_eq!(at, t0 + RETRY_INTERVAL),
            other => panic!("{other:?}"),
        }
        match resolver.poll(t0 + Duration::from_millis(200), &room) {
            ResolveStep::WaitUntil(at) => assert_eq!(at, t0 + Duration::from_millis(200) + RETRY_INTERVAL),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(resolver.poll(t0 + Duration::from_millis(900), &room), ResolveStep::WaitUntil(at) if at == t0 + Duration::from_secs(1))
        );
        match resolver.poll(t0 + Duration::from_secs(1), &room) {
            ResolveStep::Failed(Error::Runtime { code, message }) => {
                assert_eq!(code, RuntimeErrorCode::RuntimeNotFound);
                assert!(message.contains("hints: sim-worker"), "{message}");
                assert!(message.contains("sim, simulated-human"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // A later poll starts a new attempt.
        let room = [agent("agent-1").with_attribute("lk.agent.name", "sim-worker")];
        let (identity, _) = expect_probe(resolver.poll(t0 + Duration::from_secs(2), &room));
        assert_eq!(identity, "agent-1");
    }

    #[test]
    fn resolver_ignores_stale_reports_and_departed_candidates() {
        let t0 = Instant::now();
        let mut resolver =
            Resolver::new(RuntimeHints::new(Some("rcw"), vec![]), Duration::from_secs(30)).unwrap();
        let room = [std("rcw-1"), std("rcw-2")];
        let (first, _) = expect_probe(resolver.poll(t0, &room));
        assert_eq!(first, "rcw-1");
        resolver.on_probe("rcw-2", ProbeOutcome::Answered, t0);
        assert_eq!(
            resolver.cached(),
            None,
            "a report for a probe not in flight is ignored"
        );
        resolver.on_probe(&first, ProbeOutcome::NoAnswer, t0);
        // rcw-2 left before its turn: skipped, round over.
        assert!(matches!(
            resolver.poll(t0, &[std("rcw-1")]),
            ResolveStep::WaitUntil(_)
        ));
        resolver.invalidate();
        assert!(matches!(resolver.poll(t0, &room), ResolveStep::Probe { .. }));
    }
}
