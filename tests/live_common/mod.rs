//! Test harness for the live layer: a LiveKit backend on loopback, the control-plane
//! emulator minting tokens for it, and runtime peers (Rust or the official Python client).
//!
//! The backend is a parameter ([`Backend`]): a real livekit-server child process (the default)
//! or the SDK's embedded SFU (`menlo_robot_sdk::dev::Sfu`). `MENLO_LIVE_BACKEND=embedded`
//! (or `livekit-server`) picks it for every suite; `LiveKit::start_on` picks it in code.
#![allow(dead_code)]

pub mod netns;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use menlo_robot_sdk::dev::{
    mint_livekit_token, ControlPlane, LiveKitSettings, Principal, Sfu, SfuOptions, TokenOptions,
};
use menlo_robot_sdk::{CaptureOptions, Client, ConnectOptions, NewRobot, RuntimeHost, Session, StateReply};

pub const KEY: &str = "devkey";
pub const SECRET: &str = "secret";

/// A loopback TCP port nobody listens on (bound and released).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port for a server to listen on, free for both TCP and UDP on loopback, picked below
/// Linux's ephemeral range (32768+): an ephemeral port released here could be handed to any
/// socket the parallel tests open before the server binds it (a LiveKit server that lost its
/// UDP port keeps running but cannot carry WebRTC). Never the same port twice per process.
fn server_port() -> u16 {
    static PICKED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut picked = PICKED.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = fastrand::u16(20_000..32_000);
        if picked.contains(&port) {
            continue;
        }
        let free =
            TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            picked.push(port);
            return port;
        }
    }
}

/// The livekit-server binary: `LIVEKIT_SERVER_BIN`, else `livekit-server` on PATH, else the
/// place `.ci/setup` installs it. A missing server fails the test: `bash .ci/test` installs it.
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LIVEKIT_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = PathBuf::from(&home).join(".local/share/menlo-robot-sdk/bin/livekit-server");
    if installed.exists() {
        return installed;
    }
    PathBuf::from("livekit-server")
}

/// Which LiveKit server the live suites run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A livekit-server child process (or the external server `LIVEKIT_URL` names).
    LiveKitServer,
    /// The SDK's embedded, in-process SFU (`menlo_robot_sdk::dev::Sfu`).
    Embedded,
}

impl Backend {
    /// `MENLO_LIVE_BACKEND`: `embedded`, or `livekit-server` (the default when unset).
    pub fn from_env() -> Backend {
        match std::env::var("MENLO_LIVE_BACKEND").as_deref() {
            Ok("embedded") => Backend::Embedded,
            Ok("livekit-server") | Ok("") | Err(_) => Backend::LiveKitServer,
            Ok(other) => panic!("MENLO_LIVE_BACKEND={other:?}: expected `embedded` or `livekit-server`"),
        }
    }
}

/// A LiveKit backend on loopback (see [`Backend`]), stopped on drop: a livekit-server child
/// process (`--dev`, keys devkey/secret), or the embedded SFU. `LIVEKIT_URL` (with
/// `LIVEKIT_API_KEY`/`LIVEKIT_API_SECRET`) points the livekit-server backend at an external
/// server instead.
pub struct LiveKit {
    child: Option<Child>,
    embedded: Option<Sfu>,
    pub url: String,
    pub key: String,
    pub secret: String,
    dir: Option<PathBuf>,
}

impl LiveKit {
    /// The backend `MENLO_LIVE_BACKEND` names (livekit-server by default).
    pub fn start() -> LiveKit {
        Self::start_on(Backend::from_env())
    }

    /// A server of the given backend.
    pub fn start_on(backend: Backend) -> LiveKit {
        Self::start_with(backend, None)
    }

    /// A server accepting only the key pair `key`/`secret` (instead of devkey/secret).
    pub fn start_with_keys(key: &str, secret: &str) -> LiveKit {
        Self::start_with(Backend::from_env(), Some((key, secret)))
    }

    /// A livekit-server whose ICE candidates carry this machine's primary IPv4 address
    /// (`node_ip`) instead of 127.0.0.1, or `None` without one. ICE over TCP needs it on
    /// loopback: the server's TCP mux files a connection under the local address it arrived
    /// on, and with `node_ip: 127.0.0.1` its ICE agents read the interface's address instead.
    pub fn start_for_ice_tcp() -> Option<LiveKit> {
        let ip = primary_ipv4()?;
        Some(Self::start_process(None, None, &ip.to_string()))
    }

