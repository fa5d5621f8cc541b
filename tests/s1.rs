//! Sentinel-1 σ⁰ end to end: the synthetic EODC mirror → `datacube intake --collection
//! sentinel-1-sig0` → a sharded Zarr store whose every value (around every footprint) equals an
//! oracle of the same-day merge computed from the fixture formula; read with zarrs here and with
//! zarr-python/xarray/rioxarray in the venv. Bad input fails with the item and file named and
//! persists nothing partial.

mod common;

use common::s1::*;
use datacube_tools::fixture::s1_slices::{EAST, WEST};

#[test]
fn intaken_store_equals_the_merge_oracle() {
    let store = intaken_store();
    for tile in [WEST, EAST] {
        let n = assert_tile_matches_oracle(store, tile);
        assert!(n > 1_000_000, "{tile}: only {n} pixels compared");
        assert_eq!(
            stored_shards(store, tile),
            expected_shards(tile),
            "{tile}: shard objects"
        );
    }
}

/// Pixels of the western tile that exercise the rule (overlap of slices of one pass, the second
/// pass, VH-only edge, nodata, the all-nodata day), with their oracle values.
fn probe_pixels() -> Vec<serde_json::Value> {
    let days = expected_days(WEST);
    let mut out = Vec::new();
    for (t, (_, slices)) in days.iter().enumerate().take(3) {
        for (r, c) in [
            (2850, 2000),
            (2850, 3000),
            (1799, 1900),
            (1800, 3299),
            (2500, 2500),
            (100, 100),
            (2400, 2400),
        ] {
            let (vv, vh, sd, abs, rel) = expected_pixel(slices, r, c);
            let sensing = (sd >= 0).then(|| {
                chrono::DateTime::from_timestamp(datacube::s1::EPOCH_UNIX_S + sd, 0)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string()
            });
            out.push(serde_json::json!({"t": t, "row": r, "col": c, "vv": vv, "vh": vh, "sensing": sensing, "abs": abs, "rel": rel}));
        }
    }
    out
}

#[test]
fn xarray_and_rioxarray_read_the_s1_store() {
    let store = intaken_store();
    let days = expected_days(WEST);
    let expect = serde_json::json!({
        "days": days.len(),
        "dates": days.iter().map(|d| datacube::s1::iso_day(d.0)).collect::<Vec<_>>(),
        "pixels": probe_pixels(),
        "transform": [20.0, 0.0, 4_800_000.0, 0.0, -20.0, 1_800_000.0],
    });
    let path = store.join(format!("{WEST}/2024/20m"));
    let out = common::run_python(
        "check_s1_store.py",
        &[path.to_str().unwrap(), &expect.to_string()],
    );
    assert!(out.starts_with("ok 33 days"), "{out}");
}

