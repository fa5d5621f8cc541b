//! A store wrapper that injects faults (`util::faults`) into each call it forwards, in the
//! manner of mountpoint-s3's failure client: tests make the k-th PUT of a chunk fail, a record
//! read time out, a listing panic, and watch what the layers above do.
//!
//! Faults act where a client meets the network: on each forwarded call, including the pieces a
//! create-if-absent is made of — the conditional create (`try_create`, a `Put`) and the read-back
//! of its creator (`creator`, a `Get`) — while `put_if_absent` itself runs the same recognition
//! as the S3 store (`create::put_if_absent`). So `Effect::Repeat` on a create is an S3 answer
//! lost and retried into a 412, and `Effect::FailAfter` is a 5xx from a server that created the
//! object, or refused it because another writer's was there (Ceph RGW on a lost race). Those two
//! need an inner store that keeps creation tokens (`MemStore`; the directory store keeps none,
//! so there the read-back answers "not ours").

use std::sync::Arc;

use anyhow::Result;

use super::{Creator, ObjectReader, Store, Transient};
use crate::util::faults::{Effect, Faults};

/// The kinds of store call a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    Get,
    /// A ranged read of an object opened with `open_object` (the open itself counts as a `Get`).
    ReadRange,
    Put,
    Delete,
    List,
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    pub faults: Arc<Faults<StoreOp>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            faults: Arc::new(Faults::default()),
        }
    }

    /// Forwards `call` under the fault plan for `op` on `key`.
    fn call<T>(&self, op: StoreOp, key: &str, call: impl Fn() -> Result<T>) -> Result<T> {
        apply(&self.faults, &self.inner.describe(), op, key, call)
    }
}

fn apply<T>(
    faults: &Faults<StoreOp>,
    describe: &str,
    op: StoreOp,
    key: &str,
    call: impl Fn() -> Result<T>,
) -> Result<T> {
    let fail = |transient: bool, after: &str| {
        let msg = format!("{describe}: injected {op:?} failure for {key}{after}");
        if transient {
            anyhow::Error::new(Transient(msg))
        } else {
            anyhow::anyhow!(msg)
        }
    };
    match faults.fault(op, key) {
        None => call(),
        Some(Effect::Fail { transient }) => Err(fail(transient, "")),
        Some(Effect::FailAfter { transient }) => {
            let _ = call();
            Err(fail(transient, " (after it was carried out)"))
        }
        Some(Effect::Repeat) => {
            let _ = call();
            call()
        }
        Some(e @ (Effect::Delay(_) | Effect::Panic)) => unreachable!("{e:?} applied by fault"),
    }
}

/// An opened object whose ranged reads go through the same fault plan.
struct FaultyObject {
    inner: Box<dyn ObjectReader>,
    faults: Arc<Faults<StoreOp>>,
    describe: String,
    key: String,
}

impl ObjectReader for FaultyObject {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        apply(
            &self.faults,
            &self.describe,
            StoreOp::ReadRange,
            &self.key,
            || self.inner.read_at(offset, len),
        )
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.call(StoreOp::Get, key, || self.inner.get(key))
    }
    fn open_object(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>> {
        let opened = self.call(StoreOp::Get, key, || self.inner.open_object(key))?;
        Ok(opened.map(|inner| {
            Box::new(FaultyObject {
                inner,
                faults: self.faults.clone(),
                describe: self.inner.describe(),
                key: key.to_string(),
            }) as Box<dyn ObjectReader>
        }))
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.call(StoreOp::Put, key, || self.inner.put(key, bytes))
    }
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        super::create::put_if_absent(self, key, bytes)
    }
    fn try_create(&self, key: &str, bytes: &[u8], token: &str) -> Result<bool> {
        self.call(StoreOp::Put, key, || {
            self.inner.try_create(key, bytes, token)
        })
    }
    fn creator(&self, key: &str) -> Result<Creator> {
        self.call(StoreOp::Get, key, || self.inner.creator(key))
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.call(StoreOp::Delete, key, || self.inner.delete(key))
    }
    fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        self.call(StoreOp::List, prefix, || self.inner.list_dir(prefix))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn sweep_temp(&self, prefix: &str) -> Result<usize> {
        self.inner.sweep_temp(prefix)
    }
}
