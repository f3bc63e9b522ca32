//! The edge of rotor's own server: one service in front of the router that gives every
//! request its correlation id (and, under `LOG_REQUESTS`, its log span), records its
//! metrics, bounds it by `REQUEST_TIMEOUT_SECONDS` and answers CORS.
//!
//! These used to be four `Router::layer`s. axum applies such a layer to every route
//! and clones the whole layered stack (boxed services, the CORS configuration with its
//! vectors) for every request it routes; here the stack is built once and a request
//! costs one `Arc` clone. Being outside the router, the edge finds the route template
//! for the metrics label itself, with the same matcher (`matchit`) and the same
//! templates axum routes by. The CORS answer is the one `tower_http::cors::CorsLayer`
//! gave for rotor's configuration, header for header (a test compares the two), with
//! its header values computed once instead of per request.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use rustc_hash::FxHashMap;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use super::{error, routes};
use crate::{config::Settings, metrics::HttpMetrics};

static CORRELATION: HeaderName = HeaderName::from_static("x-correlation-id");

/// The metrics label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// rotor's whole application as one service: the edge around the router. Cheap to
/// clone (one `Arc`).
#[derive(Clone)]
pub struct App {
    edge: Arc<Edge>,
}

struct Edge {
    router: Router,
    metrics: Arc<HttpMetrics>,
    /// Path template of every route the router serves, matched as axum matches them.
    labels: matchit::Router<&'static str>,
    /// The templates without a parameter, which only the path itself matches: found
    /// by one hash lookup before the matcher is asked.
    static_labels: FxHashMap<&'static str, &'static str>,
    timeout: Duration,
    cors: Cors,
    log_requests: bool,
}

impl App {
    pub(super) fn new(
        router: Router,
        metrics: Arc<HttpMetrics>,
        scopes: &[routes::Scope],
        settings: &Settings,
    ) -> Self {
        let mut labels = matchit::Router::new();
        let mut static_labels = FxHashMap::default();
        for path in scopes.iter().flat_map(|s| routes::paths(*s)) {
            if !path.contains('{') {
                static_labels.insert(path, path);
            }
            // The router accepted these very templates, so the matcher does too.
            if let Err(e) = labels.insert(path, path) {
                tracing::error!(path, error = %e, "route template not labelled in metrics");
            }
        }
        Self {
            edge: Arc::new(Edge {
                router,
                metrics,
                labels,
                static_labels,
                timeout: Duration::from_secs(settings.request_timeout_seconds),
                cors: Cors::new(settings),
                log_requests: settings.log_requests,
            }),
        }
    }

    /// Answers one request.
    pub fn handle(&self, req: Request) -> impl Future<Output = Response> + Send + 'static {
        self.edge.clone().handle(req)
    }

    /// [`Self::handle`], boxed as a service's future: built in place, so the (large)
    /// future is written once rather than moved through wrappers.
    fn answer_boxed(&self, req: Request) -> BoxedAnswer {
        Box::pin(self.edge.clone().answer(req))
    }
}

type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedAnswer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        self.answer_boxed(req)
    }
}

/// Answers 503 until `slot` holds the application, then hands every request to it: the
/// server listens (and `/ready` says "not yet") while migrations run.
#[derive(Clone)]
pub struct Gate {
    slot: Arc<OnceLock<App>>,
}

impl Gate {
    pub(super) fn new(slot: Arc<OnceLock<App>>) -> Self {
        Self { slot }
    }
}

impl Service<Request> for Gate {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedAnswer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.slot.get() {
            Some(app) => app.answer_boxed(req),
            None => Box::pin(std::future::ready(Ok(error::detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "rotor is starting",
                "ServiceUnavailable",
            )))),
        }
    }
}

/// A sane `X-Correlation-ID` of the request (visible ASCII, 1 to 128 bytes), or a new
/// random one.
fn correlation_id(req: &Request) -> HeaderValue {
    if let Some(v) = req.headers().get(&CORRELATION).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
    }) {
        return v.clone();
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or_else(|_| unreachable!("BUG: a UUID is a header value"))
}

impl Edge {
    async fn answer(self: Arc<Self>, req: Request) -> Result<Response, Infallible> {
        Ok(self.handle(req).await)
    }

