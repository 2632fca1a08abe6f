//! The skills: their descriptors (JSON Schema inputs) and input validation.
//!
//! Bad input fails with `INVALID_INPUT` and a message that starts with the offending field
//! (`target.x: …`). Unknown fields are refused so a typo is not silently ignored.

use serde_json::{json, Map, Value};

use super::scene::Scene;
use super::world::{Command, Failure, Target, MAX_DURATION_S};
use crate::runtime::models::{ToolAnnotations, ToolCost, ToolDescriptor};

/// The skill names, in the order `runtime.tools_list` gives them.
pub const SKILLS: [&str; 5] = ["go_to", "set_velocity", "stop", "pick_entity", "place_entity"];

fn invalid(field: &str, message: impl std::fmt::Display) -> Failure {
    Failure::new("INVALID_INPUT", format!("{field}: {message}"))
}

/// The descriptors of every skill, with the scene's speed limits and entity ids.
pub fn descriptors(scene: &Scene) -> Vec<ToolDescriptor> {
    let max_v = scene.robot.max_linear_speed;
    let max_w = scene.robot.max_angular_speed_deg.to_radians();
    let pads: Vec<&str> = scene.pads.iter().map(|p| p.id.as_str()).collect();
    let objects: Vec<&str> = scene.objects.iter().map(|o| o.id.as_str()).collect();
    let targets: Vec<&str> = pads.iter().chain(&objects).copied().collect();
    let mutating = |mid_action: bool, estimated_ms: u64| {
        (
            Some(ToolAnnotations {
                mutating: Some(true),
                allowed_mid_action: Some(mid_action),
                tags: Some(vec!["sim".into()]),
                ..ToolAnnotations::default()
            }),
            Some(ToolCost {
                estimated_ms: Some(estimated_ms),
                may_block_runtime: Some(false),
                supports_mid_action: Some(mid_action),
                ..ToolCost::default()
            }),
        )
    };
    let tool = |name: &str, title: &str, description: String, schema: Value, mid: bool, ms: u64| {
        let (annotations, cost) = mutating(mid, ms);
        ToolDescriptor {
            name: name.into(),
            title: Some(title.into()),
            description,
            input_schema: schema,
            output_schema: None,
            annotations,
            cost,
        }
    };
    vec![
        tool(
            "go_to",
            "Go to",
            "Plan a path around the obstacles and drive to a pad, next to an object, or to a \
             pose. Fails with NAVIGATION_STUCK when there is no path (or no progress)."
                .into(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["target"],
                "properties": {"target": {"oneOf": [
                    {"type": "object", "additionalProperties": false, "required": ["kind", "entity_id"],
                     "properties": {"kind": {"const": "entity"},
                                    "entity_id": {"type": "string", "examples": targets}}},
                    {"type": "object", "additionalProperties": false, "required": ["kind", "x", "y"],
                     "properties": {"kind": {"const": "pose"},
                                    "x": {"type": "number", "minimum": 0, "maximum": scene.floor.width_m},
                                    "y": {"type": "number", "minimum": 0, "maximum": scene.floor.height_m},
                                    "yaw_deg": {"type": "number"}}}
                ]}}
            }),
            false,
            8_000,
        ),
        tool(
            "set_velocity",
            "Set velocity",
            format!(
                "Drive with a body-frame velocity (vx forward, vy left, m/s; wz rad/s, \
                 counter-clockwise) for duration_s seconds, then stop. Speed limits: \
                 {max_v} m/s, {max_w:.3} rad/s. A collision ends it as COLLISION."
            ),
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "vx": {"type": "number", "default": 0, "minimum": -max_v, "maximum": max_v},
                    "vy": {"type": "number", "default": 0, "minimum": -max_v, "maximum": max_v},
                    "wz": {"type": "number", "default": 0, "minimum": -max_w, "maximum": max_w},
                    "duration_s": {"type": "number", "default": 1.0, "exclusiveMinimum": 0, "maximum": MAX_DURATION_S}
                }
            }),
            false,
            1_000,
        ),
        tool(
            "stop",
            "Stop",
            "Stand still now; the running action, if any, ends as CANCELLED.".into(),
            json!({"type": "object", "additionalProperties": false, "properties": {}}),
            true,
            0,
        ),
        tool(
            "pick_entity",
            "Pick an object",
            "Pick up an object within reach (go_to it first). The robot holds one object at \
             a time; its status becomes `holding`."
                .into(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["entity_id"],
                "properties": {"entity_id": {"type": "string", "examples": objects}}
            }),
            false,
            500,
        ),
        tool(
            "place_entity",
            "Place an object",
            "Put a held object down: on the pad `on` (within reach) or in front of the robot.".into(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "entity_id": {"type": "string", "description": "the held object (default: the one held)"},
                    "on": {"type": "string", "examples": pads}
                }
            }),
            false,
            500,
        ),
    ]
}

