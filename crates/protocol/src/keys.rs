//! Every Redis key and pub/sub channel name, and the lifetimes that go with them.
//!
//! Key names follow the seed; `chat:chunks:{mid}` (the chunk log) and `chat:message:{mid}` (the
//! record of an answer while it streams and for a while after) are ours.

use crate::validate::{MessageId, SessionId, UserId};

/// Prefix of the per-session pub/sub channel.
pub const STREAM_CHANNEL_PREFIX: &str = "chat:stream:";
/// Prefix of the chunk log keys; scripts build `prefix .. message_id` themselves.
pub const CHUNKS_PREFIX: &str = "chat:chunks:";
/// Prefix of the answer record keys; scripts build `prefix .. message_id` themselves.
pub const MESSAGE_PREFIX: &str = "chat:message:";

/// How long a session's history lives after its last write.
pub const HISTORY_TTL_SECS: u64 = 24 * 60 * 60;
/// How long a chunk log and an answer record live after the answer ends (for `resume`).
pub const ENDED_STREAM_TTL_SECS: u64 = 5 * 60;
/// Safety net for a chunk log and answer record while streaming: renewed every 100 chunks, so
/// it only fires when the producer vanished and nothing else cleaned up.
pub const LIVE_STREAM_TTL_SECS: u64 = 60 * 60;
/// How long a cancel flag lives.
pub const CANCEL_FLAG_TTL_SECS: u64 = 60;

/// `chat:stream:{sid}`: chunk and message frames of one session.
pub fn stream_channel(session: &SessionId) -> String {
    format!("{STREAM_CHANNEL_PREFIX}{session}")
}

/// The session id inside a `chat:stream:{sid}` channel name.
pub fn session_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix(STREAM_CHANNEL_PREFIX)
}

/// `chat:history:{sid}`: completed messages, chronological (RPUSH).
pub fn history(session: &SessionId) -> String {
    format!("chat:history:{session}")
}

/// `chat:chunks:{mid}`: the deltas of an answer, in index order (RPUSH; index = position).
pub fn chunks(message: &MessageId) -> String {
    format!("{CHUNKS_PREFIX}{message}")
}

/// `chat:started:{mid}`: the number of the answer's start in its session's changes, so that a
/// retried `START` whose first try did run (its reply was lost) is answered the same way.
/// Lives as long as the answer record.
pub fn started(message: &MessageId) -> String {
    format!("chat:started:{message}")
}

/// `chat:ended:{mid}`: the number of the answer's ending in its session's changes, for a
/// retried `FINISH`/`FAIL` whose first try did run. Lives as long as the ended record.
pub fn ended(message: &MessageId) -> String {
    format!("chat:ended:{message}")
}

/// `chat:message:{mid}`: the answer's `ChatMessage` (empty content while streaming, the final
/// message once ended).
pub fn message(message: &MessageId) -> String {
    format!("{MESSAGE_PREFIX}{message}")
}

/// How long a session's change counter lives after its last change. When it is gone, numbering
/// starts again at 1, which the event relay takes as a new beginning.
pub const CHANGES_TTL_SECS: u64 = 7 * 24 * 60 * 60;

/// `chat:changes:{sid}`: the number of the session's last change recorded as events (an
/// answer started or ended, a history deleted): events of one session are published in this
/// order.
pub fn session_changes(session: &SessionId) -> String {
    format!("chat:changes:{session}")
}

/// `session:user:{sid}`: the user the session belongs to (whose chat created it), a cache of
/// the SQL session row; lives [`SESSION_USER_TTL_SECS`], renewed by every chat, so that Redis
/// still knows a month-old session's owner while SQL is unreachable.
pub fn session_user(session: &SessionId) -> String {
    format!("session:user:{session}")
}

/// Lifetime of `session:user:{sid}` after the session's last chat.
pub const SESSION_USER_TTL_SECS: u64 = 30 * 24 * 60 * 60;

/// `chat:unmerged:{sid}`: set when a chat started in a session Redis had no history for while
/// SQL could not be asked whether it held one. The next reader with SQL back merges the stored
/// history in (older messages first) and deletes it. Same lifetime as the history.
pub fn unmerged(session: &SessionId) -> String {
    format!("chat:unmerged:{session}")
}

/// `ratelimit:chat:{uid}`: when the user's chat budget is full again (GCRA; ms, Redis clock).
pub fn chat_rate(user: &UserId) -> String {
    format!("ratelimit:chat:{user}")
}

/// `user:sockets:{uid}`: the user's open sockets across nodes (`{node}:{socket}`), scored by
/// when each entry expires unless its node renews it.
pub fn user_sockets(user: &UserId) -> String {
    format!("user:sockets:{user}")
}

/// `streaming:active:{sid}`: the stream lease; its value is the streaming message's id.
pub fn active_stream(session: &SessionId) -> String {
    format!("streaming:active:{session}")
}

/// `streaming:cancel:{sid}:{mid}`: set to ask the producer of `mid` to stop.
pub fn cancel_flag(session: &SessionId, message: &MessageId) -> String {
    format!("streaming:cancel:{session}:{message}")
}

/// `streaming:deadlines`: sorted set of streaming answers (`{sid}:{mid}`) scored by the moment
/// (ms, Redis clock) their lease runs out unless refreshed; the reaper fails answers past it.
pub const STREAM_DEADLINES: &str = "streaming:deadlines";

/// The member of [`STREAM_DEADLINES`] for an answer.
pub fn deadline_member(session: &SessionId, message: &MessageId) -> String {
    format!("{session}:{message}")
}

/// The session and answer ids of a [`STREAM_DEADLINES`] member.
pub fn parse_deadline_member(member: &str) -> Option<(SessionId, MessageId)> {
    let (session, message) = member.split_once(':')?;
    Some((
        SessionId::parse(session).ok()?,
        MessageId::parse(message).ok()?,
    ))
}

/// How long a session owner claim lives; renewed while the node serves the session.
pub const SESSION_OWNER_TTL_SECS: u64 = 600;

/// `session:owner:{sid}`: which gateway node serves the session (observability only).
pub fn session_owner(session: &SessionId) -> String {
    format!("session:owner:{session}")
}

/// `events:relay:lease`: the node relaying the event outbox to Kafka (value: its node id).
pub const RELAY_LEASE: &str = "events:relay:lease";

/// `events:outbox:wake`: pub/sub channel telling the relay that the outbox has new rows.
pub const OUTBOX_WAKE_CHANNEL: &str = "events:outbox:wake";

#[cfg(test)]
mod tests {
    use super::*;

    /// Channel names round-trip to the session id they were made from.
    #[test]
    fn channel_names_round_trip() {
        let sid = SessionId::parse("abc-1").unwrap();
        let channel = stream_channel(&sid);
        assert_eq!(channel, "chat:stream:abc-1");
        assert_eq!(session_of_channel(&channel), Some("abc-1"));
        assert_eq!(session_of_channel("other:abc"), None);
    }
}
