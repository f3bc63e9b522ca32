//! Settings: the original backend's environment variables plus rotor's own, read from
//! the environment (and optionally a TOML file, which the environment overrides).
//!
//! Every value is validated once, here; an invalid value is an error that names the
//! variable, so `rotor config check` and start-up fail with a useful message.

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use crate::ratelimit::Rate;

/// Every variable rotor reads, with a one-line description (shown by `--help` and
/// `rotor config check`).
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "DATABASE_URL",
        "sqlite://PATH or postgres://…; default: SQLite file in ROTOR_DATA_DIR",
    ),
    (
        "ROTOR_DATA_DIR",
        "directory for the embedded database and generated secret (./rotor-data)",
    ),
    (
        "SECRET_KEY",
        "HMAC secret, at least 32 chars; generated and persisted when unset",
    ),
    (
        "JWT_ALGORITHM",
        "HS256 | HS384 | HS512 | EdDSA | ES256 (HS256)",
    ),
    (
        "PUBLIC_URL",
        "base URL clients reach rotor at; OAuth metadata and the default iss (http://HOST:PORT; required in production)",
    ),
    (
        "JWT_ISSUER",
        "iss claim and metadata issuer, overriding PUBLIC_URL; required in tokens when given",
    ),
    ("JWT_AUDIENCE", "aud claim set and required when given"),
    (
        "KEY_ENCRYPTION_KEY",
        "key that encrypts asymmetric private keys at rest (default: derived from SECRET_KEY)",
    ),
    ("ACCESS_TOKEN_EXPIRE_MINUTES", "access token lifetime (15)"),
    (
        "REFRESH_TOKEN_EXPIRE_DAYS",
        "refresh token lifetime, renewed on rotation (7)",
    ),
    (
        "REFRESH_REUSE_GRACE_SECONDS",
        "window in which a just-rotated token returns its successor (10; 0 = strict)",
    ),
    (
        "SESSION_MAX_LIFETIME_DAYS",
        "absolute session lifetime (30)",
    ),
    ("REFRESH_COOKIE_PATH", "Path of the refresh cookie (/)"),
    (
        "ADMIN_EMAIL",
        "the account with this email (same identity key) is made admin",
    ),
    (
        "ADMIN_EMAIL_AUTO_PROMOTE",
        "make ADMIN_EMAIL admin at registration and at start; false: only the CLI does (true)",
    ),
    (
        "ENVIRONMENT",
        "development | staging | production (development)",
    ),
    ("DEBUG", "debug mode; refused in production (false)"),
    ("HOST", "bind address (127.0.0.1)"),
    ("PORT", "bind port (8000)"),
    (
        "CORS_ORIGINS",
        "allowed origins, comma-separated or a JSON list",
    ),
    (
        "CORS_ALLOW_CREDENTIALS",
        "send Access-Control-Allow-Credentials (true)",
    ),
    (
        "RATE_LIMIT_AUTH",
        "per-IP limit on each auth route, e.g. 20/minute, or off (20/minute)",
    ),
    (
        "RATE_LIMIT_DEFAULT",
        "per-IP limit on every other route, or off (off)",
    ),
    (
        "TRUSTED_PROXIES",
        "CIDRs whose X-Forwarded-For/Forwarded is believed (none)",
    ),
    ("PAGINATION_DEFAULT_SIZE", "default page size (20)"),
    ("PAGINATION_MAX_SIZE", "largest page size (100)"),
    (
        "AUDIT_RETENTION_DAYS",
        "audit events older than this are deleted by cleanup (90)",
    ),
    (
        "CLEANUP_INTERVAL_SECONDS",
        "period of the in-process cleanup job; 0 disables it (3600)",
    ),
    (
        "CLEANUP_BATCH_SIZE",
        "rows deleted per cleanup transaction (5000)",
    ),
    (
        "CLEANUP_BATCH_PAUSE_MS",
        "pause between cleanup batches, leaving the database to rotations (0)",
    ),
    (
        "ARGON2_MAX_CONCURRENCY",
        "password hashes computed at once (number of CPUs)",
    ),
    (
        "DB_MAX_CONNECTIONS",
        "database pool size (PostgreSQL 16; SQLite: read-only connections, 4)",
    ),
    ("MAX_BODY_BYTES", "largest request body accepted (65536)"),
    (
        "REQUEST_TIMEOUT_SECONDS",
        "requests taking longer are answered 408 (30)",
    ),
    (
        "BODY_READ_TIMEOUT_SECONDS",
        "a request body must arrive within this, or 408 (10)",
    ),
    (
        "MAX_CONNECTIONS",
        "open connections; more are closed at once (1024)",
    ),
    (
        "MAX_CONNECTIONS_PER_IP",
        "open connections per client IP, TRUSTED_PROXIES exempt (64)",
    ),
    (
        "INTROSPECTION_SECRET",
        "shared secret (HTTP Basic password) for /oauth/introspect",
    ),
    ("METRICS_ENABLED", "serve Prometheus metrics (true)"),
    (
        "METRICS_BIND",
        "serve /metrics on this address instead of the main port",
    ),
    ("LOG_LEVEL", "trace | debug | info | warning | error (info)"),
    ("LOG_JSON_FORMAT", "JSON log lines (false)"),
];

