//! The writeback queue on its own: bounded, files before records, stale jobs dropped, drained
//! on close (moved out of the library so that the fixture's in-memory source stays in the tools
//! crate).

use std::sync::Arc;

use datacube::key::TileYear;
use datacube::source::BandSource;
use datacube::store::{ChunkEntry, ChunkRecord, DirStore, RecordWriter, Store};
use datacube::writeback::{Limits, WriteEntry, WriteJob, Writeback};
use datacube_tools::fixture::{FixtureSize, FixtureSpec};
use datacube_tools::MemSource;

fn idx(rel: &str) -> datacube::key::ChunkIndex {
    rel.parse().unwrap()
}

#[test]
fn writes_files_then_records_and_drains_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::create(dir.path()).unwrap());
    // A catalog generation to check the jobs against.
    let src = MemSource::synthetic(&FixtureSpec::new(2024, 3, FixtureSize::Mini)).unwrap();
    let scan = src.scan("35VLH", 2024).unwrap();
    let fence = datacube::generation::Fence::default();
    let ty = TileYear::new("35VLH", 2024);
    let p = datacube::s2::intake::prepare_scanned(
        store.as_ref(),
        "memory",
        &ty,
        &scan,
        &fence,
        datacube::s2::chunking::Chunking::Chunked,
    )
    .unwrap();
    let fp = p
        .generation
        .catalog
        .fingerprint(datacube::s2::bands::Resolution::R60, 0);
    let job = |rel: &str, entry: WriteEntry| {
        let key: datacube::key::ChunkKey = format!("35VLH/2024/60m/data/{rel}").parse().unwrap();
        WriteJob::object(&key, entry, fp.clone())
    };
    let wb = Writeback::start(
        store.clone(),
        Arc::new(datacube::generation::Tracker::new(
            fence,
            datacube::s2::layout::metadata_files(datacube::s2::chunking::Chunking::Chunked),
        )),
        Arc::new(RecordWriter::new()),
        Limits {
            max_jobs: 2,
            max_bytes: 1 << 20,
            ..Default::default()
        },
    );
    for i in 0..20u8 {
        let bytes: Arc<[u8]> = vec![i; 10 + i as usize].into();
        assert!(wb.push(job(&format!("c/0/0/0/{i}"), WriteEntry::Data(bytes))));
    }
    assert!(wb.push(job("c/0/0/1/0", WriteEntry::Empty)));
    // Computed under other products: never written.
    let mut stale = job("c/0/0/1/1", WriteEntry::Data(vec![9u8; 4].into()));
    stale.fp = "0123456789abcdef".into();
    assert!(wb.push(stale));
    wb.close();
    assert!(!wb.push(job("c/0/0/1/2", WriteEntry::Empty)));
    let rec = ChunkRecord::load(store.as_ref(), &ty, datacube::s2::bands::Resolution::R60).unwrap();
    assert_eq!(rec.chunks.len(), 21);
    for i in 0..20u8 {
        let key = format!("35VLH/2024/60m/data/c/0/0/0/{i}");
        assert_eq!(store.get(&key).unwrap().unwrap(), vec![i; 10 + i as usize]);
        assert_eq!(
            rec.chunks[&idx(&format!("c/0/0/0/{i}"))],
            ChunkEntry::Data {
                bytes: 10 + i as u64
            }
        );
    }
    assert_eq!(rec.chunks[&idx("c/0/0/1/0")], ChunkEntry::Empty);
    assert!(store
        .get("35VLH/2024/60m/data/c/0/0/1/1")
        .unwrap()
        .is_none());
    assert_eq!(wb.stats().stale_dropped.get(), 1);
    assert_eq!(wb.depth(), (0, 0));
    assert!(wb.stats().full_waits.get() > 0, "bound of 2 jobs held");
}
