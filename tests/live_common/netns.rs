//! A three-namespace network for link-cut measurements (issue 9): a client namespace and a
//! server namespace joined through a router namespace by two veth pairs.
//!
//! ```text
//!  client ns            router ns                       server ns
//!  vC 10.201.N.2 <-> vRc 10.201.N.1 | vRs 10.202.N.1 <-> vS 10.202.N.2   (livekit-server)
//! ```
//!
//! Cuts happen in the router ([`Mode::Blackhole`]: forwarded packets vanish silently, both
//! ends see no error) or in the client ([`Mode::InterfaceDown`]: the client's interface goes
//! down and its routes with it). `N` is an index claimed atomically through the name of the
//! client namespace, so parallel instances get distinct names and subnets. Dropping the
//! [`Topology`] kills every process left in its namespaces and deletes them, also when a
//! test panics. Needs root (`ip netns`); [`Topology::create`] says so when it cannot run.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// Prefix of every namespace this module creates (`mlc<N>c`, `mlc<N>r`, `mlc<N>s`).
const PREFIX: &str = "mlc";
/// The livekit-server ports inside the server namespace (its own network stack, so fixed
/// ports cannot clash): signalling, ICE over TCP (the server's default), ICE over UDP.
pub const SIGNAL_PORT: u16 = 7880;
pub const ICE_TCP_PORT: u16 = 7881;
pub const ICE_UDP_PORT: u16 = 7882;
/// livekit-server's embedded TURN (with [`Topology::start_livekit_with_turn`]): TLS on 443,
/// the port LiveKit advertises for `turns:` whatever it listens on, and UDP on 3478.
pub const TURN_TLS_PORT: u16 = 443;
pub const TURN_UDP_PORT: u16 = 3478;
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which namespace of the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Router,
    Server,
}

impl Side {
    fn letter(self) -> char {
        match self {
            Side::Client => 'c',
            Side::Router => 'r',
            Side::Server => 's',
        }
    }
}

/// How the path between client and server is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The router drops every forwarded packet in both directions, silently (`ip rule …
    /// blackhole`); both hosts keep their interfaces and routes.
    Blackhole,
    /// The client's interface goes down (its routes vanish; sends fail at once), then comes
    /// back up and its default route is re-added.
    InterfaceDown,
}

impl Mode {
    /// A short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Blackhole => "blackhole",
            Mode::InterfaceDown => "interface down",
        }
    }
}

/// When a cut began and when the path was back (both ends of every command).
#[derive(Clone, Copy, Debug)]
pub struct CutWindow {
    /// Wall clock at the moment the path was cut (child processes report wall-clock times).
    pub cut_at: SystemTime,
    /// Wall clock once the path was fully restored.
    pub restored_at: SystemTime,
    /// Monotonic twin of `restored_at`.
    pub restored: Instant,
}

/// The three namespaces, their veth pairs and addresses; deleted on drop.
pub struct Topology {
    index: u8,
    created: Vec<String>,
    owner_file: PathBuf,
}

