"""The summary table of scripts/bench-layouts: one row per layout, from the JSON reports of
`datacube bench-intake`, `datacube bench` and `datacube info` in WORK_DIR.
Usage: layouts_table.py WORK_DIR LAYOUT..."""
import json
import sys
from pathlib import Path


def load(p):
    return json.loads(Path(p).read_text())


def main():
    w, layouts = Path(sys.argv[1]), sys.argv[2:]
    floor = None
    rows = []
    for lay in layouts:
        n = lay.replace(":", "-").replace("/", "-")
        intake, bench, info = load(w / f"intake-{n}.json"), load(w / f"bench-{n}/bench.json"), load(w / f"info-{n}.json")
        floor = floor or intake["floor_seconds"]
        t = {x["target"]: x for x in bench["targets"]}
        patches = len(bench["patches"])
        proj = info["summary"]["projection"]
        per_patch = lambda k: t[k]["mean_patch_seconds"]
        mb = lambda k: t[k]["bytes_read"] / patches / 1e6
        rows.append([
            lay,
            f'{intake["store_objects"]}',
            f'{proj["data_objects_per_tile_year"] + proj["other_objects_per_tile_year"]}',
            f'{proj["objects"]:,} ({100 * proj["objects"] / proj["object_limit"]:.0f} %)',
            " / ".join(f'{bench["decode_ratio_yx"][r]:.2f}' for r in ("10m", "20m", "60m")),
            f'{sum(bench["decoded_mb_per_patch"].values()):.0f}',
            f'{mb("store"):.1f}',
            f'{per_patch("store"):.3f}',
            f'{per_patch("mount-warm"):.3f}',
            f'{per_patch("xarray"):.3f}',
            f'{per_patch("xarray-mount"):.3f}',
            f'{per_patch("mount-cold"):.2f}',
            f'{intake["intake_seconds"]:.0f} ({intake["intake_seconds"] / floor:.2f}×)',
            f'{intake["store_bytes"] / 1e9:.2f}',
            str(bench["checksums_agree"]).lower(),
        ])
    print(f"{bench['scenes']} scenes of 35VLH 2024, {patches} patches of {bench['patch_size_m']} m "
          f"(seed {bench['seed']}), {bench['repeats']} counted repeats; {bench['machine']}; {bench['threads']} threads. "
          f"Decode floor of the intake (every band file decoded once): {floor:.0f} s.\n")
    head = ["layout", "objects written", "objects per tile-year (192 scenes)", "Finland year (77 tiles)",
            "decoded ÷ delivered (y×x) 10/20/60 m", "MB decoded per patch", "MB read per patch (zarrs, store)",
            "warm patch: zarrs on store (s)", "zarrs through mount (s)", "xarray on store (s)",
            "xarray through mount (s)", "cold patch through mount (s)", "intake s (÷ floor)", "store GB", "agree"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


main()
