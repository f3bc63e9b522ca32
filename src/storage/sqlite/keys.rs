//! [`KeyStore`] on SQLite.

use super::*;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, k: &StoredKey) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |c| {
            exec(
                c,
                &format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    k.kid,
                    k.algorithm,
                    k.public_key,
                    k.private_key_sealed,
                    ts(k.created_at),
                    k.retired_at.map(ts),
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.read(|c| {
            all(
                c,
                &format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at DESC, kid DESC"),
                [],
                rows::key,
            )
        })
        .await
    }

    async fn retire_key(&self, kid: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let kid = kid.to_owned();
        self.write(move |c| {
            exec(
                c,
                "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL",
                [kid, ts(now)],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn delete_keys_retired_before(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<String>> {
        self.write(move |c| {
            all(
                c,
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= ?1 RETURNING kid",
                [ts(cutoff)],
                |r| Ok(r.get(0)?),
            )
        })
        .await
    }
}