    async fn handle(self: Arc<Self>, req: Request) -> Response {
        let id = correlation_id(&req);
        let mut response = if self.log_requests {
            // Every log line of the request carries its correlation id. Only visible
            // ASCII gets here (see `correlation_id`).
            let span = crate::logging::request_span(
                id.to_str().unwrap_or_default(),
                req.method().as_str(),
                req.uri().path(),
            );
            async {
                let response = self.measured(req).await;
                tracing::debug!(status = response.status().as_u16(), "response");
                response
            }
            .instrument(span)
            .await
        } else {
            self.measured(req).await
        };
        response.headers_mut().insert(CORRELATION.clone(), id);
        response
    }

    /// The request under the timeout, counted in the metrics by route template.
    async fn measured(&self, req: Request) -> Response {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path();
        let route = match self.static_labels.get(path) {
            Some(template) => template,
            None => self.labels.at(path).map_or(UNMATCHED, |m| *m.value),
        };
        let oauth = error::is_oauth_path(path);
        let deadline = tokio::time::Instant::from_std(start) + self.timeout;
        let response = match tokio::time::timeout_at(deadline, self.cors(req)).await {
            Ok(response) => response,
            // An empty body, as tower-http's timeout layer answered, or RFC 6749's shape
            // under `/oauth/`.
            Err(_) if oauth => error::OAuthError::request_timeout().into_response(),
            Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
        };
        self.metrics
            .record(&method, route, response.status().as_u16(), start.elapsed());
        response
    }

    async fn cors(&self, req: Request) -> Response {
        self.cors.around(self.router.clone(), req).await
    }
}

/// Which origins may read responses.
enum Origins {
    /// `CORS_ORIGINS=*`: `Access-Control-Allow-Origin: *` on every answer.
    Any,
    /// The listed origins, echoed when the request's `Origin` is one of them.
    List(Vec<HeaderValue>),
}

/// rotor's CORS rules: `tower_http::cors::CorsLayer` as `cors_layer` configures it (see
/// the tests), with every header value computed once.
struct Cors {
    origins: Origins,
    credentials: bool,
    vary: HeaderValue,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
}

const ALLOWED_METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PATCH,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
];

fn allowed_headers() -> [HeaderName; 6] {
    [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::ACCEPT,
        HeaderName::from_static("x-correlation-id"),
        HeaderName::from_static("x-device-id"),
        HeaderName::from_static("x-device-name"),
    ]
}

fn exposed_headers() -> [HeaderName; 5] {
    [
        HeaderName::from_static("x-correlation-id"),
        header::RETRY_AFTER,
        super::RATELIMIT_LIMIT.clone(),
        super::RATELIMIT_REMAINING.clone(),
        super::RATELIMIT_RESET.clone(),
    ]
}

/// `items` joined by `separator`, as one header value.
fn joined<'a>(items: impl IntoIterator<Item = &'a str>, separator: &str) -> HeaderValue {
    let text = items.into_iter().collect::<Vec<_>>().join(separator);
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| unreachable!("BUG: header names and methods join to a header value"))
}

