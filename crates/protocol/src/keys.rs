//! Every Redis key and pub/sub channel name, and the lifetimes that go with them.
//!
//! Key names follow the seed; `chat:chunks:{sid}:mid` (the chunk log) and
//! `chat:message:{sid}:mid` (the record of an answer while it streams and for a while after)
//! are ours.
//!
//! # Hash tags
//! The braces around a session id are literal: `chat:history:{s1}` is the key of session `s1`.
//! Redis Cluster hashes only what is between the first `{` and `}` (the hash tag), so every key
//! and the stream channel of one session live in one slot, whatever else the name holds (an
//! answer's id), and each Lua script of one session runs on one shard. The same
//! names are used on a single Redis, where the braces change nothing. Ids never contain braces
//! (see [`crate::validate`]). Per-user keys (`ratelimit:chat:{uid}`, `user:sockets:{uid}`) are
//! single keys and carry the user's id as their tag the same way.

use crate::validate::{MessageId, SessionId, UserId};

/// Prefix of the per-session pub/sub channel.
pub const STREAM_CHANNEL_PREFIX: &str = "chat:stream:";

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
    format!("{STREAM_CHANNEL_PREFIX}{{{session}}}")
}

/// The session id inside a `chat:stream:{sid}` channel name.
pub fn session_of_channel(channel: &str) -> Option<&str> {
    channel
        .strip_prefix(STREAM_CHANNEL_PREFIX)?
        .strip_prefix('{')?
        .strip_suffix('}')
}

/// `chat:history:{sid}`: completed messages, chronological (RPUSH).
pub fn history(session: &SessionId) -> String {
    format!("chat:history:{{{session}}}")
}

/// `chat:chunks:{sid}:`: what the chunk log keys of a session's answers start with; scripts
/// that learn an answer's id from Redis build `prefix .. message_id` themselves.
pub fn chunks_prefix(session: &SessionId) -> String {
    format!("chat:chunks:{{{session}}}:")
}

/// `chat:message:{sid}:`: what the answer record keys of a session's answers start with.
pub fn message_prefix(session: &SessionId) -> String {
    format!("chat:message:{{{session}}}:")
}

/// `chat:chunks:{sid}:mid`: the deltas of an answer, in index order (RPUSH; index =
/// position).
pub fn chunks(session: &SessionId, message: &MessageId) -> String {
    format!("{}{message}", chunks_prefix(session))
}

/// `chat:started:{sid}:mid`: the number of the answer's start in its session's changes, so
/// that a retried `START` whose first try did run (its reply was lost) is answered the same
/// way. Lives as long as the answer record.
pub fn started(session: &SessionId, message: &MessageId) -> String {
    format!("chat:started:{{{session}}}:{message}")
}

/// `chat:ended:{sid}:mid`: the number of the answer's ending in its session's changes, for a
/// retried `FINISH`/`FAIL` whose first try did run. Lives as long as the ended record.
pub fn ended(session: &SessionId, message: &MessageId) -> String {
    format!("chat:ended:{{{session}}}:{message}")
}

/// `chat:message:{sid}:mid`: the answer's `ChatMessage` (empty content while streaming, the
/// final message once ended).
pub fn message(session: &SessionId, message: &MessageId) -> String {
    format!("{}{message}", message_prefix(session))
}

/// How long a session's change counter lives after its last change. When it is gone, numbering
/// starts again at 1, which the event relay takes as a new beginning.
pub const CHANGES_TTL_SECS: u64 = 7 * 24 * 60 * 60;

/// `chat:changes:{sid}`: the number of the session's last change recorded as events (an
/// answer started or ended, a history deleted): events of one session are published in this
/// order.
pub fn session_changes(session: &SessionId) -> String {
    format!("chat:changes:{{{session}}}")
}

/// `session:user:{sid}`: the user the session belongs to (whose chat created it), a cache of
/// the SQL session row; lives [`SESSION_USER_TTL_SECS`], renewed by every chat, so that Redis
/// still knows a month-old session's owner while SQL is unreachable.
pub fn session_user(session: &SessionId) -> String {
    format!("session:user:{{{session}}}")
}

/// Lifetime of `session:user:{sid}` after the session's last chat.
pub const SESSION_USER_TTL_SECS: u64 = 30 * 24 * 60 * 60;

/// `chat:unmerged:{sid}`: set when a chat started in a session Redis had no history for while
/// SQL could not be asked whether it held one. The next reader with SQL back merges the stored
/// history in (older messages first) and deletes it. Same lifetime as the history.
pub fn unmerged(session: &SessionId) -> String {
    format!("chat:unmerged:{{{session}}}")
}

/// `ratelimit:chat:{uid}`: when the user's chat budget is full again (GCRA; ms, Redis clock).
pub fn chat_rate(user: &UserId) -> String {
    format!("ratelimit:chat:{{{user}}}")
}

