//! The Zarr v3 documents of an S1 tile-year (and the root and tile groups of an S1 store):
//!
//! ```text
//! zarr.json                        group (layout version, collection sentinel-1-sig0)
//! TILE/zarr.json                   group (Equi7 tile, CRS)
//! TILE/YEAR/zarr.json              group (year, days, slices)
//! TILE/YEAR/20m/zarr.json          group + consolidated metadata
//! TILE/YEAR/20m/{VV,VH}            int16 [time, y, x], dB×10, fill −9999
//! TILE/YEAR/20m/sensing_date       int64 [time, y, x], seconds since 2014-10-01, fill −1
//! TILE/YEAR/20m/absolute_orbit_number  int32 [time, y, x], fill 0
//! TILE/YEAR/20m/relative_orbit_number  int16 [time, y, x], fill 0
//! TILE/YEAR/20m/{time,x,y,spatial_ref}
//! ```
//!
//! The five [time, y, x] arrays are stored in shards of [30, 2500, 2500] (one object per shard,
//! Zarr v3 `sharding_indexed`, index at the end with a CRC32C) holding inner chunks of
//! [30, 500, 500]: 36 objects per array and time chunk instead of 900, while a reader of a patch
//! still decodes only the inner chunks it needs.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::catalog::S1Catalog;
use super::grid::{self, Equi7Tile};
use super::{GROUP, INNER_PX, SHARD_PX, TILE_PX, TIME_CHUNK, VARIABLES};
use crate::collection::variable::Variable;
use crate::s2::layout::{coord_f64, group, json_file, put_json, small_array, LAYOUT_VERSION};

/// The inner chunk codecs of every [time, y, x] array.
fn inner_codecs(v: &Variable) -> Value {
    let typesize = match v.dtype {
        "int16" => 2,
        "int32" => 4,
        _ => 8,
    };
    json!([
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 1, "shuffle": "shuffle", "typesize": typesize, "blocksize": 0}}
    ])
}

pub use crate::shard::index_codecs;

/// Metadata of one of the five sharded arrays, for a time axis of `days` entries.
pub fn array_metadata(v: &Variable, days: u64) -> Value {
    let mut attrs = json!({
        "grid_mapping": "spatial_ref",
        "coordinates": "spatial_ref",
    });
    match v.name {
        "VV" | "VH" => {
            attrs["long_name"] =
                json!(format!("sigma nought backscatter, {} polarisation", v.name));
            attrs["standard_name"] =
                json!("surface_backwards_scattering_coefficient_of_radar_wave");
            attrs["units"] = json!("dB");
            attrs["scale_factor"] = json!(0.1);
            attrs["add_offset"] = json!(0.0);
            attrs["_FillValue"] = json!(v.fill);
            attrs["description"] = json!("dB x 10 as in the source GeoTIFFs (their band SCALE is 0.1; the STAC raster:bands scale 10 is the inverse); same-day slices merged, earliest valid value wins");
        }
        "sensing_date" => {
            attrs["long_name"] = json!("sensing start of the slice each value came from");
            attrs["units"] = json!("seconds since 2014-10-01T00:00:00");
            attrs["calendar"] = json!("proleptic_gregorian");
            attrs["_FillValue"] = json!(v.fill);
        }
        _ => {
            attrs["long_name"] = json!(format!(
                "{} of the slice each value came from",
                v.name.replace('_', " ")
            ));
            attrs["_FillValue"] = json!(v.fill);
        }
    }
    json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": [days, TILE_PX, TILE_PX],
        "data_type": v.dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [TIME_CHUNK, SHARD_PX, SHARD_PX]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": v.fill,
        "codecs": [{
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [TIME_CHUNK, INNER_PX, INNER_PX],
                "codecs": inner_codecs(v),
                "index_codecs": index_codecs(),
                "index_location": "end"
            }
        }],
        "attributes": attrs,
        "dimension_names": ["time", "y", "x"]
    })
}

/// Metadata of an inner chunk as a stand-alone array (what [`super::shard`] encodes inner
/// chunks with).
pub fn inner_chunk_metadata(v: &Variable) -> Value {
    json!({
        "zarr_format": 3, "node_type": "array",
        "shape": [TIME_CHUNK, INNER_PX, INNER_PX], "data_type": v.dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [TIME_CHUNK, INNER_PX, INNER_PX]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": v.fill, "codecs": inner_codecs(v), "attributes": {}
    })
}

/// The root group of an S1 store.
pub fn root_group_file() -> Vec<u8> {
    json_file(&group(json!({
        "datacube": {"layout_version": LAYOUT_VERSION, "collection": super::NAME},
        "description": "Sentinel-1 sigma0 datacube (EODC SENTINEL1_SIG0_20M): TILE/YEAR/20m groups, VV and VH[time, y, x], one time entry per UTC day",
    })))
}

