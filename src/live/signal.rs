//! Sans-IO parts of LiveKit signalling: the join URL (`/rtc/v1` with a `WrappedJoinRequest`),
//! framing of `SignalRequest` / `SignalResponse`, and ICE trickle payloads.

use crate::live::error::LiveError;
use crate::live::reconnect::LeaveAction;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;

/// Signalling protocol version advertised to the server.
///
/// 16: single peer connection over `/rtc/v1`, data channels opened in-band (DCEP) by us.
/// (17 adds packet trailers, 18 switches to pre-negotiated channel ids; neither is needed
/// for a data-only participant, and 16 works with every server that has `/rtc/v1`.
/// livekit-server 1.13 changes nothing a data-only participant receives above 16: packet
/// trailers are media-only and keyed on the `CAP_PACKET_TRAILER` capability.)
pub const PROTOCOL_VERSION: i32 = 16;

/// `client_protocol` advertised to other participants: 2 (`CLIENT_PROTOCOL_DATA_STREAM_V2`),
/// "RPC v2 over text data streams, and data streams sent inline in a single header packet
/// understood" (`livekit-data-stream`'s incoming manager reassembles both), so a v2 RPC reply
/// that fits a packet reaches us as one packet instead of three. No compression capability
/// is advertised, although the receive path inflates deflate-raw streams: a sender would
/// first deflate every camera frame (JPEG, incompressible) to find out it does not shrink,
/// which measurably slows frames; `PROTOCOL_VERSION` stays 16 (see there).
pub const CLIENT_PROTOCOL: i32 = livekit_common::CLIENT_PROTOCOL_DATA_STREAM_V2;

fn base_ws_url(base: &str) -> Result<url::Url, LiveError> {
    let mut url = url::Url::parse(base).map_err(|e| LiveError::InvalidUrl(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(LiveError::InvalidUrl(format!("unsupported scheme {other}"))),
    };
    if url.host_str().is_none() {
        return Err(LiveError::InvalidUrl("missing host".into()));
    }
    url.set_scheme(scheme)
        .map_err(|_| LiveError::InvalidUrl("cannot set scheme".into()))?;
    url.set_query(None);
    Ok(url)
}

/// Builds the websocket URL of the single-peer-connection join path (`/rtc/v1`).
///
/// `base` may use `ws`, `wss`, `http` or `https`. The token is NOT put in the URL; send it
/// as an `Authorization: Bearer` header.
pub fn join_url(base: &str, join: &proto::JoinRequest) -> Result<url::Url, LiveError> {
    let mut url = base_ws_url(base)?;
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|_| LiveError::InvalidUrl("cannot be a base".into()))?;
        segs.pop_if_empty().push("rtc").push("v1");
    }
    let wrapped = proto::WrappedJoinRequest {
        compression: proto::wrapped_join_request::Compression::None as i32,
        join_request: join.encode_to_vec(),
    };
    url.query_pairs_mut()
        .append_pair("join_request", &URL_SAFE.encode(wrapped.encode_to_vec()));
    Ok(url)
}

/// Builds the websocket URL of the classic join path (`/rtc`, two peer connections), with the
/// client information as query parameters.
pub fn join_url_v0(base: &str) -> Result<url::Url, LiveError> {
    let mut url = base_ws_url(base)?;
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|_| LiveError::InvalidUrl("cannot be a base".into()))?;
        segs.pop_if_empty().push("rtc");
    }
    url.query_pairs_mut()
        .append_pair("sdk", "rust")
        .append_pair("version", env!("CARGO_PKG_VERSION"))
        .append_pair("os", std::env::consts::OS)
        .append_pair("protocol", &PROTOCOL_VERSION.to_string())
        .append_pair("client_protocol", &CLIENT_PROTOCOL.to_string())
        .append_pair("auto_subscribe", "0")
        .append_pair("adaptive_stream", "0");
    Ok(url)
}

