"""Past one machine: the Ray path against the single-machine path, and the approximate
index against exact matching, each measured side by side in one run.

    .venv/bin/python bench/scale.py                      # both parts (about two hours here)
    .venv/bin/python bench/scale.py --part ray --images 300,1500
    .venv/bin/python bench/scale.py --part ann --sizes 100000,1000000 --dim 256

ray: ``bannermatch index IMAGES --out A --precision fp32`` and ``bannermatch index IMAGES
    --out B --engine ray --address local`` (Ray runs fp32; a local Ray cluster of this
    machine's cores) on the same real covers (the shared covers and igdb covers,
    repeated), at two sizes, best of interleaved repeats (the machine is shared):
    whole-command wall time, the embedding phase's images/s, the Ray run's overhead (the
    fixed part is the intercept of wall time against images, the per-image part the
    slope), and whether the two collections hold the same rows (ids, max |difference|,
    min cosine).
ann: random unit vectors in float16, as a collection stores them, of two kinds
    (uniform noise on the sphere has no neighbours worth finding): ``clustered`` (N/100
    Gaussian centres, noise 0.7 per dimension: easy) and ``lowrank`` (a 32-dimensional
    Gaussian subspace plus 10 % isotropic noise: hard). Exact top-10 of every row (faiss
    IndexFlatIP in blocks, as ``match``; at N > 200,000 timed on 5,000 queries and
    scaled to N, which is exact for a brute-force scan) against ``match --index ivf``
    and ``--index hnsw`` (build, tuning to recall 0.95, search of every row: at N >
    200,000 timed on 50,000 rows and scaled to N); memory
    (the exact index's float32 rows, the approximate index's file); recall@10 on the
    1,000-row sample, and at N <= 200,000 over every row; the latency of one top-50
    query (what ``serve`` answers past the stored neighbours, or for an uploaded
    image): exact scan against the index.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bannermatch.query.ann import AnnIndex

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))
KEY = "effnet-lite0__pad224-bicubic__cls"
EXACT_SAMPLE = 5000
SEARCH_SAMPLE = 50_000
FULL_EXACT_MAX = 200_000
LATENCY_N = 50


# ray ------------------------------------------------------------------------------


def _images(n: int, folder: Path) -> Path:
    sources = sorted((SHARED / "covers" / "images").glob("*.jpg"))
    sources += sorted((SHARED / "igdb_covers" / "images").glob("*.jpg"))
    if not sources:
        sys.exit(f"needs the shared covers in {SHARED}")
    folder.mkdir(parents=True)
    for i in range(n):  # a repeated file is a new item (its own path), embedded again
        (folder / f"{i:06d}.jpg").symlink_to(sources[i % len(sources)])
    return folder


def _index(images: Path, out: Path, *extra: str) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "bannermatch.cli", "index", str(images), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, *extra, "-q", "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[3:])} {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), wall


def _rows(out: Path) -> tuple[list[str], np.ndarray]:
    folder = out / "models" / KEY
    ids = json.loads((folder / "items.json").read_text("utf-8"))
    return ids, np.load(folder / "embeddings.npy").astype(np.float32)


def bench_ray(sizes: list[int], tmp: Path, repeats: int = 2) -> None:
    import ray

    print(f"== Ray path vs single machine: effnet-lite0, {os.cpu_count()} CPU cores, Ray "
          f"{ray.__version__} (local cluster: one embedding actor, decoding tasks); "
          f"best of {repeats} interleaved runs ==")  # fmt: skip
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    for n in sizes:
        images = _images(n, tmp / f"images-{n}")
        best: dict[str, tuple[float, dict]] = {}
        for rep in range(repeats):  # local, ray, ray, local, ...: load drifts hit both
            for name in ("local", "ray") if rep % 2 == 0 else ("ray", "local"):
                out = tmp / f"{name}-{n}-{rep}"
                # Ray runs fp32 (int8 is the local CPU default): the same rows either way
                extra = (
                    ("--engine", "ray", "--address", "local")
                    if name == "ray"
                    else ("--precision", "fp32")
                )
                result, wall = _index(images, out, *extra)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, result)
        (local_wall, local), (ray_wall, remote) = best["local"], best["ray"]
        walls["local"].append(local_wall)
        walls["ray"].append(ray_wall)
        ids_l, emb_l = _rows(tmp / f"local-{n}-0")
        ids_r, emb_r = _rows(tmp / f"ray-{n}-0")
        norms = np.linalg.norm(emb_l, axis=1) * np.linalg.norm(emb_r, axis=1)
        cosine = (emb_l * emb_r).sum(1) / norms
        print(f"{n:>6} images  local: {local_wall:6.1f} s whole command, "
              f"{local['images_per_second']:6.1f} img/s embedding phase")  # fmt: skip
        print(f"{'':>13} ray:   {ray_wall:6.1f} s whole command, "
              f"{remote['images_per_second']:6.1f} img/s embedding phase "
              f"(start-up of the actors included)")  # fmt: skip
        print(f"{'':>13} ray/local wall time {ray_wall / local_wall:.2f}x; same ids in the "
              f"same order: {ids_l == ids_r}; max |difference| {np.abs(emb_l - emb_r).max():.2e}, "
              f"min cosine {cosine.min():.6f}")  # fmt: skip
    if len(sizes) >= 2:
        fits = {name: np.polyfit(sizes, w, 1) for name, w in walls.items()}
        for name, (slope, intercept) in fits.items():
            print(f"{name:>6}: {intercept:5.1f} s fixed + {1000 * slope:5.1f} ms/image "
                  f"({1 / slope:5.1f} img/s at scale)")  # fmt: skip
        (ls, li), (rs, ri) = fits["local"], fits["ray"]
        print(f"Ray overhead: {ri - li:+.1f} s fixed (cluster and actor start-up), "
              f"{1000 * (rs - ls):+.1f} ms/image ({rs / ls - 1:+.0%} per image)")  # fmt: skip


# ann ------------------------------------------------------------------------------


def vectors(kind: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit rows stored as float16. ``clustered``: around n/100 Gaussian centres, noise
    0.7 per dimension (neighbours share a centre: easy for IVF). ``lowrank``: a Gaussian
    on a random 32-dimensional subspace plus isotropic noise of 10 % of its energy (no
    clusters, neighbours only somewhat closer than the rest: hard)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), d)).astype(np.float32)
    basis = rng.standard_normal((32, d)).astype(np.float32)
    out = np.empty((n, d), np.float16)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        if kind == "clustered":
            x = centres[rng.integers(0, len(centres), m)]
            x += 0.7 * rng.standard_normal((m, d), dtype=np.float32)
        else:
            x = rng.standard_normal((m, 32), dtype=np.float32) @ basis
            x += np.sqrt(0.1 * 32) * rng.standard_normal((m, d), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"


def _latency(emb: np.ndarray, index: AnnIndex, queries: int = 50) -> tuple[float, float]:
    """Mean milliseconds of one top-``LATENCY_N`` query: the server's exact scan
    (``query.nearest``) and the approximate index (``AnnIndex.nearest``)."""
    from bannermatch.query.topk import nearest

    rows = np.random.default_rng(9).choice(len(emb), queries, replace=False).tolist()
    times = []
    for fn in (
        lambda r: nearest(emb, emb[r], LATENCY_N, exclude=r),
        lambda r: index.nearest(emb[r], LATENCY_N, exclude=r),
    ):
        t0 = time.perf_counter()
        for r in rows:
            fn(r)
        times.append(1000 * (time.perf_counter() - t0) / queries)
    return times[0], times[1]


def bench_ann(sizes: list[int], d: int, kinds: list[str], data: list[str], tmp: Path) -> None:
    import faiss

    from bannermatch.query import ann, topk
    from bannermatch.query.match import topk_all

    k = 10
    print(f"== approximate vs exact top-{k}: random vectors, d={d}, float16 rows, "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads ==")  # fmt: skip
    for n, kind_of_data in ((n, v) for n in sizes for v in data):
        emb = vectors(kind_of_data, n, d)
        exact_bytes = n * d * 4
        if n <= FULL_EXACT_MAX:
            t0 = time.perf_counter()
            _, exact_sc = topk_all(emb, k)
            exact_s = time.perf_counter() - t0
            how = "every row"
        else:
            rows = np.random.default_rng(5).choice(n, EXACT_SAMPLE, replace=False)
            t0 = time.perf_counter()
            topk.exact_topk(emb, emb[rows].astype(np.float32), k, exclude=rows)
            exact_s = (time.perf_counter() - t0) * n / EXACT_SAMPLE
            exact_sc = None
            how = f"{EXACT_SAMPLE:,} queries timed, x{n // EXACT_SAMPLE}; searches below: "
            how += f"{SEARCH_SAMPLE:,} rows timed, x{n // SEARCH_SAMPLE}"
        print(f"N={n:,} {kind_of_data}  exact: {exact_s:8.1f} s ({how}), "
              f"index memory {_gb(exact_bytes)}")  # fmt: skip
        for kind in kinds:
            params = ann.choose_params(kind, n, d)
            t0 = time.perf_counter()
            index = ann.build(emb, params)
            t1 = time.perf_counter()
            tuning = ann.tune(index, params, emb, k)
            t2 = time.perf_counter()
            if exact_sc is not None:
                nb, _ = ann.topk_all(index, params, emb, k)
                t3 = time.perf_counter()
            else:  # as the exact scan: timed on a sample of rows, scaled to N
                ann.topk_all(index, params, emb, k, limit=SEARCH_SAMPLE)
                t3 = t2 + (time.perf_counter() - t2) * n / SEARCH_SAMPLE
            path = tmp / f"{kind}-{n}.faiss"
            ann.save(index, path)
            size = path.stat().st_size
            path.unlink()
            total = t3 - t0
            line = (
                f"{'':>{len(f'N={n:,}')}}  {params.describe():<32} build {t1 - t0:6.1f} s, "
                f"tune {t2 - t1:5.1f} s, search all {t3 - t2:6.1f} s = {total:7.1f} s "
                f"({exact_s / total:5.1f}x faster than exact); index {_gb(size)} "
                f"({size / exact_bytes:.2f}x exact); recall@{k} {tuning.recall:.3f} "
                f"on {tuning.sample:,} sampled rows"
            )
            if exact_sc is not None:
                x = emb.astype(np.float32)
                got = np.einsum("nkd,nd->nk", x[nb.astype(np.int64)], x)
                overall = float((got >= exact_sc[:, -1:] - 1e-5).mean())
                line += f", {overall:.3f} over all rows"
            print(line, flush=True)
            exact_ms, ann_ms = _latency(emb, ann.AnnIndex(index, params, emb))
            print(f"{'':>{len(f'N={n:,}')}}  one query, n={LATENCY_N} (serve past the stored k, "
                  f"or by image): exact scan {exact_ms:.1f} ms, {kind} {ann_ms:.2f} ms "
                  f"({exact_ms / ann_ms:.0f}x)", flush=True)  # fmt: skip
            del index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["ray", "ann", "all"], default="all")
    parser.add_argument("--images", default="300,1500", help="image counts (default 300,1500)")
    parser.add_argument("--sizes", default="100000,1000000", help="vector counts")
    parser.add_argument("--dim", type=int, default=256, help="vector dimension (default 256)")
    parser.add_argument("--kinds", default="ivf,hnsw", help="approximate indexes (ivf,hnsw)")
    parser.add_argument("--data", default="clustered,lowrank", help="clustered,lowrank")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each Ray/local index")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    with tempfile.TemporaryDirectory(prefix="bm-bench-scale-") as tmp:
        if args.part in ("ray", "all"):
            bench_ray([int(s) for s in args.images.split(",")], Path(tmp), args.repeats)
        if args.part in ("ann", "all"):
            sizes = [int(s) for s in args.sizes.split(",")]
            bench_ann(sizes, args.dim, args.kinds.split(","), args.data.split(","), Path(tmp))


if __name__ == "__main__":
    main()
