//! [`StoreWriter`]: the AI service's writes of record, applied in the background.
//!
//! Producers call [`StoreWriter`]'s methods, which only queue a [`Record`] (never await), so a
//! slow or failing database can never slow a stream down. One task applies the records in
//! order: each time, everything queued up to then (up to [`BATCH_RECORDS`]) in one transaction
//! ([`Store::write`]), so the busier the node, the bigger the batches and the fewer the commits;
//! every write is idempotent by id. While the database is unavailable (down, restarting, locked,
//! read-only) a batch is retried, with backoff up to 5 s, until it is back, and the records
//! behind it wait in the queue (bounded: beyond [`QUEUE_CAPACITY`] they are dropped and
//! counted). A batch refused for any other reason is applied again one record at a time, so one
//! bad record cannot take the others with it; such a record is retried a few times, then
//! logged, counted and skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use protocol::{ChatMessage, MessageId};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{ChunkRow, Record, Store};

/// Queued operations beyond this are dropped (and counted) rather than growing without bound
/// while the database is down.
const QUEUE_CAPACITY: usize = 100_000;
/// Records per transaction, at most. Big: a node that falls behind catches up in few commits
/// (at 30k chunk rows/s on SQLite, a cap of 2,048 dropped ~300k writes a run and this ~80k).
const BATCH_RECORDS: usize = 16_384;
/// A warning about shed or dropped writes is logged at most this often, with the count since.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// Attempts per write refused for a reason other than the database being unavailable, with the
/// pause before each retry doubling from [`FIRST_RETRY`] up to [`MAX_RETRY`].
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

enum Op {
    Write(Record),
    /// Resolves once everything queued before it is written (tests, shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The writer's queue depth (read by the node's health report) and its metrics, each
/// labelled with the node's id: `store_writer_queue_depth`, `store_writes_failed_total`,
/// `store_writes_dropped_total`, `store_write_retries_total`, and
/// `sql_call_duration_seconds{op}` per transaction (`write`, and `write_one` for a record
/// applied alone after its batch was refused), `store_write_batch_records` (records per
/// transaction, recorded once it is over).
#[derive(Debug)]
pub struct WriterStats {
    /// Operations queued and not yet applied.
    pub queued: AtomicU64,
    queue_depth: Gauge,
    /// Writes that failed after every retry.
    failed: Counter,
    /// Operations dropped because the queue was full.
    dropped: Counter,
    /// Chunk rows shed because the queue was half full.
    shed: Counter,
    /// When to warn of shed rows and of dropped writes.
    shed_warning: Throttle,
    drop_warning: Throttle,
    /// Retries made.
    retries: Counter,
    batch_records: Histogram,
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
        metrics::describe_counter!(
            "store_chunk_rows_shed_total",
            "Chunk rows not written because the SQL writer was behind"
        );
        metrics::describe_histogram!(
            "store_write_batch_records",
            "Records applied in one SQL transaction"
        );
        let label = || [("node_id", node_id.to_owned())];
        Self {
            queued: AtomicU64::new(0),
            queue_depth: metrics::gauge!("store_writer_queue_depth", &label()),
            failed: metrics::counter!("store_writes_failed_total", &label()),
            dropped: metrics::counter!("store_writes_dropped_total", &label()),
            shed: metrics::counter!("store_chunk_rows_shed_total", &label()),
            shed_warning: Throttle::default(),
            drop_warning: Throttle::default(),
            retries: metrics::counter!("store_write_retries_total", &label()),
            batch_records: metrics::histogram!("store_write_batch_records", &label()),
            node_id: node_id.to_owned(),
        }
    }

    /// The latency histogram of one kind of write.
    fn latency(&self, op: &'static str) -> Histogram {
        metrics::histogram!("sql_call_duration_seconds", "node_id" => self.node_id.clone(), "op" => op)
    }
}

/// One warning per [`WARN_EVERY`] for something that can happen once per write under
/// overload, with how many times it happened since the last one.
#[derive(Debug, Default)]
struct Throttle {
    untold: AtomicU64,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Throttle {
    /// Counts one more; returns the count since the last warning when one is due now.
    fn note(&self) -> Option<u64> {
        let untold = self.untold.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.try_lock().ok()?;
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return None;
        }
        *last = Some(std::time::Instant::now());
        self.untold.fetch_sub(untold, Ordering::Relaxed);
        Some(untold)
    }
}

/// Handle on the background writer. Cheap to clone.
///
/// When the writer falls behind (the database is down, or slower than the node), the queue
/// fills. Past half of it, chunk rows are shed (counted in `store_chunk_rows_shed_total`) and
/// the other half stays for the answers' starts and ends: an answer's end carries its whole
/// content, so a shed row loses no text, only the per-chunk row. Past all of it, every write is
/// dropped (`store_writes_dropped_total`).
#[derive(Clone)]
pub struct StoreWriter {
    queue: mpsc::Sender<Op>,
    /// Queued writes past which chunk rows are shed.
    shed_chunks_at: u64,
    pub stats: Arc<WriterStats>,
}

impl StoreWriter {
    /// Starts the writer task on `store` for node `node_id` (its metrics' label); it ends once
    /// every handle is dropped and the queue is drained.
    pub fn start(store: Store, node_id: &str) -> StoreWriter {
        StoreWriter::with_capacity(store, node_id, QUEUE_CAPACITY)
    }

