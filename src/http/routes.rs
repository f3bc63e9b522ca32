//! The route table: every route rotor serves, declared once.
//!
//! A route's method, path and documentation are the `#[utoipa::path]` on its handler;
//! its entry here adds where it is served ([`Scope`]) and its `RATE_LIMIT_AUTH`
//! bucket. The axum routers ([`router`]), the rate-limit lookup ([`bucket`]), the
//! OpenAPI document ([`super::openapi::document`]) and the route list the tests walk
//! ([`list`]) are all read off [`table`].
//!
//! Adding a route: write the handler with its `#[utoipa::path]`, add one line below.

use std::{collections::HashMap, sync::LazyLock};

use axum::{http::Method, routing::MethodRouter, Router};
use utoipa::openapi::{path::Paths, schema::Schema, RefOr};
use utoipa_axum::{router::UtoipaMethodRouter, routes};

use super::{admin, auth, meta, oauth, users, webhooks, AppState};

/// The rate-limit bucket of every password check of a client: login, login-mobile,
/// change-password and the OAuth password grant (charged by its handler).
pub(crate) const PASSWORD_BUCKET: &str = "password";

/// Where a route is served.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// rotor's API (`/v1`, `/oauth`, `/.well-known`): [`super::routes`], what an
    /// embedding application merges, and rotor's own server.
    Api,
    /// The service's own routes (`/`, health, docs): rotor's server only.
    Service,
    /// `/metrics`: rotor's server unless metrics are off or moved to `METRICS_BIND`,
    /// where [`super::metrics_app`] serves it.
    Metrics,
}

/// One route: its handler, where it is served, its rate-limit bucket and its
/// documentation.
pub(crate) struct Route {
    pub method: Method,
    /// The path template, as axum and OpenAPI both spell it (`/v1/users/{id}`).
    pub path: String,
    pub scope: Scope,
    /// Its `RATE_LIMIT_AUTH` bucket; `None`: not limited by it (but by
    /// `RATE_LIMIT_DEFAULT`, if set).
    pub bucket: Option<&'static str>,
    handler: MethodRouter<AppState>,
    schemas: Vec<(String, RefOr<Schema>)>,
    paths: Paths,
}

impl Route {
    fn new(scope: Scope, (schemas, paths, handler): UtoipaMethodRouter<AppState>) -> Self {
        let mut items = paths.paths.iter();
        let (Some((path, item)), None) = (items.next(), items.next()) else {
            unreachable!("BUG: a route entry names one handler")
        };
        let methods: Vec<Method> = [
            (&item.get, Method::GET),
            (&item.post, Method::POST),
            (&item.put, Method::PUT),
            (&item.patch, Method::PATCH),
            (&item.delete, Method::DELETE),
        ]
        .into_iter()
        .filter_map(|(op, m)| op.as_ref().map(|_| m))
        .collect();
        let [method] = methods.as_slice() else {
            unreachable!("BUG: {path}: a handler documents exactly one method")
        };
        Self {
            method: method.clone(),
            path: path.clone(),
            scope,
            bucket: None,
            handler,
            schemas,
            paths,
        }
    }

    fn api(r: UtoipaMethodRouter<AppState>) -> Self {
        Self::new(Scope::Api, r)
    }

    fn service(r: UtoipaMethodRouter<AppState>) -> Self {
        Self::new(Scope::Service, r)
    }

    /// Limited under `RATE_LIMIT_AUTH`, per client IP, in `bucket`.
    fn limit(mut self, bucket: &'static str) -> Self {
        self.bucket = Some(bucket);
        self
    }

    /// The operation and the schemas it refers to.
    pub(crate) fn documentation(self) -> (Vec<(String, RefOr<Schema>)>, Paths) {
        (self.schemas, self.paths)
    }
}

