-- rotor's own rotation statement (src/storage/postgres/rotations.rs), verbatim in
-- shape: the user must be active, the session not ended, and the successor's expiry
-- is capped by the session's absolute end. (The session row is not written: rotor
-- reads a session's last use off its live token.)
-- The `refresh` audit row is written by the same statement, as rotor does: one round
-- trip and one commit per rotation.
-- Same chain scheme as pgbench_rotate.sql.
\set next :n + 1
WITH old AS (
    UPDATE refresh_tokens t SET is_revoked = TRUE, revoked_at = now(), updated_at = now()
      FROM users u
     WHERE t.token_hash = encode(sha256(convert_to(:client_id::text || '.' || :n::text, 'UTF8')), 'hex')::bpchar
       AND NOT t.is_revoked AND t.expires_at > now()
       AND u.id = t.user_id AND u.is_active
       AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = t.family_id AND s.revoked_at IS NOT NULL)
    RETURNING t.user_id, t.family_id, t.device_id, t.device_name, u.token_version,
              LEAST(now() + interval '7 days',
                    COALESCE((SELECT s.absolute_expires_at FROM sessions s WHERE s.id = t.family_id),
                             now() + interval '7 days')) AS new_expires_at
), ins AS (
    INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name, ip_address,
                                expires_at, is_revoked, created_at)
    SELECT gen_random_uuid(), encode(sha256(convert_to(:client_id::text || '.' || :next::text, 'UTF8')), 'hex'),
           user_id, family_id, device_id, device_name, '127.0.0.1', new_expires_at, FALSE, now()
      FROM old
    RETURNING id
), event AS (
    INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent)
    SELECT gen_random_uuid(), now(), 'refresh', user_id, family_id, '127.0.0.1', 'pgbench' FROM old
)
SELECT ins.id, old.token_version FROM ins CROSS JOIN old;
\set n :next
