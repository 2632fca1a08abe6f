//! Runtime-plane wire models (CONTRACT §8): action results, events, tools, runtime and scene state.
//!
//! Replies tolerate fields this SDK does not know and enum values it has not seen yet (kept
//! as `Other`). Optional fields may be absent or `null`; required ones stay required.
//! Millisecond timestamps accept integers or floats (a browser runtime may send either).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::open_enum::open_enum;
use crate::runtime_error::RuntimeErrorCode;

open_enum! {
    /// How an action ended.
    pub enum ActionStatus {
        /// The action completed.
        Done = "done",
        /// The action failed (a normal outcome, e.g. `NAVIGATION_STUCK` or `CANCELLED`).
        Failed = "failed",
    }
}

open_enum! {
    /// The phase of an action, as reported in events and the active action.
    pub enum ActionPhase {
        /// The runtime accepted the action.
        Accepted = "accepted",
        /// The action is running.
        Running = "running",
        /// The action completed.
        Done = "done",
        /// The action failed.
        Failed = "failed",
        /// The action was cancelled.
        Cancelled = "cancelled",
    }
}

open_enum! {
    /// Whether the runtime can take work.
    pub enum RuntimeStatus {
        /// Idle and accepting actions.
        Ready = "ready",
        /// Busy with an action.
        Busy = "busy",
        /// In an error state.
        Error = "error",
    }
}

open_enum! {
    /// What the robot body is doing.
    pub enum RobotStatus {
        /// Idle.
        Ready = "ready",
        /// Moving.
        Moving = "moving",
        /// Holding an object.
        Holding = "holding",
        /// Fallen over.
        Fallen = "fallen",
        /// In an error state.
        Error = "error",
        /// The runtime does not know.
        Unknown = "unknown",
    }
}

open_enum! {
    /// The kind of an action run by the runtime.
    pub enum ActionKind {
        /// A tool (skill) call.
        Tool = "tool",
        /// A camera capture.
        Capture = "capture",
        /// A sensor read.
        Sensor = "sensor",
        /// A state snapshot.
        Snapshot = "snapshot",
        /// A reset.
        Reset = "reset",
    }
}

open_enum! {
    /// How the last finished action ended.
    pub enum LastActionStatus {
        /// Completed.
        Done = "done",
        /// Failed.
        Failed = "failed",
        /// Cancelled.
        Cancelled = "cancelled",
    }
}

/// An error reported by the runtime (`RuntimeError` on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuntimeErrorInfo {
    /// Machine-readable code, e.g. [`RuntimeErrorCode::NavigationStuck`].
    pub code: RuntimeErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Extra details, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl RuntimeErrorInfo {
    /// An error with this code and message and no details.
    pub fn new(code: RuntimeErrorCode, message: impl Into<String>) -> Self {
        RuntimeErrorInfo {
            code,
            message: message.into(),
            details: None,
        }
    }
}

/// Bookkeeping of one action: its id and timing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActionMeta {
    /// The action id (`act_<12 hex>`).
    pub action_id: String,
    /// When the action started, ms since the Unix epoch (0 when unknown).
    #[serde(deserialize_with = "de_ms")]
    pub started_at_ms: u64,
    /// When the action finished, ms since the Unix epoch (0 when unknown).
    #[serde(deserialize_with = "de_ms")]
    pub finished_at_ms: u64,
    /// How long it ran, ms.
    #[serde(deserialize_with = "de_ms")]
    pub duration_ms: u64,
    /// True when the runtime ran the action in a degraded mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
    /// A free-form note from the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ActionMeta {
    /// Timing of action `action_id` with every timestamp zero (set the fields you know).
    pub fn new(action_id: impl Into<String>) -> Self {
        ActionMeta {
            action_id: action_id.into(),
            started_at_ms: 0,
            finished_at_ms: 0,
            duration_ms: 0,
            degraded: None,
            note: None,
        }
    }
}

