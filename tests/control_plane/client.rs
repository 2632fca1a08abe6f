//! The control plane end to end: the blocking Client against the emulator over real HTTP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{builder, harness, principal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use menlo_robot_sdk::dev::Fault;
use menlo_robot_sdk::{
    DevIdentity, Error, Language, NewRobot, ParticipantTokenRequest, RobotType, RobotUpdate, RoomKey,
    RoomKeyOptions, SessionOptions, Voice,
};

fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn robot_lifecycle() {
    let h = harness();
    let created = h
        .client
        .robots()
        .create(
            &NewRobot::new("My bot", "asimov-v0")
                .language(Language::Vi)
                .description("test"),
        )
        .unwrap();
    let robot = created.robot;
    assert!(robot.id.starts_with("rb_"), "{}", robot.id);
    assert_eq!(robot.language, Language::Vi);
    assert_eq!(robot.voice, Voice::Kokoro, "platform default");
    assert_eq!(robot.robot_type, RobotType::Virtual);
    let pin = created.pin_code.expect("a show-once PIN on create");
    assert_eq!(pin.len(), 6);

    let fetched = h.client.robots().get(&robot.id).unwrap();
    assert_eq!(fetched.name, "My bot");

    let updated = h
        .client
        .robots()
        .update(&robot.id, &RobotUpdate::new().voice(Voice::Piper))
        .unwrap();
    assert_eq!(updated.voice, Voice::Piper);
    assert_eq!(updated.name, "My bot", "fields not sent stay as they were");
    let patch = h
        .platform
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(patch.body.as_deref(), Some(r#"{"voice":"piper"}"#));

    h.client.robots().delete(&robot.id).unwrap();
    let err = h.client.robots().get(&robot.id).unwrap_err();
    let api = err.as_api().expect("an API error");
    assert_eq!(api.status, 404);
    assert_eq!(api.code, "robot.not_found");
    assert!(api.request_id.is_some(), "RCS errors carry a request id");
}

#[test]
fn requests_carry_the_contract_headers() {
    let h = harness();
    h.client
        .robots()
        .create(&NewRobot::new("a", "asimov-v0"))
        .unwrap();
    h.client.robots().list(None, None).unwrap();
    let requests = h.platform.requests();
    for request in &requests {
        assert!(request.has_authorization && !request.has_identity, "{request:?}");
        let agent = request.user_agent.as_deref().unwrap_or("");
        assert!(agent.starts_with("menlo-robot-sdk-rust/"), "{agent}");
    }
    assert_eq!(requests[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(requests[1].content_type, None, "a GET has no body");
}

#[test]
fn empty_update_and_bad_input_are_refused_before_sending() {
    let h = harness();
    let err = h.client.robots().update("rb_1", &RobotUpdate::new()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "update"),
        "{err}"
    );
    let err = h
        .client
        .robots()
        .create(&NewRobot::new("", "asimov-v0"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "name"),
        "{err}"
    );
    let err = h.client.robots().get("").unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "robot_id"),
        "{err}"
    );
    assert!(h.platform.requests().is_empty(), "nothing reached the server");
}

#[test]
fn pagination_follows_next_id_lazily() {
    let h = harness();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            h.client
                .robots()
                .create(&NewRobot::new(format!("bot {i}"), "asimov-v0"))
                .unwrap()
                .robot
                .id,
        );
    }
    let page = h.client.robots().list(Some(2), None).unwrap();
    assert_eq!(page.robots.len(), 2);
    let next = page.next_id.clone().expect("more pages");
    let page2 = h.client.robots().list(Some(2), Some(&next)).unwrap();
    assert_eq!(page2.robots[0].id, ids[2]);

    h.platform.clear_requests();
    let mut iter = h.client.robots().iter(2);
    assert_eq!(iter.next().unwrap().unwrap().id, ids[0]);
    assert_eq!(h.seen("GET", "/v1/robots"), 1, "only the first page is fetched");
    let rest: Vec<String> = iter.map(|r| r.unwrap().id).collect();
    assert_eq!(rest, ids[1..]);
    assert_eq!(h.seen("GET", "/v1/robots"), 3);
}