/// Deployment environment, as the original named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "staging" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            _ => Err(()),
        }
    }
}

/// Access-token signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    EdDSA,
    ES256,
}

impl JwtAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

impl FromStr for JwtAlgorithm {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "HS256" => Ok(Self::HS256),
            "HS384" => Ok(Self::HS384),
            "HS512" => Ok(Self::HS512),
            "EdDSA" | "Ed25519" => Ok(Self::EdDSA),
            "ES256" => Ok(Self::ES256),
            _ => Err(()),
        }
    }
}

/// Where the data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Postgres(url) => write!(f, "{}", redact_url(url)),
        }
    }
}

/// A secret string whose `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().map_err(|_| ())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| ())?,
            None => max,
        };
        if prefix > max {
            return Err(());
        }
        Ok(Self { addr, prefix })
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseTarget,
    pub data_dir: PathBuf,
    /// `None` means "generate one and persist it in the data directory".
    pub secret_key: Option<Secret>,
    pub jwt_algorithm: JwtAlgorithm,
    pub jwt_issuer: Option<String>,
    /// Where clients reach rotor (scheme, host, optional port and path; no trailing
    /// slash): the OAuth metadata's endpoints and, without `JWT_ISSUER`, the issuer.
    pub public_url: String,
    pub jwt_audience: Option<String>,
    pub key_encryption_key: Option<Secret>,
    pub access_token_expire_minutes: i64,
    pub refresh_token_expire_days: i64,
    pub refresh_reuse_grace_seconds: i64,
    pub session_max_lifetime_days: i64,
    pub refresh_cookie_path: String,
    pub admin_email: Option<String>,
    /// Whether registering `ADMIN_EMAIL` (and starting with it registered) makes the
    /// account an admin, as the original did. Off, only `rotor users create-admin`
    /// makes admins.
    pub admin_email_auto_promote: bool,
    pub environment: Environment,
    pub debug: bool,
    pub host: String,
    pub port: u16,
    pub cors_origins: Vec<String>,
    pub cors_allow_credentials: bool,
    pub rate_limit_auth: Option<Rate>,
    pub rate_limit_default: Option<Rate>,
    pub trusted_proxies: Vec<Cidr>,
    pub pagination_default_size: u32,
    pub pagination_max_size: u32,
    pub audit_retention_days: i64,
    pub cleanup_interval_seconds: u64,
    pub cleanup_batch_size: u32,
    pub cleanup_batch_pause_ms: u64,
    pub argon2_max_concurrency: usize,
    pub db_max_connections: Option<u32>,
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    pub body_read_timeout_seconds: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub introspection_secret: Option<Secret>,
    pub metrics_enabled: bool,
    pub metrics_bind: Option<String>,
    pub log_level: String,
    pub log_json_format: bool,
}

/// A configuration value that could not be used; names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {reason} (got {value:?})")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

