//! [`SimRobot`]: the `runtime.*` contract (CONTRACT §8) over a [`World`], as a pure
//! dispatcher. Time is passed in as wall-clock time since the Unix epoch; the world is
//! advanced to it before every answer.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::camera::{self, CaptureRequest};
use super::scene::{Scene, Shape};
use super::skills;
use super::world::{Failure, Outcome, World, STEP_S};
use super::CANCELLED;
use crate::runtime::calls::{method, CANCEL_ACTIVE};
use crate::runtime::models::{
    ActionKind, ActionMeta, ActionPhase, ActionProgress, ActionResult, ActionStatus, ActiveAction,
    EntityState, LastAction, LastActionStatus, Pose, RobotInfo, RobotStatus, RuntimeErrorInfo, RuntimeInfo,
    RuntimeState, RuntimeStatus, SceneState, StateTimestamp,
};
use crate::RuntimeErrorCode;

/// How to build a simulated robot (the tests' shorthand for a built-in scene).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// A built-in scene id (see [`Scene::builtin_ids`]).
    pub scene_id: String,
    /// Seeds everything random in the world (object placement).
    pub seed: u64,
    /// Simulated seconds per wall-clock second (> 0).
    pub time_scale: f64,
}

#[cfg(test)]
impl Default for SimConfig {
    /// The default scene, seed 0, real time.
    fn default() -> Self {
        SimConfig {
            scene_id: super::scene::DEFAULT_SCENE_ID.to_owned(),
            seed: 0,
            time_scale: 1.0,
        }
    }
}

/// A `runtime.*` call the simulator refused: `code` and `message`. On the wire it is a guard
/// envelope ([`SimError::guard_envelope`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    /// e.g. `METHOD_NOT_FOUND`, `INVALID_INPUT`, `UNKNOWN_CAMERA`, `NO_ACTIVE_ACTION`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl SimError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> SimError {
        SimError {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// `{"status":"failed","error":{"code","message"}}`, the contract's guard envelope.
    pub fn guard_envelope(&self) -> String {
        json!({"status": "failed", "error": {"code": self.code, "message": self.message}}).to_string()
    }
}

impl From<Failure> for SimError {
    fn from(failure: Failure) -> Self {
        SimError {
            code: failure.code,
            message: failure.message,
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SimError {}

/// A rendered camera frame to send on a byte stream before the ack.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraFrame {
    /// The JPEG.
    pub jpeg: Vec<u8>,
    /// The camera (`pov`, `topdown`).
    pub camera_id: String,
    /// The stream's `request_id` attribute (the request's `stream.id`).
    pub request_id: String,
    /// The stream's topic (the request's `stream.topic`, default `menlo.camera_capture`).
    pub topic: String,
    /// The ack to reply with once the stream is sent (`result.payload.kind` = `byte_stream`).
    pub ack: String,
}

/// What to answer a `runtime.*` call with.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Reply with this JSON now.
    Json(String),
    /// A tool call started an action: reply with [`SimRobot::poll_action`]'s result once it
    /// gives one (keep advancing time).
    Running {
        /// The action to wait for.
        action_id: String,
    },
    /// Send the frame on a byte stream to the caller, then reply with its ack.
    Frame(CameraFrame),
}

/// A simulated robot answering the `runtime.*` contract.
///
/// Concurrency policy: one action at a time. While one runs, another mutating call
/// (`go_to`, `set_velocity`, `pick_entity`, `place_entity`) ends at once as a failed action
/// with code `BUSY` and leaves the running one alone; `stop` is allowed mid-action and ends
/// the running action as `CANCELLED`; reads, captures and `runtime.cancel` always answer.
#[derive(Clone, Debug)]
pub struct SimRobot {
    world: World,
    seed: u64,
    time_scale: f64,
    start_wall: Duration,
    next_action: u64,
    closed: bool,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

impl SimRobot {
    /// A robot in the built-in scene `config.scene_id`, whose simulated time 0 is `now`
    /// (wall-clock time since the Unix epoch).
    #[cfg(test)]
    pub fn new(config: &SimConfig, now: Duration) -> Result<SimRobot, SimError> {
        let scene = Scene::builtin(&config.scene_id).ok_or_else(|| {
            SimError::new(
                "UNKNOWN_SCENE",
                format!(
                    "scene_id: no scene {:?} (built in: {})",
                    config.scene_id,
                    Scene::builtin_ids().join(", ")
                ),
            )
        })?;
        SimRobot::with_scene(scene, config.seed, config.time_scale, now)
    }

