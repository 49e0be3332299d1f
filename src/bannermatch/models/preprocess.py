"""Image preprocessing in PIL and NumPy, resolved from a model's own data config.

``fit="crop"`` reproduces timm's eval transform (resize the shorter side to
``resize_size``, centre-crop ``crop_size``); with ``keep_ratio=False`` it
resizes to a ``resize_size`` square first (the original feature extractor's
``--keep_ratio`` switch off), so the crop only trims a margin. ``squash``
resizes to the square ignoring the aspect ratio; ``pad`` fits the whole image
inside the square and pads with the mean colour (exactly zero after
normalisation), so a 2:3 banner keeps all its content. ``keep_ratio`` only
matters to ``crop``: ``squash`` never keeps the ratio and ``pad`` always does.

``draft=True`` (the default) lets a large JPEG be decoded at a reduced scale (libjpeg's
DCT scaling: 1/2, 1/4 or 1/8) that still holds :data:`DRAFT_MARGIN` times the pixels
the resize needs on each axis, so the resize still shrinks and antialiases: a 1200x1800
Steam banner is decoded at 300x450 for a 224 input, several times faster, and the
features barely move (docs/performance.md). ``draft=False`` decodes every pixel.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from ..errors import BannermatchError

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
FITS = ("crop", "squash", "pad")
#: a JPEG decoded at reduced scale keeps at least this many times the resized pixels per axis
DRAFT_MARGIN = 1.5
#: how many source pixels each resampling filter reaches on either side of an output
#: pixel's centre, at scale 1 (Pillow's Resample.c); wider when shrinking
SUPPORT = {"box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0}


def _horizontal_first(w: int, h: int, nw: int, nh: int) -> bool:
    """Whether Pillow resizes ``w x h`` to ``nw x nh`` with its horizontal pass first:
    always before Pillow 13, which goes vertical first when the height shrinks more
    than twice as much as the width."""
    return not (h - nh > 0 and h - nh > 2 * (w - nw))


@dataclass(frozen=True)
class Preprocess:
    """Turns an RGB PIL image into a normalised float32 CHW array."""

    crop_size: int
    resize_size: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    fit: str = "crop"
    keep_ratio: bool = True
    draft: bool = True

    def __post_init__(self) -> None:
        if self.fit != "crop":  # implied by the fit: one spelling per setting
            object.__setattr__(self, "keep_ratio", self.fit == "pad")
        if self.fit not in FITS:
            raise BannermatchError(f"unknown fit {self.fit!r}; choose one of {', '.join(FITS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise BannermatchError(
                f"unknown interpolation {self.interpolation!r}; "
                f"choose one of {', '.join(INTERPOLATIONS)}"
            )
        if not 16 <= self.crop_size <= 4096 or not 16 <= self.resize_size <= 4096:
            raise BannermatchError("image sizes must be between 16 and 4096 pixels")
        if self.fit == "crop" and self.resize_size < self.crop_size:
            raise BannermatchError("--resize-size must not be smaller than --crop-size")

    @classmethod
    def from_timm_config(cls, cfg: dict[str, Any], **overrides: Any) -> Preprocess:
        """Build from a timm ``resolve_data_config`` dict, then apply user overrides."""
        crop = int(cfg["input_size"][-1])
        resize = math.floor(crop / float(cfg.get("crop_pct") or 1.0))
        base = cls(
            crop_size=crop,
            resize_size=resize,
            interpolation=str(cfg.get("interpolation") or "bicubic"),
            mean=tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type]
        )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        base = replace(base, fit=str(cfg.get("fit") or base.fit))
        if "fit" not in overrides and {"keep_ratio", "resize_size"} & set(overrides):
            overrides["fit"] = "crop"  # options of the crop: asking for them asks for it
        fit, keep = overrides.get("fit", base.fit), overrides.get("keep_ratio")
        if fit != "crop" and keep is not None and keep != (fit == "pad"):
            raise BannermatchError(
                f"--{'' if keep else 'no-'}keep-ratio contradicts --fit {fit}: "
                + ("pad always keeps" if fit == "pad" else "squash never keeps")
                + " the aspect ratio"
            )
        if "fit" in overrides and "keep_ratio" not in overrides:
            overrides["keep_ratio"] = True  # the crop's default; the others imply theirs
        if "crop_size" in overrides and "resize_size" not in overrides:
            overrides["resize_size"] = math.floor(
                overrides["crop_size"] * base.resize_size / base.crop_size
            )
        return replace(base, **overrides)

    @property
    def key(self) -> str:
        """A short name of everything that changes the pixels the model sees."""
        full = "" if self.draft else "-full"  # every JPEG pixel decoded
        if self.fit != "crop":
            return f"{self.fit}{self.crop_size}-{self.interpolation}{full}"
        resize = str(self.resize_size)
        if not self.keep_ratio:  # a square: "256x256"
            resize = f"{resize}x{resize}"
        return f"crop{resize}-{self.crop_size}-{self.interpolation}{full}"

    def draft_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The size a ``width x height`` JPEG may be decoded down to (Pillow's ``draft``):
        :data:`DRAFT_MARGIN` times what the resize makes of it, per axis; ``None`` when
        ``draft`` is off or no reduction would keep that much. The same for an image
        and its transpose, so it can be asked before the EXIF orientation is applied."""
        if not self.draft:
            return None
        if self.fit == "squash" or (self.fit == "crop" and not self.keep_ratio):
            side = self.crop_size if self.fit == "squash" else self.resize_size
            need = (side, side)
        else:  # pad fits the longer side inside the square; crop resizes the shorter one
            scale = (
                self.crop_size / max(width, height)
                if self.fit == "pad"
                else (self.resize_size / min(width, height))
            )
            need = (width * scale, height * scale)
        request = (math.ceil(need[0] * DRAFT_MARGIN), math.ceil(need[1] * DRAFT_MARGIN))
        if width // request[0] < 2 or height // request[1] < 2:
            return None  # Pillow would decode it whole anyway
        return request

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resize(self, im: Image.Image) -> Image.Image:
        """The geometric part: a ``crop_size`` square PIL image."""
        resample = INTERPOLATIONS[self.interpolation]
        size = self.crop_size
        w, h = im.size
        if self.fit == "squash":
            return im.resize((size, size), resample)
        if self.fit == "pad":
            inner, corner = self._fit_inside(im)
            fill = tuple(round(m * 255) for m in self.mean)
            canvas = Image.new("RGB", (size, size), fill)  # type: ignore[arg-type]
            canvas.paste(inner, corner)
            return canvas
        # crop: torchvision's Resize(int) + CenterCrop, as timm's eval transform
        if self.keep_ratio:
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize_size, int(self.resize_size * long / short)
            nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
        else:  # Resize((s, s)) + CenterCrop
            nw = nh = self.resize_size
        top = round((nh - size) / 2.0)
        left = round((nw - size) / 2.0)
        if nw * nh > 4 * self.resize_size**2:
            # a very long image (a 20000x1 strip would resize to 5,120,000x256): resize only
            # the part the crop keeps: the same pixels but for rounding, without the copy
            sx, sy = nw / w, nh / h
            box = (left / sx, top / sy, (left + size) / sx, (top + size) / sy)
            return im.resize((size, size), resample, box=box)
        if (nw, nh) == (w, h):
            return im.crop((left, top, left + size, top + size))
        if self.interpolation in SUPPORT and _horizontal_first(w, h, nw, nh):
            return self._resize_crop(im, (nw, nh), (left, top))
        return im.resize((nw, nh), resample).crop((left, top, left + size, top + size))

    def _resize_crop(
        self, im: Image.Image, new: tuple[int, int], corner: tuple[int, int]
    ) -> Image.Image:
        """``im.resize(new).crop(square at corner)``, the same pixels for less work.

        Pillow resamples in two passes, here horizontal then vertical, each output line
        from its own input line. The horizontal pass runs only on the rows that the crop's
        rows read (a centre crop of a 2:3 banner needs two thirds of them), and the
        vertical pass only on the crop's columns, laid at their own height on a canvas
        of the image's height so that the vertical weights are exactly Pillow's.
        """
        resample = INTERPOLATIONS[self.interpolation]
        size, (w, h), (nw, nh), (left, top) = self.crop_size, im.size, new, corner
        scale = h / nh
        reach = SUPPORT[self.interpolation] * max(scale, 1.0)  # rows each side of a centre
        r0 = max(0, int(top * scale - reach) - 1)
        r1 = min(h, int((top + size) * scale + reach) + 2)
        rows = im.crop((0, r0, w, r1))
        if nw != w:
            rows = rows.resize((nw, r1 - r0), resample)  # the horizontal pass alone
        rows = rows.crop((left, 0, left + size, r1 - r0))
        if nh == h:
            return rows.crop((0, top - r0, size, top - r0 + size))
        canvas = Image.new(im.mode, (size, h))
        canvas.paste(rows, (0, r0))
        return canvas.resize((size, nh), resample).crop((0, top, size, top + size))

    def _fit_inside(self, im: Image.Image) -> tuple[Image.Image, tuple[int, int]]:
        """``pad``: the image resized to fit inside the square, and its top-left corner there."""
        size, (w, h) = self.crop_size, im.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        return im.resize((nw, nh), INTERPOLATIONS[self.interpolation]), (
            (size - nw) // 2,
            (size - nh) // 2,
        )

    @functools.cached_property
    def _lut(self) -> np.ndarray:
        """float32 (3, 256): each channel's normalised value of every 8-bit level, computed
        as ``(v - mean * 255) / (std * 255)`` in float32, so a lookup equals the arithmetic."""
        levels = np.arange(256, dtype=np.float32)[None, :]
        mean = np.asarray(self.mean, np.float32)[:, None] * np.float32(255.0)
        std = np.asarray(self.std, np.float32)[:, None] * np.float32(255.0)
        return np.ascontiguousarray((levels - mean) / std, np.float32)

    def normalize_into(self, im: Image.Image, out: np.ndarray) -> None:
        """Write an RGB image, normalised, into ``out``: a float32 (3, H, W) array (or view)
        of the image's size. One table lookup per value, no temporary float image."""
        pixels = np.asarray(im)  # uint8 (H, W, 3), a view of PIL's buffer
        for c in range(3):
            np.take(self._lut[c], pixels[:, :, c], out=out[c], mode="clip")

    def to_array(self, im: Image.Image) -> np.ndarray:
        """Normalise an RGB image into a float32 (3, H, W) array."""
        out = np.empty((3, im.height, im.width), np.float32)
        self.normalize_into(im, out)
        return out

    def into(self, im: Image.Image, out: np.ndarray) -> None:
        """Preprocess an RGB image into ``out``, a float32 (3, crop, crop) array or view
        (a row of a batch buffer): what :meth:`__call__` returns, without allocating."""
        if self.fit == "pad":  # padded after normalising, so the padding is exactly 0, the mean
            inner, (left, top) = self._fit_inside(im)
            out.fill(0.0)
            self.normalize_into(inner, out[:, top : top + inner.height, left : left + inner.width])
            return
        self.normalize_into(self.resize(im), out)

    def __call__(self, im: Image.Image) -> np.ndarray:
        out = np.empty((3, self.crop_size, self.crop_size), np.float32)
        self.into(im, out)
        return out
