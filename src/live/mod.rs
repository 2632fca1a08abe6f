//! The private live engine: a data-only LiveKit participant (feature `livekit`).
//!
//! Signaling over LiveKit's single-peer-connection protocol (`/rtc/v1`), WebRTC data
//! channels over str0m (pure Rust, so no prebuilt libwebrtc), LiveKit RPC and byte streams.
//! Every async task runs on one runtime the SDK owns; [`Room`] is the only door in, with
//! blocking methods and crossbeam channels. Protocol logic (participants, RPC bookkeeping,
//! stream reassembly, signaling) lives in sans-IO state machines tested without sockets.
#![allow(dead_code, unreachable_pub)]

pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod participants;
pub(crate) mod peer;
pub(crate) mod room;
pub(crate) mod rpc;
pub(crate) mod runtime;
pub(crate) mod signal;
pub(crate) mod streams;

pub(crate) use engine::RoomEvent;
pub(crate) use error::{LiveError, RpcError};
pub(crate) use participants::{Participant, ParticipantKind};
pub(crate) use room::{Room, RoomOptions, SendBytesOptions};
pub(crate) use rpc::{CallParams, Invocation};
pub(crate) use streams::ByteStream;
