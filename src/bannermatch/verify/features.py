"""Local features per item: extraction with OpenCV and compact, resumable storage.

Layout (``<collection>/local/``), written together with :func:`atomic.commit_files`:

- ``ids.json``: the item id of each row;
- ``descriptors.npy``: uint8 ``(N, MAX_FEATURES, 32)``, ORB descriptors, zero-padded;
- ``keypoints.npy``: float16 ``(N, MAX_FEATURES, 2)``, keypoint x, y in pixels of the
  image scaled to ``LONG_SIDE``;
- ``counts.npy``: int16 ``(N,)``, how many of a row's slots are real features;
- ``bad.json``: item id -> reason for items that could not be read.

ORB with 400 features is 400 x (32 + 4) = 14.4 KB an item, under the 16 KB budget;
binary descriptors match with Hamming distance, which is several times cheaper than
SIFT's float L2 at re-rank time (the re-rank p50 target is 30 ms for K candidates).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bannermatch.errors import BannermatchError
from bannermatch.images import ImageError, load_image
from bannermatch.progress import progress_bar
from bannermatch.store import atomic
from bannermatch.store.atomic import commit_files, recover, write_json
from bannermatch.store.collection import Collection
from bannermatch.verify import LOCAL_DIR

log = logging.getLogger(__name__)

MAX_FEATURES = 400
DESCRIPTOR_BYTES = 32
LONG_SIDE = 512  # images are scaled so their long side is this before detection
CHUNK = 128  # items extracted between two commits: the most a kill can lose

cv2.setNumThreads(1)  # parallelism comes from our thread pool, one image per thread


@dataclass
class Features:
    keypoints: np.ndarray  # float32 (n, 2)
    descriptors: np.ndarray  # uint8 (n, 32)


def extract_array(rgb: np.ndarray) -> Features:
    """ORB features of an RGB (or grey) uint8 image, scaled to ``LONG_SIDE``."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    scale = LONG_SIDE / max(grey.shape[:2])
    if scale < 1:
        size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    orb = cv2.ORB.create(nfeatures=MAX_FEATURES, fastThreshold=10)
    kps, desc = orb.detectAndCompute(grey, None)
    if desc is None or not kps:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8))
    pts = np.array([kp.pt for kp in kps], np.float32)[:MAX_FEATURES]
    return Features(pts, desc[:MAX_FEATURES])


def extract_file(source: str) -> Features:
    """Features of an image file; raises :class:`ImageError` for a bad one."""
    return extract_array(np.asarray(load_image(source).image))


@dataclass
class LocalStore:
    """The stored local features of a collection, memory-mapped."""

    ids: list[str]
    descriptors: np.ndarray
    keypoints: np.ndarray
    counts: np.ndarray
    bad: dict[str, str] = field(default_factory=dict)

    @property
    def row_of(self) -> dict[str, int]:
        return {item_id: row for row, item_id in enumerate(self.ids)}

    def features(self, row: int) -> Features:
        n = int(self.counts[row])
        return Features(
            np.asarray(self.keypoints[row, :n], np.float32),
            np.asarray(self.descriptors[row, :n]),
        )

    def bytes_per_item(self) -> int:
        return MAX_FEATURES * (DESCRIPTOR_BYTES + 4) + 2

    @classmethod
    def empty(cls) -> LocalStore:
        return cls(
            [],
            np.zeros((0, MAX_FEATURES, DESCRIPTOR_BYTES), np.uint8),
            np.zeros((0, MAX_FEATURES, 2), np.float16),
            np.zeros(0, np.int16),
        )

    @classmethod
    def load(cls, collection: str | os.PathLike[str]) -> LocalStore | None:
        """The stored features, or None when ``index --local`` never ran."""
        folder = Path(collection) / LOCAL_DIR
        if not (folder / "ids.json").is_file():
            return None
        recover(folder, drop_unfinished=False)
        import json

        ids = json.loads((folder / "ids.json").read_text("utf-8"))
        bad = json.loads((folder / "bad.json").read_text("utf-8"))
        store = cls(
            ids,
            np.load(folder / "descriptors.npy", mmap_mode="r"),
            np.load(folder / "keypoints.npy", mmap_mode="r"),
            np.load(folder / "counts.npy", mmap_mode="r"),
            bad,
        )
        if not (len(ids) == len(store.descriptors) == len(store.keypoints) == len(store.counts)):
            raise BannermatchError(
                f"{folder} is inconsistent: rebuild it with `bannermatch index INPUT "
                f"--out {collection} --local`"
            )
        return store

    def save(self, collection: str | os.PathLike[str]) -> None:
        def npy(array: np.ndarray) -> Any:
            return lambda path: atomic.save_npy(path, array)

        commit_files(
            Path(collection) / LOCAL_DIR,
            {
                "descriptors.npy": npy(np.asarray(self.descriptors)),
                "keypoints.npy": npy(np.asarray(self.keypoints)),
                "counts.npy": npy(np.asarray(self.counts)),
                "bad.json": lambda path: write_json(path, self.bad),
                "ids.json": lambda path: write_json(path, self.ids),  # last: the marker
            },
        )

    def extend(self, found: list[tuple[str, Features]]) -> None:
        """Add rows (one concatenation per chunk, not per item)."""
        desc = np.zeros((len(found), MAX_FEATURES, DESCRIPTOR_BYTES), np.uint8)
        kps = np.zeros((len(found), MAX_FEATURES, 2), np.float16)
        counts = np.zeros(len(found), np.int16)
        for i, (item_id, feats) in enumerate(found):
            n = counts[i] = len(feats.descriptors)
            desc[i, :n], kps[i, :n] = feats.descriptors, feats.keypoints
            self.ids.append(item_id)
        self.descriptors = np.concatenate([np.asarray(self.descriptors), desc])
        self.keypoints = np.concatenate([np.asarray(self.keypoints), kps])
        self.counts = np.concatenate([np.asarray(self.counts), counts])


