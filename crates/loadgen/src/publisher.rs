//! The synthetic publisher: real chunk frames PUBLISHed straight to Redis at a set rate, the
//! way an AI node's chunk script publishes them, without an AI node.
//!
//! Session `s` of `n` gets chunk `k` as the publisher's `k * n + s`-th frame, so every session
//! streams at the same rate with its chunks evenly spread. Each chunk's delta starts with its
//! publish time in microseconds (the frame's `timestamp` is in milliseconds, too coarse for the
//! latencies measured), padded so the whole frame has the asked size. Commands go on one TCP
//! connection per Redis (one, or each master of a cluster, a session's frames going to the
//! master of its slot), written as they fall due; the replies (each PUBLISH's receiver count)
//! are read beside them, and a PUBLISH nobody received tells that Redis cut a subscriber.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use protocol::{ChatMessage, MessageId, ServerFrame, SessionId, UserId, keys};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::measure::now_us;

const TS_MARK: &str = "1999999999999";
const INDEX_MARK: &str = "3999999999";
const CHUNK_MARK: &str = "@CHUNK@";

/// One session's frame, cut around the parts that change per chunk.
struct Template {
    channel: String,
    /// Text before the timestamp, between timestamp and index, between index and delta, after.
    parts: [String; 4],
}

impl Template {
    fn new(session: &SessionId, message: &MessageId) -> Template {
        let user = UserId::parse("bench").expect("a valid id");
        let answer = ChatMessage::started_answer(
            message.clone(),
            session.clone(),
            user,
            TS_MARK.parse().expect("a number"),
        );
        let chunk = answer.chunk_of(INDEX_MARK.parse().expect("a u32"), CHUNK_MARK);
        let json = ServerFrame::Message { data: chunk }.to_json();
        let (a, rest) = json
            .split_once(TS_MARK)
            .expect("the timestamp is in the frame");
        let (b, rest) = rest
            .split_once(INDEX_MARK)
            .expect("the index is in the frame");
        let (c, d) = rest
            .split_once(CHUNK_MARK)
            .expect("the delta is in the frame");
        Template {
            channel: keys::stream_channel(session),
            parts: [a.into(), b.into(), c.into(), d.into()],
        }
    }

