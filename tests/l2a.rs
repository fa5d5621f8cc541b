//! Sentinel-2 L2A end to end: the synthetic L2A archive (real-shaped `MTD_MSIL2A.xml`, JP2 band
//! files at their native resolution, SCL as Byte, an old baseline without offsets, a reprocessed
//! duplicate) → intake from the archive and from the emulated CDSE, and a mount over an empty store
//! (from the emulated CDSE). Every value of `data` and `scl` (20 m and the 10 m repeat) is checked
//! against the fixture's formula, the SCL against GDAL's own read of the SCL file, offsets per scene
//! against the plan, and the store with xarray/rioxarray.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::mount::Mounted;
use common::*;
use datacube::s2::array::PixelArray;
use datacube::s2::bands::Resolution;
use datacube::s2::product::ProductLevel;
use datacube::store::DirStore;
use datacube_tools::fixture::{FixtureSize, FixtureSpec, PlannedProduct};

const L2A: &str = "sentinel-2-l2a";
/// One 10 m time chunk: 8 acquisitions (the first two at baseline 02.14, without offsets), plus
/// the reprocessed duplicate; scenes 2 and 5 are partial swaths.
const L2A_SCENES: usize = 8;

struct L2aFixture {
    archive: PathBuf,
    spec: FixtureSpec,
    kept: Vec<PlannedProduct>,
    superseded: Vec<PlannedProduct>,
}

fn l2a_fixture() -> &'static L2aFixture {
    static F: OnceLock<L2aFixture> = OnceLock::new();
    F.get_or_init(|| {
        datacube::raster::configure_gdal();
        let spec = FixtureSpec::new(YEAR, L2A_SCENES, FixtureSize::Mini);
        let archive = shared_dir("l2a-archive", |d| {
            datacube_tools::fixture::l2a::write_archive(&spec, d, false).expect("L2A fixture");
        });
        let plan = datacube_tools::fixture::l2a::plan(&spec);
        let (superseded, kept) = plan.into_iter().partition(|p| p.superseded);
        L2aFixture {
            archive,
            spec,
            kept,
            superseded,
        }
    })
}

/// A store with the L2A tile-year intaken (chunked layout), through the CLI as a user runs it.
fn l2a_store() -> &'static PathBuf {
    static S: OnceLock<PathBuf> = OnceLock::new();
    S.get_or_init(|| {
        let f = l2a_fixture();
        shared_dir("l2a-store", |dir| {
            let source = format!("safe:{}", f.archive.display());
            let out = intake(L2A, &source, dir, &["--layout", "chunked"], &[]);
            assert!(out.status.success(), "intake: {}", text(&out));
        })
    })
}

/// `datacube intake --collection COLLECTION` of the fixture's tile-year from `source` into
/// `store`, with more arguments and environment (the daemon's test hooks, AWS profiles).
fn intake(
    collection: &str,
    source: &str,
    store: &Path,
    extra: &[&str],
    env: &[(String, String)],
) -> std::process::Output {
    Command::new(bin())
        .args(["intake", "--collection", collection, "--source", source])
        .arg(format!("--store={}", store.display()))
        .args([
            "--tile",
            "35VLH",
            "--year",
            &YEAR.to_string(),
            "--no-progress",
        ])
        .args(extra)
        // The consistency protocol's grace period, shortened (a minute in production).
        .env("DATACUBE_TEST_GRACE_MS", "200")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// What a command printed, stdout then stderr.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A whole array of `group` (`data` as u16, `scl` widened to u16) read with zarrs.
fn read_array(root: &Path, array: PixelArray) -> (Vec<u64>, Vec<u16>) {
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(root).unwrap());
    let a = zarrs::array::Array::open(store, &format!("/35VLH/{YEAR}/{}", array.path())).unwrap();
    let shape = a.shape().to_vec();
    let values = if array.has_bands() {
        let v: ndarray::ArrayD<u16> = a.retrieve_array_subset(&a.subset_all()).unwrap();
        v.into_raw_vec_and_offset().0
    } else {
        let v: ndarray::ArrayD<u8> = a.retrieve_array_subset(&a.subset_all()).unwrap();
        v.into_raw_vec_and_offset()
            .0
            .into_iter()
            .map(u16::from)
            .collect()
    };
    (shape, values)
}

/// The formula's value of `array[t, (band,) r, c]`.
/// `band_ids`: the MTD bandIds of `array`'s bands (`ProductLevel::res_bands`, taken once by the
/// caller: it builds vectors, too slow for every pixel).
fn expected(
    f: &L2aFixture,
    array: PixelArray,
    band_ids: &[u64],
    t: usize,
    band: usize,
    r: u64,
    c: u64,
) -> u16 {
    let w = f.spec.width_m();
    if array.has_bands() {
        let b = band_ids[band];
        datacube_tools::synth::dn(t as u64, b, r, c, array.res.metres() as u64, w)
    } else {
        // SCL is 20 m; a finer group repeats each 20 m pixel.
        let k = u64::from(20 / array.res.metres());
        u16::from(datacube_tools::synth::scl(t as u64, r / k, c / k, w))
    }
}

