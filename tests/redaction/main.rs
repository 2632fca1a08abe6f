//! No credential (API key, identity, LiveKit token or secret, PIN) appears in Debug output,
//! error messages or any log record, the engine's included. Its own test binary, because it
//! installs the global logger and reads everything logged.
#![cfg(feature = "dev")]

#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "livekit")]
#[path = "../live_common/mod.rs"]
mod live_common;

mod control_plane;
#[cfg(feature = "livekit")]
mod live;

use std::sync::{Mutex, Once};

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        LOGS.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Installs the capturing logger at trace level (once per process).
fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Every record logged so far, by every test of this binary.
fn logs() -> Vec<String> {
    LOGS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
