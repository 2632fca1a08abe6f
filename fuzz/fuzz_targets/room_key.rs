//! `RoomKey::parse`, `RoomKey::room_name`, `RoomKey::link` and `is_container_internal`
//! (CONTRACT §5): strings a user pastes, and the JWT claims inside them.
//!
//! Two input modes:
//! - raw (first byte != 0): the input, as UTF-8, is a room key / URL string;
//! - built (first byte == 0): `0, url, '\n', claims JSON` is packed into a well-formed
//!   `k1~base64url(url)~header.base64url(claims).sig` so the fuzzer reaches the claims
//!   parser behind `room_name()` instead of spending its time on the envelope.
//!
//! Properties: never panics; a parsed key re-encodes to a key that parses to an equal
//! value; `room_name()` agrees with the token's `video.room` claim; `is_container_internal`
//! ignores ASCII case and a trailing query.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use menlo_robot_sdk::__control_plane_fuzzing::is_container_internal;
use menlo_robot_sdk::{Error, RoomKey};

fn check_key(input: &str) -> Option<RoomKey> {
    let key = match RoomKey::parse(input) {
        Ok(key) => key,
        Err(err) => {
            assert!(
                matches!(err, Error::InvalidInput { .. }),
                "unexpected error kind: {err:?}"
            );
            return None;
        }
    };
    let encoded = key.encode();
    assert!(encoded.starts_with("k1~"));
    let again = RoomKey::parse(&encoded).unwrap_or_else(|e| panic!("re-encoded key does not parse: {e}"));
    assert!(again == key, "round trip changed the key");
    assert_eq!(again.encode(), encoded);
    let url = key.livekit_url().to_ascii_lowercase();
    assert!(
        url.starts_with("ws://") || url.starts_with("wss://"),
        "accepted a non-ws URL"
    );
    let token = key.token().expose();
    assert!(!token.is_empty() && !token.contains('~'));
    if let Err(err) = key.room_name() {
        assert!(
            matches!(err, Error::InvalidInput { .. }),
            "unexpected error kind: {err:?}"
        );
    }
    let link = key.link("https://sim.menlo.ai/");
    assert!(link.starts_with("https://sim.menlo.ai/?key=k1~"), "{link}");
    let from_link = RoomKey::parse(&link).unwrap_or_else(|e| panic!("a key's own link does not parse: {e}"));
    assert!(from_link == key, "the link changed the key");
    let _ = format!("{key:?}");
    Some(key)
}

fn check_container_internal(url: &str) {
    let internal = is_container_internal(url);
    assert_eq!(
        internal,
        is_container_internal(&url.to_ascii_uppercase()),
        "case changed the verdict"
    );
    assert_eq!(
        internal,
        is_container_internal(&format!("{url}?q")),
        "a query changed the verdict"
    );
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => {
            let text = String::from_utf8_lossy(rest);
            let (url, claims) = text.split_once('\n').unwrap_or((&text, "{}"));
            check_container_internal(url);
            let token = format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(claims));
            let raw = format!("k1~{}~{token}", URL_SAFE_NO_PAD.encode(url));
            let lower = url.to_ascii_lowercase();
            let valid_url = matches!(
                lower.strip_prefix("wss://").or_else(|| lower.strip_prefix("ws://")),
                Some(rest) if !rest.is_empty()
            );
            let key = check_key(&raw);
            assert_eq!(key.is_some(), valid_url, "valid={valid_url} for url {url:?}");
            if let Some(key) = key {
                assert_eq!(key.livekit_url(), url);
                assert_eq!(key.token().expose(), token);
                let expected = serde_json::from_str::<serde_json::Value>(claims)
                    .ok()
                    .and_then(|c| {
                        c.pointer("/video/room")
                            .and_then(|r| r.as_str())
                            .map(str::to_owned)
                    });
                assert_eq!(
                    key.room_name().ok(),
                    expected,
                    "room_name disagrees with the video.room claim"
                );
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(data) else {
                return;
            };
            check_container_internal(text);
            check_key(text);
        }
    }
});
