//! The reconnect state machine (sans-IO, design §2): what to do when the data path or the
//! signal websocket is lost, counted in time rather than in attempts.
//!
//! ```text
//! Connecting → Connected ⇄ Degraded → Resuming → Rejoining → Connected | Closed
//! ```
//! Inputs are [`Input`]s and timeouts with the current [`Instant`]; outputs are [`Action`]s the
//! engine performs (start or abort a connection attempt, offer an ICE restart, pause writes,
//! emit an event, close). The machine owns no socket and no clock.
//!
//! Rules:
//! - *Degraded* (data path lost, websocket alive): writes pause; an ICE restart is offered over
//!   the live websocket after [`ReconnectConfig::degraded_ice_restart_after`] and again every
//!   [`ReconnectConfig::ice_restart_retry`]; a restore within
//!   [`ReconnectConfig::quiet_outage`] of the last inbound packet is invisible to the user,
//!   a longer outage is announced with `Reconnecting`.
//! - Losing the websocket, or the server's `Leave{RESUME}`, starts *Resuming*; the server's
//!   `Leave{RECONNECT}` (or `resume_connection = DISABLED`) starts *Rejoining*. `Reconnecting`
//!   is emitted once per outage.
//! - Attempts start at once, then every [`ReconnectConfig::attempt_interval`] while none has
//!   succeeded, at most [`ReconnectConfig::max_attempts_in_flight`] resumes (one rejoin) at a
//!   time, each bounded by
//!   [`ReconnectConfig::attempt_timeout`]. An attempt that fails instantly (interface down) waits
//!   for the next tick, so the limit is time, never a number of attempts.
//! - A resume is tried while the last inbound datagram is younger than
//!   [`ReconnectConfig::resume_window`] (the server forgets us ≈ 20 s after our last packet);
//!   after that, after the server refuses, or after
//!   [`ReconnectConfig::resume_failures_before_rejoin`] resumes that reached the server but
//!   failed, the machine rejoins.
//! - Nothing recovered [`ReconnectConfig::reconnect_timeout`] after the outage began ⇒ `Closed`
//!   with the last error. `Leave{DISCONNECT}`, HTTP 401/403 and `disconnect()` close at once.

use crate::live::error::LiveError;
use crate::live::liveness::LivenessEvent;
use livekit_protocol as proto;
use std::time::{Duration, Instant};

/// Timing and policy of the reconnect machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// Give up this long after the outage began (issue 9: default 60 s).
    pub reconnect_timeout: Duration,
    /// Start a new attempt this often while none succeeded.
    pub attempt_interval: Duration,
    /// After an attempt failed without reaching the server (refused, network unreachable),
    /// the next may start this soon: such failures cost nothing, and with the interface down
    /// every attempt fails at once, so this bounds the wait between the path's return and the
    /// attempt that finds it.
    pub unreachable_retry: Duration,
    /// An attempt that has not been answered (ReconnectResponse / JoinResponse) by then fails.
    pub attempt_timeout: Duration,
    /// Resume attempts running at the same time (rejoins never overlap).
    pub max_attempts_in_flight: usize,
    /// After the server answered, the transport (ICE, data channel) must be ready within this.
    pub transport_timeout: Duration,
    /// Resume only while the last inbound datagram is younger than this.
    pub resume_window: Duration,
    /// Resumes that reached the server but failed before switching to a rejoin.
    pub resume_failures_before_rejoin: u32,
    /// While degraded, offer the first ICE restart this long after the loss was detected.
    pub degraded_ice_restart_after: Duration,
    /// While degraded, offer another ICE restart this often.
    pub ice_restart_retry: Duration,
    /// A data-path outage shorter than this (from the last inbound packet) emits no events.
    pub quiet_outage: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            reconnect_timeout: Duration::from_secs(60),
            attempt_interval: Duration::from_secs(1),
            unreachable_retry: Duration::from_millis(250),
            attempt_timeout: Duration::from_secs(3),
            max_attempts_in_flight: 2,
            transport_timeout: Duration::from_secs(5),
            resume_window: Duration::from_secs(25),
            resume_failures_before_rejoin: 2,
            degraded_ice_restart_after: Duration::from_millis(2500),
            ice_restart_retry: Duration::from_secs(5),
            quiet_outage: Duration::from_secs(5),
        }
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// The first connect has not completed.
    Connecting,
    /// Data path and signal healthy.
    Connected,
    /// Data path lost, signal alive: ICE restarts over the live websocket.
    Degraded,
    /// Reconnecting the same participant session.
    Resuming,
    /// Joining again as a new participant session.
    Rejoining,
    /// Finished; no more actions.
    Closed,
}

/// Why an outage began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// No inbound datagram for a while.
    DataPath,
    /// The websocket closed, failed or stopped answering pings.
    Signal,
    /// The server asked us to resume (`Leave{RESUME}`, its side of the transport failed).
    ServerResume,
    /// The server asked us to join again (`Leave{RECONNECT}`).
    ServerReconnect,
}

impl LossReason {
    /// The `reconnect_reason` to send with a resume join.
    pub fn reconnect_reason(self) -> proto::ReconnectReason {
        match self {
            LossReason::Signal => proto::ReconnectReason::RrSignalDisconnected,
            LossReason::DataPath | LossReason::ServerResume => proto::ReconnectReason::RrPublisherFailed,
            LossReason::ServerReconnect => proto::ReconnectReason::RrUnknown,
        }
    }
}

/// How the connection came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectKind {
    /// Same participant session (ICE restart at most; SCTP association kept).
    Resumed,
    /// New participant session (new join, new peer connection).
    Rejoined,
}

/// A user-visible event to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The connection is interrupted; recovery is under way.
    Reconnecting {
        /// Why.
        reason: LossReason,
    },
    /// The connection is back.
    Reconnected {
        /// Resume or rejoin.
        kind: ReconnectKind,
    },
}

/// Identifies one connection attempt.
pub type AttemptId = u64;

/// What an attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// Reconnect join (`reconnect`, participant sid, this reason) for the same session.
    Resume {
        /// Reason to send.
        reason: proto::ReconnectReason,
    },
    /// A plain join with the latest token; the engine resets the outbound sequence and replay
    /// buffer (a new participant on the server).
    Rejoin,
}

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// No websocket (connect refused, unreachable, timed out, TLS failure, HTTP 5xx).
    Unreachable(String),
    /// The websocket came up but closed or failed before the answer or the transport.
    Failed(String),
    /// HTTP 401/403: the token is no longer accepted. Fatal.
    Unauthorized(String),
}

