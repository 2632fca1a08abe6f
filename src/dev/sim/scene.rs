//! Scenes: the static layout of a simulated world, built in or loaded from JSON.
//!
//! # Scene file format
//!
//! A scene is one JSON object. Coordinates are metres on a flat floor whose corner is the
//! origin: `x` grows to the right (east), `y` grows up (north), `0 ≤ x ≤ width_m`,
//! `0 ≤ y ≤ height_m`. Angles are degrees, counter-clockwise from `+x`. The floor's edges are
//! walls. Colours are `"#rrggbb"`; every colour is optional.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `scene_id` | string | the id a session asks for (`scene_id` at session creation) |
//! | `description` | string? | free text |
//! | `floor` | `{width_m, height_m}` | the floor's size |
//! | `robot` | `{entity_id?="robot_1", x, y, yaw_deg?=0, radius_m?=0.25, max_linear_speed?=1.0, max_angular_speed_deg?=120}` | the robot: a disc; speeds in m/s and deg/s |
//! | `pads` | `[{id, x, y, radius_m?=0.4, color?}]` | named floor markers (`pad_A`, …); the robot can stand on them |
//! | `obstacles` | `[{id, shape:"rect", x, y, width_m, height_m, color?}` or `{id, shape:"circle", x, y, radius_m, color?}]` | solid things; a rect is axis-aligned and centred on `x, y` |
//! | `objects` | `[{id, x, y, size_m?=0.2, color?}]` | pickable cubes |
//! | `object_jitter_m` | number?=0 | objects start up to this far from `x, y` in each axis, drawn from the session's seed |
//!
//! Ids are unique across pads, obstacles, objects and the robot. Unknown fields are refused,
//! so a typo does not silently fall back to a default. See `scenes/two_rooms.json` next to
//! this file for an example; `scenes/default.json` is the built-in default scene.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The built-in scenes: `(scene_id, JSON text)`.
const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("scenes/default.json")),
    ("two_rooms", include_str!("scenes/two_rooms.json")),
];

/// The scene used when a session names none.
pub const DEFAULT_SCENE_ID: &str = "default";

/// The static layout of a world: floor, robot start, pads, obstacles and pickable objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// The scene's id.
    pub scene_id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The floor's size.
    pub floor: Floor,
    /// The robot's body and start pose.
    pub robot: RobotSpec,
    /// Named floor markers.
    #[serde(default)]
    pub pads: Vec<Pad>,
    /// Solid obstacles.
    #[serde(default)]
    pub obstacles: Vec<Obstacle>,
    /// Pickable objects.
    #[serde(default)]
    pub objects: Vec<ObjectSpec>,
    /// How far (each axis, metres) the seed may move each object from its nominal position.
    #[serde(default)]
    pub object_jitter_m: f64,
}

/// The floor: `[0, width_m] × [0, height_m]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// Extent along `x`, metres.
    pub width_m: f64,
    /// Extent along `y`, metres.
    pub height_m: f64,
}

/// The robot's body, limits and start pose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotSpec {
    /// Its entity id.
    #[serde(default = "default_robot_id")]
    pub entity_id: String,
    /// Start `x`, metres.
    pub x: f64,
    /// Start `y`, metres.
    pub y: f64,
    /// Start heading, degrees.
    #[serde(default)]
    pub yaw_deg: f64,
    /// Body radius, metres.
    #[serde(default = "default_robot_radius")]
    pub radius_m: f64,
    /// Top linear speed, m/s.
    #[serde(default = "default_linear_speed")]
    pub max_linear_speed: f64,
    /// Top turn rate, degrees/s.
    #[serde(default = "default_angular_speed")]
    pub max_angular_speed_deg: f64,
}

/// A named floor marker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pad {
    /// Its id, e.g. `pad_B`.
    pub id: String,
    /// Centre `x`.
    pub x: f64,
    /// Centre `y`.
    pub y: f64,
    /// Radius, metres.
    #[serde(default = "default_pad_radius")]
    pub radius_m: f64,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// A solid obstacle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Obstacle {
    /// Its id.
    pub id: String,
    /// Its shape and place.
    #[serde(flatten)]
    pub shape: Shape,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// An obstacle's shape.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// An axis-aligned rectangle centred on `x, y`.
    Rect {
        /// Centre `x`.
        x: f64,
        /// Centre `y`.
        y: f64,
        /// Extent along `x`.
        width_m: f64,
        /// Extent along `y`.
        height_m: f64,
    },
    /// A disc.
    Circle {
        /// Centre `x`.
        x: f64,
        /// Centre `y`.
        y: f64,
        /// Radius.
        radius_m: f64,
    },
}

