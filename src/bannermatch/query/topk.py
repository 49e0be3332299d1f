"""Exact top-k neighbours of every row among all rows, from blocked matrix products.

Similarity is symmetric, so each pair of row blocks is multiplied once: the block
``S = E[I] @ E[J].T`` offers its rows to the rows of ``I`` and, transposed, its
columns to the rows of ``J`` — half the multiply-adds of searching every row against
all rows (faiss ``IndexFlatIP.search``, or any k-NN library). Each row keeps its ``k``
best in a faiss heap array, which tests a score against the row's current k-th best
and sifts in only the few that beat it.

Memory: the float32 rows, the (N, k) results, and two ``block x block`` float32 score
blocks (64 MiB each at the default 4,096), never an N x N matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bannermatch.embed.models.engines import cpu_threads

BLOCK = 4096
#: rows scanned at a time by the exact search of a few query vectors
SCAN = 16384
PAD = 16
#: the side of the tiles a block is transposed in
TILE = 512


class TopK:
    """The ``k`` best (score, row) of each of ``n`` rows as candidates come, in faiss's
    heap arrays: the C++ (OpenMP) selection faiss uses in its own searches, which tests
    each score against the row's current k-th best and sifts in only the few that win."""

    def __init__(self, n: int, k: int):
        import faiss

        self.k = k
        self.scores = np.empty((n, k), np.float32)
        self.ids = np.empty((n, k), np.int64)
        self.heaps = faiss.float_minheap_array_t()  # a min-heap of each row's best
        self.heaps.nh, self.heaps.k = n, k
        self.heaps.val = faiss.swig_ptr(self.scores)
        self.heaps.ids = faiss.swig_ptr(self.ids)
        self.heaps.heapify()  # empty slots: (-inf, -1)

    def offer(self, scores: np.ndarray, row0: int, col0: int) -> None:
        """Offer a block of scores: ``scores[i, j]``, the similarity of rows ``row0 + i``
        and ``col0 + j``, is a candidate neighbour ``col0 + j`` of row ``row0 + i``
        (a score of -inf never is: padding)."""
        import faiss

        scores = np.ascontiguousarray(scores, np.float32)
        rows, cols = scores.shape
        self.heaps.addn(cols, faiss.swig_ptr(scores), col0, row0, rows)  # type: ignore[call-arg]  # the stub drops j0, i0, ni

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), each row best first."""
        self.heaps.reorder()
        return self.ids, self.scores


def _transpose(src: np.ndarray, dst: np.ndarray, pool: ThreadPoolExecutor, parts: int) -> None:
    """``dst[:] = src.T``, tile by tile (a tile and its image stay in cache), the tiles'
    stripes side by side on ``parts`` threads (NumPy copies release the GIL)."""
    rows, cols = src.shape

    def stripe(j: int) -> None:
        for i in range(0, rows, TILE):
            np.copyto(dst[j : j + TILE, i : i + TILE], src[i : i + TILE, j : j + TILE].T)

    list(pool.map(stripe, range(0, cols, TILE)))


def topk_all_pairs(
    emb: np.ndarray,
    k: int,
    *,
    block: int = BLOCK,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours (row ids, scores; best first) of every row of the float32
    ``emb`` among the other rows, by inner product. ``progress(rows)`` is called as
    row blocks finish."""
    n = len(emb)
    best = TopK(n, k)
    starts = list(range(0, n, block))
    # rows padded past a power of two (transposing a block then stays in cache sets);
    # the padding and any unused columns hold -inf, which no row takes as a neighbour
    width = min(block, n) + PAD
    scores = np.empty((block, width), np.float32)
    flipped = np.empty((block, width), np.float32)
    threads = cpu_threads()
    with ThreadPoolExecutor(threads) as pool:
        for bi, i0 in enumerate(starts):
            i1 = min(n, i0 + block)
            for j0 in starts[bi:]:
                j1 = min(n, j0 + block)
                rows, cols = i1 - i0, j1 - j0
                np.matmul(emb[i0:i1], emb[j0:j1].T, out=scores[:rows, :cols])
                scores[:rows, cols:] = -np.inf
                if i0 == j0:
                    np.fill_diagonal(scores[:rows, :cols], -np.inf)  # not its own neighbour
                    best.offer(scores[:rows], i0, j0)
                    continue
                best.offer(scores[:rows], i0, j0)
                _transpose(scores[:rows, :cols], flipped[:cols, :rows], pool, threads)
                flipped[:cols, rows:] = -np.inf
                best.offer(flipped[:cols], j0, i0)  # the same similarities, for the rows of J
            if progress is not None:
                progress(i1 - i0)
    return best.result()


def exact_topk(
    emb: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (int64 rows, float32 scores) of float32 ``queries`` over all rows,
    in blocks merged by a faiss heap; ``exclude[i]``: a row query ``i`` must not return."""
    import faiss

    queries = np.ascontiguousarray(queries, np.float32)
    extra = 0 if exclude is None else 1
    heap = faiss.ResultHeap(len(queries), k + extra, keep_max=True)
    for start in range(0, len(emb), SCAN):
        block = np.asarray(emb[start : start + SCAN], np.float32)
        scores, ids = faiss.knn(
            queries, block, min(k + extra, len(block)), faiss.METRIC_INNER_PRODUCT
        )
        heap.add_result(np.ascontiguousarray(scores), np.ascontiguousarray(ids + start))
    heap.finalize()
    ids, scores = heap.I, heap.D
    if exclude is not None:
        ids, scores = drop_own(ids, scores, np.asarray(exclude), k)
    return ids, scores.astype(np.float32)


def drop_own(
    ids: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own row (or, when absent, its last result): k+1 -> k columns."""
    is_self = ids == rows[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return ids[keep].reshape(len(rows), k), scores[keep].reshape(len(rows), k)


def nearest(
    emb: np.ndarray, vector: np.ndarray, k: int, exclude: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows (int64) and scores (float32) of one query vector; ``exclude``:
    a row that must not be returned (the query's own)."""
    k = min(k, len(emb) - (exclude is not None))
    if k < 1:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows = None if exclude is None else np.array([exclude])
    ids, scores = exact_topk(emb, np.asarray(vector, np.float32).reshape(1, -1), k, rows)
    keep = ids[0] >= 0
    return ids[0][keep].astype(np.int64), scores[0][keep]
