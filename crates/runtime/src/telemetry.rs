//! Logs and traces: `tracing` to stderr, filtered by `LOG_LEVEL`, as text (the default) or one
//! JSON object a line (`LOG_FORMAT=json`, `tracing-subscriber`'s JSON format); every line
//! carries the node id, and every line logged inside a chat's span its trace id. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP (HTTP/protobuf) with
//! `tracing-opentelemetry`; unset, no OpenTelemetry layer exists at all.
//!
//! A chat's trace id comes from its W3C `traceparent` ([`crate::trace`]) and is the span
//! field `trace_id`; [`TraceIdLayer`] keeps it on the span so that each event inside can name
//! it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{Format, Full, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `node_id=... 2026-... INFO span{...}: target: message field=value` (the default).
    #[default]
    Text,
    /// One JSON object a line: `node_id`, `trace_id` (inside a chat), `timestamp`, `level`,
    /// `target`, the message and fields flattened, the current span and the span list.
    Json,
}

impl LogFormat {
    /// `text` or `json` (`LOG_FORMAT`).
    pub fn parse(raw: &str) -> Option<LogFormat> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// What [`init`] needs.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `NODE_ID`: on every line, and the exported spans' `service.instance.id`.
    pub node_id: String,
    /// `LOG_LEVEL`: an `EnvFilter` directive (`info`, `ws_gateway=debug,info`, ...).
    pub log_level: String,
    /// `LOG_FORMAT`.
    pub format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://collector:4318`): export spans there. The
    /// exporter reads the other standard `OTEL_EXPORTER_OTLP_*` variables itself.
    pub otlp_endpoint: Option<String>,
    /// The exported spans' `service.name` (`OTEL_SERVICE_NAME` overrides it).
    pub service_name: &'static str,
}

/// Keeps the span exporter alive; dropping it flushes the spans still buffered.
#[must_use = "dropping it stops the span exporter"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing spans to the OTLP endpoint failed: {e}");
        }
    }
}

/// Installs the global subscriber. An invalid `LOG_LEVEL` falls back to `info` with a
/// warning; an OTLP exporter that cannot be built is reported and left out.
pub fn init(config: &TelemetryConfig) -> Telemetry {
    let (filter, bad) = match EnvFilter::try_new(&config.log_level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let colour =
        config.format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let node_id = config.node_id.clone();
    let lines = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .event_format(WithNodeId {
                node_id,
                inner: tracing_subscriber::fmt::format().with_ansi(colour),
            })
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithNodeId {
                node_id,
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(true),
            })
            .boxed(),
    };
    let (otel, provider, otel_error) = match &config.otlp_endpoint {
        None => (None, None, None),
        Some(_) => match span_exporter(config) {
            Ok(provider) => {
                let tracer = provider.tracer(config.service_name);
                let layer = tracing_opentelemetry::layer().with_tracer(tracer);
                (Some(layer), Some(provider), None)
            }
            Err(e) => (None, None, Some(e)),
        },
    };
    // Every layer is filtered, so the subscriber's maximum level is what the filters let
    // through. `try_init` hands that level to the `log` bridge: a `log::trace!` in a
    // dependency (tungstenite logs every frame it writes) then stops at a static check
    // instead of reaching the subscriber. An unfiltered layer would make it TRACE.
    let installed = Registry::default()
        .with(TraceIdLayer.with_filter(LevelFilter::INFO))
        .with(lines.with_filter(filter))
        .with(otel.with_filter(LevelFilter::INFO))
        .try_init();
    if installed.is_err() {
        // Already installed (tests run several servers in one process): keep the first one.
        return Telemetry { provider: None };
    }
    if let Some(e) = bad {
        tracing::warn!(log_level = %config.log_level, cause = %e,
            "LOG_LEVEL is not a valid filter; using info");
    }
    if let Some(e) = otel_error {
        tracing::warn!(cause = %e, "cannot export spans over OTLP; logging only");
    }
    if let Some(endpoint) = &config.otlp_endpoint
        && provider.is_some()
    {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(%endpoint, "exporting spans over OTLP");
    }
    Telemetry { provider }
}

/// Whether spans go to an OTLP endpoint (an OpenTelemetry layer is installed).
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

fn span_exporter(config: &TelemetryConfig) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| config.service_name.into()),
        )
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            config.node_id.clone(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The trace id of the span an event happens in (the innermost span that has one).
#[derive(Debug, Clone)]
struct TraceId(String);

/// Keeps a span's `trace_id` field on the span, for the formatters.
struct TraceIdLayer;

impl<S> Layer<S> for TraceIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        struct Find(Option<String>);
        impl Visit for Find {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "trace_id" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                if field.name() == "trace_id" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut find = Find(None);
        attrs.record(&mut find);
        if let (Some(trace_id), Some(span)) = (find.0, ctx.span(id)) {
            span.extensions_mut().insert(TraceId(trace_id));
        }
    }
}

/// The trace id of the span `ctx` is in, if any.
fn current_trace_id<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let scope = ctx.event_scope()?;
    for span in scope {
        if let Some(id) = span.extensions().get::<TraceId>() {
            return Some(id.0.clone());
        }
    }
    None
}

/// Text lines: `node_id=...` before everything else (the span list names the trace id).
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

/// JSON lines: `tracing-subscriber`'s JSON object, with `node_id` and `trace_id` first.
struct JsonWithNodeId {
    node_id: String,
    inner: Format<Json>,
}

impl<S, N> FormatEvent<S, N> for JsonWithNodeId
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
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let Some(rest) = line.strip_prefix('{') else {
            return writer.write_str(&line);
        };
        let quote = |s: &str| serde_json::to_string(s).map_err(|_| fmt::Error);
        write!(writer, "{{\"node_id\":{}", quote(&self.node_id)?)?;
        if let Some(trace_id) = current_trace_id(ctx) {
            write!(writer, ",\"trace_id\":{}", quote(&trace_id)?)?;
        }
        if rest.trim_start().starts_with('}') {
            writer.write_str(rest)
        } else {
            write!(writer, ",{rest}")
        }
    }
}
