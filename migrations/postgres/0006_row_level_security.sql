-- Row-level security: a second wall behind the `WHERE tenant_id = …` of every query (PostgreSQL).
-- Forward-only; migrations/sqlite/0006 is its (empty) counterpart.
--
-- The server opens every transaction with a transaction-local setting (src/store/mod.rs, `Scope`):
-- `mbm.tenant_id` = the one tenant the transaction works for, or `mbm.scope` = 'system' for the work that
-- spans tenants (token lookup by hash, tenant administration, the evaluator's and notifier's scans, chain
-- verification). A row is visible and writable only when its tenant matches, or in system scope. With
-- neither setting, nothing is: the wall fails closed.
--
-- The policies bind roles that are subject to row-level security: not the tables' owner (no FORCE here, so
-- migrations and owner maintenance are unaffected), not superusers, not BYPASSRLS roles. The server must
-- therefore run as a separate role; `make-budget-mcp db grant-app-role ROLE` grants one what it needs
-- (README, "Row-level security").

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'api_tokens', 'budgets', 'audit_heads', 'audit_log', 'audit_checkpoints',
        'make_connections', 'make_organizations', 'make_teams', 'make_scenarios', 'usage_daily',
        'scenario_consumptions', 'thresholds', 'threshold_states', 'threshold_events', 'threshold_actions',
        'action_plans', 'action_items', 'webhooks', 'notifications', 'notification_attempts'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            $policy$CREATE POLICY tenant_scope ON %I
                USING (tenant_id = current_setting('mbm.tenant_id', true)
                       OR current_setting('mbm.scope', true) = 'system')
                WITH CHECK (tenant_id = current_setting('mbm.tenant_id', true)
                            OR current_setting('mbm.scope', true) = 'system')$policy$,
            t
        );
    END LOOP;
END
$$;

-- A tenant's own row is its `id`.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON tenants
    USING (id = current_setting('mbm.tenant_id', true) OR current_setting('mbm.scope', true) = 'system')
    WITH CHECK (id = current_setting('mbm.tenant_id', true) OR current_setting('mbm.scope', true) = 'system');

-- `leases` holds no tenant data (instance coordination only) and has no policy.