/// Every value of every pixel array of the tile-year under `root` equals the formula.
fn assert_every_value(f: &L2aFixture, root: &Path) {
    for array in PixelArray::of_level(ProductLevel::L2A) {
        let (shape, v) = read_array(root, array);
        let n = f.spec.pixels(array.res.metres());
        let nb = array.planes(ProductLevel::L2A);
        let want_shape = if array.has_bands() {
            vec![L2A_SCENES as u64, nb, n, n]
        } else {
            vec![L2A_SCENES as u64, n, n]
        };
        assert_eq!(shape, want_shape, "{array}");
        let (nb, n) = (nb as usize, n as usize);
        let band_ids: Vec<u64> = ProductLevel::L2A
            .res_bands(array.res)
            .iter()
            .map(|b| b.id as u64)
            .collect();
        let mut nonzero = 0usize;
        for t in 0..L2A_SCENES {
            for b in 0..nb {
                for r in 0..n {
                    for c in 0..n {
                        let got = v[((t * nb + b) * n + r) * n + c];
                        let want = expected(f, array, &band_ids, t, b, r as u64, c as u64);
                        assert_eq!(got, want, "{array}[{t},{b},{r},{c}]");
                        nonzero += usize::from(got != 0);
                    }
                }
            }
        }
        assert!(nonzero > v.len() / 2, "{array}: mostly fill?");
    }
}

#[test]
fn intake_stores_the_formula_in_data_and_scl_and_the_duplicate_loses() {
    let f = l2a_fixture();
    let store = l2a_store();
    assert_every_value(f, store);
    let cat =
        datacube::s2::catalog::Catalog::load(&DirStore::create(store).unwrap(), "35VLH", YEAR)
            .unwrap()
            .unwrap();
    let ids: Vec<&str> = cat.scenes.iter().map(|s| s.product_id.as_str()).collect();
    let want: Vec<&str> = f.kept.iter().map(|p| p.product_id.as_str()).collect();
    assert_eq!(ids, want);
    assert!(!f.superseded.is_empty());
    for p in &f.superseded {
        assert!(!ids.contains(&p.product_id.as_str()), "{}", p.product_id);
    }
    // The root group records the collection.
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("zarr.json")).unwrap()).unwrap();
    assert_eq!(root["attributes"]["datacube"]["collection"], L2A);
}

