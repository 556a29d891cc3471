//! The command line as an operator uses it: tenants, tokens, migrations, audit verification, and the
//! errors a misconfiguration produces.

use crate::support::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tenants_and_tokens_are_administered_and_audited() {
    let db = sqlite_db();
    let id = create_tenant(&db.url, "acme");
    assert!(id.parse::<uuid::Uuid>().is_ok(), "tenant create prints the id alone: {id:?}");
    let listed = cli_ok(&db.url, &["tenant", "list"]);
    assert!(listed.starts_with(&format!("{id}\tacme\t")), "{listed}");

    let dup = cli(&db.url, &["tenant", "create", "acme"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(stderr(&dup).contains("a tenant named \"acme\" already exists"), "{}", stderr(&dup));

    // By name or by id; the secret is printed once, on stdout, and never listed.
    let by_name = cli(&db.url, &["token", "issue", "--tenant", "acme", "--role", "operator", "--subject", "ci-bot"]);
    assert!(by_name.status.success());
    let secret = stdout(&by_name).trim().to_owned();
    assert!(secret.starts_with("mbm_") && secret.len() == 68, "{secret}");
    assert!(stderr(&by_name).contains("shown once"));
    let by_id = issue_token(&db.url, &id, "viewer", "dashboard");
    assert_ne!(by_id, secret);
    let tokens = cli_ok(&db.url, &["token", "list", "--tenant", &id]);
    assert_eq!(tokens.lines().count(), 2);
    assert!(tokens.contains("\tci-bot\toperator\tactive") && !tokens.contains("mbm_"), "{tokens}");

    let token_id = tokens.lines().next().unwrap().split('\t').next().unwrap();
    cli_ok(&db.url, &["token", "revoke", token_id]);
    assert!(cli_ok(&db.url, &["token", "list", "--tenant", "acme"]).contains("revoked "));
    let again = cli(&db.url, &["token", "revoke", token_id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("no active token"), "{}", stderr(&again));

    let bad_role = cli(&db.url, &["token", "issue", "--tenant", "acme", "--role", "root", "--subject", "x"]);
    assert!(!bad_role.status.success());
    assert!(stderr(&bad_role).contains("root"), "{}", stderr(&bad_role));
    let nobody = cli(&db.url, &["token", "issue", "--tenant", "nobody", "--role", "viewer", "--subject", "x"]);
    assert!(stderr(&nobody).contains("no tenant with id or name \"nobody\""), "{}", stderr(&nobody));
    let forever = cli(
        &db.url,
        &["token", "issue", "--tenant", "acme", "--role", "viewer", "--subject", "x", "--expires-in-days", "0"],
    );
    assert!(stderr(&forever).contains("`expires_in_days`"), "{}", stderr(&forever));

    let verify = cli_ok(&db.url, &["audit", "verify"]);
    assert!(verify.starts_with("ok") && verify.contains("4 records"), "tenant_create + 2 issues + revoke: {verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_first_bad_record_and_fails() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    for subject in ["a", "b", "c", "d"] {
        issue_token(&db.url, &tenant, "viewer", subject);
    }
    create_tenant(&db.url, "zeta");
    assert!(cli(&db.url, &["audit", "verify"]).status.success());

    let store = open_store(&db.url).await;
    bypass_audit_triggers(&store).await;
    sqlx::query("UPDATE audit_log SET actor_subject = 'mallory' WHERE seq = 3 AND tenant_id = $1")
        .bind(&tenant)
        .execute(store.pool())
        .await
        .unwrap();
    let out = cli(&db.url, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(report.contains(&format!("BROKEN  tenant \"acme\" ({tenant}): record seq 3: hash mismatch")), "{report}");
    assert!(report.contains("ok      tenant \"zeta\""), "other chains are still reported: {report}");
    let only_zeta = cli(&db.url, &["audit", "verify", "--tenant", "zeta"]);
    assert!(only_zeta.status.success(), "{}", stdout(&only_zeta));

    // With a second problem further on, the first one is still the one reported.
    sqlx::query("DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 5")
        .bind(&tenant)
        .execute(store.pool())
        .await
        .unwrap();
    let out = cli(&db.url, &["audit", "verify", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("record seq 3"), "the first problem is reported first: {}", stdout(&out));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_chain_is_reported_at_the_missing_record() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    for subject in ["a", "b", "c"] {
        issue_token(&db.url, &tenant, "viewer", subject);
    }
    let store = open_store(&db.url).await;
    bypass_audit_triggers(&store).await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 4").execute(store.pool()).await.unwrap();
    let out = cli(&db.url, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("record seq 4: missing tail: the chain head says 4 records; only 3 remain"),
        "{}",
        stdout(&out)
    );
    store.close().await;
}

#[test]
fn migrate_creates_the_sqlite_file_and_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/budget.sqlite3");
    let url = format!("sqlite://{}", path.display());
    let out = cli(&url, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(path.is_file());
    assert!(cli(&url, &["migrate"]).status.success(), "migrating twice is harmless");
}

#[test]
fn misconfiguration_is_named_and_leaks_no_secret() {
    let out = cli("postgres://admin:hunter2@127.0.0.1:1/nowhere", &["tenant", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot open database postgres://admin:***@127.0.0.1:1/nowhere"), "{err}");
    assert!(err.contains("Connection refused"), "the real cause, not a pool timeout: {err}");
    assert!(!err.contains("hunter2"), "{err}");

    let out = cli("mysql://root:pw@localhost/db", &["tenant", "list"]);
    assert!(stderr(&out).contains("`database_url`") && !stderr(&out).contains(":pw@"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[http]\nlisten = \"everywhere\"\n").unwrap();
    let out = std::process::Command::new(bin())
        .args(["--config", cfg.to_str().unwrap(), "serve", "--transport", "http"])
        .env("MBM_DATABASE_URL", format!("sqlite://{}", dir.path().join("x.db").display()))
        .output()
        .unwrap();
    assert!(stderr(&out).contains("invalid setting `http.listen`"), "{}", stderr(&out));

    std::fs::write(&cfg, "listen = 1\n").unwrap();
    let out = std::process::Command::new(bin()).args(["--config", cfg.to_str().unwrap(), "migrate"]).output().unwrap();
    assert!(stderr(&out).contains("unknown field `listen`"), "{}", stderr(&out));
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let file_db = dir.path().join("file.db");
    let env_db = dir.path().join("env.db");
    let flag_db = dir.path().join("flag.db");
    std::fs::write(&cfg, format!("database_url = \"sqlite://{}\"\n", file_db.display())).unwrap();
    let run = |env: Option<&std::path::Path>, flag: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(bin());
        c.args(["--config", cfg.to_str().unwrap()]).env_remove("MBM_DATABASE_URL");
        if let Some(e) = env {
            c.env("MBM_DATABASE_URL", format!("sqlite://{}", e.display()));
        }
        if let Some(f) = flag {
            c.arg("--database-url").arg(format!("sqlite://{}", f.display()));
        }
        assert!(c.arg("migrate").output().unwrap().status.success());
    };
    run(None, None);
    assert!(file_db.exists() && !env_db.exists());
    run(Some(&env_db), None);
    assert!(env_db.exists() && !flag_db.exists());
    run(Some(&env_db), Some(&flag_db));
    assert!(flag_db.exists());
}

/// `audit verify` and `audit export` draw a progress bar (rate, ETA) on a terminal and nothing when piped.
#[test]
fn audit_progress_shows_on_a_terminal_only() {
    let db = sqlite_db();
    create_tenant(&db.url, "acme");
    let piped = cli(&db.url, &["audit", "verify"]);
    assert!(piped.status.success());
    assert!(!stderr(&piped).contains("verifying"), "no progress bar when piped: {}", stderr(&piped));

    // `script` runs the command on a pseudo-terminal and copies what it wrote.
    let command = format!("{} audit verify", bin());
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("MBM_DATABASE_URL", &db.url)
        .env("MBM_CONFIG", "/dev/null")
        .env("MBM_LOG", "warn")
        .env("MBM_MASTER_KEY", TEST_MASTER_KEY)
        .env("MBM_AUDIT_SIGNING_KEY", TEST_AUDIT_KEY)
        .output()
        .expect("run script(1)");
    let terminal = stdout(&out);
    assert!(out.status.success(), "{terminal}");
    assert!(terminal.contains("verifying") && terminal.contains("records") && terminal.contains("ETA"), "{terminal}");
    assert!(terminal.contains("ok      tenant \"acme\""), "{terminal}");
}
