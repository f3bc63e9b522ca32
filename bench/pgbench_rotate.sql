-- The database's own bound for one refresh rotation on PostgreSQL, as ONE statement:
-- revoke the presented live token and insert its successor (same family), on rotor's
-- schema (partial unique index "one live token per family" included).
--
-- Each pgbench client rotates its own chain: its token number :n has the hash
-- sha256('<client_id>.<n>') (hex), seeded by bench/run.sh for n = 0 and every client;
-- pgbench keeps :n per client across transactions (start it with -D n=0). A broken
-- chain would make every later statement a no-op, so run.sh checks afterwards that
-- the number of revoked tokens equals the number of transactions pgbench reports.
--
-- pgbench -n -M prepared -D n=0 -f bench/pgbench_rotate.sql -c C -j 2 -T 10
\set next :n + 1
WITH old AS (
    UPDATE refresh_tokens
       SET is_revoked = TRUE, revoked_at = now(), updated_at = now()
     WHERE token_hash = encode(sha256(convert_to(:client_id::text || '.' || :n::text, 'UTF8')), 'hex')::bpchar
       AND NOT is_revoked AND expires_at > now()
    RETURNING user_id, family_id, device_id, device_name
)
INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name, ip_address,
                            expires_at, is_revoked, created_at)
SELECT gen_random_uuid(), encode(sha256(convert_to(:client_id::text || '.' || :next::text, 'UTF8')), 'hex'),
       user_id, family_id, device_id, device_name, '127.0.0.1', now() + interval '7 days', FALSE, now()
  FROM old;
\set n :next
