//! An in-process [`Bus`]: subscriptions are a reference count per session, and
//! [`MemoryBus::publish`] (standing in for the state scripts' PUBLISH) calls the sink directly.
//! For unit tests of code that sits on a bus.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use protocol::SessionId;

use crate::{Bus, Deliver, Epoch, Error, Result};

/// A bus inside one process.
pub struct MemoryBus {
    sink: Arc<dyn Deliver>,
    /// Subscription references per session; written by subscribe/unsubscribe.
    refs: Mutex<HashMap<SessionId, usize>>,
    /// The current "connection"; [`MemoryBus::lose_connection`] starts the next one.
    epoch: AtomicU64,
}

impl MemoryBus {
    pub fn new(sink: Arc<dyn Deliver>) -> Self {
        Self {
            sink,
            refs: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(1),
        }
    }

    /// Sessions with at least one subscription reference.
    pub fn subscribed(&self) -> Vec<SessionId> {
        let refs = self.refs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut sessions: Vec<SessionId> = refs.keys().cloned().collect();
        sessions.sort();
        sessions
    }

    /// Delivers `payload` to the sink if `session` is subscribed, as a PUBLISH on its channel
    /// would.
    pub fn publish(&self, session: &SessionId, payload: Bytes) {
        let subscribed = self
            .refs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(session);
        if subscribed {
            self.sink.deliver(session.as_str(), payload);
        }
    }

    /// Loses the "connection" and starts the next one at once, telling the sink as a
    /// reconnecting bus would.
    pub fn lose_connection(&self) {
        let lost = self.epoch.fetch_add(1, Ordering::SeqCst);
        self.sink.connection_lost(lost, self.subscribed());
    }

    fn epoch(&self) -> Epoch {
        self.epoch.load(Ordering::SeqCst)
    }
}

impl Bus for MemoryBus {
    fn subscribe(&self, session: &SessionId) -> BoxFuture<'static, Result<Epoch>> {
        let mut refs = self.refs.lock().unwrap_or_else(PoisonError::into_inner);
        *refs.entry(session.clone()).or_default() += 1;
        futures_util::future::ready(Ok(self.epoch())).boxed()
    }

    fn confirmed(&self, session: &SessionId) -> BoxFuture<'static, Result<Epoch>> {
        let subscribed = self
            .refs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(session);
        let answer = if subscribed {
            Ok(self.epoch())
        } else {
            Err(Error::NotSubscribed)
        };
        futures_util::future::ready(answer).boxed()
    }

    fn unsubscribe(&self, session: &SessionId) {
        let mut refs = self.refs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = refs.get_mut(session) {
            *count -= 1;
            if *count == 0 {
                refs.remove(session);
            }
        }
    }
}
