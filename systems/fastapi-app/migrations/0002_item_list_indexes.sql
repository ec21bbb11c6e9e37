-- Indexes for the list endpoint: keyset-friendly sort orders and the tag filter.
CREATE INDEX IF NOT EXISTS items_created_at_idx ON items (created_at, id);
CREATE INDEX IF NOT EXISTS items_price_idx ON items (price, id);
CREATE INDEX IF NOT EXISTS items_tags_idx ON items USING gin (tags);
