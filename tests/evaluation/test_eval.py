"""``bannermatch eval``: metrics checked against a brute-force computation on real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bannermatch.embed.batches import embed_paths
from bannermatch.errors import BannermatchError
from bannermatch.evaluation.groups import evaluate, read_groups, retrieval_metrics

#: base_images that are copies of the grouped ukbench photos (kept out of the distractors)
GROUPED_UKBENCH = ("ukbench00120", "ukbench09268")


@pytest.fixture(scope="module")
def grouped_set(edge_cases_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A folder of real photos with a TSV: Berlin places (2-3 photos each), one UKBench
    photo with its variants, a singleton, a corrupt file, a missing file, a file
    with an empty group, and unlisted distractors."""
    root = tmp_path_factory.mktemp("eval") / "images"
    rows: list[tuple[str, str]] = []
    for src in sorted((edge_cases_dir / "berlin_pairs").glob("*.jpg")):
        place = src.stem.rsplit("_", 1)[0]
        _copy(src, root / "berlin" / src.name)
        rows.append((f"berlin/{src.name}", place))
    for src in sorted((edge_cases_dir / "mixed_images").glob("ukbench00120*.jpg")):
        _copy(src, root / "ukb" / src.name)
        rows.append((f"ukb/{src.name}", "ukb120"))
    for name in ("ukbench09268.jpg", "ukbench09268_corrupt.jpg"):
        _copy(edge_cases_dir / "mixed_images" / name, root / "ukb" / name)
        rows.append((f"ukb/{name}", "ukb9268"))  # one usable member: no query
    rows.append(("berlin/gone.jpg", "berlin_9991"))  # listed, not on disk
    distractors = []
    for src in sorted((edge_cases_dir / "base_images").glob("*.jpg")):
        if src.stem not in GROUPED_UKBENCH:
            _copy(src, root / "other" / src.name)
            distractors.append(f"other/{src.name}")
    rows.append((distractors.pop(), ""))  # listed without a group: a distractor too
    tsv = root.parent / "groups.tsv"
    lines = ["group\tnote\tfile"] + [f"{g}\tx\t{f}" for f, g in rows]
    tsv.write_text("\n".join(lines) + "\n", "utf-8")
    return {"root": root, "tsv": tsv, "rows": rows, "distractors": distractors}


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


@pytest.fixture(scope="module")
def result(grouped_set: dict, model):
    return evaluate(grouped_set["root"], grouped_set["tsv"], model=model, progress=False)


def brute_force(emb: np.ndarray, labels: list[str | None]) -> dict[str, float]:
    """recall@1/@10 and mAP the plain way: full similarity matrix, sort each row."""
    sims = emb.astype(np.float64) @ emb.astype(np.float64).T
    n = len(labels)
    r1, r10, aps = [], [], []
    for q in range(n):
        if labels[q] is None or sum(lab == labels[q] for lab in labels) < 2:
            continue
        others = sorted((j for j in range(n) if j != q), key=lambda j: -sims[q, j])
        relevant = [labels[j] == labels[q] for j in others]
        r1.append(relevant[0])
        r10.append(any(relevant[:10]))
        found, precisions = 0, []
        for rank, rel in enumerate(relevant, start=1):
            if rel:
                found += 1
                precisions.append(found / rank)
        aps.append(sum(precisions) / len(precisions))
    return {"n": len(aps), "recall@1": np.mean(r1), "recall@10": np.mean(r10), "mAP": np.mean(aps)}


