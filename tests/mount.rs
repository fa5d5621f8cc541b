//! `datacube mount` for real (root and /dev/fuse): values through the mount against the formula
//! and GDAL, zarrs and xarray clients, writeback to the store, concurrency, kill -9, SIGTERM drain,
//! path fuzzing and read-only semantics, a failing source file, and reads without OPEN requests.

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::mount::{stat, Mounted};
use common::*;
use datacube::key::TileYear;
use datacube::s2::bands::Resolution;
use datacube::store::{ChunkEntry, ChunkRecord, DirStore};

/// A patch time series (all times, all bands, `n`×`n` pixels at `y0`,`x0`) read with zarrs.
fn read_patch(dir: &Path, res: Resolution, y0: u64, x0: u64, n: u64) -> Vec<u16> {
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(dir).unwrap());
    let array =
        zarrs::array::Array::open(store, &format!("/35VLH/{YEAR}/{}/data", res.name())).unwrap();
    let s = array.shape().to_vec();
    let subset =
        zarrs::array::ArraySubset::new_with_ranges(&[0..s[0], 0..s[1], y0..y0 + n, x0..x0 + n]);
    let a: ndarray::ArrayD<u16> = array.retrieve_array_subset(&subset).unwrap();
    a.into_raw_vec_and_offset().0
}

fn assert_patch(res: Resolution, patch: &[u16], y0: u64, x0: u64, n: u64) {
    let f = fixture();
    let nb = res.bands().len();
    for t in 0..SCENES {
        for b in 0..nb {
            for r in 0..n {
                for c in 0..n {
                    let got =
                        patch[((t * nb + b) * n as usize + r as usize) * n as usize + c as usize];
                    assert_eq!(
                        got,
                        expected(f, res, t, b, y0 + r, x0 + c),
                        "{res} [{t},{b},{},{}]",
                        y0 + r,
                        x0 + c
                    );
                }
            }
        }
    }
}

/// Data chunk files under `root` (a store or a mount): `RES/data/c/...` → bytes.
fn chunk_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for res in Resolution::ALL {
        let dir = root.join(format!("35VLH/{YEAR}/{}/data", res.name()));
        for (k, v) in tree(&dir) {
            if k.starts_with("c/") {
                out.insert(format!("{}/data/{k}", res.name()), v);
            }
        }
    }
    out
}

fn all_chunk_paths(res: Resolution) -> Vec<String> {
    let f = fixture();
    let n = f.spec.width_m() / res.metres() as u64;
    let cs = res.space_chunk();
    let nt = (SCENES as u64).div_ceil(res.time_chunk());
    let mut v = Vec::new();
    for t in 0..nt {
        for y in 0..n.div_ceil(cs) {
            for x in 0..n.div_ceil(cs) {
                v.push(format!("35VLH/{YEAR}/{}/data/c/{t}/0/{y}/{x}", res.name()));
            }
        }
    }
    v
}

