"""Retrieval metrics after the verified re-rank (``eval --rerank``, bench/rerank_eval.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bannermatch.evaluation.groups import Metrics, metrics_from_ranks, query_rows
from bannermatch.verify.features import Features, LocalStore, extract_file
from bannermatch.verify.rerank import rerank


def extract_many(sources: Sequence[str], workers: int | None = None) -> list[Features]:
    """Features of readable image files (they were decoded once already)."""
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return list(pool.map(extract_file, sources))


def _first_and_ap(order: np.ndarray, same: np.ndarray) -> tuple[int, float]:
    hits = same[order]
    precision = np.cumsum(hits) / np.arange(1, len(order) + 1)
    return int(hits.argmax() + 1), float((precision * hits).sum() / hits.sum())


def reranked_metrics(
    emb: np.ndarray,
    labels: np.ndarray,
    store: LocalStore,
    ids: list[str],
    k: int,
    ks: Sequence[int],
) -> tuple[Metrics, np.ndarray]:
    """Metrics of the global ranking with its top ``k`` re-ranked (``k=0``: global only),
    and the re-rank time of each query in seconds. ``ids[i]`` is row i's id in ``store``."""
    emb = np.asarray(emb, np.float32)
    labels = np.asarray(labels)
    local = store.row_of
    first, ap, times = [], [], []
    for q in query_rows(labels):
        scores = emb @ emb[q]
        scores[q] = -np.inf
        order = np.argsort(-scores, kind="stable")[:-1]
        if k and ids[q] in local:
            t0 = time.perf_counter()
            top = order[:k]
            out = rerank(store.features(local[ids[q]]), store, ids, top, scores[top])
            times.append(time.perf_counter() - t0)
            order = np.concatenate([out.rows, order[k:]])
        f, a = _first_and_ap(order, labels == labels[q])
        first.append(f)
        ap.append(a)
    return metrics_from_ranks(np.array(first), np.array(ap), ks), np.array(times)


def store_of(features: Sequence[Features]) -> tuple[LocalStore, list[str]]:
    """An in-memory store of ``features``, row i under id ``str(i)``."""
    store = LocalStore.empty()
    ids = [str(i) for i in range(len(features))]
    store.extend(list(zip(ids, features, strict=True)))
    return store, ids
