//! Faults that must lose nothing: the gateway's pub/sub connection killed again and again
//! while many sessions are subscribed and some stream, and Redis cutting a subscriber whose
//! output buffer overflowed. Every socket's frames are checked against the delivery
//! guarantee (`e2e::sequence`).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::{Duration, Instant};

use e2e::{Cluster, ClusterOptions, Json, Recording, Stack, StackOptions, WsClient, api, sequence};
use futures_util::future::join_all;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

/// A socket on `url` recording everything from its `welcome`, once its `history` arrived
/// (the session is subscribed from then on).
async fn open_recorded(url: &str) -> Recording {
    let rec = WsClient::connect(url).await.record();
    wait_until("the history frame", Duration::from_secs(15), || {
        rec.has(|f| f["type"] == "history")
    })
    .await;
    rec
}

/// Opens `count` recorded sockets on the sessions `{prefix}-{i}`, `batch` at a time.
async fn open_many(stack: &Stack, prefix: &str, count: usize, batch: usize) -> Vec<Recording> {
    let mut out = Vec::with_capacity(count);
    for start in (0..count).step_by(batch) {
        let opened = join_all((start..(start + batch).min(count)).map(|i| {
            let url = stack.ws_url(0, &format!("{prefix}-{i}"));
            async move { open_recorded(&url).await }
        }))
        .await;
        out.extend(opened);
    }
    out
}

/// Kills every pub/sub connection of the stack's Redis at random intervals in `range_ms`
/// until `stop`; returns how many kills hit a connection.
fn kill_pubsub_repeatedly(
    stack: &Stack,
    range_ms: (u64, u64),
    stop: CancellationToken,
) -> tokio::task::JoinHandle<u32> {
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let seed: u64 = rand::rng().random();
    println!("pub/sub killer seed {seed}");
    tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut kills = 0;
        loop {
            let pause = Duration::from_millis(rng.random_range(range_ms.0..=range_ms.1));
            tokio::select! {
                () = stop.cancelled() => return kills,
                () = tokio::time::sleep(pause) => {}
            }
            let killed: u32 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut conn)
                .await
                .unwrap();
            kills += u32::from(killed > 0);
        }
    })
}

/// Starts a long answer in session `{prefix}-{i}` of each socket `i`; returns each socket with
/// the id of its answer.
async fn start_answers(
    stack: &Stack,
    prefix: &str,
    sockets: Vec<Recording>,
) -> Vec<(Recording, String)> {
    let mut out = Vec::with_capacity(sockets.len());
    for (i, rec) in sockets.into_iter().enumerate() {
        let session = format!("{prefix}-{i}");
        let accepted =
            api::chat(&stack.gateway(0), &session, "Give me a technical deep dive").await;
        out.push((rec, accepted["message_id"].as_str().unwrap().to_owned()));
    }
    out
}

/// Waits until every recording in `streaming` has seen the final message of its answer.
async fn wait_for_finals(streaming: &[(Recording, String)], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let pending = streaming
            .iter()
            .filter(|(rec, id)| !rec.has(|f| is_final_of(f, id)))
            .count();
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} answers never ended on their socket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_final_of(frame: &Json, id: &str) -> bool {
    (frame["type"] == "message"
        && frame["data"]["messageId"] == id
        && frame["data"]["isComplete"] == true)
        || (frame["type"] == "history"
            && frame["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["messageId"] == id && m["isComplete"] == true))
}

/// Checks every socket: no violation; each streaming socket saw its answer end as stored;
/// idle sockets never got a chunk. Returns the resyncs seen (history frames beyond the first).
async fn check_all(
    stack: &Stack,
    streaming: Vec<(Recording, String)>,
    idle: Vec<Recording>,
    prefix: &str,
) -> usize {
    let mut resyncs = 0;
    for (i, (rec, id)) in streaming.into_iter().enumerate() {
        let frames = rec.stop().await;
        let checked = sequence::check(&frames);
        assert!(
            checked.violations.is_empty(),
            "streaming socket {i}: {:?}",
            checked.violations
        );
        let session = format!("{prefix}-{i}");
        let stored = api::get_json(&format!("{}/api/history/{session}", stack.gateway(0))).await;
        let answer = stored["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["messageId"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not in history: {stored}"));
        let seen = &checked.ended[&id];
        assert_eq!(seen.status, "completed");
        assert_eq!(
            seen.content,
            answer["content"].as_str().unwrap(),
            "socket {i} shows the stored text"
        );
        resyncs += checked.histories - 1;
    }
    for (i, rec) in idle.into_iter().enumerate() {
        let checked = sequence::check(&rec.stop().await);
        assert!(
            checked.violations.is_empty(),
            "idle socket {i}: {:?}",
            checked.violations
        );
        assert_eq!(checked.chunks, 0, "idle socket {i} got chunks");
        resyncs += checked.histories - 1;
    }
    resyncs
}

/// More than 1,500 subscribed sessions on one gateway, 20 of them streaming, while every
/// pub/sub connection is killed every 50–300 ms: every socket's frames are gapless and
/// duplicate-free, and each answer's text is the stored final message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_pubsub_kills_never_skip_or_repeat_a_chunk() {
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 8,
        ..StackOptions::default()
    })
    .await;
    let idle = open_many(&stack, "kill-idle", 1500, 100).await;
    let streaming_sockets = open_many(&stack, "kill-live", 20, 20).await;

    let stop = CancellationToken::new();
    let killer = kill_pubsub_repeatedly(&stack, (50, 300), stop.clone());
    let streaming = start_answers(&stack, "kill-live", streaming_sockets).await;
    wait_for_finals(&streaming, Duration::from_secs(120)).await;
    stop.cancel();
    let kills = killer.await.unwrap();
    assert!(kills >= 5, "only {kills} kills while streaming");
    let resyncs = check_all(&stack, streaming, idle, "kill-live").await;
    println!("{kills} pub/sub kills, {resyncs} resyncs over 1,520 sockets");
    assert!(resyncs > 0);
}

