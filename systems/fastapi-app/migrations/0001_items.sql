-- Items: the resource the API serves (create, read, list, update, delete).
CREATE TABLE IF NOT EXISTS items (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    price       numeric(12, 2) NOT NULL CHECK (price >= 0),
    quantity    integer NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    tags        text[] NOT NULL DEFAULT '{}',
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Names are unique regardless of case: "Widget" and "widget" are the same item.
CREATE UNIQUE INDEX IF NOT EXISTS items_name_key ON items (lower(name));
