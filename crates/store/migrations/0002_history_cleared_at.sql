-- When a session's history was last deleted: messages created up to then stay hidden even if a
-- write queued before the deletion lands after it.
ALTER TABLE chat_session ADD COLUMN cleared_at BIGINT NOT NULL DEFAULT 0;
