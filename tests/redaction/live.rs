//! No credential (participant tokens, the LiveKit API secret, the API key) appears in the
//! Debug output of the live types, in their errors, or in any log record (the engine's
//! included). Its own test binary, because it installs the global logger.

use std::time::Duration;

use crate::live_common::{free_tcp_port, Platform};
use menlo_robot_sdk::dev::{mint_livekit_token, LiveKitSettings, TokenOptions};
use menlo_robot_sdk::{connect, CaptureOptions, ConnectOptions, RuntimeHost};
use serde_json::json;

/// Every JWT starts with the base64 of `{"` — `eyJ`.
const JWT_PREFIX: &str = "eyJ";

fn is_base64url(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whether `text` holds a JWT or a recognisable piece of one: `eyJ` starting a base64url run
/// that goes on into a second `.`-separated segment, or that is at least as long as the
/// shortest JWT header (`{"alg":"HS256"}`, 20 characters). Three random letters spelling
/// `eyJ` (an ICE password in a logged SDP once did) are not enough.
fn contains_jwt(text: &str) -> bool {
    text.match_indices(JWT_PREFIX).any(|(at, _)| {
        let rest = &text[at..];
        let run = rest.find(|c: char| !is_base64url(c)).unwrap_or(rest.len());
        let second = rest[run..].strip_prefix('.').map_or(0, |tail| {
            tail.find(|c: char| !is_base64url(c)).unwrap_or(tail.len())
        });
        run >= 20 || (run >= 8 && second >= 4)
    })
}

#[test]
fn the_jwt_check_finds_tokens_and_their_pieces_not_random_letters() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    assert!(contains_jwt(&format!("Bearer {token} sent")));
    assert!(contains_jwt("token eyJhbGciOiJIUzI1NiJ9 (cut)"));
    assert!(contains_jwt("header and a piece: eyJhbGciOi.eyJz"));
    assert!(!contains_jwt("a=ice-pwd:dxbgiCAvtr4SeyJRoag8Bv\r\n"));
    assert!(!contains_jwt("no token here"));
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    assert!(!contains_jwt(text), "{what} contains a JWT: {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "{what} contains a secret: {text}");
    }
}

/// Display and Debug of an error and of every error underneath it.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(err);
    while let Some(err) = next {
        text.push_str(&format!("{err} {err:?}\n"));
        next = err.source();
    }
    text
}

