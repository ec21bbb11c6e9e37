-- Held payments are reviewed by a person: released (posted to the ledger) or declined.
-- review: {"decision": "release" | "decline", "by": reviewer's sub, "at": ISO time, "note", "reasons"};
-- set once (the first decision stands), so a repeated review call answers the first one.
ALTER TABLE payments ADD COLUMN IF NOT EXISTS review jsonb;
-- The review queue: GET /payments?status=held, oldest first.
CREATE INDEX IF NOT EXISTS payments_by_status ON payments (status, created_at);
