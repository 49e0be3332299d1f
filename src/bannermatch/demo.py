"""``bannermatch demo``: the whole job on sample photos, offline, on the default model.

The sample is the photos shipped inside scikit-image's wheel (permissive
licences), each with two altered copies (mirrored and cropped; shrunk, darker
and recompressed), so the demo can check itself: every altered copy should
find its own photo among its three nearest neighbours (the top match may be
the other half of the stereo pair ``motorcycle_left`` / ``motorcycle_right``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance, ImageOps

from . import atomic
from .errors import BannermatchError, ImageError
from .images import load_image

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
    collection: str
    report: str
    items: int
    index_seconds: float
    images_per_second: float
    variants: int
    variants_found: int  # altered copies with their own photo among the top FOUND_WITHIN
    showcase: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        lines = [
            f"demo collection: {self.collection} ({self.items} images, "
            f"embedded at {self.images_per_second:.0f} img/s)",
            f"altered copies that found their own photo in their top {FOUND_WITHIN}: "
            f"{self.variants_found}/{self.variants}",
            f"report: {self.report}",
            "",
        ]
        for case in self.showcase:
            hits = ", ".join(f"{h['id']} ({h['score']:.2f})" for h in case["results"][:3])
            lines.append(f"  {case['query']:<12} -> {hits}")
        lines += [
            "",
            f"try: bannermatch similar {self.collection} coffee",
            f"     bannermatch unique {self.collection} -n 5",
            f"     bannermatch similar {self.collection} path/to/your/photo.jpg",
        ]
        return "\n".join(lines)


def demo(out: str | os.PathLike[str] = "bannermatch-demo", *, progress: bool = True) -> DemoResult:
    """Build, match and report a demo collection in ``out``; return what it found."""
    from .indexer import index
    from .matching import match
    from .query import similar
    from .report import report

    started = time.perf_counter()
    root = Path(out)
    stems = write_sample(root / "sample")
    indexed = index(root / "sample", root, progress=progress)
    match(root, k=10, progress=progress)
    variants = [f"{s}{VARIANT_SEPARATOR}{tag}" for s in stems for tag in ("mirror", "small")]
    found = 0
    for variant in variants:
        photo = variant.split(VARIANT_SEPARATOR)[0]
        hits = similar(root, variant, k=FOUND_WITHIN).hits
        found += any(h.id.split(VARIANT_SEPARATOR)[0] == photo for h in hits)
    showcase = [
        {"query": s, "results": [h.to_dict() for h in similar(root, s, k=5).hits]}
        for s in SHOWCASE
        if s in stems
    ]
    rep = report(root, queries=stems, progress=progress)
    return DemoResult(
        collection=str(root),
        report=str(Path(rep.out) / "index.html"),
        items=indexed.count,
        index_seconds=round(indexed.seconds, 2),
        images_per_second=round(indexed.images_per_second, 1),
        variants=len(variants),
        variants_found=int(found),
        showcase=showcase,
        seconds=round(time.perf_counter() - started, 2),
    )
