"""The banner text of a collection: ``<collection>/ocr/``.

Layout:

- ``manifest.json``: the engine and settings the text was read with
  (:meth:`OcrEngine.settings`); text read otherwise is read again;
- ``parts/NNNNNNNN.jsonl``: one JSON object a line, each part written atomically by one
  commit of :func:`bannermatch.ocr.read.read_collection`. A line is either
  ``{"id", "sha256", "text", "lines": [{"text", "confidence", "box": [8 floats]}]}`` or,
  for an image that could not be read, ``{"id", "sha256", "bad": reason}``. A later part
  overrides an earlier one for the same id (an image that changed is read again).

Appending parts keeps a run's writes O(new items) and a killed run loses at most the part
in flight; :meth:`OcrStore.compact` folds many parts into one. JSON lines stay readable
with any tool; text and boxes are about 200 bytes an item (docs/ocr.md).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bannermatch.ocr.engine import OcrLine, OcrResult
from bannermatch.store.atomic import write_json, write_text

log = logging.getLogger(__name__)

OCR_DIR = "ocr"
PARTS = "parts"
MANIFEST = "manifest.json"
#: parts beyond this are folded into one at the end of a run
MAX_PARTS = 64


@dataclass
class OcrStore:
    """Every item's stored text (``results``) or reason it has none (``bad``)."""

    folder: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    results: dict[str, OcrResult] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)  # the image each entry was read from
    parts: list[Path] = field(default_factory=list)

    @classmethod
    def open(cls, collection: str | os.PathLike[str]) -> OcrStore:
        """The stored text (empty when ``index --ocr`` never ran)."""
        folder = Path(collection) / OCR_DIR
        store = cls(folder)
        if (folder / MANIFEST).is_file():
            store.manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
        store.parts = sorted((folder / PARTS).glob("*.jsonl"))
        for part in store.parts:
            store._read_part(part)
        return store

    def _read_part(self, part: Path) -> None:
        with open(part, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    self._add(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:  # parts are atomic: a damaged disk
                    log.warning("%s line %d is damaged and skipped: %s", part, number, exc)

    def _add(self, row: dict[str, Any]) -> None:
        item_id = str(row["id"])
        if "bad" in row:
            self.bad[item_id] = str(row["bad"])
            self.results.pop(item_id, None)
        else:  # parsed whole before anything is kept: a damaged line leaves no trace
            self.results[item_id] = OcrResult(tuple(OcrLine.from_dict(d) for d in row["lines"]))
            self.bad.pop(item_id, None)
        self.sha256[item_id] = str(row.get("sha256") or "")

    def reset(self, manifest: dict[str, Any]) -> None:
        """Forget every entry (read with other settings) and record ``manifest``."""
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.parts, self.results, self.bad, self.sha256 = [], {}, {}, {}
        self.manifest = manifest
        write_json(self.folder / MANIFEST, manifest)

    def commit(self, rows: list[dict[str, Any]]) -> None:
        """Store ``rows`` (see the module doc) as one new part, atomically."""
        if not rows:
            return
        if not (self.folder / MANIFEST).is_file():
            write_json(self.folder / MANIFEST, self.manifest)
        number = int(self.parts[-1].stem) + 1 if self.parts else 1
        path = self.folder / PARTS / f"{number:08d}.jsonl"
        write_text(path, "".join(_line(r) for r in rows))
        self.parts.append(path)
        for row in rows:
            self._add(row)

    def compact(self) -> None:
        """Fold the parts into one (written before the old ones go: a kill loses nothing)."""
        if len(self.parts) <= 1:
            return
        old = list(self.parts)
        rows = [self.row(i) for i in sorted(self.sha256)]
        self.parts = [old[-1]]  # the new part is numbered after the last one
        self.commit(rows)
        self.parts = self.parts[1:]
        for part in old:
            part.unlink(missing_ok=True)

    def row(self, item_id: str) -> dict[str, Any]:
        """The stored line of ``item_id``."""
        row: dict[str, Any] = {"id": item_id, "sha256": self.sha256.get(item_id, "")}
        if item_id in self.bad:
            return row | {"bad": self.bad[item_id]}
        return row | self.results[item_id].to_dict()

    def bytes_per_item(self) -> float:
        size = sum(p.stat().st_size for p in self.parts if p.exists())
        return size / max(1, len(self.sha256))


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def load_ocr(collection: str | os.PathLike[str]) -> dict[str, OcrResult]:
    """item id -> its banner text, for every item whose image was read (empty when
    ``index --ocr`` never ran on the collection)."""
    return OcrStore.open(collection).results


def stored_settings(collection: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings the collection's text was read with (``ocr/manifest.json``), without
    reading the text; None when ``index --ocr`` never ran on it. A query image's text is
    read with the same ones, so that it compares with the rows' text."""
    path = Path(collection) / OCR_DIR / MANIFEST
    try:
        settings = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    return settings if isinstance(settings, dict) else None
