//! The OpenAPI document is exact: Schemathesis (unmodified, pinned in
//! `tests/clients/requirements.txt`) generates requests from rotor's own
//! `/openapi.json` and checks them against the live server, as a user and as an admin.

use std::time::Duration;

use crate::support::{Backend, TestApp};

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/schemathesis.toml"
);
const INSTALL_HINT: &str = "pip install -r tests/clients/requirements.txt";

/// The checks: no 5xx, every response matches its documented schema, every request
/// the document calls valid is accepted, every request it calls invalid is refused.
const CHECKS: &str =
    "not_a_server_error,response_schema_conformance,positive_data_acceptance,negative_data_rejection";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_the_openapi_document_exact() {
    let probe = std::process::Command::new("st").arg("--version").output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs Schemathesis (`st`): {INSTALL_HINT}"
    );

    let app = TestApp::spawn_with(Backend::Sqlite, &[("RATE_LIMIT_AUTH", "off")]).await;
    let (_, user_token, _) = app.user_session().await;
    let (_, admin_token) = app.admin_session().await;
    let schema = app.url("/openapi.json");

    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("st")
            .args(["--config-file", CONFIG, "run", &schema, "--checks", CHECKS])
            .args(["--workers", "2", "--no-color"])
            .env("ROTOR_USER_TOKEN", user_token)
            .env("ROTOR_ADMIN_TOKEN", admin_token)
            .current_dir(std::env::temp_dir())
            .output()
            .expect("st runs")
    });
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("Schemathesis finishes within 4 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Schemathesis found the document inexact ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
}
