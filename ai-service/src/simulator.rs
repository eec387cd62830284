//! The simulated AI: picks a canned answer by keywords and cuts it into word-sized deltas.
//!
//! [`crate::provider::Simulator`] streams these; a model server takes its place with
//! `AI_PROVIDER=openai`.

use std::sync::LazyLock;

/// The seed's six topics, and a long answer (all six, over and over) for trying long streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Greeting,
    Streaming,
    Persistence,
    Redis,
    Workflow,
    DeepDive,
    /// Asked for with "long answer" or "at length": [`LONG_ANSWER_WORDS`] words or more.
    Long,
}

/// The long answer's length, at least: a screenful many times over, as a real model's longest
/// answers are (the browser app's tests render one of these while it streams).
pub const LONG_ANSWER_WORDS: usize = 2_000;

/// Picks the topic a message is about; the most specific topic wins, greeting is the default.
pub fn topic_of(message: &str) -> Topic {
    let text = message.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&["long answer", "at length"]) {
        Topic::Long
    } else if has(&[
        "deep dive",
        "deep-dive",
        "technical",
        "internals",
        "under the hood",
        "implementation",
    ]) {
        Topic::DeepDive
    } else if has(&["redis", "pub/sub", "pubsub", "cache"]) {
        Topic::Redis
    } else if has(&[
        "persist", "history", "recover", "reload", "refresh", "database", "sql", "durab",
    ]) {
        Topic::Persistence
    } else if has(&[
        "stream",
        "websocket",
        "chunk",
        "real-time",
        "realtime",
        "word by word",
    ]) {
        Topic::Streaming
    } else if has(&[
        "workflow",
        "flow",
        "how does",
        "how do",
        "step",
        "process",
        "lifecycle",
    ]) {
        Topic::Workflow
    } else {
        Topic::Greeting
    }
}

/// The full answer to `message`.
pub fn reply_for(message: &str) -> &'static str {
    match topic_of(message) {
        Topic::Greeting => GREETING,
        Topic::Streaming => STREAMING,
        Topic::Persistence => PERSISTENCE,
        Topic::Redis => REDIS,
        Topic::Workflow => WORKFLOW,
        Topic::DeepDive => DEEP_DIVE,
        Topic::Long => &LONG,
    }
}

/// The six answers as numbered sections, repeated until the text has [`LONG_ANSWER_WORDS`].
static LONG: LazyLock<String> = LazyLock::new(|| {
    let sections = [
        ("Hello", GREETING),
        ("Streaming", STREAMING),
        ("Persistence", PERSISTENCE),
        ("Redis", REDIS),
        ("Workflow", WORKFLOW),
        ("Deep dive", DEEP_DIVE),
    ];
    let mut parts = Vec::new();
    let mut words = 0;
    for (n, (title, text)) in sections.iter().cycle().enumerate() {
        if words >= LONG_ANSWER_WORDS {
            break;
        }
        let part = format!("## {}. {title}\n\n{text}", n + 1);
        words += part.split_whitespace().count();
        parts.push(part);
    }
    parts.join("\n\n")
});

