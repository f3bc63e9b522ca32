#!/usr/bin/env bash
# Adoption in place and `rotor import` at scale: 1 million users, 3 million refresh
# tokens in the original backend's PostgreSQL schema.
#
#   bench/adopt_import_scale.sh            # 1,000,000 users (3 tokens each)
#   USERS=100000 bench/adopt_import_scale.sh
#
# Builds the original-shaped database with generate_series (one precomputed Argon2id
# hash for everyone; token hashes are SHA-256 hex; one family per user: two rotated
# tokens and a live one; every 1000th family forked: two live tokens), then measures,
# with the release binary under /usr/bin/time -v:
#   1. `rotor migrate` on a copy (CREATE DATABASE … TEMPLATE …): adoption in place;
#   2. `rotor import --from postgres://…original` into a fresh PostgreSQL database;
#   3. the same into a fresh SQLite file.
# Prints wall time and peak RSS for each, and drops every database it created.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-1000000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
ROTOR=${ROTOR:-target/release/rotor}
ORIG=rotor_scale_original
ADOPT=rotor_scale_adopt
IMPORT=rotor_scale_import
WORK=$(mktemp -d /tmp/rotor-scale.XXXXXX)
SECRET=scale-benchmark-secret-key-0123456789abcdef

psql_admin() { psql "$PG/postgres" -v ON_ERROR_STOP=1 -qAt "$@"; }
cleanup() {
    for db in $ORIG $ADOPT $IMPORT; do
        psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$ROTOR" ] || cargo build --release --bin rotor
cleanup
mkdir -p "$WORK"

echo "== building the original's database: $USERS users, $((USERS * 3)) refresh tokens"
start=$(date +%s.%N)
psql_admin -c "CREATE DATABASE $ORIG"
psql "$PG/$ORIG" -v ON_ERROR_STOP=1 -q -v users="$USERS" <<'SQL'
CREATE TYPE userrole AS ENUM ('unknown', 'user', 'admin');
CREATE TABLE alembic_version (version_num character varying(32) NOT NULL);
CREATE TABLE users (
    email character varying(320) NOT NULL,
    hashed_password character varying(1024) NOT NULL,
    full_name character varying(255),
    is_active boolean NOT NULL,
    is_verified boolean NOT NULL,
    role userrole NOT NULL,
    token_version integer NOT NULL,
    id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone
);
CREATE TABLE refresh_tokens (
    token_hash character varying(64) NOT NULL,
    user_id uuid NOT NULL,
    family_id uuid NOT NULL,
    device_id character varying(255),
    device_name character varying(100),
    ip_address character varying(45),
    expires_at timestamp with time zone NOT NULL,
    is_revoked boolean NOT NULL,
    revoked_at timestamp with time zone,
    id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone
);
INSERT INTO alembic_version (version_num) VALUES ('801b86be184b');

-- One Argon2id hash (argon2-cffi's parameters) for every account.
INSERT INTO users (email, hashed_password, full_name, is_active, is_verified, role,
                   token_version, id, created_at)
SELECT 'user' || i || '@example.com',
       '$argon2id$v=19$m=65536,t=3,p=4$c2NhbGViZW5jaHNhbHQx$2oM3Bq7M1OqZ7Hq2cRk0dTt6mV4Xx0pQ8yW1sNf3aLk',
       'User ' || i, TRUE, i % 3 = 0,
       CASE WHEN i % 100000 = 0 THEN 'admin' ELSE 'user' END::userrole,
       i % 5, md5('user' || i)::uuid, now() - (i % 10000) * interval '1 minute'
FROM generate_series(1, :users) AS i;

-- Three tokens per user in one family: two rotated (revoked), the newest live; every
-- 1000th family forked (its middle token live too).
INSERT INTO refresh_tokens (token_hash, user_id, family_id, device_id, device_name,
                            ip_address, expires_at, is_revoked, revoked_at, id, created_at)
SELECT encode(sha256(('token' || u || '-' || k)::bytea), 'hex'),
       md5('user' || u)::uuid, md5('family' || u)::uuid,
       CASE WHEN u % 2 = 0 THEN 'device-' || u END,
       CASE WHEN u % 2 = 0 THEN 'Phone' END,
       '198.51.100.' || (u % 250),
       now() + interval '7 days' - (3 - k) * interval '1 hour',
       k < 3 AND NOT (k = 2 AND u % 1000 = 0),
       CASE WHEN k < 3 AND NOT (k = 2 AND u % 1000 = 0)
            THEN now() - (3 - k) * interval '1 hour' + interval '15 minutes' END,
       md5('token' || u || '-' || k)::uuid,
       now() - (3 - k) * interval '1 hour'
FROM generate_series(1, :users) AS u, generate_series(1, 3) AS k;

ALTER TABLE ONLY alembic_version ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);
ALTER TABLE ONLY refresh_tokens ADD CONSTRAINT pk_refresh_tokens PRIMARY KEY (id);
ALTER TABLE ONLY users ADD CONSTRAINT pk_users PRIMARY KEY (id);
CREATE INDEX ix_refresh_tokens_expires_at ON refresh_tokens USING btree (expires_at);
CREATE INDEX ix_refresh_tokens_family_id ON refresh_tokens USING btree (family_id);
CREATE UNIQUE INDEX ix_refresh_tokens_token_hash ON refresh_tokens USING btree (token_hash);
CREATE INDEX ix_refresh_tokens_user_id ON refresh_tokens USING btree (user_id);
CREATE UNIQUE INDEX ix_users_email ON users USING btree (email);
ALTER TABLE ONLY refresh_tokens
    ADD CONSTRAINT fk_refresh_tokens_user_id_users FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE;
VACUUM ANALYZE;
SQL
printf 'built in %.0f s; size %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" \
    "$(psql_admin -c "SELECT pg_size_pretty(pg_database_size('$ORIG'))")"

# Runs a rotor command under /usr/bin/time -v; prints wall time and peak RSS.
measure() {
    local name=$1; shift
    local log="$WORK/$name.time"
    echo "== $name: $*"
    if ! env "$@" 2>"$log" >"$WORK/$name.out"; then
        cat "$WORK/$name.out" "$log"
        exit 1
    fi
    tail -n 12 "$WORK/$name.out"
    local wall rss
    wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
    printf 'RESULT %-16s wall %s  peak RSS %d MiB\n' "$name" "$wall" $((rss / 1024))
}

common=(SECRET_KEY=$SECRET LOG_LEVEL=warn CLEANUP_INTERVAL_SECONDS=0)

# 1. Adoption in place, on a copy.
psql_admin -c "CREATE DATABASE $ADOPT TEMPLATE $ORIG"
measure adopt "${common[@]}" DATABASE_URL="$PG/$ADOPT" /usr/bin/time -v "$ROTOR" migrate
echo "sessions: $(psql "$PG/$ADOPT" -qAt -c 'SELECT count(*) FROM sessions'), repaired: $(psql "$PG/$ADOPT" -qAt -c "SELECT count(*) FROM audit_events WHERE kind = 'family_repaired'")"
psql_admin -c "DROP DATABASE $ADOPT WITH (FORCE)"

# 2. Import into a fresh PostgreSQL database.
psql_admin -c "CREATE DATABASE $IMPORT"
measure import-postgres "${common[@]}" DATABASE_URL="$PG/$IMPORT" \
    /usr/bin/time -v "$ROTOR" import --from "$PG/$ORIG"
for t in users refresh_tokens sessions audit_events; do
    echo "target $t: $(psql "$PG/$IMPORT" -qAt -c "SELECT count(*) FROM $t")"
done
# A re-run over the same rows (everything present: nothing written).
measure reimport-postgres "${common[@]}" DATABASE_URL="$PG/$IMPORT" \
    /usr/bin/time -v "$ROTOR" import --from "$PG/$ORIG"
psql_admin -c "DROP DATABASE $IMPORT WITH (FORCE)"

# 3. Import into a fresh SQLite file.
measure import-sqlite "${common[@]}" DATABASE_URL="sqlite://$WORK/rotor.db" \
    /usr/bin/time -v "$ROTOR" import --from "$PG/$ORIG"
echo "SQLite file: $(du -h "$WORK/rotor.db" | cut -f1)"
