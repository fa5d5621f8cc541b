//! A CDSE STAC v1 item of `sentinel-2-l1c` or `sentinel-2-l2a`, reduced to what the catalog needs:
//! level, product, sensing time, tile, baseline, orbit, the band files' keys in the `eodata` bucket
//! with their grids, and the two metadata files.
//!
//! L1C: the 13 band assets are keyed by band name (`B01`, ..., `B8A`). L2A: asset keys carry the
//! resolution (`B02_10m`, `B01_20m`, `B01_60m`, ...) and each band comes at several resolutions; the
//! L2A contract (`crate::s2::product`) takes the 12 bands (no B10) at their native resolution only
//! (`sampling:original` in the asset roles) and the scene classification `SCL_20m` (uint8). Items
//! of reprocessed L2A products point into `Sentinel-2/MSI/L2A_N0500/...`, not `.../L2A/...`: the keys
//! are taken from the hrefs as they are.
//!
//! The per-band offset comes from the product's `MTD_MSIL1C.xml` (`RADIO_ADD_OFFSET`) or
//! `MTD_MSIL2A.xml` (`BOA_ADD_OFFSET`), not from the assets' `raster:scale` / `raster:offset`
//! (0.0001 / -0.1 on every asset of both collections, AOT and WVP included, whose quantification is
//! 1000): those are kept only as the item states them.
//!
//! Groundwork for the CDSE source: parsed the same way from the real reference items and from the
//! fixture's items, so the emulator and the real service feed one code path.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::s2::bands::{Band, Resolution};
use crate::s2::product::{l2a_file_tag, ProductLevel, SCL, SCL_RESOLUTION};
use crate::s2::scene::{parse_iso_ms, Grid};

/// The bucket CDSE serves the archive from.
pub const EODATA: &str = "eodata";

#[derive(Debug, Clone, PartialEq)]
pub struct StacItem {
    /// L1C or L2A, from `collection` and `product:type` (else the id).
    pub level: ProductLevel,
    /// Product name without `.SAFE` (the item id).
    pub product_id: String,
    /// `datetime`, ms since the epoch.
    pub sensing_ms: i64,
    /// MGRS tile without the prefix (`grid:code` = `MGRS-35VLH`).
    pub tile: String,
    /// `processing:version`, e.g. `05.10`.
    pub baseline: String,
    pub platform: String,
    pub relative_orbit: u32,
    pub cloud_cover: f64,
    /// `eo:snow_cover` when given (L2A items).
    pub snow_cover: Option<f64>,
    pub epsg: u32,
    /// Per resolution (`Resolution::index`), from the bands' `proj:shape` / `proj:transform`.
    pub grids: Vec<Grid>,
    /// Band file keys in the `eodata` bucket, one per band of `level.bands()` in that order: L1C the
    /// 13 bands in MTD band id order (B01..B12, B8A order of `BANDS`), L2A the 12 without B10, each
    /// at its native resolution. [`StacItem::band_key`] looks one up by band.
    pub band_keys: Vec<String>,
    /// `file:size` of each band file when the item gives it (checked after download).
    pub band_sizes: Vec<Option<u64>>,
    /// `raster:scale` and `raster:offset` of each band asset as the item gives them (informational:
    /// a per-collection constant; the metadata file's offset and quantification are the truth).
    pub band_scaling: Vec<Option<(f64, f64)>>,
    /// L2A: the key of the 20 m scene classification file (asset `SCL_20m`); `None` for L1C.
    pub scl_key: Option<String>,
    /// L2A: `file:size` of the SCL file when given.
    pub scl_size: Option<u64>,
    pub product_metadata_key: String,
    pub granule_metadata_key: String,
}

/// `s3://eodata/KEY` → `KEY`.
pub fn eodata_key(href: &str) -> Result<String> {
    href.strip_prefix("s3://")
        .and_then(|r| r.strip_prefix(EODATA))
        .and_then(|r| r.strip_prefix('/'))
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .with_context(|| format!("asset href {href:?} is not in s3://{EODATA}/"))
}

fn str_at<'a>(v: &'a Value, path: &str, what: &str) -> Result<&'a str> {
    v.pointer(path)
        .and_then(Value::as_str)
        .with_context(|| format!("{what}: missing or not a string: {path}"))
}

