//! Device sessions and the security log, as their owner sees them.

use uuid::Uuid;

use super::{event, events, ClientContext, Principal, Rotor};
use crate::{
    error::{Error, Result},
    storage::{AuditEvent, EventFilter, SessionView},
};

impl Rotor {
    /// The caller's live sessions, most recently used first.
    pub async fn list_sessions(&self, principal: &Principal) -> Result<Vec<SessionView>> {
        Ok(self
            .store
            .list_user_sessions(principal.user.id, self.now())
            .await?)
    }

    /// Ends one of the caller's sessions. Another user's session, or one that does not
    /// exist, is `SessionNotFound` alike, so the answer reveals nothing.
    pub async fn revoke_session(
        &self,
        principal: &Principal,
        id: Uuid,
        ctx: &ClientContext,
    ) -> Result<()> {
        let now = self.now();
        let owned = self
            .store
            .list_user_sessions(principal.user.id, now)
            .await?
            .iter()
            .any(|s| s.id == id);
        if !owned {
            return Err(Error::SessionNotFound);
        }
        self.end_family(
            id,
            event(
                events::SESSION_REVOKED,
                Some(principal.user.id),
                Some(id),
                ctx,
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// Ends every session of the caller but the current one; returns how many.
    pub async fn logout_others(&self, principal: &Principal, ctx: &ClientContext) -> Result<u64> {
        self.end_sessions(
            principal,
            principal.session_id,
            events::LOGOUT_OTHERS,
            None,
            ctx,
        )
        .await
    }

    /// One page of audit events (newest first) and the total.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        page: u32,
        size: u32,
    ) -> Result<(Vec<AuditEvent>, u64)> {
        let skip = u64::from(page.saturating_sub(1)) * u64::from(size);
        let items = self
            .store
            .list_events(filter, skip, u64::from(size))
            .await?;
        let total = self.store.count_events(filter).await?;
        Ok((items, total))
    }
}