/// The terminal outcome of an action (`invoke`, `cancel`, capture acks).
///
/// A failed result is a normal outcome, not an error: look at [`ActionResult::error`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActionResult {
    /// `done` or `failed`.
    pub status: ActionStatus,
    /// The tool's output, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the action failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RuntimeErrorInfo>,
    /// Action id and timing.
    pub meta: ActionMeta,
    /// The runtime state after the action, as sent (see [`ActionResult::typed_runtime_state`]).
    ///
    /// Kept raw so that an odd state never makes the outcome of an executed action unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_state: Option<Value>,
    /// The scene state after the action, as sent (see [`ActionResult::typed_scene_state`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene_state: Option<Value>,
}

impl ActionResult {
    /// True when the action completed.
    pub fn is_done(&self) -> bool {
        self.status == ActionStatus::Done
    }

    /// True when the action was cancelled (failed with code `CANCELLED`).
    pub fn is_cancelled(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|error| error.code == RuntimeErrorCode::Cancelled)
    }

    /// A completed action with this result value (timestamps zero: set `meta` as needed).
    pub fn done(action_id: impl Into<String>, result: Value) -> Self {
        ActionResult {
            status: ActionStatus::Done,
            result: Some(result),
            error: None,
            meta: ActionMeta::new(action_id),
            runtime_state: None,
            scene_state: None,
        }
    }

    /// A failed action with this error code and message (timestamps zero).
    pub fn failed(action_id: impl Into<String>, code: RuntimeErrorCode, message: impl Into<String>) -> Self {
        Self::failed_with(action_id, RuntimeErrorInfo::new(code, message))
    }

    /// A failed action with this error (timestamps zero).
    pub fn failed_with(action_id: impl Into<String>, error: RuntimeErrorInfo) -> Self {
        ActionResult {
            status: ActionStatus::Failed,
            result: None,
            error: Some(error),
            meta: ActionMeta::new(action_id),
            runtime_state: None,
            scene_state: None,
        }
    }

    /// [`ActionResult::runtime_state`] decoded; `None` when absent.
    pub fn typed_runtime_state(&self) -> Option<crate::Result<RuntimeState>> {
        self.runtime_state.as_ref().map(|value| {
            RuntimeState::deserialize(value)
                .map_err(|err| crate::Error::decode("ActionResult.runtime_state", &err))
        })
    }

    /// [`ActionResult::scene_state`] decoded; `None` when absent.
    pub fn typed_scene_state(&self) -> Option<crate::Result<SceneState>> {
        self.scene_state.as_ref().map(|value| {
            SceneState::deserialize(value)
                .map_err(|err| crate::Error::decode("ActionResult.scene_state", &err))
        })
    }
}

/// What an action-result callback receives: the terminal event of one action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuntimeEvent {
    /// The action id.
    pub action_id: String,
    /// The phase reached.
    pub phase: ActionPhase,
    /// When, ms since the Unix epoch.
    #[serde(deserialize_with = "de_ms")]
    pub at_ms: u64,
    /// The terminal result, for terminal phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ActionResult>,
}

impl RuntimeEvent {
    /// The terminal event of `result`: phase `cancelled` when the error code is `CANCELLED`,
    /// else `done`/`failed` from the status (an unknown status is kept as `Other`);
    /// `at_ms` is the finish time.
    pub fn from_result(result: &ActionResult) -> Self {
        let phase = if result.is_cancelled() {
            ActionPhase::Cancelled
        } else {
            match &result.status {
                ActionStatus::Done => ActionPhase::Done,
                ActionStatus::Failed => ActionPhase::Failed,
                other => ActionPhase::from_wire(other.as_str()),
            }
        };
        RuntimeEvent {
            action_id: result.meta.action_id.clone(),
            phase,
            at_ms: result.meta.finished_at_ms,
            result: Some(result.clone()),
        }
    }
}

/// What a tool touches, to help planners schedule calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolUses {
    /// Camera ids used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cameras: Option<Vec<String>>,
    /// Sensor ids used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensors: Option<Vec<String>>,
    /// Other tools called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// Hints about a tool's behaviour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolAnnotations {
    /// True when the tool changes the world or the robot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutating: Option<bool>,
    /// True when the tool is costly to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expensive: Option<bool>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// What the tool touches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<ToolUses>,
    /// True when the tool may be called while another action runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_mid_action: Option<bool>,
}

