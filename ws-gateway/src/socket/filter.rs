//! The per-socket delivery filter: what makes delivery exactly-once on top of an at-most-once
//! bus and a snapshot read on another connection.
//!
//! A socket is subscribed before its snapshot is read, so a frame can arrive both in the
//! snapshot and live, and (the two travel on different Redis connections) the live copy can
//! arrive after the snapshot was sent. The filter therefore stays on for the socket's whole
//! life: it remembers, per in-flight answer, the last chunk index delivered, and the ids of the
//! complete messages delivered recently, and drops anything at or below what was delivered.
//!
//! It also refuses to skip: a chunk must be the next one of its answer (index 0 for an answer
//! it has not seen). A chunk further ahead means frames were lost on the way; it is not sent,
//! and the socket is resynced from the stored state instead ([`Verdict::Gap`]).

use std::collections::VecDeque;

use protocol::{ChatMessage, LiveFrame, MessageId, StreamingState};

use super::queue::Recovered;

/// Complete message ids remembered. A late duplicate can only be one of the last few messages,
/// published just before the snapshot, so a short memory is enough and keeps sockets small.
const RECENT_COMPLETE: usize = 16;
/// In-flight answers tracked at once (a session streams one at a time; a few allow overlap).
const MAX_IN_FLIGHT: usize = 4;

/// What to do with a live frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it: it is the next thing the client has not seen.
    Send,
    /// Drop it: the client has it already.
    Duplicate,
    /// Do not send it: frames before it are missing. Resync the socket from the stored state.
    Gap,
}

