"""The collection folder (see DESIGN.md): layout, validated loading, atomic commits."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.defaults import DEFAULT_MODEL
from bannermatch.errors import CollectionError
from bannermatch.store import atomic
from bannermatch.store.catalog import Catalog

FORMAT_VERSION = 1
EMBEDDINGS = "embeddings.npy"
ITEMS = "items.json"
MANIFEST = "manifest.json"
FINGERPRINTS = "fingerprints.json"  # sha256 of the image each row was computed from
NEIGHBORS = "neighbors.npy"
SCORES = "scores.npy"
NORMS = "norms.npy"  # float32 (N,): each row's feature norm before normalisation
MATCH = "match.json"
DUPLICATES = "duplicates.json"


def _rebuild_hint(folder: Path) -> str:
    """``folder`` is ``COLLECTION/models/<key>``."""
    return f"rebuild it with `bannermatch index INPUT --out {folder.parent.parent}`"


class Collection:
    """A collection folder: ``catalog.sqlite``, ``images/`` and ``models/<key>/``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def source_key(self, path: str) -> str:
        """How the catalogue stores a source: relative to the collection when inside it."""
        for root in (Path(os.path.abspath(self.root)), self.root.resolve()):  # as given, or real
            try:
                return Path(path).relative_to(root).as_posix()
            except ValueError:
                continue
        return path

    def resolve_source(self, source: str) -> str:
        """The readable location of a stored source (see :meth:`source_key`)."""
        return source if Path(source).is_absolute() else str(self.root / source)

    def catalog(self, *, create: bool = False) -> Catalog:
        if not create and not self.root.is_dir():
            raise CollectionError(f"no collection at {self.root}")
        return Catalog(self.catalog_path, create=create)

    def model_dir(self, key: str) -> Path:
        return self.models_dir / key

    def model_keys(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.models_dir.glob(f"*/{MANIFEST}"))

    def resolve_key(self, model: str | None = None) -> str:
        """The model key to read: ``model`` may be a full key or a preset name."""
        keys = self.model_keys()
        if not keys:
            raise CollectionError(
                f"{self.root} has no embeddings yet: "
                f"run `bannermatch index INPUT --out {self.root}`"
            )
        if model is None:
            if len(keys) == 1:
                return keys[0]
            model = DEFAULT_MODEL
        if model in keys:
            return model
        matching = [k for k in keys if k.split("__", 1)[0] in (model, safe_name(model))]
        if len(matching) > 1:  # art-only keys (index --mask-text) are picked by their full key
            matching = [k for k in matching if KEY_MARK not in k] or matching
        if len(matching) == 1:
            return matching[0]
        if matching:
            raise CollectionError(
                f"{model} has several settings in {self.root}: pass --model with one of "
                + ", ".join(matching)
            )
        raise CollectionError(
            f"{self.root} has no embeddings for {model}; it has: {', '.join(keys)}"
        )

    def load(self, model: str | None = None) -> ModelData:
        key = self.resolve_key(model)
        return ModelData.load(self.model_dir(key))