/// The server's meaning of a `LeaveRequest` (see `signal::leave_action`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveAction {
    /// The session is over.
    Disconnect {
        /// The server's reason, for the close message.
        reason: proto::DisconnectReason,
    },
    /// Resume the same session now.
    Resume,
    /// Join again as a new session.
    Reconnect,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The first connect completed.
    Established,
    /// No inbound datagram since `last_inbound` (liveness).
    DataPathLost {
        /// When the last datagram arrived.
        last_inbound: Instant,
    },
    /// An inbound datagram arrived after a loss (liveness).
    DataPathRestored,
    /// The websocket of the current link closed, failed or stopped answering.
    SignalLost {
        /// Detail for the close message.
        detail: String,
    },
    /// The server sent a `LeaveRequest` on the current link's websocket. (A Leave on an attempt's
    /// websocket before its answer is that attempt's failure: report
    /// [`Input::AttemptFailed`] with [`AttemptError::Failed`], or [`Input::Leave`] with
    /// [`LeaveAction::Reconnect`] when a resume was refused with `RECONNECT`.)
    Leave(LeaveAction),
    /// `ClientConfiguration.resume_connection == DISABLED`: always rejoin.
    ResumeDisabled,
    /// An attempt failed.
    AttemptFailed {
        /// Which.
        id: AttemptId,
        /// How.
        error: AttemptError,
    },
    /// A resume attempt received its `ReconnectResponse`.
    ResumeAnswered {
        /// Which.
        id: AttemptId,
    },
    /// A rejoin attempt received its `JoinResponse`.
    RejoinAnswered {
        /// Which.
        id: AttemptId,
    },
    /// The current (or answered) link's transport is ready: ICE connected after a restart, or
    /// the reliable channel open after a rejoin.
    TransportReady,
    /// The application called `disconnect()`.
    DisconnectRequested,
}

/// What the engine must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop (true) or restart (false) writing reliable data into SCTP; keep it queued meanwhile.
    PauseWrites(bool),
    /// Offer an ICE restart on the peer connection over the current websocket.
    IceRestart {
        /// Reason (for logs).
        reason: proto::ReconnectReason,
    },
    /// Start a connection attempt.
    StartAttempt {
        /// Its id, used in later inputs.
        id: AttemptId,
        /// Resume or rejoin.
        kind: AttemptKind,
    },
    /// Abandon an attempt (close its websocket / peer if any).
    AbortAttempt {
        /// Which.
        id: AttemptId,
    },
    /// Send `SyncState` on the resumed websocket (then trim the replay buffer by
    /// `last_message_seq`, and treat the next participant update as a full snapshot).
    SendSyncState,
    /// The answered attempt becomes the current link (its websocket, and after a rejoin its
    /// peer connection, replace the old ones).
    AdoptAttempt {
        /// Which.
        id: AttemptId,
    },
    /// Emit an event to the application.
    Emit(LinkEvent),
    /// Give up: the session is disconnected for this reason.
    Close {
        /// Human-readable reason (no credentials).
        reason: String,
    },
}

impl AttemptError {
    /// Classifies the error an attempt ended with; `upgraded` = its websocket had come up (the
    /// server was reached). Only the HTTP status of a refusal is kept (never its body).
    pub fn from_live_error(error: &LiveError, upgraded: bool) -> AttemptError {
        match error {
            LiveError::Refused {
                status: status @ (401 | 403),
                ..
            } => AttemptError::Unauthorized(format!("HTTP {status}")),
            LiveError::Refused { status, .. } => AttemptError::Unreachable(format!("HTTP {status}")),
            _ if upgraded => AttemptError::Failed(error.to_string()),
            _ => AttemptError::Unreachable(error.to_string()),
        }
    }
}

