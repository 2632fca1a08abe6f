//! The embedded local platform (feature `dev`): a contract-faithful control-plane emulator.
//!
//! [`ControlPlane`] is an in-process HTTP server on loopback that implements every RCS
//! endpoint of the wire contract — robots, sessions, participant tokens, `/openapi.json` —
//! with the platform's auth modes, organization/team isolation, FastAPI-shaped validation
//! errors and RCS-shaped error bodies. It runs on its own single-threaded tokio runtime in a
//! background thread, so it works from plain synchronous code and tests:
//!
//! ```no_run
//! use menlo_robot_sdk::dev::{ControlPlane, Principal};
//!
//! let rcs = ControlPlane::start()?;
//! let key = rcs.create_api_key(&Principal::new("user_1", "org_1", "team_1"));
//! // point the client at rcs.url() with `key` …
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Faults ([`Fault`]) can be injected to exercise client retries and timeouts, and every
//! request is recorded ([`RecordedRequest`]) so tests can assert exactly what went on the wire.
//!
//! # Behaviour
//!
//! Each request goes through these steps, in order:
//!
//! 1. The body is read (over 1 MiB → `413 {"detail":"Request body too large"}`) and the
//!    request is recorded.
//! 2. The first matching injected [`Fault`] applies, before anything else.
//! 3. Routing, as FastAPI does it: an unknown path → `404 {"detail":"Not Found"}`, a known path
//!    with another method → `405 {"detail":"Method Not Allowed"}` (with `Allow`).
//!    `GET /openapi.json` needs no credentials.
//! 4. Auth: `Authorization: Bearer sk_live_…` must be a key from
//!    [`ControlPlane::create_api_key`]; without an `Authorization` header,
//!    `X-Menlo-Identity` must be the compact identity JSON (see [`Principal::to_identity_json`]).
//!    Anything else → `401 {"error":"unauthorized"}`. The API key wins when both are sent.
//! 5. Validation, pydantic v2 style: `422 {"detail":[{"type","loc","msg","input","ctx"?}…]}`
//!    for missing fields, wrong types, bad lengths and enum values, unknown fields
//!    (`extra_forbidden`), invalid JSON (`json_invalid`), non-JSON content types, and an
//!    empty PATCH.
//! 6. The handler. Robots are visible only to principals of the same organization *and*
//!    team; anything else is `404 robot.not_found`. RCS errors carry `details.request_id`
//!    (`req_…`) and `details.trace_id`.
//!
//! Robots get ids `rb_<12 hex>`, type `virtual`, RFC 3339 UTC timestamps and a show-once
//! 6-digit `pin_code`. Sessions dispatch one agent per `worker_names` entry (omitted → the
//! builder's [`default_worker_names`](ControlPlaneBuilder::default_worker_names); `[]` →
//! none) and hand out LiveKit tokens minted with [`mint_livekit_token`] from the configured
//! [`LiveKitSettings`]. `POST …/session/command` answers `410 session.command_removed`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::oneshot;

use server_thread::ServerThread;

mod page;
mod platform;
mod rcs;
mod server_thread;
mod sfu;
mod sim;
mod token;

pub use platform::{LiveKitBackend, Platform, PlatformBuilder, DEFAULT_SEED};
pub use sfu::{Sfu, SfuOptions, SfuRoom};
pub use sim::scene;

pub use token::{mint_livekit_token, mint_livekit_token_updating_own_metadata, TokenOptions};

/// Largest request body accepted; bigger bodies get `413`.
const MAX_BODY: usize = 1 << 20;

/// Bodies up to this size are read (and discarded past [`MAX_BODY`]) before answering `413`,
/// so the client sees the response rather than a reset.
const DRAIN_LIMIT: u64 = 64 << 20;

/// The identity header of direct-identity mode.
const IDENTITY_HEADER: &str = "x-menlo-identity";

/// Who a key or identity acts as: the platform's signed identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Subject (user id); becomes `created_by` on robots.
    pub sub: String,
    /// Organization id; robots are visible only within the same organization and team.
    pub organization_id: String,
    /// Team id.
    pub team_id: String,
    /// Roles (recorded, not enforced).
    pub roles: Vec<String>,
    /// Scopes (recorded, not enforced).
    pub scopes: Vec<String>,
}

