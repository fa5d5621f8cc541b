//! The sharded layout (`--layout sharded`): a sharded store from intake and through a real mount
//! against the value formula, GDAL and the fixture plan; every shard's index parsed here, with its
//! CRC32C, and its inner chunks against an independent rule of which ones hold data; zarrs reading
//! inner chunks through the mount by range; kill -9 during shard writeback; zarr-python, xarray and
//! rioxarray; `datacube info`; a store made before layouts existed, which stays chunked, its
//! metadata byte for byte; and the chunked view (`--view chunked`) of a sharded store, warm and
//! over an empty store: its chunks the shards' inner chunks byte for byte, read by GDAL 3.12
//! (rasterio's wheels), tensorstore and zarr-python.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::mount::{stat, Mounted};
use common::*;
use datacube::s2::bands::Resolution;
use datacube::s2::chunking::Chunking;

const SHARDED: Chunking = Chunking::SHARDED;

/// The mini fixture intaken into a sharded store (once per test binary).
fn sharded_store() -> PathBuf {
    shared_dir("sharded-store", |dir| {
        let f = fixture();
        let store = datacube::store::DirStore::create(dir).unwrap();
        let source = datacube::source::SafeArchive::new(&f.archive).unwrap();
        let opts = datacube::s2::intake::IntakeOptions {
            layout: Some(SHARDED),
            ..intake_opts()
        };
        let r = datacube::s2::intake::intake(&store, &source, &opts).expect("intake");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    })
}

/// CRC32C (Castagnoli), bit by bit: the shard index's checksum, computed independently of zarrs.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The data files of a store (or mount): `RES/data/c/T/0/Y/X` → bytes.
fn data_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for res in Resolution::ALL {
        let dir = root.join(format!("35VLH/{YEAR}/{}/data", res.name()));
        if !dir.exists() {
            continue;
        }
        for (k, v) in tree(&dir) {
            // A writer killed mid-write leaves its temporary file (`….tmp-HOST-PID-N`): not a shard
            // key any reader asks for, and removed by the next writer (checked at the end of the
            // kill -9 test).
            if k.starts_with("c/") && !k.contains(".tmp-") {
                out.insert(format!("{}/data/{k}", res.name()), v);
            }
        }
    }
    out
}

fn res_of(name: &str) -> Resolution {
    Resolution::ALL
        .into_iter()
        .find(|r| r.name() == name)
        .unwrap()
}

/// Whether the fixture has a non-zero value in inner chunk (`iy`, `ix`) (global inner indices) of
/// time chunk `t`: it must overlap the image, and some scene of the time chunk must cover its
/// top-left pixel (a partial-swath scene — index ≡ 2 mod 3 — is zero where 10·x + 5·y > 8·width,
/// in metres, which is smallest at the top-left corner; every other scene covers the whole image).
fn inner_has_data(res: Resolution, t: u64, iy: u64, ix: u64) -> bool {
    let f = fixture();
    let inner = SHARDED.inner_space(res).unwrap();
    let m = res.metres() as u64;
    let side = f.spec.width_m() / m;
    let (y0, x0) = (iy * inner, ix * inner);
    if y0 >= side || x0 >= side {
        return false;
    }
    let ct = res.time_chunk() as usize;
    (t as usize * ct..((t as usize + 1) * ct).min(SCENES))
        .any(|s| s % 3 != 2 || 10 * x0 * m + 5 * y0 * m <= 8 * f.spec.width_m())
}

/// The (offset, length) entries of a shard's index of `n` inner chunks (`None`: absent), parsed
/// here, its CRC32C checked.
fn shard_entries(key: &str, bytes: &[u8], n: usize) -> Vec<Option<(u64, u64)>> {
    let index_len = n * 16 + 4;
    assert!(
        bytes.len() >= index_len,
        "{key}: {} bytes, shorter than its index",
        bytes.len()
    );
    let index = &bytes[bytes.len() - index_len..];
    let crc = u32::from_le_bytes(index[n * 16..].try_into().unwrap());
    assert_eq!(crc32c(&index[..n * 16]), crc, "{key}: index checksum");
    (0..n)
        .map(|k| {
            let e = &index[k * 16..k * 16 + 16];
            let off = u64::from_le_bytes(e[..8].try_into().unwrap());
            let len = u64::from_le_bytes(e[8..].try_into().unwrap());
            if off == u64::MAX {
                assert_eq!(len, u64::MAX, "{key}: entry {k}");
                None
            } else {
                Some((off, len))
            }
        })
        .collect()
}

