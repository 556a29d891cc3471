//! `budget chart`: a budget's current period as a PNG file, the same picture as the `get_budget_chart` tool.

use std::process::ExitCode;

use crate::admin;
use crate::domain::TenantId;
use crate::store::Store;

pub(super) async fn chart(
    store: &Store,
    id: &str,
    output: &std::path::Path,
    tenant: Option<&str>,
    width: u32,
    height: u32,
) -> anyhow::Result<ExitCode> {
    let budget_id: crate::domain::BudgetId =
        id.parse().map_err(|_| anyhow::anyhow!("{id:?} is not a budget id (a UUID)"))?;
    let tenant_id = match tenant {
        Some(t) => admin::find_tenant(store, t).await?.id.parse::<TenantId>()?,
        None => store.budget_tenant(budget_id).await?.ok_or_else(|| anyhow::anyhow!("no budget with id {id}"))?,
    };
    let budget = store.tenant(tenant_id).budget(budget_id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound => anyhow::anyhow!("no budget with id {id} in that tenant"),
        e => e.into(),
    })?;
    let computed = crate::engine::status::compute(store, tenant_id, &budget, store.clock().now()).await?;
    let png = crate::chart::render_png(&computed.chart_input(width, height))?;
    std::fs::write(output, &png).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    let s = &computed.status;
    eprintln!(
        "wrote {} ({width}x{height}): {} — {} of {} spent, forecast {} by {}",
        output.display(),
        s.name,
        s.spent,
        s.limit,
        s.forecast.period_end_total,
        s.window.last_day
    );
    Ok(ExitCode::SUCCESS)
}
