"""Decoding any image file into an RGB picture, or a precise reason why not."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import struct
import tarfile
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from bannermatch.errors import BannermatchError, ImageError

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
#: Files larger than this are not read: no banner or photo is this big, and reading one
#: whole would take that much memory (a 64-megapixel 16-bit RGBA PNG fits under it).
MAX_FILE_BYTES = 256 << 20
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

    @property
    def full_size(self) -> bool:
        """Whether the pixels are the file's full size (no JPEG draft reduced them)."""
        return self.image.size == (self.width, self.height)


class ReadError(ImageError):
    """An image source that cannot be read at all (missing, unreadable, not a file)."""


#: the first bytes of files that are often saved under an image's name by mistake
_NOT_IMAGES = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"MZ", "a Windows executable"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\x00\x00\x00\x18ftypmp4", "an MP4 video"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"ID3", "an MP3 audio file"),
)
#: image formats recognised by their first bytes, to say what is wrong with a damaged one
_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _image_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and data[6:10] == b"\0\0\0\0":  # the header's reserved zeros
        return "BMP"
    return next((fmt for magic, fmt in _IMAGE_MAGIC if data.startswith(magic)), None)


def _png_damage(data: bytes) -> str | None:
    """Where a PNG's chunk structure breaks: a chunk cut short or failing its CRC."""
    pos = 8
    while pos < len(data):
        if pos + 8 > len(data):
            return f"truncated file: PNG ends inside a chunk header at byte {len(data):,}"
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if not kind.isalpha():
            return f"damaged PNG file: no chunk where one should start at byte {pos:,}"
        name = kind.decode("ascii")
        end = pos + 12 + length
        if end > len(data):
            return f"truncated file: PNG ends inside its {name} chunk at byte {len(data):,}"
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[pos + 4 : end - 4]) & 0xFFFFFFFF != crc:
            return f"PNG chunk {name} fails its CRC check (damaged file)"
        if kind == b"IEND":
            return None
        pos = end
    return None


def _jpeg_damage(data: bytes) -> str | None:
    """Where a JPEG's header segments break: a segment cut short."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return f"damaged JPEG header: no segment marker at byte {pos:,}"
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the header is complete
            return None
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if pos + 2 + length > len(data):
            return (
                f"truncated file: JPEG ends inside its header "
                f"(segment 0x{marker:02X}) at byte {len(data):,}"
            )
        pos += 2 + length
    return f"truncated file: JPEG ends inside its header at byte {len(data):,}"


def _container_damage(data: bytes, fmt: str) -> str | None:
    """A GIF or WebP file cut short, judged from the sizes its header declares."""
    if fmt == "WEBP":
        declared = struct.unpack("<I", data[4:8])[0] + 8 if len(data) >= 8 else 0
        if len(data) < declared:
            return f"truncated file: WebP ends at byte {len(data):,} of {declared:,}"
    if fmt == "GIF":
        table = 3 << ((data[10] & 7) + 1) if len(data) > 10 and data[10] & 0x80 else 0
        if len(data) < 13 + table:
            return f"truncated file: GIF ends inside its header at byte {len(data):,}"
        if data.rstrip(b"\0")[-1:] != b";":
            return f"truncated file: GIF ends at byte {len(data):,} without its trailer"
    return None


def _structure_damage(data: bytes) -> str | None:
    """Where the structure of a file in a known image format breaks, if it visibly does."""
    fmt = _image_format(data)
    if fmt == "PNG":
        return _png_damage(data)
    if fmt == "JPEG":
        return _jpeg_damage(data)
    return _container_damage(data, fmt) if fmt else None


def _damaged(data: bytes, fmt: str) -> str:
    """Why PIL could not open a file that starts like a ``fmt`` image."""
    found = _structure_damage(data)
    if found is None:
        try:  # the format's own reader says what it found wrong
            Image.OPEN[fmt][0](io.BytesIO(data), "")
            found = "unreadable header"
        except struct.error:
            found = f"truncated file: {fmt} ends inside its header at byte {len(data):,}"
        except Exception as exc:
            found = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if found.startswith("truncated") or fmt in found:
        return f"corrupt image: {found}"
    return f"corrupt image: damaged {fmt} file: {found}"


def _sniff(data: bytes) -> str:
    """Why ``data``, which PIL did not recognise, is not an image."""
    if not data:
        return "empty file"
    fmt = _image_format(data)
    if fmt is not None:
        Image.init()
        return _damaged(data, fmt)
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image: the file is an HTML page"
    if head.startswith((b"<svg", b"<?xml")):
        return "not a raster image: SVG/XML is not supported"
    if head.startswith((b"{", b"[")):
        return "not an image: the file is JSON or text"
    for magic, what in _NOT_IMAGES:
        if data.startswith(magic):
            return f"not an image: the file is {what}"
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
        finite = arr[np.isfinite(arr)]  # a float image may hold NaN or infinities
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        im = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


#: a JPEG's reduced decoding size, or how to choose it from the image's stored size
Draft = tuple[int, int] | Callable[[int, int], tuple[int, int] | None] | None


def decode_bytes(
    data: bytes, *, draft_size: Draft = None, max_pixels: int = MAX_PIXELS
) -> DecodedImage:
    """Decode ``data`` to an RGB image; raise :class:`ImageError` with the reason.

    EXIF orientation is applied, the first frame of an animation is used,
    16-bit and float images are scaled to 8 bits, and transparency is laid on
    white. ``draft_size`` lets JPEG decode at a reduced scale no smaller than it
    (or than what it returns for the stored width and height; ``None``: all pixels).
    An image of more than ``max_pixels`` (at most :data:`MAX_PIXELS`) is refused
    before it is decoded.
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
            if width * height > max_pixels:
                raise ImageError(
                    f"too many pixels: {width}x{height} is over the limit of {max_pixels:,}; "
                    "scale it down"
                )
            fmt, mode = im.format or "?", im.mode
            if callable(draft_size):
                draft_size = draft_size(width, height)
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
    except MemoryError:
        raise ImageError("too large to decode: out of memory") from None
    except Exception as exc:  # whatever a decoder raises on a damaged file is a reason
        structure = _structure_damage(data)
        if structure is not None:  # more precise than the decoder's message
            raise ImageError(f"corrupt image: {structure}") from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
            reason = f"{type(exc).__name__}: {reason}"
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = f"truncated file: {reason}"
        raise ImageError(f"corrupt image: {reason}") from None
    if min(rgb.size) < 1:
        raise ImageError(f"empty image: {rgb.size[0]}x{rgb.size[1]}")
    return DecodedImage(rgb, sha, width, height, mode, fmt)


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    return fh.read() if fh else b""


