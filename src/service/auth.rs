//! Logging in, rotating refresh tokens, logging out, and authenticating bearers.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{event, events, parse_uuid, truncate, ClientContext, Counters, Rotor};
use crate::{
    domain::{
        email::EmailKey,
        rotation::{self, PresentedToken, Verdict},
        token::RawToken,
    },
    error::{Error, Result},
    jwt::TokenRejected,
    storage::{
        change::{Change, When, Write},
        NewAuditEvent, NewRefreshToken, NewSession, Rotation, User, UserPatch,
    },
};

/// A refresh token handed to a client.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The token itself; only its hash is stored.
    pub raw: RawToken,
    /// Its idle expiry.
    pub expires_at: DateTime<Utc>,
    /// Seconds until `expires_at`, for the cookie's `Max-Age`.
    pub max_age: i64,
}

/// A successful password login: a new session.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The account.
    pub user: User,
    /// A signed access token.
    pub access_token: String,
    /// The session's first refresh token.
    pub refresh: Issued,
    /// The new session (family) id.
    pub session_id: Uuid,
}

/// A successful refresh: the successor token and a new access token.
#[derive(Debug, Clone)]
pub struct RefreshOutcome {
    /// The account.
    pub user_id: Uuid,
    /// The session (family).
    pub session_id: Uuid,
    /// A signed access token.
    pub access_token: String,
    /// The successor refresh token.
    pub refresh: Issued,
    /// True when this answered a retry within the grace window with the successor
    /// already issued, rather than rotating.
    pub reused: bool,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account, as loaded for this request.
    pub user: User,
    /// The session (refresh family) the access token was issued for.
    pub session_id: Option<Uuid>,
}

const MSG_REFRESH_INVALID: &str = "Invalid or expired refresh token";