/// The expected cost of a tool call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCost {
    /// Typical duration, ms.
    #[serde(
        default,
        deserialize_with = "de_opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub estimated_ms: Option<u64>,
    /// Shortest sensible interval between calls, ms.
    #[serde(
        default,
        deserialize_with = "de_opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub recommended_min_interval_ms: Option<u64>,
    /// True when the call may block the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_block_runtime: Option<bool>,
    /// True when the call is CPU-heavy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_heavy: Option<bool>,
    /// True when the call is GPU-heavy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_heavy: Option<bool>,
    /// True when the reply may be large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_payload: Option<bool>,
    /// True when the call may run during another action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_mid_action: Option<bool>,
}

/// One tool (skill) the runtime offers, as listed by `runtime.tools_list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolDescriptor {
    /// The tool name to pass to `invoke`, e.g. `go_to`.
    pub name: String,
    /// A display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does.
    pub description: String,
    /// JSON Schema of the input object.
    pub input_schema: Value,
    /// JSON Schema of the output, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Behaviour hints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<ToolAnnotations>,
    /// Expected cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<ToolCost>,
}

impl ToolDescriptor {
    /// A tool with a name, a description and a JSON Schema for its input.
    pub fn new(name: impl Into<String>, description: impl Into<String>, input_schema: Value) -> Self {
        ToolDescriptor {
            name: name.into(),
            title: None,
            description: description.into(),
            input_schema,
            output_schema: None,
            annotations: None,
            cost: None,
        }
    }
}

/// When a state snapshot was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StateTimestamp {
    /// Simulation step, if simulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// Simulation time, seconds, if simulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_time_s: Option<f64>,
    /// Wall-clock time, ms since the Unix epoch.
    #[serde(deserialize_with = "de_ms")]
    pub wall_time_ms: u64,
}

impl StateTimestamp {
    /// A timestamp at this wall-clock time (ms since the Unix epoch), without step or sim time.
    pub fn new(wall_time_ms: u64) -> Self {
        StateTimestamp {
            step: None,
            sim_time_s: None,
            wall_time_ms,
        }
    }
}

/// Progress of a running action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActionProgress {
    /// Work done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    /// Total work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// Unit of `current` and `total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The action the runtime is running now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActiveAction {
    /// The action id.
    pub action_id: String,
    /// The action kind.
    pub kind: ActionKind,
    /// The tool (or capture/sensor) name.
    pub name: String,
    /// When it started, ms since the Unix epoch.
    #[serde(deserialize_with = "de_ms")]
    pub started_at_ms: u64,
    /// Its phase, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ActionPhase>,
    /// Its progress, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ActionProgress>,
}

/// The last action the runtime finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LastAction {
    /// The action id.
    pub action_id: String,
    /// The action kind.
    pub kind: ActionKind,
    /// The tool (or capture/sensor) name.
    pub name: String,
    /// How it ended.
    pub status: LastActionStatus,
    /// When it started, ms since the Unix epoch.
    #[serde(deserialize_with = "de_ms")]
    pub started_at_ms: u64,
    /// When it finished, ms since the Unix epoch.
    #[serde(deserialize_with = "de_ms")]
    pub finished_at_ms: u64,
    /// How long it ran, ms.
    #[serde(deserialize_with = "de_ms")]
    pub duration_ms: u64,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RuntimeErrorInfo>,
}

/// The runtime half of [`RuntimeState`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuntimeInfo {
    /// Whether the runtime can take work.
    pub status: RuntimeStatus,
    /// The action running now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_action: Option<ActiveAction>,
    /// The last finished action, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<LastAction>,
    /// True when `runtime.tools_call` would be accepted now.
    pub accepts_tool_calls: bool,
    /// True when `runtime.cameras_capture` would be accepted now.
    pub accepts_capture_requests: bool,
}

