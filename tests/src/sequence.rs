//! What one socket was sent, checked against the delivery guarantee: every chunk of an answer
//! exactly once and in order (0, 1, 2, ... or on from the `lastIndex` of the latest `history`),
//! no frame of an answer after its final message, no final message twice, and a completed
//! answer's final text equal to what its chunks spelled.
//!
//! A `history` frame replaces what the client holds (docs/PROTOCOL.md, "What a client must
//! do"), so the check starts again from each one. Used by the fault tests and the chaos soak.

use std::collections::{HashMap, HashSet};

use crate::Json;

/// A broken promise, with enough context to find it in the frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Position of the offending frame in the socket's frames.
    pub at: usize,
    pub kind: Kind,
    pub what: String,
}

/// The kinds of broken promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A chunk skipped ahead: the ones between were never sent.
    Gap,
    /// Something sent again: a chunk at or below the last one, a final message twice, a chunk
    /// after the final message.
    Duplicate,
    /// A final text that is not what the chunks spelled, or a malformed frame.
    Mismatch,
}

/// What a socket showed of each answer once it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub status: String,
    pub content: String,
}

/// The outcome of checking one socket.
#[derive(Debug, Default)]
pub struct Checked {
    pub violations: Vec<Violation>,
    /// Answers seen ending (live, or complete in a `history` frame), by message id.
    pub ended: HashMap<String, Ended>,
    /// Chunk frames sent.
    pub chunks: usize,
    /// `history` frames sent (1 + resyncs).
    pub histories: usize,
}

/// An answer the client is following.
struct Following {
    /// The text so far: the snapshot's partial content, then each delta.
    text: String,
    next: u64,
}

