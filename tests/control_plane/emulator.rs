//! The control-plane emulator (`menlo_robot_sdk::dev`) driven over plain HTTP with `ureq`,
//! checked against the wire contract (CONTRACT §1–§3) — not through the SDK client.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use menlo_robot_sdk::dev::{
    mint_livekit_token, ControlPlane, Fault, LiveKitSettings, Principal, TokenOptions,
};
use serde_json::{json, Value};
use sha2::Sha256;

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build(),
    )
}

#[derive(Debug)]
struct Resp {
    status: u16,
    text: String,
    json: Value,
    content_type: Option<String>,
    retry_after: Option<String>,
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Key(&'a str),
    Identity(&'a str),
    Both(&'a str, &'a str),
}

struct Env {
    cp: ControlPlane,
    agent: ureq::Agent,
    key: String,
}

impl Env {
    fn new() -> Env {
        Env::with(ControlPlane::start().expect("start emulator"))
    }

    fn with(cp: ControlPlane) -> Env {
        let key = cp.create_api_key(&Principal::new("user_a", "org_1", "team_1"));
        Env {
            cp,
            agent: agent(Duration::from_secs(10)),
            key,
        }
    }

    fn try_send(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<(&str, &[u8])>,
    ) -> Result<Resp, ureq::Error> {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.cp.url(), path))
            .header("Accept", "application/json");
        let bearer;
        match auth {
            Auth::None => {}
            Auth::Key(k) => {
                bearer = format!("Bearer {k}");
                b = b.header("Authorization", bearer.as_str());
            }
            Auth::Identity(i) => b = b.header("X-Menlo-Identity", i),
            Auth::Both(k, i) => {
                bearer = format!("Bearer {k}");
                b = b
                    .header("Authorization", bearer.as_str())
                    .header("X-Menlo-Identity", i);
            }
        }
        let mut resp = match body {
            None => agent.run(b.body(()).unwrap())?,
            Some((ct, bytes)) => agent.run(b.header("Content-Type", ct).body(bytes).unwrap())?,
        };
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string()?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            text,
            json,
            content_type,
            retry_after,
        })
    }

    fn send(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<&str>) -> Resp {
        self.try_send(
            &self.agent,
            method,
            path,
            auth,
            body.map(|b| ("application/json", b.as_bytes())),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A request with this env's API key.
    fn k(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.send(method, path, Auth::Key(&self.key), body)
    }

    fn create_robot(&self, name: &str) -> Value {
        let r = self.k(
            "POST",
            "/v1/robots",
            Some(&json!({"name": name, "model": "asimov-v0"}).to_string()),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["robot"].clone()
    }

    fn robot_ids(&self) -> Vec<String> {
        let r = self.k("GET", "/v1/robots?limit=100", None);
        assert_eq!(r.status, 200, "{}", r.text);
        ids(&r.json["robots"])
    }
}

fn ids(robots: &Value) -> Vec<String> {
    robots
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn identity(sub: &str, org: &str, team: &str) -> String {
    Principal::new(sub, org, team).to_identity_json()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` or with a `±HH:MM` offset.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z" || (rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')))
}

/// Decodes a JWT's claims after checking its HS256 signature with `secret`.
fn jwt_claims(token: &str, secret: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    assert!(!token.contains('~'));
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    mac.verify_slice(&sig).expect("valid HS256 signature");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assert_rcs_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["code"], code, "{}", r.text);
    assert!(r.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    let rid = r.json["details"]["request_id"].as_str().unwrap();
    assert!(rid.starts_with("req_"), "{rid}");
    assert!(r.json["details"]["trace_id"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
}

/// The `detail` list of a 422, as (type, loc) pairs.
fn detail(r: &Resp) -> Vec<(String, Value)> {
    assert_eq!(r.status, 422, "{}", r.text);
    r.json["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("no detail list: {}", r.text))
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string(), "{e}");
            assert!(e.get("input").is_some(), "{e}");
            (e["type"].as_str().unwrap().to_owned(), e["loc"].clone())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn url_and_livekit_settings() {
    let cp = ControlPlane::builder()
        .livekit("wss://lk.example.com", "key1", "s3cr3t-value")
        .start()
        .unwrap();
    let url = cp.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with('/'));
    assert_eq!(cp.livekit().url, "wss://lk.example.com");
    assert_eq!(cp.livekit().api_key, "key1");
    assert!(!format!("{:?}", cp.livekit()).contains("s3cr3t-value"));
    assert!(!format!("{cp:?}").contains("s3cr3t-value"));
    let key = cp.create_api_key(&Principal::new("u", "o", "t"));
    assert!(key.starts_with("sk_live_") && key.len() > 20, "{key}");
    assert_ne!(key, cp.create_api_key(&Principal::new("u", "o", "t")));
}

#[test]
fn drop_shuts_the_server_down() {
    let cp = ControlPlane::start().unwrap();
    let url = cp.url();
    let a = agent(Duration::from_secs(5));
    assert_eq!(a.get(format!("{url}/openapi.json")).call().unwrap().status(), 200);
    let started = Instant::now();
    drop(cp);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(agent(Duration::from_secs(2))
        .get(format!("{url}/openapi.json"))
        .call()
        .is_err());
}

#[test]
fn openapi_document_needs_no_auth_and_lists_every_endpoint() {
    let env = Env::new();
    let r = env.send("GET", "/openapi.json", Auth::None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert!(r.json["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = r.json["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/robots", &["get", "post"][..]),
        ("/v1/robots/{robot_id}", &["get", "patch", "delete"]),
        ("/v1/robots/{robot_id}/session", &["get", "post", "delete"]),
        ("/v1/robots/{robot_id}/session/participant-token", &["post"]),
        ("/v1/robots/{robot_id}/session/command", &["post"]),
        ("/v1/sessions", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path].get(*m).is_some(), "{m} {path}");
        }
    }
    let schemas = r.json["components"]["schemas"].as_object().unwrap();
    for s in [
        "RobotCreate",
        "RobotOut",
        "RobotCreateResponse",
        "RobotUpdate",
        "RobotList",
        "SessionCreate",
        "SessionCreateResponse",
        "SessionMetadata",
        "SessionInfo",
        "ParticipantTokenCreate",
        "ParticipantTokenResponse",
    ] {
        assert!(schemas.contains_key(s), "{s}");
    }
    // Every $ref resolves.
    let text = r.text.clone();
    for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
}

#[test]
fn auth_modes() {
    let env = Env::new();
    let unauthorized = json!({"error": "unauthorized"});
    let id_a = identity("user_a", "org_1", "team_1");

    for auth in [
        Auth::None,
        Auth::Key("sk_live_unknown"),
        Auth::Identity("not json"),
        Auth::Identity(r#"{"sub":"u","organization_id":"o"}"#),
        Auth::Identity(r#"{"sub":"u","organization_id":"o","team_id":"t","roles":"admin"}"#),
        // API key wins: a bad key is rejected even with a valid identity.
        Auth::Both("sk_live_unknown", &id_a),
    ] {
        let r = env.send("GET", "/v1/robots", auth, None);
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.json, unauthorized);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }
    let r = env.send("GET", "/v1/robots", Auth::Key(&format!("{}x", env.key)), None);
    assert_eq!(r.status, 401);

    assert_eq!(
        env.send("GET", "/v1/robots", Auth::Key(&env.key), None).status,
        200
    );
    assert_eq!(
        env.send("GET", "/v1/robots", Auth::Identity(&id_a), None).status,
        200
    );
    // API key wins: a malformed identity next to a good key is ignored.
    assert_eq!(
        env.send("GET", "/v1/robots", Auth::Both(&env.key, "garbage"), None)
            .status,
        200
    );

    // Key and identity of the same principal see the same robots.
    let robot = env.create_robot("shared");
    let r = env.send("GET", "/v1/robots", Auth::Identity(&id_a), None);
    assert_eq!(ids(&r.json["robots"]), [robot["id"].as_str().unwrap()]);
    assert_eq!(robot["created_by"], "user_a");
    assert_eq!(robot["organization_id"], "org_1");
    assert_eq!(robot["team_id"], "team_1");

    let recorded = env.cp.requests();
    let last = recorded.last().unwrap();
    assert!(last.has_identity && !last.has_authorization);
}

#[test]
fn robots_are_isolated_by_organization_and_team() {
    let env = Env::new();
    let robot = env.create_robot("mine");
    let id = robot["id"].as_str().unwrap();
    let path = format!("/v1/robots/{id}");

    let teammate = identity("user_b", "org_1", "team_1");
    assert_eq!(
        env.send("GET", &path, Auth::Identity(&teammate), None).status,
        200
    );

    for (who, auth_owned) in [
        ("other team", identity("user_c", "org_1", "team_2")),
        ("other org", identity("user_d", "org_2", "team_1")),
    ] {
        let auth = Auth::Identity(&auth_owned);
        for (m, p, body) in [
            ("GET", path.clone(), None),
            ("PATCH", path.clone(), Some(r#"{"name":"stolen"}"#)),
            ("DELETE", path.clone(), None),
            ("POST", format!("{path}/session"), None),
            ("GET", format!("{path}/session"), None),
            ("DELETE", format!("{path}/session"), None),
            (
                "POST",
                format!("{path}/session/participant-token"),
                Some(r#"{"participant_identity":"x"}"#),
            ),
        ] {
            let r = env.send(m, &p, auth, body);
            assert_rcs_error(&r, 404, "robot.not_found");
            let _ = who;
        }
        let r = env.send("GET", "/v1/robots", auth, None);
        assert_eq!(r.json["robots"], json!([]), "{who}");
    }

    // A key bound to another team is isolated the same way.
    let other_key = env
        .cp
        .create_api_key(&Principal::new("user_e", "org_1", "team_9"));
    assert_rcs_error(
        &env.send("GET", &path, Auth::Key(&other_key), None),
        404,
        "robot.not_found",
    );

    // Sessions of other teams are not listed.
    assert_eq!(env.k("POST", &format!("{path}/session"), None).status, 201);
    let r = env.send("GET", "/v1/sessions", Auth::Key(&other_key), None);
    assert_eq!(r.json, json!({"sessions": []}));
    let r = env.k("GET", "/v1/sessions", None);
    assert_eq!(r.json["sessions"].as_array().unwrap().len(), 1);

    // Nothing was changed by the outsiders.
    let r = env.k("GET", &path, None);
    assert_eq!(r.json["name"], "mine");
}

#[test]
fn robot_crud_and_pin_shown_once() {
    let env = Env::new();
    let r = env.k(
        "POST",
        "/v1/robots",
        Some(r#"{"name":"My bot","model":"asimov-v0"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let pin = r.json["pin_code"].as_str().unwrap();
    assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()), "{pin}");
    let robot = &r.json["robot"];
    let id = robot["id"].as_str().unwrap();
    assert!(id.starts_with("rb_") && id.len() == 15, "{id}");
    assert!(id[3..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(robot["type"], "virtual");
    assert_eq!(robot["name"], "My bot");
    assert_eq!(robot["model"], "asimov-v0");
    assert_eq!(robot["language"], "en");
    assert_eq!(robot["voice"], "kokoro");
    assert_eq!(robot["description"], "");
    assert!(robot.get("public_key").is_some());
    let created_at = robot["created_at"].as_str().unwrap().to_owned();
    assert!(is_rfc3339(&created_at), "{created_at}");
    assert!(is_rfc3339(robot["updated_at"].as_str().unwrap()));

    let path = format!("/v1/robots/{id}");
    let got = env.k("GET", &path, None);
    assert_eq!(got.status, 200);
    assert_eq!(&got.json, robot);
    assert!(got.json.get("pin_code").is_none());
    assert!(!got.text.contains(pin) || robot.to_string().contains(pin));
    let list = env.k("GET", "/v1/robots", None);
    assert!(!list.text.contains("pin_code"));

    // Explicit values round-trip.
    let r = env.k(
        "POST",
        "/v1/robots",
        Some(r#"{"name":"b","model":"m","language":"zh-tw","voice":"mms","description":"d"}"#),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json["robot"]["language"], "zh-tw");
    assert_eq!(r.json["robot"]["voice"], "mms");
    assert_eq!(r.json["robot"]["description"], "d");
    assert_ne!(r.json["robot"]["id"].as_str().unwrap(), id);

    // PATCH changes only the sent fields and bumps updated_at.
    std::thread::sleep(Duration::from_millis(5));
    let r = env.k("PATCH", &path, Some(r#"{"voice":"piper"}"#));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["voice"], "piper");
    assert_eq!(r.json["name"], "My bot");
    assert_eq!(r.json["language"], "en");
    assert_eq!(r.json["created_at"], created_at.as_str());
    assert!(r.json["updated_at"].as_str().unwrap() > created_at.as_str());
    let r = env.k("PATCH", &path, Some(r#"{"name":"Renamed","description":"x"}"#));
    assert_eq!(r.json["name"], "Renamed");
    assert_eq!(r.json["voice"], "piper");
    assert_eq!(env.k("GET", &path, None).json["description"], "x");

    // Empty / unknown-field / model PATCH bodies are rejected.
    assert_eq!(
        detail(&env.k("PATCH", &path, Some("{}"))),
        [("value_error".into(), json!(["body"]))]
    );
    assert_eq!(detail(&env.k("PATCH", &path, None))[0].0, "missing");
    assert_eq!(
        detail(&env.k("PATCH", &path, Some(r#"{"model":"x"}"#))),
        [("extra_forbidden".into(), json!(["body", "model"]))]
    );
    assert_eq!(
        detail(&env.k("PATCH", &path, Some(r#"{"name":null}"#))),
        [("string_type".into(), json!(["body", "name"]))]
    );
    // Validation comes first, even for unknown robots (as in FastAPI).
    assert_eq!(
        detail(&env.k("PATCH", "/v1/robots/rb_nope", Some("{}")))[0].0,
        "value_error"
    );
    assert_rcs_error(
        &env.k("PATCH", "/v1/robots/rb_nope", Some(r#"{"name":"n"}"#)),
        404,
        "robot.not_found",
    );

    // DELETE → 204 with an empty body, then 404.
    let r = env.k("DELETE", &path, None);
    assert_eq!(r.status, 204);
    assert_eq!(r.text, "");
    assert_eq!(r.content_type, None);
    assert_rcs_error(&env.k("GET", &path, None), 404, "robot.not_found");
    assert_rcs_error(&env.k("DELETE", &path, None), 404, "robot.not_found");
}

#[test]
fn create_validation_errors_have_fastapi_shape() {
    let env = Env::new();
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(String, Vec<(&str, Value)>)> = vec![
        (
            json!({"name": "", "model": "m"}).to_string(),
            vec![("string_too_short", json!(["body", "name"]))],
        ),
        (
            json!({"name": long(256), "model": "m"}).to_string(),
            vec![("string_too_long", json!(["body", "name"]))],
        ),
        (
            json!({"name": "n", "model": long(256)}).to_string(),
            vec![("string_too_long", json!(["body", "model"]))],
        ),
        (
            json!({"name": "n", "model": "m", "description": long(1001)}).to_string(),
            vec![("string_too_long", json!(["body", "description"]))],
        ),
        (
            json!({"name": "n", "model": "m", "language": "fr"}).to_string(),
            vec![("enum", json!(["body", "language"]))],
        ),
        (
            json!({"name": "n", "model": "m", "voice": "alexa"}).to_string(),
            vec![("enum", json!(["body", "voice"]))],
        ),
        (
            json!({"name": 5, "model": "m"}).to_string(),
            vec![("string_type", json!(["body", "name"]))],
        ),
        (
            json!({"name": "n", "model": "m", "color": "red"}).to_string(),
            vec![("extra_forbidden", json!(["body", "color"]))],
        ),
        (
            json!({"name": "n", "model": "m", "description": null}).to_string(),
            vec![("string_type", json!(["body", "description"]))],
        ),
        (
            json!({"name": "n"}).to_string(),
            vec![("missing", json!(["body", "model"]))],
        ),
        ("[1,2]".into(), vec![("model_attributes_type", json!(["body"]))]),
        (
            "\"text\"".into(),
            vec![("model_attributes_type", json!(["body"]))],
        ),
        (
            json!({"model": "m", "name": "", "voice": 1}).to_string(),
            vec![
                ("string_too_short", json!(["body", "name"])),
                ("enum", json!(["body", "voice"])),
            ],
        ),
    ];
    for (body, expected) in cases {
        let got = detail(&env.k("POST", "/v1/robots", Some(&body)));
        let expected: Vec<(String, Value)> = expected.into_iter().map(|(t, l)| (t.to_owned(), l)).collect();
        assert_eq!(got, expected, "body {body}");
    }
    // Boundaries are inclusive.
    let ok = json!({"name": long(255), "model": long(255), "description": long(1000)}).to_string();
    assert_eq!(env.k("POST", "/v1/robots", Some(&ok)).status, 201);
    // Lengths count characters, not bytes.
    let ok = json!({"name": "é".repeat(255), "model": "m"}).to_string();
    assert_eq!(env.k("POST", "/v1/robots", Some(&ok)).status, 201);

    // Full error entry for a too-short name.
    let r = env.k("POST", "/v1/robots", Some(r#"{"name":"","model":"m"}"#));
    assert_eq!(
        r.json,
        json!({"detail": [{
            "type": "string_too_short",
            "loc": ["body", "name"],
            "msg": "String should have at least 1 character",
            "input": "",
            "ctx": {"min_length": 1},
        }]})
    );

    // Invalid JSON, missing body, wrong content type, bad UTF-8.
    let r = env.k("POST", "/v1/robots", Some(r#"{"name": "#));
    let d = detail(&r);
    assert_eq!(d[0].0, "json_invalid");
    assert_eq!(d[0].1[0], "body");
    assert!(d[0].1[1].is_u64());
    assert_eq!(
        detail(&env.k("POST", "/v1/robots", None)),
        [("missing".into(), json!(["body"]))]
    );
    let r = env
        .try_send(
            &env.agent,
            "POST",
            "/v1/robots",
            Auth::Key(&env.key),
            Some(("text/plain", b"name=x")),
        )
        .unwrap();
    assert_eq!(detail(&r), [("model_attributes_type".into(), json!(["body"]))]);
    let r = env
        .try_send(
            &env.agent,
            "POST",
            "/v1/robots",
            Auth::Key(&env.key),
            Some(("application/json", b"{\"name\":\"\xff\xfe\",\"model\":\"m\"}")),
        )
        .unwrap();
    assert_eq!(detail(&r)[0].0, "json_invalid");
    // Deeply nested JSON does not crash the server.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(env.k("POST", "/v1/robots", Some(&deep)).status, 422);
    assert_eq!(env.robot_ids().len(), 2);
}

#[test]
fn huge_bodies_get_413_and_the_server_survives() {
    let env = Env::new();
    let huge = format!(r#"{{"name":"{}","model":"m"}}"#, "x".repeat(2 << 20));
    let r = env.k("POST", "/v1/robots", Some(&huge));
    assert_eq!(r.status, 413, "{}", &r.text[..r.text.len().min(200)]);
    assert_eq!(env.k("GET", "/v1/robots", None).status, 200);
    let recorded = env.cp.requests();
    assert_eq!(recorded[0].status, Some(413));
    assert_eq!(recorded[0].body, None);
}

#[test]
fn list_paginates_in_creation_order() {
    let env = Env::new();
    let created: Vec<String> = (0..5)
        .map(|i| {
            env.create_robot(&format!("r{i}"))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            None => "/v1/robots?limit=2".to_owned(),
            Some(a) => format!("/v1/robots?limit=2&after_id={a}"),
        };
        let r = env.k("GET", &path, None);
        assert_eq!(r.status, 200, "{}", r.text);
        let page = ids(&r.json["robots"]);
        assert!(page.len() <= 2);
        seen.extend(page.iter().cloned());
        pages += 1;
        match r.json["next_id"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), page.last().map(String::as_str));
                after = Some(next.to_owned());
            }
            None => {
                assert!(r.json.get("next_id").is_some());
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);

    // Exactly one full page: no next_id.
    let r = env.k("GET", "/v1/robots?limit=5", None);
    assert_eq!(ids(&r.json["robots"]), created);
    assert_eq!(r.json["next_id"], Value::Null);

    // Default limit is 20.
    for i in 0..16 {
        env.create_robot(&format!("more{i}"));
    }
    let r = env.k("GET", "/v1/robots", None);
    assert_eq!(r.json["robots"].as_array().unwrap().len(), 20);
    assert!(r.json["next_id"].is_string());
    let r = env.k("GET", "/v1/robots?limit=100", None);
    assert_eq!(r.json["robots"].as_array().unwrap().len(), 21);
    assert_eq!(r.json["next_id"], Value::Null);

    for (q, ty) in [
        ("0", "greater_than_equal"),
        ("101", "less_than_equal"),
        ("abc", "int_parsing"),
        ("-1", "greater_than_equal"),
    ] {
        let r = env.k("GET", &format!("/v1/robots?limit={q}"), None);
        assert_eq!(
            detail(&r),
            [(ty.to_owned(), json!(["query", "limit"]))],
            "limit={q}"
        );
    }
    // Unknown after_id → empty last page.
    let r = env.k("GET", "/v1/robots?after_id=rb_000000000000", None);
    assert_eq!(r.json, json!({"robots": [], "next_id": null}));
}

#[test]
fn sessions_follow_worker_names() {
    let env = Env::new();
    let robot = env.create_robot("s");
    let id = robot["id"].as_str().unwrap();
    let session_path = format!("/v1/robots/{id}/session");

    // Omitted (no body, `{}`, null) → the default dispatch.
    for body in [None, Some("{}"), Some(r#"{"worker_names":null}"#)] {
        env.cp.clear_requests();
        let r = env.k("POST", &session_path, body);
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(env.cp.requests()[0].body.as_deref(), body);
        assert_eq!(r.json["room_name"], id);
        assert_eq!(r.json["livekit_url"], "ws://127.0.0.1:7880");
        let meta = &r.json["room_metadata"];
        assert_eq!(meta["robot_id"], id);
        assert_eq!(meta["status"], "active");
        assert!(is_rfc3339(meta["created_at"].as_str().unwrap()));
        assert_eq!(meta["dispatched_agent_names"], json!(["sim-worker"]));
        assert_eq!(
            meta["required_participants"]["sim-worker"],
            json!({"participant_type": "agent", "min_count": 1, "max_count": 1, "current": 0})
        );
        assert_eq!(meta["required_participants"]["controller"]["min_count"], 0);
        let dispatch = &meta["dispatches"]["sim-worker"];
        assert_eq!(dispatch["agent_name"], "sim-worker");
        assert_eq!(dispatch["status"], "dispatched");
        assert!(dispatch["dispatch_id"].as_str().unwrap().starts_with("AD_"));

        let claims = jwt_claims(r.json["participant_token"].as_str().unwrap(), "secret");
        assert_eq!(claims["iss"], "devkey");
        let sub = claims["sub"].as_str().unwrap();
        assert!(
            sub.starts_with("controller-") && sub.len() == "controller-".len() + 8,
            "{sub}"
        );
        assert!(sub["controller-".len()..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(claims["video"]["room"], id);
        assert_eq!(claims["video"]["roomJoin"], true);
    }

    // [] → nothing dispatched; only the optional controller slot.
    let r = env.k("POST", &session_path, Some(r#"{"worker_names":[]}"#));
    assert_eq!(r.status, 201);
    let meta = &r.json["room_metadata"];
    assert_eq!(meta["dispatched_agent_names"], json!([]));
    assert_eq!(meta["dispatches"], json!({}));
    let slots = meta["required_participants"].as_object().unwrap();
    assert_eq!(slots.keys().collect::<Vec<_>>(), ["controller"]);

    // Names → one agent slot and dispatch each; replaces the previous session.
    let r = env.k(
        "POST",
        &session_path,
        Some(r#"{"worker_names":["sim-worker","rcw"],"scene_id":"scene_1"}"#),
    );
    assert_eq!(r.status, 201);
    let meta = &r.json["room_metadata"];
    assert_eq!(meta["dispatched_agent_names"], json!(["sim-worker", "rcw"]));
    assert_eq!(meta["scene_id"], "scene_1");
    for name in ["sim-worker", "rcw"] {
        assert_eq!(meta["required_participants"][name]["min_count"], 1);
        assert_eq!(meta["dispatches"][name]["agent_name"], name);
    }
    assert_ne!(
        meta["dispatches"]["sim-worker"]["dispatch_id"],
        meta["dispatches"]["rcw"]["dispatch_id"]
    );

    // GET session → SessionInfo of the current session.
    let r = env.k("GET", &session_path, None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["robot_id"], id);
    assert_eq!(r.json["room_name"], id);
    assert_eq!(r.json["scene_id"], "scene_1");
    assert_eq!(r.json["status"], "active");
    assert_eq!(r.json["dispatched_agent_names"], json!(["sim-worker", "rcw"]));
    assert!(is_rfc3339(r.json["created_at"].as_str().unwrap()));

    // Discovery, with and without a scene filter.
    let other = env.create_robot("other");
    let other_id = other["id"].as_str().unwrap();
    assert_eq!(
        env.k(
            "POST",
            &format!("/v1/robots/{other_id}/session"),
            Some(r#"{"worker_names":[]}"#)
        )
        .status,
        201
    );
    let r = env.k("GET", "/v1/sessions", None);
    assert_eq!(r.json["sessions"].as_array().unwrap().len(), 2);
    let r = env.k("GET", "/v1/sessions?scene_id=scene_1", None);
    let sessions = r.json["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["robot_id"], id);
    let r = env.k("GET", "/v1/sessions?scene_id=nope", None);
    assert_eq!(r.json, json!({"sessions": []}));

    // DELETE session → 204, then 404 session.not_found.
    let r = env.k("DELETE", &session_path, None);
    assert_eq!(r.status, 204);
    assert_eq!(r.text, "");
    assert_rcs_error(&env.k("DELETE", &session_path, None), 404, "session.not_found");
    assert_rcs_error(&env.k("GET", &session_path, None), 404, "session.not_found");

    // Deleting a robot ends its session.
    assert_eq!(
        env.k("DELETE", &format!("/v1/robots/{other_id}"), None).status,
        204
    );
    assert_eq!(env.k("GET", "/v1/sessions", None).json, json!({"sessions": []}));

    // Unknown robot.
    assert_rcs_error(
        &env.k("POST", "/v1/robots/rb_missing/session", None),
        404,
        "robot.not_found",
    );
    assert_rcs_error(
        &env.k("GET", "/v1/robots/rb_missing/session", None),
        404,
        "robot.not_found",
    );
}

#[test]
fn session_create_validation() {
    let env = Env::new();
    let id = env.create_robot("v")["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/robots/{id}/session");

    // The deprecated `workers` object is accepted but ignored.
    let r = env.k(
        "POST",
        &path,
        Some(
            r#"{"workers":{"simulation_worker":true,"rcw":"rcw-1","agent_worker":false},"worker_names":[]}"#,
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["room_metadata"]["dispatched_agent_names"], json!([]));
    let r = env.k(
        "POST",
        &path,
        Some(r#"{"rsl_session_grant":"aGVsbG8=","rsl_session_pub":"d29ybGQ="}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    for (body, ty, loc) in [
        (
            r#"{"worker_names":"sim-worker"}"#,
            "list_type",
            json!(["body", "worker_names"]),
        ),
        (
            r#"{"worker_names":["a",1]}"#,
            "string_type",
            json!(["body", "worker_names", 1]),
        ),
        (
            r#"{"workers":{"gpu":true}}"#,
            "extra_forbidden",
            json!(["body", "workers", "gpu"]),
        ),
        (
            r#"{"workers":{"rcw":1}}"#,
            "bool_type",
            json!(["body", "workers", "rcw", "bool"]),
        ),
        (
            r#"{"workers":[]}"#,
            "model_attributes_type",
            json!(["body", "workers"]),
        ),
        (r#"{"scene_id":7}"#, "string_type", json!(["body", "scene_id"])),
        (
            r#"{"rsl_session_grant":"***"}"#,
            "value_error",
            json!(["body", "rsl_session_grant"]),
        ),
        (
            r#"{"worker_name":["a"]}"#,
            "extra_forbidden",
            json!(["body", "worker_name"]),
        ),
    ] {
        let d = detail(&env.k("POST", &path, Some(body)));
        assert_eq!(d[0], (ty.to_owned(), loc), "{body}");
    }
}

#[test]
fn participant_tokens() {
    let env = Env::new();
    let id = env.create_robot("t")["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/robots/{id}/session/participant-token");

    // Works without a session; defaults: name "Viewer", TTL 4 h.
    let before = now_secs();
    let r = env.k(
        "POST",
        &path,
        Some(&json!({"participant_identity": format!("simplesim:{id}")}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["room_name"], id.as_str());
    assert_eq!(r.json["livekit_url"], "ws://127.0.0.1:7880");
    assert_eq!(r.json["participant_identity"], format!("simplesim:{id}"));
    assert!(is_rfc3339(r.json["expires_at"].as_str().unwrap()));
    let claims = jwt_claims(r.json["participant_token"].as_str().unwrap(), "secret");
    assert_eq!(claims["sub"], format!("simplesim:{id}"));
    assert_eq!(claims["name"], "Viewer");
    assert_eq!(claims["iss"], "devkey");
    assert_eq!(
        claims["video"],
        json!({"roomJoin": true, "room": id, "canPublish": true, "canSubscribe": true, "canPublishData": true})
    );
    let nbf = claims["nbf"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert!(nbf >= before - 1 && nbf <= now_secs() + 1);
    assert_eq!(exp - nbf, 14_400);

    // Explicit TTL and name; TTL capped at 6 h.
    let r = env.k(
        "POST",
        &path,
        Some(r#"{"participant_identity":"v1","participant_name":"Alice","ttl_seconds":60}"#),
    );
    let claims = jwt_claims(r.json["participant_token"].as_str().unwrap(), "secret");
    assert_eq!(claims["name"], "Alice");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        60
    );
    let r = env.k(
        "POST",
        &path,
        Some(r#"{"participant_identity":"v2","ttl_seconds":99999}"#),
    );
    let claims = jwt_claims(r.json["participant_token"].as_str().unwrap(), "secret");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        21_600
    );
    let r = env.k(
        "POST",
        &path,
        Some(r#"{"participant_identity":"v3","ttl_seconds":null}"#),
    );
    let claims = jwt_claims(r.json["participant_token"].as_str().unwrap(), "secret");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        14_400
    );

    // Also with a live session.
    assert_eq!(
        env.k("POST", &format!("/v1/robots/{id}/session"), None).status,
        201
    );
    assert_eq!(
        env.k("POST", &path, Some(r#"{"participant_identity":"v4"}"#))
            .status,
        201
    );

    let long = "x".repeat(257);
    for (body, ty, field) in [
        (
            r#"{"participant_identity":"v","ttl_seconds":0}"#.to_owned(),
            "greater_than",
            "ttl_seconds",
        ),
        (
            r#"{"participant_identity":"v","ttl_seconds":-5}"#.to_owned(),
            "greater_than",
            "ttl_seconds",
        ),
        (
            r#"{"participant_identity":"v","ttl_seconds":"60"}"#.to_owned(),
            "int_type",
            "ttl_seconds",
        ),
        (
            r#"{"participant_identity":"v","ttl_seconds":1.5}"#.to_owned(),
            "int_from_float",
            "ttl_seconds",
        ),
        (
            r#"{"participant_identity":""}"#.to_owned(),
            "string_too_short",
            "participant_identity",
        ),
        (
            json!({"participant_identity": long}).to_string(),
            "string_too_long",
            "participant_identity",
        ),
        (
            r#"{"participant_identity":"v","participant_name":""}"#.to_owned(),
            "string_too_short",
            "participant_name",
        ),
        (r#"{}"#.to_owned(), "missing", "participant_identity"),
        (
            r#"{"participant_identity":"v","room":"x"}"#.to_owned(),
            "extra_forbidden",
            "room",
        ),
    ] {
        assert_eq!(
            detail(&env.k("POST", &path, Some(&body))),
            [(ty.to_owned(), json!(["body", field]))],
            "{body}"
        );
    }
    let ok =
        json!({"participant_identity": "x".repeat(256), "participant_name": "y".repeat(256)}).to_string();
    assert_eq!(env.k("POST", &path, Some(&ok)).status, 201);
    assert_rcs_error(
        &env.k(
            "POST",
            "/v1/robots/rb_missing/session/participant-token",
            Some(r#"{"participant_identity":"v"}"#),
        ),
        404,
        "robot.not_found",
    );
}

#[test]
fn minted_tokens_verify_with_the_configured_secret() {
    let cp = ControlPlane::builder()
        .livekit("wss://lk.test", "APIkey", "a-much-longer-secret-value-0123456789")
        .default_worker_names(vec!["rcw".into(), "sim-worker".into()])
        .start()
        .unwrap();
    let env = Env::with(cp);
    let id = env.create_robot("lk")["id"].as_str().unwrap().to_owned();
    let r = env.k("POST", &format!("/v1/robots/{id}/session"), None);
    assert_eq!(r.json["livekit_url"], "wss://lk.test");
    assert_eq!(
        r.json["room_metadata"]["dispatched_agent_names"],
        json!(["rcw", "sim-worker"])
    );
    let claims = jwt_claims(
        r.json["participant_token"].as_str().unwrap(),
        "a-much-longer-secret-value-0123456789",
    );
    assert_eq!(claims["iss"], "APIkey");

    // The public minting helper.
    let settings = LiveKitSettings {
        url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: "secret".into(),
    };
    let options = TokenOptions {
        kind: Some("agent".into()),
        attributes: [("lk.agent.name".to_owned(), "sim-worker".to_owned())].into(),
        ..TokenOptions::default()
    };
    let token = mint_livekit_token(
        &settings,
        "rb_x",
        "agent-1",
        "Sim",
        Duration::from_secs(30),
        &options,
    );
    let claims = jwt_claims(&token, "secret");
    assert_eq!(claims["sub"], "agent-1");
    assert_eq!(claims["kind"], "agent");
    assert_eq!(claims["attributes"]["lk.agent.name"], "sim-worker");
    assert_eq!(claims["video"]["room"], "rb_x");
}

#[test]
fn legacy_command_unknown_paths_and_methods() {
    let env = Env::new();
    let id = env.create_robot("c")["id"].as_str().unwrap().to_owned();
    let r = env.k(
        "POST",
        &format!("/v1/robots/{id}/session/command"),
        Some(r#"{"command":"x"}"#),
    );
    assert_rcs_error(&r, 410, "session.command_removed");

    for path in [
        "/v2/robots",
        "/v1/robots/",
        "/v1/robots/x/y",
        "/",
        "/v1/robots//session",
    ] {
        let r = env.k("GET", path, None);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json, json!({"detail": "Not Found"}), "{path}");
    }
    for (m, path) in [
        ("PUT", "/v1/robots".to_owned()),
        ("DELETE", "/v1/robots".to_owned()),
        ("POST", format!("/v1/robots/{id}")),
        ("PATCH", format!("/v1/robots/{id}/session")),
        ("GET", format!("/v1/robots/{id}/session/participant-token")),
        ("POST", "/v1/sessions".to_owned()),
        ("POST", "/openapi.json".to_owned()),
    ] {
        let r = env.k(m, &path, None);
        assert_eq!(r.status, 405, "{m} {path}");
        assert_eq!(r.json, json!({"detail": "Method Not Allowed"}));
    }
}

#[test]
fn requests_are_recorded_in_order() {
    let env = Env::new();
    let id = env.create_robot("rec")["id"].as_str().unwrap().to_owned();
    env.k("GET", "/v1/robots?limit=3", None);
    env.send(
        "GET",
        "/v1/robots",
        Auth::Identity(&identity("u", "o", "t")),
        None,
    );
    env.send("GET", "/v1/robots", Auth::None, None);
    let recorded = env.cp.requests();
    assert_eq!(recorded.len(), 4);
    let create = &recorded[0];
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, "/v1/robots");
    let body: Value = serde_json::from_str(create.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"name": "rec", "model": "asimov-v0"}));
    assert_eq!(create.content_type.as_deref(), Some("application/json"));
    assert!(create.has_authorization && !create.has_identity);
    assert!(create.user_agent.as_deref().unwrap_or("").starts_with("ureq"));
    assert_eq!(create.status, Some(201));
    assert_eq!(recorded[1].path, "/v1/robots?limit=3");
    assert_eq!(recorded[1].body, None);
    assert_eq!(recorded[1].content_type, None);
    assert!(recorded[2].has_identity && !recorded[2].has_authorization);
    assert_eq!(recorded[3].status, Some(401));
    assert!(!recorded[3].has_identity && !recorded[3].has_authorization);

    env.cp.clear_requests();
    assert!(env.cp.requests().is_empty());
    env.k("DELETE", &format!("/v1/robots/{id}"), None);
    let recorded = env.cp.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].status, Some(204));
}

#[test]
fn status_faults() {
    let env = Env::new();
    env.cp.inject_fault(
        Fault::status(503)
            .with_retry_after("2")
            .method("GET")
            .path("/v1/robots"),
    );
    // Not matching: other method / other path.
    assert_eq!(env.k("GET", "/v1/sessions", None).status, 200);
    let id = env.create_robot("f")["id"].as_str().unwrap().to_owned();
    let r = env.k("GET", "/v1/robots?limit=5", None);
    assert_rcs_error(&r, 503, "dev.injected_fault");
    assert_eq!(r.retry_after.as_deref(), Some("2"));
    // Used up.
    assert_eq!(env.k("GET", "/v1/robots", None).status, 200);

    // times(n), custom body, prefix match; faults apply before auth.
    env.cp.inject_fault(
        Fault::status(429)
            .with_body(r#"{"error":"rate_limited"}"#)
            .path_prefix(format!("/v1/robots/{id}"))
            .times(2),
    );
    for _ in 0..2 {
        let r = env.send("GET", &format!("/v1/robots/{id}/session"), Auth::None, None);
        assert_eq!(r.status, 429);
        assert_eq!(r.json, json!({"error": "rate_limited"}));
        assert_eq!(r.retry_after, None);
    }
    assert_eq!(env.k("GET", &format!("/v1/robots/{id}"), None).status, 200);

    // A status fault does not process the request.
    env.cp.inject_fault(Fault::status(500).method("post"));
    assert_eq!(
        env.k("POST", "/v1/robots", Some(r#"{"name":"n","model":"m"}"#))
            .status,
        500
    );
    assert_eq!(env.robot_ids(), std::slice::from_ref(&id));
    let recorded = env.cp.requests();
    let faulted = recorded.iter().filter(|r| r.status == Some(500)).count();
    assert_eq!(faulted, 1);
}

#[test]
fn delay_fault_trips_client_timeouts_then_processes() {
    let env = Env::new();
    env.cp.inject_fault(
        Fault::delay(Duration::from_millis(1500))
            .method("POST")
            .path("/v1/robots"),
    );
    let fast = agent(Duration::from_millis(300));
    let started = Instant::now();
    let r = env.try_send(
        &fast,
        "POST",
        "/v1/robots",
        Auth::Key(&env.key),
        Some(("application/json", br#"{"name":"slow","model":"m"}"#)),
    );
    assert!(r.is_err(), "expected a timeout, got {r:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The server still handles it after the delay (the robot appears).
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.robot_ids().is_empty() {
        assert!(Instant::now() < deadline, "delayed request never processed");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A short delay with a patient client is just slow.
    env.cp.inject_fault(Fault::delay(Duration::from_millis(200)));
    let started = Instant::now();
    assert_eq!(env.k("GET", "/v1/robots", None).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn drop_connection_loses_the_request() {
    let env = Env::new();
    env.cp
        .inject_fault(Fault::drop_connection().method("POST").path("/v1/robots"));
    let r = env.try_send(
        &agent(Duration::from_secs(5)),
        "POST",
        "/v1/robots",
        Auth::Key(&env.key),
        Some(("application/json", br#"{"name":"lost","model":"m"}"#)),
    );
    assert!(r.is_err(), "expected a transport error, got {r:?}");
    assert!(env.robot_ids().is_empty(), "request must not be processed");
    let recorded = env.cp.requests();
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].status, None);
    assert!(recorded[0].body.as_deref().unwrap().contains("lost"));
}

#[test]
fn drop_after_processing_loses_the_response() {
    let env = Env::new();
    env.cp
        .inject_fault(Fault::drop_after_processing().method("POST").path("/v1/robots"));
    let r = env.try_send(
        &agent(Duration::from_secs(5)),
        "POST",
        "/v1/robots",
        Auth::Key(&env.key),
        Some(("application/json", br#"{"name":"ghost","model":"m"}"#)),
    );
    assert!(r.is_err(), "expected a transport error, got {r:?}");
    let r = env.k("GET", "/v1/robots", None);
    assert_eq!(r.json["robots"][0]["name"], "ghost", "request must be processed");
    assert_eq!(env.cp.requests()[0].status, None);
}

#[test]
fn concurrent_clients() {
    let env = Env::new();
    std::thread::scope(|s| {
        for t in 0..4 {
            let env = &env;
            s.spawn(move || {
                for i in 0..5 {
                    env.create_robot(&format!("t{t}-{i}"));
                }
            });
        }
    });
    assert_eq!(env.robot_ids().len(), 20);
    assert_eq!(env.cp.requests().len(), 21);
}
