//! Serving a [`SharedSimRobot`] on a [`RuntimeHost`]: one handler per `runtime.*` method.

use std::sync::Arc;

use super::robot::{Reply, SimError};
use super::shared::SharedSimRobot;
use crate::runtime::calls::{method, CAPTURE_REQUEST_ID_ATTRIBUTE};
use crate::{OutgoingStream, RpcError, RuntimeCall, RuntimeHost};

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
                    let host = host_ref
                        .upgrade()
                        .ok_or_else(|| RpcError::application("the runtime is leaving"))?;
                    let stream = OutgoingStream::new(frame.topic)
                        .name(format!("{}.jpg", frame.camera_id))
                        .mime_type("image/jpeg")
                        .attribute(CAPTURE_REQUEST_ID_ATTRIBUTE, frame.request_id)
                        .destination(call.caller_identity.clone());
                    host.send_bytes(frame.jpeg, stream)
                        .map_err(|e| RpcError::application(e.to_string()))?;
                    Ok(frame.ack)
                }
            }
        });
    }
}

/// A simulated robot in a LiveKit room: a [`RuntimeHost`] serving a [`SharedSimRobot`].
///
/// Dropping it shuts the simulator down (waiting tool calls answer `CANCELLED`) and leaves
/// the room.
pub struct SimRuntime {
    sim: SharedSimRobot,
    host: Arc<RuntimeHost>,
}

impl SimRuntime {
    /// Joins the room at `livekit_url` with `token` (identity e.g. `simplesim:<robot_id>`, or
    /// an agent with `lk.agent.name`) and serves `sim` there.
    pub fn connect(
        livekit_url: &str,
        token: &str,
        sim: SharedSimRobot,
        connect_timeout: std::time::Duration,
    ) -> crate::Result<SimRuntime> {
        let host = Arc::new(RuntimeHost::connect(livekit_url, token, connect_timeout)?);
        serve(&host, sim.clone());
        Ok(SimRuntime { sim, host })
    }

    /// The simulator.
    pub fn sim(&self) -> &SharedSimRobot {
        &self.sim
    }
}

/// How long dropping a [`SimRuntime`] waits for calls in progress to answer.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Time for the last replies to leave before the room closes.
const REPLY_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

impl Drop for SimRuntime {
    fn drop(&mut self) {
        let busy = self.sim.calls_in_flight() > 0;
        self.sim.close();
        if busy {
            // Let the woken tool calls hand their CANCELLED result to the room.
            let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
            while self.sim.calls_in_flight() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::thread::sleep(REPLY_GRACE);
        }
    }
}

impl std::fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRuntime")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}