    /// [`StoreWriter::start`] with a queue of `capacity` writes (tests).
    pub fn with_capacity(store: Store, node_id: &str, capacity: usize) -> StoreWriter {
        let (queue, rx) = mpsc::channel(capacity);
        let stats = Arc::new(WriterStats::new(node_id));
        tokio::spawn(run(store, rx, stats.clone()));
        StoreWriter {
            queue,
            shed_chunks_at: (capacity / 2) as u64,
            stats,
        }
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
        self.push(Record::AnswerStarted {
            user_message: Box::new(user_message.clone()),
            answer: Box::new(answer.clone()),
            node_id: node_id.to_owned(),
            change,
        });
    }

    /// `answer` ended now, in its final form, after `total_chunks` chunks, the session's change
    /// `change` (`STREAM_COMPLETED`, `STREAM_CANCELLED` or `STREAM_FAILED` by its status, and
    /// `CHAT_MESSAGE`).
    pub fn answer_ended(&self, answer: &ChatMessage, total_chunks: u32, change: i64) {
        if !answer.status.is_final() {
            warn!(message_id = %answer.message_id, status = ?answer.status,
                "an answer reported ended is not final; not stored");
            return;
        }
        self.push(Record::AnswerEnded {
            answer: Box::new(answer.clone()),
            total_chunks,
            change,
            at: protocol::now_ms(),
        });
    }

    /// One chunk of an answer (shed when the queue is half full).
    pub fn chunk(&self, message_id: &MessageId, index: u32, delta: &str) {
        if self.stats.queued.load(Ordering::Relaxed) >= self.shed_chunks_at {
            self.stats.shed.increment(1);
            if let Some(shed) = self.stats.shed_warning.note() {
                warn!(
                    shed,
                    "SQL writer behind; shedding chunk rows (answers' ends keep their content)"
                );
            }
            return;
        }
        self.push(Record::Chunk(ChunkRow {
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

    fn push(&self, record: Record) {
        // Counted before it is sent: the writer may take it (and count it off) at once.
        let queued = self.stats.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if self.queue.try_send(Op::Write(record)).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped.increment(1);
            if let Some(dropped) = self.stats.drop_warning.note() {
                warn!(dropped, "SQL write queue full or closed; dropping writes");
            }
        } else {
            self.stats.queue_depth.set(queued as f64);
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Op>, stats: Arc<WriterStats>) {
    let mut batch: Vec<Record> = Vec::new();
    let mut flushes = Vec::new();
    while let Some(op) = rx.recv().await {
        // This one, and whatever else is already queued.
        let mut next = Some(op);
        while let Some(op) = next {
            match op {
                Op::Write(record) => batch.push(record),
                Op::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < BATCH_RECORDS {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let queued = stats
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed)
            - batch.len() as u64;
        stats.queue_depth.set(queued as f64);
        write(&store, &batch, &stats).await;
        batch.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Applies `batch` in one transaction or, when the database refuses it (not for being
/// unavailable), one record at a time.
async fn write(store: &Store, batch: &[Record], stats: &WriterStats) {
    if batch.is_empty() {
        return;
    }
    // A batch of one has nothing to split: it gets the refusal retries at once.
    let attempts = if batch.len() == 1 { ATTEMPTS } else { 1 };
    let written = retry(store, batch, stats, "write", attempts).await;
    stats.batch_records.record(batch.len() as f64);
    if written || batch.len() == 1 {
        return;
    }
    warn!(
        records = batch.len(),
        "SQL refused a batch; applying its records one at a time"
    );
    for record in batch {
        let record = std::slice::from_ref(record);
        retry(store, record, stats, "write_one", ATTEMPTS).await;
    }
}

/// Writes `records` in one transaction until it succeeds: for as long as the database
/// is unavailable, or `attempts` times when it refuses the write for another reason. Returns
/// whether it succeeded; a write given up on after more than one attempt is logged and counted
/// as failed.
async fn retry(
    store: &Store,
    records: &[Record],
    stats: &WriterStats,
    what: &'static str,
    attempts: u32,
) -> bool {
    let mut pause = FIRST_RETRY;
    let mut refusals = 0;
    let mut outage: Option<std::time::Instant> = None;
    let latency = stats.latency(what);
    loop {
        let started = std::time::Instant::now();
        let written = store.write(records).await;
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
                return true;
            }
            Err(e) if e.is_unavailable() => {
                if outage.is_none() {
                    warn!(what, cause = %e, "database unavailable; retrying until it is back");
                    outage = Some(std::time::Instant::now());
                }
            }
            Err(e) => {
                refusals += 1;
                if refusals >= attempts {
                    if attempts > 1 {
                        stats.failed.increment(1);
                        error!(what, cause = %e, "SQL write failed; giving up on it");
                    }
                    return false;
                }
                warn!(what, attempt = refusals, cause = %e, "SQL write failed; retrying");
            }
        }
        stats.retries.increment(1);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue holds up to [`QUEUE_CAPACITY`] of these, nearly all chunk rows: an answer's
    /// start or end (two messages) must not set every slot's size.
    #[test]
    fn a_queued_write_is_sized_for_a_chunk_row() {
        assert!(
            std::mem::size_of::<Op>() <= std::mem::size_of::<ChunkRow>() + 16,
            "{} bytes",
            std::mem::size_of::<Op>()
        );
    }
}
