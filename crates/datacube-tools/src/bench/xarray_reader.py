"""The xarray target of `datacube bench`: the reference users' stack (xarray + dask open_zarr) reading
the same patches, in the same orders, from the same store. Input JSON on stdin; output JSON on stdout:
per-repeat durations (the first is the warm-up), bytes read (rchar) and per-patch checksums computed
exactly as the Rust side does (position-weighted sum of the values, wrapping at 2^64)."""
import json
import sys
import time

import dask
import numpy as np
import xarray as xr
import zarr

MASK = (1 << 64) - 1
# [group, array, metres] in the order the Rust side combines them (L2A adds ["10m", "scl", 10]).
ARRAYS = [["10m", "data", 10], ["20m", "data", 20], ["60m", "data", 60]]


def checksum(a):
    v = np.ascontiguousarray(a).ravel().astype(np.uint64)
    w = (np.arange(v.size, dtype=np.uint64) % np.uint64(65521)) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int((v * w).sum(dtype=np.uint64))


def rchar():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def main():
    cfg = json.load(sys.stdin)
    base = f"{cfg['store']}/{cfg['tile']}/{cfg['year']}"
    patches = cfg["patches"]
    arrays = cfg.get("arrays", ARRAYS)
    sums = [None] * len(patches)
    durations, reads = [], []
    # "chunks": absent = xarray's default (a dask chunk per stored chunk, or per inner chunk of a
    # shard); null = no dask (`chunks=None`), as the README advises for sharded stores.
    kw = {"chunks": cfg["chunks"]} if "chunks" in cfg else {}
    for order in cfg["orders"]:
        t0, r0 = time.perf_counter(), rchar()
        groups = {g: xr.open_zarr(f"{base}/{g}", consolidated=True, **kw) for g in {a[0] for a in arrays}}
        for i in order:
            p = patches[i]
            h = 0
            for group, var, m in arrays:
                r, c, n = p["y_m"] // m, p["x_m"] // m, p["size_m"] // m
                a = groups[group][var].isel(y=slice(r, r + n), x=slice(c, c + n)).values
                h = (h * 1000003 + checksum(a)) & MASK
            if sums[i] is None:
                sums[i] = h
            elif sums[i] != h:
                raise SystemExit(f"patch {i} differs between repeats")
        durations.append(time.perf_counter() - t0)
        reads.append(rchar() - r0)
    versions = f"xarray {xr.__version__}, zarr {zarr.__version__}, dask {dask.__version__}"
    json.dump({"durations": durations, "rchar": reads, "checksums": sums, "versions": versions}, sys.stdout)


if __name__ == "__main__":
    main()
