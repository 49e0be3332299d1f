"""Copy detection (``eval --copies``) and ``eval --compare``, on real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bannermatch.errors import BannermatchError
from bannermatch.evaluation.alterations import ALTERATIONS, alter, parse_alterations
from bannermatch.evaluation.copies import copy_ranks, evaluate_copies, make_copies


@pytest.fixture(scope="module")
def originals(covers_dir: Path, edge_cases_dir: Path, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """12 real covers and one corrupt file."""
    folder = tmp_path_factory.mktemp("originals")
    for src in sorted((covers_dir / "images").glob("*.jpg"))[:60:5]:
        shutil.copyfile(src, folder / src.name)
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    return folder


@pytest.fixture(scope="module")
def cover(covers_dir: Path) -> Image.Image:
    return Image.open(sorted((covers_dir / "images").glob("*.jpg"))[0]).convert("RGB")


@pytest.mark.parametrize("name", list(ALTERATIONS))
def test_each_alteration_changes_the_image_reproducibly(cover: Image.Image, name: str) -> None:
    a, b = alter(cover, name, 0, 3), alter(cover, name, 0, 3)
    assert a.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))
    if a.size == cover.size:
        assert not np.array_equal(np.asarray(a), np.asarray(cover))
    if name != "flip":  # the other alterations draw their parameters from the seed
        other = alter(cover, name, 1, 3)
        assert other.size != a.size or not np.array_equal(np.asarray(other), np.asarray(a))


def test_alterations_do_what_they_say(cover: Image.Image) -> None:
    w, h = cover.size
    assert np.array_equal(np.asarray(alter(cover, "flip", 0, 0)), np.asarray(cover)[:, ::-1])
    cw, ch = alter(cover, "crop", 0, 0).size
    assert 0.69 * w <= cw <= 0.91 * w and 0.69 * h <= ch <= 0.91 * h
    rw, rh = alter(cover, "resize", 0, 0).size
    assert 0.24 * w <= rw <= 0.51 * w and abs(rw / rh - w / h) < 0.02
    texted = np.asarray(alter(cover, "text", 0, 0)).astype(int)
    changed = np.abs(texted - np.asarray(cover)).sum(axis=2) > 0
    assert 0.005 < changed.mean() < 0.5  # some text, not a new picture
    jpeg = np.asarray(alter(cover, "jpeg", 0, 0)).astype(int)
    assert 1 < np.abs(jpeg - np.asarray(cover)).mean() < 20


def test_parse_alterations() -> None:
    assert parse_alterations(None) == list(ALTERATIONS)
    assert parse_alterations("text, crop,text") == ["text", "crop"]
    with pytest.raises(BannermatchError, match="unknown alteration 'blur'; choose from crop"):
        parse_alterations("crop,blur")


def test_copy_ranks_match_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    db = rng.normal(size=(50, 8)).astype(np.float32)
    db[7] = db[3]  # a tie: the earlier row ranks first
    queries = db[[3, 7, 10, 20]] + rng.normal(scale=0.6, size=(4, 8)).astype(np.float32)
    targets = np.array([3, 7, 10, 20])
    ranks = copy_ranks(queries, db, targets, block=3)
    for q, t, r in zip(queries, targets, ranks, strict=True):
        order = np.argsort(-(db @ q), kind="stable")
        assert r == int(np.flatnonzero(order == t)[0]) + 1
    assert ranks[1] >= 2  # row 7 has row 3's vector: 3 comes first


def test_copy_detection_end_to_end(originals: Path, tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    keep = tmp_path / "copies"
    result = evaluate_copies(originals, keep_copies=keep, model=model, progress=False)
    assert result.n_images == 12 and result.metrics.n_queries == 12 * len(ALTERATIONS)
    assert result.bad == [{"file": "broken.jpg", "reason": result.bad[0]["reason"]}]
    assert "HTML" in result.bad[0]["reason"]
    assert set(result.by_alteration) == set(ALTERATIONS)
    assert all(m.n_queries == 12 for m in result.by_alteration.values())
    # 12 originals: a wrong target would give recall@1 near 1/12
    assert result.metrics.recall[1] >= 0.9 and result.metrics.map >= 0.9
    listed = (keep / "copies.tsv").read_text().splitlines()
    assert listed[0] == "file\toriginal\talteration" and len(listed) == 1 + 12 * len(ALTERATIONS)
    assert len(list(keep.glob("*.png"))) == 12 * len(ALTERATIONS)
    again = make_copies(originals, tmp_path / "again", alterations="text", progress=False)
    first = next(c for c in again.copies if c.original == 0)
    assert np.array_equal(
        np.asarray(Image.open(first.item.source)),
        np.asarray(Image.open(keep / Path(first.item.source).name)),
    )


def test_copy_detection_on_the_command_line(
    cli_here, originals: Path, edge_cases_dir: Path
) -> None:
    others = edge_cases_dir / "berlin_pairs"
    args = ["--copies", "--alterations", "flip,jpeg", "--json", "-q", "--distractors", others]
    out = json.loads(cli_here("eval", originals, *args).stdout)
    assert out["task"] == "copies" and out["n_images"] == 12 and out["n_queries"] == 24
    assert out["n_distractors"] == len(list(others.glob("*.jpg")))
    assert set(out["alterations"]) == {"flip", "jpeg"}
    assert out["alterations"]["jpeg"]["recall@1"] == 1.0
    assert {"recall@1", "recall@10", "mAP", "n_bad"} <= set(out)
    table = cli_here("eval", originals, "--copies", "--alterations", "jpeg", "-q").stdout
    assert "must find their original" in table and "jpeg" in table


def test_compare_runs_every_combination(cli_here, originals: Path) -> None:
    proc = cli_here(
        "eval",
        originals,
        "--copies",
        "--alterations",
        "crop",
        "--compare",
        "--fit",
        "crop",
        "pad",
        "--strategy",
        "cls",
        "gem",
        "--json",
        "-q",
    )
    out = json.loads(proc.stdout)
    keys = [r["model_key"] for r in out["runs"]]
    assert keys == [  # int8 where the export has shipped ranges (cls at 224 px), else fp32
        "effnet-lite0__crop256-224-bicubic__cls-int8",
        "effnet-lite0__crop256-224-bicubic__gem",
        "effnet-lite0__pad224-bicubic__cls-int8",
        "effnet-lite0__pad224-bicubic__gem",
    ]
    assert all(r["n_queries"] == 12 for r in out["runs"]) and out["failed"] == []


def test_compare_on_groups_reports_a_failing_variant(
    cli_here, edge_cases_dir: Path, tmp_path: Path
) -> None:
    pairs = sorted((edge_cases_dir / "berlin_pairs").glob("*.jpg"))
    tsv = tmp_path / "groups.tsv"
    tsv.write_text(
        "file\tgroup\n" + "".join(f"{p.name}\t{p.stem.rsplit('_', 1)[0]}\n" for p in pairs)
    )
    proc = cli_here(
        "eval",
        edge_cases_dir / "berlin_pairs",
        "--groups",
        tsv,
        "--compare",
        "--model",
        "effnet-lite0",
        "timm:nope_net",
        "-q",
    )
    assert "effnet-lite0__pad224-bicubic__cls" in proc.stdout
    assert "failed: timm:nope_net: timm has no model named 'nope_net'" in proc.stdout
    assert "best mAP: effnet-lite0" in proc.stdout


def test_eval_argument_errors(cli_here, originals: Path) -> None:
    several = cli_here("eval", originals, "--copies", "--fit", "crop", "pad", check=False)
    assert several.returncode == 1
    assert "several values of --model, --fit, --strategy or --augment need --compare" in (
        several.stderr
    )
    bad = cli_here("eval", originals, "--copies", "--alterations", "blur", check=False)
    assert bad.returncode == 1 and "unknown alteration 'blur'" in bad.stderr
    neither = cli_here("eval", originals, check=False)
    assert neither.returncode == 2 and "one of the arguments --groups --copies" in neither.stderr
