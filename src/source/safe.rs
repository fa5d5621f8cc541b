//! A local SAFE archive with the CDSE layout: band keys are paths under its root.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BandSource, LocalFile};
use crate::s2::catalog::{scan_safe_archive, ScanResult};
use crate::s2::product::ProductLevel;

pub struct SafeArchive {
    root: PathBuf,
    level: ProductLevel,
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
        Ok(SafeArchive {
            root,
            level: ProductLevel::L1C,
        })
    }
}

impl SafeArchive {
    /// The archive's products of `level` (a CDSE-layout archive may hold both levels).
    pub fn with_level(mut self, level: ProductLevel) -> Self {
        self.level = level;
        self
    }
}

impl BandSource for SafeArchive {
    fn local_path(&self, key: &str) -> Result<LocalFile> {
        crate::store::check_key(key)?;
        let p = self.root.join(key);
        if !p.is_file() {
            anyhow::bail!("{}: band file missing from the SAFE archive", p.display());
        }
        Ok(LocalFile::plain(p))
    }

    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult> {
        scan_safe_archive(&self.root, self.level, tile, year)
    }

    fn level(&self) -> ProductLevel {
        self.level
    }

    fn describe(&self) -> String {
        format!("safe:{}", self.root.display())
    }
}
