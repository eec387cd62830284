//! The Redis state scripts against a real `redis-server`, and against a real Redis Cluster of
//! three masters and three replicas: every case runs on a single Redis of its own, and all of
//! them in turn on one cluster (flushed between cases), so the scripts are shown to keep each
//! session on one slot and to work with sharded pub/sub and per-slot deadline sets.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use protocol::{
    ChatMessage, MessageId, MessageStatus, Role, SessionId, UserId, rest::CancelOutcome,
};
use redis_state::RedisTarget;
use redis_state::{ChatState, ChunkOutcome, HistoryCheck, Recovery, StartOutcome, StreamHandle};

fn message(session: &SessionId, role: Role, content: &str) -> ChatMessage {
    ChatMessage {
        message_id: MessageId::random(),
        session_id: session.clone(),
        user_id: UserId::parse("u1").unwrap(),
        role,
        content: content.into(),
        timestamp: protocol::now_ms(),
        is_complete: role == Role::User,
        status: if role == Role::User {
            MessageStatus::Completed
        } else {
            MessageStatus::Streaming
        },
        index: None,
        chunk: None,
        metadata: None,
    }
}

async fn start(state: &ChatState, session: &SessionId) -> StreamHandle {
    start_with_lease(state, session, 10).await
}

async fn start_with_lease(state: &ChatState, session: &SessionId, lease: u64) -> StreamHandle {
    let user = message(session, Role::User, "hello");
    let answer = message(session, Role::Assistant, "");
    match state
        .start_stream(session, &user, answer, lease, HistoryCheck::Refilled, false)
        .await
        .unwrap()
    {
        StartOutcome::Started(handle) => handle,
        busy => panic!("not started: {busy:?}"),
    }
}

/// A second stream in a busy session is refused with the active answer's id.
async fn second_stream_in_a_session_is_busy(state: ChatState) {
    let sid = SessionId::parse("s1").unwrap();
    let first = start(&state, &sid).await;
    let user = message(&sid, Role::User, "again");
    let outcome = state
        .start_stream(
            &sid,
            &user,
            message(&sid, Role::Assistant, ""),
            10,
            HistoryCheck::Refilled,
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        StartOutcome::Busy {
            active_message_id: first.message.clone()
        }
    );
    // The refused user message was not stored.
    let snap = state.snapshot(&sid).await.unwrap();
    assert_eq!(snap.history.len(), 1);
}

/// A snapshot mid-stream shows the partial answer and its last index; after the end, history.
async fn snapshot_shows_partial_answer_then_final_history(state: ChatState) {
    let sid = SessionId::parse("s1").unwrap();
    let stream = start(&state, &sid).await;
    let empty = state.snapshot(&sid).await.unwrap();
    assert_eq!(empty.streaming.as_ref().unwrap().last_index, -1);
    for (i, delta) in ["Hi", " there", "!"].iter().enumerate() {
        let outcome = state
            .append_chunk(&stream, i as u32, delta, Some(10))
            .await
            .unwrap();
        assert_eq!(outcome, ChunkOutcome::Appended);
    }
    // A retried index is harmless and appends nothing.
    assert_eq!(
        state.append_chunk(&stream, 2, "!", Some(10)).await.unwrap(),
        ChunkOutcome::Appended
    );
    // So is an index past the next one (a gap): refused, and it appends nothing either.
    assert!(state.append_chunk(&stream, 4, "?", Some(10)).await.is_err());
    let snapshot = state.snapshot(&sid).await.unwrap();
    let mut messages = snapshot.history;
    let streaming = snapshot.streaming.map(|f| f.append_to(&mut messages));
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].content, "Hi there!");
    assert!(!messages[1].is_complete);
    assert_eq!(streaming.unwrap().last_index, 2);

    // The start was the session's change 1; the end is change 2.
    assert_eq!(stream.change, 1);
    assert_eq!(
        state
            .finish_stream(&stream, "Hi there!".into(), MessageStatus::Completed)
            .await
            .unwrap(),
        Some(2)
    );
    // Finishing twice (a retry) changes nothing, and answers as the first time.
    assert_eq!(
        state
            .finish_stream(&stream, "Hi there!".into(), MessageStatus::Completed)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(state.next_change(&sid).await.unwrap(), 3);
    let snap = state.snapshot(&sid).await.unwrap();
    assert!(snap.streaming.is_none());
    let roles: Vec<Role> = snap.history.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Role::User, Role::Assistant]);
    assert_eq!(snap.history[1].content, "Hi there!");
    assert_eq!(snap.history[1].status, MessageStatus::Completed);
    // The lease is free again.
    start(&state, &sid).await;
}