/// A pickable cube.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSpec {
    /// Its id.
    pub id: String,
    /// Nominal centre `x`.
    pub x: f64,
    /// Nominal centre `y`.
    pub y: f64,
    /// Edge length, metres.
    #[serde(default = "default_object_size")]
    pub size_m: f64,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

fn default_robot_id() -> String {
    "robot_1".to_owned()
}
fn default_robot_radius() -> f64 {
    0.25
}
fn default_linear_speed() -> f64 {
    1.0
}
fn default_angular_speed() -> f64 {
    120.0
}
fn default_pad_radius() -> f64 {
    0.4
}
fn default_object_size() -> f64 {
    0.2
}

/// Why a scene was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SceneError(pub String);

impl fmt::Display for SceneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scene: {}", self.0)
    }
}

impl std::error::Error for SceneError {}

impl Shape {
    /// Distance from `(px, py)` to the shape's boundary; negative inside.
    pub fn signed_distance(&self, px: f64, py: f64) -> f64 {
        match *self {
            Shape::Circle { x, y, radius_m } => (px - x).hypot(py - y) - radius_m,
            Shape::Rect {
                x,
                y,
                width_m,
                height_m,
            } => {
                let dx = (px - x).abs() - width_m / 2.0;
                let dy = (py - y).abs() - height_m / 2.0;
                let outside = dx.max(0.0).hypot(dy.max(0.0));
                outside + dx.max(dy).min(0.0)
            }
        }
    }

    /// The shape's centre.
    pub fn center(&self) -> (f64, f64) {
        match *self {
            Shape::Rect { x, y, .. } | Shape::Circle { x, y, .. } => (x, y),
        }
    }
}

impl Scene {
    /// The ids of the built-in scenes.
    pub fn builtin_ids() -> Vec<&'static str> {
        BUILTIN.iter().map(|(id, _)| *id).collect()
    }

    /// A built-in scene by id.
    pub fn builtin(scene_id: &str) -> Option<Scene> {
        let (_, text) = BUILTIN.iter().find(|(id, _)| *id == scene_id)?;
        Scene::from_json(text).ok()
    }

    /// The built-in default scene.
    pub fn default_scene() -> Scene {
        Scene::builtin(DEFAULT_SCENE_ID).expect("the built-in default scene is valid")
    }

    /// Parses and validates a scene file (see the module docs for the format).
    pub fn from_json(text: &str) -> Result<Scene, SceneError> {
        let scene: Scene = serde_json::from_str(text).map_err(|e| SceneError(e.to_string()))?;
        scene.validate()?;
        Ok(scene)
    }

    /// Reads, parses and validates a scene file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Scene, SceneError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| SceneError(format!("cannot read {}: {e}", path.display())))?;
        Scene::from_json(&text)
    }

    /// Checks sizes, ids, colours and that everything lies on the floor.
    pub fn validate(&self) -> Result<(), SceneError> {
        let fail = |message: String| Err(SceneError(message));
        let Floor { width_m, height_m } = self.floor;
        if !(finite_positive(width_m) && finite_positive(height_m)) || width_m * height_m > 1.0e6 {
            return fail("floor: width_m and height_m must be positive and at most 1 km²".into());
        }
        let on_floor = |x: f64, y: f64| (0.0..=width_m).contains(&x) && (0.0..=height_m).contains(&y);
        let robot = &self.robot;
        if !on_floor(robot.x, robot.y) || !robot.yaw_deg.is_finite() {
            return fail("robot: the start pose must lie on the floor".into());
        }
        if !finite_positive(robot.radius_m)
            || !finite_positive(robot.max_linear_speed)
            || !finite_positive(robot.max_angular_speed_deg)
        {
            return fail("robot: radius_m and speeds must be positive".into());
        }
        let mut ids = vec![robot.entity_id.as_str()];
        for pad in &self.pads {
            if !on_floor(pad.x, pad.y) || !finite_positive(pad.radius_m) {
                return fail(format!(
                    "pad {}: must lie on the floor with a positive radius",
                    pad.id
                ));
            }
            ids.push(&pad.id);
        }
        for obstacle in &self.obstacles {
            let (x, y) = obstacle.shape.center();
            let sizes_ok = match obstacle.shape {
                Shape::Rect {
                    width_m, height_m, ..
                } => finite_positive(width_m) && finite_positive(height_m),
                Shape::Circle { radius_m, .. } => finite_positive(radius_m),
            };
            if !on_floor(x, y) || !sizes_ok {
                return fail(format!(
                    "obstacle {}: must lie on the floor with positive sizes",
                    obstacle.id
                ));
            }
            ids.push(&obstacle.id);
        }
        for object in &self.objects {
            if !on_floor(object.x, object.y) || !finite_positive(object.size_m) {
                return fail(format!(
                    "object {}: must lie on the floor with a positive size",
                    object.id
                ));
            }
            ids.push(&object.id);
        }
        if !(self.object_jitter_m.is_finite() && self.object_jitter_m >= 0.0) {
            return fail("object_jitter_m must be ≥ 0".into());
        }
        for (i, id) in ids.iter().enumerate() {
            if id.is_empty() || ids[..i].contains(id) {
                return fail(format!("ids must be non-empty and unique: {id:?}"));
            }
        }
        let colors = self
            .pads
            .iter()
            .map(|p| &p.color)
            .chain(self.obstacles.iter().map(|o| &o.color))
            .chain(self.objects.iter().map(|o| &o.color));
        for color in colors.flatten() {
            if parse_color(color).is_none() {
                return fail(format!("colour {color:?} is not #rrggbb"));
            }
        }
        Ok(())
    }
}

