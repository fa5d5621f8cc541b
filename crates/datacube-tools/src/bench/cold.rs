//! `datacube bench-cold`: cold reads through a mount whose source is (emulated) CDSE under its
//! quotas, by fetch mode, against the decode floor, in one run.
//!
//! For each `--fetch` mode, twice (a fresh daemon, an empty store and an empty source cache each
//! time): one 5.1 km patch time series (all 13 bands, every scene), and the published comparison's
//! job (a 10 × 10 km window of B02, B03 and B04, every scene). For each run: the time to open the
//! arrays (the year's STAC search and metadata files), the time of the read, what the daemon
//! fetched (requests, bytes, tile-part statistics) and, with `--server-log` (the quota proxy's
//! request log of `scripts/emulate-cdse --quota`), what the server saw: requests, bytes, 429 and
//! 503 answers, the most requests in flight at once. The decode floor is GDAL decoding exactly the
//! same windows from the local copy of the archive (page-cached), with the same threads.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::daemon::{Daemon, DaemonSpec};
use super::{checksum, combine, floor_read_bands, sample_patches, Patch, ZarrReader};
use datacube::bands::Resolution;
use datacube::catalog::Catalog;
use datacube::source::BandSource;

#[derive(Debug, Clone)]
pub struct Options {
    /// `cdse` source arguments for the daemon (`--stac-url URL`, `--s3-endpoint URL`, …).
    pub source_args: Vec<String>,
    pub tile: String,
    pub year: i32,
    pub work: PathBuf,
    pub modes: Vec<String>,
    pub patch_size_m: u64,
    pub job_size_m: u64,
    pub seed: u64,
    pub cache_size: u64,
    pub threads: usize,
    pub server_log: Option<PathBuf>,
}

/// What the server's request log shows for one run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerView {
    pub requests: u64,
    pub bytes: u64,
    pub answered_429: u64,
    pub answered_503: u64,
    /// Most requests in flight at once, by the proxy's own times (start = end − request time).
    pub peak_in_flight: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub fetch: String,
    /// `patch` or `job`.
    pub read: String,
    pub open_seconds: f64,
    pub read_seconds: f64,
    pub floor_seconds: f64,
    pub read_over_floor: f64,
    pub client_s3_requests: u64,
    pub client_bytes: u64,
    pub whole_files: u64,
    pub tile_parts: serde_json::Value,
    pub server: Option<ServerView>,
    pub agrees_with_floor: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tile: String,
    pub year: i32,
    pub scenes: usize,
    pub threads: usize,
    pub patch: Patch,
    pub job: Patch,
    /// Band files of the tile-year (count, bytes): what `--fetch whole` would download for all.
    pub band_files: u64,
    pub band_file_bytes: u64,
    pub runs: Vec<RunReport>,
}

/// The parts of a read: the three resolution groups with all bands (a patch), or the 10 m group's
/// first three bands, B02, B03, B04 (the job).
fn reads(job: bool) -> Vec<(Resolution, std::ops::Range<usize>)> {
    if job {
        vec![(Resolution::R10, 0..3)]
    } else {
        Resolution::ALL
            .iter()
            .map(|r| (*r, 0..r.bands().len()))
            .collect()
    }
}

fn read_through(reader: &ZarrReader, p: &Patch, job: bool) -> Result<u64> {
    let mut h = 0u64;
    for (res, bands) in reads(job) {
        h = combine(h, checksum(&reader.read_bands(res, p, bands)?));
    }
    Ok(h)
}

fn floor(source: &dyn BandSource, catalog: &Catalog, p: &Patch, job: bool) -> Result<u64> {
    let mut h = 0u64;
    for (res, bands) in reads(job) {
        h = combine(
            h,
            checksum(&floor_read_bands(source, catalog, res, p, bands)?),
        );
    }
    Ok(h)
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t0 = Instant::now();
    let v = f()?;
    Ok((t0.elapsed().as_secs_f64(), v))
}

/// `local` is the same archive on disk (catalog, floor); the daemons read it through CDSE.
pub fn run(o: &Options, local: &dyn BandSource) -> Result<Report> {
    let scan = local.scan(&o.tile, o.year)?;
    let (catalog, _) = datacube::catalog::merge(None, scan.scenes, &o.tile, o.year)?;
    anyhow::ensure!(
        !catalog.scenes.is_empty(),
        "no scenes of {} {}",
        o.tile,
        o.year
    );
    let width_m = catalog.scenes[0].grid(Resolution::R10).ncols * 10;
    let patch = sample_patches(width_m, o.patch_size_m, 1, o.seed)?[0];
    let job = Patch {
        x_m: (width_m - o.job_size_m) / 20 * 10,
        y_m: (width_m - o.job_size_m) / 20 * 10,
        size_m: o.job_size_m,
    };
    // Page-cache the band files (the floor decodes from memory, the emulator serves from it).
    let mut buf = vec![0u8; 1 << 20];
    let (mut band_files, mut band_file_bytes) = (0, 0);
    for s in &catalog.scenes {
        for key in &s.band_keys {
            let path = local.local_path(key)?;
            let mut f = std::fs::File::open(&*path)?;
            while f.read(&mut buf)? > 0 {}
            band_files += 1;
            band_file_bytes += std::fs::metadata(&*path)?.len();
        }
    }
    let floors = [
        timed(|| floor(local, &catalog, &patch, false))?,
        timed(|| floor(local, &catalog, &job, true))?,
    ];
    let mut runs = Vec::new();
    for mode in &o.modes {
        for (i, (p, is_job)) in [(patch, false), (job, true)].into_iter().enumerate() {
            let r = cold_run(o, mode, &p, is_job, floors[i]).with_context(|| {
                format!("--fetch {mode}, {}", if is_job { "job" } else { "patch" })
            })?;
            eprintln!(
                "bench-cold: --fetch {mode} {}: {:.1} s (floor {:.1} s)",
                r.read, r.read_seconds, r.floor_seconds
            );
            runs.push(r);
        }
    }
    Ok(Report {
        tile: o.tile.clone(),
        year: o.year,
        scenes: catalog.scenes.len(),
        threads: o.threads,
        patch,
        job,
        band_files,
        band_file_bytes,
        runs,
    })
}

