//! Sans-IO admission of a signalling request (`/rtc`, `/rtc/v1` and their `/validate`
//! twins), with the HTTP statuses and messages livekit-server 1.13 gives:
//!
//! | refusal                                            | status | body                                          |
//! |----------------------------------------------------|--------|-----------------------------------------------|
//! | `Authorization` not `Bearer …`                     | 401    | `invalid authorization header. Must start with Bearer ` |
//! | token not a well-formed HS256 JWT                  | 401    | `invalid authorization token`                 |
//! | token issued for another API key                   | 401    | `invalid API key`                             |
//! | bad signature / expired / not yet valid (`nbf`)    | 401    | `invalid token: …` (never the token itself)  |
//! | no token, no video grant, no `roomJoin`            | 401    | `no permissions to access the room`           |
//! | `room` query parameter naming another room         | 401    | `no permissions to access the room: the token is for another room` |
//! | metadata/attributes in the join request without `canUpdateOwnMetadata` | 401 | `no permissions to access the room` |
//! | empty identity                                     | 400    | `identity cannot be empty`                    |
//! | empty room name                                    | 400    | `no room name`                                |
//! | `/rtc/v1` without `join_request`, undecodable join request | 400 | `join_request is required`, `cannot …` |
//! | unknown room while rooms are not auto-created      | 404    | `requested room does not exist`               |
//!
//! (The room always comes from the token, as on livekit-server; the `room` query parameter
//! some tools send is only checked against it.)

use std::collections::HashMap;
use std::io::Read as _;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use livekit_protocol as proto;
use prost::Message as _;

use crate::dev::token::{random_alnum, unix_now, verify_livekit_token, LiveKitClaims};

/// Largest join request accepted (livekit-server: Go's default maximum header size).
const MAX_JOIN_REQUEST: usize = 1 << 20;

/// A refused request: the HTTP status and a readable reason (sent as the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    fn denied() -> Refusal {
        Refusal::new(401, PERMISSION_DENIED)
    }
}

const PERMISSION_DENIED: &str = "no permissions to access the room";

/// The parts of an HTTP request admission looks at.
#[derive(Debug, Clone, Copy)]
pub(super) struct SignalRequest<'a> {
    /// `/rtc/v1` (or its validate twin): one peer connection, join request in the query.
    pub single_pc: bool,
    /// The query string (without `?`).
    pub query: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
}

/// An admitted participant, before it has a SID.
#[derive(Debug, Clone)]
pub(super) struct Admission {
    pub room: String,
    /// Identity, name, kind, metadata, attributes, permission, client protocol and
    /// capabilities, as they go into `ParticipantInfo`.
    pub info: proto::ParticipantInfo,
    pub single_pc: bool,
    /// The client's signalling protocol version.
    pub protocol: i32,
    pub can_publish_data: bool,
    pub can_update_metadata: bool,
    /// `/rtc` with protocol > 2 and the subscribe permission: the server offers the
    /// subscriber connection first and sends data on it.
    pub subscriber_primary: bool,
    /// The publisher offer carried in a v1 join request.
    pub publisher_offer: Option<proto::SessionDescription>,
    /// A resume of the participant of this identity (v1: the join request's `reconnect`;
    /// `/rtc`: `reconnect=1` or `true`), rather than a fresh join.
    pub reconnect: bool,
    /// Why the client resumes (`ReconnectReason`), for the logs.
    pub reconnect_reason: i32,
    /// The participant SID the client resumes; the server keys a resume on the identity and
    /// only logs it, as livekit-server does.
    pub resumed_sid: String,
}

