//! Where band files come from. Only the backends here know paths (and, later, S3).
//!
//! A source turns a band key (`Sentinel-2/MSI/L1C/.../IMG_DATA/T35VLH_..._B02.jp2`, the same key as
//! in CDSE's `eodata` bucket) into a local file GDAL can open.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::catalog::{scan_safe_archive, ScanResult};

pub trait BandSource: Send + Sync {
    /// A local path holding the object `key`.
    fn local_path(&self, key: &str) -> Result<PathBuf>;
    /// The scenes of a tile-year this source offers.
    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult>;
    fn describe(&self) -> String;
}

/// A local SAFE archive with the CDSE layout.
pub struct SafeArchive {
    root: PathBuf,
}

impl SafeArchive {
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        if !root.is_dir() {
            anyhow::bail!("SAFE archive {}: not a directory", root.display());
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("SAFE archive {}", root.display()))?;
        Ok(SafeArchive { root })
    }
}

impl BandSource for SafeArchive {
    fn local_path(&self, key: &str) -> Result<PathBuf> {
        crate::store::check_key(key)?;
        let p = self.root.join(key);
        if !p.is_file() {
            anyhow::bail!("{}: band file missing from the SAFE archive", p.display());
        }
        Ok(p)
    }

    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult> {
        scan_safe_archive(&self.root, tile, year)
    }

    fn describe(&self) -> String {
        format!("safe:{}", self.root.display())
    }
}

/// Opens a source from its command-line spelling: `safe:DIR`.
pub fn open(spec: &str) -> Result<Box<dyn BandSource>> {
    if let Some(dir) = spec.strip_prefix("safe:") {
        return Ok(Box::new(
            SafeArchive::new(dir).with_context(|| format!("source {spec}"))?,
        ));
    }
    anyhow::bail!("source {spec:?}: expected safe:DIR")
}
