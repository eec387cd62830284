//! AI nodes on the `openai` provider (`AI_PROVIDER=openai`) against a real HTTP server on
//! loopback (`testkit::FakeModel`): what is asked of the model, how its tokens become chunks,
//! resume and cancel on top of it, and every upstream fault ending the answer cleanly.
//! The multi-node behaviour on the provider is in multinode.rs (`*::model`).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use e2e::api::{get_json, post_json};
use e2e::{Json, Stack, StackOptions, WsClient, model};
use serde_json::json;
use testkit::{End, FakeModel, Reply, Script};

/// A one-gateway, one-AI-node stack on `fake`, with `extra` variables for the AI node.
async fn stack_on(fake: &FakeModel, extra: &[(&'static str, &str)]) -> Stack {
    let mut env = model::env(fake);
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Stack::start(StackOptions {
        env,
        ..StackOptions::default()
    })
    .await
}

/// A page's socket. Frames read while waiting for something else (chunks can overtake the
/// `accepted` frame: they come through Redis, it comes from the gateway) are kept, in order,
/// for the next reads.
struct Page {
    ws: WsClient,
    backlog: VecDeque<Json>,
}

impl Page {
    async fn open(url: &str) -> Page {
        let (ws, _, _) = WsClient::open(url).await;
        Page {
            ws,
            backlog: VecDeque::new(),
        }
    }

    /// The next frame: the kept ones first.
    async fn frame(&mut self) -> Json {
        match self.backlog.pop_front() {
            Some(frame) => frame,
            None => self.ws.frame().await,
        }
    }

    async fn send(&mut self, frame: Json) {
        self.ws.send_json(frame).await;
    }

    /// Sends a chat and returns the answer's id (from `accepted`), keeping the frames that
    /// came first.
    async fn ask(&mut self, text: &str) -> String {
        self.send(json!({"type": "chat", "message": text})).await;
        let mut early = Vec::new();
        loop {
            let frame = self.ws.frame().await;
            if frame["type"] == "accepted" {
                self.backlog.extend(early);
                return frame["messageId"].as_str().unwrap().to_owned();
            }
            early.push(frame);
        }
    }

    /// Reads the chunks of answer `id` from index `from` to its end: (chunks, `error` frames,
    /// final message). Fails on a gap or a duplicate.
    async fn read_answer(&mut self, id: &str, from: usize) -> (Vec<String>, Vec<Json>, Json) {
        let mut chunks = Vec::new();
        let mut errors = Vec::new();
        loop {
            let frame = self.frame().await;
            if frame["type"] == "error" {
                errors.push(frame);
                continue;
            }
            if frame["type"] != "message" || frame["data"]["messageId"] != id {
                continue;
            }
            let data = &frame["data"];
            if data["isComplete"] == true {
                return (chunks, errors, data.clone());
            }
            assert_eq!(
                data["index"],
                from + chunks.len(),
                "gap or duplicate: {frame}"
            );
            chunks.push(data["chunk"].as_str().unwrap().to_owned());
        }
    }

    /// The next `n` chunks of answer `id`, in order.
    async fn chunks(&mut self, id: &str, n: usize) -> Vec<String> {
        let mut chunks = Vec::new();
        while chunks.len() < n {
            let frame = self.frame().await;
            let data = &frame["data"];
            if frame["type"] == "message" && data["messageId"] == id && data["chunk"].is_string() {
                chunks.push(data["chunk"].as_str().unwrap().to_owned());
            }
        }
        chunks
    }
}

/// The request names the model, streams, sends the key, and carries the system prompt, the
/// session's latest complete exchanges (within AI_CONTEXT_MESSAGES) and the new message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_carries_the_model_the_key_the_system_prompt_and_the_history() {
    let fake = FakeModel::start();
    for answer in ["First answer.", "Second answer."] {
        fake.push(Reply::Stream(Script::tokens([answer])));
    }
    let stack = stack_on(
        &fake,
        &[
            ("OPENAI_API_KEY", "sk-test-key"),
            ("AI_SYSTEM_PROMPT", "You are terse."),
            ("AI_CONTEXT_MESSAGES", "3"),
            ("OPENAI_MAX_TOKENS", "128"),
        ],
    )
    .await;
    let session = "prov-shape";
    let mut ws = Page::open(&stack.ws_url(0, session)).await;
    for question in ["first question", "second question", "third question"] {
        let id = ws.ask(question).await;
        let (_, errors, done) = ws.read_answer(&id, 0).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(done["status"], "completed", "{done}");
    }
    let requests = fake.wait_requests(3, Duration::from_secs(5));
    let third = &requests[2];
    assert_eq!(
        (third.method.as_str(), third.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(third.header("authorization"), Some("Bearer sk-test-key"));
    assert_eq!(third.body["model"], model::MODEL);
    assert_eq!(third.body["stream"], true);
    assert_eq!(third.body["max_tokens"], 128);
    // Three messages allowed: the latest whole exchange (a context starting with an answer
    // would break strict chat templates).
    assert_eq!(
        third.body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "second question"},
            {"role": "assistant", "content": "Second answer."},
            {"role": "user", "content": "third question"},
        ])
    );
    // The first chat had no history to send.
    assert_eq!(
        requests[0].body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
        ])
    );
}

