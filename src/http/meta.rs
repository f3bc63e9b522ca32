//! Routes about the service itself: `/`, health and readiness, `/openapi.json`,
//! `/docs`, `/metrics`, the JWKS document and the OAuth server metadata.

use std::{sync::atomic::Ordering, sync::Arc};

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    Json,
};
use serde_json::Value;

use super::{
    openapi,
    views::{self, DatabaseStatus, Environment, HealthStatus, Healthy, ServiceName},
    AppState,
};
use crate::Rotor;

pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

fn environment(rotor: &Rotor) -> Environment {
    Environment::of(&rotor.settings().environment)
}

/// Service name and version
#[utoipa::path(get, path = "/", tag = "meta", operation_id = "root", security(()),
    responses((status = 200, description = "About this service", body = views::Root)))]
pub(crate) async fn root(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    views::body(&views::Root {
        name: ServiceName::Rotor,
        version: VERSION,
        environment: environment(&rotor),
        docs_url: "/docs",
    })
}

/// Liveness
#[utoipa::path(get, path = "/health", tag = "health", operation_id = "health", security(()),
    responses((status = 200, description = "Alive", body = views::Health)))]
pub(crate) async fn health(State(HealthBody(body)): State<HealthBody>) -> Response {
    views::json_bytes(body)
}

/// The `/health` body: nothing in it changes while the process runs, so it is
/// written once.
#[derive(Clone)]
pub(crate) struct HealthBody(axum::body::Bytes);

pub(super) fn health_body(rotor: &Rotor) -> HealthBody {
    HealthBody(
        serde_json::to_vec(&views::Health {
            environment: environment(rotor),
            status: Healthy::Healthy,
            version: VERSION,
        })
        .expect("BUG: a view does not serialize")
        .into(),
    )
}

async fn database_ok(rotor: &Rotor) -> bool {
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(3), rotor.store().ping()).await,
        Ok(Ok(()))
    )
}

/// Health with the database's state
#[utoipa::path(get, path = "/health/detailed", tag = "health", operation_id = "healthDetailed", security(()),
    responses((status = 200, description = "status is degraded when the database does not answer",
        body = views::DetailedHealth)))]
pub(crate) async fn health_detailed(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    let db_ok = database_ok(&rotor).await;
    views::body(&views::DetailedHealth {
        status: if db_ok {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        },
        environment: environment(&rotor),
        version: VERSION,
        database: if db_ok {
            DatabaseStatus::Healthy
        } else {
            DatabaseStatus::Unhealthy
        },
        database_backend: rotor.store().backend(),
    })
}

/// Readiness, for load balancers
///
/// 200 when this process can serve traffic; 503 while starting, shutting down, or
/// when the database does not answer — for load balancer health checks.
#[utoipa::path(get, path = "/ready", tag = "health", operation_id = "ready", security(()),
    responses(
        (status = 200, description = "Ready to serve", body = views::Readiness),
        (status = 503, description = "Starting, shutting down, or the database does not answer",
            body = views::Readiness),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let up = state.ready.load(Ordering::Relaxed) && database_ok(&state.rotor).await;
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, views::body(&views::Readiness { ready: up })).into_response()
}

/// This OpenAPI document
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "openapi", security(()),
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub(crate) async fn openapi_json(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    Json(openapi::document(
        VERSION,
        rotor.settings().pagination_max_size,
    ))
}

/// API reference (HTML, works offline)
#[utoipa::path(get, path = "/docs", tag = "meta", operation_id = "docs", security(()),
    responses((status = 200, description = "HTML page", body = String, content_type = "text/html")))]
pub(crate) async fn docs() -> Html<&'static str> {
    Html(openapi::docs_page())
}

/// Prometheus metrics
///
/// Served here unless metrics are disabled or moved to METRICS_BIND.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics", security(()),
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state.rotor);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Public signing keys (JWKS)
///
/// Empty with HMAC algorithms. With EdDSA or ES256, every key that may still verify an
/// unexpired token is listed, so keys rotate without logging anyone out.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth", operation_id = "jwks", security(()),
    responses((status = 200, description = "The key set", body = views::Jwks)))]
pub(crate) async fn jwks(State(rotor): State<Arc<Rotor>>) -> Response {
    let mut r = Json(rotor.tokens().jwks()).into_response();
    // Short enough that verifiers see a rotated key well before it signs anything
    // they must accept for long; keys are published on creation.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// Authorization server metadata (RFC 8414)
///
/// RFC 8414 metadata. Every URL comes from configuration (`PUBLIC_URL`, and
/// `JWT_ISSUER` for the issuer), never from the request: a Host header is the
/// client's to choose, and echoing it would let anyone poison a shared cache.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    operation_id = "oauthMetadata", security(()),
    responses((status = 200, description = "Metadata", body = views::AuthorizationServerMetadata)))]
pub(crate) async fn oauth_metadata(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    let s = rotor.settings();
    let base = s.public_url.as_str();
    views::body(&views::AuthorizationServerMetadata {
        issuer: s.issuer().to_owned(),
        token_endpoint: format!("{base}/oauth/token"),
        revocation_endpoint: format!("{base}/oauth/revoke"),
        introspection_endpoint: format!("{base}/oauth/introspect"),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        grant_types_supported: vec!["password", "refresh_token"],
        response_types_supported: vec![],
        token_endpoint_auth_methods_supported: vec![
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        revocation_endpoint_auth_methods_supported: vec![
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        introspection_endpoint_auth_methods_supported: vec!["client_secret_basic", "bearer"],
        id_token_signing_alg_values_supported: vec![],
        token_endpoint_auth_signing_alg_values_supported: vec![rotor.tokens().algorithm().as_str()],
        service_documentation: format!("{base}/docs"),
    })
}