/// What one socket has delivered.
///
/// An answer is never both in flight and complete: completing it removes it from the ones in
/// flight, and a recovery never puts a complete one back. So a chunk is looked up among the
/// (at most [`MAX_IN_FLIGHT`]) answers in flight first, and the complete ones are searched
/// only for chunks of answers not in flight.
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

    /// What to do with a live frame; what has been delivered is updated when it is sent.
    pub fn admit(&mut self, frame: &LiveFrame) -> Verdict {
        match frame {
            LiveFrame::Chunk {
                message_id, index, ..
            } => {
                let index = i64::from(*index);
                // In flight first: that is where nearly every chunk is found, and an answer in
                // flight is never among the complete ones (see `note_recovered`).
                match self.in_flight.iter_mut().find(|(id, _)| id == message_id) {
                    Some((_, last)) if index <= *last => Verdict::Duplicate,
                    Some((_, last)) if index == *last + 1 => {
                        *last = index;
                        Verdict::Send
                    }
                    Some(_) => Verdict::Gap,
                    None if self.complete.contains(message_id) => Verdict::Duplicate,
                    // An answer not seen yet starts at its first chunk; any other means this
                    // socket missed the start (or stopped tracking it: see MAX_IN_FLIGHT).
                    None if index > 0 => Verdict::Gap,
                    None => {
                        if self.in_flight.len() == MAX_IN_FLIGHT {
                            self.in_flight.remove(0);
                        }
                        self.in_flight.push((message_id.clone(), index));
                        Verdict::Send
                    }
                }
            }
            LiveFrame::Complete { message_id } => {
                if self.complete.contains(message_id) {
                    return Verdict::Duplicate;
                }
                self.in_flight.retain(|(id, _)| id != message_id);
                self.remember_complete(message_id);
                Verdict::Send
            }
            LiveFrame::Other => Verdict::Send,
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
            // An answer already complete here stays so: it is never in flight again.
            Recovered::UpTo(_) if self.complete.contains(message_id) => {}
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
            published: 0,
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

    use Verdict::{Duplicate, Gap, Send};

    /// Chunks already in the snapshot are dropped, later ones pass once each.
    #[test]
    fn chunks_at_or_below_the_snapshot_index_are_dropped() {
        let streaming = StreamingState {
            message_id: mid("a"),
            last_index: 2,
        };
        let mut f = DeliveryFilter::from_snapshot(&[], Some(&streaming));
        assert_eq!(f.admit(&chunk("a", 1)), Duplicate);
        assert_eq!(f.admit(&chunk("a", 2)), Duplicate);
        assert_eq!(f.admit(&chunk("a", 3)), Send);
        assert_eq!(
            f.admit(&chunk("a", 3)),
            Duplicate,
            "a duplicate of a live chunk"
        );
        assert_eq!(f.admit(&chunk("a", 4)), Send);
        assert_eq!(f.admit(&complete("a")), Send);
        assert_eq!(f.admit(&complete("a")), Duplicate);
        assert_eq!(
            f.admit(&chunk("a", 5)),
            Duplicate,
            "a chunk of an ended answer"
        );
    }

    /// A chunk further ahead than the next one is never sent: the socket must resync.
    #[test]
    fn a_chunk_past_the_next_one_is_a_gap() {
        let streaming = StreamingState {
            message_id: mid("a"),
            last_index: 5,
        };
        let mut f = DeliveryFilter::from_snapshot(&[], Some(&streaming));
        assert_eq!(f.admit(&chunk("a", 9)), Gap);
        assert_eq!(
            f.admit(&chunk("a", 6)),
            Send,
            "a gap changes nothing delivered"
        );
        assert_eq!(f.admit(&chunk("b", 3)), Gap, "an answer first seen mid-way");
        assert_eq!(f.admit(&chunk("b", 0)), Send);
    }

    /// A user message or final message already in history is never sent again.
    #[test]
    fn complete_messages_in_the_snapshot_are_not_repeated() {
        let mut f = DeliveryFilter::from_snapshot(&[stored("u1"), stored("a1")], None);
        assert_eq!(f.admit(&complete("u1")), Duplicate);
        assert_eq!(f.admit(&complete("a1")), Duplicate);
        assert_eq!(f.admit(&complete("u2")), Send);
        assert_eq!(f.admit(&chunk("a2", 0)), Send);
        assert_eq!(f.admit(&LiveFrame::Other), Send);
    }

    /// After a recovery, live chunks it already delivered are dropped.
    #[test]
    fn recovery_advances_the_filter() {
        let mut f = DeliveryFilter::default();
        assert_eq!(f.admit(&chunk("a", 0)), Send);
        f.note_recovered(&mid("a"), Recovered::UpTo(5));
        assert_eq!(f.admit(&chunk("a", 4)), Duplicate);
        assert_eq!(f.admit(&chunk("a", 6)), Send);
        f.note_recovered(&mid("a"), Recovered::Final);
        assert_eq!(f.admit(&complete("a")), Duplicate);
    }

    /// A recovery that arrives after its answer completed (a late `resume` reply) does not
    /// put it back in flight: its chunks stay duplicates.
    #[test]
    fn a_late_recovery_does_not_reopen_a_complete_answer() {
        let mut f = DeliveryFilter::default();
        assert_eq!(f.admit(&chunk("a", 0)), Send);
        assert_eq!(f.admit(&complete("a")), Send);
        f.note_recovered(&mid("a"), Recovered::UpTo(3));
        assert_eq!(f.admit(&chunk("a", 4)), Duplicate);
        assert_eq!(f.admit(&chunk("a", 0)), Duplicate);
    }

    /// Past MAX_IN_FLIGHT answers at once, the oldest is forgotten: its next chunk is not
    /// sent blindly but reported as a gap (the socket resyncs), never as a duplicate sent.
    #[test]
    fn past_the_in_flight_limit_the_oldest_answer_resyncs() {
        let mut f = DeliveryFilter::default();
        let ids = ["a", "b", "c", "d", "e"];
        for id in &ids {
            assert_eq!(f.admit(&chunk(id, 0)), Send);
        }
        assert_eq!(f.admit(&chunk("a", 1)), Gap, "a was forgotten");
        for id in &ids[1..] {
            assert_eq!(f.admit(&chunk(id, 0)), Duplicate);
            assert_eq!(f.admit(&chunk(id, 1)), Send);
        }
    }

    /// The last RECENT_COMPLETE complete messages are remembered; older ones are forgotten
    /// (a late duplicate can only be one of the newest few), and memory stays bounded.
    #[test]
    fn recent_completes_are_remembered_up_to_the_limit() {
        let ids: Vec<String> = (0..=RECENT_COMPLETE).map(|i| format!("m{i}")).collect();
        let mut f = DeliveryFilter::default();
        for id in &ids {
            assert_eq!(f.admit(&complete(id)), Send);
        }
        assert_eq!(f.complete.len(), RECENT_COMPLETE);
        for id in &ids[1..] {
            assert_eq!(f.admit(&complete(id)), Duplicate, "{id}");
        }
        assert_eq!(f.admit(&complete("m0")), Send, "the oldest was forgotten");
        assert_eq!(
            f.admit(&chunk("m5", 0)),
            Duplicate,
            "a chunk of a remembered answer"
        );
    }
}
