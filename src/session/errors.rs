//! Mapping engine failures onto the SDK's [`Error`]: LiveKit RPC failures of runtime calls,
//! and failures to join a room. Pure functions, tested without sockets.

use std::time::Duration;

use crate::error::Error;
use crate::live::rpc::CONNECTION_LOST;
use crate::live::{LiveError, RpcError, RpcErrorCode};
use crate::runtime::calls::method;

/// A runtime call's LiveKit RPC failure as the SDK reports it.
#[derive(Debug)]
pub(crate) struct CallFailure {
    pub(crate) error: Error,
    /// The runtime is gone (left, or never there): stop treating it as the runtime.
    pub(crate) runtime_gone: bool,
}

/// Maps the failure of `method` (waited for `timeout`) onto the SDK's error:
/// - reply and ack timeouts are [`Error::Timeout`], saying whether the robot may still be
///   acting (tool calls and captures);
/// - a call the engine could not recover across a full reconnect is
///   [`Error::ConnectionLost`], saying the same;
/// - a recipient that is gone because *our* room connection ended is
///   [`Error::Disconnected`], with the RPC error as its source;
/// - everything else is [`Error::Rpc`] with LiveKit's code, unchanged.
pub(crate) fn call_failure(
    err: RpcError,
    method_name: &str,
    timeout: Duration,
    connected: bool,
) -> CallFailure {
    let recipient_gone = matches!(
        err.code,
        RpcErrorCode::RecipientDisconnected | RpcErrorCode::RecipientNotFound
    );
    let error = match err.code {
        RpcErrorCode::ResponseTimeout | RpcErrorCode::ConnectionTimeout => timed_out(method_name, timeout),
        RpcErrorCode::Other(CONNECTION_LOST) => Error::ConnectionLost {
            operation: method_name.to_owned(),
            may_still_be_running: may_still_be_running(method_name),
        },
        _ if recipient_gone && !connected => Error::Disconnected {
            reason: "the room connection ended".into(),
            source: Some(Box::new(err)),
        },
        _ => Error::Rpc(err),
    };
    CallFailure {
        error,
        runtime_gone: recipient_gone && connected,
    }
}

/// A runtime call of `method_name` that got no reply within its own `timeout`.
pub(crate) fn timed_out(method_name: &str, timeout: Duration) -> Error {
    Error::Timeout {
        operation: method_name.to_owned(),
        after: timeout,
        may_still_be_running: may_still_be_running(method_name),
        source: None,
    }
}

/// Calls whose effect on the robot may outlive a lost reply.
fn may_still_be_running(method_name: &str) -> bool {
    method_name == method::TOOLS_CALL || method_name == method::CAMERAS_CAPTURE
}

