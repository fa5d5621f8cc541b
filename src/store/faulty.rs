//! A store wrapper that injects faults (`util::faults`) before forwarding each call, in the
//! manner of mountpoint-s3's failure client: tests make the k-th PUT of a chunk fail, a record
//! read time out, a listing panic, and watch what the layers above do.

use std::sync::Arc;

use anyhow::Result;

use super::{Store, Transient};
use crate::util::faults::Faults;

/// The kinds of store call a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    Get,
    Put,
    Delete,
    List,
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    pub faults: Faults<StoreOp>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            faults: Faults::default(),
        }
    }

    fn check(&self, op: StoreOp, key: &str) -> Result<()> {
        self.faults.check(op, key).map_err(|transient| {
            let msg = format!(
                "{}: injected {op:?} failure for {key}",
                self.inner.describe()
            );
            if transient {
                anyhow::Error::new(Transient(msg))
            } else {
                anyhow::anyhow!(msg)
            }
        })
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.check(StoreOp::Get, key)?;
        self.inner.get(key)
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
