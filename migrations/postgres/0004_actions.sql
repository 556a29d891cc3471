-- Actions on thresholds, action plans and their per-scenario items, webhooks and their delivery outbox,
-- and leases that keep several server instances from doing the same work (PostgreSQL). Forward-only.

-- What happens when a threshold is crossed. `notify`: an event to the tenant's webhooks.
-- `pause_scenarios`: a plan that deactivates the scenarios the selector picks, run at once (automatic) or
-- after a second principal approves it (requires_approval).
CREATE TABLE threshold_actions (
    tenant_id              TEXT COLLATE "C" NOT NULL,
    id                     TEXT COLLATE "C" NOT NULL,
    threshold_id           TEXT COLLATE "C" NOT NULL,
    kind                   TEXT NOT NULL CHECK (kind IN ('notify', 'pause_scenarios')),
    selector               TEXT CHECK (selector IN ('all', 'non_critical', 'top_n')),
    top_n                  BIGINT CHECK (top_n BETWEEN 1 AND 1000),
    mode                   TEXT CHECK (mode IN ('automatic', 'requires_approval')),
    reverse_at_period_end  BOOLEAN NOT NULL,
    created_at             TEXT NOT NULL,
    created_by             TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, threshold_id) REFERENCES thresholds (tenant_id, id) ON DELETE CASCADE,
    CHECK ((kind = 'notify' AND selector IS NULL AND mode IS NULL AND top_n IS NULL)
        OR (kind = 'pause_scenarios' AND selector IS NOT NULL AND mode IS NOT NULL
            AND (selector = 'top_n') = (top_n IS NOT NULL)))
);
CREATE INDEX threshold_actions_threshold ON threshold_actions (tenant_id, threshold_id);

-- A plan to pause scenarios: created by a crossing (threshold_id, action_id, crossing_id set) or ad hoc.
-- One plan per crossing and action, whichever instance evaluated it.
CREATE TABLE action_plans (
    tenant_id              TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id                     TEXT COLLATE "C" NOT NULL,
    budget_id              TEXT COLLATE "C" NOT NULL,
    threshold_id           TEXT COLLATE "C",
    action_id              TEXT COLLATE "C",
    crossing_id            TEXT COLLATE "C",
    period_key             TEXT NOT NULL,
    selector               TEXT NOT NULL CHECK (selector IN ('all', 'non_critical', 'top_n')),
    top_n                  BIGINT,
    mode                   TEXT NOT NULL CHECK (mode IN ('automatic', 'requires_approval')),
    state                  TEXT NOT NULL CHECK (state IN ('planned', 'awaiting_approval', 'approved', 'rejected',
                               'expired', 'executing', 'executed', 'partially_failed', 'reversed')),
    why                    TEXT NOT NULL,
    expected_saving_centi  BIGINT NOT NULL,
    reverse_at_period_end  BOOLEAN NOT NULL,
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
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, crossing_id, action_id)
);
CREATE INDEX action_plans_budget ON action_plans (tenant_id, budget_id, requested_at);
CREATE INDEX action_plans_state ON action_plans (state);

-- The scenarios of a plan and what happened to each. `stop_sent` is written before Make is asked to stop
-- the scenario, so that after a crash an inactive scenario in that state is known to be this plan's doing.
CREATE TABLE action_items (
    tenant_id              TEXT COLLATE "C" NOT NULL,
    plan_id                TEXT COLLATE "C" NOT NULL,
    scenario_id            BIGINT NOT NULL,
    organization_id        BIGINT NOT NULL,
    name                   TEXT NOT NULL,
    critical               BOOLEAN NOT NULL,
    consumption_centi      BIGINT NOT NULL,
    expected_saving_centi  BIGINT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('pending', 'stop_sent', 'stopped', 'already_inactive',
                               'failed', 'resumed', 'left_active', 'held_by_other_plan', 'resume_failed')),
    attempts               BIGINT NOT NULL CHECK (attempts >= 0),
    last_error             TEXT,
    updated_at             TEXT NOT NULL,
    PRIMARY KEY (tenant_id, plan_id, scenario_id),
    FOREIGN KEY (tenant_id, plan_id) REFERENCES action_plans (tenant_id, id) ON DELETE CASCADE
);

-- Webhooks that receive the tenant's events, signed with their secret (sealed like Make tokens).
CREATE TABLE webhooks (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id          TEXT COLLATE "C" NOT NULL,
    url         TEXT NOT NULL,
    label       TEXT,
    key_id      TEXT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- The delivery outbox: one row per event and webhook, written in the transaction of the event.
CREATE TABLE notifications (
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id               TEXT COLLATE "C" NOT NULL,
    webhook_id       TEXT COLLATE "C" NOT NULL,
    event_id         TEXT COLLATE "C" NOT NULL,
    event_type       TEXT NOT NULL,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at  TEXT NOT NULL,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    delivered_at     TEXT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, event_id, webhook_id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);

-- Every delivery attempt.
CREATE TABLE notification_attempts (
    tenant_id        TEXT COLLATE "C" NOT NULL,
    notification_id  TEXT COLLATE "C" NOT NULL,
    attempt          BIGINT NOT NULL,
    at               TEXT NOT NULL,
    status           BIGINT,
    error            TEXT,
    duration_ms      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, notification_id, attempt),
    FOREIGN KEY (tenant_id, notification_id) REFERENCES notifications (tenant_id, id) ON DELETE CASCADE
);

-- Leases: a named piece of work (evaluating a budget, executing a plan, delivering a notification) is done
-- by the holder until the lease expires; another instance takes over an expired lease.
CREATE TABLE leases (
    name        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
