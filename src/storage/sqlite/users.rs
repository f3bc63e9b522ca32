//! [`UserStore`] on SQLite.

use super::*;

fn get_user(c: &Connection, id: Uuid) -> StoreResult<Option<User>> {
    static SELECT: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {USER_COLS} FROM users WHERE id = ?1"));
    one(c, &SELECT, [id.to_string()], rows::user)
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
        self.read(move |c| get_user(c, id)).await
    }

    async fn get_user_by_email(&self, key: &EmailKey) -> StoreResult<Option<User>> {
        let key = key.as_str().to_owned();
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLS} FROM users WHERE email_key = ?1"),
                [key],
                rows::user,
            )
        })
        .await
    }

    async fn get_user_by_unkeyed_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_owned();
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLS} FROM users WHERE email_key IS NULL AND email = ?1"),
                [email],
                rows::user,
            )
        })
        .await
    }

    async fn email_exists(&self, key: &EmailKey) -> StoreResult<bool> {
        let key = key.as_str().to_owned();
        self.read(move |c| count(c, "SELECT count(*) FROM users WHERE email_key = ?1", [key]))
            .await
            .map(|n| n > 0)
    }

    async fn update_user(
        &self,
        id: Uuid,
        patch: &UserPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        if patch.is_empty() {
            return self.get_user(id).await;
        }
        let p = patch.clone();
        self.write(move |c| writes::update_user(c, id, &p, now))
            .await
    }

    async fn list_users(&self, skip: u64, limit: u64) -> StoreResult<Vec<User>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {USER_COLS} FROM users ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
                ),
                [int(limit), int(skip)],
                rows::user,
            )
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|c| count(c, "SELECT count(*) FROM users", []))
            .await
    }
}
