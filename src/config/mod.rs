//! Settings: the original backend's environment variables plus rotor's own, read from
//! the environment (and optionally a TOML file, which the environment overrides).
//!
//! Each setting is declared once, in the `settings!` block below: variable name,
//! field, type, kind (parser and range check, display, redaction), default and doc.
//! The struct, the parsing, `rotor config check` and `--help` are derived from it
//! (`declare.rs`); cross-setting rules live in `Settings::check_invariants`. Every
//! value is validated once, here; an invalid value is an error that names the
//! variable, so `rotor config check` and start-up fail with a useful message.
//!
//! Adding a setting: one declaration below (and a row in README's configuration
//! table, which a test checks), then use `settings.the_field` where it is needed.

mod declare;
pub(crate) mod kinds;
mod types;

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use declare::settings;
use kinds::{
    choice, cidr, database_url, email, flag, int, list, log_level, optional, path, public_url,
    rate_or_off, secret, text,
};
pub(crate) use types::{canonical, parse_database_url, redact_url};
pub use types::{Cidr, DatabaseTarget, Environment, JwtAlgorithm, Secret};

use crate::{
    ratelimit::Rate,
    webhooks::{
        config::{endpoint_url, events, secrets},
        EventSelection, WebhookSecret,
    },
};

settings! {
    /// The effective configuration.
    #[derive(Debug, Clone)]
    pub struct Settings {
        /// directory for the embedded database and generated secret
        ROTOR_DATA_DIR => data_dir: PathBuf {
            kind: path(),
            default: PathBuf::from("./rotor-data"),
        }
        /// where the data lives: an SQLite file or a PostgreSQL database
        DATABASE_URL => database: DatabaseTarget {
            kind: database_url(),
            default: DatabaseTarget::Sqlite(data_dir.join("rotor.db")),
            help_default: "SQLite file rotor.db in ROTOR_DATA_DIR",
        }
        /// HMAC secret: signs HS* tokens, derives rotor's other keys
        ///
        /// `None` means "generate one and persist it in the data directory".
        SECRET_KEY => secret_key: Option<Secret> {
            kind: optional(secret(32)).unset("(generated, persisted in ROTOR_DATA_DIR)"),
            default: None,
        }
        /// access-token signing algorithm
        JWT_ALGORITHM => jwt_algorithm: JwtAlgorithm {
            kind: choice("one of HS256, HS384, HS512, EdDSA, ES256"),
            default: JwtAlgorithm::HS256,
        }
        /// deployment environment; production refuses unsafe settings
        ENVIRONMENT => environment: Environment {
            kind: choice("development, staging or production"),
            default: Environment::Development,
        }
        /// debug mode; refused in production
        DEBUG => debug: bool {
            kind: flag(),
            default: false,
        }
        /// bind address
        HOST => host: String {
            kind: text(),
            default: "127.0.0.1".into(),
        }
        /// bind port
        PORT => port: u16 {
            kind: int(0, 65535),
            default: 8000,
        }
        /// base URL clients reach rotor at: OAuth metadata and the default iss
        ///
        /// Scheme, host, optional port and path; no trailing slash: the OAuth
        /// metadata's endpoints and, without `JWT_ISSUER`, the issuer.
        PUBLIC_URL => public_url: String {
            kind: public_url(),
            default: default_public_url(&host, port, environment)?,
            help_default: "http://HOST:PORT; required in production",
        }
        /// iss claim and metadata issuer, overriding PUBLIC_URL; required in tokens when given
        JWT_ISSUER => jwt_issuer: Option<String> {
            kind: optional(text()),
            default: None,
        }
        /// aud claim set and required when given
        JWT_AUDIENCE => jwt_audience: Option<String> {
            kind: optional(text()),
            default: None,
        }
        /// key that encrypts asymmetric private keys at rest
        KEY_ENCRYPTION_KEY => key_encryption_key: Option<Secret> {
            kind: optional(secret(1)).unset("(derived from SECRET_KEY)"),
            default: None,
        }
        /// access token lifetime, in minutes
        ACCESS_TOKEN_EXPIRE_MINUTES => access_token_expire_minutes: i64 {
            kind: int(1, 24 * 60),
            default: 15,
        }
        /// refresh token lifetime in days, renewed on rotation
        REFRESH_TOKEN_EXPIRE_DAYS => refresh_token_expire_days: i64 {
            kind: int(1, 3650),
            default: 7,
        }
        /// seconds in which a just-rotated token returns its successor; 0 = strict
        REFRESH_REUSE_GRACE_SECONDS => refresh_reuse_grace_seconds: i64 {
            kind: int(0, 300),
            default: 10,
        }
        /// absolute session lifetime, in days
        SESSION_MAX_LIFETIME_DAYS => session_max_lifetime_days: i64 {
            kind: int(1, 3650),
            default: 30,
        }
        /// Path of the refresh cookie
        REFRESH_COOKIE_PATH => refresh_cookie_path: String {
            kind: text(),
            default: "/".into(),
        }
        /// the account with this email (same identity key) is made admin
        ADMIN_EMAIL => admin_email: Option<String> {
            kind: optional(email()),
            default: None,
        }
        /// make ADMIN_EMAIL admin at registration and at start; false: only the CLI does
        ///
        /// As the original did. Off, only `rotor users create-admin` makes admins.
        ADMIN_EMAIL_AUTO_PROMOTE => admin_email_auto_promote: bool {
            kind: flag(),
            default: true,
        }
        /// allowed origins
        CORS_ORIGINS => cors_origins: Vec<String> {
            kind: list(text()),
            default: vec![
                "http://localhost:3000".into(),
                "http://localhost:5173".into(),
            ],
        }
        /// send Access-Control-Allow-Credentials
        CORS_ALLOW_CREDENTIALS => cors_allow_credentials: bool {
            kind: flag(),
            default: true,
        }
        /// per-IP limit on each auth route
        RATE_LIMIT_AUTH => rate_limit_auth: Option<Rate> {
            kind: rate_or_off(),
            default: Some(Rate::per_minute(20)),
            help_default: "20/minute",
        }
        /// per-IP limit on every other route
        RATE_LIMIT_DEFAULT => rate_limit_default: Option<Rate> {
            kind: rate_or_off(),
            default: None,
        }
        /// CIDRs whose X-Forwarded-For/Forwarded is believed
        TRUSTED_PROXIES => trusted_proxies: Vec<Cidr> {
            kind: list(cidr()),
            default: Vec::new(),
        }
        /// default page size, at most PAGINATION_MAX_SIZE
        PAGINATION_DEFAULT_SIZE => pagination_default_size: u32 {
            kind: int(1, 10_000),
            default: 20,
        }
        /// largest page size
        PAGINATION_MAX_SIZE => pagination_max_size: u32 {
            kind: int(1, 10_000),
            default: 100,
        }
        /// audit events older than this many days are deleted by cleanup
        AUDIT_RETENTION_DAYS => audit_retention_days: i64 {
            kind: int(1, 36_500),
            default: 90,
        }
        /// period of the in-process cleanup job, in seconds; 0 disables it
        CLEANUP_INTERVAL_SECONDS => cleanup_interval_seconds: u64 {
            kind: int(0, 86_400 * 7),
            default: 3600,
        }
        /// rows deleted per cleanup transaction
        CLEANUP_BATCH_SIZE => cleanup_batch_size: u32 {
            kind: int(1, 100_000),
            default: 5000,
        }
        /// pause between cleanup batches, leaving the database to rotations
        CLEANUP_BATCH_PAUSE_MS => cleanup_batch_pause_ms: u64 {
            kind: int(0, 60_000),
            default: 0,
        }
        /// webhook endpoints (one URL or a comma-separated list); unset: no webhooks
        ///
        /// Only configured endpoints ever receive events; no API adds one.
        WEBHOOK_URL => webhook_urls: Vec<String> {
            kind: list(endpoint_url()),
            default: Vec::new(),
        }
        /// webhook signing secrets (whsec_…); several, space- or comma-separated, during rotation
        WEBHOOK_SECRET => webhook_secrets: Vec<WebhookSecret> {
            kind: secrets(),
            default: Vec::new(),
        }
        /// event types sent to the webhook endpoints, comma-separated, or *
        WEBHOOK_EVENTS => webhook_events: EventSelection {
            kind: events(),
            default: EventSelection::All,
        }
        /// seconds a webhook receiver has to answer an attempt
        WEBHOOK_TIMEOUT_SECONDS => webhook_timeout_seconds: u64 {
            kind: int(1, 300),
            default: 10,
        }
        /// delivered webhook deliveries older than this many days are deleted by cleanup
        WEBHOOK_RETENTION_DAYS => webhook_retention_days: i64 {
            kind: int(1, 36_500),
            default: 7,
        }
        /// password hashes computed at once
        ARGON2_MAX_CONCURRENCY => argon2_max_concurrency: usize {
            kind: int(1, 256),
            default: std::thread::available_parallelism().map_or(2, |n| n.get().min(256)),
            help_default: "the number of CPUs",
        }
        /// database pool size
        DB_MAX_CONNECTIONS => db_max_connections: Option<u32> {
            kind: optional(int(1, 1000)).unset("(default)"),
            default: None,
            help_default: "PostgreSQL 16; SQLite: 4 read-only connections",
        }
        /// largest request body accepted, in bytes
        MAX_BODY_BYTES => max_body_bytes: usize {
            kind: int(1024, 64 * 1024 * 1024),
            default: 64 * 1024,
        }
        /// requests taking longer (seconds) are answered 408
        REQUEST_TIMEOUT_SECONDS => request_timeout_seconds: u64 {
            kind: int(1, 3600),
            default: 30,
        }
        /// a request body must arrive within this many seconds, or 408
        BODY_READ_TIMEOUT_SECONDS => body_read_timeout_seconds: u64 {
            kind: int(1, 3600),
            default: 10,
        }
        /// open connections; more are closed at once
        MAX_CONNECTIONS => max_connections: usize {
            kind: int(1, 1_000_000),
            default: 1024,
        }
        /// open connections per client IP, TRUSTED_PROXIES exempt
        MAX_CONNECTIONS_PER_IP => max_connections_per_ip: usize {
            kind: int(1, 1_000_000),
            default: 64,
        }
        /// shared secret (HTTP Basic password) for /oauth/introspect
        INTROSPECTION_SECRET => introspection_secret: Option<Secret> {
            kind: optional(secret(1)),
            default: None,
        }
        /// serve Prometheus metrics
        METRICS_ENABLED => metrics_enabled: bool {
            kind: flag(),
            default: true,
        }
        /// serve /metrics on this address instead of the main port
        METRICS_BIND => metrics_bind: Option<String> {
            kind: optional(text()),
            default: None,
        }
        /// log level
        LOG_LEVEL => log_level: String {
            kind: log_level(),
            default: "info".into(),
        }
        /// JSON log lines
        LOG_JSON_FORMAT => log_json_format: bool {
            kind: flag(),
            default: false,
        }
        /// a log span (correlation id, method, path) and a debug line per request
        /// The span carries the request's correlation id, method and path into every
        /// log line of the request; the `debug` line gives each response's status. Off
        /// saves a few thousand instructions per request (BENCHMARKS.md).
        LOG_REQUESTS => log_requests: bool {
            kind: flag(),
            default: true,
        }
    }
}

