//! `keys`: generate a master key, print the configured key's id, and rotate every stored secret to the
//! current key (the rotation itself is [`crate::admin::keys`]).

use std::process::ExitCode;

use super::{KeysCmd, cli_actor};
use crate::admin::{self, RotationError};
use crate::config::Config;
use crate::store::Store;

pub(super) async fn run(store: &Store, config: &Config, cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    if let KeysCmd::Generate = cmd {
        println!("{}", crate::crypto::generate_key_text());
        return Ok(ExitCode::SUCCESS);
    }
    let ring = config.keys.load()?.ok_or(crate::crypto::KeyError::Missing)?;
    if let KeysCmd::Current = cmd {
        println!("{}", ring.current_id());
        return Ok(ExitCode::SUCCESS);
    }
    match admin::rotate_keys(store, &ring, &cli_actor()).await {
        Ok(r) => {
            eprintln!(
                "re-encrypted {} secret(s) under key id {}; {} already used it",
                r.rotated, r.key_id, r.already_current
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(RotationError::Unreadable(secrets)) => {
            for s in &secrets {
                eprintln!("{} of tenant {}: {}", s.target, s.tenant_id, s.error);
            }
            eprintln!("{}", RotationError::Unreadable(secrets));
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