impl Rotor {
    /// Checks credentials and opens a session. Unknown email, wrong password and
    /// inactive account all answer `InvalidCredentials` after the same Argon2 work.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        ctx: &ClientContext,
    ) -> Result<LoginOutcome> {
        let user = match self.store.get_user_by_email(&EmailKey::of(email)).await? {
            Some(user) => Some(user),
            None => self.store.get_user_by_unkeyed_email(email).await?,
        };
        let verified = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.hashed_password.as_str()))
            .await?;
        let user = match user {
            Some(u) if verified.ok && u.is_active => u,
            other => {
                Counters::add(&self.counters.logins_failed, 1);
                let (user_id, detail) = match &other {
                    Some(u) if !u.is_active => (Some(u.id), "inactive account".to_owned()),
                    Some(u) => (Some(u.id), "wrong password".to_owned()),
                    // Not linked to any user: visible to admins only. Never the raw
                    // input (it may be a password typed into the wrong field): a keyed
                    // fingerprint that correlates repeated attempts.
                    None => (
                        None,
                        format!(
                            "unknown email (fingerprint {})",
                            self.identifier_key.fingerprint(email)
                        ),
                    ),
                };
                self.audit(events::LOGIN_FAILED, user_id, None, ctx, Some(detail))
                    .await?;
                return Err(Error::InvalidCredentials);
            }
        };
        // One transaction: the hash upgrade, the session and the audit rows.
        let mut change = Change::new(self.now());
        if verified.needs_rehash {
            // Upgrade hashes from the original's parameters without bumping
            // token_version: a rehash must not log the user out elsewhere.
            let rehashed = self.hasher.hash(password).await?;
            let detail = crate::password::parameters(&user.hashed_password)
                .map(|from| format!("rehashed from {from}"));
            change = change
                .then(Write::RehashPassword {
                    id: user.id,
                    hashed_password: rehashed,
                })
                .audit(event(
                    events::PASSWORD_REHASHED,
                    Some(user.id),
                    None,
                    ctx,
                    detail,
                ));
        }
        let (opened, outcome) = self.new_session(&user, ctx)?;
        let change = change.then(opened).audit(event(
            events::LOGIN_SUCCEEDED,
            Some(user.id),
            Some(outcome.session_id),
            ctx,
            None,
        ));
        self.commit(change).await?;
        Counters::add(&self.counters.logins_ok, 1);
        Ok(outcome)
    }

    /// Creates a session (refresh family) for a user the caller has authenticated by
    /// other means (an embedding application's own login, SSO). `login` uses it after
    /// checking the password. Does not check `is_active`.
    pub async fn open_session(&self, user: &User, ctx: &ClientContext) -> Result<LoginOutcome> {
        let (opened, outcome) = self.new_session(user, ctx)?;
        self.commit(Change::new(self.now()).then(opened)).await?;
        Ok(outcome)
    }

    /// The write that opens a session for `user`, and what the client gets once it is
    /// committed.
    fn new_session(&self, user: &User, ctx: &ClientContext) -> Result<(Write, LoginOutcome)> {
        let now = self.now();
        let session_id = Uuid::now_v7();
        let absolute_end = now + chrono::Duration::days(self.settings.session_max_lifetime_days);
        let expires_at =
            rotation::successor_expiry(now, self.refresh_lifetime(), Some(absolute_end));
        let raw = RawToken::generate();
        let device_id = ctx.device_id.as_deref().map(|s| truncate(s, 255));
        let device_name = ctx.device_name.as_deref().map(|s| truncate(s, 100));
        let session = NewSession {
            id: session_id,
            user_id: user.id,
            device_id: device_id.clone(),
            device_name: device_name.clone(),
            user_agent: ctx.user_agent.as_deref().map(|s| truncate(s, 512)),
            ip_address: ctx.ip.clone(),
            client_id: ctx.client_id.as_deref().map(|s| truncate(s, 255)),
            absolute_expires_at: absolute_end,
        };
        let first_token = NewRefreshToken {
            id: Uuid::now_v7(),
            user_id: user.id,
            token_hash: raw.hash(),
            family_id: session_id,
            expires_at,
            device_id,
            device_name,
            ip_address: ctx.ip.clone(),
            is_revoked: false,
        };
        let access_token = self
            .tokens
            .issue(user.id, user.token_version, Some(session_id), now)?;
        let outcome = LoginOutcome {
            user: user.clone(),
            access_token,
            refresh: Issued {
                raw,
                expires_at,
                max_age: (expires_at - now).num_seconds(),
            },
            session_id,
        };
        Ok((
            Write::CreateSession {
                session,
                first_token,
            },
            outcome,
        ))
    }

    /// Rotates a refresh token.
    ///
    /// A live token is revoked and replaced in one atomic step. A token rotated no
    /// more than `REFRESH_REUSE_GRACE_SECONDS` ago whose successor is still the
    /// family's live token gets that same successor again. Any other revoked token is
    /// a replay: the whole family is revoked (committed before this returns) and the
    /// answer is `TokenRevoked`.
    pub async fn refresh(&self, presented: &str, ctx: &ClientContext) -> Result<RefreshOutcome> {
        let raw = RawToken::parse(presented).ok_or(Error::Token(MSG_REFRESH_INVALID))?;
        let now = self.now();
        let presented_hash = raw.hash();
        let successor = self.successor_key.successor(&raw);
        let successor_hash = successor.hash();
        let rotation = Rotation {
            presented_hash: &presented_hash,
            successor_id: Uuid::now_v7(),
            successor_hash: &successor_hash,
            expires_at: now + self.refresh_lifetime(),
            ip_address: ctx.ip.as_deref(),
            user_agent: ctx.user_agent.as_deref(),
            event_id: Uuid::now_v7(),
            now,
        };
        if let Some(rotated) = self.store.rotate(&rotation).await? {
            let t = &rotated.token;
            let access_token =
                self.tokens
                    .issue(t.user_id, rotated.token_version, Some(t.family_id), now)?;
            Counters::add(&self.counters.refreshes, 1);
            return Ok(RefreshOutcome {
                user_id: t.user_id,
                session_id: t.family_id,
                access_token,
                refresh: Issued {
                    raw: successor,
                    expires_at: t.expires_at,
                    max_age: (t.expires_at - now).num_seconds(),
                },
                reused: false,
            });
        }

        // Not rotated: judge what the store holds for the presented token.
        let stored = self.store.get_by_hash(&presented_hash).await?;
        let view = stored.as_ref().map(|t| PresentedToken {
            is_revoked: t.is_revoked,
            revoked_at: t.revoked_at,
            expires_at: t.expires_at,
        });
        match rotation::judge(view.as_ref(), now, self.grace()) {
            Verdict::Unknown | Verdict::Expired => Err(Error::Token(MSG_REFRESH_INVALID)),
            Verdict::NotUsable => {
                let token = stored
                    .as_ref()
                    .expect("BUG: NotUsable implies a stored token");
                match self.store.get_user(token.user_id).await? {
                    Some(u) if !u.is_active => Err(Error::InactiveUser),
                    _ => Err(Error::Token(MSG_REFRESH_INVALID)),
                }
            }
            Verdict::GraceCandidate => {
                let token = stored.expect("BUG: GraceCandidate implies a stored token");
                let live_successor = self.store.get_valid_by_hash(&successor_hash, now).await?;
                let user = self.store.get_user(token.user_id).await?;
                match (live_successor, user) {
                    (Some(next), Some(user))
                        if next.family_id == token.family_id
                            && user.is_active
                            && !self.store.session_revoked(token.family_id).await? =>
                    {
                        let access_token = self.tokens.issue(
                            user.id,
                            user.token_version,
                            Some(next.family_id),
                            now,
                        )?;
                        self.store
                            .touch_session(next.family_id, ctx.ip.as_deref(), now)
                            .await?;
                        Counters::add(&self.counters.grace_reuses, 1);
                        Ok(RefreshOutcome {
                            user_id: user.id,
                            session_id: next.family_id,
                            access_token,
                            refresh: Issued {
                                raw: successor,
                                expires_at: next.expires_at,
                                max_age: (next.expires_at - now).num_seconds().max(0),
                            },
                            reused: true,
                        })
                    }
                    (_, Some(user)) if !user.is_active => Err(Error::InactiveUser),
                    _ => self.replay(&token, ctx).await,
                }
            }
            Verdict::Replay => {
                let token = stored.expect("BUG: Replay implies a stored token");
                self.replay(&token, ctx).await
            }
        }
    }

    /// Revokes the family of a replayed token; the revocation is committed when this
    /// returns its error.
    async fn replay(
        &self,
        token: &crate::storage::RefreshToken,
        ctx: &ClientContext,
    ) -> Result<RefreshOutcome> {
        // The revocation and its audit row commit before the 401 leaves.
        let change = Change::new(self.now())
            .then(Write::RevokeFamily {
                family_id: token.family_id,
            })
            .audit(event(
                events::REPLAY_DETECTED,
                Some(token.user_id),
                Some(token.family_id),
                ctx,
                Some("family revoked ({revoked} live tokens)".into()),
            ));
        let revoked = self.commit(change).await?.revoked;
        Counters::add(&self.counters.replays, 1);
        tracing::warn!(
            user_id = %token.user_id,
            family_id = %token.family_id,
            token_hash = %token.token_hash,
            revoked,
            "refresh token replay detected; family revoked"
        );
        Err(Error::TokenRevoked)
    }

    /// Ends the session of the presented refresh token, if it exists. Unknown tokens
    /// are ignored: logging out is idempotent.
    pub async fn logout(&self, presented: &str, ctx: &ClientContext) -> Result<()> {
        let Some(raw) = RawToken::parse(presented) else {
            return Ok(());
        };
        if let Some(token) = self.store.get_by_hash(&raw.hash()).await? {
            self.end_family(
                token.family_id,
                event(
                    events::LOGOUT,
                    Some(token.user_id),
                    Some(token.family_id),
                    ctx,
                    None,
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Revokes a family and, if that ended anything, records `audit`: one transaction.
    /// Returns whether the session was live.
    pub(crate) async fn end_family(&self, family_id: Uuid, audit: NewAuditEvent) -> Result<bool> {
        let change = Change::new(self.now())
            .then(Write::RevokeFamily { family_id })
            .then(Write::Audit {
                event: audit,
                when: When::IfRevoked,
            });
        let ended = self.commit(change).await?.revoked > 0;
        if ended {
            Counters::add(&self.counters.sessions_revoked, 1);
        }
        Ok(ended)
    }

    /// Ends every session of the caller and kills every access token (bumps
    /// `token_version`). Returns the number of sessions ended.
    pub async fn logout_all(&self, principal: &Principal, ctx: &ClientContext) -> Result<u64> {
        let bump = Write::BumpTokenVersion {
            id: principal.user.id,
        };
        self.end_sessions(principal, None, events::LOGOUT_ALL, Some(bump), ctx)
            .await
    }

    /// Ends every session of the caller except `keep` and records `kind` (with `also`,
    /// a further write, in the same transaction); returns how many sessions ended.
    pub(crate) async fn end_sessions(
        &self,
        principal: &Principal,
        keep: Option<Uuid>,
        kind: &'static str,
        also: Option<Write>,
        ctx: &ClientContext,
    ) -> Result<u64> {
        let mut change = Change::new(self.now()).then(Write::EndUserSessions {
            user_id: principal.user.id,
            keep,
        });
        if let Some(write) = also {
            change = change.then(write);
        }
        let change = change.audit(event(
            kind,
            Some(principal.user.id),
            principal.session_id,
            ctx,
            Some("{ended} sessions".into()),
        ));
        let n = self.commit(change).await?.ended;
        Counters::add(&self.counters.sessions_revoked, n);
        Ok(n)
    }

    /// Authenticates a bearer access token: signature and algorithm, `exp`, `type`,
    /// `token_version`, the user existing and active, and its session not ended.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        let now = self.now();
        let claims = match self.tokens.verify(bearer, now) {
            Ok(c) => c,
            Err(TokenRejected::UnknownKey) if self.reload_keys_for_unknown_kid().await => self
                .tokens
                .verify(bearer, now)
                .map_err(|_| Error::NotAuthenticated)?,
            Err(_) => return Err(Error::NotAuthenticated),
        };
        let user_id = parse_uuid(&claims.sub).ok_or(Error::NotAuthenticated)?;
        let session_id = match claims.sid.as_deref() {
            Some(sid) => Some(parse_uuid(sid).ok_or(Error::NotAuthenticated)?),
            None => None,
        };
        // Ending a session stops its access tokens at once, on every process.
        let (user, session_ended) = self
            .store
            .user_and_session_ended(user_id, session_id)
            .await?
            .ok_or(Error::NotAuthenticated)?;
        if !user.is_active || user.token_version != claims.token_version || session_ended {
            return Err(Error::NotAuthenticated);
        }
        Ok(Principal { user, session_id })
    }

    /// Another process may have rotated the key ring; reload it at most every 5 s.
    async fn reload_keys_for_unknown_kid(&self) -> bool {
        if self.settings.jwt_algorithm.is_symmetric() {
            return false;
        }
        {
            let mut last = self
                .last_key_reload
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5)) {
                return false;
            }
            *last = Some(std::time::Instant::now());
        }
        match self.tokens.load(self.store.as_ref()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "reloading the signing key ring failed");
                false
            }
        }
    }

    /// Changes the caller's password after checking the current one; bumps
    /// `token_version` and ends every other session (the caller's stays).
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &str,
        ctx: &ClientContext,
    ) -> Result<()> {
        let user = self
            .store
            .get_user(principal.user.id)
            .await?
            .ok_or(Error::NotAuthenticated)?;
        if !self
            .hasher
            .verify(current, Some(&user.hashed_password))
            .await?
            .ok
        {
            return Err(Error::InvalidCredentials);
        }
        let hashed = self.hasher.hash(new).await?;
        // One transaction: the new hash (which bumps token_version), every other
        // session ended, the audit row. A failure leaves the old password and sessions.
        let change = Change::new(self.now())
            .then(Write::UpdateUser {
                id: user.id,
                patch: UserPatch {
                    hashed_password: Some(hashed),
                    ..UserPatch::default()
                },
            })
            .then(Write::EndUserSessions {
                user_id: user.id,
                keep: principal.session_id,
            })
            .audit(event(
                events::PASSWORD_CHANGED,
                Some(user.id),
                principal.session_id,
                ctx,
                Some("{ended} other sessions ended".into()),
            ));
        let ended = self.commit(change).await?.ended;
        Counters::add(&self.counters.sessions_revoked, ended);
        Ok(())
    }
}
