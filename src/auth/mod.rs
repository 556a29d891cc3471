//! Who is calling and what they may do.
//!
//! A [`Principal`] always comes from the transport: the bearer token over HTTP, the local operator's
//! configuration over stdio, the operating-system user for CLI admin commands. Tools never take a tenant
//! argument. [`ROLE_PERMISSIONS`] and [`TOOL_PERMISSIONS`] are the whole access policy, as data.

pub mod oauth;
pub mod token;

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{TenantId, TokenId};

/// Something a principal may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Permission {
    #[serde(rename = "budget:read")]
    BudgetRead,
    #[serde(rename = "budget:create")]
    BudgetCreate,
    #[serde(rename = "budget:update")]
    BudgetUpdate,
    #[serde(rename = "budget:delete")]
    BudgetDelete,
    #[serde(rename = "budget:threshold_management")]
    ThresholdManagement,
    #[serde(rename = "budget:execute_automated_actions")]
    ExecuteAutomatedActions,
    #[serde(rename = "budget:audit_read")]
    AuditRead,
    #[serde(rename = "budget:emergency_controls")]
    EmergencyControls,
    /// Add and remove Make connections (which hold Make credentials).
    #[serde(rename = "make:manage_connections")]
    ManageConnections,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::BudgetRead,
        Permission::BudgetCreate,
        Permission::BudgetUpdate,
        Permission::BudgetDelete,
        Permission::ThresholdManagement,
        Permission::ExecuteAutomatedActions,
        Permission::AuditRead,
        Permission::EmergencyControls,
        Permission::ManageConnections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::BudgetRead => "budget:read",
            Permission::BudgetCreate => "budget:create",
            Permission::BudgetUpdate => "budget:update",
            Permission::BudgetDelete => "budget:delete",
            Permission::ThresholdManagement => "budget:threshold_management",
            Permission::ExecuteAutomatedActions => "budget:execute_automated_actions",
            Permission::AuditRead => "budget:audit_read",
            Permission::EmergencyControls => "budget:emergency_controls",
            Permission::ManageConnections => "make:manage_connections",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role held by a principal within one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Auditor,
    Manager,
    Operator,
    Admin,
}

use Permission as P;

/// The role → permission table. Keep it the single source of truth; `tests::role_table_is_exact`
/// pins every cell.
pub const ROLE_PERMISSIONS: &[(Role, &[Permission])] = &[
    (Role::Viewer, &[P::BudgetRead]),
    (Role::Auditor, &[P::BudgetRead, P::AuditRead]),
    (Role::Manager, &[P::BudgetRead, P::BudgetCreate, P::BudgetUpdate, P::ThresholdManagement]),
    (
        Role::Operator,
        &[P::BudgetRead, P::BudgetCreate, P::BudgetUpdate, P::ThresholdManagement, P::ExecuteAutomatedActions],
    ),
    (Role::Admin, &Permission::ALL),
];

/// The tool → required permission table. `None` means any authenticated principal may call it.
/// Every tool the MCP router serves must appear here (checked by a test in `mcp`).
pub const TOOL_PERMISSIONS: &[(&str, Option<Permission>)] = &[
    ("whoami", None),
    ("create_budget", Some(P::BudgetCreate)),
    ("get_budget", Some(P::BudgetRead)),
    ("list_budgets", Some(P::BudgetRead)),
    ("update_budget", Some(P::BudgetUpdate)),
    ("delete_budget", Some(P::BudgetDelete)),
    ("connect_make", Some(P::ManageConnections)),
    ("list_make_connections", Some(P::BudgetRead)),
    ("remove_make_connection", Some(P::ManageConnections)),
    ("sync_usage", Some(P::BudgetUpdate)),
    ("list_scenarios", Some(P::BudgetRead)),
    ("get_scenario_usage", Some(P::BudgetRead)),
    ("pause_scenarios", Some(P::ExecuteAutomatedActions)),
    ("resume_scenarios", Some(P::ExecuteAutomatedActions)),
    ("get_budget_status", Some(P::BudgetRead)),
    ("get_budget_chart", Some(P::BudgetRead)),
    ("get_budget_history", Some(P::BudgetRead)),
    ("forecast_spend", Some(P::BudgetRead)),
    ("add_threshold", Some(P::ThresholdManagement)),
    ("update_threshold", Some(P::ThresholdManagement)),
    ("remove_threshold", Some(P::ThresholdManagement)),
    ("list_thresholds", Some(P::BudgetRead)),
    ("add_threshold_action", Some(P::ThresholdManagement)),
    ("remove_threshold_action", Some(P::ThresholdManagement)),
    ("list_threshold_actions", Some(P::BudgetRead)),
    ("set_scenario_critical", Some(P::ThresholdManagement)),
    ("preview_action", Some(P::BudgetRead)),
    ("list_actions", Some(P::BudgetRead)),
    ("get_action", Some(P::BudgetRead)),
    ("approve_action", Some(P::ExecuteAutomatedActions)),
    ("reject_action", Some(P::ExecuteAutomatedActions)),
    ("reverse_action", Some(P::ExecuteAutomatedActions)),
    ("cancel_action", Some(P::ExecuteAutomatedActions)),
    ("add_webhook", Some(P::ThresholdManagement)),
    ("list_webhooks", Some(P::BudgetRead)),
    ("remove_webhook", Some(P::ThresholdManagement)),
    ("query_audit_log", Some(P::AuditRead)),
    ("verify_audit_chain", Some(P::AuditRead)),
    ("create_audit_checkpoint", Some(P::AuditRead)),
];

