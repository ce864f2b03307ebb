//! Idempotent appends on KurrentDB, decided from what the adapter knows of a stream.
//!
//! The port promises that re-sending event ids already in a stream appends nothing. KurrentDB
//! itself recognises a repeat only when it names the same expected version as the original
//! (the server then compares the ids at those versions), or, with `Any`, while the ids are in
//! a bounded cache of recent writes; a repeat sent with the stream's *current* version is
//! simply appended again (`IndexWriter.CheckCommit`, KurrentDB v26.1.0). That is exactly what
//! the command bus sends when it reloads a stream and decides a retried command again.
//!
//! So the adapter keeps, per stream, the id and version of every event from the stream's
//! start up to the version it last saw ([`Known`]), decides each append against that
//! ([`judge`]), and appends only on the condition that the stream is still at that version.
//! A stream that moved meanwhile fails the condition; the adapter reads the new events and
//! decides again. Every event an append could repeat has therefore been compared with it
//! before anything is written. What it cannot see: an id reused in *another* stream
//! (KurrentDB has no index by event id).

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::ExpectedVersion;

/// The ids of a stream's events from its first readable version up to `next - 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Known {
    /// How many versions are known: the stream's version is `next - 1`; 0 means no stream.
    next: u64,
    ids: HashMap<Uuid, u64>,
}

impl Known {
    /// A stream with no events.
    pub(crate) fn absent() -> Known {
        Known::default()
    }

    /// A stream whose readable events start at `first` (0 unless it was truncated).
    pub(crate) fn starting_at(first: u64) -> Known {
        Known {
            next: first,
            ids: HashMap::new(),
        }
    }

    /// The stream's version as last seen; None when it did not exist.
    pub(crate) fn current(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    /// The first version not known yet.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Adds events seen at `(version, id)`, in version order. Versions already known are
    /// skipped; false (and nothing added) when the events would leave a gap.
    pub(crate) fn extend(&mut self, events: &[(u64, Uuid)]) -> bool {
        let fresh: Vec<&(u64, Uuid)> = events.iter().filter(|(v, _)| *v >= self.next).collect();
        let contiguous = fresh
            .iter()
            .enumerate()
            .all(|(i, (v, _))| *v == self.next + i as u64);
        if !contiguous {
            return false;
        }
        for (v, id) in fresh {
            self.ids.insert(*id, *v);
            self.next = v + 1;
        }
        true
    }
}

/// What an append should do, given what is known of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Every id is in the stream already: nothing to append; this is the original's outcome.
    Duplicate {
        first_version: u64,
        last_version: u64,
    },
    /// Append on the condition that the stream is still at `at` (None: does not exist).
    Append { at: Option<u64> },
    /// The expected version does not hold for the stream as known.
    Conflict { actual: Option<u64> },
    /// Some ids are in the stream and some are not: not a repeat of one append.
    Mismatch { event_id: Uuid, detail: String },
}

impl Judgement {
    /// Whether the judgement may rest on knowledge that is out of date, so that the stream
    /// must be read again before it is reported. A duplicate stands (events are never
    /// removed) and an append is conditional on the version, so only refusals need it.
    pub(crate) fn needs_fresh_knowledge(&self) -> bool {
        matches!(
            self,
            Judgement::Conflict { .. } | Judgement::Mismatch { .. }
        )
    }
}

/// Decides an append of events with `ids` (in order) to a stream known as `known`, with the
/// same answers as the Postgres adapter: ids first (all present: a duplicate; some: a
/// mismatch), then the expected version.
pub(crate) fn judge(expected: ExpectedVersion, ids: &[Uuid], known: &Known) -> Judgement {
    let found: Vec<(Uuid, u64)> = ids
        .iter()
        .filter_map(|id| known.ids.get(id).map(|v| (*id, *v)))
        .collect();
    if !found.is_empty() {
        if found.len() < ids.len() {
            return Judgement::Mismatch {
                event_id: found[0].0,
                detail: format!(
                    "{} of the {} event ids are already stored",
                    found.len(),
                    ids.len()
                ),
            };
        }
        let versions = found.iter().map(|(_, v)| *v);
        return Judgement::Duplicate {
            first_version: versions.clone().min().unwrap_or_default(),
            last_version: versions.max().unwrap_or_default(),
        };
    }
    let current = known.current();
    let holds = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::Exists => current.is_some(),
        ExpectedVersion::Exact(v) => current == Some(v),
    };
    if holds {
        Judgement::Append { at: current }
    } else {
        Judgement::Conflict { actual: current }
    }
}