/// Redis cuts a subscriber whose output buffer passes `client-output-buffer-limit pubsub`:
/// with a tiny limit and a flood of published frames, the gateway is cut again and again,
/// and still no socket is sent a chunk out of sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_subscriber_cut_by_redis_loses_nothing() {
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 5,
        ..StackOptions::default()
    })
    .await;
    let mut conn = stack.redis().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("pubsub 64kb 32kb 1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let idle = open_many(&stack, "flood-idle", 50, 50).await;
    let streaming_sockets = open_many(&stack, "flood-live", 10, 10).await;

    // The flood: 256 KiB frames the sockets ignore, in pipelined bursts on the idle sessions,
    // more than the kernel's socket buffers hold.
    let stop = CancellationToken::new();
    let flooder = tokio::spawn({
        let stop = stop.clone();
        let mut conn = conn.clone();
        async move {
            let pad = "x".repeat(256 * 1024);
            let frame = serde_json::json!({"type": "flood", "pad": pad}).to_string();
            let mut bursts = 0u32;
            while !stop.is_cancelled() {
                let mut pipe = redis::pipe();
                for i in 0..32 {
                    pipe.cmd("PUBLISH")
                        .arg(format!("chat:stream:{{flood-idle-{}}}", i % 50))
                        .arg(&frame)
                        .ignore();
                }
                let _: () = pipe.query_async(&mut conn).await.unwrap();
                bursts += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bursts
        }
    });
    let streaming = start_answers(&stack, "flood-live", streaming_sockets).await;
    wait_for_finals(&streaming, Duration::from_secs(120)).await;
    stop.cancel();
    flooder.await.unwrap();
    // Nothing else cuts connections here: every resync is Redis dropping the subscriber.
    let cut = api::metric(&stack.gateway(0), "gateway_resyncs_total").await;
    assert!(cut > 0, "Redis never cut the subscriber");
    let resyncs = check_all(&stack, streaming, idle, "flood-live").await;
    println!("{resyncs} resyncs seen by the sockets after Redis cut the subscriber");
}

/// A producer frozen (SIGSTOP) past its lease is fenced: its answer is failed by another
/// node's reaper; once thawed (SIGCONT) the node stops that stream quietly (logged), no frame
/// of the answer reaches any socket after its final, history and SQL hold it `failed` exactly
/// once, and the session takes new chats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_producer_stays_fenced_after_its_answer_failed() {
    let lease = Duration::from_secs(3);
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 2,
        gateways: 2,
        stream_delay_ms: 50,
        lease_secs: lease.as_secs(),
        ..ClusterOptions::default()
    })
    .await;
    let session = "zombie";
    let sockets: Vec<Recording> = join_all((0..2).map(|g| {
        let url = cluster.ws_url(g, session);
        async move { open_recorded(&url).await }
    }))
    .await;
    let accepted = api::chat(
        &cluster.gateway(0),
        session,
        "Give me a technical deep dive",
    )
    .await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let producer = accepted["node_id"].as_str().unwrap().to_owned();
    wait_until("5 chunks on every socket", Duration::from_secs(20), || {
        sockets
            .iter()
            .all(|s| s.has(|f| f["data"]["messageId"] == id.as_str() && f["data"]["index"] == 5))
    })
    .await;

    let zombie = &cluster.ai[Cluster::index_of(&cluster.ai, &producer)];
    zombie.freeze();
    let frozen = Instant::now();
    wait_until(
        "the answer failed on every socket",
        lease + Duration::from_secs(5),
        || sockets.iter().all(|s| s.has(|f| is_final_of(f, &id))),
    )
    .await;
    println!("failed {:?} after the freeze", frozen.elapsed());
    zombie.thaw();
    wait_until(
        "the woken node to stop the stream",
        Duration::from_secs(10),
        || {
            cluster
                .log_of(&producer)
                .contains("stream lease lost (fenced)")
        },
    )
    .await;
    // Time for anything the woken node still had in hand to arrive, if it could.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let again = api::chat(&cluster.gateway(1), session, "hello").await;
    let next = again["message_id"].as_str().unwrap().to_owned();
    wait_until(
        "the next answer on every socket",
        Duration::from_secs(30),
        || sockets.iter().all(|s| s.has(|f| is_final_of(f, &next))),
    )
    .await;

    for (g, socket) in sockets.into_iter().enumerate() {
        let checked = sequence::check(&socket.stop().await);
        assert!(
            checked.violations.is_empty(),
            "gateway {g}: {:?}",
            checked.violations
        );
        assert_eq!(checked.ended[&id].status, "failed");
        assert_eq!(checked.ended[&next].status, "completed");
    }
    let stored = api::get_json(&format!("{}/api/history/{session}", cluster.gateway(0))).await;
    let copies: Vec<&Json> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["messageId"] == id.as_str())
        .collect();
    assert_eq!(copies.len(), 1, "{stored}");
    assert_eq!(copies[0]["status"], "failed");
    let store = store::Store::connect(&cluster.database_url())
        .await
        .unwrap();
    let in_sql = wait_for_sql(&store, session, 4).await;
    let rows: Vec<_> = in_sql
        .iter()
        .filter(|m| m.message_id.as_str() == id)
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, protocol::MessageStatus::Failed);
}

