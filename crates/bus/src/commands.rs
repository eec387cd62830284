//! What [`crate::RedisBus`] and [`crate::ClusterBus`] share: the commands their callers send to
//! the task that owns the subscriptions, and the [`Bus`] calls that send them. Neither call
//! blocks: each only sends a command; the task answers with the epoch once Redis has
//! confirmed.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use protocol::SessionId;
use tokio::sync::{mpsc, oneshot};

use crate::{Bus, Epoch, Error, Result};

pub(crate) enum Command {
    Subscribe {
        session: SessionId,
        ready: oneshot::Sender<Epoch>,
    },
    Unsubscribe {
        session: SessionId,
    },
    /// Answer once `session` is subscribed (dropping `ready` when nobody holds it).
    Confirm {
        session: SessionId,
        ready: oneshot::Sender<Epoch>,
    },
}

/// The sending side of a bus's commands; implements [`Bus`].
pub(crate) struct Commands(pub(crate) mpsc::UnboundedSender<Command>);

impl Commands {
    /// Sends `command` and waits for the epoch it is answered with.
    fn ask(
        &self,
        command: Command,
        answer: oneshot::Receiver<Epoch>,
        unanswered: Error,
    ) -> BoxFuture<'static, Result<Epoch>> {
        let sent = self.0.send(command);
        async move {
            sent.map_err(|_| Error::Closed)?;
            answer.await.map_err(|_| unanswered)
        }
        .boxed()
    }
}

impl Bus for Commands {
    fn subscribe(&self, session: &SessionId) -> BoxFuture<'static, Result<Epoch>> {
        let (ready, confirmed) = oneshot::channel();
        let command = Command::Subscribe {
            session: session.clone(),
            ready,
        };
        self.ask(command, confirmed, Error::Closed)
    }

    fn unsubscribe(&self, session: &SessionId) {
        // A closed subscriber has no subscriptions left to drop.
        let _ = self.0.send(Command::Unsubscribe {
            session: session.clone(),
        });
    }

    fn confirmed(&self, session: &SessionId) -> BoxFuture<'static, Result<Epoch>> {
        let (ready, confirmed) = oneshot::channel();
        let command = Command::Confirm {
            session: session.clone(),
            ready,
        };
        // The subscriber drops the sender of a session nobody holds.
        self.ask(command, confirmed, Error::NotSubscribed)
    }
}

/// [`Bus`] for a type that holds its [`Commands`] in a field named `commands`.
macro_rules! bus_through_commands {
    ($ty:ty) => {
        impl $crate::Bus for $ty {
            fn subscribe(
                &self,
                session: &protocol::SessionId,
            ) -> futures_util::future::BoxFuture<'static, $crate::Result<$crate::Epoch>> {
                self.commands.subscribe(session)
            }

            fn unsubscribe(&self, session: &protocol::SessionId) {
                self.commands.unsubscribe(session);
            }

            fn confirmed(
                &self,
                session: &protocol::SessionId,
            ) -> futures_util::future::BoxFuture<'static, $crate::Result<$crate::Epoch>> {
                self.commands.confirmed(session)
            }
        }
    };
}
pub(crate) use bus_through_commands;
