-- Domain events waiting to be published to Kafka (the transactional outbox). Each row is written
-- in the same transaction as the change its event describes; a relay publishes them (in `seq`
-- order across sessions, in `session_change` order within one) and marks them published once
-- the broker has acknowledged them.
CREATE TABLE event_outbox (
    seq          BIGINT PRIMARY KEY,        -- from outbox_sequence: grows in commit order
    event_id     TEXT NOT NULL UNIQUE,      -- the event's stable eventId
    topic        TEXT NOT NULL CHECK (topic IN ('chat', 'stream')),
    event_key    TEXT NOT NULL,             -- the session id: one session, one partition
    session_change BIGINT,                  -- the change's number in its session (from Redis)
    payload      TEXT NOT NULL,             -- the event's JSON
    created_at   BIGINT NOT NULL,
    published_at BIGINT                     -- NULL until the broker acknowledged it
);
-- What the relay reads next, and what retention deletes.
CREATE INDEX event_outbox_unpublished ON event_outbox (seq) WHERE published_at IS NULL;
CREATE INDEX event_outbox_published ON event_outbox (published_at) WHERE published_at IS NOT NULL;

-- A counter per sequence. Incrementing it locks its row until commit, so concurrent writers
-- take turns and `seq` grows in commit order (which a plain autoincrement does not promise on
-- PostgreSQL), on SQLite and PostgreSQL alike.
CREATE TABLE outbox_sequence (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO outbox_sequence (name, value) VALUES ('event_outbox', 0);

-- The last change of each session whose events were published: the relay publishes a session's
-- changes in their order, waiting a while for one that is late.
CREATE TABLE outbox_session_cursor (
    session_id  TEXT PRIMARY KEY,
    last_change BIGINT NOT NULL
);