/// `user:sockets:{uid}`: the user's open sockets across nodes (`{node}:{socket}`), scored by
/// when each entry expires unless its node renews it.
pub fn user_sockets(user: &UserId) -> String {
    format!("user:sockets:{{{user}}}")
}

/// `streaming:active:{sid}`: the stream lease; its value is the streaming message's id.
pub fn active_stream(session: &SessionId) -> String {
    format!("streaming:active:{{{session}}}")
}

/// `streaming:cancel:{sid}:mid`: set to ask the producer of `mid` to stop.
pub fn cancel_flag(session: &SessionId, message: &MessageId) -> String {
    format!("streaming:cancel:{{{session}}}:{message}")
}

/// `streaming:deadlines`: on a single Redis, the sorted set of streaming answers
/// (`sid:mid`) scored by the moment (ms, Redis clock) their lease runs out unless refreshed;
/// the reaper fails answers past it. On a Redis Cluster each slot has its own
/// ([`slot_deadlines`]), so that the scripts that move a deadline touch one slot.
pub const STREAM_DEADLINES: &str = "streaming:deadlines";

/// `streaming:deadlines:{tag}`: the deadline set of the sessions in cluster slot `slot`, where
/// `tag` is the shortest decimal number that hashes to `slot` ([`slot_tag`]).
pub fn slot_deadlines(slot: u16) -> String {
    format!("{STREAM_DEADLINES}:{{{}}}", slot_tag(slot))
}

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

/// Slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (what is between the first `{` and
/// the next `}`, when that is not empty) or of the whole key, modulo 16384.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % CLUSTER_SLOTS
}

/// The slot a session's keys and channel live in.
pub fn session_slot(session: &SessionId) -> u16 {
    crc16_xmodem(session.as_str().as_bytes()) % CLUSTER_SLOTS
}

/// The shortest decimal number (as text) whose CRC16 lands in `slot`: a hash tag that puts a
/// key in that slot. Computed once for all slots (a few hundred thousand CRCs, milliseconds).
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); usize::from(CLUSTER_SLOTS)];
        let mut missing = usize::from(CLUSTER_SLOTS);
        let mut n: u64 = 0;
        while missing > 0 {
            let text = n.to_string();
            let at = usize::from(crc16_xmodem(text.as_bytes()) % CLUSTER_SLOTS);
            if tags[at].is_empty() {
                tags[at] = text;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    &tags[usize::from(slot % CLUSTER_SLOTS)]
}

/// CRC16 as Redis Cluster computes it (XMODEM: polynomial 0x1021, initial 0, no reflection).
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// How long a session owner claim lives; renewed while the node serves the session.
pub const SESSION_OWNER_TTL_SECS: u64 = 600;

/// `session:owner:{sid}`: which gateway node serves the session (observability only).
pub fn session_owner(session: &SessionId) -> String {
    format!("session:owner:{{{session}}}")
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
        assert_eq!(channel, "chat:stream:{abc-1}");
        assert_eq!(session_of_channel(&channel), Some("abc-1"));
        assert_eq!(session_of_channel("other:{abc}"), None);
        assert_eq!(session_of_channel("chat:stream:abc"), None);
    }

    /// The slots Redis's own documentation gives (CLUSTER KEYSLOT), hash tags included.
    #[test]
    fn slots_are_those_redis_computes() {
        assert_eq!(slot_of("123456789"), 12739);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(
            slot_of("{user1000}.following"),
            slot_of("{user1000}.followers")
        );
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    }

    /// Every key and the channel of a session are in the session's slot, whatever the answer.
    #[test]
    fn a_sessions_keys_share_its_slot() {
        let s = SessionId::parse("s-42").unwrap();
        let m = MessageId::parse("m-7").unwrap();
        let slot = session_slot(&s);
        for key in [
            stream_channel(&s),
            history(&s),
            chunks(&s, &m),
            message(&s, &m),
            started(&s, &m),
            ended(&s, &m),
            session_changes(&s),
            session_user(&s),
            unmerged(&s),
            active_stream(&s),
            cancel_flag(&s, &m),
            session_owner(&s),
            slot_deadlines(slot),
        ] {
            assert_eq!(slot_of(&key), slot, "{key}");
        }
        assert!(chunks(&s, &m).starts_with(&chunks_prefix(&s)));
        assert!(message(&s, &m).starts_with(&message_prefix(&s)));
    }

    /// Each slot has a tag, and the tag hashes to it.
    #[test]
    fn every_slot_has_a_tag() {
        for slot in 0..CLUSTER_SLOTS {
            assert_eq!(slot_of(&slot_deadlines(slot)), slot);
        }
    }
}
