//! Where S1 slices come from: the item search, and the GeoTIFF windows of their assets.
//!
//! A source is the **EODC STAC API** (`eodc`, or `eodc:URL` for another API root such as an
//! emulator): items found by `POST /search` with the `query` extension on `Equi7_TileID` and the
//! year's datetime range, paged and retried like the CDSE search; assets read over HTTPS in
//! aligned blocks (HTTP range requests under the connection and request-rate caps, retried) that
//! are kept in the source's disk cache under its byte cap, handed to GDAL through the
//! `/vsidatacube/` handler (`source::http_ranges`, `source::vsi`). Or a **local
//! mirror** `file:DIR` (or a plain directory) laid out like EODC:
//! `DIR/stac/SENTINEL1_SIG0_20M/<tile>/<item id>.json` for the items and, for the files, the path
//! of each asset URL under `DIR` (`https://data.eodc.eu/collections/…` → `DIR/collections/…`).
//! Assets are read through GDAL, one handle per file and thread kept open, so the strips a window
//! decodes stay in GDAL's block cache for the neighbouring windows. Every file is checked against
//! its item when opened (size, transform, CRS, type) and every error names the item and the file.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gdal::{Dataset, Metadata};

use super::grid::{Equi7Tile, EU_WKT};
use super::item::{parse_item, Slice};
use super::shard::SliceReader;
use super::{NODATA, POLARISATIONS, STAC_COLLECTION, TILE_PX};
use crate::source::disk_cache::DiskCache;
use crate::source::http_ranges::HttpRanges;
use crate::source::vsi;

/// An S1 source.
#[derive(Clone)]
pub enum S1Source {
    Mirror(PathBuf),
    Eodc {
        url: String,
        stac: std::sync::Arc<crate::s2::stac::client::StacClient>,
        /// The assets' bytes, through the disk cache.
        ranges: std::sync::Arc<HttpRanges>,
    },
}

/// How to reach EODC.
#[derive(Debug, Clone)]
pub struct EodcOptions {
    pub retry: crate::remote::retry::RetryPolicy,
    pub stac_limit: usize,
    /// HTTP requests for asset bytes in flight at once, at most.
    pub max_connections: usize,
    pub max_requests_per_minute: u32,
    /// The disk cache of asset blocks (shared with other sources: keys under `ranges/`).
    pub cache_dir: PathBuf,
    pub cache_bytes: u64,
    /// Bytes per cached block (a range request each).
    pub block_bytes: u64,
}

impl Default for EodcOptions {
    fn default() -> Self {
        EodcOptions {
            retry: Default::default(),
            stac_limit: 1000,
            max_connections: 4,
            max_requests_per_minute: 2000,
            cache_dir: crate::source::cdse::default_cache_dir(),
            cache_bytes: 32 << 30,
            block_bytes: crate::source::http_ranges::DEFAULT_BLOCK,
        }
    }
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Found {
    pub slices: Vec<Slice>,
    /// Items that could not be used, each message naming the item and its file.
    pub errors: Vec<String>,
}

impl S1Source {
    /// `eodc`, `eodc:URL` (a STAC API root), `file:DIR` or `DIR` (a local mirror).
    pub fn open(spec: &str, opts: &EodcOptions) -> Result<Self> {
        if spec == "eodc" || spec.starts_with("eodc:") {
            let url = spec
                .strip_prefix("eodc:")
                .unwrap_or(super::STAC_API)
                .to_string();
            let stac = crate::s2::stac::client::StacClient::new(&url, opts.retry, opts.stac_limit)?;
            let cache = DiskCache::open(&opts.cache_dir, opts.cache_bytes)?;
            let ranges = HttpRanges::new(
                cache,
                opts.max_connections,
                opts.max_requests_per_minute,
                opts.retry,
                opts.block_bytes,
            )?;
            return Ok(S1Source::Eodc {
                url,
                stac: std::sync::Arc::new(stac),
                ranges,
            });
        }
        let dir = Path::new(spec.strip_prefix("file:").unwrap_or(spec));
        if !dir.join("stac").join(STAC_COLLECTION).is_dir() {
            bail!(
                "{}: not an EODC mirror (no stac/{STAC_COLLECTION}/ directory of items)",
                dir.display()
            );
        }
        Ok(S1Source::Mirror(dir.to_path_buf()))
    }

    pub fn describe(&self) -> String {
        match self {
            S1Source::Mirror(d) => format!("file:{}", d.display()),
            S1Source::Eodc { url, .. } => format!("eodc:{url}"),
        }
    }