/// A copy of the mirror to break.
fn mirror_copy(name: &str) -> common::WorkDir {
    let dir = common::work_dir(name);
    let status = std::process::Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", mirror().display()),
            dir.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn intake_east(mirror: &std::path::Path, store: &std::path::Path) -> anyhow::Result<()> {
    let st = datacube::store::DirStore::create(store)?;
    let src = datacube::s1::source::S1Source::open(
        &format!("file:{}", mirror.display()),
        &Default::default(),
    )?;
    datacube::s1::intake::intake_year(
        &st,
        &src,
        EAST,
        2024,
        datacube::intake::Part::WHOLE,
        &Default::default(),
        false,
    )
    .map(|_| ())
}

/// The eastern tile's slice of 2024-01-20 (the one covering shard row 1, column 0).
fn east_slice() -> datacube_tools::fixture::s1_slices::PlannedSlice {
    expected_days(EAST)[0].1[0].clone()
}

#[test]
fn a_missing_geotiff_names_item_and_file_and_a_rerun_completes() {
    let m = mirror_copy("s1-missing");
    let store = common::work_dir("s1-missing-store");
    let s = east_slice();
    let file = m.join(s.asset_path(1));
    let saved = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let e = format!("{:#}", intake_east(&m, &store).unwrap_err());
    assert!(e.contains(&s.item_id()), "{e}");
    assert!(e.contains(&s.file_name(1)), "{e}");
    // Nothing partial: every stored shard is one the oracle expects, and the region needing the
    // missing file has none.
    let stored = stored_shards(&store, EAST);
    let expected = expected_shards(EAST);
    for (name, keys) in &stored {
        for k in keys {
            assert!(expected[name].contains(k), "unexpected {name}/{k}");
            assert_ne!(k, "c/0/1/0", "{name}: the broken region was stored");
        }
    }
    std::fs::write(&file, saved).unwrap();
    intake_east(&m, &store).unwrap();
    assert_tile_matches_oracle(&store, EAST);
    assert_eq!(stored_shards(&store, EAST), expected);
}

#[test]
fn a_truncated_geotiff_or_another_crs_is_a_clear_error() {
    let s = east_slice();
    // Truncated: the strips are gone.
    let m = mirror_copy("s1-truncated");
    let file = m.join(s.asset_path(0));
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 3).unwrap();
    let store = common::work_dir("s1-truncated-store");
    let e = format!("{:#}", intake_east(&m, &store).unwrap_err());
    assert!(
        e.contains(&s.item_id()) && e.contains(&s.file_name(0)),
        "{e}"
    );
    assert!(
        !stored_shards(&store, EAST)
            .values()
            .flatten()
            .any(|k| k == "c/0/1/0"),
        "broken region stored"
    );

    // Another CRS than its item (LAEA Europe instead of the Equi7 EU projection).
    let m = mirror_copy("s1-crs");
    let file = m.join(s.asset_path(0));
    let moved = file.with_extension("orig.tif");
    std::fs::rename(&file, &moved).unwrap();
    let status = std::process::Command::new("gdal_translate")
        .args([
            "-q",
            "-a_srs",
            "EPSG:3035",
            moved.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let store = common::work_dir("s1-crs-store");
    let e = format!("{:#}", intake_east(&m, &store).unwrap_err());
    assert!(
        e.contains(&s.item_id()) && e.contains(&s.file_name(0)),
        "{e}"
    );
    assert!(e.contains("CRS"), "{e}");
}

#[test]
fn an_item_without_equi7_tile_id_stores_nothing() {
    let m = mirror_copy("s1-item");
    let s = east_slice();
    let item = m
        .join("stac/SENTINEL1_SIG0_20M")
        .join(EAST.to_string())
        .join(format!("{}.json", s.item_id()));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&item).unwrap()).unwrap();
    v["properties"]
        .as_object_mut()
        .unwrap()
        .remove("Equi7_TileID");
    std::fs::write(&item, serde_json::to_vec(&v).unwrap()).unwrap();
    let store = common::work_dir("s1-item-store");
    let e = format!("{:#}", intake_east(&m, &store).unwrap_err());
    assert!(
        e.contains(&s.item_id()) && e.contains(item.to_str().unwrap()),
        "{e}"
    );
    assert!(e.contains("Equi7_TileID"), "{e}");
    assert!(
        !store.join(EAST.to_string()).exists(),
        "something was stored"
    );
}

#[test]
fn an_s2_store_is_not_opened_as_s1() {
    let store = common::work_dir("s1-on-s2");
    let st = datacube::store::DirStore::create(&store).unwrap();
    datacube::store::Store::put(
        &st,
        "zarr.json",
        &datacube::s2::layout::root_group_file(
            datacube::s2::chunking::Chunking::Chunked,
            datacube::s2::product::ProductLevel::L1C,
        ),
    )
    .unwrap();
    let e = format!("{:#}", intake_east(mirror(), &store).unwrap_err());
    assert!(
        e.contains("holds collection sentinel-2-l1c, not sentinel-1-sig0"),
        "{e}"
    );
}

