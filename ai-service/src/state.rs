//! [`AppState`]: the handles every request of the AI node shares.

use axum::extract::FromRef;
use node::{Core, Health};

use crate::limit::ChatLimit;
use crate::streamer::Streamer;

/// Handles shared by every request; cheap to clone.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Redis, history, the SQL writer: what every node holds.
    pub core: Core,
    /// `GET /health`: Redis and the database.
    pub health: Health,
    /// Chats per user per minute.
    pub chat_limit: ChatLimit,
    /// Starts answers and tracks the tasks producing them.
    pub streamer: Streamer,
}
