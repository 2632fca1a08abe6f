//! Sans-IO parts of LiveKit signalling: the join URL (`/rtc/v1` with a `WrappedJoinRequest`),
//! framing of `SignalRequest` / `SignalResponse`, and ICE trickle payloads.

use crate::live::error::LiveError;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;

/// Signalling protocol version advertised to the server.
///
/// 16: single peer connection over `/rtc/v1`, data channels opened in-band (DCEP) by us.
/// (17 adds packet trailers, 18 switches to pre-negotiated channel ids; neither is needed
/// for a data-only participant, and 16 works with every server that has `/rtc/v1`.)
pub const PROTOCOL_VERSION: i32 = 16;

/// `client_protocol` advertised to other participants: 1 (`CLIENT_PROTOCOL_DATA_STREAM_RPC`)
/// means "RPC v2 over text data streams understood" (`livekit-rpc` does both v1 and v2), but
/// not inline single-packet streams (2), and no compression capability is advertised.
pub const CLIENT_PROTOCOL: i32 = livekit_common::CLIENT_PROTOCOL_DATA_STREAM_RPC;

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
}
