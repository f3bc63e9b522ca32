//! The refresh cookie: `refresh_token`, HttpOnly, SameSite=Strict, Secure unless
//! `ENVIRONMENT=development`, `Max-Age` the token's remaining lifetime, Path from
//! `REFRESH_COOKIE_PATH`.

use axum::http::{header, HeaderMap, HeaderValue};

use crate::config::Settings;

pub(crate) const NAME: &str = "refresh_token";

/// The `Set-Cookie` value that stores `token` for `max_age` seconds.
pub(crate) fn set(settings: &Settings, token: &str, max_age: i64) -> HeaderValue {
    build(settings, token, max_age.max(0))
}

/// The `Set-Cookie` value that clears the cookie (same name and path, `Max-Age=0`).
pub(crate) fn clear(settings: &Settings) -> HeaderValue {
    build(settings, "", 0)
}

fn build(settings: &Settings, value: &str, max_age: i64) -> HeaderValue {
    let secure = if settings.is_development() {
        ""
    } else {
        "; Secure"
    };
    let path = sanitize_path(&settings.refresh_cookie_path);
    let cookie = format!(
        "{NAME}={value}; HttpOnly; Max-Age={max_age}; Path={path}; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&cookie).expect("BUG: cookie built from base64url and a sanitized path")
}

fn sanitize_path(path: &str) -> String {
    let p: String = path
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ';')
        .collect();
    if p.starts_with('/') {
        p
    } else {
        "/".to_owned()
    }
}

/// The `refresh_token` cookie's value, if sent.
pub fn read(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == NAME)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_refresh_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; refresh_token=abc-_; b=2".parse().unwrap(),
        );
        assert_eq!(read(&h).as_deref(), Some("abc-_"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "refresh_token=".parse().unwrap());
        assert_eq!(read(&h), None);
    }

    #[test]
    fn attributes_follow_the_environment() {
        let dir = std::env::temp_dir();
        let mut s = Settings::for_tests(&dir);
        let dev = set(&s, "tok", 604800);
        assert_eq!(
            dev,
            "refresh_token=tok; HttpOnly; Max-Age=604800; Path=/; SameSite=Strict"
        );
        s.environment = crate::config::Environment::Production;
        s.refresh_cookie_path = "/v1/auth".into();
        let prod = clear(&s);
        assert_eq!(
            prod,
            "refresh_token=; HttpOnly; Max-Age=0; Path=/v1/auth; SameSite=Strict; Secure"
        );
    }
}