#[test]
fn the_mount_serves_the_merge_oracle_and_writes_back_what_intake_writes() {
    let work = common::work_dir("s1-mount");
    let store = work.join("store");
    let m = common::mount::Mounted::start_s1(&work, &store, mirror());
    let mnt = m.path("");
    // Every value around every footprint, through the mount (zarrs reading the mounted files).
    for tile in [WEST, EAST] {
        assert_tile_matches_oracle(&mnt, tile);
    }
    // A shard of only fill has no file: ENOENT, as in the store.
    let empty = m.path(&format!("{WEST}/2024/20m/VV/c/0/5/5"));
    assert_eq!(
        std::fs::metadata(&empty).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    let stats = m.stats();
    assert!(common::mount::stat(&stats, "/shards/materialized") > 0);
    assert_eq!(common::mount::stat(&stats, "/shards/materialize_errors"), 0);
    let status = m.terminate();
    assert!(status.success(), "{status}");
    // The writeback holds exactly what intake computes for the same regions.
    let intaken = intaken_store();
    for tile in [WEST, EAST] {
        let mounted = stored_shards(&store, tile);
        assert!(!mounted.is_empty(), "{tile}: nothing written back");
        for (name, keys) in &mounted {
            for k in keys {
                let rel = format!("{tile}/2024/20m/{name}/{k}");
                assert_eq!(
                    std::fs::read(store.join(&rel)).unwrap(),
                    std::fs::read(intaken.join(&rel)).unwrap(),
                    "{rel}"
                );
            }
        }
    }
    // The store alone is a readable S1 store: info knows it, zarrs reads the written values.
    let out = std::process::Command::new(common::bin())
        .arg("info")
        .arg(&store)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("E048N015T3 2024     20m     33"), "{text}");
    assert_tile_matches_oracle(&store, EAST);
    // A second mount serves the written regions from the store (nothing computed again).
    let m = common::mount::Mounted::start_s1(&work, &store, mirror());
    assert_tile_matches_oracle(&m.path(""), EAST);
    let stats = m.stats();
    assert_eq!(
        common::mount::stat(&stats, "/shards/materialized"),
        0,
        "{stats}"
    );
    assert!(
        common::mount::stat(&stats, "/shards/from_store") > 0,
        "{stats}"
    );
}

