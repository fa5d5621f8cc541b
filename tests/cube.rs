//! The filesystem semantics without FUSE: `Cube` driven directly, as the FUSE adapter drives it.

mod common;

use std::sync::mpsc::channel;
use std::sync::{Arc, Barrier, Mutex};

use common::*;
use datacube::s2::chunking::Chunking;
use datacube::s2::cube::{Cube, CubeConfig, FsError, Kind};
use datacube::source::{BandSource, SafeArchive};
use datacube::store::DirStore;

fn cube(work: &std::path::Path) -> Arc<Cube> {
    cube_with(
        work,
        Arc::new(SafeArchive::new(&fixture().archive).unwrap()),
    )
}

fn cube_with(work: &std::path::Path, source: Arc<dyn BandSource>) -> Arc<Cube> {
    let (chunk_cache_bytes, decode_cache_bytes) =
        CubeConfig::split_budget(1 << 30, 4, Chunking::Chunked);
    Cube::new(
        CubeConfig {
            tiles: vec!["35VLH".into()],
            years: vec![YEAR],
            chunk_cache_bytes,
            decode_cache_bytes,
            workers: 4,
            writeback: Default::default(),
            fence: Default::default(),
            refresh: datacube::fs::refresh::RefreshPolicy::off(),
            layout: Some(Chunking::Chunked),
        },
        Arc::new(DirStore::create(work.join("store")).unwrap()),
        source,
    )
    .unwrap()
}

