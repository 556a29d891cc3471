-- Thresholds and their crossings (PostgreSQL). Forward-only.

-- Thresholds on budgets. `value` is a percentage (kind percent) or an amount in the budget's unit.
CREATE TABLE thresholds (
    tenant_id         TEXT COLLATE "C" NOT NULL,
    id                TEXT COLLATE "C" NOT NULL,
    budget_id         TEXT COLLATE "C" NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('percent', 'absolute')),
    value             BIGINT NOT NULL CHECK (value > 0),
    basis             TEXT NOT NULL CHECK (basis IN ('actual', 'forecast')),
    severity          TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'emergency')),
    cooldown_minutes  BIGINT NOT NULL CHECK (cooldown_minutes >= 0),
    label             TEXT,
    version           BIGINT NOT NULL CHECK (version > 0),
    created_at        TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    updated_by        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, budget_id) REFERENCES budgets (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX thresholds_budget ON thresholds (tenant_id, budget_id);

-- Where each threshold stands in its current period (see domain::threshold::decide).
CREATE TABLE threshold_states (
    tenant_id        TEXT COLLATE "C" NOT NULL,
    threshold_id     TEXT COLLATE "C" NOT NULL,
    period_key       TEXT NOT NULL,
    above            BOOLEAN NOT NULL,
    last_crossed_at  TEXT,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, threshold_id),
    FOREIGN KEY (tenant_id, threshold_id) REFERENCES thresholds (tenant_id, id) ON DELETE CASCADE
);

-- Recorded crossings. Kept after a threshold or budget is removed: they are history.
CREATE TABLE threshold_events (
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id            TEXT COLLATE "C" NOT NULL,
    threshold_id  TEXT COLLATE "C" NOT NULL,
    budget_id     TEXT COLLATE "C" NOT NULL,
    period_key    TEXT NOT NULL,
    crossed_at    TEXT NOT NULL,
    basis         TEXT NOT NULL,
    severity      TEXT NOT NULL,
    value_centi   BIGINT NOT NULL,
    amount_centi  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX threshold_events_lookup ON threshold_events (tenant_id, budget_id, period_key);
