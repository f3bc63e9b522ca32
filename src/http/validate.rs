//! Request input: bodies (JSON or form), query strings, and field checks that answer
//! 422 in the original's pydantic shape (`loc`, `msg`, `type`), collecting every
//! problem rather than stopping at the first.

use serde_json::{Map, Value};

use crate::error::{Error, FieldError};

/// The 422 message for a string holding a NUL character.
pub const NUL_MESSAGE: &str = "Value error, String must not contain NUL (\\u0000) characters";

/// Fields of one input (`body` or `query`), with the errors found so far.
#[derive(Debug)]
pub struct Input {
    location: &'static str,
    fields: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Input {
    /// A JSON object body. Malformed JSON or a non-object is a 422 at once.
    pub fn json(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid(&["body"], "Field required", "missing"));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(fields)) => Ok(Self {
                location: "body",
                fields,
                errors: Vec::new(),
            }),
            Ok(_) => Err(Error::invalid(
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )),
            Err(e) => Err(Error::Validation(vec![FieldError {
                loc: vec!["body".into(), e.column().to_string()],
                msg: "JSON decode error".into(),
                kind: "json_invalid",
            }])),
        }
    }

    /// An `application/x-www-form-urlencoded` body; every value is a string. The first
    /// occurrence of a repeated key wins.
    pub fn form(bytes: &[u8]) -> Self {
        Self::pairs("body", bytes)
    }

    /// A query string.
    pub fn query(query: Option<&str>) -> Self {
        Self::pairs("query", query.unwrap_or("").as_bytes())
    }

    fn pairs(location: &'static str, bytes: &[u8]) -> Self {
        let mut fields = Map::new();
        for (k, v) in form_urlencoded_pairs(bytes) {
            fields.entry(k).or_insert(Value::String(v));
        }
        Self {
            location,
            fields,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, field: &str, msg: impl Into<String>, kind: &'static str) {
        self.errors.push(FieldError {
            loc: vec![self.location.to_owned(), field.to_owned()],
            msg: msg.into(),
            kind,
        });
    }

    /// A required string of `min..=max` characters.
    pub fn string(&mut self, name: &str, min: usize, max: usize) -> Option<String> {
        match self.fields.get(name).cloned() {
            None | Some(Value::Null) if !self.fields.contains_key(name) => {
                self.error(name, "Field required", "missing");
                None
            }
            Some(Value::String(s)) => self.check_len(name, s, min, max),
            _ => {
                self.error(name, "Input should be a valid string", "string_type");
                None
            }
        }
    }

    /// An optional string: absent → `None`; `null` → `Some(None)`.
    pub fn nullable_string(&mut self, name: &str, max: usize) -> Option<Option<String>> {
        match self.fields.get(name).cloned() {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => self.check_len(name, s, 0, max).map(Some),
            Some(_) => {
                self.error(name, "Input should be a valid string", "string_type");
                None
            }
        }
    }

    /// An optional non-null string (absent or null → `None`).
    pub fn optional_string(&mut self, name: &str, max: usize) -> Option<String> {
        self.nullable_string(name, max).flatten()
    }

    fn check_len(&mut self, name: &str, s: String, min: usize, max: usize) -> Option<String> {
        // Every string field passes here, so this is the one place NUL is refused:
        // PostgreSQL cannot store it in text (a 500), SQLite would store it.
        if s.contains('\0') {
            self.error(name, NUL_MESSAGE, "value_error");
            return None;
        }
        let n = s.chars().count();
        if n < min {
            let unit = if min == 1 { "character" } else { "characters" };
            self.error(
                name,
                format!("String should have at least {min} {unit}"),
                "string_too_short",
            );
            None
        } else if n > max {
            let unit = if max == 1 { "character" } else { "characters" };
            self.error(
                name,
                format!("String should have at most {max} {unit}"),
                "string_too_long",
            );
            None
        } else {
            Some(s)
        }
    }

    /// An optional boolean (JSON `true`/`false`; absent → `None`).
    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.fields.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => {
                    self.error(
                        name,
                        "Input should be a valid boolean, unable to interpret input",
                        "bool_parsing",
                    );
                    None
                }
            },
            Some(_) => {
                self.error(name, "Input should be a valid boolean", "bool_type");
                None
            }
        }
    }

    /// An optional integer in `min..=max` (absent → `default`).
    pub fn integer(&mut self, name: &str, default: i64, min: i64, max: i64) -> i64 {
        let value = match self.fields.get(name) {
            None | Some(Value::Null) => return default,
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match value {
            None => {
                self.error(
                    name,
                    "Input should be a valid integer, unable to parse string as an integer",
                    "int_parsing",
                );
                default
            }
            Some(v) if v < min => {
                self.error(
                    name,
                    format!("Input should be greater than or equal to {min}"),
                    "greater_than_equal",
                );
                default
            }
            Some(v) if v > max => {
                self.error(
                    name,
                    format!("Input should be less than or equal to {max}"),
                    "less_than_equal",
                );
                default
            }
            Some(v) => v,
        }
    }

    /// A required email address.
    pub fn email(&mut self, name: &str) -> Option<String> {
        let s = self.string(name, 1, usize::MAX)?;
        self.check_email(name, s)
    }

    /// An optional email address.
    pub fn optional_email(&mut self, name: &str) -> Option<String> {
        let s = self.optional_string(name, usize::MAX)?;
        self.check_email(name, s)
    }

    fn check_email(&mut self, name: &str, s: String) -> Option<String> {
        match crate::domain::email::check(&s) {
            Ok(()) => Some(s),
            Err(reason) => {
                self.error(name, reason, "value_error");
                None
            }
        }
    }

    /// Registration passwords: 8..128 with an uppercase letter and a digit.
    pub fn strong_password(&mut self, name: &str) -> Option<String> {
        let p = self.string(name, 8, 128)?;
        if !p.chars().any(char::is_uppercase) {
            self.error(
                name,
                "Value error, Password must contain at least one uppercase letter",
                "value_error",
            );
            return None;
        }
        if !p.chars().any(|c| c.is_ascii_digit()) {
            self.error(
                name,
                "Value error, Password must contain at least one digit",
                "value_error",
            );
            return None;
        }
        Some(p)
    }

    /// One of a fixed set of strings.
    pub fn choice(&mut self, name: &str, allowed: &[&str]) -> Option<String> {
        let s = self.optional_string(name, 64)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            let list = allowed
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" or ");
            self.error(name, format!("Input should be {list}"), "enum");
            None
        }
    }

    /// A required UUID.
    pub fn uuid(&mut self, name: &str) -> Option<uuid::Uuid> {
        let s = self.optional_string(name, 64)?;
        match uuid::Uuid::parse_str(&s) {
            Ok(u) => Some(u),
            Err(_) => {
                self.error(name, "Input should be a valid UUID", "uuid_parsing");
                None
            }
        }
    }

    /// Whether a check failed with this message (for callers that answer in another
    /// shape than the 422, such as the OAuth endpoints).
    pub fn has_error_message(&self, msg: &str) -> bool {
        self.errors.iter().any(|e| e.msg == msg)
    }

    /// The raw value of a field, if present.
    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// `Ok` when every check passed, else the 422 with all problems.
    pub fn finish(self) -> Result<(), Error> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.errors))
        }
    }
}

