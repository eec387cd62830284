//! [`ClusterBus`]: the bus on a Redis Cluster, with sharded pub/sub.
//!
//! On a cluster the scripts publish with `SPUBLISH`, which keeps a frame on the shard that owns
//! its session's slot, and a node subscribes with `SSUBSCRIBE` on that shard. The `redis`
//! crate's cluster connection does the routing: it keeps a connection to each master, sends
//! each `SSUBSCRIBE` to the owner of the channel's slot, follows `MOVED`, reconnects, and
//! resubscribes what it tracks. It does not tell which channels may have missed frames, which
//! is what exactly-once delivery needs, so this module adds that:
//!
//! - A **reader** task takes every push of the connection in order, and is the only one to
//!   decide what is subscribed: `smessage` pushes go to the node's [`Deliver`] sink; an
//!   `ssubscribe` push confirms its channel (the server's own word, in the same ordered stream
//!   as the frames and the losses; the command's reply is not trusted for this, as the crate
//!   can pair an unsolicited push with the wrong pending command); a lost connection to any
//!   node (the crate's `Disconnection` push) is reported for every subscribed session (the push
//!   does not say which node was lost; a failover is rare, and a resync costs one snapshot read
//!   per socket); a `sunsubscribe` the server sent by itself (its slot moved to another shard,
//!   or its master stepped down) is reported for its session. A report closes the current
//!   epoch: it is delivered after the last frame the lost subscriptions carried.
//! - A **subscriber** task keeps the table of channels and their references and sends one
//!   `SSUBSCRIBE`/`SUNSUBSCRIBE` per channel (a command's channels must share a slot), many at a
//!   time; channels lost, refused or left unconfirmed for [`CONFIRM_WITHIN`] are asked again
//!   (wherever their slot now is), with backoff while their shard fails over.
//!
//! Epochs are the bus's, not a connection's: each loss report carries the current epoch and
//! starts the next, and a channel (re)confirmed afterwards is confirmed with the new one, so
//! [`Bus::confirmed`]'s contract holds across shards.
//!
//! Two losses give no `Disconnection` push, and are found otherwise:
//! - a node connection the crate replaces (during a refresh of its slot map) loses its
//!   subscriptions, and the crate subscribes them again on the new connection: an `ssubscribe`
//!   push for a channel that was confirmed already is reported as a loss of its session (also
//!   when it was only a refresh that moved nothing: a resync too many costs one snapshot read);
//! - a master that stops answering without closing its sockets (a stopped process, a frozen
//!   host) is failed over by the cluster while the crate still routes its slots to it:
//!   `cluster_map::watch` asks the cluster for its slot map every second, makes the connection
//!   refresh its own when masters changed, and the sessions of the moved slots are reported
//!   lost and subscribed again on their new master.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use protocol::{SessionId, keys};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::commands::{Command, Commands, bus_through_commands};
use crate::{Deliver, Epoch, Error, Result};

/// Subscription commands in flight at once.
const IN_FLIGHT: usize = 256;
/// Commands applied before talking to Redis; the rest wait for the next batch.
const COMMANDS_PER_BATCH: usize = 4096;
/// Pause before a channel whose command failed is tried again (its shard is failing over).
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// A channel asked for but not confirmed by its `ssubscribe` push within this is asked again.
const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// The Redis Cluster implementation of [`Bus`]. Cheap to share behind an `Arc`.
pub struct ClusterBus {
    commands: Commands,
}

