//! Server-side RCS behaviour (CONTRACT §1–§3): routing, auth, validation, robots, sessions.
//!
//! Deliberately independent of the client models in `crate::models`: requests are handled as
//! raw JSON and validated the way the real FastAPI/pydantic service does, so client bugs show
//! up as the same errors the platform would return.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::token::{now_rfc3339, random_alnum, random_hex, rfc3339, unix_now};
use super::{mint_livekit_token, LiveKitSettings, Principal, SessionChange, TokenOptions};

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

const LANGUAGES: &[&str] = &["en", "vi", "zh-tw"];
const VOICES: &[&str] = &["kokoro", "piper", "breezy", "mms"];
const DEFAULT_TOKEN_TTL: u64 = 14_400;
const MAX_TOKEN_TTL: u64 = 21_600;
const CONTROLLER_TOKEN_TTL: u64 = 14_400;

/// One parsed HTTP request, transport-independent.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// Raw path (percent-encoded), without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub identity: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// A response to send: status, optional JSON body (None = empty), extra headers.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            body: Some(value.to_string()),
            headers: Vec::new(),
        }
    }

    fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }

    #[cfg(test)]
    fn parsed(&self) -> Value {
        self.body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null)
    }
}

/// An RCS-shaped error: `{"code","message","details":{"request_id","trace_id"}}`.
pub(crate) fn rcs_error(status: u16, code: &str, message: &str) -> Reply {
    let request_id = format!("req_{}", random_hex(16));
    let mut reply = Reply::json(
        status,
        &json!({
            "code": code,
            "message": message,
            "details": {"request_id": request_id, "trace_id": random_hex(32)},
        }),
    );
    reply.headers.push(("x-request-id", request_id));
    reply
}

/// The auth edge's 401 body.
fn unauthorized() -> Reply {
    Reply::json(401, &json!({"error": "unauthorized"}))
}

/// FastAPI's 422 body.
fn validation(errors: Vec<Value>) -> Reply {
    Reply::json(422, &json!({ "detail": errors }))
}

/// One pydantic-style validation error entry.
fn verr(ty: &str, loc: Vec<Value>, msg: &str, input: Value, ctx: Option<Value>) -> Value {
    let mut e = json!({"type": ty, "loc": loc, "msg": msg, "input": input});
    if let Some(ctx) = ctx {
        e["ctx"] = ctx;
    }
    e
}

// ---------------------------------------------------------------------------------------------
// Routing

#[derive(Debug, PartialEq, Eq)]
enum Route {
    OpenApi,
    Robots,
    Robot(String),
    Session(String),
    ParticipantToken(String),
    Command(String),
    Sessions,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        if path == "/openapi.json" {
            return Some(Route::OpenApi);
        }
        let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let id = |s: &str| (!s.is_empty()).then(|| percent_decode(s));
        Some(match segs.as_slice() {
            ["v1", "robots"] => Route::Robots,
            ["v1", "sessions"] => Route::Sessions,
            ["v1", "robots", r] => Route::Robot(id(r)?),
            ["v1", "robots", r, "session"] => Route::Session(id(r)?),
            ["v1", "robots", r, "session", "participant-token"] => Route::ParticipantToken(id(r)?),
            ["v1", "robots", r, "session", "command"] => Route::Command(id(r)?),
            _ => return None,
        })
    }

    fn allowed(&self) -> &'static [&'static str] {
        match self {
            Route::OpenApi | Route::Sessions => &["GET"],
            Route::Robots => &["GET", "POST"],
            Route::Robot(_) => &["GET", "PATCH", "DELETE"],
            Route::Session(_) => &["GET", "POST", "DELETE"],
            Route::ParticipantToken(_) | Route::Command(_) => &["POST"],
        }
    }
}

/// Decodes `%XX` escapes (lossy on invalid UTF-8; malformed escapes are kept as-is).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Query string → last value per key (Starlette's `QueryParams.get`), `+` as space.
fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(
            percent_decode(&k.replace('+', " ")),
            percent_decode(&v.replace('+', " ")),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Body parsing and validation (FastAPI/pydantic v2 shapes)

/// Reads the JSON body. Empty (or `null`) body: `Ok(None)` if optional, else a `missing` error.
fn parse_body(req: &Request<'_>, required: bool) -> Result<Option<Value>, Reply> {
    let missing = || {
        validation(vec![verr(
            "missing",
            vec![json!("body")],
            "Field required",
            Value::Null,
            None,
        )])
    };
    if req.body.is_empty() {
        return if required { Err(missing()) } else { Ok(None) };
    }
    let is_json = match req.content_type {
        None => true,
        Some(ct) => {
            let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        }
    };
    if !is_json {
        return Err(validation(vec![verr(
            "model_attributes_type",
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            json!(String::from_utf8_lossy(req.body)),
            None,
        )]));
    }
    match serde_json::from_slice::<Value>(req.body) {
        Ok(Value::Null) if required => Err(missing()),
        Ok(Value::Null) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let pos = byte_offset(req.body, e.line(), e.column());
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or("").to_owned();
            Err(validation(vec![verr(
                "json_invalid",
                vec![json!("body"), json!(pos)],
                "JSON decode error",
                json!({}),
                Some(json!({ "error": msg })),
            )]))
        }
    }
}