/// Maps an engine failure while joining `url` (bounded by `connect_timeout`) onto the SDK's
/// error type (never with the token: the engine's errors never hold it).
pub(crate) fn join_failure(err: LiveError, url: &str, connect_timeout: Duration) -> Error {
    match err {
        LiveError::Io(io) => Error::Transport {
            method: "CONNECT".into(),
            url: url.to_owned(),
            reason: io.to_string(),
            source: Box::new(io),
        },
        proxy @ LiveError::Proxy { .. } => Error::Transport {
            method: "CONNECT".into(),
            url: url.to_owned(),
            reason: proxy.to_string(),
            source: Box::new(proxy),
        },
        LiveError::Timeout(what) => Error::Timeout {
            operation: format!("joining the room ({what})"),
            after: connect_timeout,
            may_still_be_running: false,
            source: None,
        },
        no_path @ LiveError::NoPath { .. } => Error::Timeout {
            operation: format!("joining the room ({no_path})"),
            after: connect_timeout,
            may_still_be_running: false,
            source: None,
        },
        LiveError::InvalidUrl(_) | LiveError::InvalidArgument(_) => {
            Error::invalid("livekit_url", err.to_string())
        }
        other => Error::disconnected_by(other.to_string(), other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn timeouts_say_whether_the_robot_may_still_act() {
        let timeout = RpcError::built_in(RpcErrorCode::ResponseTimeout);
        let failure = call_failure(timeout.clone(), method::TOOLS_CALL, T, true);
        assert!(matches!(
            failure.error,
            Error::Timeout { may_still_be_running: true, after, .. } if after == T
        ));
        let failure = call_failure(timeout, method::STATE, T, true);
        assert!(matches!(
            failure.error,
            Error::Timeout {
                may_still_be_running: false,
                ..
            }
        ));
        let ack = RpcError::built_in(RpcErrorCode::ConnectionTimeout);
        assert!(call_failure(ack, method::CAMERAS_CAPTURE, T, true)
            .error
            .is_timeout());
    }

    #[test]
    fn a_call_lost_to_a_full_reconnect_is_connection_lost() {
        let lost = RpcError::new(CONNECTION_LOST, "the link was replaced before the ack");
        let failure = call_failure(lost.clone(), method::TOOLS_CALL, T, true);
        assert!(matches!(
            &failure.error,
            Error::ConnectionLost { operation, may_still_be_running: true } if operation == method::TOOLS_CALL
        ));
        assert!(failure.error.is_connection_lost());
        assert!(!failure.runtime_gone, "the runtime did not leave");
        let text = failure.error.to_string();
        assert!(
            text.contains("runtime.tools_call") && text.contains("may still be running"),
            "{text}"
        );
        let failure = call_failure(lost.clone(), method::CAMERAS_CAPTURE, T, true);
        assert!(matches!(
            failure.error,
            Error::ConnectionLost {
                may_still_be_running: true,
                ..
            }
        ));
        let failure = call_failure(lost, method::STATE, T, true);
        assert!(matches!(
            failure.error,
            Error::ConnectionLost {
                may_still_be_running: false,
                ..
            }
        ));
        assert!(!failure.error.to_string().contains("may still be running"));
        // The number is the whole signal: a built-in code next to it is not it.
        let other = call_failure(RpcError::new(1591u32, "x"), method::STATE, T, true);
        assert!(matches!(other.error, Error::Rpc(_)));
        assert!(!other.error.is_connection_lost());
    }

    #[test]
    fn a_departed_runtime_is_an_rpc_error_and_is_forgotten() {
        for code in [
            RpcErrorCode::RecipientDisconnected,
            RpcErrorCode::RecipientNotFound,
        ] {
            let failure = call_failure(RpcError::built_in(code), method::STATE, T, true);
            assert!(matches!(&failure.error, Error::Rpc(e) if e.code == code));
            assert!(failure.runtime_gone);
        }
    }

    #[test]
    fn our_own_disconnection_is_disconnected_with_the_rpc_error_as_source() {
        let err = RpcError::built_in(RpcErrorCode::RecipientDisconnected);
        let failure = call_failure(err, method::STATE, T, false);
        assert!(matches!(failure.error, Error::Disconnected { .. }));
        assert!(!failure.runtime_gone);
        let source = failure.error.source().expect("the RPC error underneath");
        assert!(source.to_string().contains("1503"), "{source}");
    }

    #[test]
    fn other_codes_pass_through_unchanged() {
        let err = RpcError::new(4042u32, "battery too low");
        let failure = call_failure(err.clone(), method::TOOLS_CALL, T, true);
        assert!(matches!(&failure.error, Error::Rpc(e) if *e == err));
        assert!(!failure.runtime_gone);
        let unsupported = RpcError::built_in(RpcErrorCode::UnsupportedMethod);
        let failure = call_failure(unsupported, method::CAPABILITIES, T, true);
        assert!(matches!(&failure.error, Error::Rpc(e) if e.code == RpcErrorCode::UnsupportedMethod));
    }

    #[test]
    fn join_failures_keep_the_engine_error_and_never_the_token() {
        let refused = LiveError::Refused {
            status: 401,
            message: "invalid token".into(),
        };
        let err = join_failure(refused, "ws://127.0.0.1:1", T);
        assert!(matches!(err, Error::Disconnected { .. }));
        assert!(err.source().unwrap().to_string().contains("401"));
        let err = join_failure(LiveError::Timeout("WebRTC data channel"), "ws://x", T);
        assert!(matches!(err, Error::Timeout { after, .. } if after == T));
        let err = join_failure(LiveError::InvalidUrl("nope".into()), "x", T);
        assert!(matches!(err, Error::InvalidInput { .. }));
        let proxy = LiveError::Proxy {
            proxy: "10.0.0.1:3128".into(),
            reason: "refused CONNECT to lk.example:443 (403 Forbidden)".into(),
        };
        let err = join_failure(proxy, "wss://lk.example", T);
        assert!(matches!(err, Error::Transport { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("proxy 10.0.0.1:3128: refused CONNECT to lk.example:443 (403 Forbidden)"));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            join_failure(LiveError::Io(io), "ws://x", T),
            Error::Transport { .. }
        ));
    }

    #[test]
    fn a_connect_without_any_path_names_each_path_and_why() {
        use crate::live::net::{NetworkPath, PathAttempt, PathOutcome};
        let attempts = vec![
            PathAttempt {
                kind: NetworkPath::Udp,
                remote: Some("10.0.0.2:7882".into()),
                outcome: PathOutcome::NoAnswer,
            },
            PathAttempt {
                kind: NetworkPath::Tcp,
                remote: Some("10.0.0.2:7881".into()),
                outcome: PathOutcome::Refused,
            },
        ];
        let err = join_failure(LiveError::NoPath { attempts }, "ws://10.0.0.2:7880", T);
        assert!(matches!(err, Error::Timeout { after, .. } if after == T));
        let text = err.to_string();
        for part in [
            "UDP 10.0.0.2:7882: no answer (timed out)",
            "TCP 10.0.0.2:7881: connection refused",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}
