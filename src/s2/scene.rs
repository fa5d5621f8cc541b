//! Typed metadata of one Sentinel-2 L1C product (one scene of one MGRS tile), whatever it came from
//! (a SAFE directory, or a STAC item with its metadata files). The catalog persists these as JSON.

use serde::{Deserialize, Serialize};

use crate::s2::bands::{Resolution, BANDS};
use crate::s2::product::ProductLevel;

/// Pixel grid of one resolution: size and upper-left corner in the tile's UTM CRS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub nrows: u64,
    pub ncols: u64,
    pub ulx: f64,
    pub uly: f64,
    /// Pixel size in metres (positive).
    pub res: f64,
}

impl Grid {
    /// GDAL geotransform `[ulx, res, 0, uly, 0, -res]`.
    pub fn geotransform(&self) -> [f64; 6] {
        [self.ulx, self.res, 0.0, self.uly, 0.0, -self.res]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// L1C or L2A (absent in catalogs written before L2A: L1C).
    #[serde(default, skip_serializing_if = "ProductLevel::is_l1c")]
    pub level: ProductLevel,
    /// Product name without `.SAFE`, e.g. `S2A_MSIL1C_20240412T095031_N0510_R079_T35VLH_20240412T113522`.
    pub product_id: String,
    /// MGRS tile without the `T`, e.g. `35VLH`.
    pub tile: String,
    /// PRODUCT_START_TIME (datatake sensing start), milliseconds since the Unix epoch, UTC.
    pub sensing_time_ms: i64,
    /// Processing baseline, e.g. `05.10`.
    pub baseline: String,
    /// `sentinel-2a`, `sentinel-2b`, ...
    pub platform: String,
    pub relative_orbit: u32,
    /// Cloud_Coverage_Assessment, percent.
    pub cloud_cover: f64,
    pub mean_sun_zenith: f64,
    pub mean_sun_azimuth: f64,
    /// QUANTIFICATION_VALUE (L2A: BOA_QUANTIFICATION_VALUE): reflectance = (DN + offset) /
    /// quantification.
    pub quantification: f64,
    /// The additive offset per bandId: RADIO_ADD_OFFSET (L1C) or BOA_ADD_OFFSET (L2A); 0 for
    /// baselines before 04.00, which have none.
    pub radio_offsets: Vec<i32>,
    pub epsg: u32,
    /// Grids for 10 m, 20 m and 60 m (index = `Resolution::index`).
    pub grids: Vec<Grid>,
    /// Band file keys per bandId, relative to the archive root (equal to the key in bucket `eodata`);
    /// empty for a band the level does not have (B10 in L2A).
    pub band_keys: Vec<String>,
    /// L2A: the key of the 20 m scene classification file (`..._SCL_20m.jp2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scl_key: Option<String>,
}

impl Scene {
    pub fn grid(&self, res: Resolution) -> &Grid {
        &self.grids[res.index()]
    }

    /// Baseline as a comparable number (`05.10` → 510).
    pub fn baseline_number(&self) -> u32 {
        baseline_number(&self.baseline)
    }

    pub fn band_key(&self, band_id: usize) -> &str {
        &self.band_keys[band_id]
    }

    /// Key of the product directory (`Sentinel-2/MSI/L1C/YYYY/MM/DD/<product>.SAFE`).
    pub fn product_dir_key(&self) -> String {
        product_dir_key(&self.product_id, self.sensing_time_ms)
    }

    /// The product's generation discriminator (last field of the name): breaks baseline ties.
    pub fn discriminator(&self) -> &str {
        self.product_id.rsplit('_').next().unwrap_or("")
    }

    /// Checks the invariants the rest of the pipeline relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.radio_offsets.len() != BANDS.len() {
            return Err(format!(
                "{} radiometric offsets, expected 13",
                self.radio_offsets.len()
            ));
        }
        if self.band_keys.len() != BANDS.len() {
            return Err(format!("{} band files, expected 13", self.band_keys.len()));
        }
        for b in &BANDS {
            if self.level.has_band(b) == self.band_keys[b.id].is_empty() {
                return Err(format!(
                    "band {}: {} file for a {} product",
                    b.name,
                    if self.band_keys[b.id].is_empty() {
                        "no"
                    } else {
                        "a"
                    },
                    self.level
                ));
            }
        }
        if (self.level == ProductLevel::L2A) != self.scl_key.is_some() {
            return Err(format!(
                "a {} product {} a scene classification file",
                self.level,
                if self.scl_key.is_some() {
                    "with"
                } else {
                    "without"
                }
            ));
        }
        if self.grids.len() != 3 {
            return Err(format!("{} grids, expected 3", self.grids.len()));
        }
        for r in Resolution::ALL {
            let g = self.grid(r);
            if g.nrows == 0 || g.ncols == 0 || g.res != r.metres() as f64 {
                return Err(format!("invalid {} grid {g:?}", r.name()));
            }
        }
        Ok(())
    }
}

/// `05.10` → 510, `N0510` → 510; unparsable baselines sort first.
pub fn baseline_number(b: &str) -> u32 {
    let digits: String = b.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or(0)
}

/// `Sentinel-2/MSI/L1C/YYYY/MM/DD/<product>.SAFE` (`.../L2A/...` for a Level-2A product, told by
/// its name), dated by the sensing start (CDSE layout).
pub fn product_dir_key(product_id: &str, sensing_time_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(sensing_time_ms).unwrap_or_default();
    let level = crate::s2::product::ProductLevel::from_product_id(product_id)
        .unwrap_or(crate::s2::product::ProductLevel::L1C);
    format!(
        "Sentinel-2/MSI/{level}/{}/{product_id}.SAFE",
        t.format("%Y/%m/%d")
    )
}

/// Formats milliseconds since the epoch as ISO 8601 UTC with millisecond precision.
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Parses an ISO 8601 UTC timestamp into milliseconds since the epoch (sub-ms digits truncated).
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}
