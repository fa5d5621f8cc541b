//! SAFE metadata parsing against the real CDSE files in tests/data/reference/ (real products'
//! metadata), and the errors for broken ones.

use std::path::Path;

use datacube::s2::bands::Resolution;
use datacube::s2::safe::{parse_product_mtd, parse_tile_mtd, read_product};

fn reference_safe() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/data/reference/S2A_MSIL1C_20230216T044851_N0509_R076_T46UEU_20230216T000000.SAFE",
    )
}

#[test]
fn real_product_parses_into_a_scene() {
    let dir = reference_safe();
    let scene = read_product(&dir, "Sentinel-2/MSI/L1C/2023/02/16/X.SAFE").unwrap();
    assert_eq!(
        scene.product_id,
        "S2A_MSIL1C_20230216T044851_N0509_R076_T46UEU_20230216T063628"
    );
    assert_eq!(scene.tile, "46UEU");
    assert_eq!(
        datacube::s2::scene::iso_ms(scene.sensing_time_ms),
        "2023-02-16T04:48:51.024Z"
    );
    assert_eq!(scene.baseline, "05.09");
    assert_eq!(scene.baseline_number(), 509);
    assert_eq!(scene.platform, "sentinel-2a");
    assert_eq!(scene.relative_orbit, 76);
    assert_eq!(scene.quantification, 10000.0);
    assert_eq!(scene.radio_offsets, vec![-1000; 13]);
    assert!((scene.cloud_cover - 7.07566663680612).abs() < 1e-12);
    assert_eq!(scene.epsg, 32646);
    assert!((scene.mean_sun_zenith - 62.3269039901673).abs() < 1e-12);
    assert!((scene.mean_sun_azimuth - 162.31571797089).abs() < 1e-12);
    for (res, n) in [
        (Resolution::R10, 10980),
        (Resolution::R20, 5490),
        (Resolution::R60, 1830),
    ] {
        let g = scene.grid(res);
        assert_eq!(
            (g.nrows, g.ncols, g.ulx, g.uly),
            (n, n, 499980.0, 5400000.0)
        );
    }
    assert_eq!(
        scene.band_key(8),
        "Sentinel-2/MSI/L1C/2023/02/16/X.SAFE/GRANULE/L1C_T46UEU_A039970_20230216T045412/IMG_DATA/T46UEU_20230216T044851_B8A.jp2"
    );
}

#[test]
fn baselines_before_04_00_have_no_offset_list_and_offset_zero() {
    let file = reference_safe().join("MTD_MSIL1C.xml");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("<Radiometric_Offset_List>").unwrap();
    let end = text.find("</Radiometric_Offset_List>").unwrap() + "</Radiometric_Offset_List>".len();
    let old = format!("{}{}", &text[..start], &text[end..]).replace(
        "<PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>",
        "<PROCESSING_BASELINE>03.01</PROCESSING_BASELINE>",
    );
    let p = parse_product_mtd(&old, &file).unwrap();
    assert_eq!(p.baseline, "03.01");
    assert_eq!(p.radio_offsets, [0; 13]);
}

#[test]
fn truncated_tile_metadata_names_the_file() {
    let file = reference_safe().join("GRANULE/L1C_T46UEU_A039970_20230216T045412/MTD_TL.xml");
    let text = std::fs::read_to_string(&file).unwrap();
    let err = parse_tile_mtd(&text[..text.len() / 3], &file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("MTD_TL.xml") && err.contains("not well-formed XML"),
        "{err}"
    );
}

#[test]
fn missing_and_invalid_fields_are_named() {
    let file = reference_safe().join("MTD_MSIL1C.xml");
    let text = std::fs::read_to_string(&file).unwrap();
    let no_q = text.replace(
        "<QUANTIFICATION_VALUE unit=\"none\">10000</QUANTIFICATION_VALUE>",
        "",
    );
    let err = parse_product_mtd(&no_q, &file).unwrap_err().to_string();
    assert!(
        err.contains("MTD_MSIL1C.xml") && err.contains("<QUANTIFICATION_VALUE>"),
        "{err}"
    );
    let bad_time = text.replace(
        "2023-02-16T04:48:51.024Z</PRODUCT_START_TIME>",
        "yesterday</PRODUCT_START_TIME>",
    );
    let err = parse_product_mtd(&bad_time, &file).unwrap_err().to_string();
    assert!(
        err.contains("PRODUCT_START_TIME") && err.contains("yesterday"),
        "{err}"
    );
}

#[test]
fn reference_stac_item_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/data/reference/stac-item-S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505.json",
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let it = datacube::s2::stac::StacItem::parse(&v).unwrap();
    assert_eq!(
        it.product_id,
        "S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505"
    );
    assert_eq!(it.tile, "51CVP");
    assert_eq!(it.baseline, "05.10");
    assert_eq!(it.platform, "sentinel-2a");
    assert_eq!(it.relative_orbit, 130);
    assert_eq!(it.epsg, 32751);
    assert_eq!(
        it.sensing_ms,
        datacube::s2::scene::parse_iso_ms("2024-01-16T00:07:41.024Z").unwrap()
    );
    let g10 = &it.grids[0];
    assert_eq!(
        (g10.nrows, g10.ncols, g10.ulx, g10.uly, g10.res),
        (10980, 10980, 399960.0, 1400020.0, 10.0)
    );
    assert_eq!(it.grids[2].nrows, 1830);
    assert_eq!(
        it.band_keys[1],
        "Sentinel-2/MSI/L1C/2024/01/16/S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505.SAFE/GRANULE/L1C_T51CVP_A044743_20240116T000743/IMG_DATA/T51CVP_20240116T000741_B02.jp2"
    );
    assert!(it.band_keys[8].ends_with("_B8A.jp2"), "{}", it.band_keys[8]);
    assert!(it.product_metadata_key.ends_with(".SAFE/MTD_MSIL1C.xml"));
    assert!(it.granule_metadata_key.ends_with("/MTD_TL.xml"));
    // A broken item names itself and the field.
    let mut bad = v.clone();
    bad["assets"]["B04"]["href"] = "https://example.com/x.jp2".into();
    let e = format!(
        "{:#}",
        datacube::s2::stac::StacItem::parse(&bad).unwrap_err()
    );
    assert!(
        e.contains("T51CVP_20240116T010505") && e.contains("B04"),
        "{e}"
    );
}
