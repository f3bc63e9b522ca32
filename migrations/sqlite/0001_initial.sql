-- rotor schema, SQLite. Ids are UUID v7 text; timestamps are UTC text in the fixed
-- form YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time order.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    email           TEXT NOT NULL CHECK (length(email) <= 320),
    hashed_password TEXT NOT NULL CHECK (length(hashed_password) <= 1024),
    full_name       TEXT CHECK (full_name IS NULL OR length(full_name) <= 255),
    is_active       INTEGER NOT NULL DEFAULT 1,
    is_verified     INTEGER NOT NULL DEFAULT 0,
    role            TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    token_version   INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX ix_users_email_lower ON users (lower(email));

-- One row per refresh family (a login on a device).
CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY NOT NULL,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id           TEXT,
    device_name         TEXT,
    user_agent          TEXT,
    ip_address          TEXT,
    client_id           TEXT,
    created_at          TEXT NOT NULL,
    last_used_at        TEXT NOT NULL,
    absolute_expires_at TEXT NOT NULL,
    revoked_at          TEXT
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_absolute_expires_at ON sessions (absolute_expires_at);

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    token_hash  TEXT NOT NULL CHECK (length(token_hash) = 64),
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   TEXT NOT NULL,
    device_id   TEXT,
    device_name TEXT,
    ip_address  TEXT,
    expires_at  TEXT NOT NULL,
    is_revoked  INTEGER NOT NULL DEFAULT 0,
    revoked_at  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT
);
CREATE UNIQUE INDEX ix_refresh_tokens_token_hash ON refresh_tokens (token_hash);
CREATE INDEX ix_refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE INDEX ix_refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX ix_refresh_tokens_expires_at ON refresh_tokens (expires_at);
-- Invariant: a family never has two live tokens. The database enforces it.
CREATE UNIQUE INDEX ux_refresh_tokens_one_live_per_family
    ON refresh_tokens (family_id) WHERE is_revoked = 0;

-- Append-only security log. No foreign keys: events outlive what they describe.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT,
    session_id  TEXT,
    ip_address  TEXT,
    user_agent  TEXT,
    detail      TEXT
);
CREATE INDEX ix_audit_events_user_created ON audit_events (user_id, created_at);
CREATE INDEX ix_audit_events_created_at ON audit_events (created_at);

-- Asymmetric signing keys; private keys sealed with AES-256-GCM.
CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY NOT NULL,
    algorithm          TEXT NOT NULL,
    public_key         BLOB NOT NULL,
    private_key_sealed BLOB NOT NULL,
    created_at         TEXT NOT NULL,
    retired_at         TEXT
);
