//! [`Relay`]: publishes the SQL outbox to Kafka, from one node of the cluster at a time.
//!
//! Every AI node runs a relay; the one holding the Redis lease `events:relay:lease` publishes,
//! the others wait to take over (within the lease's lifetime, 5 s, of its holder's death).
//! The holder reads unpublished rows in `seq` order, sends them with an idempotent producer
//! (`acks=all`, ordered per partition), and marks a row published only once the broker has
//! acknowledged it and every row before it. Delivery is therefore at least once: a relay that
//! dies, or loses its lease, between the broker's acknowledgement and the mark leaves rows that
//! its successor sends again, with the same `eventId`. Per-session order holds because one
//! session's events are one key (so one partition), sent in `seq` order, and a failure never
//! marks a row published while an earlier one is not.
//!
//! New rows wake the relay at once (a signal through Redis from whichever node wrote them);
//! it also looks every second in case a signal was lost. A broker that is down or frozen only
//! delays: rows wait in SQL, the producer keeps its messages (they never time out), and a batch
//! not acknowledged within 30 s is handed to a fresh producer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use protocol::keys;
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis_state::ChatState;
use store::{OutboxRow, Store};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::client::{EventStats, KafkaContext, client_config, ensure_topics};
use crate::config::KafkaConfig;
use crate::order;

/// How long the lease lives without renewal; renewed every third of it.
pub const RELAY_LEASE: Duration = Duration::from_secs(5);
/// Rows read at once (sent as far as their sessions' order allows).
const READ_AHEAD: u32 = 512;
/// How long a session's change waits for an earlier one that has not been recorded yet.
const GAP_GRACE: Duration = Duration::from_secs(30);
/// How often the holder looks for rows when no signal came.
const POLL: Duration = Duration::from_secs(1);
/// A batch not acknowledged in this long is sent again by a fresh producer.
const STALL: Duration = Duration::from_secs(30);
/// How often published rows past their retention are deleted.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// How often the node holding the lease measures the outbox's backlog for its gauges.
const LAG_EVERY: Duration = Duration::from_secs(2);

/// The outbox relay of one node.
pub struct Relay {
    pub config: KafkaConfig,
    pub store: Store,
    pub state: ChatState,
    /// For the wake-up subscription: the one Redis, or the seeds of a cluster (which
    /// broadcasts classic pub/sub to every node), tried in turn.
    pub signals: Vec<redis::Client>,
    pub node_id: Arc<str>,
    pub stats: Arc<EventStats>,
}

/// How a round of publishing ended.
enum Round {
    /// Nothing left to publish.
    Drained,
    /// The broker did not acknowledge a batch in time (or refused it): use a fresh producer.
    Stalled,
    /// Another node holds the lease now.
    LostLease,
}

