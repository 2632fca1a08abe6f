//! LiveKit RPC, glued onto the engine.
//!
//! The protocol itself is LiveKit's: `livekit-rpc`'s [`RpcClientManager`] runs outgoing calls
//! (request → ack → response, timeouts, the grace period after a recipient leaves, v1 data
//! packets or v2 text data streams depending on what the recipient advertises) and its
//! [`RpcServerManager`] answers incoming requests. A call whose reply is known small can ask
//! for v1 packets to any recipient ([`RpcWire`]): it then goes through a view of the
//! transport that reports the recipient as a v1 client. This module holds what the rest of the crate
//! sees ([`CallParams`], [`Invocation`], [`RpcReply`]), the conversions to and from the
//! crate's [`RpcError`], and [`EngineTransport`], the `RpcTransport` those managers send
//! through: packets go to the engine task over its command channel, text streams through
//! `livekit-data-stream`'s outgoing manager, and the participant registry is the engine's
//! participant snapshot.

use crate::live::engine::{Command, Shared};
use crate::live::error::{LiveError, RpcError, RpcErrorCode};
use crossbeam_channel as cb;
use livekit_common::{ClientCapability, ParticipantIdentity, RemoteParticipantRegistry};
use livekit_data_stream::api::{SendByteOptions, SendTextOptions, StreamResult, TextStreamInfo};
use livekit_data_stream::backend::outgoing::Manager as OutgoingStreams;
use livekit_protocol as proto;
use livekit_rpc::api as lk;
use livekit_rpc::backend::{
    HandleRequestOptions, RpcClientManager, RpcServerManager, RpcTransport, RpcTransportError,
};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use livekit_rpc::backend::{RPC_REQUEST_TOPIC, RPC_RESPONSE_TOPIC};

/// Error code of a call whose request was written to the old link but not acknowledged when
/// a full reconnect replaced it: the runtime may or may not have received it.
pub(crate) const CONNECTION_LOST: u32 = 1590;

/// Largest v1 request / response payload, in bytes (15 KiB).
pub const MAX_PAYLOAD_BYTES: usize = lk::MAX_V1_PAYLOAD_BYTES;
/// Default time for the request to reach the destination and the ack to come back
/// (`livekit-rpc`'s `max_round_trip_latency` default).
pub const DEFAULT_ACK_TIMEOUT: Duration = crate::session::timeouts::RPC_ACK;
/// Default time to wait for the response once acknowledged.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = crate::session::timeouts::RPC_RESPONSE_DEFAULT;

/// A synchronous RPC method handler. Runs on the library's blocking thread pool.
pub type RpcHandler = Arc<dyn Fn(Invocation) -> Result<String, RpcError> + Send + Sync + 'static>;

/// Parameters of one outgoing call.
#[derive(Debug, Clone)]
pub struct CallParams {
    /// Identity of the participant to call.
    pub destination: String,
    /// Method name.
    pub method: String,
    /// Payload (at most [`MAX_PAYLOAD_BYTES`] unless the destination speaks RPC v2).
    pub payload: String,
    /// Maximum time to wait for the response after the ack.
    pub response_timeout: Duration,
    /// Maximum time for the ack.
    pub ack_timeout: Duration,
    /// How the request travels (default: as the destination advertises).
    pub wire: RpcWire,
}

/// How one outgoing call travels. A v2 peer accepts v1 packets too, but answers a v1
/// request with a v1 response, and a response over [`MAX_PAYLOAD_BYTES`] then fails with
/// `RESPONSE_PAYLOAD_TOO_LARGE` (1504): packets suit calls whose reply is known small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RpcWire {
    /// As the destination advertises: a v2 text data stream to a v2 peer (three packets at
    /// least, any size), v1 packets otherwise.
    #[default]
    Advertised,
    /// One v1 request packet when the payload fits [`MAX_PAYLOAD_BYTES`]; the reply comes
    /// back as one packet too. Falls back to [`RpcWire::Advertised`] for a larger payload.
    Packets,
    /// Like [`RpcWire::Packets`], and if the reply turns out too large (1504) the call is
    /// sent once more as advertised. Only for idempotent reads: the method runs twice.
    PacketsOrRepeat,
}

