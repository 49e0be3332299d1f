"""Exact top-k cosine neighbours of every item, the unique ranking, near-duplicate groups.

Rows are L2-normalised, so cosine = inner product. The float32 rows are multiplied
block by block, each pair of blocks once (:mod:`bannermatch.topk`): memory is the
rows, a few ``block x block`` score blocks and O(N * k) output, never an N x N matrix.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .collection import (
    DUPLICATES,
    MATCH,
    NEIGHBORS,
    SCORES,
    Collection,
    ModelData,
)
from .errors import BannermatchError, CollectionError, ModelError
from .models.registry import UNCALIBRATED_DUP_THRESHOLD, get_spec
from .progress import progress_bar
from .topk import BLOCK, topk_all_pairs

DEFAULT_K = 10


def _float32_rows(emb: np.ndarray, block: int = 65536) -> np.ndarray:
    out = np.empty(emb.shape, np.float32)
    for start in range(0, len(emb), block):
        out[start : start + block] = emb[start : start + block]
    return out


def build_index(emb: np.ndarray) -> Any:
    import faiss

    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(_float32_rows(emb))
    return index


def drop_self(
    ids: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query row from its own result list (k+1 -> k columns)."""
    is_self = ids == rows[:, None]
    # rows that did not find themselves (exact ties) drop their last column instead
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    keep = ~is_self
    return ids[keep].reshape(len(rows), k), scores[keep].reshape(len(rows), k)


def topk_all(
    emb: np.ndarray,
    k: int = DEFAULT_K,
    *,
    block: int = BLOCK,
    progress: bool = False,
    out_ids: np.ndarray | None = None,
    out_scores: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of every row of ``emb`` among the others.

    Returns (uint32 row ids, float32 scores), nearest first. Each pair of row blocks is
    multiplied once (:mod:`bannermatch.topk`): half the work of a faiss search of
    every row.
    """
    n = len(emb)
    k = min(k, n - 1)
    if k < 1:
        raise BannermatchError("matching needs at least two items")
    bar = progress_bar(n, "matching", enabled=progress, unit="item")
    ids, scores = topk_all_pairs(_float32_rows(emb), k, block=block, progress=bar.update)
    bar.close()
    nb = out_ids if out_ids is not None else np.empty((n, k), np.uint32)
    sc = out_scores if out_scores is not None else np.empty((n, k), np.float32)
    nb[:] = ids
    sc[:] = scores
    return nb, sc


def unique_order(scores: np.ndarray) -> np.ndarray:
    """Rows sorted by ascending similarity to their first neighbour (most unique first)."""
    first = np.asarray(scores[:, 0], np.float32)
    return np.argsort(first, kind="stable")


def duplicate_groups(
    neighbors: np.ndarray, scores: np.ndarray, threshold: float
) -> list[list[int]]:
    """Connected components of the graph of neighbour pairs scoring >= ``threshold``."""
    parent = np.arange(len(neighbors))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return int(x)

    rows, cols = np.nonzero(np.asarray(scores, np.float32) >= threshold)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        a, b = find(r), find(int(neighbors[r, c]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for r in np.unique(np.concatenate([rows, neighbors[rows, cols].astype(np.int64)])).tolist():
        groups.setdefault(find(r), []).append(r)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def default_dup_threshold(manifest: dict[str, Any]) -> float:
    try:
        return get_spec(str(manifest.get("model"))).dup_threshold
    except ModelError:
        return UNCALIBRATED_DUP_THRESHOLD


@dataclass
class MatchResult:
    collection: str
    model_key: str
    count: int
    k: int
    dup_threshold: float
    duplicate_groups: int
    seconds: float

    def summary(self) -> str:
        return (
            f"matched {self.count} items (top {self.k}) in {self.seconds:.2f}s; "
            f"{self.duplicate_groups} near-duplicate group(s) at >= {self.dup_threshold}"
        )

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"seconds": round(self.seconds, 3)}


def match(
    collection: str | os.PathLike[str],
    *,
    k: int = DEFAULT_K,
    model: str | None = None,
    dup_threshold: float | None = None,
    progress: bool = True,
) -> MatchResult:
    """Compute and store every item's neighbours, and the near-duplicate groups."""
    data = Collection(collection).load(model)
    if k < 1:
        raise BannermatchError("k must be at least 1")
    threshold = default_dup_threshold(data.manifest) if dup_threshold is None else dup_threshold
    t0 = time.perf_counter()
    n = len(data.ids)
    k = max(0, min(k, n - 1))
    folder = data.folder
    if k < 1:
        nb, sc = np.zeros((n, 0), np.uint32), np.zeros((n, 0), np.float32)
    else:
        nb, sc = topk_all(data.embeddings, k, progress=progress)
    groups = duplicate_groups(nb, sc, threshold) if k else []
    seconds = time.perf_counter() - t0
    info = {
        "k": k,
        "count": n,
        "generation": data.manifest["generation"],
        "dup_threshold": threshold,
        "duplicate_groups": len(groups),
        "seconds": round(seconds, 3),
    }
    atomic.commit_files(
        folder,
        {
            NEIGHBORS: lambda p: _save(p, nb.astype(np.uint32)),
            SCORES: lambda p: _save(p, sc.astype(np.float16)),
            DUPLICATES: lambda p: p.write_text(
                json.dumps([[data.ids[r] for r in g] for g in groups], ensure_ascii=False), "utf-8"
            ),
            MATCH: lambda p: p.write_text(json.dumps(info, indent=1), "utf-8"),
        },
    )
    return MatchResult(str(collection), data.key, n, k, threshold, len(groups), seconds)


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def load_duplicates(data: ModelData) -> list[list[str]]:
    if data.match_info is None:
        return []
    try:
        groups = json.loads((data.folder / DUPLICATES).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        groups = exc
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise CollectionError(
            f"{data.folder}/{DUPLICATES} is missing or damaged; "
            f"run `bannermatch match {data.folder.parent.parent}`"
        )
    return groups
