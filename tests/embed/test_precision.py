"""int8 precision end to end on real covers: its own model key (int8 and fp32 rows never
mix), the default on the CPU (made from the shipped ranges: the same model on every run),
the quantised model stored in the collection and used by queries (image and text) and
later index runs, rebuilt (and every row embedded again) when its fp32 source or the
recipe changes, the collection-calibrated fallback of a model without shipped ranges, and
the quality gate computed, int8 against fp32, on small real data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bannermatch.acquire.inputs import scan_input
from bannermatch.embed.models import create_model
from bannermatch.embed.models import ranges as shipped
from bannermatch.embed.models.precision import calibrate, calibrate_in, resolve_precision
from bannermatch.embed.models.quantize import quantize_int8
from bannermatch.embed.models.registry import file_sha256
from bannermatch.errors import ModelError
from bannermatch.evaluation.precision import run_gate
from support import ROOT
from support.cli import run_cli

FP32_KEY = "effnet-lite0__pad224-bicubic__cls"
INT8_KEY = FP32_KEY + "-int8"


def _pairs(covers_dir: Path, tmp_path: Path, n_groups: int = 6) -> tuple[Path, Path]:
    """Copies of the covers of the first ``n_groups`` two-cover games, and their TSV."""
    rows = [r.split("\t") for r in (covers_dir / "covers.tsv").read_text().splitlines()[1:]]
    by_group: dict[str, list[str]] = {}
    for row in rows:
        by_group.setdefault(row[2], []).append(row[0])
    pairs = [files for files in by_group.values() if len(files) == 2][:n_groups]
    folder = tmp_path / "covers"
    folder.mkdir()
    lines = ["file\tgroup"]
    for number, files in enumerate(pairs):
        for name in files:
            shutil.copy(covers_dir / "images" / name, folder / name)
            lines.append(f"{name}\tg{number}")
    tsv = tmp_path / "groups.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    return folder, tsv


def _manifest(coll: Path, key: str) -> dict:
    return json.loads((coll / "models" / key / "manifest.json").read_text())


def _index(*args: object, run: Callable[..., Any] = run_cli) -> dict:
    return json.loads(run("index", *args, "-q", "--json").stdout)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory, covers_dir: Path) -> tuple[Path, Path]:
    return _pairs(covers_dir, tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, pairs: tuple[Path, Path]) -> Path:
    """The pairs indexed in fp32 and with the default (int8 from the shipped ranges)."""
    coll = tmp_path_factory.mktemp("indexed") / "coll"
    fp32 = _index(pairs[0], "--out", coll, "--precision", "fp32")
    int8 = _index(pairs[0], "--out", coll)
    assert (fp32["model_key"], int8["model_key"]) == (FP32_KEY, INT8_KEY)
    assert int8["embedded"] == fp32["embedded"] == 12  # int8 reused no fp32 row
    return coll


@pytest.fixture
def no_shipped_ranges(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As for a model whose fp32 export has no shipped ranges (an empty ranges folder)."""
    empty = tmp_path / "no-ranges"
    empty.mkdir()
    monkeypatch.setattr(shipped, "shipped_dir", lambda: empty)


def test_int8_and_fp32_rows_never_share_a_key(
    indexed: Path, pairs: tuple[Path, Path], cli_here: Callable[..., Any]
) -> None:
    coll = indexed
    m32, m8 = _manifest(coll, FP32_KEY), _manifest(coll, INT8_KEY)
    assert m32["precision"] == "fp32" and "int8" not in m32
    assert m8["precision"] == "int8" and m8["engine"] == "onnx-cpu-int8"
    assert (coll / "models" / INT8_KEY / m8["int8"]["file"]).is_file()
    assert m8["int8"]["calibration_images"] == 252  # the shipped ranges: the IGDB covers
    assert m8["int8"]["ranges"].endswith(f"-q{m8['int8']['recipe']}.json")
    a = np.load(coll / "models" / FP32_KEY / "embeddings.npy").astype(np.float32)
    b = np.load(coll / "models" / INT8_KEY / "embeddings.npy").astype(np.float32)
    cos = (a * b).sum(axis=1)
    assert 0.95 < cos.mean() < 0.9999  # close to fp32, and not fp32
    # a query with the int8 key runs the collection's int8 model: an image finds itself
    # (its pixels resampled by Pillow, not PyTorch's kernels: within 2 levels, which int8
    # turns into a little more than fp32's 0.9999)
    image = sorted(pairs[0].iterdir())[0]
    out = cli_here("similar", coll, image, "--model", INT8_KEY, "-k", "1", "--json").stdout
    hit = json.loads(out)["results"][0]
    assert hit["id"] == image.stem and hit["score"] > 0.995


