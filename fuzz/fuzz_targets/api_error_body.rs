//! `ApiError::from_response` on arbitrary status, body and reason phrase (CONTRACT §3).
//!
//! Input layout (so seeds stay readable): `[status_hi, status_lo, reason_len, reason…, body…]`.
//! Properties: never panics; `status` is kept; `code` is non-empty unless the body itself
//! gave `"code": ""`; `message` is empty only when its documented source was empty;
//! `details` is exactly the body's `details` object; `request_id`/`trace_id` come only from
//! `details` (a top-level `request_id` is never picked up).
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
    let from_details = |key: &str| {
        expected_details
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
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
            let given_code = object.get("code").and_then(Value::as_str);
            // code: as given, or one of the documented fallbacks; empty only if given empty.
            let fallbacks = [
                "unknown.error",
                "request.validation_error",
                &format!("http.{status}"),
            ];
            assert!(
                Some(err.code.as_str()) == given_code || fallbacks.contains(&err.code.as_str()),
                "undocumented code {:?}",
                err.code
            );
            if err.code.is_empty() {
                assert_eq!(given_code, Some(""), "empty code that the body did not give");
            }
            // message: empty only when the field it came from was an empty string.
            if err.message.is_empty() {
                let empty_source = ["message", "error", "detail"]
                    .iter()
                    .any(|key| object.get(*key).and_then(Value::as_str) == Some(""));
                assert!(
                    empty_source,
                    "empty message from a body with no empty message/error/detail"
                );
            }
            if object.get("message").and_then(Value::as_str).is_none()
                && object.get("error").and_then(Value::as_str).is_none()
                && object.get("detail").is_none()
            {
                assert_eq!(err.message, "Unknown error");
            }
            if status == 422
                && object.get("message").and_then(Value::as_str).is_none()
                && object.get("error").and_then(Value::as_str).is_none()
                && object.get("detail").is_some()
            {
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
