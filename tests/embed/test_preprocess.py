"""Preprocessing gives Pillow's pixels: its own filters exactly, bilinear and bicubic
(resampled by PyTorch's kernels) to within 2 levels on under 1% of values, for every fit,
size and shape; and the table-lookup normalisation is exactly the arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bannermatch.embed.models import Preprocess
from bannermatch.embed.models.preprocess import INTERPOLATIONS, TORCH_FILTERS
from support.cli import assert_pillow_close


def pillow_resize(im: Image.Image, size: tuple[int, int], interpolation: str) -> Image.Image:
    """Pillow 13's resize whatever Pillow is installed: its two passes (8-bit in between)
    vertical first when the height shrinks more than twice as much as the width."""
    (w, h), (nw, nh), resample = im.size, size, INTERPOLATIONS[interpolation]
    if h - nh > 0 and h - nh > 2 * (w - nw):
        im = im.resize((w, nh), resample)
    return im.resize(size, resample)


def plain(pre: Preprocess, im: Image.Image) -> np.ndarray:
    """torchvision's Resize + CenterCrop, a squash, or a pad, written out plainly in Pillow."""
    w, h = im.size
    if pre.fit == "pad":
        scale = pre.crop_size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        fill = tuple(round(m * 255) for m in pre.mean)
        canvas = Image.new("RGB", (pre.crop_size, pre.crop_size), fill)
        canvas.paste(
            pillow_resize(im, (nw, nh), pre.interpolation),
            ((pre.crop_size - nw) // 2, (pre.crop_size - nh) // 2),
        )
        return np.asarray(canvas)
    if pre.fit == "squash":
        return np.asarray(pillow_resize(im, (pre.crop_size, pre.crop_size), pre.interpolation))
    if pre.keep_ratio:
        short, long = (w, h) if w <= h else (h, w)
        ns, nl = pre.resize_size, int(pre.resize_size * long / short)
        nw, nh = (ns, nl) if w <= h else (nl, ns)
    else:
        nw = nh = pre.resize_size
    if (nw, nh) != (w, h):
        im = pillow_resize(im, (nw, nh), pre.interpolation)
    top, left = round((nh - pre.crop_size) / 2), round((nw - pre.crop_size) / 2)
    return np.asarray(im.crop((left, top, left + pre.crop_size, top + pre.crop_size)))


@pytest.fixture(scope="module")
def shapes(covers_dir: Path, igdb_dir: Path, edge_cases_dir: Path) -> list[Image.Image]:
    cover = Image.open(sorted((covers_dir / "images").glob("*.jpg"))[0]).convert("RGB")
    igdb = Image.open(sorted((igdb_dir / "images").glob("*.jpg"))[0]).convert("RGB")
    photo = Image.open(sorted((edge_cases_dir / "berlin_pairs").glob("*.jpg"))[0]).convert("RGB")
    return [
        cover,  # 342x482, a banner
        igdb,  # 512x768
        photo,  # 1440x960, landscape
        cover.crop((0, 0, 256, 400)),  # already at the resize size on its short side
        cover.resize((90, 127)),  # smaller than the crop: enlarged
        cover.resize((1200, 300)),  # a wide strip, 4:1
        cover.resize((256, 1000)),  # a tall one
        cover.resize((60, 230)),  # a sliver, enlarged
    ]  # (longer than 4:1, the crop is resized alone: see test_models)


@pytest.mark.parametrize("interpolation", sorted(INTERPOLATIONS))
@pytest.mark.parametrize("fit", ["crop", "crop-square", "squash", "pad"])
def test_resize_gives_pillows_pixels(
    shapes: list[Image.Image], interpolation: str, fit: str
) -> None:
    for crop, resize in [(224, 256), (224, 224), (160, 182), (64, 73), (300, 342)]:
        pre = Preprocess(
            crop, resize, interpolation, fit=fit.split("-")[0], keep_ratio=fit == "crop"
        )
        for im in shapes:
            got, want = np.asarray(pre.resize(im)), plain(pre, im)
            assert got.shape == (crop, crop, 3)
            what = f"{fit} {im.size} {crop}/{resize}"
            if interpolation in TORCH_FILTERS:
                assert_pillow_close(got, want, msg=what)
            else:
                np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("fit", ["crop", "squash", "pad"])
def test_normalisation_by_lookup_is_the_arithmetic(shapes: list[Image.Image], fit: str) -> None:
    pre = Preprocess(224, 256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), fit=fit)
    mean = np.asarray(pre.mean, np.float32) * 255
    std = np.asarray(pre.std, np.float32) * 255
    batch = np.full((len(shapes), 3, 224, 224), np.nan, np.float32)
    for row, im in enumerate(shapes):
        pre.into(im, batch[row])  # into a row of a batch buffer, as the pipeline does
        square = pre.resize(im)  # pad: the image on a canvas of the mean colour
        want = ((np.asarray(square, np.float32) - mean) / std).transpose(2, 0, 1)
        if fit == "pad":  # the padding is exactly zero (the mean), not the rounded colour
            inner = batch[row] != 0
            np.testing.assert_array_equal(batch[row][inner], want[inner])
            assert (batch[row] == 0).any()
        else:
            np.testing.assert_array_equal(batch[row], want)
        np.testing.assert_array_equal(pre(im), batch[row])
    assert not np.isnan(batch).any()
