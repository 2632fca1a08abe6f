//! Client settings: environment variables, builder values, defaults and validation.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::json::OrderedJson;
use crate::secret::Secret;

/// Default RCS (control plane) base URL.
pub const DEFAULT_RCS_URL: &str = "https://api.menlo.ai/rcs";
/// Default viewer base URL for room-key links.
pub const DEFAULT_VIEWER_URL: &str = "https://sim.menlo.ai";
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// Environment variable names read by [`crate::ClientBuilder::from_env`].
pub mod env {
    /// `sk_live_…` API key (API-key mode).
    pub const API_KEY: &str = "MENLO_API_KEY";
    /// RCS base URL.
    pub const RCS_URL: &str = "MENLO_RCS_URL";
    /// Compact identity JSON (direct-identity mode, dev RCS).
    pub const IDENTITY: &str = "MENLO_IDENTITY";
    /// Path of a file holding the identity JSON.
    pub const IDENTITY_FILE: &str = "MENLO_IDENTITY_FILE";
    /// Per-request timeout in seconds (float).
    pub const TIMEOUT: &str = "MENLO_ROBOT_SDK_TIMEOUT";
    /// Retries on retryable failures.
    pub const MAX_RETRIES: &str = "MENLO_ROBOT_SDK_MAX_RETRIES";
    /// `1`/`true`/`yes`: log method, URL and status of each request.
    pub const DEBUG: &str = "MENLO_ROBOT_SDK_DEBUG";
    /// Viewer base URL for room-key links.
    pub const VIEWER_URL: &str = "MENLO_ROBOT_VIEWER_URL";
    /// Override of the LiveKit URL embedded in viewer links and keys.
    pub const LIVEKIT_URL: &str = "MENLO_LIVEKIT_URL";
}

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <key>`.
    ApiKey(Secret),
    /// `X-Menlo-Identity: <json>` (dev RCS).
    Identity(Secret),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Auth::Identity(_) => f.write_str("Identity(<redacted>)"),
        }
    }
}

/// A principal for direct-identity mode (a development RCS without the auth edge).
///
/// Renders the compact JSON the `X-Menlo-Identity` header carries.
#[must_use]
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct DevIdentity {
    /// Subject (user id).
    pub sub: String,
    /// Organization id.
    pub organization_id: String,
    /// Team id.
    pub team_id: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
}

impl DevIdentity {
    /// An identity with no roles or scopes.
    pub fn new(
        sub: impl Into<String>,
        organization_id: impl Into<String>,
        team_id: impl Into<String>,
    ) -> Self {
        Self {
            sub: sub.into(),
            organization_id: organization_id.into(),
            team_id: team_id.into(),
            roles: Vec::new(),
            scopes: Vec::new(),
        }
    }

    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Adds a scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// The compact JSON header value: `{"sub","organization_id","team_id","roles","scopes"}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Debug for DevIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DevIdentity(<redacted>)")
    }
}

/// Validated client settings.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub rcs_url: String,
    pub auth: Auth,
    pub timeout: Duration,
    pub max_retries: u32,
    pub debug: bool,
    pub viewer_url: String,
    pub livekit_url: Option<String>,
}

/// Raw settings as given, before validation. Each value remembers where it came from so an
/// error can name the environment variable or the builder method.
#[derive(Clone, Default)]
pub(crate) struct Settings {
    pub rcs_url: Option<Sourced<String>>,
    pub api_key: Option<Sourced<Secret>>,
    pub identity: Option<Sourced<Secret>>,
    pub timeout: Option<Sourced<String>>,
    pub max_retries: Option<Sourced<String>>,
    pub debug: Option<Sourced<String>>,
    pub viewer_url: Option<Sourced<String>>,
    pub livekit_url: Option<Sourced<String>>,
}

/// A setting's value and the name of its source.
#[derive(Clone)]
pub(crate) struct Sourced<T> {
    pub value: T,
    pub source: &'static str,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: &'static str) -> Self {
        Self { value, source }
    }
}

