//! `whoami`: the caller's identity as the server sees it. The first call an agent should make.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use super::params::Parameters;
use super::{BudgetServer, CallCtx};
use crate::auth::{Permission, Role, Transport};

#[derive(Debug, Serialize, JsonSchema)]
pub struct WhoAmI {
    /// Tenant every call of this principal is confined to.
    pub tenant_id: String,
    pub tenant_name: String,
    /// Who is calling (token subject, or the local operator over stdio).
    pub subject: String,
    pub role: Role,
    /// What this role may do; tools needing anything else are refused with `permission_denied`.
    pub permissions: Vec<Permission>,
    pub transport: Transport,
}

#[tool_router(router = identity_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Show who you are to this server: your tenant, subject, role, the permissions the role grants, and
    /// the transport. Call this first to learn which budget tools you may use. Takes no arguments.
    #[tool(annotations(title = "Who am I", read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn whoami(
        &self,
        Parameters(_): Parameters<super::params::NoArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Json<WhoAmI> {
        let p = call.principal;
        Json(WhoAmI {
            tenant_id: p.tenant_id.to_string(),
            tenant_name: p.tenant_name,
            subject: p.subject,
            role: p.role,
            permissions: p.role.permissions().to_vec(),
            transport: p.transport,
        })
    }
}
