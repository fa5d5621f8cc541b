//! A store wrapper that injects faults (`util::faults`) before forwarding each call, in the
//! manner of mountpoint-s3's failure client: tests make the k-th PUT of a chunk fail, a record
//! read time out, a listing panic, and watch what the layers above do.

use std::sync::Arc;

use anyhow::Result;

use super::{ObjectReader, Store, Transient};
use crate::util::faults::Faults;

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

    fn check(&self, op: StoreOp, key: &str) -> Result<()> {
        check(&self.faults, &self.inner.describe(), op, key)
    }
}

fn check(faults: &Faults<StoreOp>, describe: &str, op: StoreOp, key: &str) -> Result<()> {
    faults.check(op, key).map_err(|transient| {
        let msg = format!("{describe}: injected {op:?} failure for {key}");
        if transient {
            anyhow::Error::new(Transient(msg))
        } else {
            anyhow::anyhow!(msg)
        }
    })
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
        check(&self.faults, &self.describe, StoreOp::ReadRange, &self.key)?;
        self.inner.read_at(offset, len)
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.check(StoreOp::Get, key)?;
        self.inner.get(key)
    }
    fn open_object(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>> {
        self.check(StoreOp::Get, key)?;
        Ok(self.inner.open_object(key)?.map(|inner| {
            Box::new(FaultyObject {
                inner,
                faults: self.faults.clone(),
                describe: self.inner.describe(),
                key: key.to_string(),
            }) as Box<dyn ObjectReader>
        }))
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.check(StoreOp::Put, key)?;
        self.inner.put(key, bytes)
    }
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.check(StoreOp::Put, key)?;
        self.inner.put_if_absent(key, bytes)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.check(StoreOp::Delete, key)?;
        self.inner.delete(key)
    }
    fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        self.check(StoreOp::List, prefix)?;
        self.inner.list_dir(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn sweep_temp(&self, prefix: &str) -> Result<usize> {
        self.inner.sweep_temp(prefix)
    }
}
