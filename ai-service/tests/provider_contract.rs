//! The [`Provider`] contract, checked for every implementation: the simulator, and the
//! `openai` provider against a real HTTP server on loopback (`testkit::FakeModel`).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::Duration;

use ai_service::provider::{OpenAi, Piece, Prompt, Provider, Simulator};
use ai_service::{OpenAiConfig, simulator};
use futures_util::StreamExt;
use testkit::{End, FakeModel, Reply, Script};

fn prompt(message: &str) -> Prompt {
    Prompt {
        context: Vec::new(),
        message: message.into(),
    }
}

fn openai(model: &FakeModel) -> OpenAi {
    OpenAi::new(OpenAiConfig {
        base_url: model.base_url(),
        model: "contract".into(),
        api_key: None,
        max_tokens: None,
        system_prompt: None,
        context_messages: 20,
        context_chars: 32_000,
        first_token_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

/// Reads a whole answer: its text pieces, and whether it ended with `None` (complete).
async fn read_all(provider: &dyn Provider, message: &str) -> (Vec<String>, bool) {
    let mut answer = provider.answer(prompt(message));
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), answer.next())
            .await
            .expect("the answer stalled")
        {
            None => return (texts, true),
            Some(Ok(Piece::Text(text))) => texts.push(text.into_owned()),
            Some(Ok(Piece::Metadata(_))) => {}
            Some(Err(e)) => {
                // After an error, nothing.
                assert!(answer.next().await.is_none(), "a piece after the error {e}");
                return (texts, false);
            }
        }
    }
}

/// The shared part: pieces are non-empty, in order, concatenate to `expected`, and the stream
/// ends with `None`.
async fn complete_answer_is_its_pieces(provider: &dyn Provider, message: &str, expected: &str) {
    let (texts, complete) = read_all(provider, message).await;
    assert!(complete, "the answer did not complete");
    assert!(texts.iter().all(|t| !t.is_empty()), "an empty piece");
    assert!(texts.len() > 1, "one piece is not a stream");
    assert_eq!(texts.concat(), expected);
}

#[tokio::test]
async fn simulator_keeps_the_contract() {
    let provider = Simulator::new(Duration::from_millis(1));
    let message = "How is Redis used?";
    complete_answer_is_its_pieces(&provider, message, simulator::reply_for(message)).await;
    assert_eq!(provider.context_limits(), (0, 0));
    assert!(!provider.may_stall());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_keeps_the_contract() {
    let model = FakeModel::start();
    let tokens = ["Ça", " va", " très", " bien", " 🎉"];
    model.push(Reply::Stream(Script::tokens(tokens).split(2).usage(3, 5)));
    let provider = openai(&model);
    complete_answer_is_its_pieces(&provider, "hi", &tokens.concat()).await;
    assert_eq!(provider.context_limits(), (20, 32_000));
    assert!(provider.may_stall());

    // A failure is one error after the pieces so far.
    model.push(Reply::Stream(Script::tokens(["part"]).end(End::Drop)));
    let (texts, complete) = read_all(&provider, "hi").await;
    assert_eq!((texts, complete), (vec!["part".to_owned()], false));
}

/// The metadata piece carries the model and the usage the server reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_reports_usage_as_metadata() {
    let model = FakeModel::start();
    model.push(Reply::Stream(Script::tokens(["a", "b"]).usage(7, 2)));
    let provider = openai(&model);
    let mut answer = provider.answer(prompt("hi"));
    let mut metadata = None;
    while let Some(piece) = answer.next().await {
        if let Piece::Metadata(m) = piece.unwrap() {
            metadata = Some(m);
        }
    }
    let metadata = metadata.expect("no metadata");
    assert_eq!(metadata.model.as_deref(), Some("contract"));
    let usage = metadata.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (7, 2, 9)
    );
}

/// Dropping an answer closes its request's connection: the model server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_openai_answer_closes_its_connection() {
    let model = FakeModel::start();
    model.push(Reply::Stream(Script::tokens(["one"]).end(End::Hang)));
    let provider = openai(&model);
    let mut answer = provider.answer(prompt("hi"));
    let first = answer.next().await.unwrap().unwrap();
    assert_eq!(first, Piece::Text("one".into()));
    drop(answer);
    let request = model.wait_client_closed(0, Duration::from_secs(2));
    assert!(!request.finished);
}
