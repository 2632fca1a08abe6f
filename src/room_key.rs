//! Room keys and viewer links (CONTRACT §5): a short-lived viewer credential packed with the
//! LiveKit URL into one string the SimpleSim viewer understands.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{ParticipantToken, ParticipantTokenRequest, DEFAULT_TOKEN_TTL_SECONDS};
use crate::robots::check_robot_id;
use crate::secret::Secret;
use crate::transport::encode_query_value;

const PREFIX: &str = "k1~";

/// What stays literal in a `?key=` value: RFC 3986 unreserved characters, which covers every
/// character of a well-formed key (base64url, `.` and `~`).
const KEY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A room key: the LiveKit URL and a participant token for one robot room.
///
/// It is a publish-capable room credential (the viewer acts as the robot runtime): share it
/// like a meeting link, not publicly. `Debug` hides the token; [`RoomKey::encode`] gives the
/// key string itself.
#[derive(Clone, PartialEq, Eq)]
pub struct RoomKey {
    livekit_url: String,
    token: Secret,
}

impl RoomKey {
    /// Packs a LiveKit URL and a participant token.
    pub fn new(livekit_url: impl Into<String>, token: Secret) -> Result<RoomKey> {
        let livekit_url = livekit_url.into();
        check_livekit_url(&livekit_url)?;
        if token.expose().is_empty() || token.expose().contains('~') {
            return Err(Error::invalid(
                "participant token",
                "must be a non-empty JWT without '~'",
            ));
        }
        Ok(RoomKey { livekit_url, token })
    }

    /// Parses a room key: the key itself (`k1~<base64url(LiveKit URL)>~<JWT>`), the same key
    /// percent-encoded (`k1%7E…`), or a whole viewer link holding it in its `key` query
    /// parameter (`https://sim.menlo.ai/?key=k1~…`, other parameters allowed).
    ///
    /// Errors never repeat the input: it is a credential.
    pub fn parse(key: &str) -> Result<RoomKey> {
        parse_bare_key(&key_text(key.trim())?)
    }

    /// The key string, `k1~…`. It is a credential: show it only to whom it is meant for.
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{}~{}",
            URL_SAFE_NO_PAD.encode(&self.livekit_url),
            self.token.expose()
        )
    }

    /// The LiveKit server URL.
    pub fn livekit_url(&self) -> &str {
        &self.livekit_url
    }

    /// The participant token.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// The room the token grants, read from the token's `video.room` claim (not verified:
    /// only the server can check the signature).
    pub fn room_name(&self) -> Result<String> {
        token_room(&self.token)
    }

    /// `{viewer_base}/?key={key}`, the key as minted (its `~` need no escaping).
    pub fn link(&self, viewer_base: &str) -> String {
        format!(
            "{}/?key={}",
            viewer_base.trim_end_matches('/'),
            utf8_percent_encode(&self.encode(), KEY_VALUE)
        )
    }
}

fn invalid_key(reason: &str) -> Error {
    Error::invalid("room key", reason.to_owned())
}

/// The bare key inside `input`: `input` itself, its percent-decoding, or a link's `key`
/// query parameter (decoded). A key never holds `?`, so a `?` means a link.
fn key_text(input: &str) -> Result<Cow<'_, str>> {
    if input.starts_with(PREFIX) {
        return Ok(Cow::Borrowed(input));
    }
    let encoded = match input.split_once('?') {
        Some((_, query)) => link_key_parameter(query)?,
        None => input,
    };
    percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| invalid_key("the percent-encoded key is not UTF-8"))
}

/// The raw value of the first `key=` parameter of a query string (fragment ignored).
fn link_key_parameter(query: &str) -> Result<&str> {
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .ok_or_else(|| invalid_key("the link has no key parameter"))
}

