//! [`RedisBus`]: one Redis pub/sub connection per node, shared by every session it serves.
//!
//! A single task (the subscriber) owns the pub/sub connection's sink side and a table of
//! channels with their reference counts. `subscribe`/`unsubscribe` only send it a command, so
//! they never block; it applies commands in batches, sends one SUBSCRIBE and one UNSUBSCRIBE per
//! batch, and answers each subscriber once Redis has confirmed its channel. A reader task
//! forwards every message to the node's [`Deliver`] sink. When the connection drops, the
//! subscriber reconnects with backoff, subscribes every channel that still has references, and
//! tells the sink which sessions may have missed frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use protocol::{SessionId, keys};
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Bus, Deliver, Error, Result};

/// Channels per SUBSCRIBE/UNSUBSCRIBE command, so one command stays a modest size.
const CHANNELS_PER_COMMAND: usize = 512;
/// Commands applied before talking to Redis; the rest wait for the next batch.
const COMMANDS_PER_BATCH: usize = 4096;
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

enum Command {
    Subscribe {
        session: SessionId,
        ready: oneshot::Sender<()>,
    },
    Unsubscribe {
        session: SessionId,
    },
}

/// The Redis implementation of [`Bus`]. Cheap to share behind an `Arc`.
pub struct RedisBus {
    commands: mpsc::UnboundedSender<Command>,
}

impl RedisBus {
    /// Connects the pub/sub connection and starts the subscriber task, which runs until
    /// `shutdown` is cancelled. Fails if Redis cannot be reached now; later outages are ridden
    /// out by reconnecting.
    pub async fn start(
        client: redis::Client,
        sink: Arc<dyn Deliver>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let first = client.get_async_pubsub().await?.split();
        let (commands, rx) = mpsc::unbounded_channel();
        let subscriber = Subscriber {
            client,
            sink,
            channels: HashMap::new(),
        };
        tokio::spawn(subscriber.run(first, rx, shutdown));
        Ok(Self { commands })
    }
}

impl Bus for RedisBus {
    fn subscribe(&self, session: &SessionId) -> BoxFuture<'static, Result<()>> {
        let (ready, confirmed) = oneshot::channel();
        let sent = self.commands.send(Command::Subscribe {
            session: session.clone(),
            ready,
        });
        async move {
            sent.map_err(|_| Error::Closed)?;
            confirmed.await.map_err(|_| Error::Closed)
        }
        .boxed()
    }

    fn unsubscribe(&self, session: &SessionId) {
        // A closed subscriber has no subscriptions left to drop.
        let _ = self.commands.send(Command::Unsubscribe {
            session: session.clone(),
        });
    }
}

/// One channel in the subscriber's table.
#[derive(Default)]
struct Channel {
    /// Open `subscribe` calls not yet matched by `unsubscribe`.
    refs: usize,
    /// Whether Redis has confirmed the subscription on the current connection.
    on_server: bool,
    /// Callers waiting for the confirmation.
    waiters: Vec<oneshot::Sender<()>>,
}

/// The task that owns the pub/sub connection.
struct Subscriber {
    client: redis::Client,
    sink: Arc<dyn Deliver>,
    /// Every session with references or a subscription on the server.
    channels: HashMap<SessionId, Channel>,
}

impl Subscriber {
    async fn run(
        mut self,
        first: (PubSubSink, PubSubStream),
        mut rx: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut connection = Some(first);
        let mut is_reconnect = false;
        loop {
            let (mut psink, stream) = match connection.take() {
                Some(c) => c,
                None => match self.reconnect(&shutdown).await {
                    Some(c) => c,
                    None => return,
                },
            };
            let mut reader = tokio::spawn(read_messages(stream, self.sink.clone()));
            for channel in self.channels.values_mut() {
                channel.on_server = false;
            }
            if let Err(e) = self.sync(&mut psink).await {
                warn!(cause = %e, "resubscribing after reconnect failed");
                reader.abort();
                continue;
            }
            if is_reconnect {
                let sessions: Vec<SessionId> = self
                    .channels
                    .iter()
                    .filter(|(_, c)| c.refs > 0)
                    .map(|(session, _)| session.clone())
                    .collect();
                info!(
                    sessions = sessions.len(),
                    "pub/sub reconnected and resubscribed"
                );
                self.sink.resubscribed(sessions);
            }
            is_reconnect = true;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        reader.abort();
                        return;
                    }
                    _ = &mut reader => {
                        warn!("pub/sub connection lost; reconnecting");
                        break;
                    }
                    command = rx.recv() => {
                        let Some(command) = command else {
                            reader.abort();
                            return;
                        };
                        self.apply(command);
                        for _ in 1..COMMANDS_PER_BATCH {
                            match rx.try_recv() {
                                Ok(command) => self.apply(command),
                                Err(_) => break,
                            }
                        }
                        if let Err(e) = self.sync(&mut psink).await {
                            warn!(cause = %e, "pub/sub command failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            reader.abort();
        }
    }

    /// Records one command in the table; Redis is told in [`Subscriber::sync`].
    fn apply(&mut self, command: Command) {
        match command {
            Command::Subscribe { session, ready } => {
                let entry = self.channels.entry(session).or_default();
                entry.refs += 1;
                if entry.on_server {
                    let _ = ready.send(());
                } else {
                    entry.waiters.push(ready);
                }
            }
            Command::Unsubscribe { session } => {
                if let Some(entry) = self.channels.get_mut(&session) {
                    entry.refs = entry.refs.saturating_sub(1);
                }
            }
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
                        let _ = waiter.send(());
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
