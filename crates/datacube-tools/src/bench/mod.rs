//! Benchmarks of patch time-series reads, the way ML data loaders read the cube: a random square
//! patch (aligned to 60 m so every resolution has whole pixels), all times, all 13 bands in the
//! three resolution groups.
//!
//! Readers: zarrs over a directory (a store, or the mount), and the decode floor (GDAL decoding
//! exactly the patch windows of every band JP2). All return `[time, band, n, n]` u16 arrays, so a
//! checksum tells whether they agree.

pub mod cold;
pub mod daemon;
pub mod mount;
pub mod report;
pub mod run;
pub mod s1;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rayon::prelude::*;
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

use datacube::raster::read_direct;
use datacube::s2::bands::Resolution;
use datacube::s2::catalog::Catalog;
use datacube::source::BandSource;

/// A patch: its upper-left corner in metres from the tile's upper-left corner, and its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Patch {
    pub x_m: u64,
    pub y_m: u64,
    pub size_m: u64,
}

impl Patch {
    /// (row, col, side) in pixels at `res`.
    pub fn pixels(&self, res: Resolution) -> (u64, u64, u64) {
        let m = res.metres() as u64;
        (self.y_m / m, self.x_m / m, self.size_m / m)
    }
}

/// `n` patches of `size_m` metres inside a tile `width_m` wide, aligned to 60 m, from `seed`.
pub fn sample_patches(width_m: u64, size_m: u64, n: usize, seed: u64) -> Result<Vec<Patch>> {
    if size_m == 0 || !size_m.is_multiple_of(60) || size_m > width_m {
        anyhow::bail!(
            "patch size {size_m} m: must be a positive multiple of 60 m, at most the tile ({width_m} m)"
        );
    }
    let slots = (width_m - size_m) / 60 + 1;
    Ok((0..n as u64)
        .map(|i| {
            let r = datacube::util::mix(seed ^ (i << 32));
            Patch {
                x_m: (r % slots) * 60,
                y_m: ((r >> 32) % slots) * 60,
                size_m,
            }
        })
        .collect())
}

/// The three `data` arrays of a tile-year in a directory store (or a mount of one).
pub struct ZarrReader {
    arrays: Vec<Array<FilesystemStore>>,
}

impl ZarrReader {
    pub fn open(root: &Path, tile: &str, year: i32) -> Result<Self> {
        let store = Arc::new(
            FilesystemStore::new(root).with_context(|| format!("opening {}", root.display()))?,
        );
        let arrays = Resolution::ALL
            .iter()
            .map(|r| {
                let path = format!("/{tile}/{year}/{}/data", r.name());
                Array::open(store.clone(), &path)
                    .with_context(|| format!("{}{path}", root.display()))
            })
            .collect::<Result<_>>()?;
        Ok(ZarrReader { arrays })
    }

    /// The patch time series at `res`: `[time, band, n, n]`, C order.
    pub fn read(&self, res: Resolution, p: &Patch) -> Result<Vec<u16>> {
        self.read_bands(res, p, 0..res.bands().len())
    }

    /// `read` of some bands only (indices into `res.bands()`).
    pub fn read_bands(
        &self,
        res: Resolution,
        p: &Patch,
        bands: std::ops::Range<usize>,
    ) -> Result<Vec<u16>> {
        let a = &self.arrays[res.index()];
        let s = a.shape();
        let (r, c, n) = p.pixels(res);
        let subset = ArraySubset::new_with_ranges(&[
            0..s[0],
            bands.start as u64..bands.end as u64,
            r..r + n,
            c..c + n,
        ]);
        let v: ndarray::ArrayD<u16> = a
            .retrieve_array_subset(&subset)
            .with_context(|| format!("reading {p:?} at {res}"))?;
        Ok(v.into_raw_vec_and_offset().0)
    }
}

/// The decode floor: GDAL reads exactly the patch window of every band file of every scene, in
/// parallel over (scene, band). Same layout as `ZarrReader::read`.
pub fn floor_read(
    source: &dyn BandSource,
    catalog: &Catalog,
    res: Resolution,
    p: &Patch,
) -> Result<Vec<u16>> {
    floor_read_bands(source, catalog, res, p, 0..res.bands().len())
}

/// `floor_read` of some bands only (indices into `res.bands()`).
pub fn floor_read_bands(
    source: &dyn BandSource,
    catalog: &Catalog,
    res: Resolution,
    p: &Patch,
    bands: std::ops::Range<usize>,
) -> Result<Vec<u16>> {
    let (r, c, n) = p.pixels(res);
    let n = n as usize;
    let bands = &res.bands()[bands];
    let mut out = vec![0u16; catalog.scenes.len() * bands.len() * n * n];
    out.par_chunks_mut(n * n)
        .enumerate()
        .try_for_each(|(i, plane)| -> Result<()> {
            let scene = &catalog.scenes[i / bands.len()];
            let band = &bands[i % bands.len()];
            let path = source.local_path(scene.band_key(band.id))?;
            let v = read_direct(&path, c as usize, r as usize, n, n)?;
            plane.copy_from_slice(&v);
            Ok(())
        })?;
    Ok(out)
}

/// A position-weighted sum of the values (wrapping u64): equal arrays give equal sums, and any
/// changed, moved or missing value changes it. Cheap to compute in numpy too (the xarray reader).
pub fn checksum(v: &[u16]) -> u64 {
    v.iter().enumerate().fold(0u64, |h, (i, x)| {
        h.wrapping_add((*x as u64).wrapping_mul((i as u64 % 65521) + 1))
    })
}

/// Combines the checksums of a patch's resolution groups.
pub fn combine(h: u64, c: u64) -> u64 {
    h.wrapping_mul(1_000_003).wrapping_add(c)
}

/// All three resolution groups of a patch through a zarrs reader, one checksum.
pub fn read_all(reader: &ZarrReader, p: &Patch) -> Result<u64> {
    let mut h = 0u64;
    for res in Resolution::ALL {
        h = combine(h, checksum(&reader.read(res, p)?));
    }
    Ok(h)
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_aligned_inside_and_reproducible() {
        let a = sample_patches(109800, 5100, 50, 42).unwrap();
        assert_eq!(a, sample_patches(109800, 5100, 50, 42).unwrap());
        assert_ne!(a, sample_patches(109800, 5100, 50, 43).unwrap());
        for p in &a {
            assert!(p.x_m % 60 == 0 && p.y_m % 60 == 0);
            assert!(p.x_m + 5100 <= 109800 && p.y_m + 5100 <= 109800);
            assert_eq!(p.pixels(Resolution::R60).2, 85);
        }
        assert!(sample_patches(10980, 5000, 1, 1).is_err());
        assert!(sample_patches(10980, 12000, 1, 1).is_err());
    }
}
