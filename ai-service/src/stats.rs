//! The AI node's metrics: handles on the process's `metrics` recorder, registered once per node
//! with its `node_id`. Every series is listed in docs/OPERATIONS.md.

use std::time::Duration;

use metrics::{Counter, Histogram, Label};
use protocol::MessageStatus;

/// Metrics of one AI node.
pub struct AiStats {
    /// `ai_streams_started_total`: answers started.
    pub started: Counter,
    /// `ai_streams_ended_total{status}`: answers this node ended, by final status.
    completed: Counter,
    cancelled: Counter,
    failed: Counter,
    /// `ai_streams_fenced_total`: answers this node stopped because another node had failed
    /// them (it stalled past its lease).
    pub fenced: Counter,
    /// `ai_chunks_published_total`: chunks appended and published.
    pub chunks: Counter,
    /// `ai_time_to_first_chunk_seconds`: from the chat's arrival to its first chunk's publish.
    pub first_chunk: Histogram,
    /// `ai_stream_duration_seconds`: from the chat's arrival to the answer's end.
    pub duration: Histogram,
    node: Label,
}

impl AiStats {
    /// Registers the node's series (each labelled `node_id`).
    pub fn new(node_id: &str) -> Self {
        use metrics::{describe_counter, describe_histogram};
        describe_counter!("ai_streams_started_total", "Answers started");
        describe_counter!(
            "ai_streams_ended_total",
            "Answers ended by this node, by status"
        );
        describe_counter!(
            "ai_streams_fenced_total",
            "Answers stopped because another node had failed them"
        );
        describe_counter!("ai_chunks_published_total", "Chunks appended and published");
        describe_counter!("ai_chats_total", "Chats received, by outcome");
        describe_counter!(
            "ai_upstream_errors_total",
            "Answers the model server failed, by kind"
        );
        describe_histogram!(
            "ai_time_to_first_chunk_seconds",
            metrics::Unit::Seconds,
            "From a chat's arrival to its answer's first chunk"
        );
        describe_histogram!(
            "ai_stream_duration_seconds",
            metrics::Unit::Seconds,
            "From a chat's arrival to its answer's end"
        );
        let node = runtime::metrics::node_label(node_id);
        let labels = || vec![node.clone()];
        let ended = |status: &'static str| {
            metrics::counter!(
                "ai_streams_ended_total",
                vec![node.clone(), Label::new("status", status)]
            )
        };
        Self {
            started: metrics::counter!("ai_streams_started_total", labels()),
            completed: ended("completed"),
            cancelled: ended("cancelled"),
            failed: ended("failed"),
            fenced: metrics::counter!("ai_streams_fenced_total", labels()),
            chunks: metrics::counter!("ai_chunks_published_total", labels()),
            first_chunk: metrics::histogram!("ai_time_to_first_chunk_seconds", labels()),
            duration: metrics::histogram!("ai_stream_duration_seconds", labels()),
            node,
        }
    }

    /// An answer this node ended with `status`, `took` after its chat arrived.
    pub fn ended(&self, status: MessageStatus, took: Duration) {
        match status {
            MessageStatus::Completed => self.completed.increment(1),
            MessageStatus::Cancelled => self.cancelled.increment(1),
            MessageStatus::Failed => self.failed.increment(1),
            MessageStatus::Pending | MessageStatus::Streaming => return,
        }
        self.duration.record(took);
    }

    /// `ai_chats_total{outcome}`: a chat, `accepted` or the code it was refused with.
    pub fn chat(&self, outcome: &'static str) {
        metrics::counter!(
            "ai_chats_total",
            vec![self.node.clone(), Label::new("outcome", outcome)]
        )
        .increment(1);
    }

    /// `ai_upstream_errors_total{kind}`: an answer the model server failed (`connect`,
    /// `status`, `first_token_timeout`, `idle_timeout`, `malformed`, `dropped`).
    pub fn upstream_error(&self, kind: &'static str) {
        metrics::counter!(
            "ai_upstream_errors_total",
            vec![self.node.clone(), Label::new("kind", kind)]
        )
        .increment(1);
    }
}
