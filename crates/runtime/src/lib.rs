//! Start-up and shutdown plumbing shared by the binaries.
//!
//! # Layout
//! - [`env`]: reading the seed's environment variables (`REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`).
//! - [`telemetry`]: `tracing` with an `EnvFilter` from `LOG_LEVEL`, every line carrying the
//!   node id.
//! - [`net`]: listening sockets with a deep backlog.
//! - [`shutdown`]: one future for Ctrl-C and SIGTERM.

pub mod env;
pub mod net;
pub mod shutdown;
pub mod telemetry;
