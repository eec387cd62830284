-- What a model server reported about an answer (its model name and token usage), as the JSON of
-- the message's `metadata`; NULL for user messages and for answers without any (the simulator's).
-- Adding a nullable column rewrites nothing: existing rows read as NULL.
ALTER TABLE message ADD COLUMN metadata TEXT;
