//! `MTD_MSIL1C.xml`: the Level-1C product metadata (sensing start, baseline, quantification,
//! per-band `RADIO_ADD_OFFSET`, cloud cover, band file list), and the parts every level's product
//! metadata shares: level detection from the root element / `PRODUCT_TYPE`, the general fields, the
//! special values and the per-band offset lists. The Level-2A file is `product_mtd_l2a`'s.

use std::path::Path;

use roxmltree::Node;

use super::xml::{self, find, find_all, invalid, required, required_parse, text_of};
use super::SafeError;
use crate::s2::product::ProductLevel;
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
        product_id_of(&self.product_uri)
    }

    /// MGRS tile from the product name (`..._T35VLH_...` → `35VLH`).
    pub fn tile(&self) -> Option<String> {
        tile_of(&self.product_uri)
    }

    /// `Sentinel-2A` → `sentinel-2a` (the STAC `platform` spelling).
    pub fn platform(&self) -> String {
        self.spacecraft.to_ascii_lowercase()
    }

    /// `GRANULE/<granule>` from the first image file.
    pub fn granule_dir(&self) -> Option<String> {
        granule_dir_of(self.image_files.first()?)
    }
}

/// Product name without `.SAFE`.
pub(super) fn product_id_of(product_uri: &str) -> String {
    product_uri.trim_end_matches(".SAFE").to_string()
}

/// MGRS tile from the product name (`..._T35VLH_...` → `35VLH`).
pub(super) fn tile_of(product_uri: &str) -> Option<String> {
    product_id_of(product_uri)
        .split('_')
        .find(|p| p.len() == 6 && p.starts_with('T'))
        .map(|p| p[1..].to_string())
}

/// `GRANULE/<granule>` of an image file path.
pub(super) fn granule_dir_of(image_file: &str) -> Option<String> {
    let mut parts = image_file.split('/');
    match (parts.next(), parts.next()) {
        (Some("GRANULE"), Some(g)) => Some(format!("GRANULE/{g}")),
        _ => None,
    }
}

/// The level of a metadata document: from its root element (`Level-1C_User_Product`,
/// `Level-2A_User_Product`, `Level-1C_Tile_ID`, `Level-2A_Tile_ID`), else from `PRODUCT_TYPE`
/// (`S2MSI1C`, `S2MSI2A`). `None` when neither says (an unknown `PRODUCT_TYPE` says nothing, so the
/// L1C parser stays as lenient as it was); an error when they disagree.
pub(super) fn level_of(root: Node<'_, '_>, file: &Path) -> Result<Option<ProductLevel>, SafeError> {
    let by_root = ProductLevel::from_root_element(root.tag_name().name());
    let by_type = find(root, "PRODUCT_TYPE")
        .map(text_of)
        .and_then(ProductLevel::from_product_type);
    match (by_root, by_type) {
        (Some(r), Some(t)) if r != t => Err(invalid(
            file,
            "PRODUCT_TYPE",
            t.product_type(),
            &format!(
                "the root element <{}> is a {r} document",
                root.tag_name().name()
            ),
        )),
        (r, t) => Ok(r.or(t)),
    }
}

/// The level of a product (`MTD_MSIL1C.xml`, `MTD_MSIL2A.xml`) or granule (`MTD_TL.xml`) metadata
/// file, from its root element or `PRODUCT_TYPE`.
pub fn product_level(text: &str, file: &Path) -> Result<ProductLevel, SafeError> {
    let doc = xml::parse(text, file)?;
    let root = doc.root_element();
    level_of(root, file)?.ok_or_else(|| {
        let product_type = find(root, "PRODUCT_TYPE").map(text_of).unwrap_or("");
        invalid(
            file,
            "root element",
            root.tag_name().name(),
            &format!(
                "neither a Level-1C nor a Level-2A product or tile (PRODUCT_TYPE {product_type:?})"
            ),
        )
    })
}

/// The fields the product metadata of both levels share, under the same element names.
pub(super) struct Common {
    pub product_uri: String,
    pub start_time_ms: i64,
    pub baseline: String,
    pub spacecraft: String,
    pub relative_orbit: u32,
    pub cloud_cover: f64,
    pub nodata: u16,
    pub saturated: u16,
    pub image_files: Vec<String>,
}

pub(super) fn parse_common(root: Node<'_, '_>, file: &Path) -> Result<Common, SafeError> {
    let start = required(root, "PRODUCT_START_TIME", file)?;
    let start_time_ms = parse_iso_ms(start)
        .ok_or_else(|| invalid(file, "PRODUCT_START_TIME", start, "not an ISO 8601 time"))?;

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
    Ok(Common {
        product_uri: required(root, "PRODUCT_URI", file)?.to_string(),
        start_time_ms,
        baseline,
        spacecraft: required(root, "SPACECRAFT_NAME", file)?.to_string(),
        relative_orbit: required_parse(root, "SENSING_ORBIT_NUMBER", file)?,
        cloud_cover: required_parse(root, "Cloud_Coverage_Assessment", file)?,
        nodata,
        saturated,
        image_files,
    })
}

