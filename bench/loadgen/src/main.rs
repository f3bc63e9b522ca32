//! `loadgen`: a load generator for the `/v1` refresh-token wire protocol.
//!
//! It speaks only the public `/v1` API (docs/behaviour.md), so it measures rotor or any other
//! implementation of the same API:
//!
//! 1. creates `--users` users (`POST /v1/users`, password `LoadTest123`);
//! 2. logs in `--sessions` sessions (`POST /v1/auth/login-mobile`), spread over them;
//! 3. runs `--concurrency` workers, each owning its own sessions, for `--warmup` +
//!    `--duration` seconds, each over its own keep-alive HTTP/1 connection (hyper's
//!    low-level client, `TCP_NODELAY`, reopened if the server closes it):
//!    - `refresh`: each worker rotates its sessions round-robin
//!      (`POST /v1/auth/refresh-mobile`), always presenting the token it got last;
//!    - `login`: each worker logs in over and over;
//!    - `mixed`: `--concurrency` refresh workers and `--login-concurrency` login
//!      workers at once, with refresh and login latency reported separately;
//! 4. checks replays: re-presents ~20 tokens that are two rotations old (so a grace
//!    window for the *just*-rotated token cannot apply) and expects 401, then presents
//!    the same sessions' current tokens and expects 401 too (the family was revoked).
//!
//! The client is kept lean (no pool, no cross-task hand-off per request) because it
//! usually shares the CPUs with the server under test.
//!
//! Latency is recorded in an HDR histogram with microsecond precision; only requests
//! sent after the warm-up and completed before the end count.

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{
    body::{Body as _, Bytes},
    client::conn::http1,
    header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST},
    Method, Request, StatusCode, Uri,
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;

const PASSWORD: &str = "LoadTest123";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Rotate refresh tokens.
    Refresh,
    /// Log in repeatedly (Argon2 on the server).
    Login,
    /// Refresh workers and login workers at once.
    Mixed,
}

/// Load generator for the /v1 refresh-token API (rotor or any implementation of it).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Args {
    /// Base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    base_url: String,
    /// Users to create.
    #[arg(long, default_value_t = 32)]
    users: usize,
    /// Sessions to log in (raised to the refresh concurrency if lower).
    #[arg(long, default_value_t = 256)]
    sessions: usize,
    /// Refresh workers (refresh, mixed) or login workers (login).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Login workers running beside the refresh workers (mixed only).
    #[arg(long, default_value_t = 32)]
    login_concurrency: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (load applied, nothing recorded).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    #[arg(long, value_enum, default_value_t = Mode::Refresh)]
    mode: Mode,
    /// Concurrent requests while creating users and logging in sessions.
    #[arg(long, default_value_t = 8)]
    setup_concurrency: usize,
    /// Replays to check at the end (0 skips the check).
    #[arg(long, default_value_t = 20)]
    replay_sample: usize,
    /// Tokio worker threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Prefix of the generated emails (default: unique per run).
    #[arg(long)]
    email_prefix: Option<String>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

#[derive(Deserialize)]
struct Tokens {
    refresh_token: String,
}

/// A session owned by one worker.
struct Session {
    /// The token to present next.
    current: String,
    /// The token two rotations before `current` (a replay the grace window cannot
    /// excuse).
    grandparent: Option<String>,
    parent: Option<String>,
    alive: bool,
}

impl Session {
    fn new(token: String) -> Self {
        Self {
            current: token,
            grandparent: None,
            parent: None,
            alive: true,
        }
    }

    fn rotated(&mut self, next: String) {
        self.grandparent = self.parent.take();
        self.parent = Some(std::mem::replace(&mut self.current, next));
    }
}

