//! Which outbox rows the relay may publish now, and in which order.
//!
//! Rows are read in commit order (`seq`), but a session's changes may commit out of order (two
//! AI nodes record two answers of one session; the first one's end can land after the
//! second one's start). Each row carries its change's number in the session, taken in Redis
//! when the change was made; the relay publishes a session's changes in that order:
//! - rows of changes at or below the session's cursor (its last published change) go at once:
//!   the rest of a change cut in two by the read, or numbering that started again (the
//!   session's counter expired);
//! - then the changes after the cursor, as long as they follow each other without a gap;
//! - a gap is waited for, up to `grace` since the first row behind it was written; then it is
//!   skipped (its change was lost: a node died before recording it), and counted.
//!
//! Rows without a number go in `seq` order.

use std::collections::{BTreeMap, HashMap};

use store::OutboxRow;

/// What to publish, in order, and where each session's cursor goes once it is published.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Indexes into the rows read, in publishing order (grouped by session).
    pub order: Vec<usize>,
    /// Gaps skipped because they outlived the grace period: (session, first missing change).
    pub skipped: Vec<(String, i64)>,
}

/// Plans the publication of `rows` (unpublished, in `seq` order) given the sessions'
/// `cursors`, at `now` (ms), waiting up to `grace_ms` for a missing change.
pub(crate) fn plan(
    rows: &[OutboxRow],
    cursors: &HashMap<String, i64>,
    now: i64,
    grace_ms: i64,
) -> Plan {
    // Per session (in order of first appearance): its rows by change, in seq order within.
    let mut sessions: Vec<(&str, BTreeMap<i64, Vec<usize>>)> = Vec::new();
    let mut unnumbered = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(change) = row.change else {
            unnumbered.push(i);
            continue;
        };
        let at = match sessions.iter().position(|(s, _)| *s == row.key) {
            Some(at) => at,
            None => {
                sessions.push((row.key.as_str(), BTreeMap::new()));
                sessions.len() - 1
            }
        };
        sessions[at].1.entry(change).or_default().push(i);
    }
    let mut plan = Plan {
        order: unnumbered,
        skipped: Vec::new(),
    };
    for (session, changes) in sessions {
        let cursor = cursors.get(session).copied().unwrap_or(0);
        let mut next = cursor + 1;
        for (change, indexes) in changes {
            if change <= cursor || change == next {
                plan.order.extend(indexes);
                next = next.max(change + 1);
                continue;
            }
            // A gap before `change`: wait for it unless its successor has waited too long.
            let waited = indexes
                .iter()
                .map(|&i| now - rows[i].created_at)
                .max()
                .unwrap_or(0);
            if waited < grace_ms {
                break;
            }
            plan.skipped.push((session.to_owned(), next));
            plan.order.extend(indexes);
            next = change + 1;
        }
    }
    plan
}

/// The cursors once the rows at `published` (indexes) are published: each session's highest
/// change among them, when above its cursor.
pub(crate) fn advanced_cursors(
    rows: &[OutboxRow],
    published: &[usize],
    cursors: &HashMap<String, i64>,
) -> Vec<(String, i64)> {
    let mut highest: HashMap<&str, i64> = HashMap::new();
    for &i in published {
        if let Some(change) = rows[i].change {
            let entry = highest.entry(rows[i].key.as_str()).or_insert(change);
            *entry = (*entry).max(change);
        }
    }
    let mut moved: Vec<(String, i64)> = highest
        .into_iter()
        .filter(|(session, change)| cursors.get(*session).is_none_or(|c| change > c))
        .map(|(session, change)| (session.to_owned(), change))
        .collect();
    moved.sort();
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Topic;

    fn row(seq: i64, session: &str, change: Option<i64>, created_at: i64) -> OutboxRow {
        OutboxRow {
            seq,
            event_id: format!("e{seq}"),
            topic: Topic::Chat,
            key: session.to_owned(),
            change,
            payload: String::new(),
            created_at,
        }
    }

    fn seqs(rows: &[OutboxRow], plan: &Plan) -> Vec<i64> {
        plan.order.iter().map(|&i| rows[i].seq).collect()
    }

    /// Changes committed out of order are published in their session's order.
    #[test]
    fn a_sessions_changes_go_in_their_order_not_commit_order() {
        // Change 2 of session a committed before change 1 (another node was slower).
        let rows = [
            row(1, "a", Some(2), 100),
            row(2, "a", Some(2), 100),
            row(3, "b", Some(1), 100),
            row(4, "a", Some(1), 101),
        ];
        let plan = plan(&rows, &HashMap::new(), 102, 30_000);
        assert_eq!(seqs(&rows, &plan), [4, 1, 2, 3]);
        assert!(plan.skipped.is_empty());
        let all: Vec<usize> = plan.order.clone();
        assert_eq!(
            advanced_cursors(&rows, &all, &HashMap::new()),
            [("a".to_owned(), 2), ("b".to_owned(), 1)]
        );
    }

    /// A change behind a gap waits for it, then goes once the gap outlived the grace period.
    #[test]
    fn a_gap_is_waited_for_then_skipped() {
        let rows = [row(1, "a", Some(3), 1_000), row(2, "a", Some(4), 1_000)];
        let cursors = HashMap::from([("a".to_owned(), 1)]);
        let waiting = plan(&rows, &cursors, 2_000, 30_000);
        assert!(waiting.order.is_empty(), "change 2 may still come");
        let late = plan(&rows, &cursors, 40_000, 30_000);
        assert_eq!(seqs(&rows, &late), [1, 2]);
        assert_eq!(late.skipped, [("a".to_owned(), 2)]);
    }

    /// Rows at or below the cursor (the rest of a change, or numbering that started again)
    /// and rows without a number go at once.
    #[test]
    fn rows_at_or_below_the_cursor_and_unnumbered_rows_go_at_once() {
        let rows = [
            row(1, "a", Some(5), 0),
            row(2, "b", None, 0),
            row(3, "a", Some(1), 0),
            row(4, "a", Some(6), 0),
        ];
        let cursors = HashMap::from([("a".to_owned(), 5)]);
        let plan = plan(&rows, &cursors, 0, 30_000);
        assert_eq!(seqs(&rows, &plan), [2, 3, 1, 4]);
        assert_eq!(
            advanced_cursors(&rows, &plan.order, &cursors),
            [("a".to_owned(), 6)]
        );
    }
}
