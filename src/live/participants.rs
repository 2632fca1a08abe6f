//! Sans-IO tracking of the remote participants of a room.
//!
//! Fed with the `JoinResponse` and every `ParticipantUpdate`; yields joined / updated /
//! left transitions. Keyed by identity; the SID disambiguates a participant that rejoined
//! with the same identity.

use livekit_protocol as proto;
use std::collections::{BTreeMap, HashMap};

/// The kind of a room participant, as the LiveKit server reports it.
///
/// Open: a kind this SDK does not know keeps its raw protocol value in
/// [`ParticipantKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParticipantKind {
    /// A regular participant (a human viewer, an SDK client, a simulator tab).
    Standard,
    /// A dispatched LiveKit agent (e.g. a robot runtime worker).
    Agent,
    /// An ingress.
    Ingress,
    /// An egress.
    Egress,
    /// A SIP participant.
    Sip,
    /// A connector.
    Connector,
    /// A kind this SDK does not know, by its protocol value.
    Other(i32),
}

impl ParticipantKind {
    /// The kind for a protocol value (`ParticipantInfo.kind`).
    pub fn from_i32(value: i32) -> Self {
        use proto::participant_info::Kind;
        match Kind::try_from(value) {
            Ok(Kind::Standard) => ParticipantKind::Standard,
            Ok(Kind::Agent) => ParticipantKind::Agent,
            Ok(Kind::Ingress) => ParticipantKind::Ingress,
            Ok(Kind::Egress) => ParticipantKind::Egress,
            Ok(Kind::Sip) => ParticipantKind::Sip,
            Ok(Kind::Connector) => ParticipantKind::Connector,
            _ => ParticipantKind::Other(value),
        }
    }
}

/// The participant attribute naming a dispatched agent.
pub(crate) const AGENT_NAME_ATTRIBUTE: &str = "lk.agent.name";

/// The older spelling of [`AGENT_NAME_ATTRIBUTE`], read when the first is absent.
pub(crate) const AGENT_NAME_ATTRIBUTE_FALLBACK: &str = "lk.agent_name";

/// Another participant in the room: a runtime worker, a viewer, another SDK client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Participant {
    /// Server-assigned participant id (`PA_…`; empty in fixtures).
    pub sid: String,
    /// Identity, from the participant's token.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: ParticipantKind,
    /// Attributes (key/value), e.g. `lk.agent.name` for a dispatched agent.
    pub attributes: BTreeMap<String, String>,
    /// Free-form metadata set by the participant.
    pub metadata: String,
    /// The `client_protocol` its client advertises (1 and up: RPC over data streams).
    pub(crate) client_protocol: i32,
    /// The capabilities its client advertises (`ClientInfo.Capability` values).
    pub(crate) capabilities: Vec<i32>,
}

impl Participant {
    /// A participant with this identity and kind and nothing else (for fixtures and tests).
    pub fn new(identity: impl Into<String>, kind: ParticipantKind) -> Self {
        Participant {
            sid: String::new(),
            identity: identity.into(),
            name: String::new(),
            kind,
            attributes: BTreeMap::new(),
            metadata: String::new(),
            client_protocol: 0,
            capabilities: Vec::new(),
        }
    }

    /// Adds an attribute.
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// The dispatched agent's name: attribute `lk.agent.name` (or the older `lk.agent_name`).
    pub fn agent_name(&self) -> Option<&str> {
        self.attributes
            .get(AGENT_NAME_ATTRIBUTE)
            .or_else(|| self.attributes.get(AGENT_NAME_ATTRIBUTE_FALLBACK))
            .map(String::as_str)
    }

    pub(crate) fn from_proto(p: &proto::ParticipantInfo) -> Self {
        Participant {
            sid: p.sid.clone(),
            identity: p.identity.clone(),
            name: p.name.clone(),
            kind: ParticipantKind::from_i32(p.kind),
            attributes: p.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            metadata: p.metadata.clone(),
            client_protocol: p.client_protocol,
            capabilities: p.capabilities.clone(),
        }
    }
}