/// (1-based line, column) from serde_json → 0-based byte offset.
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in body.split(|b| *b == b'\n').enumerate() {
        if i + 1 == line {
            return (offset + column.saturating_sub(1)).min(body.len());
        }
        offset += l.len() + 1;
    }
    body.len()
}

#[derive(Clone, Copy)]
enum Ty {
    Str { min: usize, max: usize },
    AnyStr,
    Enum(&'static [&'static str]),
    StrList,
    Workers,
    PosInt,
    Base64,
}

struct Field {
    name: &'static str,
    ty: Ty,
    required: bool,
    nullable: bool,
}

const fn field(name: &'static str, ty: Ty, required: bool, nullable: bool) -> Field {
    Field {
        name,
        ty,
        required,
        nullable,
    }
}

const ROBOT_CREATE: &[Field] = &[
    field("name", Ty::Str { min: 1, max: 255 }, true, false),
    field("model", Ty::Str { min: 1, max: 255 }, true, false),
    field("language", Ty::Enum(LANGUAGES), false, false),
    field("voice", Ty::Enum(VOICES), false, false),
    field("description", Ty::Str { min: 0, max: 1000 }, false, false),
];

const ROBOT_UPDATE: &[Field] = &[
    field("name", Ty::Str { min: 1, max: 255 }, false, false),
    field("language", Ty::Enum(LANGUAGES), false, false),
    field("voice", Ty::Enum(VOICES), false, false),
    field("description", Ty::Str { min: 0, max: 1000 }, false, false),
];

const SESSION_CREATE: &[Field] = &[
    field("worker_names", Ty::StrList, false, true),
    field("scene_id", Ty::AnyStr, false, true),
    field("workers", Ty::Workers, false, true),
    field("rsl_session_grant", Ty::Base64, false, true),
    field("rsl_session_pub", Ty::Base64, false, true),
];

const PARTICIPANT_TOKEN: &[Field] = &[
    field("participant_identity", Ty::Str { min: 1, max: 256 }, true, false),
    field("participant_name", Ty::Str { min: 1, max: 256 }, false, false),
    field("ttl_seconds", Ty::PosInt, false, true),
];

const DICT_MSG: &str = "Input should be a valid dictionary or object to extract fields from";

/// Validates `body` against `fields` (unknown fields are `extra_forbidden`).
/// Returns the fields present (including explicit nulls where allowed).
fn validate(body: &Value, fields: &[Field]) -> Result<Map<String, Value>, Reply> {
    let mut errors = Vec::new();
    let out = validate_object(body, fields, &[json!("body")], &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(validation(errors))
    }
}

fn validate_object(
    body: &Value,
    fields: &[Field],
    loc: &[Value],
    errors: &mut Vec<Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let Value::Object(obj) = body else {
        errors.push(verr(
            "model_attributes_type",
            loc.to_vec(),
            DICT_MSG,
            body.clone(),
            None,
        ));
        return out;
    };
    for f in fields {
        let mut floc = loc.to_vec();
        floc.push(json!(f.name));
        match obj.get(f.name) {
            None if f.required => {
                errors.push(verr("missing", floc, "Field required", body.clone(), None));
            }
            None => {}
            Some(Value::Null) if f.nullable => {
                out.insert(f.name.into(), Value::Null);
            }
            // `check` records the errors of an invalid value.
            Some(v) if check(f.ty, v, &floc, errors) => {
                out.insert(f.name.into(), v.clone());
            }
            Some(_) => {}
        }
    }
    for (k, v) in obj {
        if !fields.iter().any(|f| f.name == k) {
            let mut floc = loc.to_vec();
            floc.push(json!(k));
            errors.push(verr(
                "extra_forbidden",
                floc,
                "Extra inputs are not permitted",
                v.clone(),
                None,
            ));
        }
    }
    out
}

