"""Nearest rows of a query vector: the one place that chooses between the approximate
index ``match --index`` stored and an exact scan (``similar``, ``search``, the server)."""

from __future__ import annotations

import threading

import numpy as np

from bannermatch.query.ann import AnnIndex
from bannermatch.query.topk import nearest
from bannermatch.store.collection import ModelData


class Neighbours:
    """Top-``k`` searches over one model's vectors; safe to share between threads."""

    def __init__(self, data: ModelData) -> None:
        self.data = data
        self.ann = AnnIndex.load(data)
        self._exact = threading.Lock()  # one full scan at a time: each converts blocks

    @property
    def kind(self) -> str:
        """``ann`` or ``exact``: how :meth:`nearest` answers."""
        return "exact" if self.ann is None else "ann"

    def nearest(
        self, vector: np.ndarray, k: int, exclude: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows nearest ``vector`` (int64) and their scores (float32), best
        first; ``exclude``: a row to leave out (the query's own)."""
        if self.ann is not None:
            return self.ann.nearest(vector, k, exclude)
        with self._exact:
            return nearest(self.data.embeddings, vector, k, exclude)
