//! The value types of settings that are not plain numbers, flags or text.

use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr};

use super::kinds::Invalid;

/// Deployment environment, as the original named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The default: a generated secret and the SQLite file are fine.
    Development,
    /// Like production, for a pre-production deployment.
    Staging,
    /// Refuses development shortcuts (see `Settings::check`).
    Production,
}

impl Environment {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// HMAC-SHA-256 with `SECRET_KEY` (the original's default).
    HS256,
    /// HMAC-SHA-384 with `SECRET_KEY`.
    HS384,
    /// HMAC-SHA-512 with `SECRET_KEY`.
    HS512,
    /// Ed25519 from the key ring, published in the JWKS.
    EdDSA,
    /// ECDSA P-256 from the key ring, published in the JWKS.
    ES256,
}

impl JwtAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    /// An HMAC algorithm (no key ring, no JWKS).
    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// The embedded SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
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

/// `sqlite://PATH`, `sqlite::memory:`, or a PostgreSQL URL (the original's
/// SQLAlchemy driver names accepted). An error shows the URL with its password
/// redacted.
pub(crate) fn parse_database_url(url: &str) -> Result<DatabaseTarget, Invalid> {
    let invalid = |reason: &str| Invalid::because(reason).showing(redact_url(url));
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
pub(crate) fn redact_url(url: &str) -> String {
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

/// `PUBLIC_URL`: an absolute http(s) URL without query or fragment, trailing slash
/// removed.
pub(super) fn parse_public_url(url: &str) -> Result<String, Invalid> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| Invalid::because("must start with https:// or http://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(Invalid::because("needs a host (and no user information)"));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::because(
            "must not contain a query, fragment, spaces or control characters",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A secret string whose `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used.
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
    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses count as IPv4).
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

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = parse_database_url("mysql://u:secret@h/db").unwrap_err();
        assert_eq!(err.value.as_deref(), Some("mysql://u:***@h/db"));
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
        assert_eq!(net.to_string(), "10.0.0.0/8");
    }
}