@dataclass
class ModelData:
    """One model's stored rows, validated against each other when loaded."""

    folder: Path
    manifest: dict[str, Any]
    ids: list[str]
    fingerprints: list[str]
    embeddings: np.ndarray  # float16 (N, D), memory-mapped
    #: float32 (N,) raw feature norms; None for a collection indexed before they were kept
    norms: np.ndarray | None = None
    _match: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return str(self.manifest["key"])

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {item_id: row for row, item_id in enumerate(self.ids)}

    @classmethod
    def load(cls, folder: Path) -> ModelData:
        atomic.recover(folder, drop_unfinished=False)  # a writer may be staging files now
        hint = _rebuild_hint(folder)
        try:
            manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
            ids = json.loads((folder / ITEMS).read_text("utf-8"))
            fps_path = folder / FINGERPRINTS
            fingerprints = json.loads(fps_path.read_text("utf-8")) if fps_path.exists() else []
        except FileNotFoundError as exc:
            raise CollectionError(
                f"{folder} is incomplete: {Path(exc.filename).name} is missing; {hint}"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CollectionError(f"{folder}: unreadable JSON ({exc}); {hint}") from None
        try:
            emb = np.load(folder / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise CollectionError(f"{folder} has no {EMBEDDINGS}; {hint}") from None
        except ValueError as exc:
            raise CollectionError(f"{folder}/{EMBEDDINGS} is damaged ({exc}); {hint}") from None
        if not isinstance(manifest, dict) or not isinstance(ids, list):
            raise CollectionError(f"{folder}: {MANIFEST} or {ITEMS} is malformed; {hint}")
        if manifest.get("key") != folder.name:
            raise CollectionError(
                f"{folder}: its manifest is for {manifest.get('key')!r}, "
                f"not {folder.name!r}; {hint}"
            )
        problems = []
        if not folder.name.startswith(safe_name(str(manifest.get("model"))) + "__"):
            problems.append(f"{MANIFEST} names the model {manifest.get('model')!r}")
        if not all(isinstance(i, str) for i in ids):
            problems.append(f"{ITEMS} lists ids that are not text")
        if emb.dtype != np.float16 or emb.ndim != 2:
            problems.append(f"{EMBEDDINGS} is {emb.dtype} {emb.ndim}-d, expected float16 2-d")
        elif emb.shape[1] != manifest.get("dim"):
            problems.append(
                f"{EMBEDDINGS} has dimension {emb.shape[1]}, manifest says {manifest.get('dim')}"
            )
        if len(emb) != len(ids):
            problems.append(f"{EMBEDDINGS} has {len(emb)} rows but {ITEMS} lists {len(ids)}")
        if manifest.get("count") != len(ids):
            problems.append(
                f"manifest counts {manifest.get('count')} items, {ITEMS} lists {len(ids)}"
            )
        if fingerprints and len(fingerprints) != len(ids):
            problems.append(f"{FINGERPRINTS} is out of step with {ITEMS}")
        if len(set(ids)) != len(ids):
            problems.append(f"{ITEMS} lists an item twice")
        norms = None
        if manifest.get("norms"):  # written in the same commit as the rows
            try:
                norms = np.load(folder / NORMS, mmap_mode="r", allow_pickle=False)
            except (FileNotFoundError, ValueError) as exc:
                problems.append(f"{NORMS} is missing or damaged ({exc})")
            else:
                if norms.shape != (len(ids),):
                    problems.append(f"{NORMS} has shape {norms.shape}, {ITEMS} lists {len(ids)}")
        if problems:
            raise CollectionError(f"{folder} is inconsistent: {'; '.join(problems)}; {hint}")
        return cls(folder, manifest, ids, fingerprints or [""] * len(ids), emb, norms)

    def require_norms(self) -> np.ndarray:
        """``norms.npy``, or an error saying how to get it (older collections lack it)."""
        if self.norms is None:
            root = self.folder.parent.parent
            raise CollectionError(
                f"{self.key} was indexed before bannermatch kept feature norms ({NORMS}); "
                f"index it again to add them: `bannermatch index INPUT --out {root}`"
            )
        return self.norms

    # neighbours -------------------------------------------------------------

    @property
    def match_info(self) -> dict[str, Any] | None:
        """``match.json`` when it belongs to the current embeddings, else None."""
        if self._match is None:
            try:
                info = json.loads((self.folder / MATCH).read_text("utf-8"))
            except (OSError, ValueError):  # absent, or damaged: the neighbours are not usable
                return None
            if not isinstance(info, dict) or not isinstance(info.get("k"), int):
                return None
            if info.get("generation") != self.manifest.get("generation"):
                return None
            self._match = info
        return self._match

    def neighbors(self) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped ``neighbors.npy`` and ``scores.npy``; an error if stale or absent."""
        info = self.match_info
        root = self.folder.parent.parent
        if info is None:
            raise CollectionError(
                f"no up-to-date neighbours for {self.key}: run `bannermatch match {root}`"
            )
        try:
            nb = np.load(self.folder / NEIGHBORS, mmap_mode="r", allow_pickle=False)
            sc = np.load(self.folder / SCORES, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CollectionError(
                f"{self.folder}: {NEIGHBORS} or {SCORES} is missing or damaged ({exc}); "
                f"run `bannermatch match {root}`"
            ) from None
        k = info["k"]
        if (
            nb.shape != (len(self.ids), k)
            or sc.shape != nb.shape
            or nb.dtype != np.uint32
            or (k and len(self.ids) and int(nb.max()) >= len(self.ids))
        ):
            raise CollectionError(
                f"{self.folder}: neighbours do not match the embeddings; "
                f"run `bannermatch match {root}`"
            )
        return nb, sc


def write_model_data(
    folder: Path,
    manifest: dict[str, Any],
    ids: list[str],
    fingerprints: list[str],
    write_embeddings: atomic.Writer,
    norms: np.ndarray | None = None,
) -> dict[str, Any]:
    """Commit a model's embeddings, items, fingerprints, norms and manifest together."""
    manifest = {
        **manifest,
        "norms": norms is not None,
        "format": FORMAT_VERSION,
        "count": len(ids),
        "generation": uuid.uuid4().hex,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    writers: dict[str, atomic.Writer] = {
        EMBEDDINGS: write_embeddings,
        ITEMS: lambda p: p.write_text(json.dumps(ids, ensure_ascii=False), "utf-8"),
        FINGERPRINTS: lambda p: p.write_text(json.dumps(fingerprints), "utf-8"),
    }
    if norms is not None:
        if norms.shape != (len(ids),):
            raise ValueError(f"{len(norms)} norms for {len(ids)} rows")
        writers[NORMS] = lambda p: atomic.save_npy(p, np.asarray(norms, np.float32))
    writers[MANIFEST] = lambda p: p.write_text(json.dumps(manifest, indent=1), "utf-8")
    atomic.commit_files(folder, writers)
    return manifest


#: in a model key, what marks the art-only rows of `index --mask-text` (ocr/mask.py)
KEY_MARK = "-textmask-"


def safe_name(name: str) -> str:
    """``name`` with every character a folder name could trip on replaced by ``-``: the
    model part of a model key and of its folder's name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-") or "model"
