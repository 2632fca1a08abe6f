//! The platform's page: every live robot's top-down view and a status line, served over HTTP
//! on loopback (`GET /`, `GET /api/robots`, `GET /api/robots/{robot_id}/topdown.jpg`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

use super::platform::LiveRobots;

const PAGE: &str = include_str!("page.html");
/// Largest frame the page may ask for, per side.
const MAX_SIDE: u32 = 1920;

/// The page's HTTP server: one thread with a current-thread runtime, stopped on drop.
pub(crate) struct PageServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    pub(crate) fn start(robots: Arc<LiveRobots>) -> std::io::Result<PageServer> {
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("menlo-dev-page".into())
            .spawn(move || runtime.block_on(serve(listener, robots, stop)))?;
        Ok(PageServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: StdTcpListener, robots: Arc<LiveRobots>, mut stop: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let robots = Arc::clone(&robots);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let robots = Arc::clone(&robots);
                            async move { Ok::<_, std::convert::Infallible>(route(&robots, &req)) }
                        });
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
        }
    }
}

fn route(robots: &LiveRobots, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        ["api", "robots"] => {
            let list: Vec<Value> = robots.each(|_, robot| robot.status_json());
            reply(StatusCode::OK, "application/json", Value::Array(list).to_string().into_bytes())
        }
        ["api", "robots", robot_id, "topdown.jpg"] => {
            let (width, height) = frame_size(req.uri().query());
            let frame = robots
                .each(|_, robot| (robot.robot_id() == *robot_id).then(|| robot.render_topdown(width, height)))
                .into_iter()
                .flatten()
                .next();
            match frame {
                Some(Ok(jpeg)) => reply(StatusCode::OK, "image/jpeg", jpeg),
                Some(Err(reason)) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", reason.into_bytes()),
                None => reply(StatusCode::NOT_FOUND, "text/plain", b"no such live robot".to_vec()),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found".to_vec()),
    }
}

/// `width` and `height` from the query, 320×240 by default, each within 16..=MAX_SIDE.
fn frame_size(query: Option<&str>) -> (u32, u32) {
    let mut size = (320, 240);
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Ok(value) = value.parse::<u32>() else { continue };
        let value = value.clamp(16, MAX_SIDE);
        match key {
            "width" => size.0 = value,
            "height" => size.1 = value,
            _ => {}
        }
    }
    size
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::frame_size;

    #[test]
    fn frame_size_is_bounded_and_defaulted() {
        assert_eq!(frame_size(None), (320, 240));
        assert_eq!(frame_size(Some("width=640&height=480&t=1")), (640, 480));
        assert_eq!(frame_size(Some("width=0&height=99999")), (16, 1920));
        assert_eq!(frame_size(Some("width=x&height")), (320, 240));
    }
}
