//! The Copernicus Data Space Ecosystem as a source: scenes found through the STAC API, band and
//! metadata files downloaded whole from the `eodata` bucket into a byte-capped disk cache.
//!
//! Whole files, not ranged window reads: CDSE's JP2s have no TLM markers, so a window costs ~110
//! range requests, while a whole band file is one request (docs/design.md §6). Every S3 request goes
//! through one `Limits` (connection cap and requests per minute, CDSE's quotas) and is retried
//! with backoff; a download is checked against its `Content-Length` and, when the STAC item gives
//! it, `file:size`, before it is renamed into the cache.
//!
//! Scenes are built from the product's own `MTD_MSIL1C.xml` and `MTD_TL.xml` (fetched and cached),
//! exactly as from a SAFE directory, so both sources yield identical catalogs; the STAC item's band
//! hrefs, EPSG code and grids must agree with them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::disk_cache::DiskCache;
use super::j2k_index::J2kIndex;
use super::tile_parts::{RangeFetch, TileParts};
use super::{BandSource, FetchMode, LocalFile};
use crate::raster::Window;
use crate::remote::limits::Limits;
use crate::remote::retry::{Failure, RetryPolicy};
use crate::remote::s3::{self, S3Options};
use crate::s2::catalog::{deduplicate, ScanResult};
use crate::s2::product::ProductLevel;
use crate::s2::scene::Scene;
use crate::s2::stac::client::{StacClient, CDSE_STAC_URL, MAX_LIMIT};
use crate::s2::stac::StacItem;

/// How to reach CDSE (or an emulation of it) and how hard to push it.
#[derive(Debug, Clone)]
pub struct CdseOptions {
    pub stac_url: String,
    pub s3: S3Options,
    pub bucket: String,
    /// Concurrent S3 requests, at most (CDSE: 4 connections per account).
    pub max_connections: usize,
    /// S3 requests per minute, at most (CDSE: 2000).
    pub max_requests_per_minute: u32,
    /// Search one UTC day at a time.
    pub per_day: bool,
    /// STAC page size.
    pub stac_limit: usize,
    pub cache_dir: PathBuf,
    pub cache_bytes: u64,
    pub retry: RetryPolicy,
    /// Tile-parts or whole files (`--fetch`).
    pub fetch: FetchMode,
    /// The processing level the source serves (its STAC collection, its metadata files); the
    /// collection's opener sets it, for local archives too.
    pub level: ProductLevel,
}

impl Default for CdseOptions {
    fn default() -> Self {
        CdseOptions {
            stac_url: CDSE_STAC_URL.into(),
            s3: S3Options {
                profile: Some("cdse".into()),
                endpoint: None,
                region: Some("default".into()),
            },
            bucket: crate::s2::stac::EODATA.into(),
            max_connections: 4,
            max_requests_per_minute: 2000,
            per_day: false,
            stac_limit: MAX_LIMIT,
            cache_dir: default_cache_dir(),
            cache_bytes: 32 << 30,
            retry: RetryPolicy::default(),
            fetch: FetchMode::Auto,
            level: ProductLevel::L1C,
        }
    }
}

/// `$XDG_CACHE_HOME/datacube/eodata`, else `~/.cache/datacube/eodata`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("datacube/eodata")
}

pub struct CdseSource {
    opts: CdseOptions,
    stac: StacClient,
    s3: aws_sdk_s3::Client,
    limits: Arc<Limits>,
    cache: Arc<DiskCache>,
    /// Band sizes the STAC items promised (`file:size`), by key.
    sizes: Mutex<HashMap<String, u64>>,
    stats: Arc<S3Stats>,
    /// Band files read by tile-part, and their `/vsidatacube/` number.
    tiles: Arc<TileParts>,
    vsi: usize,
}

/// Ranged GETs of the bucket's objects under the source's quotas (what [`TileParts`] fetches
/// with).
struct S3Ranges {
    s3: aws_sdk_s3::Client,
    bucket: String,
    limits: Arc<Limits>,
    retry: RetryPolicy,
    stats: Arc<S3Stats>,
}

crate::counters! {
    /// What the S3 client did.
    struct S3Stats { s3_requests, s3_failed_attempts, s3_range_requests, s3_range_bytes }
}

