"""Recall of the candidate list: global top N vs global top N + local-feature top M.

    python bench/local_candidates.py /tmp/c16 /work/shared/data/covers/covers.tsv

For each same-game query: is a same-group item among the global top N (N = 10,
50), and among the global top N merged with the M = ``LOCAL_M`` items with the
most local-feature votes (:func:`bannermatch.verify.pipeline.local_votes`, the
list the verification sees)? Also at equal length: global N/2 + local N/2.
Prints the local search time per query (p50/p99, index cached on disk).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bannermatch.evaluation.groups import query_rows, read_groups
from bannermatch.store.collection import Collection
from bannermatch.verify.pipeline import LOCAL_M, Verifier, local_votes, single_threaded_faiss

sys.path.insert(0, "bench")
from rerank_eval import _labels


def _hit(same: np.ndarray, rows: list[int] | np.ndarray) -> bool:
    return bool(same[np.asarray(rows, np.int64)].any())


def main(root: str, groups: str) -> None:
    coll = Collection(root)
    data = coll.load()
    emb = np.asarray(data.embeddings, np.float32)
    verifier = Verifier.open(root, data.ids, emb)
    labels = _labels(coll, data.ids, read_groups(groups))
    queries = query_rows(labels)
    hits: dict[str, int] = {}
    times = []
    with single_threaded_faiss():  # as Verifier.verify does
        for q in queries:
            scores = emb @ emb[q]
            scores[q] = -np.inf
            order = np.argsort(-scores, kind="stable")[:-1]
            t0 = time.perf_counter()
            nb = verifier.index.search(verifier.store.features(q).descriptors, exclude=q)
            votes = local_votes(nb, len(verifier.store.ids))
            times.append(time.perf_counter() - t0)
            best = np.argsort(-votes, kind="stable")
            local = [int(r) for r in verifier.emb_row[best[votes[best] > 0]] if r >= 0]
            same = labels == labels[q]
            for n in (10, 50):
                merged = list(dict.fromkeys([*order[:n], *local[:LOCAL_M]]))
                even = list(dict.fromkeys([*order[: n // 2], *local]))
                even = list(dict.fromkeys([*even, *order]))[:n]
                for name, rows in (("global", order[:n]), ("merged", merged), ("even", even)):
                    hits[f"{name}@{n}"] = hits.get(f"{name}@{n}", 0) + _hit(same, rows)
    t = np.array(times) * 1000
    print(f"{len(queries)} queries, local M={LOCAL_M}")
    for n in (10, 50):
        print(
            f"recall@{n} of the candidates: global top {n} {hits[f'global@{n}'] / len(queries):.3f}"
            f"; global top {n} + local top {LOCAL_M} {hits[f'merged@{n}'] / len(queries):.3f}"
            f"; global {n // 2} + local {n - n // 2} {hits[f'even@{n}'] / len(queries):.3f}"
        )
    print(f"local search p50 {np.percentile(t, 50):.1f} ms, p99 {np.percentile(t, 99):.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
