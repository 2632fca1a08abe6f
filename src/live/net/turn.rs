//! TURN relays (issue 10, second half; not wired yet): the ICE servers LiveKit sends in the
//! join response (`JoinResponse.ice_servers`, `ReconnectResponse.ice_servers`) as
//! [`TurnServer`]s. Only URL parsing lives here so far; allocations will go through the
//! sans-IO `turn-client-proto` crate (TURN over UDP and TCP) and `turn-client-rustls` (TLS).
//!
//! RFC 7065 URLs: `turn:host[:port][?transport=udp|tcp]` and `turns:host[:port][?transport=tcp]`.
//! Default ports are 3478 (`turn:`) and 5349 (`turns:`); `turn:` defaults to UDP, `turns:` is
//! always TLS over TCP (LiveKit's embedded TURN advertises `turns:<domain>:443?transport=tcp`).
//! `stun:` URLs are skipped: we have no use for server-reflexive candidates against an SFU.

use std::fmt;

/// How the client reaches a TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TurnTransport {
    /// TURN over UDP (`turn:…?transport=udp`, the default of `turn:`).
    Udp,
    /// TURN over TCP (`turn:…?transport=tcp`).
    Tcp,
    /// TURN over TLS (`turns:`).
    Tls,
}

/// One TURN server URL: where and how to reach it. Credentials stay with the ICE server entry
/// they came with and never appear here, in `Debug` or in `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: TurnTransport,
}

impl fmt::Display for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, transport) = match self.transport {
            TurnTransport::Udp => ("turn", "udp"),
            TurnTransport::Tcp => ("turn", "tcp"),
            TurnTransport::Tls => ("turns", "tcp"),
        };
        if self.host.contains(':') {
            write!(f, "{scheme}:[{}]:{}?transport={transport}", self.host, self.port)
        } else {
            write!(f, "{scheme}:{}:{}?transport={transport}", self.host, self.port)
        }
    }
}

/// Why a URL was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnUrlError {
    /// Not a `turn:`/`turns:` URL (e.g. `stun:`), skipped on purpose.
    #[error("not a TURN URL")]
    NotTurn,
    /// A TURN URL that does not parse.
    #[error("bad TURN URL: {0}")]
    Invalid(&'static str),
}

/// Parses one ICE server URL (RFC 7065).
pub fn parse_turn_url(url: &str) -> Result<TurnServer, TurnUrlError> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or(TurnUrlError::Invalid("no scheme"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "turn" => false,
        "turns" => true,
        _ => return Err(TurnUrlError::NotTurn),
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let transport = match query_transport(query)? {
        _ if tls => TurnTransport::Tls,
        Some(TurnTransport::Tcp) => TurnTransport::Tcp,
        _ => TurnTransport::Udp,
    };
    let default_port = if tls { 5349 } else { 3478 };
    let (host, port) = split_host_port(authority, default_port)?;
    Ok(TurnServer {
        host,
        port,
        transport,
    })
}

/// Every usable TURN server of a list of URLs, in order, without duplicates.
pub fn turn_servers<'a>(urls: impl IntoIterator<Item = &'a str>) -> Vec<TurnServer> {
    let mut servers: Vec<TurnServer> = Vec::new();
    for url in urls {
        match parse_turn_url(url) {
            Ok(server) if !servers.contains(&server) => servers.push(server),
            Ok(_) | Err(TurnUrlError::NotTurn) => {}
            Err(e) => log::debug!("ignoring an ICE server URL: {e}"),
        }
    }
    servers
}

fn query_transport(query: Option<&str>) -> Result<Option<TurnTransport>, TurnUrlError> {
    let Some(query) = query else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("transport=") {
            return match value.to_ascii_lowercase().as_str() {
                "udp" => Ok(Some(TurnTransport::Udp)),
                "tcp" => Ok(Some(TurnTransport::Tcp)),
                _ => Err(TurnUrlError::Invalid("unknown transport")),
            };
        }
    }
    Ok(None)
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), TurnUrlError> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(TurnUrlError::Invalid("bad port"))
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(TurnUrlError::Invalid("unclosed IPv6 bracket"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err(TurnUrlError::Invalid("junk after the IPv6 address")),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, p)) if !host.contains(':') => (host, parse_port(p)?),
            Some(_) => return Err(TurnUrlError::Invalid("IPv6 address without brackets")),
            None => (authority, default_port),
        }
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !valid {
        return Err(TurnUrlError::Invalid("bad host"));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(host: &str, port: u16, transport: TurnTransport) -> TurnServer {
        TurnServer {
            host: host.into(),
            port,
            transport,
        }
    }

    #[test]
    fn schemes_ports_and_transports() {
        use TurnTransport::*;
        let cases = [
            ("turn:10.0.0.1", server("10.0.0.1", 3478, Udp)),
            ("turn:10.0.0.1:3479?transport=udp", server("10.0.0.1", 3479, Udp)),
            (
                "turn:turn.example.com?transport=tcp",
                server("turn.example.com", 3478, Tcp),
            ),
            ("turns:turn.example.com", server("turn.example.com", 5349, Tls)),
            ("turns:10.99.2.2:443?transport=tcp", server("10.99.2.2", 443, Tls)),
            ("TURNS:lk.test:443", server("lk.test", 443, Tls)),
            ("turn:[fd00::2]:3478?transport=udp", server("fd00::2", 3478, Udp)),
            ("turn:[fd00::2]", server("fd00::2", 3478, Udp)),
        ];
        for (url, want) in cases {
            assert_eq!(parse_turn_url(url), Ok(want), "{url}");
        }
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "turn:10.0.0.1:3478?transport=udp",
            "turn:h.example:80?transport=tcp",
            "turns:h.example:443?transport=tcp",
            "turn:[fd00::2]:3478?transport=udp",
        ] {
            let parsed = parse_turn_url(url).unwrap();
            assert_eq!(parsed.to_string(), url);
            assert_eq!(parse_turn_url(&parsed.to_string()), Ok(parsed));
        }
    }

    #[test]
    fn stun_is_skipped_and_garbage_is_an_error() {
        assert_eq!(
            parse_turn_url("stun:stun.l.google.com:19302"),
            Err(TurnUrlError::NotTurn)
        );
        for bad in [
            "turn:",
            "turn:host:0",
            "turn:host:99999",
            "turn:host:port",
            "turn:fd00::2:3478",
            "turn:[fd00::2",
            "turn:[fd00::2]x",
            "turn:host?transport=sctp",
            "turn:ho st",
            "nothing",
        ] {
            assert!(
                matches!(parse_turn_url(bad), Err(TurnUrlError::Invalid(_))),
                "{bad}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(5766);
        for _ in 0..5_000 {
            let s: String = (0..rng.usize(..40)).map(|_| rng.char(..)).collect();
            let _ = parse_turn_url(&format!("turn:{s}"));
            let _ = parse_turn_url(&s);
        }
    }

    #[test]
    fn lists_keep_order_and_drop_duplicates_and_stun() {
        let servers = turn_servers([
            "stun:10.0.0.1:3478",
            "turns:lk.test:443?transport=tcp",
            "turn:10.0.0.1:3478?transport=udp",
            "turns:lk.test:443",
            "turn:bad host",
        ]);
        assert_eq!(
            servers,
            [
                server("lk.test", 443, TurnTransport::Tls),
                server("10.0.0.1", 3478, TurnTransport::Udp)
            ]
        );
    }
}
