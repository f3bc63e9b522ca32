//! `sqlite-bound`: the SQLite analogue of the `pgbench` single-statement rotation
//! bound. It rotates refresh tokens directly in a SQLite file that has rotor's schema
//! (create it with `DATABASE_URL=sqlite://PATH rotor migrate`), with no HTTP, no
//! hashing and no JWT: only the database work a rotation needs.
//!
//! Like rotor it opens the file in WAL mode with `synchronous=NORMAL` and funnels every
//! write through one connection (sqlx's SQLite driver runs each connection on its own
//! thread). `--concurrency` async clients each rotate their own chain of tokens:
//! - `--style batch`: one call per rotation (`BEGIN IMMEDIATE; UPDATE …; INSERT … SELECT
//!   … WHERE changes() = 1; SELECT changes(); COMMIT`), the closest SQLite has to
//!   PostgreSQL's single CTE;
//! - `--style statements`: `BEGIN`, a prepared `UPDATE … RETURNING`, a prepared
//!   `INSERT`, `COMMIT`: four round trips to the connection's thread.
//!
//! Every rotation must succeed; the count of revoked rows is checked at the end.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Row, SqlitePool,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Style {
    Batch,
    Statements,
}

/// Raw SQLite rotation bound (rotor's schema, no HTTP).
#[derive(Debug, Parser)]
#[command(name = "sqlite-bound", version, about)]
struct Args {
    /// SQLite file with rotor's schema.
    #[arg(long)]
    db: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    #[arg(long, value_enum, default_value_t = Style::Batch)]
    style: Style,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    json: bool,
}

const T0: &str = "2026-01-01T00:00:00.000000Z";
const FAR: &str = "2099-01-01T00:00:00.000000Z";

fn hash(run: u64, client: usize, n: u64) -> String {
    format!("{run:016x}{client:016x}{n:016x}{:016x}", 0xb0u64)
}

fn id(run: u64, client: usize, n: u64) -> String {
    format!("{run:x}-{client:x}-{n:x}")
}

async fn rotate(
    pool: &SqlitePool,
    style: Style,
    run: u64,
    client: usize,
    n: u64,
) -> Result<bool, sqlx::Error> {
    let old = hash(run, client, n);
    let new = hash(run, client, n + 1);
    let new_id = id(run, client, n + 1);
    match style {
        Style::Batch => {
            let sql = format!(
                "BEGIN IMMEDIATE;
                 UPDATE refresh_tokens SET is_revoked = 1, revoked_at = '{T0}', updated_at = '{T0}'
                  WHERE token_hash = '{old}' AND is_revoked = 0 AND expires_at > '{T0}';
                 INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name,
                                             ip_address, expires_at, is_revoked, created_at)
                  SELECT '{new_id}', '{new}', user_id, family_id, device_id, device_name, '127.0.0.1',
                         '{FAR}', 0, '{T0}'
                  FROM refresh_tokens WHERE token_hash = '{old}' AND changes() = 1;
                 SELECT changes() AS inserted;
                 COMMIT;"
            );
            // sqlx's rows_affected also counts BEGIN/COMMIT (SQLite's changes() is not
            // reset by them), so ask SQLite directly whether the successor went in.
            let rows = sqlx::raw_sql(&sql).fetch_all(pool).await?;
            Ok(rows.len() == 1 && rows[0].try_get::<i64, _>("inserted")? == 1)
        }
        Style::Statements => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?1, updated_at = ?1
                 WHERE token_hash = ?2 AND is_revoked = 0 AND expires_at > ?1
                 RETURNING user_id, family_id, device_id, device_name",
            )
            .bind(T0)
            .bind(&old)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Ok(false);
            };
            sqlx::query(
                "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name,
                                             ip_address, expires_at, is_revoked, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '127.0.0.1', ?7, 0, ?8)",
            )
            .bind(&new_id)
            .bind(&new)
            .bind(row.try_get::<String, _>("user_id")?)
            .bind(row.try_get::<String, _>("family_id")?)
            .bind(row.try_get::<Option<String>, _>("device_id")?)
            .bind(row.try_get::<Option<String>, _>("device_name")?)
            .bind(FAR)
            .bind(T0)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        }
    }
}

async fn run(args: Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", args.db))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .statement_cache_capacity(256);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .connect_with(options)
        .await?;
    let c = args.concurrency.max(1);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64;
    // Seed: one user, one session and one live token per client.
    let user = format!("bound-user-{run:x}");
    sqlx::query(
        "INSERT INTO users (id, email, hashed_password, created_at) VALUES (?1, ?2, 'x', ?3)",
    )
    .bind(&user)
    .bind(format!("{user}@bound.example.com"))
    .bind(T0)
    .execute(&pool)
    .await?;
    for client in 0..c {
        let family = format!("bound-fam-{run:x}-{client:x}");
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, absolute_expires_at)
             VALUES (?1, ?2, ?3, ?3, ?4)",
        )
        .bind(&family)
        .bind(&user)
        .bind(T0)
        .bind(FAR)
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(id(run, client, 0))
        .bind(hash(run, client, 0))
        .bind(&user)
        .bind(&family)
        .bind(FAR)
        .bind(T0)
        .execute(&pool)
        .await?;
    }

    let start = Instant::now() + Duration::from_secs_f64(args.warmup.max(0.0));
    let end = start + Duration::from_secs_f64(args.duration.max(0.1));
    let mut handles = Vec::new();
    for client in 0..c {
        let pool = pool.clone();
        let style = args.style;
        handles.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
            let (mut n, mut ok, mut failed) = (0u64, 0u64, 0u64);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let rotated = rotate(&pool, style, run, client, n).await?;
                let done = Instant::now();
                if rotated {
                    n += 1;
                }
                if sent >= start && done <= end {
                    if rotated {
                        ok += 1;
                        hist.saturating_record((done - sent).as_micros().max(1) as u64);
                    } else {
                        failed += 1;
                    }
                }
                if !rotated {
                    break; // the chain is broken: stop this client
                }
            }
            Ok::<_, sqlx::Error>((hist, n, ok, failed))
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut total, mut ok, mut failed) = (0u64, 0u64, 0u64);
    for h in handles {
        let (h, n, o, f) = h.await??;
        hist.add(&h)?;
        total += n;
        ok += o;
        failed += f;
    }
    let revoked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash LIKE ?1 AND is_revoked = 1",
    )
    .bind(format!("{run:016x}%"))
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    let secs = (end - start).as_secs_f64();
    Ok(json!({
        "tool": "sqlite-bound",
        "style": format!("{:?}", args.style).to_lowercase(),
        "concurrency": c,
        "duration_s": secs,
        "warmup_s": args.warmup,
        "rotations_total": total,
        "revoked_rows": revoked,
        "consistent": revoked as u64 == total,
        "refresh": {
            "ok": ok,
            "per_s": (ok as f64 / secs * 10.0).round() / 10.0,
            "p50_us": hist.value_at_quantile(0.5),
            "p90_us": hist.value_at_quantile(0.9),
            "p99_us": hist.value_at_quantile(0.99),
            "max_us": hist.max(),
            "errors_total": failed,
        },
    }))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json_out = args.json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(v) => {
            if json_out {
                println!("{v}");
            } else {
                let r = &v["refresh"];
                println!(
                    "sqlite-bound: style={} concurrency={}: {} rotations/s  p50 {} us  p99 {} us  max {} us  consistent={}",
                    v["style"].as_str().unwrap_or(""),
                    v["concurrency"],
                    r["per_s"],
                    r["p50_us"],
                    r["p99_us"],
                    r["max_us"],
                    v["consistent"]
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sqlite-bound: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
