//! The cube in process, over the in-memory store and source with injected faults: panics, failing
//! PUTs, and a property-based model test over random request sequences. No FUSE, no disk, no
//! servers: every failure path is reached deterministically.

use std::collections::BTreeMap;
use std::sync::mpsc::channel;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datacube::fs::content::Content;
use datacube::key::{ChunkIndex, ChunkKey, TileYear};
use datacube::remote::retry::RetryPolicy;
use datacube::s2::bands::Resolution;
use datacube::s2::chunking::Chunking;
use datacube::s2::cube::{Attr, Cube, CubeConfig, FsError};
use datacube::source::{BandSource, FaultySource, SourceOp};
use datacube::store::{ChunkEntry, ChunkRecord, FaultyStore, MemStore, Store, StoreOp};
use datacube::util::faults::Effect;
use datacube_tools::fixture::{FixtureSize, FixtureSpec};
use datacube_tools::MemSource;
use proptest::prelude::*;

const YEAR: i32 = 2024;
/// No request may take this long; waiting longer means it hangs.
const HANG: Duration = Duration::from_secs(120);

/// 7 acquisitions (one of them partial-swath twice over) and a reprocessed duplicate, 1098 px.
fn source() -> Arc<MemSource> {
    static SRC: OnceLock<Arc<MemSource>> = OnceLock::new();
    SRC.get_or_init(|| {
        Arc::new(MemSource::synthetic(&FixtureSpec::new(YEAR, 7, FixtureSize::Mini)).unwrap())
    })
    .clone()
}

struct Rig {
    cube: Arc<Cube>,
    store: Arc<FaultyStore>,
    mem: Arc<MemStore>,
    source: Arc<FaultySource>,
}

fn rig() -> Rig {
    rig_over(Arc::new(MemStore::new()), Chunking::Chunked)
}

/// A cube over `mem` (a fresh one, or another cube's: a second mount of the same store).
fn rig_over(mem: Arc<MemStore>, layout: Chunking) -> Rig {
    let store = Arc::new(FaultyStore::new(mem.clone()));
    let source = Arc::new(FaultySource::new(source()));
    let (chunk_cache_bytes, decode_cache_bytes) = CubeConfig::split_budget(1 << 30, 2, layout);
    let cube = Cube::new(
        CubeConfig {
            tiles: vec!["35VLH".into()],
            years: vec![YEAR],
            chunk_cache_bytes,
            decode_cache_bytes,
            workers: 2,
            writeback: datacube::writeback::Limits {
                retry: RetryPolicy {
                    max_retries: 3,
                    min_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(5),
                },
                ..Default::default()
            },
            fence: Default::default(),
            refresh: datacube::fs::refresh::RefreshPolicy::off(),
            layout: Some(layout),
        },
        store.clone() as Arc<dyn Store>,
        source.clone() as Arc<dyn BandSource>,
    )
    .unwrap();
    Rig {
        cube,
        store,
        mem,
        source,
    }
}

/// Every chunk of the tile-year, by resolution.
fn all_chunks() -> Vec<ChunkKey> {
    let n = |res: Resolution| 1098 * 10 / res.metres() as u64;
    let ty = TileYear::new("35VLH", YEAR);
    let mut v = Vec::new();
    for res in Resolution::ALL {
        let per = n(res).div_ceil(res.space_chunk());
        for y in 0..per {
            for x in 0..per {
                v.push(ty.chunk(res, ChunkIndex { t: 0, y, x }));
            }
        }
    }
    v
}

