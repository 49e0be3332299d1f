"""``eval --copies --text-bias``: a synthetic check of how much a match follows a title.

From a folder, ``n`` pictures X and ``n`` other pictures Y are drawn (seeded). Each X_i gets
a made-up title T_i pasted on in large letters: that is the database. Two kinds of query:

- *same art, other title*: X_i with another title pasted on; it must find X_i + T_i first
  (``same_art_found``, higher is better);
- *other art, same title*: Y_i with T_i pasted on; it must not find X_i + T_i first
  (``same_title_taken``, lower is better).

Both run on the plain embeddings and on the art-only ones (the text OCR finds on every
image painted over, :mod:`.mask`), so the figures show what masking buys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bannermatch.acquire.inputs import scan_input
from bannermatch.errors import BannermatchError
from bannermatch.images import load_image
from bannermatch.ocr.mask import DEFAULT_METHOD, boxes_of, mask_image

if TYPE_CHECKING:
    from bannermatch.embed.models import EmbeddingModel

#: made-up titles, two words each (none is a word of another)
TITLES = (
    "STAR FALL", "IRON TIDE", "MOON HARBOR", "EMBER CROWN", "FROST LEGION", "VELVET ABYSS",
    "COPPER SKY", "HOLLOW BLOOM", "RIVER SAINT", "NEON WARDEN", "GHOST ORCHARD", "SILENT FORGE",
    "CRIMSON ATLAS", "WILD ECHO", "AMBER SIEGE", "STORM CIRCUS", "LUNAR KNIGHTS", "BRASS PROPHET",
    "DESERT RELIC", "PAPER DRAGON", "GOLDEN MAZE", "SHADOW CANAL", "CRYSTAL FARM", "THUNDER INN",
    "SCARLET DUNE", "MARBLE WOLF", "QUIET COMET", "TIMBER QUEST", "VIOLET ENGINE", "PLASMA GROVE",
)  # fmt: skip


def paste_title(image: Image.Image, title: str) -> Image.Image:
    """``image`` with ``title`` in large white letters with a dark outline, top centre."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(18, out.width // 10))
    left, _, right, _ = draw.textbbox((0, 0), title, font=font, stroke_width=3)
    x = max(4, (out.width - (right - left)) // 2)
    draw.text(
        (x, out.height // 12), title, font=font, fill=(250, 250, 250),
        stroke_width=3, stroke_fill=(15, 15, 15),
    )  # fmt: skip
    return out


def _pictures(folder: Path, n: int, seed: int) -> tuple[list[Image.Image], list[Image.Image]]:
    items = [it for it in scan_input(folder).items if not it.error]
    if len(items) < 4:
        raise BannermatchError(f"the title check needs at least 4 images in {folder}")
    n = min(n, len(items) // 2, len(TITLES))
    order = np.random.default_rng(seed).permutation(len(items))
    pictures: list[Image.Image] = []
    for i in order:
        if len(pictures) == 2 * n:
            break
        try:
            pictures.append(load_image(items[i].source).image.convert("RGB"))
        except Exception:  # a bad image is simply not drawn
            continue
    n = len(pictures) // 2
    return pictures[:n], pictures[n : 2 * n]


def _top1(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    return np.argmax(queries @ database.T, axis=1)


def title_check(
    folder: str | Path,
    model: EmbeddingModel,
    *,
    n: int = 30,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
    workers: int | None = None,
) -> dict[str, Any]:
    """The synthetic title check on the pictures of ``folder`` (see the module's text)."""
    from bannermatch.ocr.engine import read_banner

    arts, others = _pictures(Path(folder), n, seed)
    n = len(arts)
    titles = TITLES[:n]
    database = [paste_title(x, t) for x, t in zip(arts, titles, strict=True)]
    same_art = [paste_title(x, titles[(i + 1) % n]) for i, x in enumerate(arts)]
    same_title = [paste_title(y, t) for y, t in zip(others, titles, strict=True)]
    sets = [database, same_art, same_title]

    t0 = time.perf_counter()
    everything = [im for s in sets for im in s]
    with ThreadPoolExecutor(workers) as pool:
        read = list(pool.map(lambda im: read_banner(np.asarray(im)), everything))
    ocr_seconds = time.perf_counter() - t0
    masked = [mask_image(im, boxes_of(r), method) for im, r in zip(everything, read, strict=True)]

    def figures(images: list[Image.Image]) -> dict[str, float]:
        emb = _embed(model.embed_images, images)
        db, qa, qt = emb[:n], emb[n : 2 * n], emb[2 * n :]
        wanted = np.arange(n)
        return {
            "same_art_found": round(float(np.mean(_top1(qa, db) == wanted)), 4),
            "same_title_taken": round(float(np.mean(_top1(qt, db) == wanted)), 4),
        }

    return {
        "n": n,
        "seed": seed,
        "plain": figures(everything),
        "art_only": figures(masked) | {"mask": method},
        "titles_read": round(
            float(np.mean([_read(t, r.text) for t, r in zip(titles, read[:n], strict=True)])), 4
        ),
        "ocr_seconds": round(ocr_seconds, 3),
    }


def _read(title: str, text: str) -> bool:
    """Whether OCR read the pasted title (its words, run together or not)."""
    return title.replace(" ", "") in text.upper().replace(" ", "")


def check_for(
    images: str | Path, model_options: dict[str, Any], method: str | None
) -> dict[str, Any]:
    """:func:`title_check` with the model ``eval`` was given (its preset and options)."""
    from bannermatch.embed.models import DEFAULT_MODEL, create_model

    options = {k: v for k, v in model_options.items() if v is not None}
    model = create_model(options.pop("model", DEFAULT_MODEL), **options)
    return title_check(images, model, method=method or DEFAULT_METHOD)


def _embed(
    embed: Callable[[list[Image.Image]], np.ndarray], images: list[Image.Image]
) -> np.ndarray:
    return np.concatenate([embed(images[i : i + 32]) for i in range(0, len(images), 32)])


def title_line(found: dict[str, Any]) -> str:
    p, a = found["plain"], found["art_only"]
    return (
        f"title check ({found['n']} pictures): same art under another title found first "
        f"{p['same_art_found']:.2f} plain, {a['same_art_found']:.2f} art only; other art "
        f"under the same title taken first {p['same_title_taken']:.2f} plain, "
        f"{a['same_title_taken']:.2f} art only ({a['mask']})"
    )
