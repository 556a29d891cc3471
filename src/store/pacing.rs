//! Pacing of Make API calls shared by every server instance on one database: a generic cell rate
//! algorithm (GCRA) whose whole state per key is one theoretical arrival time (`tat_us`, microseconds
//! since the Unix epoch), moved in one atomic upsert per call. Keys are Make organizations (with the host
//! they live on); the rate and the burst come from the caller (`make::pacer`). Not tenant data, so every
//! statement runs in system scope, like leases.

use sqlx::Row;

use super::{Dialect, Scope, Store, StoreError};

impl Store {
    /// Take one call for `key` at `now_us` under a GCRA with `period_us` between calls and a burst
    /// tolerance of `tolerance_us`. `Ok(None)`: taken. `Ok(Some(wait_us))`: refused; the next call is
    /// admitted `wait_us` from now.
    pub async fn reserve_make_call(
        &self,
        key: &str,
        now_us: i64,
        period_us: i64,
        tolerance_us: i64,
    ) -> Result<Option<i64>, StoreError> {
        let sql = self.dialect.pick(
            "INSERT INTO make_call_pacing (pace_key, tat_us) VALUES ($1, $2 + $3)
             ON CONFLICT (pace_key) DO UPDATE SET tat_us = MAX(make_call_pacing.tat_us, $2) + $3
             WHERE make_call_pacing.tat_us <= $2 + $4
             RETURNING tat_us",
            "INSERT INTO make_call_pacing (pace_key, tat_us) VALUES ($1, $2 + $3)
             ON CONFLICT (pace_key) DO UPDATE SET tat_us = GREATEST(make_call_pacing.tat_us, $2) + $3
             WHERE make_call_pacing.tat_us <= $2 + $4
             RETURNING tat_us",
        );
        let mut tx = self.scoped_tx(Scope::System, true).await?;
        let granted = sqlx::query(sql)
            .bind(key)
            .bind(now_us)
            .bind(period_us)
            .bind(tolerance_us)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let wait = if granted {
            None
        } else {
            let row = sqlx::query("SELECT tat_us FROM make_call_pacing WHERE pace_key = $1")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            let tat: i64 = row.try_get("tat_us")?;
            Some((tat - tolerance_us - now_us).max(1))
        };
        tx.commit().await?;
        Ok(wait)
    }

    /// Admit no call for `key` before `until_us` (Make answered 429: its window is spent), in every instance.
    pub async fn hold_make_calls(&self, key: &str, until_us: i64, tolerance_us: i64) -> Result<(), StoreError> {
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "INSERT INTO make_call_pacing (pace_key, tat_us) VALUES ($1, $2)
                 ON CONFLICT (pace_key) DO UPDATE SET tat_us = MAX(make_call_pacing.tat_us, excluded.tat_us)"
            }
            Dialect::Postgres => {
                "INSERT INTO make_call_pacing (pace_key, tat_us) VALUES ($1, $2)
                 ON CONFLICT (pace_key) DO UPDATE SET tat_us = GREATEST(make_call_pacing.tat_us, excluded.tat_us)"
            }
        };
        let mut tx = self.scoped_tx(Scope::System, true).await?;
        sqlx::query(sql).bind(key).bind(until_us + tolerance_us).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
