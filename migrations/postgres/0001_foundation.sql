-- Foundation schema (PostgreSQL). Forward-only; keep in step with migrations/sqlite.
-- Times are RFC 3339 UTC text with six fractional digits (identical in both stores, sortable as text);
-- ids are UUID text compared bytewise (COLLATE "C") so that UUIDv7 order is creation order.

CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    CONSTRAINT tenants_name_unique UNIQUE (name)
);

CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
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
    tenant_id             TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id                    TEXT COLLATE "C" NOT NULL,
    name                  TEXT NOT NULL,
    description           TEXT NOT NULL,
    unit                  TEXT NOT NULL CHECK (unit IN ('credits', 'operations')),
    limit_amount          BIGINT NOT NULL CHECK (limit_amount > 0),
    currency              TEXT,
    price_per_1000_minor  BIGINT,
    period_kind           TEXT NOT NULL CHECK (period_kind IN ('daily', 'weekly', 'monthly', 'billing_cycle', 'custom')),
    period_start          TEXT,
    period_end            TEXT,
    timezone              TEXT NOT NULL,
    organization_id       BIGINT NOT NULL,
    team_ids              TEXT NOT NULL,
    folder_ids            TEXT NOT NULL,
    scenario_ids          TEXT NOT NULL,
    excluded_scenario_ids TEXT NOT NULL,
    active                BOOLEAN NOT NULL,
    version               BIGINT NOT NULL CHECK (version > 0),
    created_at            TEXT NOT NULL,
    created_by            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    updated_by            TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT budgets_name_unique UNIQUE (tenant_id, name),
    CHECK ((currency IS NULL) = (price_per_1000_minor IS NULL)),
    CHECK ((period_kind = 'custom') = (period_start IS NOT NULL AND period_end IS NOT NULL))
);

-- The head of each tenant's audit chain: the last sequence number and hash. Appends lock its row
-- (SELECT ... FOR UPDATE), which serialises appends per tenant across every server process.
CREATE TABLE audit_heads (
    tenant_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE TABLE audit_log (
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    seq              BIGINT NOT NULL CHECK (seq > 0),
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
