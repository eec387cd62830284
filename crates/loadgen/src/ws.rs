//! The tool's WebSocket clients.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a socket may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `ws://host:port` of an `http://host:port` base URL.
pub fn ws_url(base: &str) -> String {
    base.trim_end_matches('/').replacen("http", "ws", 1)
}

/// Opens a socket and reads frames until one of type `ready_on` (`history` for a gateway,
/// `welcome` for the minimal fan-out); returns it with that frame's text.
pub async fn connect_until_frame(url: &str, ready_on: &str) -> anyhow::Result<(Socket, String)> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let attempt = async {
        let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .with_context(|| format!("connecting {url}"))?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    if frame_type(text.as_bytes()) == Some(ready_on) {
                        return Ok((socket, text.to_string()));
                    }
                }
                Some(Ok(Message::Close(frame))) => bail!("closed before {ready_on}: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before {ready_on}"),
            }
        }
    };
    tokio::time::timeout(READY_TIMEOUT, attempt)
        .await
        .with_context(|| format!("no {ready_on} frame within {READY_TIMEOUT:?}"))?
}

/// [`connect_until_frame`], without the frame.
pub async fn connect_until(url: &str, ready_on: &str) -> anyhow::Result<Socket> {
    Ok(connect_until_frame(url, ready_on).await?.0)
}

/// The `type` of a frame, when it is a JSON object that has one.
pub fn frame_type(text: &[u8]) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        kind: &'a str,
    }
    let typed: Typed<'_> = serde_json::from_slice(text).ok()?;
    Some(match typed.kind {
        "welcome" => "welcome",
        "history" => "history",
        "message" => "message",
        "accepted" => "accepted",
        "error" => "error",
        "recovery" => "recovery",
        _ => "other",
    })
}
