//! The Sentinel-2 MSI processing levels the crate reads, and what each level's product holds.
//!
//! Level-1C (top-of-atmosphere reflectance, `MTD_MSIL1C.xml`, collection `sentinel-2-l1c`): 13 bands,
//! one file per band at its native resolution, `reflectance = (DN + RADIO_ADD_OFFSET) /
//! QUANTIFICATION_VALUE`.
//!
//! Level-2A (bottom-of-atmosphere reflectance, `MTD_MSIL2A.xml`, collection `sentinel-2-l2a`): the L2A
//! contract of this crate is 12 data bands (no B10, which L2A does not deliver), each read from its
//! file at its *native* resolution (L2A also ships resampled copies at the other resolutions, which
//! are not used), plus the scene classification `SCL` as uint8 at 20 m; per scene and band the
//! product's `BOA_ADD_OFFSET` (0 before baseline 04.00), and `reflectance = (DN + BOA_ADD_OFFSET) /
//! BOA_QUANTIFICATION_VALUE`.
//!
//! Both the SAFE parsers (`crate::s2::safe`) and the STAC item parser (`crate::s2::stac`) take their
//! level-specific facts (band lists, file and asset names) from here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::s2::bands::{Band, Resolution, BANDS};

/// A Sentinel-2 MSI product level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum ProductLevel {
    /// Every scene persisted before L2A existed is L1C.
    #[default]
    L1C,
    L2A,
}

impl ProductLevel {
    pub const ALL: [ProductLevel; 2] = [ProductLevel::L1C, ProductLevel::L2A];

    /// `L1C` / `L2A`.
    pub fn name(self) -> &'static str {
        match self {
            ProductLevel::L1C => "L1C",
            ProductLevel::L2A => "L2A",
        }
    }

    /// `PRODUCT_TYPE` in the product metadata, `product:type` in STAC: `S2MSI1C` / `S2MSI2A`.
    pub fn product_type(self) -> &'static str {
        match self {
            ProductLevel::L1C => "S2MSI1C",
            ProductLevel::L2A => "S2MSI2A",
        }
    }

    /// The product-name field after the mission (`S2A_MSIL2A_...`): `MSIL1C` / `MSIL2A`.
    pub fn name_tag(self) -> &'static str {
        match self {
            ProductLevel::L1C => "MSIL1C",
            ProductLevel::L2A => "MSIL2A",
        }
    }

    /// The product metadata file at the top of the SAFE directory.
    pub fn metadata_file(self) -> &'static str {
        match self {
            ProductLevel::L1C => "MTD_MSIL1C.xml",
            ProductLevel::L2A => "MTD_MSIL2A.xml",
        }
    }

    /// The CDSE STAC collection.
    pub fn stac_collection(self) -> &'static str {
        match self {
            ProductLevel::L1C => "sentinel-2-l1c",
            ProductLevel::L2A => "sentinel-2-l2a",
        }
    }

    /// From `PRODUCT_TYPE` / `product:type`.
    pub fn from_product_type(t: &str) -> Option<ProductLevel> {
        Self::ALL.into_iter().find(|l| l.product_type() == t)
    }

    /// From a STAC collection id.
    pub fn from_stac_collection(c: &str) -> Option<ProductLevel> {
        Self::ALL.into_iter().find(|l| l.stac_collection() == c)
    }

    /// From the local name of a metadata file's root element: `Level-1C_User_Product`,
    /// `Level-2A_User_Product` (product metadata) or `Level-1C_Tile_ID`, `Level-2A_Tile_ID` (granule).
    pub fn from_root_element(local_name: &str) -> Option<ProductLevel> {
        match local_name {
            "Level-1C_User_Product" | "Level-1C_Tile_ID" => Some(ProductLevel::L1C),
            "Level-2A_User_Product" | "Level-2A_Tile_ID" => Some(ProductLevel::L2A),
            _ => None,
        }
    }

    /// From a product name (`S2A_MSIL2A_20230821T221941_N0509_...`, with or without `.SAFE`).
    pub fn from_product_id(id: &str) -> Option<ProductLevel> {
        let tag = id.split('_').nth(1)?;
        Self::ALL.into_iter().find(|l| l.name_tag() == tag)
    }

    /// The data bands of the level in MTD `bandId` order: L1C all 13, L2A the 12 without B10.
    pub fn bands(self) -> Vec<&'static Band> {
        BANDS.iter().filter(|b| self.has_band(b)).collect()
    }

    /// The data bands of a resolution group at this level, in bandId order (L2A's 60 m: B01, B09).
    pub fn res_bands(self, res: Resolution) -> Vec<&'static Band> {
        res.bands()
            .into_iter()
            .filter(|b| self.has_band(b))
            .collect()
    }

    pub fn is_l1c(&self) -> bool {
        *self == ProductLevel::L1C
    }

    /// Whether the level delivers this band (L2A has no B10).
    pub fn has_band(self, band: &Band) -> bool {
        match self {
            ProductLevel::L1C => true,
            ProductLevel::L2A => band.name != "B10",
        }
    }
}