/// Parses a shard's index (at its end: (offset, length) per inner chunk in C order, then a
/// CRC32C of them) and checks it against the file and the fixture: every entry inside the body,
/// entries in order without overlap covering the body exactly, the checksum right, and an entry
/// present exactly for the inner chunks that hold data. Returns the inner chunks present.
fn check_shard(key: &str, bytes: &[u8]) -> u64 {
    let p: Vec<&str> = key.split('/').collect(); // RES/data/c/T/0/Y/X
    let res = res_of(p[0]);
    let (t, sy, sx): (u64, u64, u64) = (
        p[3].parse().unwrap(),
        p[5].parse().unwrap(),
        p[6].parse().unwrap(),
    );
    let per = SHARDED.space(res) / SHARDED.inner_space(res).unwrap();
    let n = (per * per) as usize;
    let body = bytes.len() - (n * 16 + 4);
    let mut next = 0u64;
    let mut present = 0;
    for (k, entry) in shard_entries(key, bytes, n).into_iter().enumerate() {
        let (iy, ix) = (sy * per + k as u64 / per, sx * per + k as u64 % per);
        let want = inner_has_data(res, t, iy, ix);
        assert_eq!(
            entry.is_some(),
            want,
            "{key}: inner chunk {k} (inner {iy}, {ix}) present in the index"
        );
        let Some((off, len)) = entry else {
            continue;
        };
        assert_eq!(
            off, next,
            "{key}: entry {k} does not follow the previous one"
        );
        assert!(
            len > 0 && off + len <= body as u64,
            "{key}: entry {k} outside the body"
        );
        next = off + len;
        present += 1;
    }
    assert_eq!(
        next, body as u64,
        "{key}: the inner chunks cover the body exactly"
    );
    present
}

/// Every shard a store (or mount) holds, checked (`check_shard`), and decoded by zarrs against the
/// formula; the shards that must exist do. Returns the inner chunks present in all of them.
fn assert_shards_valid(root: &Path) -> u64 {
    let f = fixture();
    let zs = Arc::new(zarrs::filesystem::FilesystemStore::new(root).unwrap());
    let mut inner = 0;
    for (key, bytes) in data_files(root) {
        inner += check_shard(&key, &bytes);
        let p: Vec<&str> = key.split('/').collect();
        let res = res_of(p[0]);
        let array =
            zarrs::array::Array::open(zs.clone(), &format!("/35VLH/{YEAR}/{}/data", res.name()))
                .unwrap();
        let idx: Vec<u64> = p[3..].iter().map(|p| p.parse().unwrap()).collect();
        let shard: ndarray::ArrayD<u16> = array
            .retrieve_chunk(&idx)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        // Indexed by hand: ndarray's indexing is generic code, compiled here at the test crate's
        // opt-level 1, and was most of the check's time (the array is in C order).
        assert!(shard.is_standard_layout());
        let shard = shard.into_raw_vec_and_offset().0;
        let [ct, nb, s, _] = SHARDED.object_shape(res);
        assert_eq!(shard.len() as u64, ct * nb * s * s, "{key}: decoded size");
        let side = f.spec.width_m() / res.metres() as u64;
        for t in 0..ct {
            let tt = idx[0] * ct + t;
            for b in 0..nb {
                for r in 0..s {
                    for c in 0..s {
                        let (y, x) = (idx[2] * s + r, idx[3] * s + c);
                        let got = shard[(((t * nb + b) * s + r) * s + c) as usize];
                        let want = if tt < SCENES as u64 && y < side && x < side {
                            expected(f, res, tt as usize, b as usize, y, x)
                        } else {
                            0
                        };
                        assert_eq!(got, want, "{key} [{t},{b},{r},{c}]");
                    }
                }
            }
        }
    }
    inner
}