impl CdseSource {
    pub fn new(opts: CdseOptions) -> Result<Self> {
        let stac = StacClient::new(&opts.stac_url, opts.retry, opts.stac_limit)?
            .with_collection(opts.level.stac_collection());
        let s3 = crate::remote::block_on(s3::client(&opts.s3, true));
        let cache = Arc::new(DiskCache::open(&opts.cache_dir, opts.cache_bytes)?);
        let limits = Arc::new(Limits::new(
            opts.max_connections,
            opts.max_requests_per_minute,
        ));
        let stats = Arc::new(S3Stats::default());
        let ranges = Arc::new(S3Ranges {
            s3: s3.clone(),
            bucket: opts.bucket.clone(),
            limits: limits.clone(),
            retry: opts.retry,
            stats: stats.clone(),
        });
        let tiles = TileParts::new(ranges, cache.clone());
        let vsi = super::vsi::register(tiles.clone() as Arc<dyn super::vsi::VirtualFiles>);
        Ok(CdseSource {
            limits,
            stac,
            s3,
            cache,
            sizes: Mutex::new(HashMap::new()),
            stats,
            tiles,
            vsi,
            opts,
        })
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.opts.bucket)
    }

    async fn cached(&self, key: &str) -> Result<LocalFile> {
        self.cache
            .get_or_fetch(key, |tmp| self.download(key, tmp))
            .await
    }

    /// Downloads `key` whole into `tmp`, retrying transient failures; returns its size.
    async fn download(&self, key: &str, tmp: PathBuf) -> Result<u64> {
        let expected = self.sizes.lock().unwrap().get(key).copied();
        let what = format!("downloading {}", self.url(key));
        self.opts
            .retry
            .run(&what, || self.attempt(key, &tmp, expected))
            .await
            .map_err(|(e, n)| e.context(format!("{what}: failed after {n} attempt(s)")))
    }

    async fn attempt(
        &self,
        key: &str,
        tmp: &Path,
        expected: Option<u64>,
    ) -> Result<u64, Failure<anyhow::Error>> {
        let permanent = |e: anyhow::Error| Failure::Permanent(e);
        let _permit = self.limits.acquire().await;
        self.stats.s3_requests.inc();
        let fail = |f: Failure<anyhow::Error>| {
            self.stats.s3_failed_attempts.inc();
            f
        };
        let resp = self
            .s3
            .get_object()
            .bucket(&self.opts.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| fail(send_failure(&e)))?;
        let declared = resp.content_length().and_then(|n| u64::try_from(n).ok());
        let mut file = tokio::fs::File::create(tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))
            .map_err(permanent)?;
        let mut body = resp.body;
        let mut n = 0u64;
        loop {
            match body.try_next().await {
                Ok(Some(bytes)) => {
                    file.write_all(&bytes)
                        .await
                        .with_context(|| format!("writing {}", tmp.display()))
                        .map_err(permanent)?;
                    n += bytes.len() as u64;
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(fail(Failure::Transient {
                        error: anyhow!(
                            "transfer broke off after {n} bytes: {}",
                            crate::remote::error_chain(&e)
                        ),
                        retry_after: None,
                    }))
                }
            }
        }
        file.flush()
            .await
            .with_context(|| format!("writing {}", tmp.display()))
            .map_err(permanent)?;
        if let Some(d) = declared.filter(|d| *d != n) {
            return Err(fail(Failure::Transient {
                error: anyhow!("size mismatch: received {n} bytes, Content-Length {d}"),
                retry_after: None,
            }));
        }
        if let Some(e) = expected.filter(|e| *e != n) {
            return Err(fail(Failure::Permanent(anyhow!(
                "size mismatch: the object has {n} bytes, the STAC item's file:size is {e} \
                 (truncated or replaced object)"
            ))));
        }
        Ok(n)
    }

    async fn text(&self, key: &str) -> Result<String> {
        let f = self.cached(key).await?;
        tokio::fs::read_to_string(&*f)
            .await
            .with_context(|| format!("{}: reading {}", self.url(key), f.display()))
    }

    /// The scene of an item, from its metadata files. The outer error is a failed fetch (the scan
    /// fails: a catalog must not be persisted without a scene that exists); the inner one is a
    /// product whose metadata is invalid or disagrees with the item (reported, skipped).
    async fn scene_of(&self, item: &StacItem) -> Result<Result<Scene, String>> {
        let product_xml = self.text(&item.product_metadata_key).await?;
        let tile_xml = self.text(&item.granule_metadata_key).await?;
        Ok(self.check_scene(item, &product_xml, &tile_xml))
    }

    fn check_scene(
        &self,
        item: &StacItem,
        product_xml: &str,
        tile_xml: &str,
    ) -> Result<Scene, String> {
        let pfile = PathBuf::from(self.url(&item.product_metadata_key));
        let tfile = PathBuf::from(self.url(&item.granule_metadata_key));
        let level = self.opts.level;
        if item.level != level {
            return Err(format!(
                "STAC item {}: a {} product in a {} search",
                item.product_id, item.level, level
            ));
        }
        let dir = item
            .product_metadata_key
            .strip_suffix(&format!("/{}", level.metadata_file()))
            .ok_or_else(|| {
                format!(
                    "STAC item {}: product_metadata {} is not a {}",
                    item.product_id,
                    item.product_metadata_key,
                    level.metadata_file()
                )
            })?;
        let tile = crate::s2::safe::parse_tile_mtd(tile_xml, &tfile).map_err(|e| e.to_string())?;
        let scene = match level {
            ProductLevel::L1C => {
                let product = crate::s2::safe::parse_product_mtd(product_xml, &pfile)
                    .map_err(|e| e.to_string())?;
                crate::s2::safe::scene_from_parts(&product, &tile, dir, &pfile)
            }
            ProductLevel::L2A => {
                let product = crate::s2::safe::parse_l2a_product_mtd(product_xml, &pfile)
                    .map_err(|e| e.to_string())?;
                crate::s2::safe::l2a_scene_from_parts(&product, &tile, dir, &pfile)
            }
        }
        .map_err(|e| e.to_string())?;
        let band_keys: Vec<&String> = scene.band_keys.iter().filter(|k| !k.is_empty()).collect();
        let item_keys: Vec<&String> = item.band_keys.iter().collect();
        let disagree = |what: &str| {
            format!(
                "STAC item {}: {what} disagrees with {}",
                item.product_id,
                pfile.display()
            )
        };
        let checks = [
            (scene.product_id == item.product_id, "the id"),
            (scene.tile == item.tile, "grid:code"),
            (scene.baseline == item.baseline, "processing:version"),
            (band_keys == item_keys, "the band hrefs"),
            (scene.scl_key == item.scl_key, "the SCL href"),
            (scene.epsg == item.epsg, "proj:code"),
            (scene.grids == item.grids, "proj:shape/proj:transform"),
        ];
        if let Some((_, what)) = checks.iter().find(|(agree, _)| !agree) {
            return Err(disagree(what));
        }
        let mut sizes = self.sizes.lock().unwrap();
        for (k, s) in item.band_keys.iter().zip(&item.band_sizes) {
            if let Some(s) = s {
                sizes.insert(k.clone(), *s);
            }
        }
        Ok(scene)
    }

    async fn scan_async(&self, tile: &str, year: i32) -> Result<ScanResult> {
        let first = chrono::NaiveDate::from_ymd_opt(year, 1, 1).context("invalid year")?;
        let last = chrono::NaiveDate::from_ymd_opt(year, 12, 31).context("invalid year")?;
        let found = if self.opts.per_day {
            self.stac.search_tile_per_day(tile, first, last).await
        } else {
            let start = first.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let end = last
                .and_hms_milli_opt(23, 59, 59, 999)
                .expect("valid time")
                .and_utc();
            self.stac.search_tile(tile, start, end).await
        }?;
        tracing::info!(
            "STAC {}: {} item(s) for {tile} {year} in {} page(s)",
            self.opts.stac_url,
            found.items.len(),
            found.pages
        );
        let mut errors = Vec::new();
        let mut items: Vec<StacItem> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for v in &found.items {
            match StacItem::parse(v) {
                Ok(i) if i.tile == tile && ids.insert(i.product_id.clone()) => items.push(i),
                Ok(_) => {}
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        let results: Vec<Result<Result<Scene, String>>> = futures::stream::iter(&items)
            .map(|i| self.scene_of(i))
            .buffer_unordered(self.opts.max_connections.max(1))
            .collect()
            .await;
        let mut scenes = Vec::new();
        for r in results {
            match r.with_context(|| format!("scanning {tile} {year}"))? {
                Ok(s) => scenes.push(s),
                Err(e) => errors.push(e),
            }
        }
        let (scenes, superseded) = deduplicate(scenes);
        Ok(ScanResult {
            scenes,
            superseded,
            errors,
        })
    }
}

/// A failed GetObject: transient (retried) or not, with the S3 error's message.
fn send_failure<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Failure<anyhow::Error>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let error = anyhow!("{}", s3::error_message(e));
    if s3::is_transient(e) {
        Failure::Transient {
            error,
            retry_after: None,
        }
    } else {
        Failure::Permanent(error)
    }
}

