//! An in-process [`Bus`]: subscriptions are a reference count per session, and
//! [`MemoryBus::publish`] (standing in for the state scripts' PUBLISH) calls the sink directly.
//! For unit tests of code that sits on a bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use protocol::SessionId;

use crate::{Bus, Deliver, Result};

/// A bus inside one process.
pub struct MemoryBus {
    sink: Arc<dyn Deliver>,
    /// Subscription references per session; written by subscribe/unsubscribe.
    refs: Mutex<HashMap<SessionId, usize>>,
}

impl MemoryBus {
    pub fn new(sink: Arc<dyn Deliver>) -> Self {
        Self {
            sink,
            refs: Mutex::new(HashMap::new()),
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

    /// Tells the sink that `sessions` were subscribed again, as a reconnected bus would.
    pub fn resubscribe(&self, sessions: Vec<SessionId>) {
        self.sink.resubscribed(sessions);
    }
}

impl Bus for MemoryBus {
    fn subscribe(&self, session: &SessionId) -> BoxFuture<'static, Result<()>> {
        let mut refs = self.refs.lock().unwrap_or_else(PoisonError::into_inner);
        *refs.entry(session.clone()).or_default() += 1;
        futures_util::future::ready(Ok(())).boxed()
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
