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
//! - Every statement runs in a transaction that names its [`Scope`] (one tenant, or the system's work
//!   across tenants). In PostgreSQL the scope is a transaction-local setting that the row-level security
//!   policies check (migrations/postgres/0006_row_level_security.sql), a second wall behind the
//!   `WHERE tenant_id = …` of every query. The pool is wrapped so that no store query reaches a connection
//!   except through [`Store::scoped_tx`]: forgetting the scope does not compile. (Only the migrator, the
//!   catalogue queries of `app_role.rs` and the raw [`Store::pool`] for tests bypass it; none of them reads
//!   tenant data.)
//!
//! One file per subject, each adding its methods to [`MutationTx`] (writes), [`TenantStore`] (reads within
//! a tenant) and [`Store`] (work across tenants):
//! - `tenants.rs` tenants and API tokens; `budgets.rs` budgets; `thresholds.rs` thresholds and their
//!   crossing state; `threshold_actions.rs` what a crossing does; `plans.rs` action plans and their items;
//!   `webhooks.rs` webhooks and the notification outbox;
//! - `connections.rs` Make connections and organizations; `scenarios.rs` synced scenarios and the critical
//!   mark; `make_sync.rs` the write of one organization's sync; `usage.rs` daily usage, consumption and a
//!   scope's usage (the scope rule itself is `domain::scope_usage`);
//! - `audit_log.rs` the audit chain, its checkpoints, verification and export; `changes.rs` the bus of
//!   committed budget changes; `leases.rs` and `pacing.rs` coordination between instances (not tenant data);
//!   `app_role.rs` PostgreSQL role grants; `sql.rs` the dynamic query builder.

mod app_role;
mod audit_log;
mod budgets;
pub mod changes;
mod connections;
mod leases;
mod make_sync;
mod pacing;
mod plans;
mod scenarios;
mod sql;
mod tenants;
mod threshold_actions;
mod thresholds;
mod usage;
mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyQueryResult, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row, Transaction};

pub use self::app_role::Grant;
pub use self::audit_log::{AuditQuery, ChainReport, Checkpointing, ExportItem, Progress, VerifyReport};
pub use self::budgets::{BudgetFilter, BudgetPage};
pub use self::connections::{ConnectionRecord, OrgRecord};
pub use self::make_sync::{OrgSync, ScenarioSeries, SyncState};
pub use self::plans::{ItemRecord, PlanFilter, PlanRecord};
pub use self::scenarios::{ScenarioFilter, ScenarioRecord};
pub use self::tenants::{TenantRecord, TokenRecord};
pub use self::thresholds::ThresholdBook;
pub use self::usage::{ConsumptionRow, UsageRow, UsageSubject};
pub use self::webhooks::{Attempt, NotificationRecord, WebhookRecord};
// The scope rule is the domain's; these stay reachable here, where the usage reads return them.
use crate::audit::{self, AuditEntry, AuditRecord};
use crate::domain::clock::format_timestamp;
pub use crate::domain::scope_usage::{DayUsage, OrgUsage, ScenarioSpend, ScopeUsage};
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

/// Whose rows a transaction may see and change. In PostgreSQL this is what the row-level security
/// policies check; SQLite has no such wall (one file, one process's data) and ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// One tenant's rows only.
    Tenant(TenantId),
    /// Work across tenants that no tenant's principal drives: token lookup by hash, tenant
    /// administration, the evaluator's and the notifier's scans, leases, verification of every chain.
    System,
}

impl Scope {
    /// The statement that opens a PostgreSQL transaction in this scope. `BEGIN` and the transaction-local
    /// setting travel in one simple-protocol message, so scoping costs no round trip of its own. The
    /// tenant id is a UUID (its type admits nothing else), so inlining it cannot inject SQL.
    fn postgres_begin(self) -> String {
        match self {
            Scope::Tenant(t) => format!("BEGIN; SELECT set_config('mbm.tenant_id', '{t}', true)"),
            Scope::System => "BEGIN; SELECT set_config('mbm.scope', 'system', true)".to_owned(),
        }
    }
}

/// The connection pool, reachable only through a transaction that names its [`Scope`] (or, on SQLite,
/// which has no row-level security, a single read through [`Scoped::read_one`]).
#[derive(Clone)]
struct ScopedPool(AnyPool);

/// Where a single statement runs: its own transaction in `scope` (on SQLite, a read needs none; see
/// [`Scoped::read_one`]). Reads end by rollback when the transaction is dropped, which the pool performs
/// with the ping it sends on every release anyway, so a scoped read on PostgreSQL costs the caller one
/// round trip more than an unscoped one (the `BEGIN`).
#[derive(Clone, Copy)]
pub(crate) struct Scoped<'a> {
    store: &'a Store,
    scope: Scope,
}