impl RuntimeInfo {
    /// A runtime in `status`, with no active or last action.
    pub fn new(status: RuntimeStatus, accepts_tool_calls: bool, accepts_capture_requests: bool) -> Self {
        RuntimeInfo {
            status,
            active_action: None,
            last_action: None,
            accepts_tool_calls,
            accepts_capture_requests,
        }
    }
}

/// A position and orientation in a named frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pose {
    /// The reference frame, e.g. `world`.
    pub frame_id: String,
    /// Position `[x, y, z]`, metres.
    pub position: [f64; 3],
    /// Orientation quaternion `[x, y, z, w]`, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation_xyzw: Option<[f64; 4]>,
    /// Heading, degrees, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaw_deg: Option<f64>,
}

impl Pose {
    /// A position in `frame_id`, without orientation.
    pub fn new(frame_id: impl Into<String>, position: [f64; 3]) -> Self {
        Pose {
            frame_id: frame_id.into(),
            position,
            orientation_xyzw: None,
            yaw_deg: None,
        }
    }
}

/// The robot half of [`RuntimeState`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RobotInfo {
    /// The robot's entity id in the scene.
    pub entity_id: String,
    /// Where the robot is, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<Pose>,
    /// What the robot is doing.
    pub status: RobotStatus,
    /// Entities the robot holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_entity_ids: Option<Vec<String>>,
    /// Runtime-specific extras.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl RobotInfo {
    /// The robot entity `entity_id` in `status`, with no pose or extras.
    pub fn new(entity_id: impl Into<String>, status: RobotStatus) -> Self {
        RobotInfo {
            entity_id: entity_id.into(),
            pose: None,
            status,
            held_entity_ids: None,
            extra: None,
        }
    }
}

/// The runtime's and robot's state (read key `robot_status`, method `runtime.state`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuntimeState {
    /// When the snapshot was taken.
    pub timestamp: StateTimestamp,
    /// The runtime.
    pub runtime: RuntimeInfo,
    /// The robot.
    pub robot: RobotInfo,
}

impl RuntimeState {
    /// A `runtime.state` reply.
    pub fn new(timestamp: StateTimestamp, runtime: RuntimeInfo, robot: RobotInfo) -> Self {
        RuntimeState {
            timestamp,
            runtime,
            robot,
        }
    }
}

/// One entity of the scene.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EntityState {
    /// The entity id.
    pub entity_id: String,
    /// Where it is, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<Pose>,
    /// The entity it is attached to (e.g. the robot holding it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<String>,
    /// Whether it is visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    /// Entity-specific state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

impl EntityState {
    /// The entity `entity_id` with nothing else known.
    pub fn new(entity_id: impl Into<String>) -> Self {
        EntityState {
            entity_id: entity_id.into(),
            pose: None,
            attached_to: None,
            visible: None,
            state: None,
        }
    }
}

/// The scene (read key `scene_state`, method `runtime.scene_state`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SceneState {
    /// When the snapshot was taken.
    pub timestamp: StateTimestamp,
    /// Entities by id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub entities: BTreeMap<String, EntityState>,
}

impl SceneState {
    /// A `runtime.scene_state` reply with no entities (insert them into `entities`).
    pub fn new(timestamp: StateTimestamp) -> Self {
        SceneState {
            timestamp,
            entities: BTreeMap::new(),
        }
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Milliseconds as any JSON number: integers as is, floats rounded, negatives clamped to 0.
fn number_to_ms<E: serde::de::Error>(value: Value) -> Result<u64, E> {
    match value {
        Value::Number(number) => {
            if let Some(ms) = number.as_u64() {
                Ok(ms)
            } else if number.as_i64().is_some() {
                Ok(0)
            } else {
                let ms = number.as_f64().unwrap_or(0.0);
                // `as` saturates: NaN → 0, negative → 0, huge → u64::MAX.
                Ok(ms.round() as u64)
            }
        }
        _ => Err(E::custom("expected a number of milliseconds")),
    }
}

fn de_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    number_to_ms(Value::deserialize(deserializer)?)
}

fn de_opt_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        value => number_to_ms(value).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn done_result() -> Value {
        json!({
            "status": "done",
            "result": {"reached": true},
            "meta": {"action_id": "act_0123456789ab", "started_at_ms": 1000, "finished_at_ms": 3500.4, "duration_ms": 2500, "extra": 1},
            "future_field": [1, 2]
        })
    }