/// One declared setting: its variable name and doc (first line: the `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// The environment variable (and config-file key).
    pub name: &'static str,
    /// Its documentation.
    pub doc: &'static str,
}

/// A line of `--help`'s variable table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Help {
    /// The environment variable.
    pub name: &'static str,
    /// The first line of its documentation.
    pub doc: &'static str,
    /// What a valid value looks like; `None`: any text.
    pub expected: Option<String>,
    /// The default; `None`: unset.
    pub default: Option<String>,
}

impl fmt::Display for Help {
    /// `NAME  doc (default: …) [accepted values]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<28} {}", self.name, self.doc)?;
        if let Some(default) = &self.default {
            write!(f, " (default: {default})")?;
        }
        if let Some(expected) = &self.expected {
            write!(f, " [{expected}]")?;
        }
        Ok(())
    }
}

/// The first line of a doc comment, trimmed.
pub(crate) fn first_line(doc: &'static str) -> &'static str {
    doc.lines().next().unwrap_or_default().trim()
}

/// A configuration value that could not be used; names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{name}: {reason} (got {value:?})")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// The value given (secrets are not echoed: see `kinds`).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// Values that parse but may not be used together (or not in production).
    #[error("{0}")]
    Refused(String),
    /// The TOML settings file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Name → value pairs as given (environment over TOML file).
pub(crate) struct Vars<'a>(&'a BTreeMap<String, String>);