    /// The asset reader over HTTP and its disk cache (none for a mirror).
    pub fn ranges(&self) -> Option<&std::sync::Arc<HttpRanges>> {
        match self {
            S1Source::Mirror(_) => None,
            S1Source::Eodc { ranges, .. } => Some(ranges),
        }
    }

    /// STAC requests sent so far (retries included).
    pub fn stac_requests(&self) -> u64 {
        match self {
            S1Source::Mirror(_) => 0,
            S1Source::Eodc { stac, .. } => stac.requests.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The items of `tile` in UTC `year` (a mirror returns every date it holds; the catalog keeps
    /// the year it is built for).
    pub fn search(&self, tile: Equi7Tile, year: i32) -> Result<Found> {
        let root = match self {
            S1Source::Mirror(root) => root,
            S1Source::Eodc { stac, url, .. } => {
                let body = serde_json::json!({
                    "collections": [STAC_COLLECTION],
                    "query": {"Equi7_TileID": {"eq": tile.stac_id()}},
                    "datetime": format!("{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"),
                });
                let r = crate::remote::block_on(stac.search(body))
                    .with_context(|| format!("searching {url} for {tile} in {year}"))?;
                let mut found = Found::default();
                for item in r.items {
                    let id = item["id"].as_str().unwrap_or("?").to_string();
                    match parse_item(&item) {
                        Ok(s) => found.slices.push(s),
                        Err(e) => found.errors.push(format!("{url} item {id}: {e:#}")),
                    }
                }
                return Ok(found);
            }
        };
        let dir = root
            .join("stac")
            .join(STAC_COLLECTION)
            .join(tile.to_string());
        let mut found = Found::default();
        if !dir.is_dir() {
            return Ok(found);
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for p in paths {
            let item = std::fs::read(&p)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<serde_json::Value>(&b)?))
                .and_then(|v| parse_item(&v));
            match item {
                Ok(s) => found.slices.push(s),
                Err(e) => found.errors.push(format!("{}: {e:#}", p.display())),
            }
        }
        Ok(found)
    }

    /// A reader of the slices' GeoTIFFs.
    pub fn reader(&self) -> GdalReader {
        configure_gdal();
        match self {
            S1Source::Mirror(root) => GdalReader {
                mirror: Some(root.clone()),
                http: None,
            },
            S1Source::Eodc { ranges, .. } => GdalReader {
                mirror: None,
                http: Some(vsi::register(
                    ranges.clone() as std::sync::Arc<dyn vsi::VirtualFiles>
                )),
            },
        }
    }
}

/// GDAL's block cache for S1 reads: a strip of 5 rows spans the whole 15 000-pixel width, so the
/// windows of one shard row share strips; keep them decoded.
fn configure_gdal() {
    crate::raster::configure_gdal();
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        unsafe { gdal_sys::GDALSetCacheMax64(768 << 20) };
        // Remote assets: open the file only (EODC answers 403 to sidecar probes such as .msk
        // and does not list directories).
        let _ = gdal::config::set_config_option("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR");
    });
}

/// Reads slice windows through GDAL.
pub struct GdalReader {
    mirror: Option<PathBuf>,
    /// The `/vsidatacube/` handler number of the source's HTTP reader.
    http: Option<usize>,
}

thread_local! {
    static HANDLES: RefCell<lru::LruCache<String, Dataset>> =
        RefCell::new(lru::LruCache::new(NonZeroUsize::new(128).unwrap()));
}

impl GdalReader {
    /// The GDAL path of an asset href.
    pub fn path_of(&self, href: &str) -> String {
        match &self.mirror {
            Some(root) => Self::mirror_path(root, href),
            None if href.starts_with("https://") || href.starts_with("http://") => {
                match self.http {
                    Some(n) => vsi::path(n, href),
                    None => format!("/vsicurl/{href}"),
                }
            }
            None => href.strip_prefix("file:").unwrap_or(href).to_string(),
        }
    }

    /// Where a mirror rooted at `root` keeps the asset `href` (its URL path under `root`).
    pub fn mirror_path(root: &Path, href: &str) -> String {
        match href
            .strip_prefix("https://")
            .or_else(|| href.strip_prefix("http://"))
            .and_then(|rest| rest.find('/').map(|i| &rest[i + 1..]))
        {
            Some(path) => root.join(path).to_string_lossy().into_owned(),
            None => href.strip_prefix("file:").unwrap_or(href).to_string(),
        }
    }

