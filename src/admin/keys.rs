//! Master key rotation: re-seal every stored secret (Make connection tokens, webhook signing secrets) under
//! the keyring's current key, so that the previous keys can be retired.
//!
//! [`rotate_keys`] first opens every secret that is not yet under the current key and seals it again in
//! memory; if any cannot be opened (its key is not configured, or it fails authentication) it writes
//! nothing and names them all. Then it writes one transaction per tenant, with one `keys_rotate` audit
//! record per secret, in that same transaction. Secrets already under the current key are left alone, so a
//! second run changes nothing.

use std::collections::BTreeMap;

use serde_json::json;

use crate::app::App;
use crate::audit::{Actor, AuditEntry, Outcome, Target};
use crate::crypto::{CryptoError, Keyring, Sealed};
use crate::domain::TenantId;
use crate::store::{Store, StoreError};

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    /// The key every stored secret is sealed under now.
    pub key_id: String,
    /// Secrets re-sealed by this run.
    pub rotated: usize,
    /// Secrets that were already under the current key.
    pub already_current: usize,
}

/// A stored secret the configured keys cannot open.
#[derive(Debug, PartialEq, Eq)]
pub struct UnreadableSecret {
    pub tenant_id: String,
    /// `make_connection:{id}` or `webhook:{id}`, as in the audit log.
    pub target: String,
    pub error: CryptoError,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Nothing was written.
    #[error(
        "{} stored secret(s) cannot be decrypted with the configured master keys, so nothing was re-encrypted",
        .0.len()
    )]
    Unreadable(Vec<UnreadableSecret>),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Which record a sealed secret belongs to.
enum Owner {
    Connection(String),
    Webhook(String),
}

impl Owner {
    fn target(&self) -> String {
        match self {
            Owner::Connection(id) => Target::MakeConnection(id.clone()),
            Owner::Webhook(id) => Target::Webhook(id.clone()),
        }
        .to_string()
    }
}

/// A secret sealed again under the current key, not yet written.
struct Resealed {
    owner: Owner,
    old_key_id: String,
    sealed: Sealed,
}

