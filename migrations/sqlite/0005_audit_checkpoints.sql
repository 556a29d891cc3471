-- Signed checkpoints of each tenant's audit chain head, and the append-only rule for the audit tables
-- (SQLite). Forward-only.

-- The sequence number of the head's latest checkpoint: an append that takes the chain `every N records`
-- past it signs a new one in the same transaction.
ALTER TABLE audit_heads ADD COLUMN checkpoint_seq INTEGER NOT NULL DEFAULT 0;

-- An Ed25519 signature over (tenant, seq, head hash, time); see src/audit/checkpoint.rs.
CREATE TABLE audit_checkpoints (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    seq        INTEGER NOT NULL CHECK (seq > 0),
    head_hash  TEXT NOT NULL,
    at         TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

-- Audit records and checkpoints are never changed or removed, by the server or anyone using its database
-- connection. (Whoever can edit the file can drop these triggers; the chain and the signed checkpoints
-- are what detect that.)
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE of audit_log is not allowed'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE from audit_log is not allowed'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE of audit_checkpoints is not allowed'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE from audit_checkpoints is not allowed'); END;
