-- Make.com link (PostgreSQL): connections, plan facts, scenarios and usage. Forward-only.
-- Make connections: where and as whom to call Make. The token is sealed (AES-256-GCM); key_id names
-- the master key, nonce and ciphertext are bound to (tenant_id, id) through the AAD.
CREATE TABLE make_connections (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id          TEXT COLLATE "C" NOT NULL,
    label       TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    auth_kind   TEXT NOT NULL CHECK (auth_kind IN ('api_token', 'oauth_access_token')),
    key_id      TEXT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Organizations a connection covers, with the plan facts read from GET /organizations/{id}.
-- An organization is connected at most once per tenant.
CREATE TABLE make_organizations (
    tenant_id        TEXT COLLATE "C" NOT NULL,
    organization_id  BIGINT NOT NULL,
    connection_id    TEXT COLLATE "C" NOT NULL,
    name             TEXT NOT NULL,
    zone             TEXT,
    api_limit        BIGINT,
    allowance        BIGINT,
    operations_used  BIGINT,
    last_reset       TEXT,
    next_reset       TEXT,
    restart_period   TEXT,
    is_paused        BOOLEAN,
    validated_at     TEXT NOT NULL,
    synced_at        TEXT,
    PRIMARY KEY (tenant_id, organization_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES make_connections (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE make_teams (
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    organization_id  BIGINT NOT NULL,
    team_id          BIGINT NOT NULL,
    name             TEXT NOT NULL,
    synced_at        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, team_id)
);

-- Scenarios as of the last sync. `critical` is ours (never paused by selectors); the rest is Make's.
CREATE TABLE make_scenarios (
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    scenario_id      BIGINT NOT NULL,
    organization_id  BIGINT NOT NULL,
    team_id          BIGINT,
    folder_id        BIGINT,
    name             TEXT NOT NULL,
    is_active        BOOLEAN NOT NULL,
    is_paused        BOOLEAN NOT NULL,
    is_invalid       BOOLEAN NOT NULL,
    scheduling_type  TEXT,
    interval_secs    BIGINT,
    critical         BOOLEAN NOT NULL DEFAULT FALSE,
    synced_at        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, scenario_id)
);
CREATE INDEX make_scenarios_org ON make_scenarios (tenant_id, organization_id);

-- Daily usage per organization, team or scenario; `day` is a date in the organization's time zone.
-- Re-syncing a day replaces it, so totals never double count. `estimated` marks centicredits computed
-- as operations x 100 where Make reported no centicredits.
CREATE TABLE usage_daily (
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    subject_kind     TEXT NOT NULL CHECK (subject_kind IN ('organization', 'team', 'scenario')),
    subject_id       BIGINT NOT NULL,
    day              TEXT NOT NULL,
    organization_id  BIGINT NOT NULL,
    centicredits     BIGINT NOT NULL CHECK (centicredits >= 0),
    operations       BIGINT NOT NULL CHECK (operations >= 0),
    data_transfer    BIGINT NOT NULL CHECK (data_transfer >= 0),
    estimated        BOOLEAN NOT NULL,
    synced_at        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, subject_kind, subject_id, day)
);
CREATE INDEX usage_daily_org_day ON usage_daily (tenant_id, organization_id, day);

-- Per-scenario consumption in the organization's current reset period (GET /scenarios/consumptions).
CREATE TABLE scenario_consumptions (
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    scenario_id      BIGINT NOT NULL,
    organization_id  BIGINT NOT NULL,
    centicredits     BIGINT NOT NULL CHECK (centicredits >= 0),
    operations       BIGINT NOT NULL CHECK (operations >= 0),
    transfer         BIGINT NOT NULL CHECK (transfer >= 0),
    estimated        BOOLEAN NOT NULL,
    period_start     TEXT,
    synced_at        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, scenario_id)
);