impl RpcWire {
    /// Whether a request carrying `payload` goes as v1 packets.
    fn packets_for(self, payload: &str) -> bool {
        self != RpcWire::Advertised && payload.len() <= MAX_PAYLOAD_BYTES
    }
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
            wire: RpcWire::Advertised,
        }
    }

    /// The same call, as `livekit-rpc` takes it.
    pub(crate) fn into_perform_data(self) -> lk::PerformRpcData {
        lk::PerformRpcData::new(self.destination, self.method)
            .with_payload(self.payload)
            .with_response_timeout(self.response_timeout)
            .with_max_round_trip_latency(self.ack_timeout)
    }
}

/// An incoming request, as handed to a handler.
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

impl From<lk::RpcError> for RpcError {
    fn from(e: lk::RpcError) -> Self {
        let error = RpcError::new(e.code, e.message);
        match e.data.filter(|d| !d.is_empty()) {
            Some(data) => error.with_data(data),
            None => error,
        }
    }
}

impl From<RpcError> for lk::RpcError {
    fn from(e: RpcError) -> Self {
        lk::RpcError::new(e.code.as_u32(), e.message, e.data)
    }
}

type ReplyTo = Box<dyn FnOnce(Result<String, RpcError>) + Send>;

/// Where the outcome of an outgoing RPC goes: a callback run on the executor (it must not
/// block). Delivered exactly once: a reply dropped without an outcome (its task was torn
/// down with the executor) reports `RecipientDisconnected`.
pub(crate) struct RpcReply(Option<ReplyTo>);

impl RpcReply {
    pub(crate) fn callback(f: impl FnOnce(Result<String, RpcError>) + Send + 'static) -> Self {
        RpcReply(Some(Box::new(f)))
    }

    /// Delivers the outcome.
    pub(crate) fn send(mut self, result: Result<String, RpcError>) {
        self.deliver(result);
    }

    fn deliver(&mut self, result: Result<String, RpcError>) {
        if let Some(callback) = self.0.take() {
            callback(result);
        }
    }
}

impl Drop for RpcReply {
    fn drop(&mut self) {
        self.deliver(Err(RpcError::built_in(RpcErrorCode::RecipientDisconnected)));
    }
}

/// The way into the engine task for packets sent from other tasks (RPC managers, the
/// outgoing data-stream pump).
#[derive(Clone)]
pub(crate) struct Outbox {
    pub(crate) commands: cb::Sender<Command>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl Outbox {
    /// Queues `packets` (in order, reliable) on the engine; resolves once they are handed to
    /// the data channel, or fail.
    pub(crate) async fn transmit(&self, packets: Vec<proto::DataPacket>) -> Result<(), LiveError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Transmit { packets, done })
            .map_err(|_| LiveError::Disconnected("room closed".into()))?;
        self.wake.notify_one();
        result
            .await
            .unwrap_or_else(|_| Err(LiveError::Disconnected("room closed".into())))
    }
}

/// The [`RpcTransport`] of one room (see the module docs).
pub(crate) struct EngineTransport {
    outbox: Outbox,
    shared: Arc<Shared>,
    server_version: Option<String>,
    streams: OutgoingStreams,
}

impl EngineTransport {
    /// A transport sending through `outbox`; `streams` is the outgoing data-stream manager
    /// whose packet batches are pumped into the same outbox.
    pub(crate) fn new(
        outbox: Outbox,
        shared: Arc<Shared>,
        server_version: Option<String>,
        streams: OutgoingStreams,
    ) -> Self {
        EngineTransport {
            outbox,
            shared,
            server_version,
            streams,
        }
    }

