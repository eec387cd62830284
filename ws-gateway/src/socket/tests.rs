//! The socket loop without a network: its halves are channels, its backend a fake, its bus the
//! memory bus. Each test plays the client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use bus::MemoryBus;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use history::Conversation;
use protocol::rest::{CancelOutcome, ChatAccepted, ChatRequest};
use protocol::{
    ChatMessage, DomainEvent, MessageId, MessageStatus, ServerFrame, SessionId, StreamingState,
    UserId,
};
use redis_state::Recovery;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, PollSender};

use super::{
    Backend, Hub, Identity, ReadError, SocketEnv, SocketPass, TooManySockets, close_code, serve,
};
use crate::ai_client::ForwardError;
use crate::stats::recorded::Recorded;

const PATIENCE: Duration = Duration::from_secs(10);

fn sid() -> SessionId {
    SessionId::parse("s1").unwrap()
}

fn mid(id: &str) -> MessageId {
    MessageId::parse(id).unwrap()
}

fn answer(id: &str) -> ChatMessage {
    ChatMessage::started_answer(mid(id), sid(), UserId::default(), 1)
}

/// A conversation whose answer `id` is streaming, with chunks `0..=last` in its content.
fn streaming(id: &str, last: i64) -> Conversation {
    let mut message = answer(id);
    message.content = "x".repeat(usize::try_from(last + 1).unwrap_or(0));
    Conversation {
        messages: vec![message],
        streaming: Some(StreamingState {
            message_id: mid(id),
            last_index: last,
        }),
    }
}

fn chunk(id: &str, index: u32) -> Bytes {
    Bytes::from(
        ServerFrame::Message {
            data: answer(id).chunk_of(index, "w"),
        }
        .to_json(),
    )
}

fn final_frame(id: &str) -> Bytes {
    Bytes::from(
        ServerFrame::Message {
            data: answer(id).finished("done".into(), MessageStatus::Completed),
        }
        .to_json(),
    )
}

/// A backend that answers from memory and counts what it was asked.
#[derive(Clone, Default)]
struct Fake(Arc<FakeState>);

#[derive(Default)]
struct FakeState {
    /// What the next snapshot returns; `None` makes it fail.
    conversation: Mutex<Option<Conversation>>,
    snapshots: AtomicUsize,
    serving: AtomicUsize,
    stopped: AtomicUsize,
    /// Best-effort events emitted.
    emitted: Mutex<Vec<DomainEvent>>,
    /// The session's owner, when sessions are guarded (`None`: anybody's).
    owner: Mutex<Option<UserId>>,
    /// Sockets `admit` still lets in (`None`: any number).
    places: Mutex<Option<usize>>,
}

impl Fake {
    fn with(conversation: Option<Conversation>) -> Self {
        let fake = Fake::default();
        fake.set(conversation);
        fake
    }

    fn set(&self, conversation: Option<Conversation>) {
        *self
            .0
            .conversation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = conversation;
    }
}

impl Backend for Fake {
    /// `good-{user}` is a valid token of `user`.
    fn verify(&self, token: &str) -> Result<UserId, auth::AuthError> {
        token
            .strip_prefix("good-")
            .and_then(|user| UserId::parse(user).ok())
            .ok_or(auth::AuthError::Invalid)
    }

    async fn may_use(&self, user: &UserId, _: &SessionId) -> Result<bool, history::Error> {
        let owner = self.0.owner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(owner.as_ref().is_none_or(|owner| owner == user))
    }

    async fn admit(&self, _: &UserId) -> Result<SocketPass, TooManySockets> {
        let mut places = self.0.places.lock().unwrap_or_else(PoisonError::into_inner);
        match places.as_mut() {
            None => Ok(SocketPass::unlimited()),
            Some(0) => Err(TooManySockets),
            Some(n) => {
                *n -= 1;
                Ok(SocketPass::unlimited())
            }
        }
    }