impl Settings {
    /// Reads the process environment (call `dotenvy` first to honour `.env`), layered
    /// over an optional TOML file whose keys are the same names (any case).
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut vars = match config_file {
            Some(path) => read_toml(path)?,
            None => BTreeMap::new(),
        };
        for (name, _) in VARIABLES {
            if let Ok(v) = std::env::var(name) {
                vars.insert((*name).to_owned(), v);
            }
        }
        Self::from_vars(&vars)
    }

    /// Builds settings from explicit name → value pairs; absent names take defaults.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let r = Reader(vars);
        let data_dir = PathBuf::from(
            r.string("ROTOR_DATA_DIR")
                .unwrap_or_else(|| "./rotor-data".into()),
        );
        let database = match r.string("DATABASE_URL") {
            None => DatabaseTarget::Sqlite(data_dir.join("rotor.db")),
            Some(url) => parse_database_url(&url)?,
        };
        let secret_key = r.string("SECRET_KEY").map(Secret::new);
        if let Some(k) = &secret_key {
            if k.expose().chars().count() < 32 {
                return Err(ConfigError::Invalid {
                    name: "SECRET_KEY",
                    value: "<redacted>".into(),
                    reason: "must be at least 32 characters".into(),
                });
            }
        }
        let environment = r.parse_with(
            "ENVIRONMENT",
            Environment::Development,
            "development, staging or production",
            |s| s.parse().ok(),
        )?;
        let settings = Self {
            database,
            secret_key,
            jwt_algorithm: r.parse_with(
                "JWT_ALGORITHM",
                JwtAlgorithm::HS256,
                "one of HS256, HS384, HS512, EdDSA, ES256",
                |s| s.parse().ok(),
            )?,
            jwt_issuer: r.string("JWT_ISSUER"),
            public_url: public_url(&r, environment)?,
            jwt_audience: r.string("JWT_AUDIENCE"),
            key_encryption_key: r.string("KEY_ENCRYPTION_KEY").map(Secret::new),
            access_token_expire_minutes: r.int("ACCESS_TOKEN_EXPIRE_MINUTES", 15, 1, 24 * 60)?,
            refresh_token_expire_days: r.int("REFRESH_TOKEN_EXPIRE_DAYS", 7, 1, 3650)?,
            refresh_reuse_grace_seconds: r.int("REFRESH_REUSE_GRACE_SECONDS", 10, 0, 300)?,
            session_max_lifetime_days: r.int("SESSION_MAX_LIFETIME_DAYS", 30, 1, 3650)?,
            refresh_cookie_path: r
                .string("REFRESH_COOKIE_PATH")
                .unwrap_or_else(|| "/".into()),
            admin_email: r.string("ADMIN_EMAIL"),
            admin_email_auto_promote: r.boolean("ADMIN_EMAIL_AUTO_PROMOTE", true)?,
            environment,
            debug: r.boolean("DEBUG", false)?,
            host: r.string("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: r.int("PORT", 8000, 0, 65535)? as u16,
            cors_origins: r.list("CORS_ORIGINS").unwrap_or_else(|| {
                vec![
                    "http://localhost:3000".into(),
                    "http://localhost:5173".into(),
                ]
            }),
            cors_allow_credentials: r.boolean("CORS_ALLOW_CREDENTIALS", true)?,
            rate_limit_auth: r.rate("RATE_LIMIT_AUTH", Some(Rate::per_minute(20)))?,
            rate_limit_default: r.rate("RATE_LIMIT_DEFAULT", None)?,
            trusted_proxies: match r.list("TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(items) => items
                    .iter()
                    .map(|c| {
                        c.parse().map_err(|()| ConfigError::Invalid {
                            name: "TRUSTED_PROXIES",
                            value: c.clone(),
                            reason: "each entry must be an IP address or CIDR".into(),
                        })
                    })
                    .collect::<Result<_, _>>()?,
            },
            pagination_default_size: r.int("PAGINATION_DEFAULT_SIZE", 20, 1, 10_000)? as u32,
            pagination_max_size: r.int("PAGINATION_MAX_SIZE", 100, 1, 10_000)? as u32,
            audit_retention_days: r.int("AUDIT_RETENTION_DAYS", 90, 1, 36500)?,
            cleanup_interval_seconds: r.int("CLEANUP_INTERVAL_SECONDS", 3600, 0, 86400 * 7)? as u64,
            cleanup_batch_size: r.int("CLEANUP_BATCH_SIZE", 5000, 1, 100_000)? as u32,
            cleanup_batch_pause_ms: r.int("CLEANUP_BATCH_PAUSE_MS", 0, 0, 60_000)? as u64,
            argon2_max_concurrency: r.int(
                "ARGON2_MAX_CONCURRENCY",
                std::thread::available_parallelism().map_or(2, |n| n.get()) as i64,
                1,
                256,
            )? as usize,
            db_max_connections: match r.string("DB_MAX_CONNECTIONS") {
                None => None,
                Some(_) => Some(r.int("DB_MAX_CONNECTIONS", 16, 1, 1000)? as u32),
            },
            max_body_bytes: r.int("MAX_BODY_BYTES", 64 * 1024, 1024, 64 * 1024 * 1024)? as usize,
            request_timeout_seconds: r.int("REQUEST_TIMEOUT_SECONDS", 30, 1, 3600)? as u64,
            body_read_timeout_seconds: r.int("BODY_READ_TIMEOUT_SECONDS", 10, 1, 3600)? as u64,
            max_connections: r.int("MAX_CONNECTIONS", 1024, 1, 1_000_000)? as usize,
            max_connections_per_ip: r.int("MAX_CONNECTIONS_PER_IP", 64, 1, 1_000_000)? as usize,
            introspection_secret: r.string("INTROSPECTION_SECRET").map(Secret::new),
            metrics_enabled: r.boolean("METRICS_ENABLED", true)?,
            metrics_bind: r.string("METRICS_BIND"),
            log_level: r.parse_with(
                "LOG_LEVEL",
                "info".to_owned(),
                "trace, debug, info, warning or error",
                |s| match s.to_ascii_lowercase().as_str() {
                    l @ ("trace" | "debug" | "info" | "error") => Some(l.to_owned()),
                    "warning" | "warn" => Some("warn".to_owned()),
                    "critical" => Some("error".to_owned()),
                    _ => None,
                },
            )?,
            log_json_format: r.boolean("LOG_JSON_FORMAT", false)?,
            data_dir,
        };
        settings.check_invariants()?;
        Ok(settings)
    }

    fn check_invariants(&self) -> Result<(), ConfigError> {
        if let Some(admin) = &self.admin_email {
            crate::domain::email::check(admin).map_err(|reason| ConfigError::Invalid {
                name: "ADMIN_EMAIL",
                value: admin.clone(),
                reason: reason.to_owned(),
            })?;
        }
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

    /// `(name, value)` pairs of the effective configuration, secrets redacted.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "(unset)".into());
        let secret = |s: &Option<Secret>| match s {
            Some(_) => "<redacted>".to_owned(),
            None => "(unset)".to_owned(),
        };
        let rate = |r: &Option<Rate>| r.map_or_else(|| "off".to_owned(), |r| r.to_string());
        vec![
            ("DATABASE_URL", format!("{:?}", self.database)),
            ("ROTOR_DATA_DIR", self.data_dir.display().to_string()),
            (
                "SECRET_KEY",
                match &self.secret_key {
                    Some(_) => "<redacted>".into(),
                    None => "(generated, persisted in ROTOR_DATA_DIR)".into(),
                },
            ),
            ("JWT_ALGORITHM", self.jwt_algorithm.as_str().into()),
            ("PUBLIC_URL", self.public_url.clone()),
            ("JWT_ISSUER", opt(&self.jwt_issuer)),
            ("JWT_AUDIENCE", opt(&self.jwt_audience)),
            ("KEY_ENCRYPTION_KEY", secret(&self.key_encryption_key)),
            (
                "ACCESS_TOKEN_EXPIRE_MINUTES",
                self.access_token_expire_minutes.to_string(),
            ),
            (
                "REFRESH_TOKEN_EXPIRE_DAYS",
                self.refresh_token_expire_days.to_string(),
            ),
            (
                "REFRESH_REUSE_GRACE_SECONDS",
                self.refresh_reuse_grace_seconds.to_string(),
            ),
            (
                "SESSION_MAX_LIFETIME_DAYS",
                self.session_max_lifetime_days.to_string(),
            ),
            ("REFRESH_COOKIE_PATH", self.refresh_cookie_path.clone()),
            ("ADMIN_EMAIL", opt(&self.admin_email)),
            (
                "ADMIN_EMAIL_AUTO_PROMOTE",
                self.admin_email_auto_promote.to_string(),
            ),
            ("ENVIRONMENT", self.environment.as_str().into()),
            ("DEBUG", self.debug.to_string()),
            ("HOST", self.host.clone()),
            ("PORT", self.port.to_string()),
            ("CORS_ORIGINS", self.cors_origins.join(",")),
            (
                "CORS_ALLOW_CREDENTIALS",
                self.cors_allow_credentials.to_string(),
            ),
            ("RATE_LIMIT_AUTH", rate(&self.rate_limit_auth)),
            ("RATE_LIMIT_DEFAULT", rate(&self.rate_limit_default)),
            (
                "TRUSTED_PROXIES",
                self.trusted_proxies
                    .iter()
                    .map(|c| format!("{}/{}", c.addr, c.prefix))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "PAGINATION_DEFAULT_SIZE",
                self.pagination_default_size.to_string(),
            ),
            ("PAGINATION_MAX_SIZE", self.pagination_max_size.to_string()),
            (
                "AUDIT_RETENTION_DAYS",
                self.audit_retention_days.to_string(),
            ),
            (
                "CLEANUP_INTERVAL_SECONDS",
                self.cleanup_interval_seconds.to_string(),
            ),
            ("CLEANUP_BATCH_SIZE", self.cleanup_batch_size.to_string()),
            (
                "CLEANUP_BATCH_PAUSE_MS",
                self.cleanup_batch_pause_ms.to_string(),
            ),
            (
                "ARGON2_MAX_CONCURRENCY",
                self.argon2_max_concurrency.to_string(),
            ),
            (
                "DB_MAX_CONNECTIONS",
                self.db_max_connections
                    .map_or_else(|| "(default)".into(), |n| n.to_string()),
            ),
            ("MAX_BODY_BYTES", self.max_body_bytes.to_string()),
            (
                "REQUEST_TIMEOUT_SECONDS",
                self.request_timeout_seconds.to_string(),
            ),
            (
                "BODY_READ_TIMEOUT_SECONDS",
                self.body_read_timeout_seconds.to_string(),
            ),
            ("MAX_CONNECTIONS", self.max_connections.to_string()),
            (
                "MAX_CONNECTIONS_PER_IP",
                self.max_connections_per_ip.to_string(),
            ),
            ("INTROSPECTION_SECRET", secret(&self.introspection_secret)),
            ("METRICS_ENABLED", self.metrics_enabled.to_string()),
            ("METRICS_BIND", opt(&self.metrics_bind)),
            ("LOG_LEVEL", self.log_level.clone()),
            ("LOG_JSON_FORMAT", self.log_json_format.to_string()),
        ]
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

    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }

    /// The issuer of access tokens and of the OAuth metadata: `JWT_ISSUER` when set
    /// (verbatim), else `PUBLIC_URL`.
    pub fn issuer(&self) -> &str {
        self.jwt_issuer.as_deref().unwrap_or(&self.public_url)
    }
}

