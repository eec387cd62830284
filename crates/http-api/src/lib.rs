//! HTTP pieces shared by the AI service and the gateway.
//!
//! # Layout
//! - [`AppError`] (`error.rs`): every handler's error, answered as an
//!   [`protocol::rest::ErrorBody`]; 5xx are logged with what failed and answered without it.
//! - [`Valid`] (`extract.rs`): a JSON body validated field by field into its typed form.
//! - [`conversation_routes`] (`conversation.rs`): `GET`/`DELETE /history/{session_id}`,
//!   `GET /sessions` and `POST /cancel`, which both binaries serve from the same
//!   [`node::Core`] (the gateway under `/api`).
//! - [`health_routes`] (`health.rs`): `GET /health` from the node's [`node::Health`].

mod conversation;
mod error;
mod extract;
mod health;

pub use conversation::conversation_routes;
pub use error::AppError;
pub use extract::Valid;
pub use health::health_routes;
