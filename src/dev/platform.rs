//! [`Platform`]: the whole Menlo platform in process — the control-plane emulator, a LiveKit
//! server (the embedded data-only SFU, or an external `livekit-server`), simulated robots
//! dispatched the way the real platform dispatches workers, and a page that shows them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel as cb;

use super::sim::{wall_clock, Scene, SharedSimRobot, SimRobot, SimRuntime, DEFAULT_SCENE_ID};
use super::{
    mint_livekit_token, ControlPlane, LiveKitSettings, Principal, SessionChange, Sfu, SfuOptions,
    TokenOptions,
};
use crate::{Client, Error, Result, RoomKey};

/// Default seed of the simulated worlds.
pub const DEFAULT_SEED: u64 = 7;
/// How long a dispatched simulated robot may take to join its room.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the tokens minted for dispatched agents.
const AGENT_TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// Which LiveKit server the platform's sessions use.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LiveKitBackend {
    /// The embedded data-only SFU, started on a loopback port (the default).
    #[default]
    Embedded,
    /// An external server, e.g. `livekit-server --dev`, with its URL and key pair.
    External(LiveKitSettings),
}

impl fmt::Debug for LiveKitBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveKitBackend::Embedded => f.write_str("Embedded"),
            LiveKitBackend::External(settings) => f.debug_tuple("External").field(settings).finish(),
        }
    }
}

/// Configures a [`Platform`].
#[derive(Clone, Debug)]
#[must_use]
pub struct PlatformBuilder {
    backend: LiveKitBackend,
    default_worker_names: Vec<String>,
    default_scene_id: Option<String>,
    scenes: Vec<Scene>,
    seed: u64,
    time_scale: f64,
}

impl Default for PlatformBuilder {
    fn default() -> Self {
        PlatformBuilder {
            backend: LiveKitBackend::Embedded,
            default_worker_names: vec!["sim-worker".into()],
            default_scene_id: None,
            scenes: Vec::new(),
            seed: DEFAULT_SEED,
            time_scale: 1.0,
        }
    }
}

impl PlatformBuilder {
    /// The LiveKit server (default: the embedded SFU).
    pub fn livekit(mut self, backend: LiveKitBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Agents dispatched when a session request omits `worker_names` (default
    /// `["sim-worker"]`, as on the real platform).
    pub fn default_worker_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.default_worker_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// The scene of sessions created without a `scene_id` (default: the built-in scene).
    pub fn scene(mut self, scene_id: impl Into<String>) -> Self {
        self.default_scene_id = Some(scene_id.into());
        self
    }

    /// Adds a scene, chosen by its `scene_id` when a session asks for it (or as the default
    /// with [`PlatformBuilder::scene`]); a scene of a built-in id replaces it. Load one from
    /// JSON with [`Scene::from_json`] or [`Scene::from_file`] (format: [`super::scene`]).
    pub fn add_scene(mut self, scene: Scene) -> Self {
        self.scenes.push(scene);
        self
    }

    /// Seed of every simulated world (same seed, same behaviour).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Simulated seconds per wall-clock second (default 1; 10 runs ten times as fast).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale;
        self
    }

    /// Starts everything on loopback ports chosen by the OS.
    pub fn start(self) -> Result<Platform> {
        Platform::start_with(self)
    }
}

/// The whole platform in process: control plane, LiveKit server, simulated robots, page.
///
/// `worker_names: ["sim-worker"]` (or the default dispatch) puts a simulated robot into the
/// session's room as an agent (`lk.agent.name` = the worker name); `[]` dispatches nothing,
/// and [`Platform::open_viewer`] then plays the browser viewer tab: a simulated runtime joins
/// with the room key's own credential as `simplesim:<robot_id>`. Deleting a session ends its
/// room and its robots. Dropping the platform stops everything.
#[must_use = "dropping the platform stops it"]
pub struct Platform {
    // Field order is drop order: robots leave before the servers stop.
    robots: Arc<LiveRobots>,
    dispatcher: Option<Dispatcher>,
    page: super::page::PageServer,
    control_plane: ControlPlane,
    sfu: Option<Arc<Sfu>>,
    livekit: LiveKitSettings,
    api_key: String,
    client: Client,
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Platform")
            .field("rcs_url", &self.rcs_url())
            .field("livekit_url", &self.livekit_url())
            .field("page_url", &self.page_url())
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// Starts a platform with the defaults: embedded SFU, default dispatch `["sim-worker"]`,
    /// the built-in scene, seed [`DEFAULT_SEED`], real time.
    pub fn start() -> Result<Platform> {
        Platform::builder().start()
    }