/// `PUBLIC_URL`: an absolute http(s) URL without query or fragment, trailing slash
/// removed. Unset: `http://HOST:PORT` — except in production, where guessing (or
/// believing a request's Host header) could publish a wrong or hostile address, so it
/// is required.
fn public_url(r: &Reader<'_>, environment: Environment) -> Result<String, ConfigError> {
    let Some(url) = r.string("PUBLIC_URL") else {
        if environment == Environment::Production {
            return Err(ConfigError::Refused(
                "PUBLIC_URL must be set when ENVIRONMENT=production (e.g. https://auth.example.com)"
                    .into(),
            ));
        }
        let host = r.string("HOST").unwrap_or_else(|| "127.0.0.1".into());
        let host = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => host,
        };
        let port = r.int("PORT", 8000, 0, 65535)?;
        return Ok(format!("http://{host}:{port}"));
    };
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "PUBLIC_URL",
        value: url.clone(),
        reason: reason.into(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with https:// or http://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid("needs a host (and no user information)"));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "must not contain a query, fragment, spaces or control characters",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

pub fn parse_database_url(url: &str) -> Result<DatabaseTarget, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "DATABASE_URL",
        value: redact_url(url),
        reason: reason.into(),
    };
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or_default();
        let path = if path == "/:memory:" {
            ":memory:"
        } else {
            path
        };
        if path.is_empty() {
            return Err(invalid(
                "sqlite URL needs a file path, e.g. sqlite://./rotor.db",
            ));
        }
        return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
    }
    for prefix in ["postgres://", "postgresql://", "postgresql+asyncpg://"] {
        if let Some(rest) = url.strip_prefix(prefix) {
            // The original's SQLAlchemy URLs name the driver; sqlx does not.
            return Ok(DatabaseTarget::Postgres(format!("postgres://{rest}")));
        }
    }
    Err(invalid("must start with sqlite:// or postgres://"))
}

