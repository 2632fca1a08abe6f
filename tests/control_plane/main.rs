//! The control plane against the embedded emulator, in one test binary: the blocking
//! `Client` end to end (`client`), and the emulator checked against the wire contract over
//! plain HTTP (`emulator`).
#![cfg(feature = "dev")]

#[path = "../common/mod.rs"]
mod common;

mod client;
mod emulator;
