//! Slow clients against the real binary: a request body trickled one byte at a time
//! must not make the server hold memory or stop answering refreshes; a stalled body
//! is cut off with a 408 and its connection closed; connections are capped per
//! client IP and in total.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    both,
    process::Server,
    support::{Backend, TestDb},
};

/// Attacking connections, as in the review's finding.
const ATTACKERS: usize = 8;
/// The body size each attacker declares (the default `MAX_BODY_BYTES`).
const DECLARED_BODY: usize = 64 * 1024;
/// One-byte writes per attacker (6 000 × 8 = 48 000 in all, ≈ 7 s).
const WRITES: usize = 6_000;
/// Pause between two writes, so that the server reads every byte on its own.
const WRITE_PAUSE: Duration = Duration::from_millis(1);
/// Largest acceptable growth of the server's peak resident set under the attack.
const MAX_RSS_GROWTH_KIB: u64 = 32 * 1024;
/// Slowest acceptable refresh while the attack runs.
const PROMPT: Duration = Duration::from_secs(2);

/// A `VmRSS`/`VmHWM`-style field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

fn server_addr(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("server address")
}

/// Registers and logs in a user on the running binary; returns its refresh token.
async fn refresh_token_on(client: &reqwest::Client, base: &str) -> String {
    let email = rotor::testing::UserFactory::next_email();
    let r = client
        .post(format!("{base}/v1/users"))
        .json(&json!({ "email": email, "password": "TestPass123", "full_name": "Slow" }))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(format!("{base}/v1/auth/login-mobile"))
        .form(&[("username", email.as_str()), ("password", "TestPass123")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    body["refresh_token"].as_str().expect("token").to_owned()
}

/// Rotates `refresh` once; returns the successor and how long the answer took.
async fn refresh_once(client: &reqwest::Client, base: &str, refresh: &str) -> (String, Duration) {
    let start = Instant::now();
    let r = client
        .post(format!("{base}/v1/auth/refresh-mobile"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .expect("refresh");
    let took = start.elapsed();
    assert_eq!(r.status(), StatusCode::OK, "refresh during the attack");
    let body: Value = r.json().await.expect("json");
    (
        body["refresh_token"].as_str().expect("token").to_owned(),
        took,
    )
}

/// One attacker: declares a `DECLARED_BODY`-byte JSON body for `POST /v1/users` and
/// sends `WRITES` bytes of it one at a time. Returns the socket (still open) and how
/// many bytes went out.
fn trickle(addr: SocketAddr) -> (TcpStream, usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let head = format!(
        "POST /v1/users HTTP/1.1\r\nHost: rotor\r\nContent-Type: application/json\r\n\
         Content-Length: {DECLARED_BODY}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("head");
    let prefix = br#"{"email":"slow@example.com","password":"TestPass123","full_name":""#;
    let mut sent = 0;
    for i in 0..WRITES {
        let byte = prefix.get(i).copied().unwrap_or(b'a');
        if s.write_all(&[byte]).is_err() {
            break; // The server closed the connection: nothing more to hold.
        }
        sent += 1;
        std::thread::sleep(WRITE_PAUSE);
    }
    (s, sent)
}

both!(
    a_one_byte_at_a_time_body_attack_keeps_memory_bounded_and_refreshes_answering,
    |b| async move {
        let db = TestDb::new(b).await;
        // A deadline far beyond the attack, so that what is measured is how a body
        // is buffered, not the deadline that would otherwise end the attack early.
        let server = Server::start(&db, &[("BODY_READ_TIMEOUT_SECONDS", "60")]).await;
        let pid = server.child.id();
        let addr = server_addr(&server);
        let client = reqwest::Client::new();
        let mut refresh = refresh_token_on(&client, &server.base).await;
        // Warm up the refresh path so its first allocations are not counted.
        for _ in 0..5 {
            refresh = refresh_once(&client, &server.base, &refresh).await.0;
        }
        let rss_before = proc_status_kib(pid, "VmRSS");
        let hwm_before = proc_status_kib(pid, "VmHWM");

        let started = Instant::now();
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|_| std::thread::spawn(move || trickle(addr)))
            .collect();
        let mut peak_rss = rss_before;
        let mut refreshes = 0;
        let mut slowest = Duration::ZERO;
        let mut next_refresh = Instant::now();
        while !attackers.iter().all(std::thread::JoinHandle::is_finished) {
            peak_rss = peak_rss.max(proc_status_kib(pid, "VmRSS"));
            if Instant::now() >= next_refresh {
                let (next, took) = refresh_once(&client, &server.base, &refresh).await;
                assert!(took < PROMPT, "a refresh took {took:?} during the attack");
                refresh = next;
                refreshes += 1;
                slowest = slowest.max(took);
                next_refresh = Instant::now() + Duration::from_millis(100);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let attack_time = started.elapsed();
        let sockets: Vec<(TcpStream, usize)> = attackers
            .into_iter()
            .map(|h| h.join().expect("attacker"))
            .collect();
        let bytes_sent: usize = sockets.iter().map(|(_, n)| n).sum();
        // The attackers' connections are still open: the server still has their bodies.
        peak_rss = peak_rss.max(proc_status_kib(pid, "VmRSS"));
        let hwm_after = proc_status_kib(pid, "VmHWM");
        if hwm_after > hwm_before {
            peak_rss = peak_rss.max(hwm_after);
        }
        drop(sockets);
        // Still serving after the attack.
        let (_, took) = refresh_once(&client, &server.base, &refresh).await;
        assert!(took < PROMPT);
        let growth = peak_rss.saturating_sub(rss_before);
        println!(
            "slow-body attack ({b:?}): {ATTACKERS} connections, {bytes_sent} one-byte writes \
             in {attack_time:?}; RSS before {rss_before} KiB, peak {peak_rss} KiB, \
             growth {growth} KiB; {refreshes} refreshes, slowest {slowest:?}; RSS after \
             close {} KiB",
            proc_status_kib(pid, "VmRSS")
        );
        assert!(
            bytes_sent >= ATTACKERS * WRITES / 2,
            "the attack did not run (only {bytes_sent} bytes sent)"
        );
        assert!(
            refreshes >= 10,
            "only {refreshes} refreshes during the attack"
        );
        assert!(
            growth < MAX_RSS_GROWTH_KIB,
            "peak RSS grew by {growth} KiB (limit {MAX_RSS_GROWTH_KIB} KiB) under a slow-body attack"
        );
    }
);