/// Validates the input of skill `name` into a [`Command`].
pub fn parse_command(scene: &Scene, name: &str, input: &Value) -> Result<Command, Failure> {
    let empty = Map::new();
    let input = match input {
        Value::Object(object) => object,
        Value::Null => &empty,
        _ => return Err(invalid("input", "must be a JSON object")),
    };
    match name {
        "go_to" => {
            only_fields(input, "", &["target"])?;
            let target = input
                .get("target")
                .ok_or_else(|| invalid("target", "is required"))?;
            Ok(Command::GoTo(parse_target(target)?))
        }
        "set_velocity" => parse_velocity(scene, input),
        "stop" => {
            only_fields(input, "", &[])?;
            Ok(Command::Stop)
        }
        "pick_entity" => {
            only_fields(input, "", &["entity_id"])?;
            Ok(Command::Pick {
                entity_id: required_string(input, "", "entity_id")?,
            })
        }
        "place_entity" => {
            only_fields(input, "", &["entity_id", "on"])?;
            Ok(Command::Place {
                entity_id: optional_string(input, "", "entity_id")?,
                on: optional_string(input, "", "on")?,
            })
        }
        other => Err(Failure::new(
            "TOOL_NOT_FOUND",
            format!("name: no skill {other:?} (skills: {})", SKILLS.join(", ")),
        )),
    }
}

fn only_fields(object: &Map<String, Value>, prefix: &str, allowed: &[&str]) -> Result<(), Failure> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(
            &format!("{prefix}{unknown}"),
            format!("unknown field (allowed: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn required_string(object: &Map<String, Value>, prefix: &str, field: &str) -> Result<String, Failure> {
    optional_string(object, prefix, field)?.ok_or_else(|| invalid(&format!("{prefix}{field}"), "is required"))
}

fn optional_string(
    object: &Map<String, Value>,
    prefix: &str,
    field: &str,
) -> Result<Option<String>, Failure> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&format!("{prefix}{field}"), "must be a non-empty string")),
    }
}

fn optional_number(object: &Map<String, Value>, prefix: &str, field: &str) -> Result<Option<f64>, Failure> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(&format!("{prefix}{field}"), "must be a number")),
    }
}

fn parse_target(target: &Value) -> Result<Target, Failure> {
    let Value::Object(target) = target else {
        return Err(invalid("target", "must be an object with a `kind`"));
    };
    match target.get("kind").and_then(Value::as_str) {
        Some("entity") => {
            only_fields(target, "target.", &["kind", "entity_id"])?;
            Ok(Target::Entity(required_string(target, "target.", "entity_id")?))
        }
        Some("pose") => {
            only_fields(target, "target.", &["kind", "x", "y", "yaw_deg"])?;
            let x = optional_number(target, "target.", "x")?;
            let y = optional_number(target, "target.", "y")?;
            Ok(Target::Pose {
                x: x.ok_or_else(|| invalid("target.x", "is required"))?,
                y: y.ok_or_else(|| invalid("target.y", "is required"))?,
                yaw_deg: optional_number(target, "target.", "yaw_deg")?,
            })
        }
        _ => Err(invalid("target.kind", "must be \"entity\" or \"pose\"")),
    }
}