impl Principal {
    /// A principal with no roles and no scopes.
    pub fn new(
        sub: impl Into<String>,
        organization_id: impl Into<String>,
        team_id: impl Into<String>,
    ) -> Principal {
        Principal {
            sub: sub.into(),
            organization_id: organization_id.into(),
            team_id: team_id.into(),
            roles: Vec::new(),
            scopes: Vec::new(),
        }
    }

    /// The compact JSON the dev RCS expects in `X-Menlo-Identity`
    /// (`{"sub","organization_id","team_id","roles","scopes"}`).
    pub fn to_identity_json(&self) -> String {
        json!({
            "sub": self.sub,
            "organization_id": self.organization_id,
            "team_id": self.team_id,
            "roles": self.roles,
            "scopes": self.scopes,
        })
        .to_string()
    }
}

/// The LiveKit server the emulator hands out: its URL and the API key pair tokens are signed
/// with. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct LiveKitSettings {
    /// `ws://` or `wss://` URL returned as `livekit_url`.
    pub url: String,
    /// LiveKit API key (the token's `iss`).
    pub api_key: String,
    /// LiveKit API secret (HS256 signing key).
    pub api_secret: String,
}

impl Default for LiveKitSettings {
    /// `ws://127.0.0.1:7880`, `devkey`, `secret` — what `livekit-server --dev` accepts.
    fn default() -> Self {
        LiveKitSettings {
            url: "ws://127.0.0.1:7880".into(),
            api_key: "devkey".into(),
            api_secret: "secret".into(),
        }
    }
}

impl fmt::Debug for LiveKitSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveKitSettings")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum FaultKind {
    Status(u16),
    Delay(Duration),
    DropConnection,
    DropAfterProcessing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// A failure to inject into the next matching request(s); see [`ControlPlane::inject_fault`].
///
/// Matching: optionally by method (case-insensitive) and by path, compared against the
/// request path *without* its query string — [`Fault::path`] matches it exactly,
/// [`Fault::path_prefix`] by prefix. A fault applies to `times` requests (default 1) and is
/// then used up. When several faults match, the one injected first applies.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    kind: FaultKind,
    body: Option<String>,
    retry_after: Option<String>,
    method: Option<String>,
    path: Option<PathMatch>,
    times: u32,
}

impl Fault {
    fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            body: None,
            retry_after: None,
            method: None,
            path: None,
            times: 1,
        }
    }

    /// Answer with this HTTP status without processing the request. The body defaults to an
    /// RCS error `{"code":"dev.injected_fault","message":…,"details":{"request_id","trace_id"}}`.
    /// A code outside 100..=999 is sent as 500.
    pub fn status(code: u16) -> Fault {
        Fault::new(FaultKind::Status(code))
    }

    /// Sleep for `delay`, then handle the request normally (exercises client timeouts).
    pub fn delay(delay: Duration) -> Fault {
        Fault::new(FaultKind::Delay(delay))
    }

    /// Close the connection without any response, *before* the request is processed.
    pub fn drop_connection() -> Fault {
        Fault::new(FaultKind::DropConnection)
    }

    /// Process the request (e.g. create the robot), then close the connection without a
    /// response: a lost response.
    pub fn drop_after_processing() -> Fault {
        Fault::new(FaultKind::DropAfterProcessing)
    }

    /// Response body (sent verbatim as `application/json`) for a [`Fault::status`] fault.
    pub fn with_body(mut self, body: impl Into<String>) -> Fault {
        self.body = Some(body.into());
        self
    }

    /// `Retry-After` header value for a [`Fault::status`] fault, e.g. `"2"`.
    pub fn with_retry_after(mut self, value: impl Into<String>) -> Fault {
        self.retry_after = Some(value.into());
        self
    }

    /// Only requests with this method (case-insensitive).
    pub fn method(mut self, method: impl Into<String>) -> Fault {
        self.method = Some(method.into());
        self
    }

    /// Only requests whose path (without query string) equals `path` exactly.
    pub fn path(mut self, path: impl Into<String>) -> Fault {
        self.path = Some(PathMatch::Exact(path.into()));
        self
    }

    /// Only requests whose path (without query string) starts with `prefix`.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Fault {
        self.path = Some(PathMatch::Prefix(prefix.into()));
        self
    }

    /// Apply to the next `n` matching requests (default 1; 0 is treated as 1).
    pub fn times(mut self, n: u32) -> Fault {
        self.times = n.max(1);
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && match &self.path {
                None => true,
                Some(PathMatch::Exact(p)) => p == path,
                Some(PathMatch::Prefix(p)) => path.starts_with(p.as_str()),
            }
    }
}

