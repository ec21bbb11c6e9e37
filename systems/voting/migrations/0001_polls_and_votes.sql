-- Polls and the durable record of votes. The primary key on (poll_id, user_id) is what makes
-- "one vote per viewer per poll" and "counted exactly once" hold even when messages are redelivered.
CREATE TABLE polls (
    id          uuid PRIMARY KEY,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    options     text[] NOT NULL CHECK (cardinality(options) BETWEEN 2 AND 20),
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'open', 'closed')),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    opened_at   timestamptz,
    closed_at   timestamptz
);

CREATE TABLE votes (
    poll_id     uuid NOT NULL REFERENCES polls (id),
    user_id     text NOT NULL,
    option      text NOT NULL,
    vote_id     uuid NOT NULL UNIQUE,
    accepted_at timestamptz NOT NULL,
    counted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (poll_id, user_id)
);

CREATE INDEX votes_poll_option ON votes (poll_id, option);
