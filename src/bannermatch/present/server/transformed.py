"""Similar items to a mirrored or flipped query image (the original API's ``mirror=1``,
``flip=1`` and ``_x``, ``_y``, ``_xy`` routes).

The query item's own image is read, mirrored left to right and/or flipped upside down,
embedded on the fly with the collection's model (loaded once, on first use, by
:meth:`ServedCollection.model`), and searched; text on a banner then reads backwards,
which weakens its pull on the match. The text-weighted searches live here too: an item's
(its stored banner text) and an upload's (its text read now by the server's OCR engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import HTTPException

from bannermatch.errors import BannermatchError, ImageError
from bannermatch.images import DecodedImage, load_image
from bannermatch.mirror import transform_decoded
from bannermatch.present.server.data import ServedCollection

if TYPE_CHECKING:
    from bannermatch.ocr.engine import OcrResult

#: route suffix -> (mirror, flip)
SUFFIXES = {"": (False, False), "_x": (True, False), "_y": (False, True), "_xy": (True, True)}


def transformed_vector(served: ServedCollection, row: int, mirror: bool, flip: bool) -> np.ndarray:
    """The embedding of ``row``'s image mirrored and/or flipped; a 404 without an image."""
    source = served.image_source(row)
    if source is None:
        raise HTTPException(404, f"item {served.ids[row]!r} has no image to transform")
    try:
        decoded = load_image(source, draft_size=served.model().preprocess.draft_size)
    except (ImageError, OSError) as exc:
        what = f"the image of {served.ids[row]!r} cannot be read: {exc}"
        raise HTTPException(404, what) from None
    return served.embed(transform_decoded(decoded, mirror, flip))


def similar_transformed(
    served: ServedCollection, row: int, k: int, mirror: bool, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows nearest the transformed query, the query item itself left out."""
    vector = transformed_vector(served, row, mirror, flip)
    rows, scores = served.nearest_to(vector, k + 1)
    keep = rows != row
    return rows[keep][:k], scores[keep][:k]


def similar_with_text(
    served: ServedCollection, row: int, k: int, weight: float, mirror: bool, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows best by image and banner-text similarity together (the query's image
    turned first when asked); a 409 when the collection has no banner text."""
    from bannermatch.query.textweight import nearest_weighted

    texts = row_texts(served)
    if mirror or flip:
        vector = transformed_vector(served, row, mirror, flip)
    else:
        vector = np.asarray(served.data.embeddings[row], np.float32)
    return nearest_weighted(served.data, texts, vector, k, weight, row=row)


def row_texts(served: ServedCollection) -> Any:
    """The rows' banner text for ``text_weight`` (:meth:`ServedCollection.row_texts`); a
    409 when the collection has none."""
    try:
        return served.row_texts()
    except BannermatchError as exc:
        raise HTTPException(409, str(exc)) from None


def upload_text(served: ServedCollection, image: DecodedImage) -> OcrResult:
    """The text on an uploaded image, read now by the server's OCR engine; a 409 when the
    collection has no banner text or the server lacks the 'ocr' extra (it says how)."""
    try:
        return served.read_text(image)
    except BannermatchError as exc:
        raise HTTPException(409, str(exc)) from None
