//! Outputs of `datacube bench`: the JSON report, a markdown table with the ratios that matter, and
//! a PNG bar chart (log scale) of the mean durations.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::run::{BenchReport, Target, TargetResult};
use datacube::s2::product::ProductLevel;

fn find(r: &BenchReport, t: Target) -> Option<&TargetResult> {
    r.targets.iter().find(|x| x.target == t)
}

/// `a ÷ b` of mean durations, when both targets ran.
pub fn ratio(r: &BenchReport, a: Target, b: Target) -> Option<f64> {
    Some(find(r, a)?.mean_durations / find(r, b)?.mean_durations)
}

/// `10m 1.23, 20m 4.56, 60m 7.89`.
fn fmt_res(m: &std::collections::BTreeMap<String, f64>, digits: usize) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn markdown(r: &BenchReport) -> String {
    let shapes = r
        .band_group_shapes
        .iter()
        .map(|(k, v)| format!("{k} {v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let level = if r.level == ProductLevel::L1C {
        String::new()
    } else {
        format!(
            "{}: a patch is `data` of the three groups and `10m/scl`. ",
            r.level.stac_collection()
        )
    };
    let mut s = format!(
        "{level}Tile {} {}: {} scenes, {} patches of {} m (seed {}), {} counted repeats after one \
         warm-up; shapes {shapes}. {}; {} threads.\n\n",
        r.tile,
        r.year,
        r.scenes,
        r.patches.len(),
        r.patch_size_m,
        r.seed,
        r.repeats,
        r.machine,
        r.threads
    );
    s.push_str(&format!(
        "Layout {}. A Zarr reader decodes per patch (MB): {}; decoded ÷ delivered along y, x: {}.\n\n",
        r.layout,
        fmt_res(&r.decoded_mb_per_patch, 1),
        fmt_res(&r.decode_ratio_yx, 2),
    ));
    if !r.targets.is_empty() {
        s.push_str("| target | mean (s, all patches) | ± std | stderr | per patch (s) | ÷ store | MiB read | files | projected on CDSE |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        let store = find(r, Target::Store).map(|t| t.mean_durations);
        for t in &r.targets {
            let vs = store
                .map(|m| format!("{:.2}", t.mean_durations / m))
                .unwrap_or_else(|| "–".into());
            let cdse = t
                .cold
                .as_ref()
                .map(|c| {
                    format!(
                        "{:.0} s ({:.2} GB, {} requests)",
                        c.projected_cdse_seconds,
                        c.source_bytes as f64 / 1e9,
                        c.source_requests
                    )
                })
                .unwrap_or_else(|| "–".into());
            s.push_str(&format!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1} | {} | {} |\n",
                t.target.name(),
                t.mean_durations,
                t.std_durations,
                t.stderr_durations,
                t.mean_patch_seconds,
                vs,
                t.bytes_read as f64 / (1 << 20) as f64,
                t.files_touched,
                cdse
            ));
        }
        s.push('\n');
    }
    for (a, b, what) in [
        (Target::MountWarm, Target::Store, "mount-warm ÷ store"),
        (
            Target::MountCold,
            Target::Safe,
            "mount-cold ÷ safe (decode floor)",
        ),
        (
            Target::Xarray,
            Target::Store,
            "xarray ÷ store (our reader's speedup)",
        ),
        (Target::Cog, Target::Store, "cog ÷ store"),
        (
            Target::XarrayMount,
            Target::Xarray,
            "xarray through the mount ÷ on the store",
        ),
    ] {
        if let Some(x) = ratio(r, a, b) {
            s.push_str(&format!("- {what}: **{x:.2}**\n"));
        }
    }
    for t in &r.targets {
        for n in &t.notes {
            if !n.is_empty() {
                s.push_str(&format!("- {}: {n}\n", t.target.name()));
            }
        }
    }
    s.push_str(&format!(
        "- all targets returned identical arrays: {}\n",
        r.checksums_agree
    ));
    if let Some(l) = &r.loader {
        s.push('\n');
        s.push_str(&super::loader::markdown(l));
    }
    s
}

/// Loads a TrueType font for the chart's text (plotters draws no text without one).
fn register_font() -> Result<()> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    let path = candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .context("no DejaVuSans.ttf for the chart (Debian: fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{path}: not a usable font"))?;
    Ok(())
}

/// A bar chart of mean seconds per target (log scale, ± std whiskers).
pub fn plot(r: &BenchReport, path: &Path) -> Result<()> {
    register_font()?;
    let ts = &r.targets;
    let lo = ts
        .iter()
        .map(|t| (t.mean_durations - t.std_durations).max(t.mean_durations / 2.0))
        .fold(f64::INFINITY, f64::min)
        .max(1e-4)
        / 2.0;
    let hi = ts
        .iter()
        .map(|t| t.mean_durations + t.std_durations)
        .fold(0.0, f64::max)
        * 2.0;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let what = match r.level {
        ProductLevel::L1C => "all 13 bands",
        ProductLevel::L2A => "L2A: 12 bands + 10 m SCL",
    };
    let title = format!(
        "{} {}: {} patches × {} scenes, {what} (mean of {} repeats)",
        r.tile,
        r.year,
        r.patches.len(),
        r.scenes,
        r.repeats
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..ts.len().saturating_sub(1)).into_segmented(),
            (lo..hi).log_scale(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(ts.len() + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => ts
                .get(*i)
                .map(|t| t.target.name().to_string())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_desc("seconds (log scale)")
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else if *v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        })
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let colour = |t: Target| match t {
        Target::MountCold | Target::MountWarm => RGBColor(31, 119, 180),
        Target::Store => RGBColor(44, 160, 44),
        Target::Xarray | Target::XarrayMount => RGBColor(148, 103, 189),
        Target::Safe => RGBColor(214, 39, 40),
        Target::Cog => RGBColor(255, 127, 14),
        Target::Loader => RGBColor(127, 127, 127),
    };
    chart
        .draw_series(ts.iter().enumerate().map(|(i, t)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), lo),
                    (SegmentValue::Exact(i + 1), t.mean_durations),
                ],
                colour(t.target).filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .draw_series(ts.iter().enumerate().map(|(i, t)| {
            Text::new(
                format!("{:.3} s", t.mean_durations),
                (SegmentValue::Exact(i), t.mean_durations * 1.15),
                ("sans-serif", 14).into_font(),
            )
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Writes `bench.json`, `bench.md` and `bench.png` (when a target other than the loader ran)
/// into `out`.
pub fn write_all(r: &BenchReport, out: &Path) -> Result<()> {
    std::fs::write(out.join("bench.json"), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(out.join("bench.md"), markdown(r))?;
    if r.targets.is_empty() {
        return Ok(());
    }
    plot(r, &out.join("bench.png"))
}