impl Settings {
    /// Reads every variable of CONTRACT §1 through `lookup` (`std::env::var` in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &'static str| lookup(name).map(|value| Sourced::new(value, name));
        let identity = match var(env::IDENTITY).filter(|v| !v.value.trim().is_empty()) {
            Some(identity) => Some(identity),
            None => match var(env::IDENTITY_FILE).filter(|v| !v.value.trim().is_empty()) {
                Some(path) => Some(Sourced::new(
                    read_identity_file(path.value.trim())?,
                    env::IDENTITY_FILE,
                )),
                None => None,
            },
        };
        Ok(Settings {
            rcs_url: var(env::RCS_URL),
            api_key: var(env::API_KEY).map(|v| Sourced::new(Secret::new(v.value), v.source)),
            identity: identity.map(|v| Sourced::new(Secret::new(v.value), v.source)),
            timeout: var(env::TIMEOUT),
            max_retries: var(env::MAX_RETRIES),
            debug: var(env::DEBUG),
            viewer_url: var(env::VIEWER_URL),
            livekit_url: var(env::LIVEKIT_URL),
        })
    }

    /// Validates and fills in defaults. A configuration error quotes the value at fault so
    /// the user sees what was wrong; a credential pasted into some other setting is blanked
    /// out of that quote.
    pub fn resolve(&self) -> Result<Config> {
        self.validate().map_err(|err| self.scrub_credentials(err))
    }

    /// A reason that quotes a credential, as typed or escaped, is replaced as a whole:
    /// cutting the credential out piecemeal could still leave it readable.
    fn scrub_credentials(&self, err: Error) -> Error {
        let Error::Config { setting, reason } = err else {
            return err;
        };
        let quotes_a_credential = [&self.api_key, &self.identity]
            .into_iter()
            .flatten()
            .map(|secret| secret.value.expose().trim())
            .filter(|secret| !secret.is_empty())
            .any(|secret| {
                let escaped = format!("{secret:?}");
                reason.contains(secret) || reason.contains(escaped.trim_matches('"'))
            });
        if quotes_a_credential {
            let reason = "malformed value (not shown: it contains the API key or identity)".to_owned();
            return Error::Config { setting, reason };
        }
        Error::Config { setting, reason }
    }

    fn validate(&self) -> Result<Config> {
        let rcs_url = url_setting(self.rcs_url.as_ref(), DEFAULT_RCS_URL, &["http://", "https://"])?;
        let viewer_url = url_setting(
            self.viewer_url.as_ref(),
            DEFAULT_VIEWER_URL,
            &["http://", "https://"],
        )?;
        let livekit_url = match self.livekit_url.as_ref().filter(|v| !v.value.trim().is_empty()) {
            Some(url) => Some(url_setting(Some(url), "", &["ws://", "wss://"])?),
            None => None,
        };
        Ok(Config {
            rcs_url,
            auth: self.auth()?,
            timeout: self.timeout()?,
            max_retries: self.max_retries()?,
            debug: self.debug()?,
            viewer_url,
            livekit_url,
        })
    }

    fn auth(&self) -> Result<Auth> {
        let non_blank = |s: &&Sourced<Secret>| !s.value.expose().trim().is_empty();
        if let Some(key) = self.api_key.as_ref().filter(non_blank) {
            let key = key.value.expose().trim();
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::config(
                    self.api_key.as_ref().map_or(env::API_KEY, |k| k.source),
                    "the API key contains whitespace or control characters",
                ));
            }
            return Ok(Auth::ApiKey(Secret::new(key)));
        }
        if let Some(identity) = self.identity.as_ref().filter(non_blank) {
            return parse_identity(identity.value.expose(), identity.source).map(Auth::Identity);
        }
        Err(Error::config(
            env::API_KEY,
            "no credentials: set MENLO_API_KEY (or MENLO_IDENTITY / MENLO_IDENTITY_FILE for a dev RCS), or pass one to the builder",
        ))
    }

    fn timeout(&self) -> Result<Duration> {
        let Some(raw) = self.timeout.as_ref().filter(|v| !v.value.trim().is_empty()) else {
            return Ok(DEFAULT_TIMEOUT);
        };
        let seconds: f64 = raw.value.trim().parse().map_err(|_| {
            Error::config(
                raw.source,
                format!("expected seconds as a number, got {:?}", raw.value.trim()),
            )
        })?;
        // Below a millisecond a timeout is a typo, and below a nanosecond it would round to
        // zero, which the HTTP stack reads as "time out at once".
        if !seconds.is_finite() || !(0.001..=86_400.0).contains(&seconds) {
            return Err(Error::config(
                raw.source,
                format!("expected a number of seconds from 0.001 to 86400, got {seconds}"),
            ));
        }
        Ok(Duration::from_secs_f64(seconds))
    }

    fn max_retries(&self) -> Result<u32> {
        let Some(raw) = self.max_retries.as_ref().filter(|v| !v.value.trim().is_empty()) else {
            return Ok(DEFAULT_MAX_RETRIES);
        };
        match raw.value.trim().parse::<u32>() {
            Ok(n) if n <= 100 => Ok(n),
            _ => Err(Error::config(
                raw.source,
                format!("expected an integer from 0 to 100, got {:?}", raw.value.trim()),
            )),
        }
    }

    fn debug(&self) -> Result<bool> {
        let Some(raw) = self.debug.as_ref() else {
            return Ok(false);
        };
        match raw.value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "" | "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(Error::config(
                raw.source,
                format!("expected 1/true/yes or 0/false/no, got {:?}", raw.value.trim()),
            )),
        }
    }
}

