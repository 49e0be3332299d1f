"""Candidates from local features: an exact Hamming index over every stored descriptor.

Each query descriptor votes for the item of its nearest stored descriptor when
that neighbour passes the ratio test against the second nearest; items are
ranked by votes. faiss ``IndexBinaryFlat`` keeps this exact and multi-threaded;
at 400 x 32 B an item it suits collections up to ~10^5 items (an inverted file
over visual words is the step beyond; see docs/verification.md).
"""

from __future__ import annotations

import faiss
import numpy as np

from bannermatch.verify.features import DESCRIPTOR_BYTES, Features, LocalStore
from bannermatch.verify.rerank import RATIO


class LocalCandidates:
    def __init__(self, store: LocalStore):
        counts = np.asarray(store.counts, np.int64)
        desc = np.asarray(store.descriptors)
        self.owner = np.repeat(np.arange(len(counts)), counts)  # store row of each descriptor
        mask = np.arange(desc.shape[1])[None, :] < counts[:, None]
        self.index = faiss.IndexBinaryFlat(DESCRIPTOR_BYTES * 8)
        self.index.add(np.ascontiguousarray(desc[mask]))
        self.n_items = len(counts)

    def search(self, query: Features, m: int, exclude: int | None = None) -> np.ndarray:
        """Store rows of the ``m`` items with the most ratio-test votes, best first."""
        if len(query.descriptors) == 0:
            return np.zeros(0, np.int64)
        dist, idx = self.index.search(np.ascontiguousarray(query.descriptors), 3)
        if exclude is not None:  # the query's own descriptors: drop them, keep two others
            own = (idx >= 0) & (self.owner[np.maximum(idx, 0)] == exclude)
            keep = np.argsort(own, axis=1, kind="stable")[:, :2]
            dist, idx = np.take_along_axis(dist, keep, 1), np.take_along_axis(idx, keep, 1)
        ok = (idx[:, 1] >= 0) & (dist[:, 0] < RATIO * dist[:, 1])
        votes = np.bincount(self.owner[idx[ok, 0]], minlength=self.n_items)
        if exclude is not None:
            votes[exclude] = -1
        order = np.argsort(-votes, kind="stable")[:m]
        return order[votes[order] > 0]
