"""``bannermatch demo``: the whole job on the default model, on Steam or offline.

When Steam is reachable the demo catalogues SteamSpy's first page of games (the
1,000 most owned) and the top 100 of the last two weeks, downloads their
banners, indexes, matches and reports them. Otherwise it says so in one line and
uses the photos shipped inside scikit-image's wheel (permissive licences), each
with two altered copies (mirrored and cropped; shrunk, darker and recompressed),
so the offline demo can check itself: every altered copy should find its own
photo among its three nearest neighbours (the top match may be the other half of
the stereo pair ``motorcycle_left`` / ``motorcycle_right``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance, ImageOps

from bannermatch.errors import BannermatchError, ImageError
from bannermatch.images import load_image
from bannermatch.store import atomic

log = logging.getLogger(__name__)

#: photos shown with their top matches at the end of the demo
SHOWCASE = ("chelsea", "coffee", "rocket", "astronaut")
MIN_SIDE = 100
#: photos left out of the sample because another photo has the very same pixels
SKIPPED = frozenset({"chessboard_GRAY"})  # = chessboard_RGB in grey
FOUND_WITHIN = 3
VARIANT_SEPARATOR = "~"


def sample_photos() -> list[Path]:
    """The photos of scikit-image's ``data`` folder that are large enough to be useful."""
    try:
        import skimage
    except ImportError:
        raise BannermatchError(
            "the demo needs scikit-image's sample photos: pip install 'bannermatch[demo]'"
        ) from None
    folder = Path(skimage.__file__).parent / "data"
    photos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in {".png", ".jpg"} or path.stem in SKIPPED:
            continue
        with Image.open(path) as im:
            if min(im.size) >= MIN_SIDE:
                photos.append(path)
    return photos


def _variants(im: Image.Image) -> dict[str, Image.Image]:
    w, h = im.size
    dx, dy = w // 20, h // 20
    mirrored = ImageOps.mirror(im).crop((dx, dy, w - dx, h - dy))
    small = im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BILINEAR)
    small = ImageEnhance.Brightness(small).enhance(0.85)
    return {"mirror": mirrored, "small": small}


def write_sample(folder: Path) -> list[str]:
    """Write the sample photos and their altered copies to ``folder``; return the photo stems."""
    stems = []
    for path in sample_photos():
        try:
            rgb = load_image(str(path)).image
        except ImageError:
            continue
        stems.append(path.stem)
        target = folder / f"{path.stem}.png"
        if not target.exists():
            with atomic.atomic_open(target) as fh:
                rgb.save(fh, "PNG")
        for tag, variant in _variants(rgb).items():
            target = folder / f"{path.stem}{VARIANT_SEPARATOR}{tag}.jpg"
            if not target.exists():
                with atomic.atomic_open(target) as fh:
                    variant.save(fh, "JPEG", quality=70)
    return stems


@dataclass
class DemoResult:
    source: str  # "steam" or "sample"
    collection: str
    report: str
    items: int
    images_per_second: float
    variants: int = 0  # sample only: altered copies, and those that found their photo
    variants_found: int = 0
    showcase: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None  # why Steam was not used
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        what = "Steam banners" if self.source == "steam" else "images"
        lines = [
            f"demo collection: {self.collection} ({self.items} {what}, "
            f"embedded at {self.images_per_second:.0f} img/s)",
        ]
        if self.source == "sample":
            lines.append(
                f"altered copies that found their own photo in their top {FOUND_WITHIN}: "
                f"{self.variants_found}/{self.variants}"
            )
        lines += [f"report: {self.report}", ""]
        for case in self.showcase:
            hits = ", ".join(f"{h['name']} ({h['score']:.2f})" for h in case["results"][:3])
            lines.append(f"  {case['name'][:28]:<28} -> {hits}")
        example = self.showcase[0]["query"] if self.showcase else "ITEM"
        lines += [
            "",
            f"try: bannermatch similar {self.collection} {example}",
            f"     bannermatch unique {self.collection} -n 5",
            f"     bannermatch similar {self.collection} path/to/your/picture.jpg",
        ]
        return "\n".join(lines)