/// Every route rotor serves.
pub(crate) fn table() -> Vec<Route> {
    vec![
        // /v1/auth: every password check shares one bucket, so alternating routes gains a
        // guesser nothing.
        Route::api(routes!(auth::login)).limit(PASSWORD_BUCKET),
        Route::api(routes!(auth::refresh)).limit("refresh"),
        Route::api(routes!(auth::login_mobile)).limit(PASSWORD_BUCKET),
        Route::api(routes!(auth::refresh_mobile)).limit("refresh"),
        Route::api(routes!(auth::logout)),
        Route::api(routes!(auth::logout_all)),
        Route::api(routes!(auth::me)),
        Route::api(routes!(auth::change_password)).limit(PASSWORD_BUCKET),
        // Sessions and the caller's security log.
        Route::api(routes!(auth::logout_others)),
        Route::api(routes!(auth::list_sessions)),
        Route::api(routes!(auth::revoke_session)),
        Route::api(routes!(auth::my_events)),
        // /v1/users. Each account creation runs Argon2: limited so a flood cannot starve
        // logins.
        Route::api(routes!(users::register)).limit("register"),
        Route::api(routes!(users::get_me)),
        Route::api(routes!(users::update_me)),
        Route::api(routes!(users::get_user)),
        // /v1/admin
        Route::api(routes!(admin::list_users)),
        Route::api(routes!(admin::create_user)).limit("admin-create"),
        Route::api(routes!(admin::get_user)),
        Route::api(routes!(admin::update_user)),
        Route::api(routes!(admin::delete_user)),
        Route::api(routes!(admin::list_events)),
        Route::api(routes!(webhooks::list_endpoints)),
        Route::api(routes!(webhooks::list_deliveries)),
        Route::api(routes!(webhooks::retry_delivery)),
        // OAuth 2.0 and the signing keys. The password grant is also charged to the
        // password bucket, by the handler (which alone knows the grant type).
        Route::api(routes!(oauth::token)).limit("oauth-token"),
        Route::api(routes!(oauth::revoke)),
        Route::api(routes!(oauth::introspect)),
        Route::api(routes!(meta::oauth_metadata)),
        Route::api(routes!(meta::jwks)),
        // The service itself.
        Route::service(routes!(meta::health)),
        Route::service(routes!(meta::health_detailed)),
        Route::service(routes!(meta::ready)),
        Route::new(Scope::Metrics, routes!(meta::metrics)),
        Route::service(routes!(meta::root)),
        Route::service(routes!(meta::openapi_json)),
        Route::service(routes!(meta::docs)),
    ]
}

/// The routes of `scope`, unlayered.
pub(crate) fn router(scope: Scope) -> Router<AppState> {
    table()
        .into_iter()
        .filter(|r| r.scope == scope)
        .fold(Router::new(), |router, r| router.route(&r.path, r.handler))
}

/// `(method, path, scope, bucket)` of every route, read off the table once: what the
/// request path needs at run time, with `'static` lifetimes, so per-request lookups
/// (rate-limit buckets, metrics labels) allocate nothing.
static ROUTES: LazyLock<Vec<Listed>> = LazyLock::new(list);

static BUCKETS: LazyLock<HashMap<&'static str, Vec<(Method, &'static str)>>> =
    LazyLock::new(|| {
        let mut buckets: HashMap<&'static str, Vec<(Method, &'static str)>> = HashMap::new();
        for (method, path, _, bucket) in ROUTES.iter() {
            if let Some(bucket) = bucket {
                buckets
                    .entry(path.as_str())
                    .or_default()
                    .push((method.clone(), bucket));
            }
        }
        buckets
    });

/// The `RATE_LIMIT_AUTH` bucket of a request to the route `route` (its matched path),
/// or `None` when it is not limited under it.
pub(crate) fn bucket(route: Option<&str>, method: &Method) -> Option<&'static str> {
    BUCKETS
        .get(route?)?
        .iter()
        .find_map(|(m, bucket)| (m == method).then_some(*bucket))
}

/// The path templates of `scope`, each once (several methods may share one).
pub(crate) fn paths(scope: Scope) -> impl Iterator<Item = &'static str> {
    let mut seen = std::collections::HashSet::new();
    ROUTES
        .iter()
        .filter(move |(_, _, s, _)| *s == scope)
        .map(|(_, path, _, _)| path.as_str())
        .filter(move |path| seen.insert(*path))
}

/// `(method, path template, scope, bucket)` of a route.
pub(crate) type Listed = (Method, String, Scope, Option<&'static str>);

/// `(method, path template, scope, bucket)` of every route, for tests and tools.
pub fn list() -> Vec<Listed> {
    table()
        .into_iter()
        .map(|r| (r.method, r.path, r.scope, r.bucket))
        .collect()
}