/// Cuts `text` into deltas of one word each, with the whitespace before a word kept in front
/// of it, so that the deltas concatenated are exactly `text`.
pub fn deltas(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                out.push(&text[start..i]);
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

const GREETING: &str = "Hello! I am the demo assistant of this streaming chat. Every word you \
see arrives as its own chunk: an AI node produces it, appends it to a log in Redis and publishes \
it on your session's channel, and the gateway node that holds your WebSocket forwards it to you.\n\n\
You can ask me about the **streaming architecture**, about **persistence and recovery**, about \
how **Redis** is used, about the **workflow** of a message from your keyboard to the screen, or \
for a **technical deep dive**. Try reloading the page while I am answering: the part you have \
already seen comes back at once, and the rest keeps streaming from exactly where it was, with no \
word lost and none repeated. You can also press Stop at any time, from any tab, and the answer \
ends within one chunk interval.";

const STREAMING: &str = "The streaming path is short on purpose. When you send a message, a \
gateway node forwards it to one of the AI nodes, which answers 202 at once with the ids of your \
message and of the answer. The AI node then produces the answer word by word.\n\n\
For every word it runs one small Lua script in Redis. The script appends the word to the \
answer's chunk log and publishes a frame on the channel `chat:stream:{session}` in the same \
atomic step, so the log and the live stream can never disagree.\n\n\
Each gateway node keeps one pub/sub connection to Redis for all its sessions and subscribes a \
session's channel while at least one of its sockets watches that session. A frame that arrives \
is handed, as the exact bytes that were published, to the bounded queue of every local socket \
of the session. One writer task per socket drains that queue, so a slow browser only ever slows \
itself: when its queue fills it is closed with code 1013, reconnects, and resumes from the log. \
Chunk frames carry only the new word and its index, never the whole text so far, so the bytes \
on the wire grow linearly with the answer.";

const PERSISTENCE: &str = "History is kept in layers. While an answer streams, its words live \
in a chunk log in Redis, one list entry per chunk, in index order. When the answer ends, the \
final message is appended to the session's history list and the stream lease is released in \
one atomic script, so a reader sees either the streaming answer with its chunks or the finished \
answer in history, never both and never neither.\n\n\
Recovery builds on that. When you reload the page, the gateway first subscribes to your \
session, then reads a consistent snapshot of history, the active answer and its chunk log in one \
step, sends it to you with the index of the last chunk it contained, and only then forwards live \
chunks, dropping any with an index at or below that one. If your client ever notices a gap, it \
sends a `resume` frame and receives the missing chunks from the log, or the final message if the \
answer has ended meanwhile. Redis keeps history for twenty-four hours; a SQL store keeps it for \
good.";

const REDIS: &str = "Redis plays four roles here. First, **pub/sub**: every session has a \
channel, `chat:stream:{session}`, and each gateway node subscribes only the channels of the \
sessions it serves, through one shared connection with reference-counted subscriptions rather \
than one connection per browser.\n\n\
Second, **storage**: `chat:history:{session}` is a list of completed messages, appended with \
RPUSH and kept for twenty-four hours, and `chat:chunks:{message}` is the chunk log of an answer, \
kept for five minutes after it ends so that late reconnects can still resume.\n\n\
Third, **coordination**: `streaming:active:{session}` is the stream lease, taken with SET NX and \
refreshed by every chunk, so a session has one answer at a time and a second chat gets a 409; \
`streaming:cancel:{session}:{message}` is the cancel flag that any node can set.\n\n\
Fourth, **atomicity**: every change other nodes can observe is a single Lua script, which is \
what makes exactly-once delivery possible on top of an at-most-once pub/sub.";

const WORKFLOW: &str = "Here is the life of one message, step by step.\n\n\
1. Your browser opens a WebSocket to a gateway node through NGINX. The node subscribes your \
session's channel, waits for Redis to confirm, and only then sends `welcome` and your history.\n\
2. You send a message. The gateway validates it and forwards it to an AI node, trying the next \
node if one cannot be reached.\n\
3. The AI node takes the session's stream lease, stores your message in history and publishes \
it, all in one atomic step, and answers 202 with the new message ids.\n\
4. It generates the answer word by word. Each word is appended to the chunk log and published \
together, and the cancel flag is checked in the same step.\n\
5. Every gateway holding a socket of your session forwards each frame to those sockets.\n\
6. At the end, the final message goes to history, the lease is released and the final frame is \
published, again in one step. Your next message can start right away.";

const DEEP_DIVE: &str = "A technical deep dive into the delivery guarantee.\n\n\
The hard part is the moment a socket connects while an answer is streaming. Redis pub/sub is \
at most once and keeps nothing, and the snapshot and the live frames travel on different \
connections. The gateway therefore does this, in this order:\n\n\
```text\n\
1. register the socket's queue with the node's hub\n\
2. SUBSCRIBE chat:stream:{sid} and wait for the confirmation\n\
3. EVAL snapshot -> history + active answer + chunk log (one atomic step)\n\
4. send history with lastIndex = number of chunks - 1\n\
5. forward queued and live frames, dropping index <= lastIndex\n\
```\n\n\
Because the subscription is confirmed before the snapshot is read, every chunk is either in the \
snapshot or published after it, and so queued. Because the filter stays on for the life of the \
socket, a chunk published just before the snapshot but delivered after it is dropped. Final and \
user messages are remembered by id, so they are never sent twice either.\n\n\
On the producer side the append script checks the lease and the cancel flag, refuses an index \
that would leave a gap, and treats a retried index as already done. Retries are therefore \
harmless, and a cancel takes effect before the next chunk is stored.";

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of the seed's six topics is reachable by a plain question.
    #[test]
    fn each_topic_is_chosen_by_its_keywords() {
        assert_eq!(topic_of("Hello there"), Topic::Greeting);
        assert_eq!(
            topic_of("Explain the streaming architecture"),
            Topic::Streaming
        );
        assert_eq!(
            topic_of("What about persistence and recovery?"),
            Topic::Persistence
        );
        assert_eq!(topic_of("How is Redis used?"), Topic::Redis);
        assert_eq!(topic_of("Walk me through the workflow"), Topic::Workflow);
        assert_eq!(topic_of("Give me a technical deep dive"), Topic::DeepDive);
        assert_eq!(topic_of("¿qué?"), Topic::Greeting);
        assert_eq!(topic_of("Give me a long answer"), Topic::Long);
    }

    /// Every answer is 80 to 400 words long.
    #[test]
    fn every_answer_is_80_to_400_words() {
        for text in [GREETING, STREAMING, PERSISTENCE, REDIS, WORKFLOW, DEEP_DIVE] {
            let words = text.split_whitespace().count();
            assert!((80..=400).contains(&words), "{words} words: {text}");
        }
    }

    /// The long answer has its words, in sections, and streams as one delta per word.
    #[test]
    fn the_long_answer_is_long() {
        let text = reply_for("a long answer, please");
        let words = text.split_whitespace().count();
        assert!(words >= LONG_ANSWER_WORDS, "{words} words");
        assert!(text.starts_with("## 1. Hello\n\n"));
        assert_eq!(deltas(text).len(), words);
        assert_eq!(deltas(text).concat(), text);
    }

    /// The deltas of a text concatenate back to exactly that text.
    #[test]
    fn deltas_concatenate_to_the_text() {
        for text in [GREETING, DEEP_DIVE, "  lead", "one", "a  b\n\nc ", ""] {
            assert_eq!(deltas(text).concat(), text);
        }
        assert_eq!(deltas("Hi there\nyou"), vec!["Hi", " there", "\nyou"]);
    }
}
