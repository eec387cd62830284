//! [`OutboxSignal`]: tells the relay, wherever it runs, that this node committed events.
//!
//! The store calls the hook after every commit that wrote outbox rows; the hook only sets a
//! flag (it must not block), and one task turns the flags into Redis signals, coalescing a
//! burst of commits into one PUBLISH.

use std::sync::Arc;

use redis_state::ChatState;
use store::OnEventsWritten;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The sending side of the outbox signal of one node.
#[derive(Clone)]
pub struct OutboxSignal {
    pending: Arc<Notify>,
}

impl OutboxSignal {
    /// Starts the task that publishes the signals, until `shutdown`.
    pub fn start(state: ChatState, shutdown: CancellationToken) -> OutboxSignal {
        let pending = Arc::new(Notify::new());
        let waiting = pending.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = waiting.notified() => {}
                }
                if let Err(e) = state.signal_outbox().await {
                    // The relay also polls; a lost signal only delays.
                    debug!(cause = %e, "signalling the outbox failed");
                }
            }
        });
        OutboxSignal { pending }
    }

    /// The hook to give the store ([`store::Store::with_outbox`]).
    pub fn hook(&self) -> OnEventsWritten {
        let pending = self.pending.clone();
        Arc::new(move || pending.notify_one())
    }
}
