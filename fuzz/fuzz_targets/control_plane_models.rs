//! `serde_json::from_slice` into every control-plane response model (CONTRACT §2).
//!
//! Properties: never panics; whatever parses re-serializes, and re-parsing that gives an
//! equal value (lossless round trip, including unknown enum values kept as `Other`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use menlo_robot_sdk::{
    ParticipantToken, Robot, RobotCreated, RobotPage, SessionCreated, SessionInfo, SessionList,
    SessionMetadata,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let json = serde_json::to_vec(&value).expect("a parsed model must serialize");
    let again: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "{} does not re-parse its own JSON: {e}\n{}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&json)
        )
    });
    assert!(
        again == value,
        "{} changed in a round trip",
        std::any::type_name::<T>()
    );
    // And the serialized form is a fixed point.
    assert_eq!(serde_json::to_vec(&again).unwrap(), json);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Robot>(data);
    round_trip::<RobotCreated>(data);
    round_trip::<RobotPage>(data);
    round_trip::<SessionCreated>(data);
    round_trip::<SessionInfo>(data);
    round_trip::<SessionList>(data);
    round_trip::<ParticipantToken>(data);
    round_trip::<SessionMetadata>(data);
});
