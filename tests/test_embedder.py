"""The embedding stage: ordered batches of real images, bad files reported, never fatal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from bannermatch.embedder import embed_paths, iter_batches
from bannermatch.images import load_image
from bannermatch.inputs import scan_input


def test_batches_keep_input_order(tmp_path: Path, covers_dir: Path, edge_cases_dir: Path, model):
    files = sorted((covers_dir / "images").glob("*.jpg"))[:7]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(edge_cases_dir / "mixed_images" / "ukbench09268_corrupt.jpg", tmp_path / "b.jpg")
    (tmp_path / "c.png").write_bytes(b"")
    items = scan_input(tmp_path).items
    assert len(items) == 9
    batches = list(iter_batches(items, model, batch_size=4, workers=3))
    assert [len(b.ok) + len(b.failed) for b in batches] == [4, 4, 1]
    done = [d.item for b in batches for d in b.ok + b.failed if d.item is not None]
    assert sorted(it.source for it in done) == sorted(it.source for it in items)
    ok = [d for b in batches for d in b.ok]
    assert [d.item.source for d in ok] == [it.source for it in items if it.stem not in {"b", "c"}]
    failed = {Path(d.item.source).name: d.error for b in batches for d in b.failed}
    assert failed == {"b.jpg": "not a recognised image format", "c.png": "empty file"}
    rows = np.concatenate([b.embeddings for b in batches])
    want = model.embed_images([load_image(d.item.source).image for d in ok])
    np.testing.assert_allclose(rows, want, atol=1e-5)
    assert all(d.pixels is None for d in ok)  # pixels are freed once embedded


def test_embed_paths(tmp_path: Path, covers_dir: Path, model) -> None:
    files = [str(p) for p in sorted((covers_dir / "images").glob("*.jpg"))[:3]]
    paths = [files[0], str(tmp_path / "missing.jpg"), files[1], str(tmp_path), files[2]]
    emb, kept, errors = embed_paths(paths, model, batch_size=2)
    assert kept == [0, 2, 4] and emb.shape == (3, 1280)
    assert errors[1].startswith("missing: no such file")
    assert errors[3] == "not a file: it is a directory"
    np.testing.assert_allclose(
        emb, model.embed_images([load_image(p).image for p in files]), atol=1e-5
    )
    empty, kept, errors = embed_paths([], model)
    assert empty.shape == (0, 1280) and kept == [] and errors == {}
