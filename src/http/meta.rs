//! Routes about the service itself: `/`, health and readiness, `/openapi.json`,
//! `/docs`, `/metrics`, the JWKS document and the OAuth server metadata.

use std::{sync::atomic::Ordering, sync::Arc};

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};

use super::{openapi, AppState};
use crate::Rotor;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router(with_metrics: bool) -> Router<AppState> {
    let r = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/health/detailed", get(health_detailed))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs));
    if with_metrics {
        r.merge(metrics_router())
    } else {
        r
    }
}

/// The JWKS document and the OAuth server metadata: part of rotor's API proper, so
/// [`super::routes`] (what an embedding application merges) serves them too.
pub fn well_known_router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth_metadata),
        )
}

pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn root(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    Json(json!({
        "name": "rotor",
        "version": VERSION,
        "environment": rotor.settings().environment.as_str(),
        "docs_url": "/docs",
    }))
}

async fn health(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "environment": rotor.settings().environment.as_str(),
        "version": VERSION,
    }))
}

async fn database_ok(rotor: &Rotor) -> bool {
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(3), rotor.store().ping()).await,
        Ok(Ok(()))
    )
}

async fn health_detailed(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    let db_ok = database_ok(&rotor).await;
    Json(json!({
        "status": if db_ok { "healthy" } else { "degraded" },
        "environment": rotor.settings().environment.as_str(),
        "version": VERSION,
        "database": if db_ok { "healthy" } else { "unhealthy" },
        "database_backend": rotor.store().backend(),
    }))
}

/// 200 when this process can serve traffic; 503 while starting, shutting down, or
/// when the database does not answer — for load balancer health checks.
async fn ready(State(state): State<AppState>) -> Response {
    let up = state.ready.load(Ordering::Relaxed) && database_ok(&state.rotor).await;
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": up }))).into_response()
}

async fn openapi_json() -> Json<Value> {
    Json(openapi::document(VERSION))
}

async fn docs() -> Html<&'static str> {
    Html(openapi::docs_page())
}

async fn metrics(State(state): State<AppState>) -> Response {
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

async fn jwks(State(rotor): State<Arc<Rotor>>) -> Response {
    let mut r = Json(rotor.tokens().jwks()).into_response();
    // Short enough that verifiers see a rotated key well before it signs anything
    // they must accept for long; keys are published on creation.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// RFC 8414 metadata. Every URL comes from configuration (`PUBLIC_URL`, and
/// `JWT_ISSUER` for the issuer), never from the request: a Host header is the
/// client's to choose, and echoing it would let anyone poison a shared cache.
async fn oauth_metadata(State(rotor): State<Arc<Rotor>>) -> Json<Value> {
    let s = rotor.settings();
    let base = s.public_url.as_str();
    Json(json!({
        "issuer": s.issuer(),
        "token_endpoint": format!("{base}/oauth/token"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
        "id_token_signing_alg_values_supported": [],
        "token_endpoint_auth_signing_alg_values_supported": [rotor.tokens().algorithm().as_str()],
        "service_documentation": format!("{base}/docs"),
    }))
}
