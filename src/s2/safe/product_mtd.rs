//! `MTD_MSIL1C.xml`: the product-level metadata.

use std::path::Path;

use super::xml::{self, find, find_all, invalid, required, required_parse, text_of};
use super::SafeError;
use crate::s2::scene::parse_iso_ms;

#[derive(Debug, Clone, PartialEq)]
pub struct ProductMtd {
    /// PRODUCT_URI, e.g. `S2A_MSIL1C_..._20230216T063628.SAFE`.
    pub product_uri: String,
    pub start_time_ms: i64,
    pub baseline: String,
    /// SPACECRAFT_NAME, e.g. `Sentinel-2A`.
    pub spacecraft: String,
    pub relative_orbit: u32,
    pub quantification: f64,
    /// RADIO_ADD_OFFSET per bandId; all 0 when the product has no `Radiometric_Offset_List`
    /// (baselines before 04.00).
    pub radio_offsets: [i32; 13],
    pub nodata: u16,
    pub saturated: u16,
    pub cloud_cover: f64,
    /// IMAGE_FILE entries (relative to the product directory, without `.jp2`).
    pub image_files: Vec<String>,
}

impl ProductMtd {
    /// Product name without `.SAFE`.
    pub fn product_id(&self) -> String {
        self.product_uri.trim_end_matches(".SAFE").to_string()
    }

    /// MGRS tile from the product name (`..._T35VLH_...` → `35VLH`).
    pub fn tile(&self) -> Option<String> {
        self.product_id()
            .split('_')
            .find(|p| p.len() == 6 && p.starts_with('T'))
            .map(|p| p[1..].to_string())
    }

    /// `Sentinel-2A` → `sentinel-2a` (the STAC `platform` spelling).
    pub fn platform(&self) -> String {
        self.spacecraft.to_ascii_lowercase()
    }

    /// `GRANULE/<granule>` from the first image file.
    pub fn granule_dir(&self) -> Option<String> {
        let f = self.image_files.first()?;
        let mut parts = f.split('/');
        match (parts.next(), parts.next()) {
            (Some("GRANULE"), Some(g)) => Some(format!("GRANULE/{g}")),
            _ => None,
        }
    }
}

pub fn parse_product_mtd(text: &str, file: &Path) -> Result<ProductMtd, SafeError> {
    let doc = xml::parse(text, file)?;
    let root = doc.root_element();
    let start = required(root, "PRODUCT_START_TIME", file)?;
    let start_time_ms = parse_iso_ms(start)
        .ok_or_else(|| invalid(file, "PRODUCT_START_TIME", start, "not an ISO 8601 time"))?;

    let mut radio_offsets = [0i32; 13];
    if let Some(list) = find(root, "Radiometric_Offset_List") {
        let mut seen = [false; 13];
        for n in find_all(list, "RADIO_ADD_OFFSET") {
            let id: usize = xml::parse_value(
                n.attribute("band_id").unwrap_or(""),
                "RADIO_ADD_OFFSET@band_id",
                file,
            )?;
            if id >= 13 {
                return Err(invalid(
                    file,
                    "RADIO_ADD_OFFSET@band_id",
                    &id.to_string(),
                    "bandId out of range",
                ));
            }
            radio_offsets[id] = xml::parse_value(text_of(n), "RADIO_ADD_OFFSET", file)?;
            seen[id] = true;
        }
        if let Some(id) = seen.iter().position(|s| !s) {
            return Err(invalid(
                file,
                "Radiometric_Offset_List",
                "",
                &format!("no offset for bandId {id}"),
            ));
        }
    }

    let mut nodata = 0u16;
    let mut saturated = 65535u16;
    for sv in find_all(root, "Special_Values") {
        let name = find(sv, "SPECIAL_VALUE_TEXT").map(text_of).unwrap_or("");
        let index: u16 = required_parse(sv, "SPECIAL_VALUE_INDEX", file)?;
        match name {
            "NODATA" => nodata = index,
            "SATURATED" => saturated = index,
            _ => {}
        }
    }

    let image_files: Vec<String> = find_all(root, "IMAGE_FILE")
        .map(|n| text_of(n).to_string())
        .collect();
    if image_files.is_empty() {
        return Err(xml::missing(file, "IMAGE_FILE"));
    }
    let baseline = required(root, "PROCESSING_BASELINE", file)?.to_string();
    if crate::s2::scene::baseline_number(&baseline) == 0 {
        return Err(invalid(
            file,
            "PROCESSING_BASELINE",
            &baseline,
            "expected NN.NN",
        ));
    }

    Ok(ProductMtd {
        product_uri: required(root, "PRODUCT_URI", file)?.to_string(),
        start_time_ms,
        baseline,
        spacecraft: required(root, "SPACECRAFT_NAME", file)?.to_string(),
        relative_orbit: required_parse(root, "SENSING_ORBIT_NUMBER", file)?,
        quantification: required_parse(root, "QUANTIFICATION_VALUE", file)?,
        radio_offsets,
        nodata,
        saturated,
        cloud_cover: required_parse(root, "Cloud_Coverage_Assessment", file)?,
        image_files,
    })
}
