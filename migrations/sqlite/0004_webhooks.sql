-- The webhook outbox: events written in their change's transaction, one delivery per
-- configured endpoint, and every attempt.
CREATE TABLE webhook_events (
    -- Commit order (one writer): the per-user delivery order.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    user_id TEXT,
    -- The exact body every attempt signs and sends.
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    event_seq INTEGER NOT NULL REFERENCES webhook_events (seq) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    user_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    window_start TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    claim TEXT,
    claimed_until TEXT,
    delivered_at TEXT,
    PRIMARY KEY (event_seq, endpoint)
);

CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX ix_webhook_deliveries_user ON webhook_deliveries (endpoint, user_id, event_seq)
    WHERE status = 'pending';
CREATE INDEX ix_webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';

CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    attempted_at TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    FOREIGN KEY (event_seq, endpoint) REFERENCES webhook_deliveries (event_seq, endpoint)
        ON DELETE CASCADE
);

CREATE INDEX ix_webhook_attempts_delivery ON webhook_attempts (event_seq, endpoint);
