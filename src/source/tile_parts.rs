//! Band files read by JPEG 2000 tile-part instead of whole: a cold chunk fetches the main header
//! and the tile-parts of the tiles its window covers, not the whole ~100 MB file.
//!
//! Per file, the tile-part index ([`J2kIndex`], from TLM or a walk of the SOT chain) is built once
//! and kept durably beside the source cache (`<cache>/j2k-index/<key>.json`, written atomically,
//! never evicted: a few KB per file, paid once per file ever). The bytes live in the source's disk
//! cache as *segments* of the file, each an ordinary cache entry (byte cap, LRU, pinned while
//! read, complete or absent): `head` (the JP2 boxes and the main header, `[0, first SOT)`), one
//! entry per tile-part (`p<offset>`), `tail` (after the last tile-part). Every entry carries
//! [`MARGIN`] more bytes: GDAL's JP2OpenJPEG reads the codestream through OpenJPEG's 1 KiB stream
//! buffer, so a read that finishes a segment runs up to that far into the next one.
//!
//! GDAL decodes the file through the `/vsidatacube/` handler ([`super::vsi`]) as
//! `/vsidatacube/<n>/t<tiles>/<key>`, the path naming the tiles the read needs. OpenJPEG 2.5
//! reaches a tile by walking the SOT chain from the first tile-part even when the file has TLM
//! (measured: one 1 KiB read at the start of every tile-part, then a skip), so a tile-part the
//! read does not need is shown as its SOT marker segment, rebuilt from the index, followed by
//! zeros — OpenJPEG reads its SOT and skips the rest (a decode through this view is tested to
//! equal GDAL's decode of the whole file). Tile-parts the read needs are always the file's own
//! bytes: [`TileParts::prefetch`] fetches them before the decode (neighbouring tile-parts
//! coalesced into one ranged GET); a read that finds a needed segment absent fetches it then
//! (counted as `late_fetches`: zero when the prefetch was right). Every tile-part fetched is
//! checked against the index (its SOT marker names the tile and length the index gives) before
//! it is cached, so a TLM that disagrees with the SOT markers, a truncated or short answer is an
//! error naming the file and the range, and nothing bad is cached.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use futures::future::BoxFuture;

use super::disk_cache::DiskCache;
use super::j2k_index::{check_part, read_index, read_index_with, J2kIndex, TilePart, HEAD_BYTES};
use super::vsi::{VirtualFile, VirtualFiles};
use super::LocalFile;

/// Bytes every segment carries past its end (OpenJPEG's stream buffer is 1 KiB).
pub const MARGIN: u64 = 4096;
/// How far into a tile-part it does not need a reader may look (OpenJPEG reads its 1 KiB stream
/// buffer at each SOT); a read beyond is served the real bytes, fetched then.
pub const SOT_HEAD: u64 = 4096;
/// Needed tile-parts closer than this are fetched in one request, the gap included.
pub const COALESCE_GAP: u64 = 256 << 10;

/// Fetches byte ranges of objects (the source's S3 client, under its quotas and retries).
pub trait RangeFetch: Send + Sync {
    /// Bytes `[start, end)` of `key` (fewer only where the object ends first) and the object's
    /// size; every byte or an error.
    fn fetch<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> BoxFuture<'a, Result<(Vec<u8>, u64)>>;
    /// How the object is named in errors (`s3://bucket/key`).
    fn describe(&self, key: &str) -> String;
}

crate::counters! {
    /// What reading by tile-part cost.
    pub struct TilePartStats {
        /// Indexes built (each once per file, ever).
        indexes_built,
        /// Range requests made to build them (all of them, and those for files with TLM).
        index_requests,
        tlm_index_requests,
        /// Range requests for segments (coalesced runs, late fetches).
        segment_requests,
        segment_bytes,
        /// Segments fetched by a read the prefetch did not foresee.
        late_fetches,
    }
}

