//! Persistence: one implementation for SQLite (the embedded default) and PostgreSQL (multi-tenant,
//! multi-instance), over sqlx's `Any` driver so both run the very same queries. The few real dialect
//! differences live in [`Dialect`].
//!
//! Shape of the API, and the invariants it enforces:
//! - Tenant-scoped work goes through [`Store::tenant`], which fixes the tenant for every query it runs;
//!   no method below it takes a tenant id.
//! - Every mutation happens inside a [`MutationTx`], whose only way to commit is
//!   [`MutationTx::commit`] with an [`AuditEntry`]: the audit record is appended to the tenant's chain
//!   in the same transaction, so a mutation without its audit record cannot be committed.
//! - Appends are serialised per tenant: a row lock on the chain head in PostgreSQL, the database write
//!   lock (`BEGIN IMMEDIATE`) in SQLite.

mod actions;
mod audit_log;
mod budgets;
mod make;
mod sql;
mod tenants;
mod thresholds;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row, Transaction};

pub use self::actions::{ItemRecord, NotificationRecord, PlanFilter, PlanRecord, WebhookRecord};
pub use self::audit_log::{AuditQuery, ChainReport, Checkpointing, ExportItem, Progress, VerifyReport};
pub use self::budgets::{BudgetFilter, BudgetPage};
pub use self::make::{
    ConnectionRecord, ConsumptionRow, DayUsage, OrgRecord, OrgSync, ScenarioFilter, ScenarioRecord, ScenarioSpend,
    ScopeUsage, UsageRow, UsageSubject,
};
pub use self::tenants::{TenantRecord, TokenRecord};
use crate::audit::{self, AuditEntry, AuditRecord};
use crate::domain::clock::format_timestamp;
use crate::domain::{Clock, TenantId};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::Config(format!(
                "database URL must start with sqlite:// or postgres:// (got {:?})",
                redact_url(url)
            )))
        }
    }

    /// Pick the statement for this dialect. Used for reads that lock a row they will update:
    /// PostgreSQL needs `FOR UPDATE`; SQLite has no such clause and needs none, because
    /// `BEGIN IMMEDIATE` already holds the database write lock.
    fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }
}

/// Errors from the store. `NotFound` and the conflicts are answers a caller acts on; the others are
/// internal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row within the tenant (a row of another tenant is indistinguishable from a missing one).
    #[error("not found")]
    NotFound,
    /// Optimistic concurrency: the caller's version is stale.
    #[error("version conflict: expected version {expected}, current version is {current}")]
    VersionConflict { expected: i64, current: i64 },
    /// A uniqueness rule was violated; the message says which.
    #[error("{0}")]
    Duplicate(String),
    #[error("configuration: {0}")]
    Config(String),
    /// A stored row could not be read back (should never happen; it means the database was edited).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Writing an export failed (a full disk, a closed pipe).
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(30) }
    }
}

/// The handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    clock: Arc<dyn Clock>,
    /// Set when an audit signing key is configured: appends sign checkpoints, verification checks them.
    checkpointing: Option<Arc<Checkpointing>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dialect", &self.dialect).finish_non_exhaustive()
    }
}

impl Store {
    /// Connect (creating an SQLite file and its directory if needed). Does not run migrations.
    pub async fn connect(url: &str, opts: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        let url = match dialect {
            Dialect::Sqlite => prepare_sqlite_url(url)?,
            Dialect::Postgres => url.to_owned(),
        };
        let connect_opts: AnyConnectOptions =
            url.parse().map_err(|e| StoreError::Config(format!("invalid database URL {}: {e}", redact_url(&url))))?;
        let mut pool_opts =
            AnyPoolOptions::new().max_connections(opts.max_connections).acquire_timeout(opts.acquire_timeout);
        if dialect == Dialect::Sqlite {
            pool_opts = pool_opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers proceed while a writer commits; a generous busy timeout makes
                    // concurrent writers queue instead of failing.
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 30000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        // One direct connection first: it fails fast with the real cause (refused, bad password, no such
        // database) where the pool would retry until its timeout and then only say "timed out".
        let probe =
            tokio::time::timeout(opts.acquire_timeout, AnyConnection::connect_with(&connect_opts)).await.map_err(
                |_| StoreError::Config(format!("no answer from the database within {:?}", opts.acquire_timeout)),
            )??;
        probe.close().await?;
        let pool = pool_opts.connect_with(connect_opts).await?;
        Ok(Self { pool, dialect, clock, checkpointing: None })
    }

    /// Apply pending migrations (forward only).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The raw pool, for administrative queries and tests.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Work within one tenant.
    pub fn tenant(&self, tenant: TenantId) -> TenantStore<'_> {
        TenantStore { store: self, tenant }
    }

