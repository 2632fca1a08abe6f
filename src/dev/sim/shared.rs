//! [`SharedSimRobot`]: a [`SimRobot`] shared between RPC handler threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::robot::{Reply, SimError, SimRobot};
use crate::runtime::calls::method::CAMERAS_CAPTURE;

/// Where a [`SharedSimRobot`] reads the time: wall-clock time since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// The system clock as a [`Clock`] reading.
pub fn wall_clock() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// A [`SimRobot`] behind a mutex, with a condition variable that wakes tool calls waiting for
/// their action when anything changes. Cheap to clone (shared).
#[derive(Clone)]
pub struct SharedSimRobot {
    inner: Arc<Inner>,
}

struct Inner {
    robot: Mutex<SimRobot>,
    changed: Condvar,
    clock: Clock,
    /// Calls between entering and leaving [`SharedSimRobot::call`].
    in_flight: AtomicUsize,
    /// The last `topdown` background rendered for [`SharedSimRobot::frame`].
    topdown_background: Mutex<Option<tiny_skia::Pixmap>>,
}

/// Counts a call in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for SharedSimRobot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSimRobot").finish_non_exhaustive()
    }
}

impl SharedSimRobot {
    /// Shares `robot`, on the system clock.
    pub fn new(robot: SimRobot) -> SharedSimRobot {
        SharedSimRobot::with_clock(robot, Arc::new(wall_clock))
    }

    /// Shares `robot`, reading the time from `clock`.
    pub fn with_clock(robot: SimRobot, clock: Clock) -> SharedSimRobot {
        SharedSimRobot {
            inner: Arc::new(Inner {
                robot: Mutex::new(robot),
                changed: Condvar::new(),
                clock,
                in_flight: AtomicUsize::new(0),
                topdown_background: Mutex::new(None),
            }),
        }
    }

    /// The clock's reading now.
    pub fn now(&self) -> Duration {
        (self.inner.clock)()
    }

    fn lock(&self) -> MutexGuard<'_, SimRobot> {
        self.inner.robot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the robot, advanced to now.
    pub fn with_robot<R>(&self, f: impl FnOnce(&mut SimRobot) -> R) -> R {
        let mut robot = self.lock();
        robot.advance(self.now());
        let result = f(&mut robot);
        self.inner.changed.notify_all();
        result
    }

    /// Shuts the simulator down ([`SimRobot::close`]) and wakes every waiting tool call, which
    /// then answers with its action's `CANCELLED` result. Call it before leaving the room so
    /// that no handler thread stays blocked.
    pub fn close(&self) {
        let now = self.now();
        self.with_robot(|robot| robot.close(now));
    }

    /// The `topdown` background at `width × height`, rendered once per size.
    pub(crate) fn topdown_background(
        &self,
        world: &super::world::World,
        width: u32,
        height: u32,
    ) -> Result<tiny_skia::Pixmap, SimError> {
        let mut cached = self
            .inner
            .topdown_background
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some(background) if background.width() == width && background.height() == height => {
                Ok(background.clone())
            }
            _ => {
                let background = super::camera::topdown_background(world, width, height)?;
                *cached = Some(background.clone());
                Ok(background)
            }
        }
    }

    /// Calls in progress now (a tool call waiting for its action counts).
    pub fn calls_in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Answers `method` with `payload`. A tool call whose action runs blocks until the action
    /// ends (or `wait_limit` passes: then `TIMEOUT`, the action still running), so the reply
    /// is never [`Reply::Running`].
    pub fn call(&self, method: &str, payload: &str, wait_limit: Duration) -> Result<Reply, SimError> {
        let _in_flight = InFlight::enter(&self.inner.in_flight);
        if method == CAMERAS_CAPTURE {
            // Render a copy, so a frame does not hold up reads and cancels meanwhile.
            let mut snapshot = self.with_robot(|robot| robot.clone());
            return snapshot.handle(method, payload, self.now());
        }
        let mut robot = self.lock();
        let reply = robot.handle(method, payload, self.now());
        self.inner.changed.notify_all();
        match reply? {
            Reply::Running { action_id } => self.wait_for(robot, &action_id, wait_limit),
            other => Ok(other),
        }
    }

    fn wait_for(
        &self,
        mut robot: MutexGuard<'_, SimRobot>,
        action_id: &str,
        wait_limit: Duration,
    ) -> Result<Reply, SimError> {
        let deadline = Instant::now() + wait_limit;
        let tick = robot
            .step_wall_time()
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        loop {
            if let Some(result) = robot.poll_action(action_id, self.now()) {
                self.inner.changed.notify_all();
                return Ok(Reply::Json(result));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SimError::new(
                    "TIMEOUT",
                    format!("action {action_id} is still running after {wait_limit:?}"),
                ));
            }
            robot = self
                .inner
                .changed
                .wait_timeout(robot, tick.min(left))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
