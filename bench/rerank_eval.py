"""Same-game retrieval on a collection, global vs verified re-rank (issue 16).

    bannermatch index /work/shared/data/covers/images --out /tmp/c16 --local
    python bench/rerank_eval.py /tmp/c16 /work/shared/data/covers/covers.tsv --k 20 50

For each query with a same-group partner: the global ranking (exact cosine),
then its top K re-ranked by :func:`bannermatch.verify.rerank.rerank`, the rest
kept in global order. Prints recall@1/@10, mAP and the re-rank time per query
(p50/p99, timed around the re-rank only, local features already on disk).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bannermatch.collection import Collection
from bannermatch.evaluation import metrics_from_ranks, query_rows, read_groups
from bannermatch.verify.features import LocalStore
from bannermatch.verify.rerank import rerank


def _labels(coll: Collection, ids: list[str], groups: dict[str, str]) -> np.ndarray:
    with coll.catalog() as cat:
        names = [Path(cat.get(i).source or "").name for i in ids]  # type: ignore[union-attr]
    numbers: dict[str, int] = {}
    return np.array(
        [numbers.setdefault(groups[n], len(numbers)) if groups.get(n) else -1 for n in names]
    )


def _first_and_ap(order: np.ndarray, same: np.ndarray) -> tuple[int, float]:
    hits = same[order]
    ranks = np.arange(1, len(order) + 1)
    precision = np.cumsum(hits) / ranks
    return int(hits.argmax() + 1), float((precision * hits).sum() / hits.sum())


def run(root: str, groups_file: str, ks: list[int]) -> None:
    coll = Collection(root)
    data = coll.load()
    store = LocalStore.load(root)
    assert store is not None, "index with --local first"
    emb = np.asarray(data.embeddings, np.float32)
    labels = _labels(coll, data.ids, read_groups(groups_file))
    queries = query_rows(labels)
    qrow = store.row_of
    for k in [0, *ks]:
        first, ap, times, moved = [], [], [], 0
        for q in queries:
            scores = emb @ emb[q]
            scores[q] = -np.inf
            order = np.argsort(-scores, kind="stable")[:-1]
            if k:
                t0 = time.perf_counter()
                out = rerank(
                    store.features(qrow[data.ids[q]]), store, data.ids, order[:k], scores[order[:k]]
                )
                times.append(time.perf_counter() - t0)
                moved += int(out.rows[0] != order[0])
                order = np.concatenate([out.rows, order[k:]])
            f, a = _first_and_ap(order, labels == labels[q])
            first.append(f)
            ap.append(a)
        m = metrics_from_ranks(np.array(first), np.array(ap), (1, 10, 50))
        line = f"K={k or 'global':>6}  n={m.n_queries}  r@1={m.recall[1]:.3f}  "
        line += f"r@10={m.recall[10]:.3f}  r@50={m.recall[50]:.3f}  mAP={m.map:.3f}"
        if times:
            t = np.array(times) * 1000
            line += f"  rerank p50={np.percentile(t, 50):.1f} ms p99={np.percentile(t, 99):.1f} ms"
            line += f"  top-1 changed {moved}"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection")
    parser.add_argument("groups")
    parser.add_argument("--k", type=int, nargs="+", default=[20, 50])
    args = parser.parse_args()
    run(args.collection, args.groups, args.k)


if __name__ == "__main__":
    main()