impl ClusterBus {
    /// Connects to the cluster through `seeds` (RESP3, which carries pushes beside replies) and
    /// starts the reader and the subscriber, which run until `shutdown`. Fails if no seed can
    /// be reached now. Like [`crate::RedisBus`], it runs on a thread of its own, so that Redis is
    /// read as fast as it sends.
    pub async fn start(
        seeds: Vec<String>,
        sink: Arc<dyn Deliver>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        metrics::describe_counter!("bus_reconnects_total", "Pub/sub connections re-established");
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
                    let (pushes, pushed) = mpsc::unbounded_channel();
                    let connected = async {
                        redis::cluster::ClusterClientBuilder::new(seeds)
                            .use_protocol(redis::ProtocolVersion::RESP3)
                            .push_sender(pushes)
                            .connection_timeout(Duration::from_secs(1))
                            .response_timeout(Duration::from_secs(2))
                            .retries(2)
                            .build()?
                            .get_async_connection()
                            .await
                    };
                    let conn = match connected.await {
                        Ok(conn) => conn,
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let _ = started.send(Ok(()));
                    let table = Arc::new(Table::default());
                    let lost = Arc::new(Notify::new());
                    tokio::spawn(cluster_map::watch(
                        conn.clone(),
                        cluster_map::WATCH_EVERY,
                        shutdown.clone(),
                        slots_moved(sink.clone(), table.clone(), lost.clone()),
                    ));
                    tokio::spawn(read_pushes(
                        pushed,
                        sink,
                        table.clone(),
                        lost.clone(),
                        shutdown.clone(),
                    ));
                    let subscriber = Subscriber {
                        conn,
                        table,
                        lost,
                        in_flight: FuturesUnordered::new(),
                        retry_in: RETRY_MIN,
                    };
                    subscriber.run(rx, shutdown).await;
                });
            })
            .map_err(Error::Start)?;
        first.await.map_err(|_| Error::Closed)??;
        Ok(Self {
            commands: Commands(commands),
        })
    }
}

bus_through_commands!(ClusterBus);

/// Where a channel stands with Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum OnServer {
    /// Not subscribed (or lost): to be subscribed if it has references.
    #[default]
    No,
    /// An `SSUBSCRIBE` was sent then; its `ssubscribe` push has not come yet.
    Asked(Instant),
    /// Confirmed by its push, in this epoch or an earlier one with no loss since.
    Yes,
    /// Its `SSUBSCRIBE` failed; asked again after the backoff.
    Failed,
    /// A `SUNSUBSCRIBE` is in flight.
    Leaving,
    /// Its `SUNSUBSCRIBE` failed; sent again after the backoff (or the crate would resubscribe
    /// it on every reconnect).
    LeaveFailed,
}

#[derive(Default)]
struct Channel {
    refs: usize,
    state: OnServer,
    waiters: Vec<oneshot::Sender<Epoch>>,
}

/// The channels and the epoch, shared by the reader (which records losses) and the subscriber.
struct Table {
    inner: Mutex<Inner>,
}

struct Inner {
    channels: HashMap<SessionId, Channel>,
    epoch: Epoch,
    /// Channels whose state may call for a command (listed again harmlessly).
    touched: VecDeque<SessionId>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                channels: HashMap::new(),
                epoch: 1,
                touched: VecDeque::new(),
            }),
        }
    }
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// The server says `session`'s channel is subscribed (asked by us, or resubscribed by the
    /// crate after a reconnect): a held channel is confirmed in the current epoch; one nobody
    /// holds is to be left.
    fn confirm(&mut self, session: SessionId) {
        let epoch = self.epoch;
        let channel = self.channels.entry(session.clone()).or_default();
        if channel.refs == 0 {
            if matches!(
                channel.state,
                OnServer::No | OnServer::Failed | OnServer::Asked(_)
            ) {
                channel.state = OnServer::Yes;
                self.touched.push_back(session);
            }
            return;
        }
        if channel.state != OnServer::Yes {
            channel.state = OnServer::Yes;
            for waiter in channel.waiters.drain(..) {
                let _ = waiter.send(epoch);
            }
        }
    }

    /// Whether `session` has references.
    fn held(&self, session: &str) -> bool {
        self.channels
            .get(session)
            .is_some_and(|channel| channel.refs > 0)
    }

    /// Closes the current epoch for `sessions` (every subscribed one when `None`): they are to
    /// be subscribed again. Returns the closed epoch and the sessions with references.
    fn lose(&mut self, sessions: Option<&[SessionId]>) -> (Epoch, Vec<SessionId>) {
        let closed = self.epoch;
        self.epoch += 1;
        let mut lost = Vec::new();
        let touched = &mut self.touched;
        let mut mark = |session: &SessionId, channel: &mut Channel| {
            if matches!(channel.state, OnServer::Yes | OnServer::Asked(_)) {
                channel.state = OnServer::No;
                touched.push_back(session.clone());
            }
            if channel.refs > 0 {
                lost.push(session.clone());
            }
        };
        match sessions {
            None => self.channels.iter_mut().for_each(|(s, c)| mark(s, c)),
            Some(sessions) => {
                for session in sessions {
                    if let Some(channel) = self.channels.get_mut(session) {
                        mark(session, channel);
                    }
                }
            }
        }
        (closed, lost)
    }
}