impl Relay {
    /// Runs until `shutdown`, then gives the lease up so another node takes over at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = Arc::new(Notify::new());
        tokio::spawn(listen_for_signals(
            self.signals.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        // The backlog is measured beside publishing, which can wait on a stalled broker.
        let relaying = Arc::new(AtomicBool::new(false));
        tokio::spawn(measure_backlog(
            self.store.clone(),
            self.stats.clone(),
            relaying.clone(),
            shutdown.clone(),
        ));
        let context = KafkaContext::new("relay", self.stats.clone());
        let mut producer: Option<FutureProducer<KafkaContext>> = None;
        let mut topics_ready = false;
        let mut holding = false;
        let mut last_trim: Option<Instant> = None;
        loop {
            holding = self.hold_lease(holding).await;
            relaying.store(holding, Ordering::Relaxed);
            if !holding {
                dispose(producer.take());
            } else {
                if !topics_ready {
                    topics_ready = ensure_topics(&self.config, self.stats.clone()).await;
                }
                if producer.is_none() && topics_ready {
                    producer = self.producer(&context);
                }
                if let Some(p) = &producer {
                    match self.publish_backlog(p, &context).await {
                        Ok(Round::Drained) => {}
                        Ok(Round::Stalled) => {
                            // A fresh producer, and the topics checked again: a broker that
                            // lost its data has lost them too.
                            dispose(producer.take());
                            topics_ready = false;
                        }
                        Ok(Round::LostLease) => holding = false,
                        Err(e) => {
                            if context.may_warn() {
                                warn!(cause = %e, "reading the event outbox failed; retrying");
                            }
                        }
                    }
                }
                if last_trim.is_none_or(|t| t.elapsed() >= TRIM_EVERY) {
                    last_trim = Some(Instant::now());
                    self.trim().await;
                }
            }
            let pause = if holding { POLL } else { RELAY_LEASE / 3 };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified(), if holding => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        dispose(producer);
        if holding {
            let _ = self
                .state
                .release_lease(keys::RELAY_LEASE, &self.node_id)
                .await;
            info!("event relay stopped; lease released");
        }
    }

    /// Takes or renews the lease; returns whether this node holds it.
    async fn hold_lease(&self, was_holding: bool) -> bool {
        match self
            .state
            .claim_lease(keys::RELAY_LEASE, &self.node_id, RELAY_LEASE)
            .await
        {
            Ok(holder) if *holder == *self.node_id => {
                if !was_holding {
                    info!("this node relays the event outbox to Kafka");
                }
                true
            }
            Ok(holder) => {
                if was_holding {
                    warn!(%holder, "the event relay lease moved to another node");
                }
                false
            }
            Err(e) => {
                // Without Redis this node cannot know it still holds the lease: stop.
                if was_holding {
                    warn!(cause = %e, "cannot renew the event relay lease; pausing the relay");
                }
                false
            }
        }
    }

    fn producer(&self, context: &KafkaContext) -> Option<FutureProducer<KafkaContext>> {
        let made = client_config(
            &self.config.bootstrap_servers,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("max.in.flight.requests.per.connection", "5"),
                // Never give up on a message: a timed-out idempotent producer is fenced.
                ("message.timeout.ms", "0"),
                ("linger.ms", "5"),
            ],
        )
        .create_with_context(context.clone());
        match made {
            Ok(producer) => Some(producer),
            Err(e) => {
                warn!(cause = %e, "cannot create the relay's Kafka producer");
                None
            }
        }
    }

    /// Publishes batches until nothing more can go (the outbox is empty, or what is left waits
    /// for an earlier change of its session), the broker stalls or the lease is lost.
    async fn publish_backlog(
        &self,
        producer: &FutureProducer<KafkaContext>,
        context: &KafkaContext,
    ) -> store::Result<Round> {
        let grace = i64::try_from(GAP_GRACE.as_millis()).unwrap_or(i64::MAX);
        loop {
            let rows = self.store.unpublished_events(READ_AHEAD).await?;
            if rows.is_empty() {
                return Ok(Round::Drained);
            }
            let mut sessions: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
            sessions.sort_unstable();
            sessions.dedup();
            let cursors = self.store.session_cursors(&sessions).await?;
            let plan = order::plan(&rows, &cursors, protocol::now_ms(), grace);
            for (session, change) in &plan.skipped {
                warn!(session_id = %session, change,
                    "an event change was never recorded; publishing the session's later ones");
            }
            if plan.order.is_empty() {
                // Everything left waits for an earlier change of its session.
                return Ok(Round::Drained);
            }
            let batch: Vec<&OutboxRow> = plan.order.iter().map(|&i| &rows[i]).collect();
            let (acked, round) = self.publish_batch(producer, &batch).await;
            if acked > 0 {
                let published = &plan.order[..acked];
                let seqs: Vec<i64> = published.iter().map(|&i| rows[i].seq).collect();
                let moved = order::advanced_cursors(&rows, published, &cursors);
                self.store
                    .mark_published(&seqs, &moved, protocol::now_ms())
                    .await?;
                self.stats.sent.increment(acked as u64);
                debug!(events = acked, "relayed events to Kafka");
            }
            match round {
                None if acked == rows.len() => {}
                // Some rows were held back: look again when something new arrives.
                None => return Ok(Round::Drained),
                Some(Round::Stalled) => {
                    if context.may_warn() {
                        let (waiting, _) = self.store.outbox_backlog().await.unwrap_or((0, None));
                        warn!(
                            waiting,
                            "Kafka is not acknowledging events; they wait in the outbox"
                        );
                    }
                    return Ok(Round::Stalled);
                }
                Some(other) => return Ok(other),
            }
        }
    }

    /// Sends `rows` and waits for the broker's acknowledgements, renewing the lease meanwhile.
    /// Returns how many rows, from the first, were acknowledged, and why it stopped early.
    async fn publish_batch(
        &self,
        producer: &FutureProducer<KafkaContext>,
        rows: &[&OutboxRow],
    ) -> (usize, Option<Round>) {
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let record = FutureRecord::to(self.config.topic(row.topic))
                .key(row.key.as_str())
                .payload(row.payload.as_str());
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => {
                    debug!(%error, "the relay's producer refused an event");
                    break;
                }
            }
        }
        let deadline = Instant::now() + STALL;
        let mut renew = tokio::time::interval_at(Instant::now() + RELAY_LEASE / 3, RELAY_LEASE / 3);
        let sent = deliveries.len();
        let mut acked = 0;
        for delivery in deliveries {
            tokio::pin!(delivery);
            loop {
                tokio::select! {
                    result = &mut delivery => {
                        match result {
                            Ok(Ok(_)) => acked += 1,
                            Ok(Err((error, _))) => {
                                debug!(%error, "Kafka refused an event");
                                return (acked, Some(Round::Stalled));
                            }
                            Err(_) => return (acked, Some(Round::Stalled)),
                        }
                        break;
                    }
                    _ = renew.tick() => {
                        if !self.hold_lease(true).await {
                            return (acked, Some(Round::LostLease));
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => return (acked, Some(Round::Stalled)),
                }
            }
        }
        let round = (sent < rows.len()).then_some(Round::Stalled);
        (acked, round)
    }

    /// Deletes published rows older than the retention.
    async fn trim(&self) {
        let retention = i64::try_from(self.config.outbox_retention.as_millis()).unwrap_or(i64::MAX);
        match self
            .store
            .trim_published(protocol::now_ms().saturating_sub(retention))
            .await
        {
            Ok(0) => {}
            Ok(trimmed) => debug!(trimmed, "published events trimmed from the outbox"),
            Err(e) => debug!(cause = %e, "trimming the outbox failed"),
        }
    }
}

/// Drops a producer off the async threads: dropping purges its queue and waits briefly.
fn dispose(producer: Option<FutureProducer<KafkaContext>>) {
    if let Some(producer) = producer {
        tokio::task::spawn_blocking(move || drop(producer));
    }
}

/// Wakes the relay on every outbox signal, resubscribing after a lost connection (signals
/// missed meanwhile cost only the poll interval).
async fn listen_for_signals(
    clients: Vec<redis::Client>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    for client in clients.iter().cycle() {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(keys::OUTBOX_WAKE_CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(mut pubsub) => {
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        message = messages.next() => match message {
                            Some(_) => wake.notify_one(),
                            None => break,
                        },
                    }
                }
            }
            Err(e) => debug!(cause = %e, "subscribing to outbox signals failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Every [`LAG_EVERY`] until `shutdown`: the outbox gauges (how many events wait, and for how
/// long the oldest has) while this node relays, 0 while another does.
async fn measure_backlog(
    store: Store,
    stats: Arc<EventStats>,
    relaying: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    loop {
        let (mut waiting, mut age) = (0.0, 0.0);
        if relaying.load(Ordering::Relaxed)
            && let Ok((n, oldest)) = store.outbox_backlog().await
        {
            waiting = n as f64;
            age = oldest.map_or(0, |at| (protocol::now_ms() - at).max(0)) as f64 / 1000.0;
        }
        stats.outbox_pending.set(waiting);
        stats.outbox_lag.set(age);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(LAG_EVERY) => {}
        }
    }
}
