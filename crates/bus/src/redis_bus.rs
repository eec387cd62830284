//! [`RedisBus`]: one Redis pub/sub connection per node, shared by every session it serves.
//!
//! A single task (the subscriber) owns the pub/sub connection's sink side and a table of
//! channels with their reference counts. `subscribe`/`unsubscribe` only send it a command, so
//! they never block; it applies commands in batches, sends one SUBSCRIBE and one UNSUBSCRIBE per
//! batch, and answers each subscriber once Redis has confirmed its channel. A reader task
//! forwards every message to the node's [`Deliver`] sink. When the connection drops, the
//! subscriber stops that reader, tells the sink which sessions may miss frames (before anything
//! of the next connection is read), reconnects with backoff and subscribes every channel that
//! still has references; [`Bus::confirmed`] tells a receiver when its session is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use protocol::{SessionId, keys};
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::commands::{Command, Commands, bus_through_commands};
use crate::{Deliver, Epoch, Error, Result};

/// Channels per SUBSCRIBE/UNSUBSCRIBE command, so one command stays a modest size.
const CHANNELS_PER_COMMAND: usize = 512;
/// Commands applied before talking to Redis; the rest wait for the next batch.
const COMMANDS_PER_BATCH: usize = 4096;
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// The Redis implementation of [`Bus`]. Cheap to share behind an `Arc`.
pub struct RedisBus {
    commands: Commands,
}

impl RedisBus {
    /// Connects the pub/sub connection and starts the subscriber task, which runs until
    /// `shutdown` is cancelled. Fails if Redis cannot be reached now; later outages are ridden
    /// out by reconnecting.
    ///
    /// The connection is read on a thread of its own (a single-threaded runtime), not on the
    /// node's runtime: however busy the node's socket tasks are, Redis is read as fast as it
    /// sends, so the frames wait in the sockets' queues (which shed a socket that falls too
    /// far behind) and never in Redis's output buffer, where passing
    /// `client-output-buffer-limit pubsub` would cut the connection of every session at once.
    pub async fn start(
        client: redis::Client,
        sink: Arc<dyn Deliver>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        metrics::describe_counter!("bus_reconnects_total", "Pub/sub connections re-established");
        // Registered at 0, so dashboards see the series before the first reconnect.
        metrics::counter!("bus_reconnects_total").increment(0);
        let (commands, rx) = mpsc::unbounded_channel();
        let (started, first) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Start)?;
        std::thread::Builder::new()
            .name("pubsub".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let first = match client.get_async_pubsub().await {
                        Ok(pubsub) => pubsub.split(),
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let _ = started.send(Ok(()));
                    let subscriber = Subscriber {
                        client,
                        sink,
                        channels: HashMap::new(),
                        epoch: 0,
                    };
                    subscriber.run(first, rx, shutdown).await;
                });
            })
            .map_err(Error::Start)?;
        first.await.map_err(|_| Error::Closed)??;
        Ok(Self {
            commands: Commands(commands),
        })
    }
}

bus_through_commands!(RedisBus);

/// One channel in the subscriber's table.
#[derive(Default)]
struct Channel {
    /// Open `subscribe` calls not yet matched by `unsubscribe`.
    refs: usize,
    /// Whether Redis has confirmed the subscription on the current connection.
    on_server: bool,
    /// Callers waiting for the confirmation.
    waiters: Vec<oneshot::Sender<Epoch>>,
}

/// Why the subscriber stopped serving a connection.
enum Served {
    /// The connection closed and its reader has ended: reconnect.
    ReaderEnded,
    /// A command failed on the connection: reconnect.
    Lost,
    /// Shutdown, or every handle dropped: stop.
    Stop,
}

/// The task that owns the pub/sub connection.
struct Subscriber {
    client: redis::Client,
    sink: Arc<dyn Deliver>,
    /// Every session with references or a subscription on the server.
    channels: HashMap<SessionId, Channel>,
    /// The current connection's epoch (0 before the first).
    epoch: Epoch,
}

impl Subscriber {
    async fn run(
        mut self,
        first: (PubSubSink, PubSubStream),
        mut rx: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut connection = Some(first);
        loop {
            let (mut psink, stream) = match connection.take() {
                Some(c) => c,
                None => match self.reconnect(&shutdown).await {
                    Some(c) => c,
                    None => return,
                },
            };
            self.epoch += 1;
            for channel in self.channels.values_mut() {
                channel.on_server = false;
            }
            let mut reader = tokio::spawn(read_messages(stream, self.sink.clone()));
            let served = match self.sync(&mut psink).await {
                Ok(()) => {
                    if self.epoch > 1 {
                        // Labelled by the process's `node_id` (a node runs one bus).
                        metrics::counter!("bus_reconnects_total").increment(1);
                        info!(
                            epoch = self.epoch,
                            sessions = self.channels.len(),
                            "pub/sub reconnected and resubscribed"
                        );
                    }
                    self.serve(&mut psink, &mut reader, &mut rx, &shutdown)
                        .await
                }
                Err(e) => {
                    warn!(cause = %e, "resubscribing after reconnect failed");
                    Served::Lost
                }
            };
            // Nothing of this connection may be delivered after the loss is reported.
            if !matches!(served, Served::ReaderEnded) {
                reader.abort();
                let _ = reader.await;
            }
            if let Served::Stop = served {
                return;
            }
            let sessions: Vec<SessionId> = self
                .channels
                .iter()
                .filter(|(_, c)| c.refs > 0)
                .map(|(session, _)| session.clone())
                .collect();
            self.sink.connection_lost(self.epoch, sessions);
        }
    }

