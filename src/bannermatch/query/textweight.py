"""Same game, other art: image similarity combined with banner-text similarity.

Editions, DLC and regional versions often carry other paintings under the same title.
``similar --text-weight W`` (and ``match``, the API's ``text_weight``) ranks by
``(1 - W) * image cosine + W * text similarity`` (:func:`.textsim.combine`), the text
being what ``index --ocr`` read (:mod:`.store`). Both similarities are computed for every
row, so the ranking is exact: a query is one pass over the rows' vectors and one sparse
product over their texts. ``match --text-weight W`` stores every item's neighbours so
ranked in ``models/<key>/textweight/`` (the image-only neighbours stay as they are).
A query image that is not in the collection (a file, an upload) has its text read when it
is queried (:func:`query_text`, with the settings the collection's text was read with),
then is blended the same way.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bannermatch.errors import BannermatchError
from bannermatch.progress import progress_bar
from bannermatch.store import atomic
from bannermatch.store.collection import Collection, ModelData
from bannermatch.textsim import TextSimilarity, check_weight, combine, top_k

if TYPE_CHECKING:
    from PIL import Image

    from bannermatch.ocr.engine import OcrResult

#: where ``match --text-weight`` stores its neighbours, inside ``models/<key>/``
FOLDER = "textweight"
NEIGHBORS = "neighbors.npy"
SCORES = "scores.npy"
INFO = "match.json"
#: rows scored at once by ``match --text-weight`` (block x N floats)
BLOCK = 512


@dataclass
class RowTexts:
    """The banner text of each row of a model's data, and their similarities."""

    texts: list[str]
    similarity: TextSimilarity

    @classmethod
    def load(cls, collection: str | os.PathLike[str], data: ModelData) -> RowTexts:
        from bannermatch.query.words import banner_texts

        return cls.of(banner_texts(collection, data), collection)

    @classmethod
    def of(cls, texts: list[str] | None, collection: str | os.PathLike[str]) -> RowTexts:
        """From each row's text (:func:`.combined.banner_texts`); an error for None."""
        if texts is None:
            raise no_text(collection)
        return cls(texts, TextSimilarity(texts))


def no_text(collection: str | os.PathLike[str]) -> BannermatchError:
    """The error for a text weight on a collection without banner text."""
    return BannermatchError(
        f"{collection} has no banner text: run `bannermatch index ... --ocr` "
        "first (--text-weight compares the text read on the banners)"
    )


def _image_scores(data: ModelData, vector: np.ndarray) -> np.ndarray:
    q = np.asarray(vector, np.float32).ravel()
    out = np.empty(len(data.ids), np.float32)
    for start in range(0, len(out), 65536):
        out[start : start + 65536] = np.asarray(data.embeddings[start : start + 65536]) @ q
    return out


