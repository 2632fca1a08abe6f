//! Sans-IO state machine of LiveKit RPC (v1, data-packet transport).
//!
//! Caller side ([`RpcClient`]): `RpcRequest` → wait for `RpcAck` (ack timeout) → wait for
//! `RpcResponse` (response timeout). A destination that leaves fails its calls after a short
//! grace period (its reply may already be in flight); our own disconnection fails all calls.
//!
//! Handler side ([`handle_request`], [`response_packet`]): ack immediately, check version
//! and payload size, dispatch to a handler if one is registered.

use crate::live::error::RpcError;
use livekit_protocol as proto;
use proto::data_packet::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Largest request / response payload, in bytes (15 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 15 * 1024;
/// RPC protocol version spoken here.
pub const RPC_VERSION: u32 = 1;
/// Default time for the request to reach the destination and the ack to come back.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(7);
/// Default time to wait for the response once acknowledged.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default grace period between "destination left" and failing its calls.
pub const DEFAULT_DISCONNECT_GRACE: Duration = Duration::from_millis(500);
const MIN_EFFECTIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Parameters of one outgoing call.
#[derive(Debug, Clone)]
pub struct CallParams {
    /// Identity of the participant to call.
    pub destination: String,
    /// Method name.
    pub method: String,
    /// Payload (at most [`MAX_PAYLOAD_BYTES`]).
    pub payload: String,
    /// Maximum time to wait for the response after the ack.
    pub response_timeout: Duration,
    /// Maximum time for the ack.
    pub ack_timeout: Duration,
}

impl CallParams {
    /// Call `method` on `destination` with the default timeouts.
    pub fn new(
        destination: impl Into<String>,
        method: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        CallParams {
            destination: destination.into(),
            method: method.into(),
            payload: payload.into(),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

#[derive(Debug)]
enum Phase {
    AwaitingAck,
    AwaitingResponse,
}

#[derive(Debug)]
struct Pending<K> {
    key: K,
    destination: String,
    phase: Phase,
    deadline: Instant,
    response_timeout: Duration,
    gone_deadline: Option<Instant>,
}

/// Finished call: the caller's key and its outcome.
pub type Completion<K> = (K, Result<String, RpcError>);

/// Caller-side bookkeeping. `K` identifies the waiting caller (e.g. a reply channel).
#[derive(Debug)]
pub struct RpcClient<K> {
    pending: HashMap<String, Pending<K>>,
    disconnect_grace: Duration,
}

impl<K> RpcClient<K> {
    /// Creates an empty client.
    pub fn new(disconnect_grace: Duration) -> Self {
        RpcClient {
            pending: HashMap::new(),
            disconnect_grace,
        }
    }

    /// Number of calls in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Starts a call. Returns the request packet to send, or the error to report at once
    /// (the key is handed back with it).
    #[allow(clippy::result_large_err)]
    pub fn start_call(
        &mut self,
        now: Instant,
        key: K,
        request_id: String,
        params: CallParams,
    ) -> Result<proto::DataPacket, (K, RpcError)> {
        if params.payload.len() > MAX_PAYLOAD_BYTES {
            return Err((key, RpcError::built_in(RpcError::REQUEST_PAYLOAD_TOO_LARGE)));
        }
        let effective = params
            .response_timeout
            .saturating_sub(params.ack_timeout)
            .max(MIN_EFFECTIVE_TIMEOUT);
        let packet = data_packet(
            &params.destination,
            Value::RpcRequest(proto::RpcRequest {
                id: request_id.clone(),
                method: params.method,
                payload: params.payload,
                response_timeout_ms: u32::try_from(effective.as_millis()).unwrap_or(u32::MAX),
                version: RPC_VERSION,
                ..Default::default()
            }),
        );
        self.pending.insert(
            request_id,
            Pending {
                key,
                destination: params.destination,
                phase: Phase::AwaitingAck,
                deadline: now + params.ack_timeout,
                response_timeout: params.response_timeout,
                gone_deadline: None,
            },
        );
        Ok(packet)
    }

    /// Abandons a call (e.g. the request could not be sent). Returns its key.
    pub fn cancel(&mut self, request_id: &str) -> Option<K> {
        self.pending.remove(request_id).map(|p| p.key)
    }

    /// An `RpcAck` arrived.
    pub fn handle_ack(&mut self, now: Instant, request_id: &str) {
        match self.pending.get_mut(request_id) {
            Some(p) if matches!(p.phase, Phase::AwaitingAck) => {
                p.phase = Phase::AwaitingResponse;
                p.deadline = now + p.response_timeout;
            }
            Some(_) => {}
            None => log::debug!("rpc ack for unknown request {request_id}"),
        }
    }

    /// An `RpcResponse` arrived. A response implies the ack.
    pub fn handle_response(&mut self, resp: proto::RpcResponse) -> Option<Completion<K>> {
        let Some(p) = self.pending.remove(&resp.request_id) else {
            log::debug!("rpc response for unknown request {}", resp.request_id);
            return None;
        };
        let result = match resp.value {
            Some(proto::rpc_response::Value::Payload(s)) => Ok(s),
            Some(proto::rpc_response::Value::Error(e)) => Err(RpcError::from_proto(e)),
            Some(proto::rpc_response::Value::CompressedPayload(_)) => Err(RpcError::new(
                RpcError::APPLICATION_ERROR,
                "compressed RPC payloads are not supported",
                None,
            )),
            None => Ok(String::new()),
        };
        Some((p.key, result))
    }

    /// A remote participant left: its calls fail after the grace period.
    pub fn participant_left(&mut self, now: Instant, identity: &str) {
        let gone = now + self.disconnect_grace;
        for p in self.pending.values_mut().filter(|p| p.destination == identity) {
            p.gone_deadline = Some(p.gone_deadline.map_or(gone, |d| d.min(gone)));
        }
    }

    /// Fails every call (our connection went away).
    pub fn fail_all(&mut self) -> Vec<Completion<K>> {
        self.pending
            .drain()
            .map(|(_, p)| (p.key, Err(RpcError::built_in(RpcError::RECIPIENT_DISCONNECTED))))
            .collect()
    }

    /// Earliest instant at which [`Self::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.gone_deadline.map_or(p.deadline, |g| g.min(p.deadline)))
            .min()
    }

    /// Expires calls whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Completion<K>> {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now || p.gone_deadline.is_some_and(|g| g <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let code = if p.gone_deadline.is_some_and(|g| g <= now) {
                    RpcError::RECIPIENT_DISCONNECTED
                } else if matches!(p.phase, Phase::AwaitingAck) {
                    RpcError::CONNECTION_TIMEOUT
                } else {
                    RpcError::RESPONSE_TIMEOUT
                };
                out.push((p.key, Err(RpcError::built_in(code))));
            }
        }
        out
    }
}

