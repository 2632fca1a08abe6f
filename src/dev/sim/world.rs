//! The simulated world: a robot, objects and the one action it runs, stepped on a fixed
//! simulation step. Pure and deterministic: no threads, no clock (time is passed in), no
//! randomness but the seed's.

use std::collections::VecDeque;
use std::f64::consts::PI;

use serde_json::{json, Value};

use super::plan::{is_clear, path_length, Grid, Point};
use super::scene::{parse_color, Scene};

/// The fixed simulation step, seconds of simulated time.
pub const STEP_S: f64 = 0.02;

/// How far beyond its body the robot reaches to pick or place, metres.
pub const REACH_M: f64 = 0.45;

/// Extra distance the planner keeps from obstacles, beyond the robot's radius, metres.
pub const PLAN_MARGIN_M: f64 = 0.1;

/// How long a pick or a place takes, simulated seconds.
pub const HANDLING_S: f64 = 0.5;

/// Longest `set_velocity` duration, seconds.
pub const MAX_DURATION_S: f64 = 600.0;

/// How close to its goal `go_to` must get, metres.
const POSITION_TOLERANCE_M: f64 = 0.03;
/// How close to its final heading `go_to` must get, radians.
const YAW_TOLERANCE_RAD: f64 = 0.5 * PI / 180.0;
/// Intermediate waypoints count as passed within this distance.
const WAYPOINT_RADIUS_M: f64 = 0.15;
/// Heading error beyond which `go_to` turns in place.
const TURN_IN_PLACE_RAD: f64 = 0.5;
/// Finished outcomes kept for late readers.
const KEPT_OUTCOMES: usize = 64;

/// Why an action failed: a machine-readable code and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// e.g. `NAVIGATION_STUCK`, `INVALID_INPUT`, `CANCELLED`.
    pub code: String,
    /// Human-readable; names the offending field for bad input.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Where `go_to` goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A pad (its centre) or an object (a spot next to it).
    Entity(String),
    /// A point on the floor, optionally with a final heading in degrees.
    Pose {
        /// `x`, metres.
        x: f64,
        /// `y`, metres.
        y: f64,
        /// Final heading, degrees.
        yaw_deg: Option<f64>,
    },
}

/// A validated skill call.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Plan a path and follow it.
    GoTo(Target),
    /// Drive with a body-frame velocity for a while.
    SetVelocity {
        /// Forward, m/s.
        vx: f64,
        /// Leftward, m/s.
        vy: f64,
        /// Turn rate, rad/s (counter-clockwise).
        wz: f64,
        /// How long, seconds.
        duration_s: f64,
    },
    /// End the active action (as `CANCELLED`) and stand still.
    Stop,
    /// Pick an object within reach.
    Pick {
        /// The object.
        entity_id: String,
    },
    /// Put a held object down: on a pad within reach, or in front of the robot.
    Place {
        /// The held object (the only one held when `None`).
        entity_id: Option<String>,
        /// A pad to put it on.
        on: Option<String>,
    },
}

/// How an action ended, in simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The caller's action id.
    pub action_id: String,
    /// The skill's name.
    pub name: String,
    /// Start, simulated seconds.
    pub started_s: f64,
    /// End, simulated seconds.
    pub finished_s: f64,
    /// The skill's output, or why it failed.
    pub result: Result<Value, Failure>,
}

/// The running action, as reported in state.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveInfo {
    /// The caller's action id.
    pub action_id: String,
    /// The skill's name.
    pub name: String,
    /// Start, simulated seconds.
    pub started_s: f64,
    /// `(current, total, unit)`.
    pub progress: (f64, f64, &'static str),
}

/// The robot's body state.
#[derive(Clone, Debug, PartialEq)]
pub struct Robot {
    /// Entity id.
    pub entity_id: String,
    /// Position `x`, metres.
    pub x: f64,
    /// Position `y`, metres.
    pub y: f64,
    /// Heading, radians, in `(-π, π]`.
    pub yaw: f64,
    /// World-frame velocity `x`, m/s.
    pub vx: f64,
    /// World-frame velocity `y`, m/s.
    pub vy: f64,
    /// Turn rate, rad/s.
    pub wz: f64,
    /// Held objects.
    pub held: Vec<String>,
    /// Body radius, metres.
    pub radius_m: f64,
}

