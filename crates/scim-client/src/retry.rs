//! When to retry a request, and how long to wait: exponential backoff with jitter (backon),
//! stretched to the service's `Retry-After` when it asks for longer.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

/// The backoff schedule for one request.
pub(crate) fn schedule(max_retries: usize) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(max_retries)
        .with_jitter()
        .build()
}

/// The backoff schedule after connection failures while a time budget lasts
/// (`ClientOptions::unreachable_after`): quick at first, then every 5 s, without a count.
pub(crate) fn transport_schedule() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_jitter()
        .build()
}

/// Whether a status may be retried. 429 and 503 mean "not processed, come back"; other 5xx
/// may have been applied, so they are retried only for idempotent requests.
pub(crate) fn retryable_status(status: u16, idempotent: bool) -> bool {
    match status {
        429 | 503 => true,
        500 | 502 | 504 => idempotent,
        _ => false,
    }
}

/// Parses `Retry-After` (delay-seconds or an HTTP date, RFC 9110 §10.2.3). Capped so that a
/// hostile or broken service cannot park the agent for hours.
pub(crate) fn retry_after(value: Option<&str>, now: SystemTime) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(300);
    let value = value?.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after(Some("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(Some("100000"), now),
            Some(Duration::from_secs(300))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(
            retry_after(Some(&later), now),
            Some(Duration::from_secs(12))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(retry_after(Some(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after(Some("soon"), now), None);
        assert_eq!(retry_after(None, now), None);
    }

    #[test]
    fn only_safe_statuses_are_retried_for_non_idempotent_requests() {
        assert!(retryable_status(429, false));
        assert!(retryable_status(503, false));
        assert!(!retryable_status(500, false));
        assert!(retryable_status(500, true));
        assert!(!retryable_status(409, true));
        assert!(!retryable_status(401, true));
    }

    #[test]
    fn schedule_is_bounded() {
        assert_eq!(schedule(3).count(), 3);
    }
}
