//! Benchmarks of patch time-series reads, the way ML data loaders read the cube: a random square
//! patch (aligned to 60 m so every resolution has whole pixels), all times, all the level's bands
//! in the three resolution groups (L1C: 13 bands; L2A: 12, no B10) and, for L2A, the 10 m scene
//! classification `10m/scl` too (what a masked training loader reads).
//!
//! Readers: zarrs over a directory (a store, or the mount), and the decode floor (GDAL decoding
//! exactly the patch windows of every band JP2, and of L2A's 20 m SCL file, each 20 m class
//! repeated 2 × 2 for `10m/scl`). All return the arrays of [`patch_arrays`] (`data` as
//! `[time, band, n, n]`, `scl` as `[time, n, n]`, as u16), so a checksum tells whether they agree.

pub mod cold;
pub mod daemon;
pub mod loader;
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
use datacube::s2::array::{PixelArray, Var};
use datacube::s2::bands::Resolution;
use datacube::s2::catalog::Catalog;
use datacube::s2::product::{ProductLevel, SCL_RESOLUTION};
use datacube::s2::scene::Scene;
use datacube::source::BandSource;

/// The arrays a patch read reads at `level`: `data` of the three resolution groups (the level's
/// bands), and for L2A `10m/scl` (the mask at the finest resolution, as a training loader reads
/// it next to the bands).
pub fn patch_arrays(level: ProductLevel) -> Vec<PixelArray> {
    let mut v: Vec<PixelArray> = Resolution::ALL
        .iter()
        .map(|&r| PixelArray::data(r))
        .collect();
    if level == ProductLevel::L2A {
        v.push(PixelArray::scl(Resolution::R10));
    }
    v
}

/// The files of a scene the decode floor reads, each with the resolution of its pixels: the
/// level's band files, and L2A's SCL file (20 m).
pub fn scene_files(scene: &Scene, level: ProductLevel) -> Vec<(&str, Resolution)> {
    let mut v: Vec<(&str, Resolution)> = Resolution::ALL
        .iter()
        .flat_map(|&r| {
            level
                .res_bands(r)
                .into_iter()
                .map(move |b| (scene.band_key(b.id), r))
        })
        .collect();
    if let Some(k) = &scene.scl_key {
        v.push((k.as_str(), SCL_RESOLUTION));
    }
    v
}

/// A patch: its upper-left corner in metres from the tile's upper-left corner, and its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// The arrays of [`patch_arrays`] of a tile-year in a directory store (or a mount of one).
pub struct ZarrReader {
    level: ProductLevel,
    arrays: Vec<(PixelArray, Array<FilesystemStore>)>,
}

impl ZarrReader {
    pub fn open(root: &Path, tile: &str, year: i32, level: ProductLevel) -> Result<Self> {
        let store = Arc::new(
            FilesystemStore::new(root).with_context(|| format!("opening {}", root.display()))?,
        );
        let arrays = patch_arrays(level)
            .into_iter()
            .map(|a| {
                let path = format!("/{tile}/{year}/{}", a.path());
                let array = Array::open(store.clone(), &path)
                    .with_context(|| format!("{}{path}", root.display()))?;
                Ok((a, array))
            })
            .collect::<Result<_>>()?;
        Ok(ZarrReader { level, arrays })
    }

    fn array(&self, a: PixelArray) -> Result<&Array<FilesystemStore>> {
        self.arrays
            .iter()
            .find(|(x, _)| *x == a)
            .map(|(_, array)| array)
            .with_context(|| format!("{a}: not opened"))
    }

    /// The patch time series at `res`: `[time, band, n, n]`, C order.
    pub fn read(&self, res: Resolution, p: &Patch) -> Result<Vec<u16>> {
        self.read_bands(res, p, 0..self.level.res_bands(res).len())
    }

