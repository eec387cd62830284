//! A WebSocket client that reads the way a browser app does, with deadlines so a broken
//! server fails a test instead of hanging it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::Json;

/// How long a test waits for any one frame.
const FRAME_DEADLINE: Duration = Duration::from_secs(15);

/// What the socket produced next.
#[derive(Debug)]
pub enum Event {
    Frame(Json),
    Closed(Option<CloseFrame>),
}

/// One answer as a client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// (index, delta) of every chunk, in arrival order.
    pub chunks: Vec<(u64, String)>,
    /// The final `message` frame's `data`.
    pub last: Json,
}

impl Answer {
    /// The deltas concatenated.
    pub fn text(&self) -> String {
        self.chunks.iter().map(|(_, d)| d.as_str()).collect()
    }

    /// Whether the indexes are exactly 0, 1, ..., n-1.
    pub fn indexes_are_contiguous(&self) -> bool {
        self.chunks
            .iter()
            .enumerate()
            .all(|(i, (index, _))| *index == i as u64)
    }
}

pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects; panics if the upgrade fails.
    pub async fn connect(url: &str) -> WsClient {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connecting {url}: {e}"));
        WsClient { ws }
    }

    /// Wraps an already connected socket.
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient { ws }
    }

    /// Reads `welcome` and `history`; `None` if the socket closes first.
    pub async fn handshake(&mut self) -> Option<(Json, Json)> {
        let Event::Frame(welcome) = self.event().await else {
            return None;
        };
        let Event::Frame(history) = self.event().await else {
            return None;
        };
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(history["type"], "history", "{history}");
        Some((welcome, history))
    }

    /// Connects and reads `welcome` and `history`, returning both.
    pub async fn open(url: &str) -> (WsClient, Json, Json) {
        let mut client = Self::connect(url).await;
        let welcome = client.frame().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let history = client.frame().await;
        assert_eq!(history["type"], "history", "{history}");
        (client, welcome, history)
    }

    /// The next event, skipping WebSocket-level pings.
    pub async fn event(&mut self) -> Event {
        loop {
            let next = tokio::time::timeout(FRAME_DEADLINE, self.ws.next())
                .await
                .expect("no frame within the deadline");
            match next {
                None => return Event::Closed(None),
                Some(Err(_)) => return Event::Closed(None),
                Some(Ok(Message::Text(text))) => {
                    let json = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("server sent non-JSON {text:?}: {e}"));
                    return Event::Frame(json);
                }
                Some(Ok(Message::Close(frame))) => return Event::Closed(frame),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next frame; panics if the socket closes.
    pub async fn frame(&mut self) -> Json {
        match self.event().await {
            Event::Frame(json) => json,
            Event::Closed(frame) => panic!("socket closed: {frame:?}"),
        }
    }

    /// The next frame of type `kind`, skipping others.
    pub async fn frame_of(&mut self, kind: &str) -> Json {
        loop {
            let frame = self.frame().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    pub async fn send_json(&mut self, value: Json) {
        self.send(Message::text(value.to_string())).await;
    }

    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// Reads `message` frames until answer `message_id` is complete. Frames of other messages
    /// of the same session (the user message) are skipped; a frame of another session fails.
    pub async fn answer(&mut self, session: &str, message_id: &str) -> Answer {
        let mut chunks = Vec::new();
        loop {
            let frame = self.frame().await;
            if frame["type"] != "message" {
                assert_ne!(frame["type"], "error", "{frame}");
                continue;
            }
            let data = &frame["data"];
            assert_eq!(
                data["sessionId"], session,
                "frame of another session: {frame}"
            );
            if data["messageId"] != message_id {
                continue;
            }
            if data["isComplete"] == true {
                return Answer {
                    chunks,
                    last: data.clone(),
                };
            }
            let index = data["index"].as_u64().expect("chunk index");
            let delta = data["chunk"].as_str().expect("chunk delta").to_owned();
            chunks.push((index, delta));
        }
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Hands the socket to a task that keeps every frame it receives (answering pings) until
    /// it closes or the recording is stopped.
    pub fn record(self) -> Recording {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (frames, closed, stop) = (frames.clone(), closed.clone(), stop.clone());
            let mut ws = self.ws;
            async move {
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => {
                            let _ = ws.close(None).await;
                            return;
                        }
                        next = ws.next() => next,
                    };
                    match next {
                        Some(Ok(Message::Text(text))) => {
                            let json = serde_json::from_str(&text).unwrap_or(Json::Null);
                            lock(&frames).push(json);
                        }
                        Some(Ok(Message::Close(frame))) => {
                            *lock(&closed) = Some(frame.map_or(1005, |f| u16::from(f.code)));
                            return;
                        }
                        Some(Ok(_)) => {}
                        None | Some(Err(_)) => {
                            *lock(&closed) = Some(1006);
                            return;
                        }
                    }
                }
            }
        });
        Recording {
            frames,
            closed,
            stop,
            task,
        }
    }
}

/// A socket being recorded by [`WsClient::record`].
pub struct Recording {
    frames: Arc<Mutex<Vec<Json>>>,
    closed: Arc<Mutex<Option<u16>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Recording {
    /// The frames received so far.
    pub fn frames(&self) -> Vec<Json> {
        lock(&self.frames).clone()
    }

    /// Whether a frame matching `found` has arrived.
    pub fn has(&self, found: impl Fn(&Json) -> bool) -> bool {
        lock(&self.frames).iter().any(found)
    }

    /// The close code, once the socket closed (1006: without a close frame).
    pub fn closed(&self) -> Option<u16> {
        *lock(&self.closed)
    }

    /// Closes the socket and returns every frame it received.
    pub async fn stop(self) -> Vec<Json> {
        self.stop.cancel();
        let _ = self.task.await;
        lock(&self.frames).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a WebSocket upgrade went.
pub enum Upgrade {
    /// The socket is open.
    Open(Box<WsClient>),
    /// The server answered this HTTP status (and JSON body) instead of upgrading.
    Refused(u16, crate::Json),
}

/// Opens a socket at `url` with extra request headers (an `Origin`, say).
pub async fn upgrade(url: &str, headers: &[(&'static str, &str)]) -> Upgrade {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).expect("header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Upgrade::Open(Box::new(WsClient::from_stream(ws))),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(crate::Json::Null);
            Upgrade::Refused(status, body)
        }
        Err(e) => panic!("{url}: {e}"),
    }
}

impl Upgrade {
    /// The refusal's status and body; panics if the socket opened.
    pub fn refused(self) -> (u16, crate::Json) {
        match self {
            Upgrade::Refused(status, body) => (status, body),
            Upgrade::Open(_) => panic!("the socket opened"),
        }
    }

    /// The open socket; panics on a refusal.
    pub fn opened(self) -> WsClient {
        match self {
            Upgrade::Open(ws) => *ws,
            Upgrade::Refused(status, body) => panic!("refused with {status}: {body}"),
        }
    }
}