/// A permission a call needs because of one of its arguments, beyond its tool's own: when the argument
/// at `pointer` (a JSON pointer into the call's arguments) equals `equals`, the caller needs `needs`.
/// `why` is told to the caller and written in the denial's audit record.
#[derive(Debug, Clone, Copy)]
pub struct ArgumentRule {
    pub tool: &'static str,
    pub pointer: &'static str,
    pub equals: &'static str,
    pub needs: Permission,
    pub why: &'static str,
}

/// The argument rules, checked by the guard in this order after the tool's permission. Checks that depend
/// on stored data rather than arguments (a plan's selector, the automatic actions a budget has) are made
/// by the use case that reads the data (`engine::Caller::require`).
pub const ARGUMENT_RULES: &[ArgumentRule] = &[
    ArgumentRule {
        tool: "add_threshold_action",
        pointer: "/selector/kind",
        equals: "all",
        needs: P::EmergencyControls,
        why: "selector `all` pauses critical scenarios too",
    },
    // Whoever sets up an automatic pause exercises it later: they must hold what it does.
    ArgumentRule {
        tool: "add_threshold_action",
        pointer: "/mode",
        equals: "automatic",
        needs: P::ExecuteAutomatedActions,
        why: "an automatic pause action pauses scenarios without approval",
    },
];

/// The first argument rule of `tool` that `arguments` trigger and `principal` does not satisfy.
pub fn argument_denial(
    principal: &Principal,
    tool: &str,
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Option<(Denied, &'static str)> {
    let arguments = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
    ARGUMENT_RULES
        .iter()
        .filter(|r| r.tool == tool && arguments.pointer(r.pointer).and_then(|v| v.as_str()) == Some(r.equals))
        .find_map(|r| authorize(principal, Some(r.needs)).err().map(|d| (d, r.why)))
}

/// The permission a tool needs, or `Err` if the tool is not in the table (unknown tools are refused).
pub fn tool_permission(tool: &str) -> Result<Option<Permission>, UnknownTool> {
    TOOL_PERMISSIONS.iter().find(|(name, _)| *name == tool).map(|(_, p)| *p).ok_or_else(|| UnknownTool(tool.to_owned()))
}

#[derive(Debug, thiserror::Error)]
#[error("tool `{0}` has no entry in the permission table")]
pub struct UnknownTool(pub String);

impl Role {
    pub const ALL: [Role; 5] = [Role::Viewer, Role::Auditor, Role::Manager, Role::Operator, Role::Admin];

    pub fn permissions(self) -> &'static [Permission] {
        ROLE_PERMISSIONS.iter().find(|(r, _)| *r == self).map(|(_, p)| *p).expect("every role is in ROLE_PERMISSIONS")
    }

    pub fn allows(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Manager => "manager",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; expected one of viewer, auditor, manager, operator, admin"))
    }
}