/// What one worker measured.
struct Tally {
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    /// Requests that completed inside the measured window.
    ok: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds"),
            errors: BTreeMap::new(),
            ok: 0,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    fn report(&self, seconds: f64) -> serde_json::Value {
        let h = &self.hist;
        let has = !h.is_empty();
        let q = |p: f64| if has { h.value_at_quantile(p) } else { 0 };
        json!({
            "ok": self.ok,
            "per_s": round1(self.ok as f64 / seconds),
            "p50_us": q(0.50),
            "p90_us": q(0.90),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": if has { h.max() } else { 0 },
            "mean_us": round1(if has { h.mean() } else { 0.0 }),
            "errors": self.errors,
            "errors_total": self.errors.values().sum::<u64>(),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The measured window, shared by every worker.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    stop: Instant,
}

impl Window {
    fn counts(&self, sent: Instant, done: Instant) -> bool {
        sent >= self.start && done <= self.end
    }
}

/// Longest a request may take, connection included (then it counts as `timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The server under test and the fixed parts of every request.
struct Api {
    /// Resolved once, at the start.
    addr: SocketAddr,
    /// `Host` header: the base URL's host and port.
    host: HeaderValue,
    users: Uri,
    login: Uri,
    refresh: Uri,
}

enum Outcome {
    Ok(String),
    Status(u16),
    Transport(&'static str),
}

/// Why an exchange failed (no HTTP status).
enum Fail {
    Timeout,
    Transport(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Timeout => write!(f, "timed out after {}s", REQUEST_TIMEOUT.as_secs()),
            Fail::Transport(e) => f.write_str(e),
        }
    }
}

impl Api {
    /// Parses `http://host[:port][/prefix]` and resolves the host.
    async fn new(base_url: &str) -> Result<Self, String> {
        let base = base_url.trim_end_matches('/');
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("base URL {base_url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("base URL {base_url:?}: only http:// is supported"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("base URL {base_url:?}: no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        let host_header = if port == 80 {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolving {host}: no address"))?;
        let prefix = uri.path().trim_end_matches('/');
        let path = |p: &str| -> Result<Uri, String> {
            format!("{prefix}{p}")
                .parse()
                .map_err(|e| format!("base URL {base_url:?}: {e}"))
        };
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&host_header)
                .map_err(|e| format!("base URL {base_url:?}: {e}"))?,
            users: path("/v1/users")?,
            login: path("/v1/auth/login-mobile")?,
            refresh: path("/v1/auth/refresh-mobile")?,
        })
    }

    async fn connect(&self) -> Result<Conn, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (tx, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1 handshake: {e}"))?;
        Ok(Conn {
            tx,
            driver: Some(Box::pin(driver)),
        })
    }
}

/// One keep-alive HTTP/1 connection. Its driver (hyper's `Connection`, which does the
/// socket I/O) is polled by the task that sends the request, alongside the request,
/// so a request costs no hand-off to another task.
struct Conn {
    tx: http1::SendRequest<Full<Bytes>>,
    /// `None` once the connection has ended.
    driver: Option<Driver>,
}

type Driver = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// How one request on a connection ended.
enum Exchange {
    /// A response: its status, and its body unless reading it failed.
    Done(StatusCode, Option<Bytes>),
    /// The connection could not take the request; it was not sent.
    NotSent(Box<Request<Full<Bytes>>>),
    Failed(String),
}

impl Conn {
    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Exchange {
        let Conn { tx, driver } = self;
        let Some(running) = driver.as_mut() else {
            return Exchange::NotSent(Box::new(req));
        };
        let work = async move {
            if tx.ready().await.is_err() {
                return Exchange::NotSent(Box::new(req));
            }
            let resp = match tx.try_send_request(req).await {
                Ok(resp) => resp,
                Err(mut e) => {
                    return match e.take_message() {
                        Some(req) => Exchange::NotSent(Box::new(req)),
                        None => Exchange::Failed(e.into_error().to_string()),
                    }
                }
            };
            let status = resp.status();
            let body = resp.into_body().collect().await.ok().map(|b| b.to_bytes());
            Exchange::Done(status, body)
        };
        tokio::pin!(work);
        tokio::select! {
            biased;
            _ = running.as_mut() => {}
            r = &mut work => return r,
        }
        // The connection is over: drop it, which resolves whatever was in flight.
        *driver = None;
        work.await
    }
}

/// A worker's HTTP client: one keep-alive connection, reopened when it closes.
struct Client {
    api: Arc<Api>,
    conn: Option<Conn>,
}

impl Client {
    fn new(api: Arc<Api>) -> Self {
        Self { api, conn: None }
    }

