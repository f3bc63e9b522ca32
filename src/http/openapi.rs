//! The OpenAPI 3.1 description of rotor's HTTP API (served at `/openapi.json`) and an
//! offline reference page that renders it (`/docs`). Both are written by hand rather
//! than derived from the handlers: the route set is small, and this keeps a schema
//! crate out of the dependency tree. A test below checks that the document names every
//! route rotor serves and that every `$ref` in it resolves.

use serde_json::{json, Map, Value};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// The OpenAPI document; `version` is the server's version, reported in `info`.
pub fn document(version: &str) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rotor",
            "version": version,
            "summary": "Sessions and rotating refresh tokens, JWT access tokens, users.",
            "description": DESCRIPTION,
            "license": { "name": "MIT", "identifier": "MIT" },
        },
        "tags": [
            { "name": "auth", "description": "Log in, refresh, log out, the current user." },
            { "name": "sessions", "description": "The caller's sessions (one per login) and security log." },
            { "name": "users", "description": "Registration and profiles." },
            { "name": "admin", "description": "User management and the security log (admin bearer, else 403)." },
            { "name": "oauth", "description": "OAuth 2.0 (RFC 6749, 7009, 7662, 8414) and the signing keys." },
            { "name": "health", "description": "Health, readiness and metrics." },
            { "name": "meta", "description": "The service itself and this documentation." },
        ],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "headers": headers(),
            "responses": responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from a login or refresh route: `Authorization: Bearer <token>`.",
                },
                "refreshCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "refresh_token",
                    "description": "The HttpOnly refresh cookie set by /v1/auth/login and /v1/auth/refresh.",
                },
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "On /oauth/introspect: any user name with INTROSPECTION_SECRET as the password. \
                                    On /oauth/token: optional public-client credentials (client_id, empty secret).",
                },
            },
        },
    })
}

const DESCRIPTION: &str = "\
Drop-in replacement for the FastAPI backend's `/v1` API, plus sessions, a security log and OAuth 2.0 endpoints.

Service errors answer `{\"detail\": \"<message>\", \"type\": \"<ErrorKind>\"}`; a missing or invalid bearer token \
answers 401 `{\"detail\": \"Not authenticated\"}` with `WWW-Authenticate: Bearer` (never 403); invalid input answers \
422 with a pydantic-style `detail` list. Unknown routes answer 404 `{\"detail\": \"Not Found\"}`, oversized bodies 413.

Every timestamp is RFC 3339 in UTC with a `Z` suffix. `X-Correlation-ID` is echoed, or generated. The credential \
routes are rate limited per client IP (`RATE_LIMIT_AUTH`) and, when `RATE_LIMIT_DEFAULT` is set, so is every other \
route: 429 with `Retry-After`.";

