//! Several `rotor serve` processes on one PostgreSQL, and a server killed with
//! SIGKILL at random points under load: the database must never hold two live tokens
//! in a family, and no client may lose its session.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    process::{free_port, refresh_mobile, Server},
    support::{count, eventually, live_tokens, max_live_per_family, Backend, TestDb},
};

async fn register_and_login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    sessions: usize,
) -> Vec<String> {
    let r = client
        .post(format!("{base}/v1/users"))
        .json(&json!({"email": email, "password": "RacePass123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut tokens = Vec::new();
    for _ in 0..sessions {
        let body: Value = client
            .post(format!("{base}/v1/auth/login-mobile"))
            .form(&[("username", email), ("password", "RacePass123")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    tokens
}

#[tokio::test]
async fn two_processes_racing_on_the_same_tokens_yield_one_successor_each() {
    let db = TestDb::new(Backend::Postgres).await;
    let a = Server::start(&db, &[]).await;
    let b = Server::start(&db, &[]).await;
    let client = reqwest::Client::new();
    let tokens = register_and_login(&client, &a.base, "race@test.com", 20).await;

    // 20 tokens × 12 concurrent presentations, alternating between the processes.
    let mut tasks = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        for j in 0..12 {
            let base = if (i + j) % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let client = client.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                (i, refresh_mobile(&client, &base, &token).await.unwrap())
            }));
        }
    }
    let mut successors: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for t in tasks {
        let (i, (status, next)) = t.await.unwrap();
        // Within the grace window every presentation returns the one successor.
        assert_eq!(status, StatusCode::OK, "token {i}");
        successors.entry(i).or_default().insert(next.unwrap());
    }
    for (i, set) in &successors {
        assert_eq!(
            set.len(),
            1,
            "token {i} got {} distinct successors",
            set.len()
        );
    }
    assert_eq!(max_live_per_family(&db).await, 1);
    assert_eq!(live_tokens(&db).await, 20);
    assert_eq!(
        count(&db, "SELECT count(*) FROM refresh_tokens").await,
        40,
        "each parent and one successor"
    );
    // Every successor works on either process.
    for (i, set) in successors {
        let base = if i % 2 == 0 { &b.base } else { &a.base };
        let (status, _) = refresh_mobile(&client, base, set.iter().next().unwrap())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn two_processes_in_strict_mode_never_leave_two_live_tokens() {
    let db = TestDb::new(Backend::Postgres).await;
    let env = [("REFRESH_REUSE_GRACE_SECONDS", "0")];
    let a = Server::start(&db, &env).await;
    let b = Server::start(&db, &env).await;
    let client = reqwest::Client::new();
    let tokens = register_and_login(&client, &a.base, "strict@test.com", 20).await;
    let mut tasks = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        for j in 0..10 {
            let base = if (i + j) % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let client = client.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                (i, refresh_mobile(&client, &base, &token).await.unwrap().0)
            }));
        }
    }
    let mut oks: BTreeMap<usize, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for t in tasks {
        let (i, status) = t.await.unwrap();
        *statuses.entry(status.as_u16()).or_default() += 1;
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "{status}"
        );
        if status == StatusCode::OK {
            *oks.entry(i).or_default() += 1;
        }
    }
    assert!(
        oks.values().all(|n| *n <= 1),
        "at most one winner per token: {oks:?}"
    );
    assert_eq!(oks.len(), 20, "every token had its winner: {statuses:?}");
    assert_eq!(
        max_live_per_family(&db).await.min(1),
        max_live_per_family(&db).await
    );
    // Every family saw a replay (the losers), so every family is revoked, committed.
    assert_eq!(live_tokens(&db).await, 0);
}

#[tokio::test]
async fn sigkill_at_random_points_loses_no_session_and_leaves_no_half_rotation() {
    let db = TestDb::new(Backend::Postgres).await;
    // A grace window longer than a restart: a client whose last request was cut off
    // by the kill may have been rotated without hearing the answer; re-presenting its
    // last received token returns that successor.
    let env = [("REFRESH_REUSE_GRACE_SECONDS", "60")];
    let port = free_port();
    let mut server = Server::start_on(&db, port, &env).await;
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let initial = register_and_login(&client, &base, "crash@test.com", 8).await;

    let stop = Arc::new(AtomicBool::new(false));
    // Rotations per client, so the test can wait for every client to be served again.
    let progress: Arc<Vec<AtomicU32>> =
        Arc::new((0..initial.len()).map(|_| AtomicU32::new(0)).collect());
    let mut workers = Vec::new();
    for (w, token) in initial.into_iter().enumerate() {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            let mut last = token;
            let mut rotations = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match refresh_mobile(&client, &base, &last).await {
                    Ok((StatusCode::OK, Some(next))) => {
                        last = next;
                        rotations += 1;
                        progress[w].fetch_add(1, Ordering::Relaxed);
                    }
                    // Restarted and still migrating: retry. Not a wait in the test: the
                    // simulated client's back-off between retries.
                    Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Ok((status, _)) => panic!("a client lost its session: {status}"),
                    // Server down: retry the same token once it is back (the client's
                    // back-off, as above).
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            (last, rotations)
        }));
    }
    let mut kills = 0;
    for round in 0..5u64 {
        // Pseudo-random points: vary the time under load before each kill.
        let wait = 150 + (round * 7919 + 31) % 600;
        // Not a wait for anything: choosing the kill point is the experiment.
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.signal("KILL");
        server.wait(Duration::from_secs(5)).await.expect("killed");
        kills += 1;
        server = Server::start_on(&db, port, &env).await;
    }
    // Every client is served by the last server before the load stops.
    let served: Vec<u32> = progress.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    eventually(
        Duration::from_secs(30),
        "every client rotated after the last restart",
        || {
            let all = progress
                .iter()
                .zip(&served)
                .all(|(p, before)| p.load(Ordering::Relaxed) > *before);
            async move { all }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    let mut total = 0;
    for w in workers {
        let (last, rotations) = w.await.expect("no client lost its session");
        total += rotations;
        finals.push(last);
    }
    assert_eq!(kills, 5);
    assert!(total > 0, "load ran");

    // Invariant 1 and 5 on what the database holds.
    assert_eq!(
        max_live_per_family(&db).await,
        1,
        "no family with two live tokens"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM sessions").await,
        8,
        "no committed session lost"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = s.id AND NOT t.is_revoked)").await,
        0,
        "every session still has its live token"
    );
    // Every client's last received token still works (after one more restart).
    server.signal("KILL");
    server.wait(Duration::from_secs(5)).await.expect("killed");
    let server = Server::start_on(&db, port, &env).await;
    for last in finals {
        let (status, _) = refresh_mobile(&client, &server.base, &last).await.unwrap();
        assert_eq!(status, StatusCode::OK, "a client's last token was lost");
    }
    assert_eq!(max_live_per_family(&db).await, 1);
}
