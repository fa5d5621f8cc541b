//! Sentinel-1 σ⁰ end to end: the synthetic EODC mirror → `datacube intake --collection
//! sentinel-1-sig0` → a sharded Zarr store whose every value (around every footprint) equals an
//! oracle of the same-day merge computed from the fixture formula; read with zarrs here and with
//! zarr-python/xarray/rioxarray in the venv. Bad input fails with the item and file named and
//! persists nothing partial.

mod common;

use common::s1::*;
use datacube::s1::fixture::{EAST, WEST};

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
fn mirror_copy(name: &str) -> std::path::PathBuf {
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
    datacube::s1::intake::intake_year(&st, &src, EAST, 2024, datacube::intake::Part::WHOLE, false)
        .map(|_| ())
}

/// The eastern tile's slice of 2024-01-20 (the one covering shard row 1, column 0).
fn east_slice() -> datacube::s1::fixture::PlannedSlice {
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
    datacube::store::Store::put(&st, "zarr.json", &datacube::layout::root_group_file()).unwrap();
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
    assert!(text.contains("E048N015T3 2024  20m     33"), "{text}");
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
    let work = common::work_dir("s1-eodc");
    let emu = EodcEmulator::start(mirror(), &work);
    // Intake over HTTP: STAC search paged one item at a time (next links), GeoTIFF windows by
    // range requests; the store equals the mirror intake's, byte for byte.
    let store = work.join("store");
    let st = datacube::store::DirStore::create(&store).unwrap();
    let opts = datacube::s1::source::EodcOptions {
        stac_limit: 1,
        ..Default::default()
    };
    let src =
        datacube::s1::source::S1Source::open(&format!("eodc:{}", emu.stac_url), &opts).unwrap();
    datacube::s1::intake::intake_year(&st, &src, EAST, 2024, datacube::intake::Part::WHOLE, false)
        .unwrap();
    // Two items, one per page: the second page came from the first one's next link.
    assert_eq!(src.stac_requests(), 2, "paging");
    assert_tile_matches_oracle(&store, EAST);
    let rel = format!("{EAST}/2024/20m");
    assert_eq!(
        common::tree(&store.join(&rel)),
        common::tree(&intaken_store().join(&rel))
    );
    // The mount over HTTP, on an empty store: every value around every footprint.
    let m = common::mount::Mounted::start_s1_source(
        &work,
        &work.join("mount-store"),
        &format!("eodc:{}", emu.stac_url),
    );
    for tile in [WEST, EAST] {
        assert_tile_matches_oracle(&m.path(""), tile);
    }
    assert!(m.terminate().success());
}
