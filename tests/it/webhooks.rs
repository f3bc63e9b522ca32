//! Webhooks: every event arrives signed (verified by the unmodified `standardwebhooks`
//! package in `tests/clients/webhook_receiver.py`), in per-user order, never carrying a
//! secret; an event exists iff its change committed; a receiver that was down gets
//! everything; failures are retried, marked failed, listed and retried by hand; a
//! SIGKILLed server redelivers with the same ids; two processes on one PostgreSQL share
//! the outbox without duplicates.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use reqwest::StatusCode;
use rotor::{
    storage::change::{Change, Write},
    webhooks::{EventType, OutboxEvent},
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    both,
    process::{free_port, run, Server},
    support::{body, count, eventually, poll, text, Backend, TestApp, TestDb},
};

/// The receiver verifies with NEW; rotor signs with OLD and NEW (a rotation).
const OLD: &str = "whsec_cm90b3Itd2ViaG9vay10ZXN0LXNlY3JldC1vbGQtMDE=";
const NEW: &str = "whsec_cm90b3Itd2ViaG9vay10ZXN0LXNlY3JldC1uZXctMDI=";
const PASSWORD: &str = rotor::testing::UserFactory::PASSWORD;
const INSTALL_HINT: &str = "pip install -r tests/clients/requirements.txt";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Record {
    id: String,
    event_type: String,
    user: Option<String>,
    verified: bool,
    body: String,
}

/// `tests/clients/webhook_receiver.py` on 127.0.0.1.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    /// Starts on `port` (0: any), verifying with `secret`, each answer `delay` late.
    fn start(dir: &Path, secret: &str, port: u16, delay: f64) -> Self {
        let out = dir.join("webhooks.jsonl");
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/webhook_receiver.py"
            ))
            .args(["--secret", secret, "--out"])
            .arg(&out)
            .args(["--port", &port.to_string(), "--delay", &delay.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is required ({e}); then: {INSTALL_HINT}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("receiver output");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the receiver did not start (needs standardwebhooks: {INSTALL_HINT}): {line:?}"
                )
            });
        Self { child, port, out }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn records(&self) -> Vec<Record> {
        let Ok(text) = std::fs::read_to_string(&self.out) else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("a JSON line");
                Record {
                    id: v["id"].as_str().unwrap_or_default().to_owned(),
                    event_type: v["type"].as_str().unwrap_or_default().to_owned(),
                    user: v["user"].as_str().map(str::to_owned),
                    verified: v["verified"].as_bool().unwrap_or(false),
                    body: v["body"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings that send every event to `url`, signed with OLD and NEW.
fn hooks(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOK_URL", url.to_owned()),
        ("WEBHOOK_SECRET", format!("{OLD} {NEW}")),
        ("WEBHOOK_TIMEOUT_SECONDS", "10".to_owned()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An app with webhooks to `url` and its delivery worker running.
async fn app_with_hooks(backend: Backend, url: &str) -> (TestApp, tokio::task::JoinHandle<()>) {
    let settings = hooks(url);
    let app = TestApp::spawn_with(backend, &as_refs(&settings)).await;
    let worker = tokio::spawn(rotor::webhooks::worker::run(app.rotor.clone()));
    (app, worker)
}

/// The outbox as committed: (webhook-id, event type, user id, body), in commit order.
async fn outbox(db: &TestDb) -> Vec<(String, String, Option<String>, String)> {
    let sql = match db.backend {
        Backend::Sqlite => {
            "SELECT COALESCE(group_concat(line, char(10)), '') FROM (
               SELECT json_object('id', id, 'type', event_type, 'user', user_id, 'body', payload) AS line
               FROM webhook_events ORDER BY seq)"
        }
        Backend::Postgres => {
            "SELECT COALESCE(string_agg(json_build_object('id', id, 'type', event_type, 'user', user_id,
                                                          'body', payload)::text, E'\\n' ORDER BY seq), '')
             FROM webhook_events"
        }
    };
    text(db, sql)
        .await
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            let id = Uuid::parse_str(v["id"].as_str().expect("id")).expect("uuid");
            (
                format!("msg_{}", id.simple()),
                v["type"].as_str().expect("type").to_owned(),
                v["user"].as_str().map(str::to_owned),
                v["body"].as_str().expect("body").to_owned(),
            )
        })
        .collect()
}