/// Parses `k1~<base64url(LiveKit URL)>~<JWT>`.
fn parse_bare_key(key: &str) -> Result<RoomKey> {
    let rest = key
        .strip_prefix(PREFIX)
        .ok_or_else(|| invalid_key("expected it to start with k1~"))?;
    let (encoded_url, token) = rest
        .split_once('~')
        .ok_or_else(|| invalid_key("expected k1~<url>~<token>"))?;
    let url_bytes = URL_SAFE_NO_PAD
        .decode(encoded_url)
        .map_err(|_| invalid_key("the URL part is not base64url"))?;
    let url = String::from_utf8(url_bytes).map_err(|_| invalid_key("the URL part is not UTF-8"))?;
    if token.split('.').count() != 3 {
        return Err(invalid_key("the token part is not a JWT"));
    }
    RoomKey::new(url, Secret::new(token))
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomKey")
            .field("livekit_url", &self.livekit_url)
            .field("token", &self.token)
            .finish()
    }
}

/// Options of a room key.
#[must_use]
#[derive(Clone, Debug, Default)]
pub struct RoomKeyOptions {
    ttl: Option<Duration>,
    livekit_url: Option<String>,
    participant_identity: Option<String>,
    participant_name: Option<String>,
}

impl RoomKeyOptions {
    /// Defaults: 4 h TTL, LiveKit URL from `MENLO_LIVEKIT_URL` or the platform, identity
    /// `simplesim:{robot_id}`, display name `SimpleSim Viewer ({robot_id})`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lifetime of the credential, in whole seconds, at least 1 s. A longer one than 6 h is
    /// sent as asked and the server caps it at 6 h (the key's token then expires after 6 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The LiveKit URL to embed, overriding `MENLO_LIVEKIT_URL` and the platform's.
    pub fn livekit_url(mut self, url: impl Into<String>) -> Self {
        self.livekit_url = Some(url.into());
        self
    }

    /// The identity the viewer joins the room as (1..=256 characters; default
    /// `simplesim:{robot_id}`).
    pub fn participant_identity(mut self, identity: impl Into<String>) -> Self {
        self.participant_identity = Some(identity.into());
        self
    }

    /// The viewer's display name (1..=256 characters; default `SimpleSim Viewer ({robot_id})`).
    pub fn participant_name(mut self, name: impl Into<String>) -> Self {
        self.participant_name = Some(name.into());
        self
    }

    /// The token request these options make for `robot_id`.
    fn token_request(&self, robot_id: &str) -> Result<ParticipantTokenRequest> {
        let ttl = self.ttl.map_or(Ok(DEFAULT_TOKEN_TTL_SECONDS), ttl_seconds)?;
        let identity = self
            .participant_identity
            .clone()
            .unwrap_or_else(|| format!("simplesim:{robot_id}"));
        let name = self
            .participant_name
            .clone()
            .unwrap_or_else(|| format!("SimpleSim Viewer ({robot_id})"));
        Ok(ParticipantTokenRequest::new(identity).name(name).ttl_seconds(ttl))
    }
}

/// Room keys and viewer links. Get one with [`Client::room_keys`].
#[derive(Clone, Copy, Debug)]
pub struct RoomKeys<'c> {
    pub(crate) client: &'c Client,
}