    /// Sends `data` as a byte stream through `livekit-data-stream`'s outgoing manager.
    pub(crate) async fn send_bytes(
        &self,
        data: Vec<u8>,
        options: crate::live::OutgoingStream,
    ) -> Result<(), LiveError> {
        let mut send = SendByteOptions::new_with_topic(options.topic);
        send.attributes = options.attributes;
        send.destination_identities = options.destinations.into_iter().map(Into::into).collect();
        send.name = Some(options.name).filter(|n| !n.is_empty());
        send.mime_type = Some(options.mime_type).filter(|m| !m.is_empty());
        match self.streams.send_bytes(&data, send, self).await {
            Ok(_) => Ok(()),
            Err(_) if !self.shared.is_connected() => Err(LiveError::Disconnected("room closed".into())),
            Err(e) => Err(LiveError::Rtc(format!("byte stream not sent: {e}"))),
        }
    }

    fn with_participants<T>(
        &self,
        f: impl FnOnce(&std::collections::HashMap<String, crate::live::Participant>) -> T,
    ) -> T {
        let map = self.shared.participants.lock().unwrap_or_else(|p| p.into_inner());
        f(&map)
    }
}

impl RemoteParticipantRegistry for EngineTransport {
    fn remote_client_protocol(&self, identity: &ParticipantIdentity) -> i32 {
        self.with_participants(|m| m.get(identity.as_str()).map_or(0, |p| p.client_protocol))
    }

