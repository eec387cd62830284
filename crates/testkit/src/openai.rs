//! A fake OpenAI-compatible model server (Chat Completions, streaming) on loopback.
//!
//! Runtime-agnostic: std threads and blocking `std::net` I/O, so it serves `#[tokio::test]`
//! tests and AI-node processes alike. One request per connection (`Connection: close`); each
//! request takes the next queued [`Reply`], or the default one when the queue is empty.
//! Every request is recorded ([`Recorded`]), including when its client went away.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, sleep, spawn};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Polling interval of waits, interruptible sleeps and hangs.
const TICK: Duration = Duration::from_millis(10);

/// A running fake model server on 127.0.0.1. Dropping it stops accepting, ends hanging
/// replies and lets every connection thread finish.
pub struct FakeModel {
    shared: Shared,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

/// One request as the server saw it, and what became of its reply.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// In arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body, `Value::Null` if it was not JSON.
    pub body: Value,
    /// When the whole request (head and body) had been read.
    pub received_at: Instant,
    /// When the first non-empty content token was written.
    pub first_token_at: Option<Instant>,
    /// When the client closed the connection while the server was still replying (EOF or an
    /// error on the read side, or a failed write); `None` if the server finished first.
    pub client_closed_at: Option<Instant>,
    /// The server wrote its whole scripted reply (for [`End::Drop`]: up to the abrupt close;
    /// never for [`End::Hang`] and [`End::Malformed`]).
    pub finished: bool,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200 OK` with a chunked `text/event-stream` body following the script.
    Stream(Script),
    /// That status with `content-type: application/json` and `body` (with `Content-Length`),
    /// then close.
    Status { status: u16, body: String },
}

/// A streamed reply: after `first_delay`, a role event (`"delta":{"role":"assistant",
/// "content":""}`), one event per token `delay` apart, then the [`End`].
#[derive(Debug, Clone)]
pub struct Script {
    pub tokens: Vec<String>,
    pub first_delay: Duration,
    pub delay: Duration,
    /// `(prompt, completion)` tokens, sent as a usage chunk after the finish chunk.
    pub usage: Option<(u32, u32)>,
    /// Cut every event into HTTP chunks of this many bytes, ~3 ms apart.
    pub split: Option<usize>,
    pub end: End,
}

impl Script {
    /// These tokens, no delays, no usage, no split, [`End::Done`].
    pub fn tokens<I, S>(tokens: I) -> Script
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Script {
            tokens: tokens.into_iter().map(Into::into).collect(),
            first_delay: Duration::ZERO,
            delay: Duration::ZERO,
            usage: None,
            split: None,
            end: End::Done,
        }
    }

    /// Sleeps `d` before the role event and the first token.
    pub fn first_delay(mut self, d: Duration) -> Self {
        self.first_delay = d;
        self
    }

    /// Sleeps `d` between tokens (not before the first).
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Sends a usage chunk (`total_tokens` = the sum) after the finish chunk, when there is one.
    pub fn usage(mut self, prompt: u32, completion: u32) -> Self {
        self.usage = Some((prompt, completion));
        self
    }

    /// Sends every event as HTTP chunks of `bytes` bytes (at least 1), ~3 ms apart, cutting
    /// through UTF-8 characters, the `data:` prefix and the blank-line separator.
    pub fn split(mut self, bytes: usize) -> Self {
        self.split = Some(bytes.max(1));
        self
    }

    /// How the stream ends after the tokens.
    pub fn end(mut self, end: End) -> Self {
        self.end = end;
        self
    }
}

/// How a streamed reply ends after its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Finish chunk (`finish_reason: "stop"`), usage chunk if any, `data: [DONE]`, then the
    /// terminating zero-length HTTP chunk.
    Done,
    /// Finish chunk and usage chunk if any, then a clean end of body without `data: [DONE]`.
    FinishOnly,
    /// The connection is closed abruptly: no finish chunk, no `[DONE]`, no terminating chunk.
    Drop,
    /// An event with invalid JSON (`data: {"choices":[{"delta":`), then like [`End::Hang`].
    Malformed,
    /// Nothing more; the connection stays open until the client closes it (setting
    /// `client_closed_at`) or the [`FakeModel`] is dropped.
    Hang,
}

