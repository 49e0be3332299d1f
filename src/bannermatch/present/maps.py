"""A map of the collection: 2-D coordinates of every item from its embeddings.

UMAP (``umap-learn``) lays the items out so that neighbours stay together; a
collection with more than :data:`PCA_ABOVE` items (or wide embeddings) is first
reduced to :data:`PCA_DIMS` dimensions by PCA (scikit-learn), which keeps UMAP's
neighbour search fast and its memory small. Tiny collections, where UMAP's
neighbourhood does not fit, get the first two principal components.

The map is stored beside the embeddings it was computed from::

    models/<key>/map.npy    float32 (N, 2), row i is items.json[i], scaled into [0, 1]
    models/<key>/map.json   method, parameters, count, seconds, and the digest of the
                            ids and embeddings it was computed from

Both are written together (:func:`bannermatch.store.atomic.commit_files`); the map is
recomputed only when the digest changes, i.e. when items were added, removed or
re-embedded. Costs for 635, 10,000 and 100,000 items: docs/performance.md.

umap-learn's numba kernels are compiled in every process that maps (5 CPU-s, most of a
small map's time); :func:`umap_kernels` has numba keep them in its on-disk cache, so only
the first map after an installation or upgrade pays for them, with pynndescent's (13 s,
which numba compiles when umap-learn is imported). :func:`compile_kernels` pays both at
set-up (``scripts/setup.sh``) instead.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from bannermatch.errors import BannermatchError
from bannermatch.store import atomic
from bannermatch.store.collection import ModelData

log = logging.getLogger(__name__)

MAP_FILE = "map.npy"
MAP_MANIFEST = "map.json"
MAP_VERSION = 1
PCA_DIMS = 50
PCA_ABOVE = 2000  # items; below it UMAP works on the embeddings themselves
N_NEIGHBORS = 15
MIN_DIST = 0.1
SEED = 42
#: below this many items the seeded (single-threaded, reproducible) UMAP is used
SEEDED_BELOW = 20_000
#: below this many items the neighbours UMAP starts from are computed exactly here
EXACT_KNN_BELOW = 4096
#: umap-learn's modules whose numba kernels a map compiles
UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.spectral", "umap.utils", "umap.distances")


def digest(data: ModelData) -> str:
    """SHA-1 of the ids and the embeddings' bytes: what the map was computed from."""
    h = hashlib.sha1()
    h.update("\n".join(data.ids).encode("utf-8"))
    emb = data.embeddings
    h.update(str(emb.shape).encode())
    for start in range(0, len(emb), 65536):
        h.update(np.ascontiguousarray(emb[start : start + 65536]).tobytes())
    return h.hexdigest()


