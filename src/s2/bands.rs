//! Sentinel-2 MSI band facts and the three resolution groups of the cube.
//!
//! Band order is the MTD `bandId` order (0..=12). Each resolution group stores its bands in that
//! order, which is also the order of the `band` coordinate.

use std::fmt;
use std::str::FromStr;

/// One MSI band: its name in file names, MTD `bandId`, native resolution and central wavelength.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub name: &'static str,
    pub id: usize,
    pub resolution: Resolution,
    /// Central wavelength in nanometres (S2A, from MTD_MSIL1C.xml).
    pub wavelength_nm: f64,
}

/// All 13 bands in MTD `bandId` order.
pub const BANDS: [Band; 13] = [
    band("B01", 0, Resolution::R60, 442.7),
    band("B02", 1, Resolution::R10, 492.7),
    band("B03", 2, Resolution::R10, 559.8),
    band("B04", 3, Resolution::R10, 664.6),
    band("B05", 4, Resolution::R20, 704.1),
    band("B06", 5, Resolution::R20, 740.5),
    band("B07", 6, Resolution::R20, 782.8),
    band("B08", 7, Resolution::R10, 832.8),
    band("B8A", 8, Resolution::R20, 864.7),
    band("B09", 9, Resolution::R60, 945.1),
    band("B10", 10, Resolution::R60, 1373.5),
    band("B11", 11, Resolution::R20, 1613.7),
    band("B12", 12, Resolution::R20, 2202.4),
];

const fn band(name: &'static str, id: usize, resolution: Resolution, wavelength_nm: f64) -> Band {
    Band {
        name,
        id,
        resolution,
        wavelength_nm,
    }
}

/// Looks a band up by its file-name spelling (`B8A`, `B01`, ...).
pub fn band_by_name(name: &str) -> Option<&'static Band> {
    BANDS.iter().find(|b| b.name == name)
}

/// A resolution group of the cube: `10m`, `20m` or `60m`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Resolution {
    R10,
    R20,
    R60,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::R10, Resolution::R20, Resolution::R60];

    pub fn metres(self) -> u32 {
        match self {
            Resolution::R10 => 10,
            Resolution::R20 => 20,
            Resolution::R60 => 60,
        }
    }

    /// Group name in the hierarchy (`10m`).
    pub fn name(self) -> &'static str {
        match self {
            Resolution::R10 => "10m",
            Resolution::R20 => "20m",
            Resolution::R60 => "60m",
        }
    }

    /// Index into per-resolution arrays (0, 1, 2).
    pub fn index(self) -> usize {
        match self {
            Resolution::R10 => 0,
            Resolution::R20 => 1,
            Resolution::R60 => 2,
        }
    }

    /// The bands stored in this group, in MTD bandId order.
    pub fn bands(self) -> Vec<&'static Band> {
        BANDS.iter().filter(|b| b.resolution == self).collect()
    }

    /// Scenes per chunk along `time` (docs/design.md §2): the reference user's layout keeps a chunk near
    /// 20 MiB uncompressed at every resolution.
    pub fn time_chunk(self) -> u64 {
        match self {
            Resolution::R10 => 20,
            Resolution::R20 => 40,
            Resolution::R60 => 80,
        }
    }

    /// Pixels per chunk along `y` and `x`.
    pub fn space_chunk(self) -> u64 {
        match self {
            Resolution::R10 => 512,
            Resolution::R20 => 256,
            Resolution::R60 => 128,
        }
    }

    /// Full chunk shape `[time, band, y, x]`.
    pub fn chunk_shape(self) -> [u64; 4] {
        let s = self.space_chunk();
        [self.time_chunk(), self.bands().len() as u64, s, s]
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "10m" | "10" => Ok(Resolution::R10),
            "20m" | "20" => Ok(Resolution::R20),
            "60m" | "60" => Ok(Resolution::R60),
            _ => Err(format!(
                "unknown resolution {s:?} (expected 10m, 20m or 60m)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_partition_the_bands_in_band_id_order() {
        let names = |r: Resolution| r.bands().iter().map(|b| b.name).collect::<Vec<_>>();
        assert_eq!(names(Resolution::R10), ["B02", "B03", "B04", "B08"]);
        assert_eq!(
            names(Resolution::R20),
            ["B05", "B06", "B07", "B8A", "B11", "B12"]
        );
        assert_eq!(names(Resolution::R60), ["B01", "B09", "B10"]);
        for (i, b) in BANDS.iter().enumerate() {
            assert_eq!(b.id, i);
        }
    }

    #[test]
    fn chunk_shapes_match_the_design() {
        assert_eq!(Resolution::R10.chunk_shape(), [20, 4, 512, 512]);
        assert_eq!(Resolution::R20.chunk_shape(), [40, 6, 256, 256]);
        assert_eq!(Resolution::R60.chunk_shape(), [80, 3, 128, 128]);
    }
}
