//! MCP prompts that help an agent review a budget, and `completion/complete` for their `budget_id`
//! argument and the `budget://{id}` resource template.
//!
//! Prompts embed the budget's current status (computed as `get_budget_status` does) so the agent starts
//! from facts, then name the tools to call next. They need the permission `get_budget_status` needs and
//! see only the caller's tenant; an id that is malformed, missing or foreign is refused the same way.

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CompleteResult, CompletionInfo, GetPromptResult, PromptMessage, Reference, Role as MsgRole};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, prompt, prompt_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::error::protocol_error;
use super::resources::BUDGET_TEMPLATE;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::Budget;
use crate::engine::status::BudgetStatus;

/// The prompts' one argument.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetPromptArgs {
    /// Budget id (UUID) from list_budgets; completion suggests ids of your budgets by id or name prefix.
    pub budget_id: String,
}

/// Most completion values returned (the MCP limit).
pub const MAX_COMPLETIONS: usize = CompletionInfo::MAX_VALUES;

impl BudgetServer {
    /// The budget and its status for a prompt, or an `invalid_params` error naming `budget_id`.
    async fn prompt_subject(&self, call: &CallCtx, id: &str) -> Result<(Budget, BudgetStatus), ErrorData> {
        let budget = self.budget_of(call, id, "budget_id").await.map_err(|e| match e {
            ToolError::NotFound { .. } => {
                ErrorData::invalid_params(format!("budget_id: budget {id} not found; list_budgets shows yours"), None)
            }
            other => protocol_error(other),
        })?;
        let status = self.status_of(call, &budget).await?;
        Ok((budget, status.status))
    }

    /// Up to [`MAX_COMPLETIONS`] ids of the caller's budgets whose id or name starts with `prefix`
    /// (case-insensitive), with `hasMore` when there are more.
    pub(super) async fn complete_budget_ids(
        &self,
        prefix: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let call = self.guard(context, "completion/complete", "list_budgets").await?;
        let needle = prefix.to_lowercase();
        let (mut values, mut more, mut cursor) = (Vec::new(), false, None);
        loop {
            let page = self.budget_page(&call, cursor, 200).await?;
            for b in &page.budgets {
                if b.id.starts_with(&needle) || b.spec.name.to_lowercase().starts_with(&needle) {
                    if values.len() == MAX_COMPLETIONS {
                        more = true;
                        break;
                    }
                    values.push(b.id.clone());
                }
            }
            match page.next_cursor {
                Some(c) if !more => {
                    cursor = Some(c.parse().map_err(|_| ErrorData::internal_error("bad cursor", None))?)
                }
                _ => break,
            }
        }
        let info =
            CompletionInfo::with_pagination(values, None, more).map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    /// Completion for the arguments we know; anything else has nothing to suggest.
    pub(super) async fn complete_ref(
        &self,
        reference: &Reference,
        argument: &str,
        value: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let ours = match reference {
            Reference::Prompt(p) => self.prompt_router.has_route(&p.name) && argument == "budget_id",
            Reference::Resource(r) => r.uri == BUDGET_TEMPLATE && argument == "id",
            _ => false,
        };
        if ours { self.complete_budget_ids(value, context).await } else { Ok(CompleteResult::default()) }
    }

    pub fn prompts() -> PromptRouter<BudgetServer> {
        Self::budget_prompts()
    }
}

#[prompt_router(router = "budget_prompts", vis = "pub(super)")]
impl BudgetServer {
    /// Review one budget: its current status is embedded; the agent is told which tools give the detail
    /// (history, forecast, thresholds, automated actions) and what to report.
    #[prompt(name = "review_budget")]
    async fn review_budget(
        &self,
        Parameters(args): Parameters<BudgetPromptArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<GetPromptResult, ErrorData> {
        let (budget, status) = self.prompt_subject(&call, &args.budget_id).await?;
        let status_json =
            serde_json::to_string_pretty(&status).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let text = format!(
            "Review the Make.com budget \"{name}\" (id {id}).\n\nIts current status (from get_budget_status):\n\
             ```json\n{status_json}\n```\n\n\
             1. Call get_budget_history with id {id} to see the daily spend this period.\n\
             2. Call forecast_spend with id {id} and compare the period-end forecast and its 80 %/95 % intervals \
             with the limit.\n\
             3. Call list_thresholds with budget_id {id} and check whether the thresholds and their actions \
             (list_actions) would catch an overrun in time.\n\
             4. If data.stale is true, say so: the figures are only as fresh as the last sync_usage.\n\
             Report: where the budget stands, whether it will likely end over its limit, the scenarios driving \
             spend, and concrete changes (limit, thresholds, actions) with the tool call that would make each.",
            name = budget.spec.name,
            id = budget.id,
        );
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(MsgRole::User, text)])
            .with_description(format!("Review of budget {}", budget.spec.name)))
    }

    /// Investigate why a budget is over (or heading over) its limit: its status is embedded; the agent is
    /// told how to find the scenarios responsible and what it may propose, without pausing anything itself.
    #[prompt(name = "investigate_overrun")]
    async fn investigate_overrun(
        &self,
        Parameters(args): Parameters<BudgetPromptArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<GetPromptResult, ErrorData> {
        let (budget, status) = self.prompt_subject(&call, &args.budget_id).await?;
        let status_json =
            serde_json::to_string_pretty(&status).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let situation = if status.over_limit {
            format!("is OVER its limit: {} of {} spent", status.spent, status.limit)
        } else {
            format!(
                "has spent {} of {} ({} %); the period-end forecast is {}",
                status.spent, status.limit, status.percent_used, status.forecast.period_end_total
            )
        };
        let text = format!(
            "Investigate the Make.com budget \"{name}\" (id {id}), which {situation}.\n\n\
             Its current status (from get_budget_status):\n```json\n{status_json}\n```\n\n\
             1. Start from top_scenarios above; call get_scenario_usage for each to see when its spend rose.\n\
             2. Call list_actions with budget_id {id} for plans already created by threshold crossings, and \
             query_audit_log (if you may) for recent changes to this budget.\n\
             3. Use preview_action to show what an automated pause would do. Do not pause or resume scenarios \
             yourself unless the user asks; propose it with the exact pause_scenarios call instead.\n\
             Report: the scenarios responsible, since when, the expected overrun at period end, and options.",
            name = budget.spec.name,
            id = budget.id,
        );
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(MsgRole::User, text)])
            .with_description(format!("Overrun investigation of budget {}", budget.spec.name)))
    }
}