/// Checks a signalling request against the key pair; `room_exists` says whether a room may be
/// joined (it always may when rooms are auto-created).
pub(super) fn admit(
    req: &SignalRequest<'_>,
    api_key: &str,
    api_secret: &str,
    room_exists: impl Fn(&str) -> bool,
) -> Result<Admission, Refusal> {
    let query: HashMap<String, String> = url::form_urlencoded::parse(req.query.as_bytes())
        .into_owned()
        .collect();
    let token = match req.authorization {
        Some(header) => match header.strip_prefix("Bearer ") {
            Some(t) => Some(t.to_string()),
            None => {
                return Err(Refusal::new(
                    401,
                    "invalid authorization header. Must start with Bearer ",
                ))
            }
        },
        None => query.get("access_token").cloned().filter(|t| !t.is_empty()),
    };
    let Some(token) = token else {
        return Err(Refusal::denied());
    };
    let claims = verify_livekit_token(&token, api_key, api_secret, unix_now())
        .map_err(|e| Refusal::new(401, e.to_string()))?;
    let join = parse_join_request(req.single_pc, &query)?;
    let video = match &claims.video {
        Some(v) if v.room_join => v.clone(),
        _ => return Err(Refusal::denied()),
    };
    if claims.identity().is_empty() {
        return Err(Refusal::new(400, "identity cannot be empty"));
    }
    if video.room.is_empty() {
        return Err(Refusal::new(400, "no room name"));
    }
    if query
        .get("room")
        .is_some_and(|r| !r.is_empty() && *r != video.room)
    {
        return Err(Refusal::new(
            401,
            format!("{PERMISSION_DENIED}: the token is for another room"),
        ));
    }
    if !room_exists(&video.room) {
        return Err(Refusal::new(404, "requested room does not exist"));
    }
    let (metadata, attributes) = requested_metadata(req.single_pc, &query, &join)?;
    if (!metadata.is_empty() || !attributes.is_empty()) && !video.can_update_own_metadata() {
        return Err(Refusal::denied());
    }
    let client = client_info(req.single_pc, &query, &join);
    let info = participant_info(&claims, &client, metadata, attributes);
    let protocol = client.protocol;
    let can_subscribe = video.can_subscribe();
    let (reconnect, reconnect_reason, resumed_sid) = reconnect_fields(req.single_pc, &query, &join);
    Ok(Admission {
        room: video.room.clone(),
        info,
        single_pc: req.single_pc,
        protocol,
        can_publish_data: video.can_publish_data(),
        can_update_metadata: video.can_update_own_metadata(),
        subscriber_primary: !req.single_pc && protocol > 2 && can_subscribe,
        publisher_offer: join.publisher_offer,
        reconnect,
        reconnect_reason,
        resumed_sid,
    })
}

/// Whether the request resumes a session, why, and the SID it names: from the v1 join
/// request, or from `/rtc`'s `reconnect`, `reconnect_reason` and `sid` query parameters.
fn reconnect_fields(
    single_pc: bool,
    query: &HashMap<String, String>,
    join: &proto::JoinRequest,
) -> (bool, i32, String) {
    if single_pc || query.contains_key("join_request") {
        return (
            join.reconnect,
            join.reconnect_reason,
            join.participant_sid.clone(),
        );
    }
    let reconnect = query.get("reconnect").is_some_and(|v| v == "1" || v == "true");
    let reason = query
        .get("reconnect_reason")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let sid = if reconnect {
        query.get("sid").cloned().unwrap_or_default()
    } else {
        String::new()
    };
    (reconnect, reason, sid)
}

/// The v1 join request from the `join_request` query parameter (base64url of a
/// `WrappedJoinRequest`, plain or gzip); an empty one on `/rtc`.
fn parse_join_request(
    single_pc: bool,
    query: &HashMap<String, String>,
) -> Result<proto::JoinRequest, Refusal> {
    let Some(encoded) = query.get("join_request").filter(|s| !s.is_empty()) else {
        if single_pc {
            return Err(Refusal::new(400, "join_request is required"));
        }
        return Ok(proto::JoinRequest::default());
    };
    let bytes = URL_SAFE
        .decode(encoded)
        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
        .map_err(|_| Refusal::new(400, "cannot base64 decode wrapped join request"))?;
    let wrapped = proto::WrappedJoinRequest::decode(bytes.as_slice())
        .map_err(|_| Refusal::new(400, "cannot unmarshal wrapped join request"))?;
    let too_large = || Refusal::new(400, "join request too large");
    let plain = if wrapped.compression == proto::wrapped_join_request::Compression::Gzip as i32 {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(wrapped.join_request.as_slice())
            .take(MAX_JOIN_REQUEST as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| Refusal::new(400, "cannot read decompressed join request"))?;
        out
    } else {
        wrapped.join_request
    };
    if plain.len() > MAX_JOIN_REQUEST {
        return Err(too_large());
    }
    proto::JoinRequest::decode(plain.as_slice())
        .map_err(|_| Refusal::new(400, "cannot unmarshal join request"))
}

/// Metadata and attributes the client asks for at join time (v1: in the join request; `/rtc`:
/// the `attributes` query parameter, base64url JSON).
fn requested_metadata(
    single_pc: bool,
    query: &HashMap<String, String>,
    join: &proto::JoinRequest,
) -> Result<(String, HashMap<String, String>), Refusal> {
    if single_pc {
        return Ok((join.metadata.clone(), join.participant_attributes.clone()));
    }
    let Some(encoded) = query.get("attributes").filter(|s| !s.is_empty()) else {
        return Ok((String::new(), HashMap::new()));
    };
    let attributes = URL_SAFE
        .decode(encoded)
        .ok()
        .and_then(|b| serde_json::from_slice::<HashMap<String, String>>(&b).ok())
        .unwrap_or_default();
    Ok((String::new(), attributes))
}

