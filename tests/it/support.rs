//! Test support: a database per test (SQLite file or a freshly created PostgreSQL
//! database, dropped afterwards), the real app on a random port, and typed helpers.

use std::{
    collections::BTreeMap,
    fmt::Display,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use reqwest::{header, Response, StatusCode};
use rotor::{
    clock::{Clock, ManualClock},
    config::Settings,
    http::{self, AppState},
    storage::{self, Store, User},
    testing::UserFactory,
    Rotor,
};
use serde_json::Value;
use sqlx::Connection;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body once per backend: `both!(name, |backend| async move { … })`
/// expands to a module `name` with tests `sqlite` and `postgres`.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let f = $body;
                f($crate::support::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let f = $body;
                f($crate::support::Backend::Postgres).await;
            }
        }
    };
}

pub fn pg_admin_url() -> String {
    std::env::var("ROTOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test and is removed when dropped (even when the
/// test panics).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: PathBuf,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("rotor-it-{id}"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        match backend {
            Backend::Sqlite => Self {
                backend,
                url: format!("sqlite://{}", dir.join("rotor.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!("rotor_it_{id}");
                let admin = pg_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL must be running for the test suite (see README)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(b, _)| b)
                    .to_owned();
                Self {
                    backend,
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// Settings for this database: test secret, rate limits and cleanup job off.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        vars.insert("DATABASE_URL".into(), self.url.clone());
        vars.insert("ROTOR_DATA_DIR".into(), self.dir.display().to_string());
        vars.insert(
            "SECRET_KEY".into(),
            "integration-test-secret-key-0123456789abcdef".into(),
        );
        vars.insert("RATE_LIMIT_AUTH".into(), "off".into());
        vars.insert("CLEANUP_INTERVAL_SECONDS".into(), "0".into());
        vars.insert("ARGON2_MAX_CONCURRENCY".into(), "4".into());
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        Settings::from_vars(&vars).expect("valid test settings")
    }

    /// The SQLite file of a SQLite test database.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("rotor.db")
    }

    /// A direct connection to a SQLite test database, for assertions in SQL.
    pub fn sqlite(&self) -> rusqlite::Connection {
        assert_eq!(self.backend, Backend::Sqlite);
        let conn = rusqlite::Connection::open(self.sqlite_path()).expect("open sqlite");
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        storage::connect(&self.settings(&[]))
            .await
            .expect("connect and migrate")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside any runtime we may block; use a thread of its own.
            let admin = pg_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// The real application on 127.0.0.1 at a random port, with a manual clock.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub rotor: Arc<Rotor>,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let db = TestDb::new(backend).await;
        Self::spawn_on(db, extra).await
    }

    pub async fn spawn_on(db: TestDb, extra: &[(&str, &str)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        // PUBLIC_URL defaults to where this app listens, unless the test sets it.
        let public_url = format!("http://{addr}");
        let mut extra = extra.to_vec();
        if !extra.iter().any(|(k, _)| *k == "PUBLIC_URL") {
            extra.push(("PUBLIC_URL", public_url.as_str()));
        }
        let settings = db.settings(&extra);
        let store = storage::connect(&settings)
            .await
            .expect("connect and migrate");
        let clock = Arc::new(ManualClock::starting_now());
        let rotor = Arc::new(
            Rotor::new(settings, store, clock.clone() as Arc<dyn Clock>)
                .await
                .expect("build rotor"),
        );
        let app = http::app(AppState::new(rotor.clone()));
        let server = tokio::spawn(async move {
            let _ = http::serve(listener, app, std::future::pending()).await;
        });
        Self {
            addr,
            base: format!("http://{addr}"),
            rotor,
            clock,
            client: reqwest::Client::builder().build().expect("client"),
            server,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.rotor.store()
    }

    /// Registers through the API and returns the user JSON.
    pub async fn register(&self, email: &str, password: &str) -> Value {
        let r = self
            .client
            .post(self.url("/v1/users"))
            .json(&serde_json::json!({ "email": email, "password": password, "full_name": "Test User" }))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), StatusCode::CREATED, "register {email}");
        r.json().await.expect("json")
    }

    pub async fn post_login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/v1/auth/login"))
            .form(&[("username", email), ("password", password)])
            .send()
            .await
            .expect("login request")
    }

    pub async fn post_login_mobile(
        &self,
        email: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut form = vec![("username", email), ("password", password)];
        form.extend_from_slice(extra);
        self.client
            .post(self.url("/v1/auth/login-mobile"))
            .form(&form)
            .send()
            .await
            .expect("login-mobile request")
    }

    /// Logs in through the mobile route; returns (access, refresh).
    pub async fn login_mobile(&self, email: &str, password: &str) -> (String, String) {
        let r = self.post_login_mobile(email, password, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "login-mobile {email}");
        let body: Value = r.json().await.expect("json");
        (
            body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        )
    }

    pub async fn post_refresh_cookie(&self, refresh: &str) -> Response {
        self.client
            .post(self.url("/v1/auth/refresh"))
            .header(header::COOKIE, format!("refresh_token={refresh}"))
            .send()
            .await
            .expect("refresh request")
    }

    pub async fn post_refresh_mobile(&self, refresh: &str) -> Response {
        self.client
            .post(self.url("/v1/auth/refresh-mobile"))
            .json(&serde_json::json!({ "refresh_token": refresh }))
            .send()
            .await
            .expect("refresh-mobile request")
    }

    pub async fn get_auth(&self, path: &str, access: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post_auth(&self, path: &str, access: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .expect("POST")
    }

    /// A registered, logged-in user: (email, access, refresh).
    pub async fn user_session(&self) -> (String, String, String) {
        let (_, email) = self.registered_user().await;
        let (a, r) = self.login_mobile(&email, UserFactory::PASSWORD).await;
        (email, a, r)
    }

    /// A user created through the store (no Argon2 work, no audit row); its password is
    /// [`UserFactory::PASSWORD`].
    pub async fn new_user(&self) -> User {
        UserFactory::create(self.store().as_ref())
            .await
            .expect("create user")
    }

    /// A user registered through `POST /v1/users` (so its `user_created` event exists),
    /// with the password [`UserFactory::PASSWORD`]: (id, email).
    pub async fn registered_user(&self) -> (String, String) {
        let email = UserFactory::next_email();
        let user = self.register(&email, UserFactory::PASSWORD).await;
        (user["id"].as_str().expect("id").to_owned(), email)
    }

    /// An admin (via the store) logged in: (email, access).
    pub async fn admin_session(&self) -> (String, String) {
        let admin = UserFactory::create_admin(self.store().as_ref())
            .await
            .expect("admin");
        let (a, _) = self.login_mobile(&admin.email, UserFactory::PASSWORD).await;
        (admin.email, a)
    }

    /// The status of `GET path` (no credentials).
    pub async fn status_of(&self, path: &str) -> StatusCode {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .status()
    }

    /// The JSON body of `GET path` (no credentials).
    pub async fn json_of(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json")
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The `Set-Cookie` header for `refresh_token`, if any.
pub fn refresh_set_cookie(r: &Response) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("refresh_token="))
        .map(str::to_owned)
}

/// The value of the `refresh_token` cookie set by a response.
pub fn refresh_cookie_value(r: &Response) -> Option<String> {
    refresh_set_cookie(r).and_then(|c| {
        c.split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_owned())
    })
}

/// Counts rows with a SQL statement returning one integer, on either backend.
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    match db.backend {
        Backend::Sqlite => db.sqlite().query_row(sql, [], |r| r.get(0)).expect("count"),
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url)
                .await
                .expect("pg connect");
            let n: i64 = sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect("count");
            let _ = conn.close().await;
            n
        }
    }
}