/// The join request of a data-only participant.
pub fn join_request(auto_subscribe: bool) -> proto::JoinRequest {
    proto::JoinRequest {
        client_info: Some(proto::ClientInfo {
            sdk: proto::client_info::Sdk::Rust as i32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
            os: std::env::consts::OS.to_string(),
            client_protocol: CLIENT_PROTOCOL,
            other_sdks: "menlo-robot-sdk".to_string(),
            ..Default::default()
        }),
        connection_settings: Some(proto::ConnectionSettings {
            auto_subscribe,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Encodes a signal request for a binary websocket frame.
pub fn encode_request(msg: Req) -> Vec<u8> {
    proto::SignalRequest { message: Some(msg) }.encode_to_vec()
}

/// Decodes a binary websocket frame.
pub fn decode_response(frame: &[u8]) -> Result<proto::signal_response::Message, LiveError> {
    let resp = proto::SignalResponse::decode(frame)
        .map_err(|e| LiveError::Protocol(format!("bad SignalResponse: {e}")))?;
    resp.message
        .ok_or_else(|| LiveError::Protocol("empty SignalResponse".into()))
}

/// `candidate_init` JSON of a trickle message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CandidateInit {
    /// `candidate:...` attribute (may be empty for end-of-candidates).
    pub candidate: String,
    /// Media id.
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// m-line index.
    #[serde(rename = "sdpMLineIndex", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u32>,
    /// ICE ufrag.
    #[serde(rename = "usernameFragment", default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Parses the `candidate_init` of a trickle message.
pub fn parse_candidate_init(json: &str) -> Result<CandidateInit, LiveError> {
    serde_json::from_str(json).map_err(|e| LiveError::Protocol(format!("bad trickle candidate: {e}")))
}

/// Ping request carrying the current time (ms).
pub fn ping_request(now_ms: i64, rtt_ms: i64) -> Req {
    Req::PingReq(proto::Ping {
        timestamp: now_ms,
        rtt: rtt_ms,
    })
}

/// Leave request sent when we disconnect.
pub fn leave_request() -> Req {
    Req::Leave(proto::LeaveRequest {
        can_reconnect: false,
        reason: proto::DisconnectReason::ClientInitiated as i32,
        action: proto::leave_request::Action::Disconnect as i32,
        ..Default::default()
    })
}

/// Builds the `/rtc/v1` URL of a resume: the usual join request plus `reconnect`, the
/// participant sid and the reason (the server looks the participant up by the identity in the
/// token). No publisher offer: the peer connection is kept. The token is NOT put in the URL.
pub fn resume_join_url(
    base: &str,
    participant_sid: &str,
    reason: proto::ReconnectReason,
) -> Result<url::Url, LiveError> {
    let join = proto::JoinRequest {
        reconnect: true,
        reconnect_reason: reason as i32,
        participant_sid: participant_sid.to_owned(),
        ..join_request(false)
    };
    join_url(base, &join)
}

/// Builds the `/rtc` (two peer connections) URL of a resume: the usual query plus
/// `reconnect=1`, `sid` and `reconnect_reason`. The token is NOT put in the URL.
pub fn resume_join_url_v0(
    base: &str,
    participant_sid: &str,
    reason: proto::ReconnectReason,
) -> Result<url::Url, LiveError> {
    let mut url = join_url_v0(base)?;
    url.query_pairs_mut()
        .append_pair("reconnect", "1")
        .append_pair("sid", participant_sid)
        .append_pair("reconnect_reason", &(reason as i32).to_string());
    Ok(url)
}

/// What a `LeaveRequest` from the server asks of us. Servers speaking protocol > 12 set
/// `action`; older ones only say `can_reconnect` (meaning: join again).
pub fn leave_action(leave: &proto::LeaveRequest) -> LeaveAction {
    use proto::leave_request::Action;
    match Action::try_from(leave.action) {
        Ok(Action::Resume) => LeaveAction::Resume,
        Ok(Action::Reconnect) => LeaveAction::Reconnect,
        _ if leave.can_reconnect => LeaveAction::Reconnect,
        _ => LeaveAction::Disconnect {
            reason: proto::DisconnectReason::try_from(leave.reason)
                .unwrap_or(proto::DisconnectReason::UnknownReason),
        },
    }
}

/// Whether the server's client configuration forbids resuming (always rejoin instead).
pub fn resume_disabled(config: Option<&proto::ClientConfiguration>) -> bool {
    config.is_some_and(|c| c.resume_connection == proto::ClientConfigSetting::Disabled as i32)
}

/// What a `SyncState` reports after a resume.
#[derive(Debug, Clone, Default)]
pub struct SyncStateParts {
    /// Single PC: our last offer. Dual PC: the server's last subscriber offer.
    pub offer: Option<String>,
    /// Single PC: the server's last answer. Dual PC: our last subscriber answer.
    pub answer: Option<String>,
    /// Whether we joined with `auto_subscribe`.
    pub auto_subscribe: bool,
    /// Our data channels (label, SCTP stream id, target).
    pub data_channels: Vec<proto::DataChannelInfo>,
    /// Last reliable sequence seen per sender (`reliable::ReceiveStates`).
    pub receive_states: Vec<proto::DataChannelReceiveState>,
}

/// The `SyncState` request sent right after a `ReconnectResponse`. A data-only participant
/// publishes no tracks and subscribes to none.
pub fn sync_state(parts: SyncStateParts) -> Req {
    let description = |kind: &str, sdp: String| proto::SessionDescription {
        r#type: kind.to_owned(),
        sdp,
        ..Default::default()
    };
    Req::SyncState(proto::SyncState {
        offer: parts.offer.map(|sdp| description("offer", sdp)),
        answer: parts.answer.map(|sdp| description("answer", sdp)),
        subscription: Some(proto::UpdateSubscription {
            track_sids: Vec::new(),
            subscribe: !parts.auto_subscribe,
            participant_tracks: Vec::new(),
        }),
        data_channels: parts.data_channels,
        datachannel_receive_states: parts.receive_states,
        ..Default::default()
    })
}

/// A `SimulateScenario` request (livekit-server acts on it for any client; tests only).
pub fn simulate_request(scenario: proto::simulate_scenario::Scenario) -> Req {
    Req::Simulate(proto::SimulateScenario {
        scenario: Some(scenario),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_carries_wrapped_join_request_but_no_token() {
        let url = join_url("http://127.0.0.1:7880", &join_request(false)).unwrap();
        assert_eq!(url.scheme(), "ws");
        assert_eq!(url.path(), "/rtc/v1");
        let (k, v) = url.query_pairs().next().unwrap();
        assert_eq!(k, "join_request");
        let wrapped =
            proto::WrappedJoinRequest::decode(URL_SAFE.decode(v.as_bytes()).unwrap().as_slice()).unwrap();
        let join = proto::JoinRequest::decode(wrapped.join_request.as_slice()).unwrap();
        assert_eq!(join.client_info.unwrap().protocol, PROTOCOL_VERSION);
        assert!(!url.as_str().contains("access_token"));
        assert_eq!(
            join_url("wss://h/base/", &join_request(true)).unwrap().path(),
            "/base/rtc/v1"
        );
        assert!(join_url("ftp://h", &join_request(true)).is_err());
        assert!(join_url("not a url", &join_request(true)).is_err());
        let v0 = join_url_v0("https://h:1/x").unwrap();
        assert_eq!((v0.scheme(), v0.path()), ("wss", "/x/rtc"));
        assert!(v0
            .query_pairs()
            .any(|(k, v)| k == "protocol" && v == PROTOCOL_VERSION.to_string()));
    }

    #[test]
    fn joins_advertising_inline_data_streams_without_compression() {
        let info = join_request(false).client_info.unwrap();
        assert_eq!(
            (info.protocol, info.client_protocol),
            (16, livekit_common::CLIENT_PROTOCOL_DATA_STREAM_V2)
        );
        assert!(info.capabilities.is_empty(), "{:?}", info.capabilities);
        let v0 = join_url_v0("ws://h").unwrap();
        assert!(v0.query_pairs().any(|(k, v)| k == "client_protocol" && v == "2"));
    }

    #[test]
    fn decode_garbage_is_an_error() {
        assert!(decode_response(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_response(&[]).is_err());
    }

    #[test]
    fn candidate_json() {
        let c = parse_candidate_init(
            r#"{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}"#,
        )
        .unwrap();
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert!(parse_candidate_init("{").is_err());
    }

    fn wrapped_join(url: &url::Url) -> proto::JoinRequest {
        let (k, v) = url.query_pairs().next().unwrap();
        assert_eq!(k, "join_request");
        let wrapped =
            proto::WrappedJoinRequest::decode(URL_SAFE.decode(v.as_bytes()).unwrap().as_slice()).unwrap();
        proto::JoinRequest::decode(wrapped.join_request.as_slice()).unwrap()
    }

    #[test]
    fn resume_url_v1_carries_reconnect_sid_and_reason_but_no_token() {
        let url = resume_join_url(
            "https://h:7880/base",
            "PA_abc",
            proto::ReconnectReason::RrSignalDisconnected,
        )
        .unwrap();
        assert_eq!((url.scheme(), url.path()), ("wss", "/base/rtc/v1"));
        assert_eq!(url.query_pairs().count(), 1);
        let join = wrapped_join(&url);
        assert!(join.reconnect);
        assert_eq!(join.participant_sid, "PA_abc");
        assert_eq!(
            join.reconnect_reason,
            proto::ReconnectReason::RrSignalDisconnected as i32
        );
        assert!(join.publisher_offer.is_none(), "the peer connection is kept");
        assert_eq!(join.client_info.unwrap().protocol, PROTOCOL_VERSION);
        let text = url.as_str().to_ascii_lowercase();
        assert!(!text.contains("token") && !text.contains("access"));
        // A first join is not a resume.
        assert!(!wrapped_join(&join_url("ws://h", &join_request(false)).unwrap()).reconnect);
    }

    #[test]
    fn resume_url_v0_carries_reconnect_sid_and_reason_but_no_token() {
        let url = resume_join_url_v0(
            "http://127.0.0.1:7880",
            "PA_x",
            proto::ReconnectReason::RrPublisherFailed,
        )
        .unwrap();
        assert_eq!((url.scheme(), url.path()), ("ws", "/rtc"));
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["reconnect"], "1");
        assert_eq!(q["sid"], "PA_x");
        assert_eq!(q["reconnect_reason"], "2");
        assert_eq!(q["protocol"], PROTOCOL_VERSION.to_string());
        assert!(!q.contains_key("access_token"));
        assert!(resume_join_url_v0("ftp://h", "PA_x", proto::ReconnectReason::RrUnknown).is_err());
    }

    #[test]
    fn leave_actions() {
        use proto::leave_request::Action;
        let leave =
            |action: Action, can_reconnect: bool, reason: proto::DisconnectReason| proto::LeaveRequest {
                action: action as i32,
                can_reconnect,
                reason: reason as i32,
                ..Default::default()
            };
        use proto::DisconnectReason as R;
        assert_eq!(
            leave_action(&leave(Action::Resume, false, R::UnknownReason)),
            LeaveAction::Resume
        );
        assert_eq!(
            leave_action(&leave(Action::Reconnect, false, R::StateMismatch)),
            LeaveAction::Reconnect
        );
        assert_eq!(
            leave_action(&leave(Action::Disconnect, false, R::ServerShutdown)),
            LeaveAction::Disconnect {
                reason: R::ServerShutdown
            }
        );
        // Protocol <= 12 servers: only `can_reconnect`.
        assert_eq!(
            leave_action(&leave(Action::Disconnect, true, R::StateMismatch)),
            LeaveAction::Reconnect
        );
        let unknown = proto::LeaveRequest {
            action: 99,
            reason: 999,
            ..Default::default()
        };
        assert_eq!(
            leave_action(&unknown),
            LeaveAction::Disconnect {
                reason: R::UnknownReason
            }
        );
    }

    #[test]
    fn resume_disabled_only_when_the_server_says_so() {
        let cfg = |setting: proto::ClientConfigSetting| proto::ClientConfiguration {
            resume_connection: setting as i32,
            ..Default::default()
        };
        assert!(resume_disabled(Some(&cfg(proto::ClientConfigSetting::Disabled))));
        assert!(!resume_disabled(Some(&cfg(proto::ClientConfigSetting::Unset))));
        assert!(!resume_disabled(Some(&cfg(proto::ClientConfigSetting::Enabled))));
        assert!(!resume_disabled(None));
    }

    #[test]
    fn sync_state_round_trips() {
        let frame = encode_request(sync_state(SyncStateParts {
            offer: Some("v=0 offer".into()),
            answer: Some("v=0 answer".into()),
            auto_subscribe: false,
            data_channels: vec![proto::DataChannelInfo {
                label: "_reliable".into(),
                id: 1,
                target: proto::SignalTarget::Publisher as i32,
            }],
            receive_states: vec![proto::DataChannelReceiveState {
                publisher_sid: "PA_r".into(),
                last_seq: 42,
            }],
        }));
        let Some(Req::SyncState(s)) = proto::SignalRequest::decode(frame.as_slice()).unwrap().message else {
            panic!("not a SyncState");
        };
        let offer = s.offer.unwrap();
        assert_eq!(
            (offer.r#type.as_str(), offer.sdp.as_str()),
            ("offer", "v=0 offer")
        );
        assert_eq!(s.answer.unwrap().r#type, "answer");
        assert!(
            s.subscription.unwrap().subscribe,
            "not auto-subscribed: explicit subscription list (empty)"
        );
        assert_eq!(s.data_channels[0].label, "_reliable");
        assert_eq!(s.datachannel_receive_states[0].last_seq, 42);
        assert!(s.publish_tracks.is_empty() && s.track_sids_disabled.is_empty());
    }

    #[test]
    fn simulate_request_encodes_the_scenario() {
        use proto::simulate_scenario::Scenario;
        let frame = encode_request(simulate_request(Scenario::NodeFailure(true)));
        let Some(Req::Simulate(sim)) = proto::SignalRequest::decode(frame.as_slice()).unwrap().message else {
            panic!("not a simulate request");
        };
        assert_eq!(sim.scenario, Some(Scenario::NodeFailure(true)));
    }
}
