//! The tamper matrix: a chain of 1,200 records with a signed checkpoint every 100, attacked in every way
//! the audit log must survive — in the database (append-only triggers bypassed, as a superuser or whoever
//! holds the SQLite file would) and in an exported file checked offline with only the public key. Each
//! case runs on a fresh copy and must be detected at the right sequence number; the untouched chain must
//! not raise a false alarm.

mod cases {
    use make_budget_mcp::admin;
    use make_budget_mcp::audit::{AuditRecord, BreakKind};
    use make_budget_mcp::domain::TenantId;
    use make_budget_mcp::store::Store;
    use serde_json::{Value, json};

    use crate::support::*;

    pub const RECORDS: i64 = 1200;
    pub const EVERY: i64 = 100;

    /// Build the chain: a tenant (record 1) and 1,199 more records. Returns its id; the store is closed.
    pub async fn build_chain(db: &TestDb) -> TenantId {
        let store = open_signing_store(&db.url, EVERY).await;
        let t: TenantId = admin::create_tenant(&store, "acme", &test_actor()).await.unwrap().id.parse().unwrap();
        for i in 2..=RECORDS {
            store.tenant(t).record(test_entry("update_budget", &format!("budget:{}", i % 7))).await.unwrap();
        }
        let report = store.verify_audit(Some(t)).await.unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!((report.chains[0].records_checked, report.chains[0].anchored_seq), (RECORDS, RECORDS));
        assert_eq!(count(&store, "audit_checkpoints", "").await, RECORDS / EVERY, "one checkpoint per 100 records");
        store.close().await;
        t
    }