/// State shared by the handle, the accept loop and the connection threads.
type Shared = Arc<Mutex<State>>;

struct State {
    /// The [`FakeModel`] was dropped.
    stop: bool,
    queue: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
    /// Per request: the server is done with it, so a later EOF is not the client going away.
    done: Vec<bool>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeModel {
    /// Binds 127.0.0.1 on a free port and accepts connections on a thread, each served on
    /// its own thread.
    pub fn start() -> FakeModel {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the fake model");
        let addr = listener.local_addr().expect("fake model address");
        let default = Reply::Stream(Script::tokens([
            "Hello", " from", " the", " fake", " model.",
        ]));
        let shared: Shared = Arc::new(Mutex::new(State {
            stop: false,
            queue: VecDeque::new(),
            default,
            requests: Vec::new(),
            done: Vec::new(),
        }));
        let accepting = shared.clone();
        let accept = spawn(move || {
            for stream in listener.incoming() {
                if lock(&accepting).stop {
                    break;
                }
                match stream {
                    Ok(stream) => {
                        let shared = accepting.clone();
                        spawn(move || serve(stream, shared));
                    }
                    Err(_) => sleep(TICK),
                }
            }
        });
        FakeModel {
            shared,
            addr,
            accept: Some(accept),
        }
    }

    /// The base URL an OpenAI client is configured with: `http://127.0.0.1:{port}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `reply`; each request takes the next queued reply, in order.
    pub fn push(&self, reply: Reply) {
        lock(&self.shared).queue.push_back(reply);
    }

    /// The reply for requests that find the queue empty (initially a five-token stream,
    /// "Hello from the fake model.", ending in [`End::Done`]).
    pub fn set_default(&self, reply: Reply) {
        lock(&self.shared).default = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// Polls until at least `n` requests arrived and returns them all; panics after `limit`.
    pub fn wait_requests(&self, n: usize, limit: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + limit;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            let paths: Vec<_> = requests
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            let got = requests.len();
            assert!(
                Instant::now() < deadline,
                "fake model: expected at least {n} requests within {limit:?}, got {got}: {paths:?}"
            );
            sleep(TICK);
        }
    }

    /// Polls until the client of request `i` (0-based, arrival order) closed its connection
    /// before the server finished replying, and returns that request; panics after `limit`.
    pub fn wait_client_closed(&self, i: usize, limit: Duration) -> Recorded {
        let deadline = Instant::now() + limit;
        loop {
            let request = self.requests().into_iter().nth(i);
            if let Some(r) = request.as_ref().filter(|r| r.client_closed_at.is_some()) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "fake model: the client of request {i} did not close its connection within \
                 {limit:?} (request: {request:?})"
            );
            sleep(TICK);
        }
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        // Wake the accept loop; if that fails, leave it blocked rather than hang here.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(accept) = self.accept.take().filter(|_| woke) {
            let _ = accept.join();
        }
    }
}

/// Reads the request line, headers and a `Content-Length` body; `None` if the connection
/// closed, failed or timed out first.
fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = stream.read(&mut tmp).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf.split_off(head_end + 4);
    let missing = length.saturating_sub(body.len()) as u64;
    stream.take(missing).read_to_end(&mut body).ok()?;
    if body.len() < length {
        return None;
    }
    let body = serde_json::from_slice(&body[..length]).unwrap_or(Value::Null);
    Some(Recorded {
        method,
        path,
        headers,
        body,
        received_at: Instant::now(),
        first_token_at: None,
        client_closed_at: None,
        finished: false,
    })
}

