"""The query image mirrored or flipped: the original banner tools' own way to weaken the pull
of the text on a banner (their API's ``mirror=1`` / ``flip=1``).

A mirrored title reads backwards and a flipped one upside down, so a model that matched
banners by their lettering finds less of it in the query, while the picture's colours,
layout and subjects mostly stay. Used by ``similar --mirror/--flip``, the API's
``/api/items/{id}/similar?mirror=1&flip=1`` and the original routes (``_x``, ``_y``, ``_xy``).
"""

from __future__ import annotations

import dataclasses

from PIL import Image, ImageOps

from bannermatch.images import DecodedImage


def transform_name(mirror: bool, flip: bool) -> str | None:
    """``"mirror"``, ``"flip"``, ``"mirror+flip"``, or None for the image as it is."""
    return "+".join(name for name, on in (("mirror", mirror), ("flip", flip)) if on) or None


def transform_image(image: Image.Image, mirror: bool, flip: bool) -> Image.Image:
    """``image`` mirrored left to right and/or flipped upside down."""
    if mirror:
        image = ImageOps.mirror(image)
    if flip:
        image = ImageOps.flip(image)
    return image


def transform_decoded(decoded: DecodedImage, mirror: bool, flip: bool) -> DecodedImage:
    """A decoded image with its pixels transformed (its file's hash and size unchanged)."""
    if not (mirror or flip):
        return decoded
    return dataclasses.replace(decoded, image=transform_image(decoded.image, mirror, flip))
