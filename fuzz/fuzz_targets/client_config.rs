//! Client configuration from the environment (CONTRACT §1): `ClientBuilder::from_env()` then
//! `build()`, with every `MENLO_*` variable taken from the input. These are strings a user
//! types, parsed as URLs, a float timeout, an integer retry count, a boolean and JSON.
//!
//! Input layout: NUL-separated values, in order `MENLO_API_KEY`, `MENLO_IDENTITY`,
//! `MENLO_RCS_URL`, `MENLO_ROBOT_VIEWER_URL`, `MENLO_LIVEKIT_URL`,
//! `MENLO_ROBOT_SDK_TIMEOUT`, `MENLO_ROBOT_SDK_MAX_RETRIES`, `MENLO_ROBOT_SDK_DEBUG`;
//! a missing value leaves the variable unset. (`MENLO_IDENTITY_FILE` is never set: no file
//! reads while fuzzing.) libFuzzer runs one input at a time on one thread, so setting the
//! process environment here is race-free.
//!
//! Properties: never panics; a built client has a timeout in [0.001, 86400] s, at most 100
//! retries, http(s) URLs without a trailing `/`; an error never repeats the API key or the
//! identity, as typed or escaped, even when the user pasted it into another setting.
#![no_main]

use libfuzzer_sys::fuzz_target;
use menlo_robot_sdk::{env, ClientBuilder};

const VARS: [&str; 8] = [
    env::API_KEY,
    env::IDENTITY,
    env::RCS_URL,
    env::VIEWER_URL,
    env::LIVEKIT_URL,
    env::TIMEOUT,
    env::MAX_RETRIES,
    env::DEBUG,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\0').collect();
    std::env::remove_var(env::IDENTITY_FILE);
    for (i, name) in VARS.iter().enumerate() {
        match values.get(i) {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
    let value = |i: usize| values.get(i).copied().unwrap_or("");

    match ClientBuilder::from_env().and_then(ClientBuilder::build) {
        Ok(client) => {
            let timeout = client.timeout().as_secs_f64();
            assert!((0.001..=86_400.0).contains(&timeout), "timeout {timeout}");
            assert!(client.max_retries() <= 100);
            for url in [client.rcs_url(), client.viewer_url()] {
                let lower = url.to_ascii_lowercase();
                assert!(
                    lower.starts_with("http://") || lower.starts_with("https://"),
                    "{url:?}"
                );
                assert!(!url.ends_with('/'), "{url:?}");
            }
            if let Some(url) = client.livekit_url_override() {
                let lower = url.to_ascii_lowercase();
                assert!(
                    lower.starts_with("ws://") || lower.starts_with("wss://"),
                    "{url:?}"
                );
            }
            let shown = format!("{client:?}");
            // A non-blank API key always wins over an identity (CONTRACT §1).
            if !value(0).trim().is_empty() {
                assert!(
                    shown.contains("ApiKey(<redacted>)"),
                    "a non-blank API key did not win: {shown}"
                );
            }
            assert_no_leak(&shown, &values, Exempt::WhenAnotherSettingHoldsIt);
        }
        Err(err) => {
            let shown = format!("{err} {err:?}");
            assert_no_leak(&shown, &values, Exempt::Never);
        }
    }
});

#[derive(PartialEq)]
enum Exempt {
    /// A client's Debug shows its URLs as given; a credential inside one is the user's doing.
    WhenAnotherSettingHoldsIt,
    Never,
}

/// The API key (when it looks like one: `sk_…`, 12+ characters) and the identity (when it
/// looks like JSON: has `{`, 16+ characters) must not appear in `shown`, as typed or as
/// `{:?}` escapes them.
fn assert_no_leak(shown: &str, values: &[&str], exempt: Exempt) {
    let held_elsewhere = |skip: usize, secret: &str| {
        exempt == Exempt::WhenAnotherSettingHoldsIt
            && values
                .iter()
                .enumerate()
                .any(|(i, v)| i != skip && v.contains(secret))
    };
    let leaks = |secret: &str| {
        let escaped = format!("{secret:?}");
        shown.contains(secret) || shown.contains(escaped.trim_matches('"'))
    };
    let key = values.first().map_or("", |v| v.trim());
    if key.starts_with("sk_") && key.len() >= 12 && !held_elsewhere(0, key) {
        assert!(!leaks(key), "the API key leaked: {shown}");
    }
    let identity = values.get(1).map_or("", |v| v.trim());
    if identity.contains('{') && identity.len() >= 16 && !held_elsewhere(1, identity) {
        assert!(!leaks(identity), "the identity leaked: {shown}");
    }
}
