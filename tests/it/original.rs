//! A fixture builder for the original backend's PostgreSQL database: the schema its own
//! Alembic migrations leave (head `801b86be184b`) and rows the way the original fills
//! them. Argon2id PHC strings from its hasher (and older parameters), refresh tokens
//! stored as the SHA-256 hex of `secrets.token_urlsafe(32)` strings, rotated chains,
//! and the marks of its two defects (forked families, replayed families still live).
//! Also the original's own repository statements, for the rollback tests.

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Duration, Utc};
use rotor::domain::token::hash_token;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::support::TestDb;

pub const SCHEMA: &str = "
CREATE TYPE userrole AS ENUM ('unknown', 'user', 'admin');
CREATE TABLE alembic_version (version_num character varying(32) NOT NULL);
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
INSERT INTO alembic_version (version_num) VALUES ('801b86be184b');
";

/// `secrets.token_urlsafe(32)`: 32 random bytes, base64url without padding.
pub fn token_urlsafe() -> String {
    let bytes: [u8; 32] = rand_bytes();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b).expect("rng");
    b
}

/// An Argon2id PHC string as argon2-cffi writes it (16-byte salt, 32-byte hash).
pub fn argon2id(password: &str, m: u32, t: u32, p: u32) -> String {
    let params = Params::new(m, t, p, Some(32)).expect("params");
    let salt = argon2::password_hash::SaltString::encode_b64(&rand_bytes::<16>()).expect("salt");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

/// The original's current parameters.
pub fn original_hash(password: &str) -> String {
    argon2id(password, 65536, 3, 4)
}

/// An older deployment's parameters.
pub fn older_hash(password: &str) -> String {
    argon2id(password, 32768, 2, 2)
}

/// A connection to the fixture database.
pub async fn connect(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.url).await.expect("connect")
}

/// Builds an original-shaped database row by row.
pub struct Original {
    pub conn: PgConnection,
    pub now: DateTime<Utc>,
}

/// A user the builder created.
#[derive(Debug, Clone)]
pub struct OUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub token_version: i32,
}

/// A refresh token the builder created: the raw value a client holds.
#[derive(Debug, Clone)]
pub struct OToken {
    pub id: Uuid,
    pub raw: String,
    pub family_id: Uuid,
}

impl Original {
    /// Creates the original's schema (and its Alembic revision) in an empty database.
    pub async fn create(db: &TestDb) -> Self {
        let mut conn = connect(db).await;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .expect("schema");
        Self {
            conn,
            now: Utc::now(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn user(
        &mut self,
        email: &str,
        password: &str,
        hashed: String,
        role: &str,
        token_version: i32,
        age: Duration,
    ) -> OUser {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (email, hashed_password, full_name, is_active, is_verified, role,
                                token_version, id, created_at)
             VALUES ($1, $2, $3, TRUE, FALSE, $4::text::userrole, $5, $6, $7)",
        )
        .bind(email)
        .bind(hashed)
        .bind(format!("Full name of {email}"))
        .bind(role)
        .bind(token_version)
        .bind(id)
        .bind(self.now - age)
        .execute(&mut self.conn)
        .await
        .expect("insert user");
        OUser {
            id,
            email: email.to_owned(),
            password: password.to_owned(),
            token_version,
        }
    }

    /// One row of `refresh_tokens`, as the original's `create_token` (+ `revoke`).
    #[allow(clippy::too_many_arguments)]
    pub async fn token(
        &mut self,
        user: &OUser,
        family_id: Uuid,
        created_ago: Duration,
        expires_in: Duration,
        revoked: bool,
        device: Option<(&str, &str)>,
        ip: Option<&str>,
    ) -> OToken {
        let raw = token_urlsafe();
        let id = Uuid::now_v7();
        let created = self.now - created_ago;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, device_id, device_name,
                                         ip_address, expires_at, is_revoked, revoked_at, id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(hash_token(&raw))
        .bind(user.id)
        .bind(family_id)
        .bind(device.map(|d| d.0))
        .bind(device.map(|d| d.1))
        .bind(ip)
        .bind(self.now + expires_in)
        .bind(revoked)
        .bind(revoked.then_some(created + Duration::minutes(15)))
        .bind(id)
        .bind(created)
        .execute(&mut self.conn)
        .await
        .expect("insert token");
        OToken { id, raw, family_id }
    }

    /// A login followed by `rotations` rotations: every row revoked but the last.
    pub async fn chain(
        &mut self,
        user: &OUser,
        rotations: usize,
        device: Option<(&str, &str)>,
        ip: Option<&str>,
    ) -> Vec<OToken> {
        let family = Uuid::new_v4();
        let mut out = Vec::new();
        for i in 0..=rotations {
            let ago = Duration::hours(i64::try_from(rotations - i).unwrap_or(0) + 1);
            let live = i == rotations;
            out.push(
                self.token(
                    user,
                    family,
                    ago,
                    Duration::days(7) - ago,
                    !live,
                    device,
                    ip,
                )
                .await,
            );
        }
        out
    }
}

/// The original's repository statements (its `RefreshTokenRepository`), as the ORM
/// sends them: parameters typed as the columns are (`varchar`), times from the
/// application's clock. The rollback tests run them against an adopted database.
pub mod repo {
    use super::*;
    use sqlx::Row;

    pub async fn get_valid_by_hash(
        conn: &mut PgConnection,
        hash: &str,
    ) -> Option<(Uuid, Uuid, Uuid)> {
        sqlx::query(
            "SELECT id, user_id, family_id FROM refresh_tokens
             WHERE token_hash = $1::varchar AND is_revoked = false AND expires_at > $2",
        )
        .bind(hash)
        .bind(Utc::now())
        .fetch_optional(conn)
        .await
        .expect("get_valid_by_hash")
        .map(|r| (r.get("id"), r.get("user_id"), r.get("family_id")))
    }

    pub async fn get_by_hash(conn: &mut PgConnection, hash: &str) -> Option<bool> {
        sqlx::query("SELECT is_revoked FROM refresh_tokens WHERE token_hash = $1::varchar")
            .bind(hash)
            .fetch_optional(conn)
            .await
            .expect("get_by_hash")
            .map(|r| r.get("is_revoked"))
    }

    /// `create_token`: the ORM inserts every column it knows, `created_at` by default.
    pub async fn create_token(
        conn: &mut PgConnection,
        user_id: Uuid,
        hash: &str,
        family_id: Uuid,
    ) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, device_id, device_name,
                                         ip_address, expires_at, is_revoked, revoked_at, id, updated_at)
             VALUES ($1::varchar, $2, $3, NULL, NULL, NULL, $4, false, NULL, $5, NULL)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(family_id)
        .bind(Utc::now() + Duration::days(7))
        .bind(id)
        .execute(conn)
        .await?;
        Ok(id)
    }