/// Each non-empty delta is one chunk, in order, even when the server's bytes arrive three at a
/// time (multi-byte characters and event separators cut in two); the final content is the
/// chunks concatenated, and the usage the server reported lands in the final message, in
/// history, in SQL and in the STREAM_COMPLETED event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_the_tokens_even_split_across_reads_and_usage_is_kept() {
    let tokens = [
        "Héllo",
        " wörld",
        " 😀",
        " 日本語",
        "\n\n- a \"quoted\" item",
        " \\ done.",
    ];
    let fake = FakeModel::start();
    fake.push(Reply::Stream(Script::tokens(tokens).split(3).usage(11, 6)));
    let stack = stack_on(&fake, &[]).await;
    let session = "prov-split";
    let mut ws = Page::open(&stack.ws_url(0, session)).await;
    let id = ws.ask("hello").await;
    let (chunks, errors, done) = ws.read_answer(&id, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(chunks, tokens);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["content"], tokens.concat());
    let usage = json!({"promptTokens": 11, "completionTokens": 6, "totalTokens": 17});
    assert_eq!(done["metadata"]["usage"], usage, "{done}");
    assert_eq!(done["metadata"]["model"], model::MODEL);

    let history = get_json(&format!("{}/api/history/{session}", stack.gateway(0))).await;
    let stored = e2e::message_in(&history, &id).expect("the answer in history");
    assert_eq!(stored["metadata"]["usage"], usage);

    // SQL is written behind: poll it.
    let store = store::Store::connect(&stack.database_url()).await.unwrap();
    let sid = protocol::SessionId::parse(session).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = store.history(&sid).await.unwrap();
        let answer = rows.iter().find(|m| m.message_id.as_str() == id);
        let events = store.audit_trail(&sid).await.unwrap();
        let completed = events
            .iter()
            .find(|e| e.event_type() == protocol::EventType::StreamCompleted);
        if let (Some(answer), Some(completed)) = (answer, completed)
            && answer.is_complete
        {
            let meta = answer.metadata.as_ref().expect("metadata in SQL");
            assert_eq!(meta.usage.map(|u| u.total_tokens), Some(17));
            assert_eq!(meta.model.as_deref(), Some(model::MODEL));
            let event = serde_json::to_value(completed).unwrap();
            assert_eq!(event["usage"], usage, "{event}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SQL never got the answer's metadata"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reload mid-answer (a new socket) gets the text so far in `history` and the rest live:
/// nothing lost, nothing twice, as with the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_answer_resumes_without_loss_or_duplicates() {
    let fake = FakeModel::start();
    let script = model::words(60, Duration::from_millis(30));
    let all: String = script.tokens.concat();
    fake.push(Reply::Stream(script));
    let stack = stack_on(&fake, &[]).await;
    let session = "prov-reload";
    let mut first = Page::open(&stack.ws_url(0, session)).await;
    let id = first.ask("tell me").await;
    first.chunks(&id, 10).await;
    first.ws.close().await;

    let (mut page, _, history) = WsClient::open(&stack.ws_url(0, session)).await;
    let answer = e2e::message_in(&history, &id).expect("the answer in history");
    assert_eq!(
        answer["isComplete"], false,
        "the answer ended too soon: {answer}"
    );
    let mut text = answer["content"].as_str().unwrap_or_default().to_owned();
    let mut next = history["streaming"]["lastIndex"].as_i64().unwrap() + 1;
    assert!(next >= 10, "history has fewer chunks than were seen");
    let done = loop {
        let frame = page.frame().await;
        if frame["type"] != "message" || frame["data"]["messageId"] != id.as_str() {
            continue;
        }
        let data = &frame["data"];
        if data["isComplete"] == true {
            break data.clone();
        }
        assert_eq!(data["index"], next, "gap or duplicate");
        text.push_str(data["chunk"].as_str().unwrap());
        next += 1;
    };
    assert_eq!(done["status"], "completed");
    assert_eq!(text, all);
    assert_eq!(done["content"], all);
}

/// A cancel stops the model: the upstream request's connection is closed within 500 ms of the
/// cancel, whether the model is silent (before its first token, or between tokens) or
/// streaming; the answer ends `cancelled` with the text so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_closes_the_upstream_request_within_500_ms() {
    let limit = Duration::from_millis(500);
    let fake = FakeModel::start();
    // 0: thinking for a long time; 1: two tokens, then silence; 2: a token every 300 ms.
    fake.push(Reply::Stream(
        Script::tokens(["never"]).first_delay(Duration::from_secs(60)),
    ));
    fake.push(Reply::Stream(
        Script::tokens(["one", " two"]).end(End::Hang),
    ));
    fake.push(Reply::Stream(model::words(100, Duration::from_millis(300))));
    let stack = stack_on(&fake, &[]).await;
    for (i, chunks_first) in [(0usize, 0usize), (1, 2), (2, 3)] {
        let session = format!("prov-cancel-{i}");
        let mut ws = Page::open(&stack.ws_url(0, &session)).await;
        let id = ws.ask("go on").await;
        fake.wait_requests(i + 1, Duration::from_secs(5));
        let text = ws.chunks(&id, chunks_first).await.concat();
        ws.send(json!({"type": "cancel", "messageId": id})).await;
        let cancelled = Instant::now();
        let request = fake.wait_client_closed(i, Duration::from_secs(5));
        let took = request
            .client_closed_at
            .unwrap()
            .saturating_duration_since(cancelled);
        assert!(
            took <= limit,
            "case {i}: the model's request was closed {took:?} after the cancel"
        );
        let (rest, errors, done) = ws.read_answer(&id, chunks_first).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(done["status"], "cancelled", "case {i}: {done}");
        let expected = format!("{text}{}{}", rest.concat(), ai_service::CANCELLED_SUFFIX);
        assert_eq!(done["content"], expected, "case {i}");
    }
}

