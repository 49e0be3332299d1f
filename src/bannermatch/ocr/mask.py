"""Art-only images: the text regions OCR found on a banner masked out before embedding.

Banners carry their title in big letters, and a model's similarity follows the letters:
banners with similar titles come out "similar". ``index --mask-text`` embeds each image
with its text boxes (from ``index --ocr``, :mod:`bannermatch.ocr.store`) painted over, as
its own model key beside the plain one (``<plain key>-textmask-<method>``), so the two can
be compared and ``similar --model KEY`` picks either.

Three ways to paint over a box, all OpenCV (no hand-written filling):

- ``blur`` (the default): the box takes a strong Gaussian blur of the image (the letters'
  shapes go, their colours and the picture's layout stay);
- ``inpaint``: ``cv2.inpaint`` (Telea) fills the box from its surroundings;
- ``fill``: the box takes the mean colour of a ring of pixels just around it.

docs/evaluation.md ("Text bias") has their figures: on the covers ``blur`` loses the least
recall@1 for a lower text bias; ``inpaint`` and ``fill`` lower the bias more but lose more
(the covers of one game share their logo, and masking takes that cue away too).
Each box grows by :data:`PAD` of its height on every side first: OCR boxes hug the glyphs,
and the strokes' outlines and shadows lie just outside them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bannermatch.errors import BannermatchError
from bannermatch.store.collection import KEY_MARK
from bannermatch.textsim import normalise

if TYPE_CHECKING:
    from bannermatch.acquire.inputs import InputItem
    from bannermatch.ocr.engine import OcrResult

METHODS = ("blur", "inpaint", "fill")
DEFAULT_METHOD = "blur"
#: a box grows by this fraction of its height on each side (0, 0.15, 0.3 and 0.5 measured:
#: docs/evaluation.md, "Text bias")
PAD = 0.3
#: cv2.inpaint's neighbourhood, as a fraction of the image's shorter side
INPAINT_RADIUS = 0.02
#: the blur's sigma, as a fraction of the image's shorter side
BLUR_SIGMA = 0.04
#: a line is masked from this many letters or digits
MIN_CHARS = 2
#: the key suffix of an art-only model key: ``<plain key>-textmask-<method>``

Quad = Sequence[float]  # x0, y0, ... x3, y3, normalised to the image's size


def mask_key(plain_key: str, method: str) -> str:
    """The model key of the art-only embeddings of ``plain_key``."""
    return f"{plain_key}{KEY_MARK}{method}"


def split_key(key: str) -> tuple[str, str | None]:
    """(plain key, mask method), the method None for a plain key."""
    plain, mark, method = key.rpartition(KEY_MARK)
    return (plain, method) if mark and method in METHODS else (key, None)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise BannermatchError(f"unknown text mask {method!r}; choose one of {', '.join(METHODS)}")
    return method


def text_mask(size: tuple[int, int], boxes: Iterable[Quad], pad: float | None = None) -> np.ndarray:
    """A uint8 mask (255 inside a text box, grown by ``pad``, default :data:`PAD`) of an
    image of ``size`` (width, height)."""
    import cv2

    pad = PAD if pad is None else pad
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    for box in boxes:
        pts = np.asarray(box, np.float32).reshape(4, 2) * (width, height)
        grow = pad * (pts[:, 1].max() - pts[:, 1].min())
        centre = pts.mean(axis=0)
        away = pts - centre
        reach = np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-6)
        grown = pts + away / reach * grow * np.sqrt(2)
        cv2.fillPoly(mask, [np.round(grown).astype(np.int32)], 255)
    return mask


def _ring_fill(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each masked region takes the mean colour of the pixels in a ring just outside it."""
    import cv2

    out = rgb.copy()
    count, regions = cv2.connectedComponents(mask)
    ring_width = max(3, round(0.03 * min(mask.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_width + 1,) * 2)
    for label in range(1, count):
        region = (regions == label).astype(np.uint8)
        ring = (cv2.dilate(region, kernel) > 0) & (mask == 0)
        colour = rgb[ring].mean(axis=0) if ring.any() else rgb[mask == 0].mean(axis=0)
        out[region > 0] = np.round(colour).astype(np.uint8)
    return out


def _blurred(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The masked pixels replaced by a strong blur of the image: the letters' shapes go,
    their colours and the picture's layout stay."""
    import cv2

    sigma = max(4.0, BLUR_SIGMA * min(mask.shape))
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    out = rgb.copy()
    out[mask > 0] = blurred[mask > 0]
    return out


def mask_image(
    image: Image.Image, boxes: Sequence[Quad], method: str = DEFAULT_METHOD
) -> Image.Image:
    """``image`` with its text ``boxes`` painted over (``inpaint`` or ``fill``)."""
    if not boxes:
        return image
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    mask = text_mask(image.size, boxes)
    if method == "inpaint":
        radius = max(3.0, INPAINT_RADIUS * min(image.size))
        out = cv2.inpaint(rgb, mask, radius, cv2.INPAINT_TELEA)
    elif method == "fill":
        out = _ring_fill(rgb, mask)
    elif method == "blur":
        out = _blurred(rgb, mask)
    else:
        check_method(method)
    return Image.fromarray(out)


def boxes_of(result: OcrResult | None) -> tuple[tuple[float, ...], ...]:
    """The boxes of the lines OCR read with at least :data:`MIN_CHARS` letters or digits
    (none for an image without text): a lone letter is most often a shape taken for one
    (a cup read as "O"), and painting over it would paint over the art."""
    if result is None:
        return ()
    return tuple(tuple(line.box) for line in result.lines if len(normalise(line.text)) >= MIN_CHARS)


@dataclass(frozen=True)
class TextMask:
    """The masking of one image, carried by its ``InputItem`` (``acquire.inputs``) to the
    decoding threads (``embed.batches.decode_item`` calls it before preprocessing)."""

    boxes: tuple[tuple[float, ...], ...]
    method: str = DEFAULT_METHOD

    def __call__(self, image: Image.Image) -> Image.Image:
        return mask_image(image, self.boxes, self.method)

    def to_json(self) -> str:
        """As text, for the workers of ``index --engine ray`` (``embed.ray``)."""
        return json.dumps({"boxes": self.boxes, "method": self.method})

    @classmethod
    def from_json(cls, text: str) -> TextMask:
        d = json.loads(text)
        return cls(tuple(tuple(float(v) for v in box) for box in d["boxes"]), str(d["method"]))


def with_masks(
    todo: list[tuple[InputItem, str]], texts: dict[str, OcrResult], method: str
) -> list[tuple[InputItem, str]]:
    """Each (item, id) with its text mask attached (an item OCR has not read: none)."""
    return [
        (dataclasses.replace(it, mask=TextMask(boxes_of(texts.get(i)), method)), i)
        for it, i in todo
    ]


def prepare_query(
    manifest: dict[str, Any], image: Image.Image, text: OcrResult | None = None
) -> Image.Image:
    """A query image (a file, an upload, an item's image turned) as the rows of ``manifest``
    were embedded: for an art-only key, its text (``text``, else read now by this thread's
    OCR engine) painted over; else as is."""
    mask = manifest.get("text_mask")
    if not mask:
        return image
    if text is None:
        from bannermatch.ocr.engine import DET_SIDE, read_banner

        det_side = int(mask.get("ocr", {}).get("det_side", DET_SIDE))
        text = read_banner(np.asarray(image.convert("RGB")), det_side)
    return mask_image(image, boxes_of(text), str(mask["method"]))
