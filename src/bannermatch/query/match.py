"""Exact top-k cosine neighbours of every item, the unique ranking, near-duplicate groups.

Rows are L2-normalised, so cosine = inner product. The float32 rows are multiplied
block by block, each pair of blocks once (:mod:`bannermatch.query.topk`): memory is the
rows, a few ``block x block`` score blocks and O(N * k) output, never an N x N matrix.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.defaults import DEFAULT_K, TARGET_RECALL
from bannermatch.embed.models.registry import UNCALIBRATED_DUP_THRESHOLD, get_spec
from bannermatch.errors import BannermatchError, CollectionError, ModelError
from bannermatch.progress import progress_bar
from bannermatch.query import ann
from bannermatch.query.ann import AnnParams
from bannermatch.query.topk import BLOCK, topk_all_pairs
from bannermatch.store import atomic
from bannermatch.store.collection import (
    DUPLICATES,
    MATCH,
    NEIGHBORS,
    SCORES,
    Collection,
    ModelData,
)

#: near-duplicate groups named in match's summary
SHOWN_GROUPS = 5


def _float32_rows(emb: np.ndarray, block: int = 65536) -> np.ndarray:
    out = np.empty(emb.shape, np.float32)
    for start in range(0, len(emb), block):
        out[start : start + block] = emb[start : start + block]
    return out


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
    multiplied once (:mod:`bannermatch.query.topk`): half the work of a faiss search of
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


def shown_score(score: float) -> float:
    """A similarity as results show it: 4 decimals, never past [-1, 1] (float16 rounding
    can put a duplicate's cosine a hair above 1)."""
    return round(min(1.0, max(-1.0, float(score))), 4)


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
    #: "exact", or the approximate index's parameters, recall and timings (match.json's)
    index: dict[str, Any] = field(default_factory=lambda: {"kind": "exact"})
    #: the largest near-duplicate groups, as [{"id", "name"}, ...] (duplicates.json has all)
    largest_groups: list[list[dict[str, str]]] = field(default_factory=list)
    #: with --rerank: match.json's "rerank" (candidates, timings)
    rerank: dict[str, Any] | None = None

    def summary(self) -> str:
        text = (
            f"matched {self.count} items (top {self.k}) in {self.seconds:.2f}s; "
            f"{self.duplicate_groups} near-duplicate group(s) at >= {self.dup_threshold}"
        )
        for n, group in enumerate(self.largest_groups, start=1):
            text += f"\n  {n}. " + ", ".join(f"{g['id']} {g['name']!r}" for g in group[:6])
            text += f" and {len(group) - 6} more" if len(group) > 6 else ""
        if self.duplicate_groups > len(self.largest_groups):
            text += f"\n  ... {self.duplicate_groups - len(self.largest_groups)} more (--json)"
        if self.rerank:
            r = self.rerank
            text += (
                f"\nverified the top {r['k']} + {r['local']} local-feature candidates of each "
                f"item in {r['seconds']:.1f}s ({r['without_features']} without local features)"
            )
        if self.index["kind"] != "exact":
            ix = self.index
            text += (
                f"\napproximate index: {AnnParams.from_dict(ix).describe()}; "
                f"recall@{ix['recall_k']} {ix['recall']:.3f} against exact on "
                f"{ix['recall_sample']:,} sampled items (target {ix['target_recall']})"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"seconds": round(self.seconds, 3)}


def match(
    collection: str | os.PathLike[str],
    *,
    k: int = DEFAULT_K,
    model: str | None = None,
    dup_threshold: float | None = None,
    progress: bool = True,
    index: str = "exact",
    memory: int | None = None,
    target_recall: float = TARGET_RECALL,
    rerank: int | None = None,
) -> MatchResult:
    """Compute and store every item's neighbours, and the near-duplicate groups.

    ``index``: ``exact`` (faiss flat, blocked), or an approximate ``ivf`` / ``hnsw``
    index (:mod:`bannermatch.query.ann`) sized for ``memory`` bytes (default: half of what is
    available) and tuned to ``target_recall``; it is stored beside the neighbours for
    ``serve``, and its measured recall goes into match.json. ``rerank=K``: each item's
    top K and local-feature candidates are verified too (docs/verification.md), stored
    beside the global neighbours for ``serve``.
    """
    if index not in ann.KINDS:
        raise BannermatchError(f"unknown index {index!r}; choose one of {', '.join(ann.KINDS)}")
    if not 0 < target_recall <= 1:
        raise BannermatchError("the target recall must be in (0, 1]")
    data = Collection(collection).load(model)
    if k < 1:
        raise BannermatchError("k must be at least 1")
    threshold = default_dup_threshold(data.manifest) if dup_threshold is None else dup_threshold
    t0 = time.perf_counter()
    n = len(data.ids)
    k = max(0, min(k, n - 1))
    want = max(k, min(rerank or 0, n - 1))  # the global candidates of the re-rank
    built: Any = None
    index_info: dict[str, Any] = {"kind": "exact"}
    if k < 1:
        nb, sc = np.zeros((n, 0), np.uint32), np.zeros((n, 0), np.float32)
    elif index == "exact":
        nb, sc = topk_all(data.embeddings, want, progress=progress)
    else:
        built, index_info, nb, sc = _approximate(
            data.embeddings, index, want, memory, target_recall, progress
        )
    verified = None
    if rerank and k:
        from bannermatch.verify.search import verified_all

        verified = verified_all(collection, data, (nb, sc), k, progress=progress)
    nb, sc = nb[:, :k], sc[:, :k]
    groups = duplicate_groups(nb, sc, threshold) if k else []
    seconds = time.perf_counter() - t0
    info = {
        "k": k,
        "count": n,
        "generation": data.manifest["generation"],
        "dup_threshold": threshold,
        "duplicate_groups": len(groups),
        "seconds": round(seconds, 3),
        "index": index_info,
    }
    _store(data, nb, sc, groups, info, built, verified)
    return MatchResult(
        str(collection),
        data.key,
        n,
        k,
        threshold,
        len(groups),
        seconds,
        index_info,
        _largest(collection, data.ids, groups),
        None if verified is None else verified.info,
    )


def _store(
    data: ModelData,
    nb: np.ndarray,
    sc: np.ndarray,
    groups: list[list[int]],
    info: dict[str, Any],
    built: Any,
    verified: Any,
) -> None:
    """Write the neighbours, duplicates, match.json and, when made, the approximate index
    and the verified neighbours, as one group; remove what an earlier match left."""
    folder = data.folder
    writers: dict[str, atomic.Writer] = {
        NEIGHBORS: lambda p: _save(p, nb.astype(np.uint32)),
        SCORES: lambda p: _save(p, sc.astype(np.float16)),
        DUPLICATES: lambda p: p.write_text(
            json.dumps([[data.ids[r] for r in g] for g in groups], ensure_ascii=False), "utf-8"
        ),
    }
    if built is not None:
        writers[ann.ANN_FILE] = lambda p: ann.save(built, p)
    if verified is not None:
        writers |= verified.writers()
        info["rerank"] = verified.info
    writers[MATCH] = lambda p: p.write_text(json.dumps(info, indent=1), "utf-8")
    atomic.commit_files(folder, writers)
    if built is None:  # an index of an earlier match is of no use now
        (folder / ann.ANN_FILE).unlink(missing_ok=True)
    if verified is None:  # nor the verified neighbours of an earlier `match --rerank`
        for stale in folder.glob("verified_*.npy"):
            stale.unlink()


def _largest(
    collection: str | os.PathLike[str], ids: list[str], groups: list[list[int]]
) -> list[list[dict[str, str]]]:
    """The largest near-duplicate groups, as ids and names, for the summary."""
    shown = groups[:SHOWN_GROUPS]
    with Collection(collection).catalog() as cat:
        names = cat.names(ids[r] for g in shown for r in g)
    return [[{"id": ids[r], "name": names.get(ids[r], "")} for r in g] for g in shown]


def _approximate(
    emb: np.ndarray,
    kind: str,
    k: int,
    memory: int | None,
    target_recall: float,
    progress: bool,
) -> tuple[Any, dict[str, Any], np.ndarray, np.ndarray]:
    """Build, tune and search an approximate index; its description for match.json."""
    n, d = emb.shape
    params = ann.choose_params(kind, n, d, memory)
    t0 = time.perf_counter()
    bar = progress_bar(n, f"building {params.kind}", enabled=progress, unit="item")
    built = ann.build(emb, params, on_rows=bar.update)
    bar.close()
    t1 = time.perf_counter()
    tuning = ann.tune(built, params, emb, k, target_recall)
    t2 = time.perf_counter()
    bar = progress_bar(n, "matching", enabled=progress, unit="item")
    nb, sc = ann.topk_all(built, params, emb, k, on_rows=bar.update)
    bar.close()
    t3 = time.perf_counter()
    info = {
        **params.to_dict(),
        "recall": round(tuning.recall, 4),
        "recall_k": k,
        "recall_sample": tuning.sample,
        "target_recall": target_recall,
        "tried": [[b, round(r, 4)] for b, r in tuning.tried],
        "memory_bytes": ann.index_bytes(params, n, d),
        "build_seconds": round(t1 - t0, 3),
        "tune_seconds": round(t2 - t1, 3),
        "search_seconds": round(t3 - t2, 3),
    }
    return built, info, nb, sc


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
