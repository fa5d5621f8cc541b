//! Sentinel-1 test support: the synthetic EODC mirror (made once per test binary), a store
//! intaken from it, and an oracle of the same-day merge written independently of `s1::merge`:
//! per pixel, from the fixture plan and formula, without reading any file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use datacube::s1::grid::Equi7Tile;
use datacube::s1::{EPOCH_UNIX_S, NODATA};
use datacube_tools::fixture::s1_slices::{plan, PlannedSlice, EAST, WEST, YEAR};
use zarrs::array::{Array, ArraySubset};

use super::shared_dir;

/// Extra days of the western tile: 3 fixed days + 30 = 33 days, two time chunks.
pub const EXTRA_DAYS: u32 = 30;

pub fn mirror() -> &'static PathBuf {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| {
        shared_dir("s1-mirror", |d| {
            datacube_tools::fixture::s1::write_mirror(d, EXTRA_DAYS, false).expect("S1 fixture");
        })
    })
}

/// A directory store with both tiles intaken through the library.
pub fn intaken_store() -> &'static PathBuf {
    static S: OnceLock<PathBuf> = OnceLock::new();
    S.get_or_init(|| {
        let m = mirror();
        shared_dir("s1-store", |dir| {
            let store = datacube::store::DirStore::create(dir).unwrap();
            let source = datacube::s1::source::S1Source::open(
                &format!("file:{}", m.display()),
                &Default::default(),
            )
            .unwrap();
            for tile in [WEST, EAST] {
                datacube::s1::intake::intake_year(
                    &store,
                    &source,
                    tile,
                    YEAR,
                    datacube::intake::Part::WHOLE,
                    &Default::default(),
                    false,
                )
                .expect("S1 intake");
            }
        })
    })
}

/// The expected time axis of a tile: (day, slices in priority order).
pub fn expected_days(tile: Equi7Tile) -> Vec<(i32, Vec<PlannedSlice>)> {
    days_of(&plan(EXTRA_DAYS), tile)
}

/// The time axis `slices` (some of the fixture's) give a tile: (day, slices in priority order).
pub fn days_of(slices: &[PlannedSlice], tile: Equi7Tile) -> Vec<(i32, Vec<PlannedSlice>)> {
    let all: Vec<PlannedSlice> = slices.iter().filter(|s| s.tile == tile).cloned().collect();
    // A slice published in two data versions counts once, as its newest.
    let kept: Vec<PlannedSlice> = all
        .iter()
        .filter(|s| {
            !all.iter().any(|o| {
                o.sensing_s == s.sensing_s
                    && o.relative_orbit == s.relative_orbit
                    && o.version > s.version
            })
        })
        .cloned()
        .collect();
    let mut days: BTreeMap<i32, Vec<PlannedSlice>> = BTreeMap::new();
    for s in kept {
        days.entry(s.day()).or_default().push(s);
    }
    days.into_iter()
        .map(|(d, mut v)| {
            v.sort_by_key(|s| (s.sensing_s, s.item_id()));
            (d, v)
        })
        .collect()
}

/// The five values of a pixel of a day: VV, VH, sensing_date, absolute and relative orbit.
pub fn expected_pixel(slices: &[PlannedSlice], r: u64, c: u64) -> (i16, i16, i64, i32, i16) {
    let first = |pol: usize| slices.iter().find(|s| s.value(pol, r, c) != NODATA);
    let (vv, vh) = (first(0), first(1));
    let v = |s: Option<&PlannedSlice>, pol| s.map_or(NODATA, |s| s.value(pol, r, c));
    match vv.or(vh) {
        Some(src) => (
            v(vv, 0),
            v(vh, 1),
            src.sensing_s - EPOCH_UNIX_S,
            src.absolute_orbit(),
            src.relative_orbit as i16,
        ),
        None => (v(vv, 0), v(vh, 1), -1, 0, 0),
    }
}