/// A change of the participant set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantChange {
    /// A participant joined.
    Joined(Participant),
    /// A participant's attributes / metadata / name changed.
    Updated(Participant),
    /// A participant left.
    Left(Participant),
}

/// Tracks remote participants.
#[derive(Debug, Default)]
pub struct ParticipantTracker {
    local_identity: String,
    local_sid: String,
    by_identity: HashMap<String, (Participant, u32)>,
}

impl ParticipantTracker {
    /// Creates a tracker for the given local participant (which is never reported).
    pub fn new(local_identity: &str, local_sid: &str) -> Self {
        ParticipantTracker {
            local_identity: local_identity.to_string(),
            local_sid: local_sid.to_string(),
            by_identity: HashMap::new(),
        }
    }

    /// Applies the participant list of a `JoinResponse`.
    pub fn apply_join(&mut self, others: &[proto::ParticipantInfo]) -> Vec<ParticipantChange> {
        self.apply_update(others)
    }

    /// Applies a `ParticipantUpdate`.
    pub fn apply_update(&mut self, infos: &[proto::ParticipantInfo]) -> Vec<ParticipantChange> {
        let mut changes = Vec::new();
        for info in infos {
            if info.identity == self.local_identity || info.sid == self.local_sid {
                continue;
            }
            let disconnected = info.state == proto::participant_info::State::Disconnected as i32;
            if disconnected {
                // Only remove when the SID matches (a stale leave of an older connection
                // must not remove a participant that already rejoined).
                let matches = self
                    .by_identity
                    .get(&info.identity)
                    .is_some_and(|(p, _)| p.sid == info.sid || info.sid.is_empty());
                if matches {
                    if let Some((p, _)) = self.by_identity.remove(&info.identity) {
                        changes.push(ParticipantChange::Left(p));
                    }
                }
                continue;
            }
            let new = Participant::from_proto(info);
            match self.by_identity.get_mut(&info.identity) {
                None => {
                    self.by_identity
                        .insert(info.identity.clone(), (new.clone(), info.version));
                    changes.push(ParticipantChange::Joined(new));
                }
                Some((old, version)) => {
                    if old.sid != new.sid {
                        // Same identity, new connection: report the old one as gone.
                        let gone = std::mem::replace(old, new.clone());
                        *version = info.version;
                        changes.push(ParticipantChange::Left(gone));
                        changes.push(ParticipantChange::Joined(new));
                    } else if info.version >= *version || info.version == 0 {
                        *version = info.version;
                        if *old != new {
                            *old = new.clone();
                            changes.push(ParticipantChange::Updated(new));
                        }
                    }
                }
            }
        }
        changes
    }

    /// Removes everybody (our connection closed); returns them as `Left`.
    pub fn clear(&mut self) -> Vec<ParticipantChange> {
        self.by_identity
            .drain()
            .map(|(_, (p, _))| ParticipantChange::Left(p))
            .collect()
    }

    /// Looks a participant up by identity.
    #[cfg(test)]
    pub fn get(&self, identity: &str) -> Option<&Participant> {
        self.by_identity.get(identity).map(|(p, _)| p)
    }

    /// Applies a list naming *every* other participant (the first `ParticipantUpdate` after a
    /// resume, or a rejoin's `JoinResponse`): whoever it does not name has left.
    pub fn apply_snapshot(&mut self, infos: &[proto::ParticipantInfo]) -> Vec<ParticipantChange> {
        let mut changes = self.apply_update(infos);
        let disconnected = proto::participant_info::State::Disconnected as i32;
        let present: std::collections::HashSet<&str> = infos
            .iter()
            .filter(|i| i.state != disconnected)
            .map(|i| i.identity.as_str())
            .collect();
        let gone: Vec<String> = self
            .by_identity
            .keys()
            .filter(|identity| !present.contains(identity.as_str()))
            .cloned()
            .collect();
        for identity in gone {
            if let Some((p, _)) = self.by_identity.remove(&identity) {
                changes.push(ParticipantChange::Left(p));
            }
        }
        changes
    }