/// A tile group of an S1 store.
pub fn tile_group_file(tile: Equi7Tile) -> Vec<u8> {
    json_file(&group(json!({
        "tile": tile.to_string(),
        "grid": "Equi7Grid EU T3",
        "equi7_tile_id": tile.stac_id(),
        "crs_wkt": grid::EU_WKT,
    })))
}

/// Every generated document of a tile-year: (key, bytes), chunk files of the coordinates included.
pub fn build(catalog: &S1Catalog) -> Result<BTreeMap<String, Vec<u8>>> {
    let tile: Equi7Tile = catalog.tile.parse().map_err(anyhow::Error::msg)?;
    let mut files = BTreeMap::new();
    files.insert("zarr.json".to_string(), root_group_file());
    files.insert(format!("{tile}/zarr.json"), tile_group_file(tile));
    put_json(
        &mut files,
        &format!("{tile}/{}/zarr.json", catalog.year),
        &group(json!({
            "year": catalog.year,
            "day_count": catalog.days.len(),
            "slice_count": catalog.slice_count(),
            "catalog_time": catalog.created,
            "resolutions": [GROUP],
        })),
    );
    let prefix = format!("{tile}/{}/{GROUP}", catalog.year);
    let days = catalog.days.len() as u64;
    let mut arrays: BTreeMap<String, crate::s2::layout::ArrayDoc> = BTreeMap::new();
    for v in &VARIABLES {
        arrays.insert(v.name.to_string(), (array_metadata(v, days), None));
    }
    let time: Vec<i32> = catalog.days.iter().map(|d| d.day).collect();
    arrays.insert(
        "time".into(),
        small_array(
            &time,
            &[days],
            &["time"],
            "int32",
            json!({"standard_name": "time", "long_name": "UTC day of acquisition",
                   "units": "days since 2014-10-01", "calendar": "proleptic_gregorian"}),
        )?,
    );
    let counts: Vec<i16> = catalog.days.iter().map(|d| d.slices.len() as i16).collect();
    arrays.insert(
        "slice_count".into(),
        small_array(
            &counts,
            &[days],
            &["time"],
            "int16",
            json!({"long_name": "number of slices (STAC items) merged into the day"}),
        )?,
    );
    let gt = tile.geotransform();
    let xs: Vec<f64> = (0..TILE_PX)
        .map(|i| gt[0] + (i as f64 + 0.5) * gt[1])
        .collect();
    let ys: Vec<f64> = (0..TILE_PX)
        .map(|j| gt[3] + (j as f64 + 0.5) * gt[5])
        .collect();
    let axis = |n: &str| json!({"standard_name": format!("projection_{n}_coordinate"), "long_name": format!("{n} coordinate of projection (pixel centre)"), "units": "m"});
    arrays.insert("x".into(), coord_f64(&xs, "x", axis("x"))?);
    arrays.insert("y".into(), coord_f64(&ys, "y", axis("y"))?);
    arrays.insert("spatial_ref".into(), (spatial_ref(gt), None));

    let mut consolidated = Map::new();
    for (name, (meta, chunk)) in &arrays {
        put_json(&mut files, &format!("{prefix}/{name}/zarr.json"), meta);
        if let Some((key, bytes)) = chunk {
            files.insert(format!("{prefix}/{name}/{key}"), bytes.clone());
        }
        consolidated.insert(name.clone(), meta.clone());
    }
    let mut g = group(json!({
        "resolution": GROUP,
        "resolution_m": 20,
        "polarisations": super::POLARISATIONS,
        "description": format!("Sentinel-1 sigma0 backscatter at 20 m, Equi7 tile {tile}, {}", catalog.year),
        "merge_rule": "same-day slices: per polarisation the earliest-sensed valid value wins; sensing_date and orbit numbers are those of the slice the VV value (else the VH value) came from",
    }));
    g["consolidated_metadata"] =
        json!({"kind": "inline", "must_understand": false, "metadata": consolidated});
    put_json(&mut files, &format!("{prefix}/zarr.json"), &g);
    Ok(files)
}

fn spatial_ref(gt: [f64; 6]) -> Value {
    json!({
        "zarr_format": 3, "node_type": "array", "shape": [], "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": []}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {
            "crs_wkt": grid::EU_WKT,
            "spatial_ref": grid::EU_WKT,
            "GeoTransform": gt.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(" "),
            "grid_mapping_name": "azimuthal_equidistant",
            "latitude_of_projection_origin": grid::LAT_CENTER,
            "longitude_of_projection_origin": grid::LON_CENTER,
            "false_easting": grid::FALSE_EASTING,
            "false_northing": grid::FALSE_NORTHING,
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563,
        },
        "dimension_names": []
    })
}

/// Key of a shard of one of the five arrays (`TILE/YEAR/20m/VV/c/T/Y/X`).
pub fn shard_key(tile: &str, year: i32, array: &str, t: u64, y: u64, x: u64) -> String {
    format!("{tile}/{year}/{GROUP}/{array}/c/{t}/{y}/{x}")
}
