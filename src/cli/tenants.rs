//! `tenant` and `token`: tenants and the API tokens of the HTTP transport (the operations are
//! [`crate::admin`]'s).

use std::process::ExitCode;

use super::{TenantCmd, TokenCmd, cli_actor};
use crate::admin;
use crate::domain::TenantId;
use crate::store::Store;

pub(super) async fn tenant(store: &Store, cmd: TenantCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCmd::Create { name } => {
            let t = admin::create_tenant(store, &name, &cli_actor()).await?;
            eprintln!("created tenant {:?}", t.name);
            println!("{}", t.id);
        }
        TenantCmd::List => {
            for t in store.tenants().await? {
                println!("{}\t{}\t{}", t.id, t.name, t.created_at);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn token(store: &Store, cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Issue { tenant, role, subject, expires_in_days } => {
            let t = admin::find_tenant(store, &tenant).await?;
            let (rec, secret) = admin::issue_token(store, &t, role, &subject, expires_in_days, &cli_actor()).await?;
            eprintln!(
                "issued token {} for {:?} ({}) in tenant {:?}{}; it is shown once, store it now",
                rec.id,
                rec.subject,
                rec.role,
                rec.tenant_name,
                rec.expires_at.as_deref().map(|e| format!(", expires {e}")).unwrap_or_default()
            );
            println!("{secret}");
        }
        TokenCmd::Revoke { token_id } => {
            let rec = admin::revoke_token(store, &token_id, &cli_actor()).await?;
            eprintln!("revoked token {} of {:?} in tenant {:?}", rec.id, rec.subject, rec.tenant_name);
        }
        TokenCmd::List { tenant } => {
            let t = admin::find_tenant(store, &tenant).await?;
            let id: TenantId = t.id.parse()?;
            for k in store.tenant(id).tokens().await? {
                let state = match (&k.revoked_at, &k.expires_at) {
                    (Some(r), _) => format!("revoked {r}"),
                    (None, Some(e)) => format!("expires {e}"),
                    (None, None) => "active".into(),
                };
                println!("{}\t{}\t{}\t{}", k.id, k.subject, k.role, state);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
