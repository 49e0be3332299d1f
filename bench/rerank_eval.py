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
from pathlib import Path

import numpy as np

from bannermatch.evaluation.groups import read_groups
from bannermatch.evaluation.rerank import reranked_metrics
from bannermatch.store.collection import Collection
from bannermatch.verify.features import LocalStore


def _labels(coll: Collection, ids: list[str], groups: dict[str, str]) -> np.ndarray:
    with coll.catalog() as cat:
        items = [cat.get(i) for i in ids]
    names = [Path(it.source or "").name if it is not None else "" for it in items]
    numbers: dict[str, int] = {}
    return np.array(
        [numbers.setdefault(groups[n], len(numbers)) if groups.get(n) else -1 for n in names]
    )


def run(root: str, groups_file: str, ks: list[int]) -> None:
    coll = Collection(root)
    data = coll.load()
    store = LocalStore.load(root)
    assert store is not None, "index with --local first"
    emb = np.asarray(data.embeddings, np.float32)
    labels = _labels(coll, data.ids, read_groups(groups_file))
    for k in [0, *ks]:
        m, times = reranked_metrics(emb, labels, store, data.ids, k, (1, 10, 50))
        line = f"K={k or 'global':>6}  n={m.n_queries}  r@1={m.recall[1]:.3f}  "
        line += f"r@10={m.recall[10]:.3f}  r@50={m.recall[50]:.3f}  mAP={m.map:.3f}"
        if len(times):
            t = times * 1000
            line += f"  rerank p50={np.percentile(t, 50):.1f} ms p99={np.percentile(t, 99):.1f} ms"
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