/// Replaces the password in a database URL with `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn read_toml(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if !VARIABLES.iter().any(|(n, _)| *n == name) {
            return Err(file_err(format!("unknown setting {key:?}")));
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
            _ => return Err(file_err(format!("{key}: unsupported value type"))),
        };
        out.insert(name, text);
    }
    Ok(out)
}

struct Reader<'a>(&'a BTreeMap<String, String>);

impl Reader<'_> {
    fn string(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse_with<T>(
        &self,
        name: &'static str,
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.string(name) {
            None => Ok(default),
            Some(v) => parse(&v).ok_or_else(|| ConfigError::Invalid {
                name,
                value: v,
                reason: format!("expected {expected}"),
            }),
        }
    }

    fn int(
        &self,
        name: &'static str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        self.parse_with(
            name,
            default,
            &format!("an integer from {min} to {max}"),
            |s| s.parse::<i64>().ok().filter(|n| (min..=max).contains(n)),
        )
    }

    fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parse_with(name, default, "true or false", |s| {
            match s.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => None,
            }
        })
    }

    fn rate(&self, name: &'static str, default: Option<Rate>) -> Result<Option<Rate>, ConfigError> {
        self.parse_with(name, default, "a rate such as 20/minute, or off", |s| {
            if matches!(
                s.to_ascii_lowercase().as_str(),
                "off" | "none" | "disabled" | "0"
            ) {
                Some(None)
            } else {
                s.parse::<Rate>().ok().map(Some)
            }
        })
    }

    /// A list given as `a,b,c` or as a JSON array (the original's pydantic form).
    fn list(&self, name: &str) -> Option<Vec<String>> {
        let raw = self.string(name)?;
        if raw.starts_with('[') {
            if let Ok(items) = serde_json::from_str::<Vec<String>>(&raw) {
                return Some(items);
            }
        }
        Some(
            raw.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
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

    #[test]
    fn defaults_are_the_embedded_zero_config() {
        let s = Settings::from_vars(&BTreeMap::new()).expect("defaults are valid");
        assert_eq!(
            s.database,
            DatabaseTarget::Sqlite(PathBuf::from("./rotor-data/rotor.db"))
        );
        assert_eq!(s.port, 8000);
        assert_eq!(s.refresh_reuse_grace_seconds, 10);
        assert_eq!(s.rate_limit_auth, Some(Rate::per_minute(20)));
        assert!(s.secret_key.is_none());
    }

    #[test]
    fn every_setting_is_read_from_the_environment_and_documented() {
        // `load` reads only the names in VARIABLES; a setting missing there would be
        // silently ignored.
        let s = Settings::from_vars(&BTreeMap::new()).expect("defaults are valid");
        for (name, _) in s.describe() {
            assert!(
                VARIABLES.iter().any(|(n, _)| *n == name),
                "{name} is not in VARIABLES"
            );
        }
        assert_eq!(s.describe().len(), VARIABLES.len());
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = Settings::from_vars(&vars(&[("PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().starts_with("PORT:"), "{err}");
        let err = Settings::from_vars(&vars(&[("SECRET_KEY", "short")])).unwrap_err();
        assert!(err.to_string().contains("SECRET_KEY"), "{err}");
        assert!(!err.to_string().contains("short"), "secret leaked: {err}");
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
        let s = Settings::from_vars(&BTreeMap::new()).unwrap();
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
    fn database_urls() {
        assert_eq!(
            parse_database_url("sqlite:///tmp/x.db").unwrap(),
            DatabaseTarget::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            parse_database_url("postgresql+asyncpg://u:p@h/db").unwrap(),
            DatabaseTarget::Postgres("postgres://u:p@h/db".into())
        );
        assert!(parse_database_url("mysql://x").is_err());
        assert_eq!(
            parse_database_url("sqlite::memory:").unwrap(),
            DatabaseTarget::Sqlite(":memory:".into())
        );
        assert_eq!(
            parse_database_url("sqlite://:memory:").unwrap(),
            DatabaseTarget::Sqlite(":memory:".into())
        );
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }

    #[test]
    fn cidrs_match() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
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
