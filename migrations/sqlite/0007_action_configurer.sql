-- Who attached a threshold action, beyond the subject already in `created_by`: the role they held, how
-- they reached the server, and the API token they used (if any). An automatic pause action runs only
-- while that principal still holds what it does (src/engine/actions.rs, `automation_refusal`); actions
-- attached before this migration have no recorded role and wait for approval instead of running.
ALTER TABLE threshold_actions ADD COLUMN created_role TEXT
    CHECK (created_role IN ('viewer', 'auditor', 'manager', 'operator', 'admin'));
ALTER TABLE threshold_actions ADD COLUMN created_transport TEXT;
ALTER TABLE threshold_actions ADD COLUMN created_token_id TEXT;