pub struct TileParts {
    fetch: Arc<dyn RangeFetch>,
    cache: Arc<DiskCache>,
    index_dir: PathBuf,
    indexes: Mutex<HashMap<String, Arc<J2kIndex>>>,
    /// Files known to have no TLM and no index yet (their head was read once).
    no_tlm: Mutex<std::collections::HashSet<String>>,
    /// One index build per file at a time: the chunks of a patch plan the same files at once.
    building: Arc<crate::util::SingleFlight<String, Option<Arc<J2kIndex>>, String>>,
    pub stats: TilePartStats,
}

impl TileParts {
    pub fn new(fetch: Arc<dyn RangeFetch>, cache: Arc<DiskCache>) -> Arc<Self> {
        let index_dir = cache.root().join(super::disk_cache::INDEX_DIR);
        Arc::new(TileParts {
            fetch,
            cache,
            index_dir,
            indexes: Mutex::new(HashMap::new()),
            no_tlm: Default::default(),
            building: Arc::new(crate::util::SingleFlight::new()),
            stats: TilePartStats::default(),
        })
    }

    fn index_path(&self, key: &str) -> PathBuf {
        self.index_dir.join(format!("{key}.json"))
    }

    /// The index of `key`: from memory, from its file, or built now (with range reads; the SOT
    /// heads read on the way are cached as segments).
    pub fn index(&self, key: &str) -> Result<Arc<J2kIndex>> {
        Ok(self.index_with(key, true)?.expect("walks when needed"))
    }

    /// The index of `key` if it is known or costs one request (TLM); `None` for a file without
    /// TLM and no index yet (remembered: its head is read once).
    pub fn index_if_cheap(&self, key: &str) -> Result<Option<Arc<J2kIndex>>> {
        if self.no_tlm.lock().unwrap().contains(key) {
            return self.known(key);
        }
        self.index_with(key, false)
    }

    /// An index in memory or on disk.
    fn known(&self, key: &str) -> Result<Option<Arc<J2kIndex>>> {
        crate::store::check_key(key)?;
        if let Some(i) = self.indexes.lock().unwrap().get(key) {
            return Ok(Some(i.clone()));
        }
        let path = self.index_path(key);
        let Ok(b) = std::fs::read(&path) else {
            return Ok(None);
        };
        let idx: J2kIndex = serde_json::from_slice(&b)
            .with_context(|| format!("source cache: invalid index {}", path.display()))?;
        Ok(Some(self.remember(key, idx)))
    }

    fn remember(&self, key: &str, idx: J2kIndex) -> Arc<J2kIndex> {
        let idx = Arc::new(idx);
        self.no_tlm.lock().unwrap().remove(key);
        self.indexes
            .lock()
            .unwrap()
            .insert(key.to_string(), idx.clone());
        idx
    }

    fn index_with(&self, key: &str, walk: bool) -> Result<Option<Arc<J2kIndex>>> {
        if let Some(i) = self.known(key)? {
            return Ok(Some(i));
        }
        let flight = format!("{}:{key}", if walk { "walk" } else { "head" });
        self.building
            .run(flight, || {
                // Whoever built it while we waited to fly.
                if let Some(i) = self.known(key).map_err(|e| format!("{e:#}"))? {
                    return Ok(Some(i));
                }
                self.build_and_keep(key, walk).map_err(|e| format!("{e:#}"))
            })
            .map_err(|e| anyhow::anyhow!(e))
    }

    fn build_and_keep(&self, key: &str, walk: bool) -> Result<Option<Arc<J2kIndex>>> {
        let built = self
            .build_index(key, walk)
            .with_context(|| format!("indexing {}", self.fetch.describe(key)))?;
        let Some(idx) = built else {
            self.no_tlm.lock().unwrap().insert(key.to_string());
            return Ok(None);
        };
        write_atomic(&self.index_path(key), &serde_json::to_vec(&idx)?)?;
        Ok(Some(self.remember(key, idx)))
    }

