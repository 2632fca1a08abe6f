//! LiveKit access tokens (HS256 JWTs) and small time/random helpers for the emulator.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::LiveKitSettings;

/// Optional extras for [`mint_livekit_token`].
///
/// The default mints a standard participant with no attributes and no metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenOptions {
    /// Participant kind claim (`"standard"`, `"agent"`, …); omitted when `None`.
    pub kind: Option<String>,
    /// Participant attributes (`attributes` claim), e.g. `lk.agent.name`; omitted when empty.
    pub attributes: BTreeMap<String, String>,
    /// Participant metadata (`metadata` claim); omitted when `None`.
    pub metadata: Option<String>,
}

/// Mints a LiveKit access token: an HS256 JWT signed with `settings.api_secret`.
///
/// Claims: `iss` = `settings.api_key`, `sub` and `jti` = `identity`, `name`, `nbf` = now,
/// `exp` = now + `ttl` (seconds, at least 1), and a video grant
/// `{"roomJoin":true,"room":room,"canPublish":true,"canSubscribe":true,"canPublishData":true}`,
/// plus `kind`, `attributes` and `metadata` from `options` when set. This is the format
/// `livekit-server` verifies (e.g. `livekit-server --dev` with `devkey`/`secret`).
pub fn mint_livekit_token(
    settings: &LiveKitSettings,
    room: &str,
    identity: &str,
    name: &str,
    ttl: Duration,
    options: &TokenOptions,
) -> String {
    mint(settings, room, identity, name, ttl, options, false)
}

/// [`mint_livekit_token`] whose video grant also has `"canUpdateOwnMetadata":true` (the
/// participant may change its own name, metadata and attributes).
pub fn mint_livekit_token_updating_own_metadata(
    settings: &LiveKitSettings,
    room: &str,
    identity: &str,
    name: &str,
    ttl: Duration,
    options: &TokenOptions,
) -> String {
    mint(settings, room, identity, name, ttl, options, true)
}

fn mint(
    settings: &LiveKitSettings,
    room: &str,
    identity: &str,
    name: &str,
    ttl: Duration,
    options: &TokenOptions,
    can_update_own_metadata: bool,
) -> String {
    let now = unix_now().as_secs();
    let exp = now.saturating_add(ttl.as_secs().max(1));
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(settings.api_key));
    claims.insert("sub".into(), json!(identity));
    claims.insert("jti".into(), json!(identity));
    claims.insert("name".into(), json!(name));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    let mut video = json!({
        "roomJoin": true,
        "room": room,
        "canPublish": true,
        "canSubscribe": true,
        "canPublishData": true,
    });
    if can_update_own_metadata {
        video["canUpdateOwnMetadata"] = json!(true);
    }
    claims.insert("video".into(), video);
    if let Some(kind) = &options.kind {
        claims.insert("kind".into(), json!(kind));
    }
    if !options.attributes.is_empty() {
        claims.insert("attributes".into(), json!(options.attributes));
    }
    if let Some(metadata) = &options.metadata {
        claims.insert("metadata".into(), json!(metadata));
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
    let signing_input = format!("{header}.{payload}");
    let signature = hs256(settings.api_secret.as_bytes(), signing_input.as_bytes());
    format!("{signing_input}.{signature}")
}

/// HMAC-SHA256 of `input`, base64url without padding (the JWS HS256 signature).
fn hs256(secret: &[u8], input: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for Hmac<Sha256>.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(input);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// How far `exp` and `nbf` may be off, as livekit-server allows (one minute).
pub(crate) const TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// Why an access token was refused. The `Display` text never contains the token, the key or
/// the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Not three base64url parts of JSON, or not HS256.
    #[error("invalid authorization token")]
    Malformed,
    /// The issuer (`iss`) is not the configured API key.
    #[error("invalid API key")]
    UnknownKey,
    /// The HMAC does not match.
    #[error("invalid token: token signature is invalid")]
    BadSignature,
    /// `exp` is more than [`TOKEN_LEEWAY`] in the past.
    #[error("invalid token: token is expired")]
    Expired,
    /// `nbf` is more than [`TOKEN_LEEWAY`] in the future.
    #[error("invalid token: token is not valid yet")]
    NotYetValid,
}

/// The video grant of a verified token (the subset a data-only SFU uses). Permissions that are
/// absent from the token keep LiveKit's defaults (see the accessors).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VideoGrant {
    #[serde(default)]
    pub room_join: bool,
    #[serde(default)]
    pub room: String,
    pub can_publish: Option<bool>,
    pub can_subscribe: Option<bool>,
    pub can_publish_data: Option<bool>,
    pub can_update_own_metadata: Option<bool>,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub agent: bool,
}

