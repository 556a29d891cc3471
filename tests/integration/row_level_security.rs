//! Row-level security, the second wall behind the `WHERE tenant_id = …` of every query (PostgreSQL only;
//! migrations/postgres/0006). The server runs as a role of its own (`make-budget-mcp db grant-app-role`);
//! as that role, a query that forgets its tenant sees nothing, one scoped to a tenant sees only that
//! tenant's rows and cannot write another's, and the whole server still works.
//!
//! store_conformance.rs runs most of the store conformance suite as such a role as well
//! (`postgres_app_role`).

use std::collections::BTreeSet;

use crate::support::*;
use make_budget_mcp::admin;
use make_budget_mcp::auth::Role;
use make_budget_mcp::domain::{Budget, BudgetId, BudgetSpec, TenantId};
use make_budget_mcp::store::Store;
use serde_json::json;
use sqlx::{AnyConnection, Connection, Row};

/// Every table of the database with a `tenant_id` column, by the catalogue (not by a list that could go
/// stale with a new migration).
async fn tenant_tables(owner: &Store) -> Vec<String> {
    sqlx::query(
        "SELECT table_name::text AS t FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_name = 'tenant_id' ORDER BY 1",
    )
    .fetch_all(owner.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get("t").unwrap())
    .collect()
}

