"""The OCR engine: PP-OCRv4 text detection and recognition on CPU.

The models and their pre/post-processing come from ``rapidocr-onnxruntime`` (its wheel
ships ``ch_PP-OCRv4_det_infer.onnx`` and ``ch_PP-OCRv4_rec_infer.onnx``, about 15 MB);
they run through the onnxruntime the project already depends on. That package pins the
non-headless ``opencv-python``, which would install a second ``cv2`` over the project's
``opencv-python-headless``; it only needs the ``cv2`` API, so it is installed with
``--no-deps`` and its other needs (pyclipper, shapely, PyYAML, six) come from the
``ocr`` extra (docs/ocr.md). Writing the DB post-processing and CTC decoding ourselves
would duplicate a maintained library for no gain.

Boxes are four corner points, clockwise from the top left, normalised to the image's
width and height (0..1), so they hold for any resized copy of the image.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bannermatch.errors import BannermatchError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: how to get the engine when it is missing (one line, for the CLI and the API)
INSTALL_HINT = (
    "OCR needs the 'ocr' extra: pip install 'bannermatch[ocr]' && "
    "pip install --no-deps 'rapidocr-onnxruntime>=1.4.4,<1.5'"
)
#: the shorter side of the image the detector sees, in pixels (rapidocr's default). It
#: upscales a 342x482 cover 2.2x; 480 takes half the time and finds a title first a little
#: less often (85.0% against 85.5% of the covers' titles; docs/ocr.md)
DET_SIDE = 736
#: lines the recogniser is less sure of than this are dropped (rapidocr's default)
MIN_CONFIDENCE = 0.5
#: an image whose first read found fewer letters and digits than this (none, or a
#: stylised title read as a fragment) is read a second time with the detector at
#: SECOND_SIDE, and the lines only that read found are added: about 9% of the covers,
#: for 4% more reading time (docs/ocr.md)
SECOND_READ_BELOW = 6
SECOND_SIDE = 480
#: how a line's characters are chosen (``ocr/manifest.json``; another value reads again):
#: the recogniser knows Chinese and Latin script, and reads a stylised Latin letter as a
#: CJK character now and then (``H入LF`` for HALF, ``BLACKOPS耶``); a line read mostly
#: in Latin letters and digits is read again without the CJK characters (docs/ocr.md)
DECODE = "latin-first"

Quad = tuple[float, float, float, float, float, float, float, float]


@dataclass(frozen=True)
class OcrLine:
    """One line of text: what it says, how sure the recogniser is, and where it is."""

    text: str
    confidence: float
    box: Quad  # x0, y0, x1, y1, x2, y2, x3, y3, normalised; clockwise from the top left

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The box's bounds: left, top, right, bottom (normalised)."""
        xs, ys = self.box[0::2], self.box[1::2]
        return min(xs), min(ys), max(xs), max(ys)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": self.confidence, "box": list(self.box)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrLine:
        box = tuple(float(v) for v in d["box"])
        if len(box) != 8:
            raise ValueError(f"a box has 8 coordinates, not {len(box)}")
        return cls(str(d["text"]), float(d["confidence"]), box)