/// The union of a day's footprints grown by `margin` pixels, clipped to the tile: rows, columns.
pub fn day_window(
    slices: &[PlannedSlice],
    margin: u64,
) -> Option<(std::ops::Range<u64>, std::ops::Range<u64>)> {
    let fps: Vec<[u64; 4]> = slices.iter().filter_map(|s| s.footprint).collect();
    if fps.is_empty() {
        return None;
    }
    let r0 = fps
        .iter()
        .map(|f| f[0])
        .min()
        .unwrap()
        .saturating_sub(margin);
    let r1 = (fps.iter().map(|f| f[1]).max().unwrap() + margin).min(15000);
    let c0 = fps
        .iter()
        .map(|f| f[2])
        .min()
        .unwrap()
        .saturating_sub(margin);
    let c1 = (fps.iter().map(|f| f[3]).max().unwrap() + margin).min(15000);
    Some((r0..r1, c0..c1))
}

/// One array of a tile-year, opened with zarrs on a directory store.
pub fn open_array(
    store_dir: &Path,
    tile: Equi7Tile,
    name: &str,
) -> Array<zarrs::filesystem::FilesystemStore> {
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(store_dir).unwrap());
    Array::open(store, &format!("/{tile}/{YEAR}/20m/{name}")).unwrap()
}

/// Days `days` of rows `rows`, columns `cols` of an array, day-major.
fn read<T: zarrs::array::ElementOwned>(
    a: &Array<zarrs::filesystem::FilesystemStore>,
    days: std::ops::Range<u64>,
    rows: &std::ops::Range<u64>,
    cols: &std::ops::Range<u64>,
) -> Vec<T> {
    let subset = ArraySubset::new_with_ranges(&[days, rows.clone(), cols.clone()]);
    let v: ndarray::ArrayD<T> = a.retrieve_array_subset(&subset).unwrap();
    v.into_raw_vec_and_offset().0
}

/// Asserts every value of the five arrays of `tile` around each day's footprints (grown by one
/// inner chunk) equals the oracle, and that the all-nodata day is fill. Returns the number of
/// pixels compared.
pub fn assert_tile_matches_oracle(store_dir: &Path, tile: Equi7Tile) -> u64 {
    assert_tile_matches(store_dir, tile, &expected_days(tile))
}

/// `assert_tile_matches_oracle` for the time axis `days` (of some of the fixture's slices).
pub fn assert_tile_matches(
    store_dir: &Path,
    tile: Equi7Tile,
    days: &[(i32, Vec<PlannedSlice>)],
) -> u64 {
    assert_days_match(store_dir, tile, days, |_| true)
}

