//! Create-if-absent when the answer can be lost, and the rule that recognises our own object.
//!
//! A conditional create (`If-None-Match: *`) is not idempotent, but S3 clients retry it anyway:
//! when the answer to a create that landed is lost (a timeout, a broken connection, a 5xx from a
//! proxy), the SDK sends it again and the retry meets the object the first attempt wrote — 412,
//! which on its own reads as a lost race. Ceph RGW, the usual S3 of HPC centres, may also answer
//! a lost race with a 5xx rather than 412. Either way the answer does not say who created the
//! object, and the consistency model (`crate::generation`) needs exactly one writer to be told
//! it did: a winner that believes it lost only wastes work, but never learning who won is worse
//! than either.
//!
//! So every create carries a token unique to the call (`token`), which the store keeps with the
//! object (S3: user metadata `x-amz-meta-datacube-create`), and whenever the answer is not a
//! plain success — "exists", or a transient failure after the client's own retries — the object
//! is read back (`Store::creator`) and decides:
//!
//! * it carries this call's token: **ours** (`Ok(true)`) — the answer was lost;
//! * it carries another token, or none (a plain `put`, an older datacube): **theirs**
//!   (`Ok(false)`), even if the bytes are equal — the bytes cannot tell two writers apart;
//! * it is absent: nothing landed yet, so the create is tried again with the same token (a late
//!   landing of an earlier attempt is then still recognised), and after `ATTEMPTS` the call fails
//!   with a `Transient` error naming the key and the store.
//!
//! A non-transient failure (a refused request) is returned as it is: nothing to read back.
//!
//! One more case: a call that ends in an error may still land later (a PUT stuck in flight past
//! its timeout). Its token is remembered (`PENDING`), and a later call of this process for the same
//! key with the same bytes — the caller retrying the publication — claims that object as its
//! own, once. Every other writer still sees a foreign token, so exactly one call gets `true`.
//!
//! The logic lives here, above the backends, so that S3 and the failure-injecting wrapper
//! (`FaultyStore`) run the same code: tests reach every branch in memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::{check_key, is_transient, Store, Transient};

/// Who created the object at a key, as far as the store recorded it (`Store::creator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creator {
    /// No object at the key.
    Absent,
    /// An object without a creation token: written by `put`, by a store that records no tokens
    /// (its creates are never ambiguous), or by an older datacube.
    Unmarked,
    /// An object created by `Store::try_create` with this token.
    Marked(String),
}

/// Conditional creates per call when the object is still absent after an ambiguous answer.
pub const ATTEMPTS: u32 = 3;

/// A fresh creation token: this process's `writer_id` (host, pid, start time) and a counter, so
/// no two calls on any host share one.
pub fn token() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-c{}",
        super::writer_id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `Store::put_if_absent` for a store whose `try_create` answers can be lost or ambiguous: tries
/// the create with a fresh token and, unless it plainly succeeded, reads the object back to
/// decide whether this call created it (module doc).
pub fn put_if_absent<S: Store + ?Sized>(store: &S, key: &str, bytes: &[u8]) -> Result<bool> {
    check_key(key)?;
    let token = token();
    let mut last: Option<anyhow::Error> = None;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            // The client already backed off between its own retries; this is only a short
            // pause before asking again whether anything landed.
            std::thread::sleep(Duration::from_millis(25 << attempt));
        }
        let failure = match store.try_create(key, bytes, &token) {
            Ok(true) => {
                forget(key);
                return Ok(true);
            }
            // Exists: another writer's object, or ours after a lost answer and the retry's 412.
            Ok(false) => None,
            // A 5xx, a timeout: the create may or may not have landed, or lost a race.
            Err(e) if is_transient(&e) => Some(e),
            Err(e) => {
                if attempt > 1 {
                    remember(key, &token, bytes);
                }
                // The backend's error names the key and the store.
                return Err(e);
            }
        };
        let found = match store.creator(key) {
            Ok(c) => c,
            Err(e) => {
                remember(key, &token, bytes);
                let after = match &failure {
                    Some(f) => format!("after {f:#}"),
                    None => "after it answered that the object exists".into(),
                };
                return Err(e.context(format!("{}: reading back {key} {after}", store.describe())));
            }
        };
        match found {
            Creator::Marked(t) if t == token || claim(key, &t, bytes) => {
                forget(key);
                return Ok(true);
            }
            Creator::Marked(_) | Creator::Unmarked => {
                forget(key);
                return Ok(false);
            }
            Creator::Absent => {
                last = Some(failure.unwrap_or_else(|| {
                    let d = store.describe();
                    let msg = format!(
                    "{d}: PUT (if absent) {key} answered that the object exists, but it is absent"
                );
                    anyhow::Error::new(Transient(msg))
                }))
            }
        }
    }
    remember(key, &token, bytes);
    let e = last.expect("at least one attempt");
    Err(e.context(format!(
        "{}: {key} is still absent after {ATTEMPTS} ambiguous answers to PUT (if absent)",
        store.describe()
    )))
}