    /// Our own sid changed (a rejoin made us a new participant session).
    pub fn set_local_sid(&mut self, sid: &str) {
        sid.clone_into(&mut self.local_sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        identity: &str,
        sid: &str,
        version: u32,
        state: proto::participant_info::State,
    ) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            identity: identity.into(),
            sid: sid.into(),
            version,
            state: state as i32,
            kind: proto::participant_info::Kind::Agent as i32,
            ..Default::default()
        }
    }
    use proto::participant_info::State;

    #[test]
    fn join_update_leave() {
        let mut t = ParticipantTracker::new("me", "PA_me");
        let c = t.apply_join(&[
            info("robot", "PA_1", 1, State::Active),
            info("me", "PA_me", 1, State::Active),
        ]);
        assert_eq!(c.len(), 1);
        assert!(
            matches!(&c[0], ParticipantChange::Joined(p) if p.identity == "robot" && p.kind == ParticipantKind::Agent)
        );
        let mut upd = info("robot", "PA_1", 2, State::Active);
        upd.attributes.insert("a".into(), "b".into());
        let c = t.apply_update(&[upd]);
        assert!(matches!(&c[0], ParticipantChange::Updated(p) if p.attributes["a"] == "b"));
        // Stale version is ignored.
        let c = t.apply_update(&[info("robot", "PA_1", 1, State::Active)]);
        assert!(c.is_empty());
        let c = t.apply_update(&[info("robot", "PA_1", 3, State::Disconnected)]);
        assert!(matches!(&c[0], ParticipantChange::Left(p) if p.identity == "robot"));
        assert!(t.get("robot").is_none());
    }

    #[test]
    fn stale_leave_of_old_connection_is_ignored() {
        let mut t = ParticipantTracker::new("me", "PA_me");
        t.apply_join(&[info("robot", "PA_2", 1, State::Active)]);
        let c = t.apply_update(&[info("robot", "PA_1", 5, State::Disconnected)]);
        assert!(c.is_empty());
        assert!(t.get("robot").is_some());
    }

    #[test]
    fn rejoin_with_new_sid_reports_left_then_joined() {
        let mut t = ParticipantTracker::new("me", "PA_me");
        t.apply_join(&[info("robot", "PA_1", 1, State::Active)]);
        let c = t.apply_update(&[info("robot", "PA_2", 1, State::Joined)]);
        assert_eq!(c.len(), 2);
        assert!(matches!(&c[0], ParticipantChange::Left(p) if p.sid == "PA_1"));
        assert!(matches!(&c[1], ParticipantChange::Joined(p) if p.sid == "PA_2"));
        assert_eq!(t.clear().len(), 1);
    }

    #[test]
    fn a_snapshot_reports_whoever_it_omits_as_left() {
        let mut t = ParticipantTracker::new("me", "PA_me");
        t.apply_join(&[
            info("robot", "PA_1", 1, State::Active),
            info("viewer", "PA_2", 1, State::Active),
        ]);
        // After a resume: robot still there (a newer version), viewer gone, a newcomer, us.
        let c = t.apply_snapshot(&[
            info("robot", "PA_1", 2, State::Active),
            info("new", "PA_3", 1, State::Joined),
            info("me", "PA_me", 4, State::Active),
        ]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(matches!(&c[0], ParticipantChange::Joined(p) if p.identity == "new"));
        assert!(matches!(&c[1], ParticipantChange::Left(p) if p.identity == "viewer"));
        assert!(t.get("robot").is_some() && t.get("viewer").is_none());
        // A rejoin's JoinResponse: our new sid, the robot rejoined meanwhile with a new sid.
        t.set_local_sid("PA_me2");
        let c = t.apply_snapshot(&[
            info("robot", "PA_4", 1, State::Active),
            info("me", "PA_me2", 1, State::Active),
        ]);
        let kinds: Vec<_> = c
            .iter()
            .map(|c| match c {
                ParticipantChange::Joined(p) => format!("joined {}", p.sid),
                ParticipantChange::Left(p) => format!("left {}", p.sid),
                ParticipantChange::Updated(p) => format!("updated {}", p.sid),
            })
            .collect();
        assert_eq!(kinds, ["left PA_1", "joined PA_4", "left PA_3"]);
    }
}