    /// `revoke_token`: the ORM's flush of `token.revoke()`.
    pub async fn revoke_token(conn: &mut PgConnection, id: Uuid) {
        sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = true, revoked_at = $1, updated_at = $1 WHERE id = $2",
        )
        .bind(Utc::now())
        .bind(id)
        .execute(conn)
        .await
        .expect("revoke_token");
    }

    pub async fn revoke_family(conn: &mut PgConnection, family_id: Uuid) -> u64 {
        sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = true, revoked_at = $1
             WHERE family_id = $2 AND is_revoked = false",
        )
        .bind(Utc::now())
        .bind(family_id)
        .execute(conn)
        .await
        .expect("revoke_family")
        .rows_affected()
    }

    pub async fn revoke_all_user_tokens(conn: &mut PgConnection, user_id: Uuid) -> u64 {
        sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = true, revoked_at = $1
             WHERE user_id = $2 AND is_revoked = false",
        )
        .bind(Utc::now())
        .bind(user_id)
        .execute(conn)
        .await
        .expect("revoke_all_user_tokens")
        .rows_affected()
    }

    pub async fn get_user_active_sessions(conn: &mut PgConnection, user_id: Uuid) -> usize {
        sqlx::query(
            "SELECT id FROM refresh_tokens
             WHERE user_id = $1 AND is_revoked = false AND expires_at > $2
             ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(Utc::now())
        .fetch_all(conn)
        .await
        .expect("get_user_active_sessions")
        .len()
    }

    pub async fn cleanup_expired(conn: &mut PgConnection) -> u64 {
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(Utc::now())
            .execute(conn)
            .await
            .expect("cleanup_expired")
            .rows_affected()
    }

    /// The original's login lookup (exact email) and the columns its `User` model reads.
    pub async fn get_user_by_email(
        conn: &mut PgConnection,
        email: &str,
    ) -> Option<(Uuid, String, String, i32)> {
        sqlx::query(
            "SELECT id, hashed_password, role::text AS role, token_version, email, full_name,
                    is_active, is_verified, created_at, updated_at
             FROM users WHERE email = $1::varchar",
        )
        .bind(email)
        .fetch_optional(conn)
        .await
        .expect("get_user_by_email")
        .map(|r| {
            (
                r.get("id"),
                r.get("hashed_password"),
                r.get("role"),
                r.get("token_version"),
            )
        })
    }

    /// The original's registration: every column its model has, role as its enum.
    pub async fn create_user(conn: &mut PgConnection, email: &str, hashed: &str) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (email, hashed_password, full_name, is_active, is_verified, role,
                                token_version, id, updated_at)
             VALUES ($1::varchar, $2::varchar, NULL, true, false, 'user'::userrole, 0, $3, NULL)",
        )
        .bind(email)
        .bind(hashed)
        .bind(id)
        .execute(conn)
        .await
        .expect("create_user");
        id
    }
}
