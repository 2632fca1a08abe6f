//! `runtime.*` RPC requests and replies (CONTRACT §8), as pure functions: build the payload,
//! interpret the reply. No I/O; nothing here panics on any reply.
//!
//! Reply text that cannot be decoded becomes [`Error::Decode`] without echoing string values
//! from the reply. A *guard envelope* (`{"status":"failed","error":{…}}` with no `meta`) means
//! the runtime refused the call: it becomes a failed [`ActionResult`] for `tools_call` and an
//! [`Error::Runtime`] for every other method.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::models::{ActionResult, RuntimeErrorInfo, RuntimeState, SceneState, ToolDescriptor};
use crate::error::{Error, Result};
use crate::runtime_error::RuntimeErrorCode;

/// The largest RPC request payload LiveKit carries: 15 KiB.
pub const MAX_RPC_PAYLOAD_BYTES: usize = 15 * 1024;

/// The byte-stream topic camera frames arrive on.
pub const CAMERA_CAPTURE_TOPIC: &str = "menlo.camera_capture";

/// The byte-stream attribute naming the capture request a frame answers.
pub const CAPTURE_REQUEST_ID_ATTRIBUTE: &str = "request_id";

/// The action id that cancels whatever action is active.
pub const CANCEL_ACTIVE: &str = "cancel-active";

/// Default reply timeout of reads and cancel.
pub const DEFAULT_READ_TIMEOUT: Duration = crate::session::timeouts::READ;

/// Default reply timeout of a tool call (the call blocks until the action ends).
pub const DEFAULT_TOOL_CALL_TIMEOUT: Duration = crate::session::timeouts::TOOL_CALL;

/// The code of a guard envelope without one.
pub const DEFAULT_RUNTIME_ERROR_CODE: RuntimeErrorCode = RuntimeErrorCode::RuntimeFailed;

/// The message of a guard envelope without one.
pub const DEFAULT_RUNTIME_ERROR_MESSAGE: &str = "runtime call failed";

/// The code of a failed capture ack without one.
pub const DEFAULT_CAPTURE_ERROR_CODE: RuntimeErrorCode = RuntimeErrorCode::CaptureFailed;

/// The read key answered by `runtime.state`.
pub const ROBOT_STATUS_KEY: &str = "robot_status";

/// The read key answered by `runtime.scene_state`.
pub const SCENE_STATE_KEY: &str = "scene_state";

/// Runtime RPC method names.
pub mod method {
    /// List the runtime's tools.
    pub const TOOLS_LIST: &str = "runtime.tools_list";
    /// Run a tool; replies when the action ends.
    pub const TOOLS_CALL: &str = "runtime.tools_call";
    /// Runtime and robot state (read key `robot_status`).
    pub const STATE: &str = "runtime.state";
    /// Scene state (read key `scene_state`).
    pub const SCENE_STATE: &str = "runtime.scene_state";
    /// The runtime's capability descriptor (absent on old runtimes).
    pub const CAPABILITIES: &str = "runtime.capabilities";
    /// Cancel an action.
    pub const CANCEL: &str = "runtime.cancel";
    /// Capture a camera frame.
    pub const CAMERAS_CAPTURE: &str = "runtime.cameras_capture";
    /// Forward an opaque envelope to the runtime.
    pub const FORWARD_ENVELOPE: &str = "runtime.forward_envelope";
}

/// One RPC request, ready for the engine: method, JSON payload (size-checked) and the
/// default reply timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcRequest {
    /// The RPC method, e.g. `runtime.tools_call`.
    pub method: String,
    /// The JSON payload text, at most [`MAX_RPC_PAYLOAD_BYTES`].
    pub payload: String,
    /// The default reply timeout for this method.
    pub timeout: Duration,
}

impl RpcRequest {
    fn new(method: impl Into<String>, payload: &Value, timeout: Duration) -> Result<Self> {
        let payload = payload.to_string();
        check_payload_size(&payload)?;
        Ok(RpcRequest {
            method: method.into(),
            payload,
            timeout,
        })
    }

