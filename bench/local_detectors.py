"""ORB vs SIFT for the verified re-rank, measured side by side (issue 16).

    python bench/local_detectors.py /tmp/c16 /work/shared/data/covers/covers.tsv --queries 100

On the first ``--queries`` same-game queries of a collection: each detector's
features for every image (long side 512 px, at most 400 features), then the
query's global top ``--k`` candidates verified exactly as the re-rank does (ratio
test 0.8, similarity RANSAC, burstiness weights over the candidates; brute-force
matching with each descriptor's norm). Prints recall@1 after verification,
extraction time an image (CPU), matching time a query (CPU) and bytes an item.
The same embeddings and candidates for both; one process, one thread, so
the times are ratios measured side by side.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from bannermatch.evaluation.groups import query_rows, read_groups
from bannermatch.images import load_image
from bannermatch.store.collection import Collection
from bannermatch.verify.features import LONG_SIDE, MAX_FEATURES, Features
from bannermatch.verify.rerank import RATIO, burst_weights, by_evidence, inlier_mask

sys.path.insert(0, "bench")
from rerank_eval import _labels

#: AKAZE (and BRISK) left OpenCV's main modules in 5.x (opencv-contrib now), so they are not
#: compared: the project depends on opencv-python-headless only
DETECTORS = {
    "orb": (lambda: cv2.ORB_create(nfeatures=MAX_FEATURES, fastThreshold=10), cv2.NORM_HAMMING),
    "sift": (lambda: cv2.SIFT_create(nfeatures=MAX_FEATURES), cv2.NORM_L2),
}


def extract(detector: cv2.Feature2D, source: str) -> Features:
    grey = cv2.cvtColor(np.asarray(load_image(source).image), cv2.COLOR_RGB2GRAY)
    scale = LONG_SIDE / max(grey.shape[:2])
    if scale < 1:
        size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    kps, desc = detector.detectAndCompute(grey, None)
    if desc is None:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    best = np.argsort([-kp.response for kp in kps], kind="stable")[:MAX_FEATURES]
    pts = np.array([kps[i].pt for i in best], np.float32)
    return Features(pts, desc[best])


def good(matcher: cv2.BFMatcher, q: Features, c: Features) -> np.ndarray:
    if len(q.descriptors) < 2 or len(c.descriptors) < 2:
        return np.zeros((0, 2), np.int64)
    pairs = matcher.knnMatch(q.descriptors, c.descriptors, k=2)
    ok = [
        (p[0].queryIdx, p[0].trainIdx)
        for p in pairs
        if len(p) == 2 and p[0].distance < RATIO * p[1].distance
    ]
    return np.array(ok, np.int64).reshape(-1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection")
    parser.add_argument("groups")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    coll = Collection(args.collection)
    data = coll.load()
    with coll.catalog() as cat:
        sources = [coll.resolve_source(cat.get(i).source) for i in data.ids]  # type: ignore[union-attr]
    emb = np.asarray(data.embeddings, np.float32)
    labels = _labels(coll, data.ids, read_groups(args.groups))
    queries = query_rows(labels)[: args.queries]
    for name, (make, norm) in DETECTORS.items():
        detector, matcher = make(), cv2.BFMatcher(norm)
        c0 = time.process_time()
        feats = [extract(detector, s) for s in sources]
        extract_ms = (time.process_time() - c0) * 1000 / len(sources)
        nbytes = np.mean([f.descriptors.nbytes + 4 * len(f.keypoints) for f in feats])
        first, match_ms = [], []
        for q in queries:
            scores = emb @ emb[q]
            scores[q] = -np.inf
            order = np.argsort(-scores, kind="stable")[:-1]
            top = order[: args.k]
            c0 = time.process_time()
            found = [good(matcher, feats[q], feats[r]) for r in top]
            masks = [inlier_mask(feats[q], feats[r], g) for r, g in zip(top, found, strict=True)]
            w = burst_weights(found, len(feats[q].descriptors))
            counts = np.floor(
                [w[g[m, 0]].sum() if len(g) else 0 for g, m in zip(found, masks, strict=True)]
            )
            out = by_evidence(top, scores[top], counts.astype(np.int64))
            match_ms.append((time.process_time() - c0) * 1000)
            ranked = np.concatenate([out.rows, order[args.k :]])
            first.append(int(np.flatnonzero(labels[ranked] == labels[q])[0]) + 1)
        r1 = float(np.mean(np.array(first) == 1))
        print(
            f"{name:6s} recall@1 {r1:.3f} (top {args.k} verified, {len(queries)} queries)  "
            f"extract {extract_ms:.1f} ms/img  match {np.median(match_ms):.1f} ms/query "
            f"(p50, CPU)  {nbytes / 1024:.1f} KB/item  "
            f"features {np.mean([len(f.keypoints) for f in feats]):.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
