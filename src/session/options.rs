//! Options of [`connect`](crate::connect) and the lifecycle callbacks.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use super::events::{ReconnectKind, SessionEvent};
use super::timeouts;
use crate::live::Participant;
use crate::models::SessionOptions;
use crate::runtime::RuntimeEvent;

/// How long [`Session::wait_until_ready`](crate::Session::wait_until_ready) and runtime resolution wait by default.
pub const DEFAULT_SESSION_READY_TIMEOUT: Duration = timeouts::SESSION_READY;

type Callback<T> = Option<Arc<dyn Fn(&T) + Send + Sync>>;
type TextCallback = Option<Arc<dyn Fn(&str) + Send + Sync>>;
type SignalCallback = Option<Arc<dyn Fn() + Send + Sync>>;
type ReconnectedCallback = Option<Arc<dyn Fn(ReconnectKind) + Send + Sync>>;

/// Callbacks for session lifecycle events, for parity with the Python SDK's
/// `ConnectCallbacks`. The [`Session::events`](crate::Session::events) queue delivers the same events.
///
/// **Where they run:** on one SDK thread shared by every session of the process
/// (`menlo-callbacks`, started by the first session that has callbacks), never on the caller's
/// thread or on the engine. A session's callbacks run one at a time, in event order. A slow
/// callback delays the callbacks after it (of every session), never a call, an event queue
/// or the engine; a callback that panics is contained and logged.
#[derive(Clone, Default)]
#[must_use]
pub struct ConnectCallbacks {
    on_connected: TextCallback,
    on_session_ready: SignalCallback,
    on_participant_joined: Callback<Participant>,
    on_participant_left: Callback<Participant>,
    on_action_result: Callback<RuntimeEvent>,
    on_reconnecting: TextCallback,
    on_reconnected: ReconnectedCallback,
    on_disconnected: TextCallback,
}

impl ConnectCallbacks {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called with the room name once the SDK has joined.
    pub fn on_connected(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_connected = Some(Arc::new(f));
        self
    }

    /// Called when every required slot is filled.
    pub fn on_session_ready(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_session_ready = Some(Arc::new(f));
        self
    }

    /// Called when a participant joins.
    pub fn on_participant_joined(mut self, f: impl Fn(&Participant) + Send + Sync + 'static) -> Self {
        self.on_participant_joined = Some(Arc::new(f));
        self
    }

    /// Called when a participant leaves.
    pub fn on_participant_left(mut self, f: impl Fn(&Participant) + Send + Sync + 'static) -> Self {
        self.on_participant_left = Some(Arc::new(f));
        self
    }

    /// Called with the terminal event of each action.
    pub fn on_action_result(mut self, f: impl Fn(&RuntimeEvent) + Send + Sync + 'static) -> Self {
        self.on_action_result = Some(Arc::new(f));
        self
    }

    /// Called with the reason when the link to the room is lost and the SDK starts bringing
    /// it back ([`SessionEvent::Reconnecting`]).
    pub fn on_reconnecting(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_reconnecting = Some(Arc::new(f));
        self
    }

    /// Called when the link is back, with how it came back ([`SessionEvent::Reconnected`]).
    pub fn on_reconnected(mut self, f: impl Fn(ReconnectKind) + Send + Sync + 'static) -> Self {
        self.on_reconnected = Some(Arc::new(f));
        self
    }

    /// Called with the reason once the room connection ends.
    pub fn on_disconnected(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_disconnected = Some(Arc::new(f));
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.on_connected.is_none()
            && self.on_session_ready.is_none()
            && self.on_participant_joined.is_none()
            && self.on_participant_left.is_none()
            && self.on_action_result.is_none()
            && self.on_reconnecting.is_none()
            && self.on_reconnected.is_none()
            && self.on_disconnected.is_none()
    }