    async fn exec(store: &Store, sql: &str, t: TenantId) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(t.to_string()).execute(store.pool()).await.unwrap();
    }

    async fn records(store: &Store, t: TenantId) -> Vec<AuditRecord> {
        store.audit_records(t, 0, 10_000).await.unwrap()
    }

    /// Write a record's chain fields back (as an attacker rewriting a row).
    async fn rewrite(store: &Store, r: &AuditRecord) {
        sqlx::query("UPDATE audit_log SET target = $1, prev_hash = $2, hash = $3 WHERE tenant_id = $4 AND seq = $5")
            .bind(&r.entry.target)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .bind(&r.tenant_id)
            .bind(r.seq)
            .execute(store.pool())
            .await
            .unwrap();
    }

    async fn set_head(store: &Store, t: TenantId, seq: i64, hash: &str) {
        sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE tenant_id = $3")
            .bind(seq)
            .bind(hash)
            .bind(t.to_string())
            .execute(store.pool())
            .await
            .unwrap();
    }

    async fn insert(store: &Store, r: &AuditRecord) {
        let e = &r.entry;
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, seq, at, actor_subject, actor_role, actor_transport, action, target,
                                    outcome, reason, request_id, before_state, after_state, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.tenant_id)
        .bind(r.seq)
        .bind(&r.at)
        .bind(&e.actor.subject)
        .bind(&e.actor.role)
        .bind(&e.actor.transport)
        .bind(&e.action)
        .bind(&e.target)
        .bind(e.outcome.as_str())
        .bind(e.reason.as_deref())
        .bind(&e.request_id)
        .bind(e.before.as_ref().map(Value::to_string))
        .bind(e.after.as_ref().map(Value::to_string))
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .execute(store.pool())
        .await
        .unwrap();
    }

    #[derive(Debug, Clone, Copy)]
    enum Tamper {
        Untouched,
        EditField,
        DeleteMiddle,
        CutTail,
        InsertForged,
        Swap,
        EditAndRehash,
        RewriteTail,
        RewriteTailAndCheckpoints,
    }

    async fn apply(store: &Store, t: TenantId, case: Tamper) {
        let all = records(store, t).await;
        match case {
            Tamper::Untouched => {}
            Tamper::EditField => {
                exec(store, "UPDATE audit_log SET target = 'budget:forged' WHERE tenant_id = $1 AND seq = 500", t).await
            }
            Tamper::DeleteMiddle => exec(store, "DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 600", t).await,
            Tamper::CutTail => {
                // The last 5 records go, and the head is rewritten to match: only the checkpoint remembers.
                exec(store, "DELETE FROM audit_log WHERE tenant_id = $1 AND seq > 1195", t).await;
                set_head(store, t, 1195, &all[1194].hash).await;
            }
            Tamper::InsertForged => {
                // Make room at 750 and insert a record properly sealed after record 749.
                exec(store, "UPDATE audit_log SET seq = seq + 1000000 WHERE tenant_id = $1 AND seq >= 750", t).await;
                exec(store, "UPDATE audit_log SET seq = seq - 999999 WHERE tenant_id = $1 AND seq >= 1000000", t).await;
                let forged = AuditRecord::seal(
                    t.to_string(),
                    750,
                    all[749].at.clone(),
                    test_entry("delete_budget", "budget:forged"),
                    all[748].hash.clone(),
                );
                insert(store, &forged).await;
                set_head(store, t, RECORDS + 1, &all[1199].hash).await;
            }
            Tamper::Swap => {
                exec(store, "UPDATE audit_log SET seq = 2000000 WHERE tenant_id = $1 AND seq = 820", t).await;
                exec(store, "UPDATE audit_log SET seq = 820 WHERE tenant_id = $1 AND seq = 830", t).await;
                exec(store, "UPDATE audit_log SET seq = 830 WHERE tenant_id = $1 AND seq = 2000000", t).await;
            }
            Tamper::EditAndRehash => {
                let mut r = all[909].clone();
                r.entry.target = "budget:forged".into();
                r.hash = r.compute_hash();
                rewrite(store, &r).await;
            }
            Tamper::RewriteTail | Tamper::RewriteTailAndCheckpoints => {
                // Record 1010 changed and every later hash recomputed, head included: self-consistent.
                let mut chain = all.clone();
                chain[1009].entry.target = "budget:forged".into();
                for i in 1009..chain.len() {
                    chain[i].prev_hash = chain[i - 1].hash.clone();
                    chain[i].hash = chain[i].compute_hash();
                    rewrite(store, &chain[i]).await;
                }
                set_head(store, t, RECORDS, &chain[1199].hash).await;
                if matches!(case, Tamper::RewriteTailAndCheckpoints) {
                    for seq in [1100, 1200] {
                        sqlx::query("UPDATE audit_checkpoints SET head_hash = $1 WHERE tenant_id = $2 AND seq = $3")
                            .bind(&chain[seq as usize - 1].hash)
                            .bind(t.to_string())
                            .bind(seq)
                            .execute(store.pool())
                            .await
                            .unwrap();
                    }
                }
            }
        }
    }

    pub async fn every_tampering_in_the_database_is_detected(db: TestDb) {
        let t = build_chain(&db).await;
        let matrix = [
            (Tamper::Untouched, None),
            (Tamper::EditField, Some((500, BreakKind::HashMismatch))),
            (Tamper::DeleteMiddle, Some((600, BreakKind::Gap))),
            (Tamper::CutTail, Some((1196, BreakKind::MissingTail))),
            (Tamper::InsertForged, Some((750, BreakKind::Inserted))),
            (Tamper::Swap, Some((820, BreakKind::Reordered))),
            (Tamper::EditAndRehash, Some((910, BreakKind::BrokenLink))),
            (Tamper::RewriteTail, Some((1001, BreakKind::CheckpointMismatch))),
            (Tamper::RewriteTailAndCheckpoints, Some((1001, BreakKind::BadCheckpoint))),
        ];
        for (case, expected) in matrix {
            let copy = db.copy().await;
            let store = open_signing_store(&copy.url, EVERY).await;
            bypass_audit_triggers(&store).await;
            apply(&store, t, case).await;
            let report = store.verify_audit(Some(t)).await.unwrap();
            let chain = &report.chains[0];
            let got = chain.first_break.as_ref().map(|b| (b.seq, b.kind));
            assert_eq!(got, expected, "{case:?}: {:?}", chain.first_break);
            if expected.is_none() {
                assert_eq!((chain.records_checked, chain.anchored_seq), (RECORDS, RECORDS), "{case:?}");
            }
            store.close().await;
        }
    }

    pub async fn the_audit_tables_are_append_only(db: TestDb) {
        let store = open_signing_store(&db.url, 2).await;
        let t: TenantId = admin::create_tenant(&store, "acme", &test_actor()).await.unwrap().id.parse().unwrap();
        store.tenant(t).record(test_entry("update_budget", "budget:1")).await.unwrap();
        assert_eq!(count(&store, "audit_checkpoints", "").await, 1);
        let mut refused = vec![
            "UPDATE audit_log SET target = 'x' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
            "UPDATE audit_checkpoints SET head_hash = 'x'",
            "DELETE FROM audit_checkpoints",
        ];
        if db.is_postgres() {
            refused.extend(["TRUNCATE audit_log", "TRUNCATE audit_checkpoints"]);
        }
        for sql in refused {
            let e = sqlx::query(sql).execute(store.pool()).await.expect_err(sql).to_string();
            assert!(e.contains("append-only"), "{sql}: {e}");
        }
        assert_eq!(count(&store, "audit_log", "").await, 2);
        assert!(store.verify_audit(None).await.unwrap().is_valid());
        // Appends still work, and sign on schedule.
        store.tenant(t).record(test_entry("update_budget", "budget:1")).await.unwrap();
        store.tenant(t).record(test_entry("update_budget", "budget:1")).await.unwrap();
        assert_eq!(count(&store, "audit_checkpoints", "").await, 2);
        store.close().await;
    }

    /// The lines of an export, parsed.
    fn lines(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn write(path: &std::path::Path, lines: &[Value]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text).unwrap();
    }

    fn pos(lines: &[Value], kind: &str, seq: i64) -> usize {
        lines.iter().position(|l| l["type"] == kind && l["seq"] == seq).unwrap()
    }

    fn record_of(line: &Value) -> AuditRecord {
        serde_json::from_value(line.clone()).unwrap()
    }

    fn record_line(r: &AuditRecord) -> Value {
        let mut v = serde_json::to_value(r).unwrap();
        v["type"] = json!("record");
        v
    }

    /// Rewrite record `seq` and recompute every later hash in the file, as an attacker would.
    fn rewrite_tail(lines: &mut [Value], seq: i64) {
        let mut prev: Option<String> = None;
        for line in lines.iter_mut().filter(|l| l["type"] == "record") {
            let mut r = record_of(line);
            if r.seq == seq {
                r.entry.target = "budget:forged".into();
            }
            if r.seq >= seq {
                if let Some(p) = &prev {
                    r.prev_hash = p.clone();
                }
                r.hash = r.compute_hash();
                *line = record_line(&r);
            }
            prev = Some(r.hash.clone());
        }
    }

    pub async fn exports_verify_offline_and_tampered_exports_do_not(db: TestDb) {
        let t = build_chain(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let honest = dir.path().join("acme.jsonl");
        let exported = cli_ok(&db.url, &["audit", "export", "--tenant", "acme", "--output", honest.to_str().unwrap()]);
        assert!(exported.is_empty(), "the export goes to the file: {exported}");
        let key = cli_ok(&db.url, &["audit", "public-key"]);
        let original = lines(&honest);
        assert_eq!(original.len() as i64, 1 + RECORDS + RECORDS / EVERY, "header, records, checkpoints");
        assert_eq!(original[0]["tenant_id"], t.to_string());

        let verify_file = |path: &std::path::Path, key: &str| {
            // No database: not even a config or a URL is given.
            let out = std::process::Command::new(bin())
                .args(["audit", "verify-file", path.to_str().unwrap(), "--public-key", key])
                .env_clear()
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let (code, out) = verify_file(&honest, &key);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("1200 records verified") && out.contains("signed checkpoint at seq 1200"), "{out}");

        let forged_key = make_budget_mcp::audit::AuditKeys::generate().public_key().to_text();
        let (code, out) = verify_file(&honest, &forged_key);
        assert_eq!(code, Some(1));
        assert!(out.contains("record seq 1: bad checkpoint"), "a key the verifier does not trust: {out}");

        type Edit = fn(&mut Vec<Value>);
        let cases: [(&str, Edit, i64, &str); 10] = [
            (
                "edit a field",
                |l| {
                    let at = pos(l, "record", 500);
                    l[at]["target"] = json!("budget:forged");
                },
                500,
                "hash mismatch",
            ),
            ("delete a record", |l| drop(l.remove(pos(l, "record", 600))), 600, "gap in sequence"),
            (
                "cut the tail, keep the last checkpoint",
                |l| l.retain(|x| !(x["type"] == "record" && x["seq"].as_i64().unwrap() > 1195)),
                1196,
                "missing tail",
            ),
            (
                "cut the tail and its checkpoint",
                |l| l.retain(|x| x["seq"].as_i64().is_none_or(|s| s <= 1195)),
                1101,
                "unanchored records",
            ),
            (
                "insert a forged record",
                |l| {
                    let prev = record_of(&l[pos(l, "record", 749)]);
                    let mut forged = record_of(&l[pos(l, "record", 750)]);
                    forged.entry.target = "budget:forged".into();
                    forged.prev_hash = prev.hash;
                    forged.hash = forged.compute_hash();
                    let at = pos(l, "record", 750);
                    l.insert(at, record_line(&forged));
                },
                750,
                "inserted record",
            ),
            (
                "swap two records",
                |l| {
                    let (a, b) = (pos(l, "record", 820), pos(l, "record", 830));
                    l.swap(a, b);
                },
                820,
                "reordering",
            ),
            (
                "edit a record and recompute its hash",
                |l| {
                    let at = pos(l, "record", 910);
                    let mut r = record_of(&l[at]);
                    r.entry.target = "budget:forged".into();
                    r.hash = r.compute_hash();
                    l[at] = record_line(&r);
                },
                910,
                "broken link",
            ),
            ("rewrite the tail", |l| rewrite_tail(l, 1010), 1001, "checkpoint mismatch"),
            (
                "rewrite the tail and the checkpoints' hashes",
                |l| {
                    rewrite_tail(l, 1010);
                    for seq in [1100, 1200] {
                        let hash = l[pos(l, "record", seq)]["hash"].clone();
                        let at = pos(l, "checkpoint", seq);
                        l[at]["head_hash"] = hash;
                    }
                },
                1001,
                "bad checkpoint",
            ),
            (
                "move a checkpoint to another record",
                |l| {
                    let at = pos(l, "checkpoint", 500);
                    l[at]["seq"] = json!(499);
                    let cp = l.remove(at);
                    let to = pos(l, "record", 499) + 1;
                    l.insert(to, cp);
                },
                401,
                "bad checkpoint",
            ),
        ];
        for (name, edit, seq, kind) in cases {
            let mut tampered = original.clone();
            edit(&mut tampered);
            let path = dir.path().join("tampered.jsonl");
            write(&path, &tampered);
            let (code, out) = verify_file(&path, &key);
            assert_eq!(code, Some(1), "{name}: {out}");
            assert!(out.contains(&format!("record seq {seq}: {kind}")), "{name}: expected seq {seq} {kind}: {out}");
        }

        // The SIEM format: one CEF line per record.
        let cef = dir.path().join("acme.cef");
        cli_ok(&db.url, &["audit", "export", "--tenant", "acme", "--format", "cef", "-o", cef.to_str().unwrap()]);
        let text = std::fs::read_to_string(&cef).unwrap();
        assert_eq!(text.lines().count() as i64, RECORDS);
        assert!(text.lines().all(|l| l.starts_with("CEF:0|make-budget-mcp|make-budget-mcp|")));
        assert!(text.lines().nth(1).unwrap().contains("externalId=2 "), "{}", text.lines().nth(1).unwrap());
    }
}

on_both_stores!(
    every_tampering_in_the_database_is_detected,
    the_audit_tables_are_append_only,
    exports_verify_offline_and_tampered_exports_do_not
);
