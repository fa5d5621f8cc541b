//! `MTD_MSIL2A.xml`: the Level-2A product metadata, reduced to what an L2A cube needs.
//!
//! The L2A contract (see `crate::s2::product`): 12 data bands (no B10) each from its file at its
//! native resolution, the scene classification `SCL` as uint8 at 20 m, per scene and band the
//! `BOA_ADD_OFFSET`, and `reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE`. So this reads
//! the general fields (as in L1C), `QUANTIFICATION_VALUES_LIST` (BOA, AOT, WVP),
//! `BOA_ADD_OFFSET_VALUES_LIST` (from baseline 04.00; before it there is none and the offset is 0), the
//! `Scene_Classification_List`, and picks from the `IMAGE_FILE` list (every band at several
//! resolutions, in no fixed order) the native-resolution file of each band and the 20 m SCL.

use std::path::Path;

use super::product_mtd::{granule_dir_of, level_of, parse_common, parse_offsets, tile_of};
use super::xml::{self, find, find_all, required_parse, text_of};
use super::{ProductMtd, SafeError};
use crate::s2::bands::{Band, Resolution};
use crate::s2::product::{l2a_file_tag, l2a_resolution_dir, ProductLevel, SCL, SCL_RESOLUTION};

/// The first baseline whose products carry `BOA_ADD_OFFSET_VALUES_LIST` (04.00 → 400).
pub const FIRST_BASELINE_WITH_OFFSETS: u32 = 400;

#[derive(Debug, Clone, PartialEq)]
pub struct L2aProductMtd {
    /// PRODUCT_URI, e.g. `S2A_MSIL2A_..._20230822T021825.SAFE`.
    pub product_uri: String,
    /// PRODUCT_START_TIME (datatake sensing start), ms since the epoch.
    pub start_time_ms: i64,
    /// PROCESSING_BASELINE, e.g. `05.09`.
    pub baseline: String,
    /// SPACECRAFT_NAME, e.g. `Sentinel-2A`.
    pub spacecraft: String,
    pub relative_orbit: u32,
    /// Cloud_Coverage_Assessment, percent.
    pub cloud_cover: f64,
    /// BOA_QUANTIFICATION_VALUE (10000).
    pub boa_quantification: f64,
    /// AOT_QUANTIFICATION_VALUE (1000.0), when given.
    pub aot_quantification: Option<f64>,
    /// WVP_QUANTIFICATION_VALUE (1000.0, unit cm), when given.
    pub wvp_quantification: Option<f64>,
    /// BOA_ADD_OFFSET per bandId 0..=12 (the list has B10's although L2A has no B10 image); all 0
    /// when the product has no `BOA_ADD_OFFSET_VALUES_LIST` (baselines before 04.00).
    pub boa_offsets: [i32; 13],
    /// Whether the product has a `BOA_ADD_OFFSET_VALUES_LIST` (false: the offsets are the implied 0).
    pub has_offset_list: bool,
    /// SPECIAL_VALUE_INDEX of NODATA (0) and SATURATED (65535).
    pub nodata: u16,
    pub saturated: u16,
    /// All IMAGE_FILE entries as listed (relative to the product directory, without `.jp2`).
    pub image_files: Vec<String>,
    /// The native-resolution file of each band of `ProductLevel::L2A.bands()`, in that order (12:
    /// bandId order without B10), e.g. `GRANULE/<g>/IMG_DATA/R10m/T01KAB_20230821T221941_B02_10m`
    /// (without `.jp2`).
    pub band_files: Vec<String>,
    /// The 20 m scene classification file (`.../IMG_DATA/R20m/T..._SCL_20m`, without `.jp2`).
    pub scl_file: String,
    /// `Scene_Classification_List`: SCL value and its name (`SC_NODATA`, ..., `SC_SNOW_ICE`); empty
    /// when the product has no list.
    pub scl_classes: Vec<(u8, String)>,
}

impl L2aProductMtd {
    /// Product name without `.SAFE`.
    pub fn product_id(&self) -> String {
        super::product_mtd::product_id_of(&self.product_uri)
    }

    /// MGRS tile from the product name (`..._T01KAB_...` → `01KAB`).
    pub fn tile(&self) -> Option<String> {
        tile_of(&self.product_uri)
    }

    /// `Sentinel-2A` → `sentinel-2a` (the STAC `platform` spelling).
    pub fn platform(&self) -> String {
        self.spacecraft.to_ascii_lowercase()
    }

    /// `GRANULE/<granule>` (of the SCL file; all image files share it).
    pub fn granule_dir(&self) -> Option<String> {
        granule_dir_of(&self.scl_file)
    }

    /// The native-resolution file of a band (without `.jp2`); `None` for B10.
    pub fn band_file(&self, band: &Band) -> Option<&str> {
        ProductLevel::L2A
            .bands()
            .iter()
            .position(|b| b.id == band.id)
            .map(|i| self.band_files[i].as_str())
    }

