//! The SFU's HTTP side: `/rtc` and `/rtc/v1` websocket upgrades (admitted first, so refusals
//! get a real HTTP status and body), `/rtc/validate` and `/rtc/v1/validate`, and `/` (`OK`)
//! for health checks. Anything else is `404`, as is a non-websocket request to `/rtc`.

use std::convert::Infallible;
use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::admission::{admit, SignalRequest};
use super::participant;
use super::rooms::Registry;

/// What every request handler shares.
pub(super) struct Server {
    pub registry: Arc<Registry>,
    pub api_key: String,
    pub api_secret: String,
    /// One clone per running participant task, to wait for them at shutdown.
    pub participants: Arc<()>,
    /// Whether `/rtc/v1` is served (off: `404`, as servers older than 1.9 answer, so that
    /// clients fall back to `/rtc`).
    pub single_pc: bool,
    /// See [`super::SfuOptions::resume_window`].
    pub resume_window: Duration,
    /// Set by [`super::Sfu::abort`]: stop without telling anyone, as a killed server.
    pub aborted: AtomicBool,
}

/// The websocket a participant is signalled on.
pub(super) type SignalWs = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Serves until `stop` fires, then tells every participant the server is going away and
/// gives them a moment to say so before the runtime (and every socket) is dropped.
pub(super) async fn serve(listener: StdTcpListener, server: Arc<Server>, mut stop: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("sfu: cannot listen: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let server = Arc::clone(&server);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&server)));
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    if let Err(e) = conn.await {
                        log::debug!("sfu: http connection error: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    if server.aborted.load(Ordering::SeqCst) {
        // Returning drops the runtime and with it every task and socket, unannounced.
        return;
    }
    server.registry.close_all();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while Arc::strong_count(&server.participants) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn handle(req: Request<Incoming>, server: Arc<Server>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (single_pc, validate) = match req.uri().path() {
        "/rtc" => (false, false),
        "/rtc/v1" => (true, false),
        "/rtc/validate" => (false, true),
        "/rtc/v1/validate" => (true, true),
        "/" => return Ok(text(StatusCode::OK, "OK")),
        _ => return Ok(text(StatusCode::NOT_FOUND, "404 page not found")),
    };
    if single_pc && !server.single_pc {
        return Ok(text(StatusCode::NOT_FOUND, "404 page not found"));
    }
    if !validate && !is_websocket_upgrade(&req) {
        return Ok(text(StatusCode::NOT_FOUND, ""));
    }
    let query = req.uri().query().unwrap_or_default().to_string();
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let signal = SignalRequest {
        single_pc,
        query: &query,
        authorization: authorization.as_deref(),
    };
    let admission = match admit(&signal, &server.api_key, &server.api_secret, |_| true) {
        Ok(a) => a,
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut response = text(status, &refusal.message);
            if validate {
                allow_any_origin(&mut response);
            }
            return Ok(response);
        }
    };
    if validate {
        let mut response = text(StatusCode::OK, "success");
        allow_any_origin(&mut response);
        return Ok(response);
    }
    let Some(accept) = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|key| derive_accept_key(key.as_bytes()))
    else {
        return Ok(text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
    };
    let registry = Arc::clone(&server.registry);
    let alive = Arc::clone(&server.participants);
    let resume_window = server.resume_window;
    tokio::spawn(async move {
        let _alive = alive;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                if admission.reconnect {
                    participant::resume(&registry, ws, admission).await;
                } else {
                    participant::run(registry, ws, admission, resume_window).await;
                }
            }
            Err(e) => log::debug!("sfu: websocket upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok(response)
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let has = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(CONNECTION, "upgrade") && has(UPGRADE, "websocket")
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn allow_any_origin(response: &mut Response<Full<Bytes>>) {
    response
        .headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
}
