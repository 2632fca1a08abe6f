//! The live layer against a real LiveKit server, in one test binary. The backend is a
//! parameter (`MENLO_LIVE_BACKEND=livekit-server`, the default, or `embedded` for the SDK's
//! own SFU), not a copy of the suites. Thread and descriptor counts live in `live_leaks`,
//! a binary of their own.
#![cfg(all(feature = "livekit", feature = "dev"))]

#[path = "../live_common/mod.rs"]
mod live_common;

mod fallback;
mod icetcp;
mod interop;
mod netns;
mod platform;
mod proxy;
mod resume;
mod session;
mod sfu;
mod sim;
mod tls;
mod turn;
