//! A living, shared store, in process: an archive that receives acquisitions and reprocessed
//! products, several writers (mounts and intakes) on one store with different catalog
//! generations, writers killed between store calls. The oracle is the store alone, read as a
//! Zarr reader would (metadata and chunk files, no daemon), against the value formula.

use std::collections::BTreeMap;
use std::sync::mpsc::channel;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datacube::fs::refresh::RefreshPolicy;
use datacube::generation::Fence;
use datacube::key::{ChunkIndex, ChunkKey, TileYear};
use datacube::s2::bands::Resolution;
use datacube::s2::chunking::Chunking;
use datacube::s2::cube::{Cube, CubeConfig, FsError};
use datacube::source::BandSource;
use datacube::store::{ChunkEntry, ChunkRecord, FaultyStore, MemStore, Store};
use datacube::util::faults::Effect;
use datacube_tools::fixture::{FixtureSize, FixtureSpec};
use datacube_tools::MemSource;
use proptest::prelude::*;

const YEAR: i32 = 2024;
const HANG: Duration = Duration::from_secs(120);
/// The protocol's grace period in these tests (a minute in production).
const GRACE: Duration = Duration::from_millis(150);

fn fence() -> Fence {
    Fence { grace: GRACE }
}

fn ty() -> TileYear {
    TileYear::new("35VLH", YEAR)
}

/// 7 acquisitions; scene 1 also exists as an older-baseline product (values `1 + 1000`).
fn spec() -> FixtureSpec {
    FixtureSpec::new(YEAR, 7, FixtureSize::Mini)
}

/// A fresh archive (each test changes what it shows).
fn archive() -> Arc<MemSource> {
    Arc::new(MemSource::synthetic(&spec()).unwrap())
}

/// The products of the plan, kept ones in axis order, and the superseded duplicate's id.
fn products() -> &'static (Vec<String>, String) {
    static P: OnceLock<(Vec<String>, String)> = OnceLock::new();
    P.get_or_init(|| {
        let plan = datacube_tools::fixture::plan(&spec());
        let kept = plan
            .iter()
            .filter(|p| !p.superseded)
            .map(|p| p.product_id.clone())
            .collect();
        let dup = plan
            .iter()
            .find(|p| p.superseded)
            .unwrap()
            .product_id
            .clone();
        (kept, dup)
    })
}

/// Shows the first `n` acquisitions; with `reprocessed` false, scene 1 only as its older product.
fn show(src: &MemSource, n: usize, reprocessed: bool) {
    let (kept, dup) = products();
    let visible: Vec<String> = kept[..n]
        .iter()
        .filter(|id| reprocessed || **id != kept[1])
        .cloned()
        .chain((!reprocessed).then(|| dup.clone()))
        .collect();
    src.set_visible(move |s| visible.contains(&s.product_id));
}

fn cube(store: Arc<dyn Store>, source: Arc<dyn BandSource>) -> Arc<Cube> {
    let (chunk_cache_bytes, decode_cache_bytes) =
        CubeConfig::split_budget(256 << 20, 2, Chunking::Chunked);
    Cube::new(
        CubeConfig {
            tiles: vec!["35VLH".into()],
            years: vec![YEAR],
            chunk_cache_bytes,
            decode_cache_bytes,
            workers: 2,
            writeback: Default::default(),
            fence: fence(),
            refresh: RefreshPolicy::off(),
            layout: Some(Chunking::Chunked),
        },
        store,
        source,
    )
    .unwrap()
}

fn intake(
    store: &dyn Store,
    source: &dyn BandSource,
    resolutions: &[Resolution],
) -> anyhow::Result<datacube::s2::intake::IntakeReport> {
    datacube::s2::intake::intake(
        store,
        source,
        &datacube::s2::intake::IntakeOptions {
            tile: "35VLH".into(),
            year: YEAR,
            start: None,
            end: None,
            resolutions: resolutions.to_vec(),
            memory_bytes: 256 << 20,
            progress: false,
            fence: fence(),
            regions: datacube::intake::Part::WHOLE,
            layout: Some(Chunking::Chunked),
        },
    )
}