/// Cancel answers per state, and a cancelled answer appends nothing more.
async fn cancel_outcomes_follow_the_answer_state(state: ChatState) {
    let sid = SessionId::parse("s1").unwrap();
    let unknown = MessageId::random();
    assert_eq!(
        state.cancel(&sid, &unknown).await.unwrap(),
        CancelOutcome::NotFound
    );

    let stream = start(&state, &sid).await;
    state.append_chunk(&stream, 0, "a", Some(10)).await.unwrap();
    assert_eq!(
        state.cancel(&sid, &stream.message).await.unwrap(),
        CancelOutcome::Cancelling
    );
    // The same id in another session is not that session's answer.
    let other = SessionId::parse("s2").unwrap();
    assert_eq!(
        state.cancel(&other, &stream.message).await.unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(
        state.append_chunk(&stream, 1, "b", Some(10)).await.unwrap(),
        ChunkOutcome::Cancelled
    );
    state
        .finish_stream(&stream, "a\n\n[Cancelled]".into(), MessageStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(
        state.cancel(&sid, &stream.message).await.unwrap(),
        CancelOutcome::AlreadyFinished
    );
}

/// Recovery returns missing chunks while streaming, the final message after, NOT_FOUND for
/// unknown ids and EXPIRED when the chunk log is gone mid-stream.
async fn recovery_covers_every_status(state: ChatState) {
    let sid = SessionId::parse("s1").unwrap();
    let stream = start(&state, &sid).await;
    for (i, d) in ["a", "b", "c", "d"].iter().enumerate() {
        state
            .append_chunk(&stream, i as u32, d, Some(10))
            .await
            .unwrap();
    }
    match state.recover(&sid, &stream.message, 2).await.unwrap() {
        Recovery::Recovered { chunks } => {
            let got: Vec<(u32, String)> = chunks
                .iter()
                .map(|c| (c.index.unwrap(), c.chunk.clone().unwrap()))
                .collect();
            assert_eq!(got, vec![(2, "c".into()), (3, "d".into())]);
        }
        other => panic!("{other:?}"),
    }
    let other = SessionId::parse("s2").unwrap();
    assert_eq!(
        state.recover(&other, &stream.message, 0).await.unwrap(),
        Recovery::NotFound
    );

    let mut conn = state.connection();
    redis::cmd("DEL")
        .arg(protocol::keys::chunks(&sid, &stream.message))
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        state.recover(&sid, &stream.message, 2).await.unwrap(),
        Recovery::Expired
    );

    state
        .finish_stream(&stream, "abcd".into(), MessageStatus::Completed)
        .await
        .unwrap();
    match state.recover(&sid, &stream.message, 0).await.unwrap() {
        Recovery::Completed(done) => assert_eq!(done.content, "abcd"),
        other => panic!("{other:?}"),
    }
    // Once the record has expired, history still answers COMPLETED.
    redis::cmd("DEL")
        .arg(protocol::keys::message(&sid, &stream.message))
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        state.recover(&sid, &stream.message, 0).await.unwrap(),
        Recovery::Completed(_)
    ));
    assert_eq!(
        state.recover(&sid, &MessageId::random(), 0).await.unwrap(),
        Recovery::NotFound
    );
    // A user message's id is not an answer: neither resumable nor cancellable.
    let user_id = state.snapshot(&sid).await.unwrap().history[0]
        .message_id
        .clone();
    assert_eq!(
        state.recover(&sid, &user_id, 0).await.unwrap(),
        Recovery::NotFound
    );
    assert_eq!(
        state.cancel(&sid, &user_id).await.unwrap(),
        CancelOutcome::NotFound
    );
}

/// Deleting history empties it and reports how much it held.
async fn delete_history_empties_it(state: ChatState) {
    let sid = SessionId::parse("s1").unwrap();
    let stream = start(&state, &sid).await;
    state
        .finish_stream(&stream, "x".into(), MessageStatus::Completed)
        .await
        .unwrap();
    assert_eq!(state.delete_history(&sid).await.unwrap(), 2);
    assert!(state.snapshot(&sid).await.unwrap().history.is_empty());
    assert_eq!(state.delete_history(&sid).await.unwrap(), 0);
}

