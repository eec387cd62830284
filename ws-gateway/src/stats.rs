//! The node's counters, served at `GET /metrics` in the Prometheus text format.
//!
//! Plain atomics owned by the node (not a global registry), so that several nodes in one test
//! process each count their own.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one gateway node. Every field is written by the code named in its comment.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sockets open now (socket task: +1 after the handshake, -1 when it ends).
    pub sockets_open: AtomicU64,
    /// Sockets accepted since start (socket task).
    pub sockets_total: AtomicU64,
    /// Sockets closed with 1013 because their queue filled (hub).
    pub slow_consumers: AtomicU64,
    /// Frames received from the bus (hub).
    pub frames_received: AtomicU64,
    /// Frames written to sockets (writer tasks).
    pub frames_sent: AtomicU64,
    /// Live frames dropped as already delivered (writer tasks' filters).
    pub frames_deduplicated: AtomicU64,
    /// Fresh snapshots sent to sockets after the bus lost frames (writer tasks).
    pub resyncs: AtomicU64,
    /// Live frames that skipped ahead of a socket's last chunk and made it resync (writers).
    pub gaps_resynced: AtomicU64,
    /// Chats forwarded to an AI node and accepted (REST and socket).
    pub chats_forwarded: AtomicU64,
    /// Forwarding attempts that failed over to the next AI node.
    pub ai_failovers: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    /// The counters, and the history cache's, in the Prometheus text exposition format.
    pub fn render(&self, node_id: &str, cache: &history::CacheStats) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 10] = [
            (
                "gateway_sockets_open",
                "gauge",
                "WebSockets open now",
                &self.sockets_open,
            ),
            (
                "gateway_sockets_total",
                "counter",
                "WebSockets accepted",
                &self.sockets_total,
            ),
            (
                "gateway_slow_consumers_total",
                "counter",
                "Sockets closed with 1013",
                &self.slow_consumers,
            ),
            (
                "gateway_frames_received_total",
                "counter",
                "Frames received from Redis",
                &self.frames_received,
            ),
            (
                "gateway_frames_sent_total",
                "counter",
                "Frames written to sockets",
                &self.frames_sent,
            ),
            (
                "gateway_frames_deduplicated_total",
                "counter",
                "Live frames dropped as already delivered",
                &self.frames_deduplicated,
            ),
            (
                "gateway_resyncs_total",
                "counter",
                "Fresh snapshots sent after the bus lost frames",
                &self.resyncs,
            ),
            (
                "gateway_gaps_resynced_total",
                "counter",
                "Live frames that skipped ahead and made a socket resync",
                &self.gaps_resynced,
            ),
            (
                "gateway_chats_forwarded_total",
                "counter",
                "Chats accepted by an AI node",
                &self.chats_forwarded,
            ),
            (
                "gateway_ai_failovers_total",
                "counter",
                "Forwarding attempts moved to the next AI node",
                &self.ai_failovers,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(
                out,
                "{name}{{node_id=\"{node_id}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP history_cache_total History reads by cache level and outcome"
        );
        let _ = writeln!(out, "# TYPE history_cache_total counter");
        for (level, outcome, count) in cache.rows() {
            let _ = writeln!(
                out,
                "history_cache_total{{node_id=\"{node_id}\",level=\"{level}\",outcome=\"{outcome}\"}} {count}"
            );
        }
        out
    }
}