@pytest.mark.slow  # three index runs (a minute on the loaded 2-core machine)
def test_the_stored_int8_model_is_reused_then_rebuilt_when_stale(
    indexed: Path, pairs: tuple[Path, Path], tmp_path: Path, cli_here: Callable[..., Any]
) -> None:
    coll = tmp_path / "coll"
    shutil.copytree(indexed, coll)
    first = _manifest(coll, INT8_KEY)
    again = _index(pairs[0], "--out", coll, "--precision", "int8", run=cli_here)
    assert (again["embedded"], again["up_to_date"]) == (0, 12)
    assert _manifest(coll, INT8_KEY)["int8"] == first["int8"]
    for field, stale in (("source_sha256", "0" * 64), ("recipe", 1)):
        manifest = _manifest(coll, INT8_KEY)
        manifest["int8"][field] = stale  # as if the fp32 export or the recipe had changed
        (coll / "models" / INT8_KEY / "manifest.json").write_text(json.dumps(manifest))
        rebuilt = _index(pairs[0], "--out", coll, "--precision", "int8", run=cli_here)
        assert rebuilt["embedded"] == 12, field  # every row embedded again
        assert _manifest(coll, INT8_KEY)["int8"][field] == first["int8"][field]


def test_a_missing_int8_model_is_made_again_or_one_clear_error(
    indexed: Path, pairs: tuple[Path, Path], tmp_path: Path, cli_here: Callable[..., Any]
) -> None:
    coll = tmp_path / "coll"
    shutil.copytree(indexed, coll)
    folder = coll / "models" / INT8_KEY
    for stored in folder.glob("int8-*.onnx"):
        stored.unlink()
    image = sorted(pairs[0].iterdir())[0]
    # made from the shipped ranges: made again, the same model, and the query runs
    out = cli_here("similar", coll, image, "--model", INT8_KEY, "-k", "1", "--json").stdout
    assert json.loads(out)["results"][0]["id"] == image.stem
    manifest = _manifest(coll, INT8_KEY)
    for damage in ("sha256", "ranges"):  # made again but different; calibrated on a collection
        broken = json.loads(json.dumps(manifest))
        if damage == "sha256":
            broken["int8"]["sha256"] = "0" * 64
        else:
            del broken["int8"]["ranges"]
        (folder / "manifest.json").write_text(json.dumps(broken))
        proc = cli_here("similar", coll, image, "--model", INT8_KEY, check=False)
        assert proc.returncode != 0, damage
        assert "int8 model is missing" in proc.stderr and "Traceback" not in proc.stderr


def test_text_search_works_on_an_int8_collection(
    indexed: Path, cli_here: Callable[..., Any]
) -> None:
    """The label search reads the stored rows with the fp32 classifier head: no image
    engine, whatever the rows' precision (it once refused: "int8 model is missing")."""
    for key in (INT8_KEY, FP32_KEY):
        out = cli_here("search", indexed, "car", "--model", key, "-k", "3", "--json").stdout
        found = json.loads(out)
        assert found["model_key"] == key and len(found["results"]) == 3


def test_the_default_is_int8_from_the_shipped_ranges_the_same_on_every_run(
    tmp_path: Path,
) -> None:
    assert resolve_precision("auto", "torch") == "fp32"
    assert resolve_precision("auto", "onnx") == "fp32"  # no export to look up: fp32
    model = create_model("effnet-lite0", device="cpu", precision="auto")
    assert model.key == INT8_KEY and model.engine_precision == "int8"
    assert model.int8 is not None and model.int8["ranges"]
    fp32 = create_model("effnet-lite0", device="cpu", precision="fp32")
    assert fp32.key == FP32_KEY and fp32.int8 is None  # the Python API's default: fp32
    source = Path(fp32.engine.path)  # type: ignore[attr-defined]
    ranges = shipped.shipped_ranges(source)
    assert ranges is not None and ranges.name == model.int8["ranges"]
    made = []
    for run in ("one", "two"):  # a fresh cache each: quantised twice from the same ranges
        copy = tmp_path / run / source.name
        copy.parent.mkdir()
        shutil.copy(source, copy)
        made.append(file_sha256(quantize_int8(copy, ranges=ranges)))
    assert made[0] == made[1] == model.int8["sha256"]  # byte for byte, as in the manifest