_FILE_TYPES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _too_large(size: int) -> ReadError:
    return ReadError(f"too large: {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes")


def _read_file(path: str) -> bytes:
    """A regular file's bytes; never blocks on a pipe nor reads a device without end."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ReadError("not a file: it is a directory")
        if not stat.S_ISREG(st.st_mode):
            what = next((w for test, w in _FILE_TYPES if test(st.st_mode)), "not a plain file")
            raise ReadError(f"not a regular file: it is {what}")
        if st.st_size > MAX_FILE_BYTES:
            raise _too_large(st.st_size)
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # it grew while being read
        raise _too_large(len(data))
    return data


def _read_reason(exc: BaseException, source: str) -> str:
    """The precise reason an item's source could not be read."""
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(source):
            return f"missing: broken symlink (to {os.readlink(source)})"
        return "missing: no such file (or a broken symlink)"
    if isinstance(exc, IsADirectoryError):
        return "not a file: it is a directory"
    if isinstance(exc, PermissionError):
        return "unreadable: permission denied"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "unreadable: a symlink loop (too many levels of symbolic links)"
    if isinstance(exc, KeyError):
        return f"missing: no member {exc} in the tar shard"
    return f"unreadable: {getattr(exc, 'strerror', None) or exc}"


def read_source(source: str, offset: int = -1, size: int = -1) -> bytes:
    """The bytes of an item's source: a file, or a member of a tar shard.

    Raises :class:`ReadError` with the precise reason when it cannot be read.
    """
    try:
        shard, sep, member = source.partition(TAR_SEPARATOR)
        if sep and shard.endswith(".tar") and not os.path.exists(source):
            if size > MAX_FILE_BYTES:
                raise _too_large(size)
            with open(shard, "rb") as fh:
                if offset >= 0 and size >= 0:
                    fh.seek(offset)
                    return fh.read(size)
            with tarfile.open(shard, "r:") as tar:
                info = tar.getmember(member)
                if info.size > MAX_FILE_BYTES:
                    raise _too_large(info.size)
                return read_member(tar, info)
        return _read_file(source)
    except ReadError:
        raise
    except (OSError, KeyError, tarfile.TarError) as exc:
        raise ReadError(_read_reason(exc, source)) from None


def load_image(
    source: str, offset: int = -1, size: int = -1, *, draft_size: Draft = None
) -> DecodedImage:
    """Read and decode an item's source; unreadable or bad files raise :class:`ImageError`."""
    return decode_bytes(read_source(source, offset, size), draft_size=draft_size)


def parse_size(text: str) -> tuple[int, int]:
    """``"300x450"`` -> ``(300, 450)``: an image size as a user writes it (``x`` or ``×``)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise BannermatchError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 300x450")
    return int(m[1]), int(m[2])