async fn tenant_ids_in(conn: &mut AnyConnection, table: &str) -> BTreeSet<String> {
    let sql = format!("SELECT DISTINCT tenant_id FROM {table}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("SELECT from {table}: {e}"))
        .iter()
        .map(|r| r.try_get("tenant_id").unwrap())
        .collect()
}

async fn create_budget(store: &Store, t: TenantId, name: &str) -> Budget {
    let b = Budget::new(BudgetId::new(), BudgetSpec::new(draft(name)).unwrap(), store.clock().now(), "tester");
    let mut tx = store.tenant(t).begin().await.unwrap();
    tx.insert_budget(&b).await.unwrap();
    tx.commit(test_entry("create_budget", &format!("budget:{}", b.id))).await.unwrap();
    b
}

/// Two tenants with budgets, tokens and audit records, written through the store as the app role.
async fn two_tenants(app: &Store) -> (TenantId, TenantId) {
    let mut ids = Vec::new();
    for name in ["acme", "globex"] {
        let rec = admin::create_tenant(app, name, &test_actor()).await.unwrap();
        let id: TenantId = rec.id.parse().unwrap();
        create_budget(app, id, &format!("{name} monthly")).await;
        create_budget(app, id, &format!("{name} ops")).await;
        admin::issue_token(app, &rec, Role::Viewer, "bob", None, &test_actor()).await.unwrap();
        ids.push(id);
    }
    (ids[0], ids[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_table_has_a_policy_that_fails_closed() {
    let Some(db) = postgres_db("row_level_security::every_tenant_table_has_a_policy_that_fails_closed").await else {
        return;
    };
    let owner = open_store(&db.url).await;
    let tables = tenant_tables(&owner).await;
    assert!(tables.len() >= 20 && tables.contains(&"budgets".to_owned()), "{tables:?}");
    let unprotected: Vec<String> = sqlx::query(
        "SELECT c.relname::text AS t FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
           AND c.relname IN (SELECT table_name FROM information_schema.columns
                             WHERE table_schema = current_schema() AND column_name IN ('tenant_id'))
           AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
         UNION
         SELECT 'tenants' WHERE NOT (SELECT relrowsecurity FROM pg_class WHERE oid = 'tenants'::regclass)",
    )
    .fetch_all(owner.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get("t").unwrap())
    .collect();
    assert_eq!(unprotected, Vec::<String>::new(), "tables without row-level security");

    let role = AppRole::create(&db, &owner).await;
    let app = role.store().await;
    let (acme, globex) = two_tenants(&app).await;
    let (acme_s, globex_s) = (acme.to_string(), globex.to_string());

    let mut conn = AnyConnection::connect(&role.url).await.unwrap();
    // Unscoped, as a forgetful query would run: nothing in any tenant table, though the owner sees rows.
    for table in tables.iter().map(String::as_str).chain(["tenants"]) {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(&mut conn).await.unwrap().try_get("n").unwrap();
        assert_eq!(n, 0, "an unscoped query as the app role sees rows of {table}");
    }
    assert!(count(&owner, "budgets", "").await == 4 && count(&owner, "audit_log", "").await >= 8);

    // Scoped to acme: a query without any WHERE sees acme's rows only.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('mbm.tenant_id', $1, true)").bind(&acme_s).execute(&mut *tx).await.unwrap();
    let only_acme = BTreeSet::from([acme_s.clone()]);
    for table in ["budgets", "api_tokens", "audit_log", "audit_heads"] {
        assert_eq!(tenant_ids_in(&mut tx, table).await, only_acme, "{table} scoped to acme");
    }
    for table in &tables {
        let seen = tenant_ids_in(&mut tx, table).await;
        assert!(seen.is_empty() || seen == only_acme, "{table} scoped to acme shows {seen:?}");
    }
    let names: Vec<String> = sqlx::query("SELECT name FROM budgets ORDER BY name")
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("name").unwrap())
        .collect();
    assert_eq!(names, ["acme monthly", "acme ops"]);
    let tenants: Vec<String> = sqlx::query("SELECT name FROM tenants")
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("name"))
        .collect();
    assert_eq!(tenants, ["acme"]);
    // Globex's rows can be neither changed nor removed from here: they are not there.
    let moved = sqlx::query("UPDATE budgets SET description = 'pwned' WHERE tenant_id = $1")
        .bind(&globex_s)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 0);
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE tenant_id = $1").bind(&globex_s).execute(&mut *tx).await;
    assert_eq!(deleted.unwrap().rows_affected(), 0);
    tx.commit().await.unwrap();

    // Writing a row for globex while scoped to acme fails, whether inserted or moved there.
    for sql in [
        "INSERT INTO make_teams (tenant_id, team_id, organization_id, name, synced_at)
         VALUES ($1, 16, 10, 'Marketing', '2026-01-01T00:00:00.000000Z')",
        "UPDATE budgets SET tenant_id = $1",
    ] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('mbm.tenant_id', $1, true)").bind(&acme_s).execute(&mut *tx).await.unwrap();
        let e = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&globex_s).execute(&mut *tx).await.unwrap_err();
        assert!(e.to_string().contains("row-level security"), "{sql}: {e}");
    }

    // The setting is transaction-local: the next transaction on the same (pooled) connection starts blind.
    assert_eq!(tenant_ids_in(&mut conn, "budgets").await, BTreeSet::new());
    // The audit tables stay append-only for the role, whatever its scope.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('mbm.scope', 'system', true)").execute(&mut *tx).await.unwrap();
    assert_eq!(tenant_ids_in(&mut tx, "budgets").await, BTreeSet::from([acme_s, globex_s]));
    let e = sqlx::query("DELETE FROM audit_log").execute(&mut *tx).await.unwrap_err().to_string();
    assert!(e.contains("permission denied"), "{e}");
    drop(tx);
    conn.close().await.unwrap();
    app.close().await;
    owner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_as_the_app_role() {
    let Some(db) = postgres_db("row_level_security::the_store_works_as_the_app_role").await else { return };
    let owner = open_store(&db.url).await;
    let role = AppRole::create(&db, &owner).await;
    let app = role.store().await.with_audit_keys(Some(test_audit_keys()), 3);
    assert_eq!(app.bound_by_row_security().await.unwrap(), Some(true));
    assert_eq!(owner.bound_by_row_security().await.unwrap(), Some(false), "the test server's superuser");
    let (acme, globex) = two_tenants(&app).await;

    // Cross-tenant (system) reads: tenant admin, token lookup by hash, chain verification of everyone.
    assert_eq!(app.tenants().await.unwrap().len(), 2);
    let acme_rec = app.tenant_by_name("acme").await.unwrap().unwrap();
    let (_, secret) = admin::issue_token(&app, &acme_rec, Role::Admin, "alice", None, &test_actor()).await.unwrap();
    let found = app.token_by_hash(&make_budget_mcp::auth::token::hash(&secret)).await.unwrap().unwrap();
    assert_eq!((found.subject.as_str(), found.tenant_name.as_str()), ("alice", "acme"));
    let report = app.verify_audit(None).await.unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.chains.len(), 2);
    assert!(app.tenant(acme).latest_checkpoint().await.unwrap().is_some(), "checkpoints are signed and read back");

    // Tenant-scoped reads and writes.
    let listed = app.tenant(globex).list_budgets(&Default::default(), None, 10).await.unwrap();
    assert_eq!(
        listed.budgets.iter().map(|b| b.spec.name.as_str()).collect::<Vec<_>>(),
        ["globex monthly", "globex ops"]
    );
    let mut tx = app.tenant(acme).begin().await.unwrap();
    let b = tx.budget_for_update(listed.budgets[0].id.parse().unwrap()).await;
    assert!(b.is_err(), "globex's budget is not found from acme");
    drop(tx);
    let lease = ("rls-test", "holder", "2026-01-01T00:00:00.000000Z", "2026-01-01T00:01:00.000000Z");
    assert!(app.try_lease(lease.0, lease.1, lease.2, lease.3).await.unwrap());
    app.release_lease(lease.0, lease.1).await.unwrap();
    app.close().await;
    owner.close().await;
}

