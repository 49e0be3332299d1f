"""``index --names-from-ocr``: an item without a name is named by its banner's title.

An item's name is missing when it is empty, its id, or its file's stem (what ``index``
gives an image that no names sidecar or Steam names). The title is the text of the
banner's largest lines (at least :data:`TITLE_HEIGHT` of the tallest one's height), in
reading order, as read (OCR's capitals and run-together words included: it is what the
banner says, not a guess at the title). The item's metadata records the name given as
``"name_from_ocr"``, so a later run refreshes a name it gave when the banner changes,
and leaves alone a name that a names sidecar gave since.
"""

from __future__ import annotations

import json
import os
from pathlib import PurePath

from ..catalog import Item
from ..collection import Collection
from .engine import OcrResult
from .store import load_ocr

#: lines at least this share of the tallest line's height make up the title
TITLE_HEIGHT = 0.6
FROM_OCR = "name_from_ocr"


def title(result: OcrResult) -> str:
    """The banner's title: its largest lines, in reading order ("" without text)."""
    heights = [line.bbox[3] - line.bbox[1] for line in result.lines]
    if not heights:
        return ""
    tallest = max(heights)
    return " ".join(
        line.text.strip()
        for line, h in zip(result.lines, heights, strict=True)
        if h >= TITLE_HEIGHT * tallest
    )


def name_missing(item: Item) -> bool:
    """Whether ``item`` has no real name (or one an earlier run took from its banner)."""
    if item.name and item.name == item.metadata.get(FROM_OCR):
        return True
    stem = PurePath(item.source).stem if item.source else None
    return not item.name or item.name in (item.id, stem)


def names_from_ocr(collection: str | os.PathLike[str]) -> dict[str, str]:
    """Name every item whose name is missing after its banner's title; returns
    item id -> the name given."""
    read = load_ocr(collection)
    given: dict[str, str] = {}
    rows: dict[str, tuple[str, str]] = {}
    with Collection(collection).catalog() as cat:
        for item in cat.items("ok"):
            result = read.get(item.id)
            if result is None or not name_missing(item):
                continue
            name = title(result)
            if not name or name == item.name:
                continue
            meta = item.metadata | {FROM_OCR: name}
            rows[item.id] = (name, json.dumps(meta))
            given[item.id] = name
        cat.set_labels(rows)
    return given
