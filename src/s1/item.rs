//! EODC STAC items of `SENTINEL1_SIG0_20M` → [`Slice`]s. One item is one GRD slice clipped to one
//! Equi7 tile; its assets `VV` and `VH` are GeoTIFFs (int16 dB×10, nodata −9999).
//!
//! Facts relied on (from real items): `datetime` has second precision and no start/end; the tile is
//! `properties.Equi7_TileID` (`EU020M_E048N015T3`); `sat:relative_orbit` is given, the absolute orbit
//! is not (only the GeoTIFF tag `abs_orbit_number` has it); `parent` is unreliable and ignored; the
//! id ends with the data version and the platform (`…_V1M1R2_S1AIWGRDH`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::grid::Equi7Tile;

/// One GRD slice clipped to one tile: the unit the same-day merge orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// STAC item id.
    pub id: String,
    /// Equi7 tile name (`E048N015T3`).
    pub tile: String,
    /// Item `datetime` (sensing start of the slice), Unix seconds.
    pub sensing_s: i64,
    pub relative_orbit: u32,
    /// `ascending` or `descending`.
    pub orbit_state: String,
    /// `S1A`, `S1B`, …
    pub platform: String,
    /// Data version (`V1M1R2`); a newer version of the same slice replaces an older one.
    pub version: String,
    /// Asset hrefs of `VV` and `VH` (index = position in [`super::POLARISATIONS`]).
    pub assets: [String; 2],
}

impl Slice {
    /// What identifies a slice across data versions: tile, sensing time and relative orbit.
    pub fn identity(&self) -> (String, i64, u32) {
        (self.tile.clone(), self.sensing_s, self.relative_orbit)
    }

    pub fn day(&self) -> i32 {
        super::day_of(self.sensing_s)
    }
}

/// Parses one STAC item. Every error names the item.
pub fn parse_item(item: &Value) -> Result<Slice> {
    let id = item["id"]
        .as_str()
        .context("STAC item without an id")?
        .to_string();
    parse_fields(item, &id).with_context(|| format!("STAC item {id}"))
}

fn parse_fields(item: &Value, id: &str) -> Result<Slice> {
    let p = &item["properties"];
    let tile_id = p["Equi7_TileID"]
        .as_str()
        .context("no properties.Equi7_TileID")?;
    let tile = Equi7Tile::from_stac_id(tile_id).map_err(anyhow::Error::msg)?;
    let dt = p["datetime"].as_str().context("no properties.datetime")?;
    let sensing_s = chrono::DateTime::parse_from_rfc3339(dt)
        .with_context(|| format!("datetime {dt:?} is not RFC 3339"))?
        .timestamp();
    let relative_orbit = p["sat:relative_orbit"]
        .as_u64()
        .context("no properties.sat:relative_orbit")? as u32;
    let orbit_state = p["sat:orbit_state"].as_str().unwrap_or("").to_string();
    if let Some(t) = p["proj:transform"].as_array() {
        let t: Vec<f64> = t.iter().filter_map(Value::as_f64).collect();
        if t.len() < 6 || t[..6] != tile.proj_transform() {
            bail!(
                "proj:transform {t:?} is not the grid of tile {tile} ({:?})",
                tile.proj_transform()
            );
        }
    }
    if let Some(s) = p["proj:shape"].as_array() {
        let s: Vec<u64> = s.iter().filter_map(Value::as_u64).collect();
        if s != [tile.size(), tile.size()] {
            bail!("proj:shape {s:?}, expected [{0}, {0}]", tile.size());
        }
    }
    let fields: Vec<&str> = id.split('_').collect();
    let version = fields
        .iter()
        .find(|f| f.len() == 6 && f.starts_with('V') && f.as_bytes()[2] == b'M')
        .map(|v| v.to_string())
        .unwrap_or_default();
    let platform = fields
        .last()
        .filter(|f| f.starts_with("S1"))
        .map(|f| f[..3.min(f.len())].to_string())
        .unwrap_or_else(|| p["platform"].as_str().unwrap_or("").to_string());
    let mut assets: [String; 2] = Default::default();
    for (i, pol) in super::POLARISATIONS.iter().enumerate() {
        assets[i] = item["assets"][pol]["href"]
            .as_str()
            .with_context(|| format!("no asset {pol}"))?
            .to_string();
    }
    Ok(Slice {
        id: id.to_string(),
        tile: tile.to_string(),
        sensing_s,
        relative_orbit,
        orbit_state,
        platform,
        version,
        assets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = include_str!("../../tests/data/reference/eodc/stac-item-SIG0_20240120T165146_A146_E048N015T3_EU020M_V1M1R2_S1AIWGRDH.json");

    #[test]
    fn a_real_item() {
        let v: Value = serde_json::from_str(REAL).unwrap();
        let s = parse_item(&v).unwrap();
        assert_eq!(s.tile, "E048N015T3");
        assert_eq!(s.sensing_s, 1_705_769_506); // 2024-01-20T16:51:46Z
        assert_eq!(s.relative_orbit, 146);
        assert_eq!(s.orbit_state, "ascending");
        assert_eq!(s.platform, "S1A");
        assert_eq!(s.version, "V1M1R2");
        assert!(s.assets[1].ends_with("/E048N015T3/SIG0_20240120T165146__VH_A146_E048N015T3_EU020M_V1M1R2_S1AIWGRDH_TUWIEN.tif"));
        assert!(s.assets[0].contains("__VV_A146_"));
    }

    #[test]
    fn errors_name_the_item() {
        let mut v: Value = serde_json::from_str(REAL).unwrap();
        v["properties"]
            .as_object_mut()
            .unwrap()
            .remove("Equi7_TileID");
        let e = format!("{:#}", parse_item(&v).unwrap_err());
        assert!(
            e.contains("SIG0_20240120T165146_A146_E048N015T3_EU020M_V1M1R2_S1AIWGRDH"),
            "{e}"
        );
        assert!(e.contains("Equi7_TileID"), "{e}");
        let mut v: Value = serde_json::from_str(REAL).unwrap();
        v["properties"]["proj:transform"][2] = 4_500_000.into();
        let e = format!("{:#}", parse_item(&v).unwrap_err());
        assert!(e.contains("not the grid of tile E048N015T3"), "{e}");
    }
}