/// Serves one connection: records the request, watches for the client going away, replies,
/// then closes.
fn serve(mut stream: TcpStream, shared: Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let _ = stream.set_read_timeout(None);
    let model = request.body["model"]
        .as_str()
        .unwrap_or("fake-model")
        .to_string();
    let (index, reply) = {
        let mut state = lock(&shared);
        state.requests.push(request);
        state.done.push(false);
        let reply = state
            .queue
            .pop_front()
            .unwrap_or_else(|| state.default.clone());
        (state.requests.len() - 1, reply)
    };
    let mut conn = Conn {
        stream,
        shared,
        index,
    };
    if let Ok(mut reader) = conn.stream.try_clone() {
        let shared = conn.shared.clone();
        spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() != ErrorKind::Interrupted => break,
                    _ => {}
                }
            }
            client_closed(&shared, index);
        });
    }
    let finished = match reply {
        Reply::Status { status, body } => {
            let (reason, length) = (if status == 200 { "OK" } else { "Status" }, body.len());
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
                 content-length: {length}\r\nconnection: close\r\n\r\n"
            );
            conn.write(format!("{head}{body}").as_bytes())
        }
        Reply::Stream(script) => conn.stream(&script, &model),
    };
    {
        let mut state = lock(&conn.shared);
        state.done[index] = true;
        let request = &mut state.requests[index];
        request.finished = finished && request.client_closed_at.is_none();
    }
    // Also ends the reader thread: its read returns 0, after `done` was set.
    let _ = conn.stream.shutdown(Shutdown::Both);
}

/// Records that the client of request `index` went away, unless the server was done with it.
fn client_closed(shared: &Shared, index: usize) {
    let mut state = lock(shared);
    if !state.done[index] {
        state.requests[index]
            .client_closed_at
            .get_or_insert_with(Instant::now);
    }
}

/// The writing side of one connection.
struct Conn {
    stream: TcpStream,
    shared: Shared,
    index: usize,
}

impl Conn {
    /// Neither has the client closed nor was the [`FakeModel`] dropped.
    fn alive(&self) -> bool {
        let state = lock(&self.shared);
        !state.stop && state.requests[self.index].client_closed_at.is_none()
    }

    /// Writes and flushes `bytes` at once; false (and the client marked gone) if that failed.
    fn write(&mut self, bytes: &[u8]) -> bool {
        if !self.alive() {
            return false;
        }
        let ok = self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .is_ok();
        if !ok {
            client_closed(&self.shared, self.index);
        }
        ok
    }