impl Input {
    /// The machine input a liveness decision amounts to (`SendPing` is the engine's own job).
    pub fn from_liveness(event: LivenessEvent) -> Option<Input> {
        match event {
            LivenessEvent::SendPing => None,
            LivenessEvent::DataPathLost { last_inbound } => Some(Input::DataPathLost { last_inbound }),
            LivenessEvent::DataPathRestored { .. } => Some(Input::DataPathRestored),
            LivenessEvent::SignalLost => Some(Input::SignalLost {
                detail: "the signal connection stopped answering pings".into(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Connected,
    Degraded { next_ice_restart: Instant },
    Resuming,
    Rejoining,
    Closed,
}

#[derive(Debug)]
struct Outage {
    began: Instant,
    reason: LossReason,
    announced: bool,
    last_error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Answered {
    id: AttemptId,
    transport_deadline: Instant,
}

/// The reconnect state machine of one session.
#[derive(Debug)]
pub struct Reconnector {
    cfg: ReconnectConfig,
    phase: Phase,
    outage: Option<Outage>,
    resume_allowed: bool,
    last_inbound: Option<Instant>,
    data_path_ok: bool,
    next_id: AttemptId,
    in_flight: Vec<(AttemptId, Instant)>,
    next_attempt_at: Instant,
    answered: Option<Answered>,
    resume_failures: u32,
}

impl Reconnector {
    /// A machine in [`LinkState::Connecting`].
    pub fn new(cfg: ReconnectConfig, now: Instant) -> Self {
        Reconnector {
            cfg,
            phase: Phase::Connecting,
            outage: None,
            resume_allowed: true,
            last_inbound: None,
            data_path_ok: true,
            next_id: 1,
            in_flight: Vec::new(),
            next_attempt_at: now,
            answered: None,
            resume_failures: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        match self.phase {
            Phase::Connecting => LinkState::Connecting,
            Phase::Connected => LinkState::Connected,
            Phase::Degraded { .. } => LinkState::Degraded,
            Phase::Resuming => LinkState::Resuming,
            Phase::Rejoining => LinkState::Rejoining,
            Phase::Closed => LinkState::Closed,
        }
    }

    /// Records an inbound datagram (the resume window counts from the last one).
    pub fn note_inbound(&mut self, at: Instant) {
        self.last_inbound = Some(self.last_inbound.map_or(at, |t| t.max(at)));
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let outage = self.outage.as_ref()?;
        let mut at = outage.began + self.cfg.reconnect_timeout;
        match self.phase {
            Phase::Degraded { next_ice_restart } => {
                at = at.min(next_ice_restart);
                if !outage.announced {
                    at = at.min(outage.began + self.cfg.quiet_outage);
                }
            }
            Phase::Resuming | Phase::Rejoining => {
                for (_, deadline) in &self.in_flight {
                    at = at.min(*deadline);
                }
                match self.answered {
                    Some(a) => at = at.min(a.transport_deadline),
                    None if self.in_flight.len() < self.attempt_slots() => at = at.min(self.next_attempt_at),
                    None => {}
                }
            }
            Phase::Connecting | Phase::Connected | Phase::Closed => return None,
        }
        Some(at)
    }

    /// Applies an input.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        match input {
            Input::DisconnectRequested => self.close(&mut out, "disconnected by the client".into()),
            Input::Leave(LeaveAction::Disconnect { reason }) => self.close(
                &mut out,
                format!("the server ended the session ({})", reason.as_str_name()),
            ),
            Input::Established => self.on_established(now),
            Input::ResumeDisabled => self.resume_allowed = false,
            Input::DataPathLost { last_inbound } => self.on_data_path_lost(now, last_inbound, &mut out),
            Input::DataPathRestored => self.on_data_path_restored(now, &mut out),
            Input::SignalLost { detail } => self.on_signal_lost(now, detail, &mut out),
            Input::Leave(LeaveAction::Resume) => self.on_leave_resume(now, &mut out),
            Input::Leave(LeaveAction::Reconnect) => self.on_leave_reconnect(now, &mut out),
            Input::AttemptFailed { id, error } => self.on_attempt_failed(now, id, error, &mut out),
            Input::ResumeAnswered { id } => self.on_answered(now, id, Phase::Resuming, &mut out),
            Input::RejoinAnswered { id } => self.on_answered(now, id, Phase::Rejoining, &mut out),
            Input::TransportReady => self.on_transport_ready(now, &mut out),
        }
        out
    }

    /// Advances time.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(outage) = &mut self.outage else {
            return out;
        };
        if now >= outage.began + self.cfg.reconnect_timeout {
            let why = outage.last_error.take().unwrap_or_else(|| "no answer".into());
            let reason = format!(
                "could not reconnect within {} s: {why}",
                self.cfg.reconnect_timeout.as_secs_f64()
            );
            self.close(&mut out, reason);
            return out;
        }
        match self.phase {
            Phase::Degraded { next_ice_restart } => {
                if !outage.announced && now >= outage.began + self.cfg.quiet_outage {
                    outage.announced = true;
                    out.push(Action::Emit(LinkEvent::Reconnecting {
                        reason: outage.reason,
                    }));
                }
                if now >= next_ice_restart {
                    self.phase = Phase::Degraded {
                        next_ice_restart: now + self.cfg.ice_restart_retry,
                    };
                    out.push(Action::IceRestart {
                        reason: LossReason::DataPath.reconnect_reason(),
                    });
                }
            }
            Phase::Resuming | Phase::Rejoining => {
                self.expire_attempts(now, &mut out);
                self.tick(now, &mut out);
            }
            Phase::Connecting | Phase::Connected | Phase::Closed => {}
        }
        out
    }

    fn on_established(&mut self, now: Instant) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::Connected;
            self.note_inbound(now);
        }
    }

    fn on_data_path_lost(&mut self, now: Instant, last_inbound: Instant, out: &mut Vec<Action>) {
        self.data_path_ok = false;
        if self.phase != Phase::Connected {
            return;
        }
        self.phase = Phase::Degraded {
            next_ice_restart: now + self.cfg.degraded_ice_restart_after,
        };
        self.outage = Some(Outage {
            began: last_inbound,
            reason: LossReason::DataPath,
            announced: false,
            last_error: Some("no datagram from the server".into()),
        });
        out.push(Action::PauseWrites(true));
    }

    fn on_data_path_restored(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.data_path_ok = true;
        match self.phase {
            Phase::Degraded { .. } => {
                let announced = self.outage.take().is_some_and(|o| o.announced);
                self.phase = Phase::Connected;
                out.push(Action::PauseWrites(false));
                if announced {
                    out.push(Action::Emit(LinkEvent::Reconnected {
                        kind: ReconnectKind::Resumed,
                    }));
                }
            }
            // A resume keeps the peer connection: its datagrams coming back is the transport
            // coming back. (After a rejoin they would be the old peer's: not a sign.)
            Phase::Resuming if self.answered.is_some() => self.finish(ReconnectKind::Resumed, out),
            // The network is back: try now rather than at the next tick.
            Phase::Resuming | Phase::Rejoining if self.answered.is_none() => {
                self.next_attempt_at = self.next_attempt_at.min(now);
                self.tick(now, out);
            }
            _ => {}
        }
    }

    fn on_signal_lost(&mut self, now: Instant, detail: String, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Connected | Phase::Degraded { .. } => {
                self.begin_outage(now, LossReason::Signal, Some(detail), out);
                self.enter(now, Phase::Resuming, out);
            }
            // The answered attempt's websocket died before the transport was ready.
            Phase::Resuming | Phase::Rejoining => {
                if let Some(a) = self.answered {
                    self.on_attempt_failed(now, a.id, AttemptError::Failed(detail), out);
                }
            }
            Phase::Connecting | Phase::Closed => {}
        }
    }

    fn on_leave_resume(&mut self, now: Instant, out: &mut Vec<Action>) {
        const DETAIL: &str = "the server asked us to resume";
        match self.phase {
            Phase::Connected | Phase::Degraded { .. } => {
                self.begin_outage(now, LossReason::ServerResume, Some(DETAIL.into()), out);
                self.enter(now, Phase::Resuming, out);
            }
            Phase::Resuming | Phase::Rejoining => self.fail_answered(now, DETAIL, out),
            Phase::Connecting | Phase::Closed => {}
        }
    }

