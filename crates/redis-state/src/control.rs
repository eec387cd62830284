//! Changes a client asks for: cancel an answer, delete a session's history.

use protocol::{MessageId, SessionId, keys};

use crate::{ChatState, Error, Result};

pub use protocol::rest::CancelOutcome;

impl ChatState {
    /// Asks the producer of `message` to stop. Any node may call this; the producer sees the
    /// flag before its next chunk.
    pub async fn cancel(&self, session: &SessionId, message: &MessageId) -> Result<CancelOutcome> {
        let outcome: String = self
            .scripts()
            .cancel
            .key(keys::active_stream(session))
            .key(keys::cancel_flag(session, message))
            .key(keys::message(session, message))
            .key(keys::history(session))
            .arg(message.as_str())
            .arg(keys::CANCEL_FLAG_TTL_SECS)
            .arg(session.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        match outcome.as_str() {
            "cancelling" => Ok(CancelOutcome::Cancelling),
            "already_finished" => Ok(CancelOutcome::AlreadyFinished),
            "not_found" => Ok(CancelOutcome::NotFound),
            other => Err(Error::Reply(format!("cancel answered {other:?}"))),
        }
    }

    /// Takes the session's next change number (for a change made outside the scripts: a
    /// deletion).
    pub async fn next_change(&self, session: &SessionId) -> Result<i64> {
        let mut conn = self.conn();
        let (change, _): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(keys::session_changes(session))
            .cmd("EXPIRE")
            .arg(keys::session_changes(session))
            .arg(keys::CHANGES_TTL_SECS)
            .query_async(&mut conn)
            .await?;
        Ok(change)
    }

    /// Deletes the session's stored history; returns how many messages it held. An answer still
    /// streaming goes on and lands in the (new) history when it ends.
    pub async fn delete_history(&self, session: &SessionId) -> Result<usize> {
        let mut conn = self.conn();
        let (count, _): (usize, i64) = redis::pipe()
            .atomic()
            .cmd("LLEN")
            .arg(keys::history(session))
            .cmd("DEL")
            .arg(keys::history(session))
            .arg(keys::unmerged(session))
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }
}
