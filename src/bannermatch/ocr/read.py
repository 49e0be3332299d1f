"""``bannermatch index ... --ocr``: read the text on every image of a collection.

Threads read the images (one OCR engine each, one onnxruntime thread per call); every
``CHUNK`` items the results are committed as one part of ``<collection>/ocr/``, so a
killed run keeps what it finished and a rerun reads only the rest: items whose image
(sha256) is the one already read are skipped. An image that cannot be read gets its
reason in the store and no text.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bannermatch.errors import ImageError
from bannermatch.images import load_image
from bannermatch.ocr.engine import DET_SIDE, OcrEngine, OcrResult, read_banner, require_ocr
from bannermatch.ocr.store import MAX_PARTS, OcrStore
from bannermatch.progress import progress_bar
from bannermatch.store.collection import Collection

log = logging.getLogger(__name__)

#: items read between two commits: the most a kill can lose
CHUNK = 64


@dataclass
class OcrRunResult:
    read: int = 0
    kept: int = 0
    with_text: int = 0  # of the items read in this run
    bad: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    named: dict[str, str] | None = None  # with name=True: item id -> the name given

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.read if self.read else 0.0

    def summary(self) -> str:
        named = "" if self.named is None else f"; named {len(self.named)} item(s) after it"
        return (
            f"read the text of {self.read} image(s) in {self.seconds:.1f}s "
            f"({self.seconds_per_image:.2f} s/image), {self.with_text} with text; "
            f"{self.kept} up to date, {len(self.bad)} bad{named}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "with_text": self.with_text,
            "bad": self.bad,
            "seconds": round(self.seconds, 3),
            "seconds_per_image": round(self.seconds_per_image, 4),
            "named": self.named,
        }


def read_image(source: str, det_side: int = DET_SIDE) -> OcrResult | str:
    """The text of an image file, or the reason it cannot be read."""
    try:
        rgb = np.asarray(load_image(source).image)
        return read_banner(rgb, det_side)
    except ImageError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # cv2.error or onnxruntime's: a bad item is reported and skipped
        log.warning("OCR failed on %s", source, exc_info=True)
        return f"OCR failed: {type(exc).__name__}: {exc}"


def _todo(coll: Collection, store: OcrStore) -> tuple[list[tuple[str, str, str]], int]:
    """(id, source path, sha256) of every catalogued image not read yet, and how many are."""
    todo, kept = [], 0
    with coll.catalog() as cat:
        for item in cat.items("ok"):
            if not item.source:
                continue
            if item.sha256 and store.sha256.get(item.id) == item.sha256:
                kept += 1
                continue
            todo.append((item.id, coll.resolve_source(item.source), item.sha256 or ""))
    return todo, kept


def read_collection(
    collection: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    det_side: int = DET_SIDE,
    name: bool = False,
) -> OcrRunResult:
    """Read the text of every catalogued image of ``collection`` that has none yet; with
    ``name``, name the nameless items after their banners (:mod:`bannermatch.ocr.names`).

    ``on_progress(done, total)`` is called after every image (besides the bar)."""
    t0 = time.perf_counter()
    require_ocr()  # fails at once, with the install hint, when OCR is missing
    coll = Collection(collection)
    store = OcrStore.open(collection)
    settings = OcrEngine.settings(det_side)
    if store.manifest != settings:
        if store.sha256:
            log.info("%s was read with other settings: reading it again", store.folder)
        store.reset(settings)
    todo, kept = _todo(coll, store)
    result = OcrRunResult(kept=kept)
    bar = progress_bar(len(todo), "reading text", enabled=progress)
    for done, row in enumerate(_read_all(todo, workers, det_side, store), 1):
        if "bad" in row:
            result.bad[row["id"]] = row["bad"]
        else:
            result.read += 1
            result.with_text += bool(row["lines"])
        bar.update(1)
        if on_progress is not None:
            on_progress(done, len(todo))
    bar.close()
    if len(store.parts) > MAX_PARTS:
        store.compact()
    result.seconds = time.perf_counter() - t0
    if name:
        from bannermatch.ocr.names import names_from_ocr

        result.named = names_from_ocr(collection)
    return result


def _read_all(
    todo: list[tuple[str, str, str]], workers: int | None, det_side: int, store: OcrStore
) -> Iterator[dict[str, Any]]:
    """Read ``todo`` in threads, committing every ``CHUNK``; yields each row as it is read."""
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            rows = []
            found = pool.map(lambda t: read_image(t[1], det_side), chunk)
            for (item_id, _, sha), out in zip(chunk, found, strict=True):
                row: dict[str, Any] = {"id": item_id, "sha256": sha}
                if isinstance(out, str):
                    log.warning("no text for %s: %s", item_id, out)
                    row["bad"] = out
                else:
                    row |= out.to_dict()
                rows.append(row)
                yield row  # for the progress bar: stored with its chunk, just below
            store.commit(rows)
