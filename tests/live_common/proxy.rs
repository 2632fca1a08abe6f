//! A tiny HTTP CONNECT proxy on loopback (threads): records each CONNECT target, tunnels the
//! bytes both ways, and can refuse every CONNECT or require Basic credentials.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// How the proxy answers CONNECT.
#[derive(Clone, Debug)]
pub enum ProxyMode {
    /// Tunnels every CONNECT.
    Tunnel,
    /// Answers every CONNECT with this status line's code and reason.
    Refuse(u16, &'static str),
    /// Tunnels every CONNECT except those to `port`, answered with `code` and `reason`.
    RefusePort {
        port: u16,
        code: u16,
        reason: &'static str,
    },
    /// Answers 407 unless `Proxy-Authorization: Basic` carries these credentials.
    RequireAuth {
        user: &'static str,
        password: &'static str,
    },
}

/// The running proxy; stops accepting on drop (open tunnels end with their sockets).
pub struct ConnectProxy {
    /// `host:port` of the listener.
    pub address: String,
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// Host names only the proxy resolves (to 127.0.0.1), as a company proxy resolves outside
/// names its clients cannot.
pub const PROXY_ONLY_HOST: &str = "turn.proxy-only.invalid";

const MAX_HEAD: usize = 8 * 1024;

impl ConnectProxy {
    /// Starts a proxy on a free loopback port.
    pub fn start(mode: ProxyMode) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (targets, stop) = (Arc::clone(&targets), Arc::clone(&stop));
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let (mode, targets) = (mode.clone(), Arc::clone(&targets));
                    std::thread::spawn(move || serve(client, &mode, &targets));
                }
            })
        };
        ConnectProxy {
            address,
            targets,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://user:password@host:port`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.address)
    }

    /// The CONNECT targets seen so far (`host:port`), in order, refused ones included.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(mut client: TcpStream, mode: &ProxyMode, targets: &Mutex<Vec<String>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut words = request_line.split(' ');
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        return;
    };
    targets.lock().unwrap().push(target.to_owned());
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    match mode {
        ProxyMode::Refuse(code, reason) => {
            let _ = write!(client, "HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n");
        }
        ProxyMode::RefusePort { port, code, reason } if target.ends_with(&format!(":{port}")) => {
            let _ = write!(client, "HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n");
        }
        ProxyMode::RequireAuth { user, password }
            if authorization != Some(format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))) =>
        {
            let _ = client.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
            );
        }
        _ => tunnel(client, target),
    }
}

fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD || client.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

fn tunnel(mut client: TcpStream, target: &str) {
    let target = match target.strip_prefix(PROXY_ONLY_HOST) {
        Some(port) => format!("127.0.0.1{port}"),
        None => target.to_owned(),
    };
    let Ok(server) = TcpStream::connect(&target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let _ = client.set_read_timeout(None);
    let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || pipe(client_read, server));
    pipe(server_read, client);
    let _ = upstream.join();
}

/// Copies until either side ends, then closes both so the other direction ends too.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