/// A source whose scans wait until released (a slow STAC search, say).
struct SlowScan {
    inner: SafeArchive,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl BandSource for SlowScan {
    fn local_path(&self, key: &str) -> anyhow::Result<datacube::source::LocalFile> {
        self.inner.local_path(key)
    }
    fn scan(&self, tile: &str, year: i32) -> anyhow::Result<datacube::s2::catalog::ScanResult> {
        self.release.lock().unwrap().recv().unwrap();
        self.inner.scan(tile, year)
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

#[test]
fn a_slow_year_resolution_never_holds_the_calling_thread() {
    let work = work_dir("cube-slow-year");
    let (release, rx) = channel();
    let c = cube_with(
        &work,
        Arc::new(SlowScan {
            inner: SafeArchive::new(&fixture().archive).unwrap(),
            release: Mutex::new(rx),
        }),
    );
    // Two requests inside the unresolved year return at once (their answers wait)...
    let (tx, answers) = channel();
    for path in [
        format!("35VLH/{YEAR}/zarr.json"),
        format!("35VLH/{YEAR}/10m/band/c/0"),
    ] {
        let (c2, tx) = (c.clone(), tx.clone());
        c.when_year_ready(&path.clone(), move || {
            c2.lookup(&path, move |r| tx.send(r.map(|a| a.size)).unwrap())
        });
    }
    assert!(
        answers.try_recv().is_err(),
        "answered before the year was resolved"
    );
    // ...while requests outside it are answered on the calling thread.
    let ran = Arc::new(Mutex::new(false));
    let r2 = ran.clone();
    c.when_year_ready("35VLH/zarr.json", move || *r2.lock().unwrap() = true);
    assert!(*ran.lock().unwrap());
    assert!(lookup(&c, ".datacube/stats.json").is_ok());
    release.send(()).unwrap();
    let sizes: Vec<u64> = (0..2).map(|_| answers.recv().unwrap().unwrap()).collect();
    assert!(sizes.iter().all(|s| *s > 0), "{sizes:?}");
    // Resolved once; now answered in place.
    let ran = Arc::new(Mutex::new(false));
    let r2 = ran.clone();
    c.when_year_ready(&format!("35VLH/{YEAR}/zarr.json"), move || {
        *r2.lock().unwrap() = true
    });
    assert!(*ran.lock().unwrap());
    let s: serde_json::Value = serde_json::from_slice(&c.stats_json()).unwrap();
    assert_eq!(s["fs"]["years_resolved"], 1, "{s}");
    // The stats file: the document, then spaces to whole pages with room to grow; its length
    // is what `lookup` says and does not change from one snapshot to the next.
    let file = c.stats_file();
    let doc = c.stats_json();
    assert_eq!(file.len() % 4096, 0);
    assert!(
        file.len() >= doc.len() + 2048,
        "{} for {}",
        file.len(),
        doc.len()
    );
    let parsed: serde_json::Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(parsed["fs"]["years_resolved"], 1, "{parsed}");
    assert!(file.ends_with(b" \n") && file.starts_with(b"{"));
    assert_eq!(
        lookup(&c, ".datacube/stats.json").unwrap().size,
        file.len() as u64
    );
    assert_eq!(c.stats_file().len(), file.len());
    c.shutdown();
}

fn lookup(c: &Arc<Cube>, path: &str) -> Result<datacube::s2::cube::Attr, FsError> {
    let (tx, rx) = channel();
    c.lookup(path, move |r| tx.send(r).unwrap());
    rx.recv().unwrap()
}

#[test]
fn concurrent_lookups_of_one_chunk_share_one_materialization() {
    let work = work_dir("cube-flight");
    let c = cube(&work);
    let key = format!("35VLH/{YEAR}/10m/data/c/0/0/1/1");
    let n = 64;
    let barrier = Arc::new(Barrier::new(n));
    let (tx, rx) = channel();
    std::thread::scope(|s| {
        for _ in 0..n {
            let (c, key, barrier, tx) = (c.clone(), key.clone(), barrier.clone(), tx.clone());
            s.spawn(move || {
                barrier.wait();
                c.lookup(&key, move |r| tx.send(r).unwrap());
            });
        }
    });
    let sizes: Vec<u64> = (0..n).map(|_| rx.recv().unwrap().unwrap().size).collect();
    assert!(sizes.iter().all(|s| *s == sizes[0] && *s > 0));
    let s: serde_json::Value = serde_json::from_slice(&c.stats_json()).unwrap();
    assert_eq!(s["fs"]["materializations"], 1, "{s}");
    // Every other request either joined the flight or found the finished chunk.
    assert!(s["fs"]["single_flight_joins"].as_u64().unwrap() > 0, "{s}");
    c.shutdown();
    let stored = std::fs::read(work.join("store").join(&key)).unwrap();
    assert_eq!(stored.len() as u64, sizes[0]);
}

#[test]
fn tree_listings_and_errors() {
    let work = work_dir("cube-tree");
    let c = cube(&work);
    let names =
        |p: &str| -> Vec<String> { c.list(p).unwrap().into_iter().map(|(n, _)| n).collect() };
    assert_eq!(names(""), ["zarr.json", ".datacube", "35VLH"]);
    assert_eq!(names("35VLH"), ["zarr.json", "2024"]);
    assert_eq!(
        names(&format!("35VLH/{YEAR}")),
        ["10m", "20m", "60m", "zarr.json"]
    );
    assert_eq!(names(&format!("35VLH/{YEAR}/60m/data")), ["zarr.json"]);
    assert_eq!(
        lookup(&c, &format!("35VLH/{YEAR}/60m/data/c"))
            .unwrap()
            .kind,
        Kind::Dir
    );
    // A chunk that is all fill: scene 20 alone in 10 m time chunk 1, its far corner is no-data.
    assert_eq!(
        lookup(&c, &format!("35VLH/{YEAR}/10m/data/c/1/0/2/2")),
        Err(FsError::NotFound)
    );
    let data = lookup(&c, &format!("35VLH/{YEAR}/60m/data/c/0/0/0/0")).unwrap();
    assert_eq!(data.kind, Kind::File);
    assert_eq!(names(&format!("35VLH/{YEAR}/60m/data")), ["zarr.json", "c"]);
    assert_eq!(names(&format!("35VLH/{YEAR}/60m/data/c/0/0/0")), ["0"]);
    assert_eq!(
        c.list(&format!("35VLH/{YEAR}/zarr.json")),
        Err(FsError::NotDir)
    );
    assert_eq!(c.list("35VLH/2023"), Err(FsError::NotFound));
    // Generated metadata equals what the store holds.
    let (tx, rx) = channel();
    let key = format!("35VLH/{YEAR}/10m/zarr.json");
    c.open(&key, move |r| tx.send(r).unwrap());
    let bytes = rx.recv().unwrap().unwrap().read(0, usize::MAX).unwrap();
    assert_eq!(
        &bytes[..],
        std::fs::read(work.join("store").join(&key)).unwrap()
    );
    c.shutdown();
}