    /// POSTs `body`; the same headers as reqwest sent (`content-type`, `accept: */*`,
    /// `host`, `content-length`).
    async fn post(
        &mut self,
        path: &Uri,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<Bytes>), Fail> {
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = path.clone();
        let len = req.body().size_hint().exact().unwrap_or(0);
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(HOST, self.api.host.clone());
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send(req)).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None; // in an unknown state
                Err(Fail::Timeout)
            }
        }
    }

    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Option<Bytes>), Fail> {
        let mut req = req;
        loop {
            let fresh = self.conn.is_none();
            if fresh {
                self.conn = Some(self.api.connect().await.map_err(Fail::Transport)?);
            }
            let conn = self.conn.as_mut().expect("connected above");
            let outcome = conn.exchange(req).await;
            let usable = conn.driver.is_some() && !conn.tx.is_closed();
            match outcome {
                Exchange::Done(status, body) => {
                    if !usable || body.is_none() {
                        self.conn = None;
                    }
                    return Ok((status, body));
                }
                // A kept-alive connection the server closed meanwhile: the request was
                // not sent, so send it on a new one.
                Exchange::NotSent(r) if !fresh => {
                    self.conn = None;
                    req = *r;
                }
                Exchange::NotSent(_) => {
                    self.conn = None;
                    return Err(Fail::Transport("the new connection was closed".into()));
                }
                Exchange::Failed(e) => {
                    self.conn = None;
                    return Err(Fail::Transport(e));
                }
            }
        }
    }

    async fn create_user(&mut self, email: &str) -> Result<(), String> {
        let body = json!({"email": email, "password": PASSWORD, "full_name": "Load Test"});
        let body = serde_json::to_vec(&body).expect("serializable");
        let path = self.api.users.clone();
        let (status, body) = self
            .post(&path, "application/json", body)
            .await
            .map_err(|e| format!("POST /v1/users: {e}"))?;
        match status.as_u16() {
            201 | 409 => Ok(()),
            s => Err(format!(
                "POST /v1/users: HTTP {s}: {}",
                String::from_utf8_lossy(&body.unwrap_or_default())
            )),
        }
    }

    async fn login(&mut self, email: &str) -> Outcome {
        let body = serde_urlencoded::to_string([("username", email), ("password", PASSWORD)])
            .expect("form-encodable");
        let path = self.api.login.clone();
        let r = self
            .post(
                &path,
                "application/x-www-form-urlencoded",
                body.into_bytes(),
            )
            .await;
        Self::tokens(r)
    }

    async fn refresh(&mut self, token: &str) -> Outcome {
        let body = serde_json::to_vec(&json!({ "refresh_token": token })).expect("serializable");
        let path = self.api.refresh.clone();
        let r = self.post(&path, "application/json", body).await;
        Self::tokens(r)
    }

    fn tokens(r: Result<(StatusCode, Option<Bytes>), Fail>) -> Outcome {
        let (status, body) = match r {
            Ok(r) => r,
            Err(Fail::Timeout) => return Outcome::Transport("timeout"),
            Err(Fail::Transport(_)) => return Outcome::Transport("transport"),
        };
        if status != StatusCode::OK {
            return Outcome::Status(status.as_u16());
        }
        match body.map(|b| serde_json::from_slice::<Tokens>(&b)) {
            Some(Ok(t)) => Outcome::Ok(t.refresh_token),
            _ => Outcome::Transport("bad_body"),
        }
    }
}

fn note(errors: &mut BTreeMap<String, u64>, key: String) {
    *errors.entry(key).or_default() += 1;
}