impl RoomKeys<'_> {
    /// A room key for the robot's room, with default options.
    pub fn generate(&self, robot_id: &str) -> Result<RoomKey> {
        self.generate_with(robot_id, &RoomKeyOptions::new())
    }

    /// A room key for the robot's room.
    pub fn generate_with(&self, robot_id: &str, options: &RoomKeyOptions) -> Result<RoomKey> {
        let (token, url) = self.viewer_token(robot_id, options)?;
        RoomKey::new(url, token.participant_token)
    }

    /// A ready-to-open link `{viewer}/?key={key}`, the viewer being `MENLO_ROBOT_VIEWER_URL`
    /// or `https://sim.menlo.ai`.
    pub fn link(&self, robot_id: &str, options: &RoomKeyOptions) -> Result<String> {
        Ok(self
            .generate_with(robot_id, options)?
            .link(self.client.viewer_url()))
    }

    /// The legacy long viewer link `{viewer}/?lk_url=…&lk_token=…&lk_room=…`.
    pub fn legacy_viewer_url(&self, robot_id: &str, options: &RoomKeyOptions) -> Result<String> {
        let (token, url) = self.viewer_token(robot_id, options)?;
        Ok(format!(
            "{}/?lk_url={}&lk_token={}&lk_room={}",
            self.client.viewer_url(),
            encode_query_value(&url),
            encode_query_value(token.participant_token.expose()),
            encode_query_value(&token.room_name),
        ))
    }

    fn viewer_token(&self, robot_id: &str, options: &RoomKeyOptions) -> Result<(ParticipantToken, String)> {
        check_robot_id(robot_id)?;
        let request = options.token_request(robot_id)?;
        let token = self
            .client
            .robots()
            .create_participant_token(robot_id, &request)?;
        let url = options
            .livekit_url
            .clone()
            .or_else(|| self.client.livekit_url_override().map(str::to_owned))
            .unwrap_or_else(|| token.livekit_url.clone());
        check_livekit_url(&url)?;
        if is_container_internal(&url) {
            log::warn!(
                target: "menlo_robot_sdk",
                "the LiveKit URL {url} names a container-internal host a browser cannot reach; set MENLO_LIVEKIT_URL to a reachable ws:// or wss:// URL"
            );
        }
        Ok((token, url))
    }
}

/// Whole seconds of a TTL. Anything from 1 s up is sent as asked (saturating at `u32::MAX`):
/// the server caps the credential at 6 h, as it does for every token request.
fn ttl_seconds(ttl: Duration) -> Result<u32> {
    match ttl.as_secs() {
        0 => Err(Error::invalid(
            "ttl",
            "must be at least 1 second (the server caps it at 6 hours)",
        )),
        seconds => Ok(u32::try_from(seconds).unwrap_or(u32::MAX)),
    }
}

/// Checks a LiveKit URL is `ws://` or `wss://` with something after the scheme.
pub(crate) fn check_livekit_url(url: &str) -> Result<()> {
    let lower = url.to_ascii_lowercase();
    let host_part = lower
        .strip_prefix("wss://")
        .or_else(|| lower.strip_prefix("ws://"));
    match host_part {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(Error::invalid(
            "livekit_url",
            format!("expected a ws:// or wss:// URL, got {url:?}"),
        )),
    }
}

/// True when the URL's host has no dot and is not `localhost` (e.g. `ws://livekit:7880`):
/// a name that only resolves inside a container network.
pub fn is_container_internal(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if authority.starts_with('[') {
        return false; // an IPv6 literal is an address, not a container name
    }
    let host = authority.split(':').next().unwrap_or("");
    !host.is_empty() && !host.contains('.') && !host.eq_ignore_ascii_case("localhost")
}

