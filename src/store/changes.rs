//! The process-wide change bus: after a mutation commits, the budgets its audit records name are
//! announced here, so MCP sessions subscribed to `budget://<id>` can be told (`notifications/resources/
//! updated`), whichever session, tool or engine task made the change.
//!
//! The audit record is the one place every mutation passes through, so the bus needs no publish call in
//! the tools: a record names a budget by its target (`budget:<id>`) or by a `budget_id` field in its
//! before/after snapshot (thresholds, threshold actions, plans). Events are published only after the
//! transaction committed; a rolled-back change announces nothing. A slow subscriber that falls more than
//! [`CAPACITY`] events behind loses the oldest (tokio broadcast semantics), which it is told about.

use tokio::sync::broadcast;

use crate::audit::{AuditEntry, Target};
use crate::domain::TenantId;

/// Events buffered per subscriber before the oldest are dropped.
pub const CAPACITY: usize = 1024;

/// A committed change to one budget (or to something that belongs to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetChanged {
    pub tenant_id: TenantId,
    pub budget_id: String,
}

/// The budget ids an audit entry names (its target, or `budget_id` in its snapshots), without repeats.
pub fn budgets_named(entry: &AuditEntry) -> Vec<String> {
    let mut ids = Vec::new();
    if let Some(id) = Target::parse(&entry.target).as_ref().and_then(Target::budget_id) {
        ids.push(id.to_owned());
    }
    for snapshot in [&entry.before, &entry.after].into_iter().flatten() {
        if let Some(id) = snapshot.get("budget_id").and_then(|v| v.as_str()) {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// The sending half, shared by every clone of the store.
#[derive(Debug, Clone)]
pub struct ChangeBus {
    tx: broadcast::Sender<BudgetChanged>,
}

impl Default for ChangeBus {
    fn default() -> Self {
        Self { tx: broadcast::channel(CAPACITY).0 }
    }
}

impl ChangeBus {
    pub fn subscribe(&self) -> broadcast::Receiver<BudgetChanged> {
        self.tx.subscribe()
    }

    /// Announce committed changes. Having no subscriber is normal and not an error.
    pub fn publish(&self, tenant_id: TenantId, budget_ids: impl IntoIterator<Item = String>) {
        for budget_id in budget_ids {
            let _ = self.tx.send(BudgetChanged { tenant_id, budget_id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Outcome};

    fn entry(target: &str, before: Option<serde_json::Value>, after: Option<serde_json::Value>) -> AuditEntry {
        AuditEntry {
            actor: Actor { subject: "a".into(), role: "admin".into(), transport: "stdio".into() },
            action: "x".into(),
            target: target.into(),
            outcome: Outcome::Success,
            reason: None,
            request_id: "r".into(),
            before,
            after,
        }
    }

    #[test]
    fn budgets_are_found_by_target_and_by_snapshot_field() {
        assert_eq!(budgets_named(&entry("budget:b1", None, None)), vec!["b1"]);
        let t = entry("threshold:t1", Some(serde_json::json!({"budget_id": "b2"})), None);
        assert_eq!(budgets_named(&t), vec!["b2"]);
        let moved = entry(
            "budget:b1",
            Some(serde_json::json!({"budget_id": "b1"})),
            Some(serde_json::json!({"budget_id": "b3"})),
        );
        assert_eq!(budgets_named(&moved), vec!["b1", "b3"]);
        assert!(budgets_named(&entry("webhook:w1", None, Some(serde_json::json!({"url": "x"})))).is_empty());
    }

    #[tokio::test]
    async fn subscribers_receive_published_changes() {
        let bus = ChangeBus::default();
        let mut rx = bus.subscribe();
        let tenant = TenantId::new();
        bus.publish(tenant, ["b1".to_owned()]);
        assert_eq!(rx.recv().await.unwrap(), BudgetChanged { tenant_id: tenant, budget_id: "b1".into() });
    }
}
