//! Kinds of setting: how a setting's text becomes its value (with the range check),
//! how the value is shown by `rotor config check` (secrets redacted), and what a valid
//! value looks like for `--help`. A declaration in `config/mod.rs` names one kind per
//! setting, e.g. `int(1, 3650)`, `flag()`, `optional(secret(32))`, `list(cidr())`.

use std::{fmt, marker::PhantomData, path::PathBuf, str::FromStr};

use super::{
    types::{parse_database_url, parse_public_url, Cidr, DatabaseTarget, Secret},
    ConfigError,
};
use crate::ratelimit::Rate;

/// Why a setting's text was refused; `named` makes it the `ConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct Invalid {
    pub reason: String,
    /// Shown in the error instead of the text given (a redacted secret or URL, or the
    /// one bad entry of a list); `None`: the text given.
    pub value: Option<String>,
}

impl Invalid {
    pub(crate) fn because(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            value: None,
        }
    }

    /// "expected {what}".
    pub(crate) fn expected(what: impl fmt::Display) -> Self {
        Self::because(format!("expected {what}"))
    }

    pub(crate) fn showing(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// The error naming the setting: `NAME: reason (got "value")`.
    pub(crate) fn named(self, name: &'static str, raw: &str) -> ConfigError {
        ConfigError::Invalid {
            name,
            value: self.value.unwrap_or_else(|| raw.to_owned()),
            reason: self.reason,
        }
    }
}

/// How one setting is read and shown.
pub(crate) trait Kind {
    type Value;

    /// Parses and range-checks `raw` (trimmed, never empty: an empty value is unset).
    fn parse(&self, raw: &str) -> Result<Self::Value, Invalid>;

    /// The value as `rotor config check` prints it; secrets never appear.
    fn show(&self, value: &Self::Value) -> String;

    /// What a valid value looks like, for `--help`; `None`: any text.
    fn expected(&self) -> Option<String> {
        None
    }

    /// The default as `--help` shows it; `None`: unset, nothing to show.
    fn show_default(&self, value: &Self::Value) -> Option<String> {
        Some(self.show(value))
    }
}

/// Any text.
pub(super) struct Text;

pub(super) fn text() -> Text {
    Text
}

impl Kind for Text {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, Invalid> {
        Ok(raw.to_owned())
    }
    fn show(&self, value: &String) -> String {
        value.clone()
    }
}

/// A filesystem path.
pub(super) struct Path;

pub(super) fn path() -> Path {
    Path
}

impl Kind for Path {
    type Value = PathBuf;
    fn parse(&self, raw: &str) -> Result<PathBuf, Invalid> {
        Ok(PathBuf::from(raw))
    }
    fn show(&self, value: &PathBuf) -> String {
        value.display().to_string()
    }
}

/// An integer in `min..=max`.
pub(super) struct Int<T> {
    min: T,
    max: T,
}

pub(super) fn int<T>(min: T, max: T) -> Int<T> {
    Int { min, max }
}

impl<T: FromStr + PartialOrd + fmt::Display> Kind for Int<T> {
    type Value = T;
    fn parse(&self, raw: &str) -> Result<T, Invalid> {
        raw.parse::<T>()
            .ok()
            .filter(|n| *n >= self.min && *n <= self.max)
            .ok_or_else(|| Invalid::expected(self.describe()))
    }
    fn show(&self, value: &T) -> String {
        value.to_string()
    }
    fn expected(&self) -> Option<String> {
        Some(self.describe())
    }
}