@dataclass
class LocalIndexResult:
    added: int
    kept: int
    bad: dict[str, str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "kept": self.kept, "bad": self.bad, "seconds": self.seconds}


def _extract_one(source: str) -> Features | str:
    try:
        return extract_file(source)
    except ImageError as exc:
        return str(exc)
    except (OSError, cv2.error) as exc:
        return f"{type(exc).__name__}: {exc}"


def index_local(
    collection: str | os.PathLike[str],
    *,
    model: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> LocalIndexResult:
    """Extract local features of every embedded item that has none yet.

    Committed every ``CHUNK`` items, so a killed run keeps what it finished and a
    rerun extracts only the rest. Items that cannot be read get a reason in
    ``bad.json`` and no features."""
    import time

    t0 = time.perf_counter()
    coll = Collection(collection)
    data = coll.load(model)
    store = LocalStore.load(collection) or LocalStore.empty()
    store = LocalStore(
        list(store.ids),
        np.asarray(store.descriptors),
        np.asarray(store.keypoints),
        np.asarray(store.counts),
        dict(store.bad),
    )
    done = set(store.ids) | set(store.bad)
    todo = [i for i in data.ids if i not in done]
    with coll.catalog() as cat:
        sources = {i: cat.get(i) for i in todo}
    kept = len(store.ids)
    added = 0
    bar = progress_bar(len(todo), "local features", enabled=progress)
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            paths = [_source_path(coll, sources[i]) for i in chunk]
            found = []
            for item_id, out in zip(chunk, pool.map(_extract_one, paths), strict=True):
                if isinstance(out, str):
                    log.warning("no local features for %s: %s", item_id, out)
                    store.bad[item_id] = out
                else:
                    found.append((item_id, out))
                bar.update(1)
            store.extend(found)
            added += len(found)
            store.save(collection)
    bar.close()
    if not todo and not (Path(collection) / LOCAL_DIR / "ids.json").is_file():
        store.save(collection)
    return LocalIndexResult(added, kept, store.bad, round(time.perf_counter() - t0, 3))


def _source_path(coll: Collection, item: Any) -> str:
    if item is None or not item.source:
        return ""
    return coll.resolve_source(item.source)


def local_summary(collection: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What ``audit`` reports of the local features; None when there are none."""
    store = LocalStore.load(collection)
    if store is None:
        return None
    counts = np.asarray(store.counts)
    return {
        "items": len(store.ids),
        "features_mean": round(float(counts.mean()), 1) if len(counts) else 0.0,
        "bytes_per_item": store.bytes_per_item(),
        "without": store.bad,
    }
