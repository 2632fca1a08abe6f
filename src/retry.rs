//! The retry policy of CONTRACT §4 as pure functions: which failures are retried, and how
//! long to wait before each retry. No clock, no randomness of its own: the caller passes the
//! jitter, so the schedule is deterministic under test.

use std::time::Duration;

/// Base delay before the first retry.
pub(crate) const BASE_DELAY: Duration = Duration::from_millis(250);
/// Upper bound of the uniform jitter added to each delay.
pub(crate) const MAX_JITTER: Duration = Duration::from_millis(100);
/// No wait, whatever the backoff or `Retry-After` says, exceeds this.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(30);

/// How one attempt ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No HTTP answer: connect refused/reset, timeout, broken connection.
    TransportFailure,
    /// An HTTP answer with this status.
    Status(u16),
}

/// True for requests that must never be sent twice. Every POST of the API creates something
/// (a robot, a session, a command, a live credential), so a retry after a lost response could
/// duplicate it. The contract lists exactly these four; a POST added later is treated the
/// same until it is known to be safe.
pub(crate) fn is_non_idempotent(method: &str) -> bool {
    method.eq_ignore_ascii_case("POST")
}

/// Whether an attempt that ended with `outcome` may be retried (the count is checked apart).
pub(crate) fn is_retryable(method: &str, outcome: Outcome) -> bool {
    if is_non_idempotent(method) {
        return false;
    }
    match outcome {
        Outcome::TransportFailure | Outcome::Status(429) => true,
        Outcome::Status(status) if status >= 500 => {
            method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("DELETE")
        }
        Outcome::Status(_) => false,
    }
}

/// The wait before retry `n` (0 for the first retry): `0.25 s × 2^n` plus `jitter × 0.1 s`,
/// lengthened to `retry_after` when the server asked for more, and capped at 30 s.
///
/// `jitter` is a uniform sample in `[0, 1)`; values outside are clamped.
pub(crate) fn backoff_delay(n: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let exponential = BASE_DELAY.saturating_mul(2u32.saturating_pow(n.min(16)));
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let delay = exponential.saturating_add(MAX_JITTER.mul_f64(jitter));
    let delay = match retry_after {
        Some(asked) if asked > delay => asked,
        _ => delay,
    };
    delay.min(MAX_DELAY)
}

/// Reads a `Retry-After` value in delta-seconds (fractions accepted). HTTP dates and
/// anything else unreadable are ignored: the computed backoff then applies.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_DELAY.as_secs_f64())))
}

/// Whether a status may carry a `Retry-After` the client honours.
pub(crate) fn honours_retry_after(status: u16) -> bool {
    status == 429 || status == 503
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_idempotent_posts_are_never_retried() {
        // Every POST of the contract (create robot, session, command, participant token).
        for outcome in [
            Outcome::TransportFailure,
            Outcome::Status(429),
            Outcome::Status(503),
        ] {
            assert!(!is_retryable("POST", outcome), "{outcome:?}");
        }
    }

    #[test]
    fn transport_failures_and_429_retry_on_other_methods() {
        for method in ["GET", "DELETE", "PATCH"] {
            assert!(is_retryable(method, Outcome::TransportFailure));
            assert!(is_retryable(method, Outcome::Status(429)));
            assert!(!is_retryable(method, Outcome::Status(404)));
            assert!(!is_retryable(method, Outcome::Status(400)));
        }
    }

    #[test]
    fn server_errors_retry_only_on_get_and_delete() {
        assert!(is_retryable("GET", Outcome::Status(500)));
        assert!(is_retryable("DELETE", Outcome::Status(503)));
        assert!(!is_retryable("PATCH", Outcome::Status(500)));
    }

    #[test]
    fn backoff_schedule_doubles_adds_jitter_and_caps() {
        assert_eq!(backoff_delay(0, 0.0, None), Duration::from_millis(250));
        assert_eq!(backoff_delay(1, 0.0, None), Duration::from_millis(500));
        assert_eq!(backoff_delay(2, 0.5, None), Duration::from_millis(1050));
        assert_eq!(backoff_delay(20, 0.99, None), MAX_DELAY);
        assert!(backoff_delay(0, 0.999_999, None) < Duration::from_millis(350));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_or_exceeds_the_cap() {
        assert_eq!(
            backoff_delay(0, 0.0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff_delay(3, 0.0, Some(Duration::from_millis(10))),
            Duration::from_secs(2)
        );
        assert_eq!(backoff_delay(0, 0.0, Some(Duration::from_secs(120))), MAX_DELAY);
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("1e9"), Some(MAX_DELAY));
    }
}
