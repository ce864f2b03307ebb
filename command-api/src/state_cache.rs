//! The command bus's cache of aggregate states: per stream, the state after its last event,
//! with that event's version and position.
//!
//! Bounded twice, in bytes and in entries, and evicts the least recently used entries first:
//! the streams a shop keeps writing (inventory, products, the orders and payments of
//! checkouts in flight) stay, the streams of finished checkouts leave. (The cache it replaces
//! held 50,000 entries whatever their size and then dropped all of them at once; under steady
//! checkouts its memory grew by about 4 KB per order until the next drop.)
//!
//! An entry's weight is its state's JSON size plus the stream name and a fixed overhead for
//! the map node and the `Arc`: an estimate of the heap it holds, cheap to compute, and
//! computed once per insert. BENCHMARKS.md compares it with the process's measured memory.
//!
//! The cache is only a shortcut: anything missing is read from the store, and the append's
//! expected version refuses a decision made on a stale entry.

use std::any::Any;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hashlink::LinkedHashMap;
use purser_event_store::Position;
use serde::Serialize;

/// How much the cache may hold. Both bounds apply; 0 bytes or 0 entries turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_bytes: usize,
    pub max_entries: usize,
}

impl Default for CacheLimits {
    /// 16 MB holds the streams of several minutes of checkouts at tens per second (about
    /// 4 KB each) and every product and inventory stream of a large catalog.
    fn default() -> CacheLimits {
        CacheLimits {
            max_bytes: 16 * 1024 * 1024,
            max_entries: 50_000,
        }
    }
}

/// The map node, the key's `String`, the `Arc` and its counts, the entry's fields.
const ENTRY_OVERHEAD: usize = 96;

/// A cached state, type-erased (one cache serves every aggregate).
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) version: u64,
    pub(crate) position: Position,
    pub(crate) state: Arc<dyn Any + Send + Sync>,
    bytes: usize,
}

/// What the cache holds and how well it serves, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub limits: CacheLimits,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl CacheStats {
    /// Hits over lookups since the process started; 0 before the first lookup.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

struct Inner {
    /// Least recently used first.
    map: LinkedHashMap<String, Entry>,
    bytes: usize,
}