impl Vars<'_> {
    /// The trimmed value; empty counts as unset.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

impl Settings {
    /// Reads the process environment (call `dotenvy` first to honour `.env`), layered
    /// over an optional TOML file whose keys are the same names (any case).
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut vars = match config_file {
            Some(path) => read_toml(path)?,
            None => BTreeMap::new(),
        };
        for setting in SETTINGS {
            if let Ok(v) = std::env::var(setting.name) {
                vars.insert(setting.name.to_owned(), v);
            }
        }
        Self::from_vars(&vars)
    }

    /// Builds settings from explicit name → value pairs; absent names take defaults.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let settings = Self::read_declared(&Vars(vars))?;
        settings.check_invariants()?;
        Ok(settings)
    }

    /// Rules between settings (each value was checked alone by its kind).
    fn check_invariants(&self) -> Result<(), ConfigError> {
        if self.pagination_default_size > self.pagination_max_size {
            return Err(ConfigError::Invalid {
                name: "PAGINATION_DEFAULT_SIZE",
                value: self.pagination_default_size.to_string(),
                reason: format!(
                    "must not exceed PAGINATION_MAX_SIZE ({})",
                    self.pagination_max_size
                ),
            });
        }
        // Each endpoint gets one delivery per event.
        if let Some(url) = self
            .webhook_urls
            .iter()
            .enumerate()
            .find_map(|(i, u)| self.webhook_urls[..i].contains(u).then_some(u))
        {
            return Err(ConfigError::Invalid {
                name: "WEBHOOK_URL",
                value: redact_url(url),
                reason: "lists the same endpoint twice".into(),
            });
        }
        if !self.webhook_urls.is_empty() && self.webhook_secrets.is_empty() {
            return Err(ConfigError::Refused(
                "WEBHOOK_SECRET (whsec_…) is required when WEBHOOK_URL is set".into(),
            ));
        }
        if self.environment == Environment::Production {
            if self.debug {
                return Err(ConfigError::Refused(
                    "DEBUG must be off when ENVIRONMENT=production".into(),
                ));
            }
            if self.cors_origins.iter().any(|o| o == "*") {
                return Err(ConfigError::Refused(
                    "CORS_ORIGINS must not contain * when ENVIRONMENT=production".into(),
                ));
            }
        }
        Ok(())
    }

    /// Default settings for tests and embedding: SQLite under `data_dir`, rate limits
    /// off, cleanup job off, a fixed secret.
    pub fn for_tests(data_dir: &Path) -> Self {
        let mut vars = BTreeMap::new();
        vars.insert("ROTOR_DATA_DIR".to_owned(), data_dir.display().to_string());
        vars.insert(
            "SECRET_KEY".to_owned(),
            "test-secret-key-that-is-long-enough-0123456789".to_owned(),
        );
        vars.insert("RATE_LIMIT_AUTH".to_owned(), "off".to_owned());
        vars.insert("CLEANUP_INTERVAL_SECONDS".to_owned(), "0".to_owned());
        Self::from_vars(&vars).expect("BUG: test settings are valid")
    }

    /// `ENVIRONMENT=development`.
    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }

    /// The issuer of access tokens and of the OAuth metadata: `JWT_ISSUER` when set
    /// (verbatim), else `PUBLIC_URL`.
    pub fn issuer(&self) -> &str {
        self.jwt_issuer.as_deref().unwrap_or(&self.public_url)
    }
}