/// Runs `request` the way the FUSE adapter does (deferred while the year resolves) and waits for
/// its answer, failing the test if it never comes.
fn ask<T: Send + 'static>(
    cube: &Arc<Cube>,
    path: &str,
    request: impl FnOnce(&Arc<Cube>, &str, Box<dyn FnOnce(T) + Send>) + Send + 'static,
) -> T {
    let (tx, rx) = channel();
    let (c, p) = (cube.clone(), path.to_string());
    cube.when_year_ready(path, move || {
        request(&c, &p, Box::new(move |r| tx.send(r).unwrap()))
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("request for {path} hung"))
}

fn lookup(cube: &Arc<Cube>, path: &str) -> Result<Attr, FsError> {
    ask(cube, path, |c, p, done| c.lookup(p, done))
}

fn open(cube: &Arc<Cube>, path: &str) -> Result<Vec<u8>, FsError> {
    ask(cube, path, |c, p, done| {
        c.open(p, move |r| done(r.and_then(|c| c.read(0, usize::MAX))))
    })
}

/// The formula's values of a chunk (the oracle), `None` if it is all fill.
/// Shared, not copied: a 10 m chunk's values are 42 MB, and every answer is checked against them.
fn expected(key: &ChunkKey) -> Option<Arc<Vec<u16>>> {
    type Values = Option<Arc<Vec<u16>>>;
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<ChunkKey, Values>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(key) {
        return v.clone();
    }
    let spec = source().spec().clone();
    let res = key.res();
    let [ct, nb, cs, _] = res.chunk_shape();
    let side = spec.pixels(res.metres());
    let mut v = vec![0u16; (ct * nb * cs * cs) as usize];
    for t in 0..spec.scenes as u64 {
        for (bi, band) in res.bands().iter().enumerate() {
            for r in 0..cs {
                for c in 0..cs {
                    let (y, x) = (key.idx.y * cs + r, key.idx.x * cs + c);
                    if y < side && x < side {
                        v[(((t * nb + bi as u64) * cs + r) * cs + c) as usize] =
                            datacube_tools::synth::dn(
                                t,
                                band.id as u64,
                                y,
                                x,
                                res.metres() as u64,
                                spec.width_m(),
                            );
                    }
                }
            }
        }
    }
    let out = v.iter().any(|x| *x != 0).then(|| Arc::new(v));
    cache.lock().unwrap().insert(key.clone(), out.clone());
    out
}

/// Decodes a chunk's bytes with zarrs, through the array metadata the cube serves.
fn decode(cube: &Arc<Cube>, key: &ChunkKey, bytes: &[u8]) -> Vec<u16> {
    use zarrs::storage::WritableStorageTraits;
    let meta_path = format!("{}/{YEAR}/{}/data/zarr.json", key.tile, key.res().name());
    let meta = open(cube, &meta_path).unwrap();
    let zs = Arc::new(zarrs::storage::store::MemoryStore::new());
    zs.set(&"data/zarr.json".try_into().unwrap(), meta.into())
        .unwrap();
    zs.set(
        &format!("data/{}", key.idx).as_str().try_into().unwrap(),
        bytes.to_vec().into(),
    )
    .unwrap();
    let array = zarrs::array::Array::open(zs, "/data").unwrap();
    let chunk: ndarray::ArrayD<u16> = array
        .retrieve_chunk(&[key.idx.t, 0, key.idx.y, key.idx.x])
        .unwrap();
    chunk.into_raw_vec_and_offset().0
}

/// Asserts an answer for `key` is what the model allows: the formula's bytes, ENOENT for an
/// all-fill chunk, or EIO when `io_allowed` (a fault was injected).
fn check_answer(cube: &Arc<Cube>, key: &ChunkKey, r: &Result<Vec<u8>, FsError>, io_allowed: bool) {
    match (r, expected(key)) {
        (Ok(bytes), Some(want)) => {
            assert!(
                decode(cube, key, bytes) == *want,
                "{key}: served bytes differ from the formula"
            )
        }
        (Err(FsError::NotFound), None) => {}
        (Err(FsError::Io(_)), _) if io_allowed => {}
        (r, want) => panic!(
            "{key}: got {:?}, the model expects {}",
            r.as_ref().map(|b| b.len()),
            if want.is_some() { "data" } else { "ENOENT" }
        ),
    }
}

/// After the cube has shut down (queue drained): every chunk file in the store is the formula's,
/// every record entry agrees with the store and the model.
fn check_store(cube: &Arc<Cube>, mem: &MemStore) {
    let objects = mem.snapshot();
    let ty = TileYear::new("35VLH", YEAR);
    for (k, bytes) in &objects {
        if let Ok(key) = k.parse::<ChunkKey>() {
            let want = expected(&key).expect("an all-fill chunk was stored");
            assert!(
                decode(cube, &key, bytes) == *want,
                "{key}: stored bytes differ from the formula"
            );
        }
    }
    for res in Resolution::ALL {
        let rec = ChunkRecord::load(mem, &ty, res).unwrap();
        for (idx, entry) in &rec.chunks {
            let key = ty.chunk(res, *idx);
            match entry {
                ChunkEntry::Data { bytes } => {
                    let stored = objects.get(&key.to_string());
                    assert_eq!(
                        stored.map(|b| b.len() as u64),
                        Some(*bytes),
                        "{key}: recorded size"
                    );
                }
                ChunkEntry::Empty => assert!(expected(&key).is_none(), "{key} recorded empty"),
            }
        }
    }
}

fn stats(cube: &Arc<Cube>) -> serde_json::Value {
    serde_json::from_slice(&cube.stats_json()).unwrap()
}

#[test]
fn a_panicking_materialization_answers_eio_and_the_next_read_succeeds() {
    let r = rig();
    let chunks = all_chunks();
    let (victim, other) = (&chunks[4], &chunks[0]);
    // The first fetch of any 10 m band file panics (a decoder bug, say).
    r.source
        .faults
        .add(SourceOp::Fetch, Some("_B02."), 1..=1, Effect::Panic);
    let path = victim.to_string();
    let e = lookup(&r.cube, &path).unwrap_err();
    assert!(
        matches!(e, FsError::Io(_))
            && e.to_string().contains("materializing")
            && e.to_string().contains("panicked"),
        "the error carries its cause: {e}"
    );
    let s = stats(&r.cube);
    assert_eq!(s["fs"]["materialize_errors"], 1, "{s}");
    // Other chunks are served meanwhile and afterwards; the pool kept its workers.
    for key in [other, &chunks[chunks.len() - 1]] {
        check_answer(&r.cube, key, &open(&r.cube, &key.to_string()), false);
    }
    // The same chunk again: computed, correct.
    let got = open(&r.cube, &path);
    check_answer(&r.cube, victim, &got, false);
    assert!(got.is_ok());
    r.cube.shutdown();
    check_store(&r.cube, &r.mem);
    assert!(
        r.mem.snapshot().contains_key(&path),
        "written back after the retry"
    );
}

#[test]
fn a_stored_shard_is_read_by_range_and_a_failed_range_fails_only_that_read() {
    let layout: Chunking = "sharded:1024/128".parse().unwrap();
    let first = rig_over(Arc::new(MemStore::new()), layout);
    let path = format!("35VLH/{YEAR}/10m/data/c/0/0/0/0");
    let whole = open(&first.cube, &path).unwrap();
    first.cube.shutdown();
    assert_eq!(
        first.mem.snapshot().get(&path),
        Some(&whole),
        "written back"
    );

    // A second mount of the store: the shard is recorded, not cached, so it is opened in the
    // store and read by range. Its second ranged read fails.
    let second = rig_over(first.mem.clone(), layout);
    second.store.faults.add(
        StoreOp::ReadRange,
        Some(&path),
        2..=2,
        Effect::Fail { transient: false },
    );
    let content = ask(&second.cube, &path, |c, p, done| c.open(p, done)).unwrap();
    assert!(matches!(content, Content::Stored(_)), "opened in the store");
    let n = whole.len();
    assert_eq!(content.len(), n as u64);
    // The index at the end, as a Zarr reader asks for it first.
    assert_eq!(content.read(n as u64 - 100, 100).unwrap(), whole[n - 100..]);
    let e = content.read(0, 4096).unwrap_err();
    assert!(
        matches!(e, FsError::Io(_)) && e.to_string().contains(&format!("reading {path}")),
        "the injected failure, with the key: {e}"
    );
    // The file stays usable: every range afterwards is the shard's.
    let mut read = Vec::new();
    while read.len() < n {
        read.extend(content.read(read.len() as u64, 128 << 10).unwrap());
    }
    assert!(read == whole, "ranged reads reassemble the shard");
    assert!(content.read(n as u64, 10).unwrap().is_empty());
    let s = stats(&second.cube);
    assert_eq!(s["fs"]["materializations"], 0, "{s}");
    assert_eq!(s["fs"]["store_opens"], 1, "{s}");
    assert_eq!(s["fs"]["store_reads"], 0, "never read whole: {s}");
    assert_eq!(s["fs"]["store_errors"], 1, "{s}");
    assert_eq!(s["fs"]["store_read_bytes"], 100 + n as u64, "{s}");
    assert_eq!(s["chunk_cache"]["entries"], 0, "not cached: {s}");
    second.cube.shutdown();
}

#[test]
fn a_chunk_whose_first_two_puts_fail_ends_up_in_the_store() {
    let r = rig();
    let key = &all_chunks()[10];
    let path = key.to_string();
    r.store.faults.add(
        StoreOp::Put,
        Some(&path),
        1..=2,
        Effect::Fail { transient: true },
    );
    let got = open(&r.cube, &path);
    check_answer(&r.cube, key, &got, false);
    r.cube.shutdown();
    let s = stats(&r.cube);
    assert_eq!(s["writeback"]["errors"], 0, "{s}");
    assert_eq!(
        r.mem.snapshot().get(&path),
        got.as_ref().ok(),
        "the chunk is in the store"
    );
    check_store(&r.cube, &r.mem);
    let rec = ChunkRecord::load(r.mem.as_ref(), &key.tile_year(), key.res()).unwrap();
    assert!(rec.chunks.contains_key(&key.idx), "and recorded");
    // Three PUTs of it reached the store wrapper: two failed, one landed.
    assert!(r.store.faults.calls(StoreOp::Put) >= 3);
}

#[test]
fn a_permanent_put_failure_is_counted_and_leaves_the_chunk_unrecorded() {
    let r = rig();
    let key = &all_chunks()[11];
    let path = key.to_string();
    r.store.faults.add(
        StoreOp::Put,
        Some(&path),
        1..=1,
        Effect::Fail { transient: false },
    );
    let got = open(&r.cube, &path);
    check_answer(&r.cube, key, &got, false);
    r.cube.flush();
    // Still served (from the cache) although not persisted.
    assert_eq!(open(&r.cube, &path).ok(), got.clone().ok());
    r.cube.shutdown();
    let s = stats(&r.cube);
    assert_eq!(s["writeback"]["errors"], 1, "{s}");
    assert!(!r.mem.snapshot().contains_key(&path));
    let rec = ChunkRecord::load(r.mem.as_ref(), &key.tile_year(), key.res()).unwrap();
    assert!(
        !rec.chunks.contains_key(&key.idx),
        "not recorded without its file"
    );
    check_store(&r.cube, &r.mem);
}

/// A request of the model test.
#[derive(Debug, Clone)]
enum Req {
    Lookup(usize),
    Open(usize),
    ListChunks(usize),
    Flush,
}

/// A fault of the model test: which call kind, of which keys, which call numbers, what happens.
#[derive(Debug, Clone)]
enum Fault {
    Store(StoreOp, Option<&'static str>, u64, u64, Effect),
    Source(SourceOp, u64, u64, Effect),
}

fn effect() -> impl Strategy<Value = Effect> {
    prop_oneof![
        2 => Just(Effect::Fail { transient: true }),
        2 => Just(Effect::Fail { transient: false }),
        1 => Just(Effect::Panic),
        1 => (1u64..20).prop_map(|ms| Effect::Delay(Duration::from_millis(ms))),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    let store_op = prop_oneof![
        1 => Just(StoreOp::Get),
        2 => Just(StoreOp::Put),
        1 => Just(StoreOp::List)
    ];
    // Calls on every key (year resolution writes ~50 metadata objects first), or only on chunk
    // files, chunk records or the catalog.
    let keys = prop_oneof![
        1 => Just(None),
        3 => Just(Some("/data/c/")),
        2 => Just(Some("/.datacube/chunks-")),
        1 => Just(Some("catalog.json")),
    ];
    let source_op = prop_oneof![Just(SourceOp::Fetch), Just(SourceOp::Scan)];
    prop_oneof![
        2 => (store_op, keys, 1u64..24, 0u64..4, effect())
            .prop_map(|(o, k, a, n, e)| Fault::Store(o, k, a, a + n, e)),
        1 => (source_op, 1u64..200, 0u64..4, effect())
            .prop_map(|(o, a, n, e)| Fault::Source(o, a, a + n, e)),
    ]
}

fn req() -> impl Strategy<Value = Req> {
    let n = all_chunks().len();
    prop_oneof![
        4 => (0..n).prop_map(Req::Lookup),
        4 => (0..n).prop_map(Req::Open),
        1 => (0..3usize).prop_map(Req::ListChunks),
        1 => Just(Req::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 16 random schedules per run (each run draws new ones; PROPTEST_CASES for more): the
        // suite is CPU-bound on CI, and the regressions file keeps every failure found.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    /// Random request sequences, some concurrent, under random faults: every answer is the
    /// model's (formula bytes, ENOENT for all-fill, EIO only while faults are armed), no request
    /// hangs, nothing wrong is persisted, and once the faults are gone every chunk is served right.
    #[test]
    fn the_cube_serves_and_persists_what_the_model_says(
        faults in proptest::collection::vec(fault(), 0..6),
        reqs in proptest::collection::vec(req(), 1..24),
        parallel in 1usize..4,
    ) {
        let r = rig();
        let chunks = all_chunks();
        for f in &faults {
            match f {
                Fault::Store(op, k, a, b, e) => r.store.faults.add(*op, *k, *a..=*b, e.clone()),
                Fault::Source(op, a, b, e) => r.source.faults.add(*op, None, *a..=*b, e.clone()),
            }
        }
        let armed = !faults.is_empty();
        std::thread::scope(|s| {
            for part in reqs.chunks(reqs.len().div_ceil(parallel)) {
                let (r, chunks) = (&r, &chunks);
                s.spawn(move || {
                    for q in part {
                        match q {
                            Req::Lookup(i) => {
                                let key = &chunks[*i];
                                let got = lookup(&r.cube, &key.to_string());
                                match (&got, expected(key)) {
                                    (Ok(a), Some(_)) => assert!(a.size > 0),
                                    (Err(FsError::NotFound), None) => {}
                                    (Err(FsError::Io(_)), _) if armed => {}
                                    (g, w) => panic!("{key}: lookup {g:?}, model data={}", w.is_some()),
                                }
                            }
                            Req::Open(i) => {
                                let key = &chunks[*i];
                                check_answer(&r.cube, key, &open(&r.cube, &key.to_string()), armed);
                            }
                            Req::ListChunks(res) => {
                                let path = format!("35VLH/{YEAR}/{}/data", Resolution::ALL[*res].name());
                                let got = ask(&r.cube, &path, |c, p, done| done(c.list(p)));
                                assert!(got.is_ok() || armed, "{path}: {got:?}");
                            }
                            Req::Flush => r.cube.flush(),
                        }
                    }
                });
            }
        });
        // Faults gone: everything is served right.
        r.store.faults.clear();
        r.source.faults.clear();
        for key in &chunks {
            check_answer(&r.cube, key, &open(&r.cube, &key.to_string()), false);
        }
        r.cube.shutdown();
        check_store(&r.cube, &r.mem);
    }
}