    /// A cheap liveness probe of the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.dialect {
            // Take the write lock up front: a deferred transaction that reads and then writes can fail
            // with SQLITE_BUSY instead of waiting when another writer got there first.
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }
}

/// Tenant-scoped access: every query it runs is filtered by its tenant.
#[derive(Clone, Copy)]
pub struct TenantStore<'a> {
    store: &'a Store,
    tenant: TenantId,
}

impl<'a> TenantStore<'a> {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    /// Start a mutation. Commit it with [`MutationTx::commit`]; dropping it rolls back.
    pub async fn begin(&self) -> Result<MutationTx, StoreError> {
        Ok(MutationTx {
            tx: self.store.begin().await?,
            tenant: self.tenant,
            store: self.store.clone(),
            signed: Vec::new(),
        })
    }

    /// Append an audit record that accompanies no mutation (a denied call), in its own transaction.
    pub async fn record(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.begin().await?.commit(entry).await
    }
}

/// A mutation in progress within one tenant.
pub struct MutationTx {
    tx: Transaction<'static, Any>,
    tenant: TenantId,
    store: Store,
    /// Checkpoints signed by this transaction's appends, logged once it commits.
    signed: Vec<audit::Checkpoint>,
}

impl MutationTx {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    /// The store clock's current time (for timestamps written in this transaction).
    pub fn now(&self) -> jiff::Timestamp {
        self.store.clock.now()
    }

    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    fn dialect(&self) -> Dialect {
        self.store.dialect
    }

    /// Append an audit record for a further step of this mutation (e.g. the plan a crossing created);
    /// it commits, or not, with the rest. The final record is the one given to [`MutationTx::commit`].
    pub async fn record_also(&mut self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let at = format_timestamp(self.store.clock.now());
        let tenant = self.tenant;
        let dialect = self.dialect();
        let checkpointing = self.store.checkpointing.clone();
        let (record, signed) =
            audit_log::append(self.conn(), dialect, checkpointing.as_deref(), tenant, at, entry).await?;
        self.signed.extend(signed);
        Ok(record)
    }

    /// Append `entry` to the tenant's audit chain and commit, all in this one transaction.
    pub async fn commit(mut self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let at = format_timestamp(self.store.clock.now());
        let tenant = self.tenant;
        let dialect = self.dialect();
        let checkpointing = self.store.checkpointing.clone();
        let (record, signed) =
            audit_log::append(self.conn(), dialect, checkpointing.as_deref(), tenant, at, entry).await?;
        self.tx.commit().await?;
        self.signed.iter().chain(&signed).for_each(audit_log::log_signed);
        Ok(record)
    }
}

/// Read a boolean column. SQLite keeps booleans as integers and the `Any` driver hands them back as
/// such; PostgreSQL returns real booleans.
fn get_bool(row: &sqlx::any::AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<bool, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(col)? != 0),
    }
}

/// Is this a unique violation of the named constraint? PostgreSQL reports the constraint name;
/// SQLite reports the columns, e.g. "UNIQUE constraint failed: budgets.tenant_id, budgets.name".
fn is_unique_violation(e: &sqlx::Error, pg_constraint: &str, sqlite_columns: &str) -> bool {
    match e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            db.constraint() == Some(pg_constraint) || db.message().contains(sqlite_columns)
        }
        _ => false,
    }
}

/// The default SQLite database: `<data dir>/make-budget-mcp/make-budget.sqlite3`.
pub fn default_sqlite_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "make-budget-mcp").map(|d| d.data_dir().join("make-budget.sqlite3"))
}

/// Make sure the file's directory exists and the URL asks SQLite to create the file.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_owned());
    }
    if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Config(format!("cannot create database directory {}: {e}", dir.display())))?;
    }
    let query = if query.split('&').any(|kv| kv.starts_with("mode=")) {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_dialects_and_hide_passwords() {
        assert_eq!(Dialect::from_url("sqlite:///tmp/x.db").unwrap(), Dialect::Sqlite);
        assert_eq!(Dialect::from_url("postgres://u@h/db").unwrap(), Dialect::Postgres);
        assert_eq!(Dialect::from_url("postgresql://u@h/db").unwrap(), Dialect::Postgres);
        let e = Dialect::from_url("mysql://root:hunter2@h/db").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn sqlite_urls_get_create_mode_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/db.sqlite3");
        let url = prepare_sqlite_url(&format!("sqlite://{}", path.display())).unwrap();
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(path.parent().unwrap().is_dir());
        let url = prepare_sqlite_url(&format!("sqlite://{}?mode=ro", path.display())).unwrap();
        assert!(url.ends_with("?mode=ro"), "{url}");
    }
}