async fn pending(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'",
    )
    .await
}

/// Every receiver record verified, each committed event received at least once with its
/// committed body, and, per user, first receipts in commit order.
fn check_received(committed: &[(String, String, Option<String>, String)], got: &[Record]) {
    assert!(
        got.iter().all(|r| r.verified),
        "an unverified request: {got:?}"
    );
    let bodies: HashMap<&str, &str> = committed
        .iter()
        .map(|(id, _, _, b)| (id.as_str(), b.as_str()))
        .collect();
    for r in got {
        assert_eq!(
            bodies.get(r.id.as_str()).copied(),
            Some(r.body.as_str()),
            "a request whose id is not a committed event or whose body changed: {r:?}"
        );
    }
    let ids: HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    for (id, t, _, _) in committed {
        assert!(ids.contains(id.as_str()), "{t} {id} was never delivered");
    }
    let mut by_user_committed: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, _, user, _) in committed {
        if let Some(u) = user {
            by_user_committed.entry(u).or_default().push(id);
        }
    }
    let mut by_user_got: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut seen = HashSet::new();
    for r in got {
        if let (Some(u), true) = (&r.user, seen.insert(r.id.as_str())) {
            by_user_got.entry(u).or_default().push(&r.id);
        }
    }
    for (user, ids) in by_user_committed {
        assert_eq!(
            by_user_got.get(user),
            Some(&ids),
            "user {user}: events not received in commit order"
        );
    }
}

