//! Shared test support: a synthetic archive made once per test binary, a store intaken from it,
//! the value-formula oracle and real Zarr clients (zarrs here, zarr-python/xarray via the venv).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use datacube::s2::bands::Resolution;
use datacube::source::SafeArchive;
use datacube::store::DirStore;
use datacube_tools::fixture::{plan, FixtureSize, FixtureSpec, PlannedProduct};
use rayon::prelude::*;

pub mod s1;

pub const YEAR: i32 = 2024;
/// 21 scenes: two 10 m time chunks, the second partial with one partial-swath scene (index 20),
/// so it has all-fill chunks.
pub const SCENES: usize = 21;

pub struct Fixture {
    pub archive: PathBuf,
    pub spec: FixtureSpec,
    pub plan: Vec<PlannedProduct>,
}

impl Fixture {
    /// Kept products in time-axis order.
    pub fn kept(&self) -> Vec<&PlannedProduct> {
        self.plan.iter().filter(|p| !p.superseded).collect()
    }
}

/// A test's scratch directory under the target directory, removed when the test drops it, so a
/// full run (hundreds of megabytes per test) does not fill the CI machine's disk. FUSE mounts
/// left under it (a daemon killed on purpose) are detached first, so removal never walks into
/// a mount. `DATACUBE_KEEP_TEST_DIRS=1` keeps them, to look at after a failure.
pub struct WorkDir(PathBuf);

impl std::ops::Deref for WorkDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for WorkDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for WorkDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::env::var_os("DATACUBE_KEEP_TEST_DIRS").is_some_and(|v| v == "1") {
            return;
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for line in mounts.lines() {
            let Some(point) = line.split(' ').nth(1) else {
                continue;
            };
            if Path::new(point).starts_with(&self.0) {
                let _ = Command::new("fusermount3")
                    .args(["-u", "-z", "-q", point])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn work_dir(name: &str) -> WorkDir {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    WorkDir(d)
}

/// A directory built once for every test process of one build (nextest runs each test in its own
/// process, and every test binary of this package uses the same fixtures), named after the build
/// of the code that makes it — the `datacube-tools` executable, which links both crates — so the
/// test binaries of one build share it and a rebuild gets a new one. Two locks per directory:
/// `.use` is held shared by every process that uses (or builds) it, for its whole life; `.build`
/// is held exclusively while its completion is checked or it is built. A directory of another
/// build is removed only when nobody holds its `.use` lock, so never from under a running test.
pub fn shared_dir(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    use std::hash::{Hash, Hasher};
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared");
    std::fs::create_dir_all(&root).unwrap();
    let tools = Path::new(env!("CARGO_BIN_EXE_datacube")).with_file_name("datacube-tools");
    let maker = if tools.is_file() {
        tools
    } else {
        std::env::current_exe().unwrap()
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    maker.hash(&mut h);
    maker.metadata().unwrap().modified().unwrap().hash(&mut h);
    let key = format!("{name}-{:016x}", h.finish());
    let dir = root.join(&key);
    let using = std::fs::File::create(root.join(format!("{key}.use"))).unwrap();
    using.lock_shared().unwrap();
    HELD.lock().unwrap().push(using);
    let building = std::fs::File::create(root.join(format!("{key}.build"))).unwrap();
    building.lock().unwrap();
    let marker = root.join(format!("{key}.complete"));
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        build(&dir);
        std::fs::write(&marker, "").unwrap();
    }
    building.unlock().unwrap();
    // Directories of other builds that no test process uses any more.
    for e in std::fs::read_dir(&root).unwrap().flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(other) = file.strip_suffix(".use") else {
            continue;
        };
        if other == key || !other.starts_with(&format!("{name}-")) {
            continue;
        }
        if let Ok(f) = std::fs::File::open(e.path()) {
            if f.try_lock().is_ok() {
                let _ = std::fs::remove_file(root.join(format!("{other}.complete")));
                let _ = std::fs::remove_dir_all(root.join(other));
                let _ = std::fs::remove_file(root.join(format!("{other}.build")));
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    dir
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        datacube::raster::configure_gdal();
        let spec = FixtureSpec::new(YEAR, SCENES, FixtureSize::Mini);
        let archive = shared_dir("archive", |d| {
            datacube_tools::fixture::write_archive(&spec, d, false).expect("fixture");
        });
        Fixture {
            archive,
            plan: plan(&spec),
            spec,
        }
    })
}

/// A store with the whole tile-year intaken (through the library, as `datacube intake` does).
pub fn intaken_store() -> &'static PathBuf {
    static S: OnceLock<PathBuf> = OnceLock::new();
    S.get_or_init(|| {
        let f = fixture();
        shared_dir("store", |dir| {
            let store = DirStore::create(dir).unwrap();
            let source = SafeArchive::new(&f.archive).unwrap();
            let r = datacube::s2::intake::intake(&store, &source, &intake_opts()).expect("intake");
            assert!(r.errors.is_empty(), "{:?}", r.errors);
        })
    })
}

pub fn intake_opts() -> datacube::s2::intake::IntakeOptions {
    datacube::s2::intake::IntakeOptions {
        tile: "35VLH".into(),
        year: YEAR,
        start: None,
        end: None,
        resolutions: Resolution::ALL.to_vec(),
        memory_bytes: 1 << 30,
        progress: false,
        // The consistency protocol's grace period, shortened (a minute in production).
        fence: datacube::generation::Fence {
            grace: std::time::Duration::from_millis(200),
        },
        regions: datacube::intake::Part::WHOLE,
        layout: Some(datacube::s2::chunking::Chunking::Chunked),
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_datacube"))
}

/// The venv made by scripts/setup; the interoperability tests need it.
pub fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup", p.display());
    p
}

pub fn run_python(script: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The whole `data` array of a resolution, read with zarrs from a directory store.
pub fn read_data(store_dir: &Path, res: Resolution) -> (Vec<u64>, Vec<u16>) {
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(store_dir).unwrap());
    let array =
        zarrs::array::Array::open(store, &format!("/35VLH/{YEAR}/{}/data", res.name())).unwrap();
    let shape = array.shape().to_vec();
    let data: ndarray::ArrayD<u16> = array.retrieve_array_subset(&array.subset_all()).unwrap();
    (shape, data.into_raw_vec_and_offset().0)
}

/// The formula value of `data[t, band_index, r, c]` at `res` (t = time-axis index).
pub fn expected(f: &Fixture, res: Resolution, t: usize, band_index: usize, r: u64, c: u64) -> u16 {
    let b = band_id(res, band_index);
    datacube_tools::synth::dn(t as u64, b, r, c, res.metres() as u64, f.spec.width_m())
}

/// The MTD bandId of band `band_index` of `res` (`res.bands()` builds a vector: too slow for
/// every pixel).
pub fn band_id(res: Resolution, band_index: usize) -> u64 {
    static IDS: OnceLock<Vec<(Resolution, Vec<u64>)>> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        Resolution::ALL
            .iter()
            .map(|r| (*r, r.bands().iter().map(|b| b.id as u64).collect()))
            .collect()
    });
    ids.iter().find(|(r, _)| *r == res).unwrap().1[band_index]
}

