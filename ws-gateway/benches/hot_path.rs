//! The gateway's hot path, per frame published on Redis:
//! - `delivery_filter`: each socket's writer asks its [`DeliveryFilter`] about the frame;
//! - `hub_deliver`: the bus hands the frame to [`Hub::deliver`], which peeks it once and offers
//!   it to the queue of every local socket of its session (without, then with, a Prometheus
//!   recorder behind [`Stats`]);
//! - `chunk_delivered`: each socket's writer records the chunk's delivery latency
//!   ([`Stats::chunk_delivered`]: a clock read, a counter and a histogram sample).
//!
//! `cargo bench -p ws-gateway --bench hot_path`
//!
//! The groups without a recorder build their [`Stats`] under a no-op recorder, so they measure
//! the bare path even after a later group installed the process's Prometheus recorder.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Bus, Deliver, MemoryBus};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use protocol::{ChatMessage, LiveFrame, MessageId, ServerFrame, SessionId, StreamingState, UserId};
use tokio::sync::mpsc;
use ws_gateway::Stats;
use ws_gateway::socket::{DeliveryFilter, Hub, Membership, Outbound, SocketQueue};

/// (sessions on the node, sockets of the session the frame is for).
const FANOUTS: [(usize, usize); 4] = [(1, 1), (5000, 1), (1, 10), (1, 100)];
/// Frames delivered between two drains of the sockets' queues (which hold this many).
const BATCH: u64 = 256;
/// Histogram samples recorded between two upkeeps of the Prometheus recorder.
const SAMPLES_PER_UPKEEP: u64 = 100_000;

fn uuid_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn session_id() -> SessionId {
    SessionId::parse(uuid_id()).expect("a UUID is a valid id")
}

/// An answer being streamed in `session`.
fn answer(session: SessionId) -> ChatMessage {
    ChatMessage::started_answer(
        MessageId::random(),
        session,
        UserId::parse("user_4821").expect("a valid id"),
        protocol::now_ms(),
    )
}

/// A chunk frame as an AI node publishes it (about 200 bytes).
fn chunk_frame(session: SessionId) -> Bytes {
    Bytes::from(
        ServerFrame::Message {
            data: answer(session).chunk_of(137, " the gateway forwards"),
        }
        .to_json(),
    )
}

/// [`Stats`] counting into nothing, whatever recorder the process has.
fn noop_stats() -> Arc<Stats> {
    Arc::new(metrics::with_local_recorder(&metrics::NoopRecorder, || {
        Stats::new("bench")
    }))
}

/// [`Stats`] counting into the process's Prometheus recorder (installed by the first call).
fn prometheus_stats() -> Arc<Stats> {
    runtime::metrics::install(Some("bench"));
    Arc::new(Stats::new("bench"))
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// One socket's filter after a snapshot of 16 complete messages and an answer streaming.
fn delivery_filter(c: &mut Criterion) {
    let session = session_id();
    let user = UserId::parse("user_4821").expect("a valid id");
    let history: Vec<ChatMessage> = (0..16)
        .map(|i| {
            ChatMessage::user(
                MessageId::random(),
                session.clone(),
                user.clone(),
                "hi".into(),
                i,
            )
        })
        .collect();
    let streaming_id = MessageId::random();
    let snapshot = || {
        DeliveryFilter::from_snapshot(
            &history,
            Some(&StreamingState {
                message_id: streaming_id.clone(),
                last_index: 0,
            }),
        )
    };
    let verdict =
        |filter: &mut DeliveryFilter, frame: &LiveFrame| format!("{:?}", filter.admit(frame));

    let mut group = c.benchmark_group("delivery_filter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("chunk_send", |b| {
        let mut filter = snapshot();
        let mut frame = LiveFrame::Chunk {
            message_id: streaming_id.clone(),
            index: 1,
            published: 0,
        };
        assert_eq!(verdict(&mut filter, &frame), "Send");
        b.iter(|| {
            let LiveFrame::Chunk { index, .. } = &mut frame else {
                unreachable!("a chunk")
            };
            *index = index.checked_add(1).unwrap_or_else(|| {
                filter = snapshot();
                1
            });
            filter.admit(black_box(&frame))
        });
        assert_eq!(verdict(&mut filter, &frame), "Duplicate");
    });
    // The same steady state without remembered complete messages: what scanning them costs.
    group.bench_function("chunk_send_no_history", |b| {
        let mut filter = DeliveryFilter::from_snapshot(
            &[],
            Some(&StreamingState {
                message_id: streaming_id.clone(),
                last_index: 0,
            }),
        );
        let mut frame = LiveFrame::Chunk {
            message_id: streaming_id.clone(),
            index: 0,
            published: 0,
        };
        b.iter(|| {
            let LiveFrame::Chunk { index, .. } = &mut frame else {
                unreachable!("a chunk")
            };
            *index = index
                .checked_add(1)
                .expect("fewer than 4 billion iterations");
            filter.admit(black_box(&frame))
        });
    });
    group.bench_function("chunk_duplicate", |b| {
        let mut filter = snapshot();
        let ahead = LiveFrame::Chunk {
            message_id: streaming_id.clone(),
            index: 1,
            published: 0,
        };
        assert_eq!(verdict(&mut filter, &ahead), "Send");
        let frame = LiveFrame::Chunk {
            message_id: streaming_id.clone(),
            index: 1,
            published: 0,
        };
        assert_eq!(verdict(&mut filter, &frame), "Duplicate");
        b.iter(|| filter.admit(black_box(&frame)));
    });
    group.finish();
}