/// What one upstream fault must look like: the answer ends `failed` with the text produced
/// before the fault, an `error UPSTREAM_ERROR` frame about it comes just before its final
/// message (without the server's own words), and the session takes the next chat.
async fn assert_fault_ends_the_answer(
    stack: &Stack,
    fake: &FakeModel,
    session: &str,
    partial: &str,
    hidden: Option<&str>,
) -> Json {
    let mut ws = Page::open(&stack.ws_url(0, session)).await;
    let id = ws.ask("please").await;
    let mut text = String::new();
    let mut error = None;
    let done = loop {
        let frame = ws.frame().await;
        if frame["type"] == "error" {
            assert!(error.is_none(), "two error frames");
            error = Some(frame);
            continue;
        }
        if frame["type"] != "message" || frame["data"]["messageId"] != id.as_str() {
            continue;
        }
        let data = &frame["data"];
        if data["isComplete"] == true {
            break data.clone();
        }
        assert!(error.is_none(), "a chunk after the error frame");
        text.push_str(data["chunk"].as_str().unwrap());
    };
    let error = error.expect("no error frame before the final message");
    assert_eq!(error["code"], "UPSTREAM_ERROR", "{error}");
    assert_eq!(error["messageId"], id.as_str());
    assert_eq!(error["error"], ai_service::UPSTREAM_ERROR_TEXT);
    if let Some(hidden) = hidden {
        assert!(!error.to_string().contains(hidden));
        assert!(!done.to_string().contains(hidden));
    }
    assert_eq!(done["status"], "failed", "{done}");
    // An empty content is left out of the frame.
    assert_eq!(done["content"].as_str().unwrap_or_default(), partial);
    assert_eq!(text, partial);

    // The session is free: the next chat streams a whole answer.
    fake.push(Reply::Stream(Script::tokens(["Fine", " now."])));
    let next = ws.ask("again").await;
    let (chunks, errors, done_next) = ws.read_answer(&next, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(chunks.concat(), "Fine now.");
    assert_eq!(done_next["status"], "completed");
    done
}

/// No server at OPENAI_BASE_URL: the answer fails (after the retries) with no text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_model_server_fails_the_answer() {
    let nobody = testkit::free_port();
    let fake = FakeModel::start();
    let mut env = model::env(&fake);
    let dead = format!("http://127.0.0.1:{nobody}/v1");
    env.retain(|(k, _)| *k != "OPENAI_BASE_URL");
    env.push(("OPENAI_BASE_URL", dead));
    let stack = Stack::start(StackOptions {
        env,
        ..StackOptions::default()
    })
    .await;
    let session = "prov-refused";
    let mut ws = Page::open(&stack.ws_url(0, session)).await;
    let id = ws.ask("anyone?").await;
    let (chunks, errors, done) = ws.read_answer(&id, 0).await;
    assert!(chunks.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "UPSTREAM_ERROR");
    assert_eq!(errors[0]["messageId"], id.as_str());
    assert_eq!(done["status"], "failed");
    assert_eq!(done["content"].as_str().unwrap_or_default(), "");
    let metrics = e2e::api::get_text(&format!("{}/metrics", stack.ai[0].url())).await;
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("ai_upstream_errors_total") && l.contains("kind=\"connect\""))
        .unwrap_or_else(|| panic!("no connect failure counted: {metrics}"));
    assert!(failures.ends_with(" 1"), "{failures}");
}

