-- Delayed plans and the confidence gate (PostgreSQL). A plan may be `scheduled` (announced, runs at
-- `run_at` unless cancelled) or `cancelled`; it remembers where it came from (`origin`: a threshold crossing
-- or a runaway detection), the forecast's probability of ending over the limit when it was made, its delay
-- and who cancelled it. A threshold action may carry a delay and its own confidence gate. Forward-only.
ALTER TABLE action_plans DROP CONSTRAINT action_plans_state_check;
ALTER TABLE action_plans ADD CONSTRAINT action_plans_state_check CHECK (state IN ('planned', 'awaiting_approval',
    'approved', 'rejected', 'expired', 'executing', 'executed', 'partially_failed', 'reversed', 'scheduled',
    'cancelled'));
ALTER TABLE action_plans ADD COLUMN origin TEXT NOT NULL DEFAULT 'threshold' CHECK (origin IN ('threshold', 'runaway'));
ALTER TABLE action_plans ADD COLUMN delay_minutes BIGINT CHECK (delay_minutes BETWEEN 1 AND 10080);
ALTER TABLE action_plans ADD COLUMN run_at TEXT;
ALTER TABLE action_plans ADD COLUMN cancelled_by TEXT;
ALTER TABLE action_plans ADD COLUMN cancelled_at TEXT;
ALTER TABLE action_plans ADD COLUMN cancel_reason TEXT;
ALTER TABLE action_plans ADD COLUMN probability_permille BIGINT CHECK (probability_permille BETWEEN 0 AND 1000);
ALTER TABLE action_plans ADD CONSTRAINT action_plans_scheduled_has_run_at CHECK (state <> 'scheduled' OR run_at IS NOT NULL);
CREATE INDEX action_plans_due ON action_plans (state, run_at);

ALTER TABLE threshold_actions ADD COLUMN delay_minutes BIGINT CHECK (delay_minutes BETWEEN 1 AND 10080);
ALTER TABLE threshold_actions ADD COLUMN gate_act BIGINT CHECK (gate_act BETWEEN 1 AND 100);
ALTER TABLE threshold_actions ADD COLUMN gate_delay BIGINT CHECK (gate_delay BETWEEN 1 AND 100);
ALTER TABLE threshold_actions ADD COLUMN gate_alert BIGINT CHECK (gate_alert BETWEEN 1 AND 100);
