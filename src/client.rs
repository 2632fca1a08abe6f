//! [`Client`], the entry point to the control plane, and its [`ClientBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{DevIdentity, Settings, Sourced};
use crate::error::Result;
use crate::robots::Robots;
use crate::room_key::RoomKeys;
use crate::secret::Secret;
use crate::sessions::Sessions;
use crate::transport::{JitterFn, SleepFn, Transport};

/// A blocking client for the Menlo control plane (RCS).
///
/// Cheap to clone: clones share one connection pool. `Send + Sync`, so one client can serve
/// many threads. `Debug` never shows credentials.
///
/// ```no_run
/// let client = menlo_robot_sdk::Client::from_env()?; // MENLO_API_KEY, MENLO_RCS_URL, …
/// for robot in client.robots().iter(50) {
///     let robot = robot?;
///     println!("{} {}", robot.id, robot.name);
/// }
/// # Ok::<(), menlo_robot_sdk::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) transport: Arc<Transport>,
}

impl Client {
    /// Builds a client from the environment variables of the configuration table
    /// (`MENLO_API_KEY` or `MENLO_IDENTITY`/`MENLO_IDENTITY_FILE`, `MENLO_RCS_URL`, …).
    ///
    /// Missing credentials or a malformed value is an [`crate::Error::Config`] naming the
    /// variable, returned before any request.
    pub fn from_env() -> Result<Client> {
        ClientBuilder::from_env()?.build()
    }

    /// A builder starting from the defaults, ignoring the environment.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Robots, their sessions and participant tokens.
    pub fn robots(&self) -> Robots<'_> {
        Robots { client: self }
    }

    /// Room keys and viewer links for the browser viewer.
    pub fn room_keys(&self) -> RoomKeys<'_> {
        RoomKeys { client: self }
    }

    /// Session discovery.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { client: self }
    }

    /// The RCS base URL in use.
    pub fn rcs_url(&self) -> &str {
        &self.transport.config.rcs_url
    }

    /// The viewer base URL used for room-key links.
    pub fn viewer_url(&self) -> &str {
        &self.transport.config.viewer_url
    }

    /// The LiveKit URL override (`MENLO_LIVEKIT_URL` or the builder), if any.
    pub fn livekit_url_override(&self) -> Option<&str> {
        self.transport.config.livekit_url.as_deref()
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.transport.config.timeout
    }

    /// Retries allowed after the first attempt of a retryable request.
    pub fn max_retries(&self) -> u32 {
        self.transport.config.max_retries
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.transport.config;
        f.debug_struct("Client")
            .field("rcs_url", &config.rcs_url)
            .field("auth", &config.auth)
            .field("timeout", &config.timeout)
            .field("max_retries", &config.max_retries)
            .field("viewer_url", &config.viewer_url)
            .finish_non_exhaustive()
    }
}

/// Explicit client settings. Anything not set takes its default (or, after
/// [`ClientBuilder::from_env`], the environment's value).
#[must_use]
#[derive(Clone, Default)]
pub struct ClientBuilder {
    settings: Settings,
    sleep: Option<SleepFn>,
    jitter: Option<JitterFn>,
}

impl ClientBuilder {
    /// A builder pre-filled from the environment; later calls override single settings.
    pub fn from_env() -> Result<ClientBuilder> {
        Ok(ClientBuilder {
            settings: Settings::from_lookup(|name| std::env::var(name).ok())?,
            ..ClientBuilder::default()
        })
    }

    /// The RCS base URL (default `https://api.menlo.ai/rcs`).
    pub fn rcs_url(mut self, url: impl Into<String>) -> Self {
        self.settings.rcs_url = Some(Sourced::new(url.into(), "rcs_url"));
        self
    }

    /// An `sk_live_…` API key. Takes precedence over an identity.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.settings.api_key = Some(Sourced::new(Secret::new(key.into()), "api_key"));
        self
    }

    /// Direct-identity mode (a dev RCS without the auth edge).
    pub fn identity(mut self, identity: &DevIdentity) -> Self {
        self.settings.identity = Some(Sourced::new(Secret::new(identity.to_json()), "identity"));
        self
    }

    /// Direct-identity mode with the compact identity JSON as is.
    pub fn identity_json(mut self, json: impl Into<String>) -> Self {
        self.settings.identity = Some(Sourced::new(Secret::new(json.into()), "identity_json"));
        self
    }

    /// Per-request timeout (default 30 s; 1 ms to 24 h, checked by `build`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = Some(Sourced::new(timeout.as_secs_f64().to_string(), "timeout"));
        self
    }

    /// Retries after the first attempt of a retryable request (default 2).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.settings.max_retries = Some(Sourced::new(retries.to_string(), "max_retries"));
        self
    }

    /// Viewer base URL for room-key links (default `https://sim.menlo.ai`).
    pub fn viewer_url(mut self, url: impl Into<String>) -> Self {
        self.settings.viewer_url = Some(Sourced::new(url.into(), "viewer_url"));
        self
    }

    /// Override of the LiveKit URL embedded in viewer links and keys (`ws://` or `wss://`).
    pub fn livekit_url(mut self, url: impl Into<String>) -> Self {
        self.settings.livekit_url = Some(Sourced::new(url.into(), "livekit_url"));
        self
    }

    /// Log method, URL and status of each request through the `log` facade (target
    /// `menlo_robot_sdk`, level debug). Headers and bodies are never logged.
    pub fn debug(mut self, enabled: bool) -> Self {
        self.settings.debug = Some(Sourced::new(enabled.to_string(), "debug"));
        self
    }

    /// Replaces the sleep between retries (default `std::thread::sleep`).
    pub fn sleep_fn(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.sleep = Some(Arc::new(sleep));
        self
    }

    /// Replaces the jitter source, a uniform sample in `[0, 1)` (default `fastrand::f64`).
    pub fn jitter_fn(mut self, jitter: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.jitter = Some(Arc::new(jitter));
        self
    }

    /// Validates the settings and builds the client. Sends nothing.
    pub fn build(self) -> Result<Client> {
        let config = self.settings.resolve()?;
        Ok(Client {
            transport: Arc::new(Transport::new(config, self.sleep, self.jitter)),
        })
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone>() {}
        assert_traits::<Client>();
    }

    #[test]
    fn debug_redacts_the_key() {
        let client = Client::builder().api_key("sk_live_topsecret").build().unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("topsecret"), "{text}");
        assert!(text.contains("ApiKey(<redacted>)"), "{text}");
    }

    #[test]
    fn builder_errors_name_the_setting() {
        let err = Client::builder()
            .api_key("k")
            .rcs_url("nope")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("rcs_url"), "{err}");
        let err = Client::builder().build().unwrap_err();
        assert!(err.to_string().contains("MENLO_API_KEY"), "{err}");
    }
}