    /// Indexes `key` from a complete local copy (free: no request), unless already indexed.
    pub fn index_local(&self, key: &str, file: &Path) {
        if self.indexes.lock().unwrap().contains_key(key) || self.index_path(key).exists() {
            return;
        }
        let built = (|| -> Result<J2kIndex> {
            let f = std::fs::File::open(file)?;
            let size = f.metadata()?.len();
            let mut read = |off: u64, len: u64| -> Result<Vec<u8>> {
                let mut b = vec![0u8; len.min(size.saturating_sub(off)) as usize];
                f.read_exact_at(&mut b, off)?;
                Ok(b)
            };
            read_index(&mut read, size)
        })();
        match built {
            Ok(idx) => {
                if write_atomic(
                    &self.index_path(key),
                    &serde_json::to_vec(&idx).unwrap_or_default(),
                )
                .is_ok()
                {
                    self.remember(key, idx);
                }
            }
            Err(e) => tracing::debug!("indexing {}: {e:#}", file.display()),
        }
    }

    fn build_index(&self, key: &str, walk: bool) -> Result<Option<J2kIndex>> {
        self.stats.indexes_built.inc();
        // The first read learns the size; the SOT walk then reads 12 bytes per tile-part.
        // (A file shorter than HEAD_BYTES comes whole: the answer is cut at its end.)
        let (head, size) = crate::remote::block_on(self.fetch.fetch(key, 0, HEAD_BYTES))?;
        self.stats.index_requests.inc();
        let idx = {
            let mut read = |off: u64, len: u64| -> Result<Vec<u8>> {
                if off + len <= head.len() as u64 {
                    return Ok(head[off as usize..(off + len) as usize].to_vec());
                }
                self.stats.index_requests.inc();
                let (b, _) =
                    crate::remote::block_on(self.fetch.fetch(key, off, (off + len).min(size)))?;
                Ok(b)
            };
            match read_index_with(&mut read, size, walk)? {
                Some(i) => i,
                None => return Ok(None),
            }
        };
        if idx.source == super::j2k_index::IndexSource::Tlm {
            self.stats.tlm_index_requests.inc(); // the head read: the whole index
        }
        // The head segment is already here: cache it.
        let head_end = head_end(&idx);
        if head_end <= head.len() as u64 {
            self.put(key, "head", &head[..head_end as usize])?;
        }
        Ok(Some(idx))
    }

    /// Caches `bytes` as segment `name` of `key` (unless present).
    fn put(&self, key: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let entry = format!("tiles/{key}/{name}");
        crate::remote::block_on(self.cache.get_or_fetch(&entry, |tmp| async move {
            super::write_new_file(&tmp, bytes)?;
            Ok(bytes.len() as u64)
        }))
        .map(drop)
    }

    /// Fetches the tile-parts `key` needs for the window `[x, x + w) × [y, y + h)` (pixels) and
    /// the head, coalescing neighbours; concurrent across `wants`.
    pub async fn prefetch(&self, wants: &[(Arc<J2kIndex>, String, Vec<u16>)]) -> Result<()> {
        let mut jobs = Vec::new();
        for (idx, key, tiles) in wants {
            if self.lookup(key, "head").is_none() {
                jobs.push((idx.clone(), key.clone(), Run::Head));
            }
            let parts: Vec<TilePart> = idx
                .parts_of(tiles)
                .into_iter()
                .filter(|p| self.lookup(key, &format!("p{}", p.offset)).is_none())
                .collect();
            for run in coalesce(&parts) {
                jobs.push((idx.clone(), key.clone(), Run::Parts(run)));
            }
        }
        let results = futures::future::join_all(
            jobs.iter()
                .map(|(idx, key, run)| self.fetch_run(idx, key, run)),
        )
        .await;
        results.into_iter().collect::<Result<Vec<_>>>().map(drop)
    }

    fn lookup(&self, key: &str, name: &str) -> Option<LocalFile> {
        self.cache.peek(&format!("tiles/{key}/{name}"))
    }

