//! The OpenAPI 3.1 description of rotor's HTTP API (served at `/openapi.json`) and an
//! offline reference page that renders it (`/docs`).
//!
//! Nothing here lists routes: every operation comes from the `#[utoipa::path]` on its
//! handler, gathered from the route table ([`super::routes::table`]), and every schema
//! from the type that serializes the body (`views`) or describes the request. This
//! module adds what belongs to no handler: `info`, tags, the security schemes and the
//! responses several routes share (401, 403, 404, 422, 429).

use serde_json::Value;
use utoipa::{
    openapi::{
        header::HeaderBuilder,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        Content, Ref, RefOr, Response, ResponseBuilder, Type,
    },
    Modify, OpenApi, ToResponse,
};

use super::views::{HttpValidationError, ServiceError};

const JSON: &str = "application/json";
#[cfg(test)]
const FORM: &str = "application/x-www-form-urlencoded";

const DESCRIPTION: &str = "\
Drop-in replacement for the FastAPI backend's `/v1` API, plus sessions, a security log and OAuth 2.0 endpoints.

Service errors answer `{\"detail\": \"<message>\", \"type\": \"<ErrorKind>\"}`; a missing or invalid bearer token \
answers 401 `{\"detail\": \"Not authenticated\"}` with `WWW-Authenticate: Bearer` (never 403); invalid input answers \
422 with a pydantic-style `detail` list. Unknown routes answer 404 `{\"detail\": \"Not Found\"}`, oversized bodies 413.

Every timestamp is RFC 3339 in UTC with a `Z` suffix. `X-Correlation-ID` is echoed, or generated. The credential \
routes are rate limited per client IP (`RATE_LIMIT_AUTH`) and, when `RATE_LIMIT_DEFAULT` is set, so is every other \
route: every answer of a limited route carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and \
`X-RateLimit-Reset`, and a 429 also `Retry-After`.";

/// What the document holds besides its operations.
#[derive(OpenApi)]
#[openapi(
    info(title = "rotor", license(name = "MIT", identifier = "MIT")),
    tags(
        (name = "auth", description = "Log in, refresh, log out, the current user."),
        (name = "sessions", description = "The caller's sessions (one per login) and security log."),
        (name = "users", description = "Registration and profiles."),
        (name = "admin", description = "User management and the security log (admin bearer, else 403)."),
        (name = "oauth", description = "OAuth 2.0 (RFC 6749, 7009, 7662, 8414) and the signing keys."),
        (name = "health", description = "Health, readiness and metrics."),
        (name = "meta", description = "The service itself and this documentation."),
    ),
    components(
        schemas(ServiceError, HttpValidationError),
        responses(NotAuthenticated, Forbidden, UserNotFound, Invalid, RateLimited),
    ),
    modifiers(&SecuritySchemes),
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An access token from a login or refresh route: `Authorization: Bearer <token>`.",
            ))
            .build();
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "refreshCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "refresh_token",
                "The HttpOnly refresh cookie set by /v1/auth/login and /v1/auth/refresh.",
            ))),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "On /oauth/introspect: any user name with INTROSPECTION_SECRET as the password. \
                         On /oauth/token: optional public-client credentials (client_id, empty secret).",
                    ))
                    .build(),
            ),
        );
    }
}

/// A `{detail, type}` response, with headers `(name, description, type)`.
fn service_error(description: &str, headers: &[(&str, &str, Type)]) -> RefOr<Response> {
    let mut r = ResponseBuilder::new().description(description).content(
        JSON,
        Content::new(Some(Ref::from_schema_name("ServiceError"))),
    );
    for (name, description, ty) in headers {
        r = r.header(
            *name,
            HeaderBuilder::new()
                .schema(utoipa::openapi::schema::Object::with_type(ty.clone()))
                .description(Some(*description))
                .build(),
        );
    }
    r.build().into()
}

/// Declares a response shared by several operations: `(status = 401, response = X)`
/// in a `#[utoipa::path]` refers to it in `components/responses`.
macro_rules! shared_response {
    ($(#[$doc:meta])* $name:ident => $body:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;
        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), $body)
            }
        }
    };
}

