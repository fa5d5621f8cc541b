//! A local SAFE archive with the CDSE layout: band keys are paths under its root.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BandSource, LocalFile};
use crate::s2::catalog::{scan_safe_archive, ScanResult};

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
    fn local_path(&self, key: &str) -> Result<LocalFile> {
        crate::store::check_key(key)?;
        let p = self.root.join(key);
        if !p.is_file() {
            anyhow::bail!("{}: band file missing from the SAFE archive", p.display());
        }
        Ok(LocalFile::plain(p))
    }

    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult> {
        scan_safe_archive(&self.root, tile, year)
    }

    fn describe(&self) -> String {
        format!("safe:{}", self.root.display())
    }
}