impl Scoped<'_> {
    /// A read transaction in the scope, for reads of several statements that must agree.
    async fn read(self) -> Result<Transaction<'static, Any>, StoreError> {
        self.store.scoped_tx(self.scope, false).await
    }

    /// Where one read statement runs. PostgreSQL: a read transaction in the scope, since row-level
    /// security needs its setting. SQLite has no row-level security and runs each statement atomically on
    /// its own, so a pooled connection serves, without the BEGIN and ROLLBACK (each a hand-off to SQLite's
    /// worker thread).
    async fn read_one(self) -> Result<OneRead, StoreError> {
        Ok(match self.store.dialect {
            Dialect::Sqlite => OneRead::Connection(self.store.pool.0.acquire().await?),
            Dialect::Postgres => OneRead::Transaction(self.read().await?),
        })
    }
}

/// The connection of [`Scoped::read_one`].
enum OneRead {
    Transaction(Transaction<'static, Any>),
    Connection(sqlx::pool::PoolConnection<Any>),
}

impl std::ops::Deref for OneRead {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            OneRead::Transaction(t) => t,
            OneRead::Connection(c) => c,
        }
    }
}

impl std::ops::DerefMut for OneRead {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            OneRead::Transaction(t) => t,
            OneRead::Connection(c) => c,
        }
    }
}

/// Running one query in a [`Scoped`] transaction: `query.fetch_all_in(self.scoped())`.
pub(crate) trait InScope: Sized {
    fn fetch_all_in(self, s: Scoped<'_>) -> impl Future<Output = Result<Vec<AnyRow>, StoreError>> + Send;
    fn fetch_optional_in(self, s: Scoped<'_>) -> impl Future<Output = Result<Option<AnyRow>, StoreError>> + Send;
    fn fetch_one_in(self, s: Scoped<'_>) -> impl Future<Output = Result<AnyRow, StoreError>> + Send;
    /// Run a writing statement and commit it.
    fn execute_in(self, s: Scoped<'_>) -> impl Future<Output = Result<AnyQueryResult, StoreError>> + Send;
}

impl<'q> InScope for Query<'q, Any, AnyArguments> {
    async fn fetch_all_in(self, s: Scoped<'_>) -> Result<Vec<AnyRow>, StoreError> {
        let mut tx = s.read_one().await?;
        Ok(self.fetch_all(&mut *tx).await?)
    }

    async fn fetch_optional_in(self, s: Scoped<'_>) -> Result<Option<AnyRow>, StoreError> {
        let mut tx = s.read_one().await?;
        Ok(self.fetch_optional(&mut *tx).await?)
    }

    async fn fetch_one_in(self, s: Scoped<'_>) -> Result<AnyRow, StoreError> {
        let mut tx = s.read_one().await?;
        Ok(self.fetch_one(&mut *tx).await?)
    }

    async fn execute_in(self, s: Scoped<'_>) -> Result<AnyQueryResult, StoreError> {
        let mut tx = s.store.scoped_tx(s.scope, true).await?;
        let done = self.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// The handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: ScopedPool,
    dialect: Dialect,
    clock: Arc<dyn Clock>,
    /// Set when an audit signing key is configured: appends sign checkpoints, verification checks them.
    checkpointing: Option<Arc<Checkpointing>>,
    /// Committed budget changes, for resource subscriptions (see [`changes`]).
    changes: changes::ChangeBus,
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
        Ok(Self { pool: ScopedPool(pool), dialect, clock, checkpointing: None, changes: changes::ChangeBus::default() })
    }

    /// Apply pending migrations (forward only). With none pending it changes nothing and needs no rights
    /// beyond reading `_sqlx_migrations`, so a server running as a non-owner role (README, "Row-level
    /// security") starts on a database its owner has migrated; with some pending, such a role is told to
    /// have the owner run `migrate`.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        let pending = self.pending_migrations(migrator).await;
        if pending == Some(0) {
            return Ok(());
        }
        let denied = |e: &sqlx::Error| match e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => Some(db.message().to_owned()),
            _ => None,
        };
        match migrator.run(&self.pool.0).await {
            Err(
                sqlx::migrate::MigrateError::Execute(ref e) | sqlx::migrate::MigrateError::ExecuteMigration(ref e, _),
            ) if denied(e).is_some() => Err(StoreError::Config(format!(
                "pending migrations ({}) cannot be applied by this database role: {}; run \
                 `make-budget-mcp migrate` with the database owner's URL, then start again",
                pending.map_or_else(|| "all".to_owned(), |n| n.to_string()),
                denied(e).unwrap_or_default()
            ))),
            other => Ok(other?),
        }
    }

    /// How many of `migrator`'s migrations the database has not applied; `None` when it cannot tell (no
    /// migrations table yet) or an applied migration was changed since (the migrator reports that).
    async fn pending_migrations(&self, migrator: &sqlx::migrate::Migrator) -> Option<usize> {
        let rows = sqlx::query("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool.0)
            .await
            .ok()?;
        let mut applied = std::collections::HashMap::new();
        for row in &rows {
            applied.insert(row.try_get::<i64, _>("version").ok()?, row.try_get::<Vec<u8>, _>("checksum").ok()?);
        }
        let mut pending = 0;
        for m in migrator.iter().filter(|m| m.migration_type.is_up_migration()) {
            match applied.get(&m.version) {
                Some(checksum) if checksum.as_slice() != &*m.checksum => return None,
                Some(_) => {}
                None => pending += 1,
            }
        }
        Some(pending)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The raw pool, for administrative queries and tests. Its connections carry no [`Scope`]: in
    /// PostgreSQL, as a role subject to row-level security, they see no tenant's rows at all.
    pub fn pool(&self) -> &AnyPool {
        &self.pool.0
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The process-wide bus of committed budget changes.
    pub fn changes(&self) -> &changes::ChangeBus {
        &self.changes
    }

    /// Work within one tenant.
    pub fn tenant(&self, tenant: TenantId) -> TenantStore<'_> {
        TenantStore { store: self, tenant }
    }

    /// A cheap liveness probe of the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool.0).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.0.close().await;
    }

    /// Statements run across tenants (see [`Scope::System`]).
    pub(crate) fn system(&self) -> Scoped<'_> {
        Scoped { store: self, scope: Scope::System }
    }

    /// Statements run within one tenant, for the few `Store` methods that take a tenant id.
    pub(crate) fn scoped_to(&self, tenant: TenantId) -> Scoped<'_> {
        Scoped { store: self, scope: Scope::Tenant(tenant) }
    }

    /// The only way to a connection: a transaction in `scope`. `write` matters to SQLite only, where a
    /// writer takes the write lock up front (a deferred transaction that reads and then writes can fail
    /// with SQLITE_BUSY instead of waiting when another writer got there first).
    pub(crate) async fn scoped_tx(&self, scope: Scope, write: bool) -> Result<Transaction<'static, Any>, StoreError> {
        let pool = &self.pool.0;
        Ok(match self.dialect {
            Dialect::Sqlite if write => pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Sqlite => pool.begin().await?,
            Dialect::Postgres => pool.begin_with(sqlx::AssertSqlSafe(scope.postgres_begin())).await?,
        })
    }

