//! One chat, one trace: W3C Trace Context (`traceparent`) for the chats that cross from a
//! gateway to an AI node.
//!
//! The gateway takes the caller's `traceparent` (or starts a trace), runs the chat in a
//! [`chat_span`] that carries its `trace_id`, and sends the AI node a `traceparent` naming the
//! same trace; the AI node does the same with what it receives. Both nodes' log lines for that
//! chat carry one trace id. With OTLP export on (`OTEL_EXPORTER_OTLP_ENDPOINT`), the span is
//! also the OpenTelemetry span of that trace, child of the caller's.

use std::fmt;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header's name.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`: version 00, a trace id, the caller's span id and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// Parses `00-{32 hex}-{16 hex}-{2 hex}`; `None` for anything else (an invalid header
    /// starts a new trace, as the specification says). All-zero ids are invalid.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?;
        let parent_id: [u8; 8] = hex(parent)?;
        let [flags]: [u8; 1] = hex(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace (random ids, sampled).
    pub fn start() -> TraceParent {
        TraceParent {
            trace_id: nonzero(rand::random),
            parent_id: nonzero(rand::random),
            sampled: true,
        }
    }

    /// The caller's trace when `header` is a valid `traceparent`, else a new one.
    pub fn accept(header: Option<&str>) -> TraceParent {
        header
            .and_then(TraceParent::parse)
            .unwrap_or_else(TraceParent::start)
    }

    /// The trace id, 32 lowercase hex digits: what log lines carry.
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    /// The header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&self.parent_id),
            u8::from(self.sampled)
        )
    }
}

/// The span a chat runs in on this node: `chat{trace_id=...}`, child of `parent` in the
/// exported trace when spans are exported.
pub fn chat_span(parent: &TraceParent) -> Span {
    let span = tracing::info_span!("chat", trace_id = %parent.trace_id_hex());
    if crate::telemetry::exporting() {
        let context = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_id),
            if parent.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
    }
    span
}

/// The `traceparent` to send on from inside `span` (a [`chat_span`] of `trace`): the
/// exported span's own id when spans are exported, else a new span id in the same trace.
pub fn outgoing(span: &Span, trace: &TraceParent) -> TraceParent {
    if crate::telemetry::exporting() {
        let context = span.context();
        let own = context.span().span_context().clone();
        if own.is_valid() {
            return TraceParent {
                trace_id: own.trace_id().to_bytes(),
                parent_id: own.span_id().to_bytes(),
                sampled: own.is_sampled(),
            };
        }
    }
    TraceParent {
        parent_id: nonzero(rand::random),
        ..*trace
    }
}

fn nonzero<const N: usize>(random: impl Fn() -> [u8; N]) -> [u8; N] {
    loop {
        let id = random();
        if id != [0; N] {
            return id;
        }
    }
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's example parses and prints back as it was.
    #[test]
    fn a_valid_header_round_trips() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(header).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(parsed.sampled);
        assert_eq!(parsed.to_string(), header);
    }

    /// Anything else starts a new trace: other versions, wrong lengths, upper case, zero ids.
    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let fresh = TraceParent::accept(Some("garbage"));
        assert_eq!(TraceParent::parse(&fresh.to_string()), Some(fresh));
    }

    /// What goes on names the same trace from a new span.
    #[test]
    fn outgoing_keeps_the_trace() {
        let trace = TraceParent::start();
        let next = outgoing(&Span::none(), &trace);
        assert_eq!(next.trace_id, trace.trace_id);
        assert_ne!(next.parent_id, trace.parent_id);
    }
}
