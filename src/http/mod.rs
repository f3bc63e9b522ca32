//! The HTTP edge: axum routers, middleware and serving.
//!
//! Each feature module owns its handlers (`auth`, `users`, `admin`, `oauth`, `meta`),
//! each documented by its `#[utoipa::path]`; the route table (`routes::table`)
//! declares every route once, with its rate-limit bucket. [`routes()`] serves rotor's
//! API from it (what an embedding application nests), and [`app`] adds the service's
//! own routes and the middleware rotor's own server uses. Handlers are thin: parse,
//! call [`crate::Rotor`], shape the answer. Errors become responses only in `error`.

mod admin;
mod auth;
pub(crate) mod cookies;
pub(crate) mod edge;
pub(crate) mod error;
pub(crate) mod extract;
mod meta;
pub(crate) mod oauth;
mod openapi;
pub(crate) mod routes;
pub(crate) mod server;
mod timer;
mod users;
pub(crate) mod validate;
pub(crate) mod views;
pub(crate) mod webhooks;

use std::{future::Future, sync::Arc, time::Instant};

use axum::{
    extract::{FromRef, MatchedPath, Request, State},
    http::{header, HeaderName, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use tokio::net::TcpListener;

pub use edge::App;
pub use extract::{Admin, Auth};
pub use server::{HttpService, HEADER_READ_TIMEOUT};

use crate::{metrics::HttpMetrics, ratelimit::RateLimiter, Rotor};

/// Shared state of every handler: the service and the edge's own state (rate
/// limiters, request metrics, readiness). Build it with [`AppState::new`].
#[derive(Clone)]
pub struct AppState {
    /// The service every handler calls.
    pub rotor: Arc<Rotor>,
    pub(crate) metrics: Arc<HttpMetrics>,
    auth_limiter: Option<Arc<RateLimiter>>,
    default_limiter: Option<Arc<RateLimiter>>,
    /// False while the server is starting (migrations) or shutting down.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// The `/health` body, the same for the life of the process.
    pub(crate) health: meta::HealthBody,
}

impl AppState {
    /// The state for `rotor`, with rate limiters as its settings ask.
    pub fn new(rotor: Arc<Rotor>) -> Self {
        let s = rotor.settings();
        Self {
            auth_limiter: s.rate_limit_auth.map(|r| Arc::new(RateLimiter::new(r))),
            default_limiter: s.rate_limit_default.map(|r| Arc::new(RateLimiter::new(r))),
            metrics: Arc::new(HttpMetrics::default()),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            health: meta::health_body(&rotor),
            rotor,
        }
    }
}

impl AppState {
    /// Charges one password check of `ip` to the shared password bucket (under
    /// `RATE_LIMIT_AUTH`): `Some(429 with Retry-After and this bucket's
    /// X-RateLimit-* headers)` when it is spent. For handlers whose route is not
    /// wholly a password check (`/oauth/token`).
    pub(crate) fn refuse_password_check(&self, ip: Option<&str>) -> Option<error::OAuthError> {
        let (Some(limiter), Some(rate)) =
            (&self.auth_limiter, self.rotor.settings().rate_limit_auth)
        else {
            return None;
        };
        let ip = ip.and_then(|ip| ip.parse().ok())?;
        limiter
            .check(routes::PASSWORD_BUCKET, ip, Instant::now())
            .err()
            .map(|quota| {
                error::OAuthError::rate_limited(rate_limit_message(&rate))
                    .with_headers(rate_limit_refusal_headers(&quota))
            })
    }
}

impl FromRef<AppState> for meta::HealthBody {
    fn from_ref(state: &AppState) -> Self {
        state.health.clone()
    }
}

impl FromRef<AppState> for Arc<Rotor> {
    fn from_ref(state: &AppState) -> Self {
        state.rotor.clone()
    }
}

/// rotor's API (`/v1`, `/oauth`, `/.well-known`), with its state applied and rate
/// limits on the credential routes: merge or nest it into another axum app.
pub fn routes(state: AppState) -> Router {
    api_routes(&state).with_state(state)
}

fn api_routes(state: &AppState) -> Router<AppState> {
    // Each route's entry in the table names its `RATE_LIMIT_AUTH` bucket, if any. With
    // the limit off there is nothing to check: no layer (each costs every request).
    let router = routes::router(routes::Scope::Api);
    if state.auth_limiter.is_none() {
        return router;
    }
    router.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth_rate_limit,
    ))
}

