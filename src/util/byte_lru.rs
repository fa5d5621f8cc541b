//! One least-recently-used map capped in bytes, for every cache of the daemon: encoded chunks,
//! decoded JP2 tiles and downloaded band files. Not synchronised: each cache keeps it under its own
//! lock with whatever else that cache tracks.
//!
//! Rules (the same for every cache): the weight of an entry is fixed when inserted; after every
//! insert, least recently used entries are evicted until the total fits the cap, skipping entries
//! the cache says are pinned (in use: a file GDAL has open); an unpinned entry heavier than the
//! whole cap is not admitted at all. Evicted entries are handed back, so a cache can release what
//! they hold (delete a file).

use std::hash::Hash;

use lru::LruCache;

crate::counters! {
    /// What a cache did.
    pub struct LruStats { hits, misses, evictions }
}

pub struct ByteLru<K: Hash + Eq, V> {
    lru: LruCache<K, V>,
    bytes: usize,
    capacity: usize,
    weigh: fn(&V) -> usize,
    pinned: fn(&V) -> bool,
    pub stats: LruStats,
}

impl<K: Hash + Eq + Clone, V: Clone> ByteLru<K, V> {
    /// `weigh` gives an entry's bytes; `pinned` says an entry may not be evicted now.
    pub fn new(capacity: usize, weigh: fn(&V) -> usize, pinned: fn(&V) -> bool) -> Self {
        ByteLru {
            lru: LruCache::unbounded(),
            bytes: 0,
            capacity,
            weigh,
            pinned,
            stats: LruStats::default(),
        }
    }

    /// A cache whose entries are never pinned.
    pub fn unpinned(capacity: usize, weigh: fn(&V) -> usize) -> Self {
        Self::new(capacity, weigh, |_| false)
    }

    /// The entry (now most recently used), counting a hit or a miss.
    pub fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hit = self.lru.get(key).cloned();
        match hit {
            Some(_) => self.stats.hits.inc(),
            None => self.stats.misses.inc(),
        }
        hit
    }

    /// Inserts (replacing an entry of the same key), then evicts to fit the cap; returns what was
    /// evicted or not admitted.
    pub fn insert(&mut self, key: K, value: V) -> Vec<(K, V)> {
        let w = (self.weigh)(&value);
        if w > self.capacity && !(self.pinned)(&value) {
            return vec![(key, value)];
        }
        if let Some(old) = self.lru.put(key, value) {
            self.bytes -= (self.weigh)(&old);
        }
        self.bytes += w;
        self.evict()
    }

    /// Evicts least recently used unpinned entries until the total fits the cap.
    pub fn evict(&mut self) -> Vec<(K, V)> {
        if self.bytes <= self.capacity {
            return Vec::new();
        }
        let mut over = self.bytes - self.capacity;
        let victims: Vec<K> = self
            .lru
            .iter()
            .rev()
            .filter(|(_, v)| !(self.pinned)(v))
            .take_while(|(_, v)| {
                let go = over > 0;
                over = over.saturating_sub((self.weigh)(v));
                go
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(victims.len());
        for k in victims {
            if let Some(v) = self.lru.pop(&k) {
                self.bytes -= (self.weigh)(&v);
                self.stats.evictions.inc();
                out.push((k, v));
            }
        }
        out
    }

    /// Removes an entry.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let v = self.lru.pop(key)?;
        self.bytes -= (self.weigh)(&v);
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn len(v: &Arc<Vec<u8>>) -> usize {
        v.len()
    }

    fn b(n: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![0; n])
    }

    #[test]
    fn evicts_least_recently_used_to_fit_the_cap() {
        let mut c = ByteLru::unpinned(100, len);
        assert!(c.insert("a", b(40)).is_empty());
        assert!(c.insert("b", b(40)).is_empty());
        assert!(c.get("a").is_some());
        let out = c.insert("c", b(40));
        assert_eq!(out.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["b"]);
        assert_eq!((c.len(), c.bytes()), (2, 80));
        assert!(c.get("b").is_none());
        assert_eq!(
            (
                c.stats.hits.get(),
                c.stats.misses.get(),
                c.stats.evictions.get()
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn replaces_and_refuses_what_exceeds_the_cap() {
        let mut c = ByteLru::unpinned(100, len);
        c.insert("a", b(40));
        c.insert("a", b(60));
        assert_eq!((c.len(), c.bytes()), (1, 60));
        let out = c.insert("huge", b(101));
        assert_eq!(out.len(), 1);
        assert_eq!((c.len(), c.bytes()), (1, 60), "nothing evicted for it");
        assert_eq!(c.remove("a").map(|v| v.len()), Some(60));
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn pinned_entries_stay_and_may_exceed_the_cap() {
        fn pinned(v: &Arc<Vec<u8>>) -> bool {
            Arc::strong_count(v) > 1
        }
        let mut c = ByteLru::new(100, len, pinned);
        let held = b(60);
        c.insert("held", held.clone());
        c.insert("free", b(30));
        let out = c.insert("new", b(20));
        assert_eq!(out.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["free"]);
        assert_eq!(c.bytes(), 80);
        let big = b(500);
        let out = c.insert("big", big.clone());
        assert_eq!(out.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["new"]);
        assert_eq!(c.bytes(), 560, "only pinned entries exceed the cap");
        assert!(
            c.get("big").is_some(),
            "a pinned entry is admitted whatever its size"
        );
        drop((held, big));
        let out = c.evict();
        assert!(
            c.bytes() <= 100,
            "{} after evicting {}",
            c.bytes(),
            out.len()
        );
    }
}
