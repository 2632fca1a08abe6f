//! Control-plane wire models: what the RCS API accepts and returns.
//!
//! Responses tolerate fields this SDK does not know and enum values it has not seen yet
//! (kept as `Other`). Requests serialize exactly the contract's fields, and only the ones set.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::open_enum::open_enum;
use crate::secret::Secret;

open_enum! {
    /// Whether a robot is a physical machine or a simulated one.
    pub enum RobotType {
        /// A physical robot.
        Physical = "physical",
        /// A simulated robot.
        Virtual = "virtual",
    }
}

open_enum! {
    /// The language a robot speaks.
    pub enum Language {
        /// English (the platform default).
        En = "en",
        /// Vietnamese.
        Vi = "vi",
        /// Traditional Chinese (Taiwan).
        ZhTw = "zh-tw",
    }
}

open_enum! {
    /// The text-to-speech voice of a robot.
    pub enum Voice {
        /// Kokoro (the platform default).
        Kokoro = "kokoro",
        /// Piper.
        Piper = "piper",
        /// Breezy.
        Breezy = "breezy",
        /// MMS.
        Mms = "mms",
    }
}

open_enum! {
    /// The lifecycle state of a robot session.
    pub enum SessionStatus {
        /// The room exists; dispatched workers may not have joined yet.
        Initializing = "initializing",
        /// The session is live.
        Active = "active",
    }
}

/// A robot record (`RobotOut`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Robot {
    /// Robot id, e.g. `rb_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Robot model, e.g. `asimov-v0`.
    pub model: String,
    /// Physical or virtual.
    #[serde(rename = "type")]
    pub robot_type: RobotType,
    /// Spoken language.
    pub language: Language,
    /// Text-to-speech voice.
    pub voice: Voice,
    /// Free-form description.
    #[serde(default)]
    pub description: String,
    /// Owning team.
    pub team_id: String,
    /// Owning organization.
    pub organization_id: String,
    /// Who created the robot.
    pub created_by: String,
    /// The robot's public key, if one is registered (`None` for null or empty).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub public_key: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last update time, RFC 3339.
    pub updated_at: String,
}

/// The result of creating a robot: the record and its show-once PIN.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RobotCreated {
    /// The new robot.
    pub robot: Robot,
    /// The robot's PIN. The platform returns it once, here, and never again: store it.
    #[serde(default)]
    pub pin_code: Option<String>,
}

impl fmt::Debug for RobotCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobotCreated")
            .field("robot", &self.robot)
            .field("pin_code", &self.pin_code.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One page of robots (`RobotList`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RobotPage {
    /// The robots on this page.
    pub robots: Vec<Robot>,
    /// Pass as `after_id` to get the next page; `None` on the last page.
    #[serde(default)]
    pub next_id: Option<String>,
}

/// What a required participant slot expects and how many have joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequiredParticipant {
    /// The kind of participant that fills the slot.
    #[serde(default)]
    pub participant_type: String,
    /// How many must be present for the session to be ready (0 = optional).
    #[serde(default)]
    pub min_count: u32,
    /// The most that may be present, if limited.
    #[serde(default)]
    pub max_count: Option<u32>,
    /// How many the platform has seen so far.
    #[serde(default)]
    pub current: u32,
}

/// One agent dispatch into the session room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentDispatch {
    /// The agent (worker) name.
    #[serde(default)]
    pub agent_name: String,
    /// The platform's dispatch id.
    #[serde(default)]
    pub dispatch_id: String,
    /// Dispatch status as reported by the platform.
    #[serde(default)]
    pub status: String,
}

/// The room metadata of a session: slots, dispatches, scene.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionMetadata {
    /// The robot this session drives.
    pub robot_id: String,
    /// Session state.
    pub status: SessionStatus,
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Participant slots by slot name.
    #[serde(default)]
    pub required_participants: BTreeMap<String, RequiredParticipant>,
    /// Agent dispatches by agent name.
    #[serde(default)]
    pub dispatches: BTreeMap<String, AgentDispatch>,
    /// Names of the agents dispatched into the room.
    #[serde(default)]
    pub dispatched_agent_names: Option<Vec<String>>,
    /// The scene loaded in the session, if any.
    #[serde(default)]
    pub scene_id: Option<String>,
}

/// A new session: where to join and with which credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionCreated {
    /// The LiveKit room name (equals the robot id).
    pub room_name: String,
    /// The LiveKit server URL (`ws://` or `wss://`).
    pub livekit_url: String,
    /// The caller's LiveKit access token.
    pub participant_token: Secret,
    /// Slots, dispatches and scene of the session.
    pub room_metadata: SessionMetadata,
}

