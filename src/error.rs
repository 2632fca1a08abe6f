//! The one error type of the SDK, and the normalization of every platform error body.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::runtime_error::RuntimeErrorCode;

/// Everything that can go wrong in the SDK.
///
/// Match on the variant to tell a platform refusal ([`Error::Api`]) from a network problem
/// ([`Error::Transport`], [`Error::Timeout`]) or a mistake caught before anything was sent
/// ([`Error::Config`], [`Error::InvalidInput`]). No variant ever carries a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The platform answered with HTTP status 400 or above.
    #[error(transparent)]
    Api(Box<ApiError>),

    /// The request never got an HTTP answer: connection refused or reset, DNS, TLS, protocol.
    #[error("{method} {url} failed: {reason}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// What failed.
        reason: String,
    },

    /// An operation did not finish in time.
    #[error("{operation} timed out after {}{}", format_duration(*after), if *may_still_be_running { "; the action may still be running on the robot" } else { "" })]
    Timeout {
        /// What timed out, e.g. `GET https://…/v1/robots` or `runtime.tools_call`.
        operation: String,
        /// How long the SDK waited.
        after: Duration,
        /// True when the robot may still be carrying out the action (an RPC reply timed out).
        may_still_be_running: bool,
    },

    /// The client configuration is missing or malformed. Raised before any request.
    #[error("configuration error in {setting}: {reason}")]
    Config {
        /// The environment variable or builder setting at fault, e.g. `MENLO_API_KEY`.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An argument was refused before anything was sent.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The argument at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A response arrived but could not be understood.
    #[error("could not decode {what}: {reason}")]
    Decode {
        /// What was being decoded, e.g. `GET /v1/robots/{id} response`.
        what: String,
        /// Why decoding failed (string values from the body are elided).
        reason: String,
    },

    /// A `runtime.*` call failed at the robot runtime (its error envelope), or the SDK could
    /// not find the runtime worker ([`RuntimeErrorCode::RuntimeNotFound`]).
    #[error("runtime error {code}: {message}")]
    #[non_exhaustive]
    Runtime {
        /// The runtime's error code, e.g. [`RuntimeErrorCode::NotReady`].
        code: RuntimeErrorCode,
        /// The runtime's message.
        message: String,
    },

    /// A LiveKit RPC call failed below the runtime: no handler for the method, the runtime
    /// left the room, a payload over the cap, a handler's own error code. Reply timeouts are
    /// [`Error::Timeout`]; a lost room connection is [`Error::Disconnected`].
    #[cfg(feature = "livekit")]
    #[error("{0}")]
    Rpc(crate::live::RpcError),

    /// The feature is blocked on upstream work.
    #[error("{feature} is not available yet ({issue})")]
    #[non_exhaustive]
    NotAvailable {
        /// The feature asked for.
        feature: String,
        /// Where its status is tracked.
        issue: String,
    },

    /// The live connection to the robot's room is gone.
    #[error("disconnected: {reason}")]
    #[non_exhaustive]
    Disconnected {
        /// Why the connection ended.
        reason: String,
        /// The engine failure underneath, when there is one (never carries a token).
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// The API error, if the platform answered with an error status.
    pub fn as_api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(api) => Some(api.as_ref()),
            _ => None,
        }
    }

    /// The HTTP status, if the platform answered with an error status.
    pub fn status(&self) -> Option<u16> {
        self.as_api().map(|api| api.status)
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn decode(what: impl Into<String>, err: &serde_json::Error) -> Self {
        Error::Decode {
            what: what.into(),
            reason: describe_json_error(err),
        }
    }
}

impl From<ApiError> for Error {
    fn from(api: ApiError) -> Self {
        Error::Api(Box::new(api))
    }
}

/// Shorthand for results of SDK calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An HTTP error answer from the platform, normalized from any of its body shapes.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
#[non_exhaustive]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Machine-readable code, e.g. `robot.not_found` or `http.401`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Extra details the platform sent (empty if none).
    pub details: Map<String, Value>,
    /// The platform's request id, for support tickets.
    pub request_id: Option<String>,
    /// The platform's trace id.
    pub trace_id: Option<String>,
}

impl ApiError {
    /// Normalizes an error body of any shape the platform produces (CONTRACT §3).
    ///
    /// `reason` is the HTTP reason phrase, used when the body is empty. Never fails.
    pub fn from_response(status: u16, body: &[u8], reason: &str) -> Self {
        let text = String::from_utf8_lossy(body);
        let (code, message, details) = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => normalize_object(status, object),
            _ => {
                let trimmed = text.trim();
                let message = if trimmed.is_empty() { reason } else { trimmed };
                ("http.error".to_owned(), message.to_owned(), Map::new())
            }
        };
        let detail_string = |key: &str| details.get(key).and_then(Value::as_str).map(str::to_owned);
        ApiError {
            status,
            request_id: detail_string("request_id"),
            trace_id: detail_string("trace_id"),
            code,
            message,
            details,
        }
    }
}

