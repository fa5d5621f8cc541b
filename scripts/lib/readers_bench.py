"""Reader settings, warm, through a mount and on the store it serves (scripts/bench-readers): the
same random patch time series (`data` of the three groups and, for L2A, `10m/scl`; all times) read
by each Python reader setting, on the mount and on the store interleaved patch by patch (which
side goes first alternates), one warm-up pass of each not counted. Every pass of every reader must
return the same values.

Usage: python readers_bench.py MOUNT STORE TILE YEAR [--patches N] [--size M] [--repeats R]
           [--seed S] [--readers a,b,...]
Prints a markdown table (seconds per pass, mount ÷ store) and writes JSON to --json when given.
"""
import argparse
import json
import os
import random
import resource
import statistics
import sys
import time

import numpy as np

MASK = (1 << 64) - 1


def checksum(a):
    v = np.ascontiguousarray(a).ravel().astype(np.uint64)
    w = (np.arange(v.size, dtype=np.uint64) % np.uint64(65521)) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int((v * w).sum(dtype=np.uint64))


def arrays_of(base):
    """[(group, name, metres)] of a patch: data of the groups, and 10m/scl where there is one."""
    out = [("10m", "data", 10), ("20m", "data", 20), ("60m", "data", 60)]
    if os.path.exists(f"{base}/10m/scl/zarr.json"):
        out.append(("10m", "scl", 10))
    return out


def window(a, p, m):
    r, c, n = p["y_m"] // m, p["x_m"] // m, p["size_m"] // m
    if a.ndim == 4:
        return (slice(None), slice(None), slice(r, r + n), slice(c, c + n))
    return (slice(None), slice(r, r + n), slice(c, c + n))


class ZarrPython:
    """zarr-python, its own codec pipeline or zarrs-python's (`pipeline`)."""

    def __init__(self, pipeline=None):
        import zarr

        self.zarr = zarr
        self.pipeline = pipeline

    def versions(self):
        v = f"zarr {self.zarr.__version__}"
        if self.pipeline:
            import importlib.metadata as md

            v += f", zarrs {md.version('zarrs')}"
        return v

    def open(self, base, arrays):
        if self.pipeline:
            self.zarr.config.set({"codec_pipeline.path": self.pipeline})
        else:
            self.zarr.config.reset()
        return {(g, n): self.zarr.open_array(f"{base}/{g}/{n}", mode="r") for g, n, _ in arrays}

    def read(self, opened, key, p, m):
        a = opened[key]
        return a[window(a, p, m)]


