-- The usage sync at real scale (src/engine/sync.rs): per-scenario usage between syncs from consumption
-- snapshots, Make's daily figures read only to backfill and reconcile, and the share of each organization's
-- API limit this server may use, shared by every instance.

-- The part of a scenario's day that was derived from consumption snapshots and not yet replaced by Make's
-- own daily figure (0 once reconciled; always 0 for organization and team series).
ALTER TABLE usage_daily ADD COLUMN snapshot_centicredits BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN snapshot_operations BIGINT NOT NULL DEFAULT 0;

-- When Make's daily usage of a scenario was last read (NULL: never, its history is not backfilled yet).
ALTER TABLE make_scenarios ADD COLUMN usage_read_at TEXT;

-- The organization's time zone (IANA name, from timezoneId and GET /enums/timezones), in which Make's days
-- are counted, and the extra operations bought on top of the plan (operationsExt).
ALTER TABLE make_organizations ADD COLUMN timezone TEXT;
ALTER TABLE make_organizations ADD COLUMN timezone_id BIGINT;
ALTER TABLE make_organizations ADD COLUMN allowance_extra BIGINT;

-- The scopes of a connection's token (GET /users/me/current-authorization), a JSON list; NULL when unknown.
ALTER TABLE make_connections ADD COLUMN token_scopes TEXT;

-- The reading that the next consumption snapshot is compared with: when, and the consumption then. After a
-- reconciliation it is moved to the time of Make's daily figures, so nothing is counted twice.
ALTER TABLE scenario_consumptions ADD COLUMN baseline_at TEXT;
ALTER TABLE scenario_consumptions ADD COLUMN baseline_centicredits BIGINT;
ALTER TABLE scenario_consumptions ADD COLUMN baseline_operations BIGINT;

-- Pacing of Make API calls per (Make host, organization) across every server instance: a GCRA whose state
-- is one theoretical arrival time, in microseconds since the Unix epoch. Holds no tenant data.
CREATE TABLE make_call_pacing (
    pace_key  TEXT PRIMARY KEY,
    tat_us    BIGINT NOT NULL
);

-- Scenarios whose daily usage the previous sync already read (every active or consuming one) count as read
-- when they were last synced, so an upgrade does not backfill them all again.
UPDATE make_scenarios SET usage_read_at = synced_at
WHERE EXISTS (SELECT 1 FROM usage_daily u
              WHERE u.tenant_id = make_scenarios.tenant_id AND u.subject_kind = 'scenario'
                AND u.subject_id = make_scenarios.scenario_id);
UPDATE scenario_consumptions SET baseline_at = synced_at;