/// The real binary as it runs in production: the owner migrates and grants; `serve`, the evaluator and the
/// audit commands run as the app role, with Make connected and usage synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_as_the_app_role() {
    let Some(db) = postgres_db("row_level_security::the_server_runs_as_the_app_role").await else { return };
    cli_ok(&db.url, &["migrate"]);
    let owner = open_store(&db.url).await;
    let role = AppRole::create(&db, &owner).await;
    let granted = cli_ok(&db.url, &["db", "grant-app-role", &role.name]);
    assert!(granted.lines().any(|l| l == "audit_log\tSELECT, INSERT"), "{granted}");
    assert!(granted.lines().any(|l| l == "budgets\tSELECT, INSERT, UPDATE, DELETE"), "{granted}");
    let refused = cli(&db.url, &["db", "grant-app-role", "postgres"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is a superuser"), "{refused:?}");

    let acme = create_tenant(&role.url, "acme");
    let globex = create_tenant(&role.url, "globex");
    let acme_token = issue_token(&role.url, &acme, "admin", "alice");
    let globex_token = issue_token(&role.url, &globex, "admin", "gina");
    let fake = seeded_fake().await;
    let server = HttpServer::start(&role.url).await;
    let alice = http_client(&server.mcp_url, &acme_token, Lifecycle::Initialize).await;
    let gina = http_client(&server.mcp_url, &globex_token, Lifecycle::Initialize).await;
    call_ok(&alice, "connect_make", connect_args(&fake, &[ORG])).await;
    call_ok(&alice, "sync_usage", json!({})).await;
    let budget = call_ok(&alice, "create_budget", budget_args("Acme monthly")).await;
    call_ok(&gina, "create_budget", budget_args("Globex monthly")).await;
    let listed = call_ok(&gina, "list_budgets", json!({})).await;
    assert_eq!(listed["budgets"].as_array().unwrap().len(), 1, "{listed:#}");
    let e = call_err(&gina, "get_budget", json!({"id": budget["id"]})).await;
    assert!(e.starts_with("not_found"), "{e}");
    assert!(count(&owner, "usage_daily", &format!("tenant_id = '{acme}'")).await > 0, "usage was stored");

    let evaluated = cli(&role.url, &["evaluate", "--once"]);
    assert!(evaluated.status.success(), "{}", String::from_utf8_lossy(&evaluated.stderr));
    let verified = cli(&role.url, &["audit", "verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    let logs = server.logs();
    assert!(!logs.contains("exempt from row-level security"), "{logs}");
    // As the superuser the server warns that the wall does not bind it.
    let as_owner = cli_env(&db.url, &["evaluate", "--once"], &[("MBM_LOG", "warn")]);
    assert!(String::from_utf8_lossy(&as_owner.stderr).contains("exempt from row-level security"));
    drop(server);
    owner.close().await;
}

/// An upgrade whose migrations the app role cannot apply stops the server with a message saying what to do,
/// instead of a bare "permission denied".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_migrations_ask_for_the_owner() {
    let Some(db) = postgres_db("row_level_security::pending_migrations_ask_for_the_owner").await else { return };
    let owner = open_store(&db.url).await;
    let role = AppRole::create(&db, &owner).await;
    // As if a newer binary brought migration 6: the database has only 1–5.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 6").execute(owner.pool()).await.unwrap();
    let out = cli(&role.url, &["tenant", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("pending migrations (1) cannot be applied by this database role")
            && stderr.contains("run `make-budget-mcp migrate` with the database owner's URL"),
        "{stderr}"
    );
    let password = role.url.rsplit_once('@').unwrap().0.rsplit_once(':').unwrap().1;
    assert!(!stderr.contains(password), "no password in the message: {stderr}");
    owner.close().await;
}
