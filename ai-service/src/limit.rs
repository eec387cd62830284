//! [`ChatLimit`]: how many chats one user may start a minute, counted in Redis so that it holds
//! across every node, whichever way the chat came (through a gateway or straight to `/ai/`).

use http_api::AppError;
use protocol::UserId;
use redis_state::ChatState;
use tracing::warn;

/// `CHAT_RATE_LIMIT_PER_MINUTE` per user. Cheap to clone.
#[derive(Clone)]
pub struct ChatLimit {
    state: ChatState,
    /// 0: no limit.
    per_minute: u32,
}

impl ChatLimit {
    pub fn new(state: ChatState, per_minute: u32) -> Self {
        Self { state, per_minute }
    }

    /// Takes one of `user`'s chats, or refuses it (429 with the seconds until the next one is
    /// allowed). When Redis cannot be asked, the chat goes on: starting it needs Redis too,
    /// and that failure is the one to report.
    pub async fn take(&self, user: &UserId) -> Result<(), AppError> {
        if self.per_minute == 0 {
            return Ok(());
        }
        match self.state.take_chat(user, self.per_minute).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => {
                let retry_after_secs = wait.as_millis().div_ceil(1000).max(1) as u64;
                Err(AppError::RateLimited {
                    retry_after_secs,
                    message: format!("too many chats; retry in {retry_after_secs} s"),
                })
            }
            Err(e) => {
                warn!(cause = %e, "the chat rate limit could not be checked");
                Ok(())
            }
        }
    }
}