/// Asserts every value of `data` equals the formula for scenes `t` where `keep(t)`; returns how
/// many values were compared.
pub fn assert_formula(
    f: &Fixture,
    res: Resolution,
    shape: &[u64],
    data: &[u16],
    keep: impl Fn(usize) -> bool + Sync,
) -> usize {
    let (nt, nb, ny, nx) = (
        shape[0] as usize,
        shape[1] as usize,
        shape[2] as usize,
        shape[3] as usize,
    );
    (0..nt)
        .into_par_iter()
        .filter(|t| keep(*t))
        .map(|t| {
            for b in 0..nb {
                for r in 0..ny {
                    for c in 0..nx {
                        let got = data[((t * nb + b) * ny + r) * nx + c];
                        let want = expected(f, res, t, b, r as u64, c as u64);
                        assert_eq!(got, want, "{res} data[{t},{b},{r},{c}]");
                    }
                }
            }
            nb * ny * nx
        })
        .sum()
}

/// Asserts `data` (a whole `data` array of `res`) equals GDAL's own reads of the source JP2 windows:
/// windows straddling chunk and JP2-tile edges, for the first, a partial-swath and the last scene.
pub fn assert_gdal_windows(f: &Fixture, res: Resolution, shape: &[u64], data: &[u16]) {
    let (nb, ny, nx) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
    let cs = res.space_chunk() as usize;
    let windows = [
        (0, 0, 37, 41),
        (cs - 5, cs - 7, 19, 23),
        (nx - 30, ny - 20, 30, 20),
    ];
    for t in [0usize, 2, SCENES - 1] {
        let p = f.kept()[t];
        for (bi, band) in res.bands().iter().enumerate() {
            let path = band_file(f, p, band.name);
            for &(x0, y0, w, h) in &windows {
                let gdal = datacube::raster::read_direct(&path, x0, y0, w, h).unwrap();
                for r in 0..h {
                    for c in 0..w {
                        let got = data[((t * nb + bi) * ny + y0 + r) * nx + x0 + c];
                        assert_eq!(
                            got,
                            gdal[r * w + c],
                            "{res} {} t={t} ({},{})",
                            band.name,
                            y0 + r,
                            x0 + c
                        );
                    }
                }
            }
        }
    }
}

