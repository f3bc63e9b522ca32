//! The HTTP/1.1 accept loop rotor serves with.
//!
//! axum's `serve` sets no timeouts, so a client that sends its headers one byte a
//! minute (slow loris) holds a connection forever. This loop drives hyper directly to
//! bound what a connection may cost: headers must arrive within
//! [`HEADER_READ_TIMEOUT`] and fit in [`MAX_HEADER_BYTES`] (431 otherwise), open
//! connections are capped in total and per client IP ([`ConnectionLimits`]), and on
//! shutdown every accepted request is finished before the function returns. (Bodies
//! are bounded in size and read time where they are read: `extract::read_body`.)

use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo, response::Response};
use hyper::{body::Incoming, Request};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::{canonical, Cidr, Settings};

/// What the server can serve: an axum `Router`, or rotor's [`super::edge::App`] (and
/// the gate in front of it).
pub trait HttpService:
    tower::Service<
        axum::extract::Request,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            axum::extract::Request,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) accepted.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long shutdown waits for in-flight requests.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How many connections may be open at once. A connection over a cap is closed as
/// soon as it is accepted, before anything is read from it (no 503: answering would
/// mean reading the request, which is what the cap is there to avoid paying for).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// Open connections in all (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Open connections from one peer address (`MAX_CONNECTIONS_PER_IP`): the TCP
    /// peer, never a forwarded header.
    pub max_per_ip: usize,
    /// Peers the per-IP cap does not apply to (`TRUSTED_PROXIES`: a proxy carries many
    /// clients); their connections still count toward the total.
    pub exempt: Vec<Cidr>,
}

impl ConnectionLimits {
    /// No caps (what [`serve`] uses).
    pub(crate) fn unlimited() -> Self {
        Self {
            max_connections: usize::MAX,
            max_per_ip: usize::MAX,
            exempt: Vec::new(),
        }
    }

    /// `MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_IP`, with `TRUSTED_PROXIES` exempt from
    /// the latter.
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        Self {
            max_connections: settings.max_connections,
            max_per_ip: settings.max_connections_per_ip,
            exempt: settings.trusted_proxies.clone(),
        }
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("MAX_CONNECTIONS reached")]
    Total,
    #[error("MAX_CONNECTIONS_PER_IP reached")]
    PerIp,
}

/// Counts open connections against [`ConnectionLimits`].
#[derive(Debug)]
pub(crate) struct ConnectionTracker {
    limits: ConnectionLimits,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    last_warning: Option<Instant>,
}

/// An admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    tracker: Arc<ConnectionTracker>,
    ip: Option<IpAddr>,
}

impl ConnectionTracker {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts are plain integers, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits one more connection from `peer`, or says which cap it would exceed.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionPermit, Refused> {
        let peer = canonical(peer);
        let per_ip = !self.limits.exempt.iter().any(|c| c.contains(peer));
        let mut counts = self.counts();
        if counts.total >= self.limits.max_connections {
            return Err(Refused::Total);
        }
        if per_ip {
            let n = counts.per_ip.entry(peer).or_insert(0);
            if *n >= self.limits.max_per_ip {
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        counts.total += 1;
        Ok(ConnectionPermit {
            tracker: self.clone(),
            ip: per_ip.then_some(peer),
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.counts().total
    }

    /// Whether a refusal should be logged at `warn` (at most once a minute, so a
    /// flood cannot flood the log too).
    fn should_warn(&self, now: Instant) -> bool {
        let mut counts = self.counts();
        let due = counts
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60));
        if due {
            counts.last_warning = Some(now);
        }
        due
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.tracker.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish (up to [`SHUTDOWN_GRACE`]) and returns. No connection
/// caps: see [`serve_with_limits`].
pub(crate) async fn serve<S: HttpService>(
    listener: TcpListener,
    app: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, app, ConnectionLimits::unlimited(), shutdown).await
}

/// [`serve`], closing at once every connection over one of `limits`' caps.
pub(crate) async fn serve_with_limits<S: HttpService>(
    listener: TcpListener,
    app: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tracker = ConnectionTracker::new(limits);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match tracker.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                if tracker.should_warn(Instant::now()) {
                    tracing::warn!(peer = %peer.ip(), open = tracker.open(), "connection refused: {refused} (logged at most once a minute)");
                } else {
                    tracing::debug!(peer = %peer.ip(), "connection refused: {refused}");
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(super::timer::ConnectionTimer::default())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            .keep_alive(true);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(total: usize, per_ip: usize, exempt: &[&str]) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_per_ip: per_ip,
            exempt: exempt.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn the_per_ip_cap_counts_each_peer_address_and_frees_on_drop() {
        let t = ConnectionTracker::new(limits(10, 2, &[]));
        let a1 = t.admit(ip("192.0.2.1")).unwrap();
        let _a2 = t.admit(ip("192.0.2.1")).unwrap();
        // The IPv4-mapped form is the same client.
        assert_eq!(t.admit(ip("::ffff:192.0.2.1")).unwrap_err(), Refused::PerIp);
        let _b = t.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(t.open(), 3);
        drop(a1);
        assert_eq!(t.open(), 2);
        let _a3 = t.admit(ip("192.0.2.1")).unwrap();
    }

    #[test]
    fn the_total_cap_applies_to_everyone_and_entries_do_not_pile_up() {
        let t = ConnectionTracker::new(limits(2, 2, &["10.0.0.0/8"]));
        let p1 = t.admit(ip("10.0.0.1")).unwrap();
        let p2 = t.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(t.admit(ip("192.0.2.9")).unwrap_err(), Refused::Total);
        assert_eq!(t.admit(ip("10.0.0.1")).unwrap_err(), Refused::Total);
        drop((p1, p2));
        assert_eq!(t.open(), 0);
        assert!(t.counts().per_ip.is_empty());
    }

    #[test]
    fn trusted_proxies_are_exempt_from_the_per_ip_cap_only() {
        let t = ConnectionTracker::new(limits(3, 1, &["10.0.0.0/8"]));
        let held: Vec<_> = (0..3).map(|_| t.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(t.admit(ip("10.0.0.1")).unwrap_err(), Refused::Total);
        drop(held);
        let _one = t.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(t.admit(ip("192.0.2.1")).unwrap_err(), Refused::PerIp);
    }

    #[test]
    fn refusals_are_logged_at_warn_at_most_once_a_minute() {
        let t = ConnectionTracker::new(ConnectionLimits::unlimited());
        let now = Instant::now();
        assert!(t.should_warn(now));
        assert!(!t.should_warn(now + Duration::from_secs(59)));
        assert!(t.should_warn(now + Duration::from_secs(60)));
    }
}
