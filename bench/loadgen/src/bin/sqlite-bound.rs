//! `sqlite-bound`: the SQLite analogue of the `pgbench` rotation bound. It rotates
//! refresh tokens directly in a SQLite file with rotor's schema, with no HTTP, no
//! hashing and no JWT: only the database work a rotation needs, through rusqlite (the
//! calling thread runs SQLite itself: no hand-off to a connection thread).
//!
//! The file is created with rotor's schema (`migrations/sqlite/*.sql`) if it
//! has none; a file made by `DATABASE_URL=sqlite://PATH rotor migrate` works too. It is
//! opened like rotor opens it: `journal_mode=WAL`, `synchronous=NORMAL`,
//! `foreign_keys=ON`, `temp_store=MEMORY`, cached prepared statements, one writer
//! connection.
//!
//! Each of `--concurrency` client threads rotates its own chain of tokens (one user,
//! one session and one chain per client). A rotation is rotor's: in one transaction, the
//! conditional `UPDATE refresh_tokens … RETURNING` of the presented token and, only if
//! it was live, the `INSERT … RETURNING` of its successor, the `UPDATE sessions` of the
//! last use and the `INSERT INTO audit_events` of a `refresh` event.
//!
//! `--style` (how the clients share the one writer connection):
//! - `serial`: the connection sits behind a mutex; each rotation is its own
//!   `BEGIN IMMEDIATE … COMMIT` run by the client thread: one commit per rotation;
//! - `group` (default): the clients send their rotations over a channel to one writer
//!   thread, which takes everything queued, runs it in one `BEGIN IMMEDIATE … COMMIT`
//!   (each rotation inside a `SAVEPOINT`, so one failure does not undo the others),
//!   commits, then answers each client: group commit, the design of rotor's writer.
//!
//! Every rotation must succeed; at the end the revoked rows (and the audit rows) of the
//! run must equal the rotations done.

use std::{
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

/// rotor's schema, applied when the file has none.
const SCHEMA: &str = concat!(
    include_str!("../../../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../../../migrations/sqlite/0002_drop_family_index.sql"),
);

/// Largest batch the group-commit writer takes at once (as rotor's writer).
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Style {
    /// One `BEGIN IMMEDIATE … COMMIT` per rotation on a mutex-guarded connection.
    Serial,
    /// One writer thread commits everything queued in one transaction.
    Group,
}

/// Raw SQLite rotation bound (rotor's schema, no HTTP).
#[derive(Debug, Parser)]
#[command(name = "sqlite-bound", version)]
struct Args {
    /// SQLite file (created with rotor's schema if it has none).
    #[arg(long)]
    db: String,
    /// Client threads, each rotating its own token chain.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (load applied, nothing recorded).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// serial: one commit per rotation; group: one writer thread, group commit.
    #[arg(long, value_enum, default_value_t = Style::Group)]
    style: Style,
    /// Ignored (accepted for compatibility: the clients are OS threads).
    #[arg(long = "threads", hide = true, default_value_t = 1)]
    _threads: usize,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

/// Expiry of every token and session: far in the future.
const FAR: &str = "2099-01-01T00:00:00.000000Z";
const IP: &str = "127.0.0.1";
const USER_AGENT: &str = "sqlite-bound";

// rotor's rotation statements (src/storage/sqlite), verbatim.
const TOKEN_COLS: &str = "id, token_hash, user_id, family_id, device_id, device_name, ip_address, expires_at, is_revoked, revoked_at, created_at, updated_at";
const REVOKE: &str = "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?1, updated_at = ?1
         WHERE token_hash = ?2 AND is_revoked = 0 AND expires_at > ?1
           AND EXISTS (SELECT 1 FROM users u WHERE u.id = refresh_tokens.user_id AND u.is_active)
           AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.family_id AND s.revoked_at IS NOT NULL)
         RETURNING user_id, family_id, device_id, device_name,
                   (SELECT token_version FROM users u WHERE u.id = refresh_tokens.user_id) AS token_version,
                   (SELECT absolute_expires_at FROM sessions s WHERE s.id = refresh_tokens.family_id) AS absolute_expires_at";
const TOUCH_SESSION: &str =
    "UPDATE sessions SET last_used_at = ?2, ip_address = COALESCE(?3, ip_address) WHERE id = ?1";
const AUDIT: &str =
    "INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent)
         VALUES (?1, ?2, 'refresh', ?3, ?4, ?5, ?6)";

fn insert_successor_sql() -> String {
    format!(
        "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name,
                                     ip_address, expires_at, is_revoked, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9) RETURNING {TOKEN_COLS}"
    )
}