/// An incoming request that must be dispatched to a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Request id (same on both sides).
    pub request_id: String,
    /// Identity of the caller.
    pub caller_identity: String,
    /// Method name.
    pub method: String,
    /// Request payload.
    pub payload: String,
    /// How long the caller waits for the response.
    pub response_timeout: Duration,
}

/// What to do with an incoming `RpcRequest`.
#[derive(Debug)]
pub struct RequestOutcome {
    /// The ack, to send immediately.
    pub ack: proto::DataPacket,
    /// Either the invocation to dispatch, or an error response to send right away.
    pub action: Result<Invocation, proto::DataPacket>,
}

/// Handles an incoming request from `caller`; `has_handler` tells whether a method is registered.
pub fn handle_request(
    caller: &str,
    req: proto::RpcRequest,
    has_handler: impl Fn(&str) -> bool,
) -> RequestOutcome {
    let ack = data_packet(
        caller,
        Value::RpcAck(proto::RpcAck {
            request_id: req.id.clone(),
        }),
    );
    let error = if req.version != RPC_VERSION {
        Some(RpcError::UNSUPPORTED_VERSION)
    } else if req.payload.len() > MAX_PAYLOAD_BYTES {
        Some(RpcError::REQUEST_PAYLOAD_TOO_LARGE)
    } else if !has_handler(&req.method) {
        Some(RpcError::UNSUPPORTED_METHOD)
    } else {
        None
    };
    let action = match error {
        Some(code) => Err(response_packet(caller, &req.id, Err(RpcError::built_in(code)))),
        None => Ok(Invocation {
            request_id: req.id,
            caller_identity: caller.to_string(),
            method: req.method,
            payload: req.payload,
            response_timeout: Duration::from_millis(u64::from(req.response_timeout_ms)),
        }),
    };
    RequestOutcome { ack, action }
}

/// Builds the response packet for a finished invocation (enforcing the payload cap).
pub fn response_packet(
    caller: &str,
    request_id: &str,
    result: Result<String, RpcError>,
) -> proto::DataPacket {
    let value = match result {
        Ok(p) if p.len() <= MAX_PAYLOAD_BYTES => proto::rpc_response::Value::Payload(p),
        Ok(_) => proto::rpc_response::Value::Error(
            RpcError::built_in(RpcError::RESPONSE_PAYLOAD_TOO_LARGE).to_proto(),
        ),
        Err(e) => proto::rpc_response::Value::Error(e.to_proto()),
    };
    data_packet(
        caller,
        Value::RpcResponse(proto::RpcResponse {
            request_id: request_id.to_string(),
            value: Some(value),
        }),
    )
}