    /// Appends chunk `index`'s `command` (`PUBLISH` or `SPUBLISH`, in RESP) to `out`,
    /// `frame_bytes` long at least.
    fn publish(&self, command: &str, index: u32, frame_bytes: usize, out: &mut Vec<u8>) {
        let sent_us = now_us();
        let ts = (sent_us / 1000).to_string();
        let index = index.to_string();
        let head = format!("{sent_us} ");
        let fixed: usize =
            self.parts.iter().map(String::len).sum::<usize>() + ts.len() + index.len() + head.len();
        let pad = frame_bytes.saturating_sub(fixed);
        let len = fixed + pad;
        out.extend_from_slice(format!("*3\r\n${}\r\n{command}\r\n", command.len()).as_bytes());
        out.extend_from_slice(format!("${}\r\n", self.channel.len()).as_bytes());
        out.extend_from_slice(self.channel.as_bytes());
        out.extend_from_slice(format!("\r\n${len}\r\n").as_bytes());
        let [a, b, c, d] = &self.parts;
        for piece in [a.as_str(), &ts, b, &index, c, &head] {
            out.extend_from_slice(piece.as_bytes());
        }
        out.resize(out.len() + pad, b'x');
        out.extend_from_slice(d.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// What the publisher did.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Published {
    /// Frames written.
    pub frames: u64,
    /// PUBLISH replies read.
    pub acknowledged: u64,
    /// PUBLISHes that reached no subscriber (a subscriber was cut, or not there yet).
    pub unreceived: u64,
    /// Error replies.
    pub errors: u64,
    pub seconds: f64,
}

impl Published {
    /// Chunks session `s` of `n` was sent: indices `0..count`.
    pub fn per_session(&self, s: usize, n: usize) -> u32 {
        let (frames, s, n) = (self.frames, s as u64, n as u64);
        (frames.saturating_sub(s).div_ceil(n)) as u32
    }
}

/// Where frames are published: the Redis ports to write to, which of them takes each
/// session's frames, and with which command.
#[derive(Debug, Clone)]
pub struct Route {
    /// `127.0.0.1` ports: the one Redis, or each master of a cluster.
    pub ports: Vec<u16>,
    /// `PUBLISH`, or `SPUBLISH` (sharded pub/sub on a cluster).
    pub command: &'static str,
    /// The master (index into `ports`) serving each cluster slot; empty for one Redis.
    pub slot_owner: Vec<usize>,
}

impl Route {
    /// One Redis, `PUBLISH`.
    pub fn single(port: u16) -> Route {
        Route {
            ports: vec![port],
            command: "PUBLISH",
            slot_owner: Vec::new(),
        }
    }

    /// Which of [`Route::ports`] takes `session`'s frames.
    pub fn port_index(&self, session: &SessionId) -> usize {
        self.slot_owner
            .get(usize::from(keys::session_slot(session)))
            .copied()
            .unwrap_or(0)
    }
}

/// Publishes chunks for `sessions` (answer `message` each) at `rate` per session per second for
/// `duration`, each frame `frame_bytes` long.
pub async fn run(
    route: &Route,
    sessions: &[SessionId],
    message: &MessageId,
    rate: f64,
    duration: Duration,
    frame_bytes: usize,
) -> anyhow::Result<Published> {
    let templates: Vec<Template> = sessions.iter().map(|s| Template::new(s, message)).collect();
    let owners: Vec<usize> = sessions.iter().map(|s| route.port_index(s)).collect();
    let replies = Arc::new(Replies::default());
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for &port in &route.ports {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting the publisher to Redis on {port}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        writers.push(write);
        readers.push(tokio::spawn(read_replies(read, replies.clone())));
    }

    let n = templates.len() as u64;
    let total_rate = rate * n as f64;
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut outs: Vec<Vec<u8>> = writers
        .iter()
        .map(|_| Vec::with_capacity(256 * 1024))
        .collect();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let done = elapsed >= duration;
        let due = (elapsed.min(duration).as_secs_f64() * total_rate) as u64;
        while sent < due {
            let session = (sent % n) as usize;
            let to = owners[session];
            let out = &mut outs[to];
            templates[session].publish(route.command, (sent / n) as u32, frame_bytes, out);
            sent += 1;
            if out.len() >= 128 * 1024 {
                writers[to].write_all(out).await?;
                out.clear();
            }
        }
        for (out, write) in outs.iter_mut().zip(&mut writers) {
            if !out.is_empty() {
                write.write_all(out).await?;
                out.clear();
            }
        }
        if done {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Every reply, or give up after a while (Redis gone).
    let deadline = Instant::now() + Duration::from_secs(10);
    while replies.acknowledged.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for reader in readers {
        reader.abort();
    }
    Ok(Published {
        frames: sent,
        acknowledged: replies.acknowledged.load(Ordering::Relaxed),
        unreceived: replies.unreceived.load(Ordering::Relaxed),
        errors: replies.errors.load(Ordering::Relaxed),
        seconds,
    })
}

/// Counts the replies of one publisher connection until it closes.
async fn read_replies(mut read: tokio::net::tcp::OwnedReadHalf, replies: Arc<Replies>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line_start = true;
    let mut zero = false;
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Replies are `:N\r\n` (receivers) or `-ERR ...\r\n`.
        for i in 0..n {
            let b = buf[i];
            if line_start {
                match b {
                    b':' => zero = buf.get(i + 1) == Some(&b'0'),
                    b'-' => {
                        replies.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            line_start = b == b'\n';
            if line_start {
                replies.acknowledged.fetch_add(1, Ordering::Relaxed);
                if zero {
                    replies.unreceived.fetch_add(1, Ordering::Relaxed);
                    zero = false;
                }
            }
        }
    }
}

#[derive(Default)]
struct Replies {
    acknowledged: AtomicU64,
    unreceived: AtomicU64,
    errors: AtomicU64,
}

/// A chunk frame as receivers read it: its index and the publish time its delta starts with.
pub fn read_chunk(text: &[u8]) -> Option<(u32, u64)> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(borrow, rename = "type")]
        kind: &'a str,
        #[serde(borrow)]
        data: Option<Data<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        index: Option<u32>,
        #[serde(borrow)]
        chunk: Option<std::borrow::Cow<'a, str>>,
    }
    let frame: Frame<'_> = serde_json::from_slice(text).ok()?;
    if frame.kind != "message" {
        return None;
    }
    let data = frame.data?;
    let sent = data.chunk?.split(' ').next()?.parse().ok()?;
    Some((data.index?, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_frame_is_a_real_chunk_frame_of_the_asked_size() {
        let session = SessionId::parse("s1").unwrap();
        let message = MessageId::parse("m1").unwrap();
        let t = Template::new(&session, &message);
        let mut out = Vec::new();
        // Larger than the frame without padding (about 200 bytes), so that padding shows.
        t.publish("PUBLISH", 7, 300, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[4], "chat:stream:{s1}");
        let frame = lines[6];
        assert_eq!(frame.len(), 300);
        assert_eq!(lines[5], "$300");
        let parsed: ServerFrame = serde_json::from_str(frame).unwrap();
        let ServerFrame::Message { data } = parsed else {
            panic!("not a message frame: {frame}");
        };
        assert_eq!(data.index, Some(7));
        assert_eq!(data.message_id, message);
        let (index, sent) = read_chunk(frame.as_bytes()).unwrap();
        assert_eq!(index, 7);
        assert!(sent.abs_diff(now_us()) < 10_000_000);
        assert!(protocol::frames::peek_live_frame(frame.as_bytes()).is_some());
    }

    #[test]
    fn chunks_are_spread_evenly_over_sessions() {
        let p = Published {
            frames: 10,
            ..Default::default()
        };
        let counts: Vec<u32> = (0..4).map(|s| p.per_session(s, 4)).collect();
        assert_eq!(counts, vec![3, 3, 2, 2]);
    }
}
