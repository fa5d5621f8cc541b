//! `--source cdse` and `--store s3://` against the CDSE emulator (`scripts/emulate-cdse`: s3s-fs and
//! stac-fastapi-pgstac on PostgreSQL, on 127.0.0.1), with a proxy in front of a service where a
//! test needs to count requests or inject faults. The oracle is the same fixture read through
//! `--source safe:DIR`, itself checked against the value formula and GDAL by the intake tests.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::emulator::{Emulator, ACCESS_KEY, SECRET_KEY};
use common::mount::{stat, Mounted};
use common::proxy::{Fault, Proxy};
use common::*;
use datacube::s2::bands::Resolution;

/// Source arguments for `--source cdse` against `stac` (S3 endpoint from the profile unless given).
fn cdse_args(stac: &str, s3: Option<&str>, cache: &Path, extra: &[&str]) -> Vec<String> {
    // Quick retries in every datacube process this test starts (a test hook of the environment,
    // inherited by the children; each test runs in a process of its own).
    std::env::set_var("DATACUBE_TEST_RETRY_DELAY_MS", "20");
    let mut v: Vec<String> = [
        "--source",
        "cdse",
        "--stac-url",
        stac,
        "--source-cache",
        &cache.display().to_string(),
        "--retries",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(e) = s3 {
        v.extend(["--s3-endpoint".to_string(), e.to_string()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn intake(store: &str, args: &[String], env: &[(String, String)], rust_log: &str) -> Output {
    Command::new(bin())
        .args([
            "intake", "--layout", "chunked", "--store", store, "--tile", "35VLH", "--year",
        ])
        .arg(YEAR.to_string())
        .arg("--no-progress")
        .args(args)
        .env("RUST_LOG", rust_log)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// `datacube intake --source cdse` of the fixture's tile-year into `work/store` (source cache
/// `work/cache`): the store directory, the result and everything it printed.
fn intake_cdse(
    work: &Path,
    stac: &str,
    s3: Option<&str>,
    env: &[(String, String)],
) -> (PathBuf, Output, String) {
    let store = work.join("store");
    let out = intake(
        &store.display().to_string(),
        &cdse_args(stac, s3, &work.join("cache"), &[]),
        env,
        "info",
    );
    let log = text(&out);
    (store, out, log)
}

/// A data array read with zarrs straight from the bucket over S3 (object_store), not via datacube.
fn read_data_s3(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    res: Resolution,
) -> (Vec<u64>, Vec<u16>) {
    use object_store::aws::AmazonS3Builder;
    // object_store's HTTP client takes the process's TLS provider (datacube's: ring).
    datacube::remote::install_tls();
    let s3 = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("default")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let store: zarrs::storage::AsyncReadableListableStorage =
        std::sync::Arc::new(zarrs_object_store::AsyncObjectStore::new(s3));
    let path = format!("/{prefix}/35VLH/{YEAR}/{}/data", res.name());
    datacube::remote::block_on(async {
        let a = zarrs::array::Array::async_open(store, &path).await.unwrap();
        let data = a
            .async_retrieve_array_subset::<Vec<u16>>(&a.subset_all())
            .await
            .unwrap();
        (a.shape().to_vec(), data)
    })
}

/// The SAFE-made store's `data` array of `res`, read with zarrs once per test process (tests
/// compare several reads against it).
fn safe_data(res: Resolution) -> std::sync::Arc<(Vec<u64>, Vec<u16>)> {
    type Arrays = std::collections::BTreeMap<Resolution, std::sync::Arc<(Vec<u64>, Vec<u16>)>>;
    static READ: std::sync::Mutex<Arrays> = std::sync::Mutex::new(Arrays::new());
    READ.lock()
        .unwrap()
        .entry(res)
        .or_insert_with(|| std::sync::Arc::new(read_data(intaken_store(), res)))
        .clone()
}

/// Asserts a data array read some other way equals the SAFE-made store's (shape and values).
fn assert_reads_like_safe(read: (Vec<u64>, Vec<u16>), res: Resolution, what: &str) {
    let (shape, data) = read;
    let safe = safe_data(res);
    let (shape2, data2) = (&safe.0, &safe.1);
    assert_eq!(&shape, shape2, "{what} {res}");
    assert!(
        &data == data2,
        "{what} {res}: values differ from the SAFE-made store"
    );
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_no_credentials(what: &str, text: &str) {
    assert!(!text.is_empty(), "{what}: no output to check");
    assert!(
        !text.contains(ACCESS_KEY) && !text.contains(SECRET_KEY),
        "{what} leaks a credential:\n{text}"
    );
}

/// Every file under `dir` (relative paths).
fn files(dir: &Path) -> BTreeSet<String> {
    tree(dir).into_keys().collect()
}

/// Nothing partial in a source cache, and every cached object equals the archive's file.
fn assert_cache_complete(cache: &Path, archive: &Path) -> usize {
    let mut n = 0;
    for (rel, bytes) in tree(cache) {
        assert!(!rel.contains(".part-"), "partial download left: {rel}");
        if rel.starts_with("j2k-index/") {
            continue; // the tile-part indexes whole files give for free
        }
        let orig = std::fs::read(archive.join(&rel)).unwrap();
        assert!(bytes == orig, "{rel}: cached copy differs from the archive");
        n += 1;
    }
    n
}

fn chunk_keys(store: &Path, res: Resolution) -> Vec<String> {
    let base = format!("35VLH/{YEAR}/{}/data/", res.name());
    tree(store)
        .into_keys()
        .filter(|k| k.starts_with(&base) && !k.ends_with("zarr.json"))
        .collect()
}

#[test]
fn intake_and_mount_from_cdse_equal_safe_and_xarray_reads_the_s3_store() {
    let f = fixture();
    let safe_store = intaken_store();
    let work = work_dir("cdse-equal");
    let emu = Emulator::start(&f.archive, &work);
    let env = emu.aws_env();

    // intake --source cdse into s3://cubes/intake (most verbose logging: still no credentials).
    let args = cdse_args(
        &emu.stac_url,
        None,
        &work.join("cache-intake"),
        &["--store-profile", "cdse"],
    );
    let out = intake("s3://cubes/intake", &args, &env, "trace,fuser=info");
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("21 scenes"), "{log}");
    assert_no_credentials("intake --source cdse (RUST_LOG=trace)", &log);
    assert_same_store(safe_store, &emu.bucket_dir("cubes").join("intake"));
    let n = assert_cache_complete(&work.join("cache-intake"), &f.archive);
    // 22 products × 2 metadata files + 21 kept scenes × 13 bands.
    assert_eq!(n, 22 * 2 + 21 * 13);

    // info reads the S3 store.
    let out = Command::new(bin())
        .args([
            "info",
            "s3://cubes/intake",
            "--store-profile",
            "cdse",
            "--json",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = info["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r["scenes"], 21, "{r}");
        assert_eq!(r["chunks_missing"], 0, "{r}");
    }
    assert_eq!(info["summary"]["progress"], 1.0, "{info}");
    // The bucket's objects, counted by listing it, are what info reports.
    let listed = files(&emu.bucket_dir("cubes").join("intake")).len() as u64;
    assert_eq!(info["summary"]["objects"], listed, "{info}");

    // xarray opens the S3 store straight from the bucket; values equal the SAFE-made store.
    let py = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_s3_store.py"))
        .arg(&emu.s3_endpoint)
        .arg(format!("s3://cubes/intake/35VLH/{YEAR}"))
        .arg(safe_store.join(format!("35VLH/{YEAR}")))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
    assert!(String::from_utf8_lossy(&py.stdout).starts_with("ok "));
    // So does zarrs (object_store over S3).
    for res in Resolution::ALL {
        let read = read_data_s3(&emu.s3_endpoint, "cubes", "intake", res);
        assert_reads_like_safe(read, res, "zarrs over S3");
    }

    // mount --source cdse over an empty directory store: everything read equals the SAFE store,
    // and after unmounting the written-back store is byte-identical to it.
    let store = work.join("mount-store");
    let m = Mounted::start_with(
        &work,
        &store.display().to_string(),
        &cdse_args(&emu.stac_url, None, &work.join("cache-mount"), &[]),
        &env,
    );
    for res in Resolution::ALL {
        assert_reads_like_safe(read_data(&m.mnt, res), res, "the cdse mount");
    }
    let s = m.stats();
    assert!(stat(&s, "/source_io/s3_peak_in_flight") <= 4, "{s}");
    assert!(stat(&s, "/source_io/downloads") >= 21 * 13, "{s}");
    let log = m.log_text();
    assert!(m.terminate().success());
    assert_no_credentials("mount --source cdse", &log);
    assert_same_store(safe_store, &store);

    // mount over the S3 store intake made: served from the bucket, nothing computed.
    let m = Mounted::start_with(
        &work,
        "s3://cubes/intake",
        &cdse_args(
            &emu.stac_url,
            None,
            &work.join("cache-mount2"),
            &["--store-profile", "cdse"],
        ),
        &env,
    );
    let res = Resolution::R20;
    assert_reads_like_safe(read_data(&m.mnt, res), res, "a mount over the S3 store");
    let s = m.stats();
    assert_eq!(stat(&s, "/fs/materializations"), 0, "{s}");
    assert_eq!(stat(&s, "/source_io/s3_requests"), 0, "{s}");
    assert!(stat(&s, "/fs/store_reads") > 0, "{s}");
    assert!(m.terminate().success());
}

#[test]
fn mount_writes_back_to_an_s3_store() {
    let f = fixture();
    let safe_store = intaken_store();
    let work = work_dir("cdse-s3-writeback");
    let emu = Emulator::start(&f.archive, &work);
    let m = Mounted::start_with(
        &work,
        "s3://cubes/mounted/cube",
        &cdse_args(
            &emu.stac_url,
            None,
            &work.join("cache"),
            &["--store-profile", "cdse"],
        ),
        &emu.aws_env(),
    );
    for res in Resolution::ALL {
        assert_reads_like_safe(read_data(&m.mnt, res), res, "a mount writing back to S3");
    }
    assert!(m.terminate().success());
    // The bucket holds the same objects, byte for byte (s3s-fs keeps objects as files).
    assert_same_store(safe_store, &emu.bucket_dir("cubes").join("mounted/cube"));
}

#[test]
fn paging_with_a_small_limit_and_per_day_search_find_every_item() {
    use datacube::remote::retry::RetryPolicy;
    use datacube::s2::stac::client::StacClient;
    let f = fixture();
    let work = work_dir("cdse-paging");
    let emu = Emulator::start(&f.archive, &work);
    let expected: BTreeSet<String> = std::fs::read_dir(f.archive.join("stac/sentinel-2-l1c"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(expected.len(), SCENES + 1);
    let client = StacClient::new(&emu.stac_url, RetryPolicy::default(), 3).unwrap();
    let ids = |items: &[serde_json::Value]| -> BTreeSet<String> {
        items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let y0 = chrono::NaiveDate::from_ymd_opt(YEAR, 1, 1).unwrap();
    let y1 = chrono::NaiveDate::from_ymd_opt(YEAR, 12, 31).unwrap();
    let start = y0.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let end = y1.and_hms_milli_opt(23, 59, 59, 999).unwrap().and_utc();
    let r = datacube::remote::block_on(client.search_tile("35VLH", start, end)).unwrap();
    assert_eq!(r.items.len(), expected.len(), "no item twice");
    assert_eq!(ids(&r.items), expected);
    assert!(r.pages >= expected.len().div_ceil(3), "{} pages", r.pages);

    let r = datacube::remote::block_on(client.search_tile_per_day("35VLH", y0, y1)).unwrap();
    assert_eq!(ids(&r.items), expected);
    assert!(r.pages >= 366);

    // The CQL2 filter and the datetime range select.
    let r = datacube::remote::block_on(client.search_tile("35VLJ", start, end)).unwrap();
    assert!(r.items.is_empty());
    let r = datacube::remote::block_on(client.search_tile(
        "35VLH",
        start + chrono::Duration::days(366),
        end + chrono::Duration::days(366),
    ))
    .unwrap();
    assert!(r.items.is_empty());

    // The source's scan with a page of 3 (and per day) equals the SAFE archive's scan.
    emu.set_aws_env();
    let safe = datacube::s2::catalog::scan_safe_archive(
        &f.archive,
        datacube::s2::product::ProductLevel::L1C,
        "35VLH",
        YEAR,
    )
    .unwrap();
    for per_day in [false, true] {
        let src = datacube::source::CdseSource::new(datacube::source::CdseOptions {
            stac_url: emu.stac_url.clone(),
            stac_limit: 3,
            per_day,
            cache_dir: work.join("cache"),
            ..Default::default()
        })
        .unwrap();
        let scan = datacube::source::BandSource::scan(&src, "35VLH", YEAR).unwrap();
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(scan.scenes, safe.scenes, "per_day {per_day}");
        assert_eq!(scan.superseded, safe.superseded);
    }
}

#[test]
fn stac_429_then_200_is_retried() {
    let f = fixture();
    let work = work_dir("cdse-429");
    let emu = Emulator::start(&f.archive, &work);
    let stac = Proxy::start(&emu.stac_url);
    stac.plan([
        Fault {
            retry_after: Some(1),
            ..Fault::status(429)
        },
        Fault::status(429),
    ]);
    let (store, out, log) = intake_cdse(&work, &stac.url, None, &emu.aws_env());
    assert!(out.status.success(), "{log}");
    assert_eq!(
        stac.state
            .faults_served
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(log.matches("HTTP 429").count(), 2, "{log}");
    assert_same_store(intaken_store(), &store);
}

#[test]
fn stac_500_forever_fails_clearly_and_persists_nothing() {
    let f = fixture();
    let work = work_dir("cdse-500");
    let emu = Emulator::start(&f.archive, &work);
    let stac = Proxy::start(&emu.stac_url);
    stac.always(Some(Fault::status(500)));
    let (store, out, log) = intake_cdse(&work, &stac.url, None, &emu.aws_env());
    assert!(!out.status.success(), "{log}");
    assert!(log.contains(&format!("POST {}/search", stac.url)), "{log}");
    assert!(
        log.contains("HTTP 500") && log.contains("failed after 4 attempt(s)"),
        "{log}"
    );
    assert_eq!(stac.requests(), 4, "1 attempt + 3 retries");
    assert_no_credentials("intake with STAC down", &log);
    assert!(
        files(&store).iter().all(|k| !k.starts_with("35VLH")),
        "persisted: {:?}",
        files(&store)
    );

    // The mount answers EIO for the year, keeps serving, and resolves it once STAC recovers.
    let m = Mounted::start_with(
        &work,
        &store.display().to_string(),
        &cdse_args(&stac.url, None, &work.join("cache"), &[]),
        &emu.aws_env(),
    );
    let year_meta = m.path(&format!("35VLH/{YEAR}/zarr.json"));
    let e = std::fs::read(&year_meta).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(stat(&m.stats(), "/fs/year_errors") >= 1);
    assert!(files(&store).iter().all(|k| !k.starts_with("35VLH")));
    stac.always(None);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&year_meta).unwrap()).unwrap();
    assert_eq!(meta["node_type"], "group");
    let names: BTreeSet<String> = std::fs::read_dir(m.path(&format!("35VLH/{YEAR}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains("10m") && names.contains("zarr.json"),
        "{names:?}"
    );
    let log = m.log_text();
    assert!(m.terminate().success());
    assert_no_credentials("mount with STAC down", &log);
}

#[test]
fn stac_malformed_json_fails_clearly_without_retrying() {
    let f = fixture();
    let work = work_dir("cdse-badjson");
    let emu = Emulator::start(&f.archive, &work);
    let stac = Proxy::start(&emu.stac_url);
    stac.always(Some(Fault {
        status: 200,
        retry_after: None,
        body: "{\"type\": \"FeatureCollection\", \"features\": [{\"id\": ".into(),
    }));
    let (store, out, log) = intake_cdse(&work, &stac.url, None, &emu.aws_env());
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("invalid JSON") && log.contains("FeatureCollection"),
        "{log}"
    );
    assert!(
        log.contains(&format!("POST {}/search (page 1)", stac.url)),
        "{log}"
    );
    assert_eq!(stac.requests(), 1, "malformed JSON is not retried");
    assert!(files(&store).iter().all(|k| !k.starts_with("35VLH")));
}

#[test]
fn s3_stopped_mid_download_gives_eio_then_the_same_read_succeeds() {
    let f = fixture();
    let work = work_dir("cdse-s3-down");
    let mut emu = Emulator::start(&f.archive, &work);
    let s3 = Proxy::start(&emu.s3_endpoint);
    let cache = work.join("cache");
    let store = work.join("store");
    let m = Mounted::start_with(
        &work,
        &store.display().to_string(),
        &cdse_args(&emu.stac_url, Some(&s3.url), &cache, &[]),
        &emu.aws_env(),
    );
    // Resolve the year (metadata downloads) before slowing the band transfers down.
    assert!(m.path(&format!("35VLH/{YEAR}/10m/zarr.json")).exists());
    s3.throttle(Some(100_000));
    let rel = format!("35VLH/{YEAR}/10m/data/c/0/0/0/0");
    let path = m.path(&rel);
    let reader = std::thread::spawn(move || std::fs::read(path));
    let t0 = Instant::now();
    while s3.state.streaming.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no download started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Mid-download: the server dies (in-flight responses cut, connections refused).
    s3.set_outage(true);
    emu.stop_s3();
    let e = reader.join().unwrap().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // The daemon lives and serves what needs no download.
    let s = m.stats();
    assert!(stat(&s, "/fs/materialize_errors") >= 1, "{s}");
    assert!(stat(&s, "/source_io/s3_failed_attempts") >= 1, "{s}");
    assert!(m.path(&format!("35VLH/{YEAR}/20m/band")).exists());
    // Nothing partial anywhere.
    assert_cache_complete(&cache, &f.archive);
    assert!(!store.join(&rel).exists());
    // Server back: the same read succeeds, byte-identical to the SAFE-made store's chunk.
    emu.start_s3();
    s3.set_outage(false);
    s3.throttle(None);
    let bytes = std::fs::read(m.path(&rel)).unwrap();
    assert!(bytes == std::fs::read(intaken_store().join(&rel)).unwrap());
    let log = m.log_text();
    assert!(m.terminate().success());
    assert!(
        log.contains("materializing") && log.contains("eodata/Sentinel-2/MSI/L1C"),
        "{log}"
    );
    assert_no_credentials("mount with S3 down", &log);
    assert!(std::fs::read(store.join(&rel)).unwrap() == bytes);
    assert_cache_complete(&cache, &f.archive);
}

#[test]
fn a_truncated_object_is_detected_and_nothing_partial_is_kept() {
    let f = fixture();
    let archive = copy_archive("cdse-truncated-archive");
    let work = work_dir("cdse-truncated");
    let p = f.kept()[0];
    let band = band_file(f, p, "B04");
    let rel = band.strip_prefix(&f.archive).unwrap().to_path_buf();
    let full = std::fs::metadata(&band).unwrap().len();
    let cut = archive.join(&rel);
    let fh = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    fh.set_len(full / 2).unwrap();
    drop(fh);
    let emu = Emulator::start(&archive, &work);
    let (store, out, log) = intake_cdse(&work, &emu.stac_url, None, &emu.aws_env());
    let cache = work.join("cache");
    assert_eq!(out.status.code(), Some(1), "{log}");
    let key = rel.display().to_string();
    assert!(log.contains("size mismatch") && log.contains(&key), "{log}");
    assert!(log.contains(&format!("file:size is {full}")), "{log}");
    assert!(!cache.join(&key).exists(), "a truncated object was cached");
    assert_cache_complete(&cache, &archive);
    // The 10 m chunks of the first time chunk are missing, everything else is there.
    let stored = files(&store);
    assert!(!stored.contains(&format!("35VLH/{YEAR}/10m/data/c/0/0/0/0")));
    let safe = files(intaken_store());
    for k in &safe {
        if k.contains("/20m/data/c/") || k.contains("/60m/data/c/") {
            assert!(stored.contains(k), "{k} missing");
        }
    }
}

#[test]
fn the_s3_server_never_sees_more_than_max_connections() {
    let f = fixture();
    let work = work_dir("cdse-connections");
    let emu = Emulator::start(&f.archive, &work);
    let s3 = Proxy::start(&emu.s3_endpoint);

    // A mount capped at 3, read by 8 concurrent readers over every chunk.
    let m = Mounted::start_with(
        &work,
        &work.join("store").display().to_string(),
        &cdse_args(
            &emu.stac_url,
            Some(&s3.url),
            &work.join("cache-mount"),
            &["--max-connections", "3", "--threads", "4"],
        ),
        &emu.aws_env(),
    );
    let mut keys: Vec<PathBuf> = Vec::new();
    for res in Resolution::ALL {
        for k in chunk_keys(intaken_store(), res) {
            keys.push(m.path(&k));
        }
    }
    let keys = std::sync::Arc::new(keys);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let keys = keys.clone();
            std::thread::spawn(move || {
                for k in keys.iter().skip(i).step_by(8) {
                    std::fs::read(k).unwrap();
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let s = m.stats();
    assert!(m.terminate().success());
    eprintln!(
        "mount: {} S3 requests, peak {} in flight at the server",
        s3.requests(),
        s3.peak()
    );
    assert!(
        s3.peak() <= 3,
        "server saw {} concurrent requests",
        s3.peak()
    );
    assert!(
        s3.peak() >= 2,
        "the readers never overlapped: test too weak"
    );
    assert_eq!(stat(&s, "/source_io/s3_requests") as usize, s3.requests());

    // Intake with the default cap (4).
    let s3 = Proxy::start(&emu.s3_endpoint);
    let out = intake(
        &work.join("store-intake").display().to_string(),
        &cdse_args(
            &emu.stac_url,
            Some(&s3.url),
            &work.join("cache-intake"),
            &[],
        ),
        &emu.aws_env(),
        "info",
    );
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("intake: {} S3 requests, peak {}", s3.requests(), s3.peak());
    assert!(
        s3.peak() <= 4,
        "server saw {} concurrent requests",
        s3.peak()
    );
    assert!(s3.peak() >= 2);
}

#[test]
fn wrong_credentials_fail_clearly_without_leaking_them() {
    let f = fixture();
    let work = work_dir("cdse-wrong-credentials");
    let emu = Emulator::start(&f.archive, &work);
    let wrong_secret = "Wr0ngSecretDatacube/TestValue+42";
    let creds = work.join("wrong-credentials");
    std::fs::write(
        &creds,
        format!(
            "[cdse]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {wrong_secret}\n"
        ),
    )
    .unwrap();
    let mut env = emu.aws_env();
    env.retain(|(k, _)| k != "AWS_SHARED_CREDENTIALS_FILE");
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        creds.display().to_string(),
    ));
    let store = work.join("store");
    let out = intake(
        &store.display().to_string(),
        &cdse_args(&emu.stac_url, None, &work.join("cache"), &[]),
        &env,
        "debug",
    );
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("SignatureDoesNotMatch"), "{log}");
    assert!(
        log.contains("downloading s3://eodata/Sentinel-2/MSI/L1C/"),
        "{log}"
    );
    assert!(!log.contains(wrong_secret), "{log}");
    assert_no_credentials("intake with wrong credentials", &log);
    assert!(files(&store).iter().all(|k| !k.starts_with("35VLH")));
}

#[test]
fn the_s3_store_keeps_the_store_contract() {
    let f = fixture();
    let work = work_dir("cdse-s3-conformance");
    let emu = Emulator::start(&f.archive, &work);
    emu.set_aws_env();
    let opts = datacube::remote::s3::S3Options {
        profile: Some("cdse".into()),
        endpoint: Some(emu.s3_endpoint.clone()),
        region: None,
    };
    let store = datacube::store::S3Store::open("s3://cubes/conformance-suite", &opts).unwrap();
    // s3s-fs 0.14.1 honours If-None-Match but checks it before writing, so only the sequential
    // create-once semantics are held to here; the race is tested on the atomic stores.
    datacube::store::conformance::run_with(&store, false).unwrap();

    // A profile without a region, and nothing telling the SDK to leave metadata endpoints alone:
    // the client must settle on region `default` without probing EC2/ECS metadata (which would
    // log WARN lines, and wait on a network that is not there).
    let aws = work.join("aws-no-region");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        format!("[profile cdse]\nendpoint_url = {}\n", emu.s3_endpoint),
    )
    .unwrap();
    std::fs::copy(work.join("aws/credentials"), aws.join("credentials")).unwrap();
    let out = Command::new(bin())
        .args([
            "info",
            "s3://cubes/conformance-suite",
            "--store-profile",
            "cdse",
        ])
        .env("RUST_LOG", "info")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_CONFIG_FILE", aws.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("WARN"),
        "warnings without a configured region: {err}"
    );
}

/// The 10 m band files of the products in `archive` (B02, B03, B04, B08), by archive key.
/// Writes `spec`'s archive in `work/archive` and intakes it from the SAFE directory into
/// `work/safe-store` (the oracle of the tile-part tests).
fn archive_and_safe_store(
    spec: &datacube_tools::fixture::FixtureSpec,
    work: &Path,
) -> (PathBuf, PathBuf) {
    let archive = work.join("archive");
    datacube_tools::fixture::write_archive(spec, &archive, false).unwrap();
    let reference = work.join("safe-store");
    let safe = [
        "--source".to_string(),
        format!("safe:{}", archive.display()),
    ];
    let out = intake(&reference.display().to_string(), &safe, &[], "info");
    assert!(out.status.success(), "{}", text(&out));
    (archive, reference)
}

fn band_files_10m(archive: &Path) -> BTreeSet<String> {
    tree(archive)
        .into_keys()
        .filter(|k| {
            ["_B02.jp2", "_B03.jp2", "_B04.jp2", "_B08.jp2"]
                .iter()
                .any(|b| k.ends_with(b))
        })
        .collect()
}

#[test]
fn reading_by_tile_part_makes_the_same_store_and_fetches_only_what_a_chunk_needs() {
    use datacube_tools::fixture::{plan, FixtureSize, FixtureSpec};
    let work = work_dir("cdse-tile-parts");
    // A mixed archive as CDSE has it: the older products without TLM markers, the newer with.
    let mut spec = FixtureSpec::new(YEAR, 4, FixtureSize::Mini);
    let kept: Vec<_> = plan(&spec).into_iter().filter(|p| !p.superseded).collect();
    spec.tlm_since_ms = Some(kept[2].sensing_ms);
    let (archive, reference) = archive_and_safe_store(&spec, &work);
    let emu = Emulator::start(&archive, &work);
    let env = emu.aws_env();

    // Intake reading only tile-parts: the same store as from the SAFE directory.
    let store = work.join("store-ranges");
    let args = cdse_args(
        &emu.stac_url,
        None,
        &work.join("cache-intake"),
        &["--fetch", "ranges"],
    );
    let out = intake(&store.display().to_string(), &args, &env, "info");
    assert!(out.status.success(), "{}", text(&out));
    assert_same_store(&reference, &store);

    // A cold 10 m chunk through the mount: per (scene, band) the main header and the tile-parts
    // of the one JP2 tile the chunk lies in (the 74-pixel-wide last column of tiles).
    let chunk = format!("35VLH/{YEAR}/10m/data/c/0/0/0/2");
    let want = std::fs::read(reference.join(&chunk)).unwrap();
    let files = band_files_10m(&archive);
    let kept_files: Vec<&String> = files
        .iter()
        .filter(|k| kept.iter().any(|p| k.contains(&p.product_id)))
        .collect();
    assert_eq!(kept_files.len(), 16);
    let file_bytes: u64 = kept_files
        .iter()
        .map(|k| std::fs::metadata(archive.join(k)).unwrap().len())
        .sum();
    let cache = work.join("cache-mount");
    let mount = |name: &str, cache: &Path, read: &str| {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let m = Mounted::start_with(
            &dir,
            &dir.join("store").display().to_string(),
            &cdse_args(&emu.stac_url, None, cache, &["--fetch", "ranges"]),
            &env,
        );
        let got = std::fs::read(m.path(read));
        let s = m.stats();
        let log = m.log_text();
        assert!(m.terminate().success());
        (got, s, log)
    };
    let (got, s, log) = mount("m1", &cache, &chunk);
    assert!(
        got.as_ref().ok() == Some(&want),
        "{chunk} differs from the SAFE store's\n{log}"
    );
    let tp = |s: &serde_json::Value, k: &str| stat(s, &format!("/source_io/tile_parts/{k}"));
    assert!(
        !tree(&cache)
            .keys()
            .any(|k| k.starts_with("Sentinel-2/") && k.ends_with(".jp2")),
        "a whole band file was downloaded"
    );
    assert_eq!(tp(&s, "indexes_built"), 16, "{s}");
    // With TLM: one request for header and index, one for the tile-parts (8 files); without:
    // the SOT walk, then one.
    assert_eq!(tp(&s, "tlm_index_requests"), 8, "{s}");
    assert_eq!(
        tp(&s, "segment_requests"),
        16,
        "one ranged GET per (scene, band): {s}"
    );
    assert_eq!(tp(&s, "late_fetches"), 0, "{s}");
    assert_eq!(
        stat(&s, "/source_io/s3_range_requests"),
        tp(&s, "index_requests") + tp(&s, "segment_requests"),
        "{s}"
    );
    assert!(
        tp(&s, "segment_bytes") * 5 < file_bytes,
        "{} of {file_bytes} bytes fetched",
        tp(&s, "segment_bytes")
    );

    // Another mount with the same source cache: indexes are not built again (not even the SOT
    // walks), another tile's parts are fetched and nothing else.
    let chunk2 = format!("35VLH/{YEAR}/10m/data/c/0/0/2/0");
    let (got, s, log) = mount("m2", &cache, &chunk2);
    let want2 = std::fs::read(reference.join(&chunk2)).unwrap();
    assert!(got.as_ref().ok() == Some(&want2), "{chunk2}\n{log}");
    assert_eq!(tp(&s, "indexes_built"), 0, "{s}");
    assert_eq!(tp(&s, "index_requests"), 0, "{s}");
    assert_eq!(tp(&s, "segment_requests"), 16, "{s}");

    // A file whose TLM disagrees with its SOT markers: EIO for the chunk, a log line naming the
    // file and the range, and none of its tile-parts cached.
    let bad_key = kept_files
        .iter()
        .find(|k| k.contains(&kept[3].product_id) && k.ends_with("_B02.jp2"))
        .unwrap()
        .to_string();
    let path = archive.join(&bad_key);
    let mut bytes = std::fs::read(&path).unwrap();
    let tlm = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0x55])
        .expect("a TLM marker");
    // Lengths of tile-parts 0 and 1 (Stlm says 2-byte Ttlm, 4-byte Ptlm: GDAL's choice), moved
    // by one byte each way: the sum stays the file's, every offset after part 0 is off by one.
    let stlm = bytes[tlm + 5];
    let (tw, pw) = (
        ((stlm >> 4) & 3) as usize,
        if stlm & 0x40 != 0 { 4 } else { 2 },
    );
    assert_eq!(pw, 4, "Stlm {stlm:#x}");
    let e0 = tlm + 6 + tw;
    let e1 = e0 + pw + tw;
    let p0 = u32::from_be_bytes(bytes[e0..e0 + 4].try_into().unwrap());
    let p1 = u32::from_be_bytes(bytes[e1..e1 + 4].try_into().unwrap());
    bytes[e0..e0 + 4].copy_from_slice(&(p0 + 1).to_be_bytes());
    bytes[e1..e1 + 4].copy_from_slice(&(p1 - 1).to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let cache3 = work.join("cache-bad");
    let (got, _, log) = mount("m3", &cache3, &chunk);
    let e = got.expect_err("a chunk of a broken file was served");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(log.contains(&bad_key) && log.contains("bytes"), "{log}");
    assert!(
        !tree(&cache3)
            .keys()
            .any(|k| k.starts_with(&format!("tiles/{bad_key}/p"))),
        "a tile-part of the broken file was cached"
    );
}

/// The tile-part index of a local JP2 (the test's own view of where each tile's bytes are).
fn local_index(path: &Path) -> datacube::source::j2k_index::J2kIndex {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    let mut read = |off: u64, len: u64| -> anyhow::Result<Vec<u8>> {
        let mut b = vec![0u8; len.min(size - off) as usize];
        f.read_exact_at(&mut b, off)?;
        Ok(b)
    };
    datacube::source::j2k_index::read_index(&mut read, size).unwrap()
}

#[test]
fn tile_parts_answered_wrongly_fail_their_chunk_and_nothing_bad_is_cached() {
    use datacube_tools::fixture::{plan, FixtureSize, FixtureSpec};
    let work = work_dir("cdse-tile-part-faults");
    let mut spec = FixtureSpec::new(YEAR, 2, FixtureSize::Mini);
    spec.tlm_since_ms = Some(0); // every product with TLM
    let kept: Vec<_> = plan(&spec).into_iter().filter(|p| !p.superseded).collect();
    let (archive, reference) = archive_and_safe_store(&spec, &work);

    // One band file answers wrongly, a different fault per JP2 tile (2 × 2 tiles of 1024 px):
    // tile 0's tile-part → 416; tile 1's → a 206 whose Content-Range names one byte instead of
    // the range asked (the proxy rewrites the answer's header: it cannot change the request,
    // which is signed); tile 2's is cut short later by truncating the object. The head (header
    // and TLM) is served right.
    let bad_key = band_files_10m(&archive)
        .into_iter()
        .find(|k| k.contains(&kept[0].product_id) && k.ends_with("_B02.jp2"))
        .unwrap();
    let original = std::fs::read(archive.join(&bad_key)).unwrap();
    let idx = local_index(&archive.join(&bad_key));
    let part_of = |tile: u16| idx.parts_of(&[tile])[0];
    let (p0, p1, p2) = (part_of(0), part_of(1), part_of(2));
    let faults = work.join("faults.conf");
    std::fs::write(
        &faults,
        format!(
            r#"location = /eodata/{bad_key} {{
  if ($http_range ~ "^bytes={o0}-") {{ return 416; }}
  if ($http_range ~ "^bytes={o1}-") {{ rewrite ^ /fault-one-byte$uri last; }}
  proxy_pass $s3_upstream;
}}
location ^~ /fault-one-byte/ {{
  internal;
  rewrite ^/fault-one-byte(.*)$ $1 break;
  proxy_pass $s3_upstream;
  proxy_hide_header Content-Range;
  add_header Content-Range "bytes {o1}-{o1}/{size}" always;
}}
"#,
            o0 = p0.offset,
            o1 = p1.offset,
            size = idx.size,
        ),
    )
    .unwrap();
    let emu = Emulator::start_with(
        &archive,
        &work,
        &["--proxy-faults", &faults.display().to_string()],
    );
    let env = emu.aws_env();
    let cache = work.join("cache");
    let dir = work.join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let m = Mounted::start_with(
        &dir,
        &dir.join("store").display().to_string(),
        &cdse_args(&emu.stac_url, None, &cache, &["--fetch", "ranges"]),
        &env,
    );
    let chunk = |res: &str, c: &str| format!("35VLH/{YEAR}/{res}/data/c/0/0/{c}");
    let eio = |rel: &str, range: (u64, u64), why: &str| {
        let e = std::fs::read(m.path(rel)).expect_err("a chunk of a file answered wrongly");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{rel}: {e}");
        let log = m.log_text();
        let named = format!("{bad_key} bytes {}-{}", range.0, range.1);
        assert!(
            log.lines()
                .any(|l| l.contains(&named) && l.contains(why) && l.contains(rel)),
            "no log line naming {rel}, {named} and {why:?}:\n{log}"
        );
    };
    let end = |p: datacube::source::j2k_index::TilePart| {
        (p.offset + p.len + datacube::source::tile_parts::MARGIN).min(idx.size) - 1
    };
    eio(&chunk("10m", "0/0"), (p0.offset, end(p0)), "416");
    eio(&chunk("10m", "0/2"), (p1.offset, end(p1)), "Content-Range");
    // The object shrinks after its index was taken (replaced by a cut copy): the tile-part's
    // answer is cut at the new end.
    std::fs::write(
        archive.join(&bad_key),
        &original[..(p2.offset + p2.len / 2) as usize],
    )
    .unwrap();
    eio(&chunk("10m", "2/0"), (p2.offset, end(p2)), "replaced");
    // The daemon serves everything else: a 20 m chunk, right.
    let ok = chunk("20m", "0/0");
    assert_eq!(
        std::fs::read(m.path(&ok)).unwrap(),
        std::fs::read(reference.join(&ok)).unwrap()
    );
    assert!(m.terminate().success());

    // Nothing bad cached: every cached segment of every file is that file's bytes at its offset,
    // and none of the three failed tile-parts is there.
    let mut segments = 0;
    for (k, bytes) in tree(&cache) {
        let Some(rest) = k.strip_prefix("tiles/") else {
            continue;
        };
        let (key, name) = rest.rsplit_once('/').unwrap();
        let file = if key == bad_key {
            original.clone()
        } else {
            std::fs::read(archive.join(key)).unwrap()
        };
        let off: usize = match name {
            "head" => 0,
            "tail" => file.len() - bytes.len(),
            n => n.strip_prefix('p').unwrap().parse().unwrap(),
        };
        assert_eq!(&file[off..off + bytes.len()], &bytes[..], "cached {k}");
        segments += 1;
        if key == bad_key {
            for p in [p0, p1, p2] {
                assert_ne!(name, format!("p{}", p.offset), "failed tile-part cached");
            }
        }
    }
    assert!(segments > 0);

    // A source cache smaller than what is read: said once in the log and in stats, and the
    // tile-parts evicted and needed again are counted as refetches (two 20 m chunks in one
    // JP2 tile of each file, a 1 MiB cap).
    let dir = work.join("m-small");
    std::fs::create_dir_all(&dir).unwrap();
    let m = Mounted::start_with(
        &dir,
        &dir.join("store").display().to_string(),
        &cdse_args(
            &emu.stac_url,
            None,
            &work.join("cache-small"),
            &["--fetch", "ranges", "--source-cache-size", "1MiB"],
        ),
        &env,
    );
    for c in ["0/0", "0/1", "1/0"] {
        let rel = chunk("20m", c);
        assert_eq!(
            std::fs::read(m.path(&rel)).unwrap(),
            std::fs::read(reference.join(&rel)).unwrap(),
            "{rel}"
        );
    }
    let s = m.stats();
    let log = m.log_text();
    assert!(m.terminate().success());
    assert_eq!(log.matches("exceed its cap").count(), 1, "{log}");
    assert_eq!(
        s.pointer("/source_io/cache_over_cap"),
        Some(&serde_json::json!(true))
    );
    assert!(
        stat(&s, "/source_io/cache_working_set_bytes") > 1 << 20,
        "{s}"
    );
    assert!(stat(&s, "/source_io/cache_refetches") > 0, "{s}");
}

#[test]
fn at_the_quotas_429s_are_retried_with_backoff_and_connections_stay_within_the_limit() {
    let f = fixture();
    let work = work_dir("cdse-quota");
    // 20 requests a second beyond a burst of 5: an intake by tile-part (several small requests
    // per file; the 60 m group: 3 band files per product) runs into it again and again.
    let emu = Emulator::start_with(
        &f.archive,
        &work,
        &["--quota", "--quota-rpm", "1200", "--quota-burst", "5"],
    );
    // The client's concurrency as the client sees it: a proxy of the test's own in front of
    // nginx (nginx itself counts a request until it has finalized it).
    let s3 = Proxy::start(&emu.s3_endpoint);
    let mut env = emu.aws_env();
    env.push(("DATACUBE_TEST_RETRY_DELAY_MS".into(), "200".into()));
    let args: Vec<String> = [
        "--source",
        "cdse",
        "--stac-url",
        &emu.stac_url,
        "--s3-endpoint",
        &s3.url,
        "--source-cache",
        &work.join("cache").display().to_string(),
        "--retries",
        "12",
        "--fetch",
        "ranges",
        "--resolutions",
        "60m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let store = work.join("store");
    let out = intake(&store.display().to_string(), &args, &env, "info");
    assert!(out.status.success(), "{}", text(&out));
    let group = format!("35VLH/{YEAR}/60m/data");
    let chunks = tree(&store.join(&group));
    assert!(!chunks.is_empty());
    assert_eq!(chunks, tree(&intaken_store().join(&group)));
    assert!(s3.peak() <= 4, "{} requests in flight at once", s3.peak());
    assert!(s3.peak() >= 2, "requests never overlapped: test too weak");

    // The server's log: `$msec $request_time $connection "$request" "$http_range" $status $bytes`.
    let log = std::fs::read_to_string(emu.run_dir.join("quota-requests.log")).unwrap();
    struct Line {
        start: f64,
        end: f64,
        what: String,
        status: u16,
    }
    eprintln!(
        "quota test: {} requests at the server, {} answered 429, peak {} in flight",
        log.lines().count(),
        log.lines().filter(|l| l.contains("\" 429 ")).count(),
        s3.peak()
    );
    let lines: Vec<Line> = log
        .lines()
        .map(|l| {
            let q: Vec<&str> = l.split('"').collect();
            let head: Vec<f64> = q[0]
                .split_whitespace()
                .take(2)
                .map(|x| x.parse().unwrap())
                .collect();
            Line {
                start: head[0] - head[1],
                end: head[0],
                what: format!("{} {}", q[1], q[3]),
                status: q[4].split_whitespace().next().unwrap().parse().unwrap(),
            }
        })
        .collect();
    let refused: Vec<(usize, &Line)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.status == 429)
        .collect();
    assert!(
        refused.len() >= 5,
        "{} answers 429: the rate limit was never reached, test too weak",
        refused.len()
    );
    // Every refused request came again, and not before the backoff's first delay (200 ms).
    // (The log is in order of completion: a retry is logged after the answer it follows.)
    for (i, r) in &refused {
        let again = lines[i + 1..]
            .iter()
            .filter(|l| l.what == r.what)
            .map(|l| l.start)
            .fold(f64::INFINITY, f64::min);
        assert!(again.is_finite(), "{} was not retried", r.what);
        assert!(
            again - r.end >= 0.19,
            "{} retried {:.3} s after its 429",
            r.what,
            again - r.end
        );
    }
    // Nothing was lost to the limits: every request line ended in a success at last.
    let ok: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.status < 300)
        .map(|l| l.what.as_str())
        .collect();
    assert!(refused.iter().all(|(_, r)| ok.contains(r.what.as_str())));
}