class TensorStore:
    def __init__(self):
        import tensorstore

        self.ts = tensorstore

    def versions(self):
        import importlib.metadata as md

        return f"tensorstore {md.version('tensorstore')}"

    def open(self, base, arrays):
        ctx = self.ts.Context()
        return {
            (g, n): self.ts.open(
                {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{base}/{g}/{n}"}},
                open=True,
                read=True,
                context=ctx,
            ).result()
            for g, n, _ in arrays
        }

    def read(self, opened, key, p, m):
        a = opened[key]
        return a[window(a, p, m)].read().result()


class Xarray:
    """xarray open_zarr without dask (`chunks=None`, the README's advice for sharded stores) or
    with dask's default chunks (one per inner chunk), zarr's own pipeline or zarrs'."""

    def __init__(self, dask=False, pipeline=None):
        import xarray

        self.xr = xarray
        self.dask = dask
        self.z = ZarrPython(pipeline)

    def versions(self):
        v = f"xarray {self.xr.__version__}, {self.z.versions()}"
        if self.dask:
            import dask

            v += f", dask {dask.__version__}"
        return v

    def open(self, base, arrays):
        self.z.open(base, arrays)  # sets the codec pipeline
        kw = {} if self.dask else {"chunks": None}
        groups = {g: self.xr.open_zarr(f"{base}/{g}", consolidated=True, **kw) for g, _, _ in arrays}
        return {(g, n): groups[g][n] for g, n, _ in arrays}

    def read(self, opened, key, p, m):
        a = opened[key]
        r, c, n = p["y_m"] // m, p["x_m"] // m, p["size_m"] // m
        return a.isel(y=slice(r, r + n), x=slice(c, c + n)).values


READERS = {
    "zarr": lambda: ZarrPython(),
    "zarr+zarrs": lambda: ZarrPython("zarrs.ZarrsCodecPipeline"),
    "tensorstore": lambda: TensorStore(),
    "xarray": lambda: Xarray(),
    "xarray+zarrs": lambda: Xarray(pipeline="zarrs.ZarrsCodecPipeline"),
    "xarray+dask": lambda: Xarray(dask=True),
}


def cpu_seconds():
    """CPU time of this process so far, all threads (µs resolution, unlike /proc's ticks)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def daemon_cpu_seconds(pid):
    """CPU time of the mount's daemon so far (clock ticks), 0 when it is not known."""
    if not pid:
        return 0.0
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def interleaved_pass(reader, roots, tile, year, patches, order, first, daemon_pid=None):
    """One pass on each side (`roots`: side -> root), interleaved: both sides open the arrays,
    then each patch is read from one side and at once from the other (which side goes first
    alternates from patch to patch). This VM's speed drifts by ±20 % over seconds; interleaved,
    both sides' times see the same drift. Returns {side: seconds}, {side: CPU seconds} (the
    reader's, and for the mount the daemon's during the whole pass) and {side: [checksum per
    patch]}."""
    sides = [first, "store" if first == "mount" else "mount"]
    seconds = {side: 0.0 for side in sides}
    cpu = {side: 0.0 for side in sides}
    daemon0 = daemon_cpu_seconds(daemon_pid)
    sums = {side: {} for side in sides}
    opened, arrays = {}, {}
    for side in sides:
        base = f"{roots[side]}/{tile}/{year}"
        arrays[side] = arrays_of(base)
        t0, c0 = time.perf_counter(), cpu_seconds()
        opened[side] = reader.open(base, arrays[side])
        seconds[side] += time.perf_counter() - t0
        cpu[side] += cpu_seconds() - c0
    for k, i in enumerate(order):
        for side in sides if k % 2 == 0 else sides[::-1]:
            t0, c0 = time.perf_counter(), cpu_seconds()
            h = 0
            for g, n, m in arrays[side]:
                a = reader.read(opened[side], (g, n), patches[i], m)
                h = (h * 1000003 + checksum(a)) & MASK
            seconds[side] += time.perf_counter() - t0
            cpu[side] += cpu_seconds() - c0
            sums[side][i] = h
    daemon = daemon_cpu_seconds(daemon_pid) - daemon0
    cpu["mount"] += daemon
    sums = {side: [sums[side][i] for i in range(len(patches))] for side in sides}
    return seconds, cpu, daemon, sums


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mount")
    ap.add_argument("store")
    ap.add_argument("tile")
    ap.add_argument("year", type=int)
    ap.add_argument("--patches", type=int, default=10)
    ap.add_argument("--size", type=int, default=5100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--readers", default=",".join(READERS))
    ap.add_argument("--width", type=int, help="tile width in metres (default: from 10m/data)")
    ap.add_argument("--daemon-pid", type=int, help="the mount's daemon, whose CPU time is counted")
    ap.add_argument("--json")
    o = ap.parse_args()
    width = o.width
    if width is None:
        meta = json.load(open(f"{o.store}/{o.tile}/{o.year}/10m/data/zarr.json"))
        width = meta["shape"][-1] * 10
    rng = random.Random(o.seed)
    slots = (width - o.size) // 60 + 1
    patches = [
        {"x_m": rng.randrange(slots) * 60, "y_m": rng.randrange(slots) * 60, "size_m": o.size}
        for _ in range(o.patches)
    ]
    reference = None
    rows = []
    for name in o.readers.split(","):
        reader = READERS[name]()
        times = {"mount": [], "store": []}
        cpus = {"mount": [], "store": []}
        daemon_cpu = []
        for rep in range(o.repeats + 1):
            order = list(range(len(patches)))
            random.Random(o.seed * 1000 + rep).shuffle(order)
            first = "mount" if rep % 2 == 0 else "store"
            roots = {"mount": o.mount, "store": o.store}
            seconds, cpu, daemon, sums = interleaved_pass(
                reader, roots, o.tile, o.year, patches, order, first, o.daemon_pid
            )
            if rep > 0:
                daemon_cpu.append(daemon)
            for side in ("mount", "store"):
                if reference is None:
                    reference = sums[side]
                if sums[side] != reference:
                    sys.exit(f"{name} on {side}: values differ from the first reader's")
                if rep > 0:
                    times[side].append(seconds[side])
                    cpus[side].append(cpu[side])
        m, s = statistics.mean(times["mount"]), statistics.mean(times["store"])
        # Each repetition's mount pass over its own store pass (interleaved patch by patch): the
        # median of these is less moved by one disturbed pass than a ratio of means.
        paired = statistics.median(a / b for a, b in zip(times["mount"], times["store"]))
        # CPU time moves far less with the VM's speed than wall time: what the mount costs the
        # reader (its system calls through FUSE) and the daemon, per pass.
        cm, cs = statistics.mean(cpus["mount"]), statistics.mean(cpus["store"])
        rows.append({"reader": name, "versions": reader.versions(), "mount_seconds": times["mount"],
                     "store_seconds": times["store"], "mount_mean": m, "store_mean": s, "ratio": m / s,
                     "paired_median": paired, "mount_cpu": cpus["mount"], "store_cpu": cpus["store"],
                     "daemon_cpu": daemon_cpu, "cpu_ratio": cm / cs})
        print(f"{name}: store {s:.3f} s, mount {m:.3f} s, ratio {m / s:.3f}, paired median "
              f"{paired:.3f}; CPU store {cs:.3f} s, mount {cm:.3f} s (daemon "
              f"{statistics.mean(daemon_cpu):.3f}), ratio {cm / cs:.3f}", file=sys.stderr)
    print(f"{len(patches)} patches of {o.size} m, {o.repeats} counted passes per side after one "
          f"warm-up, mount and store interleaved patch by patch; Python {sys.version.split()[0]}.\n")
    print("| reader | versions | store (s/pass) | mount (s/pass) | mount ÷ store (means) "
          "| mount ÷ store (median of pairs) | CPU s/pass store | CPU s/pass mount (daemon) "
          "| CPU mount ÷ store |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['reader']} | {r['versions']} | {r['store_mean']:.3f} | {r['mount_mean']:.3f} | "
              f"{r['ratio']:.3f} | **{r['paired_median']:.3f}** | "
              f"{statistics.mean(r['store_cpu']):.3f} | {statistics.mean(r['mount_cpu']):.3f} "
              f"({statistics.mean(r['daemon_cpu']):.3f}) | **{r['cpu_ratio']:.3f}** |")
    if o.json:
        json.dump({"patches": patches, "rows": rows, "python": sys.version}, open(o.json, "w"), indent=1)


if __name__ == "__main__":
    main()
