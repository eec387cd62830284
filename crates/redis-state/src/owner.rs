//! `session:owner:{sid}`: which gateway node serves a session, for observability.
//!
//! A node claims a session when a socket of it connects there (`SET NX EX`, or renews its own
//! claim) and releases it when its last socket of the session leaves (only if still its own).
//! Nothing reads the claim to decide delivery: every node delivers to its own sockets whoever
//! owns the session, so a crashed owner blocks nothing; its claim just expires.

use protocol::{SessionId, keys};

use crate::{ChatState, Result};

/// KEYS: owner key. ARGV: node, TTL. Returns the owner after the claim.
pub(crate) const CLAIM: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return ARGV[1] end
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return owner
"#;

/// KEYS: owner key. ARGV: node. Deletes the claim if it is the node's.
pub(crate) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

impl ChatState {
    /// Claims `session` for `node` unless another node holds it; returns the owner.
    pub async fn claim_owner(&self, session: &SessionId, node: &str) -> Result<String> {
        let owner: Option<String> = self
            .scripts()
            .claim_owner
            .key(keys::session_owner(session))
            .arg(node)
            .arg(keys::SESSION_OWNER_TTL_SECS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(owner.unwrap_or_default())
    }

    /// Releases `node`'s claim on `session` (no-op if another node holds it).
    pub async fn release_owner(&self, session: &SessionId, node: &str) -> Result<()> {
        let _: i64 = self
            .scripts()
            .release_owner
            .key(keys::session_owner(session))
            .arg(node)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }
}