/// Rotates its own sessions round-robin until `window.stop`.
async fn refresh_worker(
    api: Arc<Api>,
    mut sessions: Vec<Session>,
    window: Window,
) -> (Tally, Vec<Session>) {
    let mut client = Client::new(api);
    let mut tally = Tally::new();
    let mut i = 0usize;
    loop {
        let sent = Instant::now();
        if sent >= window.stop {
            break;
        }
        let n = sessions.len();
        let Some(idx) = (0..n).map(|k| (i + k) % n).find(|&k| sessions[k].alive) else {
            break; // every session of this worker is gone
        };
        i = idx + 1;
        let outcome = client.refresh(&sessions[idx].current).await;
        let done = Instant::now();
        let counts = window.counts(sent, done);
        match outcome {
            Outcome::Ok(next) => {
                sessions[idx].rotated(next);
                if counts {
                    tally.ok += 1;
                    let us = (done - sent).as_micros().max(1) as u64;
                    tally.hist.saturating_record(us);
                }
            }
            Outcome::Status(s) => {
                if counts {
                    note(&mut tally.errors, s.to_string());
                }
                // 401: the session is dead; anything else: retry the same token later
                // (a retry of a token that did rotate gets its successor within the
                // grace window).
                if s == 401 {
                    sessions[idx].alive = false;
                }
            }
            Outcome::Transport(kind) => {
                if counts {
                    note(&mut tally.errors, kind.to_owned());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (tally, sessions)
}

/// Logs in over and over, cycling through the users from `first`.
async fn login_worker(
    api: Arc<Api>,
    emails: Arc<Vec<String>>,
    first: usize,
    window: Window,
) -> Tally {
    let mut client = Client::new(api);
    let mut tally = Tally::new();
    let mut i = first;
    loop {
        let sent = Instant::now();
        if sent >= window.stop {
            break;
        }
        let email = &emails[i % emails.len()];
        i += 1;
        let outcome = client.login(email).await;
        let done = Instant::now();
        let counts = window.counts(sent, done);
        match outcome {
            Outcome::Ok(_) if counts => {
                tally.ok += 1;
                tally
                    .hist
                    .saturating_record((done - sent).as_micros().max(1) as u64);
            }
            Outcome::Ok(_) => {}
            Outcome::Status(s) if counts => note(&mut tally.errors, s.to_string()),
            Outcome::Transport(kind) if counts => note(&mut tally.errors, kind.to_owned()),
            _ => {}
        }
        if let Outcome::Transport(_) = outcome {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

type BoxFuture<'a, R> = Pin<Box<dyn Future<Output = R> + Send + 'a>>;

/// Runs `f` over `items` on `limit` tasks, each with its own keep-alive connection;
/// the results come back in the order of `items`.
async fn parallel<T, R>(
    api: &Arc<Api>,
    items: Vec<T>,
    limit: usize,
    f: for<'c> fn(&'c mut Client, T) -> BoxFuture<'c, R>,
) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let n = items.len();
    let queue = Arc::new(Mutex::new(items.into_iter().enumerate()));
    let mut handles = Vec::new();
    for _ in 0..limit.max(1).min(n) {
        let queue = queue.clone();
        let mut client = Client::new(api.clone());
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().expect("queue lock").next();
                let Some((i, item)) = next else { break };
                done.push((i, f(&mut client, item).await));
            }
            done
        }));
    }
    let mut out: Vec<(usize, R)> = Vec::with_capacity(n);
    for h in handles {
        out.extend(h.await.expect("setup task panicked"));
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

fn create_user_job(client: &mut Client, email: String) -> BoxFuture<'_, Result<(), String>> {
    Box::pin(async move { client.create_user(&email).await })
}

fn login_job(client: &mut Client, email: String) -> BoxFuture<'_, Result<String, String>> {
    Box::pin(async move {
        match client.login(&email).await {
            Outcome::Ok(t) => Ok(t),
            Outcome::Status(s) => Err(format!("login-mobile for {email}: HTTP {s}")),
            Outcome::Transport(k) => Err(format!("login-mobile for {email}: {k}")),
        }
    })
}

async fn run(args: Args) -> Result<(serde_json::Value, bool), String> {
    let refreshers = match args.mode {
        Mode::Refresh | Mode::Mixed => args.concurrency.max(1),
        Mode::Login => 0,
    };
    let logins = match args.mode {
        Mode::Refresh => 0,
        Mode::Login => args.concurrency.max(1),
        Mode::Mixed => args.login_concurrency,
    };
    let n_users = args.users.max(1);
    let n_sessions = if refreshers > 0 {
        args.sessions.max(refreshers)
    } else {
        0
    };

    let api = Arc::new(Api::new(&args.base_url).await?);

    // Setup: users, then sessions.
    let setup_start = Instant::now();
    let prefix = args.email_prefix.clone().unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("lg{t:x}p{}", std::process::id())
    });
    let emails: Arc<Vec<String>> = Arc::new(
        (0..n_users)
            .map(|i| format!("{prefix}u{i}@loadgen.example.com"))
            .collect(),
    );
    let results = parallel(
        &api,
        (*emails).clone(),
        args.setup_concurrency,
        create_user_job,
    )
    .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    let session_emails: Vec<String> = (0..n_sessions)
        .map(|i| emails[i % emails.len()].clone())
        .collect();
    let tokens: Vec<String> = parallel(&api, session_emails, args.setup_concurrency, login_job)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let setup_s = setup_start.elapsed().as_secs_f64();

    // Each refresh worker owns sessions i, i + C, i + 2C, …
    let mut owned: Vec<Vec<Session>> = (0..refreshers).map(|_| Vec::new()).collect();
    for (i, t) in tokens.into_iter().enumerate() {
        owned[i % refreshers].push(Session::new(t));
    }

    let now = Instant::now();
    let start = now + Duration::from_secs_f64(args.warmup.max(0.0));
    let end = start + Duration::from_secs_f64(args.duration.max(0.1));
    let window = Window {
        start,
        end,
        stop: end,
    };
    let mut refresh_handles = Vec::new();
    for sessions in owned {
        refresh_handles.push(tokio::spawn(refresh_worker(api.clone(), sessions, window)));
    }
    let mut login_handles = Vec::new();
    for w in 0..logins {
        login_handles.push(tokio::spawn(login_worker(
            api.clone(),
            emails.clone(),
            w,
            window,
        )));
    }
    let mut refresh = Tally::new();
    let mut sessions = Vec::new();
    for h in refresh_handles {
        let (t, s) = h.await.map_err(|e| format!("refresh worker: {e}"))?;
        refresh.merge(&t);
        sessions.extend(s);
    }
    let mut login = Tally::new();
    for h in login_handles {
        login.merge(&h.await.map_err(|e| format!("login worker: {e}"))?);
    }
    let measured = (end - start).as_secs_f64();

    // Replay check: tokens two rotations old must be rejected, and must end the family.
    let mut replay = json!(null);
    let mut replay_ok = true;
    if refreshers > 0 && args.replay_sample > 0 {
        let candidates: Vec<&Session> = sessions
            .iter()
            .filter(|s| s.alive && s.grandparent.is_some())
            .collect();
        let step = (candidates.len() / args.replay_sample).max(1);
        let sample: Vec<&Session> = candidates
            .into_iter()
            .step_by(step)
            .take(args.replay_sample)
            .collect();
        let mut replay_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut after_status: BTreeMap<String, u64> = BTreeMap::new();
        let key = |o: &Outcome| match o {
            Outcome::Ok(_) => "200".to_owned(),
            Outcome::Status(s) => s.to_string(),
            Outcome::Transport(k) => (*k).to_owned(),
        };
        let mut client = Client::new(api.clone());
        for s in &sample {
            let old = s.grandparent.as_deref().expect("filtered on grandparent");
            note(&mut replay_status, key(&client.refresh(old).await));
            note(&mut after_status, key(&client.refresh(&s.current).await));
        }
        let rejected = replay_status.get("401").copied().unwrap_or(0);
        let family_revoked = after_status.get("401").copied().unwrap_or(0);
        replay_ok = rejected as usize == sample.len()
            && family_revoked as usize == sample.len()
            && !sample.is_empty();
        replay = json!({
            "sampled": sample.len(),
            "replay_status": replay_status,
            "replays_rejected": rejected,
            "current_after_replay_status": after_status,
            "families_revoked": family_revoked,
            "ok": replay_ok,
        });
    }

    let mut out = json!({
        "tool": "rotor-loadgen",
        "mode": args.mode,
        "base_url": args.base_url,
        "users": n_users,
        "sessions": n_sessions,
        "concurrency": if args.mode == Mode::Login { logins } else { refreshers },
        "login_concurrency": if args.mode == Mode::Mixed { logins } else { 0 },
        "loadgen_threads": args.threads,
        "warmup_s": args.warmup,
        "duration_s": (measured * 1000.0).round() / 1000.0,
        "setup_s": round1(setup_s),
    });
    if refreshers > 0 {
        out["refresh"] = refresh.report(measured);
        out["sessions_lost"] = json!(sessions.iter().filter(|s| !s.alive).count());
    }
    if logins > 0 {
        out["login"] = login.report(measured);
    }
    out["replay_check"] = replay;
    Ok((out, replay_ok))
}