/// `GET /api/history/{session}` once `done` holds of it, or as it is after `limit`.
async fn history_once(
    base: &str,
    session: &str,
    limit: Duration,
    done: impl Fn(&Json) -> bool,
) -> Json {
    let deadline = Instant::now() + limit;
    loop {
        let history = api::get_json(&format!("{base}/api/history/{session}")).await;
        if done(&history) || Instant::now() > deadline {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session's messages in SQL once it holds `count` complete ones (the writes of record
/// are queued), or panics after 10 s.
async fn wait_for_sql(
    store: &store::Store,
    session: &str,
    count: usize,
) -> Vec<protocol::ChatMessage> {
    let session = protocol::SessionId::parse(session).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages = store.history(&session).await.unwrap();
        if messages.iter().filter(|m| m.is_complete).count() >= count {
            return messages;
        }
        assert!(Instant::now() < deadline, "SQL holds {messages:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SQL is off the delivery path. With PostgreSQL stopped for 15 s, new conversations open
/// their sockets at once, stream and read their history from Redis, and `/health` stays 200
/// with `db: down`; a chat in an old session Redis had forgotten streams too. Once PostgreSQL
/// is back, every message reaches SQL (the writes of record waited in their queue), the old
/// session's stored history is merged back in front of the new exchange, and after a Redis
/// FLUSHALL every history is read back whole from SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_go_on_while_postgres_is_down_and_nothing_is_lost() {
    let mut postgres = testkit::PostgresServer::start();
    let stack = Stack::start(StackOptions {
        database_url: Some(postgres.url()),
        stream_delay_ms: 5,
        ..StackOptions::default()
    })
    .await;
    let base = stack.gateway(0);
    // An old session whose Redis copy then expires (history and owner gone; SQL has them).
    let old = "pg-old";
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, old)).await;
    let first = api::chat(&base, old, "hello").await;
    ws.answer(old, first["message_id"].as_str().unwrap()).await;
    ws.close().await;
    let store = store::Store::connect(&postgres.url()).await.unwrap();
    wait_for_sql(&store, old, 2).await;
    drop(store);
    let mut redis = stack.redis().await;
    redis::cmd("DEL")
        .arg(format!("chat:history:{{{old}}}"))
        .arg(format!("session:user:{{{old}}}"))
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    postgres.stop();
    let stopped = Instant::now();
    let (status, health) = api::get(&format!("{base}/health")).await;
    assert_eq!(
        (status, &health["status"]),
        (200, &Json::from("ok")),
        "{health}"
    );
    assert!(
        health["components"]["db"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{health}"
    );

    let mut sessions = Vec::new();
    let mut sessions_at_all = vec![old.to_owned()];
    // The old session first, then new conversations one after another for 15 s.
    for i in 0.. {
        let session = if i == 0 {
            old.to_owned()
        } else {
            format!("pg-new-{i}")
        };
        if i > 0 && stopped.elapsed() >= Duration::from_secs(15) {
            break;
        }
        let opening = Instant::now();
        let (ws, _, history) = WsClient::open(&stack.ws_url(0, &session)).await;
        let opened = opening.elapsed();
        assert!(
            opened < Duration::from_secs(2),
            "socket of {session} took {opened:?} to open"
        );
        assert_eq!(
            history["messages"].as_array().unwrap().len(),
            0,
            "{history}"
        );
        let rec = ws.record();
        let accepted = api::chat(&base, &session, "hello").await;
        let id = accepted["message_id"].as_str().unwrap().to_owned();
        wait_until("the answer", Duration::from_secs(20), || {
            rec.has(|f| is_final_of(f, &id))
        })
        .await;
        let checked = sequence::check(&rec.stop().await);
        assert!(
            checked.violations.is_empty(),
            "{session}: {:?}",
            checked.violations
        );
        assert_eq!(checked.ended[&id].status, "completed");
        let stored = api::get_json(&format!("{base}/api/history/{session}")).await;
        assert_eq!(
            stored["count"], 2,
            "history of {session} from Redis: {stored}"
        );
        if i == 0 {
            let marked: bool = redis::cmd("EXISTS")
                .arg(format!("chat:unmerged:{{{old}}}"))
                .query_async(&mut redis)
                .await
                .unwrap();
            assert!(
                marked,
                "a chat in a session Redis forgot is marked for a merge"
            );
        } else {
            sessions_at_all.push(session.clone());
        }
        sessions.push((session, accepted));
    }
    println!("{} conversations while PostgreSQL was down", sessions.len());
    let health = api::get_json(&format!("{base}/health")).await;
    assert!(
        health["components"]["db"]
            .as_str()
            .unwrap()
            .contains("writes queued"),
        "{health}"
    );

    postgres.start_again();
    let store = store::Store::connect(&postgres.url()).await.unwrap();
    wait_for_sql(&store, old, 4).await;
    for (session, _) in &sessions[1..] {
        wait_for_sql(&store, session, 2).await;
    }
    // The old session: its stored exchange is merged in front of the new one by the first
    // read that reaches SQL (reads skip SQL for SQL_RETRY_AFTER after a failed one).
    let merged = history_once(&base, old, Duration::from_secs(10), |h| h["count"] == 4).await;
    let ids: Vec<&str> = merged["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap())
        .collect();
    let expected = [
        first["user_message_id"].as_str().unwrap(),
        first["message_id"].as_str().unwrap(),
        sessions[0].1["user_message_id"].as_str().unwrap(),
        sessions[0].1["message_id"].as_str().unwrap(),
    ];
    assert_eq!(ids, expected, "{merged}");

    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    for session in &sessions_at_all {
        let stored = api::get_json(&format!("{base}/api/history/{session}")).await;
        let expected = if session == old { 4 } else { 2 };
        assert_eq!(
            stored["count"], expected,
            "{session} after FLUSHALL: {stored}"
        );
        assert!(
            stored["messages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["status"] == "completed")
        );
    }
    let health = api::get_json(&format!("{base}/health")).await;
    assert_eq!(health["components"]["db"], "up", "{health}");
}

/// A SQLite file that cannot be written (another process holds its write lock past the
/// nodes' 10 s busy timeout): chats stream and history reads from Redis; the writes of
/// record wait and are retried, and once the lock goes every message is in SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_file_delays_the_writes_of_record_and_loses_none() {
    use sqlx::Connection;
    let stack = Stack::start(StackOptions {
        stream_delay_ms: 5,
        ..StackOptions::default()
    })
    .await;
    let base = stack.gateway(0);
    let path = stack.data_dir.path().join("chat.db");
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let locked = Instant::now();
    let mut sessions = Vec::new();
    for i in 0..3 {
        let session = format!("lock-{i}");
        let rec = open_recorded(&stack.ws_url(0, &session)).await;
        let accepted = api::chat(&base, &session, "hello").await;
        let id = accepted["message_id"].as_str().unwrap().to_owned();
        wait_until("the answer", Duration::from_secs(20), || {
            rec.has(|f| is_final_of(f, &id))
        })
        .await;
        assert!(sequence::check(&rec.stop().await).violations.is_empty());
        let stored = api::get_json(&format!("{base}/api/history/{session}")).await;
        assert_eq!(stored["count"], 2);
        sessions.push(session);
    }
    // Past the busy timeout, so that writes have failed and are being retried.
    while locked.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, health) = api::get(&format!("{}/health", stack.ai[0].url())).await;
    assert_eq!(status, 200, "{health}");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    drop(locker);

    let store = store::Store::connect(&stack.database_url()).await.unwrap();
    for session in &sessions {
        wait_for_sql(&store, session, 2).await;
    }
    let mut redis = stack.redis().await;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    for session in &sessions {
        let stored = api::get_json(&format!("{base}/api/history/{session}")).await;
        assert_eq!(stored["count"], 2, "{session} after FLUSHALL: {stored}");
    }
}

/// Redis down for 10 s: a chat is refused with 503 `UNAVAILABLE` quickly (within 2 s),
/// `/health` turns 503, the answer that was streaming ends (failed or completed) once Redis is
/// back, stored once and whole, and the node serves chats again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_ten_seconds_refuses_chats_quickly_and_ends_the_running_answer() {
    let mut stack = Stack::start(StackOptions {
        stream_delay_ms: 50,
        persistent_redis: true,
        ..StackOptions::default()
    })
    .await;
    let base = stack.gateway(0);
    let session = "redis-down";
    let rec = open_recorded(&stack.ws_url(0, session)).await;
    let accepted = api::chat(&base, session, "Give me a technical deep dive").await;
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    wait_until("5 chunks", Duration::from_secs(10), || {
        rec.has(|f| f["data"]["messageId"] == id.as_str() && f["data"]["index"] == 5)
    })
    .await;

    stack.redis.stop();
    let down = Instant::now();
    let asked = Instant::now();
    let (status, body) = api::try_chat_as(&base, "redis-down-new", "hello", "tester").await;
    let took = asked.elapsed();
    assert_eq!(
        (status, &body["code"]),
        (503, &Json::from("UNAVAILABLE")),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(2),
        "a chat with Redis down took {took:?}"
    );
    let asked = Instant::now();
    let (status, health) = api::get(&format!("{base}/health")).await;
    assert_eq!(status, 503, "{health}");
    assert!(asked.elapsed() < Duration::from_secs(2));
    while down.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.redis.restart();

    // The socket stayed open, or was closed (1011) and a new one sees the ended answer.
    let ended = |frames: &[Json]| frames.iter().any(|f| is_final_of(f, &id));
    let deadline = Instant::now() + Duration::from_secs(30);
    let closed = loop {
        let closed = rec.closed();
        if ended(&rec.frames()) || closed.is_some() || Instant::now() > deadline {
            break closed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut frames = rec.stop().await;
    let checked = sequence::check(&frames);
    assert!(checked.violations.is_empty(), "{:?}", checked.violations);
    if !ended(&frames) {
        println!("the socket closed with {closed:?}; reconnecting");
        let deadline = Instant::now() + Duration::from_secs(30);
        frames = loop {
            let (ws, _, history) = WsClient::open(&stack.ws_url(0, session)).await;
            if is_final_of(&history, &id) || Instant::now() > deadline {
                ws.close().await;
                break vec![history];
            }
            ws.close().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(ended(&frames), "the answer never ended: {frames:?}");
    }
    let stored = api::get_json(&format!("{base}/api/history/{session}")).await;
    let copies: Vec<&Json> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["messageId"] == id.as_str())
        .collect();
    assert_eq!(copies.len(), 1, "{stored}");
    let status = copies[0]["status"].as_str().unwrap();
    assert!(["failed", "completed"].contains(&status), "{stored}");
    // Whole: the stored text is what its chunks spelled.
    let seen = sequence::check(&frames).ended[&id].clone();
    assert_eq!(seen.content, copies[0]["content"].as_str().unwrap());

    let deadline = Instant::now() + Duration::from_secs(10);
    while api::get(&format!("{base}/health")).await.0 != 200 {
        assert!(Instant::now() < deadline, "health never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rec = open_recorded(&stack.ws_url(0, "redis-back")).await;
    let next = api::chat(&base, "redis-back", "hello").await;
    let next = next["message_id"].as_str().unwrap().to_owned();
    wait_until(
        "a chat after Redis came back",
        Duration::from_secs(20),
        || rec.has(|f| is_final_of(f, &next)),
    )
    .await;
}

/// A forward that times out on a stalled AI node (SIGSTOP) is never retried on another node:
/// the client gets 503, no second answer starts elsewhere, and the session holds at most the
/// one answer the stalled node starts once it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_forward_is_not_retried_on_another_node() {
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 2,
        gateways: 1,
        stream_delay_ms: 5,
        env: vec![("AI_REQUEST_TIMEOUT_MS", "1000".into())],
        ..ClusterOptions::default()
    })
    .await;
    let base = cluster.gateway(0);
    let stalled = &cluster.ai[0];
    stalled.freeze();
    // Round robin: within two chats, one is sent to the stalled node first.
    let mut timed_out = None;
    for i in 0..2 {
        let session = format!("stall-{i}");
        let (status, body) = api::try_chat_as(&base, &session, "hello", "tester").await;
        match status {
            202 => assert_ne!(body["node_id"], stalled.name.as_str()),
            503 => {
                assert_eq!(body["code"], "AI_UNAVAILABLE", "{body}");
                timed_out = Some(session);
            }
            other => panic!("chat answered {other}: {body}"),
        }
    }
    let session = timed_out.expect("no chat went to the stalled node first");
    let failovers = api::metric(&base, "gateway_ai_failovers_total").await;
    assert_eq!(failovers, 0, "a timed-out chat was retried on another node");
    let history = api::get_json(&format!("{base}/api/history/{session}")).await;
    assert_eq!(
        history["count"], 0,
        "an answer started elsewhere: {history}"
    );

    stalled.thaw();
    // The stalled node may still start the answer it was sent; there is never a second one.
    // Once it answers again, the session takes a new chat, and every question in its history
    // has exactly one answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = loop {
        let (status, body) = api::try_chat_as(&base, &session, "hello again", "tester").await;
        if status == 202 {
            break body["message_id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the session never took a chat again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let history = history_once(&base, &session, Duration::from_secs(20), |h| {
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["messageId"] == next.as_str() && m["isComplete"] == true)
    })
    .await;
    let roles: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert!(
        roles == ["user", "assistant"] || roles == ["user", "assistant", "user", "assistant"],
        "{history}"
    );
}

/// An AI node that answers 5xx (a real node whose Redis is gone answers 503) and a URL that
/// refuses connections are passed over: every chat is answered by a working node, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_refusing_ai_node_is_passed_over() {
    let mut lost_redis = testkit::RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let env = std::collections::HashMap::from([
        ("REDIS_URL".to_owned(), lost_redis.url()),
        (
            "DATABASE_URL".to_owned(),
            format!("sqlite://{}/chat.db", data.path().display()),
        ),
    ]);
    let failing = testkit::Service::start("ai-failing", "ai-service", &env);
    lost_redis.kill();
    let refusing = format!("http://127.0.0.1:{}", testkit::free_port());
    let cluster = Cluster::start(ClusterOptions {
        ai_nodes: 1,
        gateways: 1,
        stream_delay_ms: 1,
        extra_ai_urls: vec![failing.url(), refusing],
        ..ClusterOptions::default()
    })
    .await;
    let base = cluster.gateway(0);
    let (status, body) = api::post_json(
        &format!("{}/chat", failing.url()),
        serde_json::json!({"session_id": "probe", "message": "hello"}),
    )
    .await;
    assert_eq!(status, 503, "the failing node answers 5xx: {body}");
    for i in 0..6 {
        let session = format!("pass-over-{i}");
        let accepted = api::chat(&base, &session, "hello").await;
        assert_eq!(accepted["node_id"], "ai-node-1");
        let rec = open_recorded(&cluster.ws_url(0, &session)).await;
        let id = accepted["message_id"].as_str().unwrap().to_owned();
        wait_until("the answer", Duration::from_secs(20), || {
            rec.has(|f| is_final_of(f, &id))
        })
        .await;
        let history = api::get_json(&format!("{base}/api/history/{session}")).await;
        assert_eq!(history["count"], 2, "{history}");
    }
    let failovers = api::metric(&base, "gateway_ai_failovers_total").await;
    assert!(failovers >= 6, "only {failovers} failovers");
}