both!(
    every_event_arrives_signed_in_order_and_carries_no_secret,
    |backend| async move {
        let dir = tempdir();
        let receiver = Receiver::start(&dir, NEW, 0, 0.0);
        let (app, worker) = app_with_hooks(backend, &receiver.url()).await;

        let (uid, email) = app.registered_user().await;
        let (_, r1) = app.login_mobile(&email, PASSWORD).await;
        let (_, r2) = app.login_mobile(&email, PASSWORD).await;
        let rotated = app.post_refresh_mobile(&r1).await;
        assert_eq!(rotated.status(), StatusCode::OK);
        let r1b = body(rotated).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        tokio::time::sleep(Duration::from_millis(5)).await;
        app.clock.advance(chrono::Duration::seconds(60));
        assert_eq!(
            app.post_refresh_mobile(&r1).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let (a3, r3) = app.login_mobile(&email, PASSWORD).await;
        assert_eq!(
            app.post_auth("/v1/auth/logout-others", &a3).await.status(),
            StatusCode::OK
        );
        let new_password = "N3w-Passw0rd-for-hooks";
        let changed = app
            .client
            .post(app.url("/v1/auth/change-password"))
            .bearer_auth(&a3)
            .json(&json!({"current_password": PASSWORD, "new_password": new_password}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::NO_CONTENT);
        let (_, admin) = app.admin_session().await;
        for patch in [json!({"full_name": "Renamed"}), json!({"is_active": false})] {
            let r = app
                .client
                .patch(app.url(&format!("/v1/admin/users/{uid}")))
                .bearer_auth(&admin)
                .json(&patch)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let deleted = app
            .client
            .delete(app.url(&format!("/v1/admin/users/{uid}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

        let committed = outbox(&app.db).await;
        let mine: Vec<&str> = committed
            .iter()
            .filter(|(_, _, u, _)| u.as_deref() == Some(uid.as_str()))
            .map(|(_, t, _, _)| t.as_str())
            .collect();
        assert_eq!(
            mine,
            [
                "user.created",
                "session.created",
                "session.created",
                "session.refresh_reuse_detected",
                "session.created",
                "session.revoked",
                "user.password_changed",
                "admin.user_updated",
                "user.deactivated",
                "admin.user_updated",
                "user.deleted",
            ]
        );
        drain(&[&app], Duration::from_secs(30)).await;
        let got = receiver.records();
        check_received(&committed, &got);

        // The payloads: the standard shape, what a mail to the user needs, no secret.
        let of = |t: &str| -> Vec<Value> {
            got.iter()
                .filter(|r| r.event_type == t && r.user.as_deref() == Some(uid.as_str()))
                .map(|r| serde_json::from_str(&r.body).unwrap())
                .collect()
        };
        let created = of("session.created");
        assert_eq!(created[0]["data"]["email"], email.as_str());
        assert_eq!(created[0]["data"]["new_device"], true);
        assert_eq!(created[1]["data"]["new_device"], false);
        assert_eq!(created[1]["data"]["new_ip"], false);
        assert!(created[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(of("session.revoked")[0]["data"]["reason"], "logout_others");
        assert_eq!(of("session.revoked")[0]["data"]["sessions_ended"], 1);
        assert_eq!(of("user.deleted")[0]["data"]["email"], email.as_str());
        assert_eq!(
            of("admin.user_updated")[1]["data"]["changed"],
            json!(["is_active"])
        );
        let hash = text(
            &app.db,
            "SELECT COALESCE(max(token_hash), '') FROM refresh_tokens",
        )
        .await;
        for r in &got {
            for secret in [
                PASSWORD,
                new_password,
                &r1,
                &r1b,
                &r2,
                &r3,
                &a3,
                &admin,
                "$argon2",
                &hash,
            ] {
                assert!(
                    !r.body.contains(secret),
                    "{} carries a secret",
                    r.event_type
                );
            }
            assert!(!r.body.contains("password\""), "{}", r.body);
            assert!(!r.body.contains("token"), "{}", r.body);
        }

        // The admin API lists the endpoint (no secret) and the deliveries with attempts.
        let endpoints = body(app.get_auth("/v1/admin/webhooks/endpoints", &admin).await).await;
        assert_eq!(endpoints["items"][0]["url"], receiver.url());
        assert!(!endpoints.to_string().contains("whsec"));
        let page = body(
            app.get_auth(
                "/v1/admin/webhooks/deliveries?size=100&status=delivered",
                &admin,
            )
            .await,
        )
        .await;
        assert_eq!(page["total"], committed.len());
        assert_eq!(page["items"][0]["history"][0]["status_code"], 204);
        let metrics = reqwest::get(app.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains(&format!(
            "rotor_webhook_attempts_total{{result=\"ok\"}} {}",
            got.len()
        )));

        // Cleanup removes delivered rows after WEBHOOK_RETENTION_DAYS (7).
        app.clock.advance(chrono::Duration::days(8));
        let report = app.rotor.cleanup(None).await.unwrap().unwrap();
        assert_eq!(report.webhook_deliveries, committed.len() as u64);
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM webhook_events").await,
            0
        );
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM webhook_attempts").await,
            0
        );
        worker.abort();
    }
);

both!(
    a_change_that_does_not_commit_leaves_no_event,
    |backend| async move {
        let dir = tempdir();
        let receiver = Receiver::start(&dir, NEW, 0, 0.0);
        let settings = hooks(&receiver.url());
        let app = TestApp::spawn_with(backend, &as_refs(&settings)).await;
        let (_, email) = app.registered_user().await;
        let before = count(&app.db, "SELECT count(*) FROM webhook_events").await;
        // A failure after every write, then before the event: nothing of either lands.
        for at_end in [true, false] {
            app.rotor
                .set_change_hook(Some(Arc::new(move |c: &mut Change| {
                    if at_end {
                        c.writes.push(Write::Abort);
                    } else if let Some(i) =
                        c.writes.iter().position(|w| matches!(w, Write::Webhook(_)))
                    {
                        c.writes.insert(i, Write::Abort);
                    }
                })));
            let r = app.post_login_mobile(&email, PASSWORD, &[]).await;
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                count(&app.db, "SELECT count(*) FROM webhook_events").await,
                before
            );
            assert_eq!(count(&app.db, "SELECT count(*) FROM sessions").await, 0);
        }
        app.rotor.set_change_hook(None);
        app.login_mobile(&email, PASSWORD).await;
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM webhook_events").await,
            before + 1
        );
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM webhook_deliveries").await,
            before + 1
        );
        // No webhook configured: no event, whatever happens.
        let quiet = TestApp::spawn(backend).await;
        quiet.user_session().await;
        assert_eq!(
            count(&quiet.db, "SELECT count(*) FROM webhook_events").await,
            0
        );
        // WEBHOOK_EVENTS filters what is written.
        let mut only = settings.clone();
        only.push(("WEBHOOK_EVENTS", "user.deleted".into()));
        let filtered = TestApp::spawn_with(backend, &as_refs(&only)).await;
        filtered.user_session().await;
        assert_eq!(
            count(&filtered.db, "SELECT count(*) FROM webhook_events").await,
            0
        );
    }
);

both!(
    a_receiver_that_was_down_gets_everything_in_per_user_order,
    |backend| async move {
        let dir = tempdir();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/hooks");
        let (app, worker) = app_with_hooks(backend, &url).await;
        // Three users, several events each, while nothing listens.
        let mut users = Vec::new();
        for _ in 0..3 {
            let (_, email) = app.registered_user().await;
            users.push(email);
        }
        for email in &users {
            let (a, _) = app.login_mobile(email, PASSWORD).await;
            app.login_mobile(email, PASSWORD).await;
            assert_eq!(
                app.post_auth("/v1/auth/logout-all", &a).await.status(),
                StatusCode::OK
            );
        }
        let committed = outbox(&app.db).await;
        assert_eq!(committed.len(), 12);
        eventually(Duration::from_secs(10), "attempts failing", || async {
            count(
                &app.db,
                "SELECT count(*) FROM webhook_attempts WHERE status_code IS NULL",
            )
            .await
                >= 3
        })
        .await;
        // Only the first event of each user was tried: the others wait behind it.
        assert_eq!(
            count(
                &app.db,
                "SELECT count(DISTINCT event_seq) FROM webhook_attempts"
            )
            .await,
            3
        );
        let receiver = Receiver::start(&dir, NEW, port, 0.0);
        // Past every retry's due time (the schedule runs on rotor's clock).
        for _ in 0..20 {
            app.clock.advance(chrono::Duration::minutes(30));
            if poll(Duration::from_millis(500), || async {
                (pending(&app.db).await == 0).then_some(())
            })
            .await
            .is_some()
            {
                break;
            }
        }
        assert_eq!(
            pending(&app.db).await,
            0,
            "everything delivered once the receiver is back"
        );
        let got = receiver.records();
        check_received(&committed, &got);
        assert_eq!(got.len(), committed.len(), "no duplicates without a crash");
        worker.abort();
    }
);

both!(
    failed_deliveries_are_marked_listed_counted_and_retried_by_hand,
    |backend| async move {
        let dir = tempdir();
        // A receiver with another secret answers 400 to every request.
        let mut wrong = Receiver::start(
            &dir,
            "whsec_d3Jvbmctc2VjcmV0LWtleS0wMTIzNDU2Nzg5YWI=",
            0,
            0.0,
        );
        let port = wrong.port;
        let (app, worker) = app_with_hooks(backend, &wrong.url()).await;
        let (uid, _) = app.registered_user().await;
        let event = Uuid::parse_str(
            &text(
                &app.db,
                &format!("SELECT CAST(id AS TEXT) FROM webhook_events WHERE event_type = 'user.created' AND CAST(user_id AS TEXT) = '{uid}'"),
            )
            .await,
        )
        .unwrap();
        // Each step passes the next retry's due time; past 24 hours the delivery fails.
        let failed = || async {
            count(
                &app.db,
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'",
            )
            .await
        };
        eventually(Duration::from_secs(10), "the first attempt", || async {
            count(&app.db, "SELECT count(*) FROM webhook_attempts").await > 0
        })
        .await;
        for _ in 0..40 {
            if failed().await > 0 {
                break;
            }
            let attempts = count(&app.db, "SELECT count(*) FROM webhook_attempts").await;
            app.clock.advance(chrono::Duration::hours(3));
            let _ = poll(Duration::from_secs(2), || async {
                (count(&app.db, "SELECT count(*) FROM webhook_attempts").await > attempts)
                    .then_some(())
            })
            .await;
        }
        assert!(
            failed().await >= 1,
            "the delivery is marked failed after 24 hours"
        );
        // (Logged in now: access tokens live 15 minutes of rotor's clock.)
        let (_, admin) = app.admin_session().await;
        let attempts = count(&app.db, "SELECT count(*) FROM webhook_attempts").await;
        assert!(attempts >= 8, "retried many times: {attempts}");
        let listed = body(
            app.get_auth("/v1/admin/webhooks/deliveries?status=failed", &admin)
                .await,
        )
        .await;
        let item = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["event_id"] == event.to_string())
            .expect("the failed delivery is listed")
            .clone();
        assert_eq!(item["status"], "failed");
        assert_eq!(item["history"][0]["status_code"], 400);
        assert_eq!(item["history"][0]["error"], "HTTP 400 Bad Request");
        let history = item["history"].as_array().unwrap();
        let at = |i: usize| {
            chrono::DateTime::parse_from_rfc3339(history[i]["at"].as_str().unwrap()).unwrap()
        };
        assert!(
            at(history.len() - 1) - at(0) >= chrono::Duration::hours(24),
            "retried for at least 24 hours: {history:?}"
        );
        let metrics = reqwest::get(app.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("rotor_webhook_deliveries_failed_total "),
            "{metrics}"
        );
        assert!(!metrics.contains("rotor_webhook_deliveries_failed_total 0\n"));
        let endpoints = body(app.get_auth("/v1/admin/webhooks/endpoints", &admin).await).await;
        assert!(endpoints["items"][0]["failed"].as_u64().unwrap() >= 1);

        // Retried by hand once the receiver has the right secret: delivered, same id.
        wrong.stop();
        let receiver = Receiver::start(&dir, NEW, port, 0.0);
        let retry = |id: String| {
            let app = &app;
            let admin = admin.clone();
            async move {
                app.client
                    .post(app.url(&format!("/v1/admin/webhooks/deliveries/{id}/retry")))
                    .bearer_auth(admin)
                    .send()
                    .await
                    .unwrap()
            }
        };
        let r = retry(event.to_string()).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(body(r).await["retried"], 1);
        assert_eq!(
            retry(Uuid::now_v7().to_string()).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            retry("nope".into()).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let id = format!("msg_{}", event.simple());
        eventually(
            Duration::from_secs(10),
            "the retried event delivered",
            || async { receiver.records().iter().any(|r| r.id == id && r.verified) },
        )
        .await;
        // The failed attempts carried the same webhook-id.
        let wrong_ids: Vec<Record> = receiver
            .records()
            .into_iter()
            .filter(|r| r.id == id)
            .collect();
        assert!(wrong_ids.len() >= 9, "same id on every attempt");
        assert!(wrong_ids.iter().all(|r| r.event_type == "user.created"));
        worker.abort();
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotor_webhooks_test_sends_a_verified_test_event() {
    let dir = tempdir();
    let receiver = Receiver::start(&dir, NEW, 0, 0.0);
    let db = TestDb::new(Backend::Sqlite).await;
    let settings = hooks(&receiver.url());
    let out = run(&db, &["webhooks", "test"], &as_refs(&settings)).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("ok "), "{}", out.stdout);
    let got = receiver.records();
    assert_eq!(got.len(), 1);
    assert!(got[0].verified);
    assert_eq!(got[0].event_type, "webhook.test");
    assert!(out.stdout.contains(&got[0].id));
    // Nothing listening: the command says so and fails.
    let mut down = hooks(&format!("http://127.0.0.1:{}/", free_port()));
    down.push(("WEBHOOK_TIMEOUT_SECONDS", "1".into()));
    let out = run(&db, &["webhooks", "test"], &as_refs(&down)).await;
    assert!(!out.ok);
    assert!(out.stdout.starts_with("failed "), "{}", out.stdout);
    // A malformed secret is refused at start, without showing it.
    let out = run(
        &db,
        &["config", "check"],
        &[
            ("WEBHOOK_URL", "http://127.0.0.1:1/"),
            ("WEBHOOK_SECRET", "whsec_short"),
        ],
    )
    .await;
    assert!(!out.ok);
    assert!(out.stderr.contains("WEBHOOK_SECRET"), "{}", out.stderr);
    assert!(!out.stderr.contains("whsec_short"), "{}", out.stderr);
}

both!(
    sigkill_with_deliveries_in_flight_loses_no_committed_event,
    |backend| async move {
        let dir = tempdir();
        let db = TestDb::new(backend).await;
        // A slow receiver: deliveries are in flight when the server dies.
        let slow = Receiver::start(&dir, NEW, 0, 1.5);
        let port = slow.port;
        let settings = hooks(&slow.url());
        let mut env = as_refs(&settings);
        env.push(("WEBHOOK_TIMEOUT_SECONDS", "5"));
        let server = Server::start(&db, &env).await;
        let client = reqwest::Client::new();
        let base = server.base.clone();
        // Logins keep coming while the server is killed: some commit, some do not.
        let mut users = Vec::new();
        for i in 0..6 {
            let email = format!("kill-{i}-{}@example.com", Uuid::now_v7().simple());
            let r = client
                .post(format!("{base}/v1/users"))
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            users.push(email);
        }
        let load = {
            let (client, base, users) = (client.clone(), base.clone(), users.clone());
            tokio::spawn(async move {
                for round in 0.. {
                    for email in &users {
                        let r = client
                            .post(format!("{base}/v1/auth/login-mobile"))
                            .form(&[("username", email.as_str()), ("password", PASSWORD)])
                            .send()
                            .await;
                        if r.is_err() {
                            return round;
                        }
                    }
                }
                unreachable!()
            })
        };
        eventually(Duration::from_secs(15), "deliveries in flight", || async {
            !slow.records().is_empty()
        })
        .await;
        eventually(Duration::from_secs(15), "logins committed", || async {
            count(&db, "SELECT count(*) FROM sessions").await >= 4
        })
        .await;
        server.signal("KILL");
        load.await.unwrap();
        drop(server);
        let mut slow = slow;
        slow.stop();
        let before_restart = slow.records().len();

        // Every session has its event and every event its session: nothing committed
        // half, nothing announced that did not commit.
        let committed = outbox(&db).await;
        let sessions_with_event = committed
            .iter()
            .filter(|(_, t, _, _)| t == "session.created")
            .count() as i64;
        assert_eq!(
            count(&db, "SELECT count(*) FROM sessions").await,
            sessions_with_event
        );
        for (_, t, _, body) in &committed {
            if t == "session.created" {
                let v: Value = serde_json::from_str(body).unwrap();
                let sid = v["data"]["session_id"].as_str().unwrap().to_owned();
                assert_eq!(
                    count(
                        &db,
                        &format!("SELECT count(*) FROM sessions WHERE CAST(id AS TEXT) = '{sid}'")
                    )
                    .await,
                    1
                );
            }
        }
        assert!(pending(&db).await > 0, "the kill left deliveries pending");

        // Restarted, with the receiver back and fast: everything arrives.
        let receiver = Receiver::start(&dir, NEW, port, 0.0);
        let _server = Server::start(&db, &env).await;
        eventually(
            Duration::from_secs(40),
            "every committed event delivered",
            || async { pending(&db).await == 0 },
        )
        .await;
        let got = receiver.records();
        check_received(&committed, &got);
        let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        eprintln!(
            "{} events, {} requests ({} before the restart), {} redelivered",
            committed.len(),
            got.len(),
            before_restart,
            ids.len() - unique.len()
        );
    }
);

both!(
    a_slow_receiver_does_not_hold_up_refreshes,
    |backend| async move {
        let dir = tempdir();
        // Every request takes 5 s to answer.
        let receiver = Receiver::start(&dir, NEW, 0, 5.0);
        let (app, worker) = app_with_hooks(backend, &receiver.url()).await;
        write_events(&app, &receiver.url(), 64, 64).await;
        eventually(Duration::from_secs(10), "32 requests in flight", || async {
            receiver.records().len() >= 32
        })
        .await;
        let (_, email) = app.registered_user().await;
        let (_, mut refresh) = app.login_mobile(&email, PASSWORD).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..50 {
            let started = std::time::Instant::now();
            let r = app.post_refresh_mobile(&refresh).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(r.status(), StatusCode::OK);
            refresh = body(r).await["refresh_token"].as_str().unwrap().to_owned();
        }
        assert!(
            slowest < Duration::from_secs(1),
            "a refresh waited on the receiver: {slowest:?}"
        );
        worker.abort();
    }
);

/// Events written straight into the outbox: `n` events over `users` users, as `n`
/// committed changes.
async fn write_events(app: &TestApp, url: &str, n: usize, users: usize) {
    let users: Vec<Uuid> = (0..users).map(|_| Uuid::now_v7()).collect();
    let endpoints: Arc<[String]> = Arc::from(vec![url.to_owned()]);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let store = app.store().clone();
        let (users, endpoints, now) = (users.clone(), endpoints.clone(), app.now());
        tasks.spawn(async move {
            for i in (chunk..n).step_by(8) {
                let mut e = OutboxEvent::new(EventType::SessionRevoked, endpoints.clone());
                e.user_id = Some(users[i % users.len()]);
                e.reason = Some("logout");
                let change = Change::new(now).then(Write::Webhook(Box::new(e)));
                store.apply(&change).await.expect("apply");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("writer");
    }
}

/// Two processes on one PostgreSQL deliver the same outbox: no event twice in the steady
/// state, per-user order kept. `ROTOR_WEBHOOK_EVENTS` sets the count (default 1000;
/// BENCHMARKS.md reports 10,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_postgres_share_delivery_without_duplicates() {
    let n: usize = std::env::var("ROTOR_WEBHOOK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempdir();
    let receiver = Receiver::start(&dir, NEW, 0, 0.0);
    let settings = hooks(&receiver.url());
    let a = TestApp::spawn_with(Backend::Postgres, &as_refs(&settings)).await;
    let b = a.spawn_beside(&as_refs(&settings)).await;
    write_events(&a, &receiver.url(), n, 200).await;
    let started = std::time::Instant::now();
    let wa = tokio::spawn(rotor::webhooks::worker::run(a.rotor.clone()));
    let wb = tokio::spawn(rotor::webhooks::worker::run(b.rotor.clone()));
    drain(&[&a, &b], Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    wa.abort();
    wb.abort();
    let committed = outbox(&a.db).await;
    assert_eq!(committed.len(), n);
    let got = receiver.records();
    check_received(&committed, &got);
    let duplicates = got.len() - n;
    // A request sent twice is allowed only after an attempt of it failed (a timeout on a
    // loaded machine): the claims themselves never hand one delivery to both processes.
    let mut seen = HashSet::new();
    let twice: Vec<&str> = got
        .iter()
        .filter(|r| !seen.insert(r.id.as_str()))
        .map(|r| r.id.as_str())
        .collect();
    let retried = text(
        &a.db,
        "SELECT COALESCE(string_agg(DISTINCT 'msg_' || replace(e.id::text, '-', ''), ' '), '')
         FROM webhook_attempts t JOIN webhook_events e ON e.seq = t.event_seq
         WHERE t.error IS NOT NULL",
    )
    .await;
    let failed_attempts: HashSet<&str> = retried.split_whitespace().collect();
    let by_a = rotor::testing::webhooks_delivered(&a.rotor);
    let by_b = rotor::testing::webhooks_delivered(&b.rotor);
    eprintln!(
        "{n} events, {} requests, {duplicates} duplicates ({} events had a failed attempt), \
         process A {by_a}, process B {by_b}, {:.1} s",
        got.len(),
        failed_attempts.len(),
        elapsed.as_secs_f64()
    );
    for id in &twice {
        assert!(
            failed_attempts.contains(id),
            "{id} was sent twice without a failed attempt: both processes claimed it"
        );
    }
    if failed_attempts.is_empty() {
        assert_eq!(duplicates, 0);
    }
    assert!(
        by_a > 0 && by_b > 0,
        "both processes delivered: {by_a} / {by_b}"
    );
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("rotor-hooks-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// Waits until no delivery is pending. The apps' clocks are manual: while deliveries
/// stay pending, they are moved 10 s every half second, so a retry (after an attempt
/// that failed because the machine is loaded) comes due.
async fn drain(apps: &[&TestApp], timeout: Duration) {
    let started = std::time::Instant::now();
    loop {
        if poll(Duration::from_millis(500), || async {
            (pending(&apps[0].db).await == 0).then_some(())
        })
        .await
        .is_some()
        {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "deliveries still pending after {timeout:?}"
        );
        for app in apps {
            app.clock.advance(chrono::Duration::seconds(10));
        }
    }
}