def nearest_weighted(
    data: ModelData,
    texts: RowTexts,
    vector: np.ndarray,
    k: int,
    weight: float,
    *,
    row: int | None = None,
    text: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows best by combined similarity to a query: a row of the data (its own
    text; the row itself left out) or an outside image (``vector`` and its ``text``)."""
    check_weight(weight)
    image = _image_scores(data, vector)
    words = (
        texts.similarity.of_rows([row])[0] if row is not None else texts.similarity.of_text(text)
    )
    scores = combine(image, words, weight)
    exclude = None if row is None else np.array([row])
    rows = top_k(scores[None], exclude, k)[0]
    return rows, scores[rows]


def nearest_with_text(
    collection: str | os.PathLike[str],
    data: ModelData,
    row: int | None,
    vector: np.ndarray | None,
    text: str,
    k: int,
    weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``similar --text-weight``: a row of the data (its stored text; the neighbours
    ``match --text-weight`` stored when they hold this weight and ``k``), or an outside
    image (``vector``, and its ``text``: :func:`query_text`)."""
    check_weight(weight)
    if row is not None and vector is None:
        stored = stored_weighted(data, weight, k)
        if stored is not None:
            return np.asarray(stored[0][row, :k], np.int64), np.asarray(
                stored[1][row, :k], np.float32
            )
    texts = RowTexts.load(collection, data)
    if vector is None:
        vector = np.asarray(data.embeddings[row], np.float32)
    return nearest_weighted(data, texts, vector, k, weight, row=row, text=text)


def query_det_side(collection: str | os.PathLike[str]) -> int:
    """The OCR detector size the collection's text was read with, which a query image's
    text is read with too; an error when the collection has no banner text (said before
    any OCR is loaded or run)."""
    from bannermatch.ocr.engine import DET_SIDE
    from bannermatch.ocr.store import stored_settings

    settings = stored_settings(collection)
    if settings is None:
        raise no_text(collection)
    return int(settings.get("det_side", DET_SIDE))


def query_text(collection: str | os.PathLike[str], image: Image.Image) -> OcrResult:
    """The banner text of a query image that is not in the collection (a file, an upload),
    read now as ``index --ocr`` read the collection's (a second read where the first
    found little); a one-line error when the collection has none or the 'ocr' extra is
    missing."""
    from bannermatch.ocr.engine import read_banner

    return read_banner(np.asarray(image.convert("RGB")), query_det_side(collection))


@dataclass
class TextMatchResult:
    collection: str
    model_key: str
    count: int
    k: int
    text_weight: float
    changed_first: int  # items whose first neighbour is not the image-only one
    seconds: float

    def summary(self) -> str:
        return (
            f"matched {self.count} items (top {self.k}) by image and banner text "
            f"(text weight {self.text_weight:g}) in {self.seconds:.2f}s; "
            f"{self.changed_first} have another first neighbour than by the image alone"
        )

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"seconds": round(self.seconds, 3)}


def match_weighted(
    collection: str | os.PathLike[str],
    *,
    k: int,
    weight: float,
    model: str | None = None,
    progress: bool = True,
) -> TextMatchResult:
    """Every item's ``k`` neighbours by combined similarity, into ``models/<key>/textweight/``."""
    check_weight(weight)
    if k < 1:
        raise BannermatchError("k must be at least 1")
    data = Collection(Path(collection)).load(model)
    texts = RowTexts.load(collection, data)
    t0 = time.perf_counter()
    n = len(data.ids)
    k = max(0, min(k, n - 1))
    emb = np.asarray(data.embeddings, np.float32)
    nb = np.zeros((n, k), np.uint32)
    sc = np.zeros((n, k), np.float32)
    changed = 0
    bar = progress_bar(n, "matching with text", enabled=progress, unit="item")
    for start in range(0, n, BLOCK):
        rows = np.arange(start, min(n, start + BLOCK))
        image = emb[rows] @ emb.T
        scores = combine(image, texts.similarity.of_rows(rows), weight)
        if k:
            best = top_k(scores, rows, k)
            nb[rows], sc[rows] = best, np.take_along_axis(scores, best, axis=1)
            changed += int((best[:, 0] != top_k(image, rows, 1)[:, 0]).sum())
        bar.update(len(rows))
    bar.close()
    seconds = time.perf_counter() - t0
    info = {"k": k, "count": n, "text_weight": weight, "generation": data.manifest["generation"]}
    writers: dict[str, Callable[[Path], None]] = {
        NEIGHBORS: lambda p: _save(p, nb),
        SCORES: lambda p: _save(p, sc.astype(np.float16)),
        INFO: lambda p: _write_text(p, json.dumps(info, indent=1)),
    }
    atomic.commit_files(data.folder / FOLDER, writers)
    return TextMatchResult(str(collection), data.key, n, k, weight, changed, seconds)


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (a staged name: :func:`atomic.commit_files` renames it)."""
    path.write_text(text, "utf-8")


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a path: np.save would add ".npy" to a staged name
        np.save(fh, array, allow_pickle=False)


def stored_weighted(data: ModelData, weight: float, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The neighbours ``match --text-weight`` stored for this weight, if they are current
    and hold ``k``: (neighbours, scores) memory-mapped; else None."""
    folder = data.folder / FOLDER
    try:
        info = json.loads((folder / INFO).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    current = info.get("generation") == data.manifest.get("generation")
    if not current or info.get("text_weight") != weight or info.get("k", 0) < k:
        return None
    return np.load(folder / NEIGHBORS, mmap_mode="r"), np.load(folder / SCORES, mmap_mode="r")