    fn with_dataset<T>(
        &self,
        slice: &Slice,
        pol: usize,
        f: impl FnOnce(&Dataset) -> Result<T>,
    ) -> Result<T> {
        let path = self.path_of(&slice.assets[pol]);
        // The file as a user knows it: the mirror's path, or the asset's URL.
        let file = match path.starts_with(vsi::PREFIX) {
            true => slice.assets[pol].as_str(),
            false => path.as_str(),
        };
        let what = || format!("item {} asset {}: {file}", slice.id, POLARISATIONS[pol]);
        let remote = vsi::with_cause;
        vsi::take_error();
        HANDLES.with(|h| {
            let mut h = h.borrow_mut();
            if !h.contains(&path) {
                let ds = Dataset::open(&path)
                    .map_err(anyhow::Error::from)
                    .map_err(remote)
                    .with_context(what)?;
                check(&ds, slice).with_context(what)?;
                h.put(path.clone(), ds);
            }
            f(h.get(&path).expect("just opened"))
                .map_err(remote)
                .with_context(what)
        })
    }
}

/// Closes the GeoTIFF handles every thread keeps open (and so frees their GDAL block cache):
/// benchmarks start their measurements from here.
pub fn close_handles() {
    rayon::broadcast(|_| HANDLES.with(|h| h.borrow_mut().clear()));
    HANDLES.with(|h| h.borrow_mut().clear());
}

/// The file agrees with its item and with the collection's facts.
fn check(ds: &Dataset, slice: &Slice) -> Result<()> {
    let tile: Equi7Tile = slice.tile.parse().map_err(anyhow::Error::msg)?;
    let (w, h) = ds.raster_size();
    if (w as u64, h as u64) != (TILE_PX, TILE_PX) {
        bail!("{w}×{h} pixels, expected {TILE_PX}×{TILE_PX}");
    }
    let gt = ds.geo_transform().context("no geotransform")?;
    let want = tile.geotransform();
    if gt.iter().zip(want).any(|(a, b)| (a - b).abs() > 1e-6) {
        bail!("geotransform {gt:?} is not tile {tile}'s {want:?}");
    }
    let srs = ds.spatial_ref().context("no CRS")?;
    let eu = gdal::spatial_ref::SpatialRef::from_wkt(EU_WKT)?;
    if srs != eu {
        bail!(
            "CRS {} is not the Equi7 EU projection of its item",
            srs.to_proj4().unwrap_or_else(|_| "(unprintable)".into())
        );
    }
    let band = ds.rasterband(1)?;
    if band.band_type() != gdal::raster::GdalDataType::Int16 {
        bail!("band type {:?}, expected Int16", band.band_type());
    }
    if band.no_data_value() != Some(NODATA as f64) {
        bail!("nodata {:?}, expected {NODATA}", band.no_data_value());
    }
    Ok(())
}

impl SliceReader for GdalReader {
    fn window(
        &self,
        slice: &Slice,
        pol: usize,
        x0: u64,
        y0: u64,
        w: u64,
        h: u64,
    ) -> Result<Option<Vec<i16>>> {
        self.with_dataset(slice, pol, |ds| {
            let band = ds.rasterband(1)?;
            let (w, h) = (w as usize, h as usize);
            // A GeoTIFF whose strips are absent (sparse file) holds no data there: skip decoding.
            // GDAL_DATA_COVERAGE_STATUS_EMPTY = 0x04 (gdal.h; 0x02 is DATA, 0x01 UNIMPLEMENTED).
            let status = unsafe {
                gdal_sys::GDALGetDataCoverageStatus(
                    band.c_rasterband(),
                    x0 as i32,
                    y0 as i32,
                    w as i32,
                    h as i32,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if status == 0x04 {
                return Ok(None);
            }
            let mut out = vec![0i16; w * h];
            band.read_into_slice::<i16>((x0 as isize, y0 as isize), (w, h), (w, h), &mut out, None)
                .with_context(|| format!("reading window x {x0} y {y0} {w}×{h}"))?;
            Ok(Some(out))
        })
    }

    fn absolute_orbit(&self, slice: &Slice) -> Result<i32> {
        self.with_dataset(slice, 0, |ds| {
            let tag = ds
                .metadata_item("abs_orbit_number", "")
                .context("no abs_orbit_number tag")?;
            tag.trim()
                .parse()
                .with_context(|| format!("abs_orbit_number {tag:?} is not a number"))
        })
    }
}
