//! Runtime-plane reply interpretation (CONTRACT §8, feature `livekit`): every `runtime.*`
//! reply parser of the SDK's private `runtime::calls` (reached through the
//! `menlo_robot_sdk::__fuzzing` door, built only with `--cfg fuzzing`), fed the same reply text.
//!
//! Properties: never panics; errors are only `Decode` or `Runtime` (`Runtime` exactly for a
//! guard envelope, with non-empty code and message); a guard envelope on `tools_call` is a
//! failed `ActionResult` carrying the caller's action id and zero timestamps; whatever parses
//! re-serializes and re-parses (through the same function) to an equal value;
//! `parse_state_reply` agrees with the dedicated state parsers; capabilities are `None` for
//! blank/`null`/`{}`/`METHOD_NOT_FOUND`; an inline capture is a JPEG; the `tools_call`
//! request built from the reply's JSON carries it back unchanged (`null` as `{}`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use menlo_robot_sdk::__fuzzing::calls::{
    self, guard_error, is_jpeg, parse_cancel_reply, parse_capabilities_reply, parse_capture_ack,
    parse_raw_reply, parse_runtime_state_reply, parse_scene_state_reply, parse_state_reply,
    parse_tools_call_reply, parse_tools_list_reply, tools_call_request, CapabilitiesOutcome, CaptureAck,
    StateReply,
};
use menlo_robot_sdk::{ActionPhase, ActionStatus, Error, RuntimeErrorCode, RuntimeEvent};
use serde_json::Value;

const ACTION_ID: &str = "act_0123456789ab";