#[test]
fn from_the_emulated_eodc_intake_and_mount_serve_the_oracle() {
    use common::proxy::{Fault, Proxy};
    use datacube::s1::source::{EodcOptions, S1Source};
    let work = common::work_dir("s1-eodc");
    // The data server behind a proxy that counts requests and injects faults.
    let data_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(&format!("http://127.0.0.1:{data_port}"));
    let emu = EodcEmulator::start_with(
        mirror(),
        &work,
        &[
            "--data-port",
            &data_port.to_string(),
            "--asset-base",
            &proxy.url,
        ],
    );
    const BLOCK: u64 = 1 << 20;
    let opts = |cache: &str| EodcOptions {
        stac_limit: 1,
        cache_dir: work.join(cache),
        block_bytes: BLOCK,
        retry: datacube::remote::retry::RetryPolicy {
            max_retries: 2,
            min_delay: std::time::Duration::from_millis(20),
            max_delay: std::time::Duration::from_millis(100),
        },
        ..Default::default()
    };
    let intake = |store: &str, cache: &str| {
        let st = datacube::store::DirStore::create(work.join(store)).unwrap();
        let src = S1Source::open(&format!("eodc:{}", emu.stac_url), &opts(cache)).unwrap();
        let r = datacube::s1::intake::intake_year(
            &st,
            &src,
            EAST,
            2024,
            datacube::intake::Part::WHOLE,
            &Default::default(),
            false,
        );
        (r, src)
    };
    let rel = format!("{EAST}/2024/20m");
    let reference = common::tree(&intaken_store().join(&rel));
    // Shard objects a failed intake left: each must be one the mirror intake wrote, byte for byte.
    let assert_only_complete_shards = |store: &str| {
        for (k, v) in common::tree(&work.join(store).join(&rel)) {
            if k.contains("/c/") {
                assert!(
                    reference.get(&k) == Some(&v),
                    "{store}: {k} is not intake's"
                );
            }
        }
    };

    // Intake over HTTP: STAC search paged one item at a time (next links), GeoTIFF bytes by range
    // requests through the disk cache; the store equals the mirror intake's, byte for byte.
    let (r, src) = intake("store", "cache");
    r.unwrap();
    // Two items, one per page: the second page came from the first one's next link.
    assert_eq!(src.stac_requests(), 2, "paging");
    assert_tile_matches_oracle(&work.join("store"), EAST);
    assert_eq!(common::tree(&work.join("store").join(&rel)), reference);
    let blocks = assert_range_cache_matches_mirror(&work.join("cache"), mirror(), BLOCK);
    let stats = &src.ranges().unwrap().stats;
    assert_eq!(
        stats.gets.get() as usize,
        blocks,
        "one GET per cached block"
    );
    assert_eq!(
        proxy.requests(),
        (stats.gets.get() + stats.heads.get()) as usize
    );

    // With the data server unreachable, a second intake reads every range from the disk cache.
    proxy.set_outage(true);
    let (r, src) = intake("store-2", "cache");
    r.unwrap();
    proxy.set_outage(false);
    assert_eq!(src.ranges().unwrap().stats.gets.get(), 0);
    assert_eq!(common::tree(&work.join("store-2").join(&rel)), reference);

    // A server that fails every request: the error names the item, the URL and the range; nothing
    // is cached and no shard is stored.
    proxy.always(Some(Fault::status(503)));
    let (r, _) = intake("store-3", "cache-3");
    let e = format!("{:#}", r.unwrap_err());
    proxy.always(None);
    assert!(e.contains("HTTP 503") && e.contains(&proxy.url), "{e}");
    assert!(e.contains("SIG0_2024"), "no item named: {e}");
    assert!(
        !common::tree(&work.join("cache-3"))
            .keys()
            .any(|k| k.starts_with("ranges/")),
        "a failed request left something in the cache"
    );
    assert_only_complete_shards("store-3");

    // Responses cut mid-body (the server goes away during a slow transfer): the intake fails,
    // the cache holds only complete blocks, and a rerun completes the store.
    proxy.throttle(Some(512 << 10));
    std::thread::scope(|s| {
        let cut = s.spawn(|| {
            while proxy
                .state
                .streaming
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            proxy.set_outage(true);
        });
        let (r, _) = intake("store-4", "cache-4");
        cut.join().unwrap();
        assert!(r.is_err(), "the intake survived an outage");
    });
    proxy.set_outage(false);
    proxy.throttle(None);
    assert_range_cache_matches_mirror(&work.join("cache-4"), mirror(), BLOCK);
    assert_only_complete_shards("store-4");
    let (r, _) = intake("store-4", "cache-4");
    r.unwrap();
    assert_eq!(common::tree(&work.join("store-4").join(&rel)), reference);

    // The mount over HTTP, on an empty store: every value around every footprint of the eastern
    // tile (the western one's merges are the local mirror's mount test; its bytes come through
    // the same source).
    let m = common::mount::Mounted::start_s1_source(
        &work,
        &work.join("mount-store"),
        &format!("eodc:{}", emu.stac_url),
    );
    assert_tile_matches_oracle(&m.path(""), EAST);
    assert!(m.terminate().success());
    assert!(assert_range_cache_matches_mirror(&work.join("source-cache"), mirror(), 4 << 20) > 0);
}