fn open(cube: &Arc<Cube>, path: &str) -> Result<Vec<u8>, FsError> {
    let (tx, rx) = channel();
    let (c, p) = (cube.clone(), path.to_string());
    cube.when_year_ready(path, move || {
        c.open(&p, move |r| {
            tx.send(r.and_then(|c| c.read(0, usize::MAX))).unwrap()
        })
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("request for {path} hung"))
}

/// Every chunk of the mini tile-year's first time chunk at `res` (7 scenes fit in one).
fn chunks(res: Resolution) -> Vec<ChunkKey> {
    let per = (1098 * 10 / res.metres() as u64).div_ceil(res.space_chunk());
    let mut v = Vec::new();
    for y in 0..per {
        for x in 0..per {
            v.push(ty().chunk(res, ChunkIndex { t: 0, y, x }));
        }
    }
    v
}

fn shape(cube: &Arc<Cube>, res: Resolution) -> u64 {
    let meta: serde_json::Value = serde_json::from_slice(
        &open(cube, &format!("35VLH/{YEAR}/{}/data/zarr.json", res.name())).unwrap(),
    )
    .unwrap();
    meta["shape"][0].as_u64().unwrap()
}

/// The formula's values of chunk `key` when the axis holds `values.len()` scenes whose value
/// scenes are `values` (`None`: all fill).
fn expected(key: &ChunkKey, values: &[u64]) -> Option<Vec<u16>> {
    let spec = spec();
    let res = key.res();
    let [ct, nb, cs, _] = res.chunk_shape();
    let side = spec.pixels(res.metres());
    let mut v = vec![0u16; (ct * nb * cs * cs) as usize];
    let t0 = key.idx.t * ct;
    for t in t0..(t0 + ct).min(values.len() as u64) {
        for (bi, band) in res.bands().iter().enumerate() {
            for r in 0..cs {
                for c in 0..cs {
                    let (y, x) = (key.idx.y * cs + r, key.idx.x * cs + c);
                    if y < side && x < side {
                        v[((((t - t0) * nb + bi as u64) * cs + r) * cs + c) as usize] =
                            datacube_tools::synth::dn(
                                values[t as usize],
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
    v.iter().any(|x| *x != 0).then_some(v)
}

/// Value scenes of the axis: 0..n, scene 1 as its older product unless `reprocessed`.
fn values(n: usize, reprocessed: bool) -> Vec<u64> {
    (0..n as u64)
        .map(|s| if s == 1 && !reprocessed { 1001 } else { s })
        .collect()
}

/// Decodes a chunk of the store with zarrs through the store's own array metadata.
fn decode_stored(objects: &BTreeMap<String, Vec<u8>>, key: &ChunkKey) -> Vec<u16> {
    use zarrs::storage::WritableStorageTraits;
    let meta = &objects[&format!("35VLH/{YEAR}/{}/data/zarr.json", key.res().name())];
    let zs = Arc::new(zarrs::storage::store::MemoryStore::new());
    zs.set(&"data/zarr.json".try_into().unwrap(), meta.clone().into())
        .unwrap();
    zs.set(
        &format!("data/{}", key.idx).as_str().try_into().unwrap(),
        objects[&key.to_string()].clone().into(),
    )
    .unwrap();
    let array = zarrs::array::Array::open(zs, "/data").unwrap();
    let chunk: ndarray::ArrayD<u16> = array
        .retrieve_chunk(&[key.idx.t, 0, key.idx.y, key.idx.x])
        .unwrap();
    chunk.into_raw_vec_and_offset().0
}

/// The store alone, as a Zarr reader sees it, agrees with an axis of `values`: array shapes,
/// every chunk file, and every record entry (data entries have their file, empty ones are
/// all-fill). Returns how many chunk files it checked.
fn check_store(mem: &MemStore, values: &[u64]) -> usize {
    let objects = mem.snapshot();
    let mut n = 0;
    for res in Resolution::ALL {
        let meta: serde_json::Value = serde_json::from_slice(
            &objects[&format!("35VLH/{YEAR}/{}/data/zarr.json", res.name())],
        )
        .unwrap();
        assert_eq!(meta["shape"][0], values.len(), "{res}: stored shape");
    }
    for k in objects.keys() {
        if let Ok(key) = k.parse::<ChunkKey>() {
            let want = expected(&key, values).expect("an all-fill chunk was stored");
            assert!(
                decode_stored(&objects, &key) == want,
                "{key}: stored values disagree with the metadata beside them"
            );
            n += 1;
        }
    }
    for res in Resolution::ALL {
        let rec = ChunkRecord::load(mem, &ty(), res).unwrap();
        for (idx, e) in &rec.chunks {
            let key = ty().chunk(res, *idx);
            match e {
                ChunkEntry::Data { bytes } => assert_eq!(
                    objects.get(&key.to_string()).map(|b| b.len() as u64),
                    Some(*bytes),
                    "{key}: recorded but not stored"
                ),
                ChunkEntry::Empty => assert!(expected(&key, values).is_none(), "{key}"),
            }
        }
    }
    n
}

fn stats(cube: &Arc<Cube>) -> serde_json::Value {
    serde_json::from_slice(&cube.stats_json()).unwrap()
}

/// Reads every chunk of `res` through the cube and checks it against an axis of `values`.
fn read_all(cube: &Arc<Cube>, res: Resolution, values: &[u64]) {
    for key in chunks(res) {
        match (open(cube, &key.to_string()), expected(&key, values)) {
            (Ok(_), Some(_)) => {}
            (Err(FsError::NotFound), None) => {}
            (got, want) => panic!(
                "{key}: {:?}, expected data: {}",
                got.map(|b| b.len()),
                want.is_some()
            ),
        }
    }
}

/// Waits until a changed time chunk may be written again: the invalidation a grace period after
/// publication, another grace period after it (with room for a loaded machine).
fn settle() {
    std::thread::sleep(GRACE * 6);
}

/// Issue failure 1: a year that receives acquisitions grows in the running mount (and a
/// remount), and the chunks it then writes hold the new scenes.
#[test]
fn a_mounted_year_grows_when_the_archive_does() {
    let mem = Arc::new(MemStore::new());
    let src = archive();
    show(&src, 5, true);
    let a = cube(mem.clone(), src.clone());
    assert_eq!(shape(&a, Resolution::R10), 5);
    read_all(&a, Resolution::R10, &values(5, true));
    a.flush();

    show(&src, 7, true);
    let change = a
        .refresh_year(&ty())
        .unwrap()
        .expect("the refresh finds 2 scenes");
    assert_eq!(change.new.ctx.catalog.scenes.len(), 7);
    assert_eq!(
        shape(&a, Resolution::R10),
        7,
        "the running mount shows the new shape"
    );
    let s = stats(&a);
    assert_eq!(s["fs"]["scenes_appended"], 2, "{s}");
    assert_eq!(s["fs"]["refreshes"], 1, "{s}");
    // Served at once with the new scenes, persisted once the change has settled.
    read_all(&a, Resolution::R10, &values(7, true));
    settle();
    for res in Resolution::ALL {
        read_all(&a, res, &values(7, true));
    }
    a.shutdown();
    let stored = check_store(&mem, &values(7, true));
    assert!(stored > 0);

    // A remount reads the grown catalog from the store.
    let b = cube(mem.clone(), src.clone());
    assert_eq!(shape(&b, Resolution::R20), 7);
    read_all(&b, Resolution::R20, &values(7, true));
    b.shutdown();
    check_store(&mem, &values(7, true));
}

/// Issue failure 2: a mount still serving 5 scenes while an intake grows the store's axis to 7
/// never writes a chunk computed from its 5-scene catalog; it then takes up the new generation.
#[test]
fn a_mount_behind_the_store_never_persists_chunks_of_an_older_catalog() {
    let mem = Arc::new(MemStore::new());
    let src = archive();
    show(&src, 5, true);
    let a = cube(mem.clone(), src.clone());
    read_all(&a, Resolution::R10, &values(5, true));
    a.flush();

    show(&src, 7, true);
    let r = intake(mem.as_ref(), src.as_ref(), &[Resolution::R10]).unwrap();
    assert_eq!(r.merge.appended, 2);
    check_store(&mem, &values(7, true));

    // A, not refreshed, computes 20 m chunks from 5 scenes: served, never persisted.
    let written = stats(&a)["writeback"]["chunks_written"].as_u64().unwrap();
    read_all(&a, Resolution::R20, &values(5, true));
    a.flush();
    let s = stats(&a);
    assert_eq!(s["writeback"]["stale_dropped"], 9, "{s}");
    assert_eq!(s["writeback"]["chunks_written"], written, "{s}");
    check_store(&mem, &values(7, true));

    // It takes up the store's generation without a refresh of its own.
    assert!(a.poll_year(&ty()).unwrap().is_some());
    assert_eq!(shape(&a, Resolution::R20), 7);
    read_all(&a, Resolution::R20, &values(7, true));
    a.shutdown();
    assert!(check_store(&mem, &values(7, true)) > 0);
}

/// Issue failures 3 and 4: mounts started together over one empty directory store all resolve
/// the year, and every chunk any of them computed is recorded (no writer loses another's entries).
#[test]
fn mounts_started_together_share_one_store_without_losing_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(datacube::store::DirStore::create(dir.path()).unwrap());
    let src = archive();
    show(&src, 7, true);
    let cubes: Vec<_> = (0..3).map(|_| cube(store.clone(), src.clone())).collect();
    let all = chunks(Resolution::R20);
    std::thread::scope(|s| {
        for (i, c) in cubes.iter().enumerate() {
            let mine: Vec<ChunkKey> = all.iter().skip(i).step_by(3).cloned().collect();
            s.spawn(move || {
                for key in mine {
                    let r = open(c, &key.to_string());
                    assert!(
                        r.is_ok() || r == Err(FsError::NotFound),
                        "{key}: {r:?} (a mount failed because of the others)"
                    );
                }
            });
        }
    });
    for c in &cubes {
        c.shutdown();
        assert_eq!(stats(c)["fs"]["year_errors"], 0);
    }
    let rec = ChunkRecord::load(store.as_ref(), &ty(), Resolution::R20).unwrap();
    assert_eq!(
        rec.chunks.len(),
        all.len(),
        "every writer's entries are in the record"
    );
    let files = std::fs::read_dir(
        dir.path()
            .join(format!("35VLH/{YEAR}/.datacube/records/20m")),
    )
    .unwrap()
    .count();
    assert_eq!(files, 3, "one record file per writer");
    let generations = std::fs::read_dir(dir.path().join(format!("35VLH/{YEAR}/.datacube/catalog")))
        .unwrap()
        .count();
    assert_eq!(
        generations, 1,
        "three first resolutions agree on one generation"
    );
}

/// Reprocessing converges: a newer baseline of a scene already on the axis replaces it in place,
/// after a refresh of a mount and after an intake, for stores built before it appeared.
#[test]
fn a_reprocessed_product_replaces_its_scene_in_place() {
    let (kept, dup) = products();
    for through_mount in [true, false] {
        let mem = Arc::new(MemStore::new());
        let src = archive();
        show(&src, 7, false);
        intake(mem.as_ref(), src.as_ref(), &Resolution::ALL).unwrap();
        check_store(&mem, &values(7, false));
        let cat = datacube::s2::catalog::Catalog::load(mem.as_ref(), "35VLH", YEAR)
            .unwrap()
            .unwrap();
        assert_eq!(&cat.scenes[1].product_id, dup);

        show(&src, 7, true);
        if through_mount {
            let a = cube(mem.clone(), src.clone());
            assert_eq!(shape(&a, Resolution::R60), 7);
            let change = a.refresh_year(&ty()).unwrap().expect("a replacement");
            assert_eq!(change.new.generation.replaced.get(dup), Some(&kept[1]));
            assert_eq!(stats(&a)["fs"]["scenes_replaced"], 1);
            read_all(&a, Resolution::R60, &values(7, true));
            settle();
            for res in Resolution::ALL {
                read_all(&a, res, &values(7, true));
            }
            a.shutdown();
        } else {
            let r = intake(mem.as_ref(), src.as_ref(), &Resolution::ALL).unwrap();
            assert_eq!(r.merge.replaced, vec![(dup.clone(), kept[1].clone())]);
        }
        let n = check_store(&mem, &values(7, true));
        assert_eq!(n, 9 + 9 + 4, "every chunk rewritten with the newer product");
        let cat = datacube::s2::catalog::Catalog::load(mem.as_ref(), "35VLH", YEAR)
            .unwrap()
            .unwrap();
        assert_eq!(
            &cat.scenes[1].product_id, &kept[1],
            "same index, newer product"
        );
        assert_eq!(cat.scenes.len(), 7);
    }
}

/// One step of a random schedule of writers on one store.
#[derive(Debug, Clone)]
enum Step {
    /// The archive now shows `n` acquisitions (never fewer than before), scene 1 reprocessed or not.
    Archive(usize, bool),
    /// An intake of some resolutions, killed at its k-th store call (if any).
    Intake(Vec<Resolution>, Option<u64>),
    /// A mount that reads the chunks of one resolution, killed at its k-th store call (if any).
    Mount(Resolution, Option<u64>),
}

fn step() -> impl Strategy<Value = Step> {
    let res = prop_oneof![
        Just(Resolution::R10),
        Just(Resolution::R20),
        Just(Resolution::R60)
    ];
    let kill = prop_oneof![1 => Just(None), 2 => (1u64..60).prop_map(Some)];
    prop_oneof![
        2 => (3usize..=7, any::<bool>()).prop_map(|(n, r)| Step::Archive(n, r)),
        2 => (proptest::sample::subsequence(Resolution::ALL.to_vec(), 1..=3), kill.clone())
            .prop_map(|(r, k)| Step::Intake(r, k)),
        2 => (res, kill).prop_map(|(r, k)| Step::Mount(r, k)),
    ]
}

/// Runs `f` with a store that dies at its `kill`-th call: that call and every later one panic,
/// so nothing of the writer reaches the store after its (k-1)-th call (a process killed between
/// two store calls). Returns whether it ran to the end.
fn killable(mem: &Arc<MemStore>, kill: Option<u64>, f: impl FnOnce(Arc<dyn Store>)) -> bool {
    let store = Arc::new(FaultyStore::new(mem.clone()));
    if let Some(k) = kill {
        store.faults.add_any(k..=u64::MAX, Effect::Panic);
    }
    let s = store.clone() as Arc<dyn Store>;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(s))).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(8),
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    })]

    /// Random schedules of intakes and mounts over an archive that grows and gets a reprocessed
    /// product, each writer possibly killed between two store calls: at every point the store
    /// alone agrees with its own metadata, and after recovery (one intake of the final archive)
    /// it equals a single clean intake of that archive.
    #[test]
    fn any_schedule_of_writers_converges_to_a_clean_run(
        steps in proptest::collection::vec(step(), 1..7),
    ) {
        let mem = Arc::new(MemStore::new());
        let src = archive();
        let (mut n, mut reprocessed) = (3usize, false);
        show(&src, n, reprocessed);
        for s in &steps {
            match s {
                Step::Archive(m, r) => {
                    n = n.max(*m);
                    reprocessed |= *r;
                    show(&src, n, reprocessed);
                }
                Step::Intake(res, kill) => {
                    killable(&mem, *kill, |store| {
                        intake(store.as_ref(), src.as_ref(), res).unwrap();
                    });
                }
                Step::Mount(res, kill) => {
                    killable(&mem, *kill, |store| {
                        let c = cube(store, src.clone());
                        let _ = c.refresh_year(&ty());
                        for key in chunks(*res) {
                            let _ = open(&c, &key.to_string());
                        }
                        c.shutdown();
                    });
                }
            }
            // Whatever happened, once the writers have stopped a reader of the store alone
            // sees chunks that agree with the metadata beside them (of whichever generation the
            // metadata is; a writer killed while writing the metadata leaves documents of two
            // generations, which the next process to open the year completes).
            check_against_shown_generation(&mem);
        }
        // Recovery: one intake of the final archive, after the last change has settled.
        settle();
        intake(mem.as_ref(), src.as_ref(), &Resolution::ALL).unwrap();
        check_store(&mem, &values(n, reprocessed));

        let clean = Arc::new(MemStore::new());
        intake(clean.as_ref(), src.as_ref(), &Resolution::ALL).unwrap();
        let (a, b) = (logical(&mem), logical(&clean));
        prop_assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, v) in &a {
            prop_assert!(v == &b[k], "{} differs from a clean run", k);
        }
    }
}

