//! The minimal fan-out: the floor a gateway is measured against. One shared Redis pub/sub
//! connection, SUBSCRIBE per session on its first socket, every published payload forwarded
//! as is to the session's sockets, 4 KiB WebSocket buffers. No protocol: no history, no
//! deduplication, no metrics, no auth. A socket whose queue is full loses the frame.
//!
//! `loadgen minimal-server --redis URL` serves `ws://127.0.0.1:{port}/ws/chat?session_id=..`
//! and prints its port on the first line of stdout; each socket gets `{"type":"welcome"}`
//! once its session's subscription is confirmed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const BUFFER: usize = 4 * 1024;
const QUEUE: usize = 1000;

type Sockets = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Utf8Bytes>)>>>>;

enum Command {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

pub async fn serve(redis_url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
    let sockets: Sockets = Arc::default();
    let reader_sockets = sockets.clone();
    tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let Some(session) = protocol::keys::session_of_channel(msg.get_channel_name()) else {
                continue;
            };
            let Ok(text) =
                Utf8Bytes::try_from(bytes::Bytes::copy_from_slice(msg.get_payload_bytes()))
            else {
                continue;
            };
            let map = reader_sockets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = map.get(session) {
                for (_, tx) in list {
                    let _ = tx.try_send(text.clone());
                }
            }
        }
    });
    let (commands, mut rx) = mpsc::unbounded_channel::<Command>();
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            let result = match command {
                Command::Subscribe(channel, done) => {
                    let r = sink.subscribe(&channel).await;
                    let _ = done.send(());
                    r
                }
                Command::Unsubscribe(channel) => sink.unsubscribe(&channel).await,
            };
            if result.is_err() {
                return;
            }
        }
    });

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let mut next_id = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        next_id += 1;
        tokio::spawn(socket(tcp, next_id, sockets.clone(), commands.clone()));
    }
}

// tungstenite's handshake callback returns its large error type by value.
#[allow(clippy::result_large_err)]
async fn socket(
    tcp: TcpStream,
    id: u64,
    sockets: Sockets,
    commands: mpsc::UnboundedSender<Command>,
) -> anyhow::Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut session = String::new();
    let callback = |request: &Request, response: Response| {
        if let Some(query) = request.uri().query() {
            for pair in query.split('&') {
                if let Some(v) = pair.strip_prefix("session_id=") {
                    session = v.to_owned();
                }
            }
        }
        Ok(response)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER);
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await?;
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let first = {
        let mut map = sockets.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(session.clone()).or_default();
        list.push((id, tx));
        list.len() == 1
    };
    let channel = format!("{}{{{session}}}", protocol::keys::STREAM_CHANNEL_PREFIX);
    if first {
        let (done, subscribed) = oneshot::channel();
        let _ = commands.send(Command::Subscribe(channel.clone(), done));
        let _ = subscribed.await;
    }
    let welcome = ws.send(Message::text(r#"{"type":"welcome"}"#)).await;
    if welcome.is_ok() {
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    let Some(text) = frame else { break };
                    if ws.feed(Message::Text(text)).await.is_err() {
                        break;
                    }
                    if rx.is_empty() && ws.flush().await.is_err() {
                        break;
                    }
                }
                read = ws.next() => match read {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    let last = {
        let mut map = sockets.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(session.clone()).or_default();
        list.retain(|(i, _)| *i != id);
        let empty = list.is_empty();
        if empty {
            map.remove(&session);
        }
        empty
    };
    if last {
        let _ = commands.send(Command::Unsubscribe(channel));
    }
    Ok(())
}