fn client_info(
    single_pc: bool,
    query: &HashMap<String, String>,
    join: &proto::JoinRequest,
) -> proto::ClientInfo {
    if single_pc {
        return join.client_info.clone().unwrap_or_default();
    }
    let number = |k: &str| query.get(k).and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    proto::ClientInfo {
        protocol: number("protocol"),
        client_protocol: number("client_protocol"),
        version: query.get("version").cloned().unwrap_or_default(),
        os: query.get("os").cloned().unwrap_or_default(),
        sdk: sdk_from_name(query.get("sdk").map(String::as_str).unwrap_or_default()) as i32,
        ..Default::default()
    }
}

fn sdk_from_name(name: &str) -> proto::client_info::Sdk {
    use proto::client_info::Sdk;
    match name {
        "js" => Sdk::Js,
        "ios" | "swift" => Sdk::Swift,
        "android" => Sdk::Android,
        "flutter" => Sdk::Flutter,
        "go" => Sdk::Go,
        "unity" => Sdk::Unity,
        "reactnative" => Sdk::ReactNative,
        "rust" => Sdk::Rust,
        "python" => Sdk::Python,
        "cpp" => Sdk::Cpp,
        "node" => Sdk::Node,
        _ => Sdk::Unknown,
    }
}

/// The participant as the token (plus the join request's additions) describes it.
fn participant_info(
    claims: &LiveKitClaims,
    client: &proto::ClientInfo,
    metadata: String,
    extra_attributes: HashMap<String, String>,
) -> proto::ParticipantInfo {
    let video = claims.video.clone().unwrap_or_default();
    let mut attributes: HashMap<String, String> = claims.attributes.clone().into_iter().collect();
    // As livekit-server: join-time attributes may add or change, never delete.
    attributes.extend(extra_attributes.into_iter().filter(|(_, v)| !v.is_empty()));
    let now = unix_now();
    proto::ParticipantInfo {
        sid: format!("PA_{}", random_alnum(12)),
        identity: claims.identity().to_string(),
        name: claims.name.clone(),
        metadata: if metadata.is_empty() {
            claims.metadata.clone()
        } else {
            metadata
        },
        attributes,
        kind: kind_from_claim(&claims.kind) as i32,
        joined_at: now.as_secs() as i64,
        joined_at_ms: now.as_millis() as i64,
        permission: Some(proto::ParticipantPermission {
            can_subscribe: video.can_subscribe(),
            can_publish: video.can_publish(),
            can_publish_data: video.can_publish_data(),
            hidden: video.hidden,
            can_update_metadata: video.can_update_own_metadata(),
            ..Default::default()
        }),
        client_protocol: client.client_protocol,
        capabilities: client.capabilities.clone(),
        ..Default::default()
    }
}

