//! Serving a [`SharedSimRobot`] on a [`RuntimeHost`]: one handler per `runtime.*` method.

use std::collections::HashMap;
use std::sync::Arc;

use super::robot::{Reply, SimError};
use super::shared::SharedSimRobot;
use crate::runtime::calls::{method, CAPTURE_REQUEST_ID_ATTRIBUTE};
use crate::{OutgoingStream, RpcFailure, RuntimeCall, RuntimeHost};

/// The methods [`serve`] answers (LiveKit answers any other with `UNSUPPORTED_METHOD`).
pub const SERVED_METHODS: [&str; 8] = [
    method::TOOLS_LIST,
    method::TOOLS_CALL,
    method::STATE,
    method::SCENE_STATE,
    method::CAPABILITIES,
    method::CANCEL,
    method::CAMERAS_CAPTURE,
    method::FORWARD_ENVELOPE,
];

/// Answers the `runtime.*` RPC of `host` with `sim`: refusals become guard envelopes, tool
/// calls reply when their action ends, camera frames go to the caller as a byte stream
/// (topic `menlo.camera_capture`, attribute `request_id`) before the ack.
///
/// The handlers hold `host` weakly, so dropping the last `Arc` still leaves the room. To stop,
/// call [`SharedSimRobot::close`] first: a tool call still waiting for its action then
/// answers at once (`CANCELLED`) instead of keeping its handler thread.
pub fn serve(host: &Arc<RuntimeHost>, sim: SharedSimRobot) {
    for name in SERVED_METHODS {
        let sim = sim.clone();
        let host_ref = Arc::downgrade(host);
        host.handle(name, move |call: &RuntimeCall| {
            let reply = match sim.call(&call.method, &call.payload, call.response_timeout) {
                Ok(reply) => reply,
                Err(refusal) => return Ok(refusal.guard_envelope()),
            };
            match reply {
                Reply::Json(json) => Ok(json),
                // `SharedSimRobot::call` waits for the action, so this does not happen.
                Reply::Running { action_id } => Ok(SimError::new(
                    "RUNTIME_FAILED",
                    format!("action {action_id} did not finish"),
                )
                .guard_envelope()),
                Reply::Frame(frame) => {
                    let host = host_ref.upgrade().ok_or_else(|| {
                        RpcFailure::new(RpcFailure::APPLICATION_ERROR, "the runtime is leaving")
                    })?;
                    let stream = OutgoingStream {
                        topic: frame.topic,
                        name: format!("{}.jpg", frame.camera_id),
                        mime_type: "image/jpeg".to_owned(),
                        attributes: HashMap::from([(
                            CAPTURE_REQUEST_ID_ATTRIBUTE.to_owned(),
                            frame.request_id,
                        )]),
                        destinations: vec![call.caller_identity.clone()],
                    };
                    host.send_bytes(frame.jpeg, stream)
                        .map_err(|e| RpcFailure::new(RpcFailure::APPLICATION_ERROR, e.to_string()))?;
                    Ok(frame.ack)
                }
            }
        });
    }
}