def stored_map(data: ModelData) -> np.ndarray | None:
    """The stored map when it belongs to these ids and embeddings, else None."""
    try:
        info = json.loads((data.folder / MAP_MANIFEST).read_text("utf-8"))
        points = np.load(data.folder / MAP_FILE, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if info.get("version") != MAP_VERSION or points.shape != (len(data.ids), 2):
        return None
    return points if info.get("digest") == digest(data) else None


def collection_map(data: ModelData) -> np.ndarray:
    """The map of ``data``'s items, from the store or computed and stored now."""
    points = stored_map(data)
    if points is not None:
        return points
    started = time.perf_counter()
    # UMAP's own verbose output is a page of timestamps on stdout: the CLI's bars suffice
    points, method = compute_map(np.asarray(data.embeddings, np.float32))
    seconds = time.perf_counter() - started
    store_map(data, points, method, seconds)
    log.info("map of %d items (%s) in %.1fs", len(points), method, seconds)
    return points


def store_map(data: ModelData, points: np.ndarray, method: str, seconds: float = 0.0) -> None:
    """Store ``points`` as the map of ``data``'s items (map.npy and map.json together)."""
    if points.shape != (len(data.ids), 2):
        raise ValueError(f"a map of shape {points.shape} for {len(data.ids)} items")
    info = {
        "version": MAP_VERSION,
        "method": method,
        "n_neighbors": N_NEIGHBORS,
        "min_dist": MIN_DIST,
        "count": len(data.ids),
        "seconds": round(seconds, 3),
        "digest": digest(data),
    }
    atomic.commit_files(
        data.folder,
        {
            MAP_FILE: lambda path: atomic.save_npy(path, np.asarray(points, np.float32)),
            MAP_MANIFEST: lambda path: path.write_text(json.dumps(info, indent=1), "utf-8"),
        },
    )


def compute_map(vectors: np.ndarray, *, verbose: bool = False) -> tuple[np.ndarray, str]:
    """2-D coordinates in [0, 1] of ``vectors`` (N, D); the method used."""
    n = len(vectors)
    if n == 0:
        raise BannermatchError("the collection is empty: nothing to map")
    if n < 3:
        line = np.stack([np.arange(n), np.zeros(n)], axis=1)
        return _scale(line), "line"
    if n <= N_NEIGHBORS + 1:
        return _scale(_pca(vectors, 2)), "pca"
    import umap  # imported here: numba compiles on import, a few seconds

    umap_kernels()
    method = "umap"
    if n > PCA_ABOVE and vectors.shape[1] > PCA_DIMS:
        vectors, method = _pca(vectors, PCA_DIMS), f"pca{PCA_DIMS}+umap"
    seeded = n < SEEDED_BELOW
    reducer = umap.UMAP(
        n_neighbors=N_NEIGHBORS,
        min_dist=MIN_DIST,
        metric="cosine",
        random_state=SEED if seeded else None,
        n_jobs=1 if seeded else -1,
        verbose=verbose,
        precomputed_knn=_exact_knn(vectors) if n < EXACT_KNN_BELOW else (None, None, None),
    )
    with warnings.catch_warnings():  # "cannot transform new data": the map never does
        warnings.simplefilter("ignore", UserWarning)
        return _scale(reducer.fit_transform(vectors)), method


@functools.cache
def umap_kernels() -> tuple[Any, ...]:
    """umap-learn's numba kernels, each set to keep what it compiles in numba's on-disk
    cache: the same machine code, loaded in 0.2 s rather than compiled in 5.

    umap-learn asks numba for no cache (lmcinnes/umap#1257 proposed it), so this turns the
    cache on for each of its compiled functions (``Dispatcher.enable_caching``). The files
    are numba's own: ``__pycache__`` beside umap-learn's sources where it may write, else
    the user's cache folder, or ``NUMBA_CACHE_DIR``; they are keyed on the source files, so
    an upgraded umap-learn compiles again. A kernel that cannot be cached compiles as before.
    """
    from numba.core.dispatcher import Dispatcher

    kernels = []
    for name in UMAP_MODULES:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == name:
                try:
                    obj.enable_caching()
                except RuntimeError as exc:  # no folder numba may write to
                    log.debug("numba kernel %s is compiled each time: %s", obj, exc)
                    continue
                kernels.append(obj)
    return tuple(kernels)


def compile_kernels() -> None:
    """Have numba compile what a map runs into its on-disk cache now: pynndescent's
    kernels (compiled when umap-learn is imported: 13 s on a new installation) and
    umap-learn's (:func:`umap_kernels`: 5 s more), by mapping a few random rows.
    ``scripts/setup.sh`` calls it once after installing them, so that no command pays
    it in its first map."""
    rows = np.random.default_rng(SEED).standard_normal((3 * N_NEIGHBORS, 32))
    compute_map(rows.astype(np.float32))


def _exact_knn(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
    """Each row's :data:`N_NEIGHBORS` nearest by cosine (itself first), as UMAP's
    ``precomputed_knn``: what UMAP computes itself below 4,096 rows, without compiling its
    numba kernels for it (half of a small map's time)."""
    from bannermatch.query.topk import exact_topk

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    ids, scores = exact_topk(unit, unit, N_NEIGHBORS)
    return ids, np.clip(1.0 - scores, 0.0, None).astype(np.float32), None


def _pca(vectors: np.ndarray, dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = min(dims, *vectors.shape)
    return PCA(n_components=dims, random_state=SEED).fit_transform(vectors).astype(np.float32)


def _scale(points: np.ndarray) -> np.ndarray:
    """Into [0, 1] on the longer axis, centred on the shorter one (shape kept)."""
    points = np.asarray(points, np.float32)
    low, high = points.min(axis=0), points.max(axis=0)
    span = float((high - low).max()) or 1.0
    scaled = (points - low) / span
    scaled += (1.0 - (high - low) / span) / 2
    return scaled.astype(np.float32)


# the map as an image ----------------------------------------------------------

MAP_SIZE = 2400
TILE = (40, 60)  # thumbnail cell on the map image (2:3)
BACKGROUND = (24, 26, 31)
DOT = (120, 160, 220)


def draw_map(
    points: np.ndarray,
    ids: list[str],
    thumb_of: Callable[[str], Path | None],
    size: int = MAP_SIZE,
) -> Image.Image:
    """Every item as a dot, and one thumbnail per free cell of a grid over the map."""
    margin = TILE[1]
    canvas = Image.new("RGB", (size + 2 * margin, size + 2 * margin), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    xy = (points * size + margin).astype(np.int64)
    for x, y in xy.tolist():
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=DOT)
    taken: set[tuple[int, int]] = set()
    for row, (x, y) in enumerate(xy.tolist()):
        cell = (x // TILE[0], y // TILE[1])
        path = thumb_of(ids[row])
        if cell in taken or path is None:
            continue
        taken.add(cell)
        _paste(canvas, path, (x - TILE[0] // 2, y - TILE[1] // 2))
    return canvas


def _paste(canvas: Image.Image, path: Path, xy: tuple[int, int]) -> None:
    try:
        with Image.open(path) as im:
            small = ImageOps.contain(im.convert("RGB"), TILE)
    except OSError:
        return
    canvas.paste(small, xy)


def map_info(data: ModelData) -> dict[str, Any] | None:
    """The stored map's manifest, if any."""
    try:
        return dict(json.loads((data.folder / MAP_MANIFEST).read_text("utf-8")))
    except (OSError, ValueError):
        return None