    /// [`LiveKit::start_with_turn`] with the server's candidates (and the relayed addresses)
    /// on the machine's primary IPv4, or `None` without one: livekit-server's UDP mux does not
    /// listen on loopback, so a relay can reach it only there.
    pub fn start_with_turn_on_primary_ip(
        domain: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Option<(LiveKit, TurnPorts)> {
        let ip = primary_ipv4()?;
        Some(Self::start_with_turn_at(
            domain,
            cert_pem,
            key_pem,
            &ip.to_string(),
        ))
    }

    /// A livekit-server child process with its embedded TURN on (UDP and TLS listeners on
    /// free ports, relaying to loopback peers), the TLS certificate `cert_pem`/`key_pem` for
    /// `domain` (an IPv4 literal passes LiveKit's domain check, `localhost` does not).
    pub fn start_with_turn(domain: &str, cert_pem: &str, key_pem: &str) -> (LiveKit, TurnPorts) {
        Self::start_with_turn_at(domain, cert_pem, key_pem, "127.0.0.1")
    }

    fn start_with_turn_at(
        domain: &str,
        cert_pem: &str,
        key_pem: &str,
        node_ip: &str,
    ) -> (LiveKit, TurnPorts) {
        let ports = TurnPorts {
            udp: server_port(),
            tls: server_port(),
        };
        let turn = TurnYaml {
            domain,
            tls: Some((cert_pem, key_pem)),
            ports: &ports,
        };
        (Self::start_process(None, Some(turn), node_ip), ports)
    }

    /// A livekit-server child process whose embedded TURN serves plain TCP on the port it
    /// would serve TLS on (`external_tls`: TLS is left to a load balancer in front), and UDP.
    /// It still advertises `turns:127.0.0.1:443`; clients reach `turn:…?transport=tcp` on
    /// [`TurnPorts::tls`].
    pub fn start_with_turn_over_plain_tcp() -> (LiveKit, TurnPorts) {
        let ports = TurnPorts {
            udp: server_port(),
            tls: server_port(),
        };
        let turn = TurnYaml {
            domain: "127.0.0.1",
            tls: None,
            ports: &ports,
        };
        (Self::start_process(None, Some(turn), "127.0.0.1"), ports)
    }

    fn start_with(backend: Backend, keys: Option<(&str, &str)>) -> LiveKit {
        if backend == Backend::Embedded {
            return Self::start_embedded(keys);
        }
        if let Ok(url) = std::env::var("LIVEKIT_URL") {
            return LiveKit {
                child: None,
                embedded: None,
                url,
                key: std::env::var("LIVEKIT_API_KEY").unwrap_or_else(|_| KEY.into()),
                secret: std::env::var("LIVEKIT_API_SECRET").unwrap_or_else(|_| SECRET.into()),
                dir: None,
            };
        }
        Self::start_process(keys, None, "127.0.0.1")
    }

    fn start_process(keys: Option<(&str, &str)>, turn: Option<TurnYaml<'_>>, node_ip: &str) -> LiveKit {
        let port = server_port();
        let udp = server_port();
        // ICE over TCP on a port of its own (see `start_for_ice_tcp` for using it).
        let tcp = server_port();
        let dir = std::env::temp_dir().join(format!("menlo-lk-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("livekit.yaml");
        let mut yaml = format!(
            "rtc:\n  udp_port: {udp}\n  node_ip: {node_ip}\n  use_external_ip: false\n  tcp_port: {tcp}\n"
        );
        if let Some(turn) = turn {
            yaml.push_str(&turn.write(&dir));
        }
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let binary = server_binary();
        let mut command = Command::new(&binary);
        if let Some((key, secret)) = keys {
            command.arg("--keys").arg(format!("{key}: {secret}"));
        }
        let child = command
            .args([
                "--dev",
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--config",
            ])
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run `bash .ci/setup` to install it",
                    binary.display()
                )
            });
        let server = LiveKit {
            child: Some(child),
            embedded: None,
            url: format!("ws://127.0.0.1:{port}"),
            key: keys.map_or(KEY, |k| k.0).into(),
            secret: keys.map_or(SECRET, |k| k.1).into(),
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "livekit-server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn start_embedded(keys: Option<(&str, &str)>) -> LiveKit {
        let (key, secret) = keys.unwrap_or((KEY, SECRET));
        let sfu = Sfu::start(SfuOptions {
            api_key: key.into(),
            api_secret: secret.into(),
            ..SfuOptions::default()
        })
        .expect("start the embedded SFU");
        LiveKit {
            child: None,
            url: sfu.url(),
            embedded: Some(sfu),
            key: key.into(),
            secret: secret.into(),
            dir: None,
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        if self.embedded.is_some() {
            Backend::Embedded
        } else {
            Backend::LiveKitServer
        }
    }

    pub fn settings(&self) -> LiveKitSettings {
        LiveKitSettings {
            url: self.url.clone(),
            api_key: self.key.clone(),
            api_secret: self.secret.clone(),
        }
    }

    /// A token for `identity` in `room`, optionally as an agent with attributes.
    pub fn token(&self, room: &str, identity: &str, agent: bool, attributes: &[(&str, &str)]) -> String {
        let options = TokenOptions {
            kind: agent.then(|| "agent".to_owned()),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..TokenOptions::default()
        };
        mint_livekit_token(
            &self.settings(),
            room,
            identity,
            identity,
            Duration::from_secs(600),
            &options,
        )
    }

    /// The livekit-server child's log so far (empty for other backends).
    pub fn server_log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("server.log")).ok())
            .unwrap_or_default()
    }

    /// A token for the standard participant `identity` in `room` that may update its own
    /// metadata and attributes (`canUpdateOwnMetadata`).
    pub fn token_updating_own_metadata(&self, room: &str, identity: &str) -> String {
        menlo_robot_sdk::dev::mint_livekit_token_updating_own_metadata(
            &self.settings(),
            room,
            identity,
            identity,
            Duration::from_secs(600),
            &TokenOptions::default(),
        )
    }

    /// Kills the server now (for "server went away" tests).
    pub fn kill(&mut self) {
        if let Some(sfu) = self.embedded.take() {
            sfu.abort();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The IPv4 address of the route to the outside (nothing sent), unless only loopback exists.
fn primary_ipv4() -> Option<std::net::IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The ports of a livekit-server's embedded TURN ([`LiveKit::start_with_turn`]).
#[derive(Clone, Copy, Debug)]
pub struct TurnPorts {
    pub udp: u16,
    pub tls: u16,
}

struct TurnYaml<'a> {
    domain: &'a str,
    /// Certificate and key PEMs; `None` serves plain TCP on the TLS port (`external_tls`).
    tls: Option<(&'a str, &'a str)>,
    ports: &'a TurnPorts,
}

impl TurnYaml<'_> {
    /// The `turn:` section; the certificate and key go to files in `dir`. Relayed addresses
    /// come from 61000-65000: `--dev` would default to 30000-30002, three ports shared by every
    /// server running at once (allocations then fail with 508), inside [`server_port`]'s range.
    fn write(&self, dir: &std::path::Path) -> String {
        let tls = match self.tls {
            Some((cert_pem, key_pem)) => {
                let (cert, key) = (dir.join("turn-cert.pem"), dir.join("turn-key.pem"));
                std::fs::write(&cert, cert_pem).unwrap();
                std::fs::write(&key, key_pem).unwrap();
                format!("  cert_file: {}\n  key_file: {}\n", cert.display(), key.display())
            }
            None => "  external_tls: true\n".to_owned(),
        };
        format!(
            "turn:\n  enabled: true\n  domain: {}\n  udp_port: {}\n  tls_port: {}\n{tls}  relay_range_start: 61000\n  relay_range_end: 65000\n  allow_restricted_peer_cidrs: [\"127.0.0.0/8\"]\n",
            self.domain, self.ports.udp, self.ports.tls,
        )
    }
}