    async fn conversation(&self, _: &SessionId) -> Result<Conversation, history::Error> {
        self.0.snapshots.fetch_add(1, Ordering::SeqCst);
        let current = self
            .0
            .conversation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        current.ok_or_else(|| {
            history::Error::Redis(redis_state::Error::Reply("Redis is down (fake)".into()))
        })
    }

    async fn chat(
        &self,
        request: ChatRequest,
        _: runtime::trace::TraceParent,
    ) -> Result<ChatAccepted, ForwardError> {
        Ok(ChatAccepted {
            status: "accepted".into(),
            session_id: request.session_id,
            user_message_id: mid("u-1"),
            message_id: mid("a-1"),
            node_id: "ai-fake".into(),
        })
    }

    async fn cancel(
        &self,
        _: &SessionId,
        _: &MessageId,
    ) -> Result<CancelOutcome, redis_state::Error> {
        Ok(CancelOutcome::NotFound)
    }

    async fn recover(
        &self,
        _: &SessionId,
        _: &MessageId,
        from_index: u32,
    ) -> Result<Recovery, redis_state::Error> {
        Ok(Recovery::Recovered {
            chunks: (from_index..from_index + 2)
                .map(|i| answer("a").chunk_of(i, "r"))
                .collect(),
        })
    }

    fn emit(&self, event: DomainEvent) {
        self.0
            .emitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    fn serving(&self, _: &SessionId) {
        self.0.serving.fetch_add(1, Ordering::SeqCst);
    }

    fn stopped_serving(&self, _: &SessionId) {
        self.0.stopped.fetch_add(1, Ordering::SeqCst);
    }
}

/// One socket served on channels: the test is its client.
struct Client {
    /// Frames the client sends.
    to_server: mpsc::UnboundedSender<Result<Message, ReadError>>,
    /// Frames the server wrote.
    from_server: mpsc::Receiver<Message>,
    task: JoinHandle<()>,
    hub: Arc<Hub>,
    bus: Arc<MemoryBus>,
    backend: Fake,
    stats: Recorded,
    shutdown: CancellationToken,
}

struct Options {
    backend: Fake,
    /// Frames the server may write before the client reads (the socket's buffers).
    socket_buffer: usize,
    max_pending_frames: usize,
    /// Whether the socket must authenticate with its first frame (else it is `default_user`'s).
    await_auth: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Fake::with(Some(Conversation {
                messages: vec![],
                streaming: None,
            })),
            socket_buffer: 64,
            max_pending_frames: 64,
            await_auth: false,
        }
    }
}

impl Client {
    fn connect(options: Options) -> Client {
        let (stats, recorded) = Recorded::stats();
        let stats = Arc::new(stats);
        let hub = Arc::new(Hub::new(stats.clone()));
        let bus = Arc::new(MemoryBus::new(hub.clone()));
        let shutdown = CancellationToken::new();
        let env = SocketEnv {
            node_id: Arc::from("ws-test"),
            hub: hub.clone(),
            bus: bus.clone(),
            backend: options.backend.clone(),
            max_pending_frames: options.max_pending_frames,
            max_message_bytes: 1024,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        let (server_tx, from_server) = mpsc::channel(options.socket_buffer);
        let (to_server, server_rx) = mpsc::unbounded_channel();
        let stream: BoxStream<'static, Result<Message, ReadError>> =
            futures_util::stream::unfold(server_rx, |mut rx| async move {
                rx.recv().await.map(|m| (m, rx))
            })
            .boxed();
        let identity = if options.await_auth {
            Identity::AwaitAuth
        } else {
            Identity::Known {
                user: UserId::default(),
                pass: SocketPass::unlimited(),
            }
        };
        let task = tokio::spawn(serve(
            env,
            PollSender::new(server_tx),
            stream,
            sid(),
            identity,
        ));
        Client {
            to_server,
            from_server,
            task,
            hub,
            bus,
            backend: options.backend,
            stats: recorded,
            shutdown,
        }
    }

    /// The next message the server wrote.
    async fn message(&mut self) -> Message {
        tokio::time::timeout(PATIENCE, self.from_server.recv())
            .await
            .expect("no message within the deadline")
            .expect("the server hung up without a close frame")
    }

    /// The next frame, as JSON; panics on anything but a text frame.
    async fn frame(&mut self) -> Value {
        match self.message().await {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads `welcome` and `history`.
    async fn handshake(&mut self) -> Value {
        assert_eq!(self.frame().await["type"], "welcome");
        let history = self.frame().await;
        assert_eq!(history["type"], "history");
        history
    }

    /// Skips text frames until a close frame; returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            match self.message().await {
                Message::Close(Some(frame)) => return frame.code,
                Message::Close(None) => panic!("a close frame without a code"),
                _ => {}
            }
        }
    }

