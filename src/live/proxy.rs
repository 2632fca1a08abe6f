//! HTTP CONNECT tunnels for the live layer's TCP connections (the signal websocket and TURN
//! over TCP/TLS), so a session connects on networks whose only way out is an HTTP proxy.
//!
//! The setting is a [`ureq::Proxy`], the same type (and environment reading, NO_PROXY
//! included) the control plane uses. Only `http://` proxies are supported: the tunnel is
//! opened in clear and TLS, when the target needs it, runs inside. UDP and ICE over TCP never
//! go through the proxy.

use crate::live::error::LiveError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest proxy answer head read before giving up.
const MAX_ANSWER_HEAD: usize = 8 * 1024;
/// Longest reason phrase kept from a proxy's answer.
const MAX_REASON: usize = 64;

/// An HTTP proxy the live layer tunnels its TCP connections through. Its `Debug` and every
/// error name only `host:port`, never the credentials.
#[derive(Clone)]
pub struct LiveProxy {
    proxy: ureq::Proxy,
}

impl LiveProxy {
    /// Accepts `proxy` if it is an HTTP CONNECT proxy; the error says why not (without the
    /// URL, which may carry credentials).
    pub fn new(proxy: ureq::Proxy) -> Result<LiveProxy, String> {
        match proxy.protocol() {
            ureq::ProxyProtocol::Http => Ok(LiveProxy { proxy }),
            other => Err(format!(
                "{other} proxies are not supported for live sessions (only http://)"
            )),
        }
    }

    /// Parses a proxy URL (`http://[user:pass@]host[:port]`).
    pub fn parse(url: &str) -> Result<LiveProxy, String> {
        let proxy = ureq::Proxy::new(url).map_err(|_| "not a valid proxy URL".to_owned())?;
        LiveProxy::new(proxy)
    }

    /// `host:port` of the proxy, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.proxy.host(), self.proxy.port())
    }

    /// Whether a connection to `host` goes through the proxy: everything except what the
    /// NO_PROXY list names, exactly as ureq decides (loopback hosts included).
    /// `host` is in URL form (IPv6 in brackets).
    pub fn applies_to(&self, host: &str) -> bool {
        let uri = format!("http://{host}/");
        match uri.parse::<ureq::http::Uri>() {
            Ok(uri) => !self.proxy.is_no_proxy(&uri),
            Err(_) => true,
        }
    }

    /// Opens a TCP connection to the proxy and a CONNECT tunnel to `host:port` (`host` in URL
    /// form); the returned stream is the tunnel. Unbounded in time: callers run it under
    /// their connect timeout.
    pub async fn tunnel(&self, host: &str, port: u16) -> Result<TcpStream, LiveError> {
        let failed = |reason: String| LiveError::Proxy {
            proxy: self.address(),
            reason,
        };
        let proxy_host = self.proxy.host().trim_start_matches('[').trim_end_matches(']');
        let mut tcp = TcpStream::connect((proxy_host, self.proxy.port()))
            .await
            .map_err(|e| failed(format!("cannot connect ({e})")))?;
        let _ = tcp.set_nodelay(true);
        let request = connect_request(host, port, self.credentials());
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| failed(format!("CONNECT to {host}:{port}: {e}")))?;
        let answer = read_answer(&mut tcp)
            .await
            .map_err(|reason| failed(format!("CONNECT to {host}:{port}: {reason}")))?;
        if (200..300).contains(&answer.status) {
            Ok(tcp)
        } else {
            Err(failed(format!(
                "refused CONNECT to {host}:{port} ({} {})",
                answer.status, answer.reason
            )))
        }
    }

    fn credentials(&self) -> Option<(&str, &str)> {
        self.proxy
            .username()
            .map(|user| (user, self.proxy.password().unwrap_or("")))
    }
}

impl fmt::Debug for LiveProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveProxy")
            .field("address", &self.address())
            .field("authenticated", &self.proxy.username().is_some())
            .field("from_env", &self.proxy.is_from_env())
            .finish()
    }
}

/// The CONNECT request head. Holds the credentials: never log it.
fn connect_request(host: &str, port: u16, credentials: Option<(&str, &str)>) -> String {
    let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some((user, password)) = credentials {
        let token = STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Reads the proxy's answer head. Reads byte by byte so that nothing after the head (the
/// tunnelled peer's first bytes) is consumed.
async fn read_answer(tcp: &mut TcpStream) -> Result<ConnectAnswer, String> {
    let mut buf = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        let n = tcp
            .read(&mut byte)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err("the proxy closed the connection without an answer".into());
        }
        buf.push(byte[0]);
        if let Some(answer) = answer_so_far(&buf)? {
            return Ok(answer);
        }
    }
}