/// Every shard position of the fixture's tile-year that holds data, as `RES/data/c/T/0/Y/X`.
fn shards_with_data() -> Vec<String> {
    let f = fixture();
    let mut v = Vec::new();
    for res in Resolution::ALL {
        let side = f.spec.width_m() / res.metres() as u64;
        let (s, inner) = (SHARDED.space(res), SHARDED.inner_space(res).unwrap());
        let per = s / inner;
        for t in 0..(SCENES as u64).div_ceil(res.time_chunk()) {
            for y in 0..side.div_ceil(s) {
                for x in 0..side.div_ceil(s) {
                    let any = (0..per * per)
                        .any(|k| inner_has_data(res, t, y * per + k / per, x * per + k % per));
                    if any {
                        v.push(format!("{}/data/c/{t}/0/{y}/{x}", res.name()));
                    }
                }
            }
        }
    }
    v
}

/// A patch time series (all times, all bands, `n`×`n` at `y0`,`x0`) with zarrs, and the formula's.
fn patch(dir: &Path, res: Resolution, y0: u64, x0: u64, n: u64) -> (Vec<u16>, Vec<u16>) {
    let f = fixture();
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(dir).unwrap());
    let array =
        zarrs::array::Array::open(store, &format!("/35VLH/{YEAR}/{}/data", res.name())).unwrap();
    let s = array.shape().to_vec();
    let subset =
        zarrs::array::ArraySubset::new_with_ranges(&[0..s[0], 0..s[1], y0..y0 + n, x0..x0 + n]);
    let a: ndarray::ArrayD<u16> = array.retrieve_array_subset(&subset).unwrap();
    let mut want = Vec::new();
    for t in 0..s[0] as usize {
        for b in 0..s[1] as usize {
            for r in y0..y0 + n {
                for c in x0..x0 + n {
                    want.push(expected(f, res, t, b, r, c));
                }
            }
        }
    }
    (a.into_raw_vec_and_offset().0, want)
}

#[test]
fn intake_writes_shards_that_equal_the_formula_and_gdal_with_fewer_objects() {
    let f = fixture();
    let store = sharded_store();
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("zarr.json")).unwrap()).unwrap();
    assert_eq!(
        root["attributes"]["datacube"]["layout"],
        serde_json::json!({"name": "sharded", "shard_px_10m": 1024, "inner_chunk_px_10m": 128})
    );
    for res in Resolution::ALL {
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.join(format!("35VLH/{YEAR}/{}/data/zarr.json", res.name())))
                .unwrap(),
        )
        .unwrap();
        let codec = &meta["codecs"][0];
        assert_eq!(codec["name"], "sharding_indexed", "{res}");
        assert_eq!(
            codec["configuration"]["chunk_shape"],
            serde_json::json!(SHARDED.inner_shape(res).unwrap())
        );
        assert_eq!(
            meta["chunk_grid"]["configuration"]["chunk_shape"],
            serde_json::json!(SHARDED.object_shape(res))
        );
        let (shape, data) = read_data(&store, res);
        assert_formula(f, res, &shape, &data, |_| true);
        assert_gdal_windows(f, res, &shape, &data);
    }
    // Exactly the shards that hold data, each complete, its index right.
    let files: Vec<String> = data_files(&store).into_keys().collect();
    let mut want = shards_with_data();
    want.sort();
    assert_eq!(files, want);
    let inner = assert_shards_valid(&store);
    // The partial-swath scene alone in the second 10 m time chunk leaves inner chunks out.
    assert!(inner > 0);
    // Fewer objects than the chunked store of the same tile-year.
    let chunked = data_files(intaken_store()).len();
    assert!(
        files.len() < chunked,
        "{} shards vs {chunked} chunks",
        files.len()
    );
}

#[test]
fn zarr_python_xarray_and_rioxarray_read_the_sharded_store() {
    let store = sharded_store();
    let out = run_python(
        "check_store.py",
        &[
            store.join("35VLH/2024").to_str().unwrap(),
            &store_expectations(fixture()).to_string(),
        ],
    );
    assert!(out.contains("store ok"), "{out}");
}

