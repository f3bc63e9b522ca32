//! Running the real `rotor` binary: one-shot commands and `rotor serve` processes.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{poll, TestDb};

/// `rotor` (the binary under test) with this database's settings, run in its own
/// temporary directory (so no `.env` of the repository is read).
pub fn rotor_cmd(db: &TestDb, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rotor"));
    cmd.current_dir(&db.dir)
        .env("DATABASE_URL", &db.url)
        .env("ROTOR_DATA_DIR", &db.dir)
        .env("SECRET_KEY", "integration-test-secret-key-0123456789abcdef")
        .env("RATE_LIMIT_AUTH", "off")
        .env("CLEANUP_INTERVAL_SECONDS", "0")
        // Every test client connects from 127.0.0.1, many at once: the per-IP cap
        // (default 64) has its own tests (`slow_clients`), which set it.
        .env("MAX_CONNECTIONS_PER_IP", "100000")
        .env_remove("RUST_LOG");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run(db: &TestDb, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = rotor_cmd(db, extra);
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run rotor"))
        .await
        .expect("join");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `rotor serve` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: std::path::PathBuf,
}

impl Server {
    pub async fn start(db: &TestDb, extra: &[(&str, &str)]) -> Self {
        Self::start_on(db, free_port(), extra).await
    }

    /// Starts on a given port (to restart a killed server where clients expect it).
    pub async fn start_on(db: &TestDb, port: u16, extra: &[(&str, &str)]) -> Self {
        let log = db.dir.join(format!("rotor-{port}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = rotor_cmd(db, extra);
        cmd.arg("serve")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd.spawn().expect("spawn rotor serve");
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let ready = poll(Duration::from_secs(10), || async {
            let r = client.get(format!("{}/ready", server.base)).send().await;
            r.is_ok_and(|r| r.status() == StatusCode::OK).then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "rotor serve did not become ready within 10 s; log:\n{}",
            server.log_text()
        );
        server
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| panic!("read the server log {}: {e}", self.log.display()))
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = &mut self.child;
        poll(timeout, || {
            let exited = child.try_wait().expect("try_wait");
            async move { exited }
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `POST /v1/auth/refresh-mobile` to a server at `base`: the status and the
/// successor token, if the answer carried one; `Err` when the request got no answer.
pub async fn refresh_mobile(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<(StatusCode, Option<String>), reqwest::Error> {
    let r = client
        .post(format!("{base}/v1/auth/refresh-mobile"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    Ok((status, body["refresh_token"].as_str().map(str::to_owned)))
}