/// Re-seal every stored secret under `ring`'s current key (see the module documentation). `actor` is
/// recorded in the audit records.
pub async fn rotate_keys(store: &Store, ring: &Keyring, actor: &Actor) -> Result<KeyRotation, RotationError> {
    let mut stored: Vec<(String, Owner, Sealed)> = Vec::new();
    for (tenant, conn) in store.all_connections().await? {
        stored.push((tenant, Owner::Connection(conn.id), conn.sealed));
    }
    for (tenant, hook) in store.all_webhooks().await? {
        stored.push((tenant, Owner::Webhook(hook.id), hook.sealed));
    }

    let mut already_current = 0;
    let mut unreadable = Vec::new();
    let mut by_tenant: BTreeMap<String, Vec<Resealed>> = BTreeMap::new();
    for (tenant, owner, old) in stored {
        if old.key_id == ring.current_id() {
            already_current += 1;
            continue;
        }
        let binding = match &owner {
            Owner::Connection(id) => App::binding(&tenant, id),
            Owner::Webhook(id) => App::webhook_binding(&tenant, id),
        };
        match ring.open(&old, binding) {
            Ok(plain) => {
                let sealed = ring.seal(&plain, binding);
                by_tenant.entry(tenant).or_default().push(Resealed { owner, old_key_id: old.key_id, sealed });
            }
            Err(error) => unreadable.push(UnreadableSecret { tenant_id: tenant, target: owner.target(), error }),
        }
    }
    if !unreadable.is_empty() {
        return Err(RotationError::Unreadable(unreadable));
    }
    let tenants = by_tenant
        .into_iter()
        .map(|(t, secrets)| match t.parse::<TenantId>() {
            Ok(id) => Ok((id, secrets)),
            Err(_) => Err(StoreError::Corrupt { table: "make_connections", detail: format!("tenant id {t:?}") }),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let request_id = uuid::Uuid::now_v7().to_string();
    let mut rotated = 0;
    for (tenant, secrets) in tenants {
        let mut tx = store.tenant(tenant).begin().await?;
        let mut entries = Vec::with_capacity(secrets.len());
        for s in &secrets {
            match &s.owner {
                Owner::Connection(id) => tx.update_connection_secret(id, &s.sealed).await?,
                Owner::Webhook(id) => tx.update_webhook_secret(id, &s.sealed).await?,
            }
            entries.push(AuditEntry {
                actor: actor.clone(),
                action: "keys_rotate".into(),
                target: s.owner.target(),
                outcome: Outcome::Success,
                reason: None,
                request_id: request_id.clone(),
                before: Some(json!({"key_id": s.old_key_id})),
                after: Some(json!({"key_id": s.sealed.key_id})),
            });
        }
        let last = entries.pop().expect("a tenant is listed only with a secret to rotate");
        for entry in entries {
            tx.record_also(entry).await?;
        }
        tx.commit(last).await?;
        rotated += secrets.len();
    }
    Ok(KeyRotation { key_id: ring.current_id().to_owned(), rotated, already_current })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::MasterKey;
    use crate::domain::SystemClock;
    use crate::make::AuthKind;
    use crate::store::{AuditQuery, ConnectionRecord, StoreOptions, WebhookRecord};

    /// Each case on an in-memory SQLite store and, when `DATABASE_URL` names a PostgreSQL server, on a fresh
    /// PostgreSQL database (the convention of `tests/support`: skipped visibly without it, unless
    /// `MBM_REQUIRE_POSTGRES=1`).
    macro_rules! on_both_stores {
        ($($case:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test]
                    async fn $case() {
                        super::$case(super::sqlite_store().await).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let test = concat!(module_path!(), "::", stringify!($case));
                        let Some(db) = super::PostgresDb::create(test).await else { return };
                        super::$case(db.store.clone()).await;
                        db.store.close().await;
                    }
                )*
            }
        };
    }

    on_both_stores!(
        every_secret_opens_with_the_new_key_only,
        the_audit_log_records_each_rotation_in_its_tenant,
        a_second_run_changes_nothing,
        a_secret_under_an_unknown_key_fails_the_run_before_any_write,
    );

    async fn sqlite_store() -> Store {
        // One connection: every connection to `sqlite::memory:` is a database of its own.
        let opts = StoreOptions { max_connections: 1, ..StoreOptions::default() };
        let store = Store::connect("sqlite::memory:", &opts, Arc::new(SystemClock)).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// A PostgreSQL database for one test, dropped with this value.
    struct PostgresDb {
        store: Store,
        admin_url: String,
        name: String,
    }

    impl PostgresDb {
        async fn create(test: &str) -> Option<Self> {
            use sqlx::Connection;
            let admin_url = match std::env::var("DATABASE_URL") {
                Ok(url) if url.starts_with("postgres") => url,
                _ if std::env::var("MBM_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                    panic!("{test}: MBM_REQUIRE_POSTGRES=1 but DATABASE_URL does not name a PostgreSQL server")
                }
                _ => {
                    eprintln!("SKIPPED {test}: PostgreSQL tests need DATABASE_URL=postgres://...");
                    return None;
                }
            };
            sqlx::any::install_default_drivers();
            let mut admin = sqlx::AnyConnection::connect(&admin_url).await.expect("PostgreSQL is reachable");
            let name = format!("mbm_test_{}", uuid::Uuid::now_v7().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await.unwrap();
            let (base, query) = admin_url.split_once('?').map_or((admin_url.as_str(), ""), |(b, q)| (b, q));
            let authority = base.find("://").map_or(0, |i| i + 3);
            let host_end = base[authority..].find('/').map_or(base.len(), |i| i + authority);
            let url = format!("{}/{name}{}{query}", &base[..host_end], if query.is_empty() { "" } else { "?" });
            let store = Store::connect(&url, &StoreOptions::default(), Arc::new(SystemClock)).await.expect("connect");
            store.migrate().await.expect("migrate");
            Some(Self { store, admin_url, name })
        }
    }

    impl Drop for PostgresDb {
        fn drop(&mut self) {
            let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
            // Drop runs inside the test's runtime: the async cleanup gets a thread and a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::AnyConnection::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }

    fn actor() -> Actor {
        Actor { subject: "cli:test".into(), role: "admin".into(), transport: "cli".into() }
    }

    fn entry(action: &str, target: String) -> AuditEntry {
        AuditEntry {
            actor: actor(),
            action: action.into(),
            target,
            outcome: Outcome::Success,
            reason: None,
            request_id: uuid::Uuid::now_v7().to_string(),
            before: None,
            after: None,
        }
    }

    /// What a test stored: a tenant's connections and webhooks, with the plaintext of each.
    struct Stored {
        tenant: TenantId,
        connections: Vec<(String, &'static str)>,
        webhooks: Vec<(String, &'static str)>,
    }

    async fn tenant(store: &Store, name: &str) -> TenantId {
        crate::admin::create_tenant(store, name, &actor()).await.unwrap().id.parse().unwrap()
    }

    async fn add_connection(store: &Store, tenant: TenantId, key: &Keyring, token: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let sealed = key.seal(token.as_bytes(), App::binding(&tenant.to_string(), &id));
        let mut tx = store.tenant(tenant).begin().await.unwrap();
        tx.insert_connection(&ConnectionRecord {
            id: id.clone(),
            label: "Make".into(),
            base_url: "https://eu1.make.com/api/v2".into(),
            auth_kind: AuthKind::ApiToken,
            sealed,
            created_at: "2026-11-01T00:00:00.000000Z".into(),
            created_by: "test".into(),
            organizations: Vec::new(),
            token_scopes: None,
        })
        .await
        .unwrap();
        tx.commit(entry("make_connect", format!("make_connection:{id}"))).await.unwrap();
        id
    }

    async fn add_webhook(store: &Store, tenant: TenantId, key: &Keyring, secret: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let sealed = key.seal(secret.as_bytes(), App::webhook_binding(&tenant.to_string(), &id));
        let mut tx = store.tenant(tenant).begin().await.unwrap();
        tx.insert_webhook(&WebhookRecord {
            id: id.clone(),
            kind: Default::default(),
            url: "https://hooks.example.com/budget".into(),
            label: None,
            sealed,
            events: None,
            email: None,
            created_at: "2026-11-01T00:00:00.000000Z".into(),
            created_by: "test".into(),
        })
        .await
        .unwrap();
        tx.commit(entry("webhook_add", format!("webhook:{id}"))).await.unwrap();
        id
    }

    /// Tenant "acme" with a connection and a webhook, tenant "globex" with a webhook, all under `key`.
    async fn seed(store: &Store, key: &Keyring) -> Vec<Stored> {
        let acme = tenant(store, "acme").await;
        let globex = tenant(store, "globex").await;
        vec![
            Stored {
                tenant: acme,
                connections: vec![(add_connection(store, acme, key, "make-token-acme").await, "make-token-acme")],
                webhooks: vec![(add_webhook(store, acme, key, "hook-secret-acme").await, "hook-secret-acme")],
            },
            Stored {
                tenant: globex,
                connections: Vec::new(),
                webhooks: vec![(add_webhook(store, globex, key, "hook-secret-globex").await, "hook-secret-globex")],
            },
        ]
    }

    /// Open every stored secret with `ring`: the plaintexts, or the first error.
    async fn open_all(store: &Store, ring: &Keyring, stored: &[Stored]) -> Result<Vec<String>, CryptoError> {
        let mut out = Vec::new();
        for s in stored {
            let tenant = s.tenant.to_string();
            let t = store.tenant(s.tenant);
            for (id, _) in &s.connections {
                let c = t.connection(id).await.unwrap();
                out.push(String::from_utf8(ring.open(&c.sealed, App::binding(&tenant, id))?).unwrap());
            }
            for (id, _) in &s.webhooks {
                let w = t.webhook(id).await.unwrap();
                out.push(String::from_utf8(ring.open(&w.sealed, App::webhook_binding(&tenant, id))?).unwrap());
            }
        }
        Ok(out)
    }

    fn plaintexts(stored: &[Stored]) -> Vec<String> {
        stored.iter().flat_map(|s| s.connections.iter().chain(&s.webhooks).map(|(_, p)| (*p).to_owned())).collect()
    }

    async fn rotations(store: &Store, tenant: TenantId) -> Vec<crate::audit::AuditRecord> {
        let q = AuditQuery { action: Some("keys_rotate".into()), limit: 100, ..AuditQuery::default() };
        store.tenant(tenant).query_audit(&q).await.unwrap()
    }

    fn keys() -> (MasterKey, MasterKey) {
        (MasterKey::generate(), MasterKey::generate())
    }

    async fn every_secret_opens_with_the_new_key_only(store: Store) {
        let (old, new) = keys();
        let stored = seed(&store, &Keyring::new(old.clone(), Vec::new())).await;

        let ring = Keyring::new(new.clone(), vec![old.clone()]);
        let report = rotate_keys(&store, &ring, &actor()).await.unwrap();
        assert_eq!(report, KeyRotation { key_id: new.id().to_owned(), rotated: 3, already_current: 0 });

        let new_only = Keyring::new(new.clone(), Vec::new());
        assert_eq!(open_all(&store, &new_only, &stored).await.unwrap(), plaintexts(&stored));
        let old_only = Keyring::new(old, Vec::new());
        assert_eq!(
            open_all(&store, &old_only, &stored).await.unwrap_err(),
            CryptoError::UnknownKey { key_id: new.id().to_owned() },
            "the old key opens nothing any more"
        );
        assert_eq!(store.secret_key_ids().await.unwrap(), [new.id().to_owned()]);
    }

    async fn the_audit_log_records_each_rotation_in_its_tenant(store: Store) {
        let (old, new) = keys();
        let stored = seed(&store, &Keyring::new(old.clone(), Vec::new())).await;
        rotate_keys(&store, &Keyring::new(new.clone(), vec![old.clone()]), &actor()).await.unwrap();

        let (acme, globex) = (&stored[0], &stored[1]);
        let mut targets: Vec<String> =
            rotations(&store, acme.tenant).await.iter().map(|r| r.entry.target.clone()).collect();
        targets.sort();
        let mut expected =
            vec![format!("make_connection:{}", acme.connections[0].0), format!("webhook:{}", acme.webhooks[0].0)];
        expected.sort();
        assert_eq!(targets, expected);
        let globex_records = rotations(&store, globex.tenant).await;
        assert_eq!(globex_records.len(), 1);
        let r = &globex_records[0];
        assert_eq!(r.entry.target, format!("webhook:{}", globex.webhooks[0].0));
        assert_eq!(r.entry.actor, actor());
        assert_eq!(r.entry.before, Some(json!({"key_id": old.id()})));
        assert_eq!(r.entry.after, Some(json!({"key_id": new.id()})));
        assert!(store.verify_audit(None).await.unwrap().is_valid(), "the chains stay intact");
    }

    async fn a_second_run_changes_nothing(store: Store) {
        let (old, new) = keys();
        let stored = seed(&store, &Keyring::new(old.clone(), Vec::new())).await;
        let ring = Keyring::new(new.clone(), vec![old]);
        rotate_keys(&store, &ring, &actor()).await.unwrap();
        let heads: Vec<i64> = {
            let mut h = Vec::new();
            for s in &stored {
                h.push(store.audit_head_seq(s.tenant).await.unwrap());
            }
            h
        };

        let again = rotate_keys(&store, &ring, &actor()).await.unwrap();
        assert_eq!(again, KeyRotation { key_id: new.id().to_owned(), rotated: 0, already_current: 3 });
        for (s, head) in stored.iter().zip(heads) {
            assert_eq!(store.audit_head_seq(s.tenant).await.unwrap(), head, "no audit record");
        }
        // Also with the old key gone from the configuration.
        let new_only = Keyring::new(new, Vec::new());
        assert_eq!(rotate_keys(&store, &new_only, &actor()).await.unwrap().rotated, 0);
        assert_eq!(open_all(&store, &new_only, &stored).await.unwrap(), plaintexts(&stored));
    }

    async fn a_secret_under_an_unknown_key_fails_the_run_before_any_write(store: Store) {
        let (old, new) = keys();
        let stranger = MasterKey::generate();
        let stored = seed(&store, &Keyring::new(old.clone(), Vec::new())).await;
        let globex = stored[1].tenant;
        let lost = add_webhook(&store, globex, &Keyring::new(stranger.clone(), Vec::new()), "sealed-elsewhere").await;
        let heads =
            (store.audit_head_seq(stored[0].tenant).await.unwrap(), store.audit_head_seq(globex).await.unwrap());

        let ring = Keyring::new(new, vec![old.clone()]);
        let Err(RotationError::Unreadable(unreadable)) = rotate_keys(&store, &ring, &actor()).await else {
            panic!("a secret no configured key opens fails the rotation");
        };
        assert_eq!(
            unreadable,
            [UnreadableSecret {
                tenant_id: globex.to_string(),
                target: format!("webhook:{lost}"),
                error: CryptoError::UnknownKey { key_id: stranger.id().to_owned() },
            }]
        );
        // Nothing moved: every other secret still opens with the old key alone, and no record was written.
        assert_eq!(open_all(&store, &Keyring::new(old, Vec::new()), &stored).await.unwrap(), plaintexts(&stored));
        let after =
            (store.audit_head_seq(stored[0].tenant).await.unwrap(), store.audit_head_seq(globex).await.unwrap());
        assert_eq!(after, heads);
        assert!(rotations(&store, stored[0].tenant).await.is_empty() && rotations(&store, globex).await.is_empty());
    }
}
