//! HTTP pieces shared by the AI service and the gateway.
//!
//! # Layout
//! - [`AppError`] (`error.rs`): every handler's error, answered as an [`protocol::rest::ErrorBody`].
//! - [`conversation_routes`] (`conversation.rs`): `GET`/`DELETE /history/{session_id}` and
//!   `POST /cancel`, which both binaries serve from the same Redis state (the gateway under
//!   `/api`).

mod conversation;
mod error;

pub use conversation::conversation_routes;
pub use error::AppError;