/// rotor's timestamp text: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
fn ts(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let sod = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        d.subsec_micros()
    )
}

/// A bijection of u64 (the splitmix64 finalizer): spreads keys like a SHA-256 would.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Token hash n of a client's chain: 64 hex characters, random-looking (so inserts land
/// all over the unique index, as SHA-256 hashes do) and unique per (run, client, n):
/// the first word is a bijection of (client, n), the second of run given the first.
fn hash(run: u64, client: usize, n: u64) -> String {
    let a = mix(((client as u64) << 40) | (n & ((1 << 40) - 1)));
    let b = mix(run ^ a);
    let c = mix(b ^ 0x5bd1_e995);
    let d = mix(c);
    format!("{a:016x}{b:016x}{c:016x}{d:016x}")
}

/// A UUID-shaped id, time-ordered like rotor's UUID v7 (48-bit milliseconds first),
/// unique per (kind, run, client, n).
fn uuid_like(t: SystemTime, kind: u16, run: u64, client: usize, n: u64) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:04x}{:08x}",
        (ms >> 16) as u32,
        ms & 0xffff,
        kind & 0xfff,
        0x8000 | (run & 0x3fff),
        client & 0xffff,
        n & 0xffff_ffff
    )
}

const KIND_USER: u16 = 1;
const KIND_SESSION: u16 = 2;
const KIND_TOKEN: u16 = 3;
const KIND_EVENT: u16 = 4;

fn open(path: &str) -> Result<Connection, String> {
    let conn = open_sqlite(path).map_err(|e| e.to_string())?;
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if mode != "wal" {
        return Err(format!("SQLite refused WAL mode (journal_mode = {mode})"));
    }
    Ok(conn)
}

/// Opens the file as rotor does, and gives it rotor's schema if it has none.
fn open_sqlite(path: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(96);
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    let has_schema: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'refresh_tokens'",
        [],
        |r| r.get(0),
    )?;
    if !has_schema {
        conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;"))?;
    }
    Ok(conn)
}

/// Runs a parameterless statement through the statement cache.
fn exec(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// One user, one session and the first token of a chain per client. Returns the user id.
fn seed(c: &Connection, run: u64, clients: usize) -> rusqlite::Result<String> {
    let t = SystemTime::now();
    let now = ts(t);
    let user = uuid_like(t, KIND_USER, run, 0, 0);
    c.execute_batch("BEGIN IMMEDIATE")?;
    c.execute(
        "INSERT INTO users (id, email, hashed_password, full_name, created_at)
         VALUES (?1, ?2, 'x', 'sqlite-bound', ?3)",
        params![user, format!("bound-{run:x}@bound.example.com"), now],
    )?;
    for client in 0..clients {
        let family = uuid_like(t, KIND_SESSION, run, client, 0);
        c.execute(
            "INSERT INTO sessions (id, user_id, device_id, device_name, ip_address, created_at,
                                   last_used_at, absolute_expires_at)
             VALUES (?1, ?2, ?3, 'bound device', ?4, ?5, ?5, ?6)",
            params![family, user, format!("dev-{client}"), IP, now, FAR],
        )?;
        c.execute(
            "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name,
                                         ip_address, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'bound device', ?6, ?7, ?8)",
            params![
                uuid_like(t, KIND_TOKEN, run, client, 0),
                hash(run, client, 0),
                user,
                family,
                format!("dev-{client}"),
                IP,
                FAR,
                now
            ],
        )?;
    }
    c.execute_batch("COMMIT")?;
    Ok(user)
}

