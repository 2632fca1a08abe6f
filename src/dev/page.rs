//! The platform's page: every live robot's top-down view with a status line
//! (the simulator's page, [`super::sim::page_html`]), served over HTTP on loopback:
//! `GET /`, the feed `GET /sim/robots.json`, frames `GET /sim/frames/{room}/{n}.jpg`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::platform::LiveRobots;
use super::server_thread::ServerThread;
use super::sim::{feed_json, page_html, FeedEntry, PageOptions};

const FEED_PATH: &str = "/sim/robots.json";
/// The page's refresh period: up to 8 frames a second, so that a loaded machine still
/// shows five.
const REFRESH_MS: u32 = 120;
/// The page's frames: small, so that many robots stay above five frames a second.
const FRAME_WIDTH: u32 = 480;
const FRAME_HEIGHT: u32 = 360;
const FRAME_QUALITY: f64 = 0.7;

/// The page's HTTP server, on a thread of its own (frames render on its blocking pool).
pub(crate) struct PageServer {
    addr: SocketAddr,
    _thread: ServerThread,
}

impl PageServer {
    pub(crate) fn start(robots: Arc<LiveRobots>) -> std::io::Result<PageServer> {
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let thread = ServerThread::spawn("menlo-dev-page", move |stop| serve(listener, robots, stop))?;
        Ok(PageServer {
            addr,
            _thread: thread,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
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
                        let service = service_fn(move |req: Request<Incoming>| {
                            let robots = Arc::clone(&robots);
                            let path = req.uri().path().to_owned();
                            async move {
                                let response = tokio::task::spawn_blocking(move || route(&robots, &path))
                                    .await
                                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "render failed"));
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        });
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
        }
    }
}

fn route(robots: &LiveRobots, path: &str) -> Response<Full<Bytes>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => {
            let options = PageOptions {
                title: "Menlo dev platform".to_owned(),
                feed_path: FEED_PATH.to_owned(),
                refresh_ms: REFRESH_MS,
            };
            reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page_html(&options).into_bytes(),
            )
        }
        ["sim", "robots.json"] => {
            let entries = robots.each(|room, index, sim| FeedEntry {
                robot_id: if index == 0 {
                    room.to_owned()
                } else {
                    format!("{room} ({})", index + 1)
                },
                status_line: sim.status_line(),
                frame_url: format!("/sim/frames/{room}/{index}.jpg"),
            });
            reply(
                StatusCode::OK,
                "application/json",
                feed_json(&entries).into_bytes(),
            )
        }
        ["sim", "frames", room, frame] => {
            let index = frame.strip_suffix(".jpg").and_then(|n| n.parse::<usize>().ok());
            let rendered = robots
                .each(|r, i, sim| (r == *room && Some(i) == index).then(|| sim.clone()))
                .into_iter()
                .flatten()
                .next()
                .map(|sim| sim.frame("topdown", FRAME_WIDTH, FRAME_HEIGHT, FRAME_QUALITY));
            match rendered {
                Some(Ok(jpeg)) => reply(StatusCode::OK, "image/jpeg", jpeg),
                Some(Err(err)) => text(StatusCode::INTERNAL_SERVER_ERROR, &err.message),
                None => text(StatusCode::NOT_FOUND, "no such live robot"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", message.as_bytes().to_vec())
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