/// HTTP errors: a 5xx is retried before the first token (a 503 then a stream completes); a
/// 500 every time fails after three tries; a 400 fails at once. The server's error text is
/// logged, never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_retried_before_the_first_token_then_fail_the_answer() {
    let fake = FakeModel::start();
    let stack = stack_on(&fake, &[]).await;
    let secret = "internal detail: GPU 3 out of memory";
    let status = |status: u16| Reply::Status {
        status,
        body: json!({"error": {"message": secret}}).to_string(),
    };

    fake.push(status(503));
    fake.push(Reply::Stream(Script::tokens(["Second", " try."])));
    let mut ws = Page::open(&stack.ws_url(0, "prov-retry")).await;
    let id = ws.ask("hi").await;
    let (chunks, errors, done) = ws.read_answer(&id, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        (chunks.concat().as_str(), &done["status"]),
        ("Second try.", &json!("completed"))
    );
    assert_eq!(fake.requests().len(), 2);

    for _ in 0..3 {
        fake.push(status(500));
    }
    assert_fault_ends_the_answer(&stack, &fake, "prov-500", "", Some(secret)).await;
    // Two before, three for the 500s, one for the chat after.
    assert_eq!(fake.requests().len(), 6);

    fake.push(status(400));
    assert_fault_ends_the_answer(&stack, &fake, "prov-400", "", Some(secret)).await;
    assert_eq!(fake.requests().len(), 8, "a 400 must not be retried");
}

/// Timeouts: no first token within AI_FIRST_TOKEN_TIMEOUT_MS, or a gap between tokens longer
/// than AI_IDLE_TIMEOUT_MS, fails the answer with the text so far; neither is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_model_times_out_before_or_between_tokens() {
    let fake = FakeModel::start();
    let stack = stack_on(
        &fake,
        &[
            ("AI_FIRST_TOKEN_TIMEOUT_MS", "1000"),
            ("AI_IDLE_TIMEOUT_MS", "700"),
        ],
    )
    .await;
    fake.push(Reply::Stream(
        Script::tokens(["late"]).first_delay(Duration::from_secs(30)),
    ));
    let started = Instant::now();
    assert_fault_ends_the_answer(&stack, &fake, "prov-first", "", None).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        fake.requests().len(),
        2,
        "a first-token timeout must not be retried"
    );

    fake.push(Reply::Stream(
        Script::tokens(["Half", " of", " it"]).end(End::Hang),
    ));
    assert_fault_ends_the_answer(&stack, &fake, "prov-idle", "Half of it", None).await;
    assert_eq!(fake.requests().len(), 4);
}

/// A malformed event, a connection dropped mid-stream, and a body that ends without `[DONE]`
/// or a finish_reason each fail the answer with the text before them, and nothing is retried
/// once a token has come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_cut_off_stream_fails_the_answer_with_its_text() {
    let fake = FakeModel::start();
    let stack = stack_on(&fake, &[("AI_IDLE_TIMEOUT_MS", "5000")]).await;
    fake.push(Reply::Stream(
        Script::tokens(["Some", " words"]).end(End::Malformed),
    ));
    assert_fault_ends_the_answer(&stack, &fake, "prov-malformed", "Some words", None).await;
    fake.push(Reply::Stream(
        Script::tokens(["Cut", " off"]).end(End::Drop),
    ));
    assert_fault_ends_the_answer(&stack, &fake, "prov-drop", "Cut off", None).await;
    assert_eq!(
        fake.requests().len(),
        4,
        "nothing may be retried after the first token"
    );

    // A server that ends with a finish_reason but no [DONE] has answered completely.
    fake.push(Reply::Stream(
        Script::tokens(["All", " here."]).end(End::FinishOnly),
    ));
    let mut ws = Page::open(&stack.ws_url(0, "prov-finish")).await;
    let id = ws.ask("ok?").await;
    let (chunks, errors, done) = ws.read_answer(&id, 0).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(chunks.concat(), "All here.");
    assert_eq!(done["status"], "completed");

    let (_, body) = post_json(
        &format!("{}/api/chat", stack.gateway(0)),
        json!({"session_id": "prov-finish", "message": "still free?"}),
    )
    .await;
    assert_eq!(body["status"], "accepted", "{body}");
}
