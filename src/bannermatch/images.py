"""Decoding any image file into an RGB picture, or a precise reason why not."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".webp",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
    }
)
#: Images with more pixels than this are refused as decompression bombs.
MAX_PIXELS = 64_000_000
#: The colour an image's transparent parts are laid on before embedding.
BACKGROUND = (255, 255, 255)

#: Separates a tar shard's path from a member's name in an item's source.
TAR_SEPARATOR = "#"

ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for preprocessing, with what the catalogue records of it."""

    image: Image.Image  # RGB
    sha256: str
    width: int  # the file's full size, upright (its EXIF orientation applied)
    height: int
    mode: str  # the file's own mode: RGB, L, CMYK, RGBA, P, I;16, ...
    format: str


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if not data:
        return "empty file"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image: the file is an HTML page"
    if head.startswith((b"<svg", b"<?xml")):
        return "not a raster image: SVG/XML is not supported"
    if head.startswith((b"{", b"[")):
        return "not an image: the file is JSON or text"
    return "not a recognised image format"


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, laying transparency on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        im = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def decode_bytes(data: bytes, *, draft_size: tuple[int, int] | None = None) -> DecodedImage:
    """Decode ``data`` to an RGB image; raise :class:`ImageError` with the reason.

    EXIF orientation is applied, the first frame of an animation is used,
    16-bit and float images are scaled to 8 bits, and transparency is laid on
    white. ``draft_size`` lets JPEG decode at a reduced scale no smaller than it.
    """
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"decompression bomb: {width}x{height} is over {MAX_PIXELS:,} pixels"
                )
            fmt, mode = im.format or "?", im.mode
            if draft_size is not None and fmt == "JPEG":
                im.draft("RGB", draft_size)
            im.seek(0)
            im.load()
            loaded = im.size
            ImageOps.exif_transpose(im, in_place=True)  # no copy of an upright image
            if im.size != loaded:  # rotated by its EXIF orientation: record it upright
                width, height = height, width
            rgb = _to_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(_sniff(data)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = f"truncated file: {reason}"
        raise ImageError(f"corrupt image: {reason}") from None
    if min(rgb.size) < 1:
        raise ImageError(f"empty image: {rgb.size[0]}x{rgb.size[1]}")
    return DecodedImage(rgb, sha, width, height, mode, fmt)


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    return fh.read() if fh else b""


def read_source(source: str, offset: int = -1, size: int = -1) -> bytes:
    """The bytes of an item's source: a file, or a member of a tar shard."""
    shard, sep, member = source.partition(TAR_SEPARATOR)
    if sep and shard.endswith(".tar") and not os.path.exists(source):
        with open(shard, "rb") as fh:
            if offset >= 0 and size >= 0:
                fh.seek(offset)
                return fh.read(size)
        with tarfile.open(shard, "r:") as tar:
            return read_member(tar, tar.getmember(member))
    with open(source, "rb") as fh:
        return fh.read()


def load_image(
    source: str, offset: int = -1, size: int = -1, *, draft_size: tuple[int, int] | None = None
) -> DecodedImage:
    """Read and decode an item's source; unreadable or bad files raise :class:`ImageError`."""
    try:
        data = read_source(source, offset, size)
    except IsADirectoryError:
        raise ImageError("not a file: it is a directory") from None
    except PermissionError:
        raise ImageError("unreadable: permission denied") from None
    except FileNotFoundError:
        raise ImageError("missing: no such file (or a broken symlink)") from None
    except (OSError, KeyError, tarfile.TarError) as exc:
        raise ImageError(f"unreadable: {getattr(exc, 'strerror', None) or exc}") from None
    return decode_bytes(data, draft_size=draft_size)
