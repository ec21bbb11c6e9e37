-- Applied to every new tenant database, as the tenant's own role (the database's owner).
-- Money is integer minor units (cents) everywhere: bigint, never a float.
CREATE TABLE IF NOT EXISTS accounts (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    currency         char(3) NOT NULL,
    kind             text NOT NULL DEFAULT 'customer' CHECK (kind IN ('customer', 'funding')),
    email            text,
    allow_overdraft  boolean NOT NULL DEFAULT false,
    balance          bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- The last line of defence of "no overdraft": the ledger checks first, the database refuses anyway.
    CONSTRAINT no_overdraft CHECK (allow_overdraft OR balance >= 0)
);
-- One funding account per currency: the counter-entry of deposits, so every currency's entries sum to zero.
CREATE UNIQUE INDEX IF NOT EXISTS one_funding_account ON accounts (currency) WHERE kind = 'funding';

CREATE TABLE IF NOT EXISTS transfers (
    id            uuid PRIMARY KEY,                    -- the payment id: posting it twice is a no-op
    from_account  uuid NOT NULL REFERENCES accounts(id),
    to_account    uuid NOT NULL REFERENCES accounts(id),
    amount        bigint NOT NULL CHECK (amount > 0),
    currency      char(3) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS entries (
    id           bigserial PRIMARY KEY,
    transfer_id  uuid NOT NULL REFERENCES transfers(id),
    account_id   uuid NOT NULL REFERENCES accounts(id),
    amount       bigint NOT NULL CHECK (amount <> 0),  -- negative: debit, positive: credit
    currency     char(3) NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries (account_id);

CREATE TABLE IF NOT EXISTS payments (
    id               uuid PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    request_hash     text NOT NULL,                    -- sha256 of the canonical request body
    from_account     uuid NOT NULL,
    to_account       uuid NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         char(3) NOT NULL,
    status           text NOT NULL,                    -- pending, settled, declined, held, rejected
    fraud            jsonb,
    response_status  integer,                          -- the first answer, replayed for the same key
    response         jsonb,
    published        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS fraud_verdicts (
    payment_id     uuid PRIMARY KEY,
    from_account   uuid NOT NULL,
    to_account     uuid NOT NULL,
    amount         bigint NOT NULL,
    decision       text NOT NULL CHECK (decision IN ('approve', 'review', 'decline')),
    score          integer NOT NULL,
    reasons        jsonb NOT NULL,
    rules_version  text NOT NULL,
    decided_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS verdicts_by_account ON fraud_verdicts (from_account, decided_at);
