//! [`Simulator`]: the canned answers of [`crate::simulator`], one word every `STREAM_DELAY_MS`.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::{Answer, Piece, Prompt, Provider};
use crate::simulator;

/// Canned answers, picked by keywords, paced one word per `delay`. No network.
#[derive(Debug, Clone)]
pub struct Simulator {
    delay: Duration,
}

impl Simulator {
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

impl Provider for Simulator {
    fn answer(&self, prompt: Prompt) -> Answer {
        let deltas = simulator::deltas(simulator::reply_for(&prompt.message)).into_iter();
        // One word every `delay`, counted from the previous word's due time rather than from
        // when it was taken, so a chunk's Redis round trip does not stretch the cadence; a word
        // that is late (a slow write, a busy node) is not followed by a burst.
        let delay = self.delay;
        futures_util::stream::unfold(
            (deltas, Instant::now()),
            move |(mut deltas, due)| async move {
                let delta = deltas.next()?;
                let due = (due + delay).max(Instant::now());
                tokio::time::sleep_until(due).await;
                Some((Ok(Piece::Text(Cow::Borrowed(delta))), (deltas, due)))
            },
        )
        .boxed()
    }
}