    /// Runs the callback of `event`, if any, containing a panic.
    pub(crate) fn run(&self, event: &SessionEvent) {
        fn contained(callback: impl FnOnce()) {
            if catch_unwind(AssertUnwindSafe(callback)).is_err() {
                log::warn!(target: "menlo_robot_sdk", "a session callback panicked");
            }
        }
        match event {
            SessionEvent::Connected { room_name } => {
                if let Some(f) = &self.on_connected {
                    contained(|| f(room_name));
                }
            }
            SessionEvent::SessionReady => {
                if let Some(f) = &self.on_session_ready {
                    contained(|| f());
                }
            }
            SessionEvent::ParticipantJoined(p) => {
                if let Some(f) = &self.on_participant_joined {
                    contained(|| f(p));
                }
            }
            SessionEvent::ParticipantLeft(p) => {
                if let Some(f) = &self.on_participant_left {
                    contained(|| f(p));
                }
            }
            SessionEvent::ActionResult(e) => {
                if let Some(f) = &self.on_action_result {
                    contained(|| f(e));
                }
            }
            SessionEvent::Reconnecting { reason } => {
                if let Some(f) = &self.on_reconnecting {
                    contained(|| f(reason));
                }
            }
            SessionEvent::Reconnected { kind } => {
                if let Some(f) = &self.on_reconnected {
                    contained(|| f(*kind));
                }
            }
            SessionEvent::Disconnected { reason } => {
                if let Some(f) = &self.on_disconnected {
                    contained(|| f(reason));
                }
            }
        }
    }
}

impl fmt::Debug for ConnectCallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectCallbacks").finish_non_exhaustive()
    }
}

/// Options of [`connect`](crate::connect).
#[derive(Clone, Debug)]
#[must_use]
pub struct ConnectOptions {
    pub(crate) session: SessionOptions,
    pub(crate) environment_id: Option<String>,
    pub(crate) runtime_identity_prefix: Option<String>,
    pub(crate) livekit_url: Option<String>,
    pub(crate) session_ready_timeout: Duration,
    pub(crate) wait_for_ready: bool,
    pub(crate) runtime_call_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_timeout: Duration,
    pub(crate) root_certificates: Vec<Vec<u8>>,
    pub(crate) callbacks: ConnectCallbacks,
    pub(crate) ice_udp: bool,
    pub(crate) ice_tcp: bool,
    pub(crate) turn_tls_port: Option<u16>,
    pub(crate) proxy: ProxyChoice,
}

/// Where the live connections' HTTP proxy comes from. Its `Debug` never shows a URL (which
/// may carry credentials).
#[derive(Clone, Default)]
pub(crate) enum ProxyChoice {
    /// ALL_PROXY / HTTPS_PROXY / HTTP_PROXY and NO_PROXY, read as the control plane reads them.
    #[default]
    Environment,
    /// No proxy.
    Direct,
    /// This URL.
    Url(String),
}

impl fmt::Debug for ProxyChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyChoice::Environment => "Environment",
            ProxyChoice::Direct => "Direct",
            ProxyChoice::Url(_) => "Url(<redacted>)",
        })
    }
}

impl ProxyChoice {
    /// The proxy to use; `environment` supplies the environment's setting (ureq's
    /// `Proxy::try_from_env` in production). Errors name the option, never the URL.
    pub(crate) fn resolve(
        &self,
        environment: impl FnOnce() -> Option<ureq::Proxy>,
    ) -> crate::Result<Option<crate::live::proxy::LiveProxy>> {
        use crate::live::proxy::LiveProxy;
        match self {
            ProxyChoice::Direct => Ok(None),
            ProxyChoice::Url(url) => LiveProxy::parse(url)
                .map(Some)
                .map_err(|reason| crate::Error::invalid("proxy", reason)),
            ProxyChoice::Environment => match environment() {
                None => Ok(None),
                Some(proxy) => LiveProxy::new(proxy).map(Some).map_err(|reason| {
                    crate::Error::invalid(
                        "proxy",
                        format!(
                            "{reason} (from ALL_PROXY / HTTPS_PROXY / HTTP_PROXY; \
                             `ConnectOptions::no_proxy()` connects directly)"
                        ),
                    )
                }),
            },
        }
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            session: SessionOptions::new(),
            environment_id: None,
            runtime_identity_prefix: None,
            livekit_url: None,
            session_ready_timeout: timeouts::SESSION_READY,
            wait_for_ready: false,
            runtime_call_timeout: None,
            connect_timeout: timeouts::CONNECT,
            reconnect_timeout: timeouts::RECONNECT,
            root_certificates: Vec::new(),
            callbacks: ConnectCallbacks::new(),
            ice_udp: true,
            ice_tcp: true,
            turn_tls_port: None,
            proxy: ProxyChoice::Environment,
        }
    }
}