    fn read(method: impl Into<String>) -> Self {
        RpcRequest {
            method: method.into(),
            payload: "{}".to_owned(),
            timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// A fresh action id: `act_` and 12 lowercase hex digits.
pub fn new_action_id() -> String {
    format!("act_{:012x}", fastrand::u64(..1 << 48))
}

/// A fresh capture request id (`cap_` and 12 lowercase hex digits), matched against the
/// frame's byte stream.
pub fn new_capture_request_id() -> String {
    format!("cap_{:012x}", fastrand::u64(..1 << 48))
}

/// Refuses a payload over LiveKit's 15 KiB RPC cap ([`Error::InvalidInput`] on `payload`).
pub fn check_payload_size(payload: &str) -> Result<()> {
    if payload.len() > MAX_RPC_PAYLOAD_BYTES {
        return Err(Error::invalid(
            "payload",
            format!(
                "the RPC request is {} bytes; LiveKit carries at most {MAX_RPC_PAYLOAD_BYTES} bytes (15 KiB)",
                payload.len()
            ),
        ));
    }
    Ok(())
}

fn require_non_empty(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    Ok(())
}

/// `runtime.tools_list` with `{}`.
pub fn tools_list_request() -> RpcRequest {
    RpcRequest::read(method::TOOLS_LIST)
}

/// `runtime.tools_call` for tool `name` with `input` (an object; `null` counts as `{}`),
/// tagged with `action_id` (see [`new_action_id`]).
pub fn tools_call_request(name: &str, input: &Value, action_id: &str) -> Result<RpcRequest> {
    require_non_empty("name", name)?;
    require_non_empty("action_id", action_id)?;
    let input = match input {
        Value::Null => Value::Object(Map::new()),
        Value::Object(_) => input.clone(),
        _ => return Err(Error::invalid("input", "must be a JSON object")),
    };
    let payload = json!({"name": name, "input": input, "options": {"action_id": action_id}});
    RpcRequest::new(method::TOOLS_CALL, &payload, DEFAULT_TOOL_CALL_TIMEOUT)
}

/// Checks a state read key: non-empty, ASCII letters, digits and `_` only.
pub fn validate_state_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("key", "must not be empty"));
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::invalid(
            "key",
            "may hold only ASCII letters, digits and '_'",
        ));
    }
    Ok(())
}

/// The RPC method of a state read key: `robot_status` → `runtime.state`, `scene_state` →
/// `runtime.scene_state`, any other key `k` → `runtime.k`. Refuses an invalid key.
pub fn state_method_for_key(key: &str) -> Result<String> {
    validate_state_key(key)?;
    Ok(match key {
        ROBOT_STATUS_KEY => method::STATE.to_owned(),
        SCENE_STATE_KEY => method::SCENE_STATE.to_owned(),
        other => format!("runtime.{other}"),
    })
}

/// The read of state key `key` with `{}` (see [`state_method_for_key`]).
pub fn state_request(key: &str) -> Result<RpcRequest> {
    Ok(RpcRequest::read(state_method_for_key(key)?))
}

/// `runtime.capabilities` with `{}`.
pub fn capabilities_request() -> RpcRequest {
    RpcRequest::read(method::CAPABILITIES)
}

/// `runtime.cancel` of `action_id` (or [`CANCEL_ACTIVE`]).
pub fn cancel_request(action_id: &str) -> Result<RpcRequest> {
    require_non_empty("action_id", action_id)?;
    RpcRequest::new(
        method::CANCEL,
        &json!({"options": {"action_id": action_id}}),
        DEFAULT_READ_TIMEOUT,
    )
}

/// `runtime.forward_envelope` carrying `envelope` base64-encoded.
pub fn forward_envelope_request(envelope: &[u8]) -> Result<RpcRequest> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(envelope);
    RpcRequest::new(
        method::FORWARD_ENVELOPE,
        &json!({"envelope": encoded}),
        DEFAULT_READ_TIMEOUT,
    )
}

/// Size and quality of a camera capture. Defaults: 1280×720, quality 0.7.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct CaptureOptions {
    /// Frame width, pixels (> 0).
    pub width: u32,
    /// Frame height, pixels (> 0).
    pub height: u32,
    /// JPEG quality in (0, 1].
    pub quality: f64,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            width: 1280,
            height: 720,
            quality: 0.7,
        }
    }
}

impl CaptureOptions {
    /// The defaults: 1280×720, quality 0.7.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the frame width.
    pub fn width(mut self, width: u32) -> Self {
        self.width = width;
        self
    }

    /// Sets the frame height.
    pub fn height(mut self, height: u32) -> Self {
        self.height = height;
        self
    }

    /// Sets the JPEG quality.
    pub fn quality(mut self, quality: f64) -> Self {
        self.quality = quality;
        self
    }

