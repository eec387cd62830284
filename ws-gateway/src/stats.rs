//! The gateway's metrics: handles on the process's `metrics` recorder (see `runtime::metrics`),
//! registered once per node with its `node_id`, so a hot path only adds to an atomic.
//!
//! Every series is listed in docs/OPERATIONS.md.

use metrics::{Counter, Gauge, Histogram, Label};

/// Metrics of one gateway node. Every field is written by the code named in its comment.
pub struct Stats {
    /// `gateway_sockets_open`: sockets open now (socket task: +1 after the handshake, -1 when
    /// it ends).
    pub sockets_open: Gauge,
    /// `gateway_sockets_total`: sockets accepted (socket task).
    pub sockets_total: Counter,
    /// `gateway_sessions_subscribed`: sessions this node is subscribed to, i.e. with at least
    /// one local socket (hub).
    pub sessions_subscribed: Gauge,
    /// `gateway_slow_consumers_total`: sockets closed with 1013 because their queue filled.
    pub slow_consumers: Counter,
    /// `gateway_frames_dropped_total`: live frames not queued for a socket already found slow.
    pub frames_dropped: Counter,
    /// `gateway_frames_received_total`: frames received from the bus (hub).
    pub frames_received: Counter,
    /// `gateway_frames_sent_total`: frames written to sockets (writer tasks).
    pub frames_sent: Counter,
    /// `gateway_chunks_delivered_total`: chunk frames written to sockets (writer tasks).
    pub chunks_delivered: Counter,
    /// `gateway_chunk_delivery_seconds`: from a chunk's publish (its `timestamp`) to its write
    /// to a socket.
    pub chunk_delivery: Histogram,
    /// `gateway_frames_deduplicated_total`: live frames dropped as already delivered.
    pub frames_deduplicated: Counter,
    /// `gateway_resyncs_total`: fresh snapshots started after the bus lost frames (writers).
    pub resyncs: Counter,
    /// `gateway_gaps_resynced_total`: live frames that skipped ahead of a socket's last chunk
    /// and made it resync (writers).
    pub gaps_resynced: Counter,
    /// `gateway_chats_forwarded_total`: chats forwarded to an AI node and accepted.
    pub chats_forwarded: Counter,
    /// `gateway_ai_failovers_total`: forwarding attempts that failed over to the next AI node.
    pub ai_failovers: Counter,
    /// `gateway_ai_request_seconds`: one forwarding attempt to an AI node.
    pub ai_request: Histogram,
    node: Label,
}

impl Stats {
    /// Registers the node's series (each labelled `node_id`) with the process's recorder.
    pub fn new(node_id: &str) -> Stats {
        describe();
        let node = runtime::metrics::node_label(node_id);
        let labels = || vec![node.clone()];
        Stats {
            sockets_open: metrics::gauge!("gateway_sockets_open", labels()),
            sockets_total: metrics::counter!("gateway_sockets_total", labels()),
            sessions_subscribed: metrics::gauge!("gateway_sessions_subscribed", labels()),
            slow_consumers: metrics::counter!("gateway_slow_consumers_total", labels()),
            frames_dropped: metrics::counter!("gateway_frames_dropped_total", labels()),
            frames_received: metrics::counter!("gateway_frames_received_total", labels()),
            frames_sent: metrics::counter!("gateway_frames_sent_total", labels()),
            chunks_delivered: metrics::counter!("gateway_chunks_delivered_total", labels()),
            chunk_delivery: metrics::histogram!("gateway_chunk_delivery_seconds", labels()),
            frames_deduplicated: metrics::counter!("gateway_frames_deduplicated_total", labels()),
            resyncs: metrics::counter!("gateway_resyncs_total", labels()),
            gaps_resynced: metrics::counter!("gateway_gaps_resynced_total", labels()),
            chats_forwarded: metrics::counter!("gateway_chats_forwarded_total", labels()),
            ai_failovers: metrics::counter!("gateway_ai_failovers_total", labels()),
            ai_request: metrics::histogram!("gateway_ai_request_seconds", labels()),
            node,
        }
    }

    /// `gateway_client_frames_total{type}`: a frame a browser sent, by its type (`chat`,
    /// `cancel`, `resume`, `ping`, `auth`, or `invalid` for one refused with an error).
    pub fn client_frame(&self, kind: &'static str) {
        metrics::counter!(
            "gateway_client_frames_total",
            vec![self.node.clone(), Label::new("type", kind)]
        )
        .increment(1);
    }