/// The value scenes of a catalog's axis (the plan's products: kept ones by index, the older
/// product of scene 1 as 1001).
fn catalog_values(cat: &datacube::s2::catalog::Catalog) -> Vec<u64> {
    let (kept, dup) = products();
    cat.scenes
        .iter()
        .map(|s| {
            if &s.product_id == dup {
                1001
            } else {
                kept.iter().position(|k| *k == s.product_id).unwrap() as u64
            }
        })
        .collect()
}

/// If the store's metadata documents are exactly those of one catalog generation, checks every
/// chunk file and record entry against that generation's axis.
fn check_against_shown_generation(mem: &MemStore) {
    let objects = mem.snapshot();
    let Some(latest) =
        datacube::generation::latest::<datacube::s2::catalog::Catalog>(mem, &ty()).unwrap()
    else {
        return;
    };
    for n in (1..=latest.number).rev() {
        let Some(g) =
            datacube::generation::load::<datacube::s2::catalog::Catalog>(mem, &ty(), n).unwrap()
        else {
            continue;
        };
        let files = datacube::s2::layout::YearLayout::build(&g.catalog, Chunking::Chunked)
            .unwrap()
            .files;
        let shown = files
            .iter()
            .filter(|(k, _)| !k.ends_with("/zarr.json") || k.matches('/').count() > 1)
            .all(|(k, v)| k.ends_with(&format!("{YEAR}/zarr.json")) || objects.get(k) == Some(v));
        if shown {
            let values = catalog_values(&g.catalog);
            for k in objects.keys() {
                if let Ok(key) = k.parse::<ChunkKey>() {
                    let want = expected(&key, &values).expect("an all-fill chunk was stored");
                    assert!(
                        decode_stored(&objects, &key) == want,
                        "{key}: stored values disagree with generation {n}'s metadata beside them"
                    );
                }
            }
            return;
        }
    }
}

