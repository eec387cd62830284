//! Authentication, ownership and limits on a system that requires tokens
//! (`AUTH_MODE=required`): nobody reads, streams, cancels or deletes another's chat.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::{Duration, Instant};

use e2e::api::{Reply, send_as};
use e2e::tokens::{self, required_env};
use e2e::{Event, Json, Stack, StackOptions, WsClient, upgrade};
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A stack that requires tokens, with `extra` variables.
async fn required_stack(gateways: usize, extra: &[(&'static str, &str)]) -> Stack {
    let mut env = required_env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Stack::start(StackOptions {
        gateways,
        stream_delay_ms: 2,
        env,
        ..StackOptions::default()
    })
    .await
}

fn ws_url(stack: &Stack, gateway: usize, session: &str, token: Option<&str>) -> String {
    let mut url = format!(
        "ws://{}/ws/chat?session_id={session}",
        stack.gateways[gateway].addr
    );
    if let Some(token) = token {
        url.push_str(&format!("&token={token}"));
    }
    url
}

async fn chat(stack: &Stack, gateway: usize, session: &str, token: &str) -> Reply {
    send_as(
        Method::POST,
        &format!("{}/api/chat", stack.gateway(gateway)),
        Some(token),
        Some(json!({"session_id": session, "message": "hello"})),
    )
    .await
}

/// Waits until `session` has no answer streaming.
async fn settled(stack: &Stack, session: &str, token: &str) -> Json {
    let url = format!("{}/api/history/{session}", stack.gateway(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send_as(Method::GET, &url, Some(token), None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.body["streaming"].is_null() {
            return reply.body;
        }
        assert!(Instant::now() < deadline, "{session} never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
}

/// Every REST call needs a valid token; the token's subject is the user, whatever `user_id`
/// the body or query names.
#[tokio::test]
async fn rest_calls_need_a_valid_token_and_act_for_its_subject() {
    let stack = required_stack(1, &[]).await;
    let base = stack.gateway(0);
    let alice = tokens::valid("alice");
    for (method, path, body) in [
        (
            Method::POST,
            "/api/chat",
            Some(json!({"session_id": "s", "message": "hi"})),
        ),
        (Method::GET, "/api/history/s", None),
        (Method::DELETE, "/api/history/s", None),
        (Method::GET, "/api/sessions", None),
        (Method::GET, "/api/me", None),
        (
            Method::POST,
            "/api/cancel",
            Some(json!({"session_id": "s", "message_id": "m"})),
        ),
    ] {
        let url = format!("{base}{path}");
        let reply = send_as(method.clone(), &url, None, body.clone()).await;
        assert_refused(&reply, 401, "UNAUTHORIZED");
        for bad in [
            tokens::expired("alice"),
            tokens::forged("alice"),
            tokens::unsigned("alice"),
            tokens::not_yet_valid("alice"),
        ] {
            let reply = send_as(method.clone(), &url, Some(&bad), body.clone()).await;
            assert_refused(&reply, 401, "UNAUTHORIZED");
        }
    }
    let me = send_as(Method::GET, &format!("{base}/api/me"), Some(&alice), None).await;
    assert_eq!(
        me.body,
        json!({"user_id": "alice", "auth_mode": "required"})
    );
    // The body says bob; the token says alice: the chat is alice's.
    let reply = send_as(
        Method::POST,
        &format!("{base}/api/chat"),
        Some(&alice),
        Some(json!({"session_id": "sec-own", "message": "hi", "user_id": "bob"})),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let history = settled(&stack, "sec-own", &alice).await;
    assert_eq!(history["messages"][0]["userId"], "alice");
    let sessions = send_as(
        Method::GET,
        &format!("{base}/api/sessions"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(sessions.body["user_id"], "alice");
    assert_eq!(sessions.body["sessions"][0]["session_id"], "sec-own");
}

/// Another user's session is refused everywhere (403 FORBIDDEN, HTTP 403 before the upgrade,
/// or close 4403 after an auth frame), that socket never gets a frame of it, and nothing in
/// it changes.
#[tokio::test]
async fn another_users_session_is_refused_everywhere() {
    let stack = required_stack(1, &[]).await;
    let base = stack.gateway(0);
    let (alice, bob) = (tokens::valid("alice"), tokens::valid("bob"));
    assert_eq!(chat(&stack, 0, "sec-alice", &alice).await.status, 202);
    let before = settled(&stack, "sec-alice", &alice).await;
    let answer_id = before["messages"][1]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();

    let refusals = [
        send_as(
            Method::GET,
            &format!("{base}/api/history/sec-alice"),
            Some(&bob),
            None,
        )
        .await,
        send_as(
            Method::DELETE,
            &format!("{base}/api/history/sec-alice"),
            Some(&bob),
            None,
        )
        .await,
        send_as(
            Method::POST,
            &format!("{base}/api/cancel"),
            Some(&bob),
            Some(json!({"session_id": "sec-alice", "message_id": answer_id})),
        )
        .await,
        chat(&stack, 0, "sec-alice", &bob).await,
        send_as(
            Method::GET,
            &format!("{base}/api/sessions?user_id=alice"),
            Some(&bob),
            None,
        )
        .await,
        // The AI node's own API says the same.
        send_as(
            Method::GET,
            &format!("{}/history/sec-alice", stack.ai[0].url()),
            Some(&bob),
            None,
        )
        .await,
    ];
    for reply in &refusals {
        assert_refused(reply, 403, "FORBIDDEN");
    }
    let own = send_as(
        Method::GET,
        &format!("{base}/api/sessions"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        own.body["sessions"],
        json!([]),
        "bob sees none of alice's sessions"
    );

    let (status, body) = upgrade(&ws_url(&stack, 0, "sec-alice", Some(&bob)), &[])
        .await
        .refused();
    assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
    let mut ws = upgrade(&ws_url(&stack, 0, "sec-alice", None), &[])
        .await
        .opened();
    ws.send_json(json!({"type": "auth", "token": bob})).await;
    match ws.event().await {
        Event::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 4403),
        other => panic!("expected a 4403 close, got {other:?}"),
    }
    assert_eq!(
        settled(&stack, "sec-alice", &alice).await,
        before,
        "nothing changed"
    );
    // Alice herself is let in, by query token or auth frame.
    let (_ws, _, history) = WsClient::open(&ws_url(&stack, 0, "sec-alice", Some(&alice))).await;
    assert_eq!(history["messages"], before["messages"]);
}

/// A socket authenticates with a query token (refused with 401 before the upgrade when bad)
/// or an `auth` first frame (4401 when bad, or when none comes within 5 s).
#[tokio::test]
async fn sockets_authenticate_by_query_token_or_first_frame() {
    let stack = required_stack(1, &[]).await;
    let alice = tokens::valid("alice");
    for bad in [
        tokens::expired("alice"),
        tokens::forged("alice"),
        tokens::bad_subject(),
    ] {
        let (status, body) = upgrade(&ws_url(&stack, 0, "sec-ws", Some(&bad)), &[])
            .await
            .refused();
        assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
    }
    let mut ws = upgrade(&ws_url(&stack, 0, "sec-ws", None), &[])
        .await
        .opened();
    ws.send_json(json!({"type": "auth", "token": alice})).await;
    let (welcome, _) = ws.handshake().await.unwrap();
    assert_eq!(welcome["sessionId"], "sec-ws");
    for first in [
        json!({"type": "auth", "token": tokens::unsigned("alice")}),
        json!({"type": "ping"}),
    ] {
        let mut ws = upgrade(&ws_url(&stack, 0, "sec-ws", None), &[])
            .await
            .opened();
        ws.send_json(first.clone()).await;
        match ws.event().await {
            Event::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 4401, "{first}"),
            other => panic!("{first}: expected a 4401 close, got {other:?}"),
        }
    }
    let mut silent = upgrade(&ws_url(&stack, 0, "sec-ws", None), &[])
        .await
        .opened();
    let opened = Instant::now();
    match silent.event().await {
        Event::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 4401),
        other => panic!("expected a 4401 close, got {other:?}"),
    }
    let waited = opened.elapsed();
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(8)).contains(&waited),
        "closed after {waited:?}"
    );
}

/// Chats per user per minute hold across gateways and at the AI nodes themselves (429 with
/// Retry-After over REST, an error frame RATE_LIMITED on a socket); another user keeps
/// chatting.
#[tokio::test]
async fn chats_are_rate_limited_per_user_across_gateways() {
    let stack = required_stack(2, &[("CHAT_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let (alice, bob) = (tokens::valid("alice"), tokens::valid("bob"));
    for i in 0..3 {
        let reply = chat(&stack, i % 2, &format!("sec-rate-{i}"), &alice).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    let limited = chat(&stack, 1, "sec-rate-3", &alice).await;
    assert_refused(&limited, 429, "RATE_LIMITED");
    let retry: u64 = limited.retry_after.unwrap().parse().unwrap();
    assert!((1..=21).contains(&retry), "Retry-After {retry}");
    // Straight to an AI node (NGINX's /ai/) counts the same.
    let direct = send_as(
        Method::POST,
        &format!("{}/chat", stack.ai[0].url()),
        Some(&alice),
        Some(json!({"session_id": "sec-rate-direct", "message": "hello"})),
    )
    .await;
    assert_refused(&direct, 429, "RATE_LIMITED");
    assert!(direct.retry_after.is_some());
    let (mut ws, _, _) = WsClient::open(&ws_url(&stack, 0, "sec-rate-ws", Some(&alice))).await;
    ws.send_json(json!({"type": "chat", "message": "one more"}))
        .await;
    assert_eq!(ws.frame_of("error").await["code"], "RATE_LIMITED");
    assert_eq!(chat(&stack, 0, "sec-rate-bob", &bob).await.status, 202);
}

/// A user's open sockets are limited across gateways (429 before the upgrade); closing one
/// makes room.
#[tokio::test]
async fn open_sockets_are_limited_per_user_across_gateways() {
    let stack = required_stack(2, &[("MAX_SOCKETS_PER_USER", "2")]).await;
    let alice = tokens::valid("alice");
    let (first, _, _) = WsClient::open(&ws_url(&stack, 0, "sec-tabs-1", Some(&alice))).await;
    let (_second, _, _) = WsClient::open(&ws_url(&stack, 1, "sec-tabs-2", Some(&alice))).await;
    let (status, body) = upgrade(&ws_url(&stack, 0, "sec-tabs-3", Some(&alice)), &[])
        .await
        .refused();
    assert_eq!((status, body["code"].as_str()), (429, Some("RATE_LIMITED")));
    let bob = tokens::valid("bob");
    let (_bobs, _, _) = WsClient::open(&ws_url(&stack, 1, "sec-tabs-bob", Some(&bob))).await;
    first.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let e2e::Upgrade::Open(_) =
            upgrade(&ws_url(&stack, 0, "sec-tabs-3", Some(&alice)), &[]).await
        {
            break;
        }
        assert!(Instant::now() < deadline, "a closed socket kept its place");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pages of foreign origins cannot open sockets (403 before the upgrade) nor read REST answers
/// (no CORS grant); the allowed origin and the node's own can.
#[tokio::test]
async fn foreign_origins_are_refused() {
    let stack = required_stack(1, &[]).await;
    let alice = tokens::valid("alice");
    let url = ws_url(&stack, 0, "sec-origin", Some(&alice));
    let (status, body) = upgrade(&url, &[("origin", "https://evil.example")])
        .await
        .refused();
    assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
    upgrade(&url, &[("origin", "https://chat.example")])
        .await
        .opened();
    let own = format!("http://{}", stack.gateways[0].addr);
    upgrade(&url, &[("origin", &own)]).await.opened();
    let preflight = |origin: &'static str| {
        e2e::http()
            .request(Method::OPTIONS, format!("{}/api/chat", stack.gateway(0)))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://chat.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://chat.example"
    );
    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A frame above the 1 MiB hard limit gets a close frame 1009, not a dropped connection.
#[tokio::test]
async fn a_frame_over_the_hard_limit_is_closed_with_1009() {
    let stack = Stack::start(StackOptions::default()).await;
    let (mut ws, _, _) = WsClient::open(&stack.ws_url(0, "sec-huge")).await;
    ws.send(Message::text("x".repeat(1024 * 1024 + 1))).await;
    match ws.event().await {
        Event::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

/// Tokens never reach the logs, whether in a query string or a header, even at trace level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs() {
    let redis = testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let mut env: std::collections::HashMap<String, String> = required_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert("REDIS_URL".into(), redis.url());
    env.insert(
        "DATABASE_URL".into(),
        format!("sqlite://{}/chat.db", dir.path().display()),
    );
    env.insert("LOG_LEVEL".into(), "trace".into());
    let gateway = testkit::Service::start_logging("ws-sec-logs", "ws-gateway", &env, &log);
    let token = tokens::valid("alice");
    let url = format!(
        "ws://127.0.0.1:{}/ws/chat?session_id=sec-logs&token={token}",
        gateway.port
    );
    let (_ws, _, _) = WsClient::open(&url).await;
    let reply = send_as(
        Method::GET,
        &format!("{}/api/history/sec-logs?token={token}", gateway.url()),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(reply.status, 200);
    let forged = tokens::forged("alice");
    let refused = upgrade(
        &format!(
            "ws://127.0.0.1:{}/ws/chat?session_id=sec-logs&token={forged}",
            gateway.port
        ),
        &[],
    )
    .await;
    assert_eq!(refused.refused().0, 401);
    drop(gateway);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("sec-logs"), "the requests were logged");
    for secret in [&token, &forged, tokens::SECRET] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logged.contains(signature), "a token reached the logs");
    }
}
