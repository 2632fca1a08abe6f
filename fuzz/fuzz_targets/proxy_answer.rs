//! An HTTP proxy's answer to CONNECT, read byte by byte as the tunnel reads it: any bytes give
//! a status with a short printable reason, an error, or a request for more; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = menlo_robot_sdk::__fuzzing::proxy_answer(data);
});
