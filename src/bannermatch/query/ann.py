"""Approximate nearest neighbours for large collections: ``match --index ivf|hnsw``.

faiss indexes over the L2-normalised rows (inner product = cosine):

- ``ivf``: an inverted file with ``nlist`` k-means centroids trained on a sample
  of the rows; the lists hold the float32 rows (IVF-Flat) when they fit the memory
  budget, else 8-bit scalar-quantised rows (IVF-SQ8, a quarter of the size), else
  product-quantised codes (IVF-PQ, ``m`` bytes a row). Quantised candidates are
  re-scored exactly from ``embeddings.npy``. ``nprobe`` lists are searched per query.
- ``hnsw``: a graph over the float32 rows (``M`` links per node), searched with a
  beam of ``efSearch``.

Parameters come from N, the dimension and the memory budget (:func:`choose_params`);
the search breadth (``nprobe`` or ``efSearch``) is then raised until the recall of
the approximate top-k against the exact top-k, measured on a random sample of the
rows, reaches the target (:func:`tune`). A neighbour counts as found when its exact
score reaches the k-th exact score, so ties (identical images) do not count as misses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bannermatch.defaults import TARGET_RECALL
from bannermatch.errors import BannermatchError
from bannermatch.query.topk import drop_own, exact_topk
from bannermatch.store.collection import ModelData

if TYPE_CHECKING:
    import faiss

KINDS = ("exact", "ivf", "hnsw")
ANN_FILE = "ann.faiss"

#: items whose exact neighbours are computed to measure recall
RECALL_SAMPLE = 1000
#: k-means training points per centroid (faiss warns under 39; 256 is plenty)
TRAIN_PER_CENTROID = 64
#: PQ candidates re-scored exactly, per neighbour asked for
RERANK_FACTOR = 4
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
BLOCK = 16384


@dataclass
class AnnParams:
    """What an approximate index is and how it is searched (stored in match.json)."""

    kind: str  # "ivf-flat", "ivf-sq8", "ivf-pq" or "hnsw"
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0  # PQ sub-quantisers (bytes per row), 8 bits each
    hnsw_m: int = 0
    ef_construction: int = 0
    ef_search: int = 0
    train_size: int = 0

    @property
    def breadth(self) -> int:
        return self.ef_search if self.kind == "hnsw" else self.nprobe

    def describe(self) -> str:
        if self.kind == "hnsw":
            return f"hnsw M={self.hnsw_m} efSearch={self.ef_search}"
        pq = f" m={self.pq_m}" if self.kind == "ivf-pq" else ""
        return f"{self.kind} nlist={self.nlist} nprobe={self.nprobe}{pq}"

    @property
    def quantised(self) -> bool:
        """Whether the index holds approximations of the rows (its scores are re-computed)."""
        return self.kind in ("ivf-sq8", "ivf-pq")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k == "kind"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnnParams:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``), else the machine's total."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def index_bytes(params: AnnParams, n: int, d: int) -> int:
    """The memory an index of ``n`` rows of dimension ``d`` takes (estimate)."""
    if params.kind == "hnsw":  # float32 rows + about 2*M links of 4 bytes at level 0
        return n * (4 * d + 2 * params.hnsw_m * 4 + 16)
    centroids = params.nlist * d * 4
    per_row = {"ivf-flat": 4 * d, "ivf-sq8": d}.get(params.kind, params.pq_m)
    return centroids + n * (per_row + 8)  # + an int64 id per row


def choose_params(kind: str, n: int, d: int, memory: int | None = None) -> AnnParams:
    """Parameters from N, the dimension and the memory budget (default: half of what
    is available). ``ivf``: ``nlist`` about 4*sqrt(N) (a power of two, at least
    39 training rows each); IVF-Flat when the float32 rows fit, else IVF-SQ8 when one
    byte per dimension fits, else IVF-PQ with the most bytes per row that fit.
    ``hnsw``: M=32 over float32 rows."""
    budget = memory if memory is not None else available_memory() // 2
    if kind == "hnsw":
        params = AnnParams("hnsw", hnsw_m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
        need = index_bytes(params, n, d)
        if need > budget:
            raise BannermatchError(
                f"an HNSW index of {n:,} x {d} rows needs {_gb(need)}, over the memory "
                f"budget of {_gb(budget)}: use --index ivf (product quantisation) or --memory"
            )
        return params
    if kind != "ivf":
        raise BannermatchError(f"unknown index {kind!r}; choose one of {', '.join(KINDS)}")
    nlist = 1 << max(0, round(math.log2(max(1.0, 4 * math.sqrt(n)))))
    nlist = max(1, min(nlist, n // 39))
    train = min(n, max(nlist * 39, min(nlist * TRAIN_PER_CENTROID, 200_000)))
    for kind in ("ivf-flat", "ivf-sq8"):
        params = AnnParams(kind, nlist=nlist, train_size=train)
        if index_bytes(params, n, d) <= budget:
            return params
    for m in (64, 48, 32, 24, 16, 12, 8, 4):
        pq = AnnParams("ivf-pq", nlist=nlist, pq_m=m, train_size=max(train, min(n, 256 * 39)))
        if d % m == 0 and index_bytes(pq, n, d) <= budget:
            return pq
    raise BannermatchError(
        f"no IVF index of {n:,} x {d} rows fits the memory budget of {_gb(budget)}: raise --memory"
    )


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB"


def _float32(emb: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    return np.ascontiguousarray(emb[rows], np.float32)


def build(
    emb: np.ndarray,
    params: AnnParams,
    *,
    seed: int = 0,
    on_rows: Callable[[int], None] | None = None,
) -> Any:
    """Train (IVF) and fill the index from ``emb`` in blocks: only the index and one
    float32 block are in memory, never all the rows as float32 beside it."""
    import faiss

    n, d = emb.shape
    index: faiss.Index
    if params.kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = params.ef_construction
        index = hnsw
    else:
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(n, size=min(n, params.train_size), replace=False))
        index = _new_ivf(d, params, len(train))
        index.cp.seed = seed
        index.train(_float32(emb, train))
    for start in range(0, n, BLOCK):
        index.add(_float32(emb, slice(start, start + BLOCK)))
        if on_rows is not None:
            on_rows(min(BLOCK, n - start))
    set_breadth(index, params)
    return index


def _new_ivf(d: int, params: AnnParams, train_rows: int) -> faiss.IndexIVF:
    """An empty IVF index of ``params.kind`` that owns its coarse quantiser."""
    import faiss

    quantizer = faiss.IndexFlatIP(d)
    index: faiss.IndexIVF
    if params.kind == "ivf-flat":
        index = faiss.IndexIVFFlat(quantizer, d, params.nlist, faiss.METRIC_INNER_PRODUCT)
    elif params.kind == "ivf-sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, params.nlist, faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )  # fmt: skip
    else:
        pq = faiss.IndexIVFPQ(
            quantizer, d, params.nlist, params.pq_m, 8, faiss.METRIC_INNER_PRODUCT
        )
        # 256 centroids per sub-quantiser: no warning when a small collection has
        # fewer than faiss's 39 training rows for each
        pq.pq.cp.min_points_per_centroid = max(1, min(39, train_rows // 256))
        index = pq
    index.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]  # SWIG's handle: not in faiss's stub
    return index


def set_breadth(index: Any, params: AnnParams) -> None:
    if params.kind == "hnsw":
        index.hnsw.efSearch = max(1, params.ef_search)
    else:
        index.nprobe = max(1, params.nprobe)


def search(
    index: Any, params: AnnParams, emb: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (int64 rows, float32 scores) for float32 ``queries``; -1 where fewer
    were found. Quantised candidates (``RERANK_FACTOR * k``) are re-scored exactly."""
    queries = np.ascontiguousarray(queries, np.float32)
    if not params.quantised:
        scores, ids = index.search(queries, k)
        return ids, scores
    _, cand = index.search(queries, RERANK_FACTOR * k)
    return rescore(emb, queries, cand, k)