// --- small builders -------------------------------------------------------------

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn param(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

fn header(name: &str) -> Value {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

/// A shared response from `components/responses`.
fn shared(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn content(media: &str, schema: Value) -> Value {
    json!({ media: { "schema": schema } })
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": content(JSON, schema_ref(schema)) })
}

fn form_body(schema: &str) -> Value {
    json!({ "required": true, "content": content(FORM, schema_ref(schema)) })
}

/// A JSON response whose body is the named component schema.
fn ok(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": content(JSON, schema_ref(schema)) })
}

fn no_content(description: &str) -> Value {
    json!({ "description": description })
}

/// A `{detail, type}` error response.
fn err(description: &str) -> Value {
    ok(description, "ServiceError")
}

/// An RFC 6749 `{error, error_description}` error response.
fn oauth_err(description: &str) -> Value {
    ok(description, "OAuthError")
}

/// Adds response headers, `(header name, component name)`, to a response.
fn with_headers(mut response: Value, names: &[(&str, &str)]) -> Value {
    for (name, component) in names {
        response["headers"][*name] = header(component);
    }
    response
}

/// A token-bearing response: JSON, never cached.
fn tokens(description: &str, schema: &str) -> Value {
    with_headers(ok(description, schema), &[("Cache-Control", "NoStore")])
}

fn bearer() -> Value {
    json!([{ "bearer": [] }])
}

fn cookie() -> Value {
    json!([{ "refreshCookie": [] }])
}

fn public() -> Value {
    json!([])
}

fn object(required: &[&str], properties: Value) -> Value {
    let mut o = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn sized(min: usize, max: usize) -> Value {
    json!({ "type": "string", "minLength": min, "maxLength": max })
}

fn integer() -> Value {
    json!({ "type": "integer" })
}

fn boolean() -> Value {
    json!({ "type": "boolean" })
}

fn uuid() -> Value {
    json!({ "type": "string", "format": "uuid" })
}

fn email() -> Value {
    json!({ "type": "string", "format": "email", "maxLength": 320 })
}

fn date_time() -> Value {
    json!({ "type": "string", "format": "date-time", "examples": ["2026-11-23T03:51:16.034306Z"] })
}

fn role() -> Value {
    json!({ "type": "string", "enum": ["user", "admin"] })
}

/// Allows `null` besides the schema's own type.
fn nullable(mut schema: Value) -> Value {
    let t = schema["type"].take();
    schema["type"] = json!([t, "null"]);
    schema
}

fn describe(mut schema: Value, description: &str) -> Value {
    schema["description"] = json!(description);
    schema
}

// --- paths ----------------------------------------------------------------------

/// `op!(method, path, { operation object })`: one entry of `operations()`. A macro
/// only so that rustfmt leaves the table compact.
macro_rules! op {
    ($method:literal, $path:literal, $op:tt) => {
        ($path, $method, json!($op))
    };
}

fn paths() -> Value {
    let mut paths = Map::new();
    for (path, method, op) in operations() {
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[method] = op;
    }
    Value::Object(paths)
}

fn operations() -> Vec<(&'static str, &'static str, Value)> {
    let mut ops = auth_operations();
    ops.extend(session_operations());
    ops.extend(user_operations());
    ops.extend(admin_operations());
    ops.extend(oauth_operations());
    ops.extend(meta_operations());
    ops
}

fn auth_operations() -> Vec<(&'static str, &'static str, Value)> {
    let login_failures =
        "InvalidCredentials: unknown email, wrong password and inactive account alike";
    let refresh_failures = "TokenError: cookie missing (\"Refresh token required\"), unknown or expired token; \
                            TokenRevokedError: a rotated token presented again outside the grace window (the whole \
                            session is revoked); InactiveUser";
    vec![
        op!("post", "/v1/auth/login", {
            "tags": ["auth"],
            "operationId": "login",
            "summary": "Log in (browser)",
            "description": "Starts a session. The refresh token is set as an HttpOnly cookie; device_id/device_name \
                            (form fields, else X-Device-Id/X-Device-Name) label the session.",
            "security": public(),
            "parameters": [param("DeviceIdHeader"), param("DeviceNameHeader")],
            "requestBody": form_body("LoginForm"),
            "responses": {
                "200": with_headers(tokens("Logged in", "LoginResponse"), &[("Set-Cookie", "SetRefreshCookie")]),
                "401": err(login_failures),
                "422": shared("ValidationError"),
                "429": shared("RateLimited"),
            },
        }),
        op!("post", "/v1/auth/refresh", {
            "tags": ["auth"],
            "operationId": "refresh",
            "summary": "Rotate the refresh cookie",
            "description": "Exchanges the refresh cookie for a new access token and a new cookie. Re-presenting the \
                            token that was just rotated, within REFRESH_REUSE_GRACE_SECONDS, returns the same \
                            successor. Any Authorization header is ignored.",
            "security": cookie(),
            "responses": {
                "200": with_headers(tokens("Rotated", "TokenResponse"), &[("Set-Cookie", "SetRefreshCookie")]),
                "401": err(refresh_failures),
                "429": shared("RateLimited"),
            },
        }),
        op!("post", "/v1/auth/login-mobile", {
            "tags": ["auth"],
            "operationId": "loginMobile",
            "summary": "Log in (mobile)",
            "description": "As login, but the refresh token is returned in the body instead of a cookie.",
            "security": public(),
            "parameters": [param("DeviceIdHeader"), param("DeviceNameHeader")],
            "requestBody": form_body("LoginForm"),
            "responses": {
                "200": tokens("Logged in", "MobileLoginResponse"),
                "401": err(login_failures),
                "422": shared("ValidationError"),
                "429": shared("RateLimited"),
            },
        }),
        op!("post", "/v1/auth/refresh-mobile", {
            "tags": ["auth"],
            "operationId": "refreshMobile",
            "summary": "Rotate a refresh token (mobile)",
            "description": "As refresh, with the token in a JSON body and the successor in the response.",
            "security": public(),
            "requestBody": json_body("RefreshMobileRequest"),
            "responses": {
                "200": tokens("Rotated", "MobileTokenResponse"),
                "401": err(refresh_failures),
                "422": shared("ValidationError"),
                "429": shared("RateLimited"),
            },
        }),
        op!("post", "/v1/auth/logout", {
            "tags": ["auth"],
            "operationId": "logout",
            "summary": "Log out this session",
            "description": "Ends the cookie's session and clears the cookie; an unknown token is ignored (idempotent). \
                            Any Authorization header is ignored.",
            "security": cookie(),
            "responses": {
                "204": with_headers(no_content("Logged out"), &[("Set-Cookie", "ClearRefreshCookie")]),
                "401": err("TokenError: cookie missing (\"Refresh token required\")"),
            },
        }),
        op!("post", "/v1/auth/logout-all", {
            "tags": ["auth"],
            "operationId": "logoutAll",
            "summary": "Log out everywhere",
            "description": "Revokes every session of the caller, including this one, and clears the cookie.",
            "security": bearer(),
            "responses": {
                "200": with_headers(ok("Sessions revoked", "RevokedSessions"), &[("Set-Cookie", "ClearRefreshCookie")]),
                "401": shared("NotAuthenticated"),
            },
        }),
        op!("get", "/v1/auth/me", {
            "tags": ["auth"],
            "operationId": "getAuthMe",
            "summary": "The current user",
            "security": bearer(),
            "responses": {
                "200": ok("The caller", "User"),
                "401": shared("NotAuthenticated"),
            },
        }),
        op!("post", "/v1/auth/change-password", {
            "tags": ["auth"],
            "operationId": "changePassword",
            "summary": "Change the password",
            "description": "Ends the caller's other sessions and invalidates every access token, the caller's \
                            included: the caller's session stays, so refresh for a new one.",
            "security": bearer(),
            "requestBody": json_body("ChangePasswordRequest"),
            "responses": {
                "204": no_content("Password changed"),
                "401": err("Not authenticated, or InvalidCredentials: wrong current password"),
                "422": shared("ValidationError"),
            },
        }),
    ]
}

fn session_operations() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        op!("post", "/v1/auth/logout-others", {
            "tags": ["sessions"],
            "operationId": "logoutOthers",
            "summary": "Log out every other session",
            "security": bearer(),
            "responses": {
                "200": ok("Sessions revoked", "RevokedSessions"),
                "401": shared("NotAuthenticated"),
            },
        }),
        op!("get", "/v1/auth/sessions", {
            "tags": ["sessions"],
            "operationId": "listSessions",
            "summary": "The caller's live sessions",
            "description": "Newest use first; `current` marks the session of the calling access token.",
            "security": bearer(),
            "responses": {
                "200": ok("Sessions", "SessionList"),
                "401": shared("NotAuthenticated"),
            },
        }),
        op!("delete", "/v1/auth/sessions/{id}", {
            "tags": ["sessions"],
            "operationId": "revokeSession",
            "summary": "End one of the caller's sessions",
            "description": "Its refresh token stops working at once and its access tokens are rejected.",
            "security": bearer(),
            "parameters": [param("SessionId")],
            "responses": {
                "204": no_content("Session revoked"),
                "401": shared("NotAuthenticated"),
                "404": err("SessionNotFound: no such session of the caller's"),
            },
        }),
        op!("get", "/v1/auth/events", {
            "tags": ["sessions"],
            "operationId": "listMyEvents",
            "summary": "The caller's security log",
            "security": bearer(),
            "parameters": [param("Page"), param("Size"), param("EventKind")],
            "responses": {
                "200": ok("A page of events, newest first", "EventPage"),
                "401": shared("NotAuthenticated"),
                "422": shared("ValidationError"),
            },
        }),
    ]
}

fn user_operations() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        op!("post", "/v1/users", {
            "tags": ["users"],
            "operationId": "register",
            "summary": "Register",
            "description": "Creates an active, unverified user; the ADMIN_EMAIL address becomes an admin.",
            "security": public(),
            "requestBody": json_body("UserCreate"),
            "responses": {
                "201": ok("Registered", "User"),
                "409": err("EmailAlreadyExists (emails are unique case-insensitively)"),
                "422": shared("ValidationError"),
            },
        }),
        op!("get", "/v1/users/me", {
            "tags": ["users"],
            "operationId": "getMe",
            "summary": "The current user",
            "security": bearer(),
            "responses": {
                "200": ok("The caller", "User"),
                "401": shared("NotAuthenticated"),
            },
        }),
        op!("patch", "/v1/users/me", {
            "tags": ["users"],
            "operationId": "updateMe",
            "summary": "Edit one's own profile",
            "security": bearer(),
            "requestBody": json_body("UserUpdateMe"),
            "responses": {
                "200": ok("Updated", "User"),
                "401": shared("NotAuthenticated"),
                "422": shared("ValidationError"),
            },
        }),
        op!("get", "/v1/users/{id}", {
            "tags": ["users"],
            "operationId": "getUser",
            "summary": "A user by id",
            "security": bearer(),
            "parameters": [param("UserId")],
            "responses": {
                "200": ok("The user", "User"),
                "401": shared("NotAuthenticated"),
                "404": shared("UserNotFound"),
                "422": shared("ValidationError"),
            },
        }),
    ]
}

