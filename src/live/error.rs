//! Error types of the live layer.

use std::fmt;

/// Errors of the live layer (connection, signalling, transport, usage).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The server URL could not be used.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The server refused the websocket upgrade (HTTP status and body excerpt).
    #[error("server refused the connection: HTTP {status}: {message}")]
    Refused {
        /// HTTP status code of the refusal.
        status: u16,
        /// Body excerpt returned by the server.
        message: String,
    },
    /// Connecting (signalling + WebRTC + data channel) did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Network I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The websocket failed.
    #[error("signalling error: {0}")]
    Signal(String),
    /// The WebRTC stack failed.
    #[error("webrtc error: {0}")]
    Rtc(String),
    /// The peer sent something that violates the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The room is not connected any more.
    #[error("room disconnected: {0}")]
    Disconnected(String),
    /// An argument was rejected before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The HTTP proxy could not be reached or refused the CONNECT tunnel. Names the proxy by
    /// `host:port` only, never its credentials.
    #[error("proxy {proxy}: {reason}")]
    Proxy {
        /// The proxy's `host:port`.
        proxy: String,
        /// What went wrong, e.g. `refused CONNECT to example.com:443 (403 Forbidden)`.
        reason: String,
    },
    /// No network path to the server worked within the connect timeout. Lists every path
    /// tried (UDP first, then ICE over TCP, then TURN relays) and why each failed; addresses only, never
    /// credentials.
    #[error(
        "no network path to the server: {}",
        crate::live::net::describe_attempts(attempts)
    )]
    NoPath {
        /// Each path and its outcome.
        attempts: Vec<crate::live::net::PathAttempt>,
    },
}

/// The code of an [`RpcError`]: LiveKit's built-in codes by name, any other by number.
///
/// Codes 1001–1999 are reserved for LiveKit; a handler may answer with any other code, which
/// arrives as [`RpcErrorCode::Other`] with its raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RpcErrorCode {
    /// 1400: the destination has no handler for the method.
    UnsupportedMethod,
    /// 1401: the destination identity is not in the room.
    RecipientNotFound,
    /// 1402: the request was larger than the payload cap.
    RequestPayloadTooLarge,
    /// 1403: the server does not support RPC.
    UnsupportedServer,
    /// 1404: the request used an RPC version the handler does not speak.
    UnsupportedVersion,
    /// 1500: the handler failed.
    ApplicationError,
    /// 1501: no acknowledgement arrived in time (destination unreachable or not answering).
    ConnectionTimeout,
    /// 1502: the response did not arrive within the response timeout.
    ResponseTimeout,
    /// 1503: the destination left the room (or our connection went away) before replying.
    RecipientDisconnected,
    /// 1504: the response was larger than the payload cap.
    ResponsePayloadTooLarge,
    /// 1505: the request could not be sent.
    SendFailed,
    /// Any other code, kept verbatim.
    Other(u32),
}

/// Every named code with its number (one table for both directions).
const NAMED_CODES: [(RpcErrorCode, u32); 11] = [
    (RpcErrorCode::UnsupportedMethod, 1400),
    (RpcErrorCode::RecipientNotFound, 1401),
    (RpcErrorCode::RequestPayloadTooLarge, 1402),
    (RpcErrorCode::UnsupportedServer, 1403),
    (RpcErrorCode::UnsupportedVersion, 1404),
    (RpcErrorCode::ApplicationError, 1500),
    (RpcErrorCode::ConnectionTimeout, 1501),
    (RpcErrorCode::ResponseTimeout, 1502),
    (RpcErrorCode::RecipientDisconnected, 1503),
    (RpcErrorCode::ResponsePayloadTooLarge, 1504),
    (RpcErrorCode::SendFailed, 1505),
];

impl RpcErrorCode {
    /// The code's number on the wire.
    pub fn as_u32(self) -> u32 {
        match self {
            RpcErrorCode::Other(code) => code,
            named => NAMED_CODES
                .iter()
                .find(|(known, _)| *known == named)
                .map_or(0, |(_, code)| *code),
        }
    }

    /// The standard message LiveKit sends with this code.
    fn default_message(self) -> &'static str {
        match self {
            RpcErrorCode::ApplicationError => "Application error in method handler",
            RpcErrorCode::ConnectionTimeout => "Connection timeout",
            RpcErrorCode::ResponseTimeout => "Response timeout",
            RpcErrorCode::RecipientDisconnected => "Recipient disconnected",
            RpcErrorCode::ResponsePayloadTooLarge => "Response payload too large",
            RpcErrorCode::SendFailed => "Failed to send",
            RpcErrorCode::UnsupportedMethod => "Method not supported at destination",
            RpcErrorCode::RecipientNotFound => "Recipient not found",
            RpcErrorCode::RequestPayloadTooLarge => "Request payload too large",
            RpcErrorCode::UnsupportedServer => "RPC not supported by server",
            RpcErrorCode::UnsupportedVersion => "Unsupported RPC version",
            RpcErrorCode::Other(_) => "Error",
        }
    }
}