impl Drop for LiveKit {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl LiveKit {
    /// The signalling port (of `ws://127.0.0.1:PORT`).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|port| port.trim_end_matches('/').parse().ok())
            .expect("a ws://host:port URL")
    }
}

/// A one-worker tokio runtime for the fixtures a test runs beside the SDK (proxies, peers).
pub fn fixture_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Reads the typed robot status `reads` times, then asserts that a `pov` capture returns
/// `frame` byte for byte (`over` names the path in the message, e.g. "through the relay").
pub fn assert_reads_and_frame(session: &Session, reads: usize, frame: &[u8], over: &str) {
    for _ in 0..reads {
        match session.state().get("robot_status").unwrap() {
            StateReply::RobotStatus(state) => assert_eq!(state.robot.entity_id, "robot_1"),
            other => panic!("typed robot status expected, got {other:?}"),
        }
    }
    let jpeg = session.get_vision("pov", &CaptureOptions::new()).unwrap();
    assert!(jpeg == frame, "the 1280×720 frame arrives intact {over}");
}

/// A livekit-server with its embedded TURN over TLS (an `rcgen` certificate for `domain`),
/// its candidates on the machine's primary IPv4 (where its UDP mux listens, so a relay can
/// reach it), and the certificate's DER; `None` after saying why the test is skipped.
pub fn livekit_with_turn_for_relay(domain: &str) -> Option<(LiveKit, Vec<u8>, TurnPorts)> {
    let cert = rcgen::generate_simple_self_signed(vec![domain.to_string()]).unwrap();
    let started =
        LiveKit::start_with_turn_on_primary_ip(domain, &cert.cert.pem(), &cert.signing_key.serialize_pem());
    let Some((server, ports)) = started else {
        eprintln!("skipped: no non-loopback IPv4 address for livekit-server's candidates");
        return None;
    };
    Some((server, cert.cert.der().to_vec(), ports))
}