/// The item's level: `collection` and `product:type` must agree where given; without either, the id
/// (`..._MSIL2A_...`) tells.
fn level_of(v: &Value, props: &Value, what: &str) -> Result<ProductLevel> {
    let by_collection = match v.get("collection").and_then(Value::as_str) {
        Some(c) => Some(ProductLevel::from_stac_collection(c).with_context(|| {
            format!("{what}: collection {c:?} is neither sentinel-2-l1c nor sentinel-2-l2a")
        })?),
        None => None,
    };
    let by_type = match props.get("product:type").and_then(Value::as_str) {
        Some(t) => Some(ProductLevel::from_product_type(t).with_context(|| {
            format!("{what}: product:type {t:?} is neither S2MSI1C nor S2MSI2A")
        })?),
        None => None,
    };
    match (by_collection, by_type) {
        (Some(c), Some(t)) if c != t => anyhow::bail!(
            "{what}: collection {} but product:type {}",
            c.stac_collection(),
            t.product_type()
        ),
        (Some(l), _) | (None, Some(l)) => Ok(l),
        (None, None) => {
            let id = v.get("id").and_then(Value::as_str).unwrap_or("");
            ProductLevel::from_product_id(id).with_context(|| {
                format!("{what}: no collection, no product:type, and the id names no level")
            })
        }
    }
}

/// The EPSG code and grid of one raster asset, whose pixel size must be `res`.
fn asset_grid(a: &Value, w: &str, res: Resolution) -> Result<(u32, Grid)> {
    let code = str_at(a, "/proj:code", w)?;
    let epsg: u32 = code
        .strip_prefix("EPSG:")
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{w}: proj:code {code:?} is not EPSG:<n>"))?;
    let num = |p: &str| -> Result<Vec<f64>> {
        a.get(p)
            .and_then(Value::as_array)
            .map(|xs| xs.iter().filter_map(Value::as_f64).collect::<Vec<f64>>())
            .filter(|xs: &Vec<f64>| !xs.is_empty())
            .with_context(|| format!("{w}: no {p}"))
    };
    let shape = num("proj:shape")?;
    let t = num("proj:transform")?;
    if shape.len() != 2 || t.len() < 6 || t[1] != 0.0 || t[3] != 0.0 || t[0] != -t[4] {
        anyhow::bail!("{w}: unsupported proj:shape {shape:?} / proj:transform {t:?}");
    }
    if t[0] != res.metres() as f64 {
        anyhow::bail!("{w}: pixel size {} m, expected {} m", t[0], res.metres());
    }
    let g = Grid {
        nrows: shape[0] as u64,
        ncols: shape[1] as u64,
        ulx: t[2],
        uly: t[5],
        res: t[0],
    };
    Ok((epsg, g))
}

/// L2A: a chosen asset must not be marked as a resampled copy (`sampling:upsampled` /
/// `sampling:downsampled`); assets without `sampling:*` roles pass.
fn check_original(a: &Value, w: &str) -> Result<()> {
    let roles = a.get("roles").and_then(Value::as_array);
    let resampled = roles
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|r| r.starts_with("sampling:") && *r != "sampling:original");
    match resampled {
        Some(r) => anyhow::bail!("{w}: role {r}, expected the native sampling:original file"),
        None => Ok(()),
    }
}

impl StacItem {
    /// The asset key of a band's file: L1C `B02`, L2A `B02_10m` (native resolution).
    pub fn band_asset_key(level: ProductLevel, band: &Band) -> String {
        match level {
            ProductLevel::L1C => band.name.to_string(),
            ProductLevel::L2A => l2a_file_tag(band.name, band.resolution),
        }
    }

    /// The L2A scene classification asset key: `SCL_20m`.
    pub fn scl_asset_key() -> String {
        l2a_file_tag(SCL, SCL_RESOLUTION)
    }

    /// The key of a band's file; `None` for a band the level does not have (B10 in L2A).
    pub fn band_key(&self, band: &Band) -> Option<&str> {
        self.level
            .bands()
            .iter()
            .position(|b| b.id == band.id)
            .map(|i| self.band_keys[i].as_str())
    }

