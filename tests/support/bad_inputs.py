"""A corpus of bad, odd and hostile image files, and what bannermatch must make of each.

:func:`build_corpus` writes every file into a folder (from real covers, plus the
shared edge cases) and returns one :class:`Case` per file: the status its
catalogue row must get and, for a bad file, the exact reason. The same outcome
is expected from ``index``, ``audit``, ``similar PATH`` and the API upload.
"""

from __future__ import annotations

import ctypes
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from bannermatch.acquire.inputs import UNDECODABLE_NAME
from bannermatch.images import MAX_FILE_BYTES, MAX_PIXELS


@dataclass(frozen=True)
class Case:
    """One file of the corpus."""

    file: str  # its name in the corpus folder (its stem is the item id)
    kind: str  # what it is, as docs/reliability.md lists it
    status: str  # "ok" or "bad"
    #: bad: the exact reason in the catalogue (and everywhere else); "re:" a pattern
    reason: str = ""
    mode: str | None = None  # ok: the file's own mode, as the catalogue records it
    size: tuple[int, int] | None = None  # ok: its upright width and height
    #: how the API upload of its bytes ends: "same" (200, or 422 with the reason),
    #: "413" (over the upload cap), or None when there are no bytes a client could send
    upload: str | None = "same"

    #: whether ``similar PATH`` must agree: not for a name the catalogue cannot store
    similar: bool = True

    def says(self, reason: str | None) -> bool:
        """Whether ``reason`` is this case's reason."""
        if self.reason.startswith("re:"):
            return re.fullmatch(self.reason[3:], reason or "") is not None
        return reason == self.reason


def _encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG written by hand (PIL cannot write 16-bit RGB), ``rows`` with filter bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def _chunk_at(png: bytes, kind: bytes) -> tuple[int, int]:
    """(offset of the chunk's type, length of its data)."""
    at = png.index(kind)
    return at, struct.unpack(">I", png[at - 4 : at])[0]


def _pil_says(data: bytes) -> str:
    """What PIL's decoder says of a damaged file (the detail of some reasons)."""
    try:
        Image.open(io.BytesIO(data)).load()
    except OSError as exc:
        return str(exc)
    raise AssertionError("the damaged file decoded")


def _ycck(cmyk_jpeg: bytes) -> bytes:
    """A CMYK JPEG relabelled YCCK: its Adobe APP14 segment's transform byte set to 2."""
    at = cmyk_jpeg.index(b"Adobe")
    assert cmyk_jpeg[at - 4 : at - 2] == b"\xff\xee", "no Adobe segment"
    data = bytearray(cmyk_jpeg)
    data[at + 11] = 2
    return bytes(data)


