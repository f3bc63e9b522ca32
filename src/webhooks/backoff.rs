//! The retry schedule: exponential backoff with jitter, for at least 24 hours.
//!
//! The n-th failed attempt (n ≥ 1) waits `min(BASE · 2^(n-1), CAP)`, scaled by a
//! jitter factor in [0.75, 1.25), before the next one. Once an attempt fails after
//! [`RETRY_SPAN`] has passed since the delivery's retry window opened (the event's
//! creation, or a manual retry), the delivery is marked failed. So every delivery is
//! tried for at least 24 hours, and the last attempt comes at most `CAP · 1.25`
//! after that.

use chrono::{DateTime, Duration, Utc};

/// The first retry's delay.
pub const BASE: Duration = Duration::seconds(5);
/// The longest delay between two attempts.
pub const CAP: Duration = Duration::hours(2);
/// How long a delivery is retried before it is marked failed.
pub const RETRY_SPAN: Duration = Duration::hours(24);

/// The delay after the `failures`-th consecutive failed attempt (1 = the first), with
/// `jitter` in [0, 1) mapped to a factor in [0.75, 1.25).
pub fn delay(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = BASE.checked_mul(1_i32 << exp).map_or(CAP, |d| d.min(CAP));
    let factor = 0.75 + jitter.clamp(0.0, 1.0) * 0.5;
    #[allow(clippy::cast_possible_truncation)] // at most 2.5 h in milliseconds
    Duration::milliseconds((raw.num_milliseconds() as f64 * factor) as i64)
}

/// When to try again after the `failures`-th failed attempt at `now`, or `None`: give
/// up (the window opened at `window_start` has lasted [`RETRY_SPAN`]).
pub fn next_attempt(
    failures: u32,
    window_start: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    if now - window_start >= RETRY_SPAN {
        return None;
    }
    Some(now + delay(failures, jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Runs the schedule with a fixed jitter, each attempt failing at its due time.
    fn schedule(jitter: f64) -> Vec<DateTime<Utc>> {
        let start = t0();
        let mut attempts = vec![start];
        let mut failures = 0;
        while let Some(next) = next_attempt(failures + 1, start, *attempts.last().unwrap(), jitter)
        {
            failures += 1;
            attempts.push(next);
            assert!(attempts.len() < 1000, "the schedule must end");
        }
        attempts
    }

    #[test]
    fn delays_grow_exponentially_to_the_cap() {
        assert_eq!(delay(1, 0.5), Duration::seconds(5));
        assert_eq!(delay(2, 0.5), Duration::seconds(10));
        assert_eq!(delay(3, 0.5), Duration::seconds(20));
        assert_eq!(delay(12, 0.5), CAP);
        assert_eq!(delay(u32::MAX, 0.5), CAP);
        assert_eq!(delay(0, 0.5), Duration::seconds(5));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for j in [0.0, 0.25, 0.5, 0.999_999, 1.0, -3.0, 7.0] {
            let d = delay(4, j);
            assert!(
                d >= Duration::seconds(30) && d <= Duration::seconds(50),
                "{j}: {d}"
            );
        }
        assert!(delay(4, 0.0) < delay(4, 0.9));
    }

    #[test]
    fn every_schedule_covers_at_least_24_hours_and_ends() {
        for jitter in [0.0, 0.3, 0.5, 0.999] {
            let attempts = schedule(jitter);
            let span = *attempts.last().unwrap() - attempts[0];
            assert!(span >= RETRY_SPAN, "jitter {jitter}: {span}");
            assert!(
                span <= RETRY_SPAN + CAP * 5 / 4 + Duration::seconds(1),
                "{span}"
            );
            // Strictly increasing, never more than CAP·1.25 apart.
            for w in attempts.windows(2) {
                assert!(w[1] > w[0]);
                assert!(w[1] - w[0] <= CAP * 5 / 4);
            }
            assert!(
                attempts.len() > 10 && attempts.len() < 40,
                "{}",
                attempts.len()
            );
        }
    }

    #[test]
    fn a_manual_retry_opens_a_new_window() {
        let start = t0();
        let late = start + RETRY_SPAN + Duration::hours(1);
        assert_eq!(next_attempt(30, start, late, 0.5), None);
        assert!(next_attempt(1, late, late, 0.5).is_some());
    }
}