    /// A robot in `scene` (e.g. from [`Scene::from_json`]).
    pub fn with_scene(scene: Scene, seed: u64, time_scale: f64, now: Duration) -> Result<SimRobot, SimError> {
        if !(time_scale.is_finite() && time_scale > 0.0 && time_scale <= 1000.0) {
            return Err(SimError::new("INVALID_INPUT", "time_scale: must be in (0, 1000]"));
        }
        scene
            .validate()
            .map_err(|e| SimError::new("INVALID_INPUT", e.to_string()))?;
        Ok(SimRobot {
            world: World::new(scene, seed),
            seed,
            time_scale,
            start_wall: now,
            next_action: 0,
            closed: false,
        })
    }

    /// The world (as of the last call).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// How long one simulation step takes in wall-clock time.
    pub fn step_wall_time(&self) -> Duration {
        Duration::from_secs_f64(STEP_S / self.time_scale)
    }

    /// Advances the world to wall-clock time `now`.
    pub fn advance(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.start_wall).as_secs_f64();
        self.world.advance_to(elapsed * self.time_scale);
    }

    fn wall_ms(&self, sim_s: f64) -> u64 {
        millis(self.start_wall) + (sim_s / self.time_scale * 1000.0).round() as u64
    }

    /// Answers `method` with `payload` (JSON text) at wall-clock time `now`.
    ///
    /// `Err` is a refusal (send it as a guard envelope). A tool call whose action runs
    /// answers [`Reply::Running`]: poll it with [`SimRobot::poll_action`].
    pub fn handle(&mut self, method: &str, payload: &str, now: Duration) -> Result<Reply, SimError> {
        if self.closed {
            return Err(SimError::new("NOT_READY", "the simulator has shut down"));
        }
        self.advance(now);
        let request = parse_payload(payload)?;
        match method {
            method::TOOLS_LIST => Ok(Reply::Json(to_json(&skills::descriptors(self.world.scene())))),
            method::TOOLS_CALL => Ok(self.tools_call(&request, now)),
            method::STATE => Ok(Reply::Json(to_json(&self.runtime_state(now)))),
            method::SCENE_STATE => Ok(Reply::Json(to_json(&self.scene_state(now)))),
            method::CAPABILITIES => Ok(Reply::Json(self.capabilities().to_string())),
            method::CANCEL => self.cancel(&request, now),
            method::CAMERAS_CAPTURE => self.capture(&request, now).map(Reply::Frame),
            method::FORWARD_ENVELOPE => forward_envelope(&request).map(Reply::Json),
            other => Err(SimError::new(
                RuntimeErrorCode::MethodNotFound.as_str(),
                format!("the simulator does not answer {other}"),
            )),
        }
    }

    /// Shuts the simulator down at `now`: the running action ends as `CANCELLED` (its waiting
    /// caller gets that result) and every later call is refused with `NOT_READY`.
    pub fn close(&mut self, now: Duration) {
        self.advance(now);
        self.world
            .abort(Failure::new(CANCELLED, "the simulator is shutting down"));
        self.closed = true;
    }

    /// Whether [`SimRobot::close`] was called.
    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The finished action's `ActionResult` JSON once `action_id` has ended (advancing to
    /// `now` first); `None` while it runs (or when it is unknown).
    pub fn poll_action(&mut self, action_id: &str, now: Duration) -> Option<String> {
        self.advance(now);
        let outcome = self.world.take_outcome(action_id)?;
        Some(to_json(&self.action_result(&outcome, now)))
    }

    fn tools_call(&mut self, request: &Map<String, Value>, now: Duration) -> Reply {
        let action_id = match request
            .get("options")
            .and_then(|o| o.get("action_id"))
            .and_then(Value::as_str)
        {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => {
                self.next_action += 1;
                format!("act_sim{:09x}", self.next_action)
            }
        };
        let name = request.get("name").and_then(Value::as_str).unwrap_or_default();
        let input = request.get("input").unwrap_or(&Value::Null);
        let outcome = match skills::parse_command(self.world.scene(), name, input) {
            Ok(command) => match self.world.start(&action_id, name, command) {
                None => return Reply::Running { action_id },
                Some(outcome) => outcome,
            },
            Err(failure) => {
                let time_s = self.world.time_s();
                let outcome = Outcome {
                    action_id: action_id.clone(),
                    name: name.to_owned(),
                    started_s: time_s,
                    finished_s: time_s,
                    result: Err(failure),
                };
                self.world.record(outcome.clone());
                outcome
            }
        };
        Reply::Json(to_json(&self.action_result(&outcome, now)))
    }

