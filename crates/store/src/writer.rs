//! [`StoreWriter`]: the AI service's writes of record, applied in the background.
//!
//! Producers call [`StoreWriter`]'s methods, which only queue an operation (never await), so a
//! slow or failing database can never slow a stream down. One task applies the operations in
//! order: chunk rows are gathered and written in batches (one transaction per batch, never one
//! per chunk); every write is idempotent by id. While the database is unavailable (down,
//! restarting, locked, read-only) a write is retried, with backoff up to 5 s, until it is back,
//! and the operations behind it wait in the queue (bounded: beyond [`QUEUE_CAPACITY`] they are
//! dropped and counted). A write refused for any other reason is retried a few times, then
//! logged, counted and skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use protocol::{ChatMessage, MessageId};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{ChunkRow, Store};

/// Queued operations beyond this are dropped (and counted) rather than growing without bound
/// while the database is down.
const QUEUE_CAPACITY: usize = 100_000;
/// Chunk rows per batch.
const BATCH_ROWS: usize = 64;
/// A partial batch is written after this long.
const BATCH_DELAY: Duration = Duration::from_millis(250);
/// Attempts per write refused for a reason other than the database being unavailable, with the
/// pause before each retry doubling from [`FIRST_RETRY`] up to [`MAX_RETRY`].
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

enum Op {
    AnswerStarted {
        user_message: ChatMessage,
        answer: ChatMessage,
        node_id: String,
        change: i64,
    },
    AnswerEnded {
        answer: ChatMessage,
        total_chunks: u32,
        change: i64,
    },
    Chunk(ChunkRow),
    /// Resolves once everything queued before it is written (tests, shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The writer's queue depth (read by the node's health report) and its metrics, each
/// labelled with the node's id: `store_writer_queue_depth`, `store_writes_failed_total`,
/// `store_writes_dropped_total`, `store_write_retries_total`, and
/// `sql_call_duration_seconds{op}` per write (`chunk_batch`, `answer_start`, `answer_end`).
#[derive(Debug)]
pub struct WriterStats {
    /// Operations queued and not yet applied.
    pub queued: AtomicU64,
    queue_depth: Gauge,
    /// Writes that failed after every retry.
    failed: Counter,
    /// Operations dropped because the queue was full.
    dropped: Counter,
    /// Retries made.
    retries: Counter,
    node_id: String,
}

impl WriterStats {
    fn new(node_id: &str) -> Self {
        metrics::describe_gauge!(
            "store_writer_queue_depth",
            "SQL writes queued, not yet applied"
        );
        metrics::describe_counter!("store_writes_failed_total", "SQL writes given up on");
        metrics::describe_counter!(
            "store_writes_dropped_total",
            "SQL writes dropped (queue full)"
        );
        metrics::describe_counter!("store_write_retries_total", "SQL write attempts retried");
        let label = || [("node_id", node_id.to_owned())];
        Self {
            queued: AtomicU64::new(0),
            queue_depth: metrics::gauge!("store_writer_queue_depth", &label()),
            failed: metrics::counter!("store_writes_failed_total", &label()),
            dropped: metrics::counter!("store_writes_dropped_total", &label()),
            retries: metrics::counter!("store_write_retries_total", &label()),
            node_id: node_id.to_owned(),
        }
    }

    /// The latency histogram of one kind of write.
    fn latency(&self, op: &'static str) -> Histogram {
        metrics::histogram!("sql_call_duration_seconds", "node_id" => self.node_id.clone(), "op" => op)
    }
}

/// Handle on the background writer. Cheap to clone.
#[derive(Clone)]
pub struct StoreWriter {
    queue: mpsc::Sender<Op>,
    pub stats: Arc<WriterStats>,
}

impl StoreWriter {
    /// Starts the writer task on `store` for node `node_id` (its metrics' label); it ends once
    /// every handle is dropped and the queue is drained.
    pub fn start(store: Store, node_id: &str) -> StoreWriter {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(WriterStats::new(node_id));
        tokio::spawn(run(store, rx, stats.clone()));
        StoreWriter { queue, stats }
    }

    /// `node_id` started `answer` to `user_message`, the session's change `change`: stores
    /// both (`CHAT_MESSAGE`, `STREAM_STARTED`, and `SESSION_STARTED` for a new session).
    pub fn answer_started(
        &self,
        user_message: &ChatMessage,
        answer: &ChatMessage,
        node_id: &str,
        change: i64,
    ) {
        self.push(Op::AnswerStarted {
            user_message: user_message.clone(),
            answer: answer.clone(),
            node_id: node_id.to_owned(),
            change,
        });
    }

