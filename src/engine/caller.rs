//! Who a use case acts for: the tenant, the principal (or the server itself), the actor and request id
//! its audit records carry, and the name of what it does. Built once per call (by the MCP layer from
//! the guard's verdict, by the evaluator for its own work) and passed to every use case, so none of them
//! takes the tenant, the actor and the request id one by one.

use serde::Serialize;

use super::error::{Error, Result};
use crate::app::App;
use crate::audit::{Actor, AuditEntry, Outcome, Target, redact};
use crate::auth::{Permission, Principal, authorize};
use crate::domain::TenantId;
use crate::store::TenantStore;

#[derive(Clone)]
pub struct Caller<'a> {
    pub app: &'a App,
    pub tenant: TenantId,
    /// The principal a tool call came from; `None` for the server's own work, which needs no permission.
    pub principal: Option<&'a Principal>,
    pub actor: Actor,
    /// Correlation id: in the log, in audit records and in internal error messages.
    pub request_id: &'a str,
    /// The audit action of the call's main record: the tool name, or the engine task's name.
    pub action: &'a str,
}

impl<'a> Caller<'a> {
    /// A tool call by `principal`.
    pub fn principal(app: &'a App, principal: &'a Principal, request_id: &'a str, action: &'a str) -> Self {
        Self {
            app,
            tenant: principal.tenant_id,
            principal: Some(principal),
            actor: principal.into(),
            request_id,
            action,
        }
    }

    /// The server acting on its own (evaluator, automatic plans, expiry) in `tenant`.
    pub fn system(app: &'a App, tenant: TenantId, request_id: &'a str, action: &'a str) -> Self {
        Self { app, tenant, principal: None, actor: system_actor(), request_id, action }
    }

    /// The same caller acting as `actor` (e.g. the CLI's operator) and recording `action`.
    pub fn as_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// The caller's tenant's store.
    pub fn store(&self) -> TenantStore<'a> {
        self.app.store.tenant(self.tenant)
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.app.store.clock().now()
    }

    /// Who the caller is in `created_by`-style fields.
    pub fn subject(&self) -> &str {
        &self.actor.subject
    }

    /// The audit record of a successful mutation by this call.
    pub fn entry(&self, target: Target, before: Option<&impl Serialize>, after: Option<&impl Serialize>) -> AuditEntry {
        self.entry_as(self.action, target, before, after)
    }

    /// [`Self::entry`] under another action name (the engine's own records: `action_planned`, …).
    pub fn entry_as(
        &self,
        action: &str,
        target: Target,
        before: Option<&impl Serialize>,
        after: Option<&impl Serialize>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.actor.clone(),
            action: action.to_owned(),
            target: target.to_string(),
            outcome: Outcome::Success,
            reason: None,
            request_id: self.request_id.to_owned(),
            before: before.map(snapshot),
            after: after.map(snapshot),
        }
    }

    /// Refuse with [`Error::Denied`] unless the principal holds every one of `needed`; `why` says what
    /// made them needed. The server's own work holds every permission.
    pub fn require(&self, needed: &[Permission], why: &str) -> Result<()> {
        match self.missing(needed) {
            Some(denied) => Err(Error::Denied { denied, why: why.to_owned() }),
            None => Ok(()),
        }
    }

    /// Who this caller's audit records name.
    pub fn attribution(&self) -> Attribution<'_> {
        Attribution { actor: &self.actor, request_id: self.request_id }
    }

    /// The first of `needed` the principal lacks.
    pub fn missing(&self, needed: &[Permission]) -> Option<crate::auth::Denied> {
        let principal = self.principal?;
        needed.iter().find_map(|p| authorize(principal, Some(*p)).err())
    }
}

/// Who an audit record names, for work that needs no more of its [`Caller`] than that (threshold
/// evaluation, which runs on a store alone).
#[derive(Debug, Clone, Copy)]
pub struct Attribution<'a> {
    pub actor: &'a Actor,
    pub request_id: &'a str,
}

impl Attribution<'_> {
    /// The audit record of a successful `action` on `target`.
    pub fn entry(&self, action: &str, target: Target, after: Option<serde_json::Value>) -> AuditEntry {
        AuditEntry {
            actor: self.actor.clone(),
            action: action.to_owned(),
            target: target.to_string(),
            outcome: Outcome::Success,
            reason: None,
            request_id: self.request_id.to_owned(),
            before: None,
            after,
        }
    }
}

/// The actor of what the engine does on its own (evaluator, automatic plans, expiry).
pub fn system_actor() -> Actor {
    Actor { subject: "system:evaluator".into(), role: "system".into(), transport: "internal".into() }
}

/// The redacted JSON form of a before/after state (plain data, so serialising cannot fail).
pub fn snapshot<T: Serialize + ?Sized>(v: &T) -> serde_json::Value {
    redact(serde_json::to_value(v).expect("audit snapshots serialise to JSON"))
}