/// Options of a controller that reaches the server only through TURN over TLS: no UDP or
/// ICE-TCP host candidate, the TLS listener's real port for the advertised 443.
pub fn relay_only(ports: TurnPorts) -> ConnectOptions {
    ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .ice_udp_for_tests(false)
        .ice_tcp_for_tests(false)
        .turn_tls_port_for_tests(ports.tls)
}

/// A LiveKit server, an emulator minting tokens for it, a client, and a robot.
pub struct Platform {
    pub livekit: LiveKit,
    pub rcs: ControlPlane,
    pub client: Client,
    /// The API key `client` uses (for redaction checks).
    pub api_key: String,
    pub robot_id: String,
}

impl Platform {
    /// The robot's runtime (`simplesim:<robot>`), answering `state` and camera captures
    /// with a 1280×720 frame; returns it and the frame.
    pub fn runtime_serving_a_frame(&self) -> (Arc<RuntimeHost>, Vec<u8>) {
        let runtime = Arc::new(self.runtime(&format!("simplesim:{}", self.robot_id), false, &[]));
        let frame = frame_720p();
        serve_state_and_camera(&runtime, frame.clone());
        (runtime, frame)
    }

    pub fn start() -> Platform {
        Self::on(LiveKit::start())
    }

    /// A platform on the given LiveKit backend.
    pub fn start_on(backend: Backend) -> Platform {
        Self::on(LiveKit::start_on(backend))
    }

    /// A platform on a LiveKit server with its own key pair.
    pub fn start_with_livekit_keys(key: &str, secret: &str) -> Platform {
        Self::on(LiveKit::start_with_keys(key, secret))
    }

    /// A platform on a server started by the caller.
    pub fn on_livekit(livekit: LiveKit) -> Platform {
        Self::on(livekit)
    }

    fn on(livekit: LiveKit) -> Platform {
        let rcs = ControlPlane::builder()
            .livekit(livekit.url.clone(), livekit.key.clone(), livekit.secret.clone())
            .start()
            .unwrap();
        let key = rcs.create_api_key(&Principal::new("tester", "org_live", "team_live"));
        let client = Client::builder()
            .rcs_url(rcs.url())
            .api_key(key.clone())
            .build()
            .unwrap();
        let robot_id = client
            .robots()
            .create(&NewRobot::new("live", "asimov-v0"))
            .unwrap()
            .robot
            .id;
        Platform {
            livekit,
            rcs,
            client,
            api_key: key,
            robot_id,
        }
    }

    /// A Rust runtime peer in the robot's room.
    pub fn runtime(&self, identity: &str, agent: bool, attributes: &[(&str, &str)]) -> RuntimeHost {
        self.runtime_in(&self.robot_id, identity, agent, attributes)
    }

