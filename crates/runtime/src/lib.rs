//! Start-up and shutdown plumbing shared by the binaries.
//!
//! # Layout
//! - [`env`]: reading settings from environment variables, with errors naming the variable.
//! - [`telemetry`]: `tracing` with an `EnvFilter` from `LOG_LEVEL`, every line carrying the
//!   node id.
//! - [`metrics`]: the process's metrics recorder, exported in the Prometheus text format.
//! - [`net`]: listening sockets with a deep backlog.
//! - [`shutdown`]: one future for Ctrl-C and SIGTERM.

pub mod env;
pub mod metrics;
pub mod net;
pub mod shutdown;
pub mod telemetry;
