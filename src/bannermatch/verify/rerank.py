"""Geometric verification of global candidates and the combined score.

For each candidate: Hamming matches query -> candidate (faiss, two nearest
neighbours: about four times faster than OpenCV's ``BFMatcher.knnMatch`` on
400 x 400 ORB descriptors here), kept when they pass
Lowe's ratio test (0.8); a similarity transform (rotation, uniform scale,
translation: what a crop, rescale or re-framing of a cover does) is fitted with
RANSAC (``cv2.estimateAffinePartial2D``) and its inliers counted.

Score: ``s + (1 - s) * e`` with the evidence ``e = n / (n + HALF)`` for
``n >= MIN_INLIERS`` inliers, else 0. It stays in [0, 1], never lowers a global
score (so a near-duplicate pair stays above its threshold) and moves a verified
candidate above unverified ones of a similar global score.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import faiss
import numpy as np

from bannermatch.verify.features import Features, LocalStore

RATIO = 0.8
MIN_INLIERS = 10
HALF = 20.0  # inliers at which the evidence is one half
RANSAC_PX = 8.0  # reprojection error allowed, in pixels of the 512-px images
BURST = 1.0  # a query feature matching more candidates than this is down-weighted


def good_matches(query: Features, cand: Features) -> np.ndarray:
    """``(m, 2)`` query / candidate feature indices that pass the ratio test."""
    if len(query.descriptors) < 2 or len(cand.descriptors) < 2:
        return np.zeros((0, 2), np.int64)
    dist, idx = faiss.knn_hamming(
        np.ascontiguousarray(query.descriptors), np.ascontiguousarray(cand.descriptors), 2
    )
    ok = np.flatnonzero((idx[:, 1] >= 0) & (dist[:, 0] < RATIO * dist[:, 1]))
    return np.stack([ok, idx[ok, 0]], axis=1).astype(np.int64)


def inlier_mask(query: Features, cand: Features, good: np.ndarray) -> np.ndarray:
    """Which of ``good`` agree on one similarity transform (RANSAC)."""
    if len(good) < MIN_INLIERS:
        return np.zeros(len(good), bool)
    model, mask = cv2.estimateAffinePartial2D(
        query.keypoints[good[:, 0]],
        cand.keypoints[good[:, 1]],
        method=cv2.RANSAC,
        ransacReprojThreshold=RANSAC_PX,
        maxIters=500,
    )
    return np.zeros(len(good), bool) if model is None else mask.ravel().astype(bool)


def inliers(query: Features, cand: Features) -> int:
    """Inliers of a similarity transform fitted to the ratio-test matches."""
    return int(inlier_mask(query, cand, good_matches(query, cand)).sum())


def burst_weights(matched: list[np.ndarray], n_query: int) -> np.ndarray:
    """Per query feature: ``min(1, BURST / c)`` where ``c`` is how many candidates it
    matched. A feature of a shared template (frame, rating box, publisher logo)
    matches many candidates and counts little in each; one that matches a single
    candidate counts fully."""
    counts = np.zeros(n_query, np.int64)
    for good in matched:
        counts[np.unique(good[:, 0])] += 1
    return np.minimum(1.0, BURST / np.maximum(counts, 1))


def combined(score: float, n_inliers: int) -> float:
    evidence = n_inliers / (n_inliers + HALF) if n_inliers >= MIN_INLIERS else 0.0
    s = min(max(score, 0.0), 1.0)
    return s + (1.0 - s) * evidence


@dataclass
class Verified:
    rows: np.ndarray  # re-ordered candidate rows (embedding rows)
    scores: np.ndarray  # combined scores, in [0, 1]
    inliers: np.ndarray  # int, per row


def match_counts(
    query: Features,
    store: LocalStore,
    store_rows: np.ndarray,
    *,
    workers: int = 1,
    idf: np.ndarray | None = None,
) -> np.ndarray:
    """Burstiness-weighted inliers of ``query`` against each store row of ``store_rows``
    (-1: an item without local features, 0 inliers). ``idf``: a collection-wide weight
    per query feature; each feature counts the smaller of it and its burstiness weight."""
    none = np.zeros((0, 2), np.int64)
    cands = [None if r < 0 else store.features(int(r)) for r in store_rows]

    def one(cand: Features | None) -> tuple[np.ndarray, np.ndarray]:
        if cand is None:
            return none, np.zeros(0, bool)
        good = good_matches(query, cand)
        return good, inlier_mask(query, cand, good)

    if workers > 1 and len(cands) > 1:
        with ThreadPoolExecutor(workers) as pool:
            found = list(pool.map(one, cands))
    else:
        found = [one(c) for c in cands]
    weights = burst_weights([g for g, _ in found], len(query.descriptors))
    if idf is not None:
        weights = np.minimum(weights, idf)
    counts = np.array([weights[g[m, 0]].sum() if len(g) else 0.0 for g, m in found])
    return np.floor(counts + 1e-9).astype(np.int64)


def by_evidence(rows: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> Verified:
    """Candidates ordered by the combined score (ties: more inliers first)."""
    new = np.array([combined(float(s), int(n)) for s, n in zip(scores, counts, strict=True)])
    order = np.lexsort((-counts, -new))
    return Verified(
        np.asarray(rows)[order], new[order].astype(np.float32), np.asarray(counts)[order]
    )


def rerank(
    query: Features,
    store: LocalStore,
    ids: list[str],
    rows: np.ndarray,
    scores: np.ndarray,
    *,
    workers: int = 2,
) -> Verified:
    """Verify every candidate ``rows`` (embedding rows, ids in ``ids``) against ``query``
    and order them by the combined score. Candidates without local features keep
    their global score and 0 inliers."""
    local = store.row_of
    store_rows = np.array([local.get(ids[int(r)], -1) for r in rows], np.int64)
    counts = match_counts(query, store, store_rows, workers=workers)
    return by_evidence(rows, scores, counts)
