//! `rotor backup PATH`, a separate process, while `rotor serve` rotates tokens: the
//! copy is consistent, the storm is not held up, and every session in the copy rotates
//! on a server started on it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use rotor::domain::token::hash_token;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

use crate::{
    process::{refresh_mobile, run, Server},
    support::{eventually, Backend, TestDb},
};

const USERS: usize = 5;
const SESSIONS_PER_USER: usize = 10;
const STORM_TASKS: usize = 8;
/// Audit rows written before the server starts, so the copy takes long enough to
/// overlap many rotations (a few tens of MB).
const BALLAST_ROWS: u32 = 150_000;

/// One refresh of the storm: when it started and ended, and its answer.
struct Sample {
    start: Instant,
    end: Instant,
    status: Option<StatusCode>,
}

async fn login_mobile(client: &reqwest::Client, base: &str, email: &str) -> String {
    let r = client
        .post(format!("{base}/v1/auth/login-mobile"))
        .form(&[("username", email), ("password", "BackupPass123")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("login body");
    body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

/// Live `(family_id, token_hash)` of a SQLite file opened read-only.
fn live_tokens(conn: &Connection) -> Vec<(String, String)> {
    let mut stmt = conn
        .prepare("SELECT family_id, token_hash FROM refresh_tokens WHERE is_revoked = 0")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_during_a_refresh_storm_is_consistent_and_every_session_in_it_rotates() {
    let db = TestDb::new(Backend::Sqlite).await;
    let migrated = run(&db, &["migrate"], &[]).await;
    assert!(migrated.ok, "{}", migrated.stderr);
    db.sqlite()
        .execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BALLAST_ROWS})
             INSERT INTO audit_events (id, created_at, kind, detail)
             SELECT printf('ballast-%08d', i), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                    'login_failed', hex(randomblob(100)) FROM n;"
        ))
        .expect("ballast");

    // A strict server (no grace window): a token is either live or a replay.
    let strict = [("REFRESH_REUSE_GRACE_SECONDS", "0")];
    let server = Server::start(&db, &strict).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let mut families: Vec<Vec<String>> = Vec::new();
    for u in 0..USERS {
        let email = format!("backup{u}@test.com");
        let r = client
            .post(format!("{base}/v1/users"))
            .json(&json!({"email": email, "password": "BackupPass123"}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), StatusCode::CREATED);
        for _ in 0..SESSIONS_PER_USER {
            families.push(vec![login_mobile(&client, &base, &email).await]);
        }
    }
    let sessions = families.len();

    // The storm: each task rotates its own families in turn, as fast as it can, and
    // keeps every token it was given.
    let stop = Arc::new(AtomicBool::new(false));
    // Rotations done so far, over all tasks: what the waits below watch.
    let rotated = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..STORM_TASKS {
        let mine: Vec<(usize, Vec<String>)> = families
            .iter()
            .enumerate()
            .filter(|(i, _)| i % STORM_TASKS == t)
            .map(|(i, f)| (i, f.clone()))
            .collect();
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        let rotated = rotated.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = mine;
            let mut samples = Vec::new();
            'storm: while !stop.load(Ordering::Relaxed) {
                for (_, tokens) in &mut mine {
                    let current = tokens.last().expect("a token").clone();
                    let start = Instant::now();
                    let answer = refresh_mobile(&client, &base, &current).await.ok();
                    samples.push(Sample {
                        start,
                        end: Instant::now(),
                        status: answer.as_ref().map(|(status, _)| *status),
                    });
                    match answer {
                        Some((StatusCode::OK, Some(next))) => {
                            tokens.push(next);
                            rotated.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break 'storm,
                    }
                }
            }
            (mine, samples)
        }));
    }

    // The storm is under way once every session has rotated (one round on average).
    let storm_under_way = |target: usize| {
        let rotated = rotated.clone();
        async move {
            eventually(
                Duration::from_secs(60),
                &format!("{target} rotations in the storm"),
                || {
                    let done = rotated.load(Ordering::Relaxed);
                    async move { done >= target }
                },
            )
            .await;
        }
    };
    storm_under_way(sessions).await;
    let copy_db = TestDb::new(Backend::Sqlite).await;
    let copy_path = copy_db.sqlite_path();
    let copy_arg = copy_path.display().to_string();
    let backup_start = Instant::now();
    let backup = run(&db, &["backup", &copy_arg], &[]).await;
    let backup_end = Instant::now();
    // The storm goes on past the copy: another round of every session after it, so
    // tokens exist that the copy cannot know.
    storm_under_way(rotated.load(Ordering::Relaxed) + sessions).await;
    stop.store(true, Ordering::Relaxed);

    let mut samples = Vec::new();
    for task in tasks {
        let (mine, s) = task.await.expect("storm task");
        for (i, tokens) in mine {
            families[i] = tokens;
        }
        samples.extend(s);
    }
    assert!(
        backup.ok,
        "backup failed: {}\n{}",
        backup.stderr, backup.stdout
    );

    // The storm was never refused nor failed, and the backup did not hold it up.
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.status != Some(StatusCode::OK))
        .map(|s| s.status)
        .collect();
    assert!(failed.is_empty(), "refreshes failed: {failed:?}");
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.end > backup_start && s.start < backup_end)
        .collect();
    let max_during = during
        .iter()
        .map(|s| s.end - s.start)
        .max()
        .unwrap_or_default();
    let max_overall = samples
        .iter()
        .map(|s| s.end - s.start)
        .max()
        .unwrap_or_default();
    println!(
        "backup: {:?} wall (process start to exit); {} refreshes overlapped it, max latency \
         {max_during:?} (whole storm: {} refreshes, max {max_overall:?})\n{}",
        backup_end - backup_start,
        during.len(),
        samples.len(),
        backup.stdout
    );
    assert!(
        during.len() >= 50,
        "only {} refreshes overlapped the backup",
        during.len()
    );
    assert!(
        max_during < Duration::from_secs(1),
        "a refresh took {max_during:?} during the backup"
    );
    assert!(
        backup.stdout.contains("integrity    ok"),
        "{}",
        backup.stdout
    );
    assert!(
        backup.stdout.contains(&format!("live tokens  {sessions}")),
        "{}",
        backup.stdout
    );
    assert!(backup.stdout.contains("SECRET_KEY"), "{}", backup.stdout);

    // One private, self-contained file and nothing else beside it.
    let beside: BTreeSet<String> = std::fs::read_dir(&copy_db.dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, BTreeSet::from(["rotor.db".to_owned()]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy_path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The copy opens read-only and passes the integrity check.
    let copy = Connection::open_with_flags(&copy_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the copy");
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let live = live_tokens(&copy);
    drop(copy);
    assert_eq!(live.len(), sessions, "one live token per session");

    // Each family's live token in the copy is one its client was given: the copy is a
    // snapshot of one moment, behind the clients that kept rotating afterwards.
    let received: HashMap<String, (usize, usize)> = families
        .iter()
        .enumerate()
        .flat_map(|(f, tokens)| {
            tokens
                .iter()
                .enumerate()
                .map(move |(k, t)| (hash_token(t), (f, k)))
        })
        .collect();
    let mut in_copy: BTreeMap<usize, usize> = BTreeMap::new();
    for (family_id, hash) in &live {
        let (f, k) = *received
            .get(hash)
            .unwrap_or_else(|| panic!("family {family_id}: its live token was never received"));
        assert!(
            in_copy.insert(f, k).is_none(),
            "family {f} twice in the copy"
        );
    }
    assert_eq!(in_copy.len(), sessions);
    let behind = in_copy
        .iter()
        .filter(|(f, k)| **k + 1 < families[**f].len())
        .count();
    assert!(behind > 0, "the copy should be older than the clients");

    // Restore by starting on the copy (same SECRET_KEY): every session in it rotates,
    // presenting the token its client held when the copy was taken, and keeps rotating.
    drop(server);
    let restored = Server::start(&copy_db, &strict).await;
    let mut latest = Vec::new();
    for (f, k) in &in_copy {
        let held = &families[*f][*k];
        let (status, next) = refresh_mobile(&client, &restored.base, held)
            .await
            .expect("answer");
        assert_eq!(status, StatusCode::OK, "family {f}");
        let (status, next) = refresh_mobile(&client, &restored.base, &next.expect("successor"))
            .await
            .expect("answer");
        assert_eq!(status, StatusCode::OK, "family {f}, second rotation");
        latest.push(next.expect("successor"));
    }
    // A token issued after the copy was taken is unknown to it.
    let (f, _) = in_copy
        .iter()
        .find(|(f, k)| **k + 1 < families[**f].len())
        .expect("the storm rotated some session after the copy was taken");
    let newest = families[*f].last().expect("a token");
    let (status, _) = refresh_mobile(&client, &restored.base, newest)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // What the secret is needed for (README, "Backups"): under another SECRET_KEY the
    // refresh tokens still rotate (the database holds their hashes; successors are
    // derived anew), but access tokens signed with the old secret are refused.
    let r = client
        .post(format!("{}/v1/auth/refresh-mobile", restored.base))
        .json(&json!({"refresh_token": latest[0]}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("body");
    let access = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let refresh_token = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    drop(restored);
    let other_secret = [
        ("REFRESH_REUSE_GRACE_SECONDS", "0"),
        ("SECRET_KEY", "a-different-secret-key-0123456789abcdefghij"),
    ];
    let other = Server::start(&copy_db, &other_secret).await;
    let me = client
        .get(format!("{}/v1/users/me", other.base))
        .bearer_auth(&access)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = refresh_mobile(&client, &other.base, &refresh_token)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn backup_refuses_to_replace_a_file_without_force_and_needs_a_database() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dest = db.dir.join("backup.db");
    let dest_arg = dest.display().to_string();

    // No database yet: refused, and none is created.
    let out = run(&db, &["backup", &dest_arg], &[]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("no SQLite database"), "{}", out.stderr);
    assert!(!db.sqlite_path().exists());
    assert!(!dest.exists());

    assert!(run(&db, &["migrate"], &[]).await.ok);
    std::fs::write(&dest, b"precious").expect("write");
    let out = run(&db, &["backup", &dest_arg], &[]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("already exists") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&dest).expect("read"), b"precious");

    // The live database itself is never a destination, even with --force.
    let live = db.sqlite_path().display().to_string();
    let out = run(&db, &["backup", "--force", &live], &[]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("being backed up"), "{}", out.stderr);

    let out = run(&db, &["backup", "--force", &dest_arg], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    let copy = Connection::open_with_flags(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let users: i64 = copy
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .expect("users table");
    assert_eq!(users, 0);
    // No temporary file is left behind by the refusals or the copy.
    let temps: Vec<String> = std::fs::read_dir(&db.dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[tokio::test]
async fn backup_on_postgres_points_to_its_own_tools() {
    let db = TestDb::new(Backend::Postgres).await;
    let dest = db.dir.join("backup.db");
    let out = run(&db, &["backup", &dest.display().to_string()], &[]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("PostgreSQL")
            && out.stderr.contains("pg_dump")
            && out.stderr.contains("pg_basebackup"),
        "{}",
        out.stderr
    );
    assert!(!dest.exists());
}