/// The `kind` claim (case-insensitive), `STANDARD` when absent or unknown.
pub(super) fn kind_from_claim(kind: &str) -> proto::participant_info::Kind {
    proto::participant_info::Kind::from_str_name(&kind.to_ascii_uppercase())
        .unwrap_or(proto::participant_info::Kind::Standard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::token::{mint_livekit_token, TokenOptions};
    use crate::dev::LiveKitSettings;
    use std::time::Duration;

    fn token(room: &str, identity: &str) -> String {
        let settings = LiveKitSettings::default();
        let options = TokenOptions {
            kind: Some("agent".into()),
            attributes: [("lk.agent.name".to_owned(), "sim".to_owned())].into(),
            metadata: Some("meta".into()),
        };
        mint_livekit_token(
            &settings,
            room,
            identity,
            "Name",
            Duration::from_secs(60),
            &options,
        )
    }

    fn v1_query(join: &proto::JoinRequest) -> String {
        let wrapped = proto::WrappedJoinRequest {
            compression: 0,
            join_request: join.encode_to_vec(),
        };
        format!("join_request={}", URL_SAFE.encode(wrapped.encode_to_vec()))
    }

    fn admit_default(req: &SignalRequest<'_>) -> Result<Admission, Refusal> {
        admit(req, "devkey", "secret", |_| true)
    }

    #[test]
    fn v0_and_v1_requests_are_admitted_with_the_token_grants() {
        let bearer = format!("Bearer {}", token("rb_1", "robot"));
        let v0 = SignalRequest {
            single_pc: false,
            query: "protocol=16&client_protocol=1&sdk=rust&auto_subscribe=0",
            authorization: Some(&bearer),
        };
        let a = admit_default(&v0).unwrap();
        assert_eq!(a.room, "rb_1");
        assert_eq!(a.info.identity, "robot");
        assert_eq!(a.info.name, "Name");
        assert_eq!(a.info.metadata, "meta");
        assert_eq!(a.info.kind, proto::participant_info::Kind::Agent as i32);
        assert_eq!(a.info.attributes["lk.agent.name"], "sim");
        assert_eq!((a.protocol, a.info.client_protocol), (16, 1));
        assert!(a.subscriber_primary && !a.single_pc && a.can_publish_data);
        assert!(a.info.sid.starts_with("PA_"));

        let join = proto::JoinRequest {
            client_info: Some(proto::ClientInfo {
                protocol: 17,
                client_protocol: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let q = format!("{}&access_token={}", v1_query(&join), token("rb_1", "robot"));
        let v1 = SignalRequest {
            single_pc: true,
            query: &q,
            authorization: None,
        };
        let a = admit_default(&v1).unwrap();
        assert!(a.single_pc && !a.subscriber_primary);
        assert_eq!(a.protocol, 17);
    }

    #[test]
    fn refusals_carry_livekit_statuses_and_no_credentials() {
        let good = token("rb_1", "robot");
        let bearer = format!("Bearer {good}");
        let case = |single_pc: bool, query: &str, auth: Option<&str>| {
            admit_default(&SignalRequest {
                single_pc,
                query,
                authorization: auth,
            })
            .unwrap_err()
        };
        assert_eq!(case(false, "", Some("Basic abc")).status, 401);
        assert_eq!(case(false, "", None), Refusal::denied());
        assert_eq!(
            case(false, "", Some("Bearer x.y.z")).message,
            "invalid authorization token"
        );
        let wrong_room = case(false, "room=rb_2", Some(&bearer));
        assert_eq!(wrong_room.status, 401);
        assert!(wrong_room.message.contains("another room"));
        assert_eq!(case(true, "", Some(&bearer)).status, 400);
        assert_eq!(case(true, "join_request=%%%", Some(&bearer)).status, 400);
        let no_room = admit(
            &SignalRequest {
                single_pc: false,
                query: "",
                authorization: Some(&bearer),
            },
            "devkey",
            "secret",
            |_| false,
        )
        .unwrap_err();
        assert_eq!(no_room, Refusal::new(404, "requested room does not exist"));
        let other_secret = admit(
            &SignalRequest {
                single_pc: false,
                query: "",
                authorization: Some(&bearer),
            },
            "devkey",
            "another",
            |_| true,
        )
        .unwrap_err();
        assert_eq!(other_secret.status, 401);
        assert!(!other_secret.message.contains(&good));
        // Join-time metadata needs canUpdateOwnMetadata, which minted tokens do not grant.
        let join = proto::JoinRequest {
            metadata: "mine".into(),
            ..Default::default()
        };
        assert_eq!(case(true, &v1_query(&join), Some(&bearer)), Refusal::denied());
    }

    #[test]
    fn kind_claims_map_like_livekit() {
        use proto::participant_info::Kind;
        assert_eq!(kind_from_claim("agent"), Kind::Agent);
        assert_eq!(kind_from_claim("SIP"), Kind::Sip);
        assert_eq!(kind_from_claim(""), Kind::Standard);
        assert_eq!(kind_from_claim("robot"), Kind::Standard);
    }

    #[test]
    fn garbage_requests_are_refused_never_panic() {
        let mut rng = fastrand::Rng::with_seed(5);
        let token = token("rb_1", "robot");
        let pieces = [
            "join_request=",
            "access_token=",
            "room=",
            "attributes=",
            "protocol=",
            "&",
            "=",
            "%",
            "AAAA",
            "H4sI",
            "-_",
            &token,
        ];
        for _ in 0..5_000 {
            let query: String = (0..rng.usize(0..6))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let auth: String = (0..rng.usize(0..40)).map(|_| rng.char(' '..'~')).collect();
            for single_pc in [false, true] {
                let req = SignalRequest {
                    single_pc,
                    query: &query,
                    authorization: rng.bool().then_some(auth.as_str()),
                };
                let _ = admit_default(&req);
            }
        }
        let mut bytes = vec![0u8; 64];
        for _ in 0..2_000 {
            rng.fill(&mut bytes);
            let q = format!("join_request={}", URL_SAFE.encode(&bytes));
            let req = SignalRequest {
                single_pc: true,
                query: &q,
                authorization: Some("Bearer x"),
            };
            assert!(admit_default(&req).is_err());
        }
    }
}
