-- Adopting a database of the original backend (Alembic head 801b86be184b) in place.
-- Every change is additive: the original's tables, columns, types and indexes stay as
-- they are, so the original backend keeps running on the database (rollback, rolling
-- cutover). rotor runs this inside the adoption transaction, after its checks.

-- rotor's own tables, as rotor's schema defines them.
CREATE TABLE sessions (
    id                  UUID PRIMARY KEY,
    user_id             UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id           VARCHAR(255),
    device_name         VARCHAR(100),
    user_agent          VARCHAR(512),
    ip_address          VARCHAR(45),
    client_id           VARCHAR(255),
    created_at          TIMESTAMPTZ NOT NULL,
    last_used_at        TIMESTAMPTZ NOT NULL,
    absolute_expires_at TIMESTAMPTZ NOT NULL,
    revoked_at          TIMESTAMPTZ
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_absolute_expires_at ON sessions (absolute_expires_at);

CREATE TABLE audit_events (
    id          UUID PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL,
    kind        VARCHAR(64) NOT NULL,
    user_id     UUID,
    session_id  UUID,
    ip_address  VARCHAR(45),
    user_agent  VARCHAR(512),
    detail      TEXT
);
CREATE INDEX ix_audit_events_user_created ON audit_events (user_id, created_at);
CREATE INDEX ix_audit_events_created_at ON audit_events (created_at);

CREATE TABLE signing_keys (
    kid                VARCHAR(64) PRIMARY KEY,
    algorithm          VARCHAR(16) NOT NULL,
    public_key         BYTEA NOT NULL,
    private_key_sealed BYTEA NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    retired_at         TIMESTAMPTZ
);

-- The email identity key (filled in by rotor in the same transaction).
ALTER TABLE users ADD COLUMN email_key TEXT;
CREATE INDEX ix_users_email_key_missing ON users (email) WHERE email_key IS NULL;

-- rotor compares token hashes as CHAR(64) (its own column type); the original's
-- column is VARCHAR(64). This index serves rotor's lookups; the original's unique
-- index keeps serving the original's.
CREATE INDEX ix_refresh_tokens_token_hash_bpchar ON refresh_tokens ((token_hash::bpchar));

-- rotor writes roles as text; the original's column is its `userrole` enum.
CREATE CAST (text AS userrole) WITH INOUT AS ASSIGNMENT;
