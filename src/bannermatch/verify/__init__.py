"""Verified matches: local features stored beside the embeddings, local-feature
candidates and a geometric re-rank (docs/verification.md).

``features`` extracts and stores ORB keypoints per item (``index --local``);
``local_index`` keeps one faiss binary IVF over every stored descriptor;
``rerank`` matches a query against candidates, fits a similarity transform with
RANSAC and folds the inlier count into the score; ``pipeline.Verifier`` runs the
whole second stage for one query (local search, merged candidates, pre-filter,
verification); ``search`` serves ``similar --rerank`` and ``match --rerank``
(``evaluation.rerank`` gives the ``eval --rerank`` figures).
"""

from __future__ import annotations

import os
from pathlib import Path

#: the folder of a collection that holds its local features
LOCAL_DIR = "local"


def has_local(collection: str | os.PathLike[str]) -> bool:
    """Whether ``index --local`` stored features in ``collection`` (cheap: no OpenCV)."""
    return (Path(collection) / LOCAL_DIR / "ids.json").is_file()