impl S3Ranges {
    /// Bytes `[start, end)` of `key` by one ranged GET (retried like downloads), and the object's
    /// size. The answer must name exactly that range (`Content-Range`) and carry all of it; a
    /// 416 (range past the end: the object is shorter than its index says) is not retried.
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<(Vec<u8>, u64)> {
        let range = format!("bytes={start}-{}", end - 1);
        let what = format!("GET s3://{}/{key} ({range})", self.bucket);
        self.retry
            .run(&what, || async {
                let _permit = self.limits.acquire().await;
                self.stats.s3_requests.inc();
                self.stats.s3_range_requests.inc();
                let fail = |f: Failure<anyhow::Error>| {
                    self.stats.s3_failed_attempts.inc();
                    f
                };
                let resp = self
                    .s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .range(&range)
                    .send()
                    .await
                    .map_err(|e| fail(send_failure(&e)))?;
                // `bytes START-LAST/SIZE`: exactly the range asked for, or cut at the object's
                // end when the range runs past it.
                let got = resp.content_range().unwrap_or("").to_string();
                let parsed = got
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split_once('/'))
                    .and_then(|(r, size)| {
                        let (a, b) = r.split_once('-')?;
                        Some((
                            a.parse::<u64>().ok()?,
                            b.parse::<u64>().ok()?,
                            size.parse::<u64>().ok()?,
                        ))
                    });
                let (last, size) = match parsed {
                    Some((a, b, size))
                        if a == start && (b + 1 == end || (b + 1 == size && end > size)) =>
                    {
                        (b, size)
                    }
                    _ => {
                        return Err(fail(Failure::Permanent(anyhow!(
                            "Content-Range {got:?}, expected bytes {start}-{}/SIZE",
                            end - 1
                        ))))
                    }
                };
                let end = last + 1;
                let body = resp.body.collect().await.map_err(|e| {
                    fail(Failure::Transient {
                        error: anyhow!("transfer broke off: {}", crate::remote::error_chain(&e)),
                        retry_after: None,
                    })
                })?;
                let bytes = body.into_bytes();
                if bytes.len() as u64 != end - start {
                    return Err(fail(Failure::Transient {
                        error: anyhow!("{} bytes received of {}", bytes.len(), end - start),
                        retry_after: None,
                    }));
                }
                self.stats.s3_range_bytes.add(bytes.len() as u64);
                Ok((bytes.to_vec(), size))
            })
            .await
            .map_err(|(e, n)| e.context(format!("{what}: failed after {n} attempt(s)")))
    }
}

