//! Email addresses: the syntactic check rotor applies, and the one *identity key* under
//! which accounts are unique and looked up.
//!
//! Two addresses name the same account when their identity keys are equal. The key is
//! computed here, in Rust, and stored beside the address; no lookup relies on the
//! database's own case folding (PostgreSQL's `lower()` maps `İ` to `i`, SQLite folds
//! only ASCII, so the two would disagree and neither matches Unicode's rules).
//!
//! The key is Unicode's compatibility caseless form: default-ignorable code points
//! removed, then `NFKC(casefold(NFKD(casefold(NFD(s)))))`. It maps the fullwidth `Ａ`,
//! the Kelvin sign `K`, `ß` and `ẞ` onto `a`, `k`, `ss` and `ss`. `İ` (U+0130) folds to
//! `i` followed by a combining dot, so `ADMİN@…` is *not* `admin@…`: a look-alike
//! that can never collide with, or be promoted as, the real address.
//!
//! Addresses that carry control, invisible (default-ignorable, format), private-use or
//! whitespace characters are refused outright by [`check`]: they exist only to make two
//! different strings look the same on screen.

use std::fmt;

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;

/// Longest address accepted, in bytes (RFC 5321 path limit, as the original's column).
pub const MAX_EMAIL_LEN: usize = 320;

/// Longest identity key stored, in bytes. Compatibility decomposition can expand a
/// character up to 18-fold; keys stay well under PostgreSQL's B-tree entry limit.
pub const MAX_KEY_LEN: usize = 4 * MAX_EMAIL_LEN;

/// The identity of an email address: equal keys are the same account.
///
/// Built only by [`EmailKey::of`], so every key in the program went through the same
/// rule.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailKey(String);

impl EmailKey {
    /// The identity key of `address`. Total: any string has a key, so a login with a
    /// malformed username is still looked up (and fails) in constant work.
    pub fn of(address: &str) -> Self {
        let cleaned: String = address
            .nfd()
            .filter(|c| !is_default_ignorable(*c))
            .collect();
        let key: String = cleaned
            .chars()
            .default_case_fold()
            .nfkd()
            .default_case_fold()
            .nfkc()
            .collect();
        Self(key)
    }

    /// The key as stored in `users.email_key`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EmailKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailKey({:?})", self.0)
    }
}

impl fmt::Display for EmailKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether two addresses name the same account.
pub fn same_identity(a: &str, b: &str) -> bool {
    EmailKey::of(a) == EmailKey::of(b)
}

/// A pragmatic address check in the spirit of the original's `EmailStr`: one `@`, a
/// non-empty local part, a dotted domain of letters, digits and hyphens, no spaces,
/// and none of the characters that only serve to disguise an address (see the module
/// documentation). Returns the reason when the address is rejected.
pub fn check(email: &str) -> Result<(), &'static str> {
    if email.len() > MAX_EMAIL_LEN {
        return Err("value is not a valid email address: too long");
    }
    if email.chars().any(is_forbidden) {
        return Err(
            "value is not a valid email address: it contains whitespace, control or invisible characters",
        );
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
    if EmailKey::of(email).as_str().len() > MAX_KEY_LEN {
        return Err("value is not a valid email address: too long");
    }
    Ok(())
}

/// Characters no address may contain: controls, whitespace (any Unicode space,
/// including NBSP), invisible characters, private-use code points and noncharacters.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || is_default_ignorable(c)
        || is_other_format(c)
        || is_private_use(c)
        || is_noncharacter(c)
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties, Unicode 16):
/// rendered as nothing. Zero-width spaces and joiners, bidi controls, variation
/// selectors, the soft hyphen, Hangul fillers, tags.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Format characters (category Cf) that are not default-ignorable: prepended
/// concatenation marks and interlinear annotation controls.
fn is_other_format(c: char) -> bool {
    matches!(
        c as u32,
        0x0600..=0x0605
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x110BD
            | 0x110CD
            | 0xFFF9..=0xFFFB
            | 0x13430..=0x1343F
    )
}

fn is_private_use(c: char) -> bool {
    matches!(c as u32, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD)
}

fn is_noncharacter(c: char) -> bool {
    let n = c as u32;
    (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "user1@test.com",
            "A.B+tag@Example.co.uk",
            "x@a-b.io",
            "josé@exämple.de",
        ] {
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
    fn rejects_disguising_characters() {
        for bad in [
            "admin\u{a0}@example.com",   // no-break space
            "admin\u{200b}@example.com", // zero-width space
            "adm\u{200d}in@example.com", // zero-width joiner
            "admin\u{ad}@example.com",   // soft hyphen
            "\u{202e}nimda@example.com", // right-to-left override
            "admin\u{fe0f}@example.com", // variation selector
            "admin\u{3000}@example.com", // ideographic space
            "admin\0@example.com",
            "admin\u{7f}@example.com",
            "admin\u{e000}@example.com", // private use
            "admin\u{feff}@example.com", // byte order mark
            "admin\u{3164}@example.com", // Hangul filler
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_fold_case_and_compatibility_forms() {
        let admin = EmailKey::of("admin@example.com");
        for same in [
            "ADMIN@EXAMPLE.COM",
            "Admin@Example.com",
            "ＡＤＭＩＮ@ｅｘａｍｐｌｅ.ｃｏｍ", // fullwidth
            "admin@example.com",
        ] {
            assert_eq!(EmailKey::of(same), admin, "{same}");
        }
        assert_eq!(
            EmailKey::of("\u{212a}ate@x.com"),
            EmailKey::of("kate@x.com")
        );
        assert_eq!(EmailKey::of("STRASSE@x.de"), EmailKey::of("straße@x.de"));
        assert_eq!(EmailKey::of("\u{1e9e}@x.de"), EmailKey::of("ss@x.de"));
        // NFD and NFC spell the same address.
        assert_eq!(
            EmailKey::of("jose\u{301}@x.com"),
            EmailKey::of("jos\u{e9}@x.com")
        );
    }

    #[test]
    fn dotted_capital_i_is_not_a_plain_i() {
        // PostgreSQL's lower() folds İ to i; the identity key keeps the dot.
        assert_ne!(
            EmailKey::of("ADM\u{130}N@example.com"),
            EmailKey::of("admin@example.com")
        );
        assert_eq!(
            EmailKey::of("ADM\u{130}N@example.com"),
            EmailKey::of("adm\u{130}n@example.com")
        );
    }

    #[test]
    fn invisible_characters_do_not_change_the_key() {
        assert_eq!(
            EmailKey::of("adm\u{200b}in@example.com"),
            EmailKey::of("admin@example.com")
        );
    }

    #[test]
    fn the_key_is_idempotent() {
        for s in [
            "ADM\u{130}N@example.com",
            "ﬀ\u{fb03}@x.com",
            "\u{1f1}@x.com",
            "ΣΑΣ@x.gr",
            "\u{fdfa}@x.com",
        ] {
            let k = EmailKey::of(s);
            assert_eq!(EmailKey::of(k.as_str()), k, "{s:?}");
        }
    }
}