/// The whole application rotor serves: the API, health, root, OpenAPI, docs and
/// metrics, with JSON 404/405, and at its edge ([`App`]) correlation ids, request
/// log spans, metrics, timeouts and CORS.
pub fn app(state: AppState) -> edge::App {
    let s = state.rotor.settings().clone();
    let mut scopes = vec![routes::Scope::Api, routes::Scope::Service];
    let mut router = api_routes(&state).merge(routes::router(routes::Scope::Service));
    if s.metrics_enabled && s.metrics_bind.is_none() {
        router = router.merge(routes::router(routes::Scope::Metrics));
        scopes.push(routes::Scope::Metrics);
    }
    if state.default_limiter.is_some() {
        router = router.route_layer(middleware::from_fn_with_state(
            state.clone(),
            default_rate_limit,
        ));
    }
    let metrics = state.metrics.clone();
    let router = router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    edge::App::new(router, metrics, &scopes, &s)
}

/// A service that answers 503 until `slot` holds the real application, then forwards
/// every request to it: the server listens (and `/ready` says "not yet") while
/// migrations run.
pub fn starting_gate(slot: Arc<std::sync::OnceLock<edge::App>>) -> edge::Gate {
    edge::Gate::new(slot)
}

/// A router serving only `/metrics`, for `METRICS_BIND`.
pub(crate) fn metrics_app(state: AppState) -> Router {
    routes::router(routes::Scope::Metrics).with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight
/// requests before returning. Connections are not capped here; `rotor serve` caps them
/// (`MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_IP`).
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: server::HttpService,
{
    server::serve(listener, app, shutdown).await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The original's (slowapi's) headers on every response of a limited route: the
/// limit, the requests left in the window, and when the window resets (Unix time,
/// whole seconds, rounded up as slowapi does). Headers already set by the handler
/// (a 429 from the password bucket inside `/oauth/token`) are kept.
fn add_rate_limit_headers(response: &mut Response, quota: &crate::ratelimit::Quota) {
    let headers = response.headers_mut();
    if headers.contains_key(&RATELIMIT_LIMIT) {
        return;
    }
    let reset_epoch = quota
        .reset_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + 1);
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(quota.limit));
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        HeaderValue::from(quota.remaining),
    );
    headers.insert(RATELIMIT_RESET.clone(), HeaderValue::from(reset_epoch));
}

fn rate_limit_message(limit: &crate::ratelimit::Rate) -> String {
    format!(
        "Rate limit exceeded: {} per {} seconds",
        limit.limit,
        limit.window.as_secs()
    )
}

/// `Retry-After` and the bucket's `X-RateLimit-*` headers of a 429.
fn rate_limit_refusal_headers(quota: &crate::ratelimit::Quota) -> axum::http::HeaderMap {
    let retry_after = quota.reset_after;
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut r = StatusCode::TOO_MANY_REQUESTS.into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    add_rate_limit_headers(&mut r, quota);
    std::mem::take(r.headers_mut())
}

/// The 429 of a spent bucket, in the route's shape (RFC 6749 under `/oauth/`).
fn rate_limited(
    quota: &crate::ratelimit::Quota,
    limit: &crate::ratelimit::Rate,
    oauth: bool,
) -> Response {
    let headers = rate_limit_refusal_headers(quota);
    if oauth {
        return error::OAuthError::rate_limited(rate_limit_message(limit))
            .with_headers(headers)
            .into_response();
    }
    let mut r = error::detail(
        StatusCode::TOO_MANY_REQUESTS,
        &rate_limit_message(limit),
        "RateLimitExceeded",
    );
    r.headers_mut().extend(headers);
    r
}

async fn limit_with(
    limiter: &RateLimiter,
    rate: crate::ratelimit::Rate,
    bucket: &'static str,
    state: &AppState,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = extract::client_context(&parts, &state.rotor.settings().trusted_proxies);
    let Some(ip) = ctx.ip.as_deref().and_then(|ip| ip.parse().ok()) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    match limiter.check(bucket, ip, Instant::now()) {
        Err(quota) => {
            let oauth = error::is_oauth_path(parts.uri.path());
            rate_limited(&quota, &rate, oauth)
        }
        Ok(quota) => {
            let mut response = next.run(Request::from_parts(parts, body)).await;
            add_rate_limit_headers(&mut response, &quota);
            response
        }
    }
}

fn route_of(req: &Request) -> Option<&str> {
    req.extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
}

async fn auth_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let bucket = routes::bucket(route_of(&req), req.method());
    match (
        &state.auth_limiter,
        state.rotor.settings().rate_limit_auth,
        bucket,
    ) {
        (Some(limiter), Some(rate), Some(bucket)) => {
            limit_with(&limiter.clone(), rate, bucket, &state, req, next).await
        }
        _ => next.run(req).await,
    }
}

async fn default_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let is_auth = routes::bucket(route_of(&req), req.method()).is_some();
    match (
        &state.default_limiter,
        state.rotor.settings().rate_limit_default,
    ) {
        (Some(limiter), Some(rate)) if !is_auth => {
            limit_with(&limiter.clone(), rate, "default", &state, req, next).await
        }
        _ => next.run(req).await,
    }
}