impl RangeFetch for S3Ranges {
    fn fetch<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> futures::future::BoxFuture<'a, Result<(Vec<u8>, u64)>> {
        Box::pin(self.get_range(key, start, end))
    }

    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// What a request costs under the quotas beyond its bytes: its round trip, or its share of the
/// request rate when that binds first (seconds per request per connection).
const REQUEST_SECONDS: f64 = 0.05;
/// Bytes per second per connection (CDSE's per-connection bandwidth).
const CONNECTION_BYTES_PER_SECOND: f64 = 20e6;

impl CdseSource {
    /// Expected seconds for `requests` requests carrying `bytes` bytes under the quotas.
    fn cost(&self, requests: u64, bytes: u64) -> f64 {
        let conns = self.opts.max_connections.max(1) as f64;
        let rate_share = 60.0 / self.opts.max_requests_per_minute.max(1) as f64 * conns;
        requests as f64 * REQUEST_SECONDS.max(rate_share) / conns
            + bytes as f64 / (CONNECTION_BYTES_PER_SECOND * conns)
    }

    /// How `window` of `key` is read: by tile-part (with the tiles it covers) or whole.
    /// Deterministic for a given cache state, so `prefetch_window` and `open_window` agree.
    fn plan(&self, key: &str, window: Window) -> Result<Option<(Arc<J2kIndex>, Vec<u16>)>> {
        if self.opts.fetch == FetchMode::Whole || self.cache.peek(key).is_some() {
            return Ok(None);
        }
        let idx = match self.opts.fetch {
            FetchMode::Ranges => self.tiles.index(key)?,
            // Auto: an index known, or one request away (TLM); no SOT walk just to decide.
            _ => match self.tiles.index_if_cheap(key)? {
                Some(i) => i,
                None => return Ok(None),
            },
        };
        let tiles = idx.grid.tiles_of(
            window.x0 as u32,
            window.y0 as u32,
            window.w as u32,
            window.h as u32,
        );
        if self.opts.fetch == FetchMode::Ranges {
            return Ok(Some((idx, tiles)));
        }
        let parts = idx.parts_of(&tiles);
        let bytes: u64 = parts.iter().map(|p| p.len).sum::<u64>() + idx.first_sot;
        let runs = 1 + parts
            .windows(2)
            .filter(|w| w[1].offset > w[0].offset + w[0].len + super::tile_parts::COALESCE_GAP)
            .count() as u64;
        let ranges = self.cost(runs + 1, bytes);
        let whole = self.cost(1, idx.size);
        Ok((ranges < whole).then_some((idx, tiles)))
    }
}

