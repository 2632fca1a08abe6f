//! Shared set-up for tests against the embedded control-plane emulator.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use menlo_robot_sdk::dev::{ControlPlane, Principal};
use menlo_robot_sdk::{Client, ClientBuilder};

/// An emulator, a client with an API key for it, and the retry sleeps the client asked for.
pub struct Harness {
    pub platform: ControlPlane,
    pub client: Client,
    pub key: String,
    pub sleeps: Arc<Mutex<Vec<Duration>>>,
}

pub fn principal(team: &str) -> Principal {
    Principal::new(format!("user_{team}"), "org_test", team)
}

/// A builder aimed at `platform`, recording sleeps instead of sleeping, with jitter fixed at 0.5.
pub fn builder(platform: &ControlPlane, sleeps: &Arc<Mutex<Vec<Duration>>>) -> ClientBuilder {
    let sleeps = Arc::clone(sleeps);
    Client::builder()
        .rcs_url(platform.url())
        .timeout(Duration::from_secs(5))
        .sleep_fn(move |d| sleeps.lock().unwrap().push(d))
        .jitter_fn(|| 0.5)
}

pub fn harness() -> Harness {
    let platform = ControlPlane::start().expect("emulator starts");
    let key = platform.create_api_key(&principal("team_a"));
    let sleeps = Arc::new(Mutex::new(Vec::new()));
    let client = builder(&platform, &sleeps)
        .api_key(key.clone())
        .build()
        .expect("client builds");
    Harness {
        platform,
        client,
        key,
        sleeps,
    }
}

impl Harness {
    /// Requests the emulator saw for `method` and a path starting with `path`.
    pub fn seen(&self, method: &str, path: &str) -> usize {
        self.platform
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path))
            .count()
    }

    /// Creates a robot named `a` and returns its id.
    pub fn robot(&self) -> String {
        self.client
            .robots()
            .create(&menlo_robot_sdk::NewRobot::new("a", "asimov-v0"))
            .unwrap()
            .robot
            .id
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}
