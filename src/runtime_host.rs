//! The runtime side of the live transport: join a room as the robot runtime, answer
//! `runtime.*` RPC, and send camera frames as byte streams.
//!
//! This is what a robot runtime, a simulator or a test peer builds on; a [`crate::Session`]
//! is the other side. Handlers run on the SDK's blocking pool, never on an async task.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::live::{Invocation, OutgoingStream, Room, RoomOptions, RpcError};
use crate::live::{NetworkPath, Participant};
use crate::live::{RoomEvent, RoomObserver};
use crate::runtime::calls::method::TOOLS_LIST;
use crate::session::join_failure;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One incoming RPC call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeCall {
    /// Identity of the caller.
    pub caller_identity: String,
    /// Method, e.g. `runtime.tools_call`.
    pub method: String,
    /// The JSON payload text.
    pub payload: String,
    /// How long the caller waits for the reply.
    pub response_timeout: Duration,
}

/// The attribute a [`RuntimeHost`] sets on itself (value [`ANNOUNCED_VALUE`]) once it
/// answers `runtime.tools_list`, when its token grants `canUpdateOwnMetadata`.
const ANNOUNCE_ATTRIBUTE: &str = "menlo.runtime_host";
const ANNOUNCED_VALUE: &str = "ready";

/// A participant that serves `runtime.*` RPC in a robot's room.
#[must_use = "dropping a RuntimeHost leaves the room"]
pub struct RuntimeHost {
    room: Room,
    announced: AtomicBool,
}

impl RuntimeHost {
    /// Joins the room at `livekit_url` with a participant token (whose identity the session
    /// will look for, e.g. `simplesim:<robot_id>` or an agent with `lk.agent.name`).
    ///
    /// livekit-server announces a participant that publishes no track to the others up to
    /// 3 s late (in batches), but an attribute change at once. So when the token grants
    /// `canUpdateOwnMetadata`, the host sets the attribute `menlo.runtime_host` = `ready` on
    /// itself as soon as it answers `runtime.tools_list` (the method sessions probe to find
    /// their runtime), and sessions in the room find it within a round trip. Register
    /// `runtime.tools_list` after the other handlers: calls may follow at once.
    ///
    /// Like a session, the host follows the proxy environment (`ALL_PROXY` / `HTTPS_PROXY` /
    /// `HTTP_PROXY`, `NO_PROXY`; see [`ConnectOptions::proxy`](crate::ConnectOptions::proxy)):
    /// its signal websocket and TURN over TCP/TLS go through an `http://` proxy found there,
    /// and another kind of proxy there is an [`Error::InvalidInput`](crate::Error::InvalidInput).
    pub fn connect(livekit_url: &str, token: &str, connect_timeout: Duration) -> Result<RuntimeHost> {
        let options = RoomOptions {
            connect_timeout,
            proxy: crate::session::ProxyChoice::Environment.resolve(ureq::Proxy::try_from_env)?,
            ..RoomOptions::default()
        };
        let room = Room::connect(livekit_url, token, options, Arc::new(Unobserved))
            .map_err(|e| join_failure(e, livekit_url, connect_timeout))?;
        Ok(RuntimeHost {
            room,
            announced: AtomicBool::new(false),
        })
    }

    /// This participant's identity.
    pub fn identity(&self) -> &str {
        self.room.local_identity()
    }

    /// The room name.
    pub fn room_name(&self) -> &str {
        self.room.room_name()
    }

    /// Test hook: every recovery of the room's link so far, as (resumed, when).
    #[doc(hidden)]
    pub fn reconnects_for_test(&self) -> Vec<(bool, std::time::Instant)> {
        self.room.reconnects()
    }

    /// Whether the room connection is up.
    pub fn is_connected(&self) -> bool {
        self.room.is_connected()
    }

    /// The network path the host's room connection rides on now (UDP, ICE over TCP or a TURN
    /// relay), as [`crate::Session::network_path`]; `None` once disconnected, and during a
    /// full reconnect until the new link carries data.
    pub fn network_path(&self) -> Option<NetworkPath> {
        self.room.network_path()
    }

    /// The other participants in the room now.
    pub fn participants(&self) -> Vec<Participant> {
        self.room.participants()
    }

    /// Answers `method` with `handler` (replacing any earlier one). The handler returns the
    /// reply payload (JSON text) or an [`RpcError`] reply, e.g. [`RpcError::application`].
    /// A panicking handler answers [`crate::RpcErrorCode::ApplicationError`].
    pub fn handle<F>(&self, method: &str, handler: F)
    where
        F: Fn(&RuntimeCall) -> std::result::Result<String, RpcError> + Send + Sync + 'static,
    {
        self.room
            .register_rpc_method(method, move |invocation: Invocation| {
                let call = RuntimeCall {
                    caller_identity: invocation.caller_identity,
                    method: invocation.method,
                    payload: invocation.payload,
                    response_timeout: invocation.response_timeout,
                };
                handler(&call)
            });
        if method == TOOLS_LIST && !self.announced.swap(true, Ordering::SeqCst) {
            announce(&self.room);
        }
    }

    /// Stops answering `method` (callers then get `UNSUPPORTED_METHOD`).
    pub fn remove_handler(&self, method: &str) {
        self.room.unregister_rpc_method(method);
    }

    /// Sends `data` as a byte stream; returns once it is queued on the reliable channel.
    pub fn send_bytes(&self, data: Vec<u8>, stream: OutgoingStream) -> Result<()> {
        self.room
            .send_bytes(data, stream)
            .map_err(|e| Error::disconnected_by("the byte stream was not sent", e))
    }

    /// Leaves the room (dropping the host does the same).
    pub fn disconnect(self) {
        self.room.close();
    }
}

/// Sets [`ANNOUNCE_ATTRIBUTE`] on the host when its token allows it (see
/// [`RuntimeHost::connect`]).
fn announce(room: &Room) {
    if room.can_update_metadata() {
        let attribute = (ANNOUNCE_ATTRIBUTE.to_owned(), ANNOUNCED_VALUE.to_owned());
        room.set_attributes(std::collections::HashMap::from([attribute]));
    }
}

/// A host keeps no queue of room events or byte streams: it asks the engine for no stream
/// topic (so incoming streams are discarded as their packets arrive) and lets room events go
/// (its participants are a snapshot kept by the engine). Nothing piles up for a host that
/// never reads.
struct Unobserved;

impl RoomObserver for Unobserved {
    fn on_event(&self, _: RoomEvent) {}
    fn on_stream(&self, _: crate::live::ByteStream) {}
}

impl fmt::Debug for RuntimeHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHost")
            .field("identity", &self.identity())
            .field("room", &self.room_name())
            .finish_non_exhaustive()
    }
}