impl Cors {
    fn new(s: &Settings) -> Self {
        let wildcard = s.cors_origins.iter().any(|o| o == "*");
        let origins = if wildcard {
            Origins::Any
        } else {
            Origins::List(
                s.cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect(),
            )
        };
        Self {
            origins,
            // Browsers refuse credentials with a wildcard origin; so does tower-http.
            credentials: s.cors_allow_credentials && !wildcard,
            vary: joined(
                [
                    header::ORIGIN,
                    header::ACCESS_CONTROL_REQUEST_METHOD,
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                ]
                .iter()
                .map(HeaderName::as_str),
                ", ",
            ),
            allow_methods: joined(ALLOWED_METHODS.iter().map(Method::as_str), ","),
            allow_headers: joined(allowed_headers().iter().map(HeaderName::as_str), ","),
            expose_headers: joined(exposed_headers().iter().map(HeaderName::as_str), ","),
        }
    }

    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::List(list) => origin.filter(|o| list.contains(o)).cloned(),
        }
    }

    /// `router`'s answer with the CORS headers, or the preflight answer to an `OPTIONS`
    /// request.
    async fn around(&self, router: Router, req: Request) -> Response {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let preflight = req.method() == Method::OPTIONS;
        let Ok(mut response) = router.oneshot(req).await;
        if preflight {
            // No route answers OPTIONS (the route table has none), so the router answered
            // 405 with the path's `Allow` header, if it has a route; the preflight keeps
            // that header, as it did when CORS was a layer inside the router.
            let allow = response.headers_mut().remove(header::ALLOW);
            let mut answer = self.preflight(origin.as_ref());
            if let Some(allow) = allow {
                answer.headers_mut().insert(header::ALLOW, allow);
            }
            return answer;
        }
        self.decorate(&mut response, origin.as_ref());
        response
    }

    /// The answer to any `OPTIONS` request (a preflight): 200, empty, the CORS headers.
    fn preflight(&self, origin: Option<&HeaderValue>) -> Response {
        let mut response = Response::new(axum::body::Body::empty());
        let headers = response.headers_mut();
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(header::VARY, self.vary.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        if let Some(allowed) = self.allow_origin(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        }
        response
    }

    /// Adds the CORS headers to the router's answer: `Vary` after any the handler set,
    /// the others replacing the handler's.
    fn decorate(&self, response: &mut Response, origin: Option<&HeaderValue>) {
        let headers = response.headers_mut();
        headers.append(header::VARY, self.vary.clone());
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            self.expose_headers.clone(),
        );
        if let Some(allowed) = self.allow_origin(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get};
    use tower_http::cors::{AllowOrigin, CorsLayer};

    use super::*;

    /// How rotor configured tower-http's CORS layer before the edge answered CORS
    /// itself: the reference the edge's answers are compared with.
    fn cors_layer(s: &Settings) -> CorsLayer {
        let wildcard = s.cors_origins.iter().any(|o| o == "*");
        let origins = if wildcard {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                s.cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        let layer = CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(ALLOWED_METHODS)
            .allow_headers(allowed_headers())
            .expose_headers(exposed_headers());
        if s.cors_allow_credentials && !wildcard {
            layer.allow_credentials(true)
        } else {
            layer
        }
    }

    fn settings(origins: &[&str], credentials: bool) -> Settings {
        let mut s = Settings::for_tests(std::path::Path::new("/nonexistent"));
        s.cors_origins = origins.iter().map(|o| (*o).to_owned()).collect();
        s.cors_allow_credentials = credentials;
        s
    }

    fn request(method: Method, path: &str, origin: Option<&str>) -> Request {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::empty()).unwrap()
    }

    /// The headers, by name (the order of different names carries no meaning, RFC 9110
    /// §5.3; that of one name's values does, and the stable sort keeps it).
    fn headers(r: &Response) -> Vec<(String, String)> {
        let mut h: Vec<_> = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        h.sort_by(|a, b| a.0.cmp(&b.0));
        // An empty preflight's `content-length: 0`: set by axum's router outside the old
        // CORS layer, by hyper for the edge's (the same bytes on the wire).
        h.retain(|(k, v)| !(k == "content-length" && v == "0"));
        h
    }

    /// A handler that sets a `Vary` and a CORS header of its own.
    async fn handler() -> Response {
        let mut r = "ok".into_response();
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("cookie"));
        r.headers_mut().insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-mine"),
        );
        r
    }

    #[tokio::test]
    async fn cors_answers_as_tower_http_did_header_for_header() {
        let configs = [
            settings(&["*"], false),
            settings(&["*"], true),
            settings(&["https://a.example", "https://b.example"], true),
            settings(&["https://a.example"], false),
            settings(&[], false),
        ];
        let origins = [
            None,
            Some("https://a.example"),
            Some("https://b.example"),
            Some("https://evil.example"),
        ];
        for s in &configs {
            // A path with a route (its `Allow` header on preflights) and one without.
            let plain = Router::new().route("/x", get(handler));
            let reference = plain.clone().layer(cors_layer(s));
            let ours = Cors::new(s);
            for (method, path) in [Method::GET, Method::POST, Method::OPTIONS]
                .into_iter()
                .flat_map(|m| [(m.clone(), "/x"), (m, "/nothing")])
            {
                for origin in origins {
                    let want = reference
                        .clone()
                        .oneshot(request(method.clone(), path, origin))
                        .await
                        .unwrap();
                    let got = ours
                        .around(plain.clone(), request(method.clone(), path, origin))
                        .await;
                    assert_eq!(got.status(), want.status(), "{method} {path} {origin:?}");
                    assert_eq!(
                        headers(&got),
                        headers(&want),
                        "{method} {path} {origin:?} {:?}",
                        s.cors_origins
                    );
                }
            }
        }
    }
}