    /// The fields both levels' product metadata share, as L1C's: `quantification` and the
    /// offsets are BOA's, `image_files` all of the product's.
    pub fn general(&self) -> ProductMtd {
        ProductMtd {
            product_uri: self.product_uri.clone(),
            start_time_ms: self.start_time_ms,
            baseline: self.baseline.clone(),
            spacecraft: self.spacecraft.clone(),
            relative_orbit: self.relative_orbit,
            quantification: self.boa_quantification,
            radio_offsets: self.boa_offsets,
            nodata: self.nodata,
            saturated: self.saturated,
            cloud_cover: self.cloud_cover,
            image_files: self.image_files.clone(),
        }
    }

    /// BOA_ADD_OFFSET of a band (0 before baseline 04.00).
    pub fn boa_offset(&self, band: &Band) -> i32 {
        self.boa_offsets[band.id]
    }
}

/// Parses `MTD_MSIL2A.xml`. Errors name the file and the element; a Level-1C file is refused.
pub fn parse_l2a_product_mtd(text: &str, file: &Path) -> Result<L2aProductMtd, SafeError> {
    let doc = xml::parse(text, file)?;
    let root = doc.root_element();
    if level_of(root, file)? == Some(ProductLevel::L1C) {
        return Err(SafeError::Product {
            file: file.to_path_buf(),
            msg: "a Level-1C product (PRODUCT_TYPE S2MSI1C), not Level-2A".into(),
        });
    }
    let common = parse_common(root, file)?;

    let offsets = parse_offsets(root, "BOA_ADD_OFFSET_VALUES_LIST", "BOA_ADD_OFFSET", file)?;
    let baseline_number = crate::s2::scene::baseline_number(&common.baseline);
    if offsets.is_none() && baseline_number >= FIRST_BASELINE_WITH_OFFSETS {
        // An implied offset of 0 would shift every reflectance by 0.1: refuse rather than guess.
        return Err(xml::missing(file, "BOA_ADD_OFFSET_VALUES_LIST"));
    }

    let mut band_files = Vec::with_capacity(12);
    for band in ProductLevel::L2A.bands() {
        band_files.push(native_file(
            &common.image_files,
            band.name,
            band.resolution,
            file,
        )?);
    }
    let scl_file = native_file(&common.image_files, SCL, SCL_RESOLUTION, file)?;

    let mut scl_classes = Vec::new();
    if let Some(list) = find(root, "Scene_Classification_List") {
        for c in find_all(list, "Scene_Classification_ID") {
            let index: u8 = required_parse(c, "SCENE_CLASSIFICATION_INDEX", file)?;
            let name = find(c, "SCENE_CLASSIFICATION_TEXT")
                .map(text_of)
                .unwrap_or("");
            scl_classes.push((index, name.to_string()));
        }
    }

    Ok(L2aProductMtd {
        product_uri: common.product_uri,
        start_time_ms: common.start_time_ms,
        baseline: common.baseline,
        spacecraft: common.spacecraft,
        relative_orbit: common.relative_orbit,
        cloud_cover: common.cloud_cover,
        boa_quantification: required_parse(root, "BOA_QUANTIFICATION_VALUE", file)?,
        aot_quantification: optional_parse(root, "AOT_QUANTIFICATION_VALUE", file)?,
        wvp_quantification: optional_parse(root, "WVP_QUANTIFICATION_VALUE", file)?,
        boa_offsets: offsets.unwrap_or([0; 13]),
        has_offset_list: offsets.is_some(),
        nodata: common.nodata,
        saturated: common.saturated,
        image_files: common.image_files,
        band_files,
        scl_file,
        scl_classes,
    })
}

/// The one IMAGE_FILE `GRANULE/<g>/IMG_DATA/R{res}/..._{name}_{res}` (a trailing `.jp2` dropped).
fn native_file(
    image_files: &[String],
    name: &str,
    res: Resolution,
    file: &Path,
) -> Result<String, SafeError> {
    let tag = format!("_{}", l2a_file_tag(name, res));
    let dir = l2a_resolution_dir(res);
    let err = |msg: String| SafeError::Product {
        file: file.to_path_buf(),
        msg: format!("IMAGE_FILE: {msg}"),
    };
    let found: Vec<&str> = image_files
        .iter()
        .map(|f| f.strip_suffix(".jp2").unwrap_or(f))
        .filter(|f| f.ends_with(&tag))
        .collect();
    let f = match found.as_slice() {
        [f] => *f,
        [] => {
            return Err(err(format!(
                "no file for {name} at its native {res} (GRANULE/<granule>/IMG_DATA/{dir}/T<tile>_<time>{tag})"
            )))
        }
        many => return Err(err(format!("{} files for {name} at {res}: {many:?}", many.len()))),
    };
    let parts: Vec<&str> = f.split('/').collect();
    if parts.len() != 5 || parts[0] != "GRANULE" || parts[2] != "IMG_DATA" || parts[3] != dir {
        return Err(err(format!(
            "{f:?} is not GRANULE/<granule>/IMG_DATA/{dir}/<file>"
        )));
    }
    Ok(f.to_string())
}