    fn send(&self, text: &str) {
        self.to_server
            .send(Ok(Message::Text(Utf8Bytes::from(text))))
            .unwrap();
    }

    /// Waits for the socket task to end.
    async fn ended(mut self) -> Self {
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("the socket did not end")
            .unwrap();
        self
    }
}

/// `welcome` comes once the session is subscribed, then the snapshot as `history`.
#[tokio::test]
async fn the_handshake_subscribes_then_sends_welcome_and_history() {
    let mut client = Client::connect(Options {
        backend: Fake::with(Some(streaming("a", 2))),
        ..Options::default()
    });
    let welcome = client.frame().await;
    assert_eq!(welcome["sessionId"], "s1");
    assert_eq!(welcome["nodeId"], "ws-test");
    assert_eq!(client.bus.subscribed(), vec![sid()]);
    let history = client.frame().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["streaming"]["lastIndex"], 2);
    assert_eq!(client.backend.0.serving.load(Ordering::SeqCst), 1);
    assert_eq!(client.stats.value("gateway_sockets_open"), 1);
}

/// Live chunks the snapshot already held, and repeats, are dropped; the rest pass once each.
#[tokio::test]
async fn live_frames_already_delivered_are_dropped() {
    let mut client = Client::connect(Options {
        backend: Fake::with(Some(streaming("a", 2))),
        ..Options::default()
    });
    client.handshake().await;
    for frame in [
        chunk("a", 1),
        chunk("a", 2),
        chunk("a", 3),
        chunk("a", 3),
        chunk("a", 4),
        final_frame("a"),
        final_frame("a"),
    ] {
        client.bus.publish(&sid(), frame);
    }
    assert_eq!(client.frame().await["data"]["index"], 3);
    assert_eq!(client.frame().await["data"]["index"], 4);
    assert_eq!(client.frame().await["data"]["isComplete"], true);
    // A ping answered right after shows nothing else was queued before it.
    client.send(r#"{"type":"ping"}"#);
    assert_eq!(client.frame().await["type"], "pong");
    assert_eq!(client.stats.value("gateway_frames_deduplicated_total"), 4);
}

/// After the bus lost its connection, the socket gets a fresh `history` before any frame of
/// the next connection, and its filter starts from it: the client never sees a chunk skip.
#[tokio::test]
async fn a_lost_connection_resyncs_before_any_later_frame() {
    let mut client = Client::connect(Options {
        backend: Fake::with(Some(streaming("a", 0))),
        ..Options::default()
    });
    client.handshake().await;
    client.bus.publish(&sid(), chunk("a", 1));
    assert_eq!(client.frame().await["data"]["index"], 1);
    // Chunks 2..=8 were published while the bus was away; the new snapshot holds them. The
    // next connection delivers chunk 9 at once, before the socket had time to resync.
    client.backend.set(Some(streaming("a", 8)));
    client.bus.lose_connection();
    client.bus.publish(&sid(), chunk("a", 8));
    client.bus.publish(&sid(), chunk("a", 9));
    let history = client.frame().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["streaming"]["lastIndex"], 8);
    assert_eq!(client.frame().await["data"]["index"], 9);
    assert_eq!(client.backend.0.snapshots.load(Ordering::SeqCst), 2);
    assert_eq!(client.stats.value("gateway_resyncs_total"), 1);
}

