-- Emails are unique by rotor's identity key (Unicode compatibility caseless form),
-- computed in Rust and stored here. The key is filled in and its unique index built
-- by rotor right after this migration (see storage::email_keys), in one transaction
-- that also drops the old lower(email) index. Rows written without a key (by the
-- original backend sharing an adopted database) are found by exact address through
-- ix_users_email_key_missing, and keyed at the next start.
ALTER TABLE users ADD COLUMN email_key TEXT;
CREATE INDEX ix_users_email_key_missing ON users (email) WHERE email_key IS NULL;
