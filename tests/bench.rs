//! `datacube convert cog` and `datacube bench` on the mini fixture: the COGs against GDAL's view of
//! them and the formula; the bench's JSON, shapes, agreement of every target, and its outputs.

mod common;

use common::*;
use datacube::s2::bands::Resolution;
use datacube_tools::convert::{cog_path, read_cog_window};
use gdal::Metadata;

/// Runs `datacube ARGS`, asserts it succeeded, and answers its stdout and stderr.
fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "datacube {args:?}:\n{text}");
    text
}

#[test]
fn convert_cog_then_bench_every_target() {
    let f = fixture();
    let store = intaken_store();
    let work = work_dir("bench");
    let cogs = work.join("cogs");
    let source = format!("safe:{}", f.archive.display());
    let year = YEAR.to_string();
    let convert = || {
        run(&[
            "convert",
            "cog",
            "--source",
            &source,
            "--out",
            cogs.to_str().unwrap(),
            "--tile",
            "35VLH",
            "--year",
            &year,
        ])
    };
    let out = convert();
    assert!(
        out.contains(&format!("{} COGs written", SCENES * 3)),
        "{out}"
    );
    // Idempotent: a rerun writes nothing.
    let out = convert();
    assert!(
        out.contains("0 COGs written") && out.contains(&format!("{} already present", SCENES * 3)),
        "{out}"
    );

    // The COGs, as GDAL sees them, and their values against the formula.
    for res in Resolution::ALL {
        for t in [0usize, 2, SCENES - 1] {
            let p = f.kept()[t];
            let path = cog_path(&cogs, "35VLH", YEAR, res, &p.product_id);
            let ds = gdal::Dataset::open(&path).unwrap();
            assert_eq!(
                ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
                Some("COG")
            );
            assert_eq!(
                ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE")
                    .as_deref(),
                Some("DEFLATE")
            );
            assert_eq!(ds.raster_count(), res.bands().len());
            assert_eq!(
                ds.spatial_ref().unwrap().auth_code().unwrap(),
                f.spec.epsg as i32
            );
            let gt = ds.geo_transform().unwrap();
            assert_eq!(
                (gt[0], gt[1], gt[3], gt[5]),
                (
                    f.spec.ulx,
                    res.metres() as f64,
                    f.spec.uly,
                    -(res.metres() as f64)
                )
            );
            for (i, band) in res.bands().iter().enumerate() {
                let b = ds.rasterband(i + 1).unwrap();
                assert_eq!(b.description().unwrap(), band.name);
                assert_eq!(
                    b.metadata_item("WAVELENGTH", "").unwrap(),
                    band.wavelength_nm.to_string()
                );
                assert_eq!(b.no_data_value(), Some(0.0));
                // Overviews down to one block; the mini 60 m image (183 px) fits in one already.
                if res != Resolution::R60 {
                    assert_eq!(b.block_size(), (512, 512));
                    assert!(
                        b.overview_count().unwrap() >= 1,
                        "{} has no overviews",
                        path.display()
                    );
                }
            }
            let n = 40;
            let (x0, y0) = (res.space_chunk() as usize - 7, 3);
            let v = read_cog_window(&path, x0, y0, n).unwrap();
            for bi in 0..res.bands().len() {
                for r in 0..n {
                    for c in 0..n {
                        assert_eq!(
                            v[(bi * n + r) * n + c],
                            expected(f, res, t, bi, (y0 + r) as u64, (x0 + c) as u64),
                            "{} band {bi} ({},{})",
                            path.display(),
                            y0 + r,
                            x0 + c
                        );
                    }
                }
            }
        }
    }

    // The benchmark, every target, one patch of 1.2 km (each target reads it twice: a warm-up
    // and the counted repeat; a second patch would only repeat the same reads elsewhere).
    let results = work.join("results");
    let python = python();
    let out = run(&[
        "bench",
        "--tile",
        "35VLH",
        "--year",
        &year,
        "--patches",
        "1",
        // Small patches: every target and field is exercised at a fraction of the decoding
        // (what the numbers are is the benchmark's business, not this test's).
        "--patch-size",
        "1200",
        "--repeats",
        "1",
        "--targets",
        "mount-cold,mount-warm,store,safe,cog,xarray",
        "--source",
        &source,
        "--store",
        store.to_str().unwrap(),
        "--cog",
        cogs.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
        "--python",
        python.to_str().unwrap(),
        "--cache-size",
        "512MiB",
    ]);
    assert!(out.contains("mount-warm ÷ store"), "{out}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("bench.json")).unwrap()).unwrap();
    assert_eq!(r["checksums_agree"], true, "{r}");
    assert_eq!(r["patches"].as_array().unwrap().len(), 1);
    let shapes = serde_json::json!({
        "10m": [SCENES, 4, 120, 120], "20m": [SCENES, 6, 60, 60], "60m": [SCENES, 3, 20, 20]
    });
    let targets = r["targets"].as_array().unwrap();
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["mount-cold", "mount-warm", "store", "safe", "cog", "xarray"]
    );
    for t in targets {
        assert_eq!(t["band_group_shapes"], shapes, "{t}");
        let d = t["durations"].as_array().unwrap();
        assert_eq!(d.len(), 1, "{t}");
        assert!(d[0].as_f64().unwrap() > 0.0);
        for k in [
            "mean_durations",
            "std_durations",
            "stderr_durations",
            "mean_patch_seconds",
        ] {
            assert!(t[k].as_f64().is_some(), "{k} in {t}");
        }
        assert!(t["bytes_read"].as_u64().unwrap() > 0, "{t}");
        assert!(t["files_touched"].as_u64().unwrap() > 0, "{t}");
    }
    let cold = &targets[0];
    assert!(
        cold["chunks_materialized"].as_f64().unwrap() > 0.0,
        "{cold}"
    );
    assert!(
        cold["cold"]["source_requests"].as_u64().unwrap() == SCENES as u64 * 13,
        "{cold}"
    );
    assert!(cold["cold"]["projected_cdse_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(
        targets[1]["chunks_materialized"].as_f64().unwrap(),
        0.0,
        "warm computes nothing"
    );
    let md = std::fs::read_to_string(results.join("bench.md")).unwrap();
    assert!(
        md.contains("| mount-cold |") && md.contains("cog ÷ store"),
        "{md}"
    );
    let png = std::fs::read(results.join("bench.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
}

/// The loader target on the mini fixture: worker processes read through a warm mount and from
/// the store, and every worker's arrays equal the store's (correctness only; no timing asserted).
#[test]
fn loader_workers_read_the_stores_values() {
    let f = fixture();
    let store = intaken_store();
    let results = work_dir("bench-loader").join("results");
    let (year, source) = (YEAR.to_string(), format!("safe:{}", f.archive.display()));
    let text = run(&[
        "bench",
        "--tile",
        "35VLH",
        "--year",
        &year,
        "--source",
        &source,
        "--store",
        store.to_str().unwrap(),
        "--targets",
        "loader",
        "--workers",
        "1,3",
        "--patches",
        "2",
        "--patch-size",
        "1200",
        "--repeats",
        "1",
        "--no-progress",
        "--cache-size",
        "256MiB",
        "--out",
        results.to_str().unwrap(),
    ]);
    assert!(text.contains("| workers | patches/s mount |"), "{text}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("bench.json")).unwrap()).unwrap();
    assert_eq!(r["checksums_agree"], true, "{r}");
    let rows = r["loader"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{r}");
    for (row, n) in rows.iter().zip([1u64, 3]) {
        assert_eq!(row["workers"], n, "{row}");
        assert_eq!(row["patches"], 2 * n, "{row}");
        assert_eq!(row["checksums_agree"], true, "{row}");
        for k in ["mount_patches_per_second", "store_patches_per_second"] {
            assert!(row[k].as_f64().unwrap() > 0.0, "{k} in {row}");
        }
        assert!(row["daemon_peak_rss_bytes"].as_u64().unwrap() > 0, "{row}");
        assert!(row["daemon_rss_end_bytes"].as_u64().unwrap() > 0, "{row}");
    }
}
