//! The gateway's per-frame parse: [`peek_live_frame`] reads the few fields deduplication needs
//! from each frame published on Redis, once per frame whatever the number of sockets.
//!
//! `cargo bench -p protocol --bench frames`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use protocol::frames::peek_live_frame;
use protocol::{ChatMessage, ErrorCode, MessageId, MessageStatus, ServerFrame, SessionId, UserId};

/// An answer being streamed, with UUID ids as production mints them.
fn answer() -> ChatMessage {
    ChatMessage::started_answer(
        MessageId::parse("6f1c2a9e-3b4d-4e8f-9a7b-1c2d3e4f5a6b").expect("a valid id"),
        SessionId::parse("0b7e4c1d-8f2a-4a6b-b3c9-5d6e7f8a9b0c").expect("a valid id"),
        UserId::parse("user_4821").expect("a valid id"),
        1_767_225_600_000,
    )
}

/// A chunk frame as an AI node publishes it (about 200 bytes).
fn chunk_frame() -> Vec<u8> {
    ServerFrame::Message {
        data: answer().chunk_of(137, " the gateway forwards"),
    }
    .to_json()
    .into_bytes()
}

/// The final frame of an answer, carrying its whole text (about 1.2 KB).
fn complete_frame() -> Vec<u8> {
    let content = "Streaming keeps the first token fast. ".repeat(28);
    ServerFrame::Message {
        data: answer().finished(content, MessageStatus::Completed),
    }
    .to_json()
    .into_bytes()
}

/// A frame that is not a message: a stream's error.
fn other_frame() -> Vec<u8> {
    let ServerFrame::Error {
        error,
        code,
        timestamp,
        ..
    } = ServerFrame::error(ErrorCode::StreamFailed, "the AI node stopped streaming")
    else {
        unreachable!("ServerFrame::error makes an error frame")
    };
    ServerFrame::Error {
        error,
        code,
        timestamp,
        message_id: Some(answer().message_id),
    }
    .to_json()
    .into_bytes()
}

fn peek(c: &mut Criterion) {
    let frames = [
        ("chunk", chunk_frame()),
        ("complete", complete_frame()),
        ("other", other_frame()),
    ];
    for (_, frame) in &frames {
        assert!(peek_live_frame(frame).is_some(), "the frames peek");
    }
    let mut group = c.benchmark_group("peek_live_frame");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in &frames {
        group.bench_function(format!("{name}/{}B", frame.len()), |b| {
            b.iter(|| peek_live_frame(black_box(frame)))
        });
    }
    // What a naive full parse of the same chunk frame would cost instead of the peek.
    let chunk = &frames[0].1;
    group.bench_function(format!("serde_json_value/chunk/{}B", chunk.len()), |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(chunk)).expect("JSON"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = peek
}
criterion_main!(benches);