    /// A builder for a customised platform.
    pub fn builder() -> PlatformBuilder {
        PlatformBuilder::default()
    }

    fn start_with(options: PlatformBuilder) -> Result<Platform> {
        let scale = options.time_scale;
        if !(scale.is_finite() && scale > 0.0 && scale <= 1000.0) {
            return Err(Error::invalid(
                "time_scale",
                format!("must be in (0, 1000], not {scale}"),
            ));
        }
        for scene in &options.scenes {
            scene
                .validate()
                .map_err(|e| Error::invalid("scene", format!("{}: {e}", scene.scene_id)))?;
        }
        let io = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| Error::Config {
                setting: format!("dev platform ({what})"),
                reason: e.to_string(),
            }
        };
        let (sfu, livekit) = match options.backend.clone() {
            LiveKitBackend::Embedded => {
                let settings = LiveKitSettings {
                    url: String::new(),
                    api_key: format!("dev_{}", super::token::random_alnum(8)),
                    api_secret: super::token::random_alnum(32),
                };
                let sfu = Sfu::start(SfuOptions {
                    api_key: settings.api_key.clone(),
                    api_secret: settings.api_secret.clone(),
                    ..SfuOptions::default()
                })
                .map_err(io("SFU"))?;
                let settings = LiveKitSettings {
                    url: sfu.url(),
                    ..settings
                };
                (Some(Arc::new(sfu)), settings)
            }
            LiveKitBackend::External(settings) => (None, settings),
        };
        let robots = Arc::new(LiveRobots::new(&options));
        let (changes_tx, changes_rx) = cb::unbounded();
        let control_plane = ControlPlane::builder()
            .livekit(&livekit.url, &livekit.api_key, &livekit.api_secret)
            .default_worker_names(options.default_worker_names.clone())
            .on_session_change(move |change| {
                let _ = changes_tx.send(change.clone());
            })
            .start()
            .map_err(io("control plane"))?;
        let dispatcher = Dispatcher::start(changes_rx, Arc::clone(&robots), livekit.clone(), sfu.clone())
            .map_err(io("dispatcher"))?;
        let page = super::page::PageServer::start(Arc::clone(&robots)).map_err(io("page"))?;
        let api_key = control_plane.create_api_key(&Principal::new("dev_user", "dev_org", "dev_team"));
        let client = Client::builder()
            .rcs_url(control_plane.url())
            .api_key(api_key.clone())
            .build()?;
        Ok(Platform {
            robots,
            dispatcher: Some(dispatcher),
            page,
            control_plane,
            sfu,
            livekit,
            api_key,
            client,
        })
    }

    /// A client of this platform, authenticated with [`Platform::api_key`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The RCS base URL (`MENLO_RCS_URL`).
    pub fn rcs_url(&self) -> String {
        self.control_plane.url()
    }

    /// An API key of this platform (`MENLO_API_KEY`).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The LiveKit server's URL (`ws://127.0.0.1:PORT`).
    pub fn livekit_url(&self) -> &str {
        &self.livekit.url
    }

    /// The LiveKit URL and key pair, e.g. to mint tokens for official LiveKit clients.
    pub fn livekit(&self) -> &LiveKitSettings {
        &self.livekit
    }

    /// The page that shows every live robot's top-down view.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.page.addr())
    }

    /// The embedded SFU (its rooms and participants), or `None` with an external server.
    pub fn sfu(&self) -> Option<&Sfu> {
        self.sfu.as_deref()
    }

    /// The control-plane emulator (fault injection, recorded requests, more API keys).
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// Plays the browser viewer: opens a room key or key link (`https://…/?key=k1~…`) the
    /// way the viewer tab does, so a simulated runtime joins the room with the key's own
    /// credential (identity `simplesim:<robot_id>`). Returns once it has joined.
    pub fn open_viewer(&self, key_or_link: &str) -> Result<()> {
        let key = RoomKey::parse(key_or_link)?;
        let room = key.room_name()?;
        self.robots
            .join(&room, key.livekit_url(), key.token().expose(), None)
    }

    /// The robots live now, by room.
    pub fn live_robot_count(&self) -> usize {
        self.robots.count()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.stop();
        }
        self.robots.clear();
    }
}

/// Turns session changes into robots joining and rooms ending, on a thread of its own (the
/// emulator's hook must not block on a LiveKit join).
struct Dispatcher {
    stop: cb::Sender<()>,
    thread: JoinHandle<()>,
}