/// A per-band offset list (`<list><entry band_id="0..12">N</entry>...</list>`): `None` when the list
/// is absent, an error when it lacks a band or has an unknown one.
pub(super) fn parse_offsets(
    root: Node<'_, '_>,
    list: &str,
    entry: &str,
    file: &Path,
) -> Result<Option<[i32; 13]>, SafeError> {
    let Some(list_node) = find(root, list) else {
        return Ok(None);
    };
    let attr_field = format!("{entry}@band_id");
    let mut offsets = [0i32; 13];
    let mut seen = [false; 13];
    for n in find_all(list_node, entry) {
        let id: usize = xml::parse_value(n.attribute("band_id").unwrap_or(""), &attr_field, file)?;
        if id >= 13 {
            return Err(invalid(
                file,
                &attr_field,
                &id.to_string(),
                "bandId out of range",
            ));
        }
        offsets[id] = xml::parse_value(text_of(n), entry, file)?;
        seen[id] = true;
    }
    if let Some(id) = seen.iter().position(|s| !s) {
        return Err(invalid(
            file,
            list,
            "",
            &format!("no offset for bandId {id}"),
        ));
    }
    Ok(Some(offsets))
}

/// Parses `MTD_MSIL1C.xml`. A Level-2A file is refused by name (see `parse_l2a_product_mtd`).
pub fn parse_product_mtd(text: &str, file: &Path) -> Result<ProductMtd, SafeError> {
    let doc = xml::parse(text, file)?;
    let root = doc.root_element();
    if level_of(root, file)? == Some(ProductLevel::L2A) {
        return Err(SafeError::Product {
            file: file.to_path_buf(),
            msg: "a Level-2A product (PRODUCT_TYPE S2MSI2A), not Level-1C".into(),
        });
    }
    let common = parse_common(root, file)?;
    let radio_offsets = parse_offsets(root, "Radiometric_Offset_List", "RADIO_ADD_OFFSET", file)?
        .unwrap_or([0; 13]);
    Ok(ProductMtd {
        product_uri: common.product_uri,
        start_time_ms: common.start_time_ms,
        baseline: common.baseline,
        spacecraft: common.spacecraft,
        relative_orbit: common.relative_orbit,
        quantification: required_parse(root, "QUANTIFICATION_VALUE", file)?,
        radio_offsets,
        nodata: common.nodata,
        saturated: common.saturated,
        cloud_cover: common.cloud_cover,
        image_files: common.image_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn l1c_file() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/data/reference/S2A_MSIL1C_20230216T044851_N0509_R076_T46UEU_20230216T000000.SAFE/MTD_MSIL1C.xml",
        )
    }

    #[test]
    fn l1c_reference_is_detected_and_parsed() {
        let file = l1c_file();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(product_level(&text, &file).unwrap(), ProductLevel::L1C);
        let p = parse_product_mtd(&text, &file).unwrap();
        assert_eq!(p.baseline, "05.09");
        assert_eq!(p.quantification, 10000.0);
        assert_eq!(p.radio_offsets, [-1000; 13]);
        assert_eq!(p.image_files.len(), 14, "13 bands and TCI");
        assert_eq!(p.tile().as_deref(), Some("46UEU"));
    }

    #[test]
    fn l1c_parser_refuses_a_level_2a_file_by_name() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/data/reference/cdse/l2a/S2A_MSIL2A_20230821T221941_N0509_R029_T01KAB_20230822T021825.SAFE/MTD_MSIL2A.xml",
        );
        let text = std::fs::read_to_string(&file).unwrap();
        let e = parse_product_mtd(&text, &file).unwrap_err().to_string();
        assert!(
            e.contains("MTD_MSIL2A.xml") && e.contains("Level-2A"),
            "{e}"
        );
    }

    #[test]
    fn level_disagreement_and_unknown_documents_are_named() {
        let file = l1c_file();
        let text = std::fs::read_to_string(&file).unwrap();
        let mixed = text.replace(
            "<PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>",
            "<PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>",
        );
        let e = product_level(&mixed, &file).unwrap_err().to_string();
        assert!(e.contains("<PRODUCT_TYPE>") && e.contains("S2MSI2A"), "{e}");
        let e = product_level("<Other/>", &file).unwrap_err().to_string();
        assert!(
            e.contains("MTD_MSIL1C.xml") && e.contains("root element"),
            "{e}"
        );
        // No level-specific root element: PRODUCT_TYPE decides.
        let generic = "<P><PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE></P>";
        assert_eq!(product_level(generic, &file).unwrap(), ProductLevel::L2A);
    }
}