    fn cancel(&mut self, request: &Map<String, Value>, now: Duration) -> Result<Reply, SimError> {
        let wanted = request
            .get("options")
            .and_then(|o| o.get("action_id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                SimError::new(
                    "INVALID_INPUT",
                    "options.action_id: is required (an action id or \"cancel-active\")",
                )
            })?;
        let which = (wanted != CANCEL_ACTIVE).then_some(wanted);
        let outcome = self.world.cancel(which)?;
        Ok(Reply::Json(to_json(&self.action_result(&outcome, now))))
    }

    fn capture(&mut self, request: &Map<String, Value>, now: Duration) -> Result<CameraFrame, SimError> {
        let capture = CaptureRequest::parse(request)?;
        let image = camera::render(&self.world, &capture.camera_id, capture.width, capture.height)?;
        let jpeg = camera::encode_jpeg(&image, capture.quality)?;
        let ms = millis(now);
        let ack = json!({
            "status": "done",
            "result": {"payload": {"kind": "byte_stream", "camera_id": capture.camera_id,
                                   "width": capture.width, "height": capture.height,
                                   "bytes": jpeg.len(), "mime_type": "image/jpeg"}},
            "meta": {"action_id": format!("cap_{}", capture.request_id), "started_at_ms": ms,
                     "finished_at_ms": ms, "duration_ms": 0}
        });
        Ok(CameraFrame {
            jpeg,
            camera_id: capture.camera_id,
            request_id: capture.request_id,
            topic: capture.topic,
            ack: ack.to_string(),
        })
    }

    fn capabilities(&self) -> Value {
        let scene = self.world.scene();
        json!({
            "runtime": "menlo-robot-sdk simulator",
            "scene_id": scene.scene_id,
            "seed": self.seed,
            "time_scale": self.time_scale,
            "step_s": STEP_S,
            "tools": skills::SKILLS,
            "cameras": camera::CAMERAS.iter().map(|id| json!({"id": id, "format": "image/jpeg",
                "max_width": camera::MAX_SIDE, "max_height": camera::MAX_SIDE})).collect::<Vec<_>>(),
            "concurrency": {"one_action_at_a_time": true, "mutating_call_while_busy": "BUSY",
                            "stop": "ends the running action as CANCELLED"},
            "frame_transport": "byte_stream"
        })
    }

    // ---------------------------------------------------------------------------------------
    // Wire models

    fn timestamp(&self, now: Duration) -> StateTimestamp {
        StateTimestamp {
            step: Some(self.world.step_count()),
            sim_time_s: Some(self.world.time_s()),
            wall_time_ms: millis(now),
        }
    }

    fn action_result(&self, outcome: &Outcome, now: Duration) -> ActionResult {
        let started = self.wall_ms(outcome.started_s);
        let finished = self.wall_ms(outcome.finished_s);
        let (status, result, error) = match &outcome.result {
            Ok(value) => (ActionStatus::Done, Some(value.clone()), None),
            Err(failure) => (ActionStatus::Failed, None, Some(error_info(failure))),
        };
        ActionResult {
            status,
            result,
            error,
            meta: ActionMeta {
                action_id: outcome.action_id.clone(),
                started_at_ms: started,
                finished_at_ms: finished,
                duration_ms: finished.saturating_sub(started),
                degraded: None,
                note: None,
            },
            runtime_state: serde_json::to_value(self.runtime_state(now)).ok(),
            scene_state: None,
        }
    }

    /// The `runtime.state` reply (read key `robot_status`).
    pub fn runtime_state(&self, now: Duration) -> RuntimeState {
        let world = &self.world;
        let active = world.active().map(|active| ActiveAction {
            action_id: active.action_id,
            kind: ActionKind::Tool,
            name: active.name,
            started_at_ms: self.wall_ms(active.started_s),
            phase: Some(ActionPhase::Running),
            progress: Some(ActionProgress {
                current: Some(round3(active.progress.0)),
                total: Some(round3(active.progress.1)),
                unit: Some(active.progress.2.to_owned()),
            }),
        });
        let last = world.last_outcome().map(|outcome| self.last_action(outcome));
        let busy = active.is_some();
        let robot = world.robot();
        RuntimeState {
            timestamp: self.timestamp(now),
            runtime: RuntimeInfo {
                status: if busy {
                    RuntimeStatus::Busy
                } else {
                    RuntimeStatus::Ready
                },
                active_action: active,
                last_action: last,
                accepts_tool_calls: !busy,
                accepts_capture_requests: true,
            },
            robot: RobotInfo {
                entity_id: robot.entity_id.clone(),
                pose: Some(pose(robot.x, robot.y, robot.yaw)),
                status: RobotStatus::from_wire(world.robot_status()),
                held_entity_ids: Some(robot.held.clone()),
                extra: Some(json!({
                    "velocity": {"vx": robot.vx, "vy": robot.vy, "wz": robot.wz},
                    "radius_m": robot.radius_m,
                    "scene_id": world.scene().scene_id,
                })),
            },
        }
    }

