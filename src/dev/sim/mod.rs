//! The simulated robot (feature `dev` with `livekit`): a 2-D world, skills, cameras and the
//! whole `runtime.*` contract (CONTRACT §8), so the SDK can drive a robot with no hardware.
//!
//! Layers, each usable on its own:
//! - [`Scene`]: the static layout (floor, pads, obstacles, pickable objects), built in or
//!   loaded from JSON (format in [`scene`]).
//! - [`World`]: the deterministic simulation. No threads, no clock: time is passed in and the
//!   world runs the fixed [`STEP_S`] steps needed to reach it ([`World::advance_to`]).
//! - [`SimRobot`]: a pure dispatcher answering `runtime.*` methods at a given wall-clock time.
//! - [`SharedSimRobot`]: a thread-safe handle whose `call` blocks a tool call until its action
//!   ends while other threads read state or cancel it.
//! - [`serve`]: answers the `runtime.*` RPC of a [`RuntimeHost`](crate::RuntimeHost) with a
//!   [`SharedSimRobot`].
//! - [`page`]: an HTML page showing every live robot's top-down view with a status line,
//!   over an endpoint-agnostic JSON feed and per-robot JPEG frames.
//!
//! Driving the dispatcher by hand, on simulated time:
//!
//! ```text
//! use std::time::Duration;
//! use menlo_robot_sdk::dev::sim::{Reply, SimConfig, SimRobot};
//!
//! let t0 = Duration::from_secs(1_700_000_000); // wall-clock time since the Unix epoch
//! let mut robot = SimRobot::new(&SimConfig::default(), t0)?;
//! let call = r#"{"name":"go_to","input":{"target":{"kind":"entity","entity_id":"pad_B"}},
//!                "options":{"action_id":"act_1"}}"#;
//! let reply = robot.handle("runtime.tools_call", call, t0)?;
//! assert_eq!(reply, Reply::Running { action_id: "act_1".into() });
//! // 30 s later the robot has arrived: the world ran the steps in between.
//! let result = robot.poll_action("act_1", t0 + Duration::from_secs(30)).expect("arrived");
//! assert!(result.contains(r#""status":"done""#));
//! # Ok::<(), menlo_robot_sdk::dev::sim::SimError>(())
//! ```
//!
//! # Skills
//!
//! | skill | input | does | fails with |
//! |---|---|---|---|
//! | `go_to` | `{"target":{"kind":"entity","entity_id":"pad_B"}}` or `{"target":{"kind":"pose","x","y","yaw_deg"?}}` | plans an A* path around the obstacles (inflated by the robot's radius + 0.1 m) and follows it; to an object, it stops within reach | `NAVIGATION_STUCK` (no path, or no progress), `ENTITY_NOT_FOUND` |
//! | `set_velocity` | `{"vx"?,"vy"?,"wz"?,"duration_s"?=1}` (m/s body frame, rad/s) | drives for `duration_s` then stops | `INVALID_INPUT` above the speed limits, `COLLISION` when the body would hit something |
//! | `stop` | `{}` | stands still; the running action ends as `CANCELLED` | — |
//! | `pick_entity` | `{"entity_id"}` | picks an object within reach (0.5 s); status `holding` | `TOO_FAR`, `HANDS_FULL`, `ALREADY_HELD`, `NOT_PICKABLE`, `ENTITY_NOT_FOUND` |
//! | `place_entity` | `{"entity_id"?,"on"?}` | puts the held object on pad `on` (within reach) or in front (0.5 s) | `NOT_HOLDING`, `TOO_FAR`, `PLACE_BLOCKED` |
//!
//! Bad input fails with `INVALID_INPUT` and a message starting with the field's path. An
//! unknown skill fails with `TOOL_NOT_FOUND`.
//!
//! **One action at a time.** While an action runs, a second mutating call (`go_to`,
//! `set_velocity`, `pick_entity`, `place_entity`) fails at once with `BUSY` and the running
//! action goes on; `stop` and `runtime.cancel` end it as `CANCELLED`; reads and captures
//! always answer.
//!
//! The robot is a disc; obstacles and the floor's edges stop it, pickable objects do not (it
//! drives over them). Simulated time runs `time_scale` times faster than the wall clock.
//!
//! Cameras: `pov` (first person) and `topdown` (the map with the current path); an unknown
//! camera is `UNKNOWN_CAMERA`.

mod camera;
mod page;
mod plan;
mod robot;
pub mod scene;
mod shared;
mod skills;
mod world;

mod serve;

pub(crate) use page::{feed_json, page_html, FeedEntry, PageOptions};
pub(crate) use robot::SimRobot;
pub(crate) use scene::{Scene, DEFAULT_SCENE_ID};
pub(crate) use serve::SimRuntime;
pub(crate) use shared::{wall_clock, SharedSimRobot};

// What the unit tests reach by `super::*`.
#[cfg(test)]
use {
    camera::{encode_jpeg, render, RgbImage, CAMERAS},
    robot::{CameraFrame, Reply, SimConfig, SimError},
    serve::SERVED_METHODS,
    shared::Clock,
    skills::SKILLS,
    world::{Command, Outcome, Target, World, HANDLING_S, STEP_S},
};

/// The error code of an action ended by `runtime.cancel` or `stop`.
pub const CANCELLED: &str = "CANCELLED";

#[cfg(test)]
mod tests;
