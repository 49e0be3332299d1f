"""All-items top-10 matching: `bannermatch match` against a plain faiss search and the
matrix-multiply floor, on the same random unit vectors, in one run.

    .venv/bin/python bench/match.py                      # N = 30,000 and 100,000; d = 512, 1,280
    .venv/bin/python bench/match.py -n 30000 -d 512      # one size

For each N and d it writes a synthetic collection of N random unit vectors (float16,
as ``index`` stores them) and measures, each in its own process:

(1) ``bannermatch match COLLECTION -k 10`` as a user runs it: the matching time it
    reports (loading excluded) and the process's peak RSS;
(2) plain faiss: ``IndexFlatIP`` holding all N rows (float32), ``search`` of all N
    rows for their k + 1 nearest (each row finds itself), timed around the search;
(3) the floor: 2 * N * N * d flops at the float32 matrix-multiply rate measured here
    (NumPy's BLAS on 4,096-row blocks), the cost of computing every similarity once.
    ``bannermatch match`` computes each pair's similarity once (it is symmetric), half
    of those flops: it can go below this floor, and a plain search cannot.

With ``--rounds R`` each of (1) and (2) runs R times, alternating, and the best time
counts (the machine may be shared).

Peak RSS is each process's own memory high-water mark (VmHWM); the float32 copy of
the vectors (N * d * 4 bytes) is printed beside it: the rest is what matching holds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from support import MEASURED, PEAK, peak_mb, write_random_unit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

K = 10
PLAIN_FAISS = PEAK + textwrap.dedent(
    """
    import time
    import faiss, numpy as np
    emb = np.load(sys.argv[1]).astype(np.float32)
    k = int(sys.argv[2])
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    start = time.perf_counter()
    scores, ids = index.search(emb, k + 1)
    print(time.perf_counter() - start)
    """
)


def _run(*args: str) -> tuple[str, float]:
    """stdout and peak RSS (MB) of ``python ARGS``."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{' '.join(args[:4])} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout, peak_mb(proc.stderr)


def build(root: Path, n: int, dim: int, seed: int = 0) -> Path:
    """A collection of ``n`` random unit vectors; returns its embeddings.npy."""
    from bannermatch.store.catalog import Item
    from bannermatch.store.collection import Collection

    ids = [str(i) for i in range(n)]
    coll = Collection(root)
    with coll.catalog(create=True) as cat:
        cat.upsert(Item(id=i, name=f"item {i}", status="ok") for i in ids)
    return write_random_unit(coll, ids, dim, seed)


def gemm_rate(dim: int, seconds: float = 5.0, rows: int = 4096) -> float:
    """float32 matrix-multiply flops/s of NumPy's BLAS: (rows x d) @ (d x rows) blocks."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, dim), dtype=np.float32)
    b = rng.standard_normal((rows, dim), dtype=np.float32)
    out = np.empty((rows, rows), np.float32)
    np.matmul(a, b.T, out=out)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.matmul(a, b.T, out=out)
        done += 1
    return done * 2.0 * rows * rows * dim / (time.perf_counter() - start)


def bench(root: Path, n: int, dim: int, rounds: int = 1) -> dict[str, float]:
    """Each measure ``rounds`` times, alternating; the best time of each counts."""
    emb = build(root, n, dim)
    bm, plain = [], []
    bm_rss = faiss_rss = 0.0
    for _ in range(rounds):
        stdout, rss = _run(
            "-c", MEASURED, "bannermatch.cli", "match", str(root), "-k", str(K), "-q", "--json"
        )
        bm.append(json.loads(stdout)["seconds"])
        bm_rss = max(bm_rss, rss)
        stdout, rss = _run("-c", PLAIN_FAISS, str(emb), str(K))
        plain.append(float(stdout.split()[0]))
        faiss_rss = max(faiss_rss, rss)
    rate = gemm_rate(dim)
    return {
        "bm": min(bm),
        "bm_rss": bm_rss,
        "faiss": min(plain),
        "faiss_rss": faiss_rss,
        "gemm_rate": rate,
        "floor": 2.0 * n * n * dim / rate,
        "float32_mb": n * dim * 4 / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, action="append", help="items (default: 30000, 100000)")
    parser.add_argument("-d", type=int, action="append", help="dimension (default: 512, 1280)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of each, alternating; the best counts"
    )
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    import faiss

    print(
        f"{os.cpu_count()} CPU cores, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} "
        f"threads), top-{K}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for n in args.n or [30_000, 100_000]:
        for dim in args.d or [512, 1280]:
            with tempfile.TemporaryDirectory(prefix="bm-bench-match-") as tmp:
                r = bench(Path(tmp), n, dim, args.rounds)
            print(
                f"N={n:,} d={dim}: bannermatch match {r['bm']:.2f} s, peak RSS "
                f"{r['bm_rss']:.0f} MB | plain faiss {r['faiss']:.2f} s, peak RSS "
                f"{r['faiss_rss']:.0f} MB | floor {r['floor']:.2f} s "
                f"(GEMM {r['gemm_rate'] / 1e9:.0f} GFLOP/s) | float32 vectors "
                f"{r['float32_mb']:.0f} MB",
                flush=True,
            )
            print(
                f"    match / plain faiss = {r['bm'] / r['faiss']:.2f}x, "
                f"match / floor = {r['bm'] / r['floor']:.2f}x, "
                f"faiss / floor = {r['faiss'] / r['floor']:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
