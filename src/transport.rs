//! The one request path to the control plane: headers, auth, retries, error normalization.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use ureq::http;

use crate::config::{Auth, Config};
use crate::error::{ApiError, Error, Result};
use crate::retry::{self, Outcome};

/// Sleeps between retries. Injectable so tests observe the schedule without waiting.
pub type SleepFn = Arc<dyn Fn(Duration) + Send + Sync>;
/// Draws the jitter sample in `[0, 1)` for each backoff. Injectable for deterministic tests.
pub type JitterFn = Arc<dyn Fn() -> f64 + Send + Sync>;

const USER_AGENT: &str = concat!("menlo-robot-sdk-rust/", env!("CARGO_PKG_VERSION"));

/// HTTP methods the control plane uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Sends requests with the client's settings over one shared connection pool.
pub(crate) struct Transport {
    pub config: Config,
    agent: ureq::Agent,
    sleep: SleepFn,
    jitter: JitterFn,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A request failed before any HTTP status arrived.
enum AttemptError {
    Timeout(ureq::Error),
    Transport(ureq::Error),
}

/// One HTTP answer: status, body, and the `Retry-After` the client honours, if any.
struct Answer {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// Why an attempt did not succeed.
enum Failure {
    Status(Answer),
    NoAnswer(AttemptError),
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Failure::Status(answer) => Outcome::Status(answer.status),
            Failure::NoAnswer(_) => Outcome::TransportFailure,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status(answer) => answer.retry_after,
            Failure::NoAnswer(_) => None,
        }
    }
}

impl Transport {
    pub fn new(config: Config, sleep: Option<SleepFn>, jitter: Option<JitterFn>) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                // Per phase, like httpx's `timeout=` in the Python SDK. Measured on loopback
                // (bench_control_plane): a global deadline makes ureq reset the socket
                // timeouts on every read and write, and a resolve timeout moves each DNS
                // lookup to a helper thread; either doubles the cost of a small request.
                .timeout_connect(Some(config.timeout))
                .timeout_send_request(Some(config.timeout))
                .timeout_recv_response(Some(config.timeout))
                .timeout_recv_body(Some(config.timeout))
                .user_agent(USER_AGENT)
                .build(),
        );
        Transport {
            config,
            agent,
            sleep: sleep.unwrap_or_else(|| Arc::new(std::thread::sleep)),
            jitter: jitter.unwrap_or_else(|| Arc::new(fastrand::f64)),
        }
    }

    /// Sends a request and decodes a JSON answer.
    pub fn json<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<T> {
        let reply = self.send(method, path, body)?;
        serde_json::from_slice(&reply)
            .map_err(|err| Error::decode(format!("{} {path} response", method.as_str()), &err))
    }

    /// Sends a request, retrying as CONTRACT §4 says, and returns the body of the success.
    /// Statuses ≥ 400 become [`Error::Api`].
    pub fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.config.rcs_url);
        let mut retries = 0;
        loop {
            let failure = match self.attempt(method, &url, body.as_deref()) {
                Ok(answer) if answer.status < 400 => return Ok(answer.body),
                Ok(answer) => Failure::Status(answer),
                Err(err) => Failure::NoAnswer(err),
            };
            if retries < self.config.max_retries && retry::is_retryable(method.as_str(), failure.outcome()) {
                (self.sleep)(retry::backoff_delay(
                    retries,
                    (self.jitter)(),
                    failure.retry_after(),
                ));
                retries += 1;
                continue;
            }
            return Err(self.error_for(method, url, failure));
        }
    }

    fn error_for(&self, method: Method, url: String, failure: Failure) -> Error {
        match failure {
            Failure::Status(answer) => {
                ApiError::from_response(answer.status, &answer.body, reason_phrase(answer.status)).into()
            }
            Failure::NoAnswer(AttemptError::Timeout(cause)) => Error::Timeout {
                operation: format!("{} {url}", method.as_str()),
                after: self.config.timeout,
                may_still_be_running: false,
                source: Some(Box::new(cause)),
            },
            Failure::NoAnswer(AttemptError::Transport(cause)) => Error::Transport {
                method: method.as_str().to_owned(),
                url,
                reason: cause.to_string(),
                source: Box::new(cause),
            },
        }
    }

    /// One HTTP exchange.
    fn attempt(&self, method: Method, url: &str, body: Option<&[u8]>) -> Result<Answer, AttemptError> {
        let request = self.build_request(method, url, body.is_some())?;
        let result = match body {
            Some(bytes) => self.agent.run(
                request
                    .body(bytes)
                    .map_err(|e| AttemptError::Transport(ureq::Error::Http(e)))?,
            ),
            None => self.agent.run(
                request
                    .body(())
                    .map_err(|e| AttemptError::Transport(ureq::Error::Http(e)))?,
            ),
        };
        let outcome = result.map_err(classify).and_then(|mut response| {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .filter(|_| retry::honours_retry_after(status))
                .and_then(retry::parse_retry_after);
            let body = response.body_mut().read_to_vec().map_err(classify)?;
            Ok(Answer {
                status,
                body,
                retry_after,
            })
        });
        self.log(method, url, &outcome);
        outcome
    }

    fn build_request(
        &self,
        method: Method,
        url: &str,
        has_body: bool,
    ) -> Result<http::request::Builder, AttemptError> {
        let mut request = http::Request::builder()
            .method(method.as_str())
            .uri(url)
            .header("accept", "application/json");
        if has_body {
            request = request.header("content-type", "application/json");
        }
        request = match &self.config.auth {
            Auth::ApiKey(key) => request.header("authorization", format!("Bearer {}", key.expose())),
            Auth::Identity(identity) => request.header("x-menlo-identity", identity.expose()),
        };
        Ok(request)
    }

    fn log(&self, method: Method, url: &str, outcome: &Result<Answer, AttemptError>) {
        if !self.config.debug {
            return;
        }
        match outcome {
            Ok(answer) => {
                log::debug!(target: "menlo_robot_sdk", "{} {url} -> {}", method.as_str(), answer.status)
            }
            Err(AttemptError::Timeout(_)) => {
                log::debug!(target: "menlo_robot_sdk", "{} {url} -> timeout", method.as_str())
            }
            Err(AttemptError::Transport(_)) => {
                log::debug!(target: "menlo_robot_sdk", "{} {url} -> transport error", method.as_str())
            }
        }
    }
}

