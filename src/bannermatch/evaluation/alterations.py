"""Altered copies of an image, for the copy-detection task of ``bannermatch eval``.

Each alteration is what happens to a banner between two stores, uploads or
editions: a trim, a smaller size, heavier JPEG, a mirror, other colours, and
new text or branding over the same art. Every one is random within fixed bounds
and reproducible: it draws from a generator seeded by (seed, image number,
alteration number).

=========  ==================================================================
``crop``   a random window keeping 70-90% of the width and of the height
``resize`` scaled down to 25-50% of its size (bilinear), aspect kept
``jpeg``   recompressed as JPEG at quality 15-35
``flip``   mirrored left to right
``jitter`` brightness and contrast x0.7-1.3, saturation x0.6-1.4, hue +-0.06 turn
``text``   one or two lines of store-style text ("GAME OF THE YEAR EDITION",
           "-75%", ...) in a random colour with an outline, 6-11% of the image
           height, at a random place; half the time on a ribbon (a filled strip
           across the image), as an edition's branding is
``mix``    a re-upload with new branding: crop, jitter, text, resize and jpeg,
           one after the other
=========  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from io import BytesIO

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

Alteration = Callable[[Image.Image, np.random.Generator], Image.Image]

#: words of the overlaid text: what editions, sales and stores print on banners
TEXTS = (
    "GAME OF THE YEAR EDITION",
    "DEFINITIVE EDITION",
    "REMASTERED",
    "DELUXE EDITION",
    "COMPLETE EDITION",
    "NOW ON STEAM",
    "EARLY ACCESS",
    "FREE TO PLAY",
    "-75%",
    "ENHANCED EDITION",
    "DIRECTOR'S CUT",
    "ANNIVERSARY",
    "DLC INCLUDED",
    "NEW SEASON",
    "VR",
)


def crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    cw, ch = round(w * rng.uniform(0.7, 0.9)), round(h * rng.uniform(0.7, 0.9))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((left, top, left + cw, top + ch))


def resize(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    scale = rng.uniform(0.25, 0.5)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.BILINEAR)


def jpeg(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    buffer = BytesIO()
    im.save(buffer, "JPEG", quality=int(rng.integers(15, 36)))
    buffer.seek(0)
    with Image.open(buffer) as out:
        return out.convert("RGB")


def flip(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def jitter(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4))
    hsv = np.array(im.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(rng.uniform(-0.06, 0.06) * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def text(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    im = im.copy()
    draw = ImageDraw.Draw(im)
    size = max(8, round(im.height * rng.uniform(0.06, 0.11)))
    font = ImageFont.load_default(size=size)
    lines = [str(t) for t in rng.choice(TEXTS, size=int(rng.integers(1, 3)), replace=False)]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    outline = (0, 0, 0) if sum(colour) > 384 else (255, 255, 255)
    gap = size // 4
    # Pillow types a box as floats; a FreeType font's boxes are whole pixels
    boxes = [
        tuple(int(v) for v in draw.textbbox((0, 0), line, font=font, stroke_width=2))
        for line in lines
    ]
    width = min(im.width, max(b[2] - b[0] for b in boxes))
    height = sum(b[3] - b[1] for b in boxes) + gap * (len(lines) - 1)
    x = int(rng.integers(0, max(1, im.width - width) + 1))
    y = int(rng.integers(0, max(1, im.height - height) + 1))
    if rng.random() < 0.5:  # a ribbon across the image, as an edition's branding
        ribbon = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle((0, y - gap, im.width, y + height + gap), fill=ribbon)
    for line, box in zip(lines, boxes, strict=True):
        draw.text(
            (x - box[0], y - box[1]),
            line,
            font=font,
            fill=colour,
            stroke_width=2,
            stroke_fill=outline,
        )
        y += box[3] - box[1] + gap
    return im


def mix(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    for step in (crop, jitter, text, resize, jpeg):
        im = step(im, rng)
    return im


#: the alterations, in the order their numbers seed the generator
ALTERATIONS: dict[str, Alteration] = {
    "crop": crop,
    "resize": resize,
    "jpeg": jpeg,
    "flip": flip,
    "jitter": jitter,
    "text": text,
    "mix": mix,
}


def parse_alterations(spec: str | Sequence[str] | None) -> list[str]:
    """``"crop,text"`` (or a list) as known alteration names, in the given order."""
    from bannermatch.errors import BannermatchError

    if spec is None:
        return list(ALTERATIONS)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in ALTERATIONS]
    if unknown or not names:
        raise BannermatchError(
            f"unknown alteration {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(ALTERATIONS)}"
        )
    return list(dict.fromkeys(names))


def alter(im: Image.Image, name: str, seed: int, number: int) -> Image.Image:
    """The ``name`` alteration of image ``number``: the same for the same arguments."""
    rng = np.random.default_rng([seed, number, list(ALTERATIONS).index(name)])
    return ALTERATIONS[name](im.convert("RGB"), rng)