#[test]
fn the_mount_computes_shards_on_demand_and_zarrs_reads_their_inner_chunks_by_range() {
    let f = fixture();
    let work = work_dir("sharded-mount");
    let store = work.join("store");
    let m = Mounted::start(&work, &store, &f.archive, &["--layout", "sharded"]);
    // A 100² patch inside shard (0, 0) of both 10 m time chunks: two shards computed, and the
    // reader gets their indexes and the 2 × 2 inner chunks of 128² the patch overlaps, not the
    // whole shards.
    let (got, want) = patch(&m.mnt, Resolution::R10, 200, 300, 100);
    assert_eq!(got, want);
    let s = m.stats();
    assert_eq!(s["layout"], "sharded");
    assert_eq!(s["object"], "shard");
    assert_eq!(stat(&s, "/fs/materializations"), 2, "{s}");
    let shard_keys = ["10m/data/c/0/0/0/0", "10m/data/c/1/0/0/0"];
    let served: Vec<Vec<u8>> = shard_keys
        .iter()
        .map(|k| std::fs::read(m.path(&format!("35VLH/{YEAR}/{k}"))).unwrap())
        .collect();
    let inner: u64 = shard_keys
        .iter()
        .zip(&served)
        .map(|(k, b)| check_shard(k, b))
        .sum();
    assert_eq!(stat(&s, "/fs/inner_chunks_materialized"), inner, "{s}");
    let whole: u64 = served.iter().map(|b| b.len() as u64).sum();
    let read = stat(&s, "/fs/bytes_served");
    assert!(
        read < whole / 4,
        "the patch read {read} bytes of {whole} in its two shards"
    );

    // Everything, through the mount: the formula, the shard files, zarr-python and xarray.
    for res in Resolution::ALL {
        let (shape, data) = read_data(&m.mnt, res);
        assert_formula(f, res, &shape, &data, |_| true);
    }
    assert_shards_valid(&m.mnt);
    let out = run_python(
        "check_store.py",
        &[
            m.path(&format!("35VLH/{YEAR}")).to_str().unwrap(),
            &store_expectations(f).to_string(),
        ],
    );
    assert!(out.contains("store ok"), "{out}");
    assert!(m.terminate().success());

    // Written back shard by shard: the same bytes as intake's shards.
    let (written, intaken) = (data_files(&store), data_files(&sharded_store()));
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        intaken.keys().collect::<Vec<_>>()
    );
    for (k, v) in &written {
        assert!(v == &intaken[k], "{k} differs from intake's");
    }

    // A warm mount computes nothing and fetches from the store only the ranges read: the
    // shards are opened in the store once each (the reader opens each file once per inner
    // chunk), never read whole, nor cached.
    let m = Mounted::start(&work, &store, &f.archive, &["--layout", "sharded"]);
    let (got, want) = patch(&m.mnt, Resolution::R10, 200, 300, 100);
    assert_eq!(got, want);
    let s = m.stats();
    assert_eq!(stat(&s, "/fs/materializations"), 0, "{s}");
    assert_eq!(stat(&s, "/fs/store_opens"), 2, "{s}");
    assert_eq!(stat(&s, "/fs/store_reads"), 0, "{s}");
    assert!(stat(&s, "/fs/bytes_served") < whole / 4, "{s}");
    let fetched = stat(&s, "/fs/store_read_bytes");
    assert!(
        fetched < whole / 4,
        "the patch fetched {fetched} bytes of {whole} in its two shards from the store"
    );
    assert_eq!(stat(&s, "/chunk_cache/entries"), 0, "{s}");
    // Every byte of a shard, read whole through the mount, is the stored shard's.
    let key = shard_keys[1];
    assert!(std::fs::read(m.path(&format!("35VLH/{YEAR}/{key}"))).unwrap() == served[1]);
}