/// An answer whose lease runs out is failed by the reaper with the text it had, once, and the
/// session is free again; a live answer is left alone.
async fn reaper_fails_answers_whose_lease_ran_out(state: ChatState) {
    let dead_session = SessionId::parse("dead").unwrap();
    let live_session = SessionId::parse("live").unwrap();
    let dead = start_with_lease(&state, &dead_session, 1).await;
    let live = start(&state, &live_session).await;
    state.append_chunk(&dead, 0, "half", Some(1)).await.unwrap();
    state
        .append_chunk(&dead, 1, " done", Some(1))
        .await
        .unwrap();
    state
        .append_chunk(&live, 0, "alive", Some(10))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let failed = state.reap_orphans().await.unwrap();
        if failed.len() == 1 {
            assert_eq!(failed[0].answer.content, "half done");
            assert_eq!(failed[0].chunks, 2);
            break;
        }
        assert!(failed.is_empty());
        assert!(std::time::Instant::now() < deadline, "never reaped");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        state.reap_orphans().await.unwrap().is_empty(),
        "reaped twice"
    );
    let snap = state.snapshot(&dead_session).await.unwrap();
    assert!(snap.streaming.is_none());
    let failed = &snap.history[1];
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.content, "half done");
    assert!(failed.is_complete);
    // The producer, if it comes back, has lost its lease; the session takes a new chat.
    assert_eq!(
        state.append_chunk(&dead, 2, "!", Some(1)).await.unwrap(),
        ChunkOutcome::LeaseLost
    );
    start(&state, &dead_session).await;
    // The live answer was not touched.
    assert!(
        state
            .snapshot(&live_session)
            .await
            .unwrap()
            .streaming
            .is_some()
    );
}

/// A lease is held by one holder at a time, renewed by it, released only by it, and taken over
/// by another once it expires.
async fn a_lease_has_one_holder_until_it_expires(state: ChatState) {
    let life = std::time::Duration::from_millis(300);
    assert_eq!(state.claim_lease("l", "a", life).await.unwrap(), "a");
    assert_eq!(state.claim_lease("l", "b", life).await.unwrap(), "a");
    state.release_lease("l", "b").await.unwrap();
    assert_eq!(
        state.claim_lease("l", "a", life).await.unwrap(),
        "a",
        "renewed"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state.claim_lease("l", "b", life).await.unwrap() != "b" {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    state.release_lease("l", "b").await.unwrap();
    assert_eq!(state.claim_lease("l", "a", life).await.unwrap(), "a");
}

/// A session is its first user's: with enforcement, another user's chat is refused and writes
/// nothing; without, it goes through. A session whose user Redis lost must be refilled first.
async fn a_session_is_its_first_users(state: ChatState) {
    let sid = SessionId::parse("owned").unwrap();
    let first = start(&state, &sid).await; // by u1
    state
        .finish_stream(&first, "x".into(), MessageStatus::Completed)
        .await
        .unwrap();
    assert_eq!(
        state.session_user(&sid).await.unwrap(),
        Some(UserId::parse("u1").unwrap())
    );
    let mut intruder = message(&sid, Role::User, "mine now");
    intruder.user_id = UserId::parse("mallory").unwrap();
    let mut answer = message(&sid, Role::Assistant, "");
    answer.user_id = intruder.user_id.clone();
    let refused = state
        .start_stream(
            &sid,
            &intruder,
            answer.clone(),
            10,
            HistoryCheck::Require,
            true,
        )
        .await
        .unwrap();
    assert_eq!(
        refused,
        StartOutcome::Forbidden {
            owner: UserId::parse("u1").unwrap()
        }
    );
    assert_eq!(
        state.snapshot(&sid).await.unwrap().history.len(),
        2,
        "nothing written"
    );
    // Redis lost whose session it is: the chat must wait for SQL to say.
    let mut conn = state.connection();
    let () = redis::cmd("DEL")
        .arg(protocol::keys::session_user(&sid))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        state
            .start_stream(
                &sid,
                &intruder,
                answer.clone(),
                10,
                HistoryCheck::Require,
                true
            )
            .await
            .unwrap(),
        StartOutcome::HistoryMissing
    );
    state
        .warm_session_user(&sid, &UserId::parse("u1").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        state
            .start_stream(
                &sid,
                &intruder,
                answer.clone(),
                10,
                HistoryCheck::Require,
                true
            )
            .await
            .unwrap(),
        StartOutcome::Forbidden { .. }
    ));
    // Without enforcement (dev mode) the chat goes through; the session stays u1's.
    assert!(matches!(
        state
            .start_stream(&sid, &intruder, answer, 10, HistoryCheck::Require, false)
            .await
            .unwrap(),
        StartOutcome::Started(_)
    ));
    assert_eq!(
        state.session_user(&sid).await.unwrap(),
        Some(UserId::parse("u1").unwrap())
    );
}

