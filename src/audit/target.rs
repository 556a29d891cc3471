//! What an audit record is about: one typed name per kind of object, written `kind:id`.
//!
//! Every record the server writes names its target through [`Target`], and whatever reads targets back
//! (the change bus, which announces budget changes to subscribed sessions) parses them here, so the
//! spelling of a kind lives in one place. Records read back from the log keep their target as text:
//! older records, records of other versions and test records need not be one of these.

use std::fmt;

use crate::domain::TenantId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tenant(TenantId),
    Token(String),
    Budget(String),
    Threshold(String),
    ThresholdAction(String),
    ActionPlan(String),
    MakeConnection(String),
    MakeOrganization(i64),
    MakeScenario(i64),
    /// Several scenarios changed by one call, in the order asked.
    MakeScenarios(Vec<i64>),
    Webhook(String),
    /// A tenant's audit chain (checkpoints).
    AuditChain(TenantId),
    /// A tool or request refused before it touched anything (denials).
    Tool(String),
    /// A principal, by subject (summaries of its denied calls).
    Principal(String),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Tenant(_) => "tenant",
            Target::Token(_) => "token",
            Target::Budget(_) => "budget",
            Target::Threshold(_) => "threshold",
            Target::ThresholdAction(_) => "threshold_action",
            Target::ActionPlan(_) => "action_plan",
            Target::MakeConnection(_) => "make_connection",
            Target::MakeOrganization(_) => "make_organization",
            Target::MakeScenario(_) => "make_scenario",
            Target::MakeScenarios(_) => "make_scenarios",
            Target::Webhook(_) => "webhook",
            Target::AuditChain(_) => "audit_chain",
            Target::Tool(_) => "tool",
            Target::Principal(_) => "principal",
        }
    }

    /// Read a target written by [`fmt::Display`]; `None` for text that is not one.
    pub fn parse(s: &str) -> Option<Target> {
        let (kind, id) = s.split_once(':')?;
        let text = || (!id.is_empty()).then(|| id.to_owned());
        let number = || id.parse::<i64>().ok();
        let tenant = || id.parse::<TenantId>().ok();
        Some(match kind {
            "tenant" => Target::Tenant(tenant()?),
            "token" => Target::Token(text()?),
            "budget" => Target::Budget(text()?),
            "threshold" => Target::Threshold(text()?),
            "threshold_action" => Target::ThresholdAction(text()?),
            "action_plan" => Target::ActionPlan(text()?),
            "make_connection" => Target::MakeConnection(text()?),
            "make_organization" => Target::MakeOrganization(number()?),
            "make_scenario" => Target::MakeScenario(number()?),
            "make_scenarios" => {
                Target::MakeScenarios(id.split(',').map(|n| n.parse().ok()).collect::<Option<Vec<i64>>>()?)
            }
            "webhook" => Target::Webhook(text()?),
            "audit_chain" => Target::AuditChain(tenant()?),
            "tool" => Target::Tool(text()?),
            "principal" => Target::Principal(text()?),
            _ => return None,
        })
    }

    /// The budget this target is, if it is one.
    pub fn budget_id(&self) -> Option<&str> {
        match self {
            Target::Budget(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind())?;
        match self {
            Target::Tenant(t) | Target::AuditChain(t) => write!(f, "{t}"),
            Target::Token(s)
            | Target::Budget(s)
            | Target::Threshold(s)
            | Target::ThresholdAction(s)
            | Target::ActionPlan(s)
            | Target::MakeConnection(s)
            | Target::Webhook(s)
            | Target::Tool(s)
            | Target::Principal(s) => f.write_str(s),
            Target::MakeOrganization(n) | Target::MakeScenario(n) => write!(f, "{n}"),
            Target::MakeScenarios(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{id}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_what_it_writes() {
        let tenant = TenantId::new();
        let all = [
            Target::Tenant(tenant),
            Target::Token("0193-t".into()),
            Target::Budget("0193-b".into()),
            Target::Threshold("0193-th".into()),
            Target::ThresholdAction("0193-a".into()),
            Target::ActionPlan("0193-p".into()),
            Target::MakeConnection("0193-c".into()),
            Target::MakeOrganization(123),
            Target::MakeScenario(4567),
            Target::MakeScenarios(vec![1, 22, 333]),
            Target::Webhook("0193-w".into()),
            Target::AuditChain(tenant),
            Target::Tool("update_budget".into()),
            Target::Principal("alice@example.com".into()),
        ];
        for t in all {
            let text = t.to_string();
            assert!(text.starts_with(&format!("{}:", t.kind())), "{text}");
            assert_eq!(Target::parse(&text), Some(t), "{text}");
        }
        assert_eq!(Target::MakeScenarios(vec![1, 2]).to_string(), "make_scenarios:1,2");
        assert_eq!(Target::Budget("b1".into()).budget_id(), Some("b1"));
        assert_eq!(Target::Threshold("b1".into()).budget_id(), None);
    }

    #[test]
    fn text_that_is_no_target_is_refused() {
        for s in ["budget", "budget:", "nothing:1", "make_scenario:x", "make_scenarios:1,,2", "tenant:nope", "p"] {
            assert_eq!(Target::parse(s), None, "{s}");
        }
    }
}