    /// Fetches one run (or the head) and caches its segments, each checked first.
    async fn fetch_run(&self, idx: &J2kIndex, key: &str, run: &Run) -> Result<()> {
        let (start, end) = match run {
            Run::Head => (0, head_end(idx)),
            Run::Parts(parts) => {
                let last = parts.last().expect("non-empty run");
                (
                    parts[0].offset,
                    (last.offset + last.len + MARGIN).min(idx.size),
                )
            }
        };
        let what = || format!("{} bytes {start}-{}", self.fetch.describe(key), end - 1);
        self.stats.segment_requests.inc();
        let (bytes, size) = self.fetch.fetch(key, start, end).await.with_context(what)?;
        ensure!(
            size == idx.size,
            "{}: the object has {size} bytes, its index says {} (replaced?)",
            what(),
            idx.size
        );
        self.stats.segment_bytes.add(bytes.len() as u64);
        match run {
            Run::Head => self.put_async(key, "head", bytes).await,
            Run::Parts(parts) => {
                for p in parts {
                    let from = (p.offset - start) as usize;
                    let to = ((p.offset + p.len + MARGIN).min(idx.size) - start) as usize;
                    check_part(p, &bytes[from..from + p.len as usize]).with_context(what)?;
                    self.put_async(key, &format!("p{}", p.offset), bytes[from..to].to_vec())
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn put_async(&self, key: &str, name: &str, bytes: Vec<u8>) -> Result<()> {
        let entry = format!("tiles/{key}/{name}");
        self.cache
            .get_or_fetch(&entry, |tmp| async move {
                super::write_new_file(&tmp, &bytes)?;
                Ok(bytes.len() as u64)
            })
            .await
            .map(drop)
    }

    /// The segment holding `pos` of `key`: its cache entry name, where it starts, and the part
    /// it belongs to (for checking when fetched late).
    fn segment_of(idx: &J2kIndex, pos: u64) -> (String, u64, u64, Option<TilePart>) {
        let head = head_end(idx);
        if pos < idx.first_sot {
            return ("head".into(), 0, head, None);
        }
        let i = idx.parts.partition_point(|p| p.offset <= pos);
        if i > 0 {
            let p = idx.parts[i - 1];
            if pos < p.offset + p.len {
                let end = (p.offset + p.len + MARGIN).min(idx.size);
                return (format!("p{}", p.offset), p.offset, end, Some(p));
            }
        }
        let tail = idx.parts.last().map_or(idx.first_sot, |p| p.offset + p.len);
        ("tail".into(), tail, idx.size, None)
    }
}

fn head_end(idx: &J2kIndex) -> u64 {
    (idx.first_sot + MARGIN).min(idx.size)
}

enum Run {
    Head,
    Parts(Vec<TilePart>),
}

/// Groups tile-parts (in file order) into runs fetched by one request each.
fn coalesce(parts: &[TilePart]) -> Vec<Vec<TilePart>> {
    let mut runs: Vec<Vec<TilePart>> = Vec::new();
    for p in parts {
        match runs.last_mut() {
            Some(run)
                if {
                    let last = run.last().unwrap();
                    p.offset <= last.offset + last.len + COALESCE_GAP
                } =>
            {
                run.push(*p)
            }
            _ => runs.push(vec![*p]),
        }
    }
    runs
}

/// The name GDAL opens `key` by for a read of `tiles`: `t5_6/<key>` (`/vsidatacube/<n>/…`).
pub fn name(key: &str, tiles: &[u16]) -> String {
    let t: Vec<String> = tiles.iter().map(|t| t.to_string()).collect();
    format!("t{}/{key}", t.join("_"))
}

fn parse_name(name: &str) -> Result<(Vec<u16>, &str)> {
    let bad = || anyhow::anyhow!("{name}: expected t<tiles>/<key>");
    let (t, key) = name.split_once('/').ok_or_else(bad)?;
    let t = t.strip_prefix('t').ok_or_else(bad)?;
    let tiles = t
        .split('_')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u16>().map_err(|_| bad()))
        .collect::<Result<Vec<_>>>()?;
    Ok((tiles, key))
}

impl VirtualFiles for TileParts {
    fn size(&self, name: &str) -> Result<u64> {
        let (_, key) = parse_name(name)?;
        Ok(self.index(key)?.size)
    }

    fn open(self: Arc<Self>, name: &str) -> Result<Box<dyn VirtualFile>> {
        let (needed, key) = parse_name(name)?;
        let index = self.index(key)?;
        Ok(Box::new(SegmentFile {
            parts: self,
            key: key.to_string(),
            index,
            needed,
            current: None,
        }))
    }
}

/// An open band file: reads served from cached segments (the one read last kept open), or, in
/// tile-parts the read does not need, from the index.
struct SegmentFile {
    parts: Arc<TileParts>,
    key: String,
    index: Arc<J2kIndex>,
    needed: Vec<u16>,
    /// (start, end, entry, file) of the segment read last.
    current: Option<(u64, u64, LocalFile, std::fs::File)>,
}

impl SegmentFile {
    /// The cached segment `name` (`[start, end)` of the file), fetched now if absent.
    fn segment(
        &mut self,
        name: &str,
        start: u64,
        end: u64,
        part: Option<TilePart>,
    ) -> Result<LocalFile> {
        if let Some(f) = self.parts.lookup(&self.key, name) {
            return Ok(f);
        }
        self.parts.stats.late_fetches.inc();
        let run = match part {
            Some(p) => Run::Parts(vec![p]),
            None if name == "head" => Run::Head,
            None => {
                // The tail: whatever follows the last tile-part (EOC, boxes after the codestream).
                self.parts.stats.segment_requests.inc();
                let (bytes, _) =
                    crate::remote::block_on(self.parts.fetch.fetch(&self.key, start, end))
                        .with_context(|| {
                            format!(
                                "{} bytes {start}-{}",
                                self.parts.fetch.describe(&self.key),
                                end - 1
                            )
                        })?;
                self.parts.put(&self.key, "tail", &bytes)?;
                return self
                    .parts
                    .lookup(&self.key, "tail")
                    .context("tail vanished");
            }
        };
        crate::remote::block_on(self.parts.fetch_run(&self.index, &self.key, &run))?;
        self.parts
            .lookup(&self.key, name)
            .with_context(|| format!("segment {name} of {} vanished", self.key))
    }
}

impl VirtualFile for SegmentFile {
    fn size(&self) -> u64 {
        self.index.size
    }

    fn read_at(&mut self, mut pos: u64, mut out: &mut [u8]) -> Result<()> {
        while !out.is_empty() {
            if let Some((s, e, local, file)) = &self.current {
                if *s <= pos && pos < *e {
                    let n = ((e - pos) as usize).min(out.len());
                    file.read_exact_at(&mut out[..n], pos - s)
                        .with_context(|| format!("source cache: reading {}", local.display()))?;
                    out = &mut out[n..];
                    pos += n as u64;
                    continue;
                }
            }
            let (name, start, end, part) = TileParts::segment_of(&self.index, pos);
            if name == "tail" && end - start == 2 {
                // Two bytes after the last tile-part, the file's end: the codestream's EOC
                // marker (FFD9), which a codestream ends with. No request for it.
                let eoc = [0xFF, 0xD9];
                let n = ((end - pos) as usize).min(out.len());
                out[..n].copy_from_slice(&eoc[(pos - start) as usize..][..n]);
                out = &mut out[n..];
                pos += n as u64;
                continue;
            }
            if let Some(p) = part.filter(|p| !self.needed.contains(&p.tile)) {
                // A tile-part this read skips: its SOT, then zeros, up to SOT_HEAD bytes in.
                let within = pos - p.offset;
                if within < SOT_HEAD.min(p.len) {
                    let n = ((SOT_HEAD.min(p.len) - within) as usize).min(out.len());
                    let sot = p.sot_bytes();
                    for (i, b) in out[..n].iter_mut().enumerate() {
                        let at = within as usize + i;
                        *b = if at < sot.len() { sot[at] } else { 0 };
                    }
                    out = &mut out[n..];
                    pos += n as u64;
                    continue;
                }
            }
            self.current = None; // unpin the previous segment first
            let local = self.segment(&name, start, end, part)?;
            let file = std::fs::File::open(&*local)
                .with_context(|| format!("source cache: opening {}", local.display()))?;
            self.current = Some((start, end, local, file));
        }
        Ok(())
    }
}

/// Writes `path` whole or not at all (temporary file, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("source cache: creating {}", dir.display()))?;
    }
    let tmp = PathBuf::from(format!(
        "{}.part-{}",
        path.display(),
        crate::util::temp_files::owner_tag()
    ));
    super::write_new_file(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("source cache: renaming into {}", path.display()))
}