/// Whether `frame` shows answer `id` ended (live, or complete in a `history` frame).
pub fn shows_ended(frame: &Json, id: &str) -> bool {
    let complete = |m: &Json| m["messageId"] == id && m["isComplete"] == true;
    (frame["type"] == "message" && complete(&frame["data"]))
        || (frame["type"] == "history"
            && frame["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .any(complete))
}

/// Checks `frames`, in the order one socket received them.
pub fn check(frames: &[Json]) -> Checked {
    let mut out = Checked::default();
    let mut following: HashMap<String, Following> = HashMap::new();
    let mut complete: HashSet<String> = HashSet::new();
    for (at, frame) in frames.iter().enumerate() {
        let mut violation =
            |kind: Kind, what: String| out.violations.push(Violation { at, kind, what });
        match frame["type"].as_str() {
            Some("history") => {
                out.histories += 1;
                following.clear();
                complete.clear();
                let streaming = frame["streaming"]["messageId"].as_str();
                for message in frame["messages"].as_array().into_iter().flatten() {
                    let id = text_of(&message["messageId"]);
                    if message["isComplete"] == true {
                        complete.insert(id.clone());
                        if message["role"] == "assistant" {
                            out.ended.insert(id, ended_of(message));
                        }
                    } else if Some(id.as_str()) == streaming {
                        let last = frame["streaming"]["lastIndex"].as_i64().unwrap_or(-1);
                        following.insert(
                            id,
                            Following {
                                text: text_of(&message["content"]),
                                next: u64::try_from(last + 1).unwrap_or(0),
                            },
                        );
                    } else {
                        violation(
                            Kind::Mismatch,
                            format!("history holds incomplete {id} that is not streaming"),
                        );
                    }
                }
            }
            Some("message") => {
                let data = &frame["data"];
                let id = text_of(&data["messageId"]);
                if data["isComplete"] == true {
                    if !complete.insert(id.clone()) {
                        violation(Kind::Duplicate, format!("final message {id} sent twice"));
                        continue;
                    }
                    if data["role"] != "assistant" {
                        continue;
                    }
                    let ended = ended_of(data);
                    if let Some(f) = following.remove(&id) {
                        let expected_text = ended.status != "completed" || ended.content == f.text;
                        if !ended.content.starts_with(&f.text) || !expected_text {
                            violation(
                                Kind::Mismatch,
                                format!(
                                    "final text of {id} ({} chars, {}) is not what its chunks spelled ({} chars)",
                                    ended.content.len(),
                                    ended.status,
                                    f.text.len()
                                ),
                            );
                        }
                    }
                    out.ended.insert(id, ended);
                    continue;
                }
                out.chunks += 1;
                if complete.contains(&id) {
                    violation(
                        Kind::Duplicate,
                        format!("chunk of {id} after its final message"),
                    );
                    continue;
                }
                let Some(index) = data["index"].as_u64() else {
                    violation(
                        Kind::Mismatch,
                        format!("incomplete message {id} without an index"),
                    );
                    continue;
                };
                let delta = text_of(&data["chunk"]);
                let f = following.entry(id.clone()).or_insert(Following {
                    text: String::new(),
                    next: 0,
                });
                if index != f.next {
                    violation(
                        if index > f.next {
                            Kind::Gap
                        } else {
                            Kind::Duplicate
                        },
                        format!("chunk {index} of {id} where {} was next", f.next),
                    );
                    // Go on from what was sent, so one gap is reported once.
                    f.next = index + 1;
                    continue;
                }
                f.next += 1;
                f.text.push_str(&delta);
            }
            _ => {}
        }
    }
    out
}

fn text_of(value: &Json) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn ended_of(message: &Json) -> Ended {
    Ended {
        status: text_of(&message["status"]),
        content: text_of(&message["content"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(id: &str, index: u64, delta: &str) -> Json {
        json!({"type": "message", "data": {"messageId": id, "role": "assistant",
            "isComplete": false, "status": "streaming", "index": index, "chunk": delta}})
    }

    fn fin(id: &str, content: &str) -> Json {
        json!({"type": "message", "data": {"messageId": id, "role": "assistant",
            "isComplete": true, "status": "completed", "content": content}})
    }

    fn history(partial: &str, last: i64) -> Json {
        json!({"type": "history", "messages": [
            {"messageId": "a", "role": "assistant", "isComplete": false, "content": partial}],
            "streaming": {"messageId": "a", "lastIndex": last}})
    }

    #[test]
    fn a_clean_stream_passes() {
        let frames = [
            history("", -1),
            chunk("a", 0, "he"),
            chunk("a", 1, "llo"),
            fin("a", "hello"),
        ];
        let c = check(&frames);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.ended["a"].content, "hello");
    }

    #[test]
    fn a_resync_restarts_from_its_snapshot() {
        let frames = [
            history("", -1),
            chunk("a", 0, "he"),
            history("hel", 2),
            chunk("a", 3, "lo"),
            fin("a", "hello"),
        ];
        assert!(check(&frames).violations.is_empty());
    }

    #[test]
    fn gaps_duplicates_and_late_frames_are_caught() {
        let frames = [
            history("", -1),
            chunk("a", 0, "he"),
            chunk("a", 2, "lo"),
            chunk("a", 2, "lo"),
            fin("a", "hello"),
            fin("a", "hello"),
            chunk("a", 3, "!"),
        ];
        let violations = check(&frames).violations;
        let kinds: Vec<Kind> = violations.iter().map(|v| v.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Gap,
                Kind::Duplicate,
                Kind::Mismatch,
                Kind::Duplicate,
                Kind::Duplicate
            ]
        );
        let whats: Vec<String> = violations.into_iter().map(|v| v.what).collect();
        assert_eq!(whats.len(), 5, "{whats:?}");
        assert!(whats[0].contains("chunk 2 of a where 1 was next"));
        assert!(whats[1].contains("chunk 2 of a where 3 was next"));
        assert!(whats[2].contains("final text"));
        assert!(whats[3].contains("sent twice"));
        assert!(whats[4].contains("after its final"));
    }
}
