"""``match``, ``similar`` and ``unique`` on a real collection of game covers."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bannermatch.embed.index import index
from bannermatch.embed.models import get_spec
from bannermatch.errors import BannermatchError
from bannermatch.query.match import match, topk_all
from bannermatch.query.similar import similar, unique
from bannermatch.query.topk import nearest
from bannermatch.store.catalog import Catalog
from bannermatch.store.collection import Collection

KEY = "effnet-lite0__pad224-bicubic__cls"
N_COVERS = 40
#: exact copies added to the covers: one pair and one triple
COPIES = {"copy-of-0": 0, "copy-of-5a": 5, "copy-of-5b": 5}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, covers_dir: Path, model) -> Path:
    """A collection of 40 real covers plus exact copies, named with the covers' titles."""
    root = tmp_path_factory.mktemp("match")
    imgs = root / "imgs"
    imgs.mkdir()
    files = sorted((covers_dir / "images").glob("*.jpg"))[:N_COVERS]
    for f in files:
        shutil.copy(f, imgs / f.name)
    for name, n in COPIES.items():
        shutil.copy(files[n], imgs / f"{name}.jpg")
    out = root / "coll"
    index(imgs, out, model, progress=False)
    with open(covers_dir / "covers.tsv", newline="", encoding="utf-8") as fh:
        titles = {Path(r["file"]).stem: r["title"] for r in csv.DictReader(fh, delimiter="\t")}
    with Catalog(out / "catalog.sqlite") as cat:
        items = list(cat.items())
        for it in items:
            it.name = titles.get(it.id, it.name)
        cat.upsert(items)
    return out