    /// `read` of some bands only (indices into the level's bands of `res`).
    pub fn read_bands(
        &self,
        res: Resolution,
        p: &Patch,
        bands: std::ops::Range<usize>,
    ) -> Result<Vec<u16>> {
        let a = self.array(PixelArray::data(res))?;
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

    /// The patch time series of an array: `data` as `read`, `scl` as `[time, n, n]` (its uint8
    /// classes as u16).
    pub fn read_array(&self, array: PixelArray, p: &Patch) -> Result<Vec<u16>> {
        match array.var {
            Var::Data => self.read(array.res, p),
            Var::Scl => {
                let a = self.array(array)?;
                let (r, c, n) = p.pixels(array.res);
                let subset = ArraySubset::new_with_ranges(&[0..a.shape()[0], r..r + n, c..c + n]);
                let v: ndarray::ArrayD<u8> = a
                    .retrieve_array_subset(&subset)
                    .with_context(|| format!("reading {p:?} of {array}"))?;
                Ok(v.iter().map(|&x| x as u16).collect())
            }
        }
    }
}

/// The decode floor of one array: GDAL reads exactly the patch window of every file of every
/// scene, in parallel. Same layout as `ZarrReader::read_array`.
pub fn floor_read(
    source: &dyn BandSource,
    catalog: &Catalog,
    array: PixelArray,
    p: &Patch,
) -> Result<Vec<u16>> {
    match array.var {
        Var::Data => floor_read_bands(
            source,
            catalog,
            array.res,
            p,
            0..catalog.level().res_bands(array.res).len(),
        ),
        Var::Scl => floor_read_scl(source, catalog, array.res, p),
    }
}

/// The data bands' floor: exactly the patch window of every band file, in parallel over
/// (scene, band); `[time, band, n, n]` (bands: indices into the level's bands of `res`).
pub fn floor_read_bands(
    source: &dyn BandSource,
    catalog: &Catalog,
    res: Resolution,
    p: &Patch,
    bands: std::ops::Range<usize>,
) -> Result<Vec<u16>> {
    let (r, c, n) = p.pixels(res);
    let n = n as usize;
    let bands = &catalog.level().res_bands(res)[bands];
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

/// The SCL floor at `res`: exactly the patch window of every scene's 20 m SCL file, in parallel
/// over scenes, each class repeated f × f (f = 20 m ÷ `res`); `[time, n, n]`.
pub fn floor_read_scl(
    source: &dyn BandSource,
    catalog: &Catalog,
    res: Resolution,
    p: &Patch,
) -> Result<Vec<u16>> {
    anyhow::ensure!(
        SCL_RESOLUTION.metres().is_multiple_of(res.metres()),
        "no scl at {res}"
    );
    let f = (SCL_RESOLUTION.metres() / res.metres()) as usize;
    let (r, c, n) = p.pixels(SCL_RESOLUTION);
    let (r, c, n) = (r as usize, c as usize, n as usize);
    let nf = n * f;
    let mut out = vec![0u16; catalog.scenes.len() * nf * nf];
    out.par_chunks_mut(nf * nf)
        .zip(catalog.scenes.par_iter())
        .try_for_each(|(plane, scene)| -> Result<()> {
            let key = scene
                .scl_key
                .as_deref()
                .with_context(|| format!("scene {}: no SCL file", scene.product_id))?;
            let v = read_direct(&source.local_path(key)?, c, r, n, n)?;
            if f == 1 {
                plane.copy_from_slice(&v);
            } else {
                for (y, row) in plane.chunks_mut(nf).enumerate() {
                    let src = &v[y / f * n..][..n];
                    for (x, out) in row.iter_mut().enumerate() {
                        *out = src[x / f];
                    }
                }
            }
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

/// Every array of a patch (`patch_arrays`) through a zarrs reader, one checksum.
pub fn read_all(reader: &ZarrReader, p: &Patch) -> Result<u64> {
    let mut h = 0u64;
    for array in patch_arrays(reader.level) {
        h = combine(h, checksum(&reader.read_array(array, p)?));
    }
    Ok(h)
}

/// `read_all` by the decode floor: the same arrays, the same checksum.
pub fn floor_read_all(source: &dyn BandSource, catalog: &Catalog, p: &Patch) -> Result<u64> {
    let mut h = 0u64;
    for array in patch_arrays(catalog.level()) {
        h = combine(h, checksum(&floor_read(source, catalog, array, p)?));
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

    #[test]
    fn a_patch_reads_the_data_groups_and_for_l2a_the_10m_scl() {
        let data: Vec<PixelArray> = Resolution::ALL.map(PixelArray::data).to_vec();
        assert_eq!(patch_arrays(ProductLevel::L1C), data);
        let l2a = patch_arrays(ProductLevel::L2A);
        assert_eq!(l2a[..3], data[..]);
        assert_eq!(l2a[3..], [PixelArray::scl(Resolution::R10)]);
        let planes = |l| -> Vec<u64> { patch_arrays(l).iter().map(|a| a.planes(l)).collect() };
        assert_eq!(planes(ProductLevel::L1C), [4, 6, 3]);
        assert_eq!(planes(ProductLevel::L2A), [4, 6, 2, 1]);
    }
}
