//! The TURN client's inputs from the network: ICE server URLs (from LiveKit's join response)
//! and a TURN server's answers never panic. An accepted URL has a plain host and a non-zero
//! port, and its canonical form parses back to the same value; servers built from a join
//! response never show their credentials in `Debug`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use menlo_robot_sdk::__fuzzing::turn::{parse_turn_url, TurnTransport};
use menlo_robot_sdk::__fuzzing::{join_turn_servers, turn_server_answer};

fn canonical(url: &menlo_robot_sdk::__fuzzing::turn::TurnUrl) -> String {
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    match url.transport {
        TurnTransport::Udp => format!("turn:{host}:{}?transport=udp", url.port),
        TurnTransport::Tcp => format!("turn:{host}:{}?transport=tcp", url.port),
        TurnTransport::Tls => format!("turns:{host}:{}?transport=tcp", url.port),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        if let Ok(url) = parse_turn_url(line) {
            assert!(!url.host.is_empty() && url.port != 0, "{url:?}");
            assert!(!url.host.contains(['@', '/', '?', ' ', '[', ']']), "{url:?}");
            assert_eq!(parse_turn_url(&canonical(&url)).as_ref(), Ok(&url));
        }
    }
    if let Some((servers, _skipped)) = join_turn_servers(data) {
        for server in servers {
            let shown = format!("{server:?}");
            assert!(shown.matches("<redacted>").count() == 2, "{shown}");
        }
    }
    turn_server_answer(data);
});