fn optional_parse(
    root: roxmltree::Node<'_, '_>,
    name: &str,
    file: &Path,
) -> Result<Option<f64>, SafeError> {
    match find(root, name).map(text_of) {
        None | Some("") => Ok(None),
        Some(t) => xml::parse_value(t, name, file).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s2::bands::{band_by_name, BANDS};
    use crate::s2::scene::iso_ms;
    use std::path::PathBuf;

    const N0509: &str = "S2A_MSIL2A_20230821T221941_N0509_R029_T01KAB_20230822T021825";
    const N0400: &str = "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126";
    const N0214: &str = "S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500";

    fn mtd(product: &str) -> (PathBuf, String) {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reference/cdse/l2a")
            .join(format!("{product}.SAFE"))
            .join("MTD_MSIL2A.xml");
        let text = std::fs::read_to_string(&file).unwrap();
        (file, text)
    }

    fn parse(product: &str) -> L2aProductMtd {
        let (file, text) = mtd(product);
        parse_l2a_product_mtd(&text, &file).unwrap()
    }

    #[test]
    fn baseline_05_09_product() {
        let p = parse(N0509);
        assert_eq!(p.product_id(), N0509);
        assert_eq!(p.tile().as_deref(), Some("01KAB"));
        assert_eq!(p.baseline, "05.09");
        assert_eq!(iso_ms(p.start_time_ms), "2023-08-21T22:19:41.024Z");
        assert_eq!(p.platform(), "sentinel-2a");
        assert_eq!(p.relative_orbit, 29);
        assert_eq!(p.cloud_cover, 59.050727);
        assert_eq!(p.boa_quantification, 10000.0);
        assert_eq!(p.aot_quantification, Some(1000.0));
        assert_eq!(p.wvp_quantification, Some(1000.0));
        assert!(p.has_offset_list);
        assert_eq!(p.boa_offsets, [-1000; 13]);
        assert_eq!((p.nodata, p.saturated), (0, 65535));
        assert_eq!(p.image_files.len(), 36);
        let g = "GRANULE/L2A_T01KAB_A042640_20230821T221944";
        assert_eq!(p.granule_dir().as_deref(), Some(g));
        let names: Vec<String> = p
            .band_files
            .iter()
            .map(|f| {
                f.strip_prefix(&format!("{g}/IMG_DATA/"))
                    .unwrap()
                    .to_string()
            })
            .collect();
        let t = "T01KAB_20230821T221941";
        assert_eq!(
            names,
            [
                format!("R60m/{t}_B01_60m"),
                format!("R10m/{t}_B02_10m"),
                format!("R10m/{t}_B03_10m"),
                format!("R10m/{t}_B04_10m"),
                format!("R20m/{t}_B05_20m"),
                format!("R20m/{t}_B06_20m"),
                format!("R20m/{t}_B07_20m"),
                format!("R10m/{t}_B08_10m"),
                format!("R20m/{t}_B8A_20m"),
                format!("R60m/{t}_B09_60m"),
                format!("R20m/{t}_B11_20m"),
                format!("R20m/{t}_B12_20m"),
            ]
        );
        assert_eq!(p.scl_file, format!("{g}/IMG_DATA/R20m/{t}_SCL_20m"));
        assert_eq!(p.band_file(band_by_name("B10").unwrap()), None);
        assert_eq!(
            p.band_file(band_by_name("B12").unwrap()),
            Some(format!("{g}/IMG_DATA/R20m/{t}_B12_20m").as_str())
        );
        assert_eq!(p.scl_classes.len(), 12);
        assert_eq!(p.scl_classes[0], (0, "SC_NODATA".to_string()));
        assert_eq!(p.scl_classes[11], (11, "SC_SNOW_ICE".to_string()));
    }

    #[test]
    fn baseline_04_00_product_lists_files_in_another_order() {
        // ESRI-processed: R20m, R60m, R10m; SCL before AOT/WVP/TCI. The choice must not care.
        let p = parse(N0400);
        assert_eq!(p.baseline, "04.00");
        assert_eq!(p.platform(), "sentinel-2b");
        assert!(p.has_offset_list);
        assert_eq!(p.boa_offsets, [-1000; 13]);
        assert_eq!(p.boa_offset(&BANDS[10]), -1000, "B10's entry is listed");
        assert_eq!(p.cloud_cover, 98.944211);
        for (band, f) in ProductLevel::L2A.bands().iter().zip(&p.band_files) {
            let res = band.resolution;
            assert!(
                f.contains(&format!("/IMG_DATA/R{res}/"))
                    && f.ends_with(&format!("_{}_{res}", band.name)),
                "{f}"
            );
        }
        assert!(p.scl_file.ends_with("/R20m/T33XWJ_20220413T150759_SCL_20m"));
    }

    #[test]
    fn baseline_02_14_product_has_no_offsets() {
        let p = parse(N0214);
        assert_eq!(p.baseline, "02.14");
        assert!(!p.has_offset_list);
        assert_eq!(p.boa_offsets, [0; 13]);
        assert_eq!(p.boa_quantification, 10000.0);
        assert_eq!(p.image_files.len(), 35, "no B01_20m");
        assert_eq!(p.band_files.len(), 12);
        assert!(p.band_files[0].ends_with("/R60m/T22HBD_20210122T133229_B01_60m"));
        assert!(p.scl_file.ends_with("/R20m/T22HBD_20210122T133229_SCL_20m"));
    }

    #[test]
    fn reflectance_of_each_baseline() {
        use crate::s2::product::reflectance;
        let b04 = band_by_name("B04").unwrap();
        let new = parse(N0509);
        let old = parse(N0214);
        // The same reflectance 0.25 is DN 3500 from 04.00 on and DN 2500 before.
        assert_eq!(
            reflectance(3500, new.boa_offset(b04), new.boa_quantification),
            0.25
        );
        assert_eq!(
            reflectance(2500, old.boa_offset(b04), old.boa_quantification),
            0.25
        );
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let (file, text) = mtd(N0509);
        let err = |t: &str| parse_l2a_product_mtd(t, &file).unwrap_err().to_string();

        let e = err(&text.replace(
            "<BOA_QUANTIFICATION_VALUE unit=\"none\">10000</BOA_QUANTIFICATION_VALUE>",
            "",
        ));
        assert!(
            e.contains("MTD_MSIL2A.xml") && e.contains("<BOA_QUANTIFICATION_VALUE>"),
            "{e}"
        );

        let e = err(&text.replace(
            "<BOA_ADD_OFFSET band_id=\"7\">-1000</BOA_ADD_OFFSET>",
            "<BOA_ADD_OFFSET band_id=\"7\">minus</BOA_ADD_OFFSET>",
        ));
        assert!(e.contains("<BOA_ADD_OFFSET>") && e.contains("minus"), "{e}");

        let e = err(&text.replace("<BOA_ADD_OFFSET band_id=\"12\">-1000</BOA_ADD_OFFSET>", ""));
        assert!(
            e.contains("BOA_ADD_OFFSET_VALUES_LIST") && e.contains("bandId 12"),
            "{e}"
        );

        // 04.00 and later without the list: refused, not read as offset 0.
        let start = text.find("<BOA_ADD_OFFSET_VALUES_LIST>").unwrap();
        let end = text.find("</BOA_ADD_OFFSET_VALUES_LIST>").unwrap()
            + "</BOA_ADD_OFFSET_VALUES_LIST>".len();
        let e = err(&format!("{}{}", &text[..start], &text[end..]));
        assert!(
            e.contains("missing element <BOA_ADD_OFFSET_VALUES_LIST>"),
            "{e}"
        );

        let b05 = "T01KAB_20230821T221941_B05_20m</IMAGE_FILE>";
        let e = err(&text.replace(b05, "T01KAB_20230821T221941_B05_25m</IMAGE_FILE>"));
        assert!(
            e.contains("MTD_MSIL2A.xml") && e.contains("IMAGE_FILE") && e.contains("B05_20m"),
            "{e}"
        );
        let e = err(&text.replace(
            "R20m/T01KAB_20230821T221941_SCL_20m",
            "T01KAB_20230821T221941_SCL_20m",
        ));
        assert!(
            e.contains("IMAGE_FILE") && e.contains("IMG_DATA/R20m"),
            "{e}"
        );

        let e = err(&text.replace(
            "2023-08-21T22:19:41.024Z</PRODUCT_START_TIME>",
            "someday</PRODUCT_START_TIME>",
        ));
        assert!(
            e.contains("PRODUCT_START_TIME") && e.contains("someday"),
            "{e}"
        );
    }

    #[test]
    fn a_level_1c_file_is_refused_by_name() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/data/reference/S2A_MSIL1C_20230216T044851_N0509_R076_T46UEU_20230216T000000.SAFE/MTD_MSIL1C.xml",
        );
        let text = std::fs::read_to_string(&file).unwrap();
        let e = parse_l2a_product_mtd(&text, &file).unwrap_err().to_string();
        assert!(
            e.contains("MTD_MSIL1C.xml") && e.contains("Level-1C"),
            "{e}"
        );
    }
}
