//! No credential (API key, identity, LiveKit token, PIN) appears in Debug output, error
//! messages or debug logs. Its own test binary, because it installs the global logger.

use crate::common::{builder, harness};
use menlo_robot_sdk::dev::Fault;
use menlo_robot_sdk::{DevIdentity, NewRobot, ParticipantTokenRequest, SessionOptions};

#[test]
fn credentials_never_leak() {
    crate::capture_logs();

    let h = harness();
    let client = builder(&h.platform, &h.sleeps)
        .api_key(h.key.clone())
        .debug(true)
        .build()
        .unwrap();
    let identity = DevIdentity::new("user_secret_sub", "org_test", "team_a");
    let identity_client = builder(&h.platform, &h.sleeps)
        .identity(&identity)
        .debug(true)
        .build()
        .unwrap();

    let mut seen = Vec::new();
    let created = client.robots().create(&NewRobot::new("a", "asimov-v0")).unwrap();
    let id = created.robot.id.clone();
    let pin = created.pin_code.clone().unwrap();
    seen.push(format!("{created:?}"));
    let session = client
        .robots()
        .create_session(&id, &SessionOptions::new())
        .unwrap();
    seen.push(format!("{session:?}"));
    let token = client
        .robots()
        .create_participant_token(&id, &ParticipantTokenRequest::new("v"))
        .unwrap();
    seen.push(format!("{token:?}"));
    let key = client.room_keys().generate(&id).unwrap();
    seen.push(format!("{key:?}"));
    seen.push(format!("{client:?}"));
    seen.push(format!("{identity_client:?}"));
    seen.push(format!("{identity:?}"));
    seen.push(format!("{:?}", identity_client.robots().get(&id).unwrap()));

    // Error paths: a refused key, a server error echoing nothing, a transport failure.
    let bad = builder(&h.platform, &h.sleeps)
        .api_key("sk_live_wrong_secret")
        .debug(true)
        .build()
        .unwrap();
    let err = bad.robots().get(&id).unwrap_err();
    seen.push(format!("{err} {err:?}"));
    h.platform.inject_fault(Fault::drop_connection().times(3));
    let err = client.robots().get(&id).unwrap_err();
    seen.push(format!("{err} {err:?}"));
    let config_err = menlo_robot_sdk::Client::builder()
        .identity_json("{\"sub\":\"leaky\"}")
        .build()
        .unwrap_err();
    seen.push(format!("{config_err} {config_err:?}"));

    let logs = crate::logs();
    assert!(
        logs.iter().any(|l| l.contains("GET") && l.contains("200")),
        "debug logging is on: {logs:?}"
    );
    let secrets = [
        h.key.as_str(),
        "sk_live_wrong_secret",
        "user_secret_sub",
        "leaky",
        session.participant_token.expose(),
        token.participant_token.expose(),
        key.token().expose(),
        pin.as_str(),
    ];
    for text in seen.iter().chain(logs.iter()) {
        for secret in secrets {
            assert!(!text.contains(secret), "a credential leaked into: {text}");
        }
    }
}
