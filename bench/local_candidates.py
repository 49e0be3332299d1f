"""Recall@50 of the candidate list: global top 50 vs global top 25 + local-feature top 25.

python bench/local_candidates.py /tmp/c16 /work/shared/data/covers/covers.tsv
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bannermatch.evaluation.groups import query_rows, read_groups
from bannermatch.store.collection import Collection
from bannermatch.verify.candidates import LocalCandidates
from bannermatch.verify.features import LocalStore

sys.path.insert(0, "bench")
from rerank_eval import _labels


def main(root: str, groups: str, n: int = 50) -> None:
    coll = Collection(root)
    data = coll.load()
    store = LocalStore.load(root)
    assert store is not None and store.ids == data.ids, "index --local the whole collection"
    emb = np.asarray(data.embeddings, np.float32)
    labels = _labels(coll, data.ids, read_groups(groups))
    local = LocalCandidates(store)
    hit_global = hit_merged = 0
    times = []
    queries = query_rows(labels)
    for q in queries:
        scores = emb @ emb[q]
        scores[q] = -np.inf
        order = np.argsort(-scores, kind="stable")
        t0 = time.perf_counter()
        extra = local.search(store.features(q), n, exclude=q)
        times.append(time.perf_counter() - t0)
        merged = list(dict.fromkeys([*order[: n // 2], *extra]))
        merged = list(dict.fromkeys([*merged, *order]))[:n]
        same = labels == labels[q]
        hit_global += bool(same[order[:n]].any())
        hit_merged += bool(same[merged].any())
    t = np.array(times) * 1000
    print(
        f"recall@{n} of the candidates: global {hit_global / len(queries):.3f}, "
        f"global {n // 2} + local {n - n // 2}: {hit_merged / len(queries):.3f}; "
        f"local search p50 {np.percentile(t, 50):.1f} ms"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