/// Checks one value; pushes errors and returns whether it is valid.
fn check(ty: Ty, v: &Value, loc: &[Value], errors: &mut Vec<Value>) -> bool {
    let before = errors.len();
    let string_type = |errors: &mut Vec<Value>| {
        errors.push(verr(
            "string_type",
            loc.to_vec(),
            "Input should be a valid string",
            v.clone(),
            None,
        ));
    };
    match ty {
        Ty::Str { min, max } => match v.as_str() {
            None => string_type(errors),
            Some(s) => {
                let n = s.chars().count();
                if n < min {
                    let unit = if min == 1 { "character" } else { "characters" };
                    errors.push(verr(
                        "string_too_short",
                        loc.to_vec(),
                        &format!("String should have at least {min} {unit}"),
                        v.clone(),
                        Some(json!({ "min_length": min })),
                    ));
                } else if n > max {
                    errors.push(verr(
                        "string_too_long",
                        loc.to_vec(),
                        &format!("String should have at most {max} characters"),
                        v.clone(),
                        Some(json!({ "max_length": max })),
                    ));
                }
            }
        },
        Ty::AnyStr => {
            if !v.is_string() {
                string_type(errors);
            }
        }
        Ty::Enum(values) => {
            if !v.as_str().is_some_and(|s| values.contains(&s)) {
                let expected = enum_expected(values);
                errors.push(verr(
                    "enum",
                    loc.to_vec(),
                    &format!("Input should be {expected}"),
                    v.clone(),
                    Some(json!({ "expected": expected })),
                ));
            }
        }
        Ty::StrList => match v.as_array() {
            None => errors.push(verr(
                "list_type",
                loc.to_vec(),
                "Input should be a valid list",
                v.clone(),
                None,
            )),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mut iloc = loc.to_vec();
                    iloc.push(json!(i));
                    check(Ty::AnyStr, item, &iloc, errors);
                }
            }
        },
        Ty::Workers => {
            const KEYS: &[&str] = &["simulation_worker", "rcw", "agent_worker"];
            match v.as_object() {
                None => errors.push(verr(
                    "model_attributes_type",
                    loc.to_vec(),
                    DICT_MSG,
                    v.clone(),
                    None,
                )),
                Some(obj) => {
                    for (k, val) in obj {
                        let mut kloc = loc.to_vec();
                        kloc.push(json!(k));
                        if !KEYS.contains(&k.as_str()) {
                            errors.push(verr(
                                "extra_forbidden",
                                kloc,
                                "Extra inputs are not permitted",
                                val.clone(),
                                None,
                            ));
                        } else if !(val.is_boolean() || val.is_string() || val.is_null()) {
                            let mut bloc = kloc.clone();
                            bloc.push(json!("bool"));
                            errors.push(verr(
                                "bool_type",
                                bloc,
                                "Input should be a valid boolean",
                                val.clone(),
                                None,
                            ));
                            kloc.push(json!("str"));
                            errors.push(verr(
                                "string_type",
                                kloc,
                                "Input should be a valid string",
                                val.clone(),
                                None,
                            ));
                        }
                    }
                }
            }
        }
        Ty::PosInt => {
            let int = match v {
                Value::Number(n) => {
                    if n.is_i64() || n.is_u64() {
                        Ok(n.as_f64().unwrap_or(0.0))
                    } else {
                        let f = n.as_f64().unwrap_or(f64::NAN);
                        if f.fract() == 0.0 {
                            Ok(f)
                        } else {
                            Err((
                                "int_from_float",
                                "Input should be a valid integer, got a number with a fractional part",
                            ))
                        }
                    }
                }
                _ => Err(("int_type", "Input should be a valid integer")),
            };
            match int {
                Err((ty, msg)) => errors.push(verr(ty, loc.to_vec(), msg, v.clone(), None)),
                Ok(n) if n <= 0.0 => errors.push(verr(
                    "greater_than",
                    loc.to_vec(),
                    "Input should be greater than 0",
                    v.clone(),
                    Some(json!({"gt": 0})),
                )),
                Ok(_) => {}
            }
        }
        Ty::Base64 => match v.as_str() {
            None => string_type(errors),
            Some(s) => {
                if STANDARD.decode(s).is_err() && URL_SAFE.decode(s).is_err() {
                    errors.push(verr(
                        "value_error",
                        loc.to_vec(),
                        "Value error, invalid base64",
                        v.clone(),
                        Some(json!({"error": "invalid base64"})),
                    ));
                }
            }
        },
    }
    errors.len() == before
}