@dataclass(frozen=True)
class OcrResult:
    """The text of one image, its lines in reading order (top to bottom, left to right)."""

    lines: tuple[OcrLine, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """The lines joined with spaces ("" for an image without text)."""
        return " ".join(line.text for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "lines": [line.to_dict() for line in self.lines]}


def _quad(points: Any, width: int, height: int) -> Quad:
    pts = np.asarray(points, np.float64).reshape(4, 2)
    pts = np.clip(pts / [width, height], 0.0, 1.0)
    return tuple(round(float(v), 4) for v in pts.reshape(-1))  # type: ignore[return-value]


def require_ocr() -> Any:
    """rapidocr's ``RapidOCR`` class; a one-line :class:`BannermatchError` when it is missing."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:  # the package, or one of its own needs (pyclipper, ...)
        raise BannermatchError(f"{INSTALL_HINT} ({exc})") from None
    return RapidOCR


class OcrEngine:
    """PP-OCRv4 on CPU. One instance is used by one thread at a time (:func:`thread_engine`
    gives each thread its own); ``threads`` is onnxruntime's per-call thread count."""

    def __init__(self, *, det_side: int = DET_SIDE, threads: int = 1):
        rapid_ocr = require_ocr()
        self.det_side = det_side
        self._ocr = rapid_ocr(
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
            det_limit_side_len=det_side,
            text_score=MIN_CONFIDENCE,
        )
        rec = self._ocr.text_rec
        rec.postprocess_op = _latin_first(rec.postprocess_op)

    @staticmethod
    def settings(det_side: int = DET_SIDE) -> dict[str, Any]:
        """What the stored text depends on (``ocr/manifest.json``): another setting reads again."""
        from importlib.metadata import version

        return {
            "engine": "rapidocr-onnxruntime",
            "version": version("rapidocr-onnxruntime"),
            "det": "ch_PP-OCRv4_det_infer",
            "rec": "ch_PP-OCRv4_rec_infer",
            "det_side": det_side,
            "min_confidence": MIN_CONFIDENCE,
            "second_read": {"below": SECOND_READ_BELOW, "det_side": SECOND_SIDE},
            "decode": DECODE,
        }

    def read(self, rgb: np.ndarray) -> OcrResult:
        """The text lines of an RGB (or grey) uint8 image."""
        bgr = _bgr(rgb)
        found, _ = self._ocr(bgr, use_det=True, use_cls=False, use_rec=True)
        h, w = bgr.shape[:2]
        lines = [
            OcrLine(str(text), round(float(score), 4), _quad(points, w, h))
            for points, text, score in found or []
            if str(text).strip()
        ]
        return OcrResult(tuple(lines))

    def read_image(self, image: Image.Image) -> OcrResult:
        """The text lines of a PIL image (a query: an upload, a file)."""
        return self.read(np.asarray(image.convert("RGB")))

    def detect(self, rgb: np.ndarray) -> list[Quad]:
        """Where the text is, without reading it (detection only: about half the time)."""
        bgr = _bgr(rgb)
        found, _ = self._ocr(bgr, use_det=True, use_cls=False, use_rec=False)
        h, w = bgr.shape[:2]
        return [_quad(points, w, h) for points in found or []]


def _is_cjk(char: str) -> bool:
    """Whether a recogniser character is CJK (radicals, kana, ideographs, hangul, ...)."""
    return len(char) == 1 and ord(char) >= 0x2E80


def _latin_first(decode: Any) -> Any:
    """rapidocr's CTC decoder ``decode``, wrapped: a line whose best reading holds CJK
    characters but at least as many Latin letters and digits is decoded again with the CJK
    characters left out (the next best character at each step). Lines in CJK script are
    read as before."""
    cjk = np.fromiter(map(_is_cjk, decode.character), bool, len(decode.character))

    def latin_first(preds: np.ndarray, *args: Any, **kwargs: Any) -> list[Any]:
        lines = decode(preds, *args, **kwargs)
        for i, line in enumerate(lines):
            n_cjk = sum(map(_is_cjk, line[0]))
            if n_cjk and sum(c.isascii() and c.isalnum() for c in line[0]) >= n_cjk:
                latin = preds[i : i + 1].copy()
                latin[:, :, cjk] = 0.0
                lines[i] = decode(latin, *args, **kwargs)[0]
        return lines

    return latin_first


def _bgr(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3):
        raise ValueError(f"an image is a 2-d or 3-d uint8 array, not {rgb.dtype} {rgb.shape}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb[:, :, 2::-1])


_local = threading.local()


def thread_engine(det_side: int = DET_SIDE) -> OcrEngine:
    """This thread's engine for ``det_side``, made on first use (onnxruntime sessions are
    per thread here, with one compute thread each: the parallelism comes from the reading
    threads)."""
    engines: dict[int, OcrEngine] | None = getattr(_local, "engines", None)
    if engines is None:
        engines = _local.engines = {}
    if det_side not in engines:
        engines[det_side] = OcrEngine(det_side=det_side)
    return engines[det_side]


def letters(result: OcrResult) -> int:
    """How many letters and digits ``result`` holds."""
    return sum(ch.isalnum() for ch in result.text)


def merge_reads(first: OcrResult, second: OcrResult) -> OcrResult:
    """``first``'s lines, then those of ``second`` whose text (letters and digits, lower
    case) ``first`` does not have."""
    from bannermatch.textsim import normalise

    seen = {normalise(line.text) for line in first.lines}
    extra = [line for line in second.lines if normalise(line.text) not in seen]
    return OcrResult(first.lines + tuple(extra))


def read_banner(rgb: np.ndarray, det_side: int = DET_SIDE) -> OcrResult:
    """The text of an image as ``index --ocr`` stores it: read with this thread's engine,
    and read again with the detector at :data:`SECOND_SIDE` when the first read found
    fewer than :data:`SECOND_READ_BELOW` letters or digits. Stylised titles that one
    detector size misses or breaks up are often found at the other (docs/ocr.md)."""
    first = thread_engine(det_side).read(rgb)
    if letters(first) >= SECOND_READ_BELOW or det_side == SECOND_SIDE:
        return first
    return merge_reads(first, thread_engine(SECOND_SIDE).read(rgb))