def _showcase(root: Path, ids: list[str]) -> list[dict[str, Any]]:
    from bannermatch.query.similar import similar

    cases = []
    for item_id in ids:
        result = similar(root, item_id, k=5)
        cases.append(
            {
                "query": item_id,
                "name": result.query.name or item_id,
                "results": [h.to_dict() for h in result.hits],
            }
        )
    return cases


def _sample_demo(root: Path, progress: bool) -> DemoResult:
    from bannermatch.embed.index import index
    from bannermatch.present.report import report
    from bannermatch.query.match import match
    from bannermatch.query.similar import similar

    stems = write_sample(root / "photos")
    indexed = index(root / "photos", root, progress=progress)
    match(root, k=10, progress=progress)
    variants = [f"{s}{VARIANT_SEPARATOR}{tag}" for s in stems for tag in ("mirror", "small")]
    found = 0
    for variant in variants:
        photo = variant.split(VARIANT_SEPARATOR)[0]
        hits = similar(root, variant, k=FOUND_WITHIN).hits
        found += any(h.id.split(VARIANT_SEPARATOR)[0] == photo for h in hits)
    rep = report(root, queries=stems, progress=progress)
    return DemoResult(
        source="sample",
        collection=str(root),
        report=str(Path(rep.out) / "index.html"),
        items=indexed.count,
        images_per_second=round(indexed.images_per_second, 1),
        variants=len(variants),
        variants_found=int(found),
        showcase=_showcase(root, [s for s in SHOWCASE if s in stems]),
    )


def _steam_demo(root: Path, progress: bool) -> DemoResult:
    """Top Steam games: catalogue, banners, index, match, report. Raises
    :class:`BannermatchError` as soon as SteamSpy or the CDN cannot be reached."""
    from bannermatch.acquire.steam.catalog import fetch_catalog
    from bannermatch.acquire.steam.download import download
    from bannermatch.acquire.steam.endpoints import CURATED_GAMES
    from bannermatch.embed.index import index
    from bannermatch.present.report import report
    from bannermatch.query.match import match
    from bannermatch.store.collection import Collection

    fetch_catalog(root, "steamspy", max_pages=1, timeout=10.0, retries=1)
    fetched = download(root, progress=progress)
    if fetched.ok + fetched.done_before == 0:
        raise BannermatchError("no banner could be downloaded from the Steam CDN")
    indexed = index(root, root, progress=progress)
    match(root, k=10, progress=progress)
    rep = report(root, progress=progress)
    rows = Collection(root).load().row_of
    featured = [i for i in CURATED_GAMES if i in rows][: len(SHOWCASE)]
    return DemoResult(
        source="steam",
        collection=str(root),
        report=str(Path(rep.out) / "index.html"),
        items=indexed.count,
        images_per_second=round(indexed.images_per_second, 1),
        showcase=_showcase(root, featured),
    )


def demo(
    out: str | os.PathLike[str] = "bannermatch-demo",
    *,
    steam: bool = True,
    progress: bool = True,
) -> DemoResult:
    """Build, match and report a demo collection under ``out``: Steam's top games when
    Steam is reachable (and ``steam``), else the offline sample photos."""
    started = time.perf_counter()
    root = Path(out)
    note = None
    result = None
    if steam:
        fresh = not (root / "steam").exists()
        try:
            result = _steam_demo(root / "steam", progress)
        except BannermatchError as exc:
            if fresh:  # leave no empty Steam collection behind
                shutil.rmtree(root / "steam", ignore_errors=True)
            note = f"Steam is not reachable ({exc}); using the offline sample photos instead"
            log.warning(note)
    if result is None:
        result = _sample_demo(root / "sample", progress)
    result.note = note
    result.seconds = round(time.perf_counter() - started, 2)
    return result