    #[test]
    fn action_result_decodes_and_tolerates_unknown_fields() {
        let result: ActionResult = serde_json::from_value(done_result()).unwrap();
        assert!(result.is_done());
        assert_eq!(result.meta.finished_at_ms, 3500);
        assert_eq!(result.result, Some(json!({"reached": true})));
        assert!(result.error.is_none() && result.runtime_state.is_none());
        let back = serde_json::to_value(&result).unwrap();
        assert_eq!(serde_json::from_value::<ActionResult>(back).unwrap(), result);
    }

    #[test]
    fn action_result_requires_meta_and_status() {
        let mut value = done_result();
        value.as_object_mut().unwrap().remove("meta");
        assert!(serde_json::from_value::<ActionResult>(value).is_err());
        let mut value = done_result();
        value.as_object_mut().unwrap().remove("status");
        assert!(serde_json::from_value::<ActionResult>(value).is_err());
    }

    #[test]
    fn unknown_enum_values_are_kept() {
        let mut value = done_result();
        value["status"] = json!("partially_done");
        let result: ActionResult = serde_json::from_value(value).unwrap();
        assert_eq!(result.status, ActionStatus::Other("partially_done".into()));
        let event = RuntimeEvent::from_result(&result);
        assert_eq!(event.phase, ActionPhase::Other("partially_done".into()));
        assert_eq!(RobotStatus::from_wire("levitating").as_str(), "levitating");
    }

    #[test]
    fn event_from_result_phases() {
        let result: ActionResult = serde_json::from_value(done_result()).unwrap();
        let event = RuntimeEvent::from_result(&result);
        assert_eq!(event.phase, ActionPhase::Done);
        assert_eq!(event.at_ms, 3500);
        assert_eq!(event.action_id, "act_0123456789ab");
        assert_eq!(event.result.as_ref(), Some(&result));

        let failed = |code: &str| ActionResult::failed("act_1", RuntimeErrorCode::from_wire(code), "m");
        assert_eq!(
            RuntimeEvent::from_result(&failed("CANCELLED")).phase,
            ActionPhase::Cancelled
        );
        assert_eq!(
            RuntimeEvent::from_result(&failed("NAVIGATION_STUCK")).phase,
            ActionPhase::Failed
        );
        assert!(failed("CANCELLED").is_cancelled());
        assert_eq!(RuntimeEvent::from_result(&failed("X")).at_ms, 0);
    }

    fn runtime_state() -> Value {
        json!({
            "timestamp": {"step": 12, "sim_time_s": 0.4, "wall_time_ms": 1700000000000u64},
            "runtime": {
                "status": "busy",
                "active_action": {"action_id": "act_a", "kind": "tool", "name": "go_to", "started_at_ms": 5,
                                  "phase": "running", "progress": {"current": 1, "total": 3, "unit": "waypoints"}},
                "last_action": {"action_id": "act_b", "kind": "capture", "name": "pov", "status": "cancelled",
                                "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1,
                                "error": {"code": "CANCELLED", "message": "cancelled"}},
                "accepts_tool_calls": false,
                "accepts_capture_requests": true
            },
            "robot": {"entity_id": "robot_0", "pose": {"frame_id": "world", "position": [1.0, 2.0, 0.0],
                      "orientation_xyzw": [0, 0, 0, 1], "yaw_deg": 90}, "status": "moving",
                      "held_entity_ids": ["cube_1"], "extra": {"battery": 0.9}}
        })
    }

    #[test]
    fn runtime_state_decodes() {
        let state: RuntimeState = serde_json::from_value(runtime_state()).unwrap();
        assert_eq!(state.runtime.status, RuntimeStatus::Busy);
        let active = state.runtime.active_action.as_ref().unwrap();
        assert_eq!(active.kind, ActionKind::Tool);
        assert_eq!(active.phase, Some(ActionPhase::Running));
        assert_eq!(
            state.runtime.last_action.as_ref().unwrap().status,
            LastActionStatus::Cancelled
        );
        assert_eq!(state.robot.status, RobotStatus::Moving);
        assert_eq!(state.robot.pose.as_ref().unwrap().position, [1.0, 2.0, 0.0]);
        assert_eq!(state.timestamp.step, Some(12));
    }