    /// Parses an item of either collection; errors name the item and the missing or invalid field.
    pub fn parse(v: &Value) -> Result<StacItem> {
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .context("STAC item without an id")?
            .to_string();
        let what = format!("STAC item {id}");
        let props = v
            .get("properties")
            .with_context(|| format!("{what}: no properties"))?;
        let level = level_of(v, props, &what)?;
        let dt = str_at(props, "/datetime", &what)?;
        let sensing_ms =
            parse_iso_ms(dt).with_context(|| format!("{what}: invalid datetime {dt:?}"))?;
        let grid = str_at(props, "/grid:code", &what)?;
        let tile = grid
            .strip_prefix("MGRS-")
            .with_context(|| format!("{what}: grid:code {grid:?} is not MGRS-<tile>"))?
            .to_string();
        crate::s2::tiles::check_tile(&tile).with_context(|| what.clone())?;
        let baseline = str_at(props, "/processing:version", &what)?.to_string();
        let platform = str_at(props, "/platform", &what)?.to_string();
        let relative_orbit = props
            .get("sat:relative_orbit")
            .and_then(Value::as_u64)
            .with_context(|| format!("{what}: no sat:relative_orbit"))?
            as u32;
        let cloud_cover = props
            .get("eo:cloud_cover")
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN);
        let snow_cover = props.get("eo:snow_cover").and_then(Value::as_f64);
        let assets = v
            .get("assets")
            .with_context(|| format!("{what}: no assets"))?;
        let mut band_keys = Vec::new();
        let mut band_sizes = Vec::new();
        let mut band_scaling = Vec::new();
        let mut grids: Vec<Option<Grid>> = vec![None; 3];
        let mut epsg = None;
        for b in level.bands() {
            let key = Self::band_asset_key(level, b);
            let a = assets
                .get(&key)
                .with_context(|| format!("{what}: no asset {key}"))?;
            let w = format!("{what} asset {key}");
            band_keys.push(eodata_key(str_at(a, "/href", &w)?).with_context(|| w.clone())?);
            band_sizes.push(a.get("file:size").and_then(Value::as_u64));
            band_scaling.push(
                a.get("raster:scale")
                    .and_then(Value::as_f64)
                    .zip(a.get("raster:offset").and_then(Value::as_f64)),
            );
            if level == ProductLevel::L2A {
                check_original(a, &w)?;
            }
            let (e, g) = asset_grid(a, &w, b.resolution)?;
            if *epsg.get_or_insert(e) != e {
                anyhow::bail!("{w}: proj:code EPSG:{e} differs from the other bands");
            }
            let slot = &mut grids[b.resolution.index()];
            if slot.as_ref().is_some_and(|old| *old != g) {
                anyhow::bail!("{w}: grid differs from the other {} bands", b.resolution);
            }
            *slot = Some(g);
        }
        let epsg = epsg.context("no bands")?;
        let (scl_key, scl_size) = match level {
            ProductLevel::L1C => (None, None),
            ProductLevel::L2A => {
                let key = Self::scl_asset_key();
                let a = assets
                    .get(&key)
                    .with_context(|| format!("{what}: no asset {key}"))?;
                let w = format!("{what} asset {key}");
                check_original(a, &w)?;
                if let Some(t) = a.get("data_type").and_then(Value::as_str) {
                    if t != "uint8" {
                        anyhow::bail!("{w}: data_type {t}, expected uint8");
                    }
                }
                let (e, g) = asset_grid(a, &w, SCL_RESOLUTION)?;
                if e != epsg || grids[SCL_RESOLUTION.index()] != Some(g) {
                    anyhow::bail!("{w}: grid or proj:code differs from the {SCL_RESOLUTION} bands");
                }
                let k = eodata_key(str_at(a, "/href", &w)?).with_context(|| w.clone())?;
                (Some(k), a.get("file:size").and_then(Value::as_u64))
            }
        };
        let meta = |name: &str| -> Result<String> {
            let w = format!("{what} asset {name}");
            eodata_key(str_at(assets, &format!("/{name}/href"), &w)?).with_context(|| w.clone())
        };
        Ok(StacItem {
            product_metadata_key: meta("product_metadata")?,
            granule_metadata_key: meta("granule_metadata")?,
            level,
            product_id: id,
            sensing_ms,
            tile,
            baseline,
            platform,
            relative_orbit,
            cloud_cover,
            snow_cover,
            epsg,
            grids: Resolution::ALL
                .iter()
                .map(|r| grids[r.index()].expect("every resolution has bands"))
                .collect(),
            band_keys,
            band_sizes,
            band_scaling,
            scl_key,
            scl_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s2::bands::{band_by_name, BANDS};
    use std::path::Path;

    fn reference(path: &str) -> Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reference")
            .join(path);
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    const L2A_ID: &str = "S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440";

    fn l2a_item() -> Value {
        reference(&format!("cdse/l2a/stac-item-{L2A_ID}.json"))
    }

    fn parse_err(v: &Value) -> String {
        format!("{:#}", StacItem::parse(v).unwrap_err())
    }

    #[test]
    fn reference_l2a_item_parses() {
        let it = StacItem::parse(&l2a_item()).unwrap();
        assert_eq!(it.level, ProductLevel::L2A);
        assert_eq!(it.product_id, L2A_ID);
        assert_eq!(it.tile, "13VEK");
        assert_eq!(it.baseline, "05.10");
        assert_eq!(it.platform, "sentinel-2a");
        assert_eq!(it.relative_orbit, 27);
        assert_eq!(it.cloud_cover, 41.21);
        assert_eq!(it.snow_cover, Some(58.787221));
        assert_eq!(it.epsg, 32613);
        assert_eq!(
            crate::s2::scene::iso_ms(it.sensing_ms),
            "2022-02-17T18:34:31.024Z"
        );
        for (res, n) in [
            (Resolution::R10, 10980),
            (Resolution::R20, 5490),
            (Resolution::R60, 1830),
        ] {
            let g = it.grids[res.index()];
            assert_eq!(
                (g.nrows, g.ncols, g.ulx, g.uly, g.res),
                (n, n, 499980.0, 7000020.0, res.metres() as f64)
            );
        }
        // Reprocessed (Collection-1) products live under L2A_N0500/.
        let dir = format!("Sentinel-2/MSI/L2A_N0500/2022/02/17/{L2A_ID}.SAFE");
        let img = format!("{dir}/GRANULE/L2A_T13VEK_A034773_20220217T183428/IMG_DATA");
        assert_eq!(it.band_keys.len(), 12);
        let t = "T13VEK_20220217T183431";
        let expected = [
            "R60m/B01_60m",
            "R10m/B02_10m",
            "R10m/B03_10m",
            "R10m/B04_10m",
            "R20m/B05_20m",
            "R20m/B06_20m",
            "R20m/B07_20m",
            "R10m/B08_10m",
            "R20m/B8A_20m",
            "R60m/B09_60m",
            "R20m/B11_20m",
            "R20m/B12_20m",
        ];
        for (key, e) in it.band_keys.iter().zip(expected) {
            let (d, f) = e.split_once('/').unwrap();
            assert_eq!(*key, format!("{img}/{d}/{t}_{f}.jp2"));
        }
        assert_eq!(
            it.band_key(band_by_name("B8A").unwrap()),
            Some(format!("{img}/R20m/{t}_B8A_20m.jp2").as_str())
        );
        assert_eq!(it.band_key(band_by_name("B10").unwrap()), None);
        assert_eq!(it.band_sizes[1], Some(134936576));
        assert!(it.band_scaling.iter().all(|s| *s == Some((0.0001, -0.1))));
        assert_eq!(
            it.scl_key.as_deref(),
            Some(format!("{img}/R20m/{t}_SCL_20m.jp2").as_str())
        );
        assert_eq!(it.scl_size, Some(336193));
        assert_eq!(it.product_metadata_key, format!("{dir}/MTD_MSIL2A.xml"));
        assert_eq!(
            it.granule_metadata_key,
            format!("{dir}/GRANULE/L2A_T13VEK_A034773_20220217T183428/MTD_TL.xml")
        );
    }

    #[test]
    fn l2a_choice_is_exactly_the_items_original_sampling_data() {
        // Every data asset the item marks `sampling:original` (besides TCI, which is `visual`) is
        // one the parser takes, and no other.
        let v = l2a_item();
        let mut originals: Vec<String> = v["assets"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, a)| {
                let roles: Vec<&str> = a["roles"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                roles.contains(&"data") && roles.contains(&"sampling:original")
            })
            .map(|(k, _)| k.clone())
            .collect();
        originals.sort();
        let mut ours: Vec<String> = ProductLevel::L2A
            .bands()
            .iter()
            .map(|b| StacItem::band_asset_key(ProductLevel::L2A, b))
            .chain([StacItem::scl_asset_key()])
            .collect();
        ours.sort();
        assert_eq!(originals, ours);
        // The collection announces the same asset keys.
        let c = reference("cdse/l2a/stac-collection-sentinel-2-l2a.json");
        assert_eq!(c["id"], ProductLevel::L2A.stac_collection());
        for k in &ours {
            assert!(c["item_assets"].get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn reference_l1c_item_keeps_its_thirteen_bands() {
        let it = StacItem::parse(&reference(
            "stac-item-S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505.json",
        ))
        .unwrap();
        assert_eq!(it.level, ProductLevel::L1C);
        assert_eq!(it.band_keys.len(), 13);
        for b in &BANDS {
            assert_eq!(it.band_key(b), Some(it.band_keys[b.id].as_str()));
            assert!(it.band_keys[b.id].ends_with(&format!("_{}.jp2", b.name)));
        }
        assert_eq!((it.scl_key, it.scl_size, it.snow_cover), (None, None, None));
        assert_eq!(it.band_scaling[0], Some((0.0001, -0.1)));
    }

    #[test]
    fn broken_l2a_items_name_the_item_and_field() {
        let v = l2a_item();
        let mut bad = v.clone();
        bad["assets"]["B05_20m"]["roles"] =
            serde_json::json!(["data", "sampling:downsampled", "gsd:20m"]);
        let e = parse_err(&bad);
        assert!(
            e.contains(L2A_ID) && e.contains("B05_20m") && e.contains("sampling:downsampled"),
            "{e}"
        );

        let mut bad = v.clone();
        bad["assets"].as_object_mut().unwrap().remove("SCL_20m");
        let e = parse_err(&bad);
        assert!(e.contains(L2A_ID) && e.contains("no asset SCL_20m"), "{e}");

        let mut bad = v.clone();
        bad["assets"]["SCL_20m"]["data_type"] = "uint16".into();
        let e = parse_err(&bad);
        assert!(e.contains("SCL_20m") && e.contains("uint8"), "{e}");

        let mut bad = v.clone();
        bad["assets"]["SCL_20m"]["proj:transform"] =
            serde_json::json!([20, 0, 499960, 0, -20, 7000020]);
        let e = parse_err(&bad);
        assert!(e.contains("SCL_20m") && e.contains("differs"), "{e}");

        let mut bad = v.clone();
        bad["assets"]["B09_60m"]["href"] = "https://example.com/x.jp2".into();
        let e = parse_err(&bad);
        assert!(e.contains(L2A_ID) && e.contains("B09_60m"), "{e}");

        let mut bad = v.clone();
        bad["properties"]["product:type"] = "S2MSI1C".into();
        let e = parse_err(&bad);
        assert!(e.contains("sentinel-2-l2a") && e.contains("S2MSI1C"), "{e}");

        let mut bad = v.clone();
        bad["collection"] = "sentinel-1-grd".into();
        let e = parse_err(&bad);
        assert!(e.contains("sentinel-1-grd"), "{e}");

        // Without collection and product:type, the id tells the level.
        let mut bare = v.clone();
        bare.as_object_mut().unwrap().remove("collection");
        bare["properties"]
            .as_object_mut()
            .unwrap()
            .remove("product:type");
        assert_eq!(StacItem::parse(&bare).unwrap().level, ProductLevel::L2A);
    }

    #[test]
    fn hrefs_must_be_in_eodata() {
        assert_eq!(
            eodata_key("s3://eodata/Sentinel-2/a.jp2").unwrap(),
            "Sentinel-2/a.jp2"
        );
        assert!(eodata_key("s3://other/Sentinel-2/a.jp2").is_err());
        assert!(eodata_key("https://eodata/x").is_err());
        assert!(eodata_key("s3://eodata/").is_err());
    }
}