fn token_room(token: &Secret) -> Result<String> {
    let invalid = |reason: &str| Error::invalid("participant token", reason.to_owned());
    let payload = token
        .expose()
        .split('.')
        .nth(1)
        .ok_or_else(|| invalid("not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| invalid("the payload is not base64url"))?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid("the payload is not JSON"))?;
    claims
        .pointer("/video/room")
        .and_then(|room| room.as_str())
        .map(str::to_owned)
        .ok_or_else(|| invalid("no video.room grant"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn key_round_trips_and_reads_the_room() {
        let token = jwt(r#"{"video":{"room":"rb_1","roomJoin":true}}"#);
        let key = RoomKey::new("wss://lk.example.com", Secret::new(token.clone())).unwrap();
        let encoded = key.encode();
        assert!(encoded.starts_with("k1~"));
        let parsed = RoomKey::parse(&encoded).unwrap();
        assert_eq!(parsed.livekit_url(), "wss://lk.example.com");
        assert_eq!(parsed.token().expose(), token);
        assert_eq!(parsed.room_name().unwrap(), "rb_1");
    }

    #[test]
    fn malformed_keys_are_errors_that_do_not_echo_the_key() {
        for bad in [
            "",
            "k1~",
            "k2~abc~x.y.z",
            "k1~!!!~a.b.c",
            "k1~d3M6Ly9h~notajwt",
            "k1~aHR0cDovL2E~a.b.c",
        ] {
            let err = RoomKey::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad}: {err}");
        }
        let err = RoomKey::parse("k1~@@~secret.secret.secret").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    fn sample_key() -> RoomKey {
        let token = jwt(r#"{"video":{"room":"rb_1"}}"#);
        RoomKey::new("ws://127.0.0.1:7880", Secret::new(token)).unwrap()
    }

    #[test]
    fn links_carry_the_key_literally() {
        let key = sample_key();
        let link = key.link("https://sim.menlo.ai/");
        assert_eq!(link, format!("https://sim.menlo.ai/?key={}", key.encode()));
        assert!(link.contains("?key=k1~"), "{link}");
    }

    #[test]
    fn a_whole_link_parses() {
        let key = sample_key();
        assert_eq!(RoomKey::parse(&key.link("https://sim.menlo.ai")).unwrap(), key);
        let with_others = format!("https://sim.menlo.ai/?a=1&key={}&b=2#top", key.encode());
        assert_eq!(RoomKey::parse(&with_others).unwrap(), key);
        let relative = format!("/?key={}", key.encode());
        assert_eq!(RoomKey::parse(&relative).unwrap(), key);
    }

    #[test]
    fn a_percent_encoded_key_parses_bare_or_in_a_link() {
        let key = sample_key();
        let encoded = key.encode().replace('~', "%7E");
        assert_eq!(RoomKey::parse(&encoded).unwrap(), key);
        assert_eq!(RoomKey::parse(&encoded.replace("%7E", "%7e")).unwrap(), key);
        let link = format!("https://sim.menlo.ai/?key={encoded}");
        assert_eq!(RoomKey::parse(&link).unwrap(), key);
    }

    #[test]
    fn a_link_without_a_key_is_refused_without_echoing_it() {
        for bad in [
            "https://sim.menlo.ai/?lk_token=secret.secret.secret",
            "https://sim.menlo.ai/?key=secret.secret.secret",
            "https://sim.menlo.ai/?xkey=k1~secret",
            "k1%FF~secret",
        ] {
            let err = RoomKey::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn ttl_under_a_second_is_refused_and_over_the_cap_is_left_to_the_server() {
        for short in [Duration::ZERO, Duration::from_millis(999)] {
            let err = RoomKeyOptions::new()
                .ttl(short)
                .token_request("rb_1")
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "invalid ttl: must be at least 1 second (the server caps it at 6 hours)"
            );
        }
        let seven_hours = Duration::from_secs(7 * 3600);
        let request = RoomKeyOptions::new()
            .ttl(seven_hours)
            .token_request("rb_1")
            .unwrap();
        assert_eq!(request.ttl_seconds, Some(25_200));
        let request = RoomKeyOptions::new()
            .ttl(Duration::MAX)
            .token_request("rb_1")
            .unwrap();
        assert_eq!(request.ttl_seconds, Some(u32::MAX));
    }

    #[test]
    fn options_set_the_viewer_identity_and_name() {
        let default = RoomKeyOptions::new().token_request("rb_1").unwrap();
        assert_eq!(default.participant_identity, "simplesim:rb_1");
        assert_eq!(default.participant_name, "SimpleSim Viewer (rb_1)");
        assert_eq!(default.ttl_seconds, Some(DEFAULT_TOKEN_TTL_SECONDS));
        let custom = RoomKeyOptions::new()
            .participant_identity("viewer:alice")
            .participant_name("Alice")
            .token_request("rb_1")
            .unwrap();
        assert_eq!(custom.participant_identity, "viewer:alice");
        assert_eq!(custom.participant_name, "Alice");
    }

    #[test]
    fn container_hostnames_are_spotted() {
        assert!(is_container_internal("ws://livekit:7880"));
        assert!(is_container_internal("wss://livekit"));
        assert!(!is_container_internal("ws://localhost:7880"));
        assert!(!is_container_internal("ws://127.0.0.1:7880"));
        assert!(!is_container_internal("wss://lk.menlo.ai"));
        assert!(!is_container_internal("ws://[::1]:7880"));
    }
}