/// Takes every push of the cluster connection, in order, until it closes or `shutdown`.
async fn read_pushes(
    mut pushed: mpsc::UnboundedReceiver<PushInfo>,
    sink: Arc<dyn Deliver>,
    table: Arc<Table>,
    lost: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let push = tokio::select! {
            () = shutdown.cancelled() => return,
            push = pushed.recv() => match push {
                Some(push) => push,
                None => return,
            },
        };
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                let mut data = push.data.into_iter();
                let (Some(channel), Some(Value::BulkString(payload))) = (data.next(), data.next())
                else {
                    continue;
                };
                let Some(session) = channel_name(&channel).and_then(keys::session_of_channel)
                else {
                    continue;
                };
                // A channel being left may still carry a frame or two (its SUNSUBSCRIBE goes
                // to its shard while others go on): only held channels are delivered.
                if table.lock().held(session) {
                    sink.deliver(session, Bytes::from(payload));
                }
            }
            PushKind::Disconnection => {
                let (closed, sessions) = table.lock().lose(None);
                report_lost(
                    &*sink,
                    &lost,
                    closed,
                    sessions,
                    "a pub/sub connection to a cluster node was lost; resubscribing",
                );
            }
            PushKind::SSubscribe => {
                let Some(session) = pushed_session(&push) else {
                    continue;
                };
                // A held channel that was confirmed already has been subscribed again by the
                // crate: on a connection it replaced, or on the new owner of a slot after a
                // refresh of its map. Frames may have been lost in between; nothing else
                // says so.
                let report = {
                    let mut inner = table.lock();
                    let again = inner
                        .channels
                        .get(&session)
                        .is_some_and(|c| c.refs > 0 && c.state == OnServer::Yes);
                    let report = again.then(|| inner.lose(Some(std::slice::from_ref(&session))));
                    inner.confirm(session.clone());
                    report
                };
                if let Some((closed, sessions)) = report {
                    info!(session_id = %session, "a channel was subscribed again; resyncing it");
                    sink.connection_lost(closed, sessions);
                }
                lost.notify_one();
            }
            PushKind::SUnsubscribe => {
                // Ours confirm a channel nobody holds; one of a held channel was sent by the
                // server: its slot moved to another shard, or its master stepped down.
                let Some(session) = pushed_session(&push) else {
                    continue;
                };
                let report = {
                    let mut inner = table.lock();
                    match inner.channels.get_mut(&session) {
                        Some(c)
                            if c.refs > 0
                                && matches!(c.state, OnServer::Yes | OnServer::Asked(_)) =>
                        {
                            Some(inner.lose(Some(std::slice::from_ref(&session))))
                        }
                        Some(c) if c.refs == 0 && c.state == OnServer::Leaving => {
                            c.state = OnServer::No;
                            inner.touched.push_back(session.clone());
                            None
                        }
                        _ => None,
                    }
                };
                if let Some((closed, sessions)) = report {
                    info!(session_id = %session, "a channel left its shard; resubscribing");
                    sink.connection_lost(closed, sessions);
                }
                lost.notify_one();
            }
            _ => {}
        }
    }
}

