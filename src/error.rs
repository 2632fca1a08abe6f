//! The one error type of the SDK, and the normalization of every platform error body.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::json::OrderedJson;
use crate::retry::{self, Outcome};
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
    ///
    /// [`std::error::Error::source`] gives the underlying error (an I/O or HTTP client error);
    /// [`Error::is_connect`] tells whether the connection could not be made at all.
    #[error("{method} {url} failed: {reason}")]
    #[non_exhaustive]
    Transport {
        /// HTTP method (`CONNECT` for the live connection to a room).
        method: String,
        /// Request URL.
        url: String,
        /// What failed: the text of `source`.
        reason: String,
        /// The underlying error. It never carries a credential: the HTTP client's errors hold
        /// no header, and the URL holds none either.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An operation did not finish in time.
    #[error("{operation} timed out after {}{}", format_duration(*after), if *may_still_be_running { "; the action may still be running on the robot" } else { "" })]
    #[non_exhaustive]
    Timeout {
        /// What timed out, e.g. `GET https://…/v1/robots` or `runtime.tools_call`.
        operation: String,
        /// How long the SDK waited.
        after: Duration,
        /// True when the robot may still be carrying out the action (an RPC reply timed out).
        may_still_be_running: bool,
        /// The error underneath, when there is one (the HTTP client's timeout error).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The client configuration is missing or malformed. Raised before any request.
    #[error("configuration error in {setting}: {reason}")]
    #[non_exhaustive]
    Config {
        /// The environment variable or builder setting at fault, e.g. `MENLO_API_KEY`.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An argument was refused before anything was sent.
    #[error("invalid {field}: {reason}")]
    #[non_exhaustive]
    InvalidInput {
        /// The argument at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A response arrived but could not be understood.
    #[error("could not decode {what}: {reason}")]
    #[non_exhaustive]
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

    /// The link to the robot's room was lost during a runtime call and came back only as a
    /// new participant (a full reconnect), and the call's request may or may not have reached
    /// the runtime, so its reply will not come. The session itself is connected again.
    ///
    /// Reads (state, tools list, capabilities) never fail with this: they are sent again
    /// once, within their timeout. Calls that act (`runtime.tools_call`, captures) do, with
    /// `may_still_be_running: true`: check the robot's state before acting again.
    #[error("{operation} lost its connection: the SDK joined the room again before the reply came{}", if *may_still_be_running { "; the action may still be running on the robot" } else { "" })]
    #[non_exhaustive]
    ConnectionLost {
        /// The call, e.g. `runtime.tools_call`.
        operation: String,
        /// True when the robot may be carrying out the action anyway.
        may_still_be_running: bool,
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

    /// The HTTP status, if the platform answered with an error status (400 or above).
    pub fn status(&self) -> Option<u16> {
        self.as_api().map(|api| api.status)
    }

    /// True when an operation did not finish in time ([`Error::Timeout`]): an HTTP request
    /// phase (connect, send, answer), joining a room, or an RPC reply.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True when a runtime call's reply was lost to a full reconnect
    /// ([`Error::ConnectionLost`]); the session is connected again.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. })
    }

    /// True when no connection could be made at all: refused, unreachable host or network,
    /// DNS failure, TLS handshake or certificate failure. Nothing reached the server, so
    /// even a non-idempotent request may be sent again. A connect that times out is
    /// [`Error::is_timeout`] instead.
    pub fn is_connect(&self) -> bool {
        match self {
            Error::Transport { source, .. } => is_connect_failure(source.as_ref()),
            _ => false,
        }
    }

    /// True when the SDK's retry rules (CONTRACT §4) would retry this failure of an
    /// idempotent request (a GET, say): a transport failure, a timeout, HTTP 429 or 5xx.
    /// Whether a request that creates something may be sent again is the caller's call.
    pub fn is_retryable(&self) -> bool {
        let outcome = match self {
            Error::Transport { .. } | Error::Timeout { .. } => Outcome::TransportFailure,
            Error::Api(api) => Outcome::Status(api.status),
            _ => return false,
        };
        retry::is_retryable("GET", outcome)
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

/// Whether a transport error's cause says the connection was never made.
fn is_connect_failure(cause: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(err) = cause.downcast_ref::<ureq::Error>() {
        return match err {
            ureq::Error::Io(io) => is_connect_io(io),
            ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::ConnectProxyFailed(_)
            | ureq::Error::Tls(_)
            | ureq::Error::Rustls(_)
            | ureq::Error::TlsRequired => true,
            _ => false,
        };
    }
    cause.downcast_ref::<std::io::Error>().is_some_and(is_connect_io)
}

/// Refused, unreachable, or a TLS failure (which rustls reports inside an I/O error).
fn is_connect_io(io: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    let tls = io
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    tls || matches!(
        io.kind(),
        ErrorKind::ConnectionRefused
            | ErrorKind::AddrNotAvailable
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
    )
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
    ///
    /// - `code` is the body's own (a string, or a number as text) whatever else it holds;
    ///   without one: `unknown.error` next to a `message`, `http.<status>` next to an `error`,
    ///   `request.validation_error` (422) or `http.<status>` next to a `detail`, `http.error`
    ///   for a body that is not a JSON object.
    /// - `message` is the first of `message`, `error`, `detail` that is present: a string as
    ///   is, anything else as compact JSON with the server's key order; else `Unknown error`.
    ///   A non-object body gives its trimmed text, or `reason` when empty.
    /// - An empty string, like `null`, counts as missing for `code` and the message fields.
    /// - `request_id` / `trace_id` come from `details` (a number is kept as text).
    pub fn from_response(status: u16, body: &[u8], reason: &str) -> Self {
        let (code, message, details) = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => {
                let texts = message_texts(body, &object);
                normalize_object(status, object, texts)
            }
            _ => {
                let text = String::from_utf8_lossy(body);
                let trimmed = text.trim();
                let message = if trimmed.is_empty() { reason } else { trimmed };
                ("http.error".to_owned(), message.to_owned(), Map::new())
            }
        };
        ApiError {
            status,
            request_id: id_text(details.get("request_id")),
            trace_id: id_text(details.get("trace_id")),
            code,
            message,
            details,
        }
    }
}

/// The fields a message can come from, read in the body's own key order.
#[derive(serde::Deserialize)]
struct MessageSources {
    #[serde(default)]
    message: Option<OrderedJson>,
    #[serde(default)]
    error: Option<OrderedJson>,
    #[serde(default)]
    detail: Option<OrderedJson>,
}

/// The `message`, `error` and `detail` fields as text (see [`ordered_text`]).
struct MessageTexts {
    message: Option<String>,
    error: Option<String>,
    detail: Option<String>,
}

/// Reads the message fields in key order. A body that `Value` accepts but the derive refuses
/// (a repeated field) falls back to `Value`'s sorted rendering.
fn message_texts(body: &[u8], object: &Map<String, Value>) -> MessageTexts {
    match serde_json::from_slice::<MessageSources>(body) {
        Ok(sources) => MessageTexts {
            message: ordered_text(sources.message.as_ref()),
            error: ordered_text(sources.error.as_ref()),
            detail: ordered_text(sources.detail.as_ref()),
        },
        Err(_) => MessageTexts {
            message: value_text(object.get("message")),
            error: value_text(object.get("error")),
            detail: value_text(object.get("detail")),
        },
    }
}

/// A message field as text: a string as is, any other value as compact JSON; `None` when
/// absent, `null` or an empty string.
fn ordered_text(field: Option<&OrderedJson>) -> Option<String> {
    match field? {
        OrderedJson::Null => None,
        OrderedJson::String(text) if text.is_empty() => None,
        OrderedJson::String(text) => Some(text.clone()),
        other => Some(other.to_compact_string()),
    }
}

/// The same as [`ordered_text`] from a sorted `Value`, for bodies [`message_sources`] refuses.
fn value_text(field: Option<&Value>) -> Option<String> {
    match field? {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// A code or id given as a non-empty string or as a number, as text.
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn normalize_object(
    status: u16,
    mut object: Map<String, Value>,
    texts: MessageTexts,
) -> (String, String, Map<String, Value>) {
    let details = match object.remove("details") {
        Some(Value::Object(details)) => details,
        _ => Map::new(),
    };
    let (default_code, message) = if let Some(message) = texts.message {
        ("unknown.error".to_owned(), message)
    } else if let Some(error) = texts.error {
        (format!("http.{status}"), error)
    } else if let Some(detail) = texts.detail {
        (detail_code(status), detail)
    } else {
        ("unknown.error".to_owned(), "Unknown error".to_owned())
    };
    let code = id_text(object.get("code")).unwrap_or(default_code);
    (code, message, details)
}

fn detail_code(status: u16) -> String {
    if status == 422 {
        "request.validation_error".to_owned()
    } else {
        format!("http.{status}")
    }
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

    fn code_and_message(status: u16, body: &str) -> (String, String) {
        let err = normalize(status, body);
        (err.code, err.message)
    }

    fn pair(code: &str, message: &str) -> (String, String) {
        (code.to_owned(), message.to_owned())
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
    fn numeric_request_and_trace_ids_are_kept_as_text() {
        let err = normalize(
            500,
            r#"{"code":"c","message":"m","details":{"request_id":12345,"trace_id":-7.5}}"#,
        );
        assert_eq!(err.request_id.as_deref(), Some("12345"));
        assert_eq!(err.trace_id.as_deref(), Some("-7.5"));
        let err = normalize(
            500,
            r#"{"message":"m","details":{"request_id":"","trace_id":true}}"#,
        );
        assert_eq!((err.request_id, err.trace_id), (None, None));
    }

    #[test]
    fn auth_edge_body_reads_http_status() {
        let err = normalize(401, r#"{"error":"unauthorized"}"#);
        assert_eq!(err.to_string(), "http.401: unauthorized");
        assert_eq!(
            code_and_message(401, r#"{"error":"unauthorized","code":"auth.expired"}"#),
            pair("auth.expired", "unauthorized")
        );
    }

    #[test]
    fn detail_string_uses_the_status() {
        assert_eq!(
            code_and_message(404, r#"{"detail":"Not Found"}"#),
            pair("http.404", "Not Found")
        );
    }

    #[test]
    fn detail_list_is_compact_json_in_the_server_key_order() {
        assert_eq!(
            code_and_message(
                422,
                r#"{"detail": [ {"type": "too_short", "loc": ["body", "name"], "msg": "too short"} ]}"#
            ),
            pair(
                "request.validation_error",
                r#"[{"type":"too_short","loc":["body","name"],"msg":"too short"}]"#
            )
        );
    }

    #[test]
    fn detail_object_is_compact_json_in_the_server_key_order() {
        assert_eq!(
            code_and_message(400, r#"{"detail": {"z": 1, "a": {"y": null, "b": [1.5]}}}"#),
            pair("http.400", r#"{"z":1,"a":{"y":null,"b":[1.5]}}"#)
        );
    }

    #[test]
    fn code_next_to_detail_is_kept() {
        assert_eq!(
            code_and_message(422, r#"{"code":"robot.invalid","detail":"name too long"}"#),
            pair("robot.invalid", "name too long")
        );
        assert_eq!(
            code_and_message(400, r#"{"code":42,"detail":[1]}"#),
            pair("42", "[1]")
        );
    }

    #[test]
    fn empty_message_counts_as_missing() {
        assert_eq!(
            code_and_message(500, r#"{"message":""}"#),
            pair("unknown.error", "Unknown error")
        );
        assert_eq!(
            code_and_message(401, r#"{"message":"","error":"unauthorized"}"#),
            pair("http.401", "unauthorized")
        );
        assert_eq!(
            code_and_message(400, r#"{"message":null,"error":"","detail":"bad"}"#),
            pair("http.400", "bad")
        );
    }

    #[test]
    fn empty_code_counts_as_missing() {
        assert_eq!(
            code_and_message(500, r#"{"code":"","message":"boom"}"#),
            pair("unknown.error", "boom")
        );
        assert_eq!(
            code_and_message(403, r#"{"code":"","error":"forbidden"}"#),
            pair("http.403", "forbidden")
        );
        assert_eq!(
            code_and_message(422, r#"{"code":null,"detail":"bad"}"#),
            pair("request.validation_error", "bad")
        );
    }

    #[test]
    fn non_string_message_is_rendered() {
        assert_eq!(
            code_and_message(500, r#"{"code":"c","message":{"why":"x","at":[1, 2]}}"#),
            pair("c", r#"{"why":"x","at":[1,2]}"#)
        );
        assert_eq!(
            code_and_message(500, r#"{"message":42}"#),
            pair("unknown.error", "42")
        );
        assert_eq!(
            code_and_message(500, r#"{"message":false}"#),
            pair("unknown.error", "false")
        );
        assert_eq!(
            code_and_message(401, r#"{"error":{"reason":"expired"}}"#),
            pair("http.401", r#"{"reason":"expired"}"#)
        );
    }

    #[test]
    fn a_repeated_field_still_normalizes() {
        assert_eq!(
            code_and_message(400, r#"{"detail":{"b":1,"a":2},"detail":{"d":1,"c":2}}"#),
            pair("http.400", r#"{"c":2,"d":1}"#)
        );
    }

    #[test]
    fn non_json_and_empty_bodies() {
        assert_eq!(
            code_and_message(502, "  <html>bad gateway</html>\n"),
            pair("http.error", "<html>bad gateway</html>")
        );
        assert_eq!(code_and_message(503, ""), pair("http.error", "Reason"));
        assert_eq!(code_and_message(500, "[1,2]"), pair("http.error", "[1,2]"));
    }

    #[test]
    fn object_without_known_fields() {
        let err = normalize(500, r#"{"foo":1,"details":"not-an-object"}"#);
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("unknown.error", "Unknown error")
        );
        assert!(err.details.is_empty());
        assert_eq!(
            code_and_message(404, r#"{"code":"robot.gone"}"#),
            pair("robot.gone", "Unknown error")
        );
    }

    #[test]
    fn json_error_description_elides_strings() {
        let err = serde_json::from_str::<u32>(r#""eyJhbGciOi.secret""#).unwrap_err();
        let text = describe_json_error(&err);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    fn transport(cause: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Transport {
            method: "GET".into(),
            url: "http://127.0.0.1:1/v1/robots".into(),
            reason: cause.to_string(),
            source: Box::new(cause),
        }
    }

    fn api(status: u16) -> Error {
        normalize(status, r#"{"code":"c","message":"m"}"#).into()
    }

    fn timeout() -> Error {
        Error::Timeout {
            operation: "GET http://127.0.0.1:1/v1/robots".into(),
            after: Duration::from_secs(1),
            may_still_be_running: false,
            source: None,
        }
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    #[test]
    fn transport_errors_keep_their_cause() {
        use std::error::Error as _;
        let err = transport(ureq::Error::HostNotFound);
        let source = err.source().expect("a source");
        assert!(matches!(
            source.downcast_ref::<ureq::Error>(),
            Some(ureq::Error::HostNotFound)
        ));
        let err = transport(io(std::io::ErrorKind::ConnectionRefused));
        let source = err.source().expect("a source");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(
            api(404).source().is_none(),
            "an API error is the platform's own answer"
        );
    }

    #[test]
    fn is_connect_means_no_connection_was_made() {
        use std::io::ErrorKind;
        for connect in [
            transport(ureq::Error::HostNotFound),
            transport(ureq::Error::ConnectionFailed),
            transport(ureq::Error::Tls("handshake")),
            transport(ureq::Error::Io(io(ErrorKind::ConnectionRefused))),
            transport(io(ErrorKind::ConnectionRefused)),
            transport(io(ErrorKind::HostUnreachable)),
        ] {
            assert!(connect.is_connect(), "{connect}");
        }
        for other in [
            transport(ureq::Error::Io(io(ErrorKind::ConnectionReset))),
            transport(io(ErrorKind::UnexpectedEof)),
            transport(ureq::Error::TooManyRedirects),
            timeout(),
            api(503),
            Error::invalid("robot_id", "empty"),
        ] {
            assert!(!other.is_connect(), "{other}");
        }
    }

    #[test]
    fn is_retryable_follows_the_retry_rules_of_an_idempotent_request() {
        for retryable in [
            transport(io(std::io::ErrorKind::ConnectionReset)),
            timeout(),
            api(429),
            api(500),
            api(503),
        ] {
            assert!(retryable.is_retryable(), "{retryable}");
        }
        for final_error in [
            api(400),
            api(401),
            api(404),
            api(422),
            Error::invalid("robot_id", "empty"),
            Error::config("MENLO_API_KEY", "missing"),
        ] {
            assert!(!final_error.is_retryable(), "{final_error}");
        }
    }

    #[test]
    fn status_and_is_timeout() {
        assert_eq!(api(404).status(), Some(404));
        assert_eq!(timeout().status(), None);
        assert_eq!(transport(ureq::Error::HostNotFound).status(), None);
        assert!(timeout().is_timeout());
        assert!(!api(504).is_timeout());
        assert!(!transport(ureq::Error::HostNotFound).is_timeout());
    }

    #[test]
    fn timeout_says_the_action_may_still_run() {
        let err = Error::Timeout {
            operation: "runtime.tools_call".into(),
            after: Duration::from_secs(90),
            may_still_be_running: true,
            source: None,
        };
        assert_eq!(
            err.to_string(),
            "runtime.tools_call timed out after 90s; the action may still be running on the robot"
        );
    }
}