fn admin_operations() -> Vec<(&'static str, &'static str, Value)> {
    let id_errors = |mut responses: Value| {
        responses["401"] = shared("NotAuthenticated");
        responses["403"] = shared("Forbidden");
        responses["404"] = shared("UserNotFound");
        responses["422"] = shared("ValidationError");
        responses
    };
    vec![
        op!("get", "/v1/admin/users", {
            "tags": ["admin"],
            "operationId": "adminListUsers",
            "summary": "List users",
            "security": bearer(),
            "parameters": [param("Page"), param("Size")],
            "responses": {
                "200": ok("A page of users, oldest first", "UserPage"),
                "401": shared("NotAuthenticated"),
                "403": shared("Forbidden"),
                "422": shared("ValidationError"),
            },
        }),
        op!("post", "/v1/admin/users", {
            "tags": ["admin"],
            "operationId": "adminCreateUser",
            "summary": "Create a user",
            "security": bearer(),
            "requestBody": json_body("AdminUserCreate"),
            "responses": {
                "201": ok("Created", "User"),
                "401": shared("NotAuthenticated"),
                "403": shared("Forbidden"),
                "409": err("EmailAlreadyExists"),
                "422": shared("ValidationError"),
            },
        }),
        op!("get", "/v1/admin/users/{id}", {
            "tags": ["admin"],
            "operationId": "adminGetUser",
            "summary": "A user",
            "security": bearer(),
            "parameters": [param("UserId")],
            "responses": id_errors(json!({ "200": ok("The user", "User") })),
        }),
        op!("patch", "/v1/admin/users/{id}", {
            "tags": ["admin"],
            "operationId": "adminUpdateUser",
            "summary": "Edit a user",
            "description": "Only the fields present change. Setting a password or deactivating the user ends all \
                            of the user's sessions and their access tokens.",
            "security": bearer(),
            "parameters": [param("UserId")],
            "requestBody": json_body("AdminUserUpdate"),
            "responses": id_errors(json!({
                "200": ok("Updated", "User"),
                "409": err("EmailAlreadyExists: the new email is taken"),
            })),
        }),
        op!("delete", "/v1/admin/users/{id}", {
            "tags": ["admin"],
            "operationId": "adminDeleteUser",
            "summary": "Delete a user",
            "description": "Deletes the user and, with them, every session.",
            "security": bearer(),
            "parameters": [param("UserId")],
            "responses": id_errors(json!({ "204": no_content("Deleted") })),
        }),
        op!("get", "/v1/admin/events", {
            "tags": ["admin"],
            "operationId": "adminListEvents",
            "summary": "The security log",
            "security": bearer(),
            "parameters": [param("Page"), param("Size"), param("EventUserId"), param("EventKind")],
            "responses": {
                "200": ok("A page of events, newest first", "EventPage"),
                "401": shared("NotAuthenticated"),
                "403": shared("Forbidden"),
                "422": shared("ValidationError"),
            },
        }),
    ]
}

