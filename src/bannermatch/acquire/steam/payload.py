"""Checking a downloaded body, resizing it if asked, and writing it into the collection."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bannermatch.images import decode_bytes
from bannermatch.store import atomic

#: file extension by PIL format; other formats keep the URL's extension
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
#: validation decodes JPEGs at a reduced scale: every byte is still read and checked
CHECK_DRAFT = (64, 64)


@dataclass(frozen=True)
class StoredImage:
    """What the catalogue records of a written image file."""

    path: Path
    sha256: str
    width: int
    height: int
    mode: str
    format: str
    size: int
    mtime: float


def check_image(data: bytes) -> tuple[str, str]:
    """Raise :class:`ImageError` unless ``data`` is a whole image; return (format, mode)."""
    decoded = decode_bytes(data, draft_size=CHECK_DRAFT)
    return decoded.format, decoded.mode


def shrink(data: bytes, fmt: str, size: tuple[int, int]) -> tuple[bytes, str]:
    """``data`` scaled down to fit within ``size`` keeping its ratio, and its format.

    A JPEG stays a JPEG (quality 90); other formats become PNG. An image that
    already fits is returned as it is.
    """
    with Image.open(io.BytesIO(data)) as im:
        if im.width <= size[0] and im.height <= size[1]:
            return data, fmt
        im.load()
        small = im.copy()
    small.thumbnail(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if fmt == "JPEG":
        if small.mode not in ("RGB", "L", "CMYK"):
            small = small.convert("RGB")
        small.save(out, "JPEG", quality=90)
        return out.getvalue(), "JPEG"
    small.save(out, "PNG")
    return out.getvalue(), "PNG"


def store(
    folder: Path, stem: str, data: bytes, *, default_ext: str, resize: tuple[int, int] | None
) -> StoredImage:
    """Check ``data``, shrink it if asked, write ``folder/<stem>.<ext>`` atomically.

    Raises :class:`ImageError` (nothing is written) when ``data`` is not a whole image.
    """
    fmt, mode = check_image(data)
    if resize is not None:
        data, fmt = shrink(data, fmt, resize)
    path = folder / f"{stem}.{EXTENSIONS.get(fmt, default_ext)}"
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        mode = im.mode
    atomic.write_bytes(path, data)
    st = os.stat(path)
    return StoredImage(
        path, hashlib.sha256(data).hexdigest(), width, height, mode, fmt, st.st_size, st.st_mtime
    )


def file_intact(path: Path, size: int | None, mtime: float | None, sha256: str | None) -> bool:
    """The file the catalogue describes is still there, unchanged."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if size is None or st.st_size != size:
        return False
    if mtime is not None and st.st_mtime == mtime:
        return True
    if not sha256:
        return False
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest() == sha256
