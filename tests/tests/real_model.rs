//! A real model behind the stack, opt-in (`scripts/test --with-model`, or run this file with
//! `--run-ignored only` and `LLAMA_SERVER` / `MODEL_GGUF` from `scripts/fetch-model`):
//! llama.cpp's `llama-server` serving Gemma 3 270M, started here on a free port. An answer
//! streams, a reload mid-answer resumes it, and a cancel stops the model generating.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use e2e::{Json, Stack, StackOptions, WsClient, http};
use serde_json::json;

/// `llama-server` on a free loopback port, killed when dropped.
struct LlamaServer {
    child: Child,
    port: u16,
}

impl LlamaServer {
    /// Starts it with `scripts/up --model`'s flags (answers of up to 400 tokens, so that one
    /// is still streaming when it is cancelled) and waits until `/health` answers 200. It dies
    /// with the test process (`setpriv --pdeathsig`), even when that is killed.
    async fn start() -> LlamaServer {
        let binary = std::env::var("LLAMA_SERVER")
            .expect("LLAMA_SERVER (from scripts/fetch-model) is not set");
        let model =
            std::env::var("MODEL_GGUF").expect("MODEL_GGUF (from scripts/fetch-model) is not set");
        let port = testkit::free_port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("llama-{port}.log"))).unwrap();
        let child = testkit::dying_with_tests(std::path::Path::new(&binary))
            .args(["-m", &model, "--alias", "gemma3-270m", "--no-jinja"])
            .args(["--chat-template", "gemma", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "-c", "16384", "-t", "2"])
            .args(["-n", "400", "--no-ui"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting llama-server");
        let mut server = LlamaServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "llama-server exited ({status}); see {}",
                    std::env::temp_dir()
                        .join(format!("llama-{port}.log"))
                        .display()
                );
            }
            if let Ok(r) = http().get(format!("{}/health", server.root())).send().await
                && r.status().is_success()
            {
                return server;
            }
            assert!(Instant::now() < deadline, "llama-server not ready in 120 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn root(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether any slot is generating (`GET /slots`).
    async fn generating(&self) -> bool {
        let slots: Json = http()
            .get(format!("{}/slots", self.root()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        slots
            .as_array()
            .unwrap()
            .iter()
            .any(|slot| slot["is_processing"] == true)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads chunk frames of answer `id` until `n` more have come; returns their text.
async fn chunks(ws: &mut WsClient, id: &str, n: usize) -> String {
    let mut text = String::new();
    let mut seen = 0;
    while seen < n {
        let frame = ws.frame_of("message").await;
        let data = &frame["data"];
        if data["messageId"] == id && data["chunk"].is_string() {
            text.push_str(data["chunk"].as_str().unwrap());
            seen += 1;
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real model: scripts/test --with-model"]
async fn a_real_model_streams_resumes_after_a_reload_and_stops_on_cancel() {
    let llama = LlamaServer::start().await;
    let stack = Stack::start(StackOptions {
        env: vec![
            ("AI_PROVIDER", "openai".into()),
            ("OPENAI_BASE_URL", format!("{}/v1", llama.root())),
            ("OPENAI_MODEL", "gemma3-270m".into()),
            ("AI_CONTEXT_MESSAGES", "6".into()),
            ("AI_CONTEXT_CHARS", "6000".into()),
        ],
        ..StackOptions::default()
    })
    .await;

    // Streams, and a reload mid-answer picks it up where it was.
    let session = "real-model";
    let (mut first, _, _) = WsClient::open(&stack.ws_url(0, session)).await;
    first
        .send_json(json!({"type": "chat", "message": "Tell me a story about the sea."}))
        .await;
    let id = first.frame_of("accepted").await["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = chunks(&mut first, &id, 10).await;
    first.close().await;
    let (mut page, _, history) = WsClient::open(&stack.ws_url(0, session)).await;
    let answer = e2e::message_in(&history, &id).expect("the answer in history");
    let mut text = answer["content"].as_str().unwrap_or_default().to_owned();
    assert!(text.starts_with(&seen), "history lost what was seen");
    let done = if answer["isComplete"] == true {
        answer
    } else {
        let mut next = history["streaming"]["lastIndex"].as_i64().unwrap() + 1;
        loop {
            let frame = page.frame_of("message").await;
            let data = &frame["data"];
            if data["messageId"] != id.as_str() {
                continue;
            }
            if data["isComplete"] == true {
                break data.clone();
            }
            assert_eq!(data["index"], next, "gap or duplicate");
            text.push_str(data["chunk"].as_str().unwrap());
            next += 1;
        }
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["content"].as_str().unwrap(), text);
    assert!(
        done["metadata"]["usage"]["completionTokens"]
            .as_u64()
            .unwrap()
            >= 10,
        "{done}"
    );

    // A cancel mid-answer ends it, and the model server stops generating.
    page.send_json(json!({"type": "chat", "message": "And then?"}))
        .await;
    let id = page.frame_of("accepted").await["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    chunks(&mut page, &id, 3).await;
    assert!(llama.generating().await, "the model is not generating");
    page.send_json(json!({"type": "cancel", "messageId": id}))
        .await;
    let cancelled = Instant::now();
    let deadline = cancelled + Duration::from_secs(1);
    while llama.generating().await {
        assert!(
            Instant::now() < deadline,
            "the model still generates 1 s after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = cancelled.elapsed();
    loop {
        let frame = page.frame_of("message").await;
        let data = &frame["data"];
        if data["messageId"] == id.as_str() && data["isComplete"] == true {
            assert_eq!(data["status"], "cancelled", "{data}");
            break;
        }
    }
    eprintln!("the model stopped generating {stopped:?} after the cancel");
}