def rescore(
    emb: np.ndarray, queries: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of candidate rows (-1: none), and the best ``k`` of each query."""
    valid = cand >= 0
    flat = np.where(valid, cand, 0).ravel()
    order = np.argsort(flat, kind="stable")  # read the memory-mapped rows in file order
    rows = np.empty((len(flat), emb.shape[1]), np.float32)
    rows[order] = emb[flat[order]]
    scores = np.einsum("qcd,qd->qc", rows.reshape(*cand.shape, -1), queries)
    scores[~valid] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(cand, top, axis=1)
    best = np.take_along_axis(scores, top, axis=1).astype(np.float32)
    ids[~np.isfinite(best)] = -1
    return ids, best


def recall(
    emb: np.ndarray,
    queries: np.ndarray,
    found: np.ndarray,
    exact_scores: np.ndarray,
) -> float:
    """Share of the approximate top-k whose exact score reaches each query's k-th exact
    score (ties with the k-th neighbour count as found)."""
    k = exact_scores.shape[1]
    _, scores = rescore(emb, queries, found, k)  # exact scores of what was found, best first
    kth = exact_scores[:, -1:] - 1e-5
    hits = (scores >= kth) & np.isfinite(scores)
    return float(hits.sum() / (len(queries) * k))


@dataclass
class Tuning:
    params: AnnParams
    recall: float
    sample: int
    tried: list[tuple[int, float]]  # (breadth, recall)


def tune(
    index: Any,
    params: AnnParams,
    emb: np.ndarray,
    k: int,
    target: float = TARGET_RECALL,
    *,
    sample: int = RECALL_SAMPLE,
    seed: int = 0,
) -> Tuning:
    """The smallest ``nprobe`` (IVF) or ``efSearch`` (HNSW), within an eighth, whose
    recall@k on ``sample`` random rows reaches ``target``: doubled until it does (or the
    search is exhaustive), then bisected between the last two."""
    n = len(emb)
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    queries = _float32(emb, rows)
    _, exact_scores = exact_topk(emb, queries, k, exclude=rows)
    tried: dict[int, float] = {}

    def measure(breadth: int) -> float:
        if params.kind == "hnsw":
            params.ef_search = breadth
        else:
            params.nprobe = breadth
        set_breadth(index, params)
        ids, _ = search(index, params, emb, queries, k + 1)
        found, _ = drop_own(ids, np.zeros(ids.shape, np.float32), rows, k)
        tried[breadth] = recall(emb, queries, found, exact_scores)
        return tried[breadth]

    if params.kind == "hnsw":  # a beam narrower than k is k (faiss widens it)
        lo, hi, top = k, max(16, 2 * k), 1 << 16
    else:
        lo, hi, top = 0, 1, params.nlist
    while measure(hi) < target and hi < top:
        lo, hi = hi, min(2 * hi, top)
    if tried[hi] >= target:  # every breadth tried below hi missed the target
        while hi - lo > max(1, lo // 8):
            mid = (lo + hi) // 2
            if measure(mid) >= target:
                hi = mid
            else:
                lo = mid
    if params.kind == "hnsw":  # leave the index set to the breadth chosen
        params.ef_search = hi
    else:
        params.nprobe = hi
    set_breadth(index, params)
    return Tuning(params, tried[hi], len(rows), sorted(tried.items()))


def save(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


@dataclass
class AnnIndex:
    """A stored approximate index, ready to answer queries (``serve``, ``similar``)."""

    index: Any
    params: AnnParams
    emb: np.ndarray

    @classmethod
    def load(cls, data: ModelData) -> AnnIndex | None:
        """The index ``match --index`` stored for these rows, or None."""
        import faiss

        info = (data.match_info or {}).get("index") or {}
        path = data.folder / ANN_FILE
        if info.get("kind", "exact") == "exact" or not path.is_file():
            return None
        index = faiss.read_index(str(path))
        if index.ntotal != len(data.ids) or index.d != data.embeddings.shape[1]:
            return None
        params = AnnParams.from_dict(info)
        set_breadth(index, params)
        return cls(index, params, data.embeddings)

    def nearest(
        self, vector: np.ndarray, k: int, exclude: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The approximate top-``k`` rows of one query vector (``exclude``: its own row)."""
        k = min(k, self.index.ntotal - (exclude is not None))
        if k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.asarray(vector, np.float32).reshape(1, -1)
        ids, scores = search(self.index, self.params, self.emb, q, k + 1)
        keep = ids[0] >= 0
        if exclude is not None:
            keep &= ids[0] != exclude
        return ids[0][keep][:k].astype(np.int64), scores[0][keep][:k].astype(np.float32)


def topk_all(
    index: Any,
    params: AnnParams,
    emb: np.ndarray,
    k: int,
    *,
    block: int = 4096,
    on_rows: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-``k`` neighbours of every row (the first ``limit`` rows) among the
    others: (uint32 rows, float32 scores), nearest first. A row for which the search
    found fewer than ``k`` (a sparse part of an IVF index) gets its exact ones instead."""
    n = len(emb) if limit is None else min(limit, len(emb))
    nb = np.empty((n, k), np.uint32)
    sc = np.empty((n, k), np.float32)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        queries = _float32(emb, slice(start, start + len(rows)))
        ids, scores = search(index, params, emb, queries, k + 1)
        ids, scores = drop_own(ids, scores, rows, k)
        short = (ids < 0).any(axis=1)
        if short.any():
            ids[short], scores[short] = exact_topk(emb, queries[short], k, exclude=rows[short])
        nb[rows], sc[rows] = ids, scores
        if on_rows is not None:
            on_rows(len(rows))
    return nb, sc