def test_metrics_match_brute_force(grouped_set: dict, result, model) -> None:
    root = grouped_set["root"]
    group_of = dict(grouped_set["rows"])
    files = sorted(str(p.relative_to(root).as_posix()) for p in root.rglob("*.jpg"))
    emb, kept, errors = embed_paths([root / f for f in files], model)
    assert [files[i] for i in errors] == ["ukb/ukbench09268_corrupt.jpg"]
    labels = [group_of.get(files[i]) or None for i in kept]
    expected = brute_force(emb, labels)
    got = result.to_dict()
    assert got["n_queries"] == expected["n"] == 23 + 4  # berlin_192499 is alone
    for key in ("recall@1", "recall@10", "mAP"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    # a real, discriminating score: not trivially perfect, not zero
    assert 0 < got["mAP"] < 1


def test_counts_distractors_and_bad_files(grouped_set: dict, result) -> None:
    d = result.to_dict()
    n_listed_ok = len(grouped_set["rows"]) - 2  # minus the corrupt and the missing file
    assert d["n_listed"] == n_listed_ok
    assert d["n_distractors"] == len(grouped_set["distractors"]) == 7
    assert d["n_images"] == n_listed_ok + 7
    assert d["n_groups"] == 11 + 1  # Berlin places, ukb120 (ukb9268 has one usable image)
    assert d["n_bad"] == 2
    reasons = {b["file"]: b["reason"] for b in d["bad"]}
    assert reasons["berlin/gone.jpg"] == "file not found"
    assert "ukb/ukbench09268_corrupt.jpg" in reasons
    assert reasons["ukb/ukbench09268_corrupt.jpg"] != "file not found"
    assert "ukb/ukbench09268_corrupt.jpg" in result.summary()


def test_recall_is_monotonic_and_json_ready(result) -> None:
    d = result.to_dict()
    assert d["recall@1"] <= d["recall@5"] <= d["recall@10"] <= 1
    assert d["mean_first_rank"] >= 1 and d["median_first_rank"] >= 1
    assert d["model"] == "effnet-lite0" and d["model_key"].startswith("effnet-lite0__")
    assert d["seconds"] >= d["embed_seconds"] > 0 and d["images_per_second"] > 0
    json.dumps(d)


def test_metrics_by_hand_with_distractor_and_blocks() -> None:
    """2-D unit vectors at known angles: a0 0°, a1 90°, b0 10°, b1 80°, distractor 5°,
    singleton 180°. Hand-ranked: first hits at ranks 4, 4, 3, 2."""
    angles = np.radians([0, 90, 10, 80, 5, 180])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    labels = [0, 0, 1, 1, -1, 2]
    for block in (None, 1, 3):
        m = retrieval_metrics(emb, labels, ks=(1, 2, 3, 4), block=block)
        assert m.n_queries == 4
        assert m.recall == pytest.approx({1: 0.0, 2: 0.25, 3: 0.5, 4: 1.0})
        assert m.map == pytest.approx((1 / 4 + 1 / 4 + 1 / 3 + 1 / 2) / 4)
        assert m.mean_first_rank == pytest.approx(13 / 4)


def test_an_image_never_retrieves_itself() -> None:
    emb = np.eye(4, dtype=np.float32)  # every pair orthogonal: only self would score 1
    m = retrieval_metrics(emb, [0, 0, 1, 1], ks=(1,))
    assert m.recall[1] < 1


def test_no_queries_is_an_error() -> None:
    with pytest.raises(BannermatchError, match="nothing to evaluate"):
        retrieval_metrics(np.eye(3, dtype=np.float32), [0, 1, -1])


def test_read_groups_errors(tmp_path: Path) -> None:
    tsv = tmp_path / "g.tsv"
    with pytest.raises(BannermatchError, match="not found"):
        read_groups(tsv)
    tsv.write_text("file\tgroup\na.jpg\tx\nb.jpg\t\na.jpg\ty\n", "utf-8")
    with pytest.raises(BannermatchError, match=r"g\.tsv:4: a\.jpg is listed again"):
        read_groups(tsv)
    tsv.write_text("file\tgroup\na.jpg\tx\nb.jpg\t\na.jpg\tx\n", "utf-8")
    assert read_groups(tsv) == {"a.jpg": "x", "b.jpg": ""}


def test_cli_json(cli_here, grouped_set: dict, result) -> None:
    args = ("eval", grouped_set["root"], "--groups", grouped_set["tsv"], "--json", "-q")
    d = json.loads(cli_here(*args, "--precision", "fp32").stdout)
    for key in ("n_images", "n_queries", "recall@1", "recall@10", "mAP", "n_bad", "model_key"):
        assert key in d, key
    default = json.loads(cli_here(*args).stdout)  # int8 on the CPU: its own key, close to fp32
    assert default["model_key"] == d["model_key"] + "-int8"
    assert default["mAP"] == pytest.approx(d["mAP"], abs=0.1)
    # the same model (fp32) and preprocessing as the in-process run
    assert d["n_queries"] == result.metrics.n_queries
    assert d["mAP"] == pytest.approx(result.metrics.map, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--group-column", "game"], "no column 'game'"),
        (["--file-column", "path"], "no column 'path'"),
    ],
)
def test_cli_missing_column(cli_here, grouped_set: dict, args: list[str], needle: str) -> None:
    proc = cli_here("eval", grouped_set["root"], "--groups", grouped_set["tsv"], *args, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_cli_missing_groups_file(cli_here, grouped_set: dict, tmp_path: Path) -> None:
    proc = cli_here("eval", grouped_set["root"], "--groups", tmp_path / "none.tsv", check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "not found" in proc.stderr


@pytest.mark.slow
def test_covers_full_run(cli_here, covers_dir: Path) -> None:
    """The real same-game task: 635 covers, 108 groups (figures in docs/evaluation.md)."""
    proc = cli_here(
        "eval", covers_dir / "images", "--groups", covers_dir / "covers.tsv", "--json", "-q"
    )
    d = json.loads(proc.stdout)
    assert (d["n_images"], d["n_queries"], d["n_groups"], d["n_bad"]) == (635, 238, 108, 0)
    assert d["model_key"] == "effnet-lite0__pad224-bicubic__cls-int8"  # the chosen default
    assert d["recall@1"] == pytest.approx(0.218, abs=0.02)
    assert d["recall@10"] == pytest.approx(0.374, abs=0.02)
    assert d["mAP"] == pytest.approx(0.239, abs=0.02)
