"""Same-game retrieval on a collection, global vs verified re-rank (issue 16).

    bannermatch index /work/shared/data/covers/images --out /tmp/c16 --local
    python bench/rerank_eval.py /tmp/c16 /work/shared/data/covers/covers.tsv --k 20 50 100 \
        --local 0 50 --workers 1

For each query with a same-group partner: the global ranking (exact cosine),
then its top K and M local-feature candidates verified by
:class:`bannermatch.verify.pipeline.Verifier`, the rest kept in global order.
Prints recall@1/@10/@50, mAP and the verification time per query (p50/p99,
timed around ``Verifier.verify`` only: local features and their index on disk;
``--workers 1`` for latency, one query at a time; ``--idf``: the collection-wide
feature weights of :func:`bannermatch.verify.pipeline.collection_idf` as well).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bannermatch.evaluation.groups import read_groups
from bannermatch.evaluation.rerank import reranked_metrics
from bannermatch.store.collection import Collection
from bannermatch.verify.pipeline import Verifier


def _labels(coll: Collection, ids: list[str], groups: dict[str, str]) -> np.ndarray:
    with coll.catalog() as cat:
        items = [cat.get(i) for i in ids]
    names = [Path(it.source or "").name if it is not None else "" for it in items]
    numbers: dict[str, int] = {}
    return np.array(
        [numbers.setdefault(groups[n], len(numbers)) if groups.get(n) else -1 for n in names]
    )


def run(
    root: str, groups_file: str, ks: list[int], locals_: list[int], workers: int, idf: bool
) -> None:
    coll = Collection(root)
    data = coll.load()
    emb = np.asarray(data.embeddings, np.float32)
    verifier = Verifier.open(root, data.ids, emb)
    labels = _labels(coll, data.ids, read_groups(groups_file))
    runs = [(0, 0)] + [(k, m) for k in ks for m in locals_]
    for k, m in runs:
        metrics, times = reranked_metrics(
            emb, labels, verifier, k, (1, 10, 50), local=m, workers=workers, idf=idf
        )
        line = (
            f"K={k or 'global':>6} M={m:>3}  n={metrics.n_queries}  r@1={metrics.recall[1]:.3f}  "
        )
        line += f"r@10={metrics.recall[10]:.3f}  r@50={metrics.recall[50]:.3f}  "
        line += f"mAP={metrics.map:.3f}"
        if len(times):
            wall, cpu = (np.percentile(times[:, i] * 1000, [50, 99]) for i in (0, 1))
            line += f"  verify p50/p99 wall {wall[0]:.1f}/{wall[1]:.1f} ms"
            line += f" cpu {cpu[0]:.1f}/{cpu[1]:.1f} ms"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection")
    parser.add_argument("groups")
    parser.add_argument("--k", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--local", type=int, nargs="+", default=[0, 50])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--idf", action="store_true", help="collection-wide feature weights")
    args = parser.parse_args()
    run(args.collection, args.groups, args.k, args.local, args.workers, args.idf)


if __name__ == "__main__":
    main()