/// A hub with `sessions` sessions, the one frames go to with `sockets` sockets.
struct Fanout {
    hub: Arc<Hub>,
    /// The session frames are delivered to.
    target: SessionId,
    /// What its sockets' writers would read.
    receivers: Vec<mpsc::Receiver<Outbound>>,
    queues: Vec<SocketQueue>,
    /// Every socket's place in the hub (and the other sessions' receivers), kept alive.
    _members: Vec<Membership>,
    _idle: Vec<mpsc::Receiver<Outbound>>,
}

impl Fanout {
    fn new(stats: &Arc<Stats>, sessions: usize, sockets: usize) -> Fanout {
        let hub = Arc::new(Hub::new(stats.clone()));
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(hub.clone()));
        let capacity = usize::try_from(BATCH).expect("small");
        let target_at = sessions / 2;
        let mut fanout = Fanout {
            hub: hub.clone(),
            target: session_id(),
            receivers: Vec::new(),
            queues: Vec::new(),
            _members: Vec::new(),
            _idle: Vec::new(),
        };
        for n in 0..sessions {
            let session = if n == target_at {
                fanout.target.clone()
            } else {
                session_id()
            };
            let count = if n == target_at { sockets } else { 1 };
            for _ in 0..count {
                let (queue, rx) = SocketQueue::new(capacity, session.clone(), stats.clone());
                let (member, _subscribed) = Membership::join(&hub, &bus, &session, queue.clone());
                fanout._members.push(member);
                if n == target_at {
                    fanout.receivers.push(rx);
                    fanout.queues.push(queue);
                } else {
                    fanout._idle.push(rx);
                }
            }
        }
        assert_eq!(hub.session_count(), sessions);
        fanout
    }

    /// Delivers `frame` `iters` times, timing only the deliveries: the queues are drained
    /// between batches, so none ever fills (a full queue would mark its socket slow).
    fn time(&mut self, frame: &Bytes, iters: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let batch = left.min(BATCH);
            let start = Instant::now();
            for _ in 0..batch {
                self.hub
                    .deliver(black_box(self.target.as_str()), black_box(frame.clone()));
            }
            spent += start.elapsed();
            for rx in &mut self.receivers {
                let mut got = 0;
                while rx.try_recv().is_ok() {
                    got += 1;
                }
                assert_eq!(got, batch, "every frame reached every socket");
            }
            left -= batch;
        }
        assert!(
            self.queues.iter().all(|q| !q.slow().is_cancelled()),
            "no socket was found slow"
        );
        spent
    }
}

fn hub_deliver_with(c: &mut Criterion, name: &str, stats: &Arc<Stats>) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for (sessions, sockets) in FANOUTS {
        let mut fanout = Fanout::new(stats, sessions, sockets);
        let frame = chunk_frame(fanout.target.clone());
        let id = BenchmarkId::from_parameter(format!("{sessions}x{sockets}"));
        group.bench_function(id, |b| b.iter_custom(|iters| fanout.time(&frame, iters)));
    }
    group.finish();
}

fn hub_deliver(c: &mut Criterion) {
    hub_deliver_with(c, "hub_deliver", &noop_stats());
}

fn hub_deliver_prometheus(c: &mut Criterion) {
    hub_deliver_with(c, "hub_deliver_prometheus", &prometheus_stats());
}

/// The per-chunk-per-socket metric of the writer, and the clock read it starts with.
fn chunk_delivered(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk_delivered");
    group.throughput(Throughput::Elements(1));
    group.bench_function("now_ms", |b| b.iter(protocol::now_ms));
    let published = protocol::now_ms();
    let stats = noop_stats();
    group.bench_function("noop", |b| {
        b.iter(|| stats.chunk_delivered(black_box(published)))
    });
    let stats = prometheus_stats();
    let handle = runtime::metrics::install(None);
    // Samples pile up in the histogram until an upkeep drains them: drain between batches,
    // outside the timing (`prometheus`), or inside it (`prometheus_with_upkeep`: the whole
    // CPU cost, part of which the upkeep thread pays every 5 s in production).
    for (name, timed_upkeep) in [("prometheus", false), ("prometheus_with_upkeep", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(SAMPLES_PER_UPKEEP);
                    let start = Instant::now();
                    for _ in 0..batch {
                        stats.chunk_delivered(black_box(published));
                    }
                    if timed_upkeep {
                        handle.run_upkeep();
                        spent += start.elapsed();
                    } else {
                        spent += start.elapsed();
                        handle.run_upkeep();
                    }
                    left -= batch;
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    // The groups with a recorder come last: they install the process's recorder.
    targets = delivery_filter, hub_deliver, hub_deliver_prometheus, chunk_delivered
}
criterion_main!(benches);