    /// Refuses a zero width or height, or a quality outside (0, 1].
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 {
            return Err(Error::invalid("width", "must be greater than 0"));
        }
        if self.height == 0 {
            return Err(Error::invalid("height", "must be greater than 0"));
        }
        if !(self.quality > 0.0 && self.quality <= 1.0) {
            return Err(Error::invalid("quality", "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// `runtime.cameras_capture` of camera `camera_id`; the frame will arrive on a byte stream
/// tagged `request_id` (see [`new_capture_request_id`]).
pub fn cameras_capture_request(
    camera_id: &str,
    options: &CaptureOptions,
    request_id: &str,
) -> Result<RpcRequest> {
    require_non_empty("camera_id", camera_id)?;
    require_non_empty("request_id", request_id)?;
    options.validate()?;
    let payload = json!({
        "selector": {"kind": "id", "id": camera_id},
        "options": {"width": options.width, "height": options.height, "quality": options.quality},
        "stream": {"id": request_id, "topic": CAMERA_CAPTURE_TOPIC},
    });
    RpcRequest::new(method::CAMERAS_CAPTURE, &payload, DEFAULT_READ_TIMEOUT)
}

/// The error of a guard envelope, if `reply` is one: an object with `status` `failed` and no
/// `meta`. A missing code or message reads [`DEFAULT_RUNTIME_ERROR_CODE`] /
/// [`DEFAULT_RUNTIME_ERROR_MESSAGE`].
pub fn guard_error(reply: &Value) -> Option<RuntimeErrorInfo> {
    let object = reply.as_object()?;
    if object.get("status").and_then(Value::as_str) != Some("failed") || object.contains_key("meta") {
        return None;
    }
    Some(error_info(
        object.get("error"),
        DEFAULT_RUNTIME_ERROR_CODE,
        DEFAULT_RUNTIME_ERROR_MESSAGE,
    ))
}

fn error_info(
    error: Option<&Value>,
    default_code: RuntimeErrorCode,
    default_message: &str,
) -> RuntimeErrorInfo {
    let text = |key: &str| {
        error
            .and_then(|error| error.get(key))
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    RuntimeErrorInfo {
        code: text("code").map_or(default_code, |code| RuntimeErrorCode::from_wire(&code)),
        message: text("message").unwrap_or_else(|| default_message.to_owned()),
        details: error
            .and_then(|error| error.get("details"))
            .filter(|d| !d.is_null())
            .cloned(),
    }
}

fn runtime_error(info: RuntimeErrorInfo) -> Error {
    Error::Runtime {
        code: info.code,
        message: info.message,
    }
}

fn reply_what(method: &str) -> String {
    format!("{method} reply")
}

fn parse_json(method: &str, reply: &str) -> Result<Value> {
    if reply.trim().is_empty() {
        return Err(Error::Decode {
            what: reply_what(method),
            reason: "the reply is empty".to_owned(),
        });
    }
    serde_json::from_str(reply).map_err(|err| Error::decode(reply_what(method), &err))
}

fn decode_value<T: for<'de> Deserialize<'de>>(method: &str, value: &Value) -> Result<T> {
    T::deserialize(value).map_err(|err| Error::decode(reply_what(method), &err))
}

/// Parses `reply` and turns a guard envelope into [`Error::Runtime`].
fn parse_guarded(method: &str, reply: &str) -> Result<Value> {
    let value = parse_json(method, reply)?;
    match guard_error(&value) {
        Some(info) => Err(runtime_error(info)),
        None => Ok(value),
    }
}

/// Interprets a `runtime.tools_call` reply. A guard envelope becomes a failed
/// [`ActionResult`] carrying `action_id` and zero timestamps, not an error.
pub fn parse_tools_call_reply(reply: &str, action_id: &str) -> Result<ActionResult> {
    let value = parse_json(method::TOOLS_CALL, reply)?;
    if let Some(info) = guard_error(&value) {
        return Ok(ActionResult::failed_with(action_id, info));
    }
    decode_value(method::TOOLS_CALL, &value)
}

/// Interprets a `runtime.tools_list` reply: an array of descriptors (an object with a
/// `tools` array is accepted too).
pub fn parse_tools_list_reply(reply: &str) -> Result<Vec<ToolDescriptor>> {
    let value = parse_guarded(method::TOOLS_LIST, reply)?;
    let tools = match &value {
        Value::Object(object) if object.get("tools").is_some_and(Value::is_array) => &object["tools"],
        other => other,
    };
    decode_value(method::TOOLS_LIST, tools)
}

/// A decoded state read.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StateReply {
    /// Key `robot_status` (boxed: much larger than the others).
    RobotStatus(Box<RuntimeState>),
    /// Key `scene_state`.
    SceneState(SceneState),
    /// Any other key, passed through.
    Raw(Value),
}

/// Interprets the reply to a read of state key `key` (see [`state_method_for_key`]).
pub fn parse_state_reply(key: &str, reply: &str) -> Result<StateReply> {
    let method = state_method_for_key(key)?;
    let value = parse_guarded(&method, reply)?;
    Ok(match key {
        ROBOT_STATUS_KEY => StateReply::RobotStatus(Box::new(decode_value(&method, &value)?)),
        SCENE_STATE_KEY => StateReply::SceneState(decode_value(&method, &value)?),
        _ => StateReply::Raw(value),
    })
}

/// Interprets a `runtime.state` reply.
pub fn parse_runtime_state_reply(reply: &str) -> Result<RuntimeState> {
    decode_value(method::STATE, &parse_guarded(method::STATE, reply)?)
}

/// Interprets a `runtime.scene_state` reply.
pub fn parse_scene_state_reply(reply: &str) -> Result<SceneState> {
    decode_value(method::SCENE_STATE, &parse_guarded(method::SCENE_STATE, reply)?)
}

/// Interprets the reply of any method answering raw JSON (other state keys,
/// `runtime.forward_envelope`): the JSON value, or [`Error::Runtime`] for a guard envelope.
pub fn parse_raw_reply(method: &str, reply: &str) -> Result<Value> {
    parse_guarded(method, reply)
}

/// How a `runtime.capabilities` call came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilitiesOutcome<'a> {
    /// The runtime replied with this payload.
    Reply(&'a str),
    /// LiveKit answered `UNSUPPORTED_METHOD` (no handler registered for the method).
    UnsupportedMethod,
}

/// Interprets a `runtime.capabilities` outcome: `None` ("no descriptor") for a
/// `METHOD_NOT_FOUND` guard, an empty reply (blank, `null` or `{}`) or LiveKit's
/// `UNSUPPORTED_METHOD`; other guards are [`Error::Runtime`].
pub fn parse_capabilities_reply(outcome: CapabilitiesOutcome<'_>) -> Result<Option<Value>> {
    let reply = match outcome {
        CapabilitiesOutcome::UnsupportedMethod => return Ok(None),
        CapabilitiesOutcome::Reply(reply) => reply,
    };
    if reply.trim().is_empty() {
        return Ok(None);
    }
    let value = parse_json(method::CAPABILITIES, reply)?;
    if let Some(info) = guard_error(&value) {
        if info.code == RuntimeErrorCode::MethodNotFound {
            return Ok(None);
        }
        return Err(runtime_error(info));
    }
    match &value {
        Value::Null => Ok(None),
        Value::Object(object) if object.is_empty() => Ok(None),
        _ => Ok(Some(value)),
    }
}

/// Interprets a `runtime.cancel` reply: the cancelled action's result. A guard envelope is
/// [`Error::Runtime`].
pub fn parse_cancel_reply(reply: &str) -> Result<ActionResult> {
    decode_value(method::CANCEL, &parse_guarded(method::CANCEL, reply)?)
}

/// How a successful capture ack says the frame travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureAck {
    /// The frame comes (or came) on a byte stream on [`CAMERA_CAPTURE_TOPIC`]: wait for it.
    ByteStream,
    /// An older runtime sent the JPEG inline; these are its bytes.
    InlineJpeg(Vec<u8>),
}

/// Interprets a `runtime.cameras_capture` ack.
///
/// A failed ack (guard envelope or failed result) is [`Error::Runtime`], code
/// [`DEFAULT_CAPTURE_ERROR_CODE`] when the runtime gave none. `result.payload.kind`
/// `inline_base64` (or no kind but a `base64` field) yields the decoded JPEG; `byte_stream`,
/// an unknown kind or no payload at all means "wait for the stream".
pub fn parse_capture_ack(reply: &str) -> Result<CaptureAck> {
    let what = reply_what(method::CAMERAS_CAPTURE);
    let value = parse_json(method::CAMERAS_CAPTURE, reply)?;
    let Value::Object(object) = &value else {
        return Err(Error::Decode {
            what,
            reason: "expected a JSON object".to_owned(),
        });
    };
    match object.get("status").and_then(Value::as_str) {
        Some("done") => {}
        Some("failed") => {
            return Err(runtime_error(error_info(
                object.get("error"),
                DEFAULT_CAPTURE_ERROR_CODE,
                "camera capture failed",
            )))
        }
        _ => {
            return Err(Error::Decode {
                what,
                reason: "missing or unknown `status`".to_owned(),
            })
        }
    }
    let payload = object.get("result").and_then(|result| result.get("payload"));
    let kind = payload
        .and_then(|payload| payload.get("kind"))
        .and_then(Value::as_str);
    let base64 = payload.and_then(|payload| payload.get("base64"));
    let inline = match kind {
        Some("inline_base64") => true,
        None => base64.is_some(),
        Some(_) => false,
    };
    if !inline {
        return Ok(CaptureAck::ByteStream);
    }
    let Some(text) = base64.and_then(Value::as_str) else {
        return Err(Error::Decode {
            what,
            reason: "`result.payload.base64` is missing or not a string".to_owned(),
        });
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| Error::Decode {
            what: what.clone(),
            reason: "`result.payload.base64` is not valid base64".to_owned(),
        })?;
    check_jpeg(&bytes, &what)?;
    Ok(CaptureAck::InlineJpeg(bytes))
}

/// True when `bytes` start like a JPEG (`FF D8 FF`).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Refuses bytes that are not a JPEG ([`Error::Decode`] about `what`).
pub fn check_jpeg(bytes: &[u8], what: &str) -> Result<()> {
    if is_jpeg(bytes) {
        return Ok(());
    }
    Err(Error::Decode {
        what: what.to_owned(),
        reason: format!(
            "expected JPEG bytes (FF D8 FF), got {} bytes that are not a JPEG",
            bytes.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(request: &RpcRequest) -> Value {
        serde_json::from_str(&request.payload).unwrap()
    }

    fn invalid_field(err: Error) -> String {
        match err {
            Error::InvalidInput { field, .. } => field,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn action_ids_have_the_contract_shape() {
        for _ in 0..100 {
            let id = new_action_id();
            let hex = id.strip_prefix("act_").unwrap();
            assert_eq!(hex.len(), 12, "{id}");
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
        assert_ne!(new_action_id(), new_action_id());
        assert!(new_capture_request_id().starts_with("cap_"));
    }

    #[test]
    fn tools_call_request_shape() {
        let request = tools_call_request(
            "go_to",
            &json!({"target": {"kind": "entity", "entity_id": "pad_B"}}),
            "act_1",
        )
        .unwrap();
        assert_eq!(request.method, "runtime.tools_call");
        assert_eq!(request.timeout, Duration::from_secs(90));
        assert_eq!(
            payload(&request),
            json!({"name": "go_to", "input": {"target": {"kind": "entity", "entity_id": "pad_B"}}, "options": {"action_id": "act_1"}})
        );
        assert_eq!(
            payload(&tools_call_request("x", &Value::Null, "a").unwrap())["input"],
            json!({})
        );
        assert_eq!(
            invalid_field(tools_call_request("x", &json!([1]), "a").unwrap_err()),
            "input"
        );
        assert_eq!(
            invalid_field(tools_call_request("", &json!({}), "a").unwrap_err()),
            "name"
        );
    }

    #[test]
    fn read_requests() {
        let list = tools_list_request();
        assert_eq!(
            (list.method.as_str(), list.payload.as_str()),
            ("runtime.tools_list", "{}")
        );
        assert_eq!(list.timeout, Duration::from_secs(30));
        assert_eq!(capabilities_request().method, "runtime.capabilities");
        assert_eq!(state_request("battery").unwrap().method, "runtime.battery");
    }

    #[test]
    fn state_keys_map_to_methods() {
        assert_eq!(state_method_for_key("robot_status").unwrap(), "runtime.state");
        assert_eq!(
            state_method_for_key("scene_state").unwrap(),
            "runtime.scene_state"
        );
        assert_eq!(state_method_for_key("Battery_2").unwrap(), "runtime.Battery_2");
        for bad in ["", "a.b", "a b", "x/../y", "é", "tools_call;"] {
            assert_eq!(
                invalid_field(state_method_for_key(bad).unwrap_err()),
                "key",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cancel_request_shape() {
        let request = cancel_request(CANCEL_ACTIVE).unwrap();
        assert_eq!(request.method, "runtime.cancel");
        assert_eq!(
            payload(&request),
            json!({"options": {"action_id": "cancel-active"}})
        );
        assert_eq!(
            payload(&cancel_request("act_abc").unwrap())["options"]["action_id"],
            "act_abc"
        );
        assert!(cancel_request("").is_err());
    }

    #[test]
    fn capture_request_shape_and_validation() {
        let request = cameras_capture_request("pov", &CaptureOptions::default(), "cap_1").unwrap();
        assert_eq!(request.method, "runtime.cameras_capture");
        assert_eq!(
            payload(&request),
            json!({
                "selector": {"kind": "id", "id": "pov"},
                "options": {"width": 1280, "height": 720, "quality": 0.7},
                "stream": {"id": "cap_1", "topic": "menlo.camera_capture"}
            })
        );
        let options = CaptureOptions::new().width(640).height(480).quality(1.0);
        assert_eq!(
            payload(&cameras_capture_request("topdown", &options, "r").unwrap())["options"]["width"],
            640
        );
        let field = |id: &str, options: CaptureOptions| {
            invalid_field(cameras_capture_request(id, &options, "r").unwrap_err())
        };
        assert_eq!(field("", CaptureOptions::default()), "camera_id");
        assert_eq!(field("pov", CaptureOptions::new().width(0)), "width");
        assert_eq!(field("pov", CaptureOptions::new().height(0)), "height");
        for quality in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(
                field("pov", CaptureOptions::new().quality(quality)),
                "quality",
                "{quality}"
            );
        }
    }

    #[test]
    fn forward_envelope_request_shape() {
        let request = forward_envelope_request(b"\x00\x01hello").unwrap();
        assert_eq!(request.method, "runtime.forward_envelope");
        assert_eq!(payload(&request), json!({"envelope": "AAFoZWxsbw=="}));
    }

    #[test]
    fn payloads_over_15_kib_are_refused() {
        assert!(check_payload_size(&"x".repeat(15360)).is_ok());
        assert_eq!(
            invalid_field(check_payload_size(&"x".repeat(15361)).unwrap_err()),
            "payload"
        );
        let big = json!({"blob": "y".repeat(16 * 1024)});
        assert_eq!(
            invalid_field(tools_call_request("t", &big, "a").unwrap_err()),
            "payload"
        );
        assert!(forward_envelope_request(&vec![0u8; 12 * 1024]).is_err());
        assert!(forward_envelope_request(&vec![0u8; 11 * 1024]).is_ok());
    }

    const GUARD: &str = r#"{"status":"failed","error":{"code":"NOT_READY","message":"runtime is loading"}}"#;

    #[test]
    fn guard_detection() {
        let info = guard_error(&serde_json::from_str(GUARD).unwrap()).unwrap();
        assert_eq!(
            (info.code.as_str(), info.message.as_str()),
            ("NOT_READY", "runtime is loading")
        );
        let bare = guard_error(&json!({"status": "failed"})).unwrap();
        assert_eq!(
            (bare.code.as_str(), bare.message.as_str()),
            ("RUNTIME_FAILED", "runtime call failed")
        );
        let odd = guard_error(&json!({"status": "failed", "error": {"code": 7, "message": ""}})).unwrap();
        assert_eq!(
            (odd.code.as_str(), odd.message.as_str()),
            ("RUNTIME_FAILED", "runtime call failed")
        );
        assert!(guard_error(&json!({"status": "failed", "error": {}, "meta": {}})).is_none());
        assert!(guard_error(&json!({"status": "done"})).is_none());
        assert!(guard_error(&json!([])).is_none());
    }

    #[test]
    fn tools_call_guard_becomes_failed_result() {
        let result = parse_tools_call_reply(GUARD, "act_000000000001").unwrap();
        assert!(!result.is_done());
        assert_eq!(result.meta.action_id, "act_000000000001");
        assert_eq!(
            (
                result.meta.started_at_ms,
                result.meta.finished_at_ms,
                result.meta.duration_ms
            ),
            (0, 0, 0)
        );
        assert_eq!(result.error.unwrap().code, RuntimeErrorCode::NotReady);
    }

    #[test]
    fn tools_call_reply_decodes() {
        let reply = r#"{"status":"failed","error":{"code":"NAVIGATION_STUCK","message":"blocked"},
            "meta":{"action_id":"act_x","started_at_ms":1,"finished_at_ms":2,"duration_ms":1}}"#;
        let result = parse_tools_call_reply(reply, "act_x").unwrap();
        assert_eq!(result.error.unwrap().code, RuntimeErrorCode::NavigationStuck);
        assert!(matches!(
            parse_tools_call_reply("", "a"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            parse_tools_call_reply(r#"{"status":"done"}"#, "a"),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn other_methods_turn_guards_into_runtime_errors() {
        let check = |err: Error| match err {
            Error::Runtime { code, message } => assert_eq!(
                (code.as_str(), message.as_str()),
                ("NOT_READY", "runtime is loading")
            ),
            other => panic!("{other:?}"),
        };
        check(parse_tools_list_reply(GUARD).unwrap_err());
        check(parse_state_reply("robot_status", GUARD).unwrap_err());
        check(parse_state_reply("battery", GUARD).unwrap_err());
        check(parse_cancel_reply(GUARD).unwrap_err());
        check(parse_raw_reply(method::FORWARD_ENVELOPE, GUARD).unwrap_err());
        check(parse_capabilities_reply(CapabilitiesOutcome::Reply(GUARD)).unwrap_err());
        check(parse_runtime_state_reply(GUARD).unwrap_err());
    }

    #[test]
    fn tools_list_reply_decodes() {
        let reply = r#"[{"name":"go_to","description":"walk","input_schema":{"type":"object"}},
                        {"name":"set_velocity","description":"spin","input_schema":{},"cost":{"cpu_heavy":false}}]"#;
        let tools = parse_tools_list_reply(reply).unwrap();
        assert_eq!(
            tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["go_to", "set_velocity"]
        );
        assert!(parse_tools_list_reply("[]").unwrap().is_empty());
        assert_eq!(parse_tools_list_reply(r#"{"tools":[]}"#).unwrap(), vec![]);
        assert!(matches!(
            parse_tools_list_reply(r#"{"x":1}"#),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn state_replies_by_key() {
        let state = json!({
            "timestamp": {"wall_time_ms": 1},
            "runtime": {"status": "ready", "accepts_tool_calls": true, "accepts_capture_requests": true},
            "robot": {"entity_id": "r", "status": "ready"}
        })
        .to_string();
        assert!(matches!(
            parse_state_reply("robot_status", &state).unwrap(),
            StateReply::RobotStatus(_)
        ));
        assert!(parse_runtime_state_reply(&state).is_ok());
        let scene = r#"{"timestamp":{"wall_time_ms":1},"entities":{}}"#;
        assert!(matches!(
            parse_state_reply("scene_state", scene).unwrap(),
            StateReply::SceneState(_)
        ));
        assert!(parse_scene_state_reply(scene).is_ok());
        assert_eq!(
            parse_state_reply("battery", r#"{"level":0.5}"#).unwrap(),
            StateReply::Raw(json!({"level": 0.5}))
        );
        assert!(matches!(
            parse_state_reply("robot_status", scene),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            parse_state_reply("a-b", "{}"),
            Err(Error::InvalidInput { .. })
        ));
    }

    #[test]
    fn capabilities_none_cases() {
        assert_eq!(
            parse_capabilities_reply(CapabilitiesOutcome::UnsupportedMethod).unwrap(),
            None
        );
        assert_eq!(
            parse_capabilities_reply(CapabilitiesOutcome::Reply("")).unwrap(),
            None
        );
        assert_eq!(
            parse_capabilities_reply(CapabilitiesOutcome::Reply("  ")).unwrap(),
            None
        );
        assert_eq!(
            parse_capabilities_reply(CapabilitiesOutcome::Reply("null")).unwrap(),
            None
        );
        assert_eq!(
            parse_capabilities_reply(CapabilitiesOutcome::Reply("{}")).unwrap(),
            None
        );
        let not_found =
            r#"{"status":"failed","error":{"code":"METHOD_NOT_FOUND","message":"no such method"}}"#;
        assert_eq!(
            parse_capabilities_reply(CapabilitiesOutcome::Reply(not_found)).unwrap(),
            None
        );
        assert_eq!(
            parse_capabilities_reply(CapabilitiesOutcome::Reply(r#"{"cameras":["pov"]}"#)).unwrap(),
            Some(json!({"cameras": ["pov"]}))
        );
        assert!(matches!(
            parse_capabilities_reply(CapabilitiesOutcome::Reply("{")),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn cancel_reply_decodes() {
        let reply = r#"{"status":"failed","error":{"code":"CANCELLED","message":"cancelled"},
            "meta":{"action_id":"act_y","started_at_ms":1,"finished_at_ms":9,"duration_ms":8}}"#;
        let result = parse_cancel_reply(reply).unwrap();
        assert!(result.is_cancelled());
        assert_eq!(result.meta.action_id, "act_y");
    }

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];

    fn ack(payload: Value) -> String {
        json!({"status": "done", "result": {"payload": payload},
               "meta": {"action_id": "act_c", "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1}})
        .to_string()
    }

    #[test]
    fn capture_ack_kinds() {
        assert_eq!(
            parse_capture_ack(&ack(json!({"kind": "byte_stream"}))).unwrap(),
            CaptureAck::ByteStream
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(JPEG);
        assert_eq!(
            parse_capture_ack(&ack(json!({"kind": "inline_base64", "base64": encoded}))).unwrap(),
            CaptureAck::InlineJpeg(JPEG.to_vec())
        );
        assert_eq!(
            parse_capture_ack(&ack(json!({"base64": encoded}))).unwrap(),
            CaptureAck::InlineJpeg(JPEG.to_vec())
        );
        assert_eq!(
            parse_capture_ack(&ack(json!({"kind": "webrtc_track"}))).unwrap(),
            CaptureAck::ByteStream
        );
        assert_eq!(
            parse_capture_ack(&ack(Value::Null)).unwrap(),
            CaptureAck::ByteStream
        );
        assert_eq!(
            parse_capture_ack(r#"{"status":"done"}"#).unwrap(),
            CaptureAck::ByteStream
        );
    }

    #[test]
    fn capture_ack_failures() {
        match parse_capture_ack(r#"{"status":"failed","error":{"message":"no such camera"}}"#).unwrap_err() {
            Error::Runtime { code, message } => assert_eq!(
                (code.as_str(), message.as_str()),
                ("CAPTURE_FAILED", "no such camera")
            ),
            other => panic!("{other:?}"),
        }
        match parse_capture_ack(GUARD).unwrap_err() {
            Error::Runtime { code, .. } => assert_eq!(code, RuntimeErrorCode::NotReady),
            other => panic!("{other:?}"),
        }
        let secret = "c2VjcmV0LXRva2Vu!!";
        let err = parse_capture_ack(&ack(json!({"kind": "inline_base64", "base64": secret}))).unwrap_err();
        assert!(
            matches!(err, Error::Decode { .. }) && !err.to_string().contains(secret),
            "{err}"
        );
        let not_jpeg = base64::engine::general_purpose::STANDARD.encode(b"PNG....");
        assert!(matches!(
            parse_capture_ack(&ack(json!({"kind": "inline_base64", "base64": not_jpeg}))),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            parse_capture_ack(&ack(json!({"kind": "inline_base64"}))),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(parse_capture_ack("[]"), Err(Error::Decode { .. })));
        assert!(matches!(
            parse_capture_ack(r#"{"status":"sent"}"#),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn jpeg_check() {
        assert!(is_jpeg(JPEG));
        assert!(!is_jpeg(&[0xFF, 0xD8]));
        assert!(!is_jpeg(b""));
        assert!(check_jpeg(b"\x89PNG", "frame").is_err());
    }

    #[test]
    fn decode_errors_do_not_echo_reply_strings() {
        let reply = r#"{"status":"done","meta":{"action_id":"act","started_at_ms":"sk_live_SECRET","finished_at_ms":1,"duration_ms":1}}"#;
        let err = parse_tools_call_reply(reply, "a").unwrap_err().to_string();
        assert!(!err.contains("SECRET"), "{err}");
        let err = parse_tools_list_reply(r#"["sk_live_SECRET"]"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
        let err = parse_runtime_state_reply(r#"{"timestamp":"sk_live_SECRET"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn no_reply_panics() {
        let odd = [
            "",
            " ",
            "null",
            "0",
            "\"x\"",
            "[",
            "{}",
            "[]",
            "{\"status\":null}",
            "{\"status\":\"failed\",\"error\":7}",
            "{\"status\":\"done\",\"result\":{\"payload\":{\"kind\":5,\"base64\":[]}}}",
            "\u{0}",
            "{\"meta\":null}",
        ];
        for reply in odd {
            let _ = parse_tools_call_reply(reply, "a");
            let _ = parse_tools_list_reply(reply);
            let _ = parse_state_reply("robot_status", reply);
            let _ = parse_state_reply("scene_state", reply);
            let _ = parse_state_reply("other", reply);
            let _ = parse_capabilities_reply(CapabilitiesOutcome::Reply(reply));
            let _ = parse_cancel_reply(reply);
            let _ = parse_capture_ack(reply);
        }
    }
}
