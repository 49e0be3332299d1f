"""The verified search, one function for ``similar``, ``match`` and ``eval``.

For one query (its ORB features, its embedding):

1. **local search**: the query's descriptors are looked up in the collection's
   local-feature index (:mod:`.local_index`, ``KNN`` neighbours each);
2. **candidates**: the global top K (given by the caller) are merged with the
   ``LOCAL_M`` items with the most ratio-test votes from that search, which finds
   a re-framed or re-scaled painting the global embedding ranks far down;
3. **pre-filter**: only candidates that at least ``REACH_MIN`` query descriptors
   reach among their neighbours are matched exactly and checked by RANSAC
   (:func:`.rerank.match_counts`); on the covers this keeps 99.5 % of the
   candidates the exact re-rank verifies and skips ~90 % of the work;
4. **order**: the combined score of :func:`.rerank.combined` over the merged list.

A local-only candidate enters with its real global cosine, so unverified it
stays below every global candidate it did not beat.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from bannermatch.errors import CollectionError
from bannermatch.verify.features import Features, LocalStore
from bannermatch.verify.local_index import LocalIndex, Neighbours, build_index
from bannermatch.verify.rerank import MIN_INLIERS, RATIO, Verified, by_evidence, match_counts

LOCAL_M = 50  # local-feature candidates merged with the global ones
REACH_MIN = MIN_INLIERS  # query descriptors that must reach a candidate before RANSAC


@contextlib.contextmanager
def single_threaded_faiss() -> Iterator[None]:
    """faiss's OpenMP threads off while this thread searches: one query's 400 small
    searches only spin on a shared machine (p50 103 ms with 2 threads vs ~5 ms with
    one, measured on the covers); batches run one query per thread instead. OpenMP
    keeps the setting per thread, so this is safe in a thread pool."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def local_votes(nb: Neighbours, n_items: int) -> np.ndarray:
    """Per store row: query descriptors whose nearest neighbour lies in it and passes
    the ratio test against the nearest one of another item."""
    other = nb.item != nb.item[:, :1]
    second = np.where(
        other.any(axis=1), nb.dist[np.arange(len(nb.dist)), other.argmax(axis=1)], 1 << 30
    )
    ok = (nb.item[:, 0] >= 0) & (nb.dist[:, 0] < RATIO * second)
    return np.bincount(nb.item[ok, 0], minlength=n_items)


def collection_idf(nb: Neighbours) -> np.ndarray:
    """Per query feature: ``1 / c``, ``c`` the distinct items among its neighbours that
    are as near as the ratio test allows (within ``nearest / RATIO``): a feature that
    many items of the collection share (a template, a logo) counts little anywhere."""
    near = (nb.item >= 0) & (nb.dist <= nb.dist[:, :1] / RATIO)
    items = np.where(near, nb.item, -1)
    items.sort(axis=1)
    distinct = (items[:, 1:] != items[:, :-1]) & (items[:, 1:] >= 0)
    c = distinct.sum(axis=1) + (items[:, 0] >= 0)
    return 1.0 / np.maximum(c, 1)


def reach(nb: Neighbours, n_items: int) -> np.ndarray:
    """Per store row: how many query descriptors have it among their neighbours."""
    found = nb.item >= 0
    pairs = np.repeat(np.arange(len(nb.item)), nb.item.shape[1])[found.ravel()]
    pairs = np.unique(pairs * n_items + nb.item[found])
    return np.bincount(pairs % n_items, minlength=n_items)


@dataclass
class Verifier:
    """What verified queries on one collection need, loaded once."""

    store: LocalStore
    index: LocalIndex
    embeddings: np.ndarray  # the model's rows
    store_row: np.ndarray  # embedding row -> store row, -1: no local features
    emb_row: np.ndarray  # store row -> embedding row, -1: not in the model

    @classmethod
    def from_store(
        cls, store: LocalStore, ids: list[str], embeddings: np.ndarray, index: LocalIndex
    ) -> Verifier:
        local = store.row_of
        store_row = np.array([local.get(i, -1) for i in ids], np.int64)
        emb_row = np.full(len(store.ids), -1, np.int64)
        emb_row[store_row[store_row >= 0]] = np.flatnonzero(store_row >= 0)
        return cls(store, index, embeddings, store_row, emb_row)

    @classmethod
    def in_memory(cls, store: LocalStore, ids: list[str], embeddings: np.ndarray) -> Verifier:
        """For ``eval``: an index built now and kept in memory."""
        return cls.from_store(store, ids, embeddings, LocalIndex(store, build_index(store)))

    @classmethod
    def open(
        cls, collection: str | os.PathLike[str], ids: list[str], embeddings: np.ndarray
    ) -> Verifier:
        """The collection's stored features and cached index; a clear error without them."""
        store = LocalStore.load(collection)
        if store is None:
            raise CollectionError(
                f"{collection} has no local features: run `bannermatch index INPUT "
                f"--out {collection} --local` first"
            )
        return cls.from_store(store, ids, embeddings, LocalIndex.open(collection, store))

    def item_features(self, row: int, item_id: str) -> Features:
        """The stored features of embedding row ``row``; an error says why there are none."""
        srow = int(self.store_row[row])
        if srow < 0:
            reason = self.store.bad.get(item_id, "not extracted yet (rerun index --local)")
            raise CollectionError(f"{item_id} has no local features: {reason}")
        return self.store.features(srow)

    def verify(
        self,
        query: Features,
        vector: np.ndarray,
        candidates: tuple[np.ndarray, np.ndarray],
        *,
        exclude: int | None = None,
        local: int = LOCAL_M,
        idf: bool = False,
    ) -> Verified:
        """The global ``candidates`` (embedding rows, cosines) and ``local`` local-feature
        candidates, verified and ordered. ``exclude``: the query's own embedding row.
        ``idf``: also weight features by :func:`collection_idf` (off: it lowered
        same-game recall@1 on the covers from 0.786 to 0.706, docs/verification.md)."""
        rows, scores = (np.asarray(a) for a in candidates)
        own = -1 if exclude is None else int(self.store_row[exclude])
        n = len(self.store.ids)
        with single_threaded_faiss():
            nb = self.index.search(query.descriptors, exclude=own if own >= 0 else None)
        extra = np.zeros(0, np.int64)
        if local:
            votes = local_votes(nb, n)
            best = np.argsort(-votes, kind="stable")[:local]
            extra = self.emb_row[best[votes[best] > 0]]
            extra = extra[(extra >= 0) & ~np.isin(extra, rows)]
            if exclude is not None:
                extra = extra[extra != exclude]
        if len(extra):
            vec = np.asarray(vector, np.float32)
            rows = np.concatenate([rows, extra])
            scores = np.concatenate([scores, np.asarray(self.embeddings[extra], np.float32) @ vec])
        srows = self.store_row[rows]
        check = (srows >= 0) & (reach(nb, n)[np.maximum(srows, 0)] >= REACH_MIN)
        counts = np.zeros(len(rows), np.int64)
        with single_threaded_faiss():
            weights = collection_idf(nb) if idf else None
            counts[check] = match_counts(query, self.store, srows[check], idf=weights)
        return by_evidence(rows, scores, counts)