    /// Applies commands on a working connection until it breaks or the bus stops.
    async fn serve(
        &mut self,
        psink: &mut PubSubSink,
        reader: &mut JoinHandle<()>,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        shutdown: &CancellationToken,
    ) -> Served {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Served::Stop,
                // The reader ends when the connection does.
                _ = &mut *reader => {
                    warn!("pub/sub connection lost; reconnecting");
                    return Served::ReaderEnded;
                }
                command = rx.recv() => {
                    let Some(command) = command else {
                        return Served::Stop;
                    };
                    self.apply(command);
                    for _ in 1..COMMANDS_PER_BATCH {
                        match rx.try_recv() {
                            Ok(command) => self.apply(command),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.sync(psink).await {
                        warn!(cause = %e, "pub/sub command failed; reconnecting");
                        return Served::Lost;
                    }
                }
            }
        }
    }

    /// Records one command in the table; Redis is told in [`Subscriber::sync`].
    fn apply(&mut self, command: Command) {
        match command {
            Command::Subscribe { session, ready } => {
                let entry = self.channels.entry(session).or_default();
                entry.refs += 1;
                if entry.on_server {
                    let _ = ready.send(self.epoch);
                } else {
                    entry.waiters.push(ready);
                }
            }
            Command::Unsubscribe { session } => {
                if let Some(entry) = self.channels.get_mut(&session) {
                    entry.refs = entry.refs.saturating_sub(1);
                }
            }
            Command::Confirm { session, ready } => match self.channels.get_mut(&session) {
                Some(entry) if entry.refs > 0 => {
                    if entry.on_server {
                        let _ = ready.send(self.epoch);
                    } else {
                        entry.waiters.push(ready);
                    }
                }
                // Dropping `ready` tells the caller it holds no reference.
                _ => {}
            },
        }
    }

    /// Brings Redis in line with the table: unsubscribe channels nobody wants, subscribe
    /// channels somebody wants, and wake the waiters of each confirmed channel.
    async fn sync(&mut self, psink: &mut PubSubSink) -> redis::RedisResult<()> {
        let unwanted: Vec<SessionId> = self
            .channels
            .iter()
            .filter(|(_, c)| c.on_server && c.refs == 0)
            .map(|(session, _)| session.clone())
            .collect();
        for batch in unwanted.chunks(CHANNELS_PER_COMMAND) {
            psink.unsubscribe(channel_names(batch)).await?;
            for session in batch {
                if let Some(c) = self.channels.get_mut(session) {
                    c.on_server = false;
                }
            }
        }
        self.channels.retain(|_, c| c.refs > 0 || c.on_server);

        let wanted: Vec<SessionId> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.on_server && c.refs > 0)
            .map(|(session, _)| session.clone())
            .collect();
        for batch in wanted.chunks(CHANNELS_PER_COMMAND) {
            psink.subscribe(channel_names(batch)).await?;
            for session in batch {
                if let Some(c) = self.channels.get_mut(session) {
                    c.on_server = true;
                    for waiter in c.waiters.drain(..) {
                        let _ = waiter.send(self.epoch);
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens a new pub/sub connection, retrying with backoff until it works or shutdown.
    async fn reconnect(&self, shutdown: &CancellationToken) -> Option<(PubSubSink, PubSubStream)> {
        let mut delay = RECONNECT_MIN;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            match self.client.get_async_pubsub().await {
                Ok(pubsub) => return Some(pubsub.split()),
                Err(e) => {
                    warn!(cause = %e, retry_in_ms = delay.as_millis() as u64, "pub/sub reconnect failed");
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
        }
    }
}

fn channel_names(sessions: &[SessionId]) -> Vec<String> {
    sessions.iter().map(keys::stream_channel).collect()
}

/// Forwards every published message to the sink until the connection closes.
async fn read_messages(mut stream: PubSubStream, sink: Arc<dyn Deliver>) {
    while let Some(message) = stream.next().await {
        if let Some(session) = keys::session_of_channel(message.get_channel_name()) {
            sink.deliver(session, Bytes::copy_from_slice(message.get_payload_bytes()));
        }
    }
}