@pytest.fixture
def coll(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built collection, free to match or damage."""
    return Path(shutil.copytree(built, tmp_path / "coll"))


def first_cover(covers_dir: Path, n: int = 0) -> Path:
    return sorted((covers_dir / "images").glob("*.jpg"))[n]


def brute_force(emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(emb, np.float32)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def assert_same_topk(
    nb: np.ndarray, sc: np.ndarray, emb: np.ndarray, k: int, atol: float = 1e-3
) -> None:
    want_ids, want_sc = brute_force(emb, k)
    np.testing.assert_allclose(np.asarray(sc, np.float32), want_sc, atol=atol)
    e = np.asarray(emb, np.float32)
    for row in range(len(nb)):
        assert row not in nb[row], f"row {row} lists itself"
        assert len(set(nb[row].tolist())) == k
        for got, want in zip(nb[row], want_ids[row], strict=True):
            if got != want:  # only ties may swap places
                assert abs(float(e[row] @ e[got]) - float(e[row] @ e[want])) < atol


def load(coll: Path):
    return Collection(coll).load()


# match ------------------------------------------------------------------------


def test_match_equals_brute_force(cli_here, coll: Path, covers_dir: Path) -> None:
    result = json.loads(cli_here("match", coll, "-k", "7", "--json", "-q").stdout)
    n = N_COVERS + len(COPIES)
    assert (result["count"], result["k"], result["model_key"]) == (n, 7, KEY)
    folder = coll / "models" / KEY
    nb = np.load(folder / "neighbors.npy")
    sc = np.load(folder / "scores.npy")
    assert nb.dtype == np.uint32 and nb.shape == (n, 7)
    assert sc.dtype == np.float16 and sc.shape == (n, 7)
    assert (np.diff(sc.astype(np.float32), axis=1) <= 1e-3).all()  # nearest first
    data = load(coll)
    assert_same_topk(nb, sc, data.embeddings, 7)
    # exact copies find each other first, with similarity 1, never themselves
    ids = data.ids
    for copy, n_orig in COPIES.items():
        row = ids.index(copy)
        twins = {ids.index(c) for c, m in COPIES.items() if m == n_orig and c != copy}
        twins.add(ids.index(first_cover(covers_dir, n_orig).stem))
        assert set(nb[row, : len(twins)].tolist()) == twins
        assert (sc[row, : len(twins)] >= 0.999).all()


def test_blocked_topk_with_exact_triplicates(built: Path) -> None:
    data = load(built)
    for k in (1, 2, 5):
        nb, sc = topk_all(data.embeddings, k, block=6)
        assert_same_topk(nb, sc, data.embeddings, k)
    # k=1 with three identical rows: the row's own slot may be taken by its copies
    nb, _ = topk_all(data.embeddings, 1, block=4)
    assert (nb[:, 0] != np.arange(len(nb))).all()


def test_k_larger_than_the_collection(cli_here, coll: Path) -> None:
    n = N_COVERS + len(COPIES)
    result = json.loads(cli_here("match", coll, "-k", "1000", "--json", "-q").stdout)
    assert result["k"] == n - 1
    nb = np.load(coll / "models" / KEY / "neighbors.npy")
    assert nb.shape == (n, n - 1)
    for row in range(n):
        assert sorted(nb[row].tolist()) == [r for r in range(n) if r != row]
    out = json.loads(cli_here("similar", coll, "abzu-0", "-k", "500", "--json").stdout)
    assert len(out["results"]) == n - 1


def test_duplicate_groups(coll: Path, covers_dir: Path) -> None:
    folder = coll / "models" / KEY
    result = match(coll, k=5, progress=False)  # the model's calibrated threshold
    assert result.dup_threshold == pytest.approx(get_spec("effnet-lite0").dup_threshold)
    groups = json.loads((folder / "duplicates.json").read_text())
    assert result.duplicate_groups == len(groups)
    ids = load(coll).ids
    pair = sorted([first_cover(covers_dir, 0).stem, "copy-of-0"])
    triple = sorted([first_cover(covers_dir, 5).stem, "copy-of-5a", "copy-of-5b"])
    assert triple in [sorted(g) for g in groups] and pair in [sorted(g) for g in groups]
    assert all(len(g) >= 2 for g in groups)
    assert match(coll, k=5, dup_threshold=1.01, progress=False).duplicate_groups == 0
    assert json.loads((folder / "duplicates.json").read_text()) == []
    everything = match(coll, k=5, dup_threshold=-1.0, progress=False)
    assert everything.duplicate_groups == 1
    assert sorted(json.loads((folder / "duplicates.json").read_text())[0]) == sorted(ids)


def test_dup_threshold_on_the_command_line(cli_here, coll: Path) -> None:
    high = json.loads(cli_here("match", coll, "--dup-threshold", "0.999", "--json", "-q").stdout)
    assert (high["dup_threshold"], high["duplicate_groups"]) == (0.999, 2)
    proc = cli_here("match", coll, "--dup-threshold", "0.999", "-q")
    assert "2 near-duplicate group(s) at >= 0.999" in proc.stdout


def test_match_tiny_collections(tmp_path: Path, covers_dir: Path, model) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(first_cover(covers_dir), imgs)
    index(imgs, tmp_path / "one", model, progress=False)
    result = match(tmp_path / "one", progress=False)
    assert (result.count, result.k, result.duplicate_groups) == (1, 0, 0)
    with pytest.raises(BannermatchError, match="a single item: nothing to compare"):
        unique(tmp_path / "one")
    with pytest.raises(BannermatchError, match="needs at least two items"):
        topk_all(np.ones((1, 4), np.float16), 3)


# unique -------------------------------------------------------------------------


def test_unique_ranking(cli_here, coll: Path) -> None:
    n = N_COVERS + len(COPIES)
    cli_here("match", coll, "-k", "3", "-q")
    out = json.loads(cli_here("unique", coll, "-n", "1000", "--json").stdout)
    results = out["results"]
    assert out["model_key"] == KEY and len(results) == n
    scores = [r["score"] for r in results]
    assert scores == sorted(scores)  # most unique first
    assert [r["rank"] for r in results] == list(range(1, n + 1))
    data = load(coll)
    nb, sc = data.neighbors()
    first = np.asarray(sc[:, 0], np.float32)
    assert scores == pytest.approx(sorted(first.tolist()), abs=1e-4)
    for r in results:
        row = data.ids.index(r["id"])
        assert r["nearest"]["id"] == data.ids[int(nb[row, 0])]
    copies = {r["id"] for r in results[-5:]}  # exact copies are the least unique
    assert {"copy-of-0", "copy-of-5a", "copy-of-5b"} <= copies
    # -n limits the list; the table has a header and one line per item
    assert len(json.loads(cli_here("unique", coll, "-n", "4", "--json").stdout)["results"]) == 4
    table = cli_here("unique", coll, "-n", "4").stdout.splitlines()
    assert len(table) == 2 + 4 and results[0]["id"] in table[2]


def test_unique_needs_fresh_neighbours(cli_here, coll: Path, covers_dir: Path, model) -> None:
    proc = cli_here("unique", coll, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bannermatch: error: no up-to-date neighbours for {KEY}: run `bannermatch match {coll}`"
    ]
    match(coll, k=3, progress=False)
    assert len(unique(coll, n=3).hits) == 3
    # new embeddings make the stored neighbours stale
    extra = coll.parent / "extra"
    extra.mkdir()
    shutil.copy(first_cover(covers_dir, 300), extra)
    index(extra, coll, model, progress=False)
    with pytest.raises(BannermatchError, match="no up-to-date neighbours"):
        unique(coll)


# similar --------------------------------------------------------------------------


def test_similar_by_id_equals_brute_force(coll: Path) -> None:
    match(coll, k=5, progress=False)
    data = load(coll)
    want_ids, want_sc = brute_force(data.embeddings, 12)
    for row in (0, 7, 23):
        item = data.ids[row]
        for k in (3, 12):  # from the stored neighbours, then past them (exact search)
            res = similar(coll, item, k=k)
            assert res.query.kind == "id" and len(res.hits) == k
            got = [data.row_of[h.id] for h in res.hits]
            assert row not in got
            np.testing.assert_allclose([h.score for h in res.hits], want_sc[row, :k], atol=1e-3)
            e = np.asarray(data.embeddings, np.float32)
            for g, w in zip(got, want_ids[row, :k], strict=True):
                assert g == w or abs(float(e[row] @ e[g]) - float(e[row] @ e[w])) < 1e-3


def test_nearest_matches_brute_force(built: Path) -> None:
    data = load(built)
    e = np.asarray(data.embeddings, np.float32)
    q = e[3] + e[17]
    q /= np.linalg.norm(q)
    rows, scores = nearest(data.embeddings, q, 6)
    want = np.argsort(-(e @ q), kind="stable")[:6]
    assert rows.tolist() == want.tolist()
    np.testing.assert_allclose(scores, (e @ q)[want], atol=1e-6)
    rows, _ = nearest(data.embeddings, e[3], 1000, exclude=3)
    assert len(rows) == len(e) - 1 and 3 not in rows.tolist()


def test_similar_by_name_and_fuzzy_name(cli_here, coll: Path) -> None:
    out = json.loads(cli_here("similar", coll, "abzu", "-k", "3", "--json").stdout)
    assert out["query"]["kind"] == "name" and out["query"]["name"] == "Abzu"
    assert out["query"]["id"] in {"abzu-0", "abzu-1"}
    assert len(out["results"]) == 3 and out["model_key"] == KEY
    assert {"rank", "id", "name", "score", "source"} <= set(out["results"][0])

    fuzzy = similar(coll, "hat in tim", k=2)
    assert fuzzy.query.kind == "fuzzy-name" and fuzzy.query.name == "A Hat in Time"
    assert fuzzy.query.match_score is not None and fuzzy.query.match_score >= 70
    proc = cli_here("similar", coll, "Hat in Tme", "-k", "2")
    assert proc.stdout.startswith("most similar to a-hat-in-time-")
    assert "closest name for 'Hat in Tme'" in proc.stdout.splitlines()[0]


def test_similar_by_image_outside_the_collection(
    cli_here, coll: Path, covers_dir: Path, tmp_path: Path
) -> None:
    cover = first_cover(covers_dir, 11)
    # the same cover, resized and re-encoded, from a folder that was never indexed
    query = tmp_path / "query image.jpg"
    Image.open(cover).resize((300, 423), Image.Resampling.LANCZOS).save(query, quality=80)
    out = json.loads(cli_here("similar", coll, query, "-k", "4", "--json").stdout)
    assert out["query"]["kind"] == "image" and out["query"]["text"] == str(query)
    top = out["results"][0]
    assert top["id"] == cover.stem and top["score"] > 0.9
    assert out["results"][1]["score"] < top["score"] - 0.05
    assert [r["rank"] for r in out["results"]] == [1, 2, 3, 4]
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)


def test_similar_by_exact_copy_of_an_indexed_image(coll: Path, covers_dir: Path) -> None:
    cover = first_cover(covers_dir, 20)
    res = similar(coll, str(cover), k=1)
    assert res.query.kind == "image"
    assert res.hits[0].id == cover.stem and res.hits[0].score > 0.999


def test_bad_queries(cli_here, coll: Path, tmp_path: Path) -> None:
    def error(*args: str) -> str:
        proc = cli_here("similar", coll, *args, check=False)
        assert proc.returncode == 1 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bannermatch: error: ")
        return lines[0]

    assert "no item, name or image file matches 'qqqq zzzz xxxx'" in error("qqqq zzzz xxxx")
    (tmp_path / "bad.jpg").write_bytes(b"<html>oops</html>")
    assert error(str(tmp_path / "bad.jpg")).endswith("not an image: the file is an HTML page")
    assert "no embeddings for clip-vit-b32" in error("abzu-0", "--model", "clip-vit-b32")
    with pytest.raises(BannermatchError, match="k must be at least 1"):
        similar(coll, "abzu-0", k=0)
    proc = cli_here("similar", coll, "abzu-0", "-k", "0", check=False)
    assert proc.returncode == 2  # argparse: usage error


def test_bad_item_is_explained(cli_here, coll: Path) -> None:
    with Catalog(coll / "catalog.sqlite") as cat:
        from bannermatch.store.catalog import Item

        cat.upsert([Item("broken-one", "Broken", status="bad", reason="empty file")])
    proc = cli_here("similar", coll, "broken-one", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "bannermatch: error: item broken-one is in the catalogue but has no embedding "
        "(status bad: empty file)"
    )
