//! A band source in memory: synthetic products (the fixture's plan and value formula) whose band
//! rasters live in GDAL's in-memory filesystem (`/vsimem/`) as tiled GeoTIFFs, so the whole
//! pipeline — catalog, decode, assemble, encode — runs in process without an archive on disk.
//! Values equal the SAFE fixture's (same plan, same formula); only the file format differs, which
//! nothing above `raster` can tell.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use gdal::DriverManager;

use crate::fixture::{plan, FixtureSpec, PlannedProduct};
use datacube::s2::bands::BANDS;
use datacube::s2::catalog::{deduplicate, ScanResult};
use datacube::s2::scene::{product_dir_key, Grid, Scene};
use datacube::source::{BandSource, LocalFile};

pub struct MemSource {
    spec: FixtureSpec,
    /// Every product of the archive (reprocessed duplicates too), by time.
    scenes: Mutex<Vec<Scene>>,
    /// Band key → `/vsimem/` path.
    files: Mutex<HashMap<String, String>>,
    dir: String,
    /// Which products a scan finds (all if `None`): an archive that receives acquisitions and
    /// reprocessed products while a test runs.
    visible: Mutex<Option<Visible>>,
}

type Visible = Box<dyn Fn(&Scene) -> bool + Send + Sync>;

static SEQ: AtomicU64 = AtomicU64::new(0);

impl MemSource {
    /// The products of `spec` (with the first `available` acquisitions offered; the rest can be
    /// added later with `release`).
    pub fn synthetic(spec: &FixtureSpec) -> Result<Self> {
        datacube::raster::configure_gdal();
        let src = MemSource {
            spec: spec.clone(),
            scenes: Mutex::new(Vec::new()),
            files: Mutex::new(HashMap::new()),
            dir: format!(
                "/vsimem/datacube-memsource-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
            visible: Mutex::new(None),
        };
        for p in plan(spec) {
            src.add_product(&p)?;
        }
        Ok(src)
    }

    fn add_product(&self, p: &PlannedProduct) -> Result<()> {
        let spec = &self.spec;
        let dir_key = product_dir_key(&p.product_id, p.sensing_ms);
        let mut band_keys = Vec::new();
        for b in &BANDS {
            let res = b.resolution.metres();
            let key = format!(
                "{dir_key}/GRANULE/{}/IMG_DATA/{}.tif",
                p.granule_id,
                p.band_stem(&spec.tile, b.name)
            );
            let n = spec.pixels(res);
            let values =
                crate::synth::band(p.value_scene, b.id as u64, n, res as u64, spec.width_m());
            let gt = [spec.ulx, res as f64, 0.0, spec.uly, 0.0, -(res as f64)];
            let path = format!("{}/{key}", self.dir);
            write_tiff(&path, values, n as usize, gt, spec.epsg)
                .with_context(|| format!("memory source: writing {key}"))?;
            self.files.lock().unwrap().insert(key.clone(), path);
            band_keys.push(key);
        }
        let grid = |res: u32| Grid {
            nrows: spec.pixels(res),
            ncols: spec.pixels(res),
            ulx: spec.ulx,
            uly: spec.uly,
            res: res as f64,
        };
        let scene = Scene {
            level: Default::default(),
            product_id: p.product_id.clone(),
            tile: spec.tile.clone(),
            sensing_time_ms: p.sensing_ms,
            baseline: p.baseline.clone(),
            platform: format!("sentinel-2{}", p.unit.to_ascii_lowercase()),
            relative_orbit: p.relative_orbit,
            cloud_cover: p.cloud_cover,
            mean_sun_zenith: p.sun_zenith,
            mean_sun_azimuth: p.sun_azimuth,
            quantification: 10000.0,
            radio_offsets: vec![if p.has_offsets() { -1000 } else { 0 }; BANDS.len()],
            epsg: spec.epsg,
            grids: vec![grid(10), grid(20), grid(60)],
            band_keys,
            scl_key: None,
        };
        scene.validate().map_err(|e| anyhow::anyhow!(e))?;
        let mut scenes = self.scenes.lock().unwrap();
        scenes.push(scene);
        scenes.sort_by_key(|s| s.sensing_time_ms);
        Ok(())
    }

    /// From now on, scans find only the products for which `f` is true (band files stay
    /// readable: a product already on a catalog keeps working).
    pub fn set_visible(&self, f: impl Fn(&Scene) -> bool + Send + Sync + 'static) {
        *self.visible.lock().unwrap() = Some(Box::new(f));
    }

    /// The fixture spec the products follow.
    pub fn spec(&self) -> &FixtureSpec {
        &self.spec
    }
}

impl Drop for MemSource {
    fn drop(&mut self) {
        for path in self.files.lock().unwrap().values() {
            let _ = gdal::vsi::unlink_mem_file(path);
        }
    }
}

impl BandSource for MemSource {
    fn local_path(&self, key: &str) -> Result<LocalFile> {
        match self.files.lock().unwrap().get(key) {
            Some(p) => Ok(LocalFile::plain(PathBuf::from(p))),
            None => anyhow::bail!("{key}: no such band file in the memory source"),
        }
    }

    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult> {
        if tile != self.spec.tile || year != self.spec.year {
            return Ok(ScanResult::default());
        }
        let mut all = self.scenes.lock().unwrap().clone();
        if let Some(f) = self.visible.lock().unwrap().as_ref() {
            all.retain(|s| f(s));
        }
        let (scenes, superseded) = deduplicate(all);
        Ok(ScanResult {
            scenes,
            superseded,
            errors: Vec::new(),
        })
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

/// Writes a tiled (1024², the JP2 tiling), uncompressed GeoTIFF into `/vsimem/`.
fn write_tiff(path: &str, values: Vec<u16>, n: usize, gt: [f64; 6], epsg: u32) -> Result<()> {
    let ds = datacube::raster::mem_dataset(values, n, gt, epsg)?;
    let gtiff = DriverManager::get_driver_by_name("GTiff")?;
    let mut opts = gdal::cpl::CslStringList::new();
    opts.set_name_value("TILED", "YES")?;
    opts.set_name_value("BLOCKXSIZE", "1024")?;
    opts.set_name_value("BLOCKYSIZE", "1024")?;
    ds.create_copy(&gtiff, path, &opts)?;
    Ok(())
}
