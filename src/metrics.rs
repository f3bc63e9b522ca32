//! Prometheus metrics in the text exposition format, without a metrics framework:
//! request counts and latency histograms by route and status, plus the service's
//! counters and pool gauges read at scrape time.

use std::{collections::BTreeMap, fmt::Write, sync::Mutex, time::Duration};

use axum::http::Method;
use rustc_hash::FxHashMap;

use crate::Rotor;

/// Latency bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn add(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// HTTP request metrics, keyed by the matched route template (never the raw path, so
/// ids in paths do not explode the label set).
///
/// One map entry per (method, route, status) holds both the request count and the
/// latency histogram, so recording a request is one lock and one lookup with a key
/// that allocates nothing (route templates are `&'static str`); the per-route
/// histograms are summed over statuses when rendered.
/// Methods outside HTTP's registered set share one label, [`OTHER_METHOD`]: a client
/// may send any token as a method, and each would otherwise be a new series kept for
/// the life of the process.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    requests: Mutex<FxHashMap<(&'static str, &'static str, u16), Histogram>>,
}

/// The method label of a request whose method is not one of HTTP's own.
pub(crate) const OTHER_METHOD: &str = "OTHER";

/// The method's metrics label: its name for HTTP's methods, [`OTHER_METHOD`] else.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .position(|m| m == method)
        .map_or(OTHER_METHOD, |i| NAMES[i])
}

impl HttpMetrics {
    pub(crate) fn record(
        &self,
        method: &Method,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let secs = elapsed.as_secs_f64();
        let key = (method_label(method), route, status);
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = r.entry(key).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Renders every metric, reading service counters and pool gauges from `rotor`.
    pub(crate) fn render(&self, rotor: &Rotor) -> String {
        // Sorted as the labels read: method, route, status.
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let by_status: BTreeMap<(&str, &str, u16), &Histogram> = requests
            .iter()
            .map(|((method, route, status), h)| ((*method, *route, *status), h))
            .collect();
        let mut by_route: BTreeMap<(&str, &str), Histogram> = BTreeMap::new();
        for ((method, route, _), h) in &by_status {
            by_route.entry((method, route)).or_default().add(h);
        }
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP http_requests_total HTTP requests by method, route and status.\n# TYPE http_requests_total counter\n");
        for ((method, route, status), h) in &by_status {
            let _ = writeln!(
                out,
                "http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                h.count
            );
        }
        out.push_str("# HELP http_request_duration_seconds HTTP request latency.\n# TYPE http_request_duration_seconds histogram\n");
        for ((method, route), h) in &by_route {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let c = rotor.counters();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let counter = |out: &mut String, name: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            &mut out,
            "rotor_logins_total",
            "Password logins by result.",
            &[
                ("{result=\"ok\"}", get(&c.logins_ok)),
                ("{result=\"failed\"}", get(&c.logins_failed)),
            ],
        );
        counter(
            &mut out,
            "rotor_refreshes_total",
            "Refresh tokens rotated.",
            &[("", get(&c.refreshes))],
        );
        counter(
            &mut out,
            "rotor_refresh_grace_reuses_total",
            "Retries answered with the already-issued successor.",
            &[("", get(&c.grace_reuses))],
        );
        counter(
            &mut out,
            "rotor_replays_detected_total",
            "Replayed refresh tokens (families revoked).",
            &[("", get(&c.replays))],
        );
        counter(
            &mut out,
            "rotor_sessions_revoked_total",
            "Sessions ended by logout, revocation or password change.",
            &[("", get(&c.sessions_revoked))],
        );
        counter(
            &mut out,
            "rotor_cleanup_deleted_rows_total",
            "Rows deleted by cleanup.",
            &[("", get(&c.cleanup_deleted))],
        );
        let w = &c.webhooks;
        counter(
            &mut out,
            "rotor_webhook_attempts_total",
            "Webhook delivery attempts by this process, by result.",
            &[
                ("{result=\"ok\"}", get(&w.attempts_ok)),
                ("{result=\"failed\"}", get(&w.attempts_failed)),
            ],
        );
        counter(
            &mut out,
            "rotor_webhook_deliveries_failed_total",
            "Webhook deliveries this process marked failed after their retry window.",
            &[("", get(&w.gave_up))],
        );
        let _ = writeln!(out, "# HELP rotor_webhook_deliveries Webhook deliveries in the outbox by status (read every few seconds).\n# TYPE rotor_webhook_deliveries gauge");
        let _ = writeln!(
            out,
            "rotor_webhook_deliveries{{status=\"pending\"}} {}",
            get(&w.pending)
        );
        let _ = writeln!(
            out,
            "rotor_webhook_deliveries{{status=\"failed\"}} {}",
            get(&w.failed)
        );
        let (open, idle) = rotor.store().pool_stats();
        let _ = writeln!(out, "# HELP rotor_db_pool_connections Database pool connections.\n# TYPE rotor_db_pool_connections gauge");
        let _ = writeln!(out, "rotor_db_pool_connections{{state=\"open\"}} {open}");
        let _ = writeln!(out, "rotor_db_pool_connections{{state=\"idle\"}} {idle}");
        let _ = writeln!(
            out,
            "rotor_db_pool_connections{{state=\"in_use\"}} {}",
            open.saturating_sub(idle)
        );
        let h = rotor.hasher();
        let _ = writeln!(
            out,
            "# HELP rotor_argon2_workers Password hashing threads.\n# TYPE rotor_argon2_workers gauge\nrotor_argon2_workers {}",
            h.workers()
        );
        let _ = writeln!(
            out,
            "# HELP rotor_argon2_pending Password hashes queued or running.\n# TYPE rotor_argon2_pending gauge\nrotor_argon2_pending {}",
            h.pending()
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_method_outside_http_s_own_is_one_series() {
        let m = HttpMetrics::default();
        for i in 0..100 {
            let method = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
            m.record(&method, "/health", 405, Duration::from_millis(1));
        }
        m.record(&Method::GET, "/health", 200, Duration::from_millis(1));
        m.record(&Method::HEAD, "/health", 200, Duration::from_millis(1));
        let r = m.requests.lock().unwrap();
        assert_eq!(r.len(), 3, "{:?}", r.keys().collect::<Vec<_>>());
        assert_eq!(r[&(OTHER_METHOD, "/health", 405)].count, 100);
        assert_eq!(r[&("GET", "/health", 200)].count, 1);
        assert_eq!(r[&("HEAD", "/health", 200)].count, 1);
    }
}