    /// A Rust runtime peer in another robot's room.
    pub fn runtime_in(
        &self,
        robot_id: &str,
        identity: &str,
        agent: bool,
        attributes: &[(&str, &str)],
    ) -> RuntimeHost {
        let token = self.livekit.token(robot_id, identity, agent, attributes);
        RuntimeHost::connect(&self.livekit.url, &token, Duration::from_secs(15)).unwrap()
    }

    /// Another robot on the platform; returns its id.
    pub fn create_robot(&self) -> String {
        self.client
            .robots()
            .create(&NewRobot::new("live", "asimov-v0"))
            .unwrap()
            .robot
            .id
    }
}

/// A Python program using the official LiveKit client (tests/peers/*.py); killed on drop.
/// Its stdout is JSON lines with an "event" field.
pub struct PyPeer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl PyPeer {
    pub fn spawn(script: &str, args: &[&str]) -> PyPeer {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
            .join(script);
        let mut child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the Python peer (run `bash .ci/setup` to install the livekit package)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PyPeer { child, lines: rx }
    }

    /// Waits for the JSON line whose "event" is `event`.
    pub fn wait_event(&self, event: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("python peer: no {event:?} event within {timeout:?}"));
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                if value["event"] == event {
                    return value;
                }
            }
        }
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Number of threads of this process (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of open file descriptors of this process (Linux).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Polls `check` every 10 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `runtime.state` reply for `robot_status`: a ready robot whose runtime takes tool calls
/// and captures.
pub fn robot_status() -> String {
    serde_json::json!({
        "timestamp": {"wall_time_ms": 1},
        "runtime": {"status": "ready", "accepts_tool_calls": true, "accepts_capture_requests": true},
        "robot": {"entity_id": "robot_1", "status": "ready"}
    })
    .to_string()
}

/// A JPEG-looking frame of `len` bytes: `FF D8 FF E0`, noise from `seed`, `FF D9`.
pub fn fake_jpeg(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x = seed;
    while bytes.len() < len - 2 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        bytes.push((x >> 33) as u8);
    }
    bytes.extend([0xFF, 0xD9]);
    bytes
}

/// A JPEG-looking frame of a 1280×720 capture's size (a quarter of its pixels in bytes).
pub fn frame_720p() -> Vec<u8> {
    fake_jpeg(1280 * 720 / 4, 720)
}

/// Answers `runtime.tools_list`, `runtime.state` and `runtime.cameras_capture` (the frame as a byte stream).
pub fn serve_state_and_camera(host: &std::sync::Arc<RuntimeHost>, frame: Vec<u8>) {
    host.handle("runtime.tools_list", |_| {
        Ok(
            serde_json::json!([{"name":"go_to","description":"go somewhere","input_schema":{"type":"object"}}])
                .to_string(),
        )
    });
    host.handle("runtime.state", |_| Ok(robot_status()));
    let weak = std::sync::Arc::downgrade(host);
    host.handle("runtime.cameras_capture", move |call| {
        let request: serde_json::Value = serde_json::from_str(&call.payload).map_err(|e| menlo_robot_sdk::RpcError::application(e.to_string()))?;
        let id = request["stream"]["id"].as_str().unwrap_or_default().to_owned();
        let topic = request["stream"]["topic"].as_str().unwrap_or_default().to_owned();
        let host = weak.upgrade().ok_or_else(|| menlo_robot_sdk::RpcError::application("gone"))?;
        let attributes: std::collections::HashMap<String, String> = [("request_id".to_owned(), id.clone())].into();
        let stream = attributes.into_iter().fold(
            menlo_robot_sdk::OutgoingStream::new(topic)
                .name("pov.jpg")
                .mime_type("image/jpeg")
                .destination(call.caller_identity.clone()),
            |stream, (key, value)| stream.attribute(key, value),
        );
        host.send_bytes(frame.clone(), stream)
            .map_err(|e| menlo_robot_sdk::RpcError::application(e.to_string()))?;
        let meta = serde_json::json!({"action_id": format!("cap-{id}"), "started_at_ms": 1, "finished_at_ms": 2, "duration_ms": 1});
        Ok(serde_json::json!({"status":"done","result":{"payload":{"kind":"byte_stream"}},"meta":meta}).to_string())
    });
}