/// A store's content as a reader sees it: data and metadata objects (catalog times removed), the
/// latest catalog's product ids, and the valid record entries.
fn logical(mem: &MemStore) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in mem.snapshot() {
        if k.contains("/.datacube/") {
            continue;
        }
        let v = if k == format!("35VLH/{YEAR}/zarr.json") {
            let mut j: serde_json::Value = serde_json::from_slice(&v).unwrap();
            let a = j["attributes"].as_object_mut().unwrap();
            a.remove("catalog_time");
            a.remove("catalog_updated");
            serde_json::to_vec(&j).unwrap()
        } else {
            v
        };
        out.insert(k, v);
    }
    let cat = datacube::s2::catalog::Catalog::load(mem, "35VLH", YEAR)
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = cat.scenes.iter().map(|s| s.product_id.as_str()).collect();
    out.insert("catalog".into(), serde_json::to_vec(&ids).unwrap());
    for res in Resolution::ALL {
        let rec = ChunkRecord::load(mem, &ty(), res).unwrap();
        out.insert(
            format!("record-{res}"),
            serde_json::to_vec(&rec.chunks).unwrap(),
        );
    }
    out
}

/// Several synthetic archives behind one source (one per tile-year).
struct Archives(Vec<MemSource>);

impl BandSource for Archives {
    fn local_path(&self, key: &str) -> anyhow::Result<datacube::source::LocalFile> {
        self.0
            .iter()
            .find_map(|s| s.local_path(key).ok())
            .ok_or_else(|| anyhow::anyhow!("{key}: in no archive"))
    }
    fn scan(&self, tile: &str, year: i32) -> anyhow::Result<datacube::s2::catalog::ScanResult> {
        for s in &self.0 {
            if s.spec().tile == tile && s.spec().year == year {
                return s.scan(tile, year);
            }
        }
        Ok(Default::default())
    }
    fn describe(&self) -> String {
        "memory archives".into()
    }
}

