-- Row-level security (SQLite): nothing to do. SQLite has neither roles nor row-level security; an embedded
-- database belongs to the one process that opens it, and tenant isolation rests on the `WHERE tenant_id = …`
-- of every query (src/store). This file keeps the numbering in step with migrations/postgres, whose 0006
-- adds the policies.
SELECT 1;