fn oauth_operations() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        op!("post", "/oauth/token", {
            "tags": ["oauth"],
            "operationId": "oauthToken",
            "summary": "Token endpoint (RFC 6749)",
            "description": "grant_type=password starts a session; grant_type=refresh_token rotates one, with the \
                            same replay rules as /v1/auth/refresh. Every client_id is a public client: credentials \
                            in HTTP Basic (empty secret) or the form are recorded, not required.",
            "security": [{}, { "basic": [] }],
            "requestBody": form_body("OAuthTokenRequest"),
            "responses": {
                "200": tokens("Tokens issued", "OAuthTokenResponse"),
                "400": oauth_err("invalid_request (missing fields), invalid_grant (bad credentials, unknown, \
                                  expired or revoked refresh token, inactive user), unsupported_grant_type"),
                "429": shared("RateLimited"),
            },
        }),
        op!("post", "/oauth/revoke", {
            "tags": ["oauth"],
            "operationId": "oauthRevoke",
            "summary": "Revoke a token (RFC 7009)",
            "description": "A refresh token or an access token ends its session. Unknown or invalid tokens are \
                            ignored, so the answer is 200 whenever a token is given.",
            "security": public(),
            "requestBody": form_body("OAuthRevokeRequest"),
            "responses": {
                "200": with_headers(no_content("Revoked, or nothing to revoke"), &[("Cache-Control", "NoStore")]),
                "400": oauth_err("invalid_request: missing token"),
            },
        }),
        op!("post", "/oauth/introspect", {
            "tags": ["oauth"],
            "operationId": "oauthIntrospect",
            "summary": "Introspect a token (RFC 7662)",
            "description": "For resource servers: authenticate with an admin bearer token or with HTTP Basic whose \
                            password is INTROSPECTION_SECRET. Inactive, unknown or invalid tokens answer \
                            `{\"active\": false}`.",
            "security": [{ "bearer": [] }, { "basic": [] }],
            "requestBody": form_body("OAuthIntrospectRequest"),
            "responses": {
                "200": tokens("The token's state", "IntrospectionResponse"),
                "400": oauth_err("invalid_request: missing token"),
                "401": with_headers(
                    oauth_err("invalid_client: neither an admin bearer token nor the introspection secret"),
                    &[("WWW-Authenticate", "WwwAuthenticate")],
                ),
            },
        }),
        op!("get", "/.well-known/oauth-authorization-server", {
            "tags": ["oauth"],
            "operationId": "oauthMetadata",
            "summary": "Authorization server metadata (RFC 8414)",
            "security": public(),
            "responses": { "200": ok("Metadata", "AuthorizationServerMetadata") },
        }),
        op!("get", "/.well-known/jwks.json", {
            "tags": ["oauth"],
            "operationId": "jwks",
            "summary": "Public signing keys (JWKS)",
            "description": "Empty with HMAC algorithms. With EdDSA or ES256, every key that may still verify an \
                            unexpired token is listed, so keys rotate without logging anyone out.",
            "security": public(),
            "responses": { "200": ok("The key set", "Jwks") },
        }),
    ]
}