/// A store's content as readers see it, over every tile-year in it.
fn logical_all(mem: &MemStore, tys: &[TileYear]) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = mem
        .snapshot()
        .into_iter()
        .filter(|(k, _)| {
            !k.contains("/.datacube/")
                && !k.ends_with(&format!("/{}/zarr.json", k.split('/').nth(1).unwrap_or("")))
        })
        .collect();
    for ty in tys {
        let g = datacube::generation::latest::<datacube::s2::catalog::Catalog>(mem, ty)
            .unwrap()
            .unwrap();
        let ids: Vec<&str> = g
            .catalog
            .scenes
            .iter()
            .map(|s| s.product_id.as_str())
            .collect();
        out.insert(format!("{ty}/catalog"), serde_json::to_vec(&ids).unwrap());
        for res in Resolution::ALL {
            let rec = ChunkRecord::load(mem, ty, res).unwrap();
            out.insert(
                format!("{ty}/record-{res}"),
                serde_json::to_vec(&rec.chunks).unwrap(),
            );
        }
    }
    out
}

/// `--part I/N` for N = 1, 3 and 7 over 2 tiles × 2 years, the parts running at once: the store
/// equals one process's, every chunk computed once.
#[test]
fn parts_of_a_cluster_intake_make_the_same_store_as_one_process() {
    let mut sources = Vec::new();
    let mut tys = Vec::new();
    for tile in ["35VLH", "35VLJ"] {
        for year in [2023, 2024] {
            let mut spec = FixtureSpec::new(year, 3, FixtureSize::Mini);
            spec.tile = tile.into();
            spec.uly += if tile == "35VLJ" { 100_000.0 } else { 0.0 };
            sources.push(MemSource::synthetic(&spec).unwrap());
            tys.push(TileYear::new(tile, year));
        }
    }
    let src = Archives(sources);
    let run = |n: u64| -> (Arc<MemStore>, u64) {
        let mem = Arc::new(MemStore::new());
        let written = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for i in 0..n {
                let (mem, src, tys, written) = (&mem, &src, &tys, &written);
                s.spawn(move || {
                    let part = datacube::intake::Part { index: i, count: n };
                    for (ty, regions) in datacube::intake::assign(tys, part) {
                        let r = datacube::s2::intake::intake(
                            mem.as_ref(),
                            src,
                            &datacube::s2::intake::IntakeOptions {
                                tile: ty.tile.clone(),
                                year: ty.year,
                                start: None,
                                end: None,
                                resolutions: Resolution::ALL.to_vec(),
                                memory_bytes: 128 << 20,
                                progress: false,
                                fence: fence(),
                                regions,
                                layout: Some(Chunking::Chunked),
                            },
                        )
                        .unwrap();
                        assert!(r.errors.is_empty(), "{:?}", r.errors);
                        written.fetch_add(
                            r.chunks_written + r.chunks_empty,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                });
            }
        });
        (mem, written.into_inner())
    };
    let (one, computed) = run(1);
    let reference = logical_all(&one, &tys);
    assert!(reference
        .keys()
        .any(|k| k.contains("35VLJ/2023/10m/data/c/")));
    for n in [3, 7] {
        let (mem, written) = run(n);
        assert_eq!(
            written, computed,
            "N={n}: every chunk computed exactly once"
        );
        let got = logical_all(&mem, &tys);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            reference.keys().collect::<Vec<_>>(),
            "N={n}"
        );
        for (k, v) in &reference {
            assert!(&got[k] == v, "N={n}: {k} differs from one process's store");
        }
    }
}