/// A user gets `per_minute` chats in a burst, then waits; another user is not affected.
async fn chats_are_limited_per_user(state: ChatState) {
    let alice = UserId::parse("alice").unwrap();
    for _ in 0..3 {
        assert_eq!(state.take_chat(&alice, 3).await.unwrap(), None);
    }
    let wait = state.take_chat(&alice, 3).await.unwrap().expect("limited");
    assert!(
        wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(20),
        "{wait:?}"
    );
    assert_eq!(
        state
            .take_chat(&UserId::parse("bob").unwrap(), 3)
            .await
            .unwrap(),
        None
    );
}

/// A user's open sockets are counted across nodes up to the limit; closed or unrenewed ones
/// stop counting.
async fn open_sockets_are_limited_per_user(state: ChatState) {
    let alice = UserId::parse("alice").unwrap();
    let life = std::time::Duration::from_millis(400);
    assert!(state.open_socket(&alice, "n1:a", 2, life).await.unwrap());
    assert!(state.open_socket(&alice, "n2:b", 2, life).await.unwrap());
    assert!(!state.open_socket(&alice, "n1:c", 2, life).await.unwrap());
    state.close_socket(&alice, "n2:b").await.unwrap();
    assert!(state.open_socket(&alice, "n1:c", 2, life).await.unwrap());
    // n1 renews its sockets; n2's node is gone and never renews.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        state
            .renew_sockets(&[(alice.clone(), "n1:a".into())], life)
            .await
            .unwrap();
        if state.open_socket(&alice, "n3:d", 2, life).await.unwrap() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a dead node's socket never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !state.open_socket(&alice, "n3:e", 2, life).await.unwrap(),
        "n1:a was renewed"
    );
}

/// A chat started without knowing what SQL holds marks a session Redis had no history for;
/// merging puts the stored messages Redis lacks in front, in order, and clears the mark. A
/// session that had a history is not marked.
async fn an_unverified_start_is_merged_with_the_stored_history(state: ChatState) {
    let sid = SessionId::parse("s-merge").unwrap();
    let user = message(&sid, Role::User, "new question");
    let answer = message(&sid, Role::Assistant, "");
    let outcome = state
        .start_stream(&sid, &user, answer, 10, HistoryCheck::Unverified, false)
        .await
        .unwrap();
    assert!(matches!(outcome, StartOutcome::Started(_)));
    let snapshot = state.snapshot(&sid).await.unwrap();
    assert!(snapshot.unmerged);
    assert_eq!(snapshot.history.len(), 1);

    let old_question = message(&sid, Role::User, "old question");
    let mut old_answer = message(&sid, Role::Assistant, "old answer");
    old_answer.is_complete = true;
    old_answer.status = MessageStatus::Completed;
    // SQL may already hold the new message too: it is not put in twice.
    let stored = [old_question.clone(), old_answer.clone(), user.clone()];
    assert_eq!(state.merge_history(&sid, &stored).await.unwrap(), 2);
    let merged = state.snapshot(&sid).await.unwrap();
    assert!(!merged.unmerged);
    let ids: Vec<_> = merged
        .history
        .iter()
        .map(|m| m.message_id.clone())
        .collect();
    assert_eq!(
        ids,
        [
            old_question.message_id,
            old_answer.message_id,
            user.message_id
        ]
    );

    // A session with a history in Redis is never marked.
    let other = SessionId::parse("s-known").unwrap();
    let handle = start(&state, &other).await;
    state
        .finish_stream(&handle, "done".into(), MessageStatus::Completed)
        .await
        .unwrap();
    let again = message(&other, Role::User, "again");
    state
        .start_stream(
            &other,
            &again,
            message(&other, Role::Assistant, ""),
            10,
            HistoryCheck::Unverified,
            false,
        )
        .await
        .unwrap();
    assert!(!state.snapshot(&other).await.unwrap().unmerged);
}