def test_ranges_for_another_export_or_recipe_are_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Path(create_model("effnet-lite0", device="cpu").engine.path)  # type: ignore[attr-defined]
    real = shipped.shipped_ranges(source)
    assert real is not None
    folder = tmp_path / "ranges"
    folder.mkdir()
    monkeypatch.setattr(shipped, "shipped_dir", lambda: folder)
    doc = shipped.read_ranges(real)
    for field, value in (("recipe", doc["recipe"] - 1), ("source_sha256", "f" * 64)):
        (folder / real.name).write_text(json.dumps({**doc, field: value}))
        assert shipped.shipped_ranges(source) is None, field
    (folder / real.name).write_text("{not json")
    with pytest.raises(ModelError, match="not a bannermatch int8 ranges file"):
        shipped.shipped_ranges(source)


def test_a_model_without_shipped_ranges_runs_fp32_or_calibrates_on_the_collection(
    no_shipped_ranges: None, pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    auto = create_model("effnet-lite0", device="cpu", precision="auto")
    assert auto.key == FP32_KEY and auto.int8 is None  # auto: fp32
    model = create_model("effnet-lite0", device="cpu", precision="int8")
    assert model.key == INT8_KEY and model.engine_precision == "fp32"
    with pytest.raises(ModelError, match="not calibrated"):
        model.embed(np.zeros((1, 3, 224, 224), np.float32))
    with pytest.raises(ModelError, match="calibration image"):
        calibrate(model, [])
    items = scan_input(pairs[0]).items
    ready = calibrate_in(model, tmp_path / "store", items)  # on the collection's 12 covers
    assert ready.engine_precision == "int8" and ready.int8 is not None
    assert ready.int8["calibration_images"] == 12 and "ranges" not in ready.int8
    assert (tmp_path / "store" / ready.int8["file"]).is_file()
    assert ready.embed(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1280)


def test_int8_needs_the_onnx_engine() -> None:
    with pytest.raises(ModelError, match="onnx engine"):
        resolve_precision("int8", "torch")
    with pytest.raises(ModelError, match="unknown precision"):
        resolve_precision("int4", "onnx")


def test_the_cli_refuses_int8_on_torch_in_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        "index", tmp_path, "--out", tmp_path / "c", "--precision", "int8", "--engine", "torch",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "onnx engine" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_gate_is_computed_int8_against_fp32(pairs: tuple[Path, Path]) -> None:
    images, tsv = pairs
    gate = run_gate(images, tsv, images, alterations="flip,crop")
    assert set(gate.tasks) == {"same-group", "copies"}
    for task, by in gate.tasks.items():
        assert set(by) == {"fp32", "int8"}
        for metric in ("recall@1", "mAP"):
            delta = by["int8"][metric] - by["fp32"][metric]
            assert gate.deltas()[task][metric] == pytest.approx(delta)
    assert gate.tasks["copies"]["fp32"]["n_queries"] == 24  # 12 originals x 2 alterations
    assert 0.95 < gate.cosine_mean < 0.9999 and gate.n_cosine == 12
    assert gate.calibration_images == 252  # the int8 model of the default: shipped ranges
    assert gate.passed == all(d >= -0.01 for t in gate.deltas().values() for d in t.values())
    gate.tolerance = -1.0  # int8 would have to beat fp32 by 1.0 everywhere: it cannot
    assert not gate.passed and "FAILED" in gate.summary()


@pytest.mark.slow  # one calibration on the 252 IGDB covers (about 20 CPU-s)
def test_the_shipped_ranges_are_what_their_script_measures(igdb_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "int8_ranges.py"), "--check"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["identical"] is True
