//! Where each tile of a JPEG 2000 file lies: the codestream's main header and its tile-part
//! index, read with a few small range reads so that a chunk can fetch only the tile-parts it
//! decodes.
//!
//! Facts relied on (ISO/IEC 15444-1): a JP2 file is a sequence of boxes (`LBox` u32 big-endian,
//! `TBox`, `XLBox` u64 when `LBox` is 1, `LBox` 0 = to the end of the file); the codestream is the
//! `jp2c` box's content (a raw `.j2k` codestream starts with SOC `FF4F` directly). The main header
//! runs from SOC to the first SOT `FF90`; SIZ `FF51` gives the image and tile grid. Each tile-part
//! starts with SOT: `FF90`, `Lsot` = 10, `Isot` u16 (tile index), `Psot` u32 (tile-part length
//! from the SOT marker on; 0 = to EOC, last tile-part only), `TPsot` u8, `TNsot` u8. TLM `FF55`
//! marker segments in the main header list every tile-part's `Ptlm` (= `Psot`) in codestream
//! order, with `Ttlm` (tile index, 0/1/2 bytes by `ST`) and `Ptlm` 2 or 4 bytes (by `SP`), so with
//! TLM the index is the main header alone; without it the SOT chain is walked, 12 bytes per
//! tile-part. Sentinel-2 products carry TLM since February 2026; older ones do not.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

const SOC: u16 = 0xFF4F;
const SIZ: u16 = 0xFF51;
const TLM: u16 = 0xFF55;
const SOT: u16 = 0xFF90;
const EOC: u16 = 0xFFD9;

/// How the tile-part index was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexSource {
    Tlm,
    Sot,
}

/// One tile-part: file offset of its SOT marker and its length (SOT marker included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TilePart {
    pub tile: u16,
    pub offset: u64,
    pub len: u64,
    /// `TPsot`: this part's number within its tile.
    pub tp: u8,
    /// `TNsot`: the tile's number of parts (0: not said). With TLM, counted from the TLM.
    pub tn: u8,
}

impl TilePart {
    /// The part's SOT marker segment as the index knows it (what a reader walking the chain
    /// reads first; the same bytes as the file's when the index came from the SOT walk).
    pub fn sot_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..2].copy_from_slice(&SOT.to_be_bytes());
        b[2..4].copy_from_slice(&10u16.to_be_bytes());
        b[4..6].copy_from_slice(&self.tile.to_be_bytes());
        b[6..10].copy_from_slice(&(self.len as u32).to_be_bytes());
        b[10] = self.tp;
        b[11] = self.tn;
        b
    }
}

/// The tile grid (SIZ), in reference-grid pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub width: u32,
    pub height: u32,
    pub x0: u32,
    pub y0: u32,
    pub tile_w: u32,
    pub tile_h: u32,
    pub tile_x0: u32,
    pub tile_y0: u32,
}

impl Grid {
    pub fn tiles_across(&self) -> u32 {
        (self.width - self.tile_x0).div_ceil(self.tile_w)
    }

    pub fn tiles_down(&self) -> u32 {
        (self.height - self.tile_y0).div_ceil(self.tile_h)
    }

    /// Tiles intersecting the window `[x, x + w) × [y, y + h)` of the image (pixel coordinates
    /// relative to the image origin `x0, y0`), row-major tile indices.
    pub fn tiles_of(&self, x: u32, y: u32, w: u32, h: u32) -> Vec<u16> {
        if w == 0 || h == 0 {
            return Vec::new();
        }
        let ax = self.x0 + x - self.tile_x0;
        let ay = self.y0 + y - self.tile_y0;
        let (c0, c1) = (ax / self.tile_w, (ax + w - 1) / self.tile_w);
        let (r0, r1) = (ay / self.tile_h, (ay + h - 1) / self.tile_h);
        let across = self.tiles_across();
        let mut out = Vec::new();
        for r in r0..=r1.min(self.tiles_down() - 1) {
            for c in c0..=c1.min(across - 1) {
                out.push((r * across + c) as u16);
            }
        }
        out
    }
}

