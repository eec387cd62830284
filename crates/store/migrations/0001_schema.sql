-- The seed's schema, with a status on messages and the indexes our queries use.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE message (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,          -- the session id
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'streaming', 'completed', 'cancelled', 'failed')),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- History of a session, in order.
CREATE INDEX message_by_conversation ON message (conversation_id, created_at);

CREATE TABLE chat_session (
    session_id         TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    conversation_id    TEXT NOT NULL,
    title              TEXT NOT NULL,       -- the first user message, shortened
    status             TEXT NOT NULL,
    start_time         BIGINT NOT NULL,
    last_activity_time BIGINT NOT NULL
);
-- A user's sessions, most recent first.
CREATE INDEX chat_session_by_user ON chat_session (user_id, last_activity_time);

CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_data TEXT NOT NULL,               -- JSON
    timestamp  BIGINT NOT NULL
);
CREATE INDEX audit_log_by_session ON audit_log (session_id, timestamp);

CREATE TABLE stream_chunk (
    id          TEXT PRIMARY KEY,           -- {message_id}:{chunk_index}
    message_id  TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    content     TEXT NOT NULL,
    timestamp   BIGINT NOT NULL
);
CREATE UNIQUE INDEX stream_chunk_by_message ON stream_chunk (message_id, chunk_index);