/// A refresh that cannot search the source (STAC down) keeps the current catalog, counts the
/// failure, and the year keeps being served; the next refresh that works takes the new scenes.
#[test]
fn a_failed_refresh_keeps_serving_the_current_catalog() {
    use datacube::source::{FaultySource, SourceOp};
    let mem = Arc::new(MemStore::new());
    let src = archive();
    show(&src, 5, true);
    let faulty = Arc::new(FaultySource::new(src.clone()));
    let a = cube(mem.clone(), faulty.clone());
    assert_eq!(shape(&a, Resolution::R60), 5);
    show(&src, 7, true);
    faulty
        .faults
        // The next scan (the refresh's) fails: a rule counts the calls after it is added.
        .add(
            SourceOp::Scan,
            None,
            1..=1,
            Effect::Fail { transient: false },
        );
    assert!(a.refresh_year(&ty()).is_err());
    let s = stats(&a);
    assert_eq!(s["fs"]["refresh_errors"], 1, "{s}");
    assert_eq!(shape(&a, Resolution::R60), 5, "still the current catalog");
    read_all(&a, Resolution::R60, &values(5, true));
    assert!(a.refresh_year(&ty()).unwrap().is_some());
    assert_eq!(shape(&a, Resolution::R60), 7);
    a.shutdown();
}