    /// `answer` ended, in its final form, after `total_chunks` chunks, the session's change
    /// `change` (`STREAM_COMPLETED`, `STREAM_CANCELLED` or `STREAM_FAILED` by its status, and
    /// `CHAT_MESSAGE`).
    pub fn answer_ended(&self, answer: &ChatMessage, total_chunks: u32, change: i64) {
        if !answer.status.is_final() {
            warn!(message_id = %answer.message_id, status = ?answer.status,
                "an answer reported ended is not final; not stored");
            return;
        }
        self.push(Op::AnswerEnded {
            answer: answer.clone(),
            total_chunks,
            change,
        });
    }

    /// One chunk of an answer.
    pub fn chunk(&self, message_id: &MessageId, index: u32, delta: &str) {
        self.push(Op::Chunk(ChunkRow {
            message_id: message_id.clone(),
            index,
            delta: delta.to_owned(),
            at: protocol::now_ms(),
        }));
    }

    /// Waits until every operation queued so far has been applied (or given up on).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.queue.send(Op::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    fn push(&self, op: Op) {
        // Counted before it is sent: the writer may take it (and count it off) at once.
        let queued = self.stats.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if self.queue.try_send(op).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped.increment(1);
            warn!("SQL write queue full or closed; dropping a write");
        } else {
            self.stats.queue_depth.set(queued as f64);
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Op>, stats: Arc<WriterStats>) {
    let mut batch: Vec<ChunkRow> = Vec::new();
    loop {
        let op = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(BATCH_DELAY, rx.recv()).await {
                Ok(op) => op,
                Err(_) => {
                    write_chunks(&store, &mut batch, &stats).await;
                    continue;
                }
            }
        };
        let Some(op) = op else {
            write_chunks(&store, &mut batch, &stats).await;
            return;
        };
        if !matches!(op, Op::Flush(_)) {
            let queued = stats.queued.fetch_sub(1, Ordering::Relaxed) - 1;
            stats.queue_depth.set(queued as f64);
        }
        match op {
            Op::Chunk(row) => {
                batch.push(row);
                if batch.len() >= BATCH_ROWS {
                    write_chunks(&store, &mut batch, &stats).await;
                }
            }
            other => {
                // Keep order: chunks queued before this operation are written first.
                write_chunks(&store, &mut batch, &stats).await;
                apply(&store, other, &stats).await;
            }
        }
    }
}

async fn write_chunks(store: &Store, batch: &mut Vec<ChunkRow>, stats: &WriterStats) {
    if batch.is_empty() {
        return;
    }
    let rows = std::mem::take(batch);
    retry(stats, "chunk_batch", || store.append_chunks(&rows)).await;
}

async fn apply(store: &Store, op: Op, stats: &WriterStats) {
    match op {
        Op::AnswerStarted {
            user_message,
            answer,
            node_id,
            change,
        } => {
            retry(stats, "answer_start", || {
                store.record_answer_started(&user_message, &answer, &node_id, change)
            })
            .await;
        }
        Op::AnswerEnded {
            answer,
            total_chunks,
            change,
        } => {
            let at = protocol::now_ms();
            retry(stats, "answer_end", || {
                store.record_answer_ended(&answer, total_chunks, change, at)
            })
            .await;
        }
        Op::Flush(done) => {
            let _ = done.send(());
        }
        Op::Chunk(_) => {}
    }
}

/// Runs `write` until it succeeds: for as long as the database is unavailable, or
/// [`ATTEMPTS`] times when it refuses the write for another reason.
async fn retry<F, Fut>(stats: &WriterStats, what: &'static str, mut write: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<()>>,
{
    let mut pause = FIRST_RETRY;
    let mut refusals = 0;
    let mut outage: Option<std::time::Instant> = None;
    let latency = stats.latency(what);
    loop {
        let started = std::time::Instant::now();
        let written = write().await;
        latency.record(started.elapsed());
        match written {
            Ok(()) => {
                if let Some(since) = outage {
                    info!(
                        what,
                        after_ms = since.elapsed().as_millis() as u64,
                        "SQL write applied; the database is back"
                    );
                }
                return;
            }
            Err(e) if e.is_unavailable() => {
                if outage.is_none() {
                    warn!(what, cause = %e, "database unavailable; retrying until it is back");
                    outage = Some(std::time::Instant::now());
                }
            }
            Err(e) => {
                refusals += 1;
                if refusals >= ATTEMPTS {
                    stats.failed.increment(1);
                    error!(what, cause = %e, "SQL write failed; giving up on it");
                    return;
                }
                warn!(what, attempt = refusals, cause = %e, "SQL write failed; retrying");
            }
        }
        stats.retries.increment(1);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}
