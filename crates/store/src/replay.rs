//! Rebuilding the store from domain events (`chat-events`, read from the beginning): each
//! event is applied as the change it describes.

use protocol::{ChatMessage, DomainEvent, EventDetails};

use crate::conversation::{
    delete_messages, insert_session, session_title, touch_session, upsert_message,
};
use crate::events::write_events;
use crate::{Result, Store};

impl Store {
    /// Applies `event` (with its audit row, never to the outbox): a session's start creates
    /// its row, a final message is stored, a deletion deletes. Applying an event twice changes
    /// nothing more. Returns false for event types that change no stored data.
    pub async fn replay_event(&self, event: &DomainEvent) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        match &event.details {
            EventDetails::SessionStarted { title, start_time } => {
                insert_session(
                    &mut tx,
                    &event.session_id,
                    &event.user_id,
                    title,
                    *start_time,
                )
                .await?;
            }
            EventDetails::ChatMessage {
                role,
                status,
                content,
                created_at,
                metadata,
            } => {
                let Some(message_id) = event.message_id.clone() else {
                    return Ok(false);
                };
                let message = ChatMessage {
                    message_id,
                    session_id: event.session_id.clone(),
                    user_id: event.user_id.clone(),
                    role: *role,
                    content: content.clone(),
                    timestamp: *created_at,
                    is_complete: status.is_final(),
                    status: *status,
                    index: None,
                    chunk: None,
                    metadata: metadata.clone(),
                };
                upsert_message(&mut *tx, &message).await?;
                // The session's own event may be gone (topic retention): start it from here.
                let title = session_title(content);
                insert_session(
                    &mut tx,
                    &event.session_id,
                    &event.user_id,
                    &title,
                    *created_at,
                )
                .await?;
                touch_session(&mut *tx, &event.session_id, event.timestamp).await?;
            }
            EventDetails::HistoryDeleted { .. } => {
                delete_messages(&mut tx, &event.session_id, event.timestamp).await?;
            }
            _ => return Ok(false),
        }
        write_events(&mut tx, false, std::slice::from_ref(event), None).await?;
        tx.commit().await?;
        Ok(true)
    }
}
