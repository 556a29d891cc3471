//! Leases: a named unit of work (a plan's execution, an organization's sync) held by one worker until it
//! expires. Bookkeeping across tenants, not tenant data, and not audited.

use super::{InScope, Store, StoreError};

impl Store {
    /// Take the lease `name` for `holder` until `expires_at`, if it is free, expired or already ours.
    /// Atomic in both databases (one upsert); returns whether `holder` has it now.
    pub async fn try_lease(&self, name: &str, holder: &str, now: &str, expires_at: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(expires_at)
        .bind(now)
        .execute_in(self.system())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give a lease back (only if `holder` still has it).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute_in(self.system())
            .await?;
        Ok(())
    }
}