impl VideoGrant {
    /// `canPublish`, true when absent.
    pub fn can_publish(&self) -> bool {
        self.can_publish.unwrap_or(true)
    }
    /// `canSubscribe`, true when absent.
    pub fn can_subscribe(&self) -> bool {
        self.can_subscribe.unwrap_or(true)
    }
    /// `canPublishData`, `canPublish` when absent.
    pub fn can_publish_data(&self) -> bool {
        self.can_publish_data.unwrap_or_else(|| self.can_publish())
    }
    /// `canUpdateOwnMetadata`, false when absent.
    pub fn can_update_own_metadata(&self) -> bool {
        self.can_update_own_metadata.unwrap_or(false)
    }
}

/// The claims of a verified LiveKit access token.
#[derive(Clone, PartialEq, serde::Deserialize)]
pub(crate) struct LiveKitClaims {
    /// `sub`, or `jti` when `sub` is empty (as livekit-server does).
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    jti: String,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    pub name: String,
    /// `kind` (`standard`, `agent`, …), empty when absent.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub video: Option<VideoGrant>,
    exp: Option<f64>,
    nbf: Option<f64>,
}

impl std::fmt::Debug for LiveKitClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitClaims")
            .field("identity", &"<redacted>")
            .field("kind", &self.kind)
            .field("video", &self.video)
            .finish_non_exhaustive()
    }
}

impl LiveKitClaims {
    /// The participant identity.
    pub fn identity(&self) -> &str {
        if self.sub.is_empty() {
            &self.jti
        } else {
            &self.sub
        }
    }
}

