-- Accounts (one per identity-provider subject), their API keys, and usage.
CREATE TABLE IF NOT EXISTS accounts (
    user_id    text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each key is kept: a key is shown once, when it is created.
CREATE TABLE IF NOT EXISTS api_keys (
    id         uuid PRIMARY KEY,
    user_id    text NOT NULL REFERENCES accounts (user_id),
    name       text NOT NULL,
    prefix     text NOT NULL,
    key_sha256 bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);

-- One row per usage record ws-proxy reports: (session, seq) is unique, so a redelivered or re-sent record
-- is stored once and counted once.
CREATE TABLE IF NOT EXISTS usage_records (
    session_id  text NOT NULL,
    seq         integer NOT NULL CHECK (seq > 0),
    user_id     text NOT NULL,
    audio_ms    bigint NOT NULL CHECK (audio_ms >= 0),
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX IF NOT EXISTS usage_records_user ON usage_records (user_id, recorded_at);

-- Running totals per user, updated in the same transaction as the records they count.
CREATE TABLE IF NOT EXISTS usage_totals (
    user_id    text PRIMARY KEY,
    audio_ms   bigint NOT NULL DEFAULT 0,
    sessions   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
