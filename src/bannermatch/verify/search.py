"""Verified neighbours for the commands: one query (``similar --rerank``) and every
item of a collection (``match --rerank``), both through :class:`.pipeline.Verifier`."""

from __future__ import annotations

import os

import numpy as np

from ..collection import ModelData
from ..images import DecodedImage
from .features import extract_array
from .pipeline import Verifier
from .rerank import Verified


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
