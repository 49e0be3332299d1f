"""Time and peak memory of the map of the collection (``bannermatch.present.maps.compute_map``).

    python bench/bench_map.py --n 10000            synthetic clustered 1280-d embeddings
    python bench/bench_map.py --collection COLL    a real collection's embeddings

One size a process, so that ``peak_rss_mb`` (ru_maxrss) is this size's alone. Prints one
JSON line. Figures: docs/performance.md ("Map of the collection").
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from bannermatch.present.maps import compute_map
from bannermatch.store.collection import Collection


def synthetic(n: int, dim: int = 1280, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random centres (float16, like embeddings.npy)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    out = np.empty((n, dim), np.float16)
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        v = centres[rng.integers(0, clusters, m)] + 0.8 * rng.standard_normal((m, dim), np.float32)
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--collection", default=None)
    args = parser.parse_args()
    emb = Collection(args.collection).load().embeddings if args.collection else synthetic(args.n)
    vectors = np.asarray(emb, np.float32)
    started = time.perf_counter()
    points, method = compute_map(vectors)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "n": len(points),
                "dim": vectors.shape[1],
                "method": method,
                "seconds": round(seconds, 1),
                "peak_rss_mb": round(rss),
            }
        )
    )


if __name__ == "__main__":
    main()
