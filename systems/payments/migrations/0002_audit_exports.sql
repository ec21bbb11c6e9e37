-- Segments of the audit chain exported to the audit-archive bucket (Object Lock): one row per object, written
-- after the object is stored. A crash in between leaves the object without its row; the exporter adopts it
-- (rebuilds the same range, which must give the same bytes) before it exports anything newer.
CREATE TABLE IF NOT EXISTS audit_exports (
    tenant_id   text NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL,
    key         text NOT NULL UNIQUE,                 -- audit/<tenant>/<first:012d>-<last:012d>.jsonl
    last_hash   text NOT NULL,                        -- the next segment's first prev_hash
    sha256      text NOT NULL,                        -- of the object's bytes
    exported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, first_seq),
    CHECK (last_seq >= first_seq)
);