/// A reliable data packet addressed to one identity.
pub(crate) fn data_packet(destination: &str, value: Value) -> proto::DataPacket {
    proto::DataPacket {
        destination_identities: vec![destination.to_string()],
        value: Some(value),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    fn req_id(p: &proto::DataPacket) -> String {
        match &p.value {
            Some(Value::RpcRequest(r)) => r.id.clone(),
            _ => panic!("not a request"),
        }
    }

    #[test]
    fn round_trip_success() {
        let now = t0();
        let mut c = RpcClient::new(DEFAULT_DISCONNECT_GRACE);
        let pkt = c
            .start_call(now, 1u32, "id1".into(), CallParams::new("robot", "m", "p"))
            .unwrap();
        assert_eq!(pkt.destination_identities, vec!["robot".to_string()]);
        let id = req_id(&pkt);
        c.handle_ack(now, &id);
        let done = c
            .handle_response(proto::RpcResponse {
                request_id: id,
                value: Some(proto::rpc_response::Value::Payload("ok".into())),
            })
            .unwrap();
        assert_eq!(done, (1, Ok("ok".to_string())));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn payload_cap() {
        let mut c = RpcClient::new(DEFAULT_DISCONNECT_GRACE);
        let ok = "x".repeat(MAX_PAYLOAD_BYTES);
        assert!(c
            .start_call(t0(), 1, "a".into(), CallParams::new("r", "m", ok))
            .is_ok());
        let big = "x".repeat(MAX_PAYLOAD_BYTES + 1);
        let (k, e) = c
            .start_call(t0(), 2, "b".into(), CallParams::new("r", "m", big))
            .unwrap_err();
        assert_eq!((k, e.code), (2, RpcError::REQUEST_PAYLOAD_TOO_LARGE));
    }

    #[test]
    fn ack_timeout_then_response_timeout() {
        let now = t0();
        let mut c = RpcClient::new(DEFAULT_DISCONNECT_GRACE);
        let mut p = CallParams::new("r", "m", "");
        p.ack_timeout = Duration::from_secs(1);
        p.response_timeout = Duration::from_secs(3);
        c.start_call(now, 1, "a".into(), p.clone()).unwrap();
        c.start_call(now, 2, "b".into(), p).unwrap();
        c.handle_ack(now, "b");
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(1)));
        let out = c.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 1);
        assert_eq!(out[0].1.as_ref().unwrap_err().code, RpcError::CONNECTION_TIMEOUT);
        let out = c.handle_timeout(now + Duration::from_secs(3));
        assert_eq!(out[0].1.as_ref().unwrap_err().code, RpcError::RESPONSE_TIMEOUT);
    }

    #[test]
    fn participant_left_fails_after_grace() {
        let now = t0();
        let mut c = RpcClient::new(Duration::from_millis(100));
        c.start_call(now, 1, "a".into(), CallParams::new("r", "m", ""))
            .unwrap();
        c.start_call(now, 2, "b".into(), CallParams::new("other", "m", ""))
            .unwrap();
        c.handle_ack(now, "a");
        c.participant_left(now, "r");
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_millis(100)));
        assert!(c.handle_timeout(now + Duration::from_millis(50)).is_empty());
        let out = c.handle_timeout(now + Duration::from_millis(100));
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].1.as_ref().unwrap_err().code,
            RpcError::RECIPIENT_DISCONNECTED
        );
        let all = c.fail_all();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].1.as_ref().unwrap_err().code,
            RpcError::RECIPIENT_DISCONNECTED
        );
    }

    #[test]
    fn handler_side_outcomes() {
        let req = |method: &str, version: u32, payload: usize| proto::RpcRequest {
            id: "q".into(),
            method: method.into(),
            payload: "y".repeat(payload),
            response_timeout_ms: 5000,
            version,
            ..Default::default()
        };
        let has = |m: &str| m == "known";
        let err_code = |o: RequestOutcome| match o.action.unwrap_err().value {
            Some(Value::RpcResponse(proto::RpcResponse {
                value: Some(proto::rpc_response::Value::Error(e)),
                ..
            })) => e.code,
            _ => panic!("not an error response"),
        };
        let o = handle_request("caller", req("known", 1, 10), has);
        assert!(matches!(o.ack.value, Some(Value::RpcAck(ref a)) if a.request_id == "q"));
        let inv = o.action.unwrap();
        assert_eq!(inv.response_timeout, Duration::from_secs(5));
        assert_eq!(
            err_code(handle_request("caller", req("unknown", 1, 10), has)),
            RpcError::UNSUPPORTED_METHOD
        );
        assert_eq!(
            err_code(handle_request("caller", req("known", 2, 10), has)),
            RpcError::UNSUPPORTED_VERSION
        );
        assert_eq!(
            err_code(handle_request(
                "caller",
                req("known", 1, MAX_PAYLOAD_BYTES + 1),
                has
            )),
            RpcError::REQUEST_PAYLOAD_TOO_LARGE
        );
        let big = response_packet("c", "q", Ok("z".repeat(MAX_PAYLOAD_BYTES + 1)));
        assert!(
            matches!(big.value, Some(Value::RpcResponse(proto::RpcResponse { value: Some(proto::rpc_response::Value::Error(ref e)), .. })) if e.code == RpcError::RESPONSE_PAYLOAD_TOO_LARGE)
        );
    }
}