/// The most event ids kept for all streams together (about 40 bytes each). Past it, streams
/// are forgotten (and read again in full before their next append) until a quarter is free.
const MAX_IDS: usize = 500_000;

/// [`Known`] for the streams this process has appended to or read from the start.
#[derive(Default)]
pub(crate) struct KnownStreams {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    streams: HashMap<String, Known>,
    ids: usize,
}

impl KnownStreams {
    /// Judges an append against the stream as known; None when nothing is known of it.
    pub(crate) fn judge(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        ids: &[Uuid],
    ) -> Option<Judgement> {
        let inner = self.inner.lock().expect("known streams lock");
        inner.streams.get(stream).map(|k| judge(expected, ids, k))
    }

    /// The first version not known yet; None when nothing is known of the stream.
    pub(crate) fn next(&self, stream: &str) -> Option<u64> {
        let inner = self.inner.lock().expect("known streams lock");
        inner.streams.get(stream).map(Known::next)
    }

    /// Records events read or appended, in version order, starting at version `from`. A read
    /// from version 0 may start knowledge of a stream (`first`: the version of its first
    /// readable event, None when it has none); other reads only extend it.
    pub(crate) fn observe(&self, stream: &str, from: u64, events: &[(u64, Uuid)]) {
        let mut guard = self.inner.lock().expect("known streams lock");
        let inner = &mut *guard;
        if !inner.streams.contains_key(stream) {
            if from != 0 {
                return;
            }
            let start = events
                .first()
                .map_or(Known::absent(), |(v, _)| Known::starting_at(*v));
            inner.streams.insert(stream.to_owned(), start);
        }
        let known = inner.streams.get_mut(stream).expect("inserted above");
        let before = known.len();
        if !known.extend(events) {
            // A gap (the stream was truncated, say): start again from a full read.
            inner.ids -= before;
            inner.streams.remove(stream);
            return;
        }
        inner.ids += known.len() - before;
        if inner.ids > MAX_IDS {
            inner.evict(stream);
        }
    }
}