impl<T: fmt::Display> Int<T> {
    fn describe(&self) -> String {
        format!("an integer from {} to {}", self.min, self.max)
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub(super) struct Flag;

pub(super) fn flag() -> Flag {
    Flag
}

impl Kind for Flag {
    type Value = bool;
    fn parse(&self, raw: &str) -> Result<bool, Invalid> {
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(Invalid::expected("true or false")),
        }
    }
    fn show(&self, value: &bool) -> String {
        value.to_string()
    }
    fn expected(&self) -> Option<String> {
        Some("true or false".into())
    }
}

/// One of a type's names (its `FromStr`), shown by its `Display`.
pub(super) struct Choice<T> {
    expected: &'static str,
    of: PhantomData<fn() -> T>,
}

/// `expected` lists the accepted names, e.g. "development, staging or production".
pub(super) fn choice<T>(expected: &'static str) -> Choice<T> {
    Choice {
        expected,
        of: PhantomData,
    }
}

impl<T: FromStr + fmt::Display> Kind for Choice<T> {
    type Value = T;
    fn parse(&self, raw: &str) -> Result<T, Invalid> {
        raw.parse().map_err(|_| Invalid::expected(self.expected))
    }
    fn show(&self, value: &T) -> String {
        value.to_string()
    }
    fn expected(&self) -> Option<String> {
        Some(self.expected.into())
    }
}

/// A log level, in the original's names (`warning`, `critical`) or tracing's.
pub(super) struct LogLevel;

pub(super) fn log_level() -> LogLevel {
    LogLevel
}

const LOG_LEVELS: &str = "trace, debug, info, warning or error";

impl Kind for LogLevel {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, Invalid> {
        match raw.to_ascii_lowercase().as_str() {
            l @ ("trace" | "debug" | "info" | "error") => Ok(l.to_owned()),
            "warning" | "warn" => Ok("warn".to_owned()),
            "critical" => Ok("error".to_owned()),
            _ => Err(Invalid::expected(LOG_LEVELS)),
        }
    }
    fn show(&self, value: &String) -> String {
        value.clone()
    }
    fn expected(&self) -> Option<String> {
        Some(LOG_LEVELS.into())
    }
}

/// A rate such as `20/minute`, or `off`.
pub(super) struct RateOrOff;

pub(super) fn rate_or_off() -> RateOrOff {
    RateOrOff
}

const RATE: &str = "a rate such as 20/minute, or off";

impl Kind for RateOrOff {
    type Value = Option<Rate>;
    fn parse(&self, raw: &str) -> Result<Option<Rate>, Invalid> {
        if matches!(
            raw.to_ascii_lowercase().as_str(),
            "off" | "none" | "disabled" | "0"
        ) {
            return Ok(None);
        }
        raw.parse::<Rate>()
            .map(Some)
            .map_err(|()| Invalid::expected(RATE))
    }
    fn show(&self, value: &Option<Rate>) -> String {
        value.map_or_else(|| "off".to_owned(), |r| r.to_string())
    }
    fn expected(&self) -> Option<String> {
        Some(RATE.into())
    }
}

/// An IP address or CIDR.
pub(super) struct CidrKind;

pub(super) fn cidr() -> CidrKind {
    CidrKind
}

impl Kind for CidrKind {
    type Value = Cidr;
    fn parse(&self, raw: &str) -> Result<Cidr, Invalid> {
        raw.parse()
            .map_err(|()| Invalid::expected("an IP address or CIDR"))
    }
    fn show(&self, value: &Cidr) -> String {
        value.to_string()
    }
    fn expected(&self) -> Option<String> {
        Some("an IP address or CIDR".into())
    }
}

/// A list given as `a,b,c` or as a JSON array (the original's pydantic form), each
/// entry of kind `K`.
pub(super) struct List<K>(K);

pub(super) fn list<K>(entry: K) -> List<K> {
    List(entry)
}

impl<K: Kind> Kind for List<K> {
    type Value = Vec<K::Value>;
    fn parse(&self, raw: &str) -> Result<Self::Value, Invalid> {
        let entries: Vec<String> = match raw
            .starts_with('[')
            .then(|| serde_json::from_str::<Vec<String>>(raw).ok())
            .flatten()
        {
            Some(items) => items,
            None => raw
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        entries
            .into_iter()
            .map(|entry| {
                self.0.parse(&entry).map_err(|e| {
                    let reason = match self.0.expected() {
                        Some(what) => format!("each entry must be {what}"),
                        None => e.reason,
                    };
                    Invalid::because(reason).showing(e.value.unwrap_or(entry))
                })
            })
            .collect()
    }
    fn show(&self, value: &Self::Value) -> String {
        value
            .iter()
            .map(|v| self.0.show(v))
            .collect::<Vec<_>>()
            .join(",")
    }
    fn expected(&self) -> Option<String> {
        Some(match self.0.expected() {
            Some(what) => format!("a comma-separated or JSON list, each entry {what}"),
            None => "a comma-separated or JSON list".into(),
        })
    }
    fn show_default(&self, value: &Self::Value) -> Option<String> {
        Some(if value.is_empty() {
            "none".into()
        } else {
            self.show(value)
        })
    }
}

/// `DATABASE_URL`: `sqlite://PATH`, `sqlite::memory:` or `postgres://…`; shown with
/// its password redacted.
pub(super) struct DatabaseUrl;

pub(super) fn database_url() -> DatabaseUrl {
    DatabaseUrl
}

impl Kind for DatabaseUrl {
    type Value = DatabaseTarget;
    fn parse(&self, raw: &str) -> Result<DatabaseTarget, Invalid> {
        parse_database_url(raw)
    }
    fn show(&self, value: &DatabaseTarget) -> String {
        format!("{value:?}")
    }
    fn expected(&self) -> Option<String> {
        Some("sqlite://PATH, sqlite::memory: or postgres://USER:PASSWORD@HOST/DB".into())
    }
}

/// An absolute http(s) URL without query or fragment; the trailing slash is removed.
pub(super) struct PublicUrl;

pub(super) fn public_url() -> PublicUrl {
    PublicUrl
}

impl Kind for PublicUrl {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, Invalid> {
        parse_public_url(raw)
    }
    fn show(&self, value: &String) -> String {
        value.clone()
    }
    fn expected(&self) -> Option<String> {
        Some("an http(s) URL without query or fragment".into())
    }
}

/// An email address (`domain::email::check`).
pub(super) struct Email;

pub(super) fn email() -> Email {
    Email
}

impl Kind for Email {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, Invalid> {
        crate::domain::email::check(raw).map_err(Invalid::because)?;
        Ok(raw.to_owned())
    }
    fn show(&self, value: &String) -> String {
        value.clone()
    }
    fn expected(&self) -> Option<String> {
        Some("an email address".into())
    }
}

/// A secret of at least `min_chars` characters: never shown, not even in an error.
pub(super) struct SecretKind {
    min_chars: usize,
}

pub(super) fn secret(min_chars: usize) -> SecretKind {
    SecretKind { min_chars }
}

const REDACTED: &str = "<redacted>";

impl Kind for SecretKind {
    type Value = Secret;
    fn parse(&self, raw: &str) -> Result<Secret, Invalid> {
        if raw.chars().count() < self.min_chars {
            return Err(Invalid::because(format!(
                "must be at least {} characters",
                self.min_chars
            ))
            .showing(REDACTED));
        }
        Ok(Secret::new(raw))
    }
    fn show(&self, _: &Secret) -> String {
        REDACTED.into()
    }
    fn expected(&self) -> Option<String> {
        (self.min_chars > 1).then(|| format!("at least {} characters", self.min_chars))
    }
}

/// An optional setting: unset is `None`, shown as `(unset)` or the given text.
pub(super) struct Optional<K> {
    kind: K,
    unset: Option<&'static str>,
}

pub(super) fn optional<K>(kind: K) -> Optional<K> {
    Optional { kind, unset: None }
}

impl<K> Optional<K> {
    /// What `rotor config check` (and `--help`, for the default) shows when unset.
    pub(super) fn unset(self, text: &'static str) -> Self {
        Self {
            unset: Some(text),
            ..self
        }
    }
}

impl<K: Kind> Kind for Optional<K> {
    type Value = Option<K::Value>;
    fn parse(&self, raw: &str) -> Result<Self::Value, Invalid> {
        self.kind.parse(raw).map(Some)
    }
    fn show(&self, value: &Self::Value) -> String {
        match value {
            Some(v) => self.kind.show(v),
            None => self.unset.unwrap_or("(unset)").to_owned(),
        }
    }
    fn expected(&self) -> Option<String> {
        self.kind.expected()
    }
    fn show_default(&self, value: &Self::Value) -> Option<String> {
        match value {
            Some(v) => self.kind.show_default(v),
            None => self.unset.map(|text| {
                text.trim_start_matches('(')
                    .trim_end_matches(')')
                    .to_owned()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_range_checked_in_their_type() {
        let k = int::<u16>(0, 65535);
        assert_eq!(k.parse("8000"), Ok(8000));
        assert_eq!(
            k.parse("65536").unwrap_err().reason,
            "expected an integer from 0 to 65535"
        );
        assert!(int::<u64>(0, 300).parse("-1").is_err());
        assert!(int::<i64>(1, 3650).parse("0").is_err());
    }

    #[test]
    fn a_bad_list_entry_is_named() {
        let err = list(cidr()).parse("10.0.0.0/8, nope").unwrap_err();
        assert_eq!(err.reason, "each entry must be an IP address or CIDR");
        assert_eq!(err.value.as_deref(), Some("nope"));
    }

    #[test]
    fn secrets_are_never_shown() {
        let k = optional(secret(32));
        let err = k.parse("short").unwrap_err();
        assert_eq!(err.value.as_deref(), Some(REDACTED));
        let s = k.parse(&"x".repeat(32)).unwrap();
        assert_eq!(k.show(&s), REDACTED);
        assert_eq!(k.show(&None), "(unset)");
    }
}
