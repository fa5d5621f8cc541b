//! Sentinel-2 (L1C and L2A) behind the collection interface: the commands' entry into this folder.
//! The two levels share everything but the facts of [`ProductLevel`]: which bands, which files,
//! which extra arrays (L2A's `scl`), which offsets.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::collection::{
    check_store, InfoRow, IntakeOutcome, IntakeRequest, MountRequest, Opener, Projection,
    YearIntake,
};
use crate::fs::CubeView;
use crate::intake::Regions;
use crate::key::TileYear;
use crate::s2::bands::Resolution;
use crate::s2::chunking::Chunking;
use crate::s2::cube::{Cube, CubeConfig};
use crate::s2::intake::{IntakeOptions, IntakeReport};
use crate::s2::product::ProductLevel;
use crate::source::{BandSource, FetchMode};
use crate::store::Store;

/// Sentinel-2 MSI at one processing level, from CDSE or a local SAFE archive.
pub struct Sentinel2 {
    pub level: ProductLevel,
}

/// Level-1C (top-of-atmosphere).
pub static SENTINEL_2_L1C: Sentinel2 = Sentinel2 {
    level: ProductLevel::L1C,
};
/// Level-2A (bottom-of-atmosphere, with the scene classification).
pub static SENTINEL_2_L2A: Sentinel2 = Sentinel2 {
    level: ProductLevel::L2A,
};

/// `--layout`, checked.
fn layout(arg: &Option<String>) -> Result<Option<Chunking>> {
    arg.as_deref()
        .map(|s| {
            s.parse::<Chunking>()
                .map_err(|e| anyhow::anyhow!("--layout {s}: {e}"))
        })
        .transpose()
}

impl Opener for Sentinel2 {
    fn name(&self) -> &'static str {
        self.level.stac_collection()
    }

    fn tiles(&self, arg: &str) -> Result<Vec<String>> {
        crate::s2::tiles::parse_tiles(arg)
    }

    fn default_tiles(&self) -> Option<&'static str> {
        Some("finland")
    }

    fn open_cube(&self, req: &MountRequest, store: Arc<dyn Store>) -> Result<Arc<dyn CubeView>> {
        let layout = layout(&req.layout)?;
        let mut remote = req.remote.clone();
        remote.level = self.level;
        let source: Arc<dyn BandSource> = crate::source::open(&req.source, &remote)?.into();
        check_store(store.as_ref(), self.name())?;
        let chunking = crate::s2::layout::establish(store.as_ref(), layout, self.level)?;
        let (chunk_cache_bytes, decode_cache_bytes) =
            CubeConfig::split_budget(req.cache_bytes, req.workers, chunking);
        let cfg = CubeConfig {
            tiles: req.tiles.clone(),
            years: req.years.clone(),
            chunk_cache_bytes,
            decode_cache_bytes,
            workers: req.workers,
            fence: req.fence,
            layout: Some(chunking),
            refresh: req.refresh,
            writeback: req.writeback,
        };
        Ok(Cube::with_view(cfg, req.view, store, source)?)
    }

    fn intake<'a>(
        &self,
        req: &IntakeRequest,
        store: &'a dyn Store,
    ) -> Result<Box<dyn YearIntake + 'a>> {
        let layout = layout(&req.layout)?;
        let resolutions = match &req.groups {
            None => Resolution::ALL.to_vec(),
            Some(g) => g
                .iter()
                .map(|s| s.parse::<Resolution>().map_err(anyhow::Error::msg))
                .collect::<Result<_>>()
                .context("--resolutions")?,
        };
        // Intake reads every tile of every file, one JP2 tile at a time: `auto` would weigh
        // each tile on its own and fetch a file in ~120 pieces. Whole files are its cheapest.
        let mut remote = req.remote.clone();
        remote.level = self.level;
        if remote.fetch == FetchMode::Auto {
            remote.fetch = FetchMode::Whole;
        }
        let source = crate::source::open(&req.source, &remote)?;
        Ok(Box::new(Intake {
            store,
            source,
            layout,
            resolutions,
            req: req.clone(),
        }))
    }

    fn info_rows(&self, store: &dyn Store) -> Result<Vec<InfoRow>> {
        crate::s2::info::rows(store)
    }

    fn layout_summary(
        &self,
        store: &dyn Store,
        rows: &[InfoRow],
        years: u64,
    ) -> Result<(Option<String>, Option<Projection>)> {
        crate::s2::info::layout_summary(store, rows, years)
    }
}

/// One intake run of S2 tile-years.
struct Intake<'a> {
    store: &'a dyn Store,
    source: Box<dyn BandSource>,
    layout: Option<Chunking>,
    resolutions: Vec<Resolution>,
    req: IntakeRequest,
}

impl YearIntake for Intake<'_> {
    fn run(&mut self, ty: &TileYear, regions: Regions) -> Result<IntakeOutcome> {
        let opts = IntakeOptions {
            tile: ty.tile.clone(),
            year: ty.year,
            regions,
            start: self.req.start,
            end: self.req.end,
            resolutions: self.resolutions.clone(),
            memory_bytes: self.req.memory_bytes,
            progress: self.req.progress,
            fence: self.req.fence,
            layout: self.layout,
        };
        let r = crate::s2::intake::intake(self.store, self.source.as_ref(), &opts)?;
        Ok(IntakeOutcome {
            report: report(&r),
            errors: r.errors.clone(),
        })
    }
}

fn report(r: &IntakeReport) -> String {
    let mut out = format!(
        "intake: {} scenes ({} appended, {} late, {} superseded duplicates dropped); chunks: {} written, {} empty, {} already done, of {}; {:.1} MiB in {:.1} s; {} JP2 tiles decoded",
        r.scenes,
        r.merge.appended,
        r.merge.late.len(),
        r.superseded.len(),
        r.chunks_written,
        r.chunks_empty,
        r.chunks_skipped,
        r.chunks_total,
        r.bytes_written as f64 / (1 << 20) as f64,
        r.seconds,
        r.decodes
    );
    for (old, new) in &r.merge.replaced {
        out.push_str(&format!(
            "\nreplaced {old} by its newer baseline {new} (same time index; its chunks recomputed)"
        ));
    }
    out
}
