"""Decoding real image files of every kind, and precise reasons for the bad ones."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bannermatch.errors import ImageError
from bannermatch.images import MAX_PIXELS, decode_bytes, load_image
from support.bad_inputs import png_chunk


def _save(im: Image.Image, path: Path, **kwargs: object) -> Path:
    im.save(path, **kwargs)
    return path


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header that declares ``width`` x ``height`` RGB pixels, with little data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def photo(skimage_dir: Path) -> Image.Image:
    """A real RGB photo (scikit-image's chelsea, 451x300)."""
    return Image.open(skimage_dir / "chelsea.png").convert("RGB")


# good files -----------------------------------------------------------------


def test_rgb_jpeg(tmp_path: Path, photo: Image.Image) -> None:
    path = _save(photo, tmp_path / "cat.jpg", quality=90)
    d = load_image(str(path))
    assert (d.mode, d.format, d.image.mode) == ("RGB", "JPEG", "RGB")
    assert d.image.size == (d.width, d.height) == photo.size
    assert d.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # the decoded pixels are the photo's, up to JPEG's loss
    diff = np.abs(np.asarray(d.image, np.int16) - np.asarray(photo, np.int16))
    assert diff.mean() < 4


def test_greyscale_jpeg_becomes_rgb(tmp_path: Path, photo: Image.Image) -> None:
    path = _save(photo.convert("L"), tmp_path / "grey.jpg")
    d = load_image(str(path))
    assert d.mode == "L" and d.image.mode == "RGB"
    arr = np.asarray(d.image)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path, photo: Image.Image) -> None:
    red = Image.new("CMYK", (40, 30), (0, 255, 255, 0))
    path = _save(red, tmp_path / "cmyk.jpg", quality=95)
    d = load_image(str(path))
    assert d.mode == "CMYK" and d.image.mode == "RGB"
    r, g, b = d.image.getpixel((20, 15))
    assert r > 240 and g < 15 and b < 15
    # a real photo in CMYK keeps its colours
    path = _save(photo.convert("CMYK"), tmp_path / "photo-cmyk.jpg", quality=95)
    got = np.asarray(load_image(str(path)).image, np.int16)
    assert np.abs(got - np.asarray(photo, np.int16)).mean() < 6


def test_rgba_png_is_laid_on_white(tmp_path: Path, photo: Image.Image) -> None:
    rgba = photo.convert("RGBA")
    alpha = np.full((photo.height, photo.width), 255, np.uint8)
    alpha[:, :100] = 0  # fully transparent left band
    alpha[:, 100:200] = 128  # half transparent band
    rgba.putalpha(Image.fromarray(alpha))
    path = _save(rgba, tmp_path / "alpha.png")
    d = load_image(str(path))
    assert d.mode == "RGBA" and d.image.mode == "RGB"
    arr = np.asarray(d.image, np.int16)
    src = np.asarray(photo, np.int16)
    assert (arr[:, :100] == 255).all()
    half = (src[:, 100:200] * 128.0 + 255 * 127) / 255
    assert np.abs(arr[:, 100:200] - half).max() <= 2
    assert (arr[:, 200:] == src[:, 200:]).all()


def test_la_png_is_laid_on_white(tmp_path: Path) -> None:
    la = Image.new("LA", (20, 10), (0, 255))
    la.paste((0, 0), (0, 0, 10, 10))  # left half transparent black
    d = load_image(str(_save(la, tmp_path / "la.png")))
    assert d.mode == "LA"
    assert d.image.getpixel((2, 5)) == (255, 255, 255)
    assert d.image.getpixel((15, 5)) == (0, 0, 0)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (20, 10), 1)
    im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    im.paste(0, (0, 0, 10, 10))
    path = _save(im, tmp_path / "p.png", transparency=0)
    d = load_image(str(path))
    assert d.mode == "P"
    assert d.image.getpixel((2, 5)) == (255, 255, 255)  # transparent index on white
    assert d.image.getpixel((15, 5)) == (200, 30, 30)