fn classify(err: ureq::Error) -> AttemptError {
    match err {
        timeout @ ureq::Error::Timeout(_) => AttemptError::Timeout(timeout),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            AttemptError::Timeout(ureq::Error::Io(io))
        }
        other => AttemptError::Transport(other),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("")
}

/// RFC 3986 unreserved characters stay literal; every other byte is percent-encoded.
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What `application/x-www-form-urlencoded` keeps literal (space becomes `+` apart).
const FORM_LITERAL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

/// Percent-encodes one path segment (a robot id, say) so it cannot change the path.
pub(crate) fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, UNRESERVED).to_string()
}

/// Form-urlencodes a query value or a form field (`application/x-www-form-urlencoded`).
pub(crate) fn encode_query_value(value: &str) -> String {
    // `%` itself is encoded, so every `%20` in the output stands for a space.
    utf8_percent_encode(value, FORM_LITERAL)
        .to_string()
        .replace("%20", "+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_header_value_is_not_echoed_by_the_error_source() {
        let refused = http::Request::builder()
            .uri("http://127.0.0.1/")
            .header("authorization", "Bearer sk_live_secret\n")
            .body(())
            .unwrap_err();
        let cause = ureq::Error::Http(refused);
        let shown = format!("{cause} {cause:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn segments_cannot_escape_the_path() {
        assert_eq!(encode_segment("rb_1"), "rb_1");
        assert_eq!(encode_segment("../x?y#z"), "..%2Fx%3Fy%23z");
        assert_eq!(encode_segment("a~b é"), "a~b%20%C3%A9");
        assert_eq!(encode_query_value("a b&c=d"), "a+b%26c%3Dd");
        assert_eq!(encode_query_value("50%20*~"), "50%2520*%7E");
    }
}
