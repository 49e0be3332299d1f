"""Verified neighbours for the commands: one query (``similar --rerank``) and every
item of a collection (``match --rerank``), both through :class:`.pipeline.Verifier`."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.images import DecodedImage
from bannermatch.progress import progress_bar
from bannermatch.store.atomic import save_npy
from bannermatch.store.collection import ModelData
from bannermatch.verify.features import extract_array
from bannermatch.verify.pipeline import LOCAL_M, Verifier
from bannermatch.verify.rerank import MIN_INLIERS, Verified

log = logging.getLogger(__name__)


def verified_similar(
    collection: str | os.PathLike[str],
    data: ModelData,
    query: str | tuple[DecodedImage, np.ndarray],
    candidates: tuple[np.ndarray, np.ndarray],
    k: int,
) -> Verified:
    """The top ``k`` after verification of the global ``candidates`` and the local-feature
    ones; ``query`` is an item id, or an outside image with its embedding."""
    verifier = Verifier.open(collection, data.ids, data.embeddings)
    if isinstance(query, str):
        row = data.row_of[query]
        feats = verifier.item_features(row, query)
        out = verifier.verify(feats, data.embeddings[row], candidates, exclude=row)
    else:
        img, vector = query
        out = verifier.verify(extract_array(np.asarray(img.image)), vector, candidates)
    return Verified(out.rows[:k], out.scores[:k], out.inliers[:k])


#: files ``match --rerank`` writes beside neighbors.npy (same commit, same rows)
VERIFIED_NEIGHBORS = "verified_neighbors.npy"
VERIFIED_SCORES = "verified_scores.npy"
VERIFIED_INLIERS = "verified_inliers.npy"


@dataclass
class VerifiedNeighbours:
    """Every item's verified neighbours (``match --rerank``), what ``serve`` shows."""

    rows: np.ndarray  # uint32 (N, k)
    scores: np.ndarray  # float16 (N, k), the combined score
    inliers: np.ndarray  # uint16 (N, k)
    info: dict[str, Any]  # match.json's "rerank"

    @property
    def k(self) -> int:
        return int(self.rows.shape[1])

    def writers(self) -> dict[str, Callable[[Path], None]]:
        """For :func:`atomic.commit_files`, in the commit of ``match``."""
        return {
            VERIFIED_NEIGHBORS: lambda p: save_npy(p, self.rows.astype(np.uint32)),
            VERIFIED_SCORES: lambda p: save_npy(p, self.scores.astype(np.float16)),
            VERIFIED_INLIERS: lambda p: save_npy(p, self.inliers.astype(np.uint16)),
        }

    def hit_fields(self, row: int, n: int) -> list[dict[str, Any]]:
        """``inliers`` and ``verified`` of row ``row``'s first ``n`` neighbours."""
        return [
            {"inliers": int(i), "verified": bool(i >= MIN_INLIERS)}
            for i in np.asarray(self.inliers[row, :n])
        ]


def verified_all(
    collection: str | os.PathLike[str],
    data: ModelData,
    candidates: tuple[np.ndarray, np.ndarray],
    k: int,
    *,
    local: int = LOCAL_M,
    workers: int | None = None,
    progress: bool = True,
) -> VerifiedNeighbours:
    """``match --rerank``: each item's global ``candidates`` (top K rows and scores) and
    its local-feature ones verified; the best ``k`` kept. Items without local features
    keep their global neighbours (0 inliers). One item per thread."""
    t0, c0 = time.perf_counter(), time.process_time()
    emb = np.asarray(data.embeddings, np.float32)
    verifier = Verifier.open(collection, data.ids, emb)
    nb, sc = candidates
    n = len(data.ids)
    rows = np.zeros((n, k), np.uint32)
    scores = np.zeros((n, k), np.float32)
    inliers = np.zeros((n, k), np.uint16)

    def one(row: int) -> None:
        srow = int(verifier.store_row[row])
        glob = (np.asarray(nb[row], np.int64), np.asarray(sc[row], np.float32))
        if srow < 0:
            rows[row], scores[row] = glob[0][:k], glob[1][:k]
            return
        out = verifier.verify(
            verifier.store.features(srow), emb[row], glob, exclude=row, local=local
        )
        rows[row], scores[row] = out.rows[:k], out.scores[:k]
        inliers[row] = np.minimum(out.inliers[:k], np.iinfo(np.uint16).max)

    bar = progress_bar(n, "verifying", enabled=progress, unit="item")
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for _ in pool.map(one, range(n)):
            bar.update(1)
    bar.close()
    missing = int((verifier.store_row < 0).sum())
    if missing:
        log.warning("%d item(s) have no local features and keep their global neighbours", missing)
    info = {
        "k": int(nb.shape[1]),
        "local": local,
        "stored": k,
        "without_features": missing,
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(time.process_time() - c0, 3),
    }
    return VerifiedNeighbours(rows, scores, inliers, info)


def load_verified(data: ModelData) -> VerifiedNeighbours | None:
    """The neighbours ``match --rerank`` stored, or None (no re-rank, or stale files)."""
    info = (data.match_info or {}).get("rerank")
    if not info:
        return None
    try:
        arrays = [
            np.load(data.folder / name, mmap_mode="r", allow_pickle=False)
            for name in (VERIFIED_NEIGHBORS, VERIFIED_SCORES, VERIFIED_INLIERS)
        ]
    except (OSError, ValueError) as exc:
        log.warning("ignoring the verified neighbours of %s: %s", data.folder, exc)
        return None
    if any(a.shape != (len(data.ids), info["stored"]) for a in arrays):
        log.warning("ignoring the verified neighbours of %s: wrong shape", data.folder)
        return None
    rows, scores, inliers = arrays
    return VerifiedNeighbours(rows, scores, inliers, info)