/// A START or FINISH whose reply was lost is retried: the retry changes nothing and answers as
/// the first run did (so the caller still records it durably); another ending is refused.
async fn retried_starts_and_endings_answer_as_their_first_run(state: ChatState) {
    let sid = SessionId::parse("s-retry").unwrap();
    let user = message(&sid, Role::User, "hello");
    let answer = message(&sid, Role::Assistant, "");
    let start = || {
        state.start_stream(
            &sid,
            &user,
            answer.clone(),
            10,
            HistoryCheck::Refilled,
            false,
        )
    };
    let StartOutcome::Started(first) = start().await.unwrap() else {
        panic!("not started")
    };
    let StartOutcome::Started(again) = start().await.unwrap() else {
        panic!("a retried start was refused")
    };
    assert_eq!(again.change, first.change);
    assert_eq!(
        state.snapshot(&sid).await.unwrap().history.len(),
        1,
        "one user message"
    );

    let end = || state.finish_stream(&first, "done".into(), MessageStatus::Completed);
    let ended = end().await.unwrap();
    assert!(ended.is_some());
    assert_eq!(end().await.unwrap(), ended, "a retried ending");
    let other = state
        .finish_stream(&first, "other".into(), MessageStatus::Failed)
        .await
        .unwrap();
    assert_eq!(other, None, "another ending of an ended answer");
    assert_eq!(state.snapshot(&sid).await.unwrap().history.len(), 2);
}

/// The answer's score in its deadline set (ms on Redis's clock).
async fn deadline_of(state: &ChatState, stream: &StreamHandle) -> f64 {
    redis::cmd("ZSCORE")
        .arg(state.deadlines(&stream.session))
        .arg(protocol::keys::deadline_member(
            &stream.session,
            &stream.message,
        ))
        .query_async(&mut state.connection())
        .await
        .unwrap()
}

/// The streaming answer's text so far and its last chunk's index, as a snapshot shows them.
async fn streamed_so_far(state: &ChatState, sid: &SessionId) -> (String, i64) {
    let snapshot = state.snapshot(sid).await.unwrap();
    let streaming = snapshot.streaming.expect("the answer is streaming");
    (streaming.message.content, streaming.last_index)
}

/// A chunk pushes the answer's deadline forward only when its producer asks (it does so once
/// a fraction of the lease has passed), and is appended and published either way.
async fn a_chunk_pushes_the_deadline_only_when_asked(state: ChatState) {
    let sid = SessionId::parse("renew").unwrap();
    let stream = start_with_lease(&state, &sid, 2).await;
    let started = deadline_of(&state, &stream).await;
    assert_eq!(
        state.append_chunk(&stream, 0, "a", None).await.unwrap(),
        ChunkOutcome::Appended
    );
    assert_eq!(deadline_of(&state, &stream).await, started, "moved unasked");
    assert_eq!(
        state.append_chunk(&stream, 1, "b", Some(30)).await.unwrap(),
        ChunkOutcome::Appended
    );
    let renewed = deadline_of(&state, &stream).await;
    assert!(renewed >= started + 27_000.0, "{started} -> {renewed}");
    assert_eq!(streamed_so_far(&state, &sid).await, ("ab".to_owned(), 1));
}

/// Seconds left to live of `key`.
async fn ttl_of(state: &ChatState, key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut state.connection())
        .await
        .unwrap()
}

/// The first chunk and every 100th renew the live TTL of the chunk log, the answer's record
/// and the lease key; the chunks between leave them as they are.
async fn every_hundredth_chunk_renews_the_live_ttls(state: ChatState) {
    let sid = SessionId::parse("ttls").unwrap();
    let stream = start(&state, &sid).await;
    let keys = [
        protocol::keys::chunks(&sid, &stream.message),
        protocol::keys::message(&sid, &stream.message),
        protocol::keys::active_stream(&sid),
    ];
    let live = protocol::keys::LIVE_STREAM_TTL_SECS as i64;
    state.append_chunk(&stream, 0, "w", None).await.unwrap();
    for key in &keys {
        assert!(ttl_of(&state, key).await > live - 5, "{key} after chunk 0");
        let _: () = redis::cmd("EXPIRE")
            .arg(key)
            .arg(100)
            .query_async(&mut state.connection())
            .await
            .unwrap();
    }
    for index in 1..100 {
        let outcome = state.append_chunk(&stream, index, "w", None).await.unwrap();
        assert_eq!(outcome, ChunkOutcome::Appended);
    }
    for key in &keys {
        assert!(
            ttl_of(&state, key).await <= 100,
            "{key} renewed before chunk 100"
        );
    }
    state.append_chunk(&stream, 100, "w", None).await.unwrap();
    for key in &keys {
        assert!(
            ttl_of(&state, key).await > live - 5,
            "{key} after chunk 100"
        );
    }
    assert_eq!(streamed_so_far(&state, &sid).await.1, 100);
}

