//! A band source wrapper that injects faults (`util::faults`) before forwarding each call: a scan
//! that fails or hangs for a while, a band file that cannot be fetched, a decoder that panics.

use std::sync::Arc;

use anyhow::Result;

use super::{BandSource, LocalFile};
use crate::s2::catalog::ScanResult;
use crate::util::faults::Faults;

/// The kinds of source call a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceOp {
    /// `local_path` of a band file (the key is the band key).
    Fetch,
    /// `scan` of a tile-year (the key is `TILE/YEAR`).
    Scan,
}

pub struct FaultySource {
    inner: Arc<dyn BandSource>,
    pub faults: Faults<SourceOp>,
}

impl FaultySource {
    pub fn new(inner: Arc<dyn BandSource>) -> Self {
        FaultySource {
            inner,
            faults: Faults::default(),
        }
    }

    fn check(&self, op: SourceOp, key: &str) -> Result<()> {
        self.faults.check(op, key).map_err(|_| {
            anyhow::anyhow!(
                "{}: injected {op:?} failure for {key}",
                self.inner.describe()
            )
        })
    }
}

impl BandSource for FaultySource {
    fn local_path(&self, key: &str) -> Result<LocalFile> {
        self.check(SourceOp::Fetch, key)?;
        self.inner.local_path(key)
    }
    fn prefetch(&self, keys: &[&str]) {
        self.inner.prefetch(keys)
    }
    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult> {
        self.check(SourceOp::Scan, &format!("{tile}/{year}"))?;
        self.inner.scan(tile, year)
    }
    fn level(&self) -> crate::s2::product::ProductLevel {
        self.inner.level()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn stats(&self) -> serde_json::Value {
        self.inner.stats()
    }
}
