//! The per-socket delivery filter: what makes delivery exactly-once on top of an at-most-once
//! bus and a snapshot read on another connection.
//!
//! A socket is subscribed before its snapshot is read, so a frame can arrive both in the
//! snapshot and live, and (the two travel on different Redis connections) the live copy can
//! arrive after the snapshot was sent. The filter therefore stays on for the socket's whole
//! life: it remembers, per in-flight answer, the last chunk index delivered, and the ids of the
//! complete messages delivered recently, and drops anything at or below what was delivered.

use std::collections::VecDeque;

use protocol::{ChatMessage, LiveFrame, MessageId, StreamingState};

use super::queue::Recovered;

/// Complete message ids remembered. A late duplicate can only be one of the last few messages,
/// published just before the snapshot, so a short memory is enough and keeps sockets small.
const RECENT_COMPLETE: usize = 16;
/// In-flight answers tracked at once (a session streams one at a time; a few allow overlap).
const MAX_IN_FLIGHT: usize = 4;

/// What one socket has delivered.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    /// (answer id, last chunk index delivered) of answers still streaming.
    in_flight: Vec<(MessageId, i64)>,
    /// Ids of complete messages delivered, oldest first.
    complete: VecDeque<MessageId>,
}

impl DeliveryFilter {
    /// The state right after a `history` frame built from a snapshot.
    pub fn from_snapshot(messages: &[ChatMessage], streaming: Option<&StreamingState>) -> Self {
        let mut filter = Self::default();
        for message in messages.iter().filter(|m| m.is_complete) {
            filter.remember_complete(&message.message_id);
        }
        if let Some(s) = streaming {
            filter.in_flight.push((s.message_id.clone(), s.last_index));
        }
        filter
    }

    /// Whether a live frame should be sent; updates what has been delivered if so.
    pub fn admit(&mut self, frame: &LiveFrame) -> bool {
        match frame {
            LiveFrame::Chunk { message_id, index } => {
                if self.complete.contains(message_id) {
                    return false;
                }
                let index = i64::from(*index);
                match self.in_flight.iter_mut().find(|(id, _)| id == message_id) {
                    Some((_, last)) if index <= *last => false,
                    Some((_, last)) => {
                        *last = index;
                        true
                    }
                    None => {
                        if self.in_flight.len() == MAX_IN_FLIGHT {
                            self.in_flight.remove(0);
                        }
                        self.in_flight.push((message_id.clone(), index));
                        true
                    }
                }
            }
            LiveFrame::Complete { message_id } => {
                if self.complete.contains(message_id) {
                    return false;
                }
                self.in_flight.retain(|(id, _)| id != message_id);
                self.remember_complete(message_id);
                true
            }
            LiveFrame::Other => true,
        }
    }

    /// A `recovery` frame delivered `what` of `message_id`.
    pub fn note_recovered(&mut self, message_id: &MessageId, what: Recovered) {
        match what {
            Recovered::Final => {
                self.in_flight.retain(|(id, _)| id != message_id);
                if !self.complete.iter().any(|id| id == message_id) {
                    self.remember_complete(message_id);
                }
            }
            Recovered::UpTo(last) => {
                let last = i64::from(last);
                match self.in_flight.iter_mut().find(|(id, _)| id == message_id) {
                    Some((_, seen)) => *seen = (*seen).max(last),
                    None => self.in_flight.push((message_id.clone(), last)),
                }
            }
        }
    }

    fn remember_complete(&mut self, message_id: &MessageId) {
        if self.complete.len() == RECENT_COMPLETE {
            self.complete.pop_front();
        }
        self.complete.push_back(message_id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{SessionId, UserId};

    fn mid(id: &str) -> MessageId {
        MessageId::parse(id).unwrap()
    }

    fn chunk(id: &str, index: u32) -> LiveFrame {
        LiveFrame::Chunk {
            message_id: mid(id),
            index,
        }
    }

    fn complete(id: &str) -> LiveFrame {
        LiveFrame::Complete {
            message_id: mid(id),
        }
    }

    fn stored(id: &str) -> ChatMessage {
        ChatMessage::user(
            mid(id),
            SessionId::parse("s").unwrap(),
            UserId::parse("u").unwrap(),
            "x".into(),
            0,
        )
    }

    /// Chunks already in the snapshot are dropped, later ones pass once each.
    #[test]
    fn chunks_at_or_below_the_snapshot_index_are_dropped() {
        let streaming = StreamingState {
            message_id: mid("a"),
            last_index: 2,
        };
        let mut f = DeliveryFilter::from_snapshot(&[], Some(&streaming));
        assert!(!f.admit(&chunk("a", 1)));
        assert!(!f.admit(&chunk("a", 2)));
        assert!(f.admit(&chunk("a", 3)));
        assert!(!f.admit(&chunk("a", 3)), "a duplicate of a live chunk");
        assert!(f.admit(&chunk("a", 4)));
        assert!(f.admit(&complete("a")));
        assert!(!f.admit(&complete("a")));
        assert!(!f.admit(&chunk("a", 5)), "a chunk of an ended answer");
    }

    /// A user message or final message already in history is never sent again.
    #[test]
    fn complete_messages_in_the_snapshot_are_not_repeated() {
        let mut f = DeliveryFilter::from_snapshot(&[stored("u1"), stored("a1")], None);
        assert!(!f.admit(&complete("u1")));
        assert!(!f.admit(&complete("a1")));
        assert!(f.admit(&complete("u2")));
        assert!(f.admit(&chunk("a2", 0)));
        assert!(f.admit(&LiveFrame::Other));
    }

    /// After a recovery, live chunks it already delivered are dropped.
    #[test]
    fn recovery_advances_the_filter() {
        let mut f = DeliveryFilter::default();
        assert!(f.admit(&chunk("a", 0)));
        f.note_recovered(&mid("a"), Recovered::UpTo(5));
        assert!(!f.admit(&chunk("a", 4)));
        assert!(f.admit(&chunk("a", 6)));
        f.note_recovered(&mid("a"), Recovered::Final);
        assert!(!f.admit(&complete("a")));
    }
}