/// One request as the emulator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request target: path plus `?query` when present, exactly as sent.
    pub path: String,
    /// Body as text (lossy UTF-8); `None` when empty or too large to read.
    pub body: Option<String>,
    /// An `Authorization` header was present.
    pub has_authorization: bool,
    /// An `X-Menlo-Identity` header was present.
    pub has_identity: bool,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// Status of the response the server produced; `None` while the request is still being
    /// handled and when the connection was dropped by a fault (no response was sent).
    pub status: Option<u16>,
}

/// A platform session that started or ended, reported to
/// [`ControlPlaneBuilder::on_session_change`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionChange {
    /// `POST /v1/robots/{id}/session` created a session (replacing any earlier one).
    Created {
        /// The robot.
        robot_id: String,
        /// Its LiveKit room.
        room_name: String,
        /// The agents the platform dispatches into the room (`worker_names`, or the default).
        agent_names: Vec<String>,
        /// The scene asked for.
        scene_id: Option<String>,
    },
    /// The session ended: deleted, replaced, or its robot deleted.
    Deleted {
        /// The robot.
        robot_id: String,
        /// Its LiveKit room.
        room_name: String,
    },
}

/// Receives [`SessionChange`]s. Runs on the emulator's thread: it must return quickly.
pub type SessionChangeHook = Arc<dyn Fn(&SessionChange) + Send + Sync>;

/// Configures a [`ControlPlane`] before starting it.
#[must_use]
#[derive(Clone)]
pub struct ControlPlaneBuilder {
    livekit: LiveKitSettings,
    default_worker_names: Vec<String>,
    bind: SocketAddr,
    on_session_change: Option<SessionChangeHook>,
}

impl fmt::Debug for ControlPlaneBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlaneBuilder")
            .field("livekit", &self.livekit)
            .field("default_worker_names", &self.default_worker_names)
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        ControlPlaneBuilder {
            livekit: LiveKitSettings::default(),
            default_worker_names: vec!["sim-worker".into()],
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            on_session_change: None,
        }
    }
}

impl ControlPlaneBuilder {
    /// LiveKit URL and key pair used for `livekit_url` and token signing
    /// (default `ws://127.0.0.1:7880`, `devkey`, `secret`).
    pub fn livekit(
        mut self,
        url: impl Into<String>,
        api_key: impl Into<String>,
        api_secret: impl Into<String>,
    ) -> Self {
        self.livekit = LiveKitSettings {
            url: url.into(),
            api_key: api_key.into(),
            api_secret: api_secret.into(),
        };
        self
    }

    /// Agents dispatched when a session request omits `worker_names` (default `["sim-worker"]`).
    pub fn default_worker_names(mut self, names: Vec<String>) -> Self {
        self.default_worker_names = names;
        self
    }

    /// Address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Calls `hook` after each request that started or ended a session, outside the
    /// emulator's state lock, on its thread (so it must return quickly: hand work to a
    /// thread of your own). The embedded [`Platform`](crate::dev) uses it to dispatch
    /// simulated robots and to end rooms.
    pub fn on_session_change(mut self, hook: impl Fn(&SessionChange) + Send + Sync + 'static) -> Self {
        self.on_session_change = Some(Arc::new(hook));
        self
    }

    /// Binds the socket and starts serving on a background thread.
    pub fn start(self) -> std::io::Result<ControlPlane> {
        let listener = StdTcpListener::bind(self.bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            rcs: Mutex::new(rcs::Rcs::new(self.livekit.clone(), self.default_worker_names)),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Log::default()),
            on_session_change: self.on_session_change,
        });
        let server_shared = Arc::clone(&shared);
        let thread = ServerThread::spawn("menlo-dev-rcs", move |stop| serve(listener, server_shared, stop))?;
        Ok(ControlPlane {
            addr,
            livekit: self.livekit,
            shared,
            _thread: thread,
        })
    }
}

