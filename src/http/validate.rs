//! Request input: bodies (JSON or form), query strings, and field checks that answer
//! 422 in the original's shape (FastAPI with pydantic v2: `type`, `loc`, `msg`,
//! `input`, and `ctx` for the kinds that carry parameters), collecting every problem
//! rather than stopping at the first.

use serde_json::{json, Map, Value};

use crate::error::{Error, FieldError};

/// The 422 message for a string holding a NUL character.
pub(crate) const NUL_MESSAGE: &str =
    "Value error, String must not contain NUL (\\u0000) characters";

/// Fields of one input (`body` or `query`), with the errors found so far.
#[derive(Debug)]
pub struct Input {
    location: &'static str,
    fields: Map<String, Value>,
    errors: Vec<FieldError>,
    /// A JSON object body: a field missing from it reports the whole object as its
    /// `input` (pydantic validates the object); form and query fields report `null`.
    json: bool,
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
                json: true,
            }),
            Ok(other) => Err(Error::Validation(vec![FieldError::new(
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )
            .with_input(other)])),
            Err(e) => {
                let (position, message) = json_decode_error(bytes, &e);
                Err(Error::Validation(vec![FieldError::new(
                    &["body", &position.to_string()],
                    "JSON decode error",
                    "json_invalid",
                )
                .with_input(json!({}))
                .with_ctx(json!({ "error": message }))]))
            }
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
            json: false,
        }
    }

    fn error(
        &mut self,
        field: &str,
        msg: impl Into<String>,
        kind: &'static str,
        input: Value,
        ctx: Option<Value>,
    ) {
        self.errors.push(FieldError {
            loc: vec![self.location.to_owned(), field.to_owned()],
            msg: msg.into(),
            kind,
            input,
            ctx,
        });
    }

    /// `missing`: the input is the whole JSON object, or `null` for a form or query.
    fn missing(&mut self, field: &str) {
        let input = if self.json {
            Value::Object(self.fields.clone())
        } else {
            Value::Null
        };
        self.error(field, "Field required", "missing", input, None);
    }

    fn not_a_string(&mut self, field: &str, value: Value) {
        self.error(
            field,
            "Input should be a valid string",
            "string_type",
            value,
            None,
        );
    }

    /// A `ValueError` raised by a validator: FastAPI encodes the exception as `{}`.
    fn value_error(&mut self, field: &str, msg: &str, input: Value) {
        self.error(
            field,
            msg,
            "value_error",
            input,
            Some(json!({ "error": {} })),
        );
    }

    /// A required string of `min..=max` characters.
    pub fn string(&mut self, name: &str, min: usize, max: usize) -> Option<String> {
        match self.fields.get(name).cloned() {
            None => {
                self.missing(name);
                None
            }
            Some(Value::String(s)) => self.check_len(name, s, min, max),
            Some(other) => {
                self.not_a_string(name, other);
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
            Some(other) => {
                self.not_a_string(name, other);
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
            self.value_error(name, NUL_MESSAGE, Value::String(s));
            return None;
        }
        let n = s.chars().count();
        if n < min {
            let unit = if min == 1 { "character" } else { "characters" };
            self.error(
                name,
                format!("String should have at least {min} {unit}"),
                "string_too_short",
                Value::String(s),
                Some(json!({ "min_length": min })),
            );
            None
        } else if n > max {
            let unit = if max == 1 { "character" } else { "characters" };
            self.error(
                name,
                format!("String should have at most {max} {unit}"),
                "string_too_long",
                Value::String(s),
                Some(json!({ "max_length": max })),
            );
            None
        } else {
            Some(s)
        }
    }

    /// An optional boolean (JSON `true`/`false`; absent → `None`).
    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.fields.get(name).cloned() {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => {
                    self.error(
                        name,
                        "Input should be a valid boolean, unable to interpret input",
                        "bool_parsing",
                        Value::String(s),
                        None,
                    );
                    None
                }
            },
            Some(other) => {
                self.error(
                    name,
                    "Input should be a valid boolean",
                    "bool_type",
                    other,
                    None,
                );
                None
            }
        }
    }

    /// An optional integer in `min..=max` (absent → `default`).
    pub fn integer(&mut self, name: &str, default: i64, min: i64, max: i64) -> i64 {
        let raw = match self.fields.get(name) {
            None | Some(Value::Null) => return default,
            Some(raw) => raw.clone(),
        };
        let value = match &raw {
            Value::Number(n) => n.as_i64().ok_or((
                "Input should be a valid integer, got a number with a fractional part",
                "int_from_float",
            )),
            Value::String(s) => s.trim().parse::<i64>().map_err(|_| {
                (
                    "Input should be a valid integer, unable to parse string as an integer",
                    "int_parsing",
                )
            }),
            _ => Err(("Input should be a valid integer", "int_type")),
        };
        match value {
            Err((msg, kind)) => {
                self.error(name, msg, kind, raw, None);
                default
            }
            Ok(v) if v < min => {
                self.error(
                    name,
                    format!("Input should be greater than or equal to {min}"),
                    "greater_than_equal",
                    raw,
                    Some(json!({ "ge": min })),
                );
                default
            }
            Ok(v) if v > max => {
                self.error(
                    name,
                    format!("Input should be less than or equal to {max}"),
                    "less_than_equal",
                    raw,
                    Some(json!({ "le": max })),
                );
                default
            }
            Ok(v) => v,
        }
    }

    /// A required email address (an empty one is an invalid address, as pydantic's
    /// `EmailStr` says, not a too-short string).
    pub fn email(&mut self, name: &str) -> Option<String> {
        let s = self.string(name, 0, usize::MAX)?;
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
            Err(msg) => {
                // pydantic's `EmailStr`: "value is not a valid email address: {reason}".
                let reason = msg.split_once(": ").map_or(msg, |(_, r)| r);
                self.error(
                    name,
                    msg,
                    "value_error",
                    Value::String(s),
                    Some(json!({ "reason": reason })),
                );
                None
            }
        }
    }

    /// Registration passwords: 8..128 with an uppercase letter and a digit.
    pub fn strong_password(&mut self, name: &str) -> Option<String> {
        let p = self.string(name, 8, 128)?;
        if !p.chars().any(char::is_uppercase) {
            self.value_error(
                name,
                "Value error, Password must contain at least one uppercase letter",
                Value::String(p),
            );
            return None;
        }
        if !p.chars().any(|c| c.is_ascii_digit()) {
            self.value_error(
                name,
                "Value error, Password must contain at least one digit",
                Value::String(p),
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
            let expected = expected_list(allowed);
            self.error(
                name,
                format!("Input should be {expected}"),
                "enum",
                Value::String(s),
                Some(json!({ "expected": expected })),
            );
            None
        }
    }

    /// A required UUID.
    pub fn uuid(&mut self, name: &str) -> Option<uuid::Uuid> {
        let s = self.optional_string(name, 64)?;
        match uuid::Uuid::parse_str(&s) {
            Ok(u) => Some(u),
            Err(e) => {
                self.error(
                    name,
                    format!("Input should be a valid UUID, {e}"),
                    "uuid_parsing",
                    Value::String(s),
                    Some(json!({ "error": e.to_string() })),
                );
                None
            }
        }
    }

    /// Whether a check failed with this message (for callers that answer in another
    /// shape than the 422, such as the OAuth endpoints).
    pub(crate) fn has_error_message(&self, msg: &str) -> bool {
        self.errors.iter().any(|e| e.msg == msg)
    }

    /// The raw value of a field, if present.
    pub(crate) fn raw(&self, name: &str) -> Option<&Value> {
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
    uuid::Uuid::parse_str(value).map_err(|e| {
        // pydantic-core parses with the same `uuid` crate, so `e` reads as it does.
        Error::Validation(vec![FieldError::new(
            &["path", name],
            format!("Input should be a valid UUID, {e}"),
            "uuid_parsing",
        )
        .with_input(Value::String(value.to_owned()))
        .with_ctx(json!({ "error": e.to_string() }))])
    })
}

/// pydantic's list of allowed values: `'a'`, `'a' or 'b'`, `'a', 'b' or 'c'`.
fn expected_list(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Where a JSON body stops parsing and why, as FastAPI reports it: the offset in
/// characters of the body (Python's `JSONDecodeError.pos`) and the message of
/// Python's `json` module, mapped from serde_json's error (the common cases agree
/// exactly; rarer ones are close).
fn json_decode_error(bytes: &[u8], e: &serde_json::Error) -> (usize, &'static str) {
    use serde_json::error::Category;
    // serde_json counts lines from 1 and, within a line, bytes from 1; at the end of
    // the input its column is the number of bytes read on the last line.
    let line_start: usize = bytes
        .split_inclusive(|b| *b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or("");
    let mut at = if e.classify() == Category::Eof {
        bytes.len()
    } else {
        (line_start + e.column().saturating_sub(1)).min(bytes.len())
    };
    // Python points at the start of what it could not read: the misspelt literal,
    // the unterminated string's opening quote.
    if what == "expected ident" {
        while at > 0 && bytes[at - 1].is_ascii_alphabetic() {
            at -= 1;
        }
    } else if what == "EOF while parsing a string" {
        at = bytes[..at].iter().rposition(|b| *b == b'"').unwrap_or(at);
    }
    let position = String::from_utf8_lossy(&bytes[..at]).chars().count();
    let last = bytes[..at]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    let message = match what {
        "trailing characters" => "Extra data",
        "expected `:`" => "Expecting ':' delimiter",
        "expected `,` or `}`" | "expected `,` or `]`" => "Expecting ',' delimiter",
        "key must be a string" => "Expecting property name enclosed in double quotes",
        "EOF while parsing a string" => "Unterminated string starting at",
        "invalid escape" => "Invalid \\escape",
        w if w.starts_with("control character") => "Invalid control character at",
        "EOF while parsing an object" => match last {
            Some(b'{' | b',') => "Expecting property name enclosed in double quotes",
            _ => "Expecting ',' delimiter",
        },
        "EOF while parsing a list" => match last {
            Some(b'[' | b',') => "Expecting value",
            _ => "Expecting ',' delimiter",
        },
        // Python before 3.13 reports a trailing comma as the item it expected.
        "trailing comma" if bytes.get(at) == Some(&b'}') => {
            "Expecting property name enclosed in double quotes"
        }
        _ => "Expecting value",
    };
    (position, message)
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

    /// Offsets and messages as Python's `json.loads` reports them (CPython 3.12).
    #[test]
    fn json_decode_errors_read_as_pythons() {
        let cases: [(&str, usize, &str); 10] = [
            (r#"{"refresh_token": "#, 18, "Expecting value"),
            ("{", 1, "Expecting property name enclosed in double quotes"),
            (r#"{"a" 1}"#, 5, "Expecting ':' delimiter"),
            (r#"{"a": 1 "b": 2}"#, 8, "Expecting ',' delimiter"),
            (r#"{"a": 1} x"#, 9, "Extra data"),
            (r#"{"a": tru}"#, 6, "Expecting value"),
            (r#"{"a": x}"#, 6, "Expecting value"),
            (
                r#"{"a": 1,}"#,
                8,
                "Expecting property name enclosed in double quotes",
            ),
            (r#"{"a": "abc"#, 6, "Unterminated string starting at"),
            ("{\n  \"é\": ?}", 9, "Expecting value"),
        ];
        for (body, pos, message) in cases {
            let e = serde_json::from_slice::<Value>(body.as_bytes()).unwrap_err();
            assert_eq!(
                json_decode_error(body.as_bytes(), &e),
                (pos, message),
                "{body}"
            );
        }
    }

    #[test]
    fn constraint_errors_carry_the_raw_input_and_their_ctx() {
        let mut input = Input::query(Some("page=0&size=500&n=x&role=boss&flag=maybe"));
        input.integer("page", 1, 1, i64::MAX);
        input.integer("size", 20, 1, 100);
        input.integer("n", 1, 1, 10);
        input.choice("role", &["user", "admin"]);
        input.boolean("flag");
        input.string("absent", 1, 10);
        let Err(Error::Validation(errors)) = input.finish() else {
            panic!("expected validation errors");
        };
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.kind, e.input.clone(), e.ctx.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("greater_than_equal", json!("0"), Some(json!({"ge": 1}))),
                ("less_than_equal", json!("500"), Some(json!({"le": 100}))),
                ("int_parsing", json!("x"), None),
                (
                    "enum",
                    json!("boss"),
                    Some(json!({"expected": "'user' or 'admin'"}))
                ),
                ("bool_parsing", json!("maybe"), None),
                ("missing", Value::Null, None),
            ]
        );
        assert_eq!(errors[3].msg, "Input should be 'user' or 'admin'");
    }

    #[test]
    fn expected_values_are_listed_as_pydantic_does() {
        assert_eq!(expected_list(&["user"]), "'user'");
        assert_eq!(expected_list(&["user", "admin"]), "'user' or 'admin'");
        assert_eq!(expected_list(&["a", "b", "c"]), "'a', 'b' or 'c'");
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
