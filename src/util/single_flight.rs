//! Single flight: concurrent requests for one key share one computation. Used by the chunk
//! resolver (FUSE requests for one chunk), the decoded-tile cache (one JP2 decode per tile) and the
//! disk cache (one download per object).
//!
//! Completion-style, so nobody has to block a thread to wait: `join` registers a waiter and tells
//! the first caller that it leads. The leader owns a `Leader` guard and must `complete` it; if the
//! guard is dropped instead — the work panicked, or an async leader was cancelled — every waiter
//! gets `Abandoned` and the key is free again. A flight can therefore never hang its waiters.
//! `run` and `run_async` are the blocking and async conveniences on top.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::util::counters::Counter;

/// The leader of a flight went away without an answer (it panicked or was cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the computation was abandoned (it panicked or was cancelled; see the log)")
    }
}

impl From<Abandoned> for String {
    fn from(a: Abandoned) -> String {
        a.to_string()
    }
}

pub type Waiter<V, E> = Box<dyn FnOnce(Result<V, E>) + Send>;

pub struct SingleFlight<K, V, E> {
    flights: Mutex<HashMap<K, Vec<Waiter<V, E>>>>,
    /// Requests that joined a flight already in the air.
    pub joins: Counter,
}

impl<K, V, E> Default for SingleFlight<K, V, E> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
            joins: Counter::default(),
        }
    }
}

/// The duty to answer a flight's waiters; answers `Abandoned` if dropped unanswered.
#[must_use = "a leader must complete its flight"]
pub struct Leader<K: Hash + Eq + Clone, V: Clone, E: Clone + From<Abandoned>> {
    flight: Arc<SingleFlight<K, V, E>>,
    key: Option<K>,
}

impl<K, V, E> SingleFlight<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
    E: Clone + From<Abandoned>,
{
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `waiter` to the flight of `key`; `Some(leader)` if there was none, and the caller must
    /// now do the work and `complete` it.
    pub fn join(self: &Arc<Self>, key: K, waiter: Waiter<V, E>) -> Option<Leader<K, V, E>> {
        let mut f = self.flights.lock().unwrap();
        if let Some(waiters) = f.get_mut(&key) {
            self.joins.inc();
            waiters.push(waiter);
            return None;
        }
        f.insert(key.clone(), vec![waiter]);
        Some(Leader {
            flight: self.clone(),
            key: Some(key),
        })
    }

    /// Whether a flight for `key` is in the air.
    pub fn in_flight(&self, key: &K) -> bool {
        self.flights.lock().unwrap().contains_key(key)
    }

    /// Computes `work` once for all concurrent callers with the same key, blocking until done.
    pub fn run(self: &Arc<Self>, key: K, work: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        V: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let waiter: Waiter<V, E> = Box::new(move |r| {
            let _ = tx.send(r);
        });
        if let Some(leader) = self.join(key, waiter) {
            leader.complete(work());
        }
        // The sender is consumed by exactly one completion (a dropped leader completes too).
        rx.recv().unwrap_or_else(|_| Err(Abandoned.into()))
    }

    /// `run` for async work: waiting does not hold a thread. Cancelling the leader's future
    /// answers its followers `Abandoned`.
    pub async fn run_async<F>(self: &Arc<Self>, key: K, work: F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
        V: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter: Waiter<V, E> = Box::new(move |r| {
            let _ = tx.send(r);
        });
        if let Some(leader) = self.join(key, waiter) {
            leader.complete(work.await);
        }
        rx.await.unwrap_or_else(|_| Err(Abandoned.into()))
    }

    fn finish(&self, key: &K, result: Result<V, E>) {
        let waiters = self.flights.lock().unwrap().remove(key).unwrap_or_default();
        for w in waiters {
            w(result.clone());
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone, E: Clone + From<Abandoned>> Leader<K, V, E> {
    /// Answers every waiter of the flight (the leader's own included) and ends it.
    pub fn complete(mut self, result: Result<V, E>) {
        if let Some(key) = self.key.take() {
            self.flight.finish(&key, result);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone, E: Clone + From<Abandoned>> Drop for Leader<K, V, E> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.flight.finish(&key, Err(Abandoned.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type F = SingleFlight<u32, u64, String>;

    #[test]
    fn concurrent_callers_share_one_computation() {
        let sf = Arc::new(F::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (sf, calls, gate) = (sf.clone(), calls.clone(), gate.clone());
                std::thread::spawn(move || {
                    gate.wait();
                    sf.run(7, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(42)
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Ok(42));
        }
        let n = calls.load(Ordering::SeqCst);
        assert_eq!(n as u64 + sf.joins.get(), 8, "every caller ran or joined");
        assert!(!sf.in_flight(&7));
    }

    #[test]
    fn a_panicking_leader_answers_its_waiters_and_frees_the_key() {
        let sf = Arc::new(F::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let leader = sf
            .join(1, Box::new(move |r| tx.send(r).unwrap()))
            .expect("first caller leads");
        let (tx2, rx2) = std::sync::mpsc::channel();
        assert!(sf
            .join(1, Box::new(move |r| tx2.send(r).unwrap()))
            .is_none());
        let panicked = std::thread::spawn(move || {
            let _leader = leader;
            panic!("decoder bug");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(rx.recv().unwrap(), Err(Abandoned.to_string()));
        assert_eq!(rx2.recv().unwrap(), Err(Abandoned.to_string()));
        assert!(!sf.in_flight(&1));
        assert_eq!(sf.run(1, || Ok(5)), Ok(5), "the next caller computes again");
    }

    #[test]
    fn a_cancelled_async_leader_abandons_and_errors_are_shared() {
        let sf = Arc::new(F::new());
        crate::remote::block_on(async {
            let slow = sf.run_async(3, async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                Ok(1)
            });
            let follower = sf.run_async(3, async { Ok(2) });
            // The leader is polled first and registered; dropping it (timeout) abandons the flight.
            let (a, b) = tokio::join!(
                tokio::time::timeout(std::time::Duration::from_millis(20), slow),
                follower
            );
            assert!(a.is_err(), "timed out");
            assert_eq!(b, Err(Abandoned.to_string()));
            let r = futures::future::join_all(
                (0..4).map(|_| sf.run_async(3, async { Err::<u64, _>("down".to_string()) })),
            )
            .await;
            assert!(r.iter().all(|r| r == &Err("down".to_string())));
        });
    }
}