/// A running control-plane emulator. Dropping it shuts the server down and joins its thread.
pub struct ControlPlane {
    addr: SocketAddr,
    livekit: LiveKitSettings,
    shared: Arc<Shared>,
    _thread: ServerThread,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("url", &self.url())
            .field("livekit", &self.livekit)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts an emulator with the defaults (see [`ControlPlaneBuilder`]).
    pub fn start() -> std::io::Result<ControlPlane> {
        ControlPlane::builder().start()
    }

    /// A builder for a customized emulator.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// The RCS base URL, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Issues a new `sk_live_…` API key acting as `who`.
    pub fn create_api_key(&self, who: &Principal) -> String {
        let key = format!("sk_live_{}", token::random_alnum(32));
        lock(&self.shared.rcs).keys.insert(key.clone(), who.clone());
        key
    }

    /// Queues a fault for the next matching request(s).
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Every request seen since start (or the last [`ControlPlane::clear_requests`]), in
    /// arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .entries
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).entries.clear();
    }

    /// The LiveKit URL and key pair the emulator signs tokens with.
    pub fn livekit(&self) -> &LiveKitSettings {
        &self.livekit
    }
}

// ---------------------------------------------------------------------------------------------
// Server

struct Shared {
    rcs: Mutex<rcs::Rcs>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Log>,
    on_session_change: Option<SessionChangeHook>,
}

#[derive(Default)]
struct Log {
    next: u64,
    entries: Vec<(u64, RecordedRequest)>,
}

impl Shared {
    fn record(&self, request: RecordedRequest) -> u64 {
        let mut log = lock(&self.log);
        let seq = log.next;
        log.next += 1;
        log.entries.push((seq, request));
        seq
    }

    fn set_status(&self, seq: u64, status: u16) {
        let mut log = lock(&self.log);
        if let Some((_, r)) = log.entries.iter_mut().rev().find(|(s, _)| *s == seq) {
            r.status = Some(status);
        }
    }

    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|f| f.matches(method, path))?;
        faults[i].times -= 1;
        if faults[i].times == 0 {
            Some(faults.remove(i))
        } else {
            Some(faults[i].clone())
        }
    }
}

/// Locks a mutex, ignoring poisoning (state stays usable even if a holder panicked).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The service error that makes hyper close the connection without a response.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by injected fault")
    }
}

impl std::error::Error for DropConnection {}

async fn serve(listener: StdTcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // e.g. too many open files: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let method = parts.method.as_str().to_owned();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let authorization = header(AUTHORIZATION.as_str());
    let identity = header(IDENTITY_HEADER);
    let content_type = header(CONTENT_TYPE.as_str());
    let declared = header(CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok());

    let (bytes, lost) = if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        (None, false)
    } else {
        match read_body(body).await {
            Ok(bytes) => (bytes, false),
            Err(()) => (None, true),
        }
    };
    let seq = shared.record(RecordedRequest {
        method: method.clone(),
        path: target.clone(),
        body: bytes
            .as_ref()
            .filter(|b| !b.is_empty())
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        has_authorization: authorization.is_some(),
        has_identity: identity.is_some(),
        user_agent: header(USER_AGENT.as_str()),
        content_type: content_type.clone(),
        status: None,
    });
    if lost {
        // The client went away mid-body; nothing to answer.
        return Err(DropConnection);
    }
    let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
    let fault = shared.take_fault(&method, path);
    let mut drop_after = false;
    let mut delay = None;
    match fault.map(|f| (f.kind.clone(), f)) {
        Some((FaultKind::DropConnection, _)) => return Err(DropConnection),
        Some((FaultKind::Delay(d), _)) => delay = Some(d),
        Some((FaultKind::DropAfterProcessing, _)) => drop_after = true,
        Some((FaultKind::Status(code), fault)) => {
            let mut reply = match fault.body {
                Some(body) => rcs::Reply {
                    status: code,
                    body: Some(body),
                    headers: Vec::new(),
                },
                None => rcs::rcs_error(
                    code,
                    "dev.injected_fault",
                    &format!("injected fault: HTTP {code}"),
                ),
            };
            if let Some(retry_after) = fault.retry_after {
                reply.headers.push(("retry-after", retry_after));
            }
            let response = to_response(reply);
            shared.set_status(seq, response.status().as_u16());
            return Ok(response);
        }
        None => {}
    }

    // Processing runs in its own task so that it completes (like on a real server) even when
    // the client gives up waiting, e.g. during a delay fault.
    let owned = OwnedRequest {
        method,
        target,
        authorization,
        identity,
        content_type,
        body: bytes,
    };
    let task_shared = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let reply = owned.process(&task_shared);
        if !drop_after {
            task_shared.set_status(seq, reply.status);
        }
        reply
    });
    let reply = match task.await {
        Ok(reply) => reply,
        Err(_) => rcs::Reply::json(500, &json!({"detail": "Internal Server Error"})),
    };
    if drop_after {
        return Err(DropConnection);
    }
    Ok(to_response(reply))
}