fn meta_operations() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        op!("get", "/health", {
            "tags": ["health"],
            "operationId": "health",
            "summary": "Liveness",
            "security": public(),
            "responses": { "200": ok("Alive", "Health") },
        }),
        op!("get", "/health/detailed", {
            "tags": ["health"],
            "operationId": "healthDetailed",
            "summary": "Health with the database's state",
            "security": public(),
            "responses": { "200": ok("status is degraded when the database does not answer", "DetailedHealth") },
        }),
        op!("get", "/ready", {
            "tags": ["health"],
            "operationId": "ready",
            "summary": "Readiness, for load balancers",
            "security": public(),
            "responses": {
                "200": ok("Ready to serve", "Readiness"),
                "503": ok("Starting, shutting down, or the database does not answer", "Readiness"),
            },
        }),
        op!("get", "/metrics", {
            "tags": ["health"],
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": "Served here unless metrics are disabled or moved to METRICS_BIND.",
            "security": public(),
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format 0.0.4",
                    "content": content("text/plain; version=0.0.4", string()),
                },
            },
        }),
        op!("get", "/", {
            "tags": ["meta"],
            "operationId": "root",
            "summary": "Service name and version",
            "security": public(),
            "responses": { "200": ok("About this service", "Root") },
        }),
        op!("get", "/openapi.json", {
            "tags": ["meta"],
            "operationId": "openapi",
            "summary": "This OpenAPI document",
            "security": public(),
            "responses": {
                "200": { "description": "OpenAPI 3.1", "content": content(JSON, json!({ "type": "object" })) },
            },
        }),
        op!("get", "/docs", {
            "tags": ["meta"],
            "operationId": "docs",
            "summary": "API reference (HTML, works offline)",
            "security": public(),
            "responses": { "200": { "description": "HTML page", "content": content("text/html", string()) } },
        }),
    ]
}

// --- components -----------------------------------------------------------------

