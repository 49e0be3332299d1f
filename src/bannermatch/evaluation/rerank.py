"""Retrieval metrics after the verified re-rank (``eval --rerank``, bench/rerank_eval.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bannermatch.evaluation.groups import Metrics, metrics_from_ranks, query_rows
from bannermatch.verify.features import Features, LocalStore, extract_file
from bannermatch.verify.pipeline import LOCAL_M, Verifier


def extract_many(sources: Sequence[str], workers: int | None = None) -> list[Features]:
    """Features of readable image files (they were decoded once already)."""
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return list(pool.map(extract_file, sources))


def _first_and_ap(order: np.ndarray, same: np.ndarray) -> tuple[int, float]:
    hits = same[order]
    precision = np.cumsum(hits) / np.arange(1, len(order) + 1)
    return int(hits.argmax() + 1), float((precision * hits).sum() / hits.sum())


def reranked_order(
    verifier: Verifier, emb: np.ndarray, q: int, k: int, local: int = LOCAL_M, idf: bool = False
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The whole ranking of query row ``q``: its top ``k`` global candidates and ``local``
    local-feature ones verified first, the rest in global order; and the wall-clock and
    CPU seconds of the verification (None when it did not run: ``k=0`` or no features).
    CPU time is this thread's: on a machine shared with other work, the fairer cost."""
    scores = emb @ emb[q]
    scores[q] = -np.inf
    order = np.argsort(-scores, kind="stable")[:-1]
    if not k or verifier.store_row[q] < 0:
        return order, None
    t0, c0 = time.perf_counter(), time.thread_time()
    top = order[:k]
    out = verifier.verify(
        verifier.store.features(int(verifier.store_row[q])),
        emb[q],
        (top, scores[top]),
        exclude=q,
        local=local,
        idf=idf,
    )
    seconds = (time.perf_counter() - t0, time.thread_time() - c0)
    return np.concatenate([out.rows, order[~np.isin(order, out.rows)]]), seconds


def reranked_metrics(
    emb: np.ndarray,
    labels: np.ndarray,
    verifier: Verifier,
    k: int,
    ks: Sequence[int],
    *,
    local: int = LOCAL_M,
    workers: int | None = None,
    idf: bool = False,
) -> tuple[Metrics, np.ndarray]:
    """Metrics of the global ranking with its top ``k`` (and ``local`` local-feature
    candidates) verified (``k=0``: global only), and the verification time of each
    query in seconds, ``(n, 2)``: wall-clock, CPU. Queries run one per thread."""
    emb = np.asarray(emb, np.float32)
    labels = np.asarray(labels)

    def one(q: int) -> tuple[int, float, tuple[float, float] | None]:
        order, seconds = reranked_order(verifier, emb, int(q), k, local, idf)
        first, ap = _first_and_ap(order, labels == labels[q])
        return first, ap, seconds

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        found = list(pool.map(one, query_rows(labels)))
    first = np.array([f for f, _, _ in found], np.int64)
    ap = np.array([a for _, a, _ in found])
    times = np.array([t for _, _, t in found if t is not None]).reshape(-1, 2)
    return metrics_from_ranks(first, ap, ks), times


def store_of(features: Sequence[Features]) -> tuple[LocalStore, list[str]]:
    """An in-memory store of ``features``, row i under id ``str(i)``."""
    store = LocalStore.empty()
    ids = [str(i) for i in range(len(features))]
    store.extend(list(zip(ids, features, strict=True)))
    return store, ids


def reranked_on_files(
    sources: Sequence[str], emb: np.ndarray, labels: np.ndarray, k: int, ks: Sequence[int]
) -> tuple[Metrics, float]:
    """``eval --rerank``: features of ``sources`` (the rows of ``emb``) and their index
    in memory, then :func:`reranked_metrics`; and the mean verification CPU seconds."""
    store, ids = store_of(extract_many(sources))
    verifier = Verifier.in_memory(store, ids, np.asarray(emb, np.float32))
    metrics, times = reranked_metrics(emb, labels, verifier, k, ks)
    return metrics, float(times[:, 1].mean()) if len(times) else 0.0


def reranked_copy_ranks(
    database: Sequence[str],
    queries: Sequence[str],
    db_emb: np.ndarray,
    query_emb: np.ndarray,
    targets: np.ndarray,
    k: int,
    *,
    workers: int | None = None,
) -> tuple[np.ndarray, float]:
    """``eval --copies --rerank``: the 1-based rank of each query's target database row
    after verification of its top ``k`` and local-feature candidates (the rest in
    global order); and the mean verification CPU seconds a query. A query without
    features keeps its global ranking."""
    store, ids = store_of(extract_many(database, workers))
    verifier = Verifier.in_memory(store, ids, np.asarray(db_emb, np.float32))
    q_feats = extract_many(queries, workers)
    db = np.asarray(db_emb, np.float32)

    def one(i: int) -> tuple[int, float]:
        vec = np.asarray(query_emb[i], np.float32)
        scores = db @ vec
        order = np.argsort(-scores, kind="stable")
        c0 = time.thread_time()
        top = order[:k]
        out = verifier.verify(q_feats[i], vec, (top, scores[top]))
        seconds = time.thread_time() - c0
        order = np.concatenate([out.rows, order[~np.isin(order, out.rows)]])
        return int(np.flatnonzero(order == targets[i])[0]) + 1, seconds

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        found = list(pool.map(one, range(len(queries))))
    ranks = np.array([r for r, _ in found], np.int64)
    return ranks, float(np.mean([t for _, t in found])) if found else 0.0
