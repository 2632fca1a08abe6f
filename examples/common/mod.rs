//! What every example shares: the real platform when `MENLO_API_KEY` is set, else the
//! embedded one (feature `dev`), and a stopwatch for step-by-step output.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use menlo_robot_sdk::{dev, Client};

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Where the example runs.
pub enum Target {
    /// The real platform, from `MENLO_API_KEY` / `MENLO_RCS_URL`.
    Real(Client),
    /// The embedded platform, started for this run.
    Embedded(Box<dev::Platform>),
}

impl Target {
    /// The real platform when `MENLO_API_KEY` is set, else the embedded one.
    pub fn from_env() -> Res<Target> {
        let has_key = std::env::var("MENLO_API_KEY").is_ok_and(|key| !key.trim().is_empty());
        if has_key {
            println!("MENLO_API_KEY is set: using the platform at {}", rcs_url());
            return Ok(Target::Real(Client::from_env()?));
        }
        let started = Instant::now();
        let platform = dev::Platform::start()?;
        println!(
            "no MENLO_API_KEY: started the embedded platform in {} (RCS {}, LiveKit {}, page {})",
            ms(started.elapsed()),
            platform.rcs_url(),
            platform.livekit_url(),
            platform.page_url()
        );
        Ok(Target::Embedded(Box::new(platform)))
    }

    pub fn client(&self) -> &Client {
        match self {
            Target::Real(client) => client,
            Target::Embedded(platform) => platform.client(),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Target::Embedded(_))
    }

    /// Opens a viewer link: the embedded platform's simulated viewer joins at once; on the
    /// real platform a person opens it in Chrome (the caller then waits for the runtime).
    pub fn open_viewer(&self, link: &str) -> Res<()> {
        match self {
            Target::Embedded(platform) => Ok(platform.open_viewer(link)?),
            Target::Real(_) => {
                println!("open this link in Google Chrome (one tab per robot; it IS the robot):\n  {link}");
                Ok(())
            }
        }
    }
}

fn rcs_url() -> String {
    std::env::var("MENLO_RCS_URL").unwrap_or_else(|_| menlo_robot_sdk::DEFAULT_RCS_URL.to_owned())
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs one named step and prints how long it took.
pub fn step<T>(name: &str, f: impl FnOnce() -> Res<T>) -> Res<T> {
    let started = Instant::now();
    let value = f()?;
    println!("  ✓ {name} ({})", ms(started.elapsed()));
    Ok(value)
}

/// `p` in [0, 1] of ascending `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}
