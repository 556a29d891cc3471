-- pgbench script for benches/mutations.rs: the transaction make-budget-mcp runs for one `update_budget`
-- call (src/store/budgets.rs and src/store/audit_log.rs), statement for statement. :tenant is set with -D,
-- and each pgbench client updates the budget that bench_budgets assigns to its client_id.
--
-- The server opens the transaction with BEGIN and the row-level-security setting in one simple-protocol
-- message (one round trip); here plain BEGIN is that round trip (pgbench runs as the superuser, whom
-- row-level security does not bind). The record and the new head go in one statement (a data-modifying CTE),
-- as the server sends them. The record's hash is computed by sha256() in the database instead of
-- in Rust, and the before and after states are built by json_build_object. Run with -M prepared, as sqlx
-- prepares and caches every statement. In that mode pgbench turns every colon followed by a word, even
-- inside a string literal, into a parameter, so this script has no other colons than its variables.
BEGIN;
SELECT id, name, description, unit, limit_amount, currency, price_per_1000_minor, period_kind, period_start,
       period_end, timezone, organization_id, team_ids, folder_ids, scenario_ids, excluded_scenario_ids, active,
       version, created_at, created_by, updated_at, updated_by
  FROM budgets
 WHERE tenant_id = :tenant::text AND id = (SELECT budget_id FROM bench_budgets WHERE client_id = :client_id::int)
   FOR UPDATE \gset b_
UPDATE budgets SET name = :b_name::text, description = :b_description::text, unit = :b_unit::text,
       limit_amount = (:b_limit_amount::bigint + 1) % 1000 + 1000, currency = :b_currency::text,
       price_per_1000_minor = :b_price_per_1000_minor::bigint, period_kind = :b_period_kind::text,
       period_start = NULL, period_end = NULL, timezone = :b_timezone::text,
       organization_id = :b_organization_id::bigint, team_ids = :b_team_ids::text, folder_ids = :b_folder_ids::text,
       scenario_ids = :b_scenario_ids::text, excluded_scenario_ids = :b_excluded_scenario_ids::text,
       active = :b_active::boolean, version = :b_version::bigint + 1, updated_at = now()::text, updated_by = 'bench'
 WHERE tenant_id = :tenant::text AND id = :b_id::text AND version = :b_version::bigint;
SELECT seq + 1 AS seq, hash AS prev, checkpoint_seq FROM audit_heads WHERE tenant_id = :tenant::text FOR UPDATE \gset h_
WITH appended AS (INSERT INTO audit_log (tenant_id, seq, at, actor_subject, actor_role, actor_transport, action, target,
                       outcome, reason, request_id, before_state, after_state, prev_hash, hash)
VALUES (:tenant::text, :h_seq::bigint, now()::text, 'bench', 'admin', 'http', 'update_budget',
        'budget:' || :b_id::text, 'success', NULL, 'req-pgbench',
        json_build_object('active', true, 'created_at', :b_created_at::text, 'created_by', :b_created_by::text, 'description', :b_description::text, 'id', :b_id::text, 'limit', :b_limit_amount::bigint, 'money', json_build_object('currency', 'EUR', 'price_per_1000_units_minor', 900), 'name', :b_name::text, 'period', json_build_object('kind', 'monthly'), 'scope', json_build_object('excluded_scenario_ids', json_build_array(), 'folder_ids', json_build_array(), 'organization_id', 1054, 'scenario_ids', json_build_array(), 'team_ids', json_build_array(16)), 'timezone', 'Europe/Prague', 'unit', 'credits', 'updated_at', now()::text, 'updated_by', 'bench', 'version', :b_version::bigint)::text,
        json_build_object('active', true, 'created_at', :b_created_at::text, 'created_by', :b_created_by::text, 'description', :b_description::text, 'id', :b_id::text, 'limit', (:b_limit_amount::bigint + 1) % 1000 + 1000, 'money', json_build_object('currency', 'EUR', 'price_per_1000_units_minor', 900), 'name', :b_name::text, 'period', json_build_object('kind', 'monthly'), 'scope', json_build_object('excluded_scenario_ids', json_build_array(), 'folder_ids', json_build_array(), 'organization_id', 1054, 'scenario_ids', json_build_array(), 'team_ids', json_build_array(16)), 'timezone', 'Europe/Prague', 'unit', 'credits', 'updated_at', now()::text, 'updated_by', 'bench', 'version', :b_version::bigint + 1)::text,
        :h_prev::text, encode(sha256(convert_to(:h_prev::text || :h_seq::bigint, 'UTF8')), 'hex')))
UPDATE audit_heads SET seq = :h_seq::bigint,
       hash = encode(sha256(convert_to(:h_prev::text || :h_seq::bigint, 'UTF8')), 'hex'),
       checkpoint_seq = :h_checkpoint_seq::bigint
 WHERE tenant_id = :tenant::text;
COMMIT;
