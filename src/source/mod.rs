//! Where band files come from. Only the backends here know paths or S3.
//!
//! A source turns a band key (`Sentinel-2/MSI/L1C/.../IMG_DATA/T35VLH_..._B02.jp2`, the same key as
//! in CDSE's `eodata` bucket) into a local file GDAL can open: a file of a local SAFE archive
//! (`safe`), or a whole-object download from CDSE S3 kept in a byte-capped disk cache (`cdse`).
//! Files read in part over HTTP (Sentinel-1 GeoTIFFs) go through `http_ranges`, whose blocks live
//! in the same kind of disk cache, and reach GDAL through the `vsi` handler.

pub mod cdse;
pub mod disk_cache;
#[cfg(any(test, feature = "testing"))]
mod faulty;
pub mod http_ranges;
pub mod j2k_index;
mod safe;
pub mod tile_parts;
pub mod vsi;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::raster::Window;
use crate::s2::catalog::ScanResult;
use crate::s2::product::ProductLevel;

pub use cdse::{CdseOptions, CdseSource};
#[cfg(any(test, feature = "testing"))]
pub use faulty::{FaultySource, SourceOp};
pub use safe::SafeArchive;

/// A local file holding a band object; a cached download stays on disk while this lives.
pub struct LocalFile {
    path: PathBuf,
    _pin: Option<Arc<dyn Send + Sync>>,
}

impl LocalFile {
    pub fn plain(path: PathBuf) -> Self {
        LocalFile { path, _pin: None }
    }

    pub fn pinned(path: PathBuf, pin: Arc<dyn Send + Sync>) -> Self {
        LocalFile {
            path,
            _pin: Some(pin),
        }
    }
}

impl std::fmt::Debug for LocalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path.fmt(f)
    }
}

impl std::ops::Deref for LocalFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for LocalFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

pub trait BandSource: Send + Sync {
    /// A local file holding the object `key`.
    fn local_path(&self, key: &str) -> Result<LocalFile>;
    /// Makes the objects local ahead of use, concurrently where the source can (best effort: a
    /// failure resurfaces from `local_path` with its context).
    fn prefetch(&self, _keys: &[&str]) {}
    /// A file GDAL reads `window` (pixels) of `key` from: the local file, or, from a source
    /// that fetches by tile-part, a virtual one (`/vsidatacube/…`) serving the parts
    /// `prefetch_window` fetched.
    fn open_window(&self, key: &str, _window: Window) -> Result<LocalFile> {
        self.local_path(key)
    }
    /// `prefetch` for reads of `window` only.
    fn prefetch_window(&self, keys: &[&str], _window: Window) {
        self.prefetch(keys)
    }
    /// The scenes of a tile-year this source offers.
    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult>;
    /// The processing level of the products it offers (what the cube over it is).
    fn level(&self) -> ProductLevel {
        ProductLevel::L1C
    }
    fn describe(&self) -> String;
    /// Counters for the mount's stats file (`null` when the source keeps none).
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Writes `bytes` to a new file at `path` (a cache's temporary file, renamed into place after).
pub(crate) fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)
        .with_context(|| format!("source cache: creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("source cache: writing {}", path.display()))
}

/// How a remote source fetches what a read needs of a band file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FetchMode {
    /// Per file, whichever costs less under the quotas (requests and bytes): the tile-parts a
    /// read needs, or the whole file.
    #[default]
    Auto,
    /// Always the tile-parts (the index of a file without TLM is built by walking its SOT chain).
    Ranges,
    /// Always the whole file.
    Whole,
}

/// Opens a source from its command-line spelling: `safe:DIR` or `cdse` (configured by `cdse`).
pub fn open(spec: &str, cdse: &CdseOptions) -> Result<Box<dyn BandSource>> {
    if let Some(dir) = spec.strip_prefix("safe:") {
        return Ok(Box::new(
            SafeArchive::new(dir)
                .with_context(|| format!("source {spec}"))?
                .with_level(cdse.level),
        ));
    }
    if spec == "cdse" {
        return Ok(Box::new(
            CdseSource::new(cdse.clone()).with_context(|| format!("source {spec}"))?,
        ));
    }
    anyhow::bail!("source {spec:?}: expected safe:DIR or cdse")
}