shared_response!(
    /// 401 from the `Auth`/`Admin` extractors.
    NotAuthenticated => service_error(
        "Missing, invalid or expired bearer token, or its user is inactive or its session revoked: \
         `{\"detail\": \"Not authenticated\"}`",
        &[("WWW-Authenticate", "The accepted authentication schemes", Type::String)],
    )
);
shared_response!(
    /// 403 from the `Admin` extractor.
    Forbidden => service_error("PermissionDenied: admin privileges required", &[])
);
shared_response!(UserNotFound => service_error("UserNotFound", &[]));
shared_response!(
    /// 422: FastAPI's validation error body.
    Invalid => ResponseBuilder::new()
        .description("Invalid input")
        .content(JSON, Content::new(Some(Ref::from_schema_name("HTTPValidationError"))))
        .build()
        .into()
);
shared_response!(
    /// 429 from the rate limiter.
    RateLimited => service_error(
        "RateLimitExceeded",
        &[
            ("Retry-After", "Seconds until the next attempt may succeed", Type::Integer),
            ("X-RateLimit-Limit", "Requests allowed per window", Type::Integer),
            ("X-RateLimit-Remaining", "Requests left in this window (0)", Type::Integer),
            ("X-RateLimit-Reset", "When the window ends, in Unix seconds", Type::Integer),
        ],
    )
);

/// The OpenAPI document; `version` is the server's version, reported in `info`, and
/// `max_page_size` the `PAGINATION_MAX_SIZE` the `size` parameters are capped at.
pub(super) fn document(version: &str, max_page_size: u32) -> Value {
    let mut doc = Base::openapi();
    doc.info.version = version.to_owned();
    doc.info.description = Some(DESCRIPTION.to_owned());
    let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
    for route in super::routes::table() {
        let (route_schemas, paths) = route.documentation();
        schemas.extend(route_schemas);
        doc.paths.merge(paths);
    }
    cap_page_size(&mut doc.paths, max_page_size);
    let mut doc = serde_json::to_value(&doc).expect("BUG: the OpenAPI document does not serialize");
    doc["info"]["summary"] =
        "Sessions and rotating refresh tokens, JWT access tokens, users.".into();
    doc
}

/// Sets the `maximum` of every `size` query parameter: a setting, not a constant.
fn cap_page_size(paths: &mut utoipa::openapi::path::Paths, max: u32) {
    use utoipa::openapi::{path::ParameterIn, schema::Schema};
    let operations = paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    });
    for op in operations {
        for p in op.parameters.iter_mut().flatten() {
            if p.name == "size" && p.parameter_in == ParameterIn::Query {
                if let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() {
                    o.maximum = Some(f64::from(max).into());
                }
            }
        }
    }
}

/// A self-contained HTML reference for [`document`]: it fetches `/openapi.json` and
/// renders it with inline script and style, so it works with no network beyond rotor.
pub(super) fn docs_page() -> &'static str {
    DOCS_PAGE
}

