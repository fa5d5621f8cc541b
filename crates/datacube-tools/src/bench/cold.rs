//! `datacube bench-cold`: cold reads through a mount whose source is (emulated) CDSE under its
//! quotas, by fetch mode, against the decode floor, in one run.
//!
//! For each `--fetch` mode, twice (a fresh daemon, an empty store and an empty source cache each
//! time): one 5.1 km patch time series (all 13 bands, every scene), and the published comparison's
//! job (a 10 × 10 km window of B02, B03 and B04, every scene). For each run: the time to open the
//! arrays (the year's STAC search and metadata files), the time of the read, what the daemon
//! fetched (requests, bytes, tile-part statistics) and, with `--server-log` (the quota proxy's
//! request log of `scripts/emulate-cdse --quota`), what the server saw: requests, bytes, 429 and
//! 503 answers (nginx's own accounting of the limits; the client's peak of requests in flight is
//! from its stats). The decode floor is GDAL decoding exactly the
//! same windows from the local copy of the archive (page-cached), with the same threads.
//!
//! With `--direct`, each mode is also measured without the mount (`read` = `patch-direct`,
//! `job-direct`): the library's CDSE source in this process fetching what the windows need and
//! GDAL decoding exactly those windows — what a reader of the JP2 files by tile-part does, the
//! published comparison's second contender.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::daemon::{Daemon, DaemonSpec};
use super::{checksum, combine, floor_read_bands, sample_patches, Patch, ZarrReader};
use datacube::s2::bands::Resolution;
use datacube::s2::catalog::Catalog;
use datacube::s2::product::ProductLevel;
use datacube::source::BandSource;

#[derive(Debug, Clone)]
pub struct Options {
    /// `cdse` source arguments for the daemon (`--stac-url URL`, `--s3-endpoint URL`, …).
    pub source_args: Vec<String>,
    /// The same source for direct reads (`--direct`).
    pub direct: Option<datacube::source::CdseOptions>,
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
    /// Most requests the client had in flight at once (its connection cap holds it to 4).
    pub client_peak_in_flight: u64,
    /// Bytes of ranged GETs plus whole files downloaded (band and metadata files).
    pub client_bytes: u64,
    /// Band files downloaded whole.
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
    let (catalog, _) = datacube::s2::catalog::merge(None, scan.scenes, &o.tile, o.year)?;
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
            if let Some(cdse) = &o.direct {
                let r = direct_run(o, cdse, mode, &catalog, &p, is_job, floors[i])
                    .with_context(|| format!("--fetch {mode}, direct"))?;
                eprintln!(
                    "bench-cold: --fetch {mode} {}: {:.1} s (floor {:.1} s)",
                    r.read, r.read_seconds, r.floor_seconds
                );
                runs.push(r);
            }
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
        let (open_seconds, reader) =
            timed(|| ZarrReader::open(&daemon.mnt, &o.tile, o.year, ProductLevel::L1C))?;
        let (read_seconds, h) = timed(|| read_through(&reader, p, job))?;
        let s = daemon.stats()?;
        Ok((open_seconds, read_seconds, h, s))
    })();
    let stopped = daemon.stop();
    let (open_seconds, read_seconds, h, s) = measured?;
    stopped?;
    let source_io = s.get("source_io").cloned().unwrap_or_default();
    report(
        o,
        &dir,
        log_start,
        (mode, read),
        (open_seconds, read_seconds),
        floor,
        h,
        &source_io,
    )
}