#[test]
fn kill_9_during_shard_writeback_leaves_no_torn_shard() {
    let f = fixture();
    let work = work_dir("sharded-kill9");
    let store = work.join("store");
    let mut paths: Vec<String> = shards_with_data()
        .iter()
        .map(|k| format!("35VLH/{YEAR}/{k}"))
        .collect();
    let mut valid = 0;
    // Two kills, the second on a store the first left partly written.
    for round in 0..2 {
        let m = Mounted::start_env(
            &work,
            &store,
            &f.archive,
            &["--layout", "sharded"],
            &[("DATACUBE_TEST_WRITEBACK_DELAY_MS", "30")],
        );
        paths.rotate_left(3);
        std::thread::scope(|s| {
            let readers: Vec<_> = paths
                .chunks(paths.len().div_ceil(3))
                .map(|part| {
                    let m = &m;
                    s.spawn(move || {
                        for p in part {
                            let _ = std::fs::read(m.path(p)); // fails once the daemon is gone
                        }
                    })
                })
                .collect();
            // Killed once a shard of this daemon has been written and more are queued, or when
            // the readers are done (a store that is nearly complete has little left to write).
            let t0 = std::time::Instant::now();
            loop {
                let s = m.stats();
                let busy = stat(&s, "/writeback/chunks_written") > 0
                    && stat(&s, "/writeback/queue_jobs") > 0;
                if busy || readers.iter().all(|r| r.is_finished()) {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(300), "no writeback: {s}");
                std::thread::sleep(Duration::from_millis(5));
            }
            common::mount::signal(m.pid(), libc::SIGKILL);
        });
        m.kill9();
        // Every shard file in the store is complete (index, checksum, every value), or absent.
        assert_shards_valid(&store);
        valid = data_files(&store).len();
        eprintln!("round {round}: {valid} shard files in the store, all complete");
    }
    assert!(valid > 0, "the kills should land after some writeback");
    // A remount serves the same bytes as intake, and completes the store.
    let m = Mounted::start(&work, &store, &f.archive, &["--layout", "sharded"]);
    let intaken = data_files(&sharded_store());
    for k in intaken.keys() {
        let served = std::fs::read(m.path(&format!("35VLH/{YEAR}/{k}"))).unwrap();
        assert!(served == intaken[k], "{k} served differs from intake's");
    }
    assert!(m.terminate().success());
    assert_eq!(
        data_files(&store).keys().collect::<Vec<_>>(),
        intaken.keys().collect::<Vec<_>>()
    );
    assert_shards_valid(&store);
    let leftovers: Vec<String> = tree(&store)
        .into_keys()
        .filter(|k| k.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn info_counts_the_objects_of_a_tile_year_and_projects_the_finland_year() {
    let store = sharded_store();
    let out = Command::new(bin())
        .args(["info", store.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The count is every file under the tile-year, as listed here.
    let files = tree(&store.join(format!("35VLH/{YEAR}"))).len();
    assert!(
        text.contains(&format!("35VLH/{YEAR}: {files} objects")),
        "{files} files:\n{text}"
    );
    assert!(text.contains("layout: sharded"), "{text}");
    // 192 scenes: 10 × 11² + 5 × 11² + 3 × 8² shards, plus what this tile-year holds besides.
    let other = files - data_files(&store).len();
    let per = 2007 + other;
    let total = per * 77 + 1 + 77;
    assert!(
        text.contains(&format!(
            "Finland (77 tiles) x 1 year(s) of 192 scenes: 2007 data + {other} other objects per tile-year, {total} objects"
        )),
        "{per} per tile-year:\n{text}"
    );
}

#[test]
fn a_store_made_before_layouts_stays_chunked_and_its_metadata_byte_identical() {
    let f = fixture();
    let work = work_dir("sharded-old-store");
    let store = work.join("store");
    // The metadata and catalog a previous version of intake wrote for the mini fixture.
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chunked-store-v1");
    let golden = tree(&golden_dir);
    for (k, v) in &golden {
        let p = store.join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }
    let intake = |layout: &[&str]| {
        Command::new(bin())
            .args(["intake", "--tile=35VLH", "--year=2024", "--no-progress"])
            .arg(format!("--source=safe:{}", f.archive.display()))
            .arg(format!("--store={}", store.display()))
            .args(layout)
            .output()
            .unwrap()
    };
    let out = intake(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = tree(&store);
    for (k, v) in &golden {
        assert!(&after[k] == v, "{k} was rewritten");
    }
    let st = datacube::store::DirStore::create(&store).unwrap();
    assert_eq!(Chunking::of_store(&st).unwrap(), Some(Chunking::Chunked));
    // Chunks of 512 (10 m): three per side of the 1098-px image.
    assert!(after.contains_key(&format!("35VLH/{YEAR}/10m/data/c/0/0/2/2")));
    for res in Resolution::ALL {
        let (shape, data) = read_data(&store, res);
        assert_formula(f, res, &shape, &data, |_| true);
    }
    // Asking for the other layout is refused, by intake and by mount, before anything is written.
    let out = intake(&["--layout=sharded"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("layout is chunked, not sharded"), "{err}");
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--tiles=35VLH", "--years=2024", "--layout=sharded"])
        .arg(format!("--source=safe:{}", f.archive.display()))
        .arg(format!("--store={}", store.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("layout is chunked, not sharded"), "{err}");
    assert_eq!(tree(&store), after, "nothing written by the refused runs");
}

/// The venv scripts/setup makes for the GDAL 3.12 checks: rasterio 1.5's wheels (which ship
/// GDAL 3.12, and need Python >= 3.12), tensorstore and zarr-python.
fn gdal_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-gdal/bin/python");
    assert!(
        p.exists(),
        "{} missing: scripts/setup makes it from a Python >= 3.12 (rasterio 1.5's wheels, which ship GDAL 3.12, need one)",
        p.display()
    );
    p
}

/// `tests/py/check_chunked_view.py` (GDAL 3.12, tensorstore, zarr-python) on a chunked view:
/// `spec` says what to read (see the script); the fixture's grid is added here.
fn check_view_with_gdal(mut spec: serde_json::Value) -> String {
    let f = fixture();
    let inner: serde_json::Map<String, serde_json::Value> = Resolution::ALL
        .iter()
        .map(|r| {
            (
                r.name().to_string(),
                SHARDED.inner_space(*r).unwrap().into(),
            )
        })
        .collect();
    for (k, v) in [
        ("epsg", serde_json::json!(f.spec.epsg)),
        ("ulx", serde_json::json!(f.spec.ulx)),
        ("uly", serde_json::json!(f.spec.uly)),
        ("width_m", serde_json::json!(f.spec.width_m())),
        ("inner", inner.into()),
    ] {
        spec[k] = v;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_chunked_view.py");
    let out = Command::new(gdal_python())
        .arg(&script)
        .arg(spec.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("view ok"), "{stdout}");
    stdout
}

/// The chunks of the chunked view that a shard `key` (`RES/data/c/T/0/Y/X`) makes, one per
/// position of its inner grid: the path of the view's chunk (`RES/data/c/T/0/IY/IX`) and the
/// inner chunk's bytes in the shard (`None`: absent, so no file), from the index parsed here.
fn view_chunks_of(key: &str, shard: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let p: Vec<&str> = key.split('/').collect();
    let res = res_of(p[0]);
    let (t, sy, sx): (u64, u64, u64) = (
        p[3].parse().unwrap(),
        p[5].parse().unwrap(),
        p[6].parse().unwrap(),
    );
    let per = SHARDED.space(res) / SHARDED.inner_space(res).unwrap();
    shard_entries(key, shard, (per * per) as usize)
        .into_iter()
        .enumerate()
        .map(|(k, e)| {
            let (iy, ix) = (sy * per + k as u64 / per, sx * per + k as u64 % per);
            (
                format!("{}/data/c/{t}/0/{iy}/{ix}", res.name()),
                e.map(|(off, len)| shard[off as usize..(off + len) as usize].to_vec()),
            )
        })
        .collect()
}

/// Reads every chunk of the view that `shards` make: each present inner chunk is served byte
/// for byte, each absent one (or one past the array's edge) is `ENOENT`. Returns the chunks
/// served (paths relative to the tile-year) and their bytes in all.
fn assert_view_serves(m: &Mounted, shards: &BTreeMap<String, Vec<u8>>) -> (Vec<String>, u64) {
    let (mut served, mut bytes) = (Vec::new(), 0);
    for (key, shard) in shards {
        for (rel, want) in view_chunks_of(key, shard) {
            let got = std::fs::read(m.path(&format!("35VLH/{YEAR}/{rel}")));
            match want {
                Some(want) => {
                    let got = got.unwrap_or_else(|e| panic!("{rel}: {e}"));
                    assert!(got == want, "{rel} is not the inner chunk of {key}");
                    bytes += want.len() as u64;
                    served.push(rel);
                }
                None => assert_eq!(
                    got.map(|b| b.len()).unwrap_err().kind(),
                    std::io::ErrorKind::NotFound,
                    "{rel}: absent from {key}"
                ),
            }
        }
    }
    (served, bytes)
}

fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

#[test]
fn the_chunked_view_serves_inner_chunks_byte_for_byte_and_gdal_3_12_reads_every_value() {
    let f = fixture();
    let work = work_dir("sharded-view");
    // A copy of intake's store: a mount keeps its records in the store it serves.
    let store = work.join("store");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(sharded_store())
        .arg(&store)
        .status()
        .unwrap();
    assert!(ok.success());
    let shards = data_files(&store);
    let m = Mounted::start(
        &work,
        &store,
        &f.archive,
        &["--layout", "sharded", "--view", "chunked"],
    );
    let year = format!("35VLH/{YEAR}");

    // The metadata: each data array chunked by the inner chunk, with the inner codecs, in its
    // own zarr.json and in the group's consolidated metadata; everything else is the store's.
    for res in Resolution::ALL {
        let rel = format!("{year}/{}/data/zarr.json", res.name());
        let mut want = json_file(&store.join(&rel));
        assert_eq!(want["codecs"][0]["name"], "sharding_indexed");
        let sharding = want["codecs"][0]["configuration"].clone();
        want["chunk_grid"]["configuration"]["chunk_shape"] = sharding["chunk_shape"].clone();
        want["codecs"] = sharding["codecs"].clone();
        let got = json_file(&m.path(&rel));
        assert_eq!(got, want, "{rel}");
        assert_eq!(
            got["chunk_grid"]["configuration"]["chunk_shape"],
            serde_json::json!(SHARDED.inner_shape(res).unwrap())
        );
        let group = json_file(&m.path(&format!("{year}/{}/zarr.json", res.name())));
        assert_eq!(group["consolidated_metadata"]["metadata"]["data"], got);
        for e in std::fs::read_dir(store.join(&year).join(res.name())).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name != "data" && name != "zarr.json" {
                let dir = format!("{year}/{}/{name}", res.name());
                assert_eq!(tree(&m.path(&dir)), tree(&store.join(&dir)), "{dir}");
            }
        }
    }
    let mut root = json_file(&m.path("zarr.json"));
    assert_eq!(root["attributes"]["datacube"]["view"], "chunked");
    root["attributes"]["datacube"]
        .as_object_mut()
        .unwrap()
        .remove("view");
    assert_eq!(root, json_file(&store.join("zarr.json")));

    // Every position of every shard: the inner chunk's bytes, or ENOENT. Each shard is opened in
    // the store once, its index read once by range, each inner chunk read by range: nothing
    // computed, nothing read whole.
    let (served, bytes) = assert_view_serves(&m, &shards);
    let index_bytes: u64 = shards
        .keys()
        .map(|k| {
            let per = SHARDED.inner_per_side(res_of(k.split('/').next().unwrap()));
            per * per * 16 + 4
        })
        .sum();
    let s = m.stats();
    assert_eq!(s["view"], "chunked", "{s}");
    assert_eq!(stat(&s, "/fs/materializations"), 0, "{s}");
    assert_eq!(stat(&s, "/fs/store_reads"), 0, "{s}");
    assert_eq!(stat(&s, "/fs/store_opens"), shards.len() as u64, "{s}");
    assert_eq!(stat(&s, "/fs/view_index_reads"), shards.len() as u64, "{s}");
    assert_eq!(stat(&s, "/fs/view_chunk_reads"), served.len() as u64, "{s}");
    assert_eq!(stat(&s, "/fs/store_read_bytes"), bytes + index_bytes, "{s}");
    // Chunks read from the store are cached, as a chunked store's are: read again, no store read.
    assert_eq!(stat(&s, "/chunk_cache/entries"), served.len() as u64, "{s}");
    for rel in served.iter().step_by(7) {
        std::fs::read(m.path(&format!("{year}/{rel}"))).unwrap();
    }
    let again = m.stats();
    assert_eq!(
        stat(&again, "/fs/store_read_bytes"),
        bytes + index_bytes,
        "{again}"
    );
    // A chunk directory lists the chunks served (their shards' indexes are known now).
    let row = "10m/data/c/1/0/0/";
    let mut listed: Vec<String> = std::fs::read_dir(m.path(&format!("{year}/{row}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort_by_key(|n| n.parse::<u64>().unwrap());
    let want: Vec<String> = served
        .iter()
        .filter_map(|p| p.strip_prefix(row))
        .map(str::to_string)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(listed, want);

    // GDAL 3.12 (rasterio's wheels), which refuses the sharded store, reads every value of the
    // view, georeferenced; tensorstore and zarr-python read the same values.
    let out = work.join("gdal");
    std::fs::create_dir_all(&out).unwrap();
    let log = check_view_with_gdal(serde_json::json!({
        "view": m.path(&year),
        "native": store.join(&year),
        "windows": null,
        "out": out,
        "readers": ["tensorstore", "zarr"],
    }));
    eprintln!("{log}");
    for res in Resolution::ALL {
        // GDAL's values ([time, band, y, x], uint16 little-endian) are intake's, every one
        // (whose every value is the formula's: the first test here); those of the first scene
        // and of the last, a partial swath, are checked against the formula here too.
        let gdal = std::fs::read(out.join(format!("{}.u16", res.name()))).unwrap();
        let (shape, stored) = read_data(&sharded_store(), res);
        let want: Vec<u8> = stored.iter().flat_map(|v| v.to_le_bytes()).collect();
        if gdal != want {
            let i = (0..want.len().min(gdal.len()))
                .find(|i| gdal[*i] != want[*i])
                .unwrap_or(0);
            panic!(
                "{res}: GDAL's {} bytes differ from the store's {} first at byte {i}",
                gdal.len(),
                want.len()
            );
        }
        assert_formula(f, res, &shape, &stored, |t| t == 0 || t == SCENES - 1);
    }
    assert_eq!(stat(&m.stats(), "/fs/materializations"), 0);
    assert!(m.terminate().success());
    assert!(
        data_files(&store) == shards,
        "the store's shards are unchanged"
    );
}

#[test]
fn the_chunked_view_of_an_empty_store_computes_shards_on_demand_for_gdal_3_12() {
    let f = fixture();
    let work = work_dir("sharded-view-cold");
    let store = work.join("store");
    let m = Mounted::start(
        &work,
        &store,
        &f.archive,
        &["--layout", "sharded", "--view", "chunked"],
    );
    // A 10 m window across inner chunks of shard (0, 0), and the whole 60 m array (one shard):
    // every value GDAL reads equals the formula.
    let log = check_view_with_gdal(serde_json::json!({
        "view": m.path(&format!("35VLH/{YEAR}")),
        "windows": {"10m": [200, 330, 250, 400], "60m": [0, 183, 0, 183]},
        "readers": ["tensorstore"],
    }));
    eprintln!("{log}");
    // The shards under them were computed (both 10 m time chunks), once each, and the view's
    // chunks are their inner chunks: intake's, byte for byte.
    let computed = [
        "10m/data/c/0/0/0/0",
        "10m/data/c/1/0/0/0",
        "60m/data/c/0/0/0/0",
    ];
    assert_eq!(stat(&m.stats(), "/fs/materializations"), 3);
    let intaken = data_files(&sharded_store());
    let shards: BTreeMap<String, Vec<u8>> = computed
        .iter()
        .map(|k| (k.to_string(), intaken[*k].clone()))
        .collect();
    assert_view_serves(&m, &shards);
    assert_eq!(stat(&m.stats(), "/fs/materializations"), 3);
    // Written back as shards of the store's layout: intake's.
    assert!(m.terminate().success());
    assert!(
        data_files(&store) == shards,
        "written back: intake's shards"
    );

    // Sentinel-1 mounts have no chunked view: refused, naming the option.
    let out = Command::new(bin())
        .arg("mount")
        .arg(work.join("mnt"))
        .args([
            "--collection=sentinel-1-sig0",
            "--tiles=E048N015T3",
            "--years=2024",
        ])
        .args(["--source=file:/nonexistent", "--view=chunked"])
        .arg(format!("--store={}", work.join("s1-store").display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--view chunked: sentinel-1-sig0 mounts serve their shards as stored"),
        "{err}"
    );
}