/// The per-chunk scripts load themselves again when Redis no longer has them (a restarted or
/// flushed Redis answers `NOSCRIPT`): the chunk after a `SCRIPT FLUSH` is appended, and
/// `keep_alive` answers.
async fn a_chunk_reloads_its_script_after_a_script_flush(state: ChatState) {
    let sid = SessionId::parse("noscript").unwrap();
    let stream = start(&state, &sid).await;
    assert_eq!(
        state.append_chunk(&stream, 0, "a", None).await.unwrap(),
        ChunkOutcome::Appended
    );
    let flush = || async {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut state.connection())
            .await
            .unwrap();
    };
    flush().await;
    assert_eq!(
        state.append_chunk(&stream, 1, "b", Some(10)).await.unwrap(),
        ChunkOutcome::Appended
    );
    flush().await;
    assert_eq!(
        state.keep_alive(&stream, 10).await.unwrap(),
        redis_state::Liveness::Alive
    );
    assert_eq!(streamed_so_far(&state, &sid).await, ("ab".to_owned(), 1));
}

/// `keep_alive` pushes a waiting answer's deadline forward without a chunk, reports a cancel,
/// and reports a lease that is no longer the answer's.
async fn keep_alive_renews_the_deadline_and_reports_cancel_and_fencing(state: ChatState) {
    let mut conn = state.connection();
    let sid = SessionId::parse("ka").unwrap();
    let stream = start_with_lease(&state, &sid, 2).await;
    let deadline = || deadline_of(&state, &stream);
    let before = deadline().await;
    assert_eq!(
        state.keep_alive(&stream, 30).await.unwrap(),
        redis_state::Liveness::Alive
    );
    let after = deadline().await;
    assert!(after >= before + 27_000.0, "{before} -> {after}");

    state.cancel(&sid, &stream.message).await.unwrap();
    assert_eq!(
        state.keep_alive(&stream, 30).await.unwrap(),
        redis_state::Liveness::Cancelled
    );

    let _: () = redis::cmd("SET")
        .arg(protocol::keys::active_stream(&sid))
        .arg("someone-else")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        state.keep_alive(&stream, 30).await.unwrap(),
        redis_state::Liveness::LeaseLost
    );
}

/// Each case on a single Redis of its own, and every case on one Redis Cluster.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod single {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let redis = testkit::RedisServer::start();
                    let target = RedisTarget::Single(redis.url());
                    let state = ChatState::connect(&target).await.unwrap();
                    assert!(!state.is_cluster());
                    super::$case(state).await;
                }
            )*
        }

        /// The cases in turn on a 3+3 Redis Cluster, the cluster flushed between them.
        #[tokio::test]
        async fn every_case_on_a_redis_cluster() {
            let cluster = testkit::RedisCluster::start();
            let state = ChatState::connect(&RedisTarget::Cluster(cluster.urls()))
                .await
                .unwrap();
            assert!(state.is_cluster());
            $(
                cluster.flush_all();
                eprintln!("cluster: {}", stringify!($case));
                $case(state.clone()).await;
            )*
        }
    };
}

suite!(
    second_stream_in_a_session_is_busy,
    snapshot_shows_partial_answer_then_final_history,
    cancel_outcomes_follow_the_answer_state,
    recovery_covers_every_status,
    delete_history_empties_it,
    reaper_fails_answers_whose_lease_ran_out,
    a_lease_has_one_holder_until_it_expires,
    a_session_is_its_first_users,
    chats_are_limited_per_user,
    open_sockets_are_limited_per_user,
    an_unverified_start_is_merged_with_the_stored_history,
    retried_starts_and_endings_answer_as_their_first_run,
    keep_alive_renews_the_deadline_and_reports_cancel_and_fencing,
    a_chunk_pushes_the_deadline_only_when_asked,
    every_hundredth_chunk_renews_the_live_ttls,
    a_chunk_reloads_its_script_after_a_script_flush,
);