impl From<u32> for RpcErrorCode {
    fn from(code: u32) -> Self {
        NAMED_CODES
            .iter()
            .find(|(_, known)| *known == code)
            .map_or(RpcErrorCode::Other(code), |(named, _)| *named)
    }
}

impl From<RpcErrorCode> for u32 {
    fn from(code: RpcErrorCode) -> Self {
        code.as_u32()
    }
}

impl fmt::Display for RpcErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcErrorCode::Other(code) => write!(f, "{code}"),
            named => write!(f, "{} ({named:?})", named.as_u32()),
        }
    }
}

/// A failed LiveKit RPC call: what a caller receives, and what a [`crate::RuntimeHost`]
/// handler answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcError {
    /// The error code.
    pub code: RpcErrorCode,
    /// Human-readable message (at most 256 bytes on the wire).
    pub message: String,
    /// Optional extra data (at most 15 KiB on the wire).
    pub data: Option<String>,
}

impl RpcError {
    /// Largest message accepted on the wire, in bytes.
    pub const MAX_MESSAGE_BYTES: usize = 256;

    /// An error with this code and message (truncated to 256 bytes on a char boundary).
    pub fn new(code: impl Into<RpcErrorCode>, message: impl Into<String>) -> Self {
        RpcError {
            // Normalized, so that `Other(1500)` and `ApplicationError` compare equal.
            code: RpcErrorCode::from(code.into().as_u32()),
            message: truncate_utf8(message.into(), Self::MAX_MESSAGE_BYTES),
            data: None,
        }
    }

    /// An application error (1500), the usual answer of a handler that failed.
    pub fn application(message: impl Into<String>) -> Self {
        Self::new(RpcErrorCode::ApplicationError, message)
    }

    /// Attaches extra data (truncated to 15 KiB on a char boundary).
    #[must_use]
    pub fn with_data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(truncate_utf8(data.into(), crate::live::rpc::MAX_PAYLOAD_BYTES));
        self
    }

    /// One of the built-in errors, with LiveKit's standard message.
    pub fn built_in(code: RpcErrorCode) -> Self {
        RpcError {
            code,
            message: code.default_message().to_owned(),
            data: None,
        }
    }

    pub(crate) fn to_proto(&self) -> livekit_protocol::RpcError {
        livekit_protocol::RpcError {
            code: self.code.as_u32(),
            message: self.message.clone(),
            data: self.data.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RPC error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

impl crate::Error {
    /// [`crate::Error::Disconnected`] without an engine error underneath.
    pub(crate) fn disconnected(reason: impl Into<String>) -> Self {
        crate::Error::Disconnected {
            reason: reason.into(),
            source: None,
        }
    }

    /// [`crate::Error::Disconnected`] caused by `source` (whose text never holds a token:
    /// [`LiveError::Refused`] keeps only the status and a body excerpt).
    pub(crate) fn disconnected_by(reason: impl Into<String>, source: LiveError) -> Self {
        crate::Error::Disconnected {
            reason: reason.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Truncates a string to at most `max` bytes on a char boundary.
pub(crate) fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let e = RpcError::new(1u32, s);
        assert!(e.message.len() <= 256);
        assert!(e.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn built_in_messages() {
        assert_eq!(
            RpcError::built_in(RpcErrorCode::UnsupportedMethod).message,
            "Method not supported at destination"
        );
        assert_eq!(
            RpcError::built_in(RpcErrorCode::RecipientDisconnected)
                .code
                .as_u32(),
            1503
        );
    }

    #[test]
    fn codes_round_trip_through_numbers() {
        for (named, number) in NAMED_CODES {
            assert_eq!(named.as_u32(), number);
            assert_eq!(RpcErrorCode::from(number), named);
        }
        assert_eq!(RpcErrorCode::from(42), RpcErrorCode::Other(42));
        assert_eq!(RpcErrorCode::Other(42).as_u32(), 42);
        assert_eq!(u32::from(RpcErrorCode::SendFailed), 1505);
    }

    #[test]
    fn display_names_the_code() {
        let e = RpcError::new(RpcErrorCode::ApplicationError, "boom");
        assert_eq!(e.to_string(), "RPC error 1500 (ApplicationError): boom");
        assert_eq!(RpcError::new(7u32, "x").to_string(), "RPC error 7: x");
    }
}