    fn on_leave_reconnect(&mut self, now: Instant, out: &mut Vec<Action>) {
        const DETAIL: &str = "the server asked us to join again";
        match self.phase {
            Phase::Connected | Phase::Degraded { .. } => {
                self.begin_outage(now, LossReason::ServerReconnect, Some(DETAIL.into()), out);
                self.enter(now, Phase::Rejoining, out);
            }
            Phase::Resuming => {
                self.note_error(DETAIL);
                self.enter(now, Phase::Rejoining, out);
            }
            Phase::Rejoining => self.fail_answered(now, DETAIL, out),
            Phase::Connecting | Phase::Closed => {}
        }
    }

    fn fail_answered(&mut self, now: Instant, detail: &str, out: &mut Vec<Action>) {
        match self.answered {
            Some(a) => self.on_attempt_failed(now, a.id, AttemptError::Failed(detail.into()), out),
            None => self.note_error(detail),
        }
    }

    fn on_attempt_failed(&mut self, now: Instant, id: AttemptId, error: AttemptError, out: &mut Vec<Action>) {
        let was_answered = self.answered.is_some_and(|a| a.id == id);
        let was_in_flight = self.in_flight.iter().any(|(i, _)| *i == id);
        if !was_answered && !was_in_flight {
            return; // already aborted or replaced
        }
        if was_answered {
            self.answered = None;
        }
        self.in_flight.retain(|(i, _)| *i != id);
        match error {
            AttemptError::Unauthorized(detail) => {
                self.close(out, format!("the server refused the token: {detail}"));
                return;
            }
            AttemptError::Unreachable(detail) => {
                self.note_error(&detail);
                self.next_attempt_at = self.next_attempt_at.min(now + self.cfg.unreachable_retry);
            }
            AttemptError::Failed(detail) => {
                self.note_error(&detail);
                if self.phase == Phase::Resuming {
                    self.resume_failures += 1;
                }
            }
        }
        self.tick(now, out);
    }

    fn on_answered(&mut self, now: Instant, id: AttemptId, expected: Phase, out: &mut Vec<Action>) {
        if self.phase != expected || !self.in_flight.iter().any(|(i, _)| *i == id) {
            return;
        }
        self.abort_attempts_except(id, out);
        self.in_flight.clear();
        out.push(Action::AdoptAttempt { id });
        self.answered = Some(Answered {
            id,
            transport_deadline: now + self.cfg.transport_timeout,
        });
        if expected == Phase::Resuming {
            out.push(Action::SendSyncState);
            if self.data_path_ok {
                self.finish(ReconnectKind::Resumed, out);
            } else {
                let reason = self.outage.as_ref().map_or(LossReason::Signal, |o| o.reason);
                out.push(Action::IceRestart {
                    reason: reason.reconnect_reason(),
                });
            }
        }
    }