/// The database work of one rotation, inside the caller's transaction: rotates token n
/// of the client's chain to n + 1. `Ok(false)`: token n was not live.
fn rotate(
    c: &Connection,
    insert_sql: &str,
    run: u64,
    client: usize,
    n: u64,
) -> rusqlite::Result<bool> {
    let t = SystemTime::now();
    let now = ts(t);
    let old = c
        .prepare_cached(REVOKE)?
        .query_row(params![now, hash(run, client, n)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .optional()?;
    let Some((user_id, family_id, device_id, device_name, _token_version, session_end)) = old
    else {
        return Ok(false);
    };
    // rotor caps the successor's expiry at the session's absolute end.
    let expires_at = match session_end {
        Some(end) if end.as_str() < FAR => end,
        _ => FAR.to_owned(),
    };
    c.prepare_cached(insert_sql)?.query_row(
        params![
            uuid_like(t, KIND_TOKEN, run, client, n + 1),
            hash(run, client, n + 1),
            user_id,
            family_id,
            device_id,
            device_name,
            IP,
            expires_at,
            now,
        ],
        |_| Ok(()),
    )?;
    c.prepare_cached(TOUCH_SESSION)?
        .execute(params![family_id, now, IP])?;
    c.prepare_cached(AUDIT)?.execute(params![
        uuid_like(t, KIND_EVENT, run, client, n + 1),
        now,
        user_id,
        family_id,
        IP,
        USER_AGENT,
    ])?;
    Ok(true)
}

/// `serial`: one rotation in its own `BEGIN IMMEDIATE … COMMIT`.
fn rotate_alone(
    c: &Connection,
    insert_sql: &str,
    run: u64,
    client: usize,
    n: u64,
) -> Result<bool, String> {
    exec(c, "BEGIN IMMEDIATE").map_err(|e| format!("BEGIN IMMEDIATE: {e}"))?;
    match rotate(c, insert_sql, run, client, n) {
        Ok(true) => exec(c, "COMMIT")
            .map(|()| true)
            .map_err(|e| format!("COMMIT: {e}")),
        Ok(false) => exec(c, "ROLLBACK")
            .map(|()| false)
            .map_err(|e| format!("ROLLBACK: {e}")),
        Err(e) => {
            if !c.is_autocommit() {
                let _ = exec(c, "ROLLBACK");
            }
            Err(format!("rotation: {e}"))
        }
    }
}

/// A rotation request sent to the group-commit writer.
struct Job {
    client: usize,
    n: u64,
    reply: mpsc::SyncSender<Result<bool, String>>,
}

/// What the group-commit writer did.
#[derive(Default)]
struct WriterStats {
    commits: u64,
    rotations: u64,
    largest_batch: usize,
}

/// `group`: takes whatever is queued (up to `MAX_BATCH`), runs it in one transaction,
/// each job in a savepoint, commits, then answers every job.
fn writer_loop(c: &Connection, run: u64, inbox: &mpsc::Receiver<Job>) -> WriterStats {
    let insert_sql = insert_successor_sql();
    let mut stats = WriterStats::default();
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut results: Vec<Result<bool, String>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(job) = inbox.recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        stats.largest_batch = stats.largest_batch.max(batch.len());
        if let Err(e) = run_batch(c, &insert_sql, run, &batch, &mut results) {
            if !c.is_autocommit() {
                let _ = exec(c, "ROLLBACK");
            }
            results.clear();
            results.extend(batch.iter().map(|_| Err(e.clone())));
        } else {
            stats.commits += 1;
            stats.rotations += results.iter().filter(|r| matches!(r, Ok(true))).count() as u64;
        }
        for (job, result) in batch.drain(..).zip(results.drain(..)) {
            let _ = job.reply.send(result);
        }
    }
    stats
}

fn run_batch(
    c: &Connection,
    insert_sql: &str,
    run: u64,
    batch: &[Job],
    results: &mut Vec<Result<bool, String>>,
) -> Result<(), String> {
    results.clear();
    exec(c, "BEGIN IMMEDIATE").map_err(|e| format!("BEGIN IMMEDIATE: {e}"))?;
    if let [only] = batch {
        // One job: its transaction is the batch's; no savepoint needed (as rotor).
        match rotate(c, insert_sql, run, only.client, only.n) {
            Ok(true) => {
                results.push(Ok(true));
                return exec(c, "COMMIT").map_err(|e| format!("COMMIT: {e}"));
            }
            Ok(false) => results.push(Ok(false)),
            Err(e) => results.push(Err(format!("rotation: {e}"))),
        }
        return exec(c, "ROLLBACK").map_err(|e| format!("ROLLBACK: {e}"));
    }
    for job in batch {
        exec(c, "SAVEPOINT job").map_err(|e| format!("SAVEPOINT: {e}"))?;
        let r = rotate(c, insert_sql, run, job.client, job.n).map_err(|e| format!("rotation: {e}"));
        if c.is_autocommit() {
            return Err("the transaction was rolled back by SQLite".into());
        }
        if !matches!(r, Ok(true)) {
            exec(c, "ROLLBACK TO job").map_err(|e| format!("ROLLBACK TO: {e}"))?;
        }
        exec(c, "RELEASE job").map_err(|e| format!("RELEASE: {e}"))?;
        results.push(r);
    }
    exec(c, "COMMIT").map_err(|e| format!("COMMIT: {e}"))
}

/// What one client measured.
struct ClientTally {
    hist: Histogram<u64>,
    /// Rotations done (whole run): the client's chain is at token `done`.
    done: u64,
    ok: u64,
    failed: u64,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// A client's loop: rotate its chain until `end`, one rotation at a time.
fn client_loop(
    start: Instant,
    end: Instant,
    mut rotate_next: impl FnMut(u64) -> Result<bool, String>,
) -> Result<ClientTally, String> {
    let mut t = ClientTally {
        hist: new_hist(),
        done: 0,
        ok: 0,
        failed: 0,
    };
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let rotated = rotate_next(t.done)?;
        let finished = Instant::now();
        if rotated {
            t.done += 1;
        }
        if sent >= start && finished <= end {
            if rotated {
                t.ok += 1;
                t.hist
                    .saturating_record((finished - sent).as_micros().max(1) as u64);
            } else {
                t.failed += 1;
            }
        }
        if !rotated {
            break; // the chain is broken: stop this client
        }
    }
    Ok(t)
}

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let c = args.concurrency.max(1);
    let conn = open(&args.db).map_err(|e| format!("opening {}: {e}", args.db))?;
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_micros() as u64;
    let user = seed(&conn, run, c).map_err(|e| format!("seeding: {e}"))?;

    let start = Instant::now() + Duration::from_secs_f64(args.warmup.max(0.0));
    let end = start + Duration::from_secs_f64(args.duration.max(0.1));
    let (tallies, conn, commits, largest_batch) = match args.style {
        Style::Serial => {
            let shared = Arc::new(Mutex::new(conn));
            let insert_sql: Arc<str> = insert_successor_sql().into();
            let handles: Vec<_> = (0..c)
                .map(|client| {
                    let shared = shared.clone();
                    let insert_sql = insert_sql.clone();
                    thread::spawn(move || {
                        client_loop(start, end, |n| {
                            let conn = shared.lock().map_err(|_| "poisoned lock".to_owned())?;
                            rotate_alone(&conn, &insert_sql, run, client, n)
                        })
                    })
                })
                .collect();
            let tallies = join_all(handles)?;
            let conn = Arc::try_unwrap(shared)
                .map_err(|_| "connection still shared".to_owned())?
                .into_inner()
                .map_err(|_| "poisoned lock".to_owned())?;
            let commits: u64 = tallies.iter().map(|t| t.done).sum();
            (tallies, conn, commits, 1)
        }
        Style::Group => {
            let (tx, rx) = mpsc::channel::<Job>();
            let writer = thread::spawn(move || {
                let stats = writer_loop(&conn, run, &rx);
                (conn, stats)
            });
            let handles: Vec<_> = (0..c)
                .map(|client| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        let (reply, answer) = mpsc::sync_channel(1);
                        client_loop(start, end, |n| {
                            tx.send(Job {
                                client,
                                n,
                                reply: reply.clone(),
                            })
                            .map_err(|_| "the writer is gone".to_owned())?;
                            answer.recv().map_err(|_| "the writer is gone".to_owned())?
                        })
                    })
                })
                .collect();
            drop(tx);
            let tallies = join_all(handles)?;
            let (conn, stats) = writer
                .join()
                .map_err(|_| "the writer panicked".to_owned())?;
            let total: u64 = tallies.iter().map(|t| t.done).sum();
            if stats.rotations != total {
                return Err(format!(
                    "the writer committed {} rotations, the clients saw {total}",
                    stats.rotations
                ));
            }
            (tallies, conn, stats.commits, stats.largest_batch)
        }
    };

    let mut hist = new_hist();
    let (mut total, mut ok, mut failed) = (0u64, 0u64, 0u64);
    for t in &tallies {
        hist.add(&t.hist).map_err(|e| e.to_string())?;
        total += t.done;
        ok += t.ok;
        failed += t.failed;
    }
    let count = |sql: &str| -> Result<i64, String> {
        conn.query_row(sql, [&user], |r| r.get(0))
            .map_err(|e| e.to_string())
    };
    let revoked =
        count("SELECT count(*) FROM refresh_tokens WHERE user_id = ?1 AND is_revoked = 1")?;
    let live = count("SELECT count(*) FROM refresh_tokens WHERE user_id = ?1 AND is_revoked = 0")?;
    let audit = count("SELECT count(*) FROM audit_events WHERE user_id = ?1 AND kind = 'refresh'")?;
    drop(conn);
    let secs = (end - start).as_secs_f64();
    let has = !hist.is_empty();
    let q = |p: f64| if has { hist.value_at_quantile(p) } else { 0 };
    Ok(json!({
        "tool": "sqlite-bound",
        "style": match args.style { Style::Serial => "serial", Style::Group => "group" },
        "concurrency": c,
        "duration_s": secs,
        "warmup_s": args.warmup,
        "rotations_total": total,
        "revoked_rows": revoked,
        "audit_rows": audit,
        "live_tokens": live,
        "commits": commits,
        "rotations_per_commit": if commits > 0 { (total as f64 / commits as f64 * 10.0).round() / 10.0 } else { 0.0 },
        "largest_batch": largest_batch,
        "consistent": revoked as u64 == total && audit as u64 == total && live as usize == c,
        "refresh": {
            "ok": ok,
            "per_s": (ok as f64 / secs * 10.0).round() / 10.0,
            "p50_us": q(0.5),
            "p90_us": q(0.9),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": if has { hist.max() } else { 0 },
            "mean_us": (if has { hist.mean() } else { 0.0 } * 10.0).round() / 10.0,
            "errors_total": failed,
        },
    }))
}

fn join_all(
    handles: Vec<thread::JoinHandle<Result<ClientTally, String>>>,
) -> Result<Vec<ClientTally>, String> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => out.push(t),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert_with(|| "a client thread panicked".to_owned());
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else {
                let r = &v["refresh"];
                println!(
                    "sqlite-bound: style={} concurrency={}: {} rotations/s  p50 {} us  p99 {} us  max {} us  ({} rotations/commit)  consistent={}",
                    v["style"].as_str().unwrap_or(""),
                    v["concurrency"],
                    r["per_s"],
                    r["p50_us"],
                    r["p99_us"],
                    r["max_us"],
                    v["rotations_per_commit"],
                    v["consistent"]
                );
            }
            if v["consistent"].as_bool() == Some(true) {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!("sqlite-bound: the revoked/audit rows do not match the rotations done");
                std::process::ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("sqlite-bound: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