fn cold_run(o: &Options, mode: &str, p: &Patch, job: bool, floor: (f64, u64)) -> Result<RunReport> {
    let read = if job { "job" } else { "patch" };
    let dir = o.work.join(format!("{mode}-{read}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let store = dir.join("store");
    std::fs::create_dir_all(&store)?;
    let cache = dir.join("source-cache").display().to_string();
    let mut extra: Vec<&str> = o.source_args.iter().map(String::as_str).collect();
    extra.extend(["--source-cache", &cache, "--fetch", mode]);
    let log_start = o
        .server_log
        .as_ref()
        .map(|l| std::fs::metadata(l).map(|m| m.len()).unwrap_or(0));
    let daemon = Daemon::start(
        &DaemonSpec {
            source: "cdse",
            tile: &o.tile,
            year: o.year,
            cache_size: o.cache_size,
            threads: o.threads,
            log: &dir.join("mount.log"),
            extra: &extra,
        },
        &dir.join("mnt"),
        &store,
    )?;
    let measured = (|| -> Result<_> {
        let (open_seconds, reader) = timed(|| ZarrReader::open(&daemon.mnt, &o.tile, o.year))?;
        let (read_seconds, h) = timed(|| read_through(&reader, p, job))?;
        let s = daemon.stats()?;
        Ok((open_seconds, read_seconds, h, s))
    })();
    let stopped = daemon.stop();
    let (open_seconds, read_seconds, h, s) = measured?;
    stopped?;
    let n = |ptr: &str| s.pointer(ptr).and_then(|v| v.as_u64()).unwrap_or(0);
    let server = match (&o.server_log, log_start) {
        (Some(l), Some(start)) => Some(server_view(l, start)?),
        _ => None,
    };
    Ok(RunReport {
        fetch: mode.to_string(),
        read: read.to_string(),
        open_seconds,
        read_seconds,
        floor_seconds: floor.0,
        read_over_floor: read_seconds / floor.0,
        client_s3_requests: n("/source_io/s3_requests"),
        client_bytes: n("/source_io/downloaded_bytes") + n("/source_io/s3_range_bytes"),
        whole_files: n("/source_io/downloads"),
        tile_parts: s
            .pointer("/source_io/tile_parts")
            .cloned()
            .unwrap_or_default(),
        server,
        agrees_with_floor: h == floor.1,
    })
}

/// Reads the proxy's log from byte `start` on: `$msec $request_time $connection "$request"
/// $status $body_bytes_sent` per line.
fn server_view(log: &Path, start: u64) -> Result<ServerView> {
    let text = std::fs::read(log).with_context(|| log.display().to_string())?;
    let text = String::from_utf8_lossy(&text[start.min(text.len() as u64) as usize..]).to_string();
    let mut v = ServerView::default();
    let mut events = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(end), Some(took), Some(status), Some(bytes)) = (
            f.first().and_then(|x| x.parse::<f64>().ok()),
            f.get(1).and_then(|x| x.parse::<f64>().ok()),
            f.get(f.len().wrapping_sub(2))
                .and_then(|x| x.parse::<u16>().ok()),
            f.last().and_then(|x| x.parse::<u64>().ok()),
        ) else {
            continue;
        };
        v.requests += 1;
        v.bytes += bytes;
        v.answered_429 += (status == 429) as u64;
        v.answered_503 += (status == 503) as u64;
        // Integer milliseconds; an end sorts before a start at the same instant.
        events.push(((end * 1000.0).round() as i64, -1i64));
        events.push((((end - took) * 1000.0).round() as i64, 1));
    }
    events.sort();
    let mut now = 0i64;
    for (_, d) in events {
        now += d;
        v.peak_in_flight = v.peak_in_flight.max(now as u64);
    }
    Ok(v)
}

/// The report as markdown: one row per run.
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "Tile {} {}: {} scenes ({} band files, {:.2} GB); {} threads. Patch {} m at ({}, {}) m, all 13 bands; job {} m at ({}, {}) m, B02/B03/B04.\n\n",
        r.tile,
        r.year,
        r.scenes,
        r.band_files,
        r.band_file_bytes as f64 / 1e9,
        r.threads,
        r.patch.size_m,
        r.patch.x_m,
        r.patch.y_m,
        r.job.size_m,
        r.job.x_m,
        r.job.y_m,
    );
    s.push_str("| fetch | read | open (s) | read (s) | floor (s) | ÷ floor | requests (server) | MB (server) | 429 / 503 | peak in flight | whole files | index req. | part req. | agrees |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n");
    for x in &r.runs {
        let sv = x.server.clone().unwrap_or_default();
        let tp = |k: &str| x.tile_parts.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {} ({}) | {:.1} ({:.1}) | {} / {} | {} | {} | {} | {} | {} |\n",
            x.fetch,
            x.read,
            x.open_seconds,
            x.read_seconds,
            x.floor_seconds,
            x.read_over_floor,
            x.client_s3_requests,
            sv.requests,
            x.client_bytes as f64 / 1e6,
            sv.bytes as f64 / 1e6,
            sv.answered_429,
            sv.answered_503,
            sv.peak_in_flight,
            x.whole_files,
            tp("index_requests"),
            tp("segment_requests"),
            x.agrees_with_floor,
        ));
    }
    s
}
