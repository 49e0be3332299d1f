"""Image preprocessing in PIL, PyTorch's resampling kernels and NumPy, resolved from a
model's own data config.

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

from bannermatch.errors import BannermatchError

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
#: the filters resampled by PyTorch's antialiased uint8 kernels (see Preprocess._resample)
TORCH_FILTERS = ("bilinear", "bicubic")
#: images an index run must embed before importing PyTorch for its resampling kernels pays
#: (the import costs about 1.3 s; the kernels save 1.5 to 5 ms an image)
TORCH_KERNELS_MIN = 512


def _horizontal_first(w: int, h: int, nw: int, nh: int) -> bool:
    """Whether Pillow resizes ``w x h`` to ``nw x nh`` with its horizontal pass first:
    always before Pillow 13, which goes vertical first when the height shrinks more
    than twice as much as the width (the passes round to 8 bits in between, so the order
    shows in the pixels)."""
    return not (h - nh > 0 and h - nh > 2 * (w - nw))


def _torch_resample(pixels: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """uint8 (H, W, 3) resized to ``size`` (w, h) by PyTorch, antialiased, passes in
    Pillow 13's order (PyTorch's own is horizontal first)."""
    import torch

    (h, w), (nw, nh) = pixels.shape[:2], size
    if not pixels.flags.writeable:  # a PIL image's buffer: PyTorch wants its tensors writable
        pixels = pixels.copy()
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # channels-last, as the kernels like

    def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=hw, mode=interpolation, antialias=True)

    if not _horizontal_first(w, h, nw, nh):
        x = resize(x, (nh, w))
    return resize(x, (nh, nw))[0].permute(1, 2, 0).numpy()


def _rgb(values: Any, what: str) -> tuple[float, float, float]:
    """A data config's per-channel ``what`` (mean or std) of an RGB model."""
    channels = tuple(float(v) for v in values)
    if len(channels) != 3:
        raise BannermatchError(f"a data config's {what} has {len(channels)} values, not 3 (RGB)")
    return channels[0], channels[1], channels[2]


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
            mean=_rgb(cfg["mean"], "mean"),
            std=_rgb(cfg["std"], "std"),
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
            need: tuple[float, float] = (side, side)
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

    def load(self, torch_kernels: bool = True) -> Preprocess:
        """Load what the resampling runs on (PyTorch, for bilinear and bicubic) now, with
        the model, rather than on the first image. ``torch_kernels=False``, for a query of
        a few images: Pillow's own filters, whose pixels PyTorch's kernels reproduce to
        within 2 levels, without the 1.3 s import of PyTorch."""
        # not a field: the key and the manifest do not depend on it, and a copy sent to
        # another process (Ray's decoding tasks) keeps it
        object.__setattr__(self, "_pillow_only", not torch_kernels)
        if torch_kernels and self.interpolation in TORCH_FILTERS:
            import torch  # noqa: F401

        return self

    def resize(self, im: Image.Image) -> Image.Image:
        """The geometric part: a ``crop_size`` square PIL image (``pad``: the image on a
        canvas of the mean colour)."""
        if self.fit == "pad":
            inner, corner = self._fit_inside(im)
            fill = tuple(round(m * 255) for m in self.mean)
            canvas = Image.new("RGB", (self.crop_size, self.crop_size), fill)
            canvas.paste(Image.fromarray(inner), corner)
            return canvas
        return Image.fromarray(self._square(im))

    def _square(self, im: Image.Image) -> np.ndarray:
        """``crop`` and ``squash``: the ``crop_size`` square, uint8 (H, W, 3)."""
        size, (w, h) = self.crop_size, im.size
        if self.fit == "squash":
            return self._resample(im, (size, size))
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
            resample = INTERPOLATIONS[self.interpolation]
            return np.asarray(im.resize((size, size), resample, box=box))
        return self._resample(im, (nw, nh))[top : top + size, left : left + size]

    def _fit_inside(self, im: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
        """``pad``: the image resized to fit inside the square (uint8 (H, W, 3)), and its
        top-left corner there."""
        size, (w, h) = self.crop_size, im.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        return self._resample(im, (nw, nh)), ((size - nw) // 2, (size - nh) // 2)

    def _resample(self, im: Image.Image, size: tuple[int, int]) -> np.ndarray:
        """``im`` resized to ``size`` with the model's filter, as uint8 (H, W, 3).

        Bilinear and bicubic run on PyTorch's antialiased uint8 kernels (Pillow's filters
        and fixed-point arithmetic, vectorised: five times faster than Pillow here), in
        the order of Pillow's two passes (:func:`_horizontal_first`), so the pixels are
        Pillow's to within 2 levels on a few values in a thousand
        (tests/embed/test_preprocess.py). The other filters, or all after ``load(torch_kernels=
        False)``, are Pillow's own.
        """
        if size == im.size:
            return np.asarray(im)
        if self.interpolation not in TORCH_FILTERS or getattr(self, "_pillow_only", False):
            # other filters, or a query of a few images (see load): Pillow's own
            return np.asarray(im.resize(size, INTERPOLATIONS[self.interpolation]))
        return _torch_resample(np.asarray(im), size, self.interpolation)

    @functools.cached_property
    def _lut(self) -> np.ndarray:
        """float32 (3, 256): each channel's normalised value of every 8-bit level, computed
        as ``(v - mean * 255) / (std * 255)`` in float32, so a lookup equals the arithmetic."""
        levels = np.arange(256, dtype=np.float32)[None, :]
        mean = np.asarray(self.mean, np.float32)[:, None] * np.float32(255.0)
        std = np.asarray(self.std, np.float32)[:, None] * np.float32(255.0)
        return np.ascontiguousarray((levels - mean) / std, np.float32)

    def normalize_into(self, pixels: Image.Image | np.ndarray, out: np.ndarray) -> None:
        """Write RGB pixels (a PIL image or uint8 (H, W, 3)), normalised, into ``out``: a
        float32 (3, H, W) array (or view) of their size. One table lookup per value, no
        temporary float image."""
        pixels = np.asarray(pixels)  # a PIL image's buffer, or the array itself
        for c in range(3):
            np.take(self._lut[c], pixels[:, :, c], out=out[c], mode="clip")

    def to_array(self, pixels: Image.Image | np.ndarray) -> np.ndarray:
        """Normalise RGB pixels into a float32 (3, H, W) array."""
        pixels = np.asarray(pixels)
        out = np.empty((3, *pixels.shape[:2]), np.float32)
        self.normalize_into(pixels, out)
        return out

    def into(self, im: Image.Image, out: np.ndarray) -> None:
        """Preprocess an RGB image into ``out``, a float32 (3, crop, crop) array or view
        (a row of a batch buffer): what :meth:`__call__` returns, without allocating."""
        if self.fit == "pad":  # padded after normalising, so the padding is exactly 0, the mean
            inner, (left, top) = self._fit_inside(im)
            out.fill(0.0)
            h, w = inner.shape[:2]
            self.normalize_into(inner, out[:, top : top + h, left : left + w])
            return
        self.normalize_into(self._square(im), out)

    def __call__(self, im: Image.Image) -> np.ndarray:
        out = np.empty((3, self.crop_size, self.crop_size), np.float32)
        self.into(im, out)
        return out
