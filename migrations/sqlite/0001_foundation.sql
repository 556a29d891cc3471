-- Foundation schema (SQLite). Forward-only; keep in step with migrations/postgres.
-- Times are RFC 3339 UTC text with six fractional digits; ids are UUID text; id lists are JSON arrays.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    CONSTRAINT tenants_name_unique UNIQUE (name)
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    subject     TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'auditor', 'manager', 'operator', 'admin')),
    token_hash  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT,
    CONSTRAINT api_tokens_hash_unique UNIQUE (token_hash)
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

CREATE TABLE budgets (
    tenant_id             TEXT NOT NULL REFERENCES tenants (id),
    id                    TEXT NOT NULL,
    name                  TEXT NOT NULL,
    description           TEXT NOT NULL,
    unit                  TEXT NOT NULL CHECK (unit IN ('credits', 'operations')),
    limit_amount          INTEGER NOT NULL CHECK (limit_amount > 0),
    currency              TEXT,
    price_per_1000_minor  INTEGER,
    period_kind           TEXT NOT NULL CHECK (period_kind IN ('daily', 'weekly', 'monthly', 'billing_cycle', 'custom')),
    period_start          TEXT,
    period_end            TEXT,
    timezone              TEXT NOT NULL,
    organization_id       INTEGER NOT NULL,
    team_ids              TEXT NOT NULL,
    folder_ids            TEXT NOT NULL,
    scenario_ids          TEXT NOT NULL,
    excluded_scenario_ids TEXT NOT NULL,
    active                INTEGER NOT NULL CHECK (active IN (0, 1)),
    version               INTEGER NOT NULL CHECK (version > 0),
    created_at            TEXT NOT NULL,
    created_by            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    updated_by            TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT budgets_name_unique UNIQUE (tenant_id, name),
    CHECK ((currency IS NULL) = (price_per_1000_minor IS NULL)),
    CHECK ((period_kind = 'custom') = (period_start IS NOT NULL AND period_end IS NOT NULL))
);

-- The head of each tenant's audit chain: the last sequence number and hash. Appends lock it.
CREATE TABLE audit_heads (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id),
    seq        INTEGER NOT NULL,
    hash       TEXT NOT NULL
);

CREATE TABLE audit_log (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    seq              INTEGER NOT NULL CHECK (seq > 0),
    at               TEXT NOT NULL,
    actor_subject    TEXT NOT NULL,
    actor_role       TEXT NOT NULL,
    actor_transport  TEXT NOT NULL,
    action           TEXT NOT NULL,
    target           TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    reason           TEXT,
    request_id       TEXT NOT NULL,
    before_state     TEXT,
    after_state      TEXT,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
