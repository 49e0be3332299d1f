"""One approximate-nearest-neighbour index over every stored local descriptor.

A faiss ``IndexBinaryIVF`` (binary k-means coarse quantiser, an inverted list of
descriptors per centroid: visual words with their full 256-bit codes kept, as in
Hamming embedding) over all ORB descriptors of ``<collection>/local/``. Each
descriptor's faiss id is ``row * MAX_FEATURES + slot``, so the item (store row)
and the keypoint of a neighbour are read from the id alone.

One search of a query's descriptors (``KNN`` neighbours each, ``NPROBE`` lists)
serves three purposes (see :mod:`bannermatch.verify.pipeline`):

- candidates from local features: ratio-test votes per item over the collection;
- a cheap pre-filter of the candidates to verify: a candidate that none of the
  query's descriptors reaches among its neighbours has no matches worth RANSAC;
- collection-wide burstiness: how many items a query descriptor reaches.

Small collections (fewer than ``IVF_MIN`` descriptors) use an exact
``IndexBinaryFlat``. The index is cached as ``local/ann.faiss`` beside a stamp of
the features it was built from (``local/ann.json``) and rebuilt when they change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bannermatch.store.atomic import commit_files, write_json
from bannermatch.verify import LOCAL_DIR
from bannermatch.verify.features import DESCRIPTOR_BYTES, MAX_FEATURES, LocalStore

log = logging.getLogger(__name__)

INDEX_FILE = "ann.faiss"
STAMP_FILE = "ann.json"
KNN = 8  # neighbours of each query descriptor over the collection
NPROBE = 4  # inverted lists visited per query descriptor (8: same recall, 20 % more CPU)
IVF_MIN = 50_000  # descriptors below which the exact flat index is used
TRAIN_MAX = 100_000  # descriptors sampled to train the coarse quantiser
SEED = 16
OWN_EXTRA = 4  # more neighbours asked when the query's own item is to be left out


@dataclass
class Neighbours:
    """The ``KNN`` nearest stored descriptors of each query descriptor, nearest first."""

    dist: np.ndarray  # int32 (n_query, KNN), Hamming distance; unfilled: large
    item: np.ndarray  # int64 (n_query, KNN), store row; -1: unfilled
    slot: np.ndarray  # int64 (n_query, KNN), feature index in that row


def _stamp(store: LocalStore) -> str:
    """Changes whenever rows are added, removed or re-extracted."""
    h = hashlib.sha1(json.dumps(store.ids).encode("utf-8"))
    h.update(np.ascontiguousarray(store.counts).tobytes())
    return f"{h.hexdigest()}:{MAX_FEATURES}:{KNN}"


def _codes(store: LocalStore) -> tuple[np.ndarray, np.ndarray]:
    """All real descriptors and their ids ``row * MAX_FEATURES + slot``."""
    counts = np.asarray(store.counts, np.int64)
    mask = np.arange(MAX_FEATURES)[None, :] < counts[:, None]
    rows, slots = np.nonzero(mask)
    codes = np.ascontiguousarray(np.asarray(store.descriptors)[rows, slots])
    return codes, rows * MAX_FEATURES + slots


def build_index(store: LocalStore) -> faiss.IndexBinary:
    """A fresh index over every descriptor of ``store``."""
    codes, ids = _codes(store)
    bits = DESCRIPTOR_BYTES * 8
    if len(codes) < IVF_MIN:
        index: faiss.IndexBinary = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits))
    else:
        nlist = int(2 ** round(np.log2(np.sqrt(len(codes)))))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
        sample = np.random.default_rng(SEED).permutation(len(codes))[:TRAIN_MAX]
        index.train(codes[np.sort(sample)])
    index.add_with_ids(codes, ids)
    return _tuned(index)


def _tuned(index: faiss.IndexBinary) -> faiss.IndexBinary:
    if isinstance(index, faiss.IndexBinaryIVF):
        index.nprobe = NPROBE
    return index


class LocalIndex:
    def __init__(self, store: LocalStore, index: faiss.IndexBinary):
        self.store = store
        self.index = index

    @classmethod
    def open(cls, collection: str | os.PathLike[str], store: LocalStore) -> LocalIndex:
        """The cached index of ``collection``, built (and cached) when missing or stale."""
        folder = Path(collection) / LOCAL_DIR
        stamp = _stamp(store)
        try:
            saved = json.loads((folder / STAMP_FILE).read_text("utf-8"))
            if saved.get("stamp") == stamp:
                return cls(store, _tuned(faiss.read_index_binary(str(folder / INDEX_FILE))))
        except (OSError, ValueError, RuntimeError):
            pass  # missing, unreadable or half-written: rebuild it
        t0 = time.perf_counter()
        index = build_index(store)
        seconds = round(time.perf_counter() - t0, 3)
        log.info("built the local-feature index of %s in %.1f s", collection, seconds)
        info: dict[str, Any] = {"stamp": stamp, "descriptors": index.ntotal, "seconds": seconds}
        commit_files(
            folder,
            {
                INDEX_FILE: lambda path: faiss.write_index_binary(index, str(path)),
                STAMP_FILE: lambda path: write_json(path, info),
            },
        )
        return cls(store, index)

    def search(self, descriptors: np.ndarray, exclude: int | None = None) -> Neighbours:
        """Neighbours of ``descriptors``; those of store row ``exclude`` (the query item
        itself) are left out."""
        extra = 0 if exclude is None else OWN_EXTRA
        dist, ids = self.index.search(np.ascontiguousarray(descriptors), KNN + extra)
        item = np.where(ids >= 0, ids // MAX_FEATURES, -1)
        if exclude is not None:  # the query's own descriptors move to the end, unfilled
            own = item == exclude
            keep = np.argsort(own, axis=1, kind="stable")
            dist, ids, item = (np.take_along_axis(a, keep, 1) for a in (dist, ids, item))
            gone = np.take_along_axis(own, keep, 1)
            item[gone], dist[gone] = -1, np.iinfo(np.int32).max
            dist, ids, item = dist[:, :KNN], ids[:, :KNN], item[:, :KNN]
        return Neighbours(dist, item, np.where(ids >= 0, ids % MAX_FEATURES, -1))