/// The windows of `p` read without the mount: the CDSE source in this process (fresh cache)
/// fetches what each (resolution, scene) needs, then GDAL decodes exactly the windows.
fn direct_run(
    o: &Options,
    cdse: &datacube::source::CdseOptions,
    mode: &str,
    catalog: &Catalog,
    p: &Patch,
    job: bool,
    floor: (f64, u64),
) -> Result<RunReport> {
    use rayon::prelude::*;
    let read = if job { "job-direct" } else { "patch-direct" };
    let dir = o.work.join(format!("{mode}-{read}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let mut opts = cdse.clone();
    opts.cache_dir = dir.join("source-cache");
    opts.fetch = <datacube::source::FetchMode as clap::ValueEnum>::from_str(mode, true)
        .map_err(|e| anyhow::anyhow!("--fetch {mode}: {e}"))?;
    let log_start = o
        .server_log
        .as_ref()
        .map(|l| std::fs::metadata(l).map(|m| m.len()).unwrap_or(0));
    let source = datacube::source::CdseSource::new(opts)?;
    let (read_seconds, h) = timed(|| {
        let mut h = 0u64;
        for (res, bands) in reads(job) {
            let (r, c, n) = p.pixels(res);
            let window = datacube::raster::Window {
                x0: c as usize,
                y0: r as usize,
                w: n as usize,
                h: n as usize,
            };
            let bands = &res.bands()[bands];
            let keys: Vec<&str> = catalog
                .scenes
                .iter()
                .flat_map(|s| bands.iter().map(move |b| s.band_key(b.id)))
                .collect();
            source.prefetch_window(&keys, window);
            let planes = keys
                .par_iter()
                .map(|k| {
                    let f = source.open_window(k, window)?;
                    datacube::raster::read_direct(&f, window.x0, window.y0, window.w, window.h)
                })
                .collect::<Result<Vec<_>>>()?;
            h = combine(h, checksum(&planes.concat()));
        }
        Ok(h)
    })?;
    let source_io = source.stats();
    report(
        o,
        &dir,
        log_start,
        (mode, read),
        (0.0, read_seconds),
        floor,
        h,
        &source_io,
    )
}

/// A run's report from what it measured, the source's statistics (`source_io` of the mount's
/// stats, or the source's own), its source cache and the server's log since `log_start`.
#[allow(clippy::too_many_arguments)]
fn report(
    o: &Options,
    dir: &Path,
    log_start: Option<u64>,
    (mode, read): (&str, &str),
    (open_seconds, read_seconds): (f64, f64),
    floor: (f64, u64),
    checksum: u64,
    source_io: &serde_json::Value,
) -> Result<RunReport> {
    let n = |k: &str| source_io.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let (whole_files, whole_bytes) = whole_downloads(&dir.join("source-cache"))?;
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
        client_s3_requests: n("s3_requests"),
        client_peak_in_flight: n("s3_peak_in_flight"),
        client_bytes: whole_bytes + n("s3_range_bytes"),
        whole_files,
        tile_parts: source_io.get("tile_parts").cloned().unwrap_or_default(),
        server,
        agrees_with_floor: checksum == floor.1,
    })
}

/// Band files (`.jp2`) downloaded whole into a source cache, and the bytes of every whole file
/// there (band and metadata files; not the tile-part segments under `tiles/` or the indexes).
fn whole_downloads(cache: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![cache.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let e = e?;
            let rel = e.path().strip_prefix(cache)?.to_path_buf();
            if rel.starts_with("tiles") || rel.starts_with("j2k-index") {
                continue;
            }
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                bytes += e.metadata()?.len();
                files += (rel.extension().is_some_and(|x| x == "jp2")) as u64;
            }
        }
    }
    Ok((files, bytes))
}

/// Reads the proxy's log from byte `start` on: `… $status $body_bytes_sent` per line.
fn server_view(log: &Path, start: u64) -> Result<ServerView> {
    let text = std::fs::read(log).with_context(|| log.display().to_string())?;
    let text = String::from_utf8_lossy(&text[start.min(text.len() as u64) as usize..]).to_string();
    let mut v = ServerView::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(status), Some(bytes)) = (
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
    s.push_str("| fetch | read | open (s) | read (s) | floor (s) | ÷ floor | requests (server) | MB (server) | 429 / 503 | in flight (client peak) | whole band files | index req. | part req. | agrees |\n");
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
            x.client_peak_in_flight,
            x.whole_files,
            tp("index_requests"),
            tp("segment_requests"),
            x.agrees_with_floor,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_view_counts_the_log_from_an_offset() {
        let log = std::env::temp_dir().join(format!("quota-requests-{}.log", std::process::id()));
        let before = "1.000 0.010 1 \"GET /eodata/a HTTP/1.1\" \"bytes=0-9\" 206 10\n";
        std::fs::write(
            &log,
            format!(
                "{before}\
                 2.000 0.020 2 \"GET /eodata/b HTTP/1.1\" \"bytes=0-65535\" 206 65536\n\
                 2.100 0.000 3 \"GET /eodata/b HTTP/1.1\" \"bytes=70000-80000\" 429 120\n\
                 2.200 0.000 4 \"GET /eodata/c HTTP/1.1\" \"-\" 503 130\n"
            ),
        )
        .unwrap();
        let v = server_view(&log, before.len() as u64).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert_eq!(
            (v.requests, v.bytes, v.answered_429, v.answered_503),
            (3, 65536 + 120 + 130, 1, 1)
        );
    }
}
