//! The formats of the webhook settings: `WEBHOOK_URL` (http(s) URLs), `WEBHOOK_SECRET`
//! (`whsec_<base64>`, several during rotation) and `WEBHOOK_EVENTS` (event types or
//! `*`). Each is a `Kind` the `settings!` declaration names.

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine};

use super::event::EventType;
use crate::config::kinds::{Invalid, Kind};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// One signing secret: the bytes behind `whsec_<base64>`. Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Parses `whsec_<base64>`; the decoded key must be 24 to 64 bytes (the
    /// specification's range).
    pub(crate) fn parse(text: &str) -> Result<Self, Invalid> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| Invalid::because("each secret must start with whsec_"))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| Invalid::because("the part after whsec_ must be standard base64"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(Invalid::because(format!(
                "a secret must decode to 24 to 64 bytes (got {})",
                key.len()
            )));
        }
        Ok(Self(key))
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `WEBHOOK_SECRET`: one or more secrets separated by spaces or commas (the first signs
/// alone in steady state; during rotation every one signs). Never shown.
pub(crate) struct Secrets;

pub(crate) fn secrets() -> Secrets {
    Secrets
}

impl Kind for Secrets {
    type Value = Vec<WebhookSecret>;
    fn parse(&self, raw: &str) -> Result<Self::Value, Invalid> {
        raw.split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|s| WebhookSecret::parse(s).map_err(|e| e.showing("<redacted>")))
            .collect()
    }
    fn show(&self, value: &Self::Value) -> String {
        match value.len() {
            0 => "(unset)".into(),
            n => format!("<redacted> ({n} secret{})", if n == 1 { "" } else { "s" }),
        }
    }
    fn expected(&self) -> Option<String> {
        Some("whsec_<base64>, several separated by spaces or commas".into())
    }
    fn show_default(&self, _: &Self::Value) -> Option<String> {
        None
    }
}

/// One `WEBHOOK_URL` entry: an absolute http(s) URL without fragment or whitespace.
pub(crate) struct EndpointUrl;

pub(crate) fn endpoint_url() -> EndpointUrl {
    EndpointUrl
}

/// Checks an endpoint URL: `http://` or `https://`, a host, no fragment, no whitespace
/// or control characters.
pub(crate) fn check_url(raw: &str) -> Result<String, Invalid> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| Invalid::because("must start with https:// or http://"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(Invalid::because("needs a host"));
    }
    if raw.contains('#') || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::because(
            "must not contain a fragment, spaces or control characters",
        ));
    }
    Ok(raw.to_owned())
}

impl Kind for EndpointUrl {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, Invalid> {
        check_url(raw).map_err(|e| e.showing(crate::config::redact_url(raw)))
    }
    fn show(&self, value: &String) -> String {
        crate::config::redact_url(value)
    }
    fn expected(&self) -> Option<String> {
        Some("an http(s) URL".into())
    }
}

/// Which event types are written to the outbox (`WEBHOOK_EVENTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSelection {
    /// `*`: every type.
    All,
    /// These types only.
    Only(Vec<EventType>),
}

impl EventSelection {
    /// Whether `t` is selected.
    pub fn includes(&self, t: EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.contains(&t),
        }
    }

    /// The selected types, in [`EventType::ALL`] order.
    pub fn types(&self) -> Vec<EventType> {
        EventType::ALL
            .iter()
            .copied()
            .filter(|t| self.includes(*t))
            .collect()
    }
}

/// `WEBHOOK_EVENTS`: `*` or a comma-separated list of event types.
pub(crate) struct Events;

pub(crate) fn events() -> Events {
    Events
}

impl Kind for Events {
    type Value = EventSelection;
    fn parse(&self, raw: &str) -> Result<EventSelection, Invalid> {
        if raw == "*" {
            return Ok(EventSelection::All);
        }
        let mut types = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let t = EventType::parse(name).ok_or_else(|| {
                Invalid::because(format!(
                    "unknown event type; expected * or some of {}",
                    EventType::ALL
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .showing(name)
            })?;
            if !types.contains(&t) {
                types.push(t);
            }
        }
        if types.is_empty() {
            return Err(Invalid::because("expected * or at least one event type"));
        }
        Ok(EventSelection::Only(types))
    }
    fn show(&self, value: &EventSelection) -> String {
        match value {
            EventSelection::All => "*".into(),
            EventSelection::Only(types) => types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
    fn expected(&self) -> Option<String> {
        Some("* or a comma-separated list of event types".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_base64_and_never_shown() {
        let one = secrets()
            .parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].key().len(), 24);
        let two = secrets()
            .parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_c2Vjb25kLXNlY3JldC1rZXktMDEyMzQ1Njc4OQ==")
            .unwrap();
        assert_eq!(two.len(), 2);
        let spaced = secrets()
            .parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2Vjb25kLXNlY3JldC1rZXktMDEyMzQ1Njc4OQ==")
            .unwrap();
        assert_eq!(spaced, two);
        assert_eq!(secrets().show(&two), "<redacted> (2 secrets)");
        assert!(!format!("{:?}", two[0]).contains("MfKQ"));

        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,nope",
        ] {
            let e = secrets().parse(bad).unwrap_err();
            assert_eq!(e.value.as_deref(), Some("<redacted>"), "{bad}");
        }
    }

    #[test]
    fn event_lists_are_checked() {
        assert_eq!(events().parse("*").unwrap(), EventSelection::All);
        let some = events()
            .parse("session.created, session.refresh_reuse_detected,session.created")
            .unwrap();
        assert_eq!(
            some,
            EventSelection::Only(vec![
                EventType::SessionCreated,
                EventType::SessionRefreshReuseDetected
            ])
        );
        assert!(some.includes(EventType::SessionCreated));
        assert!(!some.includes(EventType::UserDeleted));
        let e = events()
            .parse("session.created,session.exploded")
            .unwrap_err();
        assert_eq!(e.value.as_deref(), Some("session.exploded"));
        assert!(e.reason.contains("user.password_changed"));
        assert!(events().parse(",").is_err());
        assert!(
            events().parse("webhook.test").is_err(),
            "the test event is not subscribable"
        );
        assert_eq!(EventSelection::All.types().len(), EventType::ALL.len());
    }

    #[test]
    fn urls_are_http_and_shown_without_password() {
        assert!(check_url("https://hooks.example.com/rotor?x=1").is_ok());
        assert!(check_url("http://127.0.0.1:9000/").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://a b",
            "https://x/#frag",
            "x.example.com",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let k = endpoint_url();
        assert_eq!(
            k.show(&"https://u:pw@hooks.example.com/x".into()),
            "https://u:***@hooks.example.com/x"
        );
    }
}
