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
    support::{count, poll, Backend, TestDb},
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
/// Slowest acceptable refresh while the attack runs (they take milliseconds; the
/// margin is for a loaded 2-core CI machine running the rest of the suite).
const PROMPT: Duration = Duration::from_secs(5);

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
        // Not a wait: the pause is the attack (one byte per packet, each read alone).
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
            // Not a wait: the sampling period of the RSS readings taken while the
            // attack runs (the loop ends when the attackers have finished).
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

/// Sends `GET /health` on `s` and reads the answer; `None` when the server closed the
/// connection instead of answering (or said nothing within 5 s).
async fn health_on(s: &mut tokio::net::TcpStream) -> Option<u16> {
    s.write_all(b"GET /health HTTP/1.1\r\nHost: rotor\r\n\r\n")
        .await
        .ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(s))
        .await
        .ok()??;
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body); `None` on a close
/// or error before it is complete.
async fn read_response(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some(text);
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A connection to `addr` from the loopback address `from` (any 127.0.0.0/8 address
/// is local on Linux), so one test can be several clients.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket.connect(addr).await.expect("connect")
}

/// Polls (up to 5 s) until a new connection from `from` is served; returns it.
async fn served_soon(from: [u8; 4], addr: SocketAddr) -> tokio::net::TcpStream {
    poll(Duration::from_secs(5), || async {
        let mut s = connect_from(from, addr).await;
        (health_on(&mut s).await == Some(200)).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("a connection from {from:?} was not served within 5 s"))
}

#[tokio::test]
async fn a_stalled_or_trickled_body_gets_a_408_within_the_body_read_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    // One connection per IP: each slow client below fills its address's allowance
    // (they connect from 127.0.0.2 and .3, apart from the readiness poll's 127.0.0.1).
    let server = Server::start(
        &db,
        &[
            ("BODY_READ_TIMEOUT_SECONDS", "1"),
            ("MAX_CONNECTIONS_PER_IP", "1"),
        ],
    )
    .await;
    let addr = server_addr(&server);
    let head = "POST /v1/users HTTP/1.1\r\nHost: rotor\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n";
    let started = Instant::now();
    // One sends 10 of its 100 bytes and stalls.
    let mut stalled = connect_from([127, 0, 0, 2], addr).await;
    stalled
        .write_all(format!("{head}{{\"email\":").as_bytes())
        .await
        .unwrap();
    // The other keeps sending, a byte every 200 ms: steady, but 20 s for the body.
    let trickled = connect_from([127, 0, 0, 3], addr).await;
    let (mut trickled_rx, mut trickled_tx) = trickled.into_split();
    trickled_tx.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if trickled_tx.write_all(b" ").await.is_err() {
                break;
            }
            // Not a wait: the trickle's pace (a byte every 200 ms) is the slow client.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // Both are answered 408 (JSON) after the one-second deadline, and closed.
    let mut stalled_answer = Vec::new();
    let mut trickled_answer = Vec::new();
    let (a, b) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(6),
            stalled.read_to_end(&mut stalled_answer)
        ),
        tokio::time::timeout(
            Duration::from_secs(6),
            trickled_rx.read_to_end(&mut trickled_answer)
        ),
    );
    let elapsed = started.elapsed();
    writer.abort();
    for (closed, answer) in [(a, &stalled_answer), (b, &trickled_answer)] {
        let answer = String::from_utf8_lossy(answer);
        assert!(
            closed.is_ok(),
            "the connection was not closed after the 408: {answer:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(
            answer.contains(r#""type":"RequestTimeout""#),
            "408 without its JSON body: {answer:?}"
        );
    }
    assert!(
        elapsed >= Duration::from_millis(900),
        "answered before the deadline: {elapsed:?}"
    );
    // Their places are given back: new connections from the same addresses are served.
    let _first = served_soon([127, 0, 0, 2], addr).await;
    let _second = served_soon([127, 0, 0, 3], addr).await;
    // Nothing was created.
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 0);
}

#[tokio::test]
async fn connections_over_the_per_ip_or_total_cap_are_closed_while_others_are_served() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start(
        &db,
        &[("MAX_CONNECTIONS", "5"), ("MAX_CONNECTIONS_PER_IP", "3")],
    )
    .await;
    let addr = server_addr(&server);
    // The readiness poll's connection may still be open: wait until it is gone.
    let mut own = Vec::new();
    for _ in 0..3 {
        own.push(served_soon([127, 0, 0, 1], addr).await);
    }
    // A fourth connection from 127.0.0.1 is closed without an answer…
    let mut fourth = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(
        health_on(&mut fourth).await,
        None,
        "over MAX_CONNECTIONS_PER_IP"
    );
    // …while the three open ones keep working,
    for s in &mut own {
        assert_eq!(health_on(s).await, Some(200));
    }
    // and other addresses are served, up to MAX_CONNECTIONS in all.
    let mut b = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(health_on(&mut b).await, Some(200));
    let mut c = connect_from([127, 0, 0, 3], addr).await;
    assert_eq!(health_on(&mut c).await, Some(200));
    let mut d = connect_from([127, 0, 0, 4], addr).await;
    assert_eq!(health_on(&mut d).await, None, "over MAX_CONNECTIONS");
    // A closed connection gives its place back.
    drop(own.pop());
    let _again = served_soon([127, 0, 0, 1], addr).await;
    for s in &mut own {
        assert_eq!(health_on(s).await, Some(200));
    }
}