/// A chunk that skips ahead without any reported loss is not sent: the socket resyncs from
/// the stored state, which holds it, and goes on from there.
#[tokio::test]
async fn a_chunk_that_skips_ahead_makes_the_socket_resync() {
    let mut client = Client::connect(Options {
        backend: Fake::with(Some(streaming("a", 1))),
        ..Options::default()
    });
    client.handshake().await;
    client.backend.set(Some(streaming("a", 5)));
    client.bus.publish(&sid(), chunk("a", 5));
    client.bus.publish(&sid(), chunk("a", 6));
    let history = client.frame().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["streaming"]["lastIndex"], 5);
    assert_eq!(client.frame().await["data"]["index"], 6);
    assert_eq!(client.stats.value("gateway_gaps_resynced_total"), 1);
}

/// Losses already covered by a later snapshot cost nothing more: two losses in a row give one
/// resync.
#[tokio::test]
async fn a_loss_covered_by_a_later_snapshot_is_skipped() {
    let mut client = Client::connect(Options::default());
    client.handshake().await;
    client.bus.lose_connection();
    client.bus.lose_connection();
    assert_eq!(client.frame().await["type"], "history");
    client.send(r#"{"type":"ping"}"#);
    assert_eq!(client.frame().await["type"], "pong");
    assert_eq!(client.backend.0.snapshots.load(Ordering::SeqCst), 2);
}

/// While a resync waits for the store, the socket still answers the client, and live frames
/// arriving meanwhile wait for the snapshot and go through its filter.
#[tokio::test(start_paused = true)]
async fn a_socket_keeps_answering_while_it_resyncs() {
    let mut client = Client::connect(Options {
        backend: Fake::with(Some(streaming("a", 0))),
        ..Options::default()
    });
    client.handshake().await;
    client.backend.set(None);
    client.bus.lose_connection();
    client.bus.publish(&sid(), chunk("a", 3));
    client.bus.publish(&sid(), chunk("a", 4));
    client.send(r#"{"type":"ping"}"#);
    assert_eq!(client.frame().await["type"], "pong");
    client.backend.set(Some(streaming("a", 3)));
    let history = client.frame().await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["streaming"]["lastIndex"], 3);
    assert_eq!(client.frame().await["data"]["index"], 4);
}

/// A resync whose snapshot keeps failing is retried; when the store comes back within the
/// budget the socket gets its history; when it does not, an `error UNAVAILABLE` and close
/// 1011 tell the client to reconnect. Never silently behind.
#[tokio::test(start_paused = true)]
async fn a_failing_resync_is_retried_then_closes_with_1011() {
    let mut client = Client::connect(Options::default());
    client.handshake().await;
    client.backend.set(None);
    client.bus.lose_connection();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        client.backend.0.snapshots.load(Ordering::SeqCst) > 3,
        "retried"
    );
    client.backend.set(Some(streaming("a", 2)));
    let history = client.frame().await;
    assert_eq!(history["streaming"]["lastIndex"], 2);

    client.backend.set(None);
    client.bus.lose_connection();
    // The budget runs out after 10 s; the client's own patience is counted from here.
    tokio::time::sleep(super::writer::RESYNC_BUDGET - Duration::from_secs(1)).await;
    let error = client.frame().await;
    assert_eq!(error["code"], "UNAVAILABLE");
    assert_eq!(client.close_code().await, close_code::INTERNAL_ERROR);
}

