//! The `history` frame a socket is sent on connect and after a resync, built from one
//! consistent snapshot, with the delivery filter that matches exactly what it holds.

use axum::extract::ws::Utf8Bytes;
use history::Conversation;
use protocol::{ServerFrame, SessionId};

use super::filter::DeliveryFilter;

/// The `history` frame of `conversation`, and the filter that drops every live frame it
/// already contains.
pub(super) fn history_frame(
    session: &SessionId,
    conversation: Conversation,
) -> (Utf8Bytes, DeliveryFilter) {
    let Conversation {
        messages,
        streaming,
    } = conversation;
    let filter = DeliveryFilter::from_snapshot(&messages, streaming.as_ref());
    let frame = ServerFrame::History {
        session_id: session.clone(),
        messages,
        streaming,
    };
    (Utf8Bytes::from(frame.to_json()), filter)
}