#[test]
fn mount_serves_the_formula_writes_back_and_restarts_from_the_store() {
    let f = fixture();
    let work = work_dir("mount-read");
    let store = work.join("store");
    let m = Mounted::start(&work, &store, &f.archive, &[]);

    // Listing never starts work: nothing is materialized yet, so no chunk tree is listed.
    let data_dir = m.path(&format!("35VLH/{YEAR}/10m/data"));
    let names: Vec<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["zarr.json"]);
    assert_eq!(stat(&m.stats(), "/fs/materializations"), 0);

    // Patch time series across chunk edges, through zarrs.
    for res in Resolution::ALL {
        let cs = res.space_chunk();
        let n = 5100 / res.metres() as u64;
        let n = n.min(f.spec.width_m() / res.metres() as u64 - cs + 40);
        let patch = read_patch(&m.mnt, res, cs - 40, cs - 30, n);
        assert_patch(res, &patch, cs - 40, cs - 30, n);
    }
    // Whole arrays (every chunk, the partial last time chunk included) against formula and GDAL.
    for res in Resolution::ALL {
        let (shape, data) = read_data(&m.mnt, res);
        assert_eq!(shape[0], SCENES as u64);
        assert!(assert_formula(f, res, &shape, &data, |_| true) > 0);
        assert_gdal_windows(f, res, &shape, &data);
    }
    // zarr-python / xarray / rioxarray through the mount.
    let expect = store_expectations(f).to_string();
    let year_dir = m.path(&format!("35VLH/{YEAR}"));
    let out = run_python("check_store.py", &[year_dir.to_str().unwrap(), &expect]);
    assert!(out.contains("store ok"), "{out}");
    // Python's open() asks an ioctl of every file: answered ENOTTY, quietly.
    assert!(
        !m.log_text().contains("Not Implemented"),
        "{}",
        m.log_text()
    );

    let served = chunk_files(&m.mnt);
    let mounted_tree = tree(&m.mnt);
    let s = m.stats();
    assert_eq!(stat(&s, "/fs/materialize_errors"), 0);
    let data_chunks = stat(&s, "/fs/materializations") - stat(&s, "/fs/materialized_empty");
    assert_eq!(
        served.len() as u64,
        data_chunks,
        "listing shows every computed chunk"
    );
    assert!(
        stat(&s, "/fs/materialized_empty") > 0,
        "scene 20's empty corner"
    );
    assert!(m.terminate().success());

    // The store holds exactly what was served (metadata, coordinates and chunks), recorded, and
    // opens without the daemon.
    assert_eq!(chunk_files(&store), served);
    let visible = |t: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        t.into_iter()
            .filter(|(k, _)| !k.contains(".datacube"))
            .collect()
    };
    let (a, b) = (visible(mounted_tree), visible(tree(&store)));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a == b, "mount and store differ");
    let st = DirStore::create(&store).unwrap();
    let mut empties = 0;
    for res in Resolution::ALL {
        let rec = ChunkRecord::load(&st, &TileYear::new("35VLH", YEAR), res).unwrap();
        assert_eq!(
            rec.chunks.len(),
            all_chunk_paths(res).len(),
            "{res}: every chunk recorded"
        );
        for (k, e) in &rec.chunks {
            let key = format!("{}/data/{k}", res.name());
            match e {
                ChunkEntry::Data { bytes } => assert_eq!(served[&key].len() as u64, *bytes),
                ChunkEntry::Empty => {
                    empties += 1;
                    assert!(!served.contains_key(&key));
                }
            }
        }
        let (shape, data) = read_data(&store, res);
        assert_formula(f, res, &shape, &data, |_| true);
    }
    assert_eq!(empties, stat(&s, "/fs/materialized_empty"));
    let out = run_python(
        "check_store.py",
        &[
            store.join(format!("35VLH/{YEAR}")).to_str().unwrap(),
            &expect,
        ],
    );
    assert!(out.contains("store ok"), "{out}");

    // A restart serves the same chunks from the store: nothing is computed again.
    let m = Mounted::start(&work, &store, &f.archive, &[]);
    for res in Resolution::ALL {
        let (shape, data) = read_data(&m.mnt, res);
        assert_formula(f, res, &shape, &data, |_| true);
    }
    let s = m.stats();
    assert_eq!(stat(&s, "/fs/materializations"), 0, "{s}");
    assert_eq!(stat(&s, "/fs/store_reads"), served.len() as u64);
    assert_eq!(stat(&s, "/decoded_tiles/decodes"), 0);
    assert!(m.terminate().success());
}

