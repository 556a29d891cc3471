//! Signing a checkpoint of the caller's audit chain on request: the request's own record is appended and
//! covered by the signature, in one transaction.

use super::caller::Caller;
use super::error::{Error, Result};
use crate::audit::checkpoint::NO_SIGNING_KEY;
use crate::audit::{Checkpoint, Target};

/// The new checkpoint and the public key (base64 Ed25519) that verifies it.
pub async fn sign(c: &Caller<'_>) -> Result<(Checkpoint, String)> {
    let keys = c.app.store.audit_keys().cloned().ok_or_else(|| {
        Error::Unavailable(format!("{NO_SIGNING_KEY} on this server; ask its operator to configure one"))
    })?;
    let tx = c.store().begin().await?;
    let entry = c.entry(Target::AuditChain(c.tenant), None::<&()>, None::<&()>);
    let (_, checkpoint) = tx.commit_with_checkpoint(entry).await?;
    Ok((checkpoint, keys.public_key().to_text()))
}