fn print_text(v: &serde_json::Value) {
    println!(
        "loadgen: mode={} base_url={} users={} sessions={} concurrency={} login_concurrency={} warmup={}s measured={}s (setup {}s)",
        v["mode"].as_str().unwrap_or(""),
        v["base_url"].as_str().unwrap_or(""),
        v["users"],
        v["sessions"],
        v["concurrency"],
        v["login_concurrency"],
        v["warmup_s"],
        v["duration_s"],
        v["setup_s"],
    );
    for (name, what) in [("refresh", "rotations"), ("login", "logins")] {
        let r = &v[name];
        if r.is_null() {
            continue;
        }
        println!(
            "{name:>8}: {} {what}/s ({} ok)  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {}",
            r["per_s"],
            r["ok"],
            ms(&r["p50_us"]),
            ms(&r["p90_us"]),
            ms(&r["p99_us"]),
            ms(&r["max_us"]),
            r["errors"],
        );
    }
    let rc = &v["replay_check"];
    if !rc.is_null() {
        println!(
            "  replays: {}/{} rejected with 401 ({}), families revoked after replay: {}/{} -> {}",
            rc["replays_rejected"],
            rc["sampled"],
            rc["replay_status"],
            rc["families_revoked"],
            rc["sampled"],
            if rc["ok"].as_bool() == Some(true) {
                "OK"
            } else {
                "FAILED"
            }
        );
    }
}

fn ms(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(0.0) / 1000.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json_out = args.json;
    match rt.block_on(run(args)) {
        Ok((v, replay_ok)) => {
            if json_out {
                println!("{v}");
            } else {
                print_text(&v);
            }
            if replay_ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("loadgen: the replay check failed");
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