pub(crate) struct StateCache {
    limits: CacheLimits,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl StateCache {
    pub(crate) fn new(limits: CacheLimits) -> StateCache {
        StateCache {
            limits,
            inner: Mutex::new(Inner {
                map: LinkedHashMap::new(),
                bytes: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The entry of `stream`, marked as just used. Counts a hit, and a miss if `count_miss`
    /// (a caller that will look again at once after a miss counts only the second look).
    pub(crate) fn get(&self, stream: &str, count_miss: bool) -> Option<Entry> {
        let found = self
            .inner
            .lock()
            .expect("cache lock")
            .map
            .to_back(stream)
            .cloned();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else if count_miss {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Stores `state` as `stream`'s, then evicts the least recently used entries until both
    /// bounds hold again. A state heavier than the whole budget is not stored.
    pub(crate) fn put<S: Serialize + Send + Sync + 'static>(
        &self,
        stream: &str,
        version: u64,
        position: Position,
        state: Arc<S>,
    ) {
        let bytes = weigh(&*state) + stream.len() + ENTRY_OVERHEAD;
        let mut inner = self.inner.lock().expect("cache lock");
        if let Some(old) = inner.map.remove(stream) {
            inner.bytes -= old.bytes;
        }
        if bytes > self.limits.max_bytes || self.limits.max_entries == 0 {
            return;
        }
        let entry = Entry {
            version,
            position,
            state,
            bytes,
        };
        inner.map.insert(stream.to_owned(), entry);
        inner.bytes += bytes;
        let mut evicted = 0;
        while inner.bytes > self.limits.max_bytes || inner.map.len() > self.limits.max_entries {
            let Some((_, old)) = inner.map.pop_front() else {
                break;
            };
            inner.bytes -= old.bytes;
            evicted += 1;
        }
        drop(inner);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, stream: &str) {
        let mut inner = self.inner.lock().expect("cache lock");
        if let Some(old) = inner.map.remove(stream) {
            inner.bytes -= old.bytes;
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let inner = self.inner.lock().expect("cache lock");
        CacheStats {
            entries: inner.map.len(),
            bytes: inner.bytes,
            limits: self.limits,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

/// The state's JSON size, counted without building the JSON.
fn weigh<S: Serialize>(state: &S) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(std::mem::size_of::<S>());
    // A state that cannot be serialised still has its inline size; none of ours fails.
    let _ = serde_json::to_writer(&mut count, state);
    count.0
}

/// Publishes the cache's figures, labelled `cache="aggregate_states"`: size and capacity as
/// gauges, hits, misses and evictions as counters, and the hit ratio since start as a gauge
/// (the rate over a window is `rate(hits) / (rate(hits) + rate(misses))`). The process's
/// metrics sampler calls it.
pub fn publish(stats: &CacheStats) {
    const CACHE: &str = "aggregate_states";
    metrics::gauge!("purser_cache_entries", "cache" => CACHE).set(stats.entries as f64);
    metrics::gauge!("purser_cache_bytes", "cache" => CACHE).set(stats.bytes as f64);
    metrics::gauge!("purser_cache_capacity_bytes", "cache" => CACHE)
        .set(stats.limits.max_bytes as f64);
    metrics::gauge!("purser_cache_capacity_entries", "cache" => CACHE)
        .set(stats.limits.max_entries as f64);
    metrics::counter!("purser_cache_hits_total", "cache" => CACHE).absolute(stats.hits);
    metrics::counter!("purser_cache_misses_total", "cache" => CACHE).absolute(stats.misses);
    metrics::counter!("purser_cache_evictions_total", "cache" => CACHE).absolute(stats.evictions);
    metrics::gauge!("purser_cache_hit_ratio", "cache" => CACHE).set(stats.hit_ratio());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(n: u64) -> Position {
        Position::from_db(n as i64, n as i64)
    }

    #[test]
    fn evicts_the_least_recently_used_first_and_keeps_within_bytes() {
        let one = weigh(&"x".repeat(1_000)) + "s-0".len() + ENTRY_OVERHEAD;
        let cache = StateCache::new(CacheLimits {
            max_bytes: one * 3,
            max_entries: 100,
        });
        for n in 0..3 {
            cache.put(&format!("s-{n}"), n, pos(n), Arc::new("x".repeat(1_000)));
        }
        assert!(cache.get("s-0", true).is_some()); // s-0 is now the most recently used
        cache.put("s-3", 3, pos(3), Arc::new("x".repeat(1_000)));
        assert!(
            cache.get("s-1", true).is_none(),
            "the least recently used goes first"
        );
        for s in ["s-0", "s-2", "s-3"] {
            assert!(cache.get(s, true).is_some(), "{s} stays");
        }
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (3, 1));
        assert!(stats.bytes <= one * 3);
        assert_eq!((stats.hits, stats.misses), (4, 1));
        // Replacing an entry moves the byte count, it does not add to it.
        cache.put("s-3", 4, pos(4), Arc::new("y".repeat(1_000)));
        assert_eq!(cache.stats().bytes, stats.bytes);
        cache.remove("s-3");
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn bounds_entries_and_refuses_a_state_larger_than_the_budget() {
        let cache = StateCache::new(CacheLimits {
            max_bytes: 10_000,
            max_entries: 2,
        });
        for n in 0..5 {
            cache.put(&format!("s-{n}"), n, pos(n), Arc::new(n));
        }
        assert_eq!(cache.stats().entries, 2);
        assert!(cache.get("s-4", true).is_some() && cache.get("s-3", true).is_some());
        cache.put("big", 1, pos(1), Arc::new("z".repeat(20_000)));
        assert!(cache.get("big", true).is_none());
        let off = StateCache::new(CacheLimits {
            max_bytes: 0,
            max_entries: 0,
        });
        off.put("s", 1, pos(1), Arc::new(1u8));
        assert_eq!(off.stats().entries, 0);
    }
}