impl Dispatcher {
    fn start(
        changes: cb::Receiver<SessionChange>,
        robots: Arc<LiveRobots>,
        livekit: LiveKitSettings,
        sfu: Option<Arc<Sfu>>,
    ) -> std::io::Result<Dispatcher> {
        let (stop, stopped) = cb::bounded(1);
        let thread = std::thread::Builder::new()
            .name("menlo-dev-dispatch".into())
            .spawn(move || loop {
                cb::select! {
                    recv(stopped) -> _ => return,
                    recv(changes) -> change => match change {
                        Ok(change) => apply(&change, &robots, &livekit, sfu.as_deref()),
                        Err(_) => return,
                    },
                }
            })?;
        Ok(Dispatcher { stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn apply(change: &SessionChange, robots: &LiveRobots, livekit: &LiveKitSettings, sfu: Option<&Sfu>) {
    match change {
        SessionChange::Created {
            room_name,
            agent_names,
            scene_id,
            ..
        } => {
            robots.set_scene(room_name, scene_id.clone());
            for agent in agent_names {
                let identity = format!("agent-{}", super::token::random_hex(12));
                let options = TokenOptions {
                    kind: Some("agent".into()),
                    attributes: [("lk.agent.name".to_owned(), agent.clone())].into(),
                    metadata: None,
                };
                let token =
                    mint_livekit_token(livekit, room_name, &identity, agent, AGENT_TOKEN_TTL, &options);
                if let Err(err) = robots.join(room_name, &livekit.url, &token, Some(agent)) {
                    log::warn!(target: "menlo_robot_sdk::dev", "dispatching {agent} into {room_name} failed: {err}");
                }
            }
        }
        SessionChange::Deleted { room_name, .. } => {
            robots.leave(room_name);
            if let Some(sfu) = sfu {
                sfu.delete_room(room_name);
            }
        }
    }
}

/// The simulated robots in rooms now.
pub(crate) struct LiveRobots {
    seed: u64,
    time_scale: f64,
    default_scene_id: Option<String>,
    /// Scenes added to the built-in ones, by id.
    catalog: HashMap<String, Scene>,
    scenes: Mutex<HashMap<String, Option<String>>>,
    rooms: Mutex<HashMap<String, Vec<SimRuntime>>>,
}

impl LiveRobots {
    fn new(options: &PlatformBuilder) -> LiveRobots {
        LiveRobots {
            seed: options.seed,
            time_scale: options.time_scale,
            default_scene_id: options.default_scene_id.clone(),
            catalog: options
                .scenes
                .iter()
                .map(|s| (s.scene_id.clone(), s.clone()))
                .collect(),
            scenes: Mutex::new(HashMap::new()),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn set_scene(&self, room: &str, scene_id: Option<String>) {
        lock(&self.scenes).insert(room.to_owned(), scene_id);
    }

    /// A simulated runtime joins `room` with `token` and serves the runtime contract.
    fn join(&self, room: &str, url: &str, token: &str, agent: Option<&str>) -> Result<()> {
        let scene_id = lock(&self.scenes)
            .get(room)
            .cloned()
            .flatten()
            .or_else(|| self.default_scene_id.clone());
        let scene_id = scene_id.unwrap_or_else(|| DEFAULT_SCENE_ID.to_owned());
        let scene = self
            .catalog
            .get(&scene_id)
            .cloned()
            .or_else(|| Scene::builtin(&scene_id))
            .ok_or_else(|| Error::invalid("scene_id", format!("no scene {scene_id:?} on this platform")))?;
        let robot = SimRobot::with_scene(scene, self.seed, self.time_scale, wall_clock())
            .map_err(|e| Error::invalid("scene", e.message))?;
        let runtime = SimRuntime::connect(url, token, SharedSimRobot::new(robot), JOIN_TIMEOUT)?;
        log::debug!(target: "menlo_robot_sdk::dev", "simulated robot joined {room} ({})", agent.unwrap_or("viewer"));
        lock(&self.rooms)
            .entry(room.to_owned())
            .or_default()
            .push(runtime);
        Ok(())
    }

    fn leave(&self, room: &str) {
        let served = lock(&self.rooms).remove(room);
        lock(&self.scenes).remove(room);
        drop(served);
    }

    fn clear(&self) {
        let all: Vec<_> = lock(&self.rooms).drain().collect();
        drop(all);
    }

    fn count(&self) -> usize {
        lock(&self.rooms).values().map(Vec::len).sum()
    }

    /// Calls `f(room, index in the room, robot)` for each live robot, rooms in name order.
    pub(crate) fn each<R>(&self, mut f: impl FnMut(&str, usize, &SharedSimRobot) -> R) -> Vec<R> {
        let rooms = lock(&self.rooms);
        let mut names: Vec<&String> = rooms.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for room in names {
            for (index, runtime) in rooms[room].iter().enumerate() {
                out.push(f(room, index, runtime.sim()));
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
