//! The runtime plane's pure half (feature `livekit`): wire models, `runtime.*` request
//! builders and reply interpretation, session readiness and runtime-worker resolution.
//!
//! Everything here is I/O-free (sans-IO): plain functions and small state machines that the
//! session facade and the LiveKit engine drive, and that tests drive without sockets or clocks.
//! - [`models`]: serde models of CONTRACT §8 (`ActionResult`, `RuntimeState`, …).
//! - [`calls`]: one request builder and one reply interpreter per `runtime.*` method.
//! - [`resolve`]: slot readiness (§6) and finding the runtime worker (§7).

// Every fallible function returns the crate's one `Error`, whose size is the crate's choice.
#![allow(clippy::result_large_err)]

pub mod calls;
pub mod models;
pub mod resolve;

pub use calls::{CaptureOptions, StateReply};
pub use models::{
    ActionKind, ActionMeta, ActionPhase, ActionProgress, ActionResult, ActionStatus, ActiveAction,
    EntityState, LastAction, LastActionStatus, Pose, RobotInfo, RobotStatus, RuntimeErrorInfo, RuntimeEvent,
    RuntimeInfo, RuntimeState, RuntimeStatus, SceneState, StateTimestamp, ToolAnnotations, ToolCost,
    ToolDescriptor, ToolUses,
};