/// A request with everything the handler needs, owned so it can move into a task.
struct OwnedRequest {
    method: String,
    target: String,
    authorization: Option<String>,
    identity: Option<String>,
    content_type: Option<String>,
    /// `None` = larger than [`MAX_BODY`].
    body: Option<Bytes>,
}

impl OwnedRequest {
    fn process(&self, shared: &Shared) -> rcs::Reply {
        let Some(body) = &self.body else {
            return rcs::Reply::json(413, &json!({"detail": "Request body too large"}));
        };
        let (path, query) = match self.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.target.as_str(), None),
        };
        let request = rcs::Request {
            method: &self.method,
            path,
            query,
            authorization: self.authorization.as_deref(),
            identity: self.identity.as_deref(),
            content_type: self.content_type.as_deref(),
            body,
        };
        let (reply, changes) = {
            let mut rcs = lock(&shared.rcs);
            let reply = rcs.handle(&request);
            (reply, rcs.take_changes())
        };
        if let Some(hook) = &shared.on_session_change {
            for change in &changes {
                hook(change);
            }
        }
        reply
    }
}

/// Reads the body: `Ok(None)` when larger than [`MAX_BODY`], `Err` when the client went away.
async fn read_body(mut body: Incoming) -> Result<Option<Bytes>, ()> {
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ())?.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len() as u64);
        if total <= MAX_BODY as u64 {
            buf.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            return Ok(None);
        }
    }
    Ok((total <= MAX_BODY as u64).then(|| Bytes::from(buf)))
}

fn to_response(reply: rcs::Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Full::new(Bytes::from(reply.body.clone().unwrap_or_default())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if reply.body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in reply.headers {
        // A caller-supplied value (Retry-After) may be an invalid header value: skip it.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<ControlPlane>();
        assert_send_sync::<ControlPlaneBuilder>();
        assert_send_sync::<Fault>();
        assert_send_sync::<RecordedRequest>();
        assert_send_sync::<LiveKitSettings>();
    }

    #[test]
    fn livekit_debug_redacts_the_secret() {
        let s = format!("{:?}", LiveKitSettings::default());
        assert!(!s.contains("\"secret\""), "{s}");
        assert!(s.contains("<redacted>"));
    }

    #[test]
    fn fault_matching() {
        let f = Fault::status(503).method("get").path("/v1/robots");
        assert!(f.matches("GET", "/v1/robots"));
        assert!(!f.matches("POST", "/v1/robots"));
        assert!(!f.matches("GET", "/v1/robots/rb_1"));
        let f = Fault::drop_connection().path_prefix("/v1/robots/");
        assert!(f.matches("DELETE", "/v1/robots/rb_1/session"));
        assert!(!f.matches("GET", "/v1/robots"));
        assert_eq!(Fault::delay(Duration::ZERO).times(0).times, 1);
    }

    #[test]
    fn faults_are_used_up_in_order() {
        let shared = Shared {
            rcs: Mutex::new(rcs::Rcs::new(LiveKitSettings::default(), vec![])),
            faults: Mutex::new(vec![Fault::status(500).times(2), Fault::status(429)]),
            log: Mutex::new(Log::default()),
            on_session_change: None,
        };
        let codes: Vec<Option<FaultKind>> = (0..4)
            .map(|_| shared.take_fault("GET", "/").map(|f| f.kind))
            .collect();
        assert_eq!(
            codes,
            [
                Some(FaultKind::Status(500)),
                Some(FaultKind::Status(500)),
                Some(FaultKind::Status(429)),
                None
            ]
        );
    }

    #[test]
    fn identity_json_is_compact() {
        let p = Principal::new("u", "o", "t");
        let json = p.to_identity_json();
        assert!(!json.contains(' ') && !json.contains('\n'), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            json!({"sub":"u","organization_id":"o","team_id":"t","roles":[],"scopes":[]})
        );
    }
}