fn read_identity_file(path: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|content| content.trim().to_owned())
        .map_err(|err| Error::config(env::IDENTITY_FILE, format!("cannot read {path}: {err}")))
}

/// Checks the identity is a JSON object with the fields the platform needs, and re-renders
/// it compactly (the header must be one line).
fn parse_identity(raw: &str, source: &'static str) -> Result<Secret> {
    let value: serde_json::Value = serde_json::from_str(raw.trim()).map_err(|err| not_json(source, &err))?;
    let object = value
        .as_object()
        .ok_or_else(|| Error::config(source, "expected a JSON object"))?;
    for field in ["sub", "organization_id", "team_id"] {
        let present = object
            .get(field)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !present {
            return Err(Error::config(
                source,
                format!("the identity needs a non-empty string field {field:?}"),
            ));
        }
    }
    // Re-rendered from an ordered tree: compact, keys in the order given.
    let ordered: OrderedJson = serde_json::from_str(raw.trim()).map_err(|err| not_json(source, &err))?;
    Ok(Secret::new(ordered.to_compact_string()))
}

fn not_json(source: &'static str, err: &serde_json::Error) -> Error {
    Error::config(
        source,
        format!("not valid JSON ({})", crate::error::describe_json_error(err)),
    )
}

/// Trims, drops a trailing `/`, and checks the scheme.
fn url_setting(raw: Option<&Sourced<String>>, default: &str, schemes: &[&str]) -> Result<String> {
    let Some(raw) = raw.filter(|v| !v.value.trim().is_empty()) else {
        return Ok(default.to_owned());
    };
    let url = raw.value.trim().trim_end_matches('/');
    let scheme_ok = schemes.iter().any(|scheme| {
        url.len() > scheme.len()
            && url
                .get(..scheme.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    });
    if !scheme_ok {
        return Err(Error::config(
            raw.source,
            format!(
                "expected a URL starting with {}, got {url:?}",
                schemes.join(" or ")
            ),
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::config(
            raw.source,
            format!("the URL contains whitespace: {url:?}"),
        ));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())?.resolve()
    }

    #[test]
    fn defaults_apply_with_only_a_key() {
        let config = settings(&[("MENLO_API_KEY", " sk_live_x ")]).unwrap();
        assert_eq!(config.rcs_url, DEFAULT_RCS_URL);
        assert_eq!(config.viewer_url, DEFAULT_VIEWER_URL);
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.max_retries, 2);
        assert!(!config.debug);
        assert_eq!(config.auth, Auth::ApiKey(Secret::new("sk_live_x")));
    }

    #[test]
    fn urls_are_trimmed_and_lose_trailing_slash() {
        let config = settings(&[
            ("MENLO_API_KEY", "k"),
            ("MENLO_RCS_URL", " http://127.0.0.1:9/rcs/ "),
            ("MENLO_LIVEKIT_URL", "ws://lk:7880/"),
        ])
        .unwrap();
        assert_eq!(config.rcs_url, "http://127.0.0.1:9/rcs");
        assert_eq!(config.livekit_url.as_deref(), Some("ws://lk:7880"));
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let err = settings(&[("MENLO_API_KEY", "   ")]).unwrap_err();
        assert!(err.to_string().contains("MENLO_API_KEY"), "{err}");
    }

    #[test]
    fn a_credential_pasted_into_another_setting_is_not_echoed() {
        let key = "sk_live_0123456789abcdef";
        let err = settings(&[
            ("MENLO_API_KEY", key),
            ("MENLO_ROBOT_SDK_DEBUG", &format!("x{key}")),
        ])
        .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("MENLO_ROBOT_SDK_DEBUG") && shown.contains("not shown"),
            "{shown}"
        );
        assert!(!shown.contains(key), "{shown}");

        // Quoted with `{:?}`, the identity's quotes are escaped: that form must go too.
        let identity = r#"{"sub":"u","organization_id":"o","team_id":"t"}"#;
        let err = settings(&[
            ("MENLO_IDENTITY", identity),
            ("MENLO_ROBOT_SDK_TIMEOUT", identity),
        ])
        .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("MENLO_ROBOT_SDK_TIMEOUT") && shown.contains("not shown"),
            "{shown}"
        );
        assert!(!shown.contains("organization_id"), "{shown}");
    }

    #[test]
    fn a_bad_debug_value_is_quoted_as_typed() {
        let err = settings(&[("MENLO_API_KEY", "k"), ("MENLO_ROBOT_SDK_DEBUG", " Maybe ")]).unwrap_err();
        assert!(err.to_string().contains("\"Maybe\""), "{err}");
    }

    #[test]
    fn api_key_wins_over_identity() {
        let config = settings(&[
            ("MENLO_API_KEY", "k"),
            (
                "MENLO_IDENTITY",
                r#"{"sub":"u","organization_id":"o","team_id":"t"}"#,
            ),
        ])
        .unwrap();
        assert!(matches!(config.auth, Auth::ApiKey(_)));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            ("MENLO_ROBOT_SDK_TIMEOUT", "soon"),
            ("MENLO_ROBOT_SDK_TIMEOUT", "-1"),
            ("MENLO_ROBOT_SDK_TIMEOUT", "9E-16"),
            ("MENLO_ROBOT_SDK_TIMEOUT", "0.0009"),
            ("MENLO_ROBOT_SDK_MAX_RETRIES", "two"),
            ("MENLO_ROBOT_SDK_DEBUG", "maybe"),
            ("MENLO_RCS_URL", "ftp://x"),
            ("MENLO_ROBOT_VIEWER_URL", "sim.menlo.ai"),
            ("MENLO_LIVEKIT_URL", "http://lk"),
        ];
        for (name, value) in cases {
            let err = settings(&[("MENLO_API_KEY", "k"), (name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn non_ascii_urls_are_refused_not_panicked_on() {
        let err = settings(&[
            ("MENLO_API_KEY", "k"),
            ("MENLO_RCS_URL", "{\"sub\u{fffd}\u{fffd}x"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("MENLO_RCS_URL"), "{err}");
        let err = settings(&[("MENLO_API_KEY", "k"), ("MENLO_RCS_URL", "ht\u{e9}ps://x")]).unwrap_err();
        assert!(err.to_string().contains("MENLO_RCS_URL"), "{err}");
    }

    #[test]
    fn identity_is_validated_and_compacted() {
        let config = settings(&[(
            "MENLO_IDENTITY",
            "{ \"sub\": \"u\", \"organization_id\": \"o\", \"team_id\": \"t\", \"roles\": [] }",
        )])
        .unwrap();
        let Auth::Identity(identity) = config.auth else {
            panic!("identity mode expected")
        };
        assert_eq!(
            identity.expose(),
            r#"{"sub":"u","organization_id":"o","team_id":"t","roles":[]}"#
        );
        let err = settings(&[("MENLO_IDENTITY", r#"{"sub":"u"}"#)]).unwrap_err();
        assert!(err.to_string().contains("MENLO_IDENTITY"), "{err}");
        assert!(err.to_string().contains("organization_id"), "{err}");
    }

    #[test]
    fn identity_file_errors_name_the_variable() {
        let err = settings(&[("MENLO_IDENTITY_FILE", "/nonexistent/identity.json")]).unwrap_err();
        assert!(err.to_string().contains("MENLO_IDENTITY_FILE"), "{err}");
    }

    #[test]
    fn dev_identity_renders_compact_json_and_hides_it_in_debug() {
        let identity = DevIdentity::new("u1", "org1", "team1").role("admin");
        assert_eq!(
            identity.to_json(),
            r#"{"sub":"u1","organization_id":"org1","team_id":"team1","roles":["admin"],"scopes":[]}"#
        );
        assert!(!format!("{identity:?}").contains("u1"));
    }
}
