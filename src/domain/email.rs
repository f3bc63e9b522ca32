//! Email addresses: the syntactic check rotor applies and the case-folding rule that
//! makes them unique regardless of case.

/// Longest address accepted (RFC 5321 path limit, as the original's column).
pub const MAX_EMAIL_LEN: usize = 320;

/// The key under which emails are unique and looked up: ASCII lowercase. Stored emails
/// keep the case they were given.
pub fn fold(email: &str) -> String {
    email.to_ascii_lowercase()
}

/// A pragmatic address check in the spirit of the original's `EmailStr`: one `@`, a
/// non-empty local part, a dotted domain of letters, digits and hyphens, no spaces.
/// Returns the reason when the address is rejected.
pub fn check(email: &str) -> Result<(), &'static str> {
    if email.len() > MAX_EMAIL_LEN {
        return Err("value is not a valid email address: too long");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("value is not a valid email address: An email address must have an @-sign.");
    };
    if local.is_empty() || local.len() > 64 {
        return Err("value is not a valid email address: invalid local part");
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b) || b >= 0x80)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err("value is not a valid email address: invalid characters before the @-sign");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| !b.is_ascii_digit()));
    if !domain_ok {
        return Err("value is not a valid email address: invalid domain after the @-sign");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in ["user1@test.com", "A.B+tag@Example.co.uk", "x@a-b.io"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "plain",
            "@x.com",
            "a@",
            "a@b",
            "a b@x.com",
            "a@x..com",
            ".a@x.com",
            "a@-x.com",
            "a@x.123",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(check(&format!("{}@x.com", "a".repeat(400))).is_err());
    }

    #[test]
    fn fold_lowercases() {
        assert_eq!(fold("User@Test.COM"), "user@test.com");
    }
}
