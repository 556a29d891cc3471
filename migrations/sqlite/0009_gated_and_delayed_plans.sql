-- no-transaction
-- Delayed plans and the confidence gate (SQLite). A plan may be `scheduled` (announced, runs at `run_at`
-- unless cancelled) or `cancelled`; it remembers where it came from (`origin`: a threshold crossing or a
-- runaway detection), the forecast's probability of ending over the limit when it was made, its delay and
-- who cancelled it. A threshold action may carry a delay and its own confidence gate. Forward-only.
--
-- SQLite cannot widen the CHECK on `action_plans.state` in place, so the table is rebuilt as SQLite's
-- documented procedure describes (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of Table
-- Schema Changes"): foreign keys off (outside a transaction, hence `no-transaction`), then in one transaction
-- create, copy, drop, rename, re-index and check the foreign keys, then foreign keys on again. With foreign
-- keys off, dropping the old table does not cascade to `action_items`, whose references name the table and
-- so point at the rebuilt one.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE action_plans_rebuilt (
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    id                     TEXT NOT NULL,
    budget_id              TEXT NOT NULL,
    threshold_id           TEXT,
    action_id              TEXT,
    crossing_id            TEXT,
    period_key             TEXT NOT NULL,
    selector               TEXT NOT NULL CHECK (selector IN ('all', 'non_critical', 'top_n')),
    top_n                  BIGINT,
    mode                   TEXT NOT NULL CHECK (mode IN ('automatic', 'requires_approval')),
    state                  TEXT NOT NULL CHECK (state IN ('planned', 'awaiting_approval', 'approved', 'rejected',
                               'expired', 'executing', 'executed', 'partially_failed', 'reversed', 'scheduled',
                               'cancelled')),
    why                    TEXT NOT NULL,
    expected_saving_centi  BIGINT NOT NULL,
    reverse_at_period_end  INTEGER NOT NULL CHECK (reverse_at_period_end IN (0, 1)),
    requested_by           TEXT NOT NULL,
    requested_at           TEXT NOT NULL,
    expires_at             TEXT,
    decided_by             TEXT,
    decided_at             TEXT,
    decision_reason        TEXT,
    executed_at            TEXT,
    reversed_by            TEXT,
    reversed_at            TEXT,
    updated_at             TEXT NOT NULL,
    version                BIGINT NOT NULL CHECK (version > 0),
    origin                 TEXT NOT NULL DEFAULT 'threshold' CHECK (origin IN ('threshold', 'runaway')),
    delay_minutes          BIGINT CHECK (delay_minutes BETWEEN 1 AND 10080),
    run_at                 TEXT,
    cancelled_by           TEXT,
    cancelled_at           TEXT,
    cancel_reason          TEXT,
    probability_permille   BIGINT CHECK (probability_permille BETWEEN 0 AND 1000),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, crossing_id, action_id),
    CHECK ((state = 'scheduled') <= (run_at IS NOT NULL))
);
INSERT INTO action_plans_rebuilt (tenant_id, id, budget_id, threshold_id, action_id, crossing_id, period_key, selector,
    top_n, mode, state, why, expected_saving_centi, reverse_at_period_end, requested_by, requested_at, expires_at,
    decided_by, decided_at, decision_reason, executed_at, reversed_by, reversed_at, updated_at, version)
SELECT tenant_id, id, budget_id, threshold_id, action_id, crossing_id, period_key, selector, top_n, mode, state, why,
    expected_saving_centi, reverse_at_period_end, requested_by, requested_at, expires_at, decided_by, decided_at,
    decision_reason, executed_at, reversed_by, reversed_at, updated_at, version
FROM action_plans;
DROP TABLE action_plans;
ALTER TABLE action_plans_rebuilt RENAME TO action_plans;
CREATE INDEX action_plans_budget ON action_plans (tenant_id, budget_id, requested_at);
CREATE INDEX action_plans_state ON action_plans (state);
CREATE INDEX action_plans_due ON action_plans (state, run_at);

ALTER TABLE threshold_actions ADD COLUMN delay_minutes BIGINT CHECK (delay_minutes BETWEEN 1 AND 10080);
ALTER TABLE threshold_actions ADD COLUMN gate_act BIGINT CHECK (gate_act BETWEEN 1 AND 100);
ALTER TABLE threshold_actions ADD COLUMN gate_delay BIGINT CHECK (gate_delay BETWEEN 1 AND 100);
ALTER TABLE threshold_actions ADD COLUMN gate_alert BIGINT CHECK (gate_alert BETWEEN 1 AND 100);
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