/// A path parameter that must be a UUID (422 otherwise, as FastAPI answers).
pub fn path_uuid(name: &str, value: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::parse_str(value).map_err(|_| {
        Error::invalid(
            &["path", name],
            "Input should be a valid UUID",
            "uuid_parsing",
        )
    })
}

fn form_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_else(|_| {
        // Invalid UTF-8 or encoding: decode leniently pair by pair.
        String::from_utf8_lossy(bytes)
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("{k}={v}"))
                    .ok()
                    .and_then(|mut v| v.pop())
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem() {
        let mut input = Input::json(br#"{"email": "nope", "password": "short"}"#).unwrap();
        input.email("email");
        input.strong_password("password");
        input.string("absent", 1, 10);
        let Err(Error::Validation(errors)) = input.finish() else {
            panic!("expected validation errors");
        };
        let kinds: Vec<_> = errors.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["value_error", "string_too_short", "missing"]);
        assert_eq!(errors[2].loc, vec!["body", "absent"]);
    }

    #[test]
    fn malformed_json_is_a_422_not_a_panic() {
        assert!(matches!(Input::json(b"{"), Err(Error::Validation(_))));
        assert!(matches!(Input::json(b"[1]"), Err(Error::Validation(_))));
        assert!(matches!(Input::json(b""), Err(Error::Validation(_))));
    }

    #[test]
    fn null_clears_absent_keeps() {
        let mut input = Input::json(br#"{"full_name": null}"#).unwrap();
        assert_eq!(input.nullable_string("full_name", 255), Some(None));
        assert_eq!(input.nullable_string("other", 255), None);
    }

    #[test]
    fn nul_is_refused_in_every_string_read() {
        let mut input = Input::form(b"username=a%00@x.com&device_id=d%00&kind=k%00");
        assert_eq!(input.string("username", 1, 320), None);
        assert_eq!(input.optional_string("device_id", 255), None);
        assert_eq!(input.choice("kind", &["k\0"]), None);
        let Err(Error::Validation(errors)) = input.finish() else {
            panic!("expected validation errors");
        };
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e.msg == NUL_MESSAGE));
        let mut input = Input::json(br#"{"full_name": "a\u0000"}"#).unwrap();
        assert_eq!(input.nullable_string("full_name", 255), None);
        assert!(input.has_error_message(NUL_MESSAGE));
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let mut input = Input::form(b"username=a%40b.com&password=p+q");
        assert_eq!(input.string("username", 1, 100).as_deref(), Some("a@b.com"));
        assert_eq!(input.string("password", 1, 100).as_deref(), Some("p q"));
    }
}
