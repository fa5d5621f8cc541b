//! `datacube intake` into a directory store: values against the formula and GDAL, the layout seen
//! by zarr-python/xarray/rioxarray, resumability after kill -9, and bad input.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use datacube::key::TileYear;
use datacube::s2::bands::Resolution;
use datacube::store::{ChunkEntry, ChunkRecord, DirStore};

#[test]
fn every_10m_pixel_and_all_of_20m_60m_equal_the_formula() {
    let f = fixture();
    let store = intaken_store();
    for res in Resolution::ALL {
        let (shape, data) = read_data(store, res);
        let n = f.spec.pixels(res.metres());
        assert_eq!(shape, vec![SCENES as u64, res.bands().len() as u64, n, n]);
        let compared = assert_formula(f, res, &shape, &data, |_| true);
        assert_eq!(compared as u64, shape.iter().product::<u64>());
    }
}

#[test]
fn values_equal_gdal_reads_of_the_source_jp2_windows() {
    let store = intaken_store();
    for res in Resolution::ALL {
        let (shape, data) = read_data(store, res);
        assert_gdal_windows(fixture(), res, &shape, &data);
    }
}

#[test]
fn record_marks_every_chunk_and_empty_chunks_have_no_file() {
    let f = fixture();
    let store_dir = intaken_store();
    let store = DirStore::create(store_dir).unwrap();
    let mut empties = 0;
    for res in Resolution::ALL {
        let rec = ChunkRecord::load(&store, &TileYear::new("35VLH", YEAR), res).unwrap();
        let ctx_geom = {
            let cat = datacube::s2::catalog::Catalog::load(&store, "35VLH", YEAR)
                .unwrap()
                .unwrap();
            datacube::s2::layout::DataGeometry::new(
                &cat,
                datacube::s2::array::PixelArray::data(res),
                datacube::s2::chunking::Chunking::Chunked,
            )
            .unwrap()
        };
        assert_eq!(rec.chunks.len() as u64, ctx_geom.total_chunks(), "{res}");
        for (key, entry) in &rec.chunks {
            let file = store_dir.join(format!("35VLH/{YEAR}/{}/data/{key}", res.name()));
            match entry {
                ChunkEntry::Data { bytes } => {
                    assert_eq!(std::fs::metadata(&file).unwrap().len(), *bytes)
                }
                ChunkEntry::Empty => {
                    empties += 1;
                    assert!(!file.exists(), "{}", file.display());
                }
            }
        }
    }
    // Scene 20 (20 % 3 == 2) alone in the second 10 m time chunk: its missing corner is all fill.
    assert!(empties > 0);
    let _ = f;
}

#[test]
fn xarray_and_rioxarray_read_the_store() {
    let f = fixture();
    let store = intaken_store();
    let expect = store_expectations(f);
    let out = run_python(
        "check_store.py",
        &[
            store.join("35VLH/2024").to_str().unwrap(),
            &expect.to_string(),
        ],
    );
    assert!(out.contains("store ok"), "{out}");
}