/// A call that ended in an error after its create was sent: its object may land later.
struct Pending {
    key: String,
    token: String,
    digest: [u8; 32],
}

/// Calls of this process that may have landed unseen (a bounded list: such failures are rare,
/// and an entry is only a chance to recognise our own object, never needed for safety).
static PENDING: Mutex<VecDeque<Pending>> = Mutex::new(VecDeque::new());
const PENDING_MAX: usize = 256;

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn remember(key: &str, token: &str, bytes: &[u8]) {
    let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    if p.len() >= PENDING_MAX {
        p.pop_front();
    }
    p.push_back(Pending {
        key: key.to_string(),
        token: token.to_string(),
        digest: digest(bytes),
    });
}

/// Takes over the object carrying `token` if an earlier failed call of this process created it
/// with the same key and bytes: this call then publishes exactly what that one meant to, and
/// since the entry is removed, only one later call can claim it.
fn claim(key: &str, token: &str, bytes: &[u8]) -> bool {
    let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = p.iter().position(|e| e.token == token && e.key == key) else {
        return false;
    };
    if p[i].digest != digest(bytes) {
        return false;
    }
    p.remove(i);
    true
}

/// The key now holds an object whose creator is settled: no earlier call can claim it any more.
fn forget(key: &str) {
    let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    if !p.is_empty() {
        p.retain(|e| e.key != key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::store::{FaultyStore, MemStore, StoreOp};
    use crate::util::faults::Effect;

    fn rig() -> (Arc<MemStore>, FaultyStore) {
        let mem = Arc::new(MemStore::new());
        let faulty = FaultyStore::new(mem.clone());
        (mem, faulty)
    }

    #[test]
    fn a_create_whose_answer_was_lost_and_retried_into_a_412_is_ours() {
        let (mem, store) = rig();
        let (a, b) = (&store, &*mem);
        // Writer A's first create lands, its answer is lost, the client's retry meets A's own
        // object: the raw answer is "exists", as S3's 412.
        store.faults.add(StoreOp::Put, None, 1..=1, Effect::Repeat);
        assert!(!a.try_create("g/0", b"probe", &token()).unwrap());
        // (A rule counts the calls after it is added.)
        store.faults.add(StoreOp::Put, None, 1..=1, Effect::Repeat);
        assert!(a.put_if_absent("g/1", b"a").unwrap(), "A created it");
        assert!(!b.put_if_absent("g/1", b"b").unwrap(), "B lost the race");
        assert_eq!(mem.get("g/1").unwrap().unwrap(), b"a");
        // The other order: B wins, then A's create (answer lost again) meets B's object.
        assert!(b.put_if_absent("g/2", b"b").unwrap());
        store.faults.add(StoreOp::Put, None, 1..=1, Effect::Repeat);
        assert!(
            !a.put_if_absent("g/2", b"a").unwrap(),
            "B's object is not A's"
        );
        assert_eq!(mem.get("g/2").unwrap().unwrap(), b"b");
    }

    #[test]
    fn of_racing_writers_whose_answers_are_lost_exactly_one_wins() {
        for lost in [1..=1, 1..=8] {
            let (mem, store) = rig();
            store
                .faults
                .add(StoreOp::Put, None, lost.clone(), Effect::Repeat);
            let winners: Vec<u8> = std::thread::scope(|s| {
                let store = &store;
                let handles: Vec<_> = (0..8u8)
                    .map(|i| s.spawn(move || (i, store.put_if_absent("race", &[i; 16]).unwrap())))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .filter(|&(_, won)| won)
                    .map(|(i, _)| i)
                    .collect()
            });
            assert_eq!(
                winners.len(),
                1,
                "answers lost on calls {lost:?}: {winners:?}"
            );
            assert_eq!(mem.get("race").unwrap().unwrap(), [winners[0]; 16]);
        }
    }

    #[test]
    fn a_lost_race_answered_with_a_5xx_is_lost_after_reading_back() {
        let (mem, store) = rig();
        assert!(mem.put_if_absent("g/1", b"theirs").unwrap());
        mem.put("g/2", b"written by put").unwrap();
        // Every create answers a 5xx after the store refused it (Ceph RGW on a lost race).
        store.faults.add(
            StoreOp::Put,
            None,
            1..=u64::MAX,
            Effect::FailAfter { transient: true },
        );
        let t = Instant::now();
        assert!(!store.put_if_absent("g/1", b"mine").unwrap());
        assert!(!store.put_if_absent("g/2", b"mine").unwrap(), "unmarked");
        assert!(t.elapsed() < Duration::from_secs(1), "no retries needed");
        assert_eq!(store.faults.calls(StoreOp::Put), 2, "one create each");
        assert_eq!(store.faults.calls(StoreOp::Get), 2, "one read-back each");
        assert_eq!(mem.get("g/1").unwrap().unwrap(), b"theirs");
    }

    #[test]
    fn a_5xx_after_a_create_that_landed_is_ours() {
        let (mem, store) = rig();
        store.faults.add(
            StoreOp::Put,
            None,
            1..=1,
            Effect::FailAfter { transient: true },
        );
        assert!(store.put_if_absent("g/1", b"mine").unwrap());
        assert!(!mem.put_if_absent("g/1", b"theirs").unwrap());
        assert!(!store.put_if_absent("g/1", b"again").unwrap());
        assert_eq!(mem.get("g/1").unwrap().unwrap(), b"mine");
    }

    #[test]
    fn a_5xx_with_nothing_landed_is_tried_again_then_a_transient_error() {
        let (mem, store) = rig();
        store
            .faults
            .add(StoreOp::Put, None, 1..=1, Effect::Fail { transient: true });
        assert!(store.put_if_absent("g/1", b"mine").unwrap(), "second try");
        assert_eq!(store.faults.calls(StoreOp::Put), 2);

        store.faults.clear();
        store.faults.add(
            StoreOp::Put,
            Some("g/2"),
            1..=u64::MAX,
            Effect::Fail { transient: true },
        );
        let e = store.put_if_absent("g/2", b"mine").unwrap_err();
        assert!(crate::store::is_transient(&e), "{e:#}");
        let msg = format!("{e:#}");
        assert!(msg.contains("memory") && msg.contains("g/2"), "{msg}");
        assert_eq!(store.faults.calls(StoreOp::Put), 2 + u64::from(ATTEMPTS));
        assert!(mem.get("g/2").unwrap().is_none());
        // A refused request is not retried, nor read back.
        store.faults.add(
            StoreOp::Put,
            Some("g/3"),
            1..=1,
            Effect::Fail { transient: false },
        );
        let gets = store.faults.calls(StoreOp::Get);
        assert!(!crate::store::is_transient(
            &store.put_if_absent("g/3", b"x").unwrap_err()
        ));
        assert_eq!(store.faults.calls(StoreOp::Get), gets);
    }

    #[test]
    fn a_412_for_an_absent_object_is_tried_again() {
        // An "exists" answer, then the object gone before the read-back (deleted by another
        // writer): not ours, so the create is tried again rather than called lost or won.
        let (mem, store) = rig();
        mem.put("g/2", b"old").unwrap();
        let m = mem.clone();
        // The read-back waits while the old object is deleted.
        store.faults.add(
            StoreOp::Get,
            Some("g/2"),
            1..=1,
            Effect::Delay(Duration::from_millis(200)),
        );
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                m.delete("g/2").unwrap();
            });
            assert!(store.put_if_absent("g/2", b"mine").unwrap());
        });
        assert_eq!(mem.get("g/2").unwrap().unwrap(), b"mine");
        assert_eq!(store.faults.calls(StoreOp::Put), 2, "two creates");
    }

    #[test]
    fn a_failed_call_whose_create_landed_is_claimed_once_by_its_retry() {
        let (mem, store) = rig();
        // The create lands but answers a 5xx, and the read-back fails too: the call fails.
        store.faults.add(
            StoreOp::Put,
            None,
            1..=1,
            Effect::FailAfter { transient: true },
        );
        store
            .faults
            .add(StoreOp::Get, None, 1..=1, Effect::Fail { transient: true });
        let e = store.put_if_absent("claim/1", b"gen").unwrap_err();
        assert!(crate::store::is_transient(&e), "{e:#}");
        assert!(format!("{e:#}").contains("reading back claim/1"), "{e:#}");
        assert!(mem.get("claim/1").unwrap().is_some(), "it landed");
        // Different bytes are another publication: not ours.
        assert!(!store.put_if_absent("claim/1", b"other").unwrap());

        store.faults.add(
            StoreOp::Put,
            None,
            1..=1,
            Effect::FailAfter { transient: true },
        );
        store
            .faults
            .add(StoreOp::Get, None, 1..=1, Effect::Fail { transient: true });
        assert!(store.put_if_absent("claim/2", b"gen").is_err());
        // The caller retries: that call is the one that created it, and only that one.
        assert!(store.put_if_absent("claim/2", b"gen").unwrap());
        assert!(!store.put_if_absent("claim/2", b"gen").unwrap());
        assert!(!mem.put_if_absent("claim/2", b"gen").unwrap());
    }
}
