//! `ApiError::from_response` on arbitrary status, body and reason phrase (CONTRACT §3).
//!
//! Input layout (so seeds stay readable): `[status_hi, status_lo, reason_len, reason…, body…]`.
//! Properties: never panics; `status` is kept; `code` is the body's own (non-empty string or
//! number) or a documented fallback, never empty for an object body; `message` is the first
//! non-empty `message`/`error`/`detail` (strings as is), never empty for an object body;
//! `details` is exactly the body's `details` object; `request_id`/`trace_id` come only from
//! `details` (strings or numbers as text; a top-level `request_id` is never picked up).
#![no_main]

use libfuzzer_sys::fuzz_target;
use menlo_robot_sdk::{ApiError, Error};
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]);
    let reason_len = usize::from(data[2]).min(data.len() - 3);
    let reason = String::from_utf8_lossy(&data[3..3 + reason_len]);
    let body = &data[3 + reason_len..];

    let err = ApiError::from_response(status, body, &reason);
    let parsed: Option<Map<String, Value>> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };

    assert_eq!(err.status, status);

    // details: exactly the body's `details` object, or empty.
    let expected_details = parsed
        .as_ref()
        .and_then(|o| o.get("details"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    assert_eq!(err.details, expected_details);

    // request_id / trace_id: only ever read from `details`.
    let from_details = |key: &str| as_text(expected_details.get(key));
    assert_eq!(err.request_id, from_details("request_id"));
    assert_eq!(err.trace_id, from_details("trace_id"));

    match &parsed {
        None => {
            // Not JSON or not an object: `http.error` with the trimmed text or the reason.
            assert_eq!(err.code, "http.error");
            let text = String::from_utf8_lossy(body);
            let trimmed = text.trim();
            let expected = if trimmed.is_empty() {
                reason.as_ref()
            } else {
                trimmed
            };
            assert_eq!(err.message, expected);
        }
        Some(object) => {
            let given_code = as_text(object.get("code"));
            let fallbacks = [
                "unknown.error",
                "request.validation_error",
                &format!("http.{status}"),
            ];
            match &given_code {
                Some(code) => assert_eq!(&err.code, code, "the body's code was not kept"),
                None => assert!(
                    fallbacks.contains(&err.code.as_str()),
                    "undocumented code {:?}",
                    err.code
                ),
            }
            assert!(!err.message.is_empty(), "empty message from an object body");
            let first_source = ["message", "error", "detail"]
                .iter()
                .find_map(|key| object.get(*key).filter(|value| is_present(value)));
            match first_source {
                None => assert_eq!(err.message, "Unknown error"),
                Some(Value::String(text)) => assert_eq!(&err.message, text),
                Some(_) => assert!(
                    serde_json::from_str::<Value>(&err.message).is_ok(),
                    "a non-string source was not rendered as JSON: {:?}",
                    err.message
                ),
            }
            let only_detail = ["message", "error"]
                .iter()
                .all(|key| !object.get(*key).is_some_and(is_present))
                && object.get("detail").is_some_and(is_present);
            if status == 422 && given_code.is_none() && only_detail {
                assert_eq!(err.code, "request.validation_error");
            }
        }
    }

    // Display of the error and of the wrapping SDK error never panics and shows code: message.
    let shown = err.to_string();
    assert_eq!(shown, format!("{}: {}", err.code, err.message));
    let wrapped = Error::from(err.clone());
    assert_eq!(wrapped.status(), Some(status));
    assert_eq!(wrapped.to_string(), shown);
    let _ = format!("{wrapped:?}");
});

/// A code or id as the SDK reads it: a non-empty string, or a number as text.
fn as_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A message source counts unless it is `null` or an empty string.
fn is_present(value: &Value) -> bool {
    !matches!(value, Value::Null) && value.as_str() != Some("")
}