/// A file's codestream layout: enough to fetch the main header and any tile's parts by range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct J2kIndex {
    /// File size in bytes.
    pub size: u64,
    /// Offset of SOC.
    pub codestream: u64,
    /// Offset of the first SOT (the main header is `[codestream, first_sot)`).
    pub first_sot: u64,
    pub grid: Grid,
    pub source: IndexSource,
    /// Every tile-part in codestream order.
    pub parts: Vec<TilePart>,
}

impl J2kIndex {
    /// The tile-parts of `tiles`, in file order.
    pub fn parts_of(&self, tiles: &[u16]) -> Vec<TilePart> {
        self.parts
            .iter()
            .filter(|p| tiles.contains(&p.tile))
            .copied()
            .collect()
    }
}

/// Reads `len` bytes at `offset` of the file (fewer only at its end).
pub trait RangeRead {
    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>>;
}

impl<F: FnMut(u64, u64) -> Result<Vec<u8>>> RangeRead for F {
    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self(offset, len)
    }
}

fn u16_at(b: &[u8], i: usize) -> Result<u16> {
    b.get(i..i + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .context("truncated")
}

fn u32_at(b: &[u8], i: usize) -> Result<u32> {
    b.get(i..i + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .context("truncated")
}

/// How many bytes a first read takes: the JP2 boxes before the codestream and a main header
/// (with TLM: ~5 bytes per tile-part) fit in it for Sentinel-2 files, so most files need one
/// request for the whole index.
pub const HEAD_BYTES: u64 = 64 << 10;

/// Builds the index of a file of `size` bytes: its boxes, main header and tile-part index.
pub fn read_index(r: &mut dyn RangeRead, size: u64) -> Result<J2kIndex> {
    Ok(read_index_with(r, size, true)?.expect("walks when there is no TLM"))
}

/// `read_index`, or `None` for a file without TLM when `walk` is false (its index needs the SOT
/// walk, one small read per tile-part).
pub fn read_index_with(r: &mut dyn RangeRead, size: u64, walk: bool) -> Result<Option<J2kIndex>> {
    let mut head = r.read(0, HEAD_BYTES.min(size))?;
    let codestream = codestream_offset(r, &head, size)?;
    // The main header: marker segments from SOC to the first SOT.
    let mut pos = codestream;
    let ensure_have = |head: &mut Vec<u8>, r: &mut dyn RangeRead, end: u64| -> Result<()> {
        if end > head.len() as u64 {
            ensure!(end <= size, "main header runs past the end of the file");
            let more = r.read(head.len() as u64, (end - head.len() as u64).max(HEAD_BYTES))?;
            head.extend_from_slice(&more);
            ensure!(
                end <= head.len() as u64,
                "file shorter than its main header"
            );
        }
        Ok(())
    };
    ensure_have(&mut head, r, pos + 2)?;
    ensure!(
        u16_at(&head, pos as usize)? == SOC,
        "no SOC marker at the codestream start (offset {codestream})"
    );
    pos += 2;
    let mut grid = None;
    let mut tlm: Vec<(Option<u16>, u64)> = Vec::new();
    let mut has_tlm = false;
    loop {
        ensure_have(&mut head, r, pos + 4)?;
        let marker = u16_at(&head, pos as usize)?;
        if marker == SOT {
            break;
        }
        ensure!(
            marker >> 8 == 0xFF,
            "no marker at offset {pos} of the main header"
        );
        let len = u16_at(&head, pos as usize + 2)? as u64;
        ensure!(
            len >= 2,
            "marker {marker:04X} at offset {pos}: length {len}"
        );
        ensure_have(&mut head, r, pos + 2 + len)?;
        let seg = &head[(pos + 4) as usize..(pos + 2 + len) as usize];
        match marker {
            SIZ => grid = Some(parse_siz(seg).with_context(|| format!("SIZ at offset {pos}"))?),
            TLM => {
                has_tlm = true;
                parse_tlm(seg, &mut tlm).with_context(|| format!("TLM at offset {pos}"))?;
            }
            _ => {}
        }
        pos += 2 + len;
    }
    let grid = grid.context("no SIZ marker in the main header")?;
    let first_sot = pos;
    let (parts, source) = if has_tlm {
        let mut parts = Vec::with_capacity(tlm.len());
        let mut off = first_sot;
        for (i, (tile, len)) in tlm.iter().enumerate() {
            // Ttlm absent (ST = 0): one tile-part per tile, in tile order.
            let tile = tile.unwrap_or(i as u16);
            parts.push(TilePart {
                tile,
                offset: off,
                len: *len,
                tp: 0,
                tn: 0,
            });
            off += len;
        }
        // TPsot: order within the tile; TNsot: the tile's count of parts.
        let mut seen: std::collections::HashMap<u16, u8> = Default::default();
        for p in parts.iter_mut() {
            let n = seen.entry(p.tile).or_default();
            p.tp = *n;
            *n = n.saturating_add(1);
        }
        for p in parts.iter_mut() {
            p.tn = seen[&p.tile];
        }
        (parts, IndexSource::Tlm)
    } else if walk {
        (walk_sot(r, first_sot, size)?, IndexSource::Sot)
    } else {
        return Ok(None);
    };
    let idx = J2kIndex {
        size,
        codestream,
        first_sot,
        grid,
        source,
        parts,
    };
    check_extent(&idx)?;
    Ok(Some(idx))
}

/// The codestream's offset: after the JP2 boxes (the `jp2c` box's content), or 0 for a raw one.
fn codestream_offset(r: &mut dyn RangeRead, head: &[u8], size: u64) -> Result<u64> {
    if u16_at(head, 0)? == SOC {
        return Ok(0);
    }
    let mut pos = 0u64;
    loop {
        ensure!(pos + 8 <= size, "no jp2c box (not a JP2 file?)");
        let hdr = if pos + 16 <= head.len() as u64 {
            head[pos as usize..pos as usize + 16].to_vec()
        } else {
            r.read(pos, 16.min(size - pos))?
        };
        let lbox = u32_at(&hdr, 0)? as u64;
        let tbox = &hdr[4..8];
        let (len, hlen) = match lbox {
            0 => (size - pos, 8),
            1 => (
                u32_at(&hdr, 8)? as u64 * (1 << 32) + u32_at(&hdr, 12)? as u64,
                16,
            ),
            n => (n, 8),
        };
        if tbox == b"jp2c" {
            return Ok(pos + hlen);
        }
        ensure!(
            len >= hlen,
            "box {:?} at offset {pos}: length {len}",
            String::from_utf8_lossy(tbox)
        );
        pos += len;
    }
}

fn parse_siz(s: &[u8]) -> Result<Grid> {
    // Rsiz u16, then Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz (u32 each).
    let g = Grid {
        width: u32_at(s, 2)?,
        height: u32_at(s, 6)?,
        x0: u32_at(s, 10)?,
        y0: u32_at(s, 14)?,
        tile_w: u32_at(s, 18)?,
        tile_h: u32_at(s, 22)?,
        tile_x0: u32_at(s, 26)?,
        tile_y0: u32_at(s, 30)?,
    };
    ensure!(
        g.tile_w > 0 && g.tile_h > 0 && g.width > g.x0 && g.height > g.y0,
        "invalid image or tile size {g:?}"
    );
    Ok(g)
}

fn parse_tlm(s: &[u8], out: &mut Vec<(Option<u16>, u64)>) -> Result<()> {
    // Ztlm u8, Stlm u8, then (Ttlm, Ptlm) pairs.
    let stlm = *s.get(1).context("truncated")?;
    let st = (stlm >> 4) & 3;
    let sp = (stlm >> 6) & 1;
    ensure!(st != 3, "invalid Stlm {stlm:#x}");
    let (tw, pw) = (st as usize, if sp == 1 { 4 } else { 2 });
    let body = &s[2..];
    ensure!(
        body.len().is_multiple_of(tw + pw),
        "{} bytes of entries of {} bytes each",
        body.len(),
        tw + pw
    );
    for e in body.chunks(tw + pw) {
        let tile = match tw {
            0 => None,
            1 => Some(e[0] as u16),
            _ => Some(u16::from_be_bytes([e[0], e[1]])),
        };
        let len = match pw {
            2 => u16::from_be_bytes([e[tw], e[tw + 1]]) as u64,
            _ => u32::from_be_bytes([e[tw], e[tw + 1], e[tw + 2], e[tw + 3]]) as u64,
        };
        out.push((tile, len));
    }
    Ok(())
}

/// Walks the SOT chain from the first tile-part to EOC or the end of the file.
fn walk_sot(r: &mut dyn RangeRead, first: u64, size: u64) -> Result<Vec<TilePart>> {
    let mut parts = Vec::new();
    let mut pos = first;
    while pos + 2 <= size {
        let b = r.read(pos, 12.min(size - pos))?;
        let marker = u16_at(&b, 0)?;
        if marker == EOC {
            break;
        }
        let sot = parse_sot(&b).with_context(|| format!("tile-part at offset {pos}"))?;
        ensure!(marker == SOT, "no SOT marker at offset {pos}");
        let len = if sot.1 == 0 { size - pos } else { sot.1 };
        ensure!(
            pos + len <= size,
            "tile-part at offset {pos} runs past the end ({len} bytes)"
        );
        parts.push(TilePart {
            tile: sot.0,
            offset: pos,
            len,
            tp: b[10],
            tn: b[11],
        });
        pos += len;
    }
    Ok(parts)
}

/// (Isot, Psot) of a SOT marker segment.
pub fn parse_sot(b: &[u8]) -> Result<(u16, u64)> {
    if u16_at(b, 0)? != SOT || u16_at(b, 2)? != 10 {
        bail!("not a SOT marker segment");
    }
    Ok((u16_at(b, 4)?, u32_at(b, 6)? as u64))
}

/// Every tile-part lies inside the file, the parts do not overlap, and every tile has one.
fn check_extent(idx: &J2kIndex) -> Result<()> {
    let mut end = idx.first_sot;
    for p in &idx.parts {
        ensure!(
            p.offset == end && p.len >= 12,
            "tile-part of tile {} at offset {} (length {}) does not follow the previous one (ends at {end})",
            p.tile,
            p.offset,
            p.len
        );
        end = p.offset + p.len;
    }
    ensure!(
        end <= idx.size,
        "the tile-parts end at {end}, past the end of the file ({} bytes)",
        idx.size
    );
    let tiles = idx.grid.tiles_across() * idx.grid.tiles_down();
    for t in 0..tiles {
        ensure!(
            idx.parts.iter().any(|p| p.tile as u32 == t),
            "tile {t} has no tile-part"
        );
    }
    Ok(())
}

/// Checks fetched tile-part bytes against the index: the SOT marker names the tile and length the
/// index gives (a TLM that disagrees with the SOT markers is caught here, before decoding).
pub fn check_part(part: &TilePart, bytes: &[u8]) -> Result<()> {
    ensure!(
        bytes.len() as u64 == part.len,
        "tile-part of tile {} at offset {}: {} bytes, expected {}",
        part.tile,
        part.offset,
        bytes.len(),
        part.len
    );
    let (tile, psot) = parse_sot(bytes)
        .with_context(|| format!("tile-part of tile {} at offset {}", part.tile, part.offset))?;
    ensure!(
        tile == part.tile && (psot == part.len || psot == 0),
        "tile-part at offset {}: SOT says tile {tile}, {psot} bytes; the index says tile {}, {} bytes",
        part.offset,
        part.tile,
        part.len
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 200 × 150 uint16 JP2 with 64² tiles written by GDAL's JP2OpenJPEG driver.
    fn jp2(tlm: bool) -> Vec<u8> {
        use gdal::raster::Buffer;
        crate::raster::configure_gdal();
        let mem = gdal::DriverManager::get_driver_by_name("MEM").unwrap();
        let ds = mem
            .create_with_band_type::<u16, _>("", 200, 150, 1)
            .unwrap();
        let data: Vec<u16> = (0..200 * 150).map(|i| (i * 7 % 4001) as u16).collect();
        let mut buf = Buffer::new((200, 150), data);
        ds.rasterband(1)
            .unwrap()
            .write((0, 0), (200, 150), &mut buf)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jp2");
        let drv = gdal::DriverManager::get_driver_by_name("JP2OpenJPEG").unwrap();
        let mut opts = gdal::cpl::CslStringList::new();
        for o in [
            "BLOCKXSIZE=64",
            "BLOCKYSIZE=64",
            "REVERSIBLE=YES",
            "QUALITY=100",
        ] {
            opts.add_string(o).unwrap();
        }
        opts.add_string(if tlm { "TLM=YES" } else { "TLM=NO" })
            .unwrap();
        ds.create_copy(&drv, &path, &opts).unwrap();
        std::fs::read(&path).unwrap()
    }

    /// Reads from `bytes`, counting requests in `n`.
    fn reader<'a>(
        bytes: &'a [u8],
        n: &'a std::cell::Cell<usize>,
    ) -> impl FnMut(u64, u64) -> Result<Vec<u8>> + 'a {
        move |off, len| {
            n.set(n.get() + 1);
            let end = (off + len).min(bytes.len() as u64);
            Ok(bytes[off as usize..end as usize].to_vec())
        }
    }

    #[test]
    fn tlm_and_sot_walk_give_the_same_index_of_real_tile_parts() {
        let (with, without) = (jp2(true), jp2(false));
        let (n_tlm, n_sot) = (Default::default(), Default::default());
        let a = read_index(&mut reader(&with, &n_tlm), with.len() as u64).unwrap();
        let b = read_index(&mut reader(&without, &n_sot), without.len() as u64).unwrap();
        assert_eq!(a.source, IndexSource::Tlm);
        assert_eq!(b.source, IndexSource::Sot);
        assert_eq!(
            n_tlm.get(),
            1,
            "with TLM the first read holds the whole index"
        );
        assert!(
            n_sot.get() > 12,
            "the SOT walk reads each of the 12 tile-parts"
        );
        for (idx, bytes) in [(&a, &with), (&b, &without)] {
            assert_eq!(idx.grid.tiles_across() * idx.grid.tiles_down(), 4 * 3);
            assert_eq!(idx.parts.len(), 12);
            for p in &idx.parts {
                let s = &bytes[p.offset as usize..(p.offset + p.len) as usize];
                check_part(p, s).unwrap();
                // The SOT a reader is shown for a part it skips is the file's own.
                assert_eq!(p.sot_bytes(), s[..12], "tile {}", p.tile);
            }
        }
        // The same codestream apart from the TLM segment: same tiles, same lengths.
        let lens = |i: &J2kIndex| i.parts.iter().map(|p| (p.tile, p.len)).collect::<Vec<_>>();
        assert_eq!(lens(&a), lens(&b));
    }

    #[test]
    fn tiles_of_a_window() {
        let g = Grid {
            width: 200,
            height: 150,
            x0: 0,
            y0: 0,
            tile_w: 64,
            tile_h: 64,
            tile_x0: 0,
            tile_y0: 0,
        };
        assert_eq!(g.tiles_of(0, 0, 64, 64), vec![0]);
        assert_eq!(g.tiles_of(60, 60, 10, 10), vec![0, 1, 4, 5]);
        assert_eq!(g.tiles_of(190, 140, 10, 10), vec![10, 11]);
        assert_eq!(g.tiles_of(192, 128, 8, 22), vec![11]);
        assert_eq!(g.tiles_of(0, 0, 200, 150).len(), 12);
    }

    #[test]
    fn a_tlm_that_disagrees_with_the_sot_markers_is_caught() {
        let bytes = jp2(true);
        let n = Default::default();
        let idx = read_index(&mut reader(&bytes, &n), bytes.len() as u64).unwrap();
        // An index (a TLM) that names another tile, or another length, than the SOT marker.
        let part = |p: &TilePart| &bytes[p.offset as usize..(p.offset + p.len) as usize];
        let mut p = idx.parts[0];
        p.tile = 5;
        let e = check_part(&p, part(&idx.parts[0])).unwrap_err().to_string();
        assert!(
            e.contains("SOT says tile 0") && e.contains("index says tile 5"),
            "{e}"
        );
        let mut p = idx.parts[0];
        p.len += 1;
        let e = check_part(&p, part(&p)).unwrap_err().to_string();
        assert!(e.contains("SOT says tile 0"), "{e}");
        // Truncated tile-part bytes.
        let p = idx.parts[3];
        let s = &bytes[p.offset as usize..(p.offset + p.len - 1) as usize];
        assert!(check_part(&p, s)
            .unwrap_err()
            .to_string()
            .contains("bytes, expected"));
        // A file cut inside its tile-parts: the index does not fit it.
        let cut = &bytes[..bytes.len() - 100];
        let e = read_index(&mut reader(cut, &n), cut.len() as u64).unwrap_err();
        assert!(format!("{e:#}").contains("past the end"), "{e:#}");
    }
}