impl fmt::Display for ProductLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProductLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "L1C" => Ok(ProductLevel::L1C),
            "L2A" => Ok(ProductLevel::L2A),
            _ => Err(format!("unknown product level {s:?} (expected L1C or L2A)")),
        }
    }
}

/// The L2A scene classification layer's name in file names and asset keys.
pub const SCL: &str = "SCL";
/// The SCL's native resolution (the 60 m file is a downsampled copy).
pub const SCL_RESOLUTION: Resolution = Resolution::R20;

/// `{name}_{res}` (`B02_10m`, `SCL_20m`): the L2A STAC asset key, and the end of the L2A image file
/// name `T{tile}_{datatake start}_{name}_{res}` (without `.jp2`).
pub fn l2a_file_tag(name: &str, res: Resolution) -> String {
    format!("{name}_{res}")
}

/// The L2A image folder of a resolution, under `GRANULE/<granule>/IMG_DATA/`: `R10m`, `R20m`, `R60m`.
pub fn l2a_resolution_dir(res: Resolution) -> String {
    format!("R{res}")
}

/// Reflectance of a digital number, for both levels: `(DN + offset) / quantification`, with the
/// product's per-band offset (`RADIO_ADD_OFFSET` in L1C, `BOA_ADD_OFFSET` in L2A; 0 before baseline
/// 04.00) and its quantification value (10000). NODATA (DN 0) must be masked by the caller.
pub fn reflectance(dn: u16, offset: i32, quantification: f64) -> f64 {
    (f64::from(dn) + f64::from(offset)) / quantification
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_level_detection_and_names() {
        for l in ProductLevel::ALL {
            assert_eq!(ProductLevel::from_product_type(l.product_type()), Some(l));
            assert_eq!(
                ProductLevel::from_stac_collection(l.stac_collection()),
                Some(l)
            );
            assert_eq!(l.name().parse::<ProductLevel>(), Ok(l));
        }
        assert_eq!(
            ProductLevel::from_product_id(
                "S2A_MSIL2A_20230821T221941_N0509_R029_T01KAB_20230822T021825.SAFE"
            ),
            Some(ProductLevel::L2A)
        );
        assert_eq!(
            ProductLevel::from_product_id(
                "S2A_MSIL1C_20230216T044851_N0509_R076_T46UEU_20230216T063628"
            ),
            Some(ProductLevel::L1C)
        );
        assert_eq!(ProductLevel::from_product_id("S1A_IW_GRDH"), None);
        assert_eq!(
            ProductLevel::from_root_element("Level-2A_Tile_ID"),
            Some(ProductLevel::L2A)
        );
        assert_eq!(ProductLevel::from_root_element("Level-2A"), None);
        assert_eq!(ProductLevel::L2A.metadata_file(), "MTD_MSIL2A.xml");
        assert!("L3".parse::<ProductLevel>().is_err());
    }

    #[test]
    fn l2a_has_twelve_bands_without_b10() {
        assert_eq!(ProductLevel::L1C.bands().len(), 13);
        let names: Vec<_> = ProductLevel::L2A.bands().iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
        );
        assert_eq!(l2a_file_tag("B8A", Resolution::R20), "B8A_20m");
        assert_eq!(l2a_file_tag(SCL, SCL_RESOLUTION), "SCL_20m");
        assert_eq!(l2a_resolution_dir(Resolution::R60), "R60m");
    }

    #[test]
    fn reflectance_applies_offset_then_quantification() {
        assert_eq!(reflectance(1000, -1000, 10000.0), 0.0);
        assert_eq!(reflectance(3500, -1000, 10000.0), 0.25);
        assert_eq!(reflectance(2500, 0, 10000.0), 0.25);
    }
}