/// `PUBLIC_URL` when unset: `http://HOST:PORT` — except in production, where guessing
/// (or believing a request's Host header) could publish a wrong or hostile address,
/// so it is required.
fn default_public_url(
    host: &str,
    port: u16,
    environment: Environment,
) -> Result<String, ConfigError> {
    if environment == Environment::Production {
        return Err(ConfigError::Refused(
            "PUBLIC_URL must be set when ENVIRONMENT=production (e.g. https://auth.example.com)"
                .into(),
        ));
    }
    Ok(match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}"),
        _ => format!("http://{host}:{port}"),
    })
}

fn read_toml(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    toml_vars(&text).map_err(file_err)
}

/// A TOML table of settings (keys any case) as name → value text.
fn toml_vars(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if !SETTINGS.iter().any(|s| s.name == name) {
            return Err(format!("unknown setting {key:?}"));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => return Err(format!("{key}: unsupported value type")),
        };
        out.insert(name, text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn defaults() -> Settings {
        Settings::from_vars(&BTreeMap::new()).expect("defaults are valid")
    }

    #[test]
    fn webhook_settings_are_checked_together() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let s = Settings::from_vars(&vars(&[
            (
                "WEBHOOK_URL",
                "https://a.example.com/h, http://127.0.0.1:9000/",
            ),
            ("WEBHOOK_SECRET", secret),
            ("WEBHOOK_EVENTS", "session.created,user.deleted"),
        ]))
        .unwrap();
        assert_eq!(s.webhook_urls.len(), 2);
        assert_eq!(s.webhook_secrets.len(), 1);
        assert!(!s
            .webhook_events
            .includes(crate::webhooks::EventType::UserCreated));
        assert_eq!(s.webhook_timeout_seconds, 10);
        assert_eq!(s.webhook_retention_days, 7);
        let shown = s.describe();
        assert!(
            !format!("{shown:?}").contains("MfKQ"),
            "the secret is never shown"
        );

        let refused = |pairs: &[(&str, &str)]| Settings::from_vars(&vars(pairs)).unwrap_err();
        assert!(refused(&[("WEBHOOK_URL", "https://a.example.com/h")])
            .to_string()
            .contains("WEBHOOK_SECRET"));
        let twice = refused(&[
            (
                "WEBHOOK_URL",
                "https://u:pw@a.example.com/h,https://u:pw@a.example.com/h",
            ),
            ("WEBHOOK_SECRET", secret),
        ])
        .to_string();
        assert!(
            twice.contains("same endpoint twice") && !twice.contains("pw@"),
            "{twice}"
        );
        let bad_event = refused(&[("WEBHOOK_EVENTS", "session.created,nope")]).to_string();
        assert!(bad_event.contains("WEBHOOK_EVENTS"), "{bad_event}");
        let bad_secret =
            refused(&[("WEBHOOK_SECRET", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]).to_string();
        assert!(
            bad_secret.contains("whsec_") && !bad_secret.contains("MfKQ"),
            "{bad_secret}"
        );
        assert!(refused(&[("WEBHOOK_TIMEOUT_SECONDS", "0")])
            .to_string()
            .contains("WEBHOOK_TIMEOUT_SECONDS"));
    }

    #[test]
    fn defaults_are_the_embedded_zero_config() {
        let s = defaults();
        assert_eq!(
            s.database,
            DatabaseTarget::Sqlite(PathBuf::from("./rotor-data/rotor.db"))
        );
        assert_eq!(s.port, 8000);
        assert_eq!(s.refresh_reuse_grace_seconds, 10);
        assert_eq!(s.rate_limit_auth, Some(Rate::per_minute(20)));
        assert!(s.secret_key.is_none());
        assert_eq!(s.db_max_connections, None);
    }

    #[test]
    fn every_declared_setting_is_described_and_helped_once_in_order() {
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        let described: Vec<&str> = defaults().describe().iter().map(|(n, _)| *n).collect();
        let helped: Vec<&str> = Settings::help().iter().map(|h| h.name).collect();
        assert_eq!(described, names);
        assert_eq!(helped, names);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a variable is declared twice");
        for setting in SETTINGS {
            assert!(
                !first_line(setting.doc).is_empty(),
                "{} has no doc",
                setting.name
            );
        }
    }

    /// A value no kind takes as its default: invalid for numbers, flags, choices, URLs
    /// and emails, and a different text for text settings.
    const PROBE: &str = "rotor-probe";

    #[test]
    fn every_declared_setting_is_read_under_its_name() {
        // Each variable, given alone, is either refused naming it or changes what
        // `config check` shows for it: the declaration is what is read.
        let before = defaults().describe();
        for (i, setting) in SETTINGS.iter().enumerate() {
            match Settings::from_vars(&vars(&[(setting.name, PROBE)])) {
                Err(err) => assert!(
                    err.to_string().starts_with(&format!("{}:", setting.name)),
                    "{}: {err}",
                    setting.name
                ),
                Ok(s) => assert_ne!(s.describe()[i], before[i], "{} was not read", setting.name),
            }
        }
    }

    #[test]
    fn every_declared_setting_is_accepted_in_a_toml_file_in_any_case() {
        let mut text = String::new();
        for (i, setting) in SETTINGS.iter().enumerate() {
            let key = if i % 2 == 0 {
                setting.name.to_ascii_lowercase()
            } else {
                setting.name.to_owned()
            };
            text.push_str(&format!("{key} = {PROBE:?}\n"));
        }
        let read = toml_vars(&text).expect("every declared name is a known key");
        assert_eq!(read.len(), SETTINGS.len());
        assert!(SETTINGS.iter().all(|s| read[s.name] == PROBE));
        let err = toml_vars("not_a_setting = 1").unwrap_err();
        assert!(err.contains("unknown setting"), "{err}");
    }

    #[test]
    fn every_declared_setting_is_in_the_readme_configuration_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Configuration section");
        // The first cell of each table row: `NAME` or `NAME` / `OTHER`.
        let documented: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .collect();
        for setting in SETTINGS {
            assert!(
                documented.contains(&setting.name),
                "{} is not in README's configuration table",
                setting.name
            );
        }
        for name in &documented {
            assert!(
                SETTINGS.iter().any(|s| s.name == *name),
                "README documents {name}, which is not a setting"
            );
        }
    }

    #[test]
    fn help_shows_doc_default_and_range() {
        let help = Settings::help();
        let line = |name: &str| {
            help.iter()
                .find(|h| h.name == name)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        assert!(
            line("PORT").ends_with("bind port (default: 8000) [an integer from 0 to 65535]"),
            "{}",
            line("PORT")
        );
        assert!(line("ARGON2_MAX_CONCURRENCY").contains("default: the number of CPUs"));
        assert!(line("JWT_AUDIENCE").ends_with("aud claim set and required when given"));
        assert!(line("SECRET_KEY").ends_with(
            "(default: generated, persisted in ROTOR_DATA_DIR) [at least 32 characters]"
        ));
        assert!(
            !line("SECRET_KEY").contains("`None`"),
            "only the first doc line is help"
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = Settings::from_vars(&vars(&[("PORT", "eighty")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"PORT: expected an integer from 0 to 65535 (got "eighty")"#
        );
        let err = Settings::from_vars(&vars(&[("SECRET_KEY", "short")])).unwrap_err();
        assert!(err.to_string().contains("SECRET_KEY"), "{err}");
        assert!(!err.to_string().contains("short"), "secret leaked: {err}");
        let err =
            Settings::from_vars(&vars(&[("TRUSTED_PROXIES", "10.0.0.0/8,nope")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"TRUSTED_PROXIES: each entry must be an IP address or CIDR (got "nope")"#
        );
        let err = Settings::from_vars(&vars(&[("DATABASE_URL", "mysql://u:pw@h/db")])).unwrap_err();
        assert!(!err.to_string().contains("pw"), "password leaked: {err}");
        let err = Settings::from_vars(&vars(&[("ADMIN_EMAIL", "not an email")])).unwrap_err();
        assert!(err.to_string().starts_with("ADMIN_EMAIL:"), "{err}");
        let err = Settings::from_vars(&vars(&[
            ("PAGINATION_DEFAULT_SIZE", "50"),
            ("PAGINATION_MAX_SIZE", "40"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("PAGINATION_DEFAULT_SIZE:"),
            "{err}"
        );
    }

    #[test]
    fn empty_values_are_unset_and_values_are_trimmed() {
        let s = Settings::from_vars(&vars(&[("PORT", " 9000 "), ("HOST", "")])).unwrap();
        assert_eq!(s.port, 9000);
        assert_eq!(s.host, "127.0.0.1");
    }

    #[test]
    fn describe_redacts_secrets() {
        let s = Settings::from_vars(&vars(&[
            ("SECRET_KEY", "a-secret-key-that-is-long-enough-0123456789"),
            ("INTROSPECTION_SECRET", "intro-secret"),
            ("DATABASE_URL", "postgres://u:pw@h/db"),
        ]))
        .unwrap();
        let text = format!("{:?}", s.describe());
        assert!(!text.contains("a-secret-key"), "{text}");
        assert!(!text.contains("intro-secret"), "{text}");
        assert!(!text.contains(":pw@"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        let unset = defaults().describe();
        assert!(unset.contains(&(
            "SECRET_KEY",
            "(generated, persisted in ROTOR_DATA_DIR)".to_owned()
        )));
        assert!(unset.contains(&("DB_MAX_CONNECTIONS", "(default)".to_owned())));
        assert!(unset.contains(&("INTROSPECTION_SECRET", "(unset)".to_owned())));
    }

    #[test]
    fn production_refuses_debug_and_wildcard_cors() {
        assert!(
            Settings::from_vars(&vars(&[("ENVIRONMENT", "production"), ("DEBUG", "true")]))
                .is_err()
        );
        assert!(Settings::from_vars(&vars(&[
            ("ENVIRONMENT", "production"),
            ("CORS_ORIGINS", "*")
        ]))
        .is_err());
        assert!(Settings::from_vars(&vars(&[
            ("ENVIRONMENT", "production"),
            ("PUBLIC_URL", "https://auth.example.com")
        ]))
        .is_ok());
    }

    #[test]
    fn public_url_defaults_to_the_bind_address_and_is_required_in_production() {
        let s = defaults();
        assert_eq!(s.public_url, "http://127.0.0.1:8000");
        assert_eq!(s.issuer(), "http://127.0.0.1:8000");
        let s = Settings::from_vars(&vars(&[("HOST", "::1"), ("PORT", "9000")])).unwrap();
        assert_eq!(s.public_url, "http://[::1]:9000");
        let err = Settings::from_vars(&vars(&[("ENVIRONMENT", "production")])).unwrap_err();
        assert!(err.to_string().contains("PUBLIC_URL"), "{err}");
        let s = Settings::from_vars(&vars(&[
            ("PUBLIC_URL", "https://auth.example.com/rotor/"),
            ("JWT_ISSUER", "https://issuer.example.com/"),
        ]))
        .unwrap();
        assert_eq!(s.public_url, "https://auth.example.com/rotor");
        assert_eq!(
            s.issuer(),
            "https://issuer.example.com/",
            "JWT_ISSUER verbatim"
        );
        for bad in [
            "auth.example.com",
            "ftp://x",
            "https://",
            "https://a.example/?x=1",
            "https://u:p@a.example",
        ] {
            let err = Settings::from_vars(&vars(&[("PUBLIC_URL", bad)])).unwrap_err();
            assert!(err.to_string().starts_with("PUBLIC_URL:"), "{bad}: {err}");
        }
    }

    #[test]
    fn lists_accept_json_or_commas() {
        let s = Settings::from_vars(&vars(&[(
            "CORS_ORIGINS",
            r#"["https://a.example","https://b.example"]"#,
        )]))
        .unwrap();
        assert_eq!(
            s.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        let s = Settings::from_vars(&vars(&[(
            "CORS_ORIGINS",
            "https://a.example, https://b.example",
        )]))
        .unwrap();
        assert_eq!(s.cors_origins.len(), 2);
    }
}