def _exif_rotated(im: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _encode(im, "JPEG", exif=exif, quality=92)


def _frames(im: Image.Image, n: int = 3) -> list[Image.Image]:
    return [im.rotate(90 * i) for i in range(n)]


def _strip(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    return im.resize(size, Image.Resampling.BILINEAR)


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.truncate(size)


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def file_modes_hold() -> bool:
    """Whether a child started with :func:`unprivileged` is refused a mode-000 file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "secret")
        path.write_bytes(b"x")
        path.chmod(0)
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(path)!r}, 'rb').read()"],
            preexec_fn=unprivileged(),
            capture_output=True,
        )
    return probe.returncode == 1 and b"PermissionError" in probe.stderr


def unprivileged() -> Callable[[], None] | None:
    """A ``preexec_fn`` under which file modes hold, even for root: it drops the
    capabilities that let root read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
    from the bounding set, so the program it runs starts without them."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                os._exit(97)  # no CAP_SETPCAP: file_modes_hold() says so

    return drop


def build_corpus(folder: Path, covers: list[Path], edge_cases: Path | None) -> list[Case]:
    """Write the corpus into ``folder``; ``covers`` gives a distinct real image per file."""
    folder.mkdir(parents=True, exist_ok=True)
    pictures = iter(covers)
    cases: list[Case] = []

    def photo() -> Image.Image:
        return Image.open(next(pictures)).convert("RGB")

    def put(case: Case, data: bytes) -> None:
        (folder / case.file).write_bytes(data)
        cases.append(case)

    def ok(file: str, kind: str, data: bytes, mode: str, size: tuple[int, int]) -> None:
        put(Case(file, kind, "ok", mode=mode, size=size), data)

    def bad(file: str, kind: str, data: bytes, reason: str, upload: str | None = "same") -> None:
        put(Case(file, kind, "bad", reason, upload=upload), data)

    # files that decode ---------------------------------------------------------------
    im = photo()
    ok("plain.jpg", "baseline RGB JPEG", _encode(im, "JPEG", quality=90), "RGB", im.size)
    im = photo()
    ok("cmyk.jpg", "CMYK JPEG", _encode(im.convert("CMYK"), "JPEG"), "CMYK", im.size)
    im = photo()
    ok(
        "ycck.jpg",
        "YCCK JPEG (Adobe transform 2)",
        _ycck(_encode(im.convert("CMYK"), "JPEG")),
        "CMYK",
        im.size,
    )
    im = photo()
    grey16 = (np.asarray(im.convert("L"), np.uint16) * 257).astype(np.uint16)
    ok(
        "grey16.png",
        "16-bit greyscale PNG",
        _encode(Image.fromarray(grey16), "PNG"),
        "I;16",
        im.size,
    )
    im = photo()
    rgb48 = np.asarray(im, np.uint16) * 257
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb48)
    ok("rgb48.png", "16-bit-per-channel RGB PNG", _png(*im.size, 16, 2, rows), "RGB", im.size)
    im = photo()
    grey16 = (np.asarray(im.convert("L"), np.uint16) * 257).astype(np.uint16)
    ok(
        "grey16.tiff",
        "16-bit greyscale TIFF",
        _encode(Image.fromarray(grey16), "TIFF"),
        "I;16",
        im.size,
    )
    im = photo()
    int32 = np.asarray(im.convert("L"), np.int32) * 8_000_000 - 1_000_000_000
    ok("int32.tiff", "32-bit integer TIFF", _encode(Image.fromarray(int32), "TIFF"), "I", im.size)
    im = photo()
    floats = np.asarray(im.convert("L"), np.float32) / 255.0
    floats[0, :3] = (np.nan, np.inf, -np.inf)
    ok(
        "float32.tiff",
        "32-bit float TIFF with NaN and infinities",
        _encode(Image.fromarray(floats), "TIFF"),
        "F",
        im.size,
    )
    im = photo()
    pal = im.quantize(64)
    ok(
        "palette-transparent.png",
        "palette PNG with a transparent colour",
        _encode(pal, "PNG", transparency=0),
        "P",
        im.size,
    )
    im = photo()
    la = im.convert("LA")
    la.putalpha(Image.linear_gradient("L").resize(im.size))
    ok("grey-alpha.png", "greyscale with alpha (LA) PNG", _encode(la, "PNG"), "LA", im.size)
    im = photo()
    frames = _frames(im.resize((120, 120)))
    ok(
        "animated.gif",
        "animated GIF (first frame)",
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0),
        "P",
        (120, 120),
    )
    im = photo()
    frames = _frames(im.resize((120, 120)))
    ok(
        "animated.webp",
        "animated WebP (first frame)",
        _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=80),
        "RGB",
        (120, 120),
    )
    im = photo()
    ok(
        "exif-rotated.jpg",
        "EXIF orientation 6 (rotated on display)",
        _exif_rotated(im),
        "RGB",
        (im.height, im.width),
    )
    im = photo()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ok(
        "icc-profile.jpg",
        "JPEG with an embedded ICC profile",
        _encode(im, "JPEG", icc_profile=srgb),
        "RGB",
        im.size,
    )
    ok(
        "one-pixel.png",
        "1 x 1 pixel",
        _encode(Image.new("RGB", (1, 1), (200, 40, 90)), "PNG"),
        "RGB",
        (1, 1),
    )
    im = photo()
    ok(
        "wide-strip.png",
        "extreme aspect ratio, 20000 x 2",
        _encode(_strip(im, (20000, 2)), "PNG"),
        "RGB",
        (20000, 2),
    )
    im = photo()
    ok(
        "tall-strip.png",
        "extreme aspect ratio, 3 x 12000",
        _encode(_strip(im, (3, 12000)), "PNG"),
        "RGB",
        (3, 12000),
    )
    im = photo()
    pages = _frames(im.resize((100, 150)), 3)
    ok(
        "multipage.tiff",
        "multi-page TIFF (first page)",
        _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]),
        "RGB",
        (100, 150),
    )
    im = photo()
    png = bytearray(_encode(im, "PNG"))
    at, length = _chunk_at(bytes(png), b"IDAT")
    png[at + 4 + length] ^= 0xFF  # the CRC field only: zlib's own checksum still holds
    ok("png-bad-idat-crc.png", "PNG with a bad CRC on intact IDAT data", bytes(png), "RGB", im.size)
    im = photo()
    png = _encode(im, "PNG")
    ok("png-no-iend.png", "PNG cut after its last IDAT (no IEND)", png[:-12], "RGB", im.size)
    im = photo()
    ok(
        "trailing-garbage.jpg",
        "JPEG with bytes after its end marker",
        _encode(im, "JPEG") + os.urandom(3000),
        "RGB",
        im.size,
    )
    im = photo()
    ok("png-named.jpg", "a PNG named .jpg", _encode(im, "PNG"), "RGB", im.size)
    im = photo()
    ok("bilevel.png", "1-bit black and white PNG", _encode(im.convert("1"), "PNG"), "1", im.size)
    for file, kind in (
        ("name with  spaces.jpg", "a name with spaces"),
        ("ünïcödé 名前 🎮.jpg", "a Unicode name (NFC, with an emoji)"),
        (unicodedata.normalize("NFD", "café-décomposé.jpg"), "a Unicode name in NFD"),
        ("new\nline.jpg", "a name with a newline"),
        ("tab\tand 'quotes' \"x\".jpg", "a name with a tab and quotes"),
        ("-dash-first.jpg", "a name that starts with a dash"),
    ):
        im = photo()
        ok(file, kind, _encode(im, "JPEG"), "RGB", im.size)

    # files that do not -----------------------------------------------------------------
    im = photo()
    jpeg = _encode(im, "JPEG", quality=90)
    bad("empty.jpg", "empty file", b"", "empty file")
    bad(
        "jpeg-cut-20.jpg",
        "JPEG truncated inside its header (20 bytes)",
        jpeg[:20],
        "corrupt image: truncated file: JPEG ends inside its header at byte 20",
    )
    sof = jpeg.index(b"\xff\xc0")
    bad(
        "jpeg-cut-sof.jpg",
        "JPEG truncated inside its frame header",
        jpeg[: sof + 6],
        f"corrupt image: truncated file: JPEG ends inside its header (segment 0xC0) "
        f"at byte {sof + 6:,}",
    )
    for label, cut in (
        ("quarter", len(jpeg) // 4),
        ("half", len(jpeg) // 2),
        ("before-eoi", len(jpeg) - 2),
    ):
        data = jpeg[:cut]  # PIL's count of the bytes it could not process is in the reason
        bad(
            f"jpeg-cut-{label}.jpg",
            f"JPEG truncated in its scan ({label})",
            data,
            f"corrupt image: truncated file: {_pil_says(data)}",
        )
    bad(
        "html.jpg",
        "an HTML page saved as .jpg",
        b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>",
        "not an image: the file is an HTML page",
    )
    bad(
        "json.jpg",
        "JSON saved as .jpg",
        b'{"success": false, "error": "rate limited"}',
        "not an image: the file is JSON or text",
    )
    im = photo()
    png = bytearray(_encode(im, "PNG"))
    at, _ = _chunk_at(bytes(png), b"IHDR")
    png[at + 4 + 13] ^= 0xFF
    bad(
        "png-bad-ihdr-crc.png",
        "PNG with a bad CRC on its IHDR chunk",
        bytes(png),
        "corrupt image: PNG chunk IHDR fails its CRC check (damaged file)",
    )
    png = bytearray(_encode(im, "PNG"))
    at, length = _chunk_at(bytes(png), b"IDAT")
    png[at + 4 + length // 2] ^= 0x55  # damaged data under a CRC that matches it
    png[at + 4 + length : at + 8 + length] = struct.pack(
        ">I", zlib.crc32(png[at : at + 4 + length])
    )
    bad(
        "png-damaged-idat.png",
        "PNG with damaged compressed data",
        bytes(png),
        f"corrupt image: {_pil_says(bytes(png))}",
    )
    png = _encode(im, "PNG")
    at, _ = _chunk_at(png, b"IDAT")
    bad(
        "png-cut.png",
        "PNG truncated in its IDAT chunk",
        png[: at + 100],
        f"corrupt image: truncated file: PNG ends inside its IDAT chunk at byte {at + 100:,}",
    )
    gif = _encode(im, "GIF")
    bad(
        "gif-cut.gif",
        "GIF truncated",
        gif[: len(gif) // 2],
        f"corrupt image: truncated file: GIF ends at byte {len(gif) // 2:,} without its trailer",
    )
    webp = _encode(im, "WEBP")
    bad(
        "webp-cut.webp",
        "WebP truncated",
        webp[:300],
        f"corrupt image: truncated file: WebP ends at byte 300 of {len(webp):,}",
    )
    bomb = _png(40_000, 40_000, 8, 2, b"\0" * 64)
    bad(
        "bomb.png",
        "decompression bomb: 40,000 x 40,000 declared",
        bomb,
        r"re:decompression bomb: Image size \(1600000000 pixels\) exceeds limit of \d+ pixels, "
        r"could be decompression bomb DOS attack\.",
    )
    bomb = _png(9_000, 8_000, 8, 2, b"\0" * 64)
    bad(
        "bomb-small.png",
        "decompression bomb: 9,000 x 8,000 declared (under PIL's limit)",
        bomb,
        f"decompression bomb: 9000x8000 is over {MAX_PIXELS:,} pixels",
    )
    bad(
        "drawing.svg",
        "SVG",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10"/></svg>',
        "not a raster image: SVG/XML is not supported",
    )
    bad(
        "noise.png",
        "non-image binary (random bytes)",
        np.random.default_rng(7).bytes(5000),
        "not a recognised image format",
    )
    bad(
        "archive.jpg",
        "a ZIP archive saved as .jpg",
        b"PK\x03\x04" + bytes(200),
        "not an image: the file is a ZIP archive",
    )
    bad(
        "document.png",
        "a PDF saved as .png",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        "not an image: the file is a PDF document",
    )
    _sparse(folder / "huge.png", MAX_FILE_BYTES + 1)
    cases.append(
        Case(
            "huge.png",
            "a 256 MiB (sparse) file",
            "bad",
            f"too large: {MAX_FILE_BYTES + 1:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes",
            upload=None,
        )
    )

    # what stands where a file should be ----------------------------------------------------
    secret = folder / "permission-denied.jpg"
    secret.write_bytes(_encode(photo(), "JPEG"))
    secret.chmod(0)
    cases.append(
        Case(
            "permission-denied.jpg",
            "unreadable permissions (mode 000)",
            "bad",
            "unreadable: permission denied",
            upload=None,
        )
    )
    (folder / "broken-link.jpg").symlink_to("nowhere/gone.jpg")
    cases.append(
        Case(
            "broken-link.jpg",
            "broken symlink",
            "bad",
            "missing: broken symlink (to nowhere/gone.jpg)",
            upload=None,
        )
    )
    (folder / "loop-a.jpg").symlink_to("loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to("loop-a.jpg")
    for file in ("loop-a.jpg", "loop-b.jpg"):
        cases.append(
            Case(
                file,
                "looping symlinks",
                "bad",
                "unreadable: a symlink loop (too many levels of symbolic links)",
                upload=None,
            )
        )
    os.mkfifo(folder / "pipe.jpg")
    cases.append(
        Case(
            "pipe.jpg",
            "a named pipe (FIFO) named .jpg",
            "bad",
            "not a regular file: it is a named pipe (FIFO)",
            upload=None,
        )
    )
    (folder / "device.png").symlink_to("/dev/zero")
    cases.append(
        Case(
            "device.png",
            "a symlink to /dev/zero",
            "bad",
            "not a regular file: it is a character device",
            upload=None,
        )
    )
    raw_name = os.fsdecode(b"latin1-\xe9t\xe9.jpg")  # "été" in Latin-1: not UTF-8
    (folder / raw_name).write_bytes(_encode(photo(), "JPEG"))
    escaped = "latin1-\\xe9t\\xe9"
    cases.append(
        Case(
            f"{escaped}.jpg",
            "a file name that is not valid UTF-8",
            "bad",
            f"{UNDECODABLE_NAME} ({escaped}.jpg): rename the file",
            upload=None,
            similar=False,
        )
    )

    # the shared edge cases ---------------------------------------------------------------
    if edge_cases is not None:
        formats = {
            "Iggy.1024.ppm": ("PPM", "RGB", (1024, 1024)),
            "baboon.pgm": ("PGM", "L", (512, 512)),
            "copyleft.tiff": ("TIFF", None, None),
            "giphy.gif": ("animated GIF (shared)", "P", None),
            "marbles.pbm": ("PBM (1-bit)", "1", None),
            "ukbench09380.bmp": ("a JPEG named .bmp (shared)", "RGB", None),
            "ukbench09380.jpeg": ("JPEG (shared)", "RGB", None),
            "ukbench09380.png": ("a JPEG named .png (shared)", "RGB", None),
            "ukbench09380.svg": ("a JPEG named .svg (shared)", "RGB", None),
            "ukbench09380.webp": ("WebP (shared)", "RGB", None),
        }
        shared = folder / "shared"
        shared.mkdir()
        for name, (kind, mode, size) in formats.items():
            src = edge_cases / "formats_images" / name
            shutil.copy(src, shared / name)
            with Image.open(src) as probe:
                mode, size = mode or probe.mode, size or probe.size
            cases.append(Case(f"shared/{name}", kind, "ok", mode=mode, size=size))
        for name, kind in (
            ("alpha_channel_image.png", "RGBA PNG (shared)"),
            ("ukbench00120_gray.jpg", "greyscale JPEG (shared)"),
        ):
            shutil.copy(edge_cases / name, shared / name)
            with Image.open(edge_cases / name) as probe:
                cases.append(Case(f"shared/{name}", kind, "ok", mode=probe.mode, size=probe.size))
        shutil.copy(edge_cases / "mixed_images" / "ukbench09268_corrupt.jpg", shared)
        cases.append(
            Case(
                "shared/ukbench09268_corrupt.jpg",
                "scrambled JPEG (shared)",
                "bad",
                "not a recognised image format",
            )
        )
    return cases