const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rotor API reference</title>
<style>
body {
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
  margin: 0; color: #1d232a; background: #f7f8fa;
}
header { background: #1d232a; color: #fff; padding: 1rem 2rem; }
header h1 { margin: 0; font-size: 1.4rem; }
nav { padding: .5rem 2rem; background: #e6ebf1; position: sticky; top: 0; z-index: 1; }
nav a { margin-right: 1rem; }
main { padding: 1rem 2rem 4rem; max-width: 72rem; }
a { color: #1f5fa8; }
code, .path { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
details.op { background: #fff; border: 1px solid #d5dbe3; border-radius: 6px; margin: .5rem 0; }
details.op > summary { cursor: pointer; padding: .5rem .75rem; display: flex; gap: .75rem; align-items: baseline; }
.m {
  font: bold 12px ui-monospace, monospace; padding: 2px 6px; border-radius: 4px;
  color: #fff; min-width: 4.5em; text-align: center; text-transform: uppercase;
}
.get { background: #2f7d32; } .post { background: #1f5fa8; } .patch { background: #8a5a00; }
.put { background: #6b3fa0; } .delete { background: #b3261e; }
.opbody { padding: 0 1rem 1rem; }
table { border-collapse: collapse; width: 100%; margin: .25rem 0 .75rem; font-size: 14px; background: #fff; }
th, td { border: 1px solid #d5dbe3; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f0f3f7; font-weight: 600; }
h4 { margin: .75rem 0 .25rem; }
.muted { color: #5b6672; }
.req { color: #b3261e; }
</style>
</head>
<body>
<header><h1 id="title">rotor API</h1><div id="summary"></div></header>
<nav id="nav"></nav>
<main id="main"><p>Loading <code>/openapi.json</code>…</p></main>
<script>
"use strict";
let spec = {};
const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ENTITIES[c]);
// Descriptions: escaped, with `x` shown as code.
const text = (s) => esc(s).replace(/`([^`]+)`/g, "<code>$1</code>");
const row = (cells, tag = "td") => `<tr>${cells.map((c) => `<${tag}>${c}</${tag}>`).join("")}</tr>`;
const table = (head, rows) => `<table>${row(head, "th")}${rows.join("")}</table>`;
const star = (required) => (required ? ' <span class="req">*</span>' : "");
// Follows local "$ref"s ("#/components/...") to the object they name.
function deref(o) {
  while (o && o.$ref) {
    o = o.$ref.slice(2).split("/").reduce((v, k) => v && v[k.replace(/~1/g, "/").replace(/~0/g, "~")], spec);
  }
  return o || {};
}
// A one-line type; component schemas appear by name, linked to their table.
function typeOf(s) {
  if (!s) return "";
  if (s.$ref) {
    const name = esc(s.$ref.split("/").pop());
    return `<a href="#schema-${name}">${name}</a>`;
  }
  if (s.const !== undefined) return `<code>${esc(JSON.stringify(s.const))}</code>`;
  const types = [].concat(s.type || "any");
  const literal = (v) => `<code>${esc(JSON.stringify(v))}</code>`;
  const one = (t) => {
    if (t === "array") return `array of ${typeOf(s.items)}`;
    if (s.enum && t !== "null") return s.enum.map(literal).join(" | ");
    return esc(t) + (s.format && t !== "null" ? ` <span class="muted">(${esc(s.format)})</span>` : "");
  };
  return types.map(one).join(" | ");
}
function constraints(s = {}) {
  const c = [];
  if (s.minLength !== undefined && s.maxLength !== undefined) c.push(`${s.minLength}..${s.maxLength} characters`);
  else if (s.maxLength !== undefined) c.push(`at most ${s.maxLength} characters`);
  else if (s.minLength !== undefined) c.push(`at least ${s.minLength} characters`);
  if (s.minimum !== undefined) c.push(`≥ ${s.minimum}`);
  if (s.maximum !== undefined) c.push(`≤ ${s.maximum}`);
  if (s.default !== undefined) c.push(`default ${JSON.stringify(s.default)}`);
  return c.length ? `<div class="muted">${esc(c.join(", "))}</div>` : "";
}
// An object schema's properties as a table: required fields first, starred.
function propsTable(schema) {
  const s = deref(schema);
  const required = s.required || [];
  const rank = (k) => (required.includes(k) ? required.indexOf(k) : required.length);
  const props = Object.entries(s.properties || {}).sort(([a], [b]) => rank(a) - rank(b));
  if (!props.length) return `<p>${typeOf(schema)}</p>`;
  const rows = props.map(([k, p]) => row([
    `<code>${esc(k)}</code>${star(required.includes(k))}`, typeOf(p) + constraints(p), text(p.description),
  ]));
  return table(["field", "type", "description"], rows);
}
const media = (content) => Object.entries(content || {})
  .map(([m, c]) => `<div><code>${esc(m)}</code> ${typeOf(c.schema)}</div>`).join("");
function operation(path, method, op) {
  const id = esc(op.operationId);
  let h = `<details class="op" id="${id}"><summary><span class="m ${method}">${method}</span>`
    + `<span class="path">${esc(path)}</span><span>${esc(op.summary)}</span></summary><div class="opbody">`;
  if (op.description) h += `<p>${text(op.description)}</p>`;
  const auth = (op.security || []).map((r) => Object.keys(r).join(" + ") || "none").join(" or ") || "none";
  h += `<p><b>Authentication:</b> ${esc(auth)} <span class="muted">· operationId <code>${id}</code></span></p>`;
  const params = (op.parameters || []).map(deref);
  if (params.length) {
    h += "<h4>Parameters</h4>" + table(["name", "in", "type", "description"], params.map((p) => row([
      `<code>${esc(p.name)}</code>${star(p.required)}`, esc(p.in), typeOf(p.schema) + constraints(p.schema),
      text(p.description),
    ])));
  }
  if (op.requestBody) {
    const body = deref(op.requestBody);
    const first = Object.values(body.content || {})[0];
    h += "<h4>Request body</h4>" + media(body.content) + (first ? propsTable(first.schema) : "");
  }
  const responses = Object.entries(op.responses || {}).map(([code, r0]) => {
    const r = deref(r0);
    const headers = Object.entries(r.headers || {}).map(([n, v]) =>
      `<div class="muted">header <code>${esc(n)}</code>: ${text(deref(v).description)}</div>`).join("");
    return row([`<b>${esc(code)}</b>`, text(r.description) + headers, media(r.content)]);
  });
  return h + "<h4>Responses</h4>" + table(["status", "description", "body"], responses) + "</div></details>";
}
function render() {
  const info = spec.info || {};
  const components = spec.components || {};
  document.title = `${info.title} ${info.version} API reference`;
  document.getElementById("title").textContent = `${info.title} ${info.version}`;
  document.getElementById("summary").textContent = info.summary || "";
  const tags = (spec.tags || []).map((t) => [t.name, t.description]);
  const byTag = {};
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const method of ["get", "put", "post", "patch", "delete"]) {
      if (!item[method]) continue;
      const tag = (item[method].tags || ["other"])[0];
      if (!tags.some(([n]) => n === tag)) tags.push([tag, ""]);
      (byTag[tag] = byTag[tag] || []).push(operation(path, method, item[method]));
    }
  }
  const shown = tags.filter(([name]) => byTag[name]);
  let h = (info.description || "").split(/\n\s*\n/).map((p) => `<p>${text(p)}</p>`).join("");
  for (const [name, desc] of shown) {
    h += `<section id="tag-${esc(name)}"><h2>${esc(name)}</h2><p class="muted">${text(desc)}</p>`
      + byTag[name].join("") + "</section>";
  }
  const schemes = Object.entries(components.securitySchemes || {}).map(([name, s]) => row([
    `<code>${esc(name)}</code>`, esc([s.type, s.scheme, s.in, s.name].filter(Boolean).join(" ")), text(s.description),
  ]));
  h += '<section id="security"><h2>Authentication schemes</h2>' + table(["name", "kind", "description"], schemes);
  h += '</section><section id="schemas"><h2>Schemas</h2>';
  for (const [name, s] of Object.entries(components.schemas || {})) {
    h += `<h3 id="schema-${esc(name)}">${esc(name)}</h3>` + (s.description ? `<p>${text(s.description)}</p>` : "");
    h += propsTable(s);
  }
  document.getElementById("main").innerHTML = h + "</section>";
  document.getElementById("nav").innerHTML = shown.map(([n]) => `<a href="#tag-${esc(n)}">${esc(n)}</a>`).join("")
    + '<a href="#security">authentication</a><a href="#schemas">schemas</a>';
  // Links to an operation (#operationId) open it.
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target) {
    if (target.tagName === "DETAILS") target.open = true;
    target.scrollIntoView();
  }
}
fetch("/openapi.json")
  .then((r) => {
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  })
  .then((s) => {
    spec = s;
    render();
  })
  .catch((e) => {
    document.getElementById("main").innerHTML = `<p class="req">Could not load /openapi.json: ${esc(e.message)}</p>`;
  });
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                assert!(
                    METHODS.contains(&method.as_str()),
                    "{path}: {method} is not an HTTP method"
                );
                ops.push((method.clone(), path.clone(), op));
            }
        }
        ops
    }

    #[test]
    fn the_document_describes_exactly_the_routes_of_the_table() {
        let doc = document("0.0.0", 100);
        let documented: HashSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let served: HashSet<(String, String)> = super::super::routes::list()
            .into_iter()
            .map(|(m, p, _, _)| (m.as_str().to_ascii_lowercase(), p))
            .collect();
        assert_eq!(served.len(), 37, "a route is declared twice");
        assert_eq!(documented, served);
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], "0.0.0");
        assert_eq!(doc["info"]["title"], "rotor");
    }

    #[test]
    fn every_operation_has_a_unique_id_a_known_tag_and_responses() {
        let doc = document("0.0.0", 100);
        let tags: HashSet<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        let mut ids = HashSet::new();
        for (method, path, op) in operations(&doc) {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(
                !id.contains('_'),
                "{id}: operation ids are camelCase (set operation_id)"
            );
            let tag = op["tags"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: no tag"));
            assert!(tags.contains(tag), "{id}: unknown tag {tag}");
            assert!(
                !op["summary"].as_str().unwrap_or("").is_empty(),
                "{id}: no summary"
            );
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{id}: no responses"
            );
            for requirement in op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{id}: no security"))
            {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(
                        schemes.contains_key(scheme),
                        "{id}: unknown security scheme {scheme}"
                    );
                }
            }
            // Path templates and path parameters agree.
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"].as_array().into_iter().flatten().any(|p| {
                    let p = resolve(&doc, p);
                    p["in"] == "path" && p["name"] == name && p["required"] == true
                });
                assert!(declared, "{id}: path parameter {name} not declared");
            }
        }
    }

    fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => v,
        }
    }

    fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_to_a_component() {
        let doc = document("0.0.0", 100);
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(
            refs.len() > 50,
            "expected the document to use shared components"
        );
        for r in refs {
            assert!(r.starts_with("#/components/"), "non-local $ref {r}");
            assert!(
                doc.pointer(&r[1..]).is_some_and(Value::is_object),
                "dangling $ref {r}"
            );
        }
        for name in [
            "User",
            "TokenResponse",
            "LoginResponse",
            "MobileLoginResponse",
            "MobileTokenResponse",
            "ServiceError",
            "HTTPValidationError",
            "Session",
            "SessionList",
            "AuditEvent",
            "UserPage",
            "EventPage",
            "OAuthTokenResponse",
            "OAuthError",
            "IntrospectionResponse",
        ] {
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "schema {name} missing"
            );
        }
    }

    #[test]
    fn form_and_json_bodies_are_told_apart() {
        let doc = document("0.0.0", 100);
        let media = |path: &str, method: &str| {
            let body = &doc["paths"][path][method]["requestBody"]["content"];
            body.as_object().unwrap().keys().next().unwrap().clone()
        };
        for path in [
            "/v1/auth/login",
            "/v1/auth/login-mobile",
            "/oauth/token",
            "/oauth/revoke",
            "/oauth/introspect",
        ] {
            assert_eq!(media(path, "post"), FORM, "{path}");
        }
        for (path, method) in [
            ("/v1/auth/refresh-mobile", "post"),
            ("/v1/users", "post"),
            ("/v1/users/me", "patch"),
        ] {
            assert_eq!(media(path, method), JSON, "{path}");
        }
    }

    #[test]
    fn the_rate_limited_routes_are_the_credential_routes() {
        let limited: HashSet<(String, String, &str)> = super::super::routes::list()
            .into_iter()
            .filter_map(|(m, p, _, b)| Some((m.to_string(), p, b?)))
            .collect();
        let expected: HashSet<(String, String, &str)> = [
            ("POST", "/v1/auth/login", "password"),
            ("POST", "/v1/auth/login-mobile", "password"),
            ("POST", "/v1/auth/change-password", "password"),
            ("POST", "/v1/auth/refresh", "refresh"),
            ("POST", "/v1/auth/refresh-mobile", "refresh"),
            ("POST", "/oauth/token", "oauth-token"),
            ("POST", "/v1/users", "register"),
            ("POST", "/v1/admin/users", "admin-create"),
        ]
        .into_iter()
        .map(|(m, p, b)| (m.to_owned(), p.to_owned(), b))
        .collect();
        assert_eq!(limited, expected);
        // Each limited operation documents its 429.
        let doc = document("0.0.0", 100);
        for (method, path, _) in limited {
            let op = &doc["paths"][&path][method.to_ascii_lowercase()];
            assert!(
                op["responses"]["429"].is_object(),
                "{method} {path}: no 429"
            );
        }
    }

    #[test]
    fn the_docs_page_is_self_contained() {
        let page = docs_page();
        assert!(page.contains("fetch(\"/openapi.json\")"));
        for external in ["<script src", "<link", "@import", "http://", "https://"] {
            assert!(!page.contains(external), "docs page references {external}");
        }
    }
}
