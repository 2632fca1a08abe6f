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
}

/// Error of one RPC call, as defined by LiveKit's RPC protocol.
///
/// Codes 1001-1999 are reserved for built-in errors (see the associated constants);
/// handlers may return any other code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Numeric error code.
    pub code: u32,
    /// Human readable message (at most 256 bytes on the wire).
    pub message: String,
    /// Optional extra data (at most 15 KiB on the wire).
    pub data: Option<String>,
}

impl RpcError {
    /// The handler failed.
    pub const APPLICATION_ERROR: u32 = 1500;
    /// No acknowledgement arrived in time (destination unreachable or not answering).
    pub const CONNECTION_TIMEOUT: u32 = 1501;
    /// The response did not arrive within the response timeout.
    pub const RESPONSE_TIMEOUT: u32 = 1502;
    /// The destination left the room (or our connection went away) before replying.
    pub const RECIPIENT_DISCONNECTED: u32 = 1503;
    /// The response was larger than the payload cap.
    pub const RESPONSE_PAYLOAD_TOO_LARGE: u32 = 1504;
    /// The request could not be sent.
    pub const SEND_FAILED: u32 = 1505;
    /// The destination has no handler for the method.
    pub const UNSUPPORTED_METHOD: u32 = 1400;
    /// The destination identity is not in the room.
    pub const RECIPIENT_NOT_FOUND: u32 = 1401;
    /// The request was larger than the payload cap.
    pub const REQUEST_PAYLOAD_TOO_LARGE: u32 = 1402;
    /// The server does not support RPC.
    pub const UNSUPPORTED_SERVER: u32 = 1403;
    /// The request used an RPC version the handler does not speak.
    pub const UNSUPPORTED_VERSION: u32 = 1404;

    /// Largest message accepted on the wire, in bytes.
    pub const MAX_MESSAGE_BYTES: usize = 256;

    /// Creates an error with the given code and message (truncated to 256 bytes).
    pub fn new(code: u32, message: impl Into<String>, data: Option<String>) -> Self {
        RpcError {
            code,
            message: truncate_utf8(message.into(), Self::MAX_MESSAGE_BYTES),
            data: data.map(|d| truncate_utf8(d, crate::live::rpc::MAX_PAYLOAD_BYTES)),
        }
    }

    /// Creates one of the built-in errors, with its standard message.
    pub fn built_in(code: u32) -> Self {
        let message = match code {
            Self::APPLICATION_ERROR => "Application error in method handler",
            Self::CONNECTION_TIMEOUT => "Connection timeout",
            Self::RESPONSE_TIMEOUT => "Response timeout",
            Self::RECIPIENT_DISCONNECTED => "Recipient disconnected",
            Self::RESPONSE_PAYLOAD_TOO_LARGE => "Response payload too large",
            Self::SEND_FAILED => "Failed to send",
            Self::UNSUPPORTED_METHOD => "Method not supported at destination",
            Self::RECIPIENT_NOT_FOUND => "Recipient not found",
            Self::REQUEST_PAYLOAD_TOO_LARGE => "Request payload too large",
            Self::UNSUPPORTED_SERVER => "RPC not supported by server",
            Self::UNSUPPORTED_VERSION => "Unsupported RPC version",
            _ => "Error",
        };
        RpcError {
            code,
            message: message.to_string(),
            data: None,
        }
    }

    pub(crate) fn to_proto(&self) -> livekit_protocol::RpcError {
        livekit_protocol::RpcError {
            code: self.code,
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
        let e = RpcError::new(1, s, None);
        assert!(e.message.len() <= 256);
        assert!(e.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn built_in_messages() {
        assert_eq!(
            RpcError::built_in(1400).message,
            "Method not supported at destination"
        );
        assert_eq!(RpcError::built_in(1503).code, 1503);
    }
}