    fn remote_capabilities(&self, identity: &ParticipantIdentity) -> Vec<ClientCapability> {
        self.with_participants(|m| {
            m.get(identity.as_str())
                .map(|p| {
                    p.capabilities
                        .iter()
                        .filter_map(|c| ClientCapability::try_from(*c).ok())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    fn remote_identities(&self) -> Vec<ParticipantIdentity> {
        self.with_participants(|m| m.keys().map(|k| ParticipantIdentity(k.clone())).collect())
    }
}

impl RpcTransport for EngineTransport {
    async fn publish_data(&self, data: proto::DataPacket) -> Result<(), RpcTransportError> {
        self.outbox
            .transmit(vec![data])
            .await
            .map_err(RpcTransportError::new)
    }

    async fn send_text(&self, text: &str, options: SendTextOptions) -> StreamResult<TextStreamInfo> {
        self.streams.send_text(text, options, self).await
    }

    fn server_version(&self) -> Option<String> {
        self.server_version.clone()
    }
}

/// The RPC state of one room: LiveKit's managers and the transport they send through.
pub(crate) struct Rpc {
    pub(crate) client: RpcClientManager,
    pub(crate) server: Arc<RpcServerManager>,
    pub(crate) transport: EngineTransport,
}

impl Rpc {
    /// Runs one outgoing call to completion and maps the outcome onto the crate's error.
    pub(crate) async fn perform(self: &Arc<Self>, params: CallParams) -> Result<String, RpcError> {
        perform_on_wire(self, params).await.map_err(|e| {
            let e = RpcError::from(e);
            // A send that failed because the room went away is a disconnection.
            if e.code == RpcErrorCode::SendFailed && !self.transport.shared.is_connected() {
                RpcError::built_in(RpcErrorCode::RecipientDisconnected)
            } else {
                e
            }
        })
    }
}

/// What holds a room's RPC client manager and transport (the room's [`Rpc`]; a test double
/// in tests), so that a call can borrow the transport through an owned handle.
trait RpcPeer: Send + Sync + 'static {
    type Transport: RpcTransport + Sync + 'static;
    fn client(&self) -> &RpcClientManager;
    fn transport(&self) -> &Self::Transport;
}

impl RpcPeer for Rpc {
    type Transport = EngineTransport;
    fn client(&self) -> &RpcClientManager {
        &self.client
    }
    fn transport(&self) -> &EngineTransport {
        &self.transport
    }
}

/// Runs `params` through `peer`'s transport, as [`CallParams::wire`] says.
async fn perform_on_wire<P: RpcPeer>(peer: &Arc<P>, params: CallParams) -> Result<String, lk::RpcError> {
    let client = peer.client();
    if !params.wire.packets_for(&params.payload) {
        return client
            .perform_rpc(params.into_perform_data(), peer.transport())
            .await;
    }
    let repeat = (params.wire == RpcWire::PacketsOrRepeat).then(|| params.clone());
    let packets = PacketsView(Arc::clone(peer));
    match (
        client.perform_rpc(params.into_perform_data(), &packets).await,
        repeat,
    ) {
        (Err(e), Some(params)) if e.code == lk::RpcErrorCode::ResponsePayloadTooLarge as u32 => {
            client
                .perform_rpc(params.into_perform_data(), peer.transport())
                .await
        }
        (outcome, _) => outcome,
    }
}

/// A room's transport as seen by one call that must go as v1 packets: `livekit-rpc` picks
/// v1 for a destination whose client protocol is 0, so this view answers 0 and delegates
/// everything else. (Owns an `Arc` because `perform_rpc` wants a `'static` transport.)
struct PacketsView<P>(Arc<P>);

impl<P: RpcPeer> RemoteParticipantRegistry for PacketsView<P> {
    fn remote_client_protocol(&self, _: &ParticipantIdentity) -> i32 {
        0
    }

    fn remote_capabilities(&self, identity: &ParticipantIdentity) -> Vec<ClientCapability> {
        self.0.transport().remote_capabilities(identity)
    }

    fn remote_identities(&self) -> Vec<ParticipantIdentity> {
        self.0.transport().remote_identities()
    }
}

impl<P: RpcPeer> RpcTransport for PacketsView<P> {
    async fn publish_data(&self, data: proto::DataPacket) -> Result<(), RpcTransportError> {
        self.0.transport().publish_data(data).await
    }

    async fn send_text(&self, text: &str, options: SendTextOptions) -> StreamResult<TextStreamInfo> {
        self.0.transport().send_text(text, options).await
    }

    fn server_version(&self) -> Option<String> {
        self.0.transport().server_version()
    }
}

/// Registers (or replaces) a blocking handler on `server`. Each request runs it with
/// `spawn_blocking` on the executor, so a slow handler never holds up the engine; a
/// panicking handler answers `APPLICATION_ERROR`.
pub(crate) fn register_handler(server: &RpcServerManager, method: &str, handler: RpcHandler) {
    let name = method.to_string();
    server.register_method(method.to_string(), move |data: lk::RpcInvocationData| {
        let handler = Arc::clone(&handler);
        let invocation = Invocation {
            request_id: data.request_id,
            caller_identity: data.caller_identity.0,
            method: name.clone(),
            payload: data.payload,
            response_timeout: data.response_timeout,
        };
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || handler(invocation)).await {
                Ok(result) => result.map_err(lk::RpcError::from),
                Err(_) => Err(lk::RpcError::built_in(lk::RpcErrorCode::ApplicationError, None)),
            }
        })
    });
}

/// Turns an incoming v1 `RpcRequest` from `caller` into what
/// `RpcServerManager::handle_v1_request` takes.
pub(crate) fn request_options(caller: String, req: proto::RpcRequest) -> HandleRequestOptions {
    HandleRequestOptions {
        caller_identity: caller.into(),
        request_id: req.id,
        method: req.method,
        payload: req.payload,
        response_timeout: Duration::from_millis(u64::from(req.response_timeout_ms)),
        version: req.version,
    }
}

/// Turns the value of an incoming `RpcResponse` into what
/// `RpcClientManager::handle_v1_response_packet` takes. A compressed payload (we never
/// advertise compression) becomes an error rather than an empty success.
pub(crate) fn response_parts(
    resp: Option<proto::rpc_response::Value>,
) -> (Option<String>, Option<proto::RpcError>) {
    match resp {
        None => (Some(String::new()), None),
        Some(proto::rpc_response::Value::Payload(p)) => (Some(p), None),
        Some(proto::rpc_response::Value::Error(e)) => (None, Some(e)),
        Some(proto::rpc_response::Value::CompressedPayload(_)) => (
            None,
            Some(RpcError::application("compressed RPC payloads are not supported").to_proto()),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The glue against LiveKit's managers, over an in-memory transport: two "participants"
    //! whose packets are delivered to each other's managers.
    use super::*;
    use proto::data_packet::Value;
    use std::sync::Mutex;

    /// Loops packets back into a pair of managers; protocol 0 (v1) unless told otherwise.
    #[derive(Clone)]
    struct Loopback(Arc<Inner>);

    struct Inner {
        client: Arc<RpcClientManager>,
        server: Arc<RpcServerManager>,
        sent: Mutex<Vec<proto::DataPacket>>,
        /// Methods of the requests that went as v2 text streams (refused: not looped back).
        streamed: Mutex<Vec<String>>,
        drop_requests: bool,
        /// The client protocol the destination advertises.
        protocol: i32,
        /// Requests, answered by a task of their own (see [`loopback`]).
        requests: tokio::sync::mpsc::UnboundedSender<proto::RpcRequest>,
    }

    impl RemoteParticipantRegistry for Loopback {
        fn remote_client_protocol(&self, _: &ParticipantIdentity) -> i32 {
            self.protocol
        }
        fn remote_capabilities(&self, _: &ParticipantIdentity) -> Vec<ClientCapability> {
            Vec::new()
        }
        fn remote_identities(&self) -> Vec<ParticipantIdentity> {
            vec!["robot".into()]
        }
    }

    impl RpcPeer for Loopback {
        type Transport = Loopback;
        fn client(&self) -> &RpcClientManager {
            &self.client
        }
        fn transport(&self) -> &Loopback {
            self
        }
    }

    impl std::ops::Deref for Loopback {
        type Target = Inner;
        fn deref(&self) -> &Inner {
            &self.0
        }
    }

    impl RpcTransport for Loopback {
        async fn publish_data(&self, data: proto::DataPacket) -> Result<(), RpcTransportError> {
            self.sent.lock().unwrap().push(data.clone());
            match data.value {
                Some(Value::RpcRequest(r)) if !self.drop_requests => {
                    let _ = self.requests.send(r);
                }
                Some(Value::RpcAck(a)) => self.client.handle_incoming_rpc_ack(a.request_id),
                Some(Value::RpcResponse(r)) => {
                    let (payload, error) = response_parts(r.value);
                    self.client
                        .handle_v1_response_packet(r.request_id, payload, error)
                }
                _ => {}
            }
            Ok(())
        }

        async fn send_text(&self, _: &str, options: SendTextOptions) -> StreamResult<TextStreamInfo> {
            let method = options.attributes.get("lk.rpc_request_method").cloned();
            self.streamed.lock().unwrap().push(method.unwrap_or_default());
            Err(livekit_data_stream::api::StreamError::AlreadyClosed)
        }

        fn server_version(&self) -> Option<String> {
            Some("1.9.0".into())
        }
    }

    fn loopback(drop_requests: bool) -> Loopback {
        loopback_to(drop_requests, 0)
    }

    /// A loopback whose destination advertises client `protocol`.
    fn loopback_to(drop_requests: bool, protocol: i32) -> Loopback {
        let server = Arc::new(RpcServerManager::new());
        register_handler(&server, "echo", Arc::new(|inv: Invocation| Ok(inv.payload)));
        register_handler(
            &server,
            "fail",
            Arc::new(|_| Err(RpcError::new(42u32, "nope").with_data("why"))),
        );
        register_handler(
            &server,
            "big",
            Arc::new(|_| Ok("z".repeat(MAX_PAYLOAD_BYTES + 1))),
        );
        register_handler(
            &server,
            "panic",
            Arc::new(|_| panic!("handler panicked (expected)")),
        );
        let (requests, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let lb = Loopback(Arc::new(Inner {
            client: Arc::new(RpcClientManager::new()),
            server,
            sent: Mutex::new(Vec::new()),
            streamed: Mutex::new(Vec::new()),
            drop_requests,
            protocol,
            requests,
        }));
        let weak = Arc::downgrade(&lb.0);
        tokio::spawn(async move {
            while let Some(r) = incoming.recv().await {
                let Some(this) = weak.upgrade().map(Loopback) else {
                    return;
                };
                tokio::spawn(async move {
                    let server = Arc::clone(&this.server);
                    server
                        .handle_v1_request(request_options("caller".into(), r), &this)
                        .await;
                });
            }
        });
        lb
    }

    async fn call(lb: &Loopback, params: CallParams) -> Result<String, RpcError> {
        lb.client
            .perform_rpc(params.into_perform_data(), lb)
            .await
            .map_err(RpcError::from)
    }

    /// Runs `params` as the room's `Rpc` does, and says how each request went.
    async fn call_on_wire(
        lb: &Loopback,
        params: CallParams,
    ) -> (Result<String, RpcError>, Vec<String>, Vec<String>) {
        lb.sent.lock().unwrap().clear();
        lb.streamed.lock().unwrap().clear();
        let outcome = perform_on_wire(&Arc::new(lb.clone()), params)
            .await
            .map_err(RpcError::from);
        let packets = lb.sent.lock().unwrap().clone();
        let packets = packets.into_iter().filter_map(|p| match p.value {
            Some(Value::RpcRequest(r)) if r.version == 1 => Some(r.method),
            _ => None,
        });
        let packets = packets.collect();
        (outcome, packets, lb.streamed.lock().unwrap().clone())
    }

    fn with_wire(method: &str, payload: String, wire: RpcWire) -> CallParams {
        CallParams {
            wire,
            ..CallParams::new("robot", method, payload)
        }
    }

    #[test]
    fn a_v2_peer_gets_packets_only_when_asked_and_the_payload_fits() {
        rt().block_on(async {
            let lb = loopback_to(false, 1);
            let (ok, packets, streamed) =
                call_on_wire(&lb, with_wire("echo", "hi".into(), RpcWire::Packets)).await;
            assert_eq!(
                (ok, packets, streamed),
                (Ok("hi".into()), vec!["echo".into()], vec![])
            );

            let (err, packets, streamed) =
                call_on_wire(&lb, with_wire("echo", "hi".into(), RpcWire::Advertised)).await;
            assert_eq!(err.unwrap_err().code, RpcErrorCode::SendFailed);
            assert_eq!((packets, streamed), (vec![], vec!["echo".to_string()]));

            let big = "x".repeat(MAX_PAYLOAD_BYTES + 1);
            let (_, packets, streamed) =
                call_on_wire(&lb, with_wire("echo", big, RpcWire::PacketsOrRepeat)).await;
            assert_eq!((packets, streamed), (vec![], vec!["echo".to_string()]));
        });
    }

    #[test]
    fn a_reply_too_large_for_packets_is_repeated_as_advertised_only_when_allowed() {
        rt().block_on(async {
            let lb = loopback_to(false, 1);
            let (err, packets, streamed) =
                call_on_wire(&lb, with_wire("big", String::new(), RpcWire::Packets)).await;
            assert_eq!(err.unwrap_err().code, RpcErrorCode::ResponsePayloadTooLarge);
            assert_eq!((packets, streamed), (vec!["big".to_string()], vec![]));

            let (_, packets, streamed) =
                call_on_wire(&lb, with_wire("big", String::new(), RpcWire::PacketsOrRepeat)).await;
            assert_eq!(
                (packets, streamed),
                (vec!["big".to_string()], vec!["big".to_string()])
            );

            // Other failures are final.
            let (err, packets, streamed) =
                call_on_wire(&lb, with_wire("fail", String::new(), RpcWire::PacketsOrRepeat)).await;
            assert_eq!(err.unwrap_err().code, RpcErrorCode::Other(42));
            assert_eq!((packets, streamed), (vec!["fail".to_string()], vec![]));
        });
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn round_trip_and_built_in_errors() {
        rt().block_on(async {
            let lb = loopback(false);
            let ok = call(&lb, CallParams::new("robot", "echo", "hi")).await;
            assert_eq!(ok, Ok("hi".to_string()));
            let sent = lb.sent.lock().unwrap().clone();
            assert!(
                matches!(&sent[0].value, Some(Value::RpcRequest(r)) if r.version == 1 && r.method == "echo")
            );
            assert_eq!(sent[0].destination_identities, vec!["robot".to_string()]);

            let code = |r: Result<String, RpcError>| r.unwrap_err().code;
            let err = call(&lb, CallParams::new("robot", "fail", "")).await.unwrap_err();
            assert_eq!(
                (err.code, err.message.as_str(), err.data.as_deref()),
                (RpcErrorCode::Other(42), "nope", Some("why"))
            );
            assert_eq!(
                code(call(&lb, CallParams::new("robot", "unknown", "")).await),
                RpcErrorCode::UnsupportedMethod
            );
            assert_eq!(
                code(call(&lb, CallParams::new("robot", "big", "")).await),
                RpcErrorCode::ResponsePayloadTooLarge
            );
            assert_eq!(
                code(call(&lb, CallParams::new("robot", "panic", "")).await),
                RpcErrorCode::ApplicationError
            );
        });
    }

    #[test]
    fn payload_cap_is_enforced_before_sending() {
        rt().block_on(async {
            let lb = loopback(false);
            let ok = "x".repeat(MAX_PAYLOAD_BYTES);
            assert_eq!(
                call(&lb, CallParams::new("robot", "echo", ok.clone())).await,
                Ok(ok)
            );
            lb.sent.lock().unwrap().clear();
            let big = "x".repeat(MAX_PAYLOAD_BYTES + 1);
            let err = call(&lb, CallParams::new("robot", "echo", big))
                .await
                .unwrap_err();
            assert_eq!(err.code, RpcErrorCode::RequestPayloadTooLarge);
            assert!(lb.sent.lock().unwrap().is_empty(), "refused locally");
        });
    }

    #[test]
    fn timeouts_leaving_and_closing() {
        rt().block_on(async {
            let lb = loopback(true);
            // No ack: connection timeout after the ack timeout.
            let mut p = CallParams::new("robot", "echo", "");
            p.ack_timeout = Duration::from_millis(100);
            let err = call(&lb, p.clone()).await.unwrap_err();
            assert_eq!(err.code, RpcErrorCode::ConnectionTimeout);

            // The recipient leaves: the call fails after the grace, well before its timeouts.
            let started = std::time::Instant::now();
            let pending = tokio::spawn({
                let lb = lb.clone();
                async move { call(&lb, CallParams::new("robot", "echo", "")).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            lb.client.handle_participant_disconnected(&"robot".into());
            let err = pending.await.unwrap().unwrap_err();
            assert_eq!(err.code, RpcErrorCode::RecipientDisconnected);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );

            // Our room closes: every pending call fails at once.
            let pending: Vec<_> = (0..3)
                .map(|_| {
                    let lb = lb.clone();
                    tokio::spawn(async move { call(&lb, CallParams::new("robot", "echo", "")).await })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started = std::time::Instant::now();
            lb.client.fail_all_pending();
            for p in pending {
                assert_eq!(
                    p.await.unwrap().unwrap_err().code,
                    RpcErrorCode::RecipientDisconnected
                );
            }
            assert!(started.elapsed() < Duration::from_secs(1));
        });
    }

    #[test]
    fn errors_convert_both_ways_and_replies_arrive_once() {
        let ours = RpcError::new(1500u32, "boom");
        let theirs = lk::RpcError::from(ours.clone());
        assert_eq!(theirs.to_proto().data, "");
        assert_eq!(RpcError::from(theirs), ours);
        assert_eq!(
            RpcError::from(lk::RpcError::built_in(lk::RpcErrorCode::UnsupportedMethod, None)),
            RpcError::built_in(RpcErrorCode::UnsupportedMethod)
        );
        let d = lk::PerformRpcData::default();
        assert_eq!(
            (d.max_round_trip_latency, d.response_timeout),
            (DEFAULT_ACK_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT)
        );

        let (tx, rx) = cb::bounded(1);
        drop(RpcReply::callback(move |r| tx.send(r).unwrap()));
        assert_eq!(
            rx.recv().unwrap().unwrap_err().code,
            RpcErrorCode::RecipientDisconnected
        );
        let (tx, rx) = cb::bounded(1);
        RpcReply::callback(move |r| tx.send(r).unwrap()).send(Ok("x".into()));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![Ok("x".to_string())]);
    }
}