/// A pickable object's state.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectState {
    /// Entity id.
    pub id: String,
    /// Centre `x` (the robot's when held).
    pub x: f64,
    /// Centre `y`.
    pub y: f64,
    /// Edge length.
    pub size_m: f64,
    /// RGB.
    pub color: [u8; 3],
    /// The robot holding it.
    pub held_by: Option<String>,
}

#[derive(Clone, Debug)]
enum Motion {
    GoTo {
        path: Vec<Point>,
        next: usize,
        final_yaw: Option<f64>,
        target: Value,
        travelled: f64,
        total: f64,
        deadline_s: f64,
    },
    Velocity {
        body: (f64, f64, f64),
        ends_s: f64,
        duration_s: f64,
    },
    Pick {
        entity_id: String,
        ends_s: f64,
    },
    Place {
        entity_id: String,
        at: Point,
        on: Option<String>,
        ends_s: f64,
    },
}

#[derive(Clone, Debug)]
struct Active {
    action_id: String,
    name: String,
    started_s: f64,
    motion: Motion,
}

/// The world: scene, robot, objects, the active action and recent outcomes.
#[derive(Clone, Debug)]
pub struct World {
    scene: Scene,
    grid: Grid,
    step: u64,
    robot: Robot,
    objects: Vec<ObjectState>,
    active: Option<Active>,
    last: Option<Outcome>,
    finished: VecDeque<Outcome>,
}

/// SplitMix64: a tiny, well-known PRNG whose sequence never changes between versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    fn symmetric(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// The default colour of the `i`-th object.
fn object_palette(i: usize) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 4] = [[231, 76, 60], [241, 196, 15], [26, 188, 156], [155, 89, 182]];
    PALETTE[i % PALETTE.len()]
}

/// `angle` wrapped to `(-π, π]`.
pub fn wrap_angle(angle: f64) -> f64 {
    let a = angle.rem_euclid(2.0 * PI);
    if a > PI {
        a - 2.0 * PI
    } else {
        a
    }
}

