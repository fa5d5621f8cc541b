//! Failure injection for the in-memory harness: a plan of faults that a wrapper (`FaultyStore`,
//! `FaultySource`) consults before each call it forwards. A fault fails, delays or panics the
//! k-th to m-th call of one kind (optionally only calls whose key contains a string), so tests
//! reach failure paths deterministically, in process, without servers or proxies.

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::Duration;

/// What an injected fault does to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The call fails; `transient` failures are marked retryable (`store::Transient`).
    Fail { transient: bool },
    /// The call waits, then proceeds.
    Delay(Duration),
    /// The call panics (a bug in a decoder, say).
    Panic,
    /// The call is carried out, then fails: a server that acted but answered a 5xx, or an answer
    /// lost to a timeout. (Wrappers that cannot carry a call out first fail it before.)
    FailAfter { transient: bool },
    /// The call is carried out, its answer is lost, and the client's automatic retry is carried
    /// out and answers instead: for a conditional create, a success turned into "exists" (412).
    /// (Wrappers that cannot repeat a call let it through unchanged.)
    Repeat,
}

#[derive(Debug, Clone)]
struct Rule<Op> {
    /// `None`: every kind of call.
    op: Option<Op>,
    key_contains: Option<String>,
    /// 1-based positions among the calls this rule matches.
    calls: RangeInclusive<u64>,
    effect: Effect,
    seen: u64,
}

/// The faults to inject, and a count of every call by kind.
#[derive(Debug)]
pub struct Faults<Op> {
    rules: Mutex<Vec<Rule<Op>>>,
    calls: Mutex<HashMap<Op, u64>>,
}

impl<Op> Default for Faults<Op> {
    fn default() -> Self {
        Faults {
            rules: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }
}

impl<Op: Copy + Eq + Hash + std::fmt::Debug> Faults<Op> {
    /// Applies `effect` to the `calls` (1-based, counted per rule) of kind `op` whose key contains
    /// `key_contains` (any key if `None`).
    pub fn add(
        &self,
        op: Op,
        key_contains: Option<&str>,
        calls: RangeInclusive<u64>,
        effect: Effect,
    ) {
        self.rules.lock().unwrap().push(Rule {
            op: Some(op),
            key_contains: key_contains.map(str::to_string),
            calls,
            effect,
            seen: 0,
        });
    }

    /// Applies `effect` to the `calls`-th calls of any kind and key, counted together: e.g.
    /// `k..=u64::MAX` with a failure is a process killed after its (k-1)-th call.
    pub fn add_any(&self, calls: RangeInclusive<u64>, effect: Effect) {
        self.rules.lock().unwrap().push(Rule {
            op: None,
            key_contains: None,
            calls,
            effect,
            seen: 0,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Calls of kind `op` so far.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    /// Counts the call and applies the first fault it triggers: `Err(transient)` for a failure.
    /// For a wrapper that only fails calls before forwarding them: `FailAfter` fails the call
    /// before, `Repeat` lets it through.
    pub fn check(&self, op: Op, key: &str) -> Result<(), bool> {
        match self.fault(op, key) {
            None | Some(Effect::Repeat) => Ok(()),
            Some(Effect::Fail { transient } | Effect::FailAfter { transient }) => Err(transient),
            Some(Effect::Delay(_) | Effect::Panic) => unreachable!("applied by fault"),
        }
    }

    /// Counts the call and returns the first fault it triggers for the wrapper to apply, having
    /// applied delays (`None` after) and panics itself: `None` means forward the call as it is.
    pub fn fault(&self, op: Op, key: &str) -> Option<Effect> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        let mut effect = None;
        for r in self.rules.lock().unwrap().iter_mut() {
            if r.op.is_some_and(|o| o != op)
                || r.key_contains.as_deref().is_some_and(|k| !key.contains(k))
            {
                continue;
            }
            r.seen += 1;
            if effect.is_none() && r.calls.contains(&r.seen) {
                effect = Some(r.effect.clone());
            }
        }
        match effect {
            Some(Effect::Delay(d)) => {
                std::thread::sleep(d);
                None
            }
            Some(Effect::Panic) => panic!("injected panic in {op:?} {key}"),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_hit_the_chosen_calls_of_their_kind_and_key() {
        let f = Faults::<&str>::default();
        f.add(
            "put",
            Some("data/"),
            2..=3,
            Effect::Fail { transient: true },
        );
        f.add("get", None, 1..=1, Effect::Fail { transient: false });
        let put = |k| f.check("put", k);
        assert_eq!(put("a/zarr.json"), Ok(()));
        assert_eq!(put("a/data/c/0"), Ok(()));
        assert_eq!(put("a/data/c/1"), Err(true));
        assert_eq!(put("a/zarr.json"), Ok(()));
        assert_eq!(put("a/data/c/1"), Err(true));
        assert_eq!(put("a/data/c/1"), Ok(()));
        assert_eq!(f.check("get", "x"), Err(false));
        assert_eq!(f.check("get", "x"), Ok(()));
        assert_eq!((f.calls("put"), f.calls("get"), f.calls("list")), (6, 2, 0));
        f.add("list", None, 1..=1, Effect::Panic);
        assert!(std::panic::catch_unwind(|| f.check("list", "")).is_err());
        f.add("head", None, 1..=1, Effect::Repeat);
        f.add("head", None, 2..=2, Effect::FailAfter { transient: true });
        assert_eq!(f.fault("head", "k"), Some(Effect::Repeat));
        assert_eq!(f.check("head", "k"), Err(true));
        assert_eq!(f.fault("head", "k"), None);
    }
}