fn parameters() -> Value {
    json!({
        "Page": {
            "name": "page", "in": "query", "description": "1-based page number",
            "schema": { "type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1 },
        },
        "Size": {
            "name": "size", "in": "query",
            "description": "Items per page: PAGINATION_DEFAULT_SIZE when absent, at most PAGINATION_MAX_SIZE",
            "schema": { "type": "integer", "minimum": 1 },
        },
        "EventKind": {
            "name": "kind", "in": "query", "description": "Only events of this kind",
            "schema": { "type": "string", "maxLength": 64 },
        },
        "EventUserId": {
            "name": "user_id", "in": "query", "description": "Only events about this user",
            "schema": uuid(),
        },
        "UserId": {
            "name": "id", "in": "path", "required": true, "description": "User id (422 when not a UUID)",
            "schema": uuid(),
        },
        "SessionId": {
            "name": "id", "in": "path", "required": true, "description": "Session id, from GET /v1/auth/sessions",
            "schema": uuid(),
        },
        "DeviceIdHeader": {
            "name": "X-Device-Id", "in": "header", "description": "Session device id (the form field wins)",
            "schema": { "type": "string", "maxLength": 255 },
        },
        "DeviceNameHeader": {
            "name": "X-Device-Name", "in": "header", "description": "Session device name (the form field wins)",
            "schema": { "type": "string", "maxLength": 100 },
        },
    })
}

fn headers() -> Value {
    json!({
        "SetRefreshCookie": {
            "description": "`refresh_token=<token>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<refresh lifetime>`, \
                            Secure unless ENVIRONMENT=development; the path is REFRESH_COOKIE_PATH",
            "schema": string(),
        },
        "ClearRefreshCookie": {
            "description": "`refresh_token=; Max-Age=0` with the same path: clears the cookie",
            "schema": string(),
        },
        "NoStore": { "description": "`no-store`: token responses are never cached", "schema": string() },
        "RetryAfter": { "description": "Seconds until the next attempt may succeed", "schema": integer() },
        "WwwAuthenticate": { "description": "The accepted authentication schemes", "schema": string() },
    })
}

fn responses() -> Value {
    json!({
        "NotAuthenticated": with_headers(
            err("Missing, invalid or expired bearer token, or its user is inactive or its session revoked: \
                 `{\"detail\": \"Not authenticated\"}`"),
            &[("WWW-Authenticate", "WwwAuthenticate")],
        ),
        "Forbidden": err("PermissionDenied: admin privileges required"),
        "UserNotFound": err("UserNotFound"),
        "ValidationError": ok("Invalid input", "HTTPValidationError"),
        "RateLimited": with_headers(err("RateLimitExceeded"), &[("Retry-After", "RetryAfter")]),
    })
}

fn schemas() -> Value {
    let mut all = Map::new();
    for group in [
        api_schemas(),
        error_schemas(),
        request_schemas(),
        oauth_schemas(),
        service_schemas(),
    ] {
        let Value::Object(group) = group else {
            unreachable!("BUG: a schema group is not an object")
        };
        all.extend(group);
    }
    Value::Object(all)
}

/// Responses of the `/v1` API.
fn api_schemas() -> Value {
    let access_token = describe(string(), "JWT; send as `Authorization: Bearer <token>`");
    let refresh_token = describe(
        string(),
        "Opaque, 43 characters, single use: every refresh returns a successor",
    );
    let token_type = json!({ "const": "bearer", "type": "string" });
    let page = |items: &str| {
        object(
            &["items", "total", "page", "size"],
            json!({
                "items": { "type": "array", "items": schema_ref(items) },
                "total": describe(json!({ "type": "integer", "minimum": 0 }), "Items on every page"),
                "page": { "type": "integer", "minimum": 1 },
                "size": { "type": "integer", "minimum": 1 },
            }),
        )
    };
    json!({
        "User": object(
            &["id", "created_at", "updated_at", "email", "full_name", "is_active", "is_verified", "role"],
            json!({
                "id": uuid(),
                "created_at": date_time(),
                "updated_at": describe(nullable(date_time()), "null until the first update"),
                "email": email(),
                "full_name": nullable(json!({ "type": "string", "maxLength": 255 })),
                "is_active": boolean(),
                "is_verified": boolean(),
                "role": role(),
            }),
        ),
        "TokenResponse": object(
            &["access_token", "token_type"],
            json!({ "access_token": access_token, "token_type": token_type }),
        ),
        "LoginResponse": object(
            &["access_token", "token_type", "user"],
            json!({ "access_token": access_token, "token_type": token_type, "user": schema_ref("User") }),
        ),
        "MobileLoginResponse": object(
            &["access_token", "refresh_token", "token_type", "user"],
            json!({
                "access_token": access_token,
                "refresh_token": refresh_token,
                "token_type": token_type,
                "user": schema_ref("User"),
            }),
        ),
        "MobileTokenResponse": object(
            &["access_token", "refresh_token", "token_type"],
            json!({ "access_token": access_token, "refresh_token": refresh_token, "token_type": token_type }),
        ),
        "RevokedSessions": object(
            &["revoked_sessions"],
            json!({ "revoked_sessions": { "type": "integer", "minimum": 0 } }),
        ),
        "Session": object(
            &["id", "device_id", "device_name", "user_agent", "ip_address", "created_at", "last_used_at",
              "expires_at", "current"],
            json!({
                "id": describe(uuid(), "The session (refresh-token family) id"),
                "device_id": nullable(string()),
                "device_name": nullable(string()),
                "user_agent": nullable(string()),
                "ip_address": nullable(string()),
                "created_at": describe(date_time(), "When the session began (the login)"),
                "last_used_at": describe(date_time(), "The latest login or refresh"),
                "expires_at": describe(date_time(), "When the current refresh token expires"),
                "current": describe(boolean(), "True for the session of the calling access token"),
            }),
        ),
        "SessionList": object(
            &["sessions"],
            json!({ "sessions": { "type": "array", "items": schema_ref("Session") } }),
        ),
        "AuditEvent": object(
            &["id", "created_at", "kind", "user_id", "session_id", "ip_address", "user_agent", "detail"],
            json!({
                "id": uuid(),
                "created_at": date_time(),
                "kind": describe(string(), "login_succeeded, login_failed, refresh, replay_detected, logout, \
                                            session_revoked, logout_others, logout_all, password_changed, \
                                            user_created, user_deactivated, user_deleted, token_revoked"),
                "user_id": nullable(uuid()),
                "session_id": nullable(uuid()),
                "ip_address": nullable(string()),
                "user_agent": nullable(string()),
                "detail": nullable(string()),
            }),
        ),
        "UserPage": page("User"),
        "EventPage": page("AuditEvent"),
    })
}

fn error_schemas() -> Value {
    json!({
        "ServiceError": object(
            &["detail"],
            json!({
                "detail": describe(string(), "What went wrong"),
                "type": describe(string(), "The error kind, e.g. InvalidCredentials, TokenError, TokenRevokedError, \
                                            InactiveUser, PermissionDenied, UserNotFound, SessionNotFound, \
                                            EmailAlreadyExists, RateLimitExceeded; absent on 401 Not authenticated"),
            }),
        ),
        "ValidationError": object(
            &["loc", "msg", "type"],
            json!({
                "loc": describe(
                    json!({ "type": "array", "items": { "type": ["string", "integer"] } }),
                    "Where: [\"body\" | \"query\" | \"path\", field]",
                ),
                "msg": string(),
                "type": describe(string(), "e.g. missing, string_too_short, value_error, json_invalid"),
            }),
        ),
        "HTTPValidationError": object(
            &["detail"],
            json!({ "detail": { "type": "array", "items": schema_ref("ValidationError") } }),
        ),
    })
}

/// Request bodies of the `/v1` API.
fn request_schemas() -> Value {
    let full_name = || nullable(json!({ "type": "string", "maxLength": 255 }));
    json!({
        "LoginForm": object(
            &["username", "password"],
            json!({
                "username": describe(sized(1, 320), "The email address"),
                "password": sized(1, 1024),
                "device_id": describe(json!({ "type": "string", "maxLength": 255 }), "Overrides X-Device-Id"),
                "device_name": describe(json!({ "type": "string", "maxLength": 100 }), "Overrides X-Device-Name"),
            }),
        ),
        "RefreshMobileRequest": object(
            &["refresh_token"],
            json!({ "refresh_token": { "type": "string", "minLength": 1 } }),
        ),
        "ChangePasswordRequest": object(
            &["current_password", "new_password"],
            json!({ "current_password": sized(1, 1024), "new_password": sized(8, 128) }),
        ),
        "UserCreate": object(
            &["email", "password"],
            json!({
                "email": email(),
                "password": describe(sized(8, 128), "At least one uppercase letter and one digit"),
                "full_name": full_name(),
            }),
        ),
        "UserUpdateMe": object(
            &[],
            json!({ "full_name": describe(full_name(), "Absent: unchanged; null: cleared") }),
        ),
        "AdminUserCreate": object(
            &["email", "password"],
            json!({
                "email": email(),
                "password": sized(8, 128),
                "full_name": full_name(),
                "role": describe(role(), "Default user"),
                "is_active": describe(boolean(), "Default true"),
                "is_verified": describe(boolean(), "Default false"),
            }),
        ),
        "AdminUserUpdate": object(
            &[],
            json!({
                "email": email(),
                "full_name": describe(full_name(), "Absent: unchanged; null: cleared"),
                "role": role(),
                "is_active": boolean(),
                "is_verified": boolean(),
                "password": describe(nullable(sized(8, 128)), "A new password; absent or null: unchanged"),
            }),
        ),
    })
}

fn oauth_schemas() -> Value {
    let max = |n: usize, description: &str| {
        describe(json!({ "type": "string", "maxLength": n }), description)
    };
    let token_hint = describe(
        json!({ "type": "string", "enum": ["access_token", "refresh_token"] }),
        "Optional; the token's kind is detected either way",
    );
    let url = json!({ "type": "string", "format": "uri" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    json!({
        "OAuthTokenRequest": object(
            &["grant_type"],
            json!({
                "grant_type": { "type": "string", "enum": ["password", "refresh_token"] },
                "username": max(320, "grant_type=password: the email"),
                "password": max(1024, "grant_type=password"),
                "refresh_token": max(4096, "grant_type=refresh_token"),
                "scope": max(1024, "Echoed in the response"),
                "client_id": max(255, "Recorded with the session (HTTP Basic user name wins)"),
                "device_id": max(255, "grant_type=password"),
                "device_name": max(100, "grant_type=password"),
            }),
        ),
        "OAuthRevokeRequest": object(&["token"], json!({ "token": string(), "token_type_hint": token_hint })),
        "OAuthIntrospectRequest": object(&["token"], json!({ "token": string(), "token_type_hint": token_hint })),
        "OAuthTokenResponse": object(
            &["access_token", "token_type", "expires_in", "refresh_token"],
            json!({
                "access_token": describe(string(), "JWT"),
                "token_type": { "const": "Bearer", "type": "string" },
                "expires_in": describe(integer(), "Access token lifetime in seconds"),
                "refresh_token": describe(string(), "Single use: every refresh returns a successor"),
                "scope": describe(string(), "The requested scope, when one was given"),
            }),
        ),
        "OAuthError": object(
            &["error", "error_description"],
            json!({
                "error": {
                    "type": "string",
                    "enum": ["invalid_request", "invalid_client", "invalid_grant", "unsupported_grant_type"],
                },
                "error_description": string(),
            }),
        ),
        "IntrospectionResponse": object(
            &["active"],
            json!({
                "active": boolean(),
                "sub": describe(uuid(), "The user id"),
                "username": describe(string(), "The user's email"),
                "token_type": { "type": "string", "enum": ["access_token", "refresh_token"] },
                "exp": describe(integer(), "Unix seconds"),
                "iat": describe(integer(), "Unix seconds"),
                "client_id": string(),
                "sid": describe(uuid(), "The session id"),
                "jti": string(),
                "iss": string(),
                "aud": string(),
            }),
        ),
        "Jwk": object(
            &["kty", "kid", "alg", "use"],
            json!({
                "kty": { "type": "string", "enum": ["OKP", "EC"] },
                "crv": { "type": "string", "enum": ["Ed25519", "P-256"] },
                "x": describe(string(), "base64url"),
                "y": describe(string(), "base64url; EC keys only"),
                "kid": string(),
                "alg": { "type": "string", "enum": ["EdDSA", "ES256"] },
                "use": { "const": "sig", "type": "string" },
            }),
        ),
        "Jwks": object(&["keys"], json!({ "keys": { "type": "array", "items": schema_ref("Jwk") } })),
        "AuthorizationServerMetadata": object(
            &["issuer", "token_endpoint", "grant_types_supported", "response_types_supported"],
            json!({
                "issuer": describe(url.clone(), "JWT_ISSUER, else this server's URL"),
                "token_endpoint": url,
                "revocation_endpoint": url,
                "introspection_endpoint": url,
                "jwks_uri": url,
                "grant_types_supported": strings,
                "response_types_supported": strings,
                "token_endpoint_auth_methods_supported": strings,
                "revocation_endpoint_auth_methods_supported": strings,
                "introspection_endpoint_auth_methods_supported": strings,
                "id_token_signing_alg_values_supported": strings,
                "token_endpoint_auth_signing_alg_values_supported": strings,
                "service_documentation": url,
            }),
        ),
    })
}

/// The service's own routes.
fn service_schemas() -> Value {
    let environment = json!({ "type": "string", "enum": ["development", "staging", "production"] });
    json!({
        "Health": object(
            &["status", "environment", "version"],
            json!({
                "status": { "const": "healthy", "type": "string" },
                "environment": environment,
                "version": string(),
            }),
        ),
        "DetailedHealth": object(
            &["status", "environment", "version", "database"],
            json!({
                "status": { "type": "string", "enum": ["healthy", "degraded"] },
                "environment": environment,
                "version": string(),
                "database": { "type": "string", "enum": ["healthy", "unhealthy"] },
                "database_backend": { "type": "string", "enum": ["sqlite", "postgresql"] },
            }),
        ),
        "Readiness": object(&["ready"], json!({ "ready": boolean() })),
        "Root": object(
            &["name", "version", "environment", "docs_url"],
            json!({
                "name": { "const": "rotor", "type": "string" },
                "version": string(),
                "environment": environment,
                "docs_url": { "const": "/docs", "type": "string" },
            }),
        ),
    })
}

/// A self-contained HTML reference for [`document`]: it fetches `/openapi.json` and
/// renders it with inline script and style, so it works with no network beyond rotor.
pub fn docs_page() -> &'static str {
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

    /// Every route rotor serves (see the routers in `http::{auth, users, admin, oauth, meta}`).
    const ROUTES: &[(&str, &str)] = &[
        ("post", "/v1/auth/login"),
        ("post", "/v1/auth/refresh"),
        ("post", "/v1/auth/login-mobile"),
        ("post", "/v1/auth/refresh-mobile"),
        ("post", "/v1/auth/logout"),
        ("post", "/v1/auth/logout-all"),
        ("post", "/v1/auth/logout-others"),
        ("get", "/v1/auth/me"),
        ("post", "/v1/auth/change-password"),
        ("get", "/v1/auth/sessions"),
        ("delete", "/v1/auth/sessions/{id}"),
        ("get", "/v1/auth/events"),
        ("post", "/v1/users"),
        ("get", "/v1/users/me"),
        ("patch", "/v1/users/me"),
        ("get", "/v1/users/{id}"),
        ("get", "/v1/admin/users"),
        ("post", "/v1/admin/users"),
        ("get", "/v1/admin/users/{id}"),
        ("patch", "/v1/admin/users/{id}"),
        ("delete", "/v1/admin/users/{id}"),
        ("get", "/v1/admin/events"),
        ("get", "/health"),
        ("get", "/health/detailed"),
        ("get", "/ready"),
        ("get", "/"),
        ("get", "/openapi.json"),
        ("get", "/docs"),
        ("get", "/metrics"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/.well-known/oauth-authorization-server"),
        ("post", "/oauth/token"),
        ("post", "/oauth/revoke"),
        ("post", "/oauth/introspect"),
    ];

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
    fn the_document_describes_exactly_the_routes_rotor_serves() {
        let doc = document("0.0.0");
        let documented: HashSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let served: HashSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the document: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "documented routes rotor does not serve: {extra:?}"
        );
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], "0.0.0");
    }

    #[test]
    fn every_operation_has_a_unique_id_a_known_tag_and_responses() {
        let doc = document("0.0.0");
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
        let doc = document("0.0.0");
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
        let doc = document("0.0.0");
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
    fn the_docs_page_is_self_contained() {
        let page = docs_page();
        assert!(page.contains("fetch(\"/openapi.json\")"));
        for external in ["<script src", "<link", "@import", "http://", "https://"] {
            assert!(!page.contains(external), "docs page references {external}");
        }
    }
}
