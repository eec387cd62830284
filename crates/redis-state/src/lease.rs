//! Leases: a key that names the one node holding a role, for as long as it keeps renewing it.
//!
//! Two roles use them:
//! - `session:owner:{sid}`: which gateway node serves a session, for observability. A node
//!   claims it when a socket of the session connects there, renews it while it serves the
//!   session and releases it when its last one leaves. Nothing reads it to decide delivery: every node delivers to its own sockets
//!   whoever owns the session, so a crashed owner blocks nothing; its claim just expires.
//! - `events:relay:lease`: which AI node relays the event outbox to Kafka. The holder renews it
//!   well inside its lifetime; when it dies, the lease expires and another node takes over.

use std::time::Duration;

use protocol::{SessionId, keys};

use crate::{ChatState, Result};

/// KEYS: lease. ARGV: holder, lifetime (ms). Takes the lease if free, renews it if the holder
/// has it; returns who holds it afterwards.
pub(crate) const CLAIM: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return holder
"#;

/// KEYS: leases. ARGV: holder, lifetime (ms). [`CLAIM`] for each key; returns how many the
/// holder holds afterwards.
pub(crate) const CLAIM_MANY: &str = r#"
local held = 0
for _, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    held = held + 1
  elseif redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held = held + 1
  end
end
return held
"#;

/// KEYS: lease. ARGV: holder. Deletes the lease if the holder has it.
pub(crate) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

impl ChatState {
    /// Takes lease `key` for `holder` for `lifetime` unless someone else holds it, or renews
    /// it if `holder` has it; returns who holds it now.
    pub async fn claim_lease(&self, key: &str, holder: &str, lifetime: Duration) -> Result<String> {
        let millis = u64::try_from(lifetime.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let now: Option<String> = self
            .scripts()
            .claim_lease
            .key(key)
            .arg(holder)
            .arg(millis)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(now.unwrap_or_default())
    }

    /// Gives lease `key` up if `holder` has it (no-op otherwise).
    pub async fn release_lease(&self, key: &str, holder: &str) -> Result<()> {
        let _: i64 = self
            .scripts()
            .release_lease
            .key(key)
            .arg(holder)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Claims `session` for `node` for `lifetime` unless another node holds it; returns the
    /// owner.
    pub async fn claim_owner(
        &self,
        session: &SessionId,
        node: &str,
        lifetime: Duration,
    ) -> Result<String> {
        self.claim_lease(&keys::session_owner(session), node, lifetime)
            .await
    }

    /// Claims (or renews) every one of `sessions` for `node` for `lifetime`, where no other
    /// node holds it, in batches of one script call; returns how many `node` holds.
    pub async fn claim_owners(
        &self,
        sessions: &[SessionId],
        node: &str,
        lifetime: Duration,
    ) -> Result<usize> {
        let millis = u64::try_from(lifetime.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut held = 0;
        for batch in self.batches(sessions, keys::session_slot) {
            let mut invocation = self.scripts().claim_many.prepare_invoke();
            invocation.arg(node).arg(millis);
            for session in batch {
                invocation.key(keys::session_owner(session));
            }
            let n: usize = invocation.invoke_async(&mut self.conn()).await?;
            held += n;
        }
        Ok(held)
    }

    /// Releases `node`'s claim on `session` (no-op if another node holds it).
    pub async fn release_owner(&self, session: &SessionId, node: &str) -> Result<()> {
        self.release_lease(&keys::session_owner(session), node)
            .await
    }
}