    fn last_action(&self, outcome: &Outcome) -> LastAction {
        let started = self.wall_ms(outcome.started_s);
        let finished = self.wall_ms(outcome.finished_s);
        let (status, error) = match &outcome.result {
            Ok(_) => (LastActionStatus::Done, None),
            Err(failure) if failure.code == CANCELLED => {
                (LastActionStatus::Cancelled, Some(error_info(failure)))
            }
            Err(failure) => (LastActionStatus::Failed, Some(error_info(failure))),
        };
        LastAction {
            action_id: outcome.action_id.clone(),
            kind: ActionKind::Tool,
            name: outcome.name.clone(),
            status,
            started_at_ms: started,
            finished_at_ms: finished,
            duration_ms: finished.saturating_sub(started),
            error,
        }
    }

    /// The `runtime.scene_state` reply: the robot, pads, obstacles and objects.
    pub fn scene_state(&self, now: Duration) -> SceneState {
        let world = &self.world;
        let scene = world.scene();
        let mut entities = BTreeMap::new();
        let mut add = |id: &str, pose: Pose, attached_to: Option<String>, state: Value| {
            entities.insert(
                id.to_owned(),
                EntityState {
                    entity_id: id.to_owned(),
                    pose: Some(pose),
                    attached_to,
                    visible: Some(true),
                    state: Some(state),
                },
            );
        };
        let robot = world.robot();
        add(
            &robot.entity_id,
            pose(robot.x, robot.y, robot.yaw),
            None,
            json!({"kind": "robot", "status": world.robot_status(), "radius_m": robot.radius_m}),
        );
        for pad in &scene.pads {
            add(
                &pad.id,
                pose(pad.x, pad.y, 0.0),
                None,
                json!({"kind": "pad", "radius_m": pad.radius_m}),
            );
        }
        for obstacle in &scene.obstacles {
            let (x, y) = obstacle.shape.center();
            let shape = match obstacle.shape {
                Shape::Rect {
                    width_m, height_m, ..
                } => {
                    json!({"kind": "obstacle", "shape": "rect", "width_m": width_m, "height_m": height_m})
                }
                Shape::Circle { radius_m, .. } => {
                    json!({"kind": "obstacle", "shape": "circle", "radius_m": radius_m})
                }
            };
            add(&obstacle.id, pose(x, y, 0.0), None, shape);
        }
        for object in world.objects() {
            add(
                &object.id,
                pose(object.x, object.y, 0.0),
                object.held_by.clone(),
                json!({"kind": "object", "size_m": object.size_m, "held": object.held_by.is_some()}),
            );
        }
        SceneState {
            timestamp: self.timestamp(now),
            entities,
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn error_info(failure: &Failure) -> RuntimeErrorInfo {
    RuntimeErrorInfo {
        code: RuntimeErrorCode::from_wire(&failure.code),
        message: failure.message.clone(),
        details: None,
    }
}

fn pose(x: f64, y: f64, yaw: f64) -> Pose {
    let half = yaw / 2.0;
    Pose {
        frame_id: "world".to_owned(),
        position: [x, y, 0.0],
        orientation_xyzw: Some([0.0, 0.0, half.sin(), half.cos()]),
        yaw_deg: Some(yaw.to_degrees()),
    }
}

fn parse_payload(payload: &str) -> Result<Map<String, Value>, SimError> {
    if payload.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(payload) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(Value::Null) => Ok(Map::new()),
        _ => Err(SimError::new("INVALID_INPUT", "payload: must be a JSON object")),
    }
}

fn forward_envelope(request: &Map<String, Value>) -> Result<String, SimError> {
    let text = request
        .get("envelope")
        .and_then(Value::as_str)
        .ok_or_else(|| SimError::new("INVALID_INPUT", "envelope: is required (base64 text)"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| SimError::new("INVALID_INPUT", "envelope: is not valid base64"))?;
    Ok(json!({"status": "accepted", "bytes": bytes.len(), "envelope": text}).to_string())
}