    #[test]
    fn runtime_state_minimal_and_unknown_values() {
        let value = json!({
            "timestamp": {"wall_time_ms": 1},
            "runtime": {"status": "rebooting", "active_action": null, "accepts_tool_calls": true, "accepts_capture_requests": true},
            "robot": {"entity_id": "r", "status": "swimming", "pose": null}
        });
        let state: RuntimeState = serde_json::from_value(value).unwrap();
        assert_eq!(state.runtime.status, RuntimeStatus::Other("rebooting".into()));
        assert_eq!(state.robot.status, RobotStatus::Other("swimming".into()));
        assert!(state.robot.pose.is_none());

        let mut missing = runtime_state();
        missing["runtime"]
            .as_object_mut()
            .unwrap()
            .remove("accepts_tool_calls");
        assert!(serde_json::from_value::<RuntimeState>(missing).is_err());
    }

    #[test]
    fn action_result_typed_states() {
        let mut value = done_result();
        value["runtime_state"] = runtime_state();
        value["scene_state"] = json!({"timestamp": {"wall_time_ms": 3}, "entities": null});
        let result: ActionResult = serde_json::from_value(value).unwrap();
        assert!(result.typed_runtime_state().unwrap().is_ok());
        assert!(result.typed_scene_state().unwrap().unwrap().entities.is_empty());

        let mut odd = done_result();
        odd["runtime_state"] = json!({"secret": "tok_123"});
        let result: ActionResult = serde_json::from_value(odd).unwrap();
        assert!(result.typed_runtime_state().unwrap().is_err());
    }

    #[test]
    fn scene_state_decodes() {
        let scene: SceneState = serde_json::from_value(json!({
            "timestamp": {"wall_time_ms": 10},
            "entities": {"pad_B": {"entity_id": "pad_B", "pose": {"frame_id": "world", "position": [0, 0, 0]},
                                   "visible": true, "attached_to": null, "state": {"lit": true}}}
        }))
        .unwrap();
        assert_eq!(scene.entities["pad_B"].visible, Some(true));
        assert!(
            serde_json::from_value::<SceneState>(json!({"timestamp": {"wall_time_ms": 1}}))
                .unwrap()
                .entities
                .is_empty()
        );
    }

    #[test]
    fn tool_descriptor_decodes() {
        let tool: ToolDescriptor = serde_json::from_value(json!({
            "name": "go_to", "description": "Walk to a target", "input_schema": {"type": "object"},
            "annotations": {"mutating": true, "tags": ["nav"], "uses": {"cameras": ["pov"]}, "new_hint": 1},
            "cost": {"estimated_ms": 1500.0, "may_block_runtime": false}
        }))
        .unwrap();
        assert_eq!(
            tool.annotations.as_ref().unwrap().uses.as_ref().unwrap().cameras,
            Some(vec!["pov".to_owned()])
        );
        assert_eq!(tool.cost.as_ref().unwrap().estimated_ms, Some(1500));
        assert!(
            serde_json::from_value::<ToolDescriptor>(json!({"description": "x", "input_schema": {}}))
                .is_err()
        );
    }

    #[test]
    fn millis_accept_odd_numbers() {
        let meta: ActionMeta = serde_json::from_value(json!({
            "action_id": "a", "started_at_ms": -5, "finished_at_ms": 1e3, "duration_ms": 2.6
        }))
        .unwrap();
        assert_eq!(
            (meta.started_at_ms, meta.finished_at_ms, meta.duration_ms),
            (0, 1000, 3)
        );
        assert!(serde_json::from_value::<ActionMeta>(json!({
            "action_id": "a", "started_at_ms": "1", "finished_at_ms": 1, "duration_ms": 1
        }))
        .is_err());
    }
}