#[test]
fn worker_names_cases_stay_distinct_on_the_wire() {
    let h = harness();
    let id = h.robot();
    let cases = [
        (SessionOptions::new(), None),
        (SessionOptions::new().no_workers(), Some(r#"{"worker_names":[]}"#)),
        (
            SessionOptions::new()
                .worker_names(["sim-worker"])
                .scene_id("warehouse"),
            Some(r#"{"worker_names":["sim-worker"],"scene_id":"warehouse"}"#),
        ),
    ];
    for (options, expected_body) in cases {
        let session = h.client.robots().create_session(&id, &options).unwrap();
        let post = h
            .platform
            .requests()
            .into_iter()
            .rfind(|r| r.method == "POST")
            .unwrap();
        assert_eq!(post.body.as_deref().filter(|b| !b.is_empty()), expected_body);
        assert_eq!(session.room_name, id);
        assert!(session.livekit_url.starts_with("ws"));
        let slots = &session.room_metadata.required_participants;
        match expected_body {
            None => assert!(slots.contains_key("sim-worker"), "default dispatch: {slots:?}"),
            Some(b) if b.contains("[]") => assert!(slots.values().all(|s| s.min_count == 0), "{slots:?}"),
            Some(_) => {
                assert_eq!(slots["sim-worker"].min_count, 1);
                assert_eq!(session.room_metadata.scene_id.as_deref(), Some("warehouse"));
            }
        }
    }
}

#[test]
#[allow(deprecated)]
fn deprecated_workers_config_is_still_sent() {
    let h = harness();
    let id = h.robot();
    let options = SessionOptions::new().workers(menlo_robot_sdk::WorkerConfig::for_rcs_stack());
    h.client.robots().create_session(&id, &options).unwrap();
    let post = h
        .platform
        .requests()
        .into_iter()
        .rfind(|r| r.method == "POST")
        .unwrap();
    assert!(post.body.unwrap().contains(r#""workers":{"#));
}

#[test]
fn session_discovery_and_deletion() {
    let h = harness();
    let id = h.robot();
    assert_eq!(h.client.sessions().get(&id).unwrap(), None, "no session yet");
    h.client
        .robots()
        .create_session(&id, &SessionOptions::new().scene_id("s1"))
        .unwrap();
    let info = h.client.sessions().get(&id).unwrap().expect("a live session");
    assert_eq!(info.robot_id, id);
    assert_eq!(h.client.sessions().list(None).unwrap().len(), 1);
    assert_eq!(h.client.sessions().list(Some("s1")).unwrap().len(), 1);
    assert!(h.client.sessions().list(Some("other")).unwrap().is_empty());
    h.client.robots().delete_session(&id).unwrap();
    assert_eq!(h.client.sessions().get(&id).unwrap(), None);
    let err = h.client.robots().delete_session(&id).unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[test]
fn participant_tokens_and_room_keys() {
    let h = harness();
    let id = h.robot();
    let token = h
        .client
        .robots()
        .create_participant_token(
            &id,
            &ParticipantTokenRequest::new("viewer-1").ttl_seconds(100_000),
        )
        .unwrap();
    assert_eq!(token.room_name, id);
    let claims = jwt_claims(token.participant_token.expose());
    assert_eq!(claims["sub"], "viewer-1");
    assert_eq!(claims["video"]["room"], id.as_str());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let lifetime = claims["exp"].as_i64().unwrap() - now;
    assert!(
        (21_500..=21_600).contains(&lifetime),
        "TTL capped at 6 h, got {lifetime}"
    );

    let key = h.client.room_keys().generate(&id).unwrap();
    let parsed = RoomKey::parse(&key.encode()).unwrap();
    assert_eq!(parsed.room_name().unwrap(), id);
    assert_eq!(parsed.livekit_url(), h.platform.livekit().url);
    let body = h.platform.requests().last().unwrap().body.clone().unwrap();
    assert!(
        body.contains(&format!(r#""participant_identity":"simplesim:{id}""#)),
        "{body}"
    );
    assert!(body.contains(r#""ttl_seconds":14400"#), "{body}");
    let claims = jwt_claims(parsed.token().expose());
    assert_eq!(claims["sub"], format!("simplesim:{id}"));

    let link = h.client.room_keys().link(&id, &Default::default()).unwrap();
    assert!(link.starts_with("https://sim.menlo.ai/?key=k1~"), "{link}");
    assert_eq!(RoomKey::parse(&link).unwrap().room_name().unwrap(), id);
    let legacy = h
        .client
        .room_keys()
        .legacy_viewer_url(
            &id,
            &menlo_robot_sdk::RoomKeyOptions::new().livekit_url("wss://lk.example.com"),
        )
        .unwrap();
    assert!(
        legacy.contains("lk_url=wss%3A%2F%2Flk.example.com&lk_token="),
        "{legacy}"
    );
    assert!(legacy.ends_with(&format!("&lk_room={id}")), "{legacy}");
}

#[test]
fn a_ttl_over_the_6_hour_cap_is_capped_by_the_server_and_zero_is_refused() {
    let h = harness();
    let id = h.robot();
    let options = RoomKeyOptions::new().ttl(Duration::from_secs(7 * 3600));
    let key = h.client.room_keys().generate_with(&id, &options).unwrap();
    let body = h.platform.requests().last().unwrap().body.clone().unwrap();
    assert!(body.contains(r#""ttl_seconds":25200"#), "sent as asked: {body}");
    let claims = jwt_claims(key.token().expose());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap();
    assert_eq!(lifetime, 21_600, "the server caps the credential at 6 h");

    let before = h.platform.requests().len();
    let err = h
        .client
        .room_keys()
        .generate_with(&id, &RoomKeyOptions::new().ttl(Duration::ZERO))
        .unwrap_err();
    assert!(err.to_string().contains("at least 1 second"), "{err}");
    let err = h
        .client
        .robots()
        .create_participant_token(&id, &ParticipantTokenRequest::new("v").ttl_seconds(0))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert_eq!(h.platform.requests().len(), before, "nothing sent");
}

#[test]
fn room_key_options_set_the_viewer_identity_and_name() {
    let h = harness();
    let id = h.robot();
    let options = RoomKeyOptions::new()
        .participant_identity("viewer:alice")
        .participant_name("Alice");
    let key = h.client.room_keys().generate_with(&id, &options).unwrap();
    assert_eq!(jwt_claims(key.token().expose())["sub"], "viewer:alice");
    h.client.room_keys().link(&id, &options).unwrap();
    h.client.room_keys().legacy_viewer_url(&id, &options).unwrap();
    let token_requests: Vec<_> = h
        .platform
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/participant-token"))
        .collect();
    assert_eq!(token_requests.len(), 3);
    for request in token_requests {
        let body = request.body.unwrap();
        assert!(
            body.contains(r#""participant_identity":"viewer:alice","participant_name":"Alice""#),
            "{body}"
        );
    }
}

#[test]
fn identity_mode_and_team_isolation() {
    let h = harness();
    let id = h.robot();

    let sleeps = Default::default();
    let same_team = builder(&h.platform, &sleeps)
        .identity(&DevIdentity::new("user_team_a", "org_test", "team_a"))
        .build()
        .unwrap();
    assert_eq!(same_team.robots().get(&id).unwrap().id, id);
    let request = h.platform.requests().pop().unwrap();
    assert!(request.has_identity && !request.has_authorization, "{request:?}");

    let other_key = h.platform.create_api_key(&principal("team_b"));
    let other_team = builder(&h.platform, &sleeps).api_key(other_key).build().unwrap();
    assert_eq!(other_team.robots().get(&id).unwrap_err().status(), Some(404));
    assert!(other_team.robots().list(None, None).unwrap().robots.is_empty());
}

#[test]
fn a_bad_key_reads_http_401_unauthorized() {
    let h = harness();
    let sleeps = Default::default();
    let client = builder(&h.platform, &sleeps)
        .api_key("sk_live_not_issued")
        .build()
        .unwrap();
    let err = client.robots().list(None, None).unwrap_err();
    assert_eq!(err.to_string(), "http.401: unauthorized");
    assert_eq!(h.seen("GET", "/v1/robots"), 1, "401 is not retried");
}

#[test]
fn every_error_body_shape_is_normalized() {
    let h = harness();
    let shapes: [(u16, &str, &str, &str); 7] = [
        (
            409,
            r#"{"code":"robot.conflict","message":"taken","details":{"request_id":"req_9"}}"#,
            "robot.conflict",
            "taken",
        ),
        (403, r#"{"error":"forbidden"}"#, "http.403", "forbidden"),
        (400, r#"{"detail":"bad thing"}"#, "http.400", "bad thing"),
        (418, "I am a teapot", "http.error", "I am a teapot"),
        (400, r#"{"unexpected":true}"#, "unknown.error", "Unknown error"),
        (
            400,
            r#"{"code":"scene.bad","detail":{"z":1,"a":2}}"#,
            "scene.bad",
            r#"{"z":1,"a":2}"#,
        ),
        (
            409,
            r#"{"code":"","message":""}"#,
            "unknown.error",
            "Unknown error",
        ),
    ];
    for (status, body, code, message) in shapes {
        h.platform
            .inject_fault(Fault::status(status).with_body(body).times(1));
        let err = h.client.robots().list(None, None).unwrap_err();
        let api = err.as_api().unwrap_or_else(|| panic!("{err}"));
        assert_eq!(
            (api.status, api.code.as_str(), api.message.as_str()),
            (status, code, message)
        );
    }
    let err = h
        .client
        .robots()
        .create(&NewRobot::new("a", "asimov-v0").description("x".repeat(999)))
        .map(drop);
    assert!(err.is_ok());
    // A real validation error from the server, in FastAPI's shape.
    let err = h.client.robots().list(Some(1000), None).unwrap_err();
    let api = err.as_api().unwrap();
    assert_eq!((api.status, api.code.as_str()), (422, "request.validation_error"));
    assert!(api.message.contains("limit"), "{}", api.message);
}

/// (method, what to call) pairs used by the retry matrix.
fn call(h: &crate::common::Harness, method: &str, robot_id: &str) -> Result<(), Error> {
    match method {
        "GET" => h.client.robots().get(robot_id).map(drop),
        "PATCH" => h
            .client
            .robots()
            .update(robot_id, &RobotUpdate::new().name("n"))
            .map(drop),
        "DELETE" => h.client.robots().delete_session(robot_id),
        "POST robots" => h
            .client
            .robots()
            .create(&NewRobot::new("r", "asimov-v0"))
            .map(drop),
        "POST session" => h
            .client
            .robots()
            .create_session(robot_id, &SessionOptions::new())
            .map(drop),
        "POST token" => h
            .client
            .robots()
            .create_participant_token(robot_id, &ParticipantTokenRequest::new("v"))
            .map(drop),
        other => unreachable!("{other}"),
    }
}

fn fault_path(method: &str, robot_id: &str) -> (String, String) {
    let (verb, path) = match method {
        "GET" | "PATCH" => (method, format!("/v1/robots/{robot_id}")),
        "DELETE" => ("DELETE", format!("/v1/robots/{robot_id}/session")),
        "POST robots" => ("POST", "/v1/robots".to_owned()),
        "POST session" => ("POST", format!("/v1/robots/{robot_id}/session")),
        "POST token" => ("POST", format!("/v1/robots/{robot_id}/session/participant-token")),
        other => unreachable!("{other}"),
    };
    (verb.to_owned(), path)
}

#[test]
fn retry_matrix_counts_exact_attempts() {
    // (method, fault, attempts the server must see with max_retries = 2 and the fault repeated)
    let cases = [
        ("GET", "drop", 3),
        ("GET", "429", 3),
        ("GET", "503", 3),
        ("PATCH", "drop", 3),
        ("PATCH", "429", 3),
        ("PATCH", "503", 1),
        ("DELETE", "drop", 3),
        ("DELETE", "429", 3),
        ("DELETE", "500", 3),
        ("POST robots", "drop", 1),
        ("POST robots", "lost", 1),
        ("POST robots", "429", 1),
        ("POST robots", "503", 1),
        ("POST session", "drop", 1),
        ("POST session", "lost", 1),
        ("POST session", "429", 1),
        ("POST session", "503", 1),
        ("POST token", "drop", 1),
        ("POST token", "lost", 1),
        ("POST token", "429", 1),
        ("POST token", "500", 1),
    ];
    let h = harness();
    let robot_id = h.robot();
    for (method, fault, expected) in cases {
        h.client
            .robots()
            .create_session(&robot_id, &SessionOptions::new())
            .unwrap();
        let (verb, path) = fault_path(method, &robot_id);
        let injected = match fault {
            "drop" => Fault::drop_connection(),
            "lost" => Fault::drop_after_processing(),
            status => Fault::status(status.parse().unwrap()),
        };
        // Exactly as many faults as attempts are expected: one attempt too many would succeed.
        h.platform
            .inject_fault(injected.method(&verb).path(&path).times(expected as u32));
        h.platform.clear_requests();
        h.sleeps.lock().unwrap().clear();
        let robots_before = h.client.robots().list(Some(100), None).unwrap().robots.len();
        h.platform.clear_requests();

        let result = call(&h, method, &robot_id);
        let attempts = h
            .platform
            .requests()
            .iter()
            .filter(|r| r.method == verb && r.path == path)
            .count();
        assert!(
            result.is_err(),
            "{method} {fault}: the fault persists, so the call fails"
        );
        assert_eq!(
            attempts, expected,
            "{method} {fault}: attempts seen by the server"
        );
        assert_eq!(
            h.sleeps().len(),
            expected - 1,
            "{method} {fault}: one backoff per retry"
        );
        if method == "POST robots" {
            let robots_after = h.client.robots().list(Some(100), None).unwrap().robots.len();
            let created = if fault == "lost" { 1 } else { 0 };
            assert_eq!(
                robots_after,
                robots_before + created,
                "{fault}: a robot is created at most once"
            );
        }
    }
}

#[test]
fn backoff_schedule_and_retry_after_are_exact() {
    let h = harness();
    let id = h.robot();
    let path = format!("/v1/robots/{id}");
    h.platform
        .inject_fault(Fault::status(503).method("GET").path(&path).times(2));
    assert_eq!(
        h.client.robots().get(&id).unwrap().id,
        id,
        "succeeds on the third attempt"
    );
    assert_eq!(
        h.sleeps(),
        [Duration::from_millis(300), Duration::from_millis(550)]
    );

    h.sleeps.lock().unwrap().clear();
    h.platform.inject_fault(
        Fault::status(429)
            .with_retry_after("7")
            .method("GET")
            .path(&path)
            .times(1),
    );
    h.client.robots().get(&id).unwrap();
    assert_eq!(
        h.sleeps(),
        [Duration::from_secs(7)],
        "Retry-After lengthens the wait"
    );

    h.sleeps.lock().unwrap().clear();
    h.platform.inject_fault(
        Fault::status(429)
            .with_retry_after("3600")
            .method("GET")
            .path(&path)
            .times(1),
    );
    h.client.robots().get(&id).unwrap();
    assert_eq!(h.sleeps(), [Duration::from_secs(30)], "capped at 30 s");
}

#[test]
fn a_slow_server_times_out_and_safe_requests_are_retried() {
    let h = harness();
    let id = h.robot();
    let client = builder(&h.platform, &h.sleeps)
        .api_key(h.key.clone())
        .timeout(Duration::from_millis(200))
        .max_retries(1)
        .build()
        .unwrap();
    let path = format!("/v1/robots/{id}");
    h.platform.inject_fault(
        Fault::delay(Duration::from_millis(800))
            .method("GET")
            .path(&path)
            .times(2),
    );
    let err = client.robots().get(&id).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.is_retryable() && !err.is_connect(), "{err}");
    let cause = std::error::Error::source(&err).expect("the HTTP client's timeout as the cause");
    assert!(cause.to_string().to_lowercase().contains("time"), "{cause}");
    assert_eq!(h.seen("GET", &path), 2, "one retry after the first timeout");
}

#[test]
fn an_unreachable_server_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sleeps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = std::sync::Arc::clone(&sleeps);
    let client = menlo_robot_sdk::Client::builder()
        .rcs_url(url)
        .api_key("sk_live_x")
        .sleep_fn(move |d| recorded.lock().unwrap().push(d))
        .build()
        .unwrap();
    let err = client.robots().list(None, None).unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        err.is_connect() && err.is_retryable() && !err.is_timeout(),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("the refused connection");
    assert!(!source.to_string().contains("sk_live_x"), "{source}");
    assert!(!format!("{err:?}").contains("sk_live_x"), "{err:?}");
    assert_eq!(sleeps.lock().unwrap().len(), 2, "GET retried twice");
}

#[test]
fn a_tls_failure_is_a_connect_error_without_the_key() {
    // A plain TCP listener that answers the TLS hello with garbage and closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let client = menlo_robot_sdk::Client::builder()
        .rcs_url(url)
        .api_key("sk_live_tls_secret")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = client
        .robots()
        .create(&NewRobot::new("a", "asimov-v0"))
        .unwrap_err();
    server.join().unwrap();
    assert!(err.is_connect(), "{err:?}");
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!chain.contains("tls_secret"), "{chain}");
}

#[test]
fn a_rate_limited_answer_is_retryable_but_a_missing_robot_is_not() {
    let h = harness();
    let sleeps = Default::default();
    let client = builder(&h.platform, &sleeps)
        .api_key(h.key.clone())
        .max_retries(0)
        .build()
        .unwrap();
    h.platform.inject_fault(Fault::status(429).method("GET").times(1));
    let err = client.robots().list(None, None).unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert!(
        err.is_retryable() && !err.is_connect() && !err.is_timeout(),
        "{err}"
    );
    let err = client.robots().get("rb_missing").unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_retryable(), "{err}");
}

#[test]
fn the_emulator_serves_its_openapi_document() {
    let h = harness();
    let body = ureq::get(format!("{}/openapi.json", h.platform.url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    for path in [
        "/v1/robots",
        "/v1/robots/{robot_id}",
        "/v1/robots/{robot_id}/session",
        "/v1/sessions",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}
