//! The live engine's network parsers: signal responses, ICE candidates, the websocket
//! upgrade answer, data packets (RPC, byte streams) and participant updates never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    menlo_robot_sdk::__fuzzing::network_frame(data);
});
