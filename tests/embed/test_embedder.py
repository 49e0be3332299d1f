"""The embedding stage: ordered batches of real images, bad files reported, never fatal."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from bannermatch.acquire.inputs import InputItem, scan_input
from bannermatch.embed.batches import embed_paths, embed_simple, iter_batches
from bannermatch.embed.models import create_model
from bannermatch.images import load_image


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


# the pipeline against the simple path ------------------------------------------


@pytest.fixture(scope="module")
def mixed_inputs(
    tmp_path_factory: pytest.TempPathFactory,
    covers_dir: Path,
    igdb_dir: Path,
    edge_cases_dir: Path,
    skimage_dir: Path,
) -> list[InputItem]:
    """Real images of many sizes and formats, with bad files among them."""
    folder = tmp_path_factory.mktemp("mixed")
    files = sorted((covers_dir / "images").glob("*.jpg"))[:14]  # 342x482
    files += sorted((igdb_dir / "images").glob("*.jpg"))[:6]  # 512x768
    files += sorted((edge_cases_dir / "berlin_pairs").glob("*.jpg"))[:3]  # 1440x960
    files += sorted(p for p in (edge_cases_dir / "formats_images").iterdir() if p.suffix != ".svg")
    files += [edge_cases_dir / "alpha_channel_image.png", edge_cases_dir / "ukbench00120_gray.jpg"]
    files += [skimage_dir / "retina.jpg", skimage_dir / "horse.png"]  # 1411x1411; RGBA
    for n, f in enumerate(files):
        shutil.copy(f, folder / f"{n:03d}-{f.name}")
    shutil.copy(edge_cases_dir / "mixed_images" / "ukbench09268_corrupt.jpg", folder / "005x.jpg")
    (folder / "012x.png").write_bytes(b"")
    (folder / "020x.jpg").write_bytes(b"<!doctype html><html>404</html>")
    return scan_input(folder).items


def _outcomes(batches_or_decoded) -> list[tuple[str, str | None]]:
    return [(Path(d.item.source).name, d.error) for d in batches_or_decoded]


@pytest.mark.parametrize("fit", ["crop", "pad", "squash"])
def test_pipeline_equals_the_simple_path(mixed_inputs: list[InputItem], model, fit: str) -> None:
    """Worker threads decoding into shared batch buffers, several jobs per batch and
    several batches in flight: the same rows, the same order, the same failures as
    decoding, preprocessing and embedding each image alone."""
    m = model if fit == "crop" else create_model("effnet-lite0", device="cpu", fit=fit)
    want, done = embed_simple(mixed_inputs, m)
    assert len(want) == len(mixed_inputs) - 3 > 30
    failed = {name: error for name, error in _outcomes(done) if error}
    assert set(failed) == {"005x.jpg", "012x.png", "020x.jpg"}
    for batch_size, workers in [(64, None), (5, 3), (40, 4)]:
        batches = list(iter_batches(mixed_inputs, m, batch_size=batch_size, workers=workers))
        assert [len(b.ok) + len(b.failed) for b in batches[:-1]] == [batch_size] * (
            len(batches) - 1
        )
        rows = np.concatenate([b.embeddings for b in batches])
        np.testing.assert_allclose(rows, want, atol=1e-5)
        ok = [d for b in batches for d in b.ok]
        assert [d.item for d in ok] == [d.item for d in done if not d.error]
        assert {Path(d.item.source).name: d.error for b in batches for d in b.failed} == failed
        assert [d.sha256 for d in ok] == [d.sha256 for d in done if not d.error]
        norms = np.concatenate([b.norms for b in batches])
        assert norms.shape == (len(ok),) and (norms > 0).all()


class _Boom(ImageFile.ImageFile):
    """An image format whose decoder fails with an error no decoder is expected to raise:
    a stand-in for a bug in a third-party decoder."""

    format = "BOOM"

    def _open(self) -> None:
        self._size = (64, 64)
        self._mode = "RGB"

    def load(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("the decoder blew up")


def test_a_failing_image_in_a_worker_does_not_stop_the_run(
    tmp_path: Path, covers_dir: Path, model, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(Image.OPEN, "BOOM", (_Boom, lambda head: head.startswith(b"BOOM")))
    monkeypatch.setattr(Image, "ID", [*Image.ID, "BOOM"])
    files = sorted((covers_dir / "images").glob("*.jpg"))[:40]
    for n, f in enumerate(files):
        shutil.copy(f, tmp_path / f"{n:03d}.jpg")
        if n % 9 == 4:  # a few in every job
            (tmp_path / f"{n:03d}b.jpg").write_bytes(b"BOOM" + bytes(100))
    items = scan_input(tmp_path).items
    assert len(items) == 44
    batches = list(iter_batches(items, model, batch_size=16, workers=3))
    failed = {Path(d.item.source).name: d.error for b in batches for d in b.failed}
    assert sorted(failed) == ["004b.jpg", "013b.jpg", "022b.jpg", "031b.jpg"]
    assert all("the decoder blew up" in (e or "") for e in failed.values())
    ok = [d for b in batches for d in b.ok]
    assert [Path(d.item.source).name for d in ok] == [f"{n:03d}.jpg" for n in range(40)]
    rows = np.concatenate([b.embeddings for b in batches])
    want = model.embed_images([load_image(str(tmp_path / f"{n:03d}.jpg")).image for n in range(40)])
    np.testing.assert_allclose(rows, want, atol=1e-5)


def test_a_stopped_pipeline_leaves_no_work_running(tmp_path: Path, covers_dir: Path, model) -> None:
    """A caller that stops early (an error in the indexer, Ctrl-C) closes the pipeline:
    jobs not started are dropped and its threads end."""
    files = sorted((covers_dir / "images").glob("*.jpg"))[:60]
    items = [InputItem(str(f), f.stem, f.name, -1, 0.0) for f in files]
    before = threading.active_count()
    batches = iter_batches(items, model, batch_size=4, workers=2)
    first = next(batches)
    assert len(first.ok) == 4
    batches.close()
    assert threading.active_count() == before


def test_pipeline_with_the_pytorch_engine(mixed_inputs: list[InputItem]) -> None:
    """The PyTorch engine (one stream, its own threads) through the same pipeline: its
    batches come from the engine's own buffers (page-locked on a GPU)."""
    m = create_model("effnet-lite0", engine="torch", device="cpu")
    assert m.engine.streams == 1
    items = mixed_inputs[:12]
    want, _ = embed_simple(items, m)
    batches = list(iter_batches(items, m, batch_size=5, workers=3))
    np.testing.assert_allclose(np.concatenate([b.embeddings for b in batches]), want, atol=1e-5)
