-- Generic plans from a prepared statement's first execution in this database's sessions. With the default
-- (auto), a session plans each prepared statement afresh for its first five executions. At 100 tenants every
-- service holds a connection per tenant database and uses each a few times a minute, so nearly every execution
-- was planned again: Postgres spent 19-23 ms of CPU per payment at 100 tenants against ~6 at one tenant, and
-- 6-7 ms with this setting (same load, same machine). The ledger's statements are key lookups and small
-- inserts, whose generic plan is the custom plan. Applies to sessions opened after it.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_generic_plan', current_database());
END $$;