/// What the bus does when the cluster's slot map shows slots with a new master (found by
/// `cluster_map::watch`, which has made the connection refresh its own map by then): the held
/// sessions of those slots are reported lost and subscribed again, on their new master. This
/// covers a master that stopped without closing its sockets, which no push reports.
fn slots_moved(
    sink: Arc<dyn Deliver>,
    table: Arc<Table>,
    lost: Arc<Notify>,
) -> impl FnMut(Vec<u16>) {
    move |slots| {
        let mut moved = vec![false; cluster_map::SLOTS];
        for slot in slots {
            moved[usize::from(slot)] = true;
        }
        let (closed, sessions) = {
            let mut inner = table.lock();
            let sessions: Vec<SessionId> = inner
                .channels
                .keys()
                .filter(|session| moved[usize::from(keys::session_slot(session))])
                .cloned()
                .collect();
            if sessions.is_empty() {
                return;
            }
            inner.lose(Some(&sessions))
        };
        report_lost(
            &*sink,
            &lost,
            closed,
            sessions,
            "slots moved to another master; resubscribing their channels",
        );
    }
}

/// Reports `sessions` lost with epoch `closed` (counted in `bus_reconnects_total`, logged with
/// `why`) and wakes the subscriber to subscribe them again.
fn report_lost(
    sink: &dyn Deliver,
    lost: &Notify,
    closed: Epoch,
    sessions: Vec<SessionId>,
    why: &str,
) {
    metrics::counter!("bus_reconnects_total").increment(1);
    warn!(epoch = closed, sessions = sessions.len(), "{why}");
    sink.connection_lost(closed, sessions);
    lost.notify_one();
}

/// The session of a subscription push (`[channel, count]`).
fn pushed_session(push: &PushInfo) -> Option<SessionId> {
    push.data
        .first()
        .and_then(channel_name)
        .and_then(keys::session_of_channel)
        .and_then(|s| SessionId::parse(s).ok())
}

fn channel_name(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// What an `SSUBSCRIBE` or `SUNSUBSCRIBE` came back with.
struct Done {
    session: SessionId,
    /// `SSUBSCRIBE` (else `SUNSUBSCRIBE`).
    subscribe: bool,
    ok: bool,
}

/// The task that keeps Redis's subscriptions in line with the table.
struct Subscriber {
    conn: ClusterConnection,
    table: Arc<Table>,
    lost: Arc<Notify>,
    in_flight: FuturesUnordered<BoxFuture<'static, Done>>,
    retry_in: Duration,
}

impl Subscriber {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, shutdown: CancellationToken) {
        let retry = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(retry);
        let mut retrying = false;
        let mut stale = tokio::time::interval(CONFIRM_WITHIN / 2);
        stale.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stale.tick() => {
                    let mut inner = self.table.lock();
                    let Inner { channels, touched, .. } = &mut *inner;
                    for (session, channel) in channels.iter_mut() {
                        if let OnServer::Asked(at) = channel.state
                            && at.elapsed() >= CONFIRM_WITHIN
                        {
                            warn!(session_id = %session,
                                "a sharded subscription was not confirmed; asking again");
                            channel.state = OnServer::No;
                            touched.push_back(session.clone());
                        }
                    }
                }
                () = shutdown.cancelled() => return,
                command = rx.recv() => {
                    let Some(command) = command else { return };
                    let mut inner = self.table.lock();
                    apply(&mut inner, command);
                    for _ in 1..COMMANDS_PER_BATCH {
                        match rx.try_recv() {
                            Ok(command) => apply(&mut inner, command),
                            Err(_) => break,
                        }
                    }
                }
                Some(done) = self.in_flight.next() => {
                    if !self.settle(done) && !retrying {
                        retry.as_mut().reset(tokio::time::Instant::now() + self.retry_in);
                        self.retry_in = (self.retry_in * 2).min(RETRY_MAX);
                        retrying = true;
                    }
                }
                () = self.lost.notified() => {}
                () = &mut retry, if retrying => {
                    retrying = false;
                    let mut inner = self.table.lock();
                    let Inner { channels, touched, .. } = &mut *inner;
                    for (session, channel) in channels.iter_mut() {
                        let again = match channel.state {
                            OnServer::Failed => OnServer::No,
                            // Held again meanwhile: whether it is still subscribed is
                            // unknown, so it is asked for afresh.
                            OnServer::LeaveFailed if channel.refs > 0 => OnServer::No,
                            OnServer::LeaveFailed => OnServer::Yes,
                            _ => continue,
                        };
                        channel.state = again;
                        touched.push_back(session.clone());
                    }
                }
            }
            self.send();
        }
    }

    /// Records what a command came back with (a channel is confirmed by its push, not here);
    /// `false` when it failed and is to be tried again after the backoff.
    fn settle(&mut self, done: Done) -> bool {
        let mut inner = self.table.lock();
        inner.touched.push_back(done.session.clone());
        let Some(channel) = inner.channels.get_mut(&done.session) else {
            return true;
        };
        match (done.subscribe, done.ok, channel.state) {
            (true, false, OnServer::Asked(_)) => {
                channel.state = OnServer::Failed;
                false
            }
            (false, false, OnServer::Leaving) => {
                channel.state = OnServer::LeaveFailed;
                false
            }
            (false, true, OnServer::Leaving) => {
                channel.state = OnServer::No;
                true
            }
            (true, true, _) => {
                self.retry_in = RETRY_MIN;
                true
            }
            _ => true,
        }
    }

    /// Sends the commands the table calls for, up to [`IN_FLIGHT`] at a time, and forgets
    /// channels nobody holds.
    fn send(&mut self) {
        let mut inner = self.table.lock();
        while self.in_flight.len() < IN_FLIGHT {
            let Some(session) = inner.touched.pop_front() else {
                break;
            };
            let Some(channel) = inner.channels.get_mut(&session) else {
                continue;
            };
            match (channel.refs > 0, channel.state) {
                (true, OnServer::No) => {
                    channel.state = OnServer::Asked(Instant::now());
                    self.in_flight
                        .push(command(self.conn.clone(), session, true));
                }
                (false, OnServer::Yes) => {
                    channel.state = OnServer::Leaving;
                    self.in_flight
                        .push(command(self.conn.clone(), session, false));
                }
                (false, OnServer::No | OnServer::Failed) => {
                    inner.channels.remove(&session);
                }
                _ => {}
            }
        }
    }
}