/// A living S1 cube: a mount with `--refresh` takes up a late slice of a day already on its time
/// axis (the day's values change; its time chunk is computed again) and a new day (the axis
/// grows), both published while it runs, and serves the new oracle; afterwards every object and the
/// metadata the store holds are a clean intake's of the final mirror, byte for byte.
#[test]
fn a_refreshing_mount_takes_up_late_slices_and_new_days() {
    use datacube::generation::latest;
    use datacube::s1::catalog::S1Catalog;
    use datacube_tools::fixture::s1_slices::plan;
    let work = common::work_dir("s1-refresh");
    // The mirror as EODC had it earlier: without the last-sensed slice of the first day and
    // without the last day (GeoTIFFs hard-linked; the search reads the items).
    let part = work.join("mirror");
    let st = std::process::Command::new("cp")
        .arg("-al")
        .arg(mirror())
        .arg(&part)
        .status()
        .unwrap();
    assert!(st.success());
    let full = expected_days(WEST);
    let late = full[0].1.last().unwrap().clone();
    let new_day = full.last().unwrap().1.clone();
    assert!(full[0].1.len() >= 2, "the first day must keep a slice");
    let held: Vec<_> = std::iter::once(late.clone())
        .chain(new_day.iter().cloned())
        .collect();
    let item = |s: &datacube_tools::fixture::s1_slices::PlannedSlice| {
        part.join(format!(
            "stac/{}/{}/{}.json",
            datacube::s1::STAC_COLLECTION,
            s.tile,
            s.item_id()
        ))
    };
    let items: Vec<(std::path::PathBuf, Vec<u8>)> = held
        .iter()
        .map(|s| (item(s), std::fs::read(item(s)).unwrap()))
        .collect();
    for (p, _) in &items {
        std::fs::remove_file(p).unwrap();
    }
    let earlier: Vec<_> = plan(EXTRA_DAYS)
        .into_iter()
        .filter(|s| !held.iter().any(|h| h.item_id() == s.item_id()))
        .collect();
    let before = days_of(&earlier, WEST);
    assert_eq!(before.len() + 1, full.len());

    let store = work.join("store");
    let m = common::mount::Mounted::start_s1_with(
        &work,
        &store,
        &format!("file:{}", part.display()),
        &["--refresh", "1s"],
        &[("DATACUBE_TEST_GRACE_MS", "800")],
    );
    // Before: the first day (the one the late slice changes), served from the earlier merge.
    let n = common::s1::assert_days_match(&m.path(""), WEST, &before, |i| i == 0);
    assert!(n > 100_000, "{n}");

    // EODC publishes the late slice and the new day.
    for (p, bytes) in &items {
        std::fs::write(p, bytes).unwrap();
    }
    // The mount publishes a generation holding both (one or two refreshes) and serves it.
    let ds = datacube::store::DirStore::create(&store).unwrap();
    let ty = datacube::key::TileYear::new(&WEST.to_string(), 2024);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let g = latest::<S1Catalog>(&ds, &ty).unwrap().unwrap();
        let ids: Vec<String> = g
            .catalog
            .days
            .iter()
            .flat_map(|d| d.slices.iter().map(|s| s.id.clone()))
            .collect();
        let has_all = held.iter().all(|h| ids.contains(&h.item_id()));
        let adopted = common::mount::stat(&m.stats(), "/fs/generations_adopted");
        if has_all && adopted + 1 >= g.number {
            assert!(g.number >= 2, "{g:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mount did not take up the new slices: generation {} adopted {adopted}\n{}",
            g.number,
            m.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The first day now merges the late slice; the axis has the new day.
    assert_tile_matches(&m.path(""), WEST, &full);
    let stats = m.stats();
    assert_eq!(common::mount::stat(&stats, "/shards/materialize_errors"), 0);
    assert_eq!(common::mount::stat(&stats, "/fs/refresh_errors"), 0);
    // The changed time chunks' old objects are deleted once the grace period is over (the
    // generation's `.done` marker), before anything of the new generation is written there.
    let g = latest::<S1Catalog>(&ds, &ty).unwrap().unwrap();
    let done = ty.done_key(g.number);
    while datacube::store::Store::get(&ds, &done).unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "{done} never appeared\n{}",
            m.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = m.terminate();
    assert!(status.success(), "{status}");
    // What the store holds is what a clean intake of the final mirror writes: nothing stale.
    let clean = intaken_store();
    let shards = stored_shards(&store, WEST);
    assert!(!shards.is_empty());
    for (name, keys) in &shards {
        for k in keys {
            let rel = format!("{WEST}/2024/20m/{name}/{k}");
            assert!(
                std::fs::read(store.join(&rel)).unwrap()
                    == std::fs::read(clean.join(&rel)).unwrap_or_default(),
                "{rel} is not what a clean intake writes"
            );
        }
    }
    let meta = format!("{WEST}/2024/20m/VV/zarr.json");
    assert_eq!(
        std::fs::read(store.join(&meta)).unwrap(),
        std::fs::read(clean.join(&meta)).unwrap(),
        "{meta}"
    );
}

/// The S1 mount persists through the shared writeback queue: an object whose first PUTs are
/// throttled is retried into the store and its region recorded; a region with an object that
/// never lands is counted as an error and left unrecorded (a later mount computes it again and
/// serves the same bytes). Checked in process, over the failure-injecting store, against intake's
/// bytes.
#[test]
fn s1_writeback_retries_transient_failures_and_records_only_regions_that_landed() {
    use datacube::fs::{CubeView, FsError};
    use datacube::generation::latest;
    use datacube::remote::retry::RetryPolicy;
    use datacube::s1::catalog::S1Catalog;
    use datacube::s1::cube::{S1Config, S1Cube};
    use datacube::store::{ChunkRecord, FaultyStore, MemStore, Store, StoreOp};
    use datacube::util::faults::Effect;
    use std::sync::Arc;
    use std::time::Duration;

    // Two regions where both polarisations have data.
    let expected = expected_shards(WEST);
    let both: Vec<String> = expected["VV"]
        .iter()
        .filter(|k| expected["VH"].contains(k))
        .cloned()
        .collect();
    let (a, b) = (both[0].clone(), both[1].clone());
    let key = |name: &str, k: &str| format!("{WEST}/2024/20m/{name}/{k}");
    let mem = Arc::new(MemStore::new());
    let faulty = Arc::new(FaultyStore::new(mem.clone()));
    faulty.faults.add(
        StoreOp::Put,
        Some(&key("VV", &a)),
        1..=2,
        Effect::Fail { transient: true },
    );
    faulty.faults.add(
        StoreOp::Put,
        Some(&key("VH", &b)),
        1..=u64::MAX,
        Effect::Fail { transient: false },
    );
    let cube = |store: Arc<dyn Store>| {
        let src = datacube::s1::source::S1Source::open(
            &format!("file:{}", mirror().display()),
            &Default::default(),
        )
        .unwrap();
        S1Cube::new(
            S1Config {
                tiles: vec![WEST],
                years: vec![2024],
                cache_bytes: 1 << 30,
                workers: 2,
                fence: Default::default(),
                refresh: datacube::fs::refresh::RefreshPolicy::off(),
                writeback: datacube::writeback::Limits {
                    retry: RetryPolicy {
                        max_retries: 3,
                        min_delay: Duration::from_millis(1),
                        max_delay: Duration::from_millis(5),
                    },
                    ..Default::default()
                },
            },
            store,
            src,
        )
        .unwrap()
    };
    let read = |c: &Arc<S1Cube>, path: String| -> Result<Vec<u8>, FsError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let c2 = c.clone();
        CubeView::when_year_ready(
            c.as_ref(),
            &path.clone(),
            Box::new(move || {
                CubeView::open(
                    c2.as_ref(),
                    &path,
                    Box::new(move |r| {
                        tx.send(r.and_then(|content| content.read(0, usize::MAX)))
                            .unwrap()
                    }),
                )
            }),
        );
        rx.recv_timeout(Duration::from_secs(300)).expect("hung")
    };
    let names = [
        "VV",
        "VH",
        "sensing_date",
        "absolute_orbit_number",
        "relative_orbit_number",
    ];
    let first = cube(faulty.clone());
    let mut served = std::collections::BTreeMap::new();
    for k in [&a, &b] {
        for n in names {
            if let Ok(bytes) = read(&first, key(n, k)) {
                served.insert(key(n, k), bytes);
            }
        }
    }
    first.flush();
    let stats: serde_json::Value = serde_json::from_slice(&first.stats_json()).unwrap();
    assert_eq!(
        common::mount::stat(&stats, "/writeback/errors"),
        1,
        "{stats}"
    );
    first.shutdown();
    // Every object served is intake's (an independent computation of the same regions).
    let clean = intaken_store();
    for (k, bytes) in &served {
        assert!(
            *bytes == std::fs::read(clean.join(k)).unwrap(),
            "{k} differs from intake's"
        );
    }
    assert!(served.contains_key(&key("VV", &a)) && served.contains_key(&key("VH", &b)));
    // Region a landed after its retries and is recorded; region b is not recorded, and its VH
    // object is not in the store.
    assert_eq!(
        mem.get(&key("VV", &a)).unwrap().as_deref(),
        Some(served[&key("VV", &a)].as_slice())
    );
    assert!(mem.get(&key("VH", &b)).unwrap().is_none());
    let ty = datacube::key::TileYear::new(&WEST.to_string(), 2024);
    let g = latest::<S1Catalog>(mem.as_ref(), &ty).unwrap().unwrap();
    let fp_of = |t: u64| (t < g.catalog.time_chunks()).then(|| g.catalog.fingerprint(t));
    let rec = ChunkRecord::load_matching(mem.as_ref(), &ty, datacube::s1::GROUP, &fp_of).unwrap();
    let pos = |k: &str| {
        let p: Vec<u64> = k[2..].split('/').map(|n| n.parse().unwrap()).collect();
        (p[0], p[1], p[2])
    };
    let recorded: Vec<(u64, u64, u64)> = rec.chunks.keys().map(|i| (i.t, i.y, i.x)).collect();
    assert!(recorded.contains(&pos(&a)), "{recorded:?}");
    assert!(!recorded.contains(&pos(&b)), "{recorded:?}");
    // A second mount over the same store, without faults, computes region b again.
    let second = cube(mem.clone());
    assert_eq!(
        read(&second, key("VH", &b)).unwrap(),
        served[&key("VH", &b)]
    );
    second.flush();
    assert_eq!(
        mem.get(&key("VH", &b)).unwrap().as_deref(),
        Some(served[&key("VH", &b)].as_slice())
    );
    second.shutdown();
}

/// `kill -9` while the S1 mount writes back (objects queued and being written, twice): the store
/// holds only whole objects, each intake's bytes; the next mount recovers the stale mount point,
/// sweeps what the killed writer left, serves the oracle and completes the store.
#[test]
fn kill_9_during_s1_writeback_leaves_only_whole_objects() {
    use common::mount::Mounted;
    let work = common::work_dir("s1-kill9");
    let store = work.join("store");
    let source = format!("file:{}", mirror().display());
    let mut paths: Vec<String> = expected_shards(WEST)
        .iter()
        .flat_map(|(name, keys)| {
            keys.iter()
                .map(move |k| format!("{WEST}/2024/20m/{name}/{k}"))
        })
        .collect();
    let clean = intaken_store();
    let check = || {
        let mut n = 0;
        for (name, keys) in stored_shards(&store, WEST) {
            for k in keys {
                let rel = format!("{WEST}/2024/20m/{name}/{k}");
                assert!(
                    std::fs::read(store.join(&rel)).unwrap()
                        == std::fs::read(clean.join(&rel)).unwrap(),
                    "{rel}: not intake's bytes (torn or stale)"
                );
                n += 1;
            }
        }
        n
    };
    let mut stored = 0;
    for round in 0..2u64 {
        let m = Mounted::start_s1_with(
            &work,
            &store,
            &source,
            &[],
            &[("DATACUBE_TEST_WRITEBACK_DELAY_MS", "50")],
        );
        paths.rotate_left(3);
        std::thread::scope(|s| {
            for part in paths.chunks(paths.len().div_ceil(3)) {
                let m = &m;
                s.spawn(move || {
                    for p in part {
                        let _ = std::fs::read(m.path(p)); // fails once the daemon is gone
                    }
                });
            }
            common::mount::kill_while_writing_back(&m, round);
        });
        m.kill9();
        stored = check();
        eprintln!("round {round}: {stored} shard objects in the store, all whole");
    }
    assert!(stored > 0, "the kills should land during writeback");
    let m = Mounted::start_s1(&work, &store, mirror());
    assert!(
        m.log_text().contains("stale FUSE mount"),
        "{}",
        m.log_text()
    );
    for p in &paths {
        std::fs::read(m.path(p)).unwrap();
    }
    assert!(m.terminate().success());
    // Complete now, every object intake's.
    assert_eq!(stored_shards(&store, WEST), stored_shards(clean, WEST));
    assert!(check() > stored);
    let leftovers: Vec<String> = common::tree(&store)
        .into_keys()
        .filter(|k| k.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Several writers on one S1 store: a mount reading while two intake parts (`--part 0/2`, `1/2`)
/// fill the same store at the same time. The readers see the oracle, and the store afterwards is a
/// clean intake's, byte for byte (the parts agree on one catalog generation and split the regions;
/// the mount persists what it computed, the same bytes).
#[test]
fn a_mount_and_two_intake_parts_share_one_s1_store() {
    let work = common::work_dir("s1-writers");
    let store = work.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let m = common::mount::Mounted::start_s1(&work, &store, mirror());
    let part = |index: u64| {
        let store = store.clone();
        std::thread::spawn(move || {
            let ds = datacube::store::DirStore::create(&store).unwrap();
            let src = datacube::s1::source::S1Source::open(
                &format!("file:{}", mirror().display()),
                &Default::default(),
            )
            .unwrap();
            datacube::s1::intake::intake_year(
                &ds,
                &src,
                EAST,
                2024,
                datacube::intake::Part { index, count: 2 },
                &Default::default(),
                false,
            )
            .unwrap()
        })
    };
    let (p0, p1) = (part(0), part(1));
    assert_days_match(&m.path(""), EAST, &expected_days(EAST), |i| i < 3);
    let (r0, r1) = (p0.join().unwrap(), p1.join().unwrap());
    assert!(r0.regions_computed > 0 && r1.regions_computed > 0);
    assert!(m.terminate().success());
    assert_tile_matches_oracle(&store, EAST);
    let clean = intaken_store();
    let shards = stored_shards(&store, EAST);
    assert_eq!(shards, stored_shards(clean, EAST));
    for (name, keys) in &shards {
        for k in keys {
            let rel = format!("{EAST}/2024/20m/{name}/{k}");
            assert!(
                std::fs::read(store.join(&rel)).unwrap()
                    == std::fs::read(clean.join(&rel)).unwrap(),
                "{rel} differs from a clean intake"
            );
        }
    }
    // One catalog generation: nobody grew the axis, so nobody invalidated anything.
    let ds = datacube::store::DirStore::create(&store).unwrap();
    let ty = datacube::key::TileYear::new(&EAST.to_string(), 2024);
    let g = datacube::generation::latest::<datacube::s1::catalog::S1Catalog>(&ds, &ty)
        .unwrap()
        .unwrap();
    assert_eq!(g.number, 1);
}
