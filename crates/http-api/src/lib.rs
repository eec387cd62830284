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
//! - [`metrics_routes`], [`http_metrics_layer`] (`metrics.rs`): `GET /metrics`, and
//!   `axum-prometheus`'s request metrics by route template and status.
//! - [`Caller`] (`access.rs`): who a request comes from (its token), and whose sessions it may
//!   touch.
//! - [`trace_layer`], [`cors_layer`] (`layers.rs`): request logs without query strings (they
//!   may hold tokens), and which browser origins may call.

mod access;
mod conversation;
mod error;
mod extract;
mod health;
mod layers;
mod metrics;

pub use access::{Caller, forbidden};
pub use conversation::conversation_routes;
pub use error::AppError;
pub use extract::Valid;
pub use health::health_routes;
pub use layers::{cors_layer, trace_layer};
pub use metrics::{http_metrics_layer, metrics_routes};
