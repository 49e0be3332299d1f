"""Geometric verification of global candidates and the combined score.

For each candidate: Hamming matches query -> candidate, kept when they pass
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
from pathlib import Path

import cv2
import numpy as np

from bannermatch.errors import CollectionError
from bannermatch.verify.features import Features, LocalStore

RATIO = 0.8
MIN_INLIERS = 10
HALF = 20.0  # inliers at which the evidence is one half
RANSAC_PX = 8.0  # reprojection error allowed, in pixels of the 512-px images
BURST = 1.0  # a query feature matching more candidates than this is down-weighted

_matcher = cv2.BFMatcher(cv2.NORM_HAMMING)


def good_matches(query: Features, cand: Features) -> np.ndarray:
    """``(m, 2)`` query / candidate feature indices that pass the ratio test."""
    if len(query.descriptors) < 2 or len(cand.descriptors) < 2:
        return np.zeros((0, 2), np.int64)
    pairs = _matcher.knnMatch(query.descriptors, cand.descriptors, k=2)
    good = [
        (p[0].queryIdx, p[0].trainIdx)
        for p in pairs
        if len(p) == 2 and p[0].distance < RATIO * p[1].distance
    ]
    return np.array(good, np.int64).reshape(-1, 2)


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


def rerank(
    query: Features,
    store: LocalStore,
    ids: list[str],
    rows: np.ndarray,
    scores: np.ndarray,
    *,
    workers: int = 2,
) -> Verified:
    """Verify candidates ``rows`` (embedding rows, ids in ``ids``) against ``query``
    and order them by the combined score. Candidates without local features keep
    their global score and 0 inliers."""
    local = store.row_of

    def feats(row: int) -> Features | None:
        r = local.get(ids[int(row)])
        return None if r is None else store.features(r)

    cands = [feats(r) for r in rows]
    none = np.zeros((0, 2), np.int64)
    with ThreadPoolExecutor(workers) as pool:
        matched = list(pool.map(lambda c: none if c is None else good_matches(query, c), cands))
        masks = list(
            pool.map(
                lambda cg: np.zeros(0, bool) if cg[0] is None else inlier_mask(query, *cg),
                zip(cands, matched, strict=True),
            )
        )
    weights = burst_weights(matched, len(query.descriptors))
    counts = np.array(
        [weights[g[m, 0]].sum() if len(g) else 0.0 for g, m in zip(matched, masks, strict=True)]
    )
    counts = np.floor(counts + 1e-9).astype(np.int64)
    new = np.array([combined(float(s), int(n)) for s, n in zip(scores, counts, strict=True)])
    order = np.lexsort((-counts, -new))
    return Verified(np.asarray(rows)[order], new[order].astype(np.float32), counts[order])


def rerank_for_query(
    collection: str | Path,
    ids: list[str],
    query: str | Features,
    rows: np.ndarray,
    scores: np.ndarray,
    k: int,
) -> Verified:
    """The top ``k`` of ``rows`` after verification; ``query`` is an item id of the
    collection or the features of an outside image."""
    store = LocalStore.load(collection)
    if store is None:
        raise CollectionError(
            f"{collection} has no local features: run `bannermatch index INPUT "
            f"--out {collection} --local` first"
        )
    if isinstance(query, str):
        row = store.row_of.get(query)
        if row is None:
            reason = store.bad.get(query, "not extracted yet (rerun index --local)")
            raise CollectionError(f"{query} has no local features: {reason}")
        query = store.features(row)
    out = rerank(query, store, ids, rows, scores)
    return Verified(out.rows[:k], out.scores[:k], out.inliers[:k])