#[test]
fn scl_equals_gdal_reads_of_the_scl_files() {
    let f = l2a_fixture();
    let store = l2a_store();
    let (s20, v20) = read_array(store, PixelArray::scl(Resolution::R20));
    let (s10, v10) = read_array(store, PixelArray::scl(Resolution::R10));
    let n20 = s20[1] as usize;
    let n10 = s10[1] as usize;
    let cat =
        datacube::s2::catalog::Catalog::load(&DirStore::create(store).unwrap(), "35VLH", YEAR)
            .unwrap()
            .unwrap();
    for t in [0usize, 2, L2A_SCENES - 1] {
        let key = cat.scenes[t]
            .scl_key
            .clone()
            .expect("an L2A scene has its SCL");
        assert!(
            key.ends_with("_SCL_20m.jp2") && key.contains("/IMG_DATA/R20m/"),
            "{key}"
        );
        let path = f.archive.join(&key);
        let (x0, y0, w, h) = (n20 - 61, n20 - 47, 61, 47);
        let gdal = datacube::raster::read_direct(&path, x0, y0, w, h).unwrap();
        for r in 0..h {
            for c in 0..w {
                let g = gdal[r * w + c];
                let (y, x) = (y0 + r, x0 + c);
                assert_eq!(v20[(t * n20 + y) * n20 + x], g, "scl 20m t={t} ({y},{x})");
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let (yy, xx) = (2 * y + dy, 2 * x + dx);
                    if yy < n10 && xx < n10 {
                        assert_eq!(
                            v10[(t * n10 + yy) * n10 + xx],
                            g,
                            "scl 10m t={t} ({yy},{xx})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn offsets_per_scene_follow_the_baseline_and_xarray_masks_clouds() {
    let f = l2a_fixture();
    let store = l2a_store();
    let offsets: Vec<i32> = f
        .kept
        .iter()
        .map(|p| if p.has_offsets() { -1000 } else { 0 })
        .collect();
    assert!(
        offsets.contains(&0) && offsets.contains(&-1000),
        "{offsets:?}"
    );
    let expect = serde_json::json!({
        "times_ms": f.kept.iter().map(|p| p.sensing_ms).collect::<Vec<_>>(),
        "product_ids": f.kept.iter().map(|p| p.product_id.clone()).collect::<Vec<_>>(),
        "offsets": offsets,
        "width_m": f.spec.width_m(),
        "ulx": f.spec.ulx,
        "uly": f.spec.uly,
        "epsg": f.spec.epsg,
    });
    let out = run_python(
        "check_l2a_store.py",
        &[
            store.join("35VLH/2024").to_str().unwrap(),
            &expect.to_string(),
        ],
    );
    assert!(out.contains("l2a store ok"), "{out}");
}

#[test]
fn an_l1c_store_is_not_opened_as_l2a_nor_the_reverse() {
    let f = l2a_fixture();
    let l1c = intaken_store();
    let l2a = l2a_store();
    for (store, collection, holds) in [(l1c, L2A, "sentinel-2-l1c"), (l2a, "sentinel-2-l1c", L2A)] {
        let source = format!("safe:{}", f.archive.display());
        let out = intake(collection, &source, store, &[], &[]);
        let err = text(&out);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!("holds collection {holds}, not {collection}")),
            "{err}"
        );
    }
}

#[test]
fn a_reprocessed_product_arriving_later_replaces_its_scene_in_data_and_scl() {
    let f = l2a_fixture();
    let dup = &f.superseded[0];
    let newer = f
        .kept
        .iter()
        .find(|p| p.axis_index == dup.axis_index)
        .unwrap();
    // The archive as it was before the reprocessing: the older baseline only.
    let archive = work_dir("l2a-reprocessed");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", f.archive.display()))
        .arg(&*archive)
        .status()
        .unwrap();
    assert!(copied.success());
    let newer_dir = datacube_tools::fixture::product_dir(&archive, newer);
    let aside = archive.join("aside.SAFE");
    std::fs::rename(&newer_dir, &aside).unwrap();
    let store = archive.join("store");
    let intake = || {
        let source = format!("safe:{}", archive.display());
        // The 20 m group (data and scl) tells it all; the other groups follow the same catalog.
        let extra = ["--layout", "chunked", "--resolutions", "20m"];
        let out = intake(L2A, &source, &store, &extra, &[]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The scene's values at 20 m (data band B05 and scl) under the value scene `s`.
    let check = |s: u64| {
        let t = dup.axis_index;
        let w = f.spec.width_m();
        let (shape, data) = read_array(&store, PixelArray::data(Resolution::R20));
        let (_, scl) = read_array(&store, PixelArray::scl(Resolution::R20));
        let (nb, n) = (shape[1] as usize, shape[2] as usize);
        for r in (0..n).step_by(7) {
            for c in (0..n).step_by(5) {
                let b05 = data[((t * nb) * n + r) * n + c];
                assert_eq!(
                    b05,
                    datacube_tools::synth::dn(s, 4, r as u64, c as u64, 20, w)
                );
                let class = scl[(t * n + r) * n + c];
                assert_eq!(
                    class,
                    u16::from(datacube_tools::synth::scl(s, r as u64, c as u64, w))
                );
            }
        }
    };
    intake();
    check(dup.value_scene);
    // The reprocessed product arrives: the rerun replaces the scene in place and recomputes it.
    std::fs::rename(&aside, &newer_dir).unwrap();
    let report = intake();
    assert!(
        report.contains(&format!(
            "replaced {} by its newer baseline {}",
            dup.product_id, newer.product_id
        )),
        "{report}"
    );
    check(newer.value_scene);
    assert_ne!(dup.value_scene, newer.value_scene);
}

#[test]
fn through_the_emulated_cdse_intake_equals_the_safe_store_and_a_mount_over_an_empty_store_serves_and_writes_back_the_formula(
) {
    let f = l2a_fixture();
    let safe_store = l2a_store();
    let work = work_dir("l2a-cdse");
    let emu = common::emulator::Emulator::start(&f.archive, &work);
    let env = emu.aws_env();
    let mount_args = |cache: &str| -> Vec<String> {
        vec![
            "--collection".into(),
            L2A.into(),
            "--source".into(),
            "cdse".into(),
            "--stac-url".into(),
            emu.stac_url.clone(),
            "--source-cache".into(),
            work.join(cache).display().to_string(),
        ]
    };
    // Intake: STAC collection sentinel-2-l2a, metadata and band files from bucket eodata.
    let store = work.join("store");
    let mut extra = vec!["--layout", "chunked", "--stac-url", &emu.stac_url];
    let cache = work.join("cache-intake").display().to_string();
    extra.extend(["--source-cache", &cache]);
    let out = intake(L2A, "cdse", &store, &extra, &env);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(&format!("{L2A_SCENES} scenes")), "{log}");
    assert_same_store(safe_store, &store);
    // A mount over an empty store, reading by tile-part (cold ranged reads) where it pays.
    let mstore = work.join("mount-store");
    let m = Mounted::start_with(
        &work,
        &mstore.display().to_string(),
        &mount_args("cache-mount"),
        &env,
    );
    // The default (sharded) layout, read as a Zarr client reads any directory.
    assert_every_value(f, &m.mnt);
    let status = m.terminate();
    assert!(status.success(), "{status}");
    // What the daemon wrote back is a store of its own, with the same values.
    assert_every_value(f, &mstore);
    let layout = datacube::s2::chunking::Chunking::of_store(&DirStore::create(&mstore).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(layout, datacube::s2::chunking::Chunking::SHARDED);
}
