-- The webhook outbox: events written in their change's transaction, one delivery per
-- configured endpoint, and every attempt.
CREATE TABLE webhook_events (
    -- Per user, commit order (writers of one user's events hold an advisory lock
    -- until commit): the per-user delivery order.
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    user_id UUID,
    -- The exact body every attempt signs and sends.
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE webhook_deliveries (
    event_seq BIGINT NOT NULL REFERENCES webhook_events (seq) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    user_id UUID,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    window_start TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    claim UUID,
    claimed_until TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    PRIMARY KEY (event_seq, endpoint)
);

CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX ix_webhook_deliveries_user ON webhook_deliveries (endpoint, user_id, event_seq)
    WHERE status = 'pending';
CREATE INDEX ix_webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';

CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    event_seq BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    FOREIGN KEY (event_seq, endpoint) REFERENCES webhook_deliveries (event_seq, endpoint)
        ON DELETE CASCADE
);

CREATE INDEX ix_webhook_attempts_delivery ON webhook_attempts (event_seq, endpoint);
