-- Signed checkpoints of each tenant's audit chain head, and the append-only rule for the audit tables
-- (PostgreSQL). Forward-only.

-- The sequence number of the head's latest checkpoint: an append that takes the chain `every N records`
-- past it signs a new one in the same transaction.
ALTER TABLE audit_heads ADD COLUMN checkpoint_seq BIGINT NOT NULL DEFAULT 0;

-- An Ed25519 signature over (tenant, seq, head hash, time); see src/audit/checkpoint.rs.
CREATE TABLE audit_checkpoints (
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    seq        BIGINT NOT NULL CHECK (seq > 0),
    head_hash  TEXT NOT NULL,
    at         TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

-- Audit records and checkpoints are never changed or removed. The triggers stop the server's own role
-- and anyone using it; a deployment also grants that role only INSERT and SELECT on these tables (README,
-- "Audit log"). A superuser can still bypass both; the chain and the signed checkpoints detect that.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % of % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
