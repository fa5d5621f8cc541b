//! Sentinel-1 σ⁰ behind the collection interface: the commands' entry into this folder.

use std::sync::Arc;

use anyhow::{bail, Result};

use crate::collection::{
    check_store, InfoRow, IntakeOutcome, IntakeRequest, MountRequest, Opener, View, YearIntake,
};
use crate::fs::CubeView;
use crate::intake::Regions;
use crate::key::TileYear;
use crate::s1::cube::{S1Config, S1Cube};
use crate::s1::grid::Equi7Tile;
use crate::s1::source::{EodcOptions, S1Source};
use crate::s1::{GROUP, NAME};
use crate::source::CdseOptions;
use crate::store::Store;

/// Sentinel-1 σ⁰ backscatter from EODC.
pub struct Sentinel1Sig0;

/// `--layout` chooses between Sentinel-2 layouts; a Sentinel-1 store has one (shards of 2500²).
fn no_layout(layout: &Option<String>) -> Result<()> {
    if let Some(l) = layout {
        bail!("--layout {l}: {NAME} stores have one layout (shards of [30, 2500, 2500]); --layout is for sentinel-2-l1c");
    }
    Ok(())
}

/// `--view chunked` presents Sentinel-2's sharded arrays as chunked; a Sentinel-1 mount serves
/// its shards as stored.
fn no_view(view: View) -> Result<()> {
    if view != View::Native {
        bail!("--view {view}: {NAME} mounts serve their shards as stored (--view native); the chunked view is for sentinel-2-l1c and sentinel-2-l2a");
    }
    Ok(())
}

fn equi7_tiles(arg: &str) -> Result<Vec<Equi7Tile>> {
    arg.split(',')
        .map(|t| t.trim().parse::<Equi7Tile>())
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "--tiles: {e} ({NAME} takes Equi7 T3 tiles, e.g. --tiles E048N015T3,E051N015T3)"
            )
        })
}

/// The same retry, paging and connection settings as for CDSE, for EODC.
fn eodc(remote: &CdseOptions) -> EodcOptions {
    EodcOptions {
        retry: remote.retry,
        stac_limit: remote.stac_limit,
        max_connections: remote.max_connections,
        max_requests_per_minute: remote.max_requests_per_minute,
        cache_dir: remote.cache_dir.clone(),
        cache_bytes: remote.cache_bytes,
        ..Default::default()
    }
}

impl Opener for Sentinel1Sig0 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tiles(&self, arg: &str) -> Result<Vec<String>> {
        Ok(equi7_tiles(arg)?.iter().map(|t| t.to_string()).collect())
    }

    fn default_tiles(&self) -> Option<&'static str> {
        None
    }

    fn open_cube(&self, req: &MountRequest, store: Arc<dyn Store>) -> Result<Arc<dyn CubeView>> {
        no_layout(&req.layout)?;
        no_view(req.view)?;
        let cfg = S1Config {
            tiles: equi7_tiles(&req.tiles.join(","))?,
            years: req.years.clone(),
            cache_bytes: req.cache_bytes,
            workers: req.workers,
            fence: req.fence,
            refresh: req.refresh,
            writeback: req.writeback,
        };
        let source = S1Source::open(&req.source, &eodc(&req.remote))?;
        check_store(store.as_ref(), NAME)?;
        Ok(S1Cube::new(cfg, store, source)?)
    }

    fn intake<'a>(
        &self,
        req: &IntakeRequest,
        store: &'a dyn Store,
    ) -> Result<Box<dyn YearIntake + 'a>> {
        no_layout(&req.layout)?;
        if req.start.is_some() || req.end.is_some() {
            bail!("--start/--end: {NAME} intake converts whole tile-years (its time chunks are 30 days with data, not dates)");
        }
        if let Some(g) = &req.groups {
            if g.iter().any(|g| g != GROUP) {
                bail!(
                    "--resolutions {}: {NAME} has one group, {GROUP}",
                    g.join(",")
                );
            }
        }
        let source = S1Source::open(&req.source, &eodc(&req.remote))?;
        Ok(Box::new(Intake {
            store,
            source,
            req: req.clone(),
        }))
    }

    fn info_rows(&self, store: &dyn Store) -> Result<Vec<InfoRow>> {
        crate::s1::info::rows(store)
    }
}

/// One intake run of S1 tile-years.
struct Intake<'a> {
    store: &'a dyn Store,
    source: S1Source,
    req: IntakeRequest,
}

impl YearIntake for Intake<'_> {
    fn run(&mut self, ty: &TileYear, regions: Regions) -> Result<IntakeOutcome> {
        let tile = ty.tile.parse().map_err(anyhow::Error::msg)?;
        let r = crate::s1::intake::intake_year(
            self.store,
            &self.source,
            tile,
            ty.year,
            regions,
            &self.req.fence,
            self.req.progress,
        )?;
        Ok(IntakeOutcome {
            report: format!(
                "intake {ty}: {} days from {} slices ({} superseded versions dropped); shard regions: {} of {} computed now, {} already done; {} shard objects, {:.1} MiB in {:.1} s",
                r.days,
                r.slices,
                r.superseded.len(),
                r.regions_computed,
                r.regions,
                r.regions_skipped,
                r.shards_written,
                r.bytes_written as f64 / (1 << 20) as f64,
                r.seconds
            ),
            errors: Vec::new(),
        })
    }
}
