//! The OAuth 2.0 views of rotor's tokens: revocation (RFC 7009) and introspection
//! (RFC 7662). Issuing goes through the same `login` and `refresh` as `/v1`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{event, events, parse_uuid, ClientContext, Rotor};
use crate::{domain::token::RawToken, error::Result};

/// What introspection reveals about an active token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    /// `access_token` or `refresh_token`.
    pub token_type: &'static str,
    /// The owner.
    pub user_id: Uuid,
    /// The owner's email.
    pub username: String,
    /// The session (family), if known.
    pub session_id: Option<Uuid>,
    /// The OAuth client that started the session, if any.
    pub client_id: Option<String>,
    /// Issued at (Unix seconds).
    pub issued_at: i64,
    /// Expires at (Unix seconds).
    pub expires_at: i64,
    /// The access token's `jti`.
    pub jti: Option<String>,
    /// The access token's `iss`.
    pub iss: Option<String>,
    /// The access token's `aud`.
    pub aud: Option<String>,
}

impl Rotor {
    /// Revokes whatever `token` is: a refresh token ends its session; an access token
    /// ends the session it was issued for. Unknown tokens are ignored (RFC 7009 §2.2).
    pub async fn revoke_any(&self, token: &str, ctx: &ClientContext) -> Result<()> {
        let now = self.now();
        let family = if let Ok(claims) = self.tokens.verify(token, now) {
            claims
                .sid
                .as_deref()
                .and_then(parse_uuid)
                .zip(parse_uuid(&claims.sub))
        } else if let Some(raw) = RawToken::parse(token) {
            self.store
                .get_by_hash(&raw.hash())
                .await?
                .map(|t| (t.family_id, t.user_id))
        } else {
            None
        };
        if let Some((family_id, user_id)) = family {
            self.end_family(
                family_id,
                event(
                    events::TOKEN_REVOKED,
                    Some(user_id),
                    Some(family_id),
                    ctx,
                    Some("oauth revoke".into()),
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Describes an active access or refresh token; `None` for anything inactive.
    pub async fn introspect(&self, token: &str) -> Result<Option<Introspection>> {
        let now = self.now();
        if self.tokens.verify(token, now).is_ok() {
            let Ok(principal) = self.authenticate(token).await else {
                return Ok(None);
            };
            let claims = self.tokens.verify(token, now).ok();
            let Some(claims) = claims else {
                return Ok(None);
            };
            let client_id = match principal.session_id {
                Some(sid) => self.store.get_session(sid).await?.and_then(|s| s.client_id),
                None => None,
            };
            return Ok(Some(Introspection {
                token_type: "access_token",
                user_id: principal.user.id,
                username: principal.user.email,
                session_id: principal.session_id,
                client_id,
                issued_at: claims.iat,
                expires_at: claims.exp,
                jti: claims.jti,
                iss: claims.iss,
                aud: claims.aud,
            }));
        }
        let Some(raw) = RawToken::parse(token) else {
            return Ok(None);
        };
        let Some(t) = self.store.get_valid_by_hash(&raw.hash(), now).await? else {
            return Ok(None);
        };
        let Some(user) = self
            .store
            .get_user(t.user_id)
            .await?
            .filter(|u| u.is_active)
        else {
            return Ok(None);
        };
        let session = self.store.get_session(t.family_id).await?;
        if session.as_ref().is_some_and(|s| s.revoked_at.is_some()) {
            return Ok(None);
        }
        Ok(Some(Introspection {
            token_type: "refresh_token",
            user_id: user.id,
            username: user.email,
            session_id: Some(t.family_id),
            client_id: session.and_then(|s| s.client_id),
            issued_at: t.created_at.timestamp(),
            expires_at: t.expires_at.timestamp(),
            jti: None,
            iss: Some(self.settings.issuer().to_owned()),
            aud: None,
        }))
    }

    /// Seconds an access token issued now lives.
    pub fn access_lifetime_seconds(&self) -> i64 {
        self.tokens.lifetime().num_seconds()
    }

    /// When the access token issued at `now` expires.
    pub fn access_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.tokens.lifetime()
    }
}