/// The JP2 of `band` of a planned product in the fixture archive.
pub fn band_file(f: &Fixture, p: &PlannedProduct, band: &str) -> PathBuf {
    datacube_tools::fixture::product_dir(&f.archive, p)
        .join("GRANULE")
        .join(&p.granule_id)
        .join("IMG_DATA")
        .join(format!("{}.jp2", p.band_stem("35VLH", band)))
}

/// What `tests/py/check_store.py` expects of the tile-year, from the fixture plan.
pub fn store_expectations(f: &Fixture) -> serde_json::Value {
    serde_json::json!({
        "times_ms": f.kept().iter().map(|p| p.sensing_ms).collect::<Vec<_>>(),
        "product_ids": f.kept().iter().map(|p| p.product_id.clone()).collect::<Vec<_>>(),
        "offsets": f.kept().iter().map(|p| if p.has_offsets() { -1000 } else { 0 }).collect::<Vec<_>>(),
        "width_m": f.spec.width_m(),
        "ulx": f.spec.ulx,
        "uly": f.spec.uly,
        "epsg": f.spec.epsg,
    })
}

/// All regular files under `dir`, relative path → bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// Drops the wall-clock catalog times, the only legitimate difference between two runs.
pub fn normalize(key: &str, bytes: &[u8]) -> Vec<u8> {
    if key.ends_with("catalog.json")
        || key.ends_with("/.datacube/catalog")
        || key == "35VLH/2024/zarr.json"
    {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        for k in ["created", "updated"] {
            v.as_object_mut().unwrap().remove(k);
        }
        if let Some(a) = v.get_mut("attributes").and_then(|a| a.as_object_mut()) {
            a.remove("catalog_time");
            a.remove("catalog_updated");
        }
        return serde_json::to_vec(&v).unwrap();
    }
    bytes.to_vec()
}

/// A copy of the fixture archive that a test may damage.
pub fn copy_archive(name: &str) -> WorkDir {
    let archive = work_dir(name);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture().archive.display()))
        .arg(&archive)
        .status()
        .unwrap();
    assert!(ok.success());
    archive
}

/// Asserts two stores hold the same files with the same bytes (catalog wall-clock times aside).
/// A directory store's content as its readers see it: every file, except that the consistency
/// protocol's bookkeeping (catalog generations and their markers, per-writer record files, whose
/// names and count depend on which processes wrote) is replaced per tile-year by the latest
/// catalog (`TILE/YEAR/.datacube/catalog`) and the union of valid record entries
/// (`TILE/YEAR/.datacube/record-RES`).
pub fn logical_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut years = std::collections::BTreeSet::new();
    for (k, v) in tree(dir) {
        if let Some(i) = k.find("/.datacube/") {
            years.insert(k[..i].to_string());
            continue;
        }
        out.insert(k, v);
    }
    let store = datacube::store::DirStore::create(dir).unwrap();
    for ty in years {
        let (tile, year) = ty.split_once('/').unwrap();
        let ty = datacube::key::TileYear::new(tile, year.parse().unwrap());
        if let Some(g) =
            datacube::generation::latest::<datacube::s2::catalog::Catalog>(&store, &ty).unwrap()
        {
            out.insert(
                format!("{ty}/.datacube/catalog"),
                serde_json::to_vec_pretty(&g.catalog).unwrap(),
            );
        }
        for res in datacube::s2::bands::Resolution::ALL {
            let rec = datacube::store::ChunkRecord::load(&store, &ty, res).unwrap();
            out.insert(
                format!("{ty}/.datacube/record-{res}"),
                serde_json::to_vec_pretty(&rec.chunks).unwrap(),
            );
        }
    }
    out
}

pub fn assert_same_store(a: &Path, b: &Path) {
    let (a, b) = (logical_tree(a), logical_tree(b));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (k, v) in &a {
        assert!(normalize(k, v) == normalize(k, &b[k]), "{k} differs");
    }
}

pub mod emulator;
pub mod mount;
pub mod proxy;
pub mod user;
