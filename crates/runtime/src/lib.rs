//! Start-up and shutdown plumbing shared by the binaries.
//!
//! # Layout
//! - [`env`]: reading settings from environment variables, with errors naming the variable.
//! - [`telemetry`]: `tracing` with an `EnvFilter` from `LOG_LEVEL`, as text or JSON
//!   (`LOG_FORMAT`), every line carrying the node id (and a chat's trace id); OTLP export of
//!   spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`trace`]: W3C `traceparent` for chats crossing from a gateway to an AI node.
//! - [`metrics`]: the process's metrics recorder, exported in the Prometheus text format.
//! - [`net`]: listening sockets with a deep backlog.
//! - [`shutdown`]: one future for Ctrl-C and SIGTERM.

pub mod env;
pub mod metrics;
pub mod net;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
