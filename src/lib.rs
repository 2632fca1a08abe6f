//! Blocking Rust client for the Menlo robot platform: create robots, manage sessions, mint
//! room keys for the browser viewer, and (feature `livekit`) drive robots live.
//!
//! Two planes:
//! - the **control plane**, an HTTPS JSON API (robots, sessions, tokens), served by a
//!   blocking [`Client`] with deterministic retries;
//! - the **runtime plane**, a LiveKit room where the robot runtime answers `runtime.*` RPC
//!   (feature `livekit`).
//!
//! Nothing here is async: every call blocks the calling thread until it is done.
//!
//! # Example
//!
//! Against the embedded control-plane emulator (feature `dev`), so it runs anywhere; with a
//! real account, use [`Client::from_env`] with `MENLO_API_KEY` set instead.
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use menlo_robot_sdk::{dev, Client, NewRobot, RobotUpdate, SessionOptions};
//!
//! let platform = dev::ControlPlane::start()?;
//! let key = platform.create_api_key(&dev::Principal::new("user_1", "org_1", "team_1"));
//! let client = Client::builder().rcs_url(platform.url()).api_key(key).build()?;
//!
//! let created = client.robots().create(&NewRobot::new("My bot", "asimov-v0"))?;
//! let robot_id = created.robot.id;
//! client.robots().update(&robot_id, &RobotUpdate::new().name("Renamed"))?;
//!
//! let session = client.robots().create_session(&robot_id, &SessionOptions::new().no_workers())?;
//! assert_eq!(session.room_name, robot_id);
//!
//! let key = client.room_keys().generate(&robot_id)?;
//! assert_eq!(key.room_name()?, robot_id);
//!
//! client.robots().delete_session(&robot_id)?;
//! client.robots().delete(&robot_id)?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//! - default: the control plane only (ureq, serde, thiserror, fastrand, log, base64).
//! - `livekit`: live robot control.
//! - `dev`: the embedded local platform, for offline development and tests.
//!
//! # Driving a robot (feature `livekit`)
//!
//! `connect` returns a `Session`, the live handle to the robot's session. Each runtime
//! call has a blocking form (`Session::invoke`) and a non-blocking `start_*` form returning a
//! handle (`PendingAction`, `Pending`) that never blocks; events arrive on
//! `Session::events`. No thread per session: calls run on the SDK's private executor and
//! callbacks on one shared SDK thread. The session connects over UDP, ICE over TCP or a TURN
//! relay, whichever works; `Session::network_path` says which (`NetworkPath`). The README's
//! "Drive a robot" section has a full example.
//!
//! # Glossary
//! - **session**: the robot's session on the platform; `Session` is the live handle to one.
//! - **room**: the LiveKit room of a session, named after the robot.
//! - **participant**: anyone in the room (`Participant`): the SDK, the runtime, viewers.
//! - **runtime**: the robot runtime worker in the room, answering `runtime.*` RPC
//!   (`RuntimeHost` is how to be one).
//! - **engine**: the SDK's private LiveKit client; **executor**: the private tokio pool the
//!   engine and every live call run on.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
mod json;
mod models;
mod open_enum;
mod robots;
mod room_key;
mod runtime_error;
mod secret;
mod sessions;
mod transport;

mod retry;
/// Control-plane internals the fuzz targets exercise; compiled only under `--cfg fuzzing`.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __control_plane_fuzzing {
    pub use crate::room_key::is_container_internal;
}

#[cfg(feature = "dev")]
pub mod dev;
#[cfg(feature = "livekit")]
mod live;
#[cfg(all(fuzzing, feature = "livekit"))]
#[doc(hidden)]
pub use live::fuzzing as __fuzzing;
/// The TURN client, for the loopback tests against livekit-server's embedded TURN (not API).
#[cfg(feature = "dev")]
#[doc(hidden)]
pub use live::turn as __turn;
#[cfg(feature = "livekit")]
mod runtime;
#[cfg(feature = "livekit")]
mod runtime_host;
#[cfg(feature = "livekit")]
mod session;

pub use client::{Client, ClientBuilder};
pub use config::{
    env, DevIdentity, DEFAULT_MAX_RETRIES, DEFAULT_RCS_URL, DEFAULT_TIMEOUT, DEFAULT_VIEWER_URL,
};
pub use error::{ApiError, Error, Result};
#[allow(deprecated)]
pub use models::WorkerConfig;
pub use models::{
    AgentDispatch, Language, NewRobot, ParticipantToken, ParticipantTokenRequest, RequiredParticipant, Robot,
    RobotCreated, RobotPage, RobotType, RobotUpdate, SessionCreated, SessionInfo, SessionList,
    SessionMetadata, SessionOptions, SessionStatus, Voice, DEFAULT_TOKEN_TTL_SECONDS,
};
pub use robots::{RobotIter, Robots, DEFAULT_PAGE_SIZE};
pub use room_key::{RoomKey, RoomKeyOptions, RoomKeys};
pub use runtime_error::RuntimeErrorCode;
pub use secret::Secret;
pub use sessions::Sessions;
pub use transport::{JitterFn, SleepFn};

#[cfg(feature = "livekit")]
pub use live::{NetworkPath, OutgoingStream, Participant, ParticipantKind, RpcError, RpcErrorCode};
#[cfg(feature = "livekit")]
pub use runtime::{
    ActionKind, ActionMeta, ActionPhase, ActionProgress, ActionResult, ActionStatus, ActiveAction,
    CaptureOptions, EntityState, LastAction, LastActionStatus, Pose, RobotInfo, RobotStatus,
    RuntimeErrorInfo, RuntimeEvent, RuntimeInfo, RuntimeState, RuntimeStatus, SceneState, StateReply,
    StateTimestamp, ToolAnnotations, ToolCost, ToolDescriptor, ToolUses,
};
#[cfg(feature = "livekit")]
pub use runtime_host::{RuntimeCall, RuntimeHost};
#[cfg(feature = "livekit")]
pub use session::{
    connect, ConnectCallbacks, ConnectOptions, ConnectionState, Events, Pending, PendingAction,
    ReconnectKind, Session, SessionEvent, StateReader, DEFAULT_SESSION_READY_TIMEOUT, EVENT_QUEUE_CAPACITY,
};

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The README's code blocks, compiled (and the `no_run` ones type-checked) as doctests so the
/// README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