/// `assert_tile_matches` for the time axis `days`, comparing the values of the days whose index
/// `check` accepts (the axis itself is compared whole).
///
/// Each day's window (its footprints grown by 500 pixels; the all-nodata day: rows and columns
/// 2000..3000) is compared pixel by pixel. The arrays are read one inner chunk (30 days × 500 ×
/// 500) at a time, for the days of its time chunk whose windows overlap it, so every inner chunk
/// is decoded once rather than once per day (reading one day decodes all 30 of its inner chunk).
pub fn assert_days_match(
    store_dir: &Path,
    tile: Equi7Tile,
    days: &[(i32, Vec<PlannedSlice>)],
    check: impl Fn(usize) -> bool,
) -> u64 {
    use datacube::s1::{INNER_PX, TIME_CHUNK};
    use rayon::prelude::*;
    type Window = (usize, std::ops::Range<u64>, std::ops::Range<u64>);
    let time = open_array(store_dir, tile, "time");
    let t: ndarray::ArrayD<i32> = time.retrieve_array_subset(&time.subset_all()).unwrap();
    assert_eq!(
        t.iter().copied().collect::<Vec<_>>(),
        days.iter().map(|d| d.0).collect::<Vec<_>>(),
        "{tile} time axis"
    );
    let vv = open_array(store_dir, tile, "VV");
    let vh = open_array(store_dir, tile, "VH");
    let sd = open_array(store_dir, tile, "sensing_date");
    let ab = open_array(store_dir, tile, "absolute_orbit_number");
    let re = open_array(store_dir, tile, "relative_orbit_number");
    let windows: Vec<Window> = (0..days.len())
        .filter(|i| check(*i))
        .map(|i| {
            let (rows, cols) = day_window(&days[i].1, 500).unwrap_or((2000..3000, 2000..3000));
            (i, rows, cols)
        })
        .collect();
    // (time chunk, inner chunk row, inner chunk column) of every inner chunk a window overlaps.
    let mut blocks = std::collections::BTreeSet::new();
    for (i, rows, cols) in &windows {
        for y in rows.start / INNER_PX..=(rows.end - 1) / INNER_PX {
            for x in cols.start / INNER_PX..=(cols.end - 1) / INNER_PX {
                blocks.insert((*i as u64 / TIME_CHUNK, y, x));
            }
        }
    }
    let blocks: Vec<(u64, u64, u64)> = blocks.into_iter().collect();
    let clip =
        |a: &std::ops::Range<u64>, b: &std::ops::Range<u64>| a.start.max(b.start)..a.end.min(b.end);
    blocks
        .par_iter()
        .map(|&(tc, y, x)| {
            let brows = y * INNER_PX..((y + 1) * INNER_PX).min(15000);
            let bcols = x * INNER_PX..((x + 1) * INNER_PX).min(15000);
            // The windows of this time chunk that overlap the block, clipped to it.
            let here: Vec<Window> = windows
                .iter()
                .filter(|(i, _, _)| *i as u64 / TIME_CHUNK == tc)
                .map(|(i, rows, cols)| (*i, clip(rows, &brows), clip(cols, &bcols)))
                .filter(|(_, r, c)| !r.is_empty() && !c.is_empty())
                .collect();
            let d0 = here.iter().map(|w| w.0).min().unwrap() as u64;
            let d1 = here.iter().map(|w| w.0).max().unwrap() as u64 + 1;
            let got = (
                read::<i16>(&vv, d0..d1, &brows, &bcols),
                read::<i16>(&vh, d0..d1, &brows, &bcols),
                read::<i64>(&sd, d0..d1, &brows, &bcols),
                read::<i32>(&ab, d0..d1, &brows, &bcols),
                read::<i16>(&re, d0..d1, &brows, &bcols),
            );
            let (h, w) = (
                (brows.end - brows.start) as usize,
                (bcols.end - bcols.start) as usize,
            );
            let mut compared = 0;
            for (i, rows, cols) in &here {
                let (day, slices) = &days[*i];
                let plane = (*i - d0 as usize) * h * w;
                for r in rows.clone() {
                    for c in cols.clone() {
                        let k = plane + (r - brows.start) as usize * w + (c - bcols.start) as usize;
                        let want = expected_pixel(slices, r, c);
                        let have = (got.0[k], got.1[k], got.2[k], got.3[k], got.4[k]);
                        assert_eq!(
                            have,
                            want,
                            "{tile} day {} ({}) row {r} col {c}",
                            i,
                            datacube::s1::iso_day(*day)
                        );
                        compared += 1;
                    }
                }
            }
            compared
        })
        .sum()
}