/// Records one command in the table; Redis is told in [`Subscriber::send`].
fn apply(inner: &mut Inner, command: Command) {
    let epoch = inner.epoch;
    if let Command::Subscribe { session, .. } | Command::Unsubscribe { session } = &command {
        inner.touched.push_back(session.clone());
    }
    match command {
        Command::Subscribe { session, ready } => {
            let channel = inner.channels.entry(session).or_default();
            channel.refs += 1;
            if channel.state == OnServer::Yes {
                let _ = ready.send(epoch);
            } else {
                channel.waiters.push(ready);
            }
        }
        Command::Unsubscribe { session } => {
            if let Some(channel) = inner.channels.get_mut(&session) {
                channel.refs = channel.refs.saturating_sub(1);
                if channel.refs == 0 {
                    channel.waiters.clear();
                }
            }
        }
        Command::Confirm { session, ready } => match inner.channels.get_mut(&session) {
            Some(channel) if channel.refs > 0 => {
                if channel.state == OnServer::Yes {
                    let _ = ready.send(epoch);
                } else {
                    channel.waiters.push(ready);
                }
            }
            _ => {}
        },
    }
}

/// `SSUBSCRIBE` (when `subscribe`) or `SUNSUBSCRIBE` of one channel.
fn command(
    mut conn: ClusterConnection,
    session: SessionId,
    subscribe: bool,
) -> BoxFuture<'static, Done> {
    async move {
        let channel = keys::stream_channel(&session);
        let result = if subscribe {
            conn.ssubscribe(&channel).await
        } else {
            conn.sunsubscribe(&channel).await
        };
        if let Err(e) = &result {
            warn!(session_id = %session, cause = %e, "a sharded subscription command failed");
        }
        Done {
            session,
            subscribe,
            ok: result.is_ok(),
        }
    }
    .boxed()
}
