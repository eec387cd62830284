//! Who is calling: the node's authentication settings and the one place tokens are checked.
//!
//! Tokens are JWTs signed with HS256 and the shared `JWT_SECRET`. A token is accepted when its
//! signature is right, its algorithm is HS256 (anything else, `none` included, is refused), it
//! carries `exp` and has not expired (with [`LEEWAY_SECS`] of clock skew), it is not used
//! before its `nbf` when it has one, and its `sub` is a valid user id; the caller is that user.
//!
//! `AUTH_MODE=dev` (the default) keeps local use one command: a token is optional, and without
//! one the client's `user_id` is believed. `AUTH_MODE=required` demands a token on every call
//! and never lets a `user_id` override it.
//!
//! # Layout
//! - [`AuthConfig`] (`config.rs`): `AUTH_MODE`, `JWT_SECRET`, `JWT_EXPIRATION_MS`,
//!   `CORS_ALLOWED_ORIGINS`.
//! - [`Authenticator`] (`token.rs`): verifying and minting tokens.

mod config;
mod token;

pub use config::{AllowedOrigins, AuthConfig, AuthMode, DEV_SECRET, Secret};
pub use token::{AuthError, Authenticator, Claims, KeyError, LEEWAY_SECS};
