//! Per-client fixed-window rate limiting, in process.
//!
//! Each (bucket, client IP) pair gets `limit` requests per window. With several rotor
//! processes each counts on its own, so a load balancer spreading a client over N
//! processes allows up to N times the rate (documented in the README).

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    str::FromStr,
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

/// A rate such as `20/minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub window: Duration,
}

impl Rate {
    pub const fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            window: Duration::from_secs(60),
        }
    }
}

impl FromStr for Rate {
    type Err = ();
    /// Accepts `N/second|minute|hour|day` (also `N per minute`, `N/5 minutes`).
    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim().to_ascii_lowercase();
        let (n, unit) = s
            .split_once('/')
            .or_else(|| s.split_once(" per "))
            .ok_or(())?;
        let limit: u32 = n.trim().parse().map_err(|_| ())?;
        let unit = unit.trim();
        let (count, unit) = match unit.split_once(' ') {
            Some((c, u)) => (c.parse::<u64>().map_err(|_| ())?, u.trim()),
            None => (1, unit),
        };
        let secs = match unit.trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3600,
            "day" => 86400,
            _ => return Err(()),
        };
        if limit == 0 || count == 0 {
            return Err(());
        }
        Ok(Self {
            limit,
            window: Duration::from_secs(secs * count),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.window.as_secs())
    }
}

/// Where a client stands in its current window, after a request was counted (or
/// refused): what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in this window (0 once refused).
    pub remaining: u32,
    /// Time until the window ends and the count starts again.
    pub reset_after: Duration,
    /// The wall-clock time the window ends: the same for every request of a window.
    pub reset_at: SystemTime,
}

/// (bucket, client) → (window start, requests counted in it, wall-clock window end).
type Windows = HashMap<(&'static str, IpAddr), (Instant, u32, SystemTime)>;

/// Counts requests per key in fixed windows.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: Rate,
    windows: Mutex<Windows>,
}

impl RateLimiter {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request: `Ok` with what is left of the window, or `Err` (nothing
    /// counted) when the limit is already reached; `reset_after` is then the wait.
    pub(crate) fn check(
        &self,
        bucket: &'static str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Quota, Quota> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 100_000 {
            // Bound memory under a flood of distinct addresses: forget closed windows.
            let window = self.rate.window;
            windows.retain(|_, (start, _, _)| now.duration_since(*start) < window);
        }
        let new_window = || (now, 0, SystemTime::now() + self.rate.window);
        let entry = windows.entry((bucket, ip)).or_insert_with(new_window);
        if now.duration_since(entry.0) >= self.rate.window {
            *entry = new_window();
        }
        let reset_after = self.rate.window - now.duration_since(entry.0);
        let limit = self.rate.limit;
        if entry.1 >= limit {
            return Err(Quota {
                limit,
                remaining: 0,
                reset_after,
                reset_at: entry.2,
            });
        }
        entry.1 += 1;
        Ok(Quota {
            limit,
            remaining: limit - entry.1,
            reset_after,
            reset_at: entry.2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!("20/minute".parse::<Rate>(), Ok(Rate::per_minute(20)));
        assert_eq!(
            "5/second".parse::<Rate>().unwrap().window,
            Duration::from_secs(1)
        );
        assert_eq!(
            "100 per hour".parse::<Rate>().unwrap().window,
            Duration::from_secs(3600)
        );
        assert_eq!(
            "10/5 minutes".parse::<Rate>().unwrap().window,
            Duration::from_secs(300)
        );
        assert!("abc".parse::<Rate>().is_err());
        assert!("0/minute".parse::<Rate>().is_err());
    }

    #[test]
    fn limits_per_bucket_and_ip_and_resets_after_the_window() {
        let rl = RateLimiter::new(Rate::per_minute(2));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t = Instant::now();
        let first = rl.check("login", ip, t).unwrap();
        assert_eq!((first.limit, first.remaining), (2, 1));
        assert_eq!(first.reset_after, Duration::from_secs(60));
        let second = rl.check("login", ip, t + Duration::from_secs(5)).unwrap();
        assert_eq!((second.remaining, second.reset_after.as_secs()), (0, 55));
        let refused = rl
            .check("login", ip, t + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_after, Duration::from_secs(50));
        assert!(first.reset_at == second.reset_at && second.reset_at == refused.reset_at);
        assert!(rl.check("refresh", ip, t).is_ok());
        assert!(rl.check("login", other, t).is_ok());
        assert!(rl.check("login", ip, t + Duration::from_secs(60)).is_ok());
    }
}
