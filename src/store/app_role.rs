//! The PostgreSQL role the server runs as, so that row-level security applies to it: the grants such a
//! role needs, and the checks that it really is subject to the policies (migrations/postgres/0006).
//!
//! The database owner runs migrations; the server connects as another role that may read and write tenant
//! data, only append to and read the audit tables, and only read the migration history (so that `serve`
//! starts on a migrated database without trying to migrate). Owners, superusers and `BYPASSRLS` roles are
//! not bound by the policies, so they are refused here.

use sqlx::Row;

use super::{Dialect, Store, StoreError};

/// Tables whose rows are never changed or removed (triggers enforce it too; migrations/postgres/0005).
const APPEND_ONLY: &[&str] = &["audit_log", "audit_checkpoints"];

/// sqlx's migration history: the server reads it to see whether migrations are pending.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// What `grant_app_role` granted, for the operator to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub table: String,
    pub privileges: &'static str,
}

/// A role name as an SQL identifier. Only plain names are accepted, so quoting is exact and nothing else
/// can ride along in the statement.
fn quoted_role(role: &str) -> Result<String, StoreError> {
    let plain = !role.is_empty()
        && role.len() <= 63
        && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !role.starts_with(|c: char| c.is_ascii_digit());
    if !plain {
        return Err(StoreError::Config(format!(
            "role {role:?}: must be 1-63 ASCII letters, digits or underscores, not starting with a digit"
        )));
    }
    Ok(format!("\"{role}\""))
}

impl Store {
    /// Grant `role` what the server needs on every table of the current schema: SELECT, INSERT, UPDATE
    /// and DELETE on tenant data; SELECT and INSERT on the audit tables; SELECT on the migration history.
    /// Run it as the owner after `migrate` (and again after upgrades that add tables). Refuses a role that
    /// would not be bound by row-level security.
    pub async fn grant_app_role(&self, role: &str) -> Result<Vec<Grant>, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Err(StoreError::Config(
                "grant-app-role: roles and row-level security exist only in PostgreSQL".to_owned(),
            ));
        }
        let quoted = quoted_role(role)?;
        self.check_bound_by_rls(role).await?;
        let pool = &self.pool.0;
        let tables: Vec<String> = sqlx::query(
            "SELECT tablename::text AS tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("tablename"))
        .collect::<Result<_, _>>()?;
        let mut tx = pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("GRANT USAGE ON SCHEMA \"{}\" TO {quoted}", self.schema().await?)))
            .execute(&mut *tx)
            .await?;
        let mut grants = Vec::with_capacity(tables.len());
        for table in tables {
            let privileges = if APPEND_ONLY.contains(&table.as_str()) {
                "SELECT, INSERT"
            } else if table == MIGRATIONS_TABLE {
                "SELECT"
            } else {
                "SELECT, INSERT, UPDATE, DELETE"
            };
            let ident = table.replace('"', "\"\"");
            sqlx::query(sqlx::AssertSqlSafe(format!("REVOKE ALL ON \"{ident}\" FROM {quoted}")))
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("GRANT {privileges} ON \"{ident}\" TO {quoted}")))
                .execute(&mut *tx)
                .await?;
            grants.push(Grant { table, privileges });
        }
        tx.commit().await?;
        Ok(grants)
    }

    async fn schema(&self) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT current_schema()::text AS s").fetch_one(&self.pool.0).await?;
        let schema: String = row.try_get("s")?;
        Ok(schema.replace('"', "\"\""))
    }

    /// Refuse a role that row-level security would not bind: a superuser, a `BYPASSRLS` role, or the
    /// tables' owner (or a member with the owner's privileges).
    async fn check_bound_by_rls(&self, role: &str) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT r.rolsuper, r.rolbypassrls, pg_has_role(r.oid, c.relowner, 'USAGE') AS owns
             FROM pg_roles r, pg_class c
             WHERE r.rolname = $1 AND c.oid = to_regclass('budgets')",
        )
        .bind(role)
        .fetch_optional(&self.pool.0)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Config(format!(
                "role {role:?} does not exist (or the database is not migrated): create it first, e.g. \
                 CREATE ROLE {role} LOGIN PASSWORD '…', and run `make-budget-mcp migrate` as the owner"
            )));
        };
        let why = if super::get_bool(&row, "rolsuper")? {
            Some("is a superuser")
        } else if super::get_bool(&row, "rolbypassrls")? {
            Some("has BYPASSRLS")
        } else if super::get_bool(&row, "owns")? {
            Some("owns the tables (or has their owner's privileges)")
        } else {
            None
        };
        match why {
            Some(why) => Err(StoreError::Config(format!(
                "role {role:?} {why}, so row-level security would not apply to it: the server needs a role of its own"
            ))),
            None => Ok(()),
        }
    }

    /// Whether the connected role is bound by row-level security (PostgreSQL; `None` for SQLite). The
    /// server logs a warning at start when it is not.
    pub async fn bound_by_row_security(&self) -> Result<Option<bool>, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT NOT (r.rolsuper OR r.rolbypassrls OR pg_has_role(r.oid, c.relowner, 'USAGE')) AS bound
             FROM pg_roles r, pg_class c
             WHERE r.rolname = current_user AND c.oid = to_regclass('budgets')",
        )
        .fetch_optional(&self.pool.0)
        .await?;
        Ok(Some(match row {
            Some(row) => super::get_bool(&row, "bound")?,
            None => false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        assert_eq!(quoted_role("mbm_server").unwrap(), "\"mbm_server\"");
        assert_eq!(quoted_role("App2").unwrap(), "\"App2\"");
        for bad in ["", "2app", "app; DROP TABLE budgets", "a\"b", "app-role", &"x".repeat(64)] {
            let e = quoted_role(bad).unwrap_err().to_string();
            assert!(e.contains("must be 1-63 ASCII letters"), "{bad:?}: {e}");
        }
    }
}
