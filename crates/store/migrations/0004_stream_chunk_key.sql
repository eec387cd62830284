-- `stream_chunk` keyed by (message_id, chunk_index) alone. The seed's `id` column
-- ("{message_id}:{chunk_index}") repeated that key in a second unique index, so every chunk row,
-- the most frequent write there is, updated three B-trees (on SQLite: the table, `id`'s index and
-- stream_chunk_by_message) where two do. The rows are copied; the key and the data are unchanged.
CREATE TABLE stream_chunk_keyed (
    message_id  TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    content     TEXT NOT NULL,
    timestamp   BIGINT NOT NULL,
    PRIMARY KEY (message_id, chunk_index)
);
INSERT INTO stream_chunk_keyed (message_id, chunk_index, content, timestamp)
    SELECT message_id, chunk_index, content, timestamp FROM stream_chunk;
DROP TABLE stream_chunk;
ALTER TABLE stream_chunk_keyed RENAME TO stream_chunk;