/// How the principal reached us; recorded in every audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Stdio,
    Http,
    /// HTTP served with `--no-auth` on loopback: the local operator, without a token. Recorded apart
    /// from `http` so the audit log never passes an unauthenticated call off as a token holder's.
    HttpNoAuth,
    Cli,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
            Transport::HttpNoAuth => "http_no_auth",
            Transport::Cli => "cli",
        }
    }
}

/// A request's correlation id: in every log line of the request, in audit records and in internal error
/// messages. Set by the HTTP layer (`x-request-id` or a new UUIDv7) and read by the MCP layer.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An authenticated caller, bound to exactly one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub subject: String,
    pub role: Role,
    pub transport: Transport,
    /// The API token used, for HTTP principals.
    pub token_id: Option<TokenId>,
}

/// The guard: allow, or deny naming the missing permission.
pub fn authorize(principal: &Principal, needed: Option<Permission>) -> Result<(), Denied> {
    match needed {
        Some(p) if !principal.role.allows(p) => Err(Denied { permission: p, role: principal.role }),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this call needs permission `{permission}`, which role `{role}` does not have")]
pub struct Denied {
    pub permission: Permission,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell of the role × permission matrix, written out independently of the table.
    #[test]
    fn role_table_is_exact() {
        let expected: &[(Role, [bool; 9])] = &[
            //               read  create update delete thresh execute audit  emergency connections
            (Role::Viewer, [true, false, false, false, false, false, false, false, false]),
            (Role::Auditor, [true, false, false, false, false, false, true, false, false]),
            (Role::Manager, [true, true, true, false, true, false, false, false, false]),
            (Role::Operator, [true, true, true, false, true, true, false, false, false]),
            (Role::Admin, [true, true, true, true, true, true, true, true, true]),
        ];
        for (role, row) in expected {
            for (p, want) in Permission::ALL.iter().zip(row) {
                assert_eq!(role.allows(*p), *want, "{role} × {p}");
            }
        }
        assert_eq!(ROLE_PERMISSIONS.len(), Role::ALL.len());
    }

    #[test]
    fn guard_names_missing_permission() {
        let p = Principal {
            tenant_id: TenantId::new(),
            tenant_name: "t".into(),
            subject: "v".into(),
            role: Role::Viewer,
            transport: Transport::Http,
            token_id: None,
        };
        assert!(authorize(&p, None).is_ok());
        assert!(authorize(&p, Some(Permission::BudgetRead)).is_ok());
        let d = authorize(&p, Some(Permission::BudgetDelete)).unwrap_err();
        assert_eq!(d.to_string(), "this call needs permission `budget:delete`, which role `viewer` does not have");
    }

    #[test]
    fn permission_names_match_serde() {
        for p in Permission::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn argument_rules_name_real_tools_and_trigger_on_their_value() {
        for r in ARGUMENT_RULES {
            assert!(tool_permission(r.tool).is_ok(), "{} is no tool", r.tool);
        }
        let manager = Principal {
            tenant_id: TenantId::new(),
            tenant_name: "t".into(),
            subject: "m".into(),
            role: Role::Manager,
            transport: Transport::Http,
            token_id: None,
        };
        let args = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let approval = args(serde_json::json!({"mode": "requires_approval", "selector": {"kind": "top_n"}}));
        assert!(argument_denial(&manager, "add_threshold_action", Some(&approval)).is_none());
        let all = args(serde_json::json!({"mode": "automatic", "selector": {"kind": "all"}}));
        let (denied, why) = argument_denial(&manager, "add_threshold_action", Some(&all)).unwrap();
        assert_eq!((denied.permission, why), (Permission::EmergencyControls, ARGUMENT_RULES[0].why));
        let automatic = args(serde_json::json!({"mode": "automatic"}));
        let (denied, _) = argument_denial(&manager, "add_threshold_action", Some(&automatic)).unwrap();
        assert_eq!(denied.permission, Permission::ExecuteAutomatedActions);
        assert!(argument_denial(&manager, "preview_action", Some(&all)).is_none(), "rules are per tool");
        let admin = Principal { role: Role::Admin, ..manager };
        assert!(argument_denial(&admin, "add_threshold_action", Some(&all)).is_none());
    }

    #[test]
    fn unknown_tools_have_no_permission() {
        assert!(tool_permission("drop_everything").is_err());
        assert_eq!(tool_permission("delete_budget").unwrap(), Some(Permission::BudgetDelete));
    }
}