fn finite_positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// `#rrggbb` → `[r, g, b]`.
pub(crate) fn parse_color(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_scenes_parse_and_validate() {
        for id in Scene::builtin_ids() {
            let scene = Scene::builtin(id).unwrap_or_else(|| panic!("scene {id} is invalid"));
            assert_eq!(scene.scene_id, id);
        }
        let scene = Scene::default_scene();
        assert!(scene.pads.iter().any(|p| p.id == "pad_B"));
        assert_eq!(scene.robot.radius_m, 0.25);
        assert!(Scene::builtin("nope").is_none());
    }

    #[test]
    fn bad_scenes_are_refused_with_a_reason() {
        let base = serde_json::to_value(Scene::default_scene()).unwrap();
        let refuse = |edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
            let mut value = base.clone();
            edit(&mut value);
            let err = Scene::from_json(&value.to_string()).unwrap_err();
            assert!(err.0.contains(needle), "{err} lacks {needle:?}");
        };
        refuse(&|v| v["floor"]["width_m"] = (-1.0).into(), "floor");
        refuse(&|v| v["robot"]["x"] = 99.0.into(), "robot");
        refuse(&|v| v["pads"][1]["id"] = "pad_A".into(), "unique");
        refuse(&|v| v["pads"][0]["color"] = "blue".into(), "#rrggbb");
        refuse(&|v| v["obstacles"][1]["radius_m"] = 0.0.into(), "pillar_1");
        refuse(&|v| v["flor"] = 1.into(), "unknown field");
        refuse(&|v| v["obstacles"][0]["shape"] = "blob".into(), "blob");
    }

    #[test]
    fn scene_files_load() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dev/sim/scenes/two_rooms.json");
        assert_eq!(
            Scene::from_file(&path).unwrap(),
            Scene::builtin("two_rooms").unwrap()
        );
        let err = Scene::from_file(path.with_file_name("missing.json")).unwrap_err();
        assert!(err.0.contains("cannot read"), "{err}");
    }

    #[test]
    fn signed_distances() {
        let rect = Shape::Rect {
            x: 0.0,
            y: 0.0,
            width_m: 2.0,
            height_m: 1.0,
        };
        assert!((rect.signed_distance(2.0, 0.0) - 1.0).abs() < 1e-9);
        assert!((rect.signed_distance(0.0, 0.0) + 0.5).abs() < 1e-9);
        assert!((rect.signed_distance(4.0, 4.5) - 5.0).abs() < 1e-9);
        let circle = Shape::Circle {
            x: 1.0,
            y: 1.0,
            radius_m: 0.5,
        };
        assert!((circle.signed_distance(1.0, 3.0) - 1.5).abs() < 1e-9);
        assert_eq!(parse_color("#ff8000"), Some([255, 128, 0]));
        assert_eq!(parse_color("#ff80"), None);
    }
}
