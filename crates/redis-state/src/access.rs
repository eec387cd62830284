//! Who may do what: whose session it is, and the limits that keep one user from taking a
//! whole cluster (chats per minute, open sockets), held in Redis so every node applies the
//! same budget.

use std::time::Duration;

use protocol::{SessionId, UserId, keys};

use crate::{ChatState, Error, Result};

/// KEYS: the user's rate key. ARGV: emission interval (ms), burst (chats).
/// GCRA: the key holds the "theoretical arrival time" of the next chat; a chat is allowed when
/// it is no later than `burst` intervals ahead of now. Returns 0 when allowed (and taken), or
/// the milliseconds to wait.
pub(crate) const TAKE_CHAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - window
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
return 0
"#;

/// KEYS: the user's socket set. ARGV: member, most sockets, entry lifetime (ms).
/// Drops expired entries, then adds `member` unless the user already has the most. Returns 1
/// when added, 0 when refused.
pub(crate) const OPEN_SOCKET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// KEYS: the sets of the users. ARGV: entry lifetime (ms), then one member per key. Pushes the
/// expiry of each member that is still there.
pub(crate) const RENEW_SOCKETS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"#;

impl ChatState {
    /// The user `session` belongs to, as Redis knows it (`None`: not known here).
    pub async fn session_user(&self, session: &SessionId) -> Result<Option<UserId>> {
        let mut conn = self.conn();
        let user: Option<String> = redis::cmd("GET")
            .arg(keys::session_user(session))
            .query_async(&mut conn)
            .await?;
        user.map(|u| {
            UserId::parse(u.as_str()).map_err(|_| Error::Reply(format!("session user {u:?}")))
        })
        .transpose()
    }

    /// Puts back whose session it is (from SQL), unless Redis knows already.
    pub async fn warm_session_user(&self, session: &SessionId, user: &UserId) -> Result<()> {
        let mut conn = self.conn();
        redis::cmd("SET")
            .arg(keys::session_user(session))
            .arg(user.as_str())
            .arg("NX")
            .arg("EX")
            .arg(keys::SESSION_USER_TTL_SECS)
            .query_async::<Option<String>>(&mut conn)
            .await?;
        Ok(())
    }

    /// Takes one of `user`'s chats: at most `per_minute` a minute, in bursts of up to that
    /// many. `None` when allowed; otherwise how long to wait.
    pub async fn take_chat(&self, user: &UserId, per_minute: u32) -> Result<Option<Duration>> {
        let interval_ms = 60_000 / u64::from(per_minute.max(1));
        let wait: i64 = self
            .scripts()
            .take_chat
            .key(keys::chat_rate(user))
            .arg(interval_ms.max(1))
            .arg(per_minute)
            .invoke_async(&mut self.conn())
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait.unsigned_abs())))
    }

    /// Counts socket `member` among `user`'s open sockets unless they number `max` already;
    /// returns whether it was counted. The entry lives `lifetime` unless renewed.
    pub async fn open_socket(
        &self,
        user: &UserId,
        member: &str,
        max: u32,
        lifetime: Duration,
    ) -> Result<bool> {
        let added: i64 = self
            .scripts()
            .open_socket
            .key(keys::user_sockets(user))
            .arg(member)
            .arg(max)
            .arg(millis(lifetime))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(added == 1)
    }

    /// Stops counting socket `member` of `user`.
    pub async fn close_socket(&self, user: &UserId, member: &str) -> Result<()> {
        let mut conn = self.conn();
        redis::cmd("ZREM")
            .arg(keys::user_sockets(user))
            .arg(member)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Keeps the entries of `sockets` (user, member) counted for another `lifetime`.
    pub async fn renew_sockets(
        &self,
        sockets: &[(UserId, String)],
        lifetime: Duration,
    ) -> Result<()> {
        let slot = |(user, _): &(UserId, String)| keys::slot_of(&keys::user_sockets(user));
        for batch in self.batches(sockets, slot) {
            let mut invocation = self.scripts().renew_sockets.prepare_invoke();
            invocation.arg(millis(lifetime));
            for (user, member) in batch {
                invocation
                    .key(keys::user_sockets(user))
                    .arg(member.as_str());
            }
            let _: i64 = invocation.invoke_async(&mut self.conn()).await?;
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