#[test]
fn concurrent_readers_get_identical_bytes_and_each_chunk_is_materialized_once() {
    let f = fixture();
    let work = work_dir("mount-concurrent");
    let m = Mounted::start(&work, &work.join("store"), &f.archive, &[]);
    // Overlapping sets: every reader reads 2×2 neighbouring 10 m chunks, 2 at 20 m and the 60 m
    // chunk, each reader starting at a different one.
    let chunks: Vec<String> = [
        "10m/data/c/0/0/0/0",
        "10m/data/c/0/0/0/1",
        "10m/data/c/0/0/1/0",
        "10m/data/c/0/0/1/1",
        "20m/data/c/0/0/0/0",
        "20m/data/c/0/0/1/1",
        "60m/data/c/0/0/0/0",
    ]
    .iter()
    .map(|c| format!("35VLH/{YEAR}/{c}"))
    .collect();
    let readers = 64;
    let barrier = Arc::new(Barrier::new(readers));
    let results: Vec<Vec<(String, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..readers)
            .map(|i| {
                let (barrier, chunks, m) = (barrier.clone(), &chunks, &m);
                s.spawn(move || {
                    barrier.wait();
                    (0..chunks.len())
                        .map(|j| {
                            let c = &chunks[(i + j) % chunks.len()];
                            (c.clone(), std::fs::read(m.path(c)).unwrap())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut first: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in results {
        for (c, bytes) in r {
            let want = first.entry(c.clone()).or_insert_with(|| bytes.clone());
            assert!(*want == bytes, "{c}: readers got different bytes");
        }
    }
    let s = m.stats();
    assert_eq!(stat(&s, "/fs/materializations"), chunks.len() as u64, "{s}");
    assert_eq!(stat(&s, "/fs/materialize_errors"), 0);
    // Decoded JP2 tiles shared between neighbouring chunks: the four 10 m chunks lie in one JP2
    // tile per (scene, band), so 20 × 4 decodes, not 4 × 80.
    // 20 m and 60 m: one JP2 tile per (scene, band) for all 21 scenes.
    let decodes = stat(&s, "/decoded_tiles/decodes");
    assert_eq!(
        decodes,
        20 * 4 + 21 * 6 + 21 * 3,
        "each JP2 tile decoded once"
    );
    assert!(m.terminate().success());
    // What was served is what was stored.
    for (c, bytes) in &first {
        assert!(
            std::fs::read(work.join("store").join(c)).unwrap() == *bytes,
            "{c}"
        );
    }
}

/// The mount answers no OPEN (after the first) and no FLUSH: a file read before is read again
/// from the kernel's pages without a request reaching the daemon; `stats.json` is nonetheless
/// current at each read, and always one whole document, also while chunks are being computed
/// and other readers read it.
#[test]
fn warm_reads_stay_in_the_kernel_and_stats_json_is_current_and_whole() {
    let f = fixture();
    let work = work_dir("mount-no-open");
    let m = Mounted::start(&work, &work.join("store"), &f.archive, &[]);
    let c = |rel: &str| format!("35VLH/{YEAR}/{rel}");
    let warm = [
        c("10m/data/c/0/0/0/0"),
        c("60m/data/c/0/0/0/0"),
        c("zarr.json"),
    ];
    let first: Vec<Vec<u8>> = warm
        .iter()
        .map(|p| std::fs::read(m.path(p)).unwrap())
        .collect();
    let s0 = m.stats();
    for _ in 0..3 {
        for (p, want) in warm.iter().zip(&first) {
            assert!(std::fs::read(m.path(p)).unwrap() == *want, "{p}");
        }
    }
    let s1 = m.stats();
    // No open reached the daemon but the very first. The data came from the kernel's pages: the
    // READs between the two snapshots are the one that returned s0 (a snapshot is taken before its
    // own READ is counted) and at most one per file, for the kernel may fetch a file's partly
    // filled last page again (seen once in CI: two tails of 10 KiB); dropped pages would be
    // dozens of READs of up to 1 MiB for these 13 MB chunks, read three times.
    assert_eq!(stat(&s1, "/fs/opens"), 1, "{s1}");
    let reads = stat(&s1, "/fs/reads") - stat(&s0, "/fs/reads");
    assert!(reads <= 1 + warm.len() as u64, "{reads} READs\n{s0}\n{s1}");
    let reread: u64 = first.iter().map(|b| 3 * b.len() as u64).sum();
    let served = stat(&s1, "/fs/bytes_served") - stat(&s0, "/fs/bytes_served");
    assert!(
        served * 100 < reread,
        "{served} of {reread} bytes served by the daemon"
    );
    assert_eq!(
        stat(&s1, "/fs/materializations"),
        stat(&s0, "/fs/materializations")
    );

    // Chunks computed while two threads read stats.json: each read is a whole document of whole
    // 4 KiB pages, and what one thread sees never goes back.
    let fresh: Vec<String> = (0..4)
        .map(|i| c(&format!("20m/data/c/0/0/{}/{}", i / 2, i % 2)))
        .collect();
    let stats_path = m.path(".datacube/stats.json");
    std::thread::scope(|s| {
        let watchers: Vec<_> = (0..2)
            .map(|_| {
                let stats_path = &stats_path;
                s.spawn(move || {
                    let mut last = 0;
                    for _ in 0..300 {
                        let b = std::fs::read(stats_path).unwrap();
                        assert_eq!(b.len() % 4096, 0, "stats.json of {} bytes", b.len());
                        let v: serde_json::Value = serde_json::from_slice(&b)
                            .unwrap_or_else(|e| panic!("stats.json: {e}: {b:?}"));
                        let n = stat(&v, "/fs/materializations");
                        assert!(n >= last, "materializations went back from {last} to {n}");
                        last = n;
                    }
                })
            })
            .collect();
        for p in &fresh {
            assert!(!std::fs::read(m.path(p)).unwrap().is_empty(), "{p}");
        }
        for w in watchers {
            w.join().unwrap();
        }
    });
    // Current without a remount: the four new chunks are counted.
    let s2 = m.stats();
    assert_eq!(
        stat(&s2, "/fs/materializations"),
        stat(&s1, "/fs/materializations") + fresh.len() as u64,
        "{s2}"
    );
    assert!(m.terminate().success());
}

/// Every chunk file in the store decodes to the formula (no torn or wrong chunk).
fn assert_store_chunks_valid(store: &Path) -> usize {
    let f = fixture();
    let zs = Arc::new(zarrs::filesystem::FilesystemStore::new(store).unwrap());
    let mut n = 0;
    for (key, _) in chunk_files(store) {
        let parts: Vec<&str> = key.split('/').collect();
        let res = Resolution::ALL
            .into_iter()
            .find(|r| r.name() == parts[0])
            .unwrap();
        let array =
            zarrs::array::Array::open(zs.clone(), &format!("/35VLH/{YEAR}/{}/data", res.name()))
                .unwrap();
        let idx: Vec<u64> = parts[3..].iter().map(|p| p.parse().unwrap()).collect();
        let chunk: ndarray::ArrayD<u16> = array
            .retrieve_chunk(&idx)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        // Indexed by hand: ndarray's indexing is generic code, compiled here at the test crate's
        // opt-level 1, and was most of the check's time (the array is in C order).
        assert!(chunk.is_standard_layout());
        let chunk = chunk.into_raw_vec_and_offset().0;
        let [ct, nb, cs, _] = res.chunk_shape();
        assert_eq!(chunk.len() as u64, ct * nb * cs * cs, "{key}: decoded size");
        let side = f.spec.width_m() / res.metres() as u64;
        for t in 0..ct {
            let tt = idx[0] * ct + t;
            for b in 0..nb {
                for r in 0..cs {
                    for c in 0..cs {
                        let (y, x) = (idx[2] * cs + r, idx[3] * cs + c);
                        let got = chunk[(((t * nb + b) * cs + r) * cs + c) as usize];
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
        n += 1;
    }
    n
}

#[test]
fn kill_9_during_writeback_leaves_a_consistent_store_and_a_recoverable_mount_point() {
    let f = fixture();
    let work = work_dir("mount-kill9");
    let store = work.join("store");
    let mut paths: Vec<String> = Resolution::ALL
        .iter()
        .flat_map(|r| all_chunk_paths(*r))
        .collect();
    let mut valid = 0;
    // Two kills, at different points of the writeback (after 1 and 2 chunks written).
    for round in 0..2u64 {
        let m = Mounted::start_env(
            &work,
            &store,
            &f.archive,
            &[],
            &[("DATACUBE_TEST_WRITEBACK_DELAY_MS", "30")],
        );
        // Readers keep the daemon materializing and the queue busy; killed at varying points.
        paths.rotate_left(5);
        std::thread::scope(|s| {
            for part in paths.chunks(paths.len().div_ceil(4)) {
                let m = &m;
                s.spawn(move || {
                    for p in part {
                        let _ = std::fs::read(m.path(p)); // fails once the daemon is gone
                    }
                });
            }
            // Kill while chunks are being written: some already written by this daemon, more
            // in the queue.
            common::mount::kill_while_writing_back(&m, round);
        });
        let mnt = m.mnt.clone();
        m.kill9();
        // The mount point is stale now, as after a crash.
        let e = std::fs::read_dir(&mnt).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
        valid = assert_store_chunks_valid(&store);
        eprintln!("round {round}: {valid} chunk files in the store, all valid");
    }
    assert!(
        valid > 1,
        "the kills should land during writeback of a partly filled store"
    );
    // The next mount recovers the stale mount point and completes the store.
    let m = Mounted::start(&work, &store, &f.archive, &[]);
    assert!(
        m.log_text().contains("stale FUSE mount"),
        "{}",
        m.log_text()
    );
    for res in Resolution::ALL {
        let (shape, data) = read_data(&m.mnt, res);
        assert_formula(f, res, &shape, &data, |_| true);
    }
    assert!(m.terminate().success());
    assert!(assert_store_chunks_valid(&store) > 0);
    for res in Resolution::ALL {
        let (shape, data) = read_data(&store, res);
        assert_formula(f, res, &shape, &data, |_| true);
    }
    let leftovers: Vec<String> = tree(&store)
        .into_keys()
        .filter(|k| k.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn sigterm_writes_every_queued_chunk_before_exit() {
    let f = fixture();
    let work = work_dir("mount-sigterm");
    let store = work.join("store");
    let m = Mounted::start_env(
        &work,
        &store,
        &f.archive,
        &[],
        &[("DATACUBE_TEST_WRITEBACK_DELAY_MS", "3000")],
    );
    let (shape, data) = read_data(&m.mnt, Resolution::R10);
    let s = m.stats();
    assert!(stat(&s, "/writeback/queue_jobs") > 0, "nothing queued: {s}");
    let served = chunk_files(&m.mnt);
    assert_formula(f, Resolution::R10, &shape, &data, |_| true);
    assert!(m.terminate().success());
    assert_eq!(chunk_files(&store), served);
    let st = DirStore::create(&store).unwrap();
    let rec = ChunkRecord::load(&st, &TileYear::new("35VLH", YEAR), Resolution::R10).unwrap();
    assert_eq!(rec.chunks.len(), all_chunk_paths(Resolution::R10).len());
}

#[test]
fn bad_paths_are_enoent_and_writes_are_erofs() {
    let f = fixture();
    let work = work_dir("mount-fuzz");
    let m = Mounted::start(&work, &work.join("store"), &f.archive, &[]);
    let y = format!("35VLH/{YEAR}");
    let mut names: Vec<String> = vec![
        "..".into(),
        "../..".into(),
        "35VLJ".into(),
        "35VLH/2023".into(),
        "35VLH/02024".into(),
        format!("{y}/15m"),
        format!("{y}/10m/nope"),
        format!("{y}/10m/data/c/99/0/0/0"),
        format!("{y}/10m/data/c/0/1/0/0"),
        format!("{y}/10m/data/c/0/0/0/00"),
        format!("{y}/10m/data/c/0/0/0/-1"),
        format!("{y}/10m/data/c/0/0/0/18446744073709551616"),
        format!("{y}/10m/data/c/0/0/9/0"),
        format!("{y}/zarr.json/x"),
        format!("{y}/10m/{}", "n".repeat(300)),
        format!("{y}/10m/{}", "n".repeat(255)),
        ".datacube/nope".into(),
    ];
    // Random names at every level.
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let dirs = [
        "",
        "35VLH",
        &y,
        &format!("{y}/20m"),
        &format!("{y}/20m/data/c/0/0"),
    ];
    for i in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 40) as usize;
        let name: String = (0..len)
            .map(|k| {
                b"abcdefghijklmnopqrstuvwxyz0123456789._-~ "[((x >> (k % 50)) % 41) as usize]
                    as char
            })
            .collect();
        // The leading letter keeps random names from being real (`0`, `zarr.json`, ...).
        let name = format!("q{}", name.trim());
        let d = dirs[i % dirs.len()];
        names.push(if d.is_empty() {
            name
        } else {
            format!("{d}/{name}")
        });
    }
    for n in &names {
        let p = m.path(n);
        if n.starts_with("..") {
            // Leaves the mount: the kernel resolves it, never the daemon.
            continue;
        }
        for r in [
            std::fs::metadata(&p).map(|_| ()),
            std::fs::read(&p).map(|_| ()),
        ] {
            if let Err(e) = r {
                let ok = matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput)
                    || matches!(e.raw_os_error(), Some(libc::ENAMETOOLONG | libc::ENOTDIR));
                assert!(ok, "{n}: {e}");
            } else {
                panic!("{n} exists?");
            }
        }
    }
    let erofs = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    let meta = m.path(&format!("{y}/10m/zarr.json"));
    erofs(std::fs::write(m.path("new.txt"), b"x"), "create");
    erofs(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&meta)
            .map(|_| ()),
        "open for writing",
    );
    erofs(std::fs::create_dir(m.path(&format!("{y}/new"))), "mkdir");
    erofs(std::fs::remove_file(&meta), "unlink");
    erofs(
        std::fs::rename(&meta, m.path(&format!("{y}/10m/z"))),
        "rename",
    );
    erofs(
        std::fs::remove_dir(m.path(&format!("{y}/10m/data"))),
        "rmdir",
    );
    // The daemon is alive and computed nothing for all that.
    let s = m.stats();
    assert_eq!(stat(&s, "/fs/materializations"), 0, "{s}");
    assert!(std::fs::read(&meta).unwrap().starts_with(b"{"));
    assert!(m.terminate().success());
    assert!(!m_log_has_panic(&work));
}

fn m_log_has_panic(work: &Path) -> bool {
    std::fs::read_to_string(work.join("mount.log"))
        .unwrap_or_default()
        .contains("panicked")
}

#[test]
fn a_broken_band_file_is_eio_for_its_chunks_only_and_nothing_is_kept() {
    let f = fixture();
    let work = work_dir("mount-broken");
    let archive = copy_archive("mount-broken-archive");
    // Scene 1's B04 (10 m) loses the second half of its codestream.
    let bad = band_file(f, f.kept()[1], "B04");
    let bad = archive.join(bad.strip_prefix(&f.archive).unwrap());
    let len = std::fs::metadata(&bad).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bad)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let store = work.join("store");
    let m = Mounted::start(&work, &store, &archive, &[]);
    let chunk = format!("35VLH/{YEAR}/10m/data/c/0/0/1/1");
    for _ in 0..2 {
        let e = std::fs::read(m.path(&chunk)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    }
    // Other chunks are served: other resolutions, and 10 m time chunk 1 (scenes 20+).
    let ok = format!("35VLH/{YEAR}/20m/data/c/0/0/0/0");
    assert!(!std::fs::read(m.path(&ok)).unwrap().is_empty());
    let ok2 = format!("35VLH/{YEAR}/10m/data/c/1/0/0/0");
    let _ = std::fs::read(m.path(&ok2)); // data or all-fill (ENOENT), never EIO
    let s = m.stats();
    assert_eq!(stat(&s, "/fs/materialize_errors"), 2, "{s}");
    assert!(m.terminate().success());
    let log = std::fs::read_to_string(work.join("mount.log")).unwrap();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{log}");
    for l in &errors {
        assert!(
            l.contains(&bad.display().to_string()) && l.contains("B04"),
            "{l}"
        );
        assert!(l.contains(&chunk), "{l}");
    }
    assert!(!store.join(&chunk).exists());
    let st = DirStore::create(&store).unwrap();
    let rec = ChunkRecord::load(&st, &TileYear::new("35VLH", YEAR), Resolution::R10).unwrap();
    assert!(!rec.chunks.contains_key(&"c/0/0/1/1".parse().unwrap()));
    assert!(store.join(&ok).exists());
}