/// Unix seconds of `t` (fractional), the time base shared with child processes.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}); the netns harness needs iproute2"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn owner_dir() -> PathBuf {
    std::env::temp_dir().join("menlo-netns")
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Pids of the processes inside namespace `name`.
fn pids_in(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what runs in `name` (only processes this harness started live there), then deletes it.
fn remove_namespace(name: &str) {
    for pid in pids_in(name) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !pids_in(name).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = ip(&["netns", "del", name]);
}

fn namespace_names(index: u8) -> [String; 3] {
    [Side::Server, Side::Router, Side::Client].map(|s| format!("{PREFIX}{index}{}", s.letter()))
}

/// Deletes the namespaces of instances whose owning process died without cleaning up (a
/// killed benchmark). An instance whose owner file is not written yet is left alone.
fn remove_stale_instances() {
    let Ok(entries) = std::fs::read_dir(owner_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let index = path.file_stem().and_then(|s| s.to_str()?.parse::<u8>().ok());
        let owner = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let (Some(index), Some(owner)) = (index, owner) {
            if !pid_alive(owner) {
                for name in namespace_names(index) {
                    remove_namespace(&name);
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

impl Topology {
    /// Creates the namespaces, links and routes. Errors explain why it cannot (not root,
    /// `ip netns` unavailable); callers usually print them and skip.
    pub fn create() -> Result<Topology, String> {
        match effective_uid() {
            Some(0) => {}
            Some(uid) => {
                return Err(format!(
                    "the netns harness needs root (`ip netns add`); running as uid {uid}"
                ))
            }
            None => return Err("cannot read this process's uid from /proc/self/status".into()),
        }
        remove_stale_instances();
        let mut topology = Self::claim_index()?;
        topology.build()?;
        Ok(topology)
    }

    /// Claims a free index by creating its client namespace (`ip netns add` fails if the name
    /// exists, so two instances never share one) and records this process as its owner.
    fn claim_index() -> Result<Topology, String> {
        let start = (std::process::id() as usize + fastrand::usize(..256)) % 256;
        let mut last_error = String::new();
        for offset in 0..256 {
            let index = ((start + offset) % 256) as u8;
            let client = format!("{PREFIX}{index}c");
            match ip(&["netns", "add", &client]) {
                Ok(()) => {
                    std::fs::create_dir_all(owner_dir()).map_err(|e| e.to_string())?;
                    let owner_file = owner_dir().join(format!("{index}.pid"));
                    std::fs::write(&owner_file, std::process::id().to_string()).map_err(|e| e.to_string())?;
                    return Ok(Topology {
                        index,
                        created: vec![client],
                        owner_file,
                    });
                }
                Err(e) if e.contains("File exists") => last_error = e,
                Err(e) => return Err(format!("`ip netns` is not usable here: {e}")),
            }
        }
        Err(format!("no free namespace index: {last_error}"))
    }

    fn build(&mut self) -> Result<(), String> {
        for side in [Side::Router, Side::Server] {
            let name = self.name(side);
            ip(&["netns", "add", &name])?;
            self.created.push(name);
        }
        for side in [Side::Client, Side::Router, Side::Server] {
            ip(&["-n", &self.name(side), "link", "set", "lo", "up"])?;
        }
        let (c, r, s) = (
            self.name(Side::Client),
            self.name(Side::Router),
            self.name(Side::Server),
        );
        // Each veth end is created directly in its namespace, so the names only need to be
        // unique per namespace.
        ip(&[
            "link", "add", "vC", "netns", &c, "type", "veth", "peer", "name", "vRc", "netns", &r,
        ])?;
        ip(&[
            "link", "add", "vS", "netns", &s, "type", "veth", "peer", "name", "vRs", "netns", &r,
        ])?;
        let addr = |a: Ipv4Addr| format!("{a}/24");
        ip(&["-n", &c, "addr", "add", &addr(self.client_addr()), "dev", "vC"])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &addr(self.router_client_addr()),
            "dev",
            "vRc",
        ])?;
        ip(&["-n", &s, "addr", "add", &addr(self.server_addr()), "dev", "vS"])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &addr(self.router_server_addr()),
            "dev",
            "vRs",
        ])?;
        for (ns, dev) in [(&c, "vC"), (&r, "vRc"), (&s, "vS"), (&r, "vRs")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        self.add_client_route()?;
        ip(&[
            "-n",
            &s,
            "route",
            "add",
            "default",
            "via",
            &self.router_server_addr().to_string(),
        ])?;
        let status = Command::new("ip")
            .args(["netns", "exec", &r, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("cannot enable forwarding in the router namespace".into());
        }
        Ok(())
    }

    fn add_client_route(&self) -> Result<(), String> {
        let via = self.router_client_addr().to_string();
        ip(&[
            "-n",
            &self.name(Side::Client),
            "route",
            "replace",
            "default",
            "via",
            &via,
        ])
    }

    /// The namespace name of `side` (for `ip netns exec`).
    pub fn name(&self, side: Side) -> String {
        format!("{PREFIX}{}{}", self.index, side.letter())
    }

    /// The client's address (10.201.N.2).
    pub fn client_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.index, 2)
    }

    fn router_client_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.index, 1)
    }

    /// The server's address (10.202.N.2): livekit-server's `node_ip`.
    pub fn server_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 202, self.index, 2)
    }

    fn router_server_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 202, self.index, 1)
    }

    /// `program` to be run inside `side`'s namespace (`ip netns exec NAME program`). The
    /// environment is inherited.
    pub fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name(side)]).arg(program);
        command
    }

    /// Cuts the path, waits `duration`, restores it.
    pub fn cut(&self, duration: Duration, mode: Mode) -> Result<CutWindow, String> {
        let cut_at = self.break_link(mode)?;
        std::thread::sleep(duration);
        self.restore_link(mode)?;
        Ok(CutWindow {
            cut_at,
            restored_at: SystemTime::now(),
            restored: Instant::now(),
        })
    }

    /// Cuts the path now; returns the wall-clock time of the cut.
    pub fn break_link(&self, mode: Mode) -> Result<SystemTime, String> {
        match mode {
            Mode::Blackhole => {
                let r = self.name(Side::Router);
                ip(&["-n", &r, "rule", "add", "iif", "vRc", "blackhole", "pref", "90"])?;
                let cut_at = SystemTime::now();
                ip(&["-n", &r, "rule", "add", "iif", "vRs", "blackhole", "pref", "91"])?;
                Ok(cut_at)
            }
            Mode::InterfaceDown => {
                let cut_at = SystemTime::now();
                ip(&["-n", &self.name(Side::Client), "link", "set", "vC", "down"])?;
                Ok(cut_at)
            }
        }
    }

    /// Restores the path cut by [`Topology::break_link`] with the same `mode`.
    pub fn restore_link(&self, mode: Mode) -> Result<(), String> {
        match mode {
            Mode::Blackhole => {
                let r = self.name(Side::Router);
                ip(&["-n", &r, "rule", "del", "pref", "90"])?;
                ip(&["-n", &r, "rule", "del", "pref", "91"])
            }
            Mode::InterfaceDown => {
                ip(&["-n", &self.name(Side::Client), "link", "set", "vC", "up"])?;
                self.add_client_route()
            }
        }
    }

    /// Makes the router silently drop what the client sends that matches `selector` (e.g.
    /// `["ipproto", "udp"]`, or `["ipproto", "tcp", "dport", "7881"]`) with a rule of
    /// preference `pref` (keep clear of 90/91, the [`Mode::Blackhole`] cut). Dropping one
    /// direction suffices: nothing the server sends back can be an answer.
    pub fn block_from_client(&self, pref: u32, selector: &[&str]) -> Result<(), String> {
        let r = self.name(Side::Router);
        let pref = pref.to_string();
        let mut args = vec!["-n", &r, "rule", "add", "iif", "vRc"];
        args.extend_from_slice(selector);
        args.extend_from_slice(&["blackhole", "pref", &pref]);
        ip(&args)
    }

    /// Removes a rule added by [`Topology::block_from_client`].
    pub fn unblock(&self, pref: u32) -> Result<(), String> {
        ip(&[
            "-n",
            &self.name(Side::Router),
            "rule",
            "del",
            "pref",
            &pref.to_string(),
        ])
    }

    /// Starts livekit-server (`--dev`, keys devkey/secret) in the server namespace with
    /// `node_ip` = [`Topology::server_addr`], UDP on [`ICE_UDP_PORT`] and ICE over TCP on
    /// [`ICE_TCP_PORT`]; returns once it listens on all three ports. Its log goes to
    /// `server.log` in a temporary directory removed with the returned handle.
    pub fn start_livekit(&self) -> Result<super::LiveKit, String> {
        self.start_livekit_with("", &[])
    }

    /// [`Topology::start_livekit`] with the embedded TURN on: TLS on [`TURN_TLS_PORT`] with
    /// the certificate `cert_pem`/`key_pem` (for the server's address, the TURN domain), UDP
    /// on [`TURN_UDP_PORT`], relaying to the server's own private address.
    pub fn start_livekit_with_turn(&self, cert_pem: &str, key_pem: &str) -> Result<super::LiveKit, String> {
        let dir = self.livekit_dir()?;
        let (cert, key) = (dir.join("turn-cert.pem"), dir.join("turn-key.pem"));
        std::fs::write(&cert, cert_pem).map_err(|e| e.to_string())?;
        std::fs::write(&key, key_pem).map_err(|e| e.to_string())?;
        let turn = format!(
            "turn:\n  enabled: true\n  domain: {}\n  udp_port: {TURN_UDP_PORT}\n  tls_port: {TURN_TLS_PORT}\n  \
             cert_file: {}\n  key_file: {}\n  allow_restricted_peer_cidrs: [\"10.202.0.0/16\"]\n  \
             relay_range_start: 61000\n  relay_range_end: 65000\n",
            self.server_addr(),
            cert.display(),
            key.display()
        );
        self.start_livekit_with(&turn, &[TURN_TLS_PORT])
    }

    fn livekit_dir(&self) -> Result<PathBuf, String> {
        let dir = std::env::temp_dir().join(format!("menlo-netns-lk-{}-{}", std::process::id(), self.index));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        Ok(dir)
    }

    /// Starts livekit-server with `extra_yaml` appended to its configuration; returns once it
    /// listens on its own ports and on `extra_tcp_ports`.
    fn start_livekit_with(
        &self,
        extra_yaml: &str,
        extra_tcp_ports: &[u16],
    ) -> Result<super::LiveKit, String> {
        let dir = self.livekit_dir()?;
        let config = dir.join("livekit.yaml");
        let node_ip = self.server_addr();
        std::fs::write(
            &config,
            format!(
                "port: {SIGNAL_PORT}\nrtc:\n  udp_port: {ICE_UDP_PORT}\n  tcp_port: {ICE_TCP_PORT}\n  \
                 node_ip: {node_ip}\n  use_external_ip: false\n{extra_yaml}"
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let binary = super::server_binary();
        let child = self
            .command(Side::Server, &binary)
            .args(["--dev", "--bind", "0.0.0.0", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start {} ({e})", binary.display()))?;
        let pid = child.id();
        let server = super::LiveKit {
            child: Some(child),
            embedded: None,
            url: format!("ws://{node_ip}:{SIGNAL_PORT}"),
            key: super::KEY.into(),
            secret: super::SECRET.into(),
            dir: Some(dir.clone()),
        };
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        while !server_listening(pid, extra_tcp_ports) {
            if Instant::now() > deadline || !pid_alive(pid) {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(format!(
                    "livekit-server did not come up in the server namespace: {tail}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

/// True once process `pid` is livekit-server (past `ip netns exec`) and its namespace has
/// listeners on the signal and ICE-TCP ports and a socket on the ICE-UDP port.
fn server_listening(pid: u32, extra_tcp_ports: &[u16]) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "livekit-server" {
        return false;
    }
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let udp = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
    let tcp6 = std::fs::read_to_string(format!("/proc/{pid}/net/tcp6")).unwrap_or_default();
    let udp6 = std::fs::read_to_string(format!("/proc/{pid}/net/udp6")).unwrap_or_default();
    let listening = |table: &str, port: u16| socket_on(table, port, Some("0A"));
    (listening(&tcp, SIGNAL_PORT) || listening(&tcp6, SIGNAL_PORT))
        && (listening(&tcp, ICE_TCP_PORT) || listening(&tcp6, ICE_TCP_PORT))
        && (socket_on(&udp, ICE_UDP_PORT, None) || socket_on(&udp6, ICE_UDP_PORT, None))
        && extra_tcp_ports
            .iter()
            .all(|&port| listening(&tcp, port) || listening(&tcp6, port))
}

/// Whether a `/proc/net/{tcp,udp}` table has a local socket on `port` (in `state`, if given).
fn socket_on(table: &str, port: u16, state: Option<&str>) -> bool {
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1).is_some_and(|local| local.ends_with(&wanted))
            && state.is_none_or(|s| fields.get(3) == Some(&s))
    })
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Client last: its name is the claim on the index.
        for name in self.created.iter().rev() {
            remove_namespace(name);
        }
        let _ = std::fs::remove_file(&self.owner_file);
    }
}

/// A child process (usually in a namespace) whose stdout lines are collected; stdin is a
/// pipe the child may watch for end of input. Killed on drop.
pub struct LineProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl LineProcess {
    /// Spawns `command` with piped stdin/stdout (stderr inherited).
    pub fn spawn(mut command: Command) -> Result<LineProcess, String> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn {:?}: {e}", command.get_program()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(LineProcess {
            child,
            stdin,
            lines: rx,
        })
    }

    /// The next stdout line within `timeout` (None on timeout or end of output).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Every line available now, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| e.to_string())
    }

    /// Closes the child's stdin (the readers of the link-cut benchmark stop on it).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for the child to exit by itself, then kills it.
    pub fn finish(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
