//! Keeping `users.email_key` filled: the step that runs after the SQL migrations on
//! both databases. It gives every row without a key its identity key
//! ([`EmailKey::of`]), and builds the unique index on the key, in one transaction.
//!
//! Accounts whose addresses share a key were distinct under the old rules (PostgreSQL's
//! `lower()`, SQLite's ASCII folding, or the original's exact comparison). rotor never
//! merges, renames or deletes an account by itself: the step then changes nothing and
//! fails with [`StoreError::EmailCollisions`], listing every group, and the operator
//! decides which address each account keeps (`rotor users set-email`).

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::email::EmailKey;

/// One account, as the collision report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedAccount {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

/// Accounts whose addresses share one identity key, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailCollision {
    pub key: String,
    pub accounts: Vec<KeyedAccount>,
}

/// Every collision group; its `Display` is the operator-facing report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailCollisions(pub Vec<EmailCollision>);

impl fmt::Display for EmailCollisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} group(s) of accounts have email addresses that rotor treats as the same \
             address (case and Unicode compatibility folding):",
            self.0.len()
        )?;
        for group in &self.0 {
            writeln!(f, "  identity key {:?}:", group.key)?;
            for a in &group.accounts {
                writeln!(
                    f,
                    "    {}  {:?}  created {}",
                    a.id,
                    a.email,
                    a.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )?;
            }
        }
        write!(
            f,
            "rotor changed nothing. Decide which account keeps each address and give the \
             others a different one (on a rotor database: `rotor users set-email --id ID \
             NEW_EMAIL`; on the original backend's, before adoption: its admin API or \
             `UPDATE users SET email = 'new@example.com' WHERE id = 'ID'`), or delete \
             the unwanted account; then run `rotor migrate` again."
        )
    }
}

/// A row as the step reads it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: Uuid,
    pub email: String,
    pub email_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What the step will write.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Rows whose stored key is missing or stale: (id, key).
    pub updates: Vec<(Uuid, String)>,
    pub collisions: Vec<EmailCollision>,
}

/// Computes every row's key, the rows to update, and the groups that collide.
pub(crate) fn plan(rows: Vec<Row>) -> Plan {
    let mut groups: BTreeMap<String, Vec<KeyedAccount>> = BTreeMap::new();
    let mut updates = Vec::new();
    for row in rows {
        let key = EmailKey::of(&row.email).as_str().to_owned();
        if row.email_key.as_deref() != Some(key.as_str()) {
            updates.push((row.id, key.clone()));
        }
        groups.entry(key).or_default().push(KeyedAccount {
            id: row.id,
            email: row.email,
            created_at: row.created_at,
        });
    }
    let collisions = groups
        .into_iter()
        .filter(|(_, accounts)| accounts.len() > 1)
        .map(|(key, mut accounts)| {
            accounts.sort_by_key(|a| (a.created_at, a.id));
            EmailCollision { key, accounts }
        })
        .collect();
    Plan {
        updates,
        collisions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(email: &str, key: Option<&str>, age: i64) -> Row {
        Row {
            id: Uuid::now_v7(),
            email: email.to_owned(),
            email_key: key.map(str::to_owned),
            created_at: chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(age),
        }
    }

    #[test]
    fn fills_missing_keys_and_reports_groups_oldest_first() {
        let plan = plan(vec![
            row("admin@example.com", None, 2),
            row("ＡＤＭＩＮ@example.com", None, 1),
            row("bob@example.com", Some("bob@example.com"), 3),
            row("Carol@example.com", Some("Carol@example.com"), 4),
        ]);
        // Both admins and Carol's stale key need writing; Bob's key is current.
        assert_eq!(plan.updates.len(), 3);
        assert_eq!(plan.collisions.len(), 1);
        let group = &plan.collisions[0];
        assert_eq!(group.key, "admin@example.com");
        assert_eq!(group.accounts[0].email, "ＡＤＭＩＮ@example.com");
        assert_eq!(group.accounts[1].email, "admin@example.com");
        let report = EmailCollisions(plan.collisions).to_string();
        assert!(report.contains("ＡＤＭＩＮ@example.com"), "{report}");
        assert!(report.contains("rotor users set-email"), "{report}");
    }
}
