//! Logging: `tracing` to stderr, filtered by `LOG_LEVEL`, every line starting with the node id.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber. `log_level` is an `EnvFilter` directive (`info`,
/// `ws_gateway=debug,info`, ...); an invalid one falls back to `info` with a warning.
pub fn init(node_id: &str, log_level: &str) {
    let (filter, bad) = match EnvFilter::try_new(log_level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let format = WithNodeId {
        node_id: node_id.to_owned(),
        inner: tracing_subscriber::fmt::format()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
    };
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .event_format(format)
        .try_init();
    if installed.is_err() {
        // Already installed (tests run several servers in one process): keep the first one.
        return;
    }
    if let Some(e) = bad {
        tracing::warn!(log_level, cause = %e, "LOG_LEVEL is not a valid filter; using info");
    }
}

/// Prefixes every event with `node_id=...`.
struct WithNodeId {
    node_id: String,
    inner: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for WithNodeId
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "node_id={} ", self.node_id)?;
        self.inner.format_event(ctx, writer, event)
    }
}
