//! The ICE-TCP (RFC 4571) deframer: any byte stream, cut into reads anywhere, yields packets
//! of 1..=65535 bytes that re-frame to themselves, or an error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    menlo_robot_sdk::__fuzzing::ice_tcp_stream(data);
});