/// Bad frames get `error` frames with their codes, and the socket keeps serving: pings,
/// resumes and chats are answered.
#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_keeps_serving() {
    let mut client = Client::connect(Options::default());
    client.handshake().await;
    client
        .to_server
        .send(Ok(Message::Binary(Bytes::from_static(b"\x01"))))
        .unwrap();
    assert_eq!(client.frame().await["code"], "BINARY_NOT_SUPPORTED");
    for (text, code) in [
        ("not json".to_owned(), "INVALID_JSON"),
        (r#"{"type":"dance"}"#.to_owned(), "UNKNOWN_TYPE"),
        (
            r#"{"type":"cancel","messageId":"a:b"}"#.to_owned(),
            "INVALID_ID",
        ),
        (
            r#"{"type":"chat","message":" "}"#.to_owned(),
            "INVALID_MESSAGE",
        ),
        (
            format!(r#"{{"type":"chat","message":"{}"}}"#, "a".repeat(2000)),
            "TOO_LARGE",
        ),
    ] {
        client.send(&text);
        let error = client.frame().await;
        assert_eq!(error["type"], "error", "{text}");
        assert_eq!(error["code"], code, "{text}");
    }
    client.send(r#"{"type":"cancel","messageId":"gone"}"#);
    let not_found = client.frame().await;
    assert_eq!(
        (not_found["code"].clone(), not_found["messageId"].clone()),
        ("NOT_FOUND".into(), "gone".into())
    );
    client.send(r#"{"type":"resume","messageId":"a","fromIndex":3}"#);
    let recovery = client.frame().await;
    assert_eq!(recovery["status"], "RECOVERED");
    assert_eq!(recovery["chunks"][1]["index"], 4);
    let emitted = client.backend.0.emitted.lock().unwrap().clone();
    assert_eq!(emitted.len(), 1, "a recovery attempt is an event");
    assert_eq!(
        emitted[0].details,
        protocol::EventDetails::RecoveryAttempt {
            from_index: 3,
            status: protocol::RecoveryStatus::Recovered
        }
    );
    // What a recovery delivered is not delivered again live.
    client.bus.publish(&sid(), chunk("a", 4));
    client.bus.publish(&sid(), chunk("a", 5));
    assert_eq!(client.frame().await["data"]["index"], 5);
    client.send(r#"{"type":"chat","message":"hello"}"#);
    let accepted = client.frame().await;
    assert_eq!(accepted["type"], "accepted");
    assert_eq!(accepted["messageId"], "a-1");
}

/// A socket that stops reading is closed with 1013 once its queue fills, and leaves the hub.
#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013() {
    let mut client = Client::connect(Options {
        socket_buffer: 1,
        max_pending_frames: 4,
        ..Options::default()
    });
    client.handshake().await;
    // The client reads nothing more: one frame fills its socket, four its queue.
    for i in 0..20 {
        client.bus.publish(&sid(), chunk("a", i));
    }
    assert_eq!(client.close_code().await, close_code::TRY_AGAIN_LATER);
    let client = client.ended().await;
    assert_eq!(client.stats.value("gateway_slow_consumers_total"), 1);
    assert_eq!(client.hub.session_count(), 0);
    assert!(client.bus.subscribed().is_empty());
    assert_eq!(client.backend.0.stopped.load(Ordering::SeqCst), 1);
}

/// A node shutting down closes its sockets with 1012 (service restart).
#[tokio::test]
async fn shutdown_closes_with_1012() {
    let mut client = Client::connect(Options::default());
    client.handshake().await;
    client.shutdown.cancel();
    assert_eq!(client.close_code().await, close_code::SERVICE_RESTART);
    let client = client.ended().await;
    assert_eq!(client.stats.value("gateway_sockets_open"), 0);
}

/// When the snapshot cannot be read, the client is told so and the socket closes with 1011.
#[tokio::test]
async fn a_failed_snapshot_closes_with_1011_after_an_error_frame() {
    let mut client = Client::connect(Options {
        backend: Fake::with(None),
        ..Options::default()
    });
    assert_eq!(client.frame().await["type"], "welcome");
    let error = client.frame().await;
    assert_eq!(error["code"], "UNAVAILABLE");
    assert_eq!(client.close_code().await, close_code::INTERNAL_ERROR);
    let client = client.ended().await;
    assert_eq!(client.stats.value("gateway_sockets_total"), 0);
    assert_eq!(client.hub.session_count(), 0);
}

/// A client that leaves during the handshake ends its socket quietly: no error frame, no
/// close frame, nothing left in the hub.
#[tokio::test]
async fn a_client_gone_during_the_handshake_ends_quietly() {
    let client = Client::connect(Options::default());
    let Client {
        from_server,
        to_server,
        task,
        hub,
        bus,
        stats,
        ..
    } = client;
    drop(from_server);
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    drop(to_server);
    assert_eq!(hub.session_count(), 0);
    assert!(bus.subscribed().is_empty());
    assert_eq!(stats.value("gateway_sockets_total"), 0);
}

/// A client's close frame ends the socket; the node's last socket of the session releases it.
#[tokio::test]
async fn the_clients_close_ends_the_socket() {
    let mut client = Client::connect(Options::default());
    client.handshake().await;
    client.to_server.send(Ok(Message::Close(None))).unwrap();
    let client = client.ended().await;
    assert_eq!(client.hub.session_count(), 0);
    assert_eq!(client.backend.0.stopped.load(Ordering::SeqCst), 1);
    assert_eq!(client.stats.value("gateway_sockets_open"), 0);
}

fn must_authenticate(backend: Fake) -> Options {
    Options {
        backend,
        await_auth: true,
        ..Options::default()
    }
}

/// A socket that must authenticate gets nothing until its `auth` frame is accepted; then the
/// usual handshake.
#[tokio::test]
async fn a_valid_auth_frame_opens_the_socket_and_nothing_comes_before_it() {
    let mut client = Client::connect(must_authenticate(Options::default().backend));
    client.bus.publish(&sid(), chunk("a", 0));
    assert!(
        client.from_server.try_recv().is_err(),
        "nothing before the auth frame"
    );
    assert!(client.bus.subscribed().is_empty(), "not even subscribed");
    client.send(r#"{"type":"auth","token":"good-alice"}"#);
    client.handshake().await;
    assert_eq!(client.bus.subscribed(), vec![sid()]);
}

/// A socket that must authenticate is closed with 4401 for a bad token, a first frame that is
/// not `auth`, or silence for 5 s; with 4403 for another user's session; with 4429 when its
/// user has no socket to spare. It never gets a frame of the session.
#[tokio::test(start_paused = true)]
async fn a_socket_without_valid_auth_is_closed_with_its_reason() {
    for first in [
        Some(r#"{"type":"auth","token":"forged"}"#),
        Some(r#"{"type":"ping"}"#),
        Some("not json"),
        None,
    ] {
        let mut client = Client::connect(must_authenticate(Options::default().backend));
        if let Some(first) = first {
            client.send(first);
        }
        assert_eq!(
            client.close_code().await,
            close_code::UNAUTHORIZED,
            "{first:?}"
        );
        let client = client.ended().await;
        assert!(client.bus.subscribed().is_empty());
    }
    let backend = Options::default().backend;
    *backend.0.owner.lock().unwrap() = Some(UserId::parse("bob").unwrap());
    let mut client = Client::connect(must_authenticate(backend));
    client.send(r#"{"type":"auth","token":"good-alice"}"#);
    assert_eq!(client.close_code().await, close_code::FORBIDDEN);
    let backend = Options::default().backend;
    *backend.0.places.lock().unwrap() = Some(0);
    let mut client = Client::connect(must_authenticate(backend));
    client.send(r#"{"type":"auth","token":"good-alice"}"#);
    assert_eq!(client.close_code().await, close_code::TOO_MANY_SOCKETS);
    assert_eq!(client.backend.0.snapshots.load(Ordering::SeqCst), 0);
}

/// A frame above the hard limit gets a 1009 close, after what was already queued.
#[tokio::test]
async fn a_frame_too_big_to_read_is_closed_with_1009() {
    let mut client = Client::connect(Options::default());
    client.handshake().await;
    client.to_server.send(Err(ReadError::TooBig)).unwrap();
    assert_eq!(client.close_code().await, close_code::MESSAGE_TOO_BIG);
    let client = client.ended().await;
    assert_eq!(client.hub.session_count(), 0);
}