    /// A mutation transaction in `scope`.
    async fn begin(&self, scope: Scope) -> Result<Transaction<'static, Any>, StoreError> {
        self.scoped_tx(scope, true).await
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

    /// Statements run within this tenant.
    pub(crate) fn scoped(&self) -> Scoped<'a> {
        Scoped { store: self.store, scope: Scope::Tenant(self.tenant) }
    }

    /// Start a mutation. Commit it with [`MutationTx::commit`]; dropping it rolls back.
    pub async fn begin(&self) -> Result<MutationTx, StoreError> {
        Ok(MutationTx {
            tx: self.store.begin(Scope::Tenant(self.tenant)).await?,
            tenant: self.tenant,
            store: self.store.clone(),
            signed: Vec::new(),
            budgets: Vec::new(),
            usage_written: false,
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
    /// Budgets named by this transaction's audit records, announced on the change bus once it commits.
    budgets: Vec<String>,
    /// This transaction wrote synced usage ([`usage_generation`] moves on once it commits).
    usage_written: bool,
}

static USAGE_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A number that changes whenever this process commits synced usage. Caches of usage key on it (and on
/// the organization's `synced_at`, which other instances' syncs change).
pub fn usage_generation() -> u64 {
    USAGE_GENERATION.load(std::sync::atomic::Ordering::Acquire)
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
        self.budgets.extend(changes::budgets_named(&record.entry));
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
        if self.usage_written {
            USAGE_GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        self.signed.iter().chain(&signed).for_each(audit_log::log_signed);
        self.budgets.extend(changes::budgets_named(&record.entry));
        self.store.changes.publish(tenant, std::mem::take(&mut self.budgets));
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

/// A stored row that cannot be read back into its type.
fn corrupt(table: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt { table, detail }
}

/// The `tenant_id` column of a row read across tenants.
fn tenant_of(row: &sqlx::any::AnyRow, table: &'static str) -> Result<TenantId, StoreError> {
    let t: String = row.try_get("tenant_id")?;
    t.parse().map_err(|_| corrupt(table, format!("tenant id {t:?}")))
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
