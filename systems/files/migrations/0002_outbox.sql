-- Transactional outbox (stackwright.runtime.outbox): the queue messages a change causes (variant jobs, index
-- tasks, notifications), inserted in the same transaction as the change and relayed to their queues after
-- the commit. A process killed between the commit and the sends leaves rows here, not a file that never gets
-- its variants, index entry or email: the next relay (the restarted process, or another replica) sends them.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    queue       text NOT NULL,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