/// The answer once `buf` (the bytes read so far, one at a time) holds its whole head;
/// `Ok(None)` while it does not; an error for a malformed or oversized head.
pub fn answer_so_far(buf: &[u8]) -> Result<Option<ConnectAnswer>, String> {
    if buf.ends_with(b"\r\n\r\n") || buf.ends_with(b"\n\n") {
        parse_connect_answer(buf)
    } else if buf.len() > MAX_ANSWER_HEAD {
        Err("answer head too large".into())
    } else {
        Ok(None)
    }
}

/// A proxy's answer to CONNECT: the status and a printable, bounded reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAnswer {
    /// The HTTP status code.
    pub status: u16,
    /// The reason phrase, printable ASCII only, at most 64 characters.
    pub reason: String,
}

/// Parses a proxy's answer head; `Ok(None)` while more bytes are needed. Never panics.
pub fn parse_connect_answer(buf: &[u8]) -> Result<Option<ConnectAnswer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_ANSWER_HEAD => Err("answer head too large".into()),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => Ok(Some(ConnectAnswer {
            status: response.code.unwrap_or(0),
            reason: printable(response.reason.unwrap_or("")),
        })),
        Err(e) => Err(format!("not an HTTP answer ({e})")),
    }
}

fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_REASON)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_proxies_are_accepted_and_errors_never_carry_the_url() {
        assert!(LiveProxy::parse("http://proxy.corp:3128").is_ok());
        for url in [
            "socks5://user:s3cret@proxy:1080",
            "https://user:s3cret@proxy:443",
            "ftp://user:s3cret@proxy",
            "http://user:s3cret@",
        ] {
            let err = LiveProxy::parse(url).unwrap_err();
            assert!(!err.contains("s3cret") && !err.contains("user"), "{err}");
        }
        let proxy = LiveProxy::parse("http://alice:s3cret@10.0.0.1:3128").unwrap();
        assert_eq!(proxy.address(), "10.0.0.1:3128");
        let debug = format!("{proxy:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("alice"), "{debug}");
        assert!(debug.contains("10.0.0.1:3128"), "{debug}");
        // No port: the HTTP default.
        assert_eq!(LiveProxy::parse("http://proxy").unwrap().address(), "proxy:80");
    }

    #[test]
    fn connect_request_carries_basic_auth_only_when_given() {
        let plain = connect_request("example.com", 443, None);
        assert_eq!(
            plain,
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        let auth = connect_request("[::1]", 7880, Some(("alice", "s3cret")));
        assert!(auth.starts_with("CONNECT [::1]:7880 HTTP/1.1\r\n"), "{auth}");
        // base64("alice:s3cret")
        assert!(auth.contains("\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"));
        assert!(auth.ends_with("\r\n\r\n"));
    }

    #[test]
    fn answers_parse_without_panicking() {
        assert_eq!(parse_connect_answer(b"HTTP/1.1 200 Conn").unwrap(), None);
        assert_eq!(
            parse_connect_answer(b"HTTP/1.0 200 Connection established\r\n\r\n").unwrap(),
            Some(ConnectAnswer {
                status: 200,
                reason: "Connection established".into()
            })
        );
        let refused = parse_connect_answer(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(refused.status, 407);
        assert_eq!(refused.reason, "Proxy Authentication Required");
        let odd = parse_connect_answer("HTTP/1.1 403 Verboten\u{7f}é\r\n\r\n".as_bytes());
        assert!(matches!(
            odd,
            Ok(Some(ConnectAnswer { status: 403, .. })) | Err(_)
        ));
        assert!(parse_connect_answer(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_connect_answer(&vec![b'a'; MAX_ANSWER_HEAD + 1]).is_err());
        let long = format!("HTTP/1.1 403 {}\r\n\r\n", "x".repeat(500));
        let answer = parse_connect_answer(long.as_bytes()).unwrap().unwrap();
        assert_eq!(answer.reason.len(), MAX_REASON);
    }

    #[test]
    fn no_proxy_follows_ureqs_rule() {
        let proxy = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
            .host("10.0.0.1")
            .port(3128)
            .no_proxy("internal.corp")
            .no_proxy(".lan")
            .build()
            .unwrap();
        let proxy = LiveProxy::new(proxy).unwrap();
        assert!(!proxy.applies_to("internal.corp"));
        assert!(!proxy.applies_to("robot.lan"));
        assert!(proxy.applies_to("example.com"));
        // Loopback is not special: only NO_PROXY exempts it, as in ureq.
        assert!(proxy.applies_to("127.0.0.1"));
        assert!(proxy.applies_to("localhost"));
        assert!(LiveProxy::parse("http://p:1").unwrap().applies_to("[::1]"));
    }
}