/// The shard objects the oracle says exist (any value that is not fill), per array name.
pub fn expected_shards(tile: Equi7Tile) -> BTreeMap<String, Vec<String>> {
    let days = expected_days(tile);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let names = [
        "VV",
        "VH",
        "sensing_date",
        "absolute_orbit_number",
        "relative_orbit_number",
    ];
    for (i, (_, slices)) in days.iter().enumerate() {
        let t = i as u64 / 30;
        for s in slices {
            for (ai, name) in names.iter().enumerate() {
                let pols: &[usize] = match ai {
                    0 => &[0],
                    1 => &[1],
                    _ => &[0, 1],
                };
                for &p in pols {
                    if let Some([r0, r1, c0, c1]) = s.footprint_of(p) {
                        for y in r0 / 2500..=(r1 - 1) / 2500 {
                            for x in c0 / 2500..=(c1 - 1) / 2500 {
                                out.entry(name.to_string())
                                    .or_default()
                                    .push(format!("c/{t}/{y}/{x}"));
                            }
                        }
                    }
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// The shard objects a store holds for `tile`, per array name.
pub fn stored_shards(store_dir: &Path, tile: Equi7Tile) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for name in [
        "VV",
        "VH",
        "sensing_date",
        "absolute_orbit_number",
        "relative_orbit_number",
    ] {
        let dir = store_dir.join(format!("{tile}/{YEAR}/20m/{name}"));
        // Objects only: a killed writer's temporary file (`.NAME.tmp-…`) is not one (readers
        // never see it; the next mount sweeps it, which the tests check on their own).
        let mut v: Vec<String> = walk(&dir)
            .into_iter()
            .filter(|k| k.starts_with("c/") && !k.rsplit('/').next().unwrap_or("").starts_with('.'))
            .collect();
        v.sort();
        if !v.is_empty() {
            out.insert(name.to_string(), v);
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// `scripts/emulate-eodc` over a mirror: the STAC API (stac-fastapi-pgstac) and the data server
/// (nginx), on 127.0.0.1; stopped (and cleaned up) on drop.
pub struct EodcEmulator {
    child: std::process::Child,
    pub stac_url: String,
    pub data_url: String,
}

impl EodcEmulator {
    pub fn start(mirror: &Path, work: &Path) -> EodcEmulator {
        Self::start_with(mirror, work, &[])
    }

    /// With more `scripts/emulate-eodc` options (`--data-port N --asset-base URL`).
    pub fn start_with(mirror: &Path, work: &Path, args: &[&str]) -> EodcEmulator {
        use std::io::{BufRead, BufReader};
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulate-eodc");
        let mut child = std::process::Command::new(&script)
            .arg(mirror)
            .arg("--dir")
            .arg(work.join("eodc-emulator"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting scripts/emulate-eodc");
        let out = child.stdout.take().unwrap();
        let mut vars = std::collections::HashMap::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line == "READY" {
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        assert!(
            vars.contains_key("STAC_URL"),
            "emulate-eodc did not get ready"
        );
        EodcEmulator {
            child,
            stac_url: vars["STAC_URL"].clone(),
            data_url: vars["DATA_URL"].clone(),
        }
    }
}

impl Drop for EodcEmulator {
    fn drop(&mut self) {
        super::mount::signal(self.child.id(), libc::SIGTERM);
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks a source cache's range blocks against the mirror's files (`ranges/HOST/PATH/NNNNNNNN`
/// holds bytes `[N × block, …)` of `mirror/PATH`; `…/size` its length): nothing partial, nothing
/// foreign. Returns the number of blocks.
pub fn assert_range_cache_matches_mirror(cache: &Path, mirror: &Path, block: u64) -> usize {
    let mut blocks = 0;
    for (rel, bytes) in super::tree(cache) {
        assert!(
            !rel.contains(".part-"),
            "{rel}: a partial download was left"
        );
        let Some(rest) = rel.strip_prefix("ranges/") else {
            continue;
        };
        let (file, leaf) = rest.rsplit_once('/').unwrap();
        let path = file.split_once('/').unwrap().1; // after HOST_PORT
        let orig = std::fs::read(mirror.join(path)).unwrap();
        if leaf == "size" {
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                orig.len().to_string(),
                "{rel}"
            );
            continue;
        }
        let start = leaf.parse::<u64>().unwrap() * block;
        let end = (start + block).min(orig.len() as u64);
        assert!(
            bytes == orig[start as usize..end as usize],
            "{rel}: differs from bytes {start}..{end} of the file"
        );
        blocks += 1;
    }
    blocks
}
