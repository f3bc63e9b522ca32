-- rotor schema, PostgreSQL.

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    email           VARCHAR(320) NOT NULL,
    hashed_password VARCHAR(1024) NOT NULL,
    full_name       VARCHAR(255),
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    is_verified     BOOLEAN NOT NULL DEFAULT FALSE,
    role            VARCHAR(16) NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    token_version   INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX ix_users_email_lower ON users (lower(email));

-- One row per refresh family (a login on a device).
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

CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    token_hash  CHAR(64) NOT NULL,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL,
    device_id   VARCHAR(255),
    device_name VARCHAR(100),
    ip_address  VARCHAR(45),
    expires_at  TIMESTAMPTZ NOT NULL,
    is_revoked  BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX ix_refresh_tokens_token_hash ON refresh_tokens (token_hash);
CREATE INDEX ix_refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE INDEX ix_refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX ix_refresh_tokens_expires_at ON refresh_tokens (expires_at);
-- Invariant: a family never has two live tokens. The database enforces it.
CREATE UNIQUE INDEX ux_refresh_tokens_one_live_per_family
    ON refresh_tokens (family_id) WHERE NOT is_revoked;

-- Append-only security log. No foreign keys: events outlive what they describe.
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

-- Asymmetric signing keys; private keys sealed with AES-256-GCM.
CREATE TABLE signing_keys (
    kid                VARCHAR(64) PRIMARY KEY,
    algorithm          VARCHAR(16) NOT NULL,
    public_key         BYTEA NOT NULL,
    private_key_sealed BYTEA NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    retired_at         TIMESTAMPTZ
);