    /// Sleeps `d` in ticks; false as soon as the connection is no longer alive.
    fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        while self.alive() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            sleep(left.min(TICK));
        }
        false
    }

    /// Sends `data` as one HTTP chunk (the terminating chunk when empty).
    fn chunk(&mut self, data: &[u8]) -> bool {
        let mut frame = format!("{:x}\r\n", data.len()).into_bytes();
        frame.extend_from_slice(data);
        frame.extend_from_slice(b"\r\n");
        self.write(&frame)
    }

    /// Sends one SSE event as one chunk, or as `split`-byte chunks ~3 ms apart.
    fn event(&mut self, data: &[u8], split: Option<usize>) -> bool {
        let Some(n) = split else {
            return self.chunk(data);
        };
        for (k, piece) in data.chunks(n.max(1)).enumerate() {
            if k > 0 {
                sleep(Duration::from_millis(3));
            }
            if !self.chunk(piece) {
                return false;
            }
        }
        true
    }

    /// Streams `script`; true if the whole script was written.
    fn stream(&mut self, script: &Script, model: &str) -> bool {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    cache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        if !self.write(head.as_bytes()) || !self.pause(script.first_delay) {
            return false;
        }
        let event = |choices: Value, usage: Option<Value>| {
            let mut chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                   "created": 0, "model": model, "choices": choices});
            if let Some(usage) = usage {
                chunk["usage"] = usage;
            }
            format!("data: {chunk}\n\n").into_bytes()
        };
        let delta = |delta: Value, finish: Value| {
            event(
                json!([{"index": 0, "delta": delta, "finish_reason": finish}]),
                None,
            )
        };
        let role = delta(json!({"role": "assistant", "content": ""}), Value::Null);
        if !self.event(&role, script.split) {
            return false;
        }
        for (k, token) in script.tokens.iter().enumerate() {
            let event = delta(json!({"content": token}), Value::Null);
            if (k > 0 && !self.pause(script.delay)) || !self.event(&event, script.split) {
                return false;
            }
            if !token.is_empty() {
                let mut state = lock(&self.shared);
                state.requests[self.index]
                    .first_token_at
                    .get_or_insert_with(Instant::now);
            }
        }
        match script.end {
            End::Done | End::FinishOnly => {
                let mut events = vec![delta(json!({}), json!("stop"))];
                if let Some((prompt, completion)) = script.usage {
                    let total = u64::from(prompt) + u64::from(completion);
                    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                                       "total_tokens": total});
                    events.push(event(json!([]), Some(usage)));
                }
                if script.end == End::Done {
                    events.push(b"data: [DONE]\n\n".to_vec());
                }
                events.iter().all(|e| self.event(e, script.split)) && self.chunk(b"")
            }
            End::Drop => true,
            End::Malformed | End::Hang => {
                if script.end == End::Malformed {
                    self.event(b"data: {\"choices\":[{\"delta\":\n\n", script.split);
                }
                while self.alive() {
                    sleep(TICK);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    /// Connects and sends a chat-completions POST with a JSON body.
    fn send(fake: &FakeModel) -> TcpStream {
        let body = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
        let mut s = TcpStream::connect(fake.addr()).unwrap();
        let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Trace-ID: abc\r\n\
                    Content-Type: application/json\r\nContent-Length:";
        let request = format!("{head} {}\r\n\r\n{body}", body.len());
        s.write_all(request.as_bytes()).unwrap();
        s
    }

    /// The whole response, as (status line and headers, raw body).
    fn exchange(fake: &FakeModel) -> (String, Vec<u8>) {
        let mut raw = Vec::new();
        send(fake).read_to_end(&mut raw).unwrap();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let body = raw.split_off(end + 4);
        (String::from_utf8(raw).unwrap(), body)
    }

    /// The chunks of a chunked body, and whether it ended with the zero-length chunk.
    fn dechunk(mut body: &[u8]) -> (Vec<Vec<u8>>, bool) {
        let mut chunks = Vec::new();
        while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
            let len = std::str::from_utf8(&body[..eol]).unwrap();
            let len = usize::from_str_radix(len, 16).unwrap();
            if len == 0 {
                return (chunks, &body[eol..] == b"\r\n\r\n");
            }
            chunks.push(body[eol + 2..eol + 2 + len].to_vec());
            body = &body[eol + 4 + len..];
        }
        (chunks, false)
    }

    fn text(chunks: &[Vec<u8>]) -> String {
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[test]
    fn openai_stream_events_and_recorded_request() {
        let fake = FakeModel::start();
        let tokens = ["Hi", " \"quoted\"\n", "ünï 😀"];
        fake.push(Reply::Stream(Script::tokens(tokens).usage(7, 3)));
        let (head, body) = exchange(&fake);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        let (chunks, terminated) = dechunk(&body);
        assert!(terminated);
        let events: Vec<String> = chunks
            .iter()
            .map(|c| String::from_utf8(c.clone()).unwrap())
            .collect();
        assert_eq!(events.len(), 1 + tokens.len() + 3, "{events:?}");
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
        let parsed: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        let role = json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                           "finish_reason": null}]);
        assert_eq!(parsed[0]["choices"], role);
        for (event, token) in events[1..].iter().zip(tokens) {
            let content = serde_json::to_string(token).unwrap();
            assert!(
                event.contains(&format!(r#""delta":{{"content":{content}}}"#)),
                "{event}"
            );
            assert!(event.contains(r#""model":"gpt-test""#), "{event}");
        }
        assert_eq!(parsed[4]["choices"][0]["finish_reason"], "stop");
        let usage = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10});
        assert_eq!(
            (&parsed[5]["choices"], &parsed[5]["usage"]),
            (&json!([]), &usage)
        );
        let r = &fake.wait_requests(1, LIMIT)[0];
        assert_eq!((&*r.method, &*r.path), ("POST", "/v1/chat/completions"));
        assert!(r.headers.contains(&("x-trace-id".into(), "abc".into())));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body["messages"][0]["content"], "hi");
        assert!(r.finished && r.client_closed_at.is_none() && r.first_token_at.is_some());
    }

    #[test]
    fn openai_split_cuts_events_into_small_chunks() {
        let fake = FakeModel::start();
        let script = Script::tokens(["héllo wörld 😀", "!"]).usage(1, 2);
        fake.push(Reply::Stream(script.clone()));
        fake.push(Reply::Stream(script.split(3)));
        let (whole, whole_terminated) = dechunk(&exchange(&fake).1);
        let (pieces, terminated) = dechunk(&exchange(&fake).1);
        assert!(whole_terminated && terminated);
        assert_eq!(whole.len(), 6);
        assert!(pieces.len() > 100, "{} chunks", pieces.len());
        assert!(pieces.iter().all(|p| p.len() <= 3));
        assert_eq!(text(&pieces), text(&whole));
    }

    #[test]
    fn openai_status_reply() {
        let fake = FakeModel::start();
        let body = r#"{"error":{"message":"slow down"}}"#;
        fake.push(Reply::Status {
            status: 429,
            body: body.into(),
        });
        let (head, got) = exchange(&fake);
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert_eq!(got, body.as_bytes());
    }

    #[test]
    fn openai_hang_sees_client_close() {
        let fake = FakeModel::start();
        fake.push(Reply::Stream(Script::tokens(["a"]).end(End::Hang)));
        let mut s = send(&fake);
        let (mut seen, mut buf) = (Vec::new(), [0u8; 1024]);
        while !String::from_utf8_lossy(&seen).contains(r#"{"content":"a"}"#) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        drop(s);
        let r = fake.wait_client_closed(0, LIMIT);
        assert!(r.client_closed_at.is_some() && r.first_token_at.is_some() && !r.finished);
    }

    #[test]
    fn openai_drop_ends_without_terminating_chunk() {
        let fake = FakeModel::start();
        fake.push(Reply::Stream(Script::tokens(["x", "y"]).end(End::Drop)));
        let (_, body) = exchange(&fake);
        let (chunks, terminated) = dechunk(&body);
        assert!(!terminated && !body.ends_with(b"0\r\n\r\n"));
        assert_eq!(chunks.len(), 3);
        assert!(!text(&chunks).contains("[DONE]") && !text(&chunks).contains("\"stop\""));
    }

    #[test]
    fn openai_queue_in_order_then_default() {
        let fake = FakeModel::start();
        let (_, body) = exchange(&fake);
        assert!(text(&dechunk(&body).0).contains(r#"{"content":" fake"}"#));
        let status = |status, body: &str| Reply::Status {
            status,
            body: body.into(),
        };
        fake.push(status(500, "first"));
        fake.push(status(503, "second"));
        fake.set_default(status(400, "default"));
        let want = [
            (500, "first"),
            (503, "second"),
            (400, "default"),
            (400, "default"),
        ];
        for (status, want) in want {
            let (head, body) = exchange(&fake);
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert_eq!(body, want.as_bytes());
        }
        assert_eq!(fake.requests().len(), 5);
    }
}