impl BandSource for CdseSource {
    fn local_path(&self, key: &str) -> Result<LocalFile> {
        let f = crate::remote::block_on(self.cached(key))?;
        // A whole file indexes itself for free: later reads of it, once evicted, can go by
        // tile-part without a walk.
        if self.opts.fetch != FetchMode::Whole {
            self.tiles.index_local(key, &f);
        }
        Ok(f)
    }

    fn open_window(&self, key: &str, window: Window) -> Result<LocalFile> {
        match self.plan(key, window)? {
            Some((_, tiles)) => Ok(LocalFile::plain(PathBuf::from(super::vsi::path(
                self.vsi,
                &super::tile_parts::name(key, &tiles),
            )))),
            None => self.local_path(key),
        }
    }

    fn prefetch_window(&self, keys: &[&str], window: Window) {
        // Plans need an index, which may take a request: as many at once as connections.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let plans: Vec<Mutex<Option<Result<_>>>> = keys.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..self.opts.max_connections.clamp(1, keys.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(k) = keys.get(i) else { break };
                    *plans[i].lock().unwrap() = Some(self.plan(k, window));
                });
            }
        });
        let mut whole = Vec::new();
        let mut wants = Vec::new();
        for (k, p) in keys.iter().zip(plans) {
            match p.into_inner().unwrap() {
                Some(Ok(Some((idx, tiles)))) => wants.push((idx, k.to_string(), tiles)),
                Some(Ok(None)) => whole.push(*k),
                // Resurfaces from open_window with its context.
                _ => {}
            }
        }
        let _ = crate::remote::block_on(futures::future::join(
            self.tiles.prefetch(&wants),
            futures::future::join_all(whole.iter().map(|k| self.cached(k))),
        ));
        if self.opts.fetch != FetchMode::Whole {
            for k in whole {
                if let Some(f) = self.cache.peek(k) {
                    self.tiles.index_local(k, &f);
                }
            }
        }
    }

    fn prefetch(&self, keys: &[&str]) {
        crate::remote::block_on(futures::future::join_all(
            keys.iter().map(|k| self.cached(k)),
        ));
    }

    fn scan(&self, tile: &str, year: i32) -> Result<ScanResult> {
        crate::remote::block_on(self.scan_async(tile, year))
    }

    fn level(&self) -> ProductLevel {
        self.opts.level
    }

    fn describe(&self) -> String {
        format!(
            "cdse (STAC {}, S3 {}, bucket {})",
            self.opts.stac_url,
            self.opts.s3.describe(),
            self.opts.bucket
        )
    }

    fn stats(&self) -> serde_json::Value {
        let c = &self.cache.stats;
        let (hits, evictions) = self.cache.lru_counts();
        let mut m = self.stats.to_json();
        m.extend(json_object(json!({
            "stac_requests": self.stac.requests.load(std::sync::atomic::Ordering::Relaxed),
            "s3_peak_in_flight": self.limits.peak(),
            "max_connections": self.opts.max_connections,
            "downloads": c.fetches.get(),
            "downloaded_bytes": c.fetched_bytes.get(),
            "cache_hits": hits,
            "cache_evictions": evictions,
            "cache_bytes": self.cache.bytes(),
            "cache_capacity": self.opts.cache_bytes,
            "cache_working_set_bytes": c.working_set_bytes.get(),
            "cache_over_cap": self.cache.over_cap(),
            "cache_refetches": c.refetches.get(),
            "cache_refetched_bytes": c.refetched_bytes.get(),
            "fetch": format!("{:?}", self.opts.fetch).to_lowercase(),
            "tile_parts": serde_json::Value::Object(self.tiles.stats.to_json()),
        })));
        serde_json::Value::Object(m)
    }
}

fn json_object(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}