impl Inner {
    /// Forgets streams other than `keep` until a quarter of the budget is free. Which ones is
    /// arbitrary: an entry is only a saved read.
    fn evict(&mut self, keep: &str) {
        let target = MAX_IDS / 4 * 3;
        let victims: Vec<String> = self
            .streams
            .keys()
            .filter(|s| s.as_str() != keep)
            .cloned()
            .collect();
        for s in victims {
            if self.ids <= target {
                break;
            }
            if let Some(k) = self.streams.remove(&s) {
                self.ids -= k.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A stream holding ids 1..=n at versions 0..n.
    fn stream_of(n: u64) -> Known {
        let mut k = Known::absent();
        let events: Vec<(u64, Uuid)> = (0..n).map(|v| (v, id(u128::from(v) + 1))).collect();
        assert!(k.extend(&events));
        k
    }

    #[test]
    fn a_retry_with_the_current_version_is_a_duplicate_not_a_second_append() {
        // The stream holds ids 1..=5; ids 4 and 5 were one append at versions 3 and 4. The
        // bus reloads (now at version 4) and sends them again expecting version 4: KurrentDB
        // would append them again; the judgement is a duplicate of versions 3..=4.
        let k = stream_of(5);
        assert_eq!(
            judge(ExpectedVersion::Exact(4), &[id(4), id(5)], &k),
            Judgement::Duplicate {
                first_version: 3,
                last_version: 4
            }
        );
        // With the original's expected version, with none, or with `Exists`: the same.
        for expected in [
            ExpectedVersion::Exact(2),
            ExpectedVersion::Any,
            ExpectedVersion::Exists,
            ExpectedVersion::NoStream,
        ] {
            assert_eq!(
                judge(expected, &[id(4), id(5)], &k),
                Judgement::Duplicate {
                    first_version: 3,
                    last_version: 4
                },
                "{expected}"
            );
        }
        // Deep in the stream counts as much as at its end.
        assert_eq!(
            judge(ExpectedVersion::Exact(4), &[id(1)], &k),
            Judgement::Duplicate {
                first_version: 0,
                last_version: 0
            }
        );
    }

    #[test]
    fn ids_partly_stored_are_a_mismatch_whatever_the_version() {
        let k = stream_of(3);
        for expected in [ExpectedVersion::Exact(2), ExpectedVersion::Exact(0)] {
            match judge(expected, &[id(99), id(3)], &k) {
                Judgement::Mismatch { event_id, detail } => {
                    assert_eq!(event_id, id(3));
                    assert_eq!(detail, "1 of the 2 event ids are already stored");
                }
                other => panic!("expected a mismatch, got {other:?}"),
            }
        }
    }

    #[test]
    fn new_ids_follow_the_expected_version() {
        let k = stream_of(3);
        let new = [id(100)];
        let append = |expected| judge(expected, &new, &k);
        assert_eq!(
            append(ExpectedVersion::Exact(2)),
            Judgement::Append { at: Some(2) }
        );
        assert_eq!(
            append(ExpectedVersion::Any),
            Judgement::Append { at: Some(2) }
        );
        assert_eq!(
            append(ExpectedVersion::Exists),
            Judgement::Append { at: Some(2) }
        );
        for stale in [ExpectedVersion::Exact(1), ExpectedVersion::Exact(7)] {
            assert_eq!(append(stale), Judgement::Conflict { actual: Some(2) });
        }
        assert_eq!(
            append(ExpectedVersion::NoStream),
            Judgement::Conflict { actual: Some(2) }
        );
        let none = Known::absent();
        assert_eq!(
            judge(ExpectedVersion::NoStream, &new, &none),
            Judgement::Append { at: None }
        );
        assert_eq!(
            judge(ExpectedVersion::Any, &new, &none),
            Judgement::Append { at: None }
        );
        assert_eq!(
            judge(ExpectedVersion::Exists, &new, &none),
            Judgement::Conflict { actual: None }
        );
        assert_eq!(
            judge(ExpectedVersion::Exact(0), &new, &none),
            Judgement::Conflict { actual: None }
        );
    }

    #[test]
    fn only_refusals_wait_for_fresh_knowledge() {
        assert!(Judgement::Conflict { actual: None }.needs_fresh_knowledge());
        assert!(
            Judgement::Mismatch {
                event_id: id(1),
                detail: String::new()
            }
            .needs_fresh_knowledge()
        );
        assert!(!Judgement::Append { at: Some(1) }.needs_fresh_knowledge());
        assert!(
            !Judgement::Duplicate {
                first_version: 0,
                last_version: 0
            }
            .needs_fresh_knowledge()
        );
    }

    #[test]
    fn knowledge_grows_only_without_gaps() {
        let mut k = stream_of(2);
        // Overlapping reads are fine: known versions are skipped.
        assert!(k.extend(&[(1, id(2)), (2, id(3))]));
        assert_eq!(k.current(), Some(2));
        // A gap is refused and changes nothing.
        assert!(!k.extend(&[(4, id(5))]));
        assert_eq!(k.current(), Some(2));
        assert_eq!(
            judge(ExpectedVersion::Any, &[id(5)], &k),
            Judgement::Append { at: Some(2) }
        );
        // A truncated stream starts where its readable events do.
        let mut t = Known::starting_at(10);
        assert!(t.extend(&[(10, id(11))]));
        assert_eq!(t.current(), Some(10));
    }

    #[test]
    fn the_shared_cache_starts_from_full_reads_and_follows_appends() {
        let cache = KnownStreams::default();
        // A read from the middle teaches nothing about a stream not known yet.
        cache.observe("s-1", 3, &[(3, id(4))]);
        assert_eq!(cache.judge("s-1", ExpectedVersion::Any, &[id(4)]), None);
        // A read from the start does, even an empty one (no stream).
        cache.observe("s-1", 0, &[]);
        assert_eq!(
            cache.judge("s-1", ExpectedVersion::NoStream, &[id(1)]),
            Some(Judgement::Append { at: None })
        );
        cache.observe("s-1", 0, &[(0, id(1)), (1, id(2))]);
        assert_eq!(cache.next("s-1"), Some(2));
        assert_eq!(
            cache.judge("s-1", ExpectedVersion::Exact(1), &[id(2)]),
            Some(Judgement::Duplicate {
                first_version: 1,
                last_version: 1
            })
        );
        // A gap makes it forget the stream rather than judge on a hole.
        cache.observe("s-1", 5, &[(5, id(6))]);
        assert_eq!(cache.next("s-1"), None);
        assert_eq!(cache.inner.lock().unwrap().ids, 0);
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let cache = KnownStreams::default();
        let per_stream = 1_000u64;
        for s in 0..(MAX_IDS as u64 / per_stream + 5) {
            let events: Vec<(u64, Uuid)> = (0..per_stream)
                .map(|v| (v, id(u128::from(s) << 32 | u128::from(v))))
                .collect();
            cache.observe(&format!("s-{s}"), 0, &events);
        }
        let inner = cache.inner.lock().unwrap();
        assert!(inner.ids <= MAX_IDS, "{} ids kept", inner.ids);
        assert_eq!(
            inner.ids,
            inner.streams.values().map(Known::len).sum::<usize>()
        );
    }
}
