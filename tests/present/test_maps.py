"""``bannermatch.present.maps``: the map is stored, reused, and recomputed when the items change."""

from __future__ import annotations

import json
import shutil

import numpy as np

from bannermatch.embed.index import index
from bannermatch.present.maps import MAP_FILE, MAP_MANIFEST, collection_map, compute_map
from bannermatch.store.collection import Collection


def test_map_is_stored_reused_and_recomputed_when_items_change(tmp_path, covers_dir, model):
    images = tmp_path / "images"
    images.mkdir()
    covers = sorted((covers_dir / "images").glob("*.jpg"))
    for path in covers[:24]:
        shutil.copy(path, images / path.name)
    coll = tmp_path / "coll"
    index(images, coll, model, progress=False)
    data = Collection(coll).load()
    first = collection_map(data)
    assert first.shape == (24, 2) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    info = json.loads((data.folder / MAP_MANIFEST).read_text())
    assert info["count"] == 24 and info["method"] == "umap"
    stamp = (data.folder / MAP_FILE).stat().st_mtime_ns
    again = collection_map(Collection(coll).load())
    assert np.array_equal(again, first)
    assert (data.folder / MAP_FILE).stat().st_mtime_ns == stamp  # reused, not recomputed

    shutil.copy(covers[30], images / covers[30].name)  # one item more
    index(images, coll, model, progress=False)
    grown = collection_map(Collection(coll).load())
    assert grown.shape == (25, 2)
    assert json.loads((data.folder / MAP_MANIFEST).read_text())["count"] == 25


def test_small_collections_are_mapped_without_umap() -> None:
    rng = np.random.default_rng(0)
    points, method = compute_map(rng.standard_normal((10, 32)).astype(np.float32))
    assert method == "pca" and points.shape == (10, 2)
    two, method = compute_map(rng.standard_normal((2, 32)).astype(np.float32))
    assert method == "line" and two.tolist() == [[0.0, 0.5], [1.0, 0.5]]