    /// `gateway_recoveries_total{status}`: a `resume` answered, by the recovery's status.
    pub fn recovery(&self, status: &'static str) {
        metrics::counter!(
            "gateway_recoveries_total",
            vec![self.node.clone(), Label::new("status", status)]
        )
        .increment(1);
    }

    /// `gateway_chats_total{outcome}`: a chat from a browser (socket or REST), by what became of
    /// it: `accepted`, or the error code it was refused with.
    pub fn chat(&self, outcome: &'static str) {
        metrics::counter!(
            "gateway_chats_total",
            vec![self.node.clone(), Label::new("outcome", outcome)]
        )
        .increment(1);
    }

    /// Records a chunk written to a socket `published` (ms since the epoch) by its producer.
    pub fn chunk_delivered(&self, published: i64) {
        self.chunks_delivered.increment(1);
        let waited_ms = (protocol::now_ms() - published).max(0);
        self.chunk_delivery.record(waited_ms as f64 / 1000.0);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("gateway_sockets_open", "WebSockets open now");
    describe_counter!("gateway_sockets_total", "WebSockets accepted");
    describe_gauge!(
        "gateway_sessions_subscribed",
        "Sessions with a local socket (subscribed on the bus)"
    );
    describe_counter!(
        "gateway_slow_consumers_total",
        "Sockets closed with 1013 (queue full)"
    );
    describe_counter!(
        "gateway_frames_dropped_total",
        "Live frames not queued for a slow socket"
    );
    describe_counter!(
        "gateway_frames_received_total",
        "Frames received from the bus"
    );
    describe_counter!("gateway_frames_sent_total", "Frames written to sockets");
    describe_counter!(
        "gateway_chunks_delivered_total",
        "Chunk frames written to sockets"
    );
    describe_histogram!(
        "gateway_chunk_delivery_seconds",
        metrics::Unit::Seconds,
        "From a chunk's publish by its AI node to its write to a socket"
    );
    describe_counter!(
        "gateway_frames_deduplicated_total",
        "Live frames dropped as already delivered"
    );
    describe_counter!(
        "gateway_resyncs_total",
        "Fresh snapshots started after the bus lost frames"
    );
    describe_counter!(
        "gateway_gaps_resynced_total",
        "Live frames that skipped ahead and made a socket resync"
    );
    describe_counter!(
        "gateway_chats_forwarded_total",
        "Chats accepted by an AI node"
    );
    describe_counter!(
        "gateway_ai_failovers_total",
        "Forwarding attempts moved to the next AI node"
    );
    describe_histogram!(
        "gateway_ai_request_seconds",
        metrics::Unit::Seconds,
        "One chat forwarding attempt to an AI node"
    );
    describe_counter!(
        "gateway_client_frames_total",
        "Frames received from browsers, by type"
    );
    describe_counter!(
        "gateway_recoveries_total",
        "resume requests answered, by recovery status"
    );
    describe_counter!("gateway_chats_total", "Chats from browsers, by outcome");
}

/// Reading the metrics back in unit tests: a [`Stats`] registered with a recorder of its own.
#[cfg(test)]
pub(crate) mod recorded {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    use super::Stats;

    /// The recorder a test's [`Stats`] count into. A snapshot of it swaps every value for 0,
    /// so the totals are kept here (which holds for gauges too: the gateway only moves them
    /// up and down).
    pub struct Recorded {
        snapshotter: Snapshotter,
        totals: Mutex<HashMap<String, f64>>,
    }

    impl Recorded {
        /// A fresh [`Stats`] and what reads it.
        pub fn stats() -> (Stats, Recorded) {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            let stats = metrics::with_local_recorder(&recorder, || Stats::new("test"));
            let recorded = Recorded {
                snapshotter,
                totals: Mutex::default(),
            };
            (stats, recorded)
        }

        /// The value of the counter or gauge `name` (summed over its labels), 0 when never set.
        pub fn value(&self, name: &str) -> u64 {
            let mut totals = self.totals.lock().unwrap();
            for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
                let delta = match value {
                    DebugValue::Counter(n) => n as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(v) => v.len() as f64,
                };
                *totals.entry(key.key().name().to_owned()).or_default() += delta;
            }
            totals.get(name).copied().unwrap_or_default() as u64
        }
    }
}
