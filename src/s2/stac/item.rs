//! A CDSE STAC v1 `sentinel-2-l1c` item, reduced to what the catalog needs: product, sensing time,
//! tile, baseline, orbit, the band files' keys in the `eodata` bucket with their grids, and the two
//! metadata files. (The per-band radiometric offset comes from the product's `MTD_MSIL1C.xml`, not
//! from `raster:offset`, which is a per-collection constant.)
//!
//! Groundwork for the CDSE source: parsed the same way from the real reference item and from the
//! fixture's items, so the emulator and the real service feed one code path.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::s2::bands::{Resolution, BANDS};
use crate::s2::scene::{parse_iso_ms, Grid};

/// The bucket CDSE serves the archive from.
pub const EODATA: &str = "eodata";

#[derive(Debug, Clone, PartialEq)]
pub struct StacItem {
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
    pub epsg: u32,
    /// Per resolution (`Resolution::index`), from the bands' `proj:shape` / `proj:transform`.
    pub grids: Vec<Grid>,
    /// Band file keys in the `eodata` bucket, by MTD band id (B01..B12, B8A order of `BANDS`).
    pub band_keys: Vec<String>,
    /// `file:size` of each band file when the item gives it (checked after download).
    pub band_sizes: Vec<Option<u64>>,
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

impl StacItem {
    /// Parses an item; errors name the item and the missing or invalid field.
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
        let assets = v
            .get("assets")
            .with_context(|| format!("{what}: no assets"))?;
        let mut band_keys = Vec::new();
        let mut band_sizes = Vec::new();
        let mut grids: Vec<Option<Grid>> = vec![None; 3];
        let mut epsg = None;
        for b in &BANDS {
            let a = assets
                .get(b.name)
                .with_context(|| format!("{what}: no asset {}", b.name))?;
            let w = format!("{what} asset {}", b.name);
            band_keys.push(eodata_key(str_at(a, "/href", &w)?).with_context(|| w.clone())?);
            band_sizes.push(a.get("file:size").and_then(Value::as_u64));
            let code = str_at(a, "/proj:code", &w)?;
            let e: u32 = code
                .strip_prefix("EPSG:")
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("{w}: proj:code {code:?} is not EPSG:<n>"))?;
            if *epsg.get_or_insert(e) != e {
                anyhow::bail!("{w}: proj:code {code} differs from the other bands");
            }
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
            if t[0] != b.resolution.metres() as f64 {
                anyhow::bail!(
                    "{w}: pixel size {} m, expected {} m",
                    t[0],
                    b.resolution.metres()
                );
            }
            let g = Grid {
                nrows: shape[0] as u64,
                ncols: shape[1] as u64,
                ulx: t[2],
                uly: t[5],
                res: t[0],
            };
            let slot = &mut grids[b.resolution.index()];
            if slot.as_ref().is_some_and(|old| *old != g) {
                anyhow::bail!("{w}: grid differs from the other {} bands", b.resolution);
            }
            *slot = Some(g);
        }
        let meta = |name: &str| -> Result<String> {
            let w = format!("{what} asset {name}");
            eodata_key(str_at(assets, &format!("/{name}/href"), &w)?).with_context(|| w.clone())
        };
        Ok(StacItem {
            product_metadata_key: meta("product_metadata")?,
            granule_metadata_key: meta("granule_metadata")?,
            product_id: id,
            sensing_ms,
            tile,
            baseline,
            platform,
            relative_orbit,
            cloud_cover,
            epsg: epsg.context("no bands")?,
            grids: Resolution::ALL
                .iter()
                .map(|r| grids[r.index()].expect("every resolution has bands"))
                .collect(),
            band_keys,
            band_sizes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