impl ConnectOptions {
    /// Platform defaults: default dispatch, no readiness wait.
    pub fn new() -> Self {
        Self::default()
    }

    /// Dispatch one agent per name; an empty list dispatches nothing (SimpleSim: the viewer
    /// tab is the runtime).
    pub fn worker_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.session = self.session.worker_names(names);
        self
    }

    /// The scene to load.
    pub fn scene_id(mut self, scene_id: impl Into<String>) -> Self {
        self.session = self.session.scene_id(scene_id);
        self
    }

    /// Environments are not available yet: [`connect`](crate::connect) fails with [`Error::NotAvailable`](crate::Error::NotAvailable).
    pub fn environment_id(mut self, environment_id: impl Into<String>) -> Self {
        self.environment_id = Some(environment_id.into());
        self
    }

    /// How to recognise the runtime in the room, e.g. `simplesim` for the SimpleSim tab
    /// (`simplesim:<robot_id>`). Matches the identity itself, or `prefix-…` / `prefix:…`.
    pub fn runtime_identity_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.runtime_identity_prefix = Some(prefix.into());
        self
    }

    /// Join this LiveKit server instead of the one the platform returned (`ws://`/`wss://`).
    pub fn livekit_url(mut self, url: impl Into<String>) -> Self {
        self.livekit_url = Some(url.into());
        self
    }

    /// Bound of readiness waits and runtime resolution (default 120 s).
    pub fn session_ready_timeout(mut self, timeout: Duration) -> Self {
        self.session_ready_timeout = timeout;
        self
    }

    /// Make [`connect`](crate::connect) wait until every required slot is filled.
    pub fn wait_for_ready(mut self, wait: bool) -> Self {
        self.wait_for_ready = wait;
        self
    }

    /// Default reply timeout of every runtime call (defaults: 90 s for tool calls, 30 s for
    /// reads and cancel).
    pub fn runtime_call_timeout(mut self, timeout: Duration) -> Self {
        self.runtime_call_timeout = Some(timeout);
        self
    }

    /// Bound of joining the room: signaling, ICE, DTLS, data channel (default 15 s).
    ///
    /// Network paths: UDP to the server's UDP candidates, and at the same time ICE over TCP
    /// to its TCP candidates (livekit-server's `rtc.tcp_port`, 7881 by default), for networks
    /// that drop UDP. UDP is preferred whenever it works; nothing needs configuring. When no
    /// path works within this bound, the error names each path tried and why it failed
    /// (e.g. `UDP 10.0.0.2:7882: no answer (timed out); TCP 10.0.0.2:7881: connection refused`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a lost link to the room may take to come back (a resume, else a full
    /// reconnect) before the session is [disconnected](SessionEvent::Disconnected); default
    /// 60 s. It counts time, not attempts: attempts that fail at once while the network
    /// interface is down do not use it up. Calls made meanwhile still fail at their own
    /// timeouts. Zero is refused by [`connect`](crate::connect) ([`Error::InvalidInput`](crate::Error::InvalidInput)).
    pub fn reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Connects the signal websocket and TURN over TCP/TLS through this HTTP proxy
    /// (`http://[user:pass@]host[:port]`; the credentials go in `Proxy-Authorization: Basic`
    /// and never into logs or errors). The tunnel is an HTTP `CONNECT`; TLS runs inside it.
    ///
    /// By default the proxy comes from the environment, as for the control plane:
    /// `ALL_PROXY`, `HTTPS_PROXY` or `HTTP_PROXY`, with `NO_PROXY` naming hosts reached
    /// directly (loopback hosts are not exempt unless listed). UDP and ICE over TCP never go
    /// through a proxy, so behind one a session connects through the TURN server over TLS
    /// (LiveKit Cloud serves it on 443). Only `http://` proxies are supported; another scheme or
    /// a malformed URL makes [`connect`](crate::connect) fail with
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) (field `proxy`).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxyChoice::Url(url.into());
        self
    }

    /// Connects directly, ignoring any proxy in the environment.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyChoice::Direct;
        self
    }

    /// The HTTP proxy of the live connections, if any (see [`proxy`](Self::proxy)).
    pub(crate) fn live_proxy(&self) -> crate::Result<Option<crate::live::proxy::LiveProxy>> {
        self.proxy.resolve(ureq::Proxy::try_from_env)
    }

    /// Refuses settings that cannot work, before anything is created.
    pub(crate) fn check(&self) -> crate::Result<()> {
        self.live_proxy()?;
        if self.reconnect_timeout.is_zero() {
            return Err(crate::Error::invalid(
                "reconnect_timeout",
                "must be greater than zero (a lost link would disconnect the session at once)",
            ));
        }
        Ok(())
    }

    /// Trusts this CA certificate (DER) for a `wss://` LiveKit server, besides the built-in
    /// web roots: for self-hosted servers behind a private CA.
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(der.into());
        self
    }

    /// Lifecycle callbacks.
    pub fn callbacks(mut self, callbacks: ConnectCallbacks) -> Self {
        self.callbacks = callbacks;
        self
    }

    /// Test knob: `false` offers no UDP candidate, so the room must connect over ICE-TCP
    /// (as on a network that drops UDP). Not for production use.
    #[doc(hidden)]
    pub fn ice_udp_for_tests(mut self, enabled: bool) -> Self {
        self.ice_udp = enabled;
        self
    }

    /// Test knob: `false` offers no ICE-TCP candidate (with UDP off too, only a TURN relay
    /// can connect the room). Not for production use.
    #[doc(hidden)]
    pub fn ice_tcp_for_tests(mut self, enabled: bool) -> Self {
        self.ice_tcp = enabled;
        self
    }

    /// Test hook: TURN over TLS only, on this port instead of the advertised one
    /// (livekit-server advertises `turns:<domain>:443`, the port of the load balancer that
    /// usually fronts it). Not for production use.
    #[doc(hidden)]
    pub fn turn_tls_port_for_tests(mut self, port: u16) -> Self {
        self.turn_tls_port = Some(port);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn callbacks_take_what_they_mean_and_contain_panics() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let (a, b, c) = (Arc::clone(&seen), Arc::clone(&seen), Arc::clone(&seen));
        let callbacks = ConnectCallbacks::new()
            .on_connected(move |room| a.lock().unwrap().push(format!("connected {room}")))
            .on_session_ready(move || b.lock().unwrap().push("ready".into()))
            .on_disconnected(move |reason| c.lock().unwrap().push(format!("gone {reason}")))
            .on_participant_joined(|_| panic!("a deliberately panicking callback (expected)"));
        assert!(!callbacks.is_empty());
        callbacks.run(&SessionEvent::Connected {
            room_name: "r1".into(),
        });
        callbacks.run(&SessionEvent::SessionReady);
        callbacks.run(&SessionEvent::ParticipantJoined(Participant::new(
            "x",
            crate::ParticipantKind::Standard,
        )));
        callbacks.run(&SessionEvent::Disconnected { reason: "bye".into() });
        assert_eq!(*seen.lock().unwrap(), ["connected r1", "ready", "gone bye"]);
        let (d, e) = (Arc::clone(&seen), Arc::clone(&seen));
        let reconnects = ConnectCallbacks::new()
            .on_reconnecting(move |reason| d.lock().unwrap().push(format!("reconnecting {reason}")))
            .on_reconnected(move |kind| e.lock().unwrap().push(format!("back {kind:?}")));
        assert!(!reconnects.is_empty());
        reconnects.run(&SessionEvent::Reconnecting {
            reason: "signal lost".into(),
        });
        reconnects.run(&SessionEvent::Reconnected {
            kind: ReconnectKind::Rejoined,
        });
        assert_eq!(
            seen.lock().unwrap()[3..],
            ["reconnecting signal lost", "back Rejoined"]
        );
        assert!(ConnectCallbacks::new().is_empty());
    }

    #[test]
    fn proxy_settings_validate_without_echoing_credentials() {
        let from_env = || ureq::Proxy::new("http://alice:s3cret@10.0.0.1:3128").ok();
        let env = ProxyChoice::Environment.resolve(from_env).unwrap().unwrap();
        assert_eq!(env.address(), "10.0.0.1:3128");
        assert!(ProxyChoice::Environment.resolve(|| None).unwrap().is_none());
        assert!(ProxyChoice::Direct.resolve(from_env).unwrap().is_none());
        let socks_env = || ureq::Proxy::new("socks5://alice:s3cret@10.0.0.1:1080").ok();
        for err in [
            ProxyChoice::Environment.resolve(socks_env).unwrap_err(),
            ProxyChoice::Url("socks5://alice:s3cret@10.0.0.1:1080".into())
                .resolve(|| None)
                .unwrap_err(),
            ProxyChoice::Url("http://alice:s3cret@".into())
                .resolve(|| None)
                .unwrap_err(),
        ] {
            assert!(
                matches!(&err, crate::Error::InvalidInput { field, .. } if field == "proxy"),
                "{err}"
            );
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cret") && !text.contains("alice"), "{text}");
        }
        let options = ConnectOptions::new().proxy("http://alice:s3cret@10.0.0.1:3128");
        let debug = format!("{options:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("alice"), "{debug}");
        let proxy = options.live_proxy().unwrap().unwrap();
        assert_eq!(proxy.address(), "10.0.0.1:3128");
        assert!(ConnectOptions::new().no_proxy().live_proxy().unwrap().is_none());
        let bad = ConnectOptions::new()
            .proxy("socks5://alice:s3cret@h:1")
            .check()
            .unwrap_err();
        assert!(!bad.to_string().contains("s3cret"), "{bad}");
    }

    #[test]
    fn defaults_come_from_the_timeouts_module() {
        let options = ConnectOptions::new();
        assert_eq!(options.connect_timeout, timeouts::CONNECT);
        assert_eq!(options.session_ready_timeout, DEFAULT_SESSION_READY_TIMEOUT);
        assert!(!options.wait_for_ready);
        assert_eq!(options.runtime_call_timeout, None);
        assert_eq!(options.reconnect_timeout, timeouts::RECONNECT);
        assert_eq!(options.reconnect_timeout, Duration::from_secs(60));
        assert!(options.check().is_ok());
        let zero = options
            .clone()
            .reconnect_timeout(Duration::ZERO)
            .check()
            .unwrap_err();
        assert!(
            matches!(&zero, crate::Error::InvalidInput { field, .. } if field == "reconnect_timeout"),
            "{zero}"
        );
        let options = options
            .connect_timeout(Duration::from_secs(3))
            .runtime_call_timeout(Duration::from_secs(4))
            .wait_for_ready(true);
        assert_eq!(options.connect_timeout, Duration::from_secs(3));
        assert_eq!(options.runtime_call_timeout, Some(Duration::from_secs(4)));
        assert!(options.wait_for_ready);
    }
}
