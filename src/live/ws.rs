//! Websocket client handshake done here rather than by tungstenite, so the bearer token
//! never passes through a dependency's logging (tungstenite traces the whole upgrade request,
//! headers included). Request building and response parsing are sans-IO and unit tested.

use crate::live::error::LiveError;
use crate::live::proxy::LiveProxy;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The websocket type used by the connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MAX_HEAD: usize = 16 * 1024;
const MAX_ERROR_BODY: usize = 4 * 1024;

/// Builds the HTTP/1.1 upgrade request. Contains the token: never log it.
pub(crate) fn upgrade_request(url: &url::Url, token: &str, key: &str) -> Result<Vec<u8>, LiveError> {
    if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(LiveError::InvalidArgument(
            "token contains invalid characters".into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| LiveError::InvalidUrl("missing host".into()))?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    Ok(format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .into_bytes())
}

/// Parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub accept: Option<String>,
    pub content_length: Option<usize>,
    /// Bytes after the head (websocket frames, or the error body).
    pub head_len: usize,
}

/// Parses a response head from `buf`; `Ok(None)` if more bytes are needed.
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead>, LiveError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                Err(LiveError::Signal("response head too large".into()))
            } else {
                Ok(None)
            }
        }
        Ok(httparse::Status::Complete(head_len)) => {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(|v| v.trim().to_string())
            };
            Ok(Some(ResponseHead {
                status: resp.code.unwrap_or(0),
                accept: header("sec-websocket-accept"),
                content_length: header("content-length").and_then(|v| v.parse().ok()),
                head_len,
            }))
        }
        Err(e) => Err(LiveError::Signal(format!("bad HTTP response: {e}"))),
    }
}

/// Connects (TCP, TLS for `wss`), performs the upgrade with the token as a bearer header and
/// returns the websocket. With `proxy` the TCP connection is a CONNECT tunnel (TLS and the
/// upgrade run inside) unless its NO_PROXY list names the host. A non-101 answer becomes
/// [`LiveError::Refused`].
pub(crate) async fn connect(
    url: &url::Url,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: Option<&LiveProxy>,
) -> Result<Ws, LiveError> {
    let host = url
        .host_str()
        .ok_or_else(|| LiveError::InvalidUrl("missing host".into()))?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| LiveError::InvalidUrl("missing port".into()))?;
    let tcp = match proxy.filter(|p| p.applies_to(host)) {
        Some(proxy) => proxy.tunnel(host, port).await?,
        None => TcpStream::connect((bare_host.as_str(), port)).await?,
    };
    let _ = tcp.set_nodelay(true);
    let mut stream = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(bare_host.clone())
                .map_err(|e| LiveError::InvalidUrl(format!("bad TLS server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            MaybeTlsStream::Rustls(tls)
        }
        None => MaybeTlsStream::Plain(tcp),
    };
    let key = STANDARD.encode(fastrand::u128(..).to_le_bytes());
    stream.write_all(&upgrade_request(url, token, &key)?).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(LiveError::Signal(
                "connection closed during the websocket handshake".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = parse_response(&buf)? {
            break head;
        }
    };
    let rest = buf.split_off(head.head_len);
    if head.status != 101 {
        let mut body = rest;
        let want = head.content_length.unwrap_or(0).min(MAX_ERROR_BODY);
        while body.len() < want {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        return Err(LiveError::Refused {
            status: head.status,
            message: refusal_excerpt(String::from_utf8_lossy(&body).trim(), token),
        });
    }
    if head.accept.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(LiveError::Signal("bad Sec-WebSocket-Accept".into()));
    }
    Ok(WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await)
}

/// Longest excerpt of a refusal body kept in [`LiveError::Refused`].
const REFUSAL_EXCERPT_BYTES: usize = 256;

/// The server's refusal text, credential-free and cut to [`REFUSAL_EXCERPT_BYTES`].
///
/// LiveKit echoes the token it rejects (`invalid token: <jwt>, error: …`), so the token
/// itself, and any other JWT-looking word (base64 of `{"` starts `eyJ`), is replaced before
/// the text goes into an error (which applications log).
fn refusal_excerpt(body: &str, token: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let body = if token.is_empty() {
        body.to_owned()
    } else {
        body.replace(token, REDACTED)
    };
    let is_separator = |c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '\'' | '(' | ')');
    let mut out = String::with_capacity(body.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(if word.contains("eyJ") { REDACTED } else { word });
        word.clear();
    };
    for c in body.chars() {
        if is_separator(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    let mut end = out.len().min(REFUSAL_EXCERPT_BYTES);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_bearer_header_and_target() {
        let url = url::Url::parse("ws://127.0.0.1:7880/rtc/v1?join_request=abc").unwrap();
        let req = String::from_utf8(upgrade_request(&url, "tok.en.sig", "k==").unwrap()).unwrap();
        assert!(req.starts_with("GET /rtc/v1?join_request=abc HTTP/1.1\r\nHost: 127.0.0.1:7880\r\n"));
        assert!(req.contains("\r\nAuthorization: Bearer tok.en.sig\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        assert!(upgrade_request(&url, "bad\r\ninjection", "k").is_err());
    }

    #[test]
    fn parses_switching_and_refusals() {
        assert_eq!(parse_response(b"HTTP/1.1 101 Switching").unwrap(), None);
        let h =
            parse_response(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\n\r\n\x82\x00")
                .unwrap()
                .unwrap();
        assert_eq!(
            (h.status, h.accept.as_deref(), h.head_len),
            (101, Some("abc"), 63)
        );
        let h = parse_response(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.content_length), (401, Some(5)));
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(&vec![b'a'; MAX_HEAD + 10]).is_err());
    }

    #[test]
    fn refusal_excerpts_never_carry_the_token() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let body =
            format!("invalid token: {token}, error: go-jose/go-jose: error in cryptographic primitive\n");
        let excerpt = super::refusal_excerpt(&body, token);
        assert_eq!(
            excerpt,
            "invalid token: <redacted>, error: go-jose/go-jose: error in cryptographic primitive\n"
        );
        // Another JWT (or a truncated one) is scrubbed too, and the excerpt stays short.
        let other = format!("invalid token: {}", "eyJ".repeat(200));
        let excerpt = super::refusal_excerpt(&other, token);
        assert_eq!(excerpt, "invalid token: <redacted>");
        let long = format!("{} é", "x".repeat(255));
        assert!(super::refusal_excerpt(&long, token).len() <= 256);
    }
}