impl World {
    /// A world at time 0 laid out from `scene`; `seed` places the objects within the scene's
    /// `object_jitter_m`.
    pub fn new(scene: Scene, seed: u64) -> World {
        let mut rng = SplitMix64(seed);
        let objects = scene
            .objects
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let jitter = scene.object_jitter_m;
                let (dx, dy) = (rng.symmetric() * jitter, rng.symmetric() * jitter);
                let (mut x, mut y) = (spec.x + dx, spec.y + dy);
                if !is_clear(&scene, x, y, spec.size_m / 2.0) {
                    (x, y) = (spec.x, spec.y);
                }
                ObjectState {
                    id: spec.id.clone(),
                    x,
                    y,
                    size_m: spec.size_m,
                    color: spec
                        .color
                        .as_deref()
                        .and_then(parse_color)
                        .unwrap_or_else(|| object_palette(i)),
                    held_by: None,
                }
            })
            .collect();
        let spec = &scene.robot;
        let robot = Robot {
            entity_id: spec.entity_id.clone(),
            x: spec.x,
            y: spec.y,
            yaw: wrap_angle(spec.yaw_deg.to_radians()),
            vx: 0.0,
            vy: 0.0,
            wz: 0.0,
            held: Vec::new(),
            radius_m: spec.radius_m,
        };
        let grid = Grid::build(&scene, spec.radius_m, spec.radius_m + PLAN_MARGIN_M);
        World {
            scene,
            grid,
            step: 0,
            robot,
            objects,
            active: None,
            last: None,
            finished: VecDeque::new(),
        }
    }

    /// The scene the world was built from.
    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    /// Simulated time, seconds.
    pub fn time_s(&self) -> f64 {
        self.step as f64 * STEP_S
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The robot.
    pub fn robot(&self) -> &Robot {
        &self.robot
    }

    /// The pickable objects.
    pub fn objects(&self) -> &[ObjectState] {
        &self.objects
    }

    /// The robot's status on the wire: `moving`, `holding` or `ready`.
    pub fn robot_status(&self) -> &'static str {
        let moving = self
            .active
            .as_ref()
            .is_some_and(|a| matches!(a.motion, Motion::GoTo { .. } | Motion::Velocity { .. }));
        if moving {
            "moving"
        } else if self.robot.held.is_empty() {
            "ready"
        } else {
            "holding"
        }
    }

    /// The running action, if any.
    pub fn active(&self) -> Option<ActiveInfo> {
        let active = self.active.as_ref()?;
        let now = self.time_s();
        let progress = match &active.motion {
            Motion::GoTo { travelled, total, .. } => (*travelled, *total, "m"),
            Motion::Velocity {
                ends_s, duration_s, ..
            } => (duration_s - (ends_s - now).max(0.0), *duration_s, "s"),
            Motion::Pick { ends_s, .. } | Motion::Place { ends_s, .. } => {
                (HANDLING_S - (ends_s - now).max(0.0), HANDLING_S, "s")
            }
        };
        Some(ActiveInfo {
            action_id: active.action_id.clone(),
            name: active.name.clone(),
            started_s: active.started_s,
            progress,
        })
    }

    /// The last finished action.
    pub fn last_outcome(&self) -> Option<&Outcome> {
        self.last.as_ref()
    }

    /// The part of the current `go_to` path still ahead (starting at the robot), if any.
    pub fn remaining_path(&self) -> Vec<Point> {
        match self.active.as_ref().map(|a| &a.motion) {
            Some(Motion::GoTo { path, next, .. }) => std::iter::once((self.robot.x, self.robot.y))
                .chain(path[*next..].iter().copied())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Removes and returns the outcome of `action_id` once it has finished.
    pub fn take_outcome(&mut self, action_id: &str) -> Option<Outcome> {
        let at = self.finished.iter().position(|o| o.action_id == action_id)?;
        self.finished.remove(at)
    }

    /// Whether an action runs now.
    #[cfg(test)]
    pub fn is_busy(&self) -> bool {
        self.active.is_some()
    }

    /// Starts `command` as action `action_id` of skill `name`.
    ///
    /// Returns the outcome when the action ended at once (`stop`, a refusal, bad input);
    /// `None` when it runs: step the world and [`World::take_outcome`] it later.
    /// While an action runs, every command but `stop` fails with `BUSY` (the running action
    /// goes on); `stop` ends it as `CANCELLED`.
    pub fn start(&mut self, action_id: &str, name: &str, command: Command) -> Option<Outcome> {
        let now = self.time_s();
        let result = if command == Command::Stop {
            let stopped = self.finish_active(Err(Failure::new(
                super::CANCELLED,
                format!("stopped by `{name}` ({action_id})"),
            )));
            Ok(json!({ "stopped_action_id": stopped }))
        } else if let Some(active) = &self.active {
            Err(Failure::new(
                "BUSY",
                format!(
                    "action {} ({}) is running; wait for it, cancel it or call `stop`",
                    active.action_id, active.name
                ),
            ))
        } else {
            match self.plan_motion(command) {
                Ok(motion) => {
                    self.active = Some(Active {
                        action_id: action_id.to_owned(),
                        name: name.to_owned(),
                        started_s: now,
                        motion,
                    });
                    return None;
                }
                Err(failure) => Err(failure),
            }
        };
        let outcome = Outcome {
            action_id: action_id.to_owned(),
            name: name.to_owned(),
            started_s: now,
            finished_s: now,
            result,
        };
        self.record(outcome.clone());
        Some(outcome)
    }

    /// Cancels the active action (`Some(id)`: only if it is that one). Returns its outcome,
    /// failed with `CANCELLED`.
    pub fn cancel(&mut self, action_id: Option<&str>) -> Result<Outcome, Failure> {
        let Some(active) = &self.active else {
            return Err(Failure::new("NO_ACTIVE_ACTION", "no action is running"));
        };
        if let Some(id) = action_id {
            if id != active.action_id {
                return Err(Failure::new(
                    "ACTION_NOT_FOUND",
                    format!(
                        "action {id} is not running (the running one is {})",
                        active.action_id
                    ),
                ));
            }
        }
        let id = active.action_id.clone();
        self.finish_active(Err(Failure::new(super::CANCELLED, "cancelled by the caller")));
        self.finished
            .iter()
            .rev()
            .find(|o| o.action_id == id)
            .cloned()
            .ok_or_else(|| Failure::new("RUNTIME_FAILED", "the cancelled action vanished"))
    }

    /// Ends the active action, if any, with `failure`; returns its id.
    pub fn abort(&mut self, failure: Failure) -> Option<String> {
        self.finish_active(Err(failure))
    }

    /// Runs the fixed steps needed to reach simulated time `time_s` (never goes back).
    pub fn advance_to(&mut self, time_s: f64) {
        let target = (time_s / STEP_S + 1e-9).floor();
        if !(target.is_finite() && target > self.step as f64) {
            return;
        }
        let target = target.min(u64::MAX as f64 / 2.0) as u64;
        while self.step < target {
            if self.active.is_none() {
                // An idle world does not change: jump.
                self.step = target;
                break;
            }
            self.step_once();
        }
    }

    /// One fixed step.
    pub fn step_once(&mut self) {
        self.step += 1;
        let now = self.time_s();
        let Some(mut active) = self.active.take() else {
            return;
        };
        let ended = match &mut active.motion {
            Motion::GoTo { .. } => self.drive_go_to(&mut active.motion, now),
            Motion::Velocity {
                body,
                ends_s,
                duration_s,
            } => self.drive_velocity(*body, *ends_s, *duration_s, now),
            Motion::Pick { entity_id, ends_s } => (now >= *ends_s - 1e-9).then(|| Ok(self.attach(entity_id))),
            Motion::Place {
                entity_id,
                at,
                on,
                ends_s,
            } => (now >= *ends_s - 1e-9).then(|| Ok(self.detach(entity_id, *at, on.as_deref()))),
        };
        self.active = Some(active);
        if let Some(result) = ended {
            self.finish_active(result);
        }
        self.carry_held();
    }

    /// Records an action that ended at once (a refusal, `stop`) as the last action. Such
    /// outcomes are returned to the caller directly, never queued for [`World::take_outcome`]
    /// (a refused call may reuse the running action's id).
    pub fn record(&mut self, outcome: Outcome) {
        self.last = Some(outcome);
    }

    /// Ends the active action with `result`; returns its id.
    fn finish_active(&mut self, result: Result<Value, Failure>) -> Option<String> {
        let active = self.active.take()?;
        self.robot.vx = 0.0;
        self.robot.vy = 0.0;
        self.robot.wz = 0.0;
        let outcome = Outcome {
            action_id: active.action_id.clone(),
            name: active.name,
            started_s: active.started_s,
            finished_s: self.time_s(),
            result,
        };
        self.last = Some(outcome.clone());
        self.finished.push_back(outcome);
        while self.finished.len() > KEPT_OUTCOMES {
            self.finished.pop_front();
        }
        Some(active.action_id)
    }

    fn pose_json(&self) -> Value {
        json!({"x": self.robot.x, "y": self.robot.y, "yaw_deg": self.robot.yaw.to_degrees()})
    }

    // -----------------------------------------------------------------------------------------
    // Starting motions

    fn plan_motion(&self, command: Command) -> Result<Motion, Failure> {
        let now = self.time_s();
        match command {
            Command::GoTo(target) => self.plan_go_to(&target, now),
            Command::SetVelocity {
                vx,
                vy,
                wz,
                duration_s,
            } => Ok(Motion::Velocity {
                body: (vx, vy, wz),
                ends_s: now + duration_s,
                duration_s,
            }),
            Command::Stop => unreachable!("stop never becomes a motion"),
            Command::Pick { entity_id } => self.check_pick(&entity_id).map(|()| Motion::Pick {
                entity_id,
                ends_s: now + HANDLING_S,
            }),
            Command::Place { entity_id, on } => {
                let (entity_id, at) = self.check_place(entity_id.as_deref(), on.as_deref())?;
                Ok(Motion::Place {
                    entity_id,
                    at,
                    on,
                    ends_s: now + HANDLING_S,
                })
            }
        }
    }

    fn plan_go_to(&self, target: &Target, now: f64) -> Result<Motion, Failure> {
        let from = (self.robot.x, self.robot.y);
        let (path, final_yaw, target_json) = match target {
            Target::Pose { x, y, yaw_deg } => {
                let path = self.grid.plan(from, (*x, *y)).ok_or_else(|| {
                    Failure::new(
                        "NAVIGATION_STUCK",
                        format!("no path to ({x:.2}, {y:.2}): blocked, enclosed or off the floor"),
                    )
                })?;
                let target = json!({"kind": "pose", "x": x, "y": y, "yaw_deg": yaw_deg});
                (path, yaw_deg.map(|d| wrap_angle(d.to_radians())), target)
            }
            Target::Entity(id) => {
                let path = self.plan_to_entity(from, id)?;
                (path, None, json!({"kind": "entity", "entity_id": id}))
            }
        };
        // Already there: the planner may return the goal alone; following starts at index 1.
        let path = match path.as_slice() {
            [] => vec![from, from],
            [only] => vec![from, *only],
            _ => path,
        };
        let total = path_length(&path);
        let speed = self.scene.robot.max_linear_speed;
        Ok(Motion::GoTo {
            path,
            next: 1,
            final_yaw,
            target: target_json,
            travelled: 0.0,
            total,
            deadline_s: now + 3.0 * total / speed + 10.0,
        })
    }

    fn plan_to_entity(&self, from: Point, id: &str) -> Result<Vec<Point>, Failure> {
        let stuck = |what: &str| {
            Failure::new(
                "NAVIGATION_STUCK",
                format!("no path to {what} {id}: it is blocked or enclosed"),
            )
        };
        if let Some(pad) = self.scene.pads.iter().find(|p| p.id == id) {
            return self.grid.plan(from, (pad.x, pad.y)).ok_or_else(|| stuck("pad"));
        }
        if let Some(object) = self.objects.iter().find(|o| o.id == id) {
            if object.held_by.is_some() {
                return Err(Failure::new(
                    "INVALID_INPUT",
                    format!("target.entity_id: {id} is held by the robot"),
                ));
            }
            return self
                .approach_points(object)
                .into_iter()
                .find_map(|spot| self.grid.plan(from, spot))
                .ok_or_else(|| stuck("object"));
        }
        if id == self.robot.entity_id || self.scene.obstacles.iter().any(|o| o.id == id) {
            return Err(Failure::new(
                "INVALID_INPUT",
                format!("target.entity_id: {id} is not a pad or an object"),
            ));
        }
        Err(Failure::new(
            "ENTITY_NOT_FOUND",
            format!("target.entity_id: no entity {id} in the scene"),
        ))
    }

    /// Spots from which the robot can reach `object`, the one facing the robot first.
    fn approach_points(&self, object: &ObjectState) -> Vec<Point> {
        let distance = self.robot.radius_m + object.size_m / 2.0 + REACH_M * 0.5;
        let toward_robot = (self.robot.y - object.y).atan2(self.robot.x - object.x);
        let mut offsets: Vec<f64> = (0..16).map(|i| f64::from(i) * PI / 8.0).collect();
        offsets.sort_by(|a, b| wrap_angle(*a).abs().total_cmp(&wrap_angle(*b).abs()));
        offsets
            .into_iter()
            .map(|o| {
                let a = toward_robot + o;
                (object.x + distance * a.cos(), object.y + distance * a.sin())
            })
            .collect()
    }

    fn distance_to(&self, x: f64, y: f64) -> f64 {
        (x - self.robot.x).hypot(y - self.robot.y)
    }

    fn check_pick(&self, id: &str) -> Result<(), Failure> {
        let Some(object) = self.objects.iter().find(|o| o.id == id) else {
            let known =
                self.scene.pads.iter().any(|p| p.id == id) || self.scene.obstacles.iter().any(|o| o.id == id);
            return Err(if known {
                Failure::new("NOT_PICKABLE", format!("entity_id: {id} cannot be picked"))
            } else {
                Failure::new(
                    "ENTITY_NOT_FOUND",
                    format!("entity_id: no entity {id} in the scene"),
                )
            });
        };
        if object.held_by.is_some() {
            return Err(Failure::new(
                "ALREADY_HELD",
                format!("entity_id: {id} is already held"),
            ));
        }
        if !self.robot.held.is_empty() {
            return Err(Failure::new(
                "HANDS_FULL",
                format!("the robot already holds {}", self.robot.held.join(", ")),
            ));
        }
        let distance = self.distance_to(object.x, object.y);
        let reach = self.robot.radius_m + object.size_m / 2.0 + REACH_M;
        if distance > reach {
            return Err(Failure::new(
                "TOO_FAR",
                format!("entity_id: {id} is {distance:.2} m away; reach is {reach:.2} m (go_to it first)"),
            ));
        }
        Ok(())
    }

    fn check_place(&self, id: Option<&str>, on: Option<&str>) -> Result<(String, Point), Failure> {
        let id = match id {
            Some(id) if self.robot.held.iter().any(|h| h == id) => id.to_owned(),
            Some(id) => {
                return Err(Failure::new(
                    "NOT_HOLDING",
                    format!("entity_id: the robot does not hold {id}"),
                ))
            }
            None => self
                .robot
                .held
                .first()
                .cloned()
                .ok_or_else(|| Failure::new("NOT_HOLDING", "the robot holds nothing"))?,
        };
        let size = self.objects.iter().find(|o| o.id == id).map_or(0.2, |o| o.size_m);
        let at = match on {
            Some(pad_id) => {
                let pad = self.scene.pads.iter().find(|p| p.id == pad_id).ok_or_else(|| {
                    Failure::new("ENTITY_NOT_FOUND", format!("on: no pad {pad_id} in the scene"))
                })?;
                let reach = self.robot.radius_m + pad.radius_m + REACH_M;
                let distance = self.distance_to(pad.x, pad.y);
                if distance > reach {
                    return Err(Failure::new(
                        "TOO_FAR",
                        format!("on: {pad_id} is {distance:.2} m away; reach is {reach:.2} m"),
                    ));
                }
                (pad.x, pad.y)
            }
            None => {
                let ahead = self.robot.radius_m + size / 2.0 + 0.1;
                (
                    self.robot.x + ahead * self.robot.yaw.cos(),
                    self.robot.y + ahead * self.robot.yaw.sin(),
                )
            }
        };
        if !is_clear(&self.scene, at.0, at.1, size / 2.0) {
            return Err(Failure::new(
                "PLACE_BLOCKED",
                format!("there is no room for {id} at ({:.2}, {:.2})", at.0, at.1),
            ));
        }
        Ok((id, at))
    }

    // -----------------------------------------------------------------------------------------
    // Stepping

    fn robot_fits(&self, x: f64, y: f64) -> bool {
        is_clear(&self.scene, x, y, self.robot.radius_m)
    }

    /// Moves by `(dx, dy)` and turns by `dyaw` when the body stays clear; returns whether it
    /// moved. Turning in place never collides (the body is a disc).
    fn try_move(&mut self, dx: f64, dy: f64, dyaw: f64) -> bool {
        self.robot.yaw = wrap_angle(self.robot.yaw + dyaw);
        let (x, y) = (self.robot.x + dx, self.robot.y + dy);
        if (dx == 0.0 && dy == 0.0) || self.robot_fits(x, y) {
            self.robot.x = x;
            self.robot.y = y;
            true
        } else {
            false
        }
    }

    fn drive_velocity(
        &mut self,
        (vx, vy, wz): (f64, f64, f64),
        ends_s: f64,
        duration_s: f64,
        now: f64,
    ) -> Option<Result<Value, Failure>> {
        let (sin, cos) = self.robot.yaw.sin_cos();
        let (wx, wy) = (vx * cos - vy * sin, vx * sin + vy * cos);
        if !self.try_move(wx * STEP_S, wy * STEP_S, wz * STEP_S) {
            return Some(Err(Failure::new(
                "COLLISION",
                format!(
                    "the robot hit something at ({:.2}, {:.2}) after {:.2} s",
                    self.robot.x,
                    self.robot.y,
                    duration_s - (ends_s - now)
                ),
            )));
        }
        (self.robot.vx, self.robot.vy, self.robot.wz) = (wx, wy, wz);
        (now >= ends_s - 1e-9).then(|| Ok(json!({"pose": self.pose_json(), "duration_s": duration_s})))
    }

    fn drive_go_to(&mut self, motion: &mut Motion, now: f64) -> Option<Result<Value, Failure>> {
        let Motion::GoTo {
            path,
            next,
            final_yaw,
            target,
            travelled,
            deadline_s,
            ..
        } = motion
        else {
            return None;
        };
        if now > *deadline_s {
            return Some(Err(Failure::new(
                "NAVIGATION_STUCK",
                format!(
                    "no progress: stopped at ({:.2}, {:.2}) before the target",
                    self.robot.x, self.robot.y
                ),
            )));
        }
        while *next + 1 < path.len() && self.distance_to(path[*next].0, path[*next].1) < WAYPOINT_RADIUS_M {
            *next += 1;
        }
        let last = *next + 1 == path.len();
        let Some((v, wz)) = self.follow(path[*next], last, *final_yaw) else {
            let result =
                json!({"reached": true, "target": target, "pose": self.pose_json(), "distance_m": travelled});
            return Some(Ok(result));
        };
        let dyaw = wz * STEP_S;
        let heading = self.robot.yaw + dyaw;
        let (dx, dy) = (v * heading.cos() * STEP_S, v * heading.sin() * STEP_S);
        if self.try_move(dx, dy, dyaw) {
            *travelled += v.abs() * STEP_S;
            (self.robot.vx, self.robot.vy) = (v * heading.cos(), v * heading.sin());
        } else {
            (self.robot.vx, self.robot.vy) = (0.0, 0.0);
        }
        self.robot.wz = wz;
        None
    }

    /// The speed and turn rate that take the robot to `waypoint` (the path's end when
    /// `last`, then to `final_yaw`); `None` once there.
    fn follow(&self, (tx, ty): Point, last: bool, final_yaw: Option<f64>) -> Option<(f64, f64)> {
        let max_v = self.scene.robot.max_linear_speed;
        let max_w = self.scene.robot.max_angular_speed_deg.to_radians();
        let turn = |error: f64| (4.0 * error).clamp(-max_w, max_w);
        let distance = self.distance_to(tx, ty);
        if last && distance < POSITION_TOLERANCE_M {
            let error = wrap_angle(final_yaw? - self.robot.yaw);
            return (error.abs() > YAW_TOLERANCE_RAD).then(|| (0.0, turn(error)));
        }
        let error = wrap_angle((ty - self.robot.y).atan2(tx - self.robot.x) - self.robot.yaw);
        let v = if error.abs() > TURN_IN_PLACE_RAD {
            0.0
        } else if last {
            // Slow down on the final approach, never overshooting in one step.
            (3.0 * distance).clamp(0.05, max_v).min(distance / STEP_S) * error.cos()
        } else {
            max_v * error.cos()
        };
        Some((v, turn(error)))
    }

    fn attach(&mut self, id: &str) -> Value {
        if let Some(object) = self.objects.iter_mut().find(|o| o.id == id) {
            object.held_by = Some(self.robot.entity_id.clone());
        }
        self.robot.held.push(id.to_owned());
        json!({"entity_id": id, "held_entity_ids": self.robot.held})
    }

    fn detach(&mut self, id: &str, (x, y): Point, on: Option<&str>) -> Value {
        if let Some(object) = self.objects.iter_mut().find(|o| o.id == id) {
            object.held_by = None;
            object.x = x;
            object.y = y;
        }
        self.robot.held.retain(|h| h != id);
        json!({"entity_id": id, "placed_at": {"x": x, "y": y}, "on": on})
    }

    fn carry_held(&mut self) {
        let (x, y) = (self.robot.x, self.robot.y);
        for object in self.objects.iter_mut().filter(|o| o.held_by.is_some()) {
            object.x = x;
            object.y = y;
        }
    }
}
