"""Local features (index --local) and the verified re-rank (similar --rerank), on real covers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bannermatch.verify.features import LocalStore, extract_array, extract_file, index_local
from bannermatch.verify.rerank import MIN_INLIERS, combined, inliers, rerank


def _plant(original: Path, out: Path) -> None:
    """A crop, a 12-degree rotation and a rescale of ``original``."""
    im = Image.open(original).convert("RGB")
    w, h = im.size
    im = im.crop((w // 8, h // 10, w - w // 10, h - h // 8)).rotate(12, expand=True)
    im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(out, quality=85)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, covers_dir: Path) -> tuple[Path, Path]:
    src = tmp_path_factory.mktemp("verify_src")
    covers = sorted((covers_dir / "images").iterdir())[:24]
    for p in covers:
        shutil.copy(p, src / p.name)
    _plant(covers[0], src / "zz_planted.jpg")
    (src / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return src, covers[0]


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory, planted: tuple[Path, Path]) -> Path:
    from support.cli import run_cli

    out = tmp_path_factory.mktemp("verify_coll") / "c"
    proc = run_cli("index", planted[0], "--out", out, "--local", "-q")
    assert "no local features" not in proc.stderr or "zz_broken" in proc.stderr
    return out


def _ids(coll: Path) -> dict[str, str]:
    from bannermatch.store.collection import Collection

    c = Collection(coll)
    data = c.load()
    with c.catalog() as cat:
        return {Path(cat.get(i).source).name: i for i in data.ids}  # type: ignore[union-attr]


def test_index_local_stores_bounded_features(coll: Path) -> None:
    store = LocalStore.load(coll)
    assert store is not None
    assert len(store.ids) == 25  # 24 covers and the planted copy; the broken file is not indexed
    assert store.bytes_per_item() <= 16 * 1024
    assert int(np.min(store.counts)) > 50
    assert isinstance(store.descriptors, np.memmap)


def test_similar_rerank_finds_planted_copy(
    coll: Path, planted: tuple[Path, Path], cli_here
) -> None:
    ids = _ids(coll)
    proc = cli_here("similar", coll, ids["zz_planted.jpg"], "-k", "3", "--rerank", "24", "--json")
    hits = json.loads(proc.stdout)["results"]
    assert hits[0]["id"] == ids[planted[1].name]
    assert hits[0]["verified"] and hits[0]["inliers"] >= MIN_INLIERS
    assert not any(h["verified"] for h in hits[1:])
    assert all(0.0 <= h["score"] <= 1.0 for h in hits)


def test_rerank_lifts_a_candidate_ranked_last(coll: Path, planted: tuple[Path, Path]) -> None:
    """The global ranking is reversed on purpose: the original comes last, with the lowest score."""
    ids = _ids(coll)
    store = LocalStore.load(coll)
    assert store is not None
    order = [i for i in store.ids if i not in (ids["zz_planted.jpg"], ids[planted[1].name])]
    order.append(ids[planted[1].name])
    rows = np.arange(len(order))
    scores = np.linspace(0.6, 0.1, len(order)).astype(np.float32)
    query = extract_file(str(planted[0] / "zz_planted.jpg"))
    out = rerank(query, store, order, rows, scores)
    assert order[int(out.rows[0])] == ids[planted[1].name]
    assert out.inliers[0] >= MIN_INLIERS


def test_rerank_needs_local_features(tmp_path: Path, planted: tuple[Path, Path], cli_here) -> None:
    out = tmp_path / "c"
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(planted[0].glob("*.jpg"))[:3]:
        shutil.copy(p, src / p.name)
    cli_here("index", src, "--out", out, "-q")
    item = next(iter(_ids(out).values()))
    proc = cli_here("similar", out, item, "--rerank", "5", check=False)
    assert proc.returncode != 0
    assert "index INPUT" in proc.stderr and "--local" in proc.stderr
    assert "Traceback" not in proc.stderr
    # a rerun with --local extracts them, and one more is incremental
    first = index_local(out, progress=False)
    again = index_local(out, progress=False)
    assert (first.added, again.added, again.kept) == (3, 0, 3)


def test_bad_image_gets_a_reason_and_no_features(tmp_path: Path) -> None:
    from bannermatch.verify.features import _extract_one

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    out = _extract_one(str(bad))
    assert isinstance(out, str) and out


def test_combined_score_stays_in_unit_interval_and_never_lowers() -> None:
    for s in (0.0, 0.3, 0.9, 1.0):
        for n in (0, MIN_INLIERS - 1, MIN_INLIERS, 500):
            c = combined(s, n)
            assert s <= c <= 1.0
    assert combined(0.5, MIN_INLIERS - 1) == 0.5


def test_local_features_survive_a_kill_and_a_rerun(
    tmp_path: Path, covers_dir: Path, cli_here
) -> None:
    """SIGKILL once the first chunk of local features is committed; a rerun keeps it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from bannermatch.verify import LOCAL_DIR
    from bannermatch.verify.features import CHUNK

    src = tmp_path / "src"
    src.mkdir()
    for p in sorted((covers_dir / "images").iterdir())[: CHUNK * 3]:
        os.symlink(p, src / p.name)
    out = tmp_path / "c"
    cli_here("index", src, "--out", out, "-q")
    args = ["index", str(src), "--out", str(out), "--local", "-q", "--workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bannermatch.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (out / LOCAL_DIR / "ids.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = LocalStore.load(out)
    assert kept is not None and CHUNK <= len(kept.ids) < CHUNK * 3
    rerun = index_local(out, progress=False)
    assert rerun.kept == len(kept.ids)
    assert rerun.kept + rerun.added == CHUNK * 3
    store = LocalStore.load(out)
    assert store is not None and len(set(store.ids)) == CHUNK * 3
    assert np.array_equal(store.descriptors[: len(kept.ids)], kept.descriptors)


def _framed(art: Image.Image, frame: Image.Image) -> Image.Image:
    """``art`` inside a copy of ``frame`` (a 60-px band pasted over its edges)."""
    out = frame.copy()
    out.paste(art.resize((frame.width - 120, frame.height - 120)), (60, 60))
    return out


def test_a_shared_template_does_not_outrank_the_real_match(covers_dir: Path) -> None:
    """Ten unrelated covers wear the same frame as the query; the real match (the query's
    art, cropped and rescaled, without the frame) must still come first, although the
    framed ones come first in the global order."""
    covers = sorted((covers_dir / "images").iterdir())
    frame = Image.open(covers[-1]).convert("RGB").resize((400, 560))
    art = Image.open(covers[0]).convert("RGB")
    query = _framed(art, frame)
    w, h = art.size
    real = art.crop((w // 10, h // 10, w - w // 12, h - h // 12))
    real = real.resize((real.width * 4 // 5, real.height * 4 // 5))
    distractors = [_framed(Image.open(p).convert("RGB"), frame) for p in covers[5:15]]
    images = [*distractors, real]
    store = LocalStore.empty()
    store.extend([(f"i{n}", extract_array(np.asarray(im))) for n, im in enumerate(images)])
    rows = np.arange(len(images))
    scores = np.linspace(0.8, 0.5, len(images)).astype(np.float32)  # real match last
    q = extract_array(np.asarray(query))
    plain = [inliers(q, store.features(i)) for i in range(len(distractors))]
    assert max(plain) >= inliers(q, store.features(len(distractors))) // 2  # frames do match
    out = rerank(q, store, store.ids, rows, scores)
    assert int(out.rows[0]) == len(distractors)
    assert out.inliers[0] >= MIN_INLIERS
    assert not any(out.inliers[1:] >= MIN_INLIERS)
    # the same through the whole pipeline (local search, pre-filter), with and without the
    # collection-wide weights: every item at cosine 0.5 from the query, five framed ones as
    # the global candidates, the rest (the real match too) left to the local candidates
    from bannermatch.verify.pipeline import Verifier

    emb = np.zeros((len(images), len(images) + 1), np.float32)
    emb[:, 0] = 0.5
    emb[np.arange(len(images)), np.arange(1, len(images) + 1)] = np.sqrt(0.75)
    vector = np.eye(len(images) + 1, dtype=np.float32)[0]
    verifier = Verifier.in_memory(store, store.ids, emb)
    for idf in (False, True):
        got = verifier.verify(q, vector, (rows[:5], emb[:5] @ vector), idf=idf)
        assert int(got.rows[0]) == len(distractors), idf
        assert got.inliers[0] >= MIN_INLIERS
        assert not any(got.inliers[1:] >= MIN_INLIERS)


def test_eval_rerank_reports_the_reranked_metrics(planted: tuple[Path, Path], cli_here) -> None:
    src, original = planted
    groups = src.parent / "groups.tsv"
    groups.write_text(f"file\tgroup\n{original.name}\tg\nzz_planted.jpg\tg\n", "utf-8")
    proc = cli_here("eval", src, "--groups", groups, "--rerank", "24", "--json", "-q")
    result = json.loads(proc.stdout)
    assert result["rerank"] == 24
    assert result["recall@1"] == 1.0 and result["n_queries"] == 2
    assert result["global"]["n_queries"] == 2 and result["rerank_cpu_ms"] > 0
    both = cli_here("eval", src, "--groups", groups, "--compare", "--rerank", "24", "-q").stdout
    assert "+rerank 24" in both and "verify ms" in both


def test_eval_copies_rerank_finds_the_originals(tmp_path: Path, covers_dir: Path, cli_here) -> None:
    """Cropped and mixed copies of six covers among sixteen: re-ranked recall@1 is not lower
    than the global one, per alteration, and both are reported."""
    covers = sorted((covers_dir / "images").iterdir())
    originals, others = tmp_path / "originals", tmp_path / "others"
    for folder, files in ((originals, covers[:6]), (others, covers[100:110])):
        folder.mkdir()
        for p in files:
            shutil.copy(p, folder / p.name)
    args = ["--copies", "--alterations", "crop,mix", "--distractors", others]
    proc = cli_here("eval", originals, *args, "--rerank", "5", "--json", "-q")
    result = json.loads(proc.stdout)
    assert result["rerank"] == 5 and result["n_queries"] == 12
    for name in ("crop", "mix"):
        after, before = result["alterations"][name], result["global_alterations"][name]
        assert after["recall@1"] >= before["recall@1"]
    assert result["recall@1"] >= result["global"]["recall@1"]


def test_audit_counts_local_features(coll: Path, cli_here) -> None:
    result = json.loads(cli_here("audit", coll, "--json", "-q").stdout)
    local = result["local_features"]
    assert local["items"] == 25 and local["bytes_per_item"] <= 16 * 1024
    assert "local features: 25 items" in cli_here("audit", coll, "-q").stdout


def test_local_candidates_find_the_planted_copy(coll: Path, planted: tuple[Path, Path]) -> None:
    from bannermatch.verify.local_index import LocalIndex
    from bannermatch.verify.pipeline import local_votes

    ids = _ids(coll)
    store = LocalStore.load(coll)
    assert store is not None
    q = store.row_of[ids["zz_planted.jpg"]]
    nb = LocalIndex.open(coll, store).search(store.features(q).descriptors, exclude=q)
    votes = local_votes(nb, len(store.ids))
    assert store.ids[int(np.argmax(votes))] == ids[planted[1].name]
    assert votes[q] == 0


def test_local_candidates_bring_a_copy_the_global_list_misses(
    coll: Path, planted: tuple[Path, Path]
) -> None:
    """The global candidates are three unrelated covers (the original is below the top K);
    the local-feature stage adds the original, and verification puts it first."""
    from bannermatch.store.collection import Collection
    from bannermatch.verify.pipeline import Verifier

    ids = _ids(coll)
    data = Collection(coll).load()
    verifier = Verifier.open(coll, data.ids, data.embeddings)
    q = data.row_of[ids["zz_planted.jpg"]]
    original = data.row_of[ids[planted[1].name]]
    emb = np.asarray(data.embeddings, np.float32)
    others = [r for r in np.argsort(emb @ emb[q]) if r not in (q, original)][:3]  # least alike
    glob = (np.array(others), emb[others] @ emb[q])
    feats = verifier.item_features(q, ids["zz_planted.jpg"])
    without = verifier.verify(feats, emb[q], glob, exclude=q, local=0)
    assert original not in without.rows and not (without.inliers >= MIN_INLIERS).any()
    out = verifier.verify(feats, emb[q], glob, exclude=q)
    assert int(out.rows[0]) == original and out.inliers[0] >= MIN_INLIERS
    assert q not in out.rows
    assert all(0.0 <= s <= 1.0 for s in out.scores)


def test_the_local_index_is_cached_and_rebuilt_when_features_change(tmp_path: Path) -> None:
    from bannermatch.verify.local_index import INDEX_FILE, LocalIndex

    rng = np.random.default_rng(0)
    store = LocalStore.empty()
    fake = [(f"i{n}", extract_array(rng.integers(0, 255, (200, 300), np.uint8))) for n in range(3)]
    store.extend(fake[:2])
    store.save(tmp_path)
    first = LocalIndex.open(tmp_path, LocalStore.load(tmp_path))  # type: ignore[arg-type]
    built = (tmp_path / "local" / INDEX_FILE).stat().st_mtime_ns
    again = LocalIndex.open(tmp_path, LocalStore.load(tmp_path))  # type: ignore[arg-type]
    assert (tmp_path / "local" / INDEX_FILE).stat().st_mtime_ns == built
    assert again.index.ntotal == first.index.ntotal == int(np.sum(store.counts))
    store.extend(fake[2:])
    store.save(tmp_path)
    grown = LocalIndex.open(tmp_path, LocalStore.load(tmp_path))  # type: ignore[arg-type]
    assert grown.index.ntotal == int(np.sum(store.counts)) > first.index.ntotal
    (tmp_path / "local" / INDEX_FILE).write_bytes(b"damaged")
    repaired = LocalIndex.open(tmp_path, LocalStore.load(tmp_path))  # type: ignore[arg-type]
    assert repaired.index.ntotal == grown.index.ntotal


def test_match_rerank_stores_verified_neighbours_that_serve_shows(
    tmp_path: Path, coll: Path, planted: tuple[Path, Path], cli_here
) -> None:
    import httpx

    from bannermatch.present.server import ServedCollection, create_app
    from support.servers import running_server

    root = tmp_path / "c"
    shutil.copytree(coll, root)
    ids = _ids(root)
    result = json.loads(cli_here("match", root, "-k", "5", "--rerank", "24", "--json", "-q").stdout)
    assert result["rerank"]["k"] == 24 and result["rerank"]["stored"] == 5
    with running_server(create_app(ServedCollection.open(root))) as base:
        item = ids["zz_planted.jpg"]
        got = httpx.get(f"{base}/api/items/{item}/similar", params={"n": 5}).json()
        assert got["source"] == "verified"
        first = got["results"][0]
        assert first["id"] == ids[planted[1].name]
        assert first["verified"] and first["inliers"] >= MIN_INLIERS
        assert not any(h["verified"] for h in got["results"][1:])
        past = httpx.get(f"{base}/api/items/{item}/similar", params={"n": 8}).json()
        assert past["source"] != "verified" and past["results"][0]["verified"] is None
    cli_here("match", root, "-k", "5", "-q")  # without --rerank: the verified files go
    assert not list(root.glob("models/*/verified_*.npy"))
    assert ServedCollection.open(root).verified is None


def test_a_query_image_without_features_keeps_the_global_order(
    coll: Path, tmp_path: Path, cli_here
) -> None:
    """A flat grey image has no ORB features: nothing is verified, the global order stays."""
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 300), (128, 128, 128)).save(blank)
    plain = json.loads(cli_here("similar", coll, blank, "-k", "5", "--json").stdout)["results"]
    proc = cli_here("similar", coll, blank, "-k", "5", "--rerank", "10", "--json")
    hits = json.loads(proc.stdout)["results"]
    assert [h["id"] for h in hits] == [h["id"] for h in plain]
    assert not any(h["verified"] for h in hits) and all(h["inliers"] == 0 for h in hits)
