//! The rotation rules: what to do with a presented refresh token that the atomic
//! rotation did not consume, and how long a successor may live.
//!
//! The happy path (a live token rotated) happens in one conditional database step; the
//! rules here only judge the *other* cases, from a snapshot of the stored row.

use chrono::{DateTime, Duration, Utc};

/// What the store holds for a presented token, reduced to what the rules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedToken {
    /// Rotated away or revoked.
    pub is_revoked: bool,
    /// When (the grace window counts from here).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Its idle expiry.
    pub expires_at: DateTime<Utc>,
}

/// The verdict on a presented token that could not be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No such token: reject, change nothing.
    Unknown,
    /// Expired and never revoked: reject, change nothing.
    Expired,
    /// Live in the store yet not rotatable (its user is inactive or its session was
    /// ended): reject, change nothing.
    NotUsable,
    /// Revoked within the grace window: if its successor is still the family's live
    /// token, hand that successor out again; otherwise it is a replay.
    GraceCandidate,
    /// A revoked token presented outside the grace window: revoke the whole family.
    Replay,
}

/// Judges a presented token that the atomic rotation did not consume.
///
/// A revoked token is a replay unless it was revoked no more than `grace` ago (and
/// `grace` is positive), in which case it is a candidate for idempotent retry. The
/// caller must still check that the successor is the family's live token.
pub fn judge(token: Option<&PresentedToken>, now: DateTime<Utc>, grace: Duration) -> Verdict {
    let Some(token) = token else {
        return Verdict::Unknown;
    };
    if token.is_revoked {
        // `now` is read when the request starts; a racing request that started later
        // may have rotated the token since, stamping `revoked_at` a little after our
        // `now` (and clocks of several processes differ slightly). So the window is
        // measured both ways.
        let within_grace = grace > Duration::zero()
            && token.revoked_at.is_some_and(|at| (now - at).abs() <= grace);
        return if within_grace {
            Verdict::GraceCandidate
        } else {
            Verdict::Replay
        };
    }
    if token.expires_at <= now {
        Verdict::Expired
    } else {
        Verdict::NotUsable
    }
}

/// When a token issued now expires: the refresh lifetime (the idle timeout), but never
/// past the session's absolute end.
pub fn successor_expiry(
    now: DateTime<Utc>,
    refresh_lifetime: Duration,
    session_ends_at: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let idle = now + refresh_lifetime;
    match session_ends_at {
        Some(end) if end < idle => end,
        _ => idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
    }

    fn revoked(at: DateTime<Utc>) -> PresentedToken {
        PresentedToken {
            is_revoked: true,
            revoked_at: Some(at),
            expires_at: at + Duration::days(7),
        }
    }

    #[test]
    fn unknown_token_is_unknown() {
        assert_eq!(judge(None, t0(), Duration::seconds(10)), Verdict::Unknown);
    }

    #[test]
    fn revoked_within_grace_is_a_candidate() {
        let tok = revoked(t0());
        let g = Duration::seconds(10);
        assert_eq!(judge(Some(&tok), t0(), g), Verdict::GraceCandidate);
        assert_eq!(
            judge(Some(&tok), t0() + Duration::seconds(10), g),
            Verdict::GraceCandidate
        );
    }

    #[test]
    fn revoked_after_grace_is_a_replay() {
        let tok = revoked(t0());
        let later = t0() + Duration::seconds(10) + Duration::microseconds(1);
        assert_eq!(
            judge(Some(&tok), later, Duration::seconds(10)),
            Verdict::Replay
        );
    }

    #[test]
    fn zero_grace_is_the_strict_original() {
        assert_eq!(
            judge(Some(&revoked(t0())), t0(), Duration::zero()),
            Verdict::Replay
        );
    }

    #[test]
    fn revoked_and_expired_is_still_a_replay() {
        let mut tok = revoked(t0());
        tok.expires_at = t0() - Duration::days(1);
        assert_eq!(
            judge(Some(&tok), t0() + Duration::days(30), Duration::seconds(10)),
            Verdict::Replay
        );
    }

    #[test]
    fn a_rotation_stamped_just_after_our_now_is_within_grace() {
        // A racing request that started after ours rotated the token first.
        let tok = revoked(t0() + Duration::milliseconds(3));
        assert_eq!(
            judge(Some(&tok), t0(), Duration::seconds(10)),
            Verdict::GraceCandidate
        );
        let far = revoked(t0() + Duration::seconds(11));
        assert_eq!(
            judge(Some(&far), t0(), Duration::seconds(10)),
            Verdict::Replay
        );
    }

    #[test]
    fn expired_live_token_is_expired() {
        let tok = PresentedToken {
            is_revoked: false,
            revoked_at: None,
            expires_at: t0(),
        };
        assert_eq!(
            judge(Some(&tok), t0(), Duration::seconds(10)),
            Verdict::Expired
        );
    }

    #[test]
    fn live_token_that_lost_rotation_is_not_usable() {
        let tok = PresentedToken {
            is_revoked: false,
            revoked_at: None,
            expires_at: t0() + Duration::days(1),
        };
        assert_eq!(
            judge(Some(&tok), t0(), Duration::seconds(10)),
            Verdict::NotUsable
        );
    }

    #[test]
    fn successor_expiry_is_capped_by_the_session_end() {
        let week = Duration::days(7);
        assert_eq!(successor_expiry(t0(), week, None), t0() + week);
        let end = t0() + Duration::days(2);
        assert_eq!(successor_expiry(t0(), week, Some(end)), end);
        let far = t0() + Duration::days(30);
        assert_eq!(successor_expiry(t0(), week, Some(far)), t0() + week);
    }
}