def test_16_bit_png_is_scaled_to_8_bits(tmp_path: Path) -> None:
    ramp = np.array([[0, 32768, 65535]], np.uint16).repeat(4, axis=0)
    path = _save(Image.fromarray(ramp), tmp_path / "deep.png")
    d = load_image(str(path))
    assert d.mode.startswith("I") and d.image.mode == "RGB"
    assert np.asarray(d.image)[0, :, 0].tolist() == [0, 128, 255]


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue", "green")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    d = load_image(str(path))
    assert d.format == "GIF"
    assert d.image.getpixel((8, 8)) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (60, 40), "red")
    im.paste((0, 0, 255), (30, 0, 60, 40))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(im, tmp_path / "rotated.jpg", exif=exif, quality=95)
    d = load_image(str(path))
    assert d.image.size == (40, 60)
    assert (d.width, d.height) == (40, 60)  # the catalogue records it upright
    top, bottom = d.image.getpixel((20, 5)), d.image.getpixel((20, 55))
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_draft_decodes_large_jpeg_smaller(igdb_dir: Path) -> None:
    path = sorted((igdb_dir / "images").glob("*.jpg"))[0]
    full = load_image(str(path))
    small = load_image(str(path), draft_size=(128, 128))
    assert (small.width, small.height) == (full.width, full.height) == full.image.size
    assert min(small.image.size) >= 128 and small.image.size[0] < full.image.size[0]


def test_every_edge_case_format_decodes(edge_cases_dir: Path) -> None:
    folder = edge_cases_dir / "formats_images"
    decoded = {p.name: load_image(str(p)) for p in folder.iterdir() if p.suffix != ".svg"}
    assert len(decoded) == 9
    for name, d in decoded.items():
        assert d.image.mode == "RGB" and min(d.image.size) > 1, name
    assert decoded["marbles.pbm"].mode == "1"
    assert decoded["baboon.pgm"].mode == "L"
    assert decoded["giphy.gif"].format == "GIF"
    rgba = load_image(str(edge_cases_dir / "alpha_channel_image.png"))
    assert rgba.mode == "RGBA" and rgba.image.mode == "RGB"


def test_file_name_with_hash_sign(tmp_path: Path, photo: Image.Image) -> None:
    """'#' separates tar members, but a plain file may have one in its name."""
    path = _save(photo, tmp_path / "a#b.tar#c.png")
    assert load_image(str(path)).image.size == photo.size


# bad files ------------------------------------------------------------------


def _reason(source: Path | str) -> str:
    with pytest.raises(ImageError) as info:
        load_image(str(source))
    return str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _reason(tmp_path / "empty.jpg") == "empty file"


def test_truncated_jpeg(tmp_path: Path, photo: Image.Image) -> None:
    data = io.BytesIO()
    photo.save(data, "JPEG")
    for n, cut in enumerate((len(data.getvalue()) // 2, 400)):
        path = tmp_path / f"cut{n}.jpg"
        path.write_bytes(data.getvalue()[:cut])
        reason = _reason(path)
        assert reason.startswith("corrupt image: truncated file"), reason


def test_html_saved_as_jpg(tmp_path: Path) -> None:
    page = b"\n  <!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>"
    (tmp_path / "banner.jpg").write_bytes(page)
    assert _reason(tmp_path / "banner.jpg") == "not an image: the file is an HTML page"


def test_json_and_svg(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b'{"error": "not found"}')
    assert _reason(tmp_path / "a.jpg") == "not an image: the file is JSON or text"
    (tmp_path / "b.svg").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    assert "SVG" in _reason(tmp_path / "b.svg")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(4096))
    assert _reason(tmp_path / "noise.png") == "not a recognised image format"


def test_edge_cases_corrupt_jpeg(edge_cases_dir: Path) -> None:
    reason = _reason(edge_cases_dir / "mixed_images" / "ukbench09268_corrupt.jpg")
    assert reason == "not a recognised image format"


@pytest.mark.parametrize("size", [(40000, 40000), (10000, 10000), (9000, 8000)])
def test_decompression_bomb(size: tuple[int, int]) -> None:
    """Far over PIL's limit, just over it, and over bannermatch's own lower limit."""
    assert size[0] * size[1] > MAX_PIXELS
    with pytest.raises(ImageError, match=r"^decompression bomb: "):
        decode_bytes(_png_claiming(*size))


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.jpg").mkdir()
    assert _reason(tmp_path / "folder.jpg") == "not a file: it is a directory"


def test_missing_file(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nothing.jpg").startswith("missing: no such file")


def test_broken_symlink(tmp_path: Path) -> None:
    (tmp_path / "link.jpg").symlink_to(tmp_path / "gone.jpg")
    assert "broken symlink" in _reason(tmp_path / "link.jpg")


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode"
)
def test_permission_denied(tmp_path: Path, edge_cases_dir: Path) -> None:
    path = tmp_path / "secret.jpg"
    shutil.copy(edge_cases_dir / "base_images" / "ukbench00120.jpg", path)
    path.chmod(0)
    try:
        assert _reason(path) == "unreadable: permission denied"
    finally:
        path.chmod(0o644)