fn normalize_object(status: u16, mut object: Map<String, Value>) -> (String, String, Map<String, Value>) {
    let details = match object.remove("details") {
        Some(Value::Object(details)) => details,
        _ => Map::new(),
    };
    let code = object.get("code").and_then(Value::as_str).map(str::to_owned);
    if let Some(message) = object.get("message").and_then(Value::as_str) {
        let code = code.unwrap_or_else(|| "unknown.error".to_owned());
        return (code, message.to_owned(), details);
    }
    if let Some(error) = object.get("error").and_then(Value::as_str) {
        let code = code.unwrap_or_else(|| format!("http.{status}"));
        return (code, error.to_owned(), details);
    }
    if let Some(detail) = object.get("detail") {
        let code = if status == 422 {
            "request.validation_error".to_owned()
        } else {
            format!("http.{status}")
        };
        let message = match detail {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        return (code, message, details);
    }
    let code = code.unwrap_or_else(|| "unknown.error".to_owned());
    (code, "Unknown error".to_owned(), details)
}

/// Describes a JSON error without repeating string values from the body, which may
/// hold credentials (a token in an unexpected place must not reach an error message).
pub(crate) fn describe_json_error(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for ch in message.chars() {
        match (ch, in_quotes) {
            ('"', false) => {
                in_quotes = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quotes = false;
                out.push('"');
            }
            (_, true) => {}
            (ch, false) => out.push(ch),
        }
    }
    out
}

fn format_duration(duration: Duration) -> impl fmt::Display {
    struct Seconds(Duration);
    impl fmt::Display for Seconds {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let secs = self.0.as_secs_f64();
            if secs.fract() == 0.0 {
                write!(f, "{secs:.0}s")
            } else {
                write!(f, "{secs:.3}s")
            }
        }
    }
    Seconds(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(status: u16, body: &str) -> ApiError {
        ApiError::from_response(status, body.as_bytes(), "Reason")
    }

    #[test]
    fn rcs_body_keeps_code_message_and_ids() {
        let err = normalize(
            404,
            r#"{"code":"robot.not_found","message":"Robot not found","details":{"request_id":"req_1","trace_id":"tr_1"}}"#,
        );
        assert_eq!(err.code, "robot.not_found");
        assert_eq!(err.message, "Robot not found");
        assert_eq!(err.request_id.as_deref(), Some("req_1"));
        assert_eq!(err.trace_id.as_deref(), Some("tr_1"));
    }

    #[test]
    fn auth_edge_body_reads_http_status() {
        let err = normalize(401, r#"{"error":"unauthorized"}"#);
        assert_eq!(err.to_string(), "http.401: unauthorized");
        let err = normalize(401, r#"{"error":"unauthorized","code":"auth.expired"}"#);
        assert_eq!(err.code, "auth.expired");
    }

    #[test]
    fn validation_bodies() {
        let err = normalize(422, r#"{"detail":[{"loc":["body","name"],"msg":"too short"}]}"#);
        assert_eq!(err.code, "request.validation_error");
        assert_eq!(err.message, r#"[{"loc":["body","name"],"msg":"too short"}]"#);
        let err = normalize(404, r#"{"detail":"Not Found"}"#);
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("http.404", "Not Found")
        );
    }

    #[test]
    fn non_json_and_empty_bodies() {
        let err = normalize(502, "<html>bad gateway</html>");
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("http.error", "<html>bad gateway</html>")
        );
        let err = normalize(503, "");
        assert_eq!(err.message, "Reason");
        let err = normalize(500, "[1,2]");
        assert_eq!(err.code, "http.error");
    }

    #[test]
    fn object_without_known_fields() {
        let err = normalize(500, r#"{"foo":1,"details":"not-an-object"}"#);
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("unknown.error", "Unknown error")
        );
        assert!(err.details.is_empty());
    }

    #[test]
    fn json_error_description_elides_strings() {
        let err = serde_json::from_str::<u32>(r#""eyJhbGciOi.secret""#).unwrap_err();
        let text = describe_json_error(&err);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn timeout_says_the_action_may_still_run() {
        let err = Error::Timeout {
            operation: "runtime.tools_call".into(),
            after: Duration::from_secs(90),
            may_still_be_running: true,
        };
        assert_eq!(
            err.to_string(),
            "runtime.tools_call timed out after 90s; the action may still be running on the robot"
        );
    }
}