#[test]
fn tokens_and_secrets_never_appear_in_debug_errors_or_logs() {
    crate::capture_logs();

    let livekit_secret = format!("lk-secret-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let p = Platform::start_with_livekit_keys("APIredaction", &livekit_secret);
    let runtime_token = p
        .livekit
        .token(&p.robot_id, &format!("simplesim:{}", p.robot_id), false, &[]);
    let runtime = RuntimeHost::connect(&p.livekit.url, &runtime_token, Duration::from_secs(15)).unwrap();
    runtime.handle("runtime.tools_list", |_| {
        Ok(json!([{"name":"go_to","description":"d","input_schema":{"type":"object"}}]).to_string())
    });
    runtime.handle("runtime.tools_call", |call| {
        let request: serde_json::Value = serde_json::from_str(&call.payload).unwrap();
        let id = request["options"]["action_id"].as_str().unwrap();
        Ok(json!({"status":"done","meta":{"action_id":id,"started_at_ms":1,"finished_at_ms":2,"duration_ms":1}}).to_string())
    });
    runtime.handle("runtime.cameras_capture", |_| {
        Ok(json!({"status":"failed","error":{"code":"CAMERA_OFF","message":"off"},"meta":{"action_id":"c","started_at_ms":1,"finished_at_ms":2,"duration_ms":1}}).to_string())
    });

    let options = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim");
    let session = connect(&p.client, &p.robot_id, options.clone()).unwrap();
    session.discover_skills().unwrap();
    session.invoke("go_to", json!({}), None).unwrap();
    let capture_err = session.get_vision("pov", &CaptureOptions::new()).unwrap_err();
    let state_err = session.state().get("battery").unwrap_err();
    let events: Vec<_> = session.events().try_iter().collect();
    let debug_texts = vec![
        ("Session", format!("{session:?}")),
        ("RuntimeHost", format!("{runtime:?}")),
        ("ConnectOptions", format!("{options:?}")),
        ("participants", format!("{:?}", session.participants())),
        ("events", format!("{events:?}")),
        ("capture error", format!("{capture_err:?} {capture_err}")),
        ("state error", format!("{state_err:?} {state_err}")),
    ];
    session.disconnect().unwrap();

    // A join the server refuses: a token signed with the wrong secret.
    let wrong = LiveKitSettings {
        url: p.livekit.url.clone(),
        api_key: p.livekit.key.clone(),
        api_secret: "not-the-secret-0123456789abcdef0123".into(),
    };
    let bad_token = mint_livekit_token(
        &wrong,
        &p.robot_id,
        "intruder",
        "intruder",
        Duration::from_secs(60),
        &TokenOptions::default(),
    );
    let refused = RuntimeHost::connect(&p.livekit.url, &bad_token, Duration::from_secs(5)).unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    // A join that cannot reach the server.
    let unreachable = connect(
        &p.client,
        &p.robot_id,
        options.livekit_url(format!("ws://127.0.0.1:{}", free_tcp_port())),
    )
    .unwrap_err();
    runtime.disconnect();

    let secrets = [
        runtime_token.as_str(),
        bad_token.as_str(),
        livekit_secret.as_str(),
        p.api_key.as_str(),
    ];
    for (what, text) in &debug_texts {
        assert_clean(what, text, &secrets);
    }
    assert_clean("refused join", &format!("{refused:?} {refused}"), &secrets);
    // The engine error underneath is kept as the source, and it is clean too.
    let cause = std::error::Error::source(&refused).expect("the engine error underneath");
    assert!(cause.to_string().contains("401"), "{cause}");
    assert_clean("refused join's source chain", &error_chain(&refused), &secrets);
    assert_clean(
        "unreachable join's source chain",
        &error_chain(&unreachable),
        &secrets,
    );
    assert_clean(
        "unreachable join",
        &format!("{unreachable:?} {unreachable}"),
        &secrets,
    );

    let logs = crate::logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("menlo_robot_sdk::live") && l.contains("joined room")),
        "the engine's logs were not captured"
    );
    for line in &logs {
        // ureq (the control-plane HTTP client, not the live engine) hex-dumps response
        // bodies at trace level, 16 bytes a line: a JWT prefix shows up there in pieces.
        // Whole secrets must not appear anywhere; JWT fragments nowhere else.
        if line.contains(" ureq") {
            for secret in &secrets {
                assert!(!line.contains(secret), "a log record contains a secret: {line}");
            }
        } else {
            assert_clean("a log record", line, &secrets);
        }
    }
}

#[test]
fn proxy_credentials_never_appear_in_debug_errors_or_logs() {
    use crate::live_common::proxy::{ConnectProxy, ProxyMode};
    use base64::Engine as _;
    crate::capture_logs();

    let user = "proxy-user";
    let password = format!("proxy-pw-{:016x}", fastrand::u64(..));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let secrets = [password.as_str(), basic.as_str()];
    let p = Platform::start();
    let _runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    let accepting = ConnectProxy::start(ProxyMode::RequireAuth {
        user: "proxy-user",
        password: Box::leak(password.clone().into_boxed_str()),
    });
    let options = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim");
    let through = options.clone().proxy(accepting.url_with(user, &password));
    let session = connect(&p.client, &p.robot_id, through.clone()).unwrap();
    assert!(
        !accepting.targets().is_empty(),
        "the signal went through the proxy"
    );
    let debug = format!("{through:?} {session:?}");
    session.disconnect().unwrap();

    let refusing = ConnectProxy::start(ProxyMode::RequireAuth {
        user: "proxy-user",
        password: "another",
    });
    let refused = connect(
        &p.client,
        &p.robot_id,
        options.clone().proxy(refusing.url_with(user, &password)),
    )
    .unwrap_err();
    assert!(refused.to_string().contains("407"), "{refused}");
    let invalid = connect(
        &p.client,
        &p.robot_id,
        options.proxy(format!("socks5://{user}:{password}@127.0.0.1:1")),
    )
    .unwrap_err();

    assert_clean("ConnectOptions and Session", &debug, &secrets);
    assert_clean("proxy refusal", &error_chain(&refused), &secrets);
    assert_clean("unsupported proxy", &error_chain(&invalid), &secrets);
    for line in crate::logs() {
        for secret in &secrets {
            assert!(
                !line.contains(secret),
                "a log record contains a proxy credential: {line}"
            );
        }
    }
}