    fn on_transport_ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Degraded { .. } => self.on_data_path_restored(now, out),
            Phase::Resuming | Phase::Rejoining if self.answered.is_some() => {
                self.data_path_ok = true;
                let kind = if self.phase == Phase::Resuming {
                    ReconnectKind::Resumed
                } else {
                    ReconnectKind::Rejoined
                };
                self.finish(kind, out);
            }
            _ => {}
        }
    }

    fn begin_outage(
        &mut self,
        now: Instant,
        reason: LossReason,
        detail: Option<String>,
        out: &mut Vec<Action>,
    ) {
        let outage = self.outage.get_or_insert(Outage {
            began: now,
            reason,
            announced: false,
            last_error: None,
        });
        if detail.is_some() {
            outage.last_error = detail;
        }
        if !outage.announced {
            outage.announced = true;
            out.push(Action::Emit(LinkEvent::Reconnecting {
                reason: outage.reason,
            }));
        }
        if self.phase == Phase::Connected {
            out.push(Action::PauseWrites(true));
        }
    }

    /// Enters Resuming or Rejoining (abandoning the attempts of the other kind) and starts an
    /// attempt at once.
    fn enter(&mut self, now: Instant, phase: Phase, out: &mut Vec<Action>) {
        self.abort_attempts_except(0, out);
        self.in_flight.clear();
        self.answered = None;
        self.phase = phase;
        self.resume_failures = 0;
        self.next_attempt_at = now;
        self.tick(now, out);
    }

    fn may_resume(&self, now: Instant) -> bool {
        let recent = self
            .last_inbound
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.resume_window);
        self.resume_allowed && recent && self.resume_failures < self.cfg.resume_failures_before_rejoin
    }

    /// Starts an attempt if one is due and a slot is free.
    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.answered.is_some() {
            return; // the server took an attempt; its transport deadline decides
        }
        if self.phase == Phase::Resuming && !self.may_resume(now) {
            self.enter(now, Phase::Rejoining, out);
            return;
        }
        let due = now >= self.next_attempt_at;
        let free = self.in_flight.len() < self.attempt_slots();
        if !due || !free {
            return;
        }
        let kind = match self.phase {
            Phase::Resuming => AttemptKind::Resume {
                reason: self
                    .outage
                    .as_ref()
                    .map_or(LossReason::Signal, |o| o.reason)
                    .reconnect_reason(),
            },
            Phase::Rejoining => AttemptKind::Rejoin,
            _ => return,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push((id, now + self.cfg.attempt_timeout));
        self.next_attempt_at = now + self.cfg.attempt_interval;
        out.push(Action::StartAttempt { id, kind });
    }

    /// Rejoins never overlap: a second join with our identity would evict the first as a
    /// duplicate (`Leave{DISCONNECT, DUPLICATE_IDENTITY}` on the link we may adopt).
    fn attempt_slots(&self) -> usize {
        match self.phase {
            Phase::Rejoining => 1,
            _ => self.cfg.max_attempts_in_flight,
        }
    }

    fn expire_attempts(&mut self, now: Instant, out: &mut Vec<Action>) {
        let expired: Vec<AttemptId> = self
            .in_flight
            .iter()
            .filter(|(_, deadline)| now >= *deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            out.push(Action::AbortAttempt { id });
            self.on_attempt_failed(
                now,
                id,
                AttemptError::Unreachable("no answer in time".into()),
                out,
            );
        }
        if let Some(a) = self.answered.filter(|a| now >= a.transport_deadline) {
            out.push(Action::AbortAttempt { id: a.id });
            let detail = "the connection did not come back after the server answered";
            self.on_attempt_failed(now, a.id, AttemptError::Failed(detail.into()), out);
        }
    }

    fn abort_attempts_except(&mut self, keep: AttemptId, out: &mut Vec<Action>) {
        let answered = self.answered.map(|a| a.id);
        for id in self.in_flight.iter().map(|(id, _)| *id).chain(answered) {
            if id != keep {
                out.push(Action::AbortAttempt { id });
            }
        }
    }

    fn finish(&mut self, kind: ReconnectKind, out: &mut Vec<Action>) {
        self.phase = Phase::Connected;
        self.outage = None;
        self.answered = None;
        self.in_flight.clear();
        self.resume_failures = 0;
        out.push(Action::PauseWrites(false));
        out.push(Action::Emit(LinkEvent::Reconnected { kind }));
    }

    fn close(&mut self, out: &mut Vec<Action>, reason: String) {
        self.abort_attempts_except(0, out);
        self.in_flight.clear();
        self.answered = None;
        self.outage = None;
        self.phase = Phase::Closed;
        out.push(Action::Close { reason });
    }

    fn note_error(&mut self, detail: &str) {
        if let Some(o) = &mut self.outage {
            o.last_error = Some(detail.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ReconnectReason as RR;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A machine driven with fake time: `to(t)` fires every timeout due up to `t` (from t0).
    struct Sim {
        r: Reconnector,
        t0: Instant,
        now: Instant,
    }

    impl Sim {
        /// The machine on a plain one-attempt-a-second cadence (no quicker retry after an
        /// unreachable server), which most tests count on.
        fn connected() -> Sim {
            Sim::connected_with(ReconnectConfig {
                unreachable_retry: ReconnectConfig::default().attempt_interval,
                ..ReconnectConfig::default()
            })
        }

        fn connected_with(cfg: ReconnectConfig) -> Sim {
            let t0 = Instant::now();
            let mut r = Reconnector::new(cfg, t0);
            assert_eq!(r.state(), LinkState::Connecting);
            assert!(r.handle(t0, Input::Established).is_empty());
            assert_eq!(r.state(), LinkState::Connected);
            assert_eq!(r.poll_timeout(), None);
            Sim { r, t0, now: t0 }
        }

        fn at(&self, offset: Duration) -> Instant {
            self.t0 + offset
        }

        /// Advances to `offset`, firing due timeouts; returns (offset, action) pairs.
        fn to(&mut self, offset: Duration) -> Vec<(Duration, Action)> {
            let end = self.t0 + offset;
            let mut out = Vec::new();
            while let Some(at) = self.r.poll_timeout().filter(|at| *at <= end) {
                let at = at.max(self.now);
                self.now = at;
                out.extend(self.r.handle_timeout(at).into_iter().map(|a| (at - self.t0, a)));
            }
            self.now = self.now.max(end);
            out
        }

        fn input(&mut self, offset: Duration, input: Input) -> Vec<Action> {
            let mut out: Vec<Action> = self.to(offset).into_iter().map(|(_, a)| a).collect();
            out.extend(self.r.handle(self.at(offset), input));
            out
        }
    }

    fn started(actions: &[Action]) -> Vec<(AttemptId, AttemptKind)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StartAttempt { id, kind } => Some((*id, *kind)),
                _ => None,
            })
            .collect()
    }

    fn closed(actions: &[Action]) -> Option<&str> {
        actions.iter().find_map(|a| match a {
            Action::Close { reason } => Some(reason.as_str()),
            _ => None,
        })
    }

    const RESUME_SIGNAL: AttemptKind = AttemptKind::Resume {
        reason: RR::RrSignalDisconnected,
    };
    const RECONNECTING_SIGNAL: Action = Action::Emit(LinkEvent::Reconnecting {
        reason: LossReason::Signal,
    });
    const RESUMED: Action = Action::Emit(LinkEvent::Reconnected {
        kind: ReconnectKind::Resumed,
    });
    const REJOINED: Action = Action::Emit(LinkEvent::Reconnected {
        kind: ReconnectKind::Rejoined,
    });

    fn lost_data(s: &mut Sim, offset: Duration) -> Vec<Action> {
        s.r.note_inbound(s.at(offset - ms(2500)));
        s.input(
            offset,
            Input::DataPathLost {
                last_inbound: s.at(offset - ms(2500)),
            },
        )
    }

    #[test]
    fn short_data_path_outage_restarts_ice_and_stays_invisible() {
        let mut s = Sim::connected();
        assert_eq!(lost_data(&mut s, ms(2500)), [Action::PauseWrites(true)]);
        assert_eq!(s.r.state(), LinkState::Degraded);
        // The ICE restart would be offered at 5 s (2.5 s after the detection).
        assert_eq!(s.r.poll_timeout(), Some(s.at(ms(5000))));
        assert!(s.to(ms(4900)).is_empty());
        // Restored 4.9 s after the last packet: nothing user-visible happened.
        assert_eq!(
            s.input(ms(4900), Input::DataPathRestored),
            [Action::PauseWrites(false)]
        );
        assert_eq!(s.r.state(), LinkState::Connected);
        assert_eq!(s.r.poll_timeout(), None);
    }

    #[test]
    fn long_data_path_outage_is_announced_and_ice_restarts_repeat() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        let restart = Action::IceRestart {
            reason: RR::RrPublisherFailed,
        };
        let reconnecting = Action::Emit(LinkEvent::Reconnecting {
            reason: LossReason::DataPath,
        });
        assert_eq!(
            s.to(ms(15_500)),
            [
                (ms(5000), reconnecting),
                (ms(5000), restart.clone()),
                (ms(10_000), restart.clone()),
                (ms(15_000), restart)
            ]
        );
        // An ICE restart that completes counts as a restore.
        assert_eq!(
            s.input(ms(15_600), Input::TransportReady),
            [Action::PauseWrites(false), RESUMED]
        );
        assert_eq!(s.r.state(), LinkState::Connected);
    }

    #[test]
    fn signal_loss_with_a_healthy_data_path_resumes_without_ice_restart() {
        let mut s = Sim::connected();
        s.r.note_inbound(s.at(ms(900)));
        let a = s.input(
            ms(1000),
            Input::SignalLost {
                detail: "ws closed".into(),
            },
        );
        assert_eq!(
            a,
            [
                RECONNECTING_SIGNAL,
                Action::PauseWrites(true),
                Action::StartAttempt {
                    id: 1,
                    kind: RESUME_SIGNAL
                }
            ]
        );
        assert_eq!(s.r.state(), LinkState::Resuming);
        let a = s.input(ms(1050), Input::ResumeAnswered { id: 1 });
        assert_eq!(
            a,
            [
                Action::AdoptAttempt { id: 1 },
                Action::SendSyncState,
                Action::PauseWrites(false),
                RESUMED
            ]
        );
        assert_eq!(s.r.state(), LinkState::Connected);
        assert_eq!(s.r.poll_timeout(), None);
    }

    #[test]
    fn signal_loss_after_the_data_path_resumes_with_an_ice_restart() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        s.to(ms(5400));
        let a = s.input(
            ms(5500),
            Input::SignalLost {
                detail: "ping timeout".into(),
            },
        );
        // Already announced and paused while degraded: only the attempt starts.
        assert_eq!(
            a,
            [Action::StartAttempt {
                id: 1,
                kind: AttemptKind::Resume {
                    reason: RR::RrPublisherFailed
                }
            }]
        );
        let a = s.input(ms(6000), Input::ResumeAnswered { id: 1 });
        assert_eq!(
            a,
            [
                Action::AdoptAttempt { id: 1 },
                Action::SendSyncState,
                Action::IceRestart {
                    reason: RR::RrPublisherFailed
                }
            ]
        );
        assert_eq!(s.r.state(), LinkState::Resuming);
        assert_eq!(
            s.input(ms(6200), Input::TransportReady),
            [Action::PauseWrites(false), RESUMED]
        );
        assert_eq!(s.r.state(), LinkState::Connected);
    }

    #[test]
    fn datagrams_returning_before_any_answer_start_an_attempt_at_once() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        s.input(ms(5500), Input::SignalLost { detail: "x".into() });
        let a = s.input(
            ms(5510),
            Input::AttemptFailed {
                id: 1,
                error: AttemptError::Unreachable("down".into()),
            },
        );
        assert!(started(&a).is_empty(), "the next attempt waits for its tick");
        // The path is back 300 ms later: no need to wait for the 6.5 s tick.
        assert_eq!(
            started(&s.input(ms(5800), Input::DataPathRestored)),
            [(
                2,
                AttemptKind::Resume {
                    reason: RR::RrPublisherFailed
                }
            )]
        );
        assert_eq!(
            s.input(ms(5850), Input::ResumeAnswered { id: 2 }),
            [
                Action::AdoptAttempt { id: 2 },
                Action::SendSyncState,
                Action::PauseWrites(false),
                RESUMED
            ]
        );
    }

    #[test]
    fn datagrams_returning_after_the_resume_answer_complete_it() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        s.input(ms(5500), Input::SignalLost { detail: "x".into() });
        s.input(ms(6000), Input::ResumeAnswered { id: 1 });
        assert_eq!(
            s.input(ms(6100), Input::DataPathRestored),
            [Action::PauseWrites(false), RESUMED]
        );
    }

    #[test]
    fn an_answered_resume_is_not_abandoned_when_the_resume_window_closes() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        s.input(ms(5500), Input::SignalLost { detail: "x".into() });
        // Attempts fail until 24.5 s; the one started then is answered just before 25 s.
        let mut id = 1;
        let mut now = ms(5500);
        while now < ms(24_500) {
            let a = s.input(
                now + ms(10),
                Input::AttemptFailed {
                    id,
                    error: AttemptError::Unreachable("down".into()),
                },
            );
            assert!(a.is_empty());
            now += ms(1000);
            id = started(&s.to(now).into_iter().map(|(_, a)| a).collect::<Vec<_>>())[0].0;
        }
        s.input(ms(24_900), Input::ResumeAnswered { id });
        // Past the window, ICE still restarting: nothing is abandoned.
        assert!(s.to(ms(26_000)).is_empty());
        assert_eq!(s.r.state(), LinkState::Resuming);
        assert_eq!(
            s.input(ms(26_500), Input::TransportReady),
            [Action::PauseWrites(false), RESUMED]
        );
    }

    #[test]
    fn server_leave_resume_starts_a_resume() {
        let mut s = Sim::connected();
        let a = s.input(ms(100), Input::Leave(LeaveAction::Resume));
        assert_eq!(
            a[0],
            Action::Emit(LinkEvent::Reconnecting {
                reason: LossReason::ServerResume
            })
        );
        assert_eq!(
            started(&a),
            [(
                1,
                AttemptKind::Resume {
                    reason: RR::RrPublisherFailed
                }
            )]
        );
    }

    #[test]
    fn server_leave_reconnect_or_disabled_resume_rejoins() {
        let mut s = Sim::connected();
        let a = s.input(ms(100), Input::Leave(LeaveAction::Reconnect));
        assert_eq!(s.r.state(), LinkState::Rejoining);
        assert_eq!(started(&a), [(1, AttemptKind::Rejoin)]);

        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        let a = s.input(ms(3000), Input::Leave(LeaveAction::Reconnect));
        assert_eq!(s.r.state(), LinkState::Rejoining);
        assert_eq!(started(&a), [(1, AttemptKind::Rejoin)]);

        let mut s = Sim::connected();
        s.input(ms(0), Input::ResumeDisabled);
        let a = s.input(
            ms(100),
            Input::SignalLost {
                detail: "closed".into(),
            },
        );
        assert_eq!(s.r.state(), LinkState::Rejoining);
        assert_eq!(started(&a), [(1, AttemptKind::Rejoin)]);
    }

    #[test]
    fn leave_disconnect_unauthorized_and_disconnect_close_from_any_state() {
        let leave = Input::Leave(LeaveAction::Disconnect {
            reason: proto::DisconnectReason::ServerShutdown,
        });
        let mut s = Sim::connected();
        let a = s.input(ms(10), leave.clone());
        assert_eq!(closed(&a), Some("the server ended the session (SERVER_SHUTDOWN)"));
        assert_eq!(s.r.state(), LinkState::Closed);
        assert!(s
            .r
            .handle(s.at(ms(20)), Input::SignalLost { detail: "x".into() })
            .is_empty());
        assert_eq!(s.r.poll_timeout(), None);

        // While resuming: attempts are aborted, then the close.
        let mut s = Sim::connected();
        s.input(ms(10), Input::SignalLost { detail: "x".into() });
        s.input(
            ms(1010),
            Input::AttemptFailed {
                id: 1,
                error: AttemptError::Unreachable("refused".into()),
            },
        );
        let a = s.input(ms(1500), Input::DisconnectRequested);
        assert_eq!(
            a,
            [
                Action::AbortAttempt { id: 2 },
                Action::Close {
                    reason: "disconnected by the client".into()
                }
            ]
        );

        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        assert!(closed(&s.input(ms(3000), leave)).is_some());

        let mut s = Sim::connected();
        s.input(ms(10), Input::SignalLost { detail: "x".into() });
        let a = s.input(
            ms(20),
            Input::AttemptFailed {
                id: 1,
                error: AttemptError::Unauthorized("HTTP 401".into()),
            },
        );
        assert_eq!(closed(&a), Some("the server refused the token: HTTP 401"));
    }

    #[test]
    fn resume_refused_by_the_server_switches_to_rejoin() {
        let mut s = Sim::connected();
        s.input(ms(0), Input::SignalLost { detail: "x".into() });
        s.to(ms(1000)); // second resume attempt in flight
        let a = s.input(ms(1100), Input::Leave(LeaveAction::Reconnect));
        assert_eq!(
            a,
            [
                Action::AbortAttempt { id: 1 },
                Action::AbortAttempt { id: 2 },
                Action::StartAttempt {
                    id: 3,
                    kind: AttemptKind::Rejoin
                }
            ]
        );
        assert_eq!(s.r.state(), LinkState::Rejoining);
        let a = s.input(ms(1200), Input::RejoinAnswered { id: 3 });
        assert_eq!(a, [Action::AdoptAttempt { id: 3 }]);
        assert_eq!(
            s.input(ms(1300), Input::TransportReady),
            [Action::PauseWrites(false), REJOINED]
        );
        assert_eq!(s.r.state(), LinkState::Connected);
    }

    #[test]
    fn two_resumes_that_reach_the_server_and_fail_lead_to_rejoin() {
        let mut s = Sim::connected();
        s.input(ms(0), Input::SignalLost { detail: "x".into() });
        let failed = |id| Input::AttemptFailed {
            id,
            error: AttemptError::Failed("closed before ReconnectResponse".into()),
        };
        assert!(
            started(&s.input(ms(100), failed(1))).is_empty(),
            "waits for the next tick"
        );
        let a = s.to(ms(1000));
        assert_eq!(
            a,
            [(
                ms(1000),
                Action::StartAttempt {
                    id: 2,
                    kind: RESUME_SIGNAL
                }
            )]
        );
        let a = s.input(ms(1100), failed(2));
        assert_eq!(s.r.state(), LinkState::Rejoining);
        assert_eq!(started(&a), [(3, AttemptKind::Rejoin)]);
    }

    #[test]
    fn attempts_tick_every_second_two_at_most_each_bounded_by_three_seconds() {
        let mut s = Sim::connected();
        s.input(ms(0), Input::SignalLost { detail: "x".into() });
        let a = s.to(ms(4000));
        assert_eq!(
            a,
            [
                (
                    ms(1000),
                    Action::StartAttempt {
                        id: 2,
                        kind: RESUME_SIGNAL
                    }
                ),
                // 2 s: two in flight, no third.
                (ms(3000), Action::AbortAttempt { id: 1 }),
                (
                    ms(3000),
                    Action::StartAttempt {
                        id: 3,
                        kind: RESUME_SIGNAL
                    }
                ),
                (ms(4000), Action::AbortAttempt { id: 2 }),
                (
                    ms(4000),
                    Action::StartAttempt {
                        id: 4,
                        kind: RESUME_SIGNAL
                    }
                ),
            ]
        );
        // A late failure report of an aborted attempt changes nothing.
        assert!(s
            .input(
                ms(4100),
                Input::AttemptFailed {
                    id: 1,
                    error: AttemptError::Unreachable("late".into())
                }
            )
            .is_empty());
    }

    #[test]
    fn attempt_errors_are_classified_without_the_refusal_body() {
        let refused = |status| LiveError::Refused {
            status,
            message: "body that may say anything".into(),
        };
        assert_eq!(
            AttemptError::from_live_error(&refused(401), false),
            AttemptError::Unauthorized("HTTP 401".into())
        );
        assert_eq!(
            AttemptError::from_live_error(&refused(403), true),
            AttemptError::Unauthorized("HTTP 403".into())
        );
        assert_eq!(
            AttemptError::from_live_error(&refused(503), false),
            AttemptError::Unreachable("HTTP 503".into())
        );
        let io = LiveError::Io(std::io::Error::new(
            std::io::ErrorKind::NetworkUnreachable,
            "down",
        ));
        assert!(matches!(
            AttemptError::from_live_error(&io, false),
            AttemptError::Unreachable(_)
        ));
        let closed = LiveError::Signal("closed before ReconnectResponse".into());
        assert!(
            matches!(AttemptError::from_live_error(&closed, true), AttemptError::Failed(m) if m.contains("closed"))
        );
    }

    #[test]
    fn liveness_events_map_to_inputs() {
        let t = Instant::now();
        assert_eq!(Input::from_liveness(LivenessEvent::SendPing), None);
        assert_eq!(
            Input::from_liveness(LivenessEvent::DataPathLost { last_inbound: t }),
            Some(Input::DataPathLost { last_inbound: t })
        );
        assert_eq!(
            Input::from_liveness(LivenessEvent::DataPathRestored {
                silent_for: Duration::from_secs(3)
            }),
            Some(Input::DataPathRestored)
        );
        assert!(matches!(
            Input::from_liveness(LivenessEvent::SignalLost),
            Some(Input::SignalLost { .. })
        ));
    }

    #[test]
    fn rejoin_attempts_never_overlap() {
        let mut s = Sim::connected();
        s.input(ms(0), Input::Leave(LeaveAction::Reconnect));
        let a = s.to(ms(6000));
        assert_eq!(
            a,
            [
                (ms(3000), Action::AbortAttempt { id: 1 }),
                (
                    ms(3000),
                    Action::StartAttempt {
                        id: 2,
                        kind: AttemptKind::Rejoin
                    }
                ),
                (ms(6000), Action::AbortAttempt { id: 2 }),
                (
                    ms(6000),
                    Action::StartAttempt {
                        id: 3,
                        kind: AttemptKind::Rejoin
                    }
                ),
            ]
        );
    }

    #[test]
    fn resume_window_passed_goes_straight_to_rejoin() {
        let mut s = Sim::connected();
        s.r.note_inbound(s.at(ms(1000)));
        lost_data(&mut s, ms(3500));
        let a = s.input(ms(26_000), Input::SignalLost { detail: "x".into() });
        assert_eq!(s.r.state(), LinkState::Rejoining);
        assert_eq!(started(&a), [(1, AttemptKind::Rejoin)]);
    }

    #[test]
    fn server_answered_but_transport_never_came_back() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        s.input(ms(5500), Input::SignalLost { detail: "x".into() });
        s.input(ms(5600), Input::ResumeAnswered { id: 1 });
        let a = s.to(ms(10_600));
        assert_eq!(a[0], (ms(10_600), Action::AbortAttempt { id: 1 }));
        assert_eq!(
            a[1],
            (
                ms(10_600),
                Action::StartAttempt {
                    id: 2,
                    kind: AttemptKind::Resume {
                        reason: RR::RrPublisherFailed
                    }
                }
            )
        );
        // The answered websocket dying counts as a failure too: the second one switches to rejoin.
        s.input(ms(10_700), Input::ResumeAnswered { id: 2 });
        let a = s.input(
            ms(10_800),
            Input::SignalLost {
                detail: "ws closed".into(),
            },
        );
        assert_eq!(s.r.state(), LinkState::Rejoining);
        assert_eq!(started(&a), [(3, AttemptKind::Rejoin)]);
    }

    #[test]
    fn gives_up_after_the_reconnect_timeout_with_the_last_error() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        s.input(
            ms(5500),
            Input::SignalLost {
                detail: "ping timeout".into(),
            },
        );
        let mut now = ms(5500);
        let mut reason = None;
        while reason.is_none() && now < ms(70_000) {
            now += ms(100);
            let mut actions: Vec<Action> = s.to(now).into_iter().map(|(_, a)| a).collect();
            for (id, _) in started(&actions.clone()) {
                actions.extend(s.input(
                    now,
                    Input::AttemptFailed {
                        id,
                        error: AttemptError::Unreachable("connection refused".into()),
                    },
                ));
            }
            reason = closed(&actions).map(str::to_owned);
        }
        // 60 s after the last inbound packet (t = 0), not after the detection.
        assert_eq!(now, ms(60_000));
        assert_eq!(
            reason.as_deref(),
            Some("could not reconnect within 60 s: connection refused")
        );
        assert_eq!(s.r.state(), LinkState::Closed);
    }

    #[test]
    fn interface_down_for_45_s_counts_time_not_attempts_and_recovers_within_a_second() {
        let mut s = Sim::connected();
        lost_data(&mut s, ms(2500));
        s.input(
            ms(5500),
            Input::SignalLost {
                detail: "ws error".into(),
            },
        );
        // Every attempt fails at once (ENETUNREACH) until the interface comes back at 45 s.
        let mut now = ms(5500);
        let mut kinds = vec![AttemptKind::Resume {
            reason: RR::RrPublisherFailed,
        }];
        let mut pending = vec![1];
        let mut recovered_at = None;
        while recovered_at.is_none() && now < ms(70_000) {
            for id in std::mem::take(&mut pending) {
                let a = if now < ms(45_000) {
                    s.input(
                        now,
                        Input::AttemptFailed {
                            id,
                            error: AttemptError::Unreachable("network unreachable".into()),
                        },
                    )
                } else {
                    let mut a = s.input(now, Input::RejoinAnswered { id });
                    a.extend(s.input(now + ms(50), Input::TransportReady));
                    a
                };
                if a.contains(&REJOINED) {
                    recovered_at = Some(now + ms(50));
                }
                assert!(closed(&a).is_none());
                pending.extend(started(&a).into_iter().map(|(id, k)| {
                    kinds.push(k);
                    id
                }));
            }
            now += ms(10);
            for (_, a) in s.to(now) {
                assert!(!matches!(a, Action::Close { .. }));
                if let Action::StartAttempt { id, kind } = a {
                    kinds.push(kind);
                    pending.push(id);
                }
            }
        }
        let recovered_at = recovered_at.expect("recovered");
        assert!(recovered_at <= ms(46_050), "recovered at {recovered_at:?}");
        // One attempt a second: resumes while the server may still know us (25 s after the
        // last packet at 0 s), then rejoins.
        let resumes = kinds
            .iter()
            .filter(|k| matches!(k, AttemptKind::Resume { .. }))
            .count();
        let rejoins = kinds.len() - resumes;
        assert_eq!((resumes, rejoins), (20, 21), "{kinds:?}");
    }

    #[test]
    fn with_the_interface_down_attempts_repeat_every_quarter_second_and_the_return_is_found_at_once() {
        let mut s = Sim::connected_with(ReconnectConfig::default());
        let mut actions = s.input(ms(0), Input::SignalLost { detail: "x".into() });
        let mut next_id = 1;
        let mut starts = Vec::new();
        let mut now = ms(0);
        // Down for 10 s: every attempt fails at once.
        while now < ms(10_000) {
            while let Some(id) = actions.iter().find_map(|a| match a {
                Action::StartAttempt { id, .. } => Some(*id),
                _ => None,
            }) {
                assert_eq!(id, next_id);
                next_id += 1;
                starts.push(now);
                actions = s.input(
                    now,
                    Input::AttemptFailed {
                        id,
                        error: AttemptError::Unreachable("network unreachable".into()),
                    },
                );
            }
            now += ms(10);
            actions = s.to(now).into_iter().map(|(_, a)| a).collect();
        }
        // About four a second (not one), none faster than the retry delay.
        assert!(
            (38..=42).contains(&starts.len()),
            "{} attempts: {starts:?}",
            starts.len()
        );
        assert!(starts.windows(2).all(|w| w[1] - w[0] >= ms(250)), "{starts:?}");
        // The interface is back at 10 s: the next attempt starts within the retry delay.
        let first_after = loop {
            if !started(&actions).is_empty() {
                break now;
            }
            now += ms(10);
            actions = s.to(now).into_iter().map(|(_, a)| a).collect();
            if !started(&actions).is_empty() {
                break now;
            }
        };
        assert!(first_after <= ms(10_260), "{first_after:?}");
    }
}