/// The text a SQL statement returns (one row, one column), on either backend.
pub async fn text(db: &TestDb, sql: &str) -> String {
    match db.backend {
        Backend::Sqlite => db.sqlite().query_row(sql, [], |r| r.get(0)).expect("text"),
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url)
                .await
                .expect("pg connect");
            let s: String = sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect("text");
            let _ = conn.close().await;
            s
        }
    }
}

/// Runs SQL statements (separated by `;`) on either backend, for setting up states the
/// API cannot produce (rows written by an older rotor or another program).
pub async fn execute(db: &TestDb, sql: &str) {
    match db.backend {
        Backend::Sqlite => db.sqlite().execute_batch(sql).expect("execute"),
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url)
                .await
                .expect("pg connect");
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("execute");
            let _ = conn.close().await;
        }
    }
}

impl TestDb {
    /// Another handle on this test's database that does not own it: dropping it removes
    /// only its own temporary directory, never the database. For a second app on the
    /// same database.
    pub fn share(&self) -> TestDb {
        let dir = std::env::temp_dir().join(format!("rotor-it-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            dir,
            pg_name: None,
        }
    }
}

impl TestApp {
    /// A second app (own clock, own settings `extra`) on this app's database.
    pub async fn spawn_beside(&self, extra: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_on(self.db.share(), extra).await
    }
}

/// The JSON body of a response.
pub async fn body(r: Response) -> Value {
    r.json().await.expect("a JSON body")
}

/// Part `part` of a JWT (0: header, 1: claims), decoded without verification.
pub fn jwt_part(token: &str, part: usize) -> Value {
    let encoded = token.split('.').nth(part).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("JSON")
}

/// The claims of a JWT, decoded without verification.
pub fn claims(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

/// The session (refresh family) an access token names.
pub fn sid(access: &str) -> String {
    claims(access)["sid"]
        .as_str()
        .expect("access token carries sid")
        .to_owned()
}

/// Live (unrevoked) refresh tokens of one family. `NOT is_revoked` reads the same on
/// both backends (a boolean on PostgreSQL, 0/1 on SQLite).
pub async fn live_tokens_in_family(db: &TestDb, family: impl Display) -> i64 {
    count(
        db,
        &format!(
            "SELECT count(*) FROM refresh_tokens WHERE family_id = '{family}' AND NOT is_revoked"
        ),
    )
    .await
}

/// Live (unrevoked) refresh tokens in the whole database.
pub async fn live_tokens(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT count(*) FROM refresh_tokens WHERE NOT is_revoked",
    )
    .await
}

/// The most live tokens any one family holds (invariant 1: never more than 1).
pub async fn max_live_per_family(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT COALESCE(MAX(n), 0) FROM \
         (SELECT count(*) AS n FROM refresh_tokens WHERE NOT is_revoked GROUP BY family_id) f",
    )
    .await
}

/// Sends raw bytes on a fresh connection to `addr` and returns what came back, until
/// the server closes the connection or `wait` passes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before it has read everything, as it does for
    // an oversized head: what it answered is what the caller asserts on.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// How often [`poll`] and [`eventually`] look again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Runs `probe` until it returns `Some` (returned) or `timeout` has passed (`None`);
/// for waits whose failure the caller reports itself (after cleaning up).
pub async fn poll<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits for `condition` to hold, checking it every 20 ms: the way to wait for
/// something to happen (a server to answer, a log line, a state change) instead of a
/// fixed sleep. Panics naming `what` if it does not hold within `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    if poll(timeout, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await
    .is_none()
    {
        panic!(
            "timed out after {:?} waiting for: {what}",
            started.elapsed()
        );
    }
}