fn parse_velocity(scene: &Scene, input: &Map<String, Value>) -> Result<Command, Failure> {
    only_fields(input, "", &["vx", "vy", "wz", "duration_s"])?;
    let max_v = scene.robot.max_linear_speed;
    let max_w = scene.robot.max_angular_speed_deg.to_radians();
    let vx = optional_number(input, "", "vx")?.unwrap_or(0.0);
    let vy = optional_number(input, "", "vy")?.unwrap_or(0.0);
    let wz = optional_number(input, "", "wz")?.unwrap_or(0.0);
    let duration_s = optional_number(input, "", "duration_s")?.unwrap_or(1.0);
    for (field, value) in [("vx", vx), ("vy", vy)] {
        if value.abs() > max_v {
            return Err(invalid(
                field,
                format!("{value} exceeds the speed limit of {max_v} m/s"),
            ));
        }
    }
    if vx.hypot(vy) > max_v + 1e-9 {
        return Err(invalid(
            "vx",
            format!(
                "the speed |(vx, vy)| = {:.3} exceeds the limit of {max_v} m/s",
                vx.hypot(vy)
            ),
        ));
    }
    if wz.abs() > max_w + 1e-9 {
        return Err(invalid(
            "wz",
            format!("{wz} exceeds the turn-rate limit of {max_w:.3} rad/s"),
        ));
    }
    if !(duration_s > 0.0 && duration_s <= MAX_DURATION_S) {
        return Err(invalid(
            "duration_s",
            format!("must be > 0 and ≤ {MAX_DURATION_S} s, got {duration_s}"),
        ));
    }
    Ok(Command::SetVelocity {
        vx,
        vy,
        wz,
        duration_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, input: Value) -> Result<Command, Failure> {
        parse_command(&Scene::default_scene(), name, &input)
    }

    fn field_error(name: &str, input: Value) -> String {
        let failure = parse(name, input).unwrap_err();
        assert_eq!(failure.code, "INVALID_INPUT", "{failure:?}");
        failure.message
    }

    #[test]
    fn valid_inputs() {
        assert_eq!(
            parse("go_to", json!({"target":{"kind":"entity","entity_id":"pad_B"}})).unwrap(),
            Command::GoTo(Target::Entity("pad_B".into()))
        );
        assert_eq!(
            parse("go_to", json!({"target":{"kind":"pose","x":1,"y":2.5}})).unwrap(),
            Command::GoTo(Target::Pose {
                x: 1.0,
                y: 2.5,
                yaw_deg: None
            })
        );
        assert_eq!(
            parse("set_velocity", json!({"wz":0.8,"duration_s":2.0})).unwrap(),
            Command::SetVelocity {
                vx: 0.0,
                vy: 0.0,
                wz: 0.8,
                duration_s: 2.0
            }
        );
        assert_eq!(parse("stop", Value::Null).unwrap(), Command::Stop);
        assert_eq!(
            parse("place_entity", json!({"on":"pad_C"})).unwrap(),
            Command::Place {
                entity_id: None,
                on: Some("pad_C".into())
            }
        );
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let cases = [
            ("go_to", json!({}), "target: is required"),
            ("go_to", json!({"target": 3}), "target: must be an object"),
            ("go_to", json!({"target": {"kind": "room"}}), "target.kind:"),
            (
                "go_to",
                json!({"target": {"kind": "pose", "x": 1}}),
                "target.y: is required",
            ),
            (
                "go_to",
                json!({"target": {"kind": "pose", "x": "1", "y": 1}}),
                "target.x: must be a number",
            ),
            (
                "go_to",
                json!({"target": {"kind": "entity"}}),
                "target.entity_id: is required",
            ),
            (
                "go_to",
                json!({"target": {"kind": "entity", "entity_id": "pad_B", "speed": 1}}),
                "target.speed: unknown field",
            ),
            (
                "set_velocity",
                json!({"vx": 3.0}),
                "vx: 3 exceeds the speed limit",
            ),
            ("set_velocity", json!({"vx": 0.9, "vy": 0.9}), "vx: the speed"),
            ("set_velocity", json!({"wz": 10}), "wz: 10 exceeds"),
            (
                "set_velocity",
                json!({"duration_s": 0}),
                "duration_s: must be > 0",
            ),
            ("set_velocity", json!({"duration_s": 1e9}), "duration_s:"),
            ("set_velocity", json!({"vz": 1}), "vz: unknown field"),
            ("pick_entity", json!({}), "entity_id: is required"),
            (
                "pick_entity",
                json!({"entity_id": 5}),
                "entity_id: must be a non-empty string",
            ),
            (
                "place_entity",
                json!({"on": ""}),
                "on: must be a non-empty string",
            ),
            ("stop", json!({"now": true}), "now: unknown field"),
            ("stop", json!([1]), "input: must be a JSON object"),
        ];
        for (name, input, expected) in cases {
            let message = field_error(name, input.clone());
            assert!(
                message.starts_with(expected),
                "{name} {input}: {message:?} lacks {expected:?}"
            );
        }
        assert_eq!(parse("fly", json!({})).unwrap_err().code, "TOOL_NOT_FOUND");
    }

    #[test]
    fn descriptors_cover_every_skill_with_object_schemas() {
        let tools = descriptors(&Scene::default_scene());
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, SKILLS);
        for tool in &tools {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert!(!tool.description.is_empty());
        }
        let stop = &tools[2];
        assert_eq!(stop.annotations.as_ref().unwrap().allowed_mid_action, Some(true));
        assert_eq!(tools[1].input_schema["properties"]["vx"]["maximum"], 1.0);
    }
}
