//! `audit`: verify the chains and their signed checkpoints, sign checkpoints, export a chain (JSON Lines or
//! CEF), and verify an export offline, with a progress bar on a terminal.

use std::process::ExitCode;

use super::{AuditCmd, ExportFormat};
use crate::admin;
use crate::domain::TenantId;
use crate::store::Store;

pub(super) async fn run(store: &Store, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify { tenant } => audit_verify(store, tenant.as_deref()).await,
        AuditCmd::PublicKey => {
            let keys = store.audit_keys().ok_or_else(no_signing_key)?;
            println!("{}", keys.public_key().to_text());
            eprintln!("key id {}", keys.public_key().id());
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Checkpoint { tenant } => {
            store.audit_keys().ok_or_else(no_signing_key)?;
            match tenant {
                Some(t) => {
                    let t = admin::find_tenant(store, &t).await?;
                    let cp = store.checkpoint_audit_head(t.id.parse()?).await?;
                    println!("{}", serde_json::to_string(&cp)?);
                }
                None => eprintln!("signed {} checkpoint(s)", store.checkpoint_grown_chains().await?),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export { tenant, format, output } => audit_export(store, &tenant, format, output.as_deref()).await,
        AuditCmd::VerifyFile { file, public_key } => verify_file(&file, &public_key),
    }
}

fn no_signing_key() -> anyhow::Error {
    anyhow::Error::msg(crate::audit::checkpoint::NO_SIGNING_KEY)
}

/// A progress bar on stderr when it is a terminal; nothing when piped or redirected.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new(what: &str, template: &str) -> Self {
        use std::io::IsTerminal;
        let target = if std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(None, target);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        Self(bar)
    }

    fn records(what: &str) -> Self {
        Self::new(what, "{msg} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, ETA {eta}")
    }
}

impl crate::store::Progress for Bar {
    fn total(&self, records: u64) {
        self.0.set_length(records);
    }
    fn advance(&self, records: u64) {
        self.0.inc(records);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

async fn audit_verify(store: &Store, tenant: Option<&str>) -> anyhow::Result<ExitCode> {
    let only = match tenant {
        Some(t) => Some(admin::find_tenant(store, t).await?.id.parse::<TenantId>()?),
        None => None,
    };
    let report = {
        let bar = Bar::records("verifying");
        store.verify_audit_with(only, &bar).await?
    };
    for c in &report.chains {
        match &c.first_break {
            None => {
                let anchor = match (&c.latest_checkpoint, c.checkpoints_checked) {
                    (_, false) => "checkpoints not checked (no audit signing key configured)".to_owned(),
                    (Some(cp), true) => format!("signed checkpoint at seq {} ({}, key {})", cp.seq, cp.at, cp.key_id),
                    (None, true) => "no signed checkpoint yet".to_owned(),
                };
                println!(
                    "ok      tenant {:?} ({}): {} records, head seq {} hash {}, {anchor}",
                    c.tenant_name, c.tenant_id, c.records_checked, c.head_seq, c.head_hash
                )
            }
            Some(b) => println!("BROKEN  tenant {:?} ({}): {b}", c.tenant_name, c.tenant_id),
        }
    }
    Ok(if report.is_valid() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn audit_export(
    store: &Store,
    tenant: &str,
    format: ExportFormat,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use crate::audit::export::{EXPORT_FORMAT, ExportHeader, ExportLine, cef_line};
    use crate::store::ExportItem;
    use std::io::Write;

    let t = admin::find_tenant(store, tenant).await?;
    let tenant_id: TenantId = t.id.parse()?;
    let upto = match store.audit_keys() {
        Some(_) => store.checkpoint_audit_head(tenant_id).await?.seq,
        None => {
            eprintln!(
                "warning: no audit signing key configured: the export gets no fresh checkpoint, and records after \
                 the last one cannot be verified offline"
            );
            store.audit_head_seq(tenant_id).await?
        }
    };
    let mut out: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    if format == ExportFormat::Jsonl {
        let header = ExportHeader {
            format: EXPORT_FORMAT.into(),
            tenant_id: t.id.clone(),
            tenant_name: t.name.clone(),
            exported_at: crate::domain::clock::format_timestamp(jiff::Timestamp::now()),
            records: upto,
        };
        out.write_all(ExportLine::Header(header).to_line().as_bytes())?;
    }
    let (mut records, mut checkpoints) = (0u64, 0u64);
    {
        let bar = Bar::records("exporting");
        store
            .export_audit(tenant_id, upto, &bar, |item| match (item, format) {
                (ExportItem::Record(r), ExportFormat::Jsonl) => {
                    records += 1;
                    out.write_all(ExportLine::Record(r).to_line().as_bytes())
                }
                (ExportItem::Record(r), ExportFormat::Cef) => {
                    records += 1;
                    writeln!(out, "{}", cef_line(&r, env!("CARGO_PKG_VERSION")))
                }
                (ExportItem::Checkpoint(cp), ExportFormat::Jsonl) => {
                    checkpoints += 1;
                    out.write_all(ExportLine::Checkpoint(cp).to_line().as_bytes())
                }
                (ExportItem::Checkpoint(_), ExportFormat::Cef) => Ok(()),
            })
            .await?;
    }
    out.flush()?;
    eprintln!(
        "exported {records} records and {checkpoints} signed checkpoints of tenant {:?} ({}){}",
        t.name,
        t.id,
        output.map(|p| format!(" to {}", p.display())).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify_file(path: &std::path::Path, public_key: &str) -> anyhow::Result<ExitCode> {
    let keys = crate::audit::checkpoint::parse_public_keys(public_key).map_err(anyhow::Error::msg)?;
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let size = file.metadata()?.len();
    let report = {
        let bar = Bar::new(
            "verifying",
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}, ETA {eta}",
        );
        bar.0.set_length(size);
        crate::audit::export::verify_jsonl(std::io::BufReader::with_capacity(1 << 20, file), &keys, |b| {
            bar.0.set_position(b)
        })?
    };
    match (&report.first_break, &report.verified) {
        (None, Some(v)) => {
            let cp = v.latest_checkpoint.as_ref().expect("a verified export ends with a checkpoint");
            println!(
                "ok      export of tenant {:?} ({}): {} records verified, head hash {}, signed checkpoint at seq {} ({}, key {})",
                report.tenant_name, report.tenant_id, v.records_checked, v.head_hash, cp.seq, cp.at, cp.key_id
            );
            Ok(ExitCode::SUCCESS)
        }
        (Some(b), _) => {
            println!("BROKEN  export of tenant {:?} ({}): {b}", report.tenant_name, report.tenant_id);
            Ok(ExitCode::from(1))
        }
        (None, None) => unreachable!("a report without a break is verified"),
    }
}