#[test]
fn interrupted_intake_resumes_to_a_byte_identical_store() {
    let f = fixture();
    let clean = intaken_store();
    let dir = work_dir("resumed");
    let args = |d: &Path| {
        vec![
            "intake".to_string(),
            "--layout=chunked".to_string(),
            format!("--source=safe:{}", f.archive.display()),
            format!("--store={}", d.display()),
            "--tile=35VLH".into(),
            format!("--year={YEAR}"),
            "--no-progress".into(),
        ]
    };
    // Kill -9 several times at different points, then let it finish.
    // Progress shows as a record file of 10 m chunks being (re)written: the newest one's time.
    let records = dir.join(format!("35VLH/{YEAR}/.datacube/records/10m"));
    let newest = || -> Option<std::time::SystemTime> {
        std::fs::read_dir(&records)
            .ok()?
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .max()
    };
    for round in 0..3 {
        let mut child = Command::new(bin()).args(args(&dir)).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let before = newest();
        loop {
            let now = newest();
            if now.is_some() && now != before {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no progress");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("round {round}: intake ended before it could be interrupted: {status}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(150 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let rec = ChunkRecord::load(
        &DirStore::create(&dir).unwrap(),
        &TileYear::new("35VLH", YEAR),
        Resolution::R10,
    )
    .unwrap();
    assert!(!rec.chunks.is_empty());
    let status = Command::new(bin()).args(args(&dir)).status().unwrap();
    assert!(status.success());

    assert_same_store(clean, &dir);
    // Every killed run's record file was folded into a live writer's and removed.
    let files = std::fs::read_dir(dir.join(format!("35VLH/{YEAR}/.datacube/records/10m")))
        .unwrap()
        .count();
    assert_eq!(files, 1, "record files of dead writers are compacted");
    // A rerun of a complete store computes nothing and changes nothing a reader sees (it may
    // fold the previous run's record file into its own).
    let before = tree(&dir);
    let out = Command::new(bin()).args(args(&dir)).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 written, 0 empty"), "{text}");
    let after = tree(&dir);
    let data = |t: &std::collections::BTreeMap<String, Vec<u8>>| -> Vec<(String, Vec<u8>)> {
        t.iter()
            .filter(|(k, _)| !k.contains("/.datacube/records/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert!(data(&before) == data(&after), "a rerun changed the store");
    assert_same_store(clean, &dir);
}

#[test]
fn bad_input_is_named_and_nothing_wrong_is_stored() {
    let f = fixture();
    let archive = copy_archive("bad-archive");
    let kept = f.kept();
    let band_file = |t: usize, band: &str| {
        let p = kept[t];
        datacube_tools::fixture::product_dir(&archive, p)
            .join("GRANULE")
            .join(&p.granule_id)
            .join("IMG_DATA")
            .join(format!("{}.jp2", p.band_stem("35VLH", band)))
    };
    // 1. A corrupt JP2 (truncated codestream) of scene 3, B04 (10 m).
    let corrupt = band_file(3, "B04");
    let bytes = std::fs::read(&corrupt).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    // 2. A missing band file: scene 5, B8A (20 m).
    let missing = band_file(5, "B8A");
    std::fs::remove_file(&missing).unwrap();
    // 3. A truncated MTD_TL.xml of the last scene (so the others keep their time index).
    let last = kept[SCENES - 1];
    let mtd = datacube_tools::fixture::product_dir(&archive, last)
        .join("GRANULE")
        .join(&last.granule_id)
        .join("MTD_TL.xml");
    let text = std::fs::read(&mtd).unwrap();
    std::fs::write(&mtd, &text[..text.len() / 2]).unwrap();

    let store_dir = work_dir("bad-store");
    let out = Command::new(bin())
        .args([
            "intake",
            "--tile=35VLH",
            "--year=2024",
            "--no-progress",
            "--layout=chunked",
        ])
        .arg(format!("--source=safe:{}", archive.display()))
        .arg(format!("--store={}", store_dir.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for named in [&corrupt, &missing, &mtd] {
        assert!(
            stderr.contains(&named.display().to_string()),
            "{} not named in:\n{stderr}",
            named.display()
        );
    }

    // The truncated product is not on the axis; the other 20 are, and everything stored is right.
    let store = DirStore::create(&store_dir).unwrap();
    let cat = datacube::s2::catalog::Catalog::load(&store, "35VLH", YEAR)
        .unwrap()
        .unwrap();
    assert_eq!(cat.scenes.len(), SCENES - 1);
    for res in Resolution::ALL {
        let rec = ChunkRecord::load(&store, &TileYear::new("35VLH", YEAR), res).unwrap();
        let (shape, data) = read_data(&store_dir, res);
        // Missing chunks read as fill (0); recorded chunks must hold exactly the formula.
        let ct = res.time_chunk() as usize;
        let cs = res.space_chunk() as usize;
        let (nb, ny, nx) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
        for key in rec.chunks.keys() {
            let idx: Vec<usize> = key
                .to_string()
                .trim_start_matches("c/")
                .split('/')
                .map(|v| v.parse().unwrap())
                .collect();
            for t in idx[0] * ct..((idx[0] + 1) * ct).min(shape[0] as usize) {
                for b in 0..nb {
                    for r in idx[2] * cs..((idx[2] + 1) * cs).min(ny) {
                        for c in idx[3] * cs..((idx[3] + 1) * cs).min(nx) {
                            assert_eq!(
                                data[((t * nb + b) * ny + r) * nx + c],
                                expected(f, res, t, b, r as u64, c as u64)
                            );
                        }
                    }
                }
            }
        }
        match res {
            // Every 20 m chunk needs the missing B8A: none stored, none recorded.
            Resolution::R20 => assert!(rec.chunks.is_empty()),
            // 60 m does not touch a broken file: complete.
            Resolution::R60 => assert_eq!(rec.chunks.len(), 4),
            // 10 m: the chunks over the corrupt half of B04 failed; the others are stored.
            Resolution::R10 => assert!(rec.chunks.len() < 9, "{}", rec.chunks.len()),
        }
    }
    // No partial or temporary file anywhere in the store.
    let leftovers: Vec<_> = tree(&store_dir)
        .into_keys()
        .filter(|k| k.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn new_scenes_are_appended_and_the_stale_last_time_chunk_is_recomputed() {
    let f = fixture();
    let archive = copy_archive("growing-archive");
    // Hold back the last two acquisitions: the first 10 m time chunk then has 19 of its 20 scenes.
    let held = work_dir("held-back");
    for p in &f.kept()[SCENES - 2..] {
        let dir = datacube_tools::fixture::product_dir(&archive, p);
        std::fs::rename(&dir, held.join(&p.product_id)).unwrap();
    }
    let store_dir = work_dir("growing-store");
    let store = DirStore::create(&store_dir).unwrap();
    let first = datacube::s2::intake::intake(
        &store,
        &datacube::source::SafeArchive::new(&archive).unwrap(),
        &intake_opts(),
    )
    .unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.scenes, SCENES - 2);
    // They arrive.
    for p in &f.kept()[SCENES - 2..] {
        std::fs::rename(
            held.join(&p.product_id),
            datacube_tools::fixture::product_dir(&archive, p),
        )
        .unwrap();
    }
    let second = datacube::s2::intake::intake(
        &store,
        &datacube::source::SafeArchive::new(&archive).unwrap(),
        &intake_opts(),
    )
    .unwrap();
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!(
        (
            second.scenes,
            second.merge.appended,
            second.merge.previous_len
        ),
        (SCENES, 2, SCENES - 2)
    );
    // Every chunk now reflects all scenes: identical to a store built in one go.
    assert_same_store(intaken_store(), &store_dir);
}

#[test]
fn fixture_stac_items_describe_the_same_products_as_the_safe_files() {
    let f = fixture();
    let scan = datacube::s2::catalog::scan_safe_archive(
        &f.archive,
        datacube::s2::product::ProductLevel::L1C,
        "35VLH",
        YEAR,
    )
    .unwrap();
    assert_eq!(scan.scenes.len(), SCENES);
    for s in &scan.scenes {
        let path = f
            .archive
            .join(format!("stac/sentinel-2-l1c/{}.json", s.product_id));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let it = datacube::s2::stac::StacItem::parse(&v).unwrap();
        assert_eq!(it.product_id, s.product_id);
        assert_eq!(it.tile, s.tile);
        assert_eq!(it.sensing_ms, s.sensing_time_ms, "{}", s.product_id);
        assert_eq!(it.baseline, s.baseline);
        assert_eq!(it.platform.to_lowercase(), s.platform.to_lowercase());
        assert_eq!(it.relative_orbit, s.relative_orbit);
        assert_eq!(it.epsg, s.epsg);
        assert_eq!(it.grids, s.grids);
        assert_eq!(it.band_keys, s.band_keys);
        assert!(f.archive.join(&it.product_metadata_key).is_file());
        assert!(f.archive.join(&it.granule_metadata_key).is_file());
    }
}

#[test]
fn info_into_a_closed_pipe_exits_quietly() {
    use std::os::fd::FromRawFd;
    let store = intaken_store();
    // A pipe whose reader is already gone, as after `datacube info --json | head -0`.
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let stdout = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    let out = Command::new(bin())
        .args(["info", "--json"])
        .arg(store)
        .stdout(stdout)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
}