/// A live session as listed by discovery (`SessionInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The robot of the session.
    pub robot_id: String,
    /// The LiveKit room name.
    #[serde(default)]
    pub room_name: Option<String>,
    /// The scene loaded, if any.
    #[serde(default)]
    pub scene_id: Option<String>,
    /// Session state.
    #[serde(default)]
    pub status: Option<SessionStatus>,
    /// Participants currently in the room.
    #[serde(default)]
    pub num_participants: Option<u32>,
    /// Agents dispatched into the room.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dispatched_agent_names: Vec<String>,
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The body of `GET /v1/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionList {
    /// The live sessions visible to the caller.
    pub sessions: Vec<SessionInfo>,
}

/// An extra room credential (what room keys are built from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ParticipantToken {
    /// The LiveKit room name.
    pub room_name: String,
    /// The LiveKit server URL.
    pub livekit_url: String,
    /// The LiveKit access token.
    pub participant_token: Secret,
    /// The identity the token joins as.
    pub participant_identity: String,
    /// Expiry time, RFC 3339.
    pub expires_at: String,
}

/// Fields of a new robot (`RobotCreate`). Unset optional fields take the platform defaults.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewRobot {
    pub(crate) name: String,
    pub(crate) model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) language: Option<Language>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) voice: Option<Voice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
}

impl NewRobot {
    /// A robot with a name (1..=255 characters) and a model such as `asimov-v0`.
    pub fn new(name: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            model: model.into(),
            language: None,
            voice: None,
            description: None,
        }
    }

    /// Spoken language (platform default: `en`).
    pub fn language(mut self, language: Language) -> Self {
        self.language = Some(language);
        self
    }

    /// Text-to-speech voice (platform default: `kokoro`).
    pub fn voice(mut self, voice: Voice) -> Self {
        self.voice = Some(voice);
        self
    }

    /// Description, at most 1000 characters.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A partial robot update (`RobotUpdate`): only the fields set here are sent.
#[must_use]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RobotUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) language: Option<Language>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) voice: Option<Voice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
}

impl RobotUpdate {
    /// An update that changes nothing yet; the SDK refuses to send it as is.
    pub fn new() -> Self {
        Self::default()
    }

    /// New name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// New language.
    pub fn language(mut self, language: Language) -> Self {
        self.language = Some(language);
        self
    }

    /// New voice.
    pub fn voice(mut self, voice: Voice) -> Self {
        self.voice = Some(voice);
        self
    }

    /// New description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.language.is_none() && self.voice.is_none() && self.description.is_none()
    }
}

/// The deprecated worker configuration of a session request.
///
/// It no longer drives dispatch; use [`SessionOptions::worker_names`].
#[deprecated(note = "no longer drives dispatch; use SessionOptions::worker_names")]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerConfig {
    /// Simulation worker: `true`/`false` or a worker name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulation_worker: Option<serde_json::Value>,
    /// Runtime worker: `true`/`false` or a worker name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcw: Option<serde_json::Value>,
    /// Agent worker: `true`/`false` or a worker name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_worker: Option<serde_json::Value>,
}

#[allow(deprecated)]
impl WorkerConfig {
    /// The configuration the RCS stack used to expect: every worker enabled.
    pub fn for_rcs_stack() -> Self {
        Self {
            simulation_worker: Some(true.into()),
            rcw: Some(true.into()),
            agent_worker: Some(true.into()),
        }
    }
}

/// Options of a new session (`SessionCreate`).
///
/// `worker_names` has three distinct cases: not set (the platform's default dispatch),
/// empty (dispatch nothing: a browser viewer fills the runtime role by joining), or names
/// (one LiveKit agent dispatched per name). With no field set, the request has no body.
#[must_use]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) worker_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scene_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) workers: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rsl_session_grant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rsl_session_pub: Option<String>,
}

impl SessionOptions {
    /// Platform defaults: no body is sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Dispatch one agent per name; an empty list dispatches nothing.
    pub fn worker_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.worker_names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Dispatch nothing (`worker_names: []`): for SimpleSim, the viewer tab is the runtime.
    pub fn no_workers(self) -> Self {
        self.worker_names(Vec::<String>::new())
    }

    /// The scene to load.
    pub fn scene_id(mut self, scene_id: impl Into<String>) -> Self {
        self.scene_id = Some(scene_id.into());
        self
    }

    /// The RSL session grant (base64).
    pub fn rsl_session_grant(mut self, grant: impl Into<String>) -> Self {
        self.rsl_session_grant = Some(grant.into());
        self
    }

    /// The RSL session public key (base64).
    pub fn rsl_session_pub(mut self, public_key: impl Into<String>) -> Self {
        self.rsl_session_pub = Some(public_key.into());
        self
    }

    /// The legacy worker configuration. It no longer drives dispatch.
    #[deprecated(note = "no longer drives dispatch; use SessionOptions::worker_names")]
    #[allow(deprecated)]
    pub fn workers(mut self, workers: WorkerConfig) -> Self {
        self.workers = serde_json::to_value(workers).ok();
        self
    }

    /// The names set with [`SessionOptions::worker_names`], if any.
    pub fn worker_names_set(&self) -> Option<&[String]> {
        self.worker_names.as_deref()
    }

    /// The scene set with [`SessionOptions::scene_id`], if any.
    pub fn scene_id_set(&self) -> Option<&str> {
        self.scene_id.as_deref()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.worker_names.is_none()
            && self.scene_id.is_none()
            && self.workers.is_none()
            && self.rsl_session_grant.is_none()
            && self.rsl_session_pub.is_none()
    }
}

/// Default lifetime of a participant token: 4 hours.
pub const DEFAULT_TOKEN_TTL_SECONDS: u32 = 14_400;

/// A request for an extra room credential (`ParticipantTokenCreate`).
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParticipantTokenRequest {
    pub(crate) participant_identity: String,
    pub(crate) participant_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ttl_seconds: Option<u32>,
}

impl ParticipantTokenRequest {
    /// A token for `identity` (1..=256 characters), named `Viewer`, with the default TTL.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            participant_identity: identity.into(),
            participant_name: "Viewer".to_owned(),
            ttl_seconds: None,
        }
    }

    /// Display name (1..=256 characters).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.participant_name = name.into();
        self
    }

    /// Lifetime in seconds, at least 1 (platform default 14400 = 4 h). More than 21600 (6 h)
    /// is sent as asked and the server caps it at 6 h; see the response's `expires_at`.
    pub fn ttl_seconds(mut self, ttl_seconds: u32) -> Self {
        self.ttl_seconds = Some(ttl_seconds);
        self
    }
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|v| !v.is_empty()))
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot_json(extra: &str) -> String {
        format!(
            r#"{{"id":"rb_1","name":"n","model":"asimov-v0","type":"virtual","language":"en",
            "voice":"kokoro","description":"","team_id":"t","organization_id":"o","created_by":"u",
            "public_key":"","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"{extra}}}"#
        )
    }

    #[test]
    fn robot_tolerates_unknown_fields_and_enum_values() {
        let json = robot_json(r#","future":1"#).replace(r#""type":"virtual""#, r#""type":"hybrid""#);
        let robot: Robot = serde_json::from_str(&json).unwrap();
        assert_eq!(robot.robot_type, RobotType::Other("hybrid".into()));
        assert_eq!(robot.public_key, None);
        assert_eq!(robot.language, Language::En);
    }

    #[test]
    fn session_options_keep_the_three_worker_cases_apart() {
        let omitted = serde_json::to_string(&SessionOptions::new()).unwrap();
        let empty = serde_json::to_string(&SessionOptions::new().no_workers()).unwrap();
        let named = serde_json::to_string(&SessionOptions::new().worker_names(["sim-worker"])).unwrap();
        assert_eq!(omitted, "{}");
        assert_eq!(empty, r#"{"worker_names":[]}"#);
        assert_eq!(named, r#"{"worker_names":["sim-worker"]}"#);
        assert!(SessionOptions::new().is_empty());
        assert!(!SessionOptions::new().no_workers().is_empty());
    }

    #[test]
    fn requests_serialize_only_set_fields() {
        let body = serde_json::to_string(&RobotUpdate::new().voice(Voice::Piper)).unwrap();
        assert_eq!(body, r#"{"voice":"piper"}"#);
        let body = serde_json::to_string(&NewRobot::new("a", "b")).unwrap();
        assert_eq!(body, r#"{"name":"a","model":"b"}"#);
    }

    #[test]
    fn created_robot_debug_hides_the_pin() {
        let robot: Robot = serde_json::from_str(&robot_json("")).unwrap();
        let created = RobotCreated {
            robot,
            pin_code: Some("918273".into()),
        };
        assert!(!format!("{created:?}").contains("918273"));
    }
}