/// `'en', 'vi' or 'zh-tw'` (pydantic's enum expectation text).
fn enum_expected(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Robot {
    id: String,
    name: String,
    model: String,
    language: String,
    voice: String,
    description: String,
    organization_id: String,
    team_id: String,
    created_by: String,
    created_at: String,
    updated_at: String,
}

impl Robot {
    fn out(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "model": self.model,
            "type": "virtual",
            "language": self.language,
            "voice": self.voice,
            "description": self.description,
            "team_id": self.team_id,
            "organization_id": self.organization_id,
            "created_by": self.created_by,
            "public_key": null,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }

    fn visible_to(&self, p: &Principal) -> bool {
        self.organization_id == p.organization_id && self.team_id == p.team_id
    }
}

struct Session {
    robot_id: String,
    organization_id: String,
    team_id: String,
    scene_id: Option<String>,
    created_at: String,
    /// (agent name, dispatch id), unique names in request order.
    dispatches: Vec<(String, String)>,
}

impl Session {
    fn names(&self) -> Vec<&str> {
        self.dispatches.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn metadata(&self) -> Value {
        let mut slots = Map::new();
        slots.insert(
            "controller".into(),
            json!({"participant_type": "controller", "min_count": 0, "max_count": null, "current": 0}),
        );
        let mut dispatches = Map::new();
        for (name, id) in &self.dispatches {
            slots.insert(
                name.clone(),
                json!({"participant_type": "agent", "min_count": 1, "max_count": 1, "current": 0}),
            );
            dispatches.insert(
                name.clone(),
                json!({"agent_name": name, "dispatch_id": id, "status": "dispatched"}),
            );
        }
        json!({
            "robot_id": self.robot_id,
            "status": "active",
            "created_at": self.created_at,
            "required_participants": slots,
            "dispatches": dispatches,
            "dispatched_agent_names": self.names(),
            "scene_id": self.scene_id,
        })
    }

    fn info(&self) -> Value {
        json!({
            "robot_id": self.robot_id,
            "room_name": self.robot_id,
            "scene_id": self.scene_id,
            "status": "active",
            "num_participants": 0,
            "dispatched_agent_names": self.names(),
            "created_at": self.created_at,
        })
    }
}

/// The emulated control plane's state.
pub(crate) struct Rcs {
    pub(crate) keys: HashMap<String, Principal>,
    robots: Vec<Robot>,
    sessions: HashMap<String, Session>,
    default_worker_names: Vec<String>,
    livekit: LiveKitSettings,
    /// Session changes not yet reported to the embedding platform.
    changes: Vec<SessionChange>,
}

impl Rcs {
    pub(crate) fn new(livekit: LiveKitSettings, default_worker_names: Vec<String>) -> Rcs {
        Rcs {
            keys: HashMap::new(),
            robots: Vec::new(),
            sessions: HashMap::new(),
            default_worker_names,
            livekit,
            changes: Vec::new(),
        }
    }

    /// The session changes since the last call, oldest first.
    pub(crate) fn take_changes(&mut self) -> Vec<SessionChange> {
        std::mem::take(&mut self.changes)
    }

    fn remove_session(&mut self, robot_id: &str) {
        if self.sessions.remove(robot_id).is_some() {
            self.changes.push(SessionChange::Deleted {
                robot_id: robot_id.to_owned(),
                room_name: robot_id.to_owned(),
            });
        }
    }

    /// Handles one request end to end.
    pub(crate) fn handle(&mut self, req: &Request<'_>) -> Reply {
        let Some(route) = Route::parse(req.path) else {
            return Reply::json(404, &json!({"detail": "Not Found"}));
        };
        if !route.allowed().contains(&req.method) {
            let mut reply = Reply::json(405, &json!({"detail": "Method Not Allowed"}));
            reply.headers.push(("allow", route.allowed().join(", ")));
            return reply;
        }
        if route == Route::OpenApi {
            return Reply {
                status: 200,
                body: Some(OPENAPI.to_owned()),
                headers: Vec::new(),
            };
        }
        let principal = match self.authenticate(req) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let result = match (&route, req.method) {
            (Route::Robots, "POST") => self.create_robot(req, &principal),
            (Route::Robots, _) => self.list_robots(req, &principal),
            (Route::Robot(id), "GET") => self
                .robot(id, &principal)
                .map(|i| Reply::json(200, &self.robots[i].out())),
            (Route::Robot(id), "PATCH") => self.update_robot(req, id, &principal),
            (Route::Robot(id), _) => self.delete_robot(id, &principal),
            (Route::Session(id), "POST") => self.create_session(req, id, &principal),
            (Route::Session(id), "GET") => self.get_session(id, &principal),
            (Route::Session(id), _) => self.delete_session(id, &principal),
            (Route::ParticipantToken(id), _) => self.participant_token(req, id, &principal),
            (Route::Command(_), _) => Err(rcs_error(
                410,
                "session.command_removed",
                "POST /session/command was removed; send runtime.* RPCs over the LiveKit room",
            )),
            (Route::Sessions, _) => Ok(self.list_sessions(req, &principal)),
            (Route::OpenApi, _) => Err(Reply::json(404, &json!({"detail": "Not Found"}))),
        };
        result.unwrap_or_else(|e| e)
    }

    /// API key (wins when present) or direct identity.
    fn authenticate(&self, req: &Request<'_>) -> Result<Principal, Reply> {
        if let Some(auth) = req.authorization {
            let (scheme, key) = auth.trim().split_once(' ').ok_or_else(unauthorized)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(unauthorized());
            }
            return self.keys.get(key.trim()).cloned().ok_or_else(unauthorized);
        }
        let identity = req.identity.ok_or_else(unauthorized)?;
        let v: Value = serde_json::from_str(identity).map_err(|_| unauthorized())?;
        let text = |k: &str| -> Result<String, Reply> {
            match v.get(k).and_then(Value::as_str) {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(unauthorized()),
            }
        };
        let list = |k: &str| -> Result<Vec<String>, Reply> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned).ok_or_else(unauthorized))
                    .collect(),
                Some(_) => Err(unauthorized()),
            }
        };
        Ok(Principal {
            sub: text("sub")?,
            organization_id: text("organization_id")?,
            team_id: text("team_id")?,
            roles: list("roles")?,
            scopes: list("scopes")?,
        })
    }

    /// Index of a robot visible to `p`, else 404 `robot.not_found`.
    fn robot(&self, id: &str, p: &Principal) -> Result<usize, Reply> {
        self.robots
            .iter()
            .position(|r| r.id == id && r.visible_to(p))
            .ok_or_else(|| rcs_error(404, "robot.not_found", &format!("Robot '{id}' not found")))
    }

    fn create_robot(&mut self, req: &Request<'_>, p: &Principal) -> Result<Reply, Reply> {
        let body = parse_body(req, true)?.unwrap_or(Value::Null);
        let f = validate(&body, ROBOT_CREATE)?;
        let s = |k: &str, default: &str| f.get(k).and_then(Value::as_str).unwrap_or(default).to_owned();
        let now = now_rfc3339();
        let robot = Robot {
            id: format!("rb_{}", random_hex(12)),
            name: s("name", ""),
            model: s("model", ""),
            language: s("language", "en"),
            voice: s("voice", "kokoro"),
            description: s("description", ""),
            organization_id: p.organization_id.clone(),
            team_id: p.team_id.clone(),
            created_by: p.sub.clone(),
            created_at: now.clone(),
            updated_at: now,
        };
        let out = robot.out();
        self.robots.push(robot);
        let pin = format!("{:06}", fastrand::u32(0..1_000_000));
        Ok(Reply::json(201, &json!({"robot": out, "pin_code": pin})))
    }

    fn list_robots(&self, req: &Request<'_>, p: &Principal) -> Result<Reply, Reply> {
        let q = parse_query(req.query);
        let limit = match q.get("limit") {
            None => 20,
            Some(raw) => {
                let loc = vec![json!("query"), json!("limit")];
                let n: i64 = raw.trim().parse().map_err(|_| {
                    validation(vec![verr(
                        "int_parsing",
                        loc.clone(),
                        "Input should be a valid integer, unable to parse string as an integer",
                        json!(raw),
                        None,
                    )])
                })?;
                if n < 1 {
                    return Err(validation(vec![verr(
                        "greater_than_equal",
                        loc,
                        "Input should be greater than or equal to 1",
                        json!(raw),
                        Some(json!({"ge": 1})),
                    )]));
                }
                if n > 100 {
                    return Err(validation(vec![verr(
                        "less_than_equal",
                        loc,
                        "Input should be less than or equal to 100",
                        json!(raw),
                        Some(json!({"le": 100})),
                    )]));
                }
                n as usize
            }
        };
        let visible: Vec<&Robot> = self.robots.iter().filter(|r| r.visible_to(p)).collect();
        let start = match q.get("after_id").filter(|a| !a.is_empty()) {
            None => 0,
            Some(after) => visible
                .iter()
                .position(|r| &r.id == after)
                .map_or(visible.len(), |i| i + 1),
        };
        let page: Vec<&Robot> = visible.iter().skip(start).take(limit).copied().collect();
        let more = start + page.len() < visible.len();
        let next_id = if more {
            page.last().map(|r| json!(r.id)).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let robots: Vec<Value> = page.iter().map(|r| r.out()).collect();
        Ok(Reply::json(200, &json!({"robots": robots, "next_id": next_id})))
    }

    fn update_robot(&mut self, req: &Request<'_>, id: &str, p: &Principal) -> Result<Reply, Reply> {
        let body = parse_body(req, true)?.unwrap_or(Value::Null);
        let f = validate(&body, ROBOT_UPDATE)?;
        if f.is_empty() {
            return Err(validation(vec![verr(
                "value_error",
                vec![json!("body")],
                "Value error, at least one field must be provided",
                body,
                Some(json!({"error": "at least one field must be provided"})),
            )]));
        }
        let i = self.robot(id, p)?;
        let robot = &mut self.robots[i];
        let s = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(v) = s("name") {
            robot.name = v;
        }
        if let Some(v) = s("language") {
            robot.language = v;
        }
        if let Some(v) = s("voice") {
            robot.voice = v;
        }
        if let Some(v) = s("description") {
            robot.description = v;
        }
        robot.updated_at = now_rfc3339();
        Ok(Reply::json(200, &robot.out()))
    }

    fn delete_robot(&mut self, id: &str, p: &Principal) -> Result<Reply, Reply> {
        let i = self.robot(id, p)?;
        let robot = self.robots.remove(i);
        self.remove_session(&robot.id);
        Ok(Reply::no_content())
    }

    fn create_session(&mut self, req: &Request<'_>, id: &str, p: &Principal) -> Result<Reply, Reply> {
        let body = parse_body(req, false)?;
        let f = match &body {
            Some(b) => validate(b, SESSION_CREATE)?,
            None => Map::new(),
        };
        let i = self.robot(id, p)?;
        let robot_id = self.robots[i].id.clone();
        let names: Vec<String> = match f.get("worker_names") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => self.default_worker_names.clone(),
        };
        let mut dispatches: Vec<(String, String)> = Vec::new();
        for name in names {
            if !dispatches.iter().any(|(n, _)| *n == name) {
                dispatches.push((name, format!("AD_{}", random_alnum(12))));
            }
        }
        let session = Session {
            robot_id: robot_id.clone(),
            organization_id: p.organization_id.clone(),
            team_id: p.team_id.clone(),
            scene_id: f.get("scene_id").and_then(Value::as_str).map(str::to_owned),
            created_at: now_rfc3339(),
            dispatches,
        };
        let identity = format!("controller-{}", random_hex(8));
        let token = mint_livekit_token(
            &self.livekit,
            &robot_id,
            &identity,
            "controller",
            Duration::from_secs(CONTROLLER_TOKEN_TTL),
            &TokenOptions::default(),
        );
        let reply = json!({
            "room_name": robot_id,
            "livekit_url": self.livekit.url,
            "participant_token": token,
            "room_metadata": session.metadata(),
        });
        // A new session replaces the robot's previous one, whose room ends.
        self.remove_session(&robot_id);
        self.changes.push(SessionChange::Created {
            robot_id: robot_id.clone(),
            room_name: robot_id.clone(),
            agent_names: session.names().into_iter().map(str::to_owned).collect(),
            scene_id: session.scene_id.clone(),
        });
        self.sessions.insert(robot_id, session);
        Ok(Reply::json(201, &reply))
    }

    fn session(&self, id: &str, p: &Principal) -> Result<&Session, Reply> {
        let i = self.robot(id, p)?;
        self.sessions.get(&self.robots[i].id).ok_or_else(|| {
            rcs_error(
                404,
                "session.not_found",
                &format!("No live session for robot '{id}'"),
            )
        })
    }

    fn get_session(&self, id: &str, p: &Principal) -> Result<Reply, Reply> {
        Ok(Reply::json(200, &self.session(id, p)?.info()))
    }

    fn delete_session(&mut self, id: &str, p: &Principal) -> Result<Reply, Reply> {
        let robot_id = self.session(id, p)?.robot_id.clone();
        self.remove_session(&robot_id);
        Ok(Reply::no_content())
    }

    fn participant_token(&mut self, req: &Request<'_>, id: &str, p: &Principal) -> Result<Reply, Reply> {
        let body = parse_body(req, true)?.unwrap_or(Value::Null);
        let f = validate(&body, PARTICIPANT_TOKEN)?;
        let i = self.robot(id, p)?;
        let room = self.robots[i].id.clone();
        let identity = f
            .get("participant_identity")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = f
            .get("participant_name")
            .and_then(Value::as_str)
            .unwrap_or("Viewer")
            .to_owned();
        let ttl = match f.get("ttl_seconds").and_then(Value::as_f64) {
            Some(t) if t >= MAX_TOKEN_TTL as f64 => MAX_TOKEN_TTL,
            Some(t) => t as u64,
            None => DEFAULT_TOKEN_TTL,
        };
        let token = mint_livekit_token(
            &self.livekit,
            &room,
            &identity,
            &name,
            Duration::from_secs(ttl),
            &TokenOptions::default(),
        );
        let expires_at = rfc3339(Duration::from_secs(unix_now().as_secs() + ttl));
        Ok(Reply::json(
            201,
            &json!({
                "room_name": room,
                "livekit_url": self.livekit.url,
                "participant_token": token,
                "participant_identity": identity,
                "expires_at": expires_at,
            }),
        ))
    }

    fn list_sessions(&self, req: &Request<'_>, p: &Principal) -> Reply {
        let q = parse_query(req.query);
        let scene = q.get("scene_id").filter(|s| !s.is_empty());
        let mut sessions: Vec<&Session> = self
            .sessions
            .values()
            .filter(|s| s.organization_id == p.organization_id && s.team_id == p.team_id)
            .filter(|s| scene.is_none() || s.scene_id.as_ref() == scene)
            .collect();
        sessions.sort_by(|a, b| (&a.created_at, &a.robot_id).cmp(&(&b.created_at, &b.robot_id)));
        let infos: Vec<Value> = sessions.iter().map(|s| s.info()).collect();
        Reply::json(200, &json!({ "sessions": infos }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lk() -> LiveKitSettings {
        LiveKitSettings {
            url: "ws://127.0.0.1:7880".into(),
            api_key: "devkey".into(),
            api_secret: "secret".into(),
        }
    }

    fn req<'a>(method: &'a str, path: &'a str, body: &'a str) -> Request<'a> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        Request {
            method,
            path,
            query,
            authorization: None,
            identity: Some(r#"{"sub":"u1","organization_id":"o1","team_id":"t1"}"#),
            content_type: Some("application/json"),
            body: body.as_bytes(),
        }
    }

    #[test]
    fn routes_parse() {
        assert_eq!(Route::parse("/v1/robots"), Some(Route::Robots));
        assert_eq!(Route::parse("/v1/robots/rb_1"), Some(Route::Robot("rb_1".into())));
        assert_eq!(
            Route::parse("/v1/robots/rb%5F1/session"),
            Some(Route::Session("rb_1".into()))
        );
        assert_eq!(
            Route::parse("/v1/robots/x/session/participant-token"),
            Some(Route::ParticipantToken("x".into()))
        );
        assert_eq!(Route::parse("/v1/robots/"), None);
        assert_eq!(Route::parse("/v1/robots//session"), None);
        assert_eq!(Route::parse("/v1/robots/x/other"), None);
        assert_eq!(Route::parse(""), None);
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(
            parse_query(Some("a=1&b=x+y&a=2")).get("a").map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn enum_expectation_text() {
        assert_eq!(enum_expected(LANGUAGES), "'en', 'vi' or 'zh-tw'");
        assert_eq!(enum_expected(&["a"]), "'a'");
    }

    #[test]
    fn json_error_offset() {
        assert_eq!(byte_offset(b"{\n  x", 2, 3), 4);
    }

    #[test]
    fn validation_shapes() {
        let mut rcs = Rcs::new(lk(), vec![]);
        let r = rcs.handle(&req(
            "POST",
            "/v1/robots",
            r#"{"name":"","model":"m","extra":1,"language":"fr"}"#,
        ));
        assert_eq!(r.status, 422);
        let v = r.parsed();
        let types: Vec<&str> = v["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["string_too_short", "enum", "extra_forbidden"]);
        let r = rcs.handle(&req("POST", "/v1/robots", "{"));
        assert_eq!(r.parsed()["detail"][0]["type"], "json_invalid");
        let r = rcs.handle(&req("POST", "/v1/robots", ""));
        assert_eq!(r.parsed()["detail"][0]["type"], "missing");
    }

    #[test]
    fn create_then_get() {
        let mut rcs = Rcs::new(lk(), vec!["sim-worker".into()]);
        let r = rcs.handle(&req("POST", "/v1/robots", r#"{"name":"a","model":"m"}"#));
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.parsed()["robot"]["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/robots/{id}");
        let r = rcs.handle(&req("GET", &path, ""));
        assert_eq!(r.status, 200);
        assert!(r.parsed().get("pin_code").is_none());
    }

    #[test]
    fn session_changes_are_reported_in_order() {
        let mut rcs = Rcs::new(lk(), vec!["sim-worker".into()]);
        let r = rcs.handle(&req("POST", "/v1/robots", r#"{"name":"a","model":"m"}"#));
        let id = r.parsed()["robot"]["id"].as_str().unwrap().to_owned();
        let session = format!("/v1/robots/{id}/session");
        let created = |agents: &[&str], scene: Option<&str>| SessionChange::Created {
            robot_id: id.clone(),
            room_name: id.clone(),
            agent_names: agents.iter().map(|a| a.to_string()).collect(),
            scene_id: scene.map(str::to_owned),
        };
        let deleted = SessionChange::Deleted {
            robot_id: id.clone(),
            room_name: id.clone(),
        };
        assert!(
            rcs.take_changes().is_empty(),
            "creating a robot is no session change"
        );

        assert_eq!(rcs.handle(&req("POST", &session, "")).status, 201);
        assert_eq!(rcs.take_changes(), [created(&["sim-worker"], None)]);

        let body = r#"{"worker_names":[],"scene_id":"warehouse"}"#;
        assert_eq!(rcs.handle(&req("POST", &session, body)).status, 201);
        assert_eq!(
            rcs.take_changes(),
            [deleted.clone(), created(&[], Some("warehouse"))],
            "a new session replaces the old one"
        );

        assert_eq!(rcs.handle(&req("DELETE", &session, "")).status, 204);
        assert_eq!(rcs.take_changes(), std::slice::from_ref(&deleted));
        assert_eq!(rcs.handle(&req("DELETE", &session, "")).status, 404);
        assert!(rcs.take_changes().is_empty());

        assert_eq!(rcs.handle(&req("POST", &session, "")).status, 201);
        rcs.take_changes();
        let robot = format!("/v1/robots/{id}");
        assert_eq!(rcs.handle(&req("DELETE", &robot, "")).status, 204);
        assert_eq!(
            rcs.take_changes(),
            [deleted],
            "deleting the robot ends its session"
        );
    }

    #[test]
    fn handler_is_total_on_garbage() {
        let mut rcs = Rcs::new(lk(), vec!["sim-worker".into()]);
        let key = "sk_live_test".to_owned();
        rcs.keys.insert(key.clone(), Principal::new("u1", "o1", "t1"));
        let bearer = format!("Bearer {key}");
        let created = rcs.handle(&req("POST", "/v1/robots", r#"{"name":"a","model":"m"}"#));
        let id = created.parsed()["robot"]["id"].as_str().unwrap().to_owned();
        let paths = [
            "/v1/robots".to_owned(),
            format!("/v1/robots/{id}"),
            format!("/v1/robots/{id}/session"),
            format!("/v1/robots/{id}/session/participant-token"),
            "/v1/sessions".to_owned(),
            "/v1/robots/%ff%/session".to_owned(),
        ];
        let pieces: [&[u8]; 12] = [
            b"{",
            b"}",
            b"\"name\":",
            b"\"x\"",
            b"[",
            b"]",
            b",",
            b"null",
            b"1e999",
            b"\xff",
            b"\"worker_names\":",
            b"\"ttl_seconds\":",
        ];
        let methods = ["GET", "POST", "PATCH", "DELETE", "PUT"];
        let queries = [
            None,
            Some("limit=%zz"),
            Some("limit=1&after_id="),
            Some("scene_id=%"),
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3000 {
            let mut body = Vec::new();
            for _ in 0..rng.usize(0..8) {
                body.extend_from_slice(pieces[rng.usize(..pieces.len())]);
            }
            let path = &paths[rng.usize(..paths.len())];
            let request = Request {
                method: methods[rng.usize(..methods.len())],
                path,
                query: queries[rng.usize(..queries.len())],
                authorization: rng.bool().then_some(bearer.as_str()),
                identity: [
                    None,
                    Some("{"),
                    Some(r#"{"sub":"u1","organization_id":"o1","team_id":"t1"}"#),
                ][rng.usize(..3)],
                content_type: [None, Some("application/json"), Some("text/plain")][rng.usize(..3)],
                body: &body,
            };
            let reply = rcs.handle(&request);
            assert!(
                [200, 201, 204, 401, 404, 405, 410, 422].contains(&reply.status),
                "{} {path}: {}",
                reply.status,
                String::from_utf8_lossy(&body)
            );
            if reply.status == 204 {
                assert!(reply.body.is_none());
            } else {
                assert!(reply.parsed().is_object(), "{:?}", reply.body);
            }
        }
    }
}