/// Verifies an HS256 LiveKit access token against one key pair at time `now` (since the
/// epoch), as livekit-server does: HS256 only, `iss` must be `api_key`, the signature must
/// match `api_secret`, `exp`/`nbf` are checked with [`TOKEN_LEEWAY`].
pub(crate) fn verify_livekit_token(
    token: &str,
    api_key: &str,
    api_secret: &str,
    now: Duration,
) -> Result<LiveKitClaims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Value = decode_part(header)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::Malformed);
    }
    let claims: LiveKitClaims = decode_part(payload)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    if claims.iss != api_key {
        return Err(TokenError::UnknownKey);
    }
    let mut mac = match Hmac::<Sha256>::new_from_slice(api_secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(&token.as_bytes()[..header_and_payload_len(token)]);
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let now = now.as_secs_f64();
    let leeway = TOKEN_LEEWAY.as_secs_f64();
    if claims.exp.is_some_and(|exp| now > exp + leeway) {
        return Err(TokenError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Length of `header.payload` (the signing input) in a three-part token.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Time since the Unix epoch (zero if the clock is before 1970).
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Formats a time since the Unix epoch as RFC 3339 UTC with microseconds,
/// e.g. `2023-11-14T22:13:20.000000Z` (what pydantic emits for UTC datetimes).
pub(crate) fn rfc3339(since_epoch: Duration) -> String {
    let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, since_epoch.subsec_nanos())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// RFC 3339 "now".
pub(crate) fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

/// `n` random lowercase hex digits.
pub(crate) fn random_hex(n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..n).map(|_| HEX[fastrand::usize(..16)] as char).collect()
}

/// `n` random ASCII alphanumerics.
pub(crate) fn random_alnum(n: usize) -> String {
    (0..n).map(|_| fastrand::alphanumeric()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn hs256_matches_the_jwt_io_vector() {
        let input = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ";
        assert_eq!(
            hs256(b"your-256-bit-secret", input.as_bytes()),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20.000000Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400) + Duration::from_micros(5)),
            "2000-02-29T00:00:00.000005Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(253_402_300_799)),
            "9999-12-31T23:59:59.000000Z"
        );
    }

    #[test]
    fn token_has_livekit_claims() {
        let settings = LiveKitSettings {
            url: "ws://127.0.0.1:7880".into(),
            api_key: "devkey".into(),
            api_secret: "secret".into(),
        };
        let options = TokenOptions {
            kind: Some("agent".into()),
            attributes: [("lk.agent.name".to_owned(), "sim-worker".to_owned())].into(),
            ..TokenOptions::default()
        };
        let token = mint_livekit_token(
            &settings,
            "rb_1",
            "agent-1",
            "Agent",
            Duration::from_secs(60),
            &options,
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        assert_eq!(hs256(b"secret", signing_input.as_bytes()), parts[2]);
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "devkey");
        assert_eq!(claims["sub"], "agent-1");
        assert_eq!(claims["kind"], "agent");
        assert_eq!(claims["attributes"]["lk.agent.name"], "sim-worker");
        assert_eq!(claims["video"]["room"], "rb_1");
        assert_eq!(claims["video"]["roomJoin"], true);
        let exp = claims["exp"].as_u64().unwrap();
        let nbf = claims["nbf"].as_u64().unwrap();
        assert_eq!(exp - nbf, 60);
    }

    fn settings() -> LiveKitSettings {
        LiveKitSettings {
            url: "ws://127.0.0.1:7880".into(),
            api_key: "devkey".into(),
            api_secret: "secret".into(),
        }
    }

    /// Signs arbitrary claims with `secret`.
    fn sign(claims: &Value, secret: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let signature = hs256(secret.as_bytes(), input.as_bytes());
        format!("{input}.{signature}")
    }

    #[test]
    fn minted_tokens_verify_with_their_grants() {
        let options = TokenOptions {
            kind: Some("agent".into()),
            attributes: [("lk.agent.name".to_owned(), "sim-worker".to_owned())].into(),
            metadata: Some("m".into()),
        };
        let token = mint_livekit_token(
            &settings(),
            "rb_1",
            "agent-1",
            "Agent",
            Duration::from_secs(60),
            &options,
        );
        let claims = verify_livekit_token(&token, "devkey", "secret", unix_now()).unwrap();
        assert_eq!(claims.identity(), "agent-1");
        assert_eq!(
            (
                claims.name.as_str(),
                claims.kind.as_str(),
                claims.metadata.as_str()
            ),
            ("Agent", "agent", "m")
        );
        assert_eq!(claims.attributes["lk.agent.name"], "sim-worker");
        let video = claims.video.clone().unwrap();
        assert!(video.room_join && video.can_publish_data() && video.can_subscribe());
        assert!(!video.can_update_own_metadata());
        assert_eq!(video.room, "rb_1");
        assert!(!format!("{claims:?}").contains("agent-1"));
    }

    #[test]
    fn a_token_may_grant_updating_own_metadata() {
        let token = mint_livekit_token_updating_own_metadata(
            &settings(),
            "rb_1",
            "runtime",
            "runtime",
            Duration::from_secs(60),
            &TokenOptions::default(),
        );
        let claims = verify_livekit_token(&token, "devkey", "secret", unix_now()).unwrap();
        let video = claims.video.unwrap();
        assert!(video.room_join && video.can_publish_data() && video.can_update_own_metadata());
    }

    #[test]
    fn each_refusal_reason_is_reported() {
        let now = unix_now();
        let token = mint_livekit_token(
            &settings(),
            "r",
            "id",
            "n",
            Duration::from_secs(60),
            &TokenOptions::default(),
        );
        let verify = |t: &str| verify_livekit_token(t, "devkey", "secret", now);
        assert_eq!(
            verify_livekit_token(&token, "devkey", "other", now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_livekit_token(&token, "otherkey", "secret", now),
            Err(TokenError::UnknownKey)
        );
        // Change the signature's first character (all six of its bits are signature bits).
        let at = token.rfind('.').unwrap() + 1;
        let first = if token[at..].starts_with('A') { "B" } else { "A" };
        let tampered = format!("{}{first}{}", &token[..at], &token[at + 1..]);
        assert_eq!(verify(&tampered), Err(TokenError::BadSignature));
        for garbage in ["", "a.b", "a.b.c", "a.b.c.d", "e30.e30.", "!!.??.**"] {
            assert_eq!(verify(garbage), Err(TokenError::Malformed), "{garbage}");
        }
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"iss":"devkey"}"#)
        );
        assert_eq!(verify(&none_alg), Err(TokenError::Malformed));
        let secs = now.as_secs();
        let expired = sign(&json!({"iss": "devkey", "sub": "a", "exp": secs - 61}), "secret");
        assert_eq!(verify(&expired), Err(TokenError::Expired));
        let within_leeway = sign(&json!({"iss": "devkey", "sub": "a", "exp": secs - 30}), "secret");
        assert!(verify(&within_leeway).is_ok());
        let early = sign(&json!({"iss": "devkey", "sub": "a", "nbf": secs + 120}), "secret");
        assert_eq!(verify(&early), Err(TokenError::NotYetValid));
        let jti_only = sign(
            &json!({"iss": "devkey", "jti": "from-jti", "video": {"roomJoin": true}}),
            "secret",
        );
        let claims = verify(&jti_only).unwrap();
        assert_eq!(claims.identity(), "from-jti");
        assert!(claims.video.unwrap().can_publish_data());
        for e in [
            TokenError::Malformed,
            TokenError::UnknownKey,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
        ] {
            let text = e.to_string();
            assert!(!text.contains("devkey") && !text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn random_helpers_have_the_right_shape() {
        let h = random_hex(12);
        assert_eq!(h.len(), 12);
        assert!(h
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(random_alnum(20).chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