/// Errors a reply parser may return: `Runtime` only for a guard envelope, never an empty code.
fn check_error(err: &Error, guard: bool, what: &str) {
    match err {
        Error::Decode { .. } => {}
        Error::Runtime { code, message, .. } => {
            assert!(
                guard || what == "cameras_capture",
                "{what}: Runtime error from a non-guard reply"
            );
            assert!(
                !code.as_str().is_empty() && !message.is_empty(),
                "{what}: empty runtime error code/message"
            );
        }
        other => panic!("{what}: unexpected error kind {other:?}"),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("a parsed model must serialize")
}

fuzz_target!(|data: &[u8]| {
    let reply = String::from_utf8_lossy(data);
    let reply = reply.as_ref();
    let value: Option<Value> = serde_json::from_str(reply).ok();
    let guard = value.as_ref().is_some_and(|v| {
        v.as_object().is_some_and(|o| {
            o.get("status").and_then(Value::as_str) == Some("failed") && !o.contains_key("meta")
        })
    });

    // Guard envelope detection.
    if let Some(value) = &value {
        let info = guard_error(value);
        assert_eq!(info.is_some(), guard, "guard_error disagrees with CONTRACT §8");
        if let Some(info) = info {
            assert!(!info.code.as_str().is_empty() && !info.message.is_empty());
        }
    }

    // runtime.tools_call: a guard is a failed result, not an error.
    match parse_tools_call_reply(reply, ACTION_ID) {
        Ok(result) => {
            if guard {
                assert_eq!(result.status, ActionStatus::Failed);
                assert_eq!(result.meta.action_id, ACTION_ID);
                assert_eq!(
                    (
                        result.meta.started_at_ms,
                        result.meta.finished_at_ms,
                        result.meta.duration_ms
                    ),
                    (0, 0, 0)
                );
                assert!(result.error.is_some());
            }
            let again = parse_tools_call_reply(&json(&result), "act_other").expect("ActionResult round trip");
            assert_eq!(again, result, "ActionResult changed in a round trip");
            let event = RuntimeEvent::from_result(&result);
            assert_eq!(event.action_id, result.meta.action_id);
            assert_eq!(event.at_ms, result.meta.finished_at_ms);
            assert_eq!(event.phase == ActionPhase::Cancelled, result.is_cancelled());
            let _ = result.typed_runtime_state();
            let _ = result.typed_scene_state();
        }
        Err(err) => {
            assert!(
                !guard,
                "a tools_call guard envelope must become a failed ActionResult"
            );
            assert!(
                matches!(err, Error::Decode { .. }),
                "tools_call: unexpected error {err:?}"
            );
        }
    }

    // runtime.tools_list
    match parse_tools_list_reply(reply) {
        Ok(tools) => {
            let again = parse_tools_list_reply(&json(&tools)).expect("tools list round trip");
            assert_eq!(again, tools, "tools list changed in a round trip");
        }
        Err(err) => check_error(&err, guard, "tools_list"),
    }

    // runtime.state / runtime.scene_state, and parse_state_reply agreeing with them.
    let state = parse_runtime_state_reply(reply);
    match &state {
        Ok(state) => {
            let again = parse_runtime_state_reply(&json(state)).expect("RuntimeState round trip");
            assert_eq!(&again, state, "RuntimeState changed in a round trip");
        }
        Err(err) => check_error(err, guard, "state"),
    }
    match (parse_state_reply("robot_status", reply), &state) {
        (Ok(StateReply::RobotStatus(a)), Ok(b)) => assert_eq!(&*a, b),
        (Err(_), Err(_)) => {}
        (a, b) => {
            panic!("parse_state_reply(robot_status) {a:?} disagrees with parse_runtime_state_reply {b:?}")
        }
    }
    let scene = parse_scene_state_reply(reply);
    match &scene {
        Ok(scene) => {
            let again = parse_scene_state_reply(&json(scene)).expect("SceneState round trip");
            assert_eq!(&again, scene, "SceneState changed in a round trip");
        }
        Err(err) => check_error(err, guard, "scene_state"),
    }
    match (parse_state_reply("scene_state", reply), &scene) {
        (Ok(StateReply::SceneState(a)), Ok(b)) => assert_eq!(&a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("parse_state_reply(scene_state) {a:?} disagrees with parse_scene_state_reply {b:?}"),
    }
    let raw = parse_raw_reply("runtime.battery", reply);
    match (parse_state_reply("battery", reply), &raw) {
        (Ok(StateReply::Raw(a)), Ok(b)) => assert_eq!(&a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("parse_state_reply(battery) {a:?} disagrees with parse_raw_reply {b:?}"),
    }
    match raw {
        Ok(raw) => {
            assert!(!guard);
            assert_eq!(Some(&raw), value.as_ref(), "raw reply is not the reply's JSON");
        }
        Err(err) => check_error(&err, guard, "raw"),
    }
    assert!(matches!(
        parse_state_reply("bad key", reply),
        Err(Error::InvalidInput { .. })
    ));

    // runtime.cancel
    match parse_cancel_reply(reply) {
        Ok(result) => {
            let again = parse_cancel_reply(&json(&result)).expect("cancel ActionResult round trip");
            assert_eq!(again, result);
        }
        Err(err) => check_error(&err, guard, "cancel"),
    }

    // runtime.capabilities
    assert!(matches!(
        parse_capabilities_reply(CapabilitiesOutcome::UnsupportedMethod),
        Ok(None)
    ));
    match parse_capabilities_reply(CapabilitiesOutcome::Reply(reply)) {
        Ok(Some(caps)) => {
            assert!(!guard);
            assert!(
                !caps.is_null() && caps.as_object().is_none_or(|o| !o.is_empty()),
                "empty capabilities must be None"
            );
            assert_eq!(Some(&caps), value.as_ref());
        }
        Ok(None) => {
            let empty = reply.trim().is_empty()
                || matches!(&value, Some(Value::Null))
                || value
                    .as_ref()
                    .and_then(Value::as_object)
                    .is_some_and(|o| o.is_empty())
                || value
                    .as_ref()
                    .and_then(guard_error)
                    .is_some_and(|info| info.code == RuntimeErrorCode::MethodNotFound);
            assert!(empty, "capabilities None for a reply that has a descriptor");
        }
        Err(err) => {
            check_error(&err, guard, "capabilities");
            if let Error::Runtime { code, .. } = &err {
                assert_ne!(
                    *code,
                    RuntimeErrorCode::MethodNotFound,
                    "METHOD_NOT_FOUND must mean no descriptor"
                );
            }
        }
    }

    // runtime.cameras_capture ack
    match parse_capture_ack(reply) {
        Ok(CaptureAck::InlineJpeg(bytes)) => assert!(is_jpeg(&bytes), "inline capture that is not a JPEG"),
        Ok(_) => {}
        Err(err) => check_error(&err, guard, "cameras_capture"),
    }

    // The tools_call request built from this JSON carries it unchanged, within the size cap.
    if let Some(input) = &value {
        match tools_call_request("go_to", input, ACTION_ID) {
            Ok(request) => {
                assert!(request.payload.len() <= calls::MAX_RPC_PAYLOAD_BYTES);
                let sent: Value = serde_json::from_str(&request.payload).expect("request payload is JSON");
                let expected = if input.is_null() {
                    serde_json::json!({})
                } else {
                    input.clone()
                };
                assert_eq!(
                    sent.get("input"),
                    Some(&expected),
                    "tools_call input changed on the way out"
                );
                assert_eq!(
                    sent.pointer("/options/action_id").and_then(Value::as_str),
                    Some(ACTION_ID)
                );
            }
            Err(err) => assert!(
                matches!(err, Error::InvalidInput { .. }),
                "tools_call_request: {err:?}"
            ),
        }
    }
});
