"""``match --index ivf|hnsw``: approximate neighbours, their measured recall, and serving.

The known set: clustered random unit vectors (like image embeddings, unlike uniform
noise) with planted near-duplicate pairs, whose nearest neighbour is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bannermatch.errors import BannermatchError
from bannermatch.present.server import ServedCollection, create_app
from bannermatch.query import ann
from bannermatch.query.match import match
from bannermatch.query.topk import nearest
from bannermatch.store.collection import Collection, write_model_data

KEY = "synthetic__rand__cls"
N, D, PAIRS = 20_000, 64, 300


def known_set(n: int = N, d: int = D, pairs: int = PAIRS, seed: int = 0) -> np.ndarray:
    """``n`` unit rows around 200 centres; rows ``n - 2*pairs`` onwards are planted pairs
    (row ``i`` and ``i + pairs`` at cosine ~0.995, far closer than anything else)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, d)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.7 * rng.standard_normal((n, d)).astype(np.float32)
    first = n - 2 * pairs
    x[first + pairs :] = x[first : first + pairs] + 0.03 * rng.standard_normal((pairs, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_collection(root: Path, x: np.ndarray) -> Path:
    folder = Collection(root).model_dir(KEY)
    manifest = {"model": "synthetic", "key": KEY, "dim": x.shape[1], "strategy": "cls"}

    def embeddings(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, x.astype(np.float16))

    write_model_data(folder, manifest, [f"v{i}" for i in range(len(x))], [""] * len(x), embeddings)
    Collection(root).catalog(create=True).close()
    return folder


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return known_set()


@pytest.fixture(scope="module")
def exact(vectors: np.ndarray) -> np.ndarray:
    """Every row's exact top-10 among the others, on the stored (float16) rows."""
    import faiss

    x = vectors.astype(np.float16).astype(np.float32)
    index = faiss.IndexFlatIP(D)
    index.add(x)
    scores, _ = index.search(x, 11)
    return scores[:, 1:11]  # row i finds itself first (no exact duplicates in the set)


def true_recall(x: np.ndarray, neighbors: np.ndarray, exact_scores: np.ndarray) -> float:
    """The recall@10 of stored neighbours over every row (ties count as found)."""
    x = x.astype(np.float16).astype(np.float32)
    got = np.einsum("nkd,nd->nk", x[neighbors.astype(np.int64)], x)
    return float((got >= exact_scores[:, -1:] - 1e-5).mean())


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_recall_on_a_known_set(
    cli_here, tmp_path: Path, vectors: np.ndarray, exact: np.ndarray, kind: str
) -> None:
    folder = write_collection(tmp_path / "c", vectors)
    out = json.loads(cli_here("match", tmp_path / "c", "--index", kind, "--json", "-q").stdout)
    info = json.loads((folder / "match.json").read_text("utf-8"))["index"]
    assert out["index"] == info
    assert info["kind"] == {"ivf": "ivf-flat", "hnsw": "hnsw"}[kind]
    assert info["recall_k"] == 10 and info["recall_sample"] == 1000
    assert info["recall"] >= info["target_recall"] == 0.95
    # the breadth chosen is the smallest tried that reaches the target
    breadth = info["nprobe" if kind == "ivf" else "ef_search"]
    assert [breadth, info["recall"]] in info["tried"]
    assert all(r < 0.95 for b, r in info["tried"] if b < breadth)
    assert (folder / "ann.faiss").is_file()

    nb = np.load(folder / "neighbors.npy")
    sc = np.load(folder / "scores.npy").astype(np.float32)
    assert nb.shape == (N, 10) and nb.dtype == np.uint32
    assert not (nb == np.arange(N)[:, None]).any()  # never the item itself
    assert (np.diff(sc, axis=1) <= 1e-3).all()  # nearest first
    # the recall reported from 1,000 sampled items is the recall over all 20,000 items
    overall = true_recall(vectors, nb, exact)
    assert overall >= 0.93 and abs(overall - info["recall"]) < 0.03, (overall, info)
    # the planted pairs find each other first
    first = N - 2 * PAIRS
    rows = np.arange(first, N)
    twins = np.where(rows < first + PAIRS, rows + PAIRS, rows - PAIRS)
    assert (nb[rows, 0] == twins).mean() >= 0.99
    # an exact match afterwards drops the index
    cli_here("match", tmp_path / "c", "-q")
    assert not (folder / "ann.faiss").exists()


@pytest.mark.parametrize(("budget", "kind"), [(400_000, "ivf-sq8"), (160_000, "ivf-pq")])
def test_quantised_ivf_when_the_rows_do_not_fit(
    tmp_path: Path, vectors: np.ndarray, budget: int, kind: str
) -> None:
    """A memory budget under the float32 rows gives 8-bit rows, then product-quantised
    codes (16 bytes a row here), whose candidates are re-scored exactly: the recall
    target still holds, and the stored scores are exact."""
    x = known_set(5000, pairs=100, seed=1)
    folder = write_collection(tmp_path / "c", x)
    result = match(tmp_path / "c", index="ivf", memory=budget, progress=False)
    info = result.index
    assert info["kind"] == kind and info["memory_bytes"] <= budget
    assert info.get("pq_m") == (16 if kind == "ivf-pq" else None)
    assert info["recall"] >= 0.95
    nb = np.load(folder / "neighbors.npy")
    x16 = x.astype(np.float16).astype(np.float32)
    exact_scores = -np.sort(-(x16 @ x16.T), axis=1)[:, 1:11]
    assert true_recall(x, nb, exact_scores) >= 0.93
    sc = np.load(folder / "scores.npy").astype(np.float32)
    np.testing.assert_allclose(
        sc, np.einsum("nkd,nd->nk", x16[nb.astype(np.int64)], x16), atol=1e-3
    )
    assert f"{kind} nlist=" in result.summary() and "recall@10" in result.summary()


def test_parameters_follow_n_and_memory() -> None:
    gb = 2**30
    big = ann.choose_params("ivf", 1_000_000, 1280, memory=64 * gb)
    assert (big.kind, big.nlist) == ("ivf-flat", 4096)  # 4*sqrt(N), a power of two
    assert 39 * big.nlist <= big.train_size <= 1_000_000
    sq8 = ann.choose_params("ivf", 10_000_000, 1280, memory=16 * gb)
    assert sq8.kind == "ivf-sq8" and ann.index_bytes(sq8, 10_000_000, 1280) <= 16 * gb
    pq = ann.choose_params("ivf", 10_000_000, 1280, memory=2 * gb)
    assert pq.kind == "ivf-pq" and 1280 % pq.pq_m == 0
    assert ann.index_bytes(pq, 10_000_000, 1280) <= 2 * gb
    small = ann.choose_params("ivf", 500, 64, memory=gb)
    assert small.nlist == 500 // 39 == 12  # at least 39 training rows per centroid
    assert ann.choose_params("hnsw", 100_000, 256, memory=gb).hnsw_m == 32
    with pytest.raises(BannermatchError, match="HNSW index of 10,000,000 x 1280"):
        ann.choose_params("hnsw", 10_000_000, 1280, memory=8 * gb)
    with pytest.raises(BannermatchError, match="raise --memory"):
        ann.choose_params("ivf", 10_000_000, 1280, memory=10 * 2**20)


def test_serve_answers_from_the_index(tmp_path: Path, vectors: np.ndarray) -> None:
    x = vectors[:5000]
    write_collection(tmp_path / "c", x)
    match(tmp_path / "c", k=5, index="hnsw", progress=False)
    served = ServedCollection.open(tmp_path / "c")
    client = TestClient(create_app(served))
    info = client.get("/api/info").json()
    assert info["index"] == "hnsw" and info["index_recall"] >= 0.95 and info["stored_k"] == 5

    stored = client.get("/api/items/v7/similar", params={"n": 5}).json()
    assert stored["source"] == "neighbors"
    beyond = client.get("/api/items/v7/similar", params={"n": 30}).json()
    assert beyond["source"] == "ann"
    ids = [h["id"] for h in beyond["results"]]
    assert len(ids) == 30 and "v7" not in ids
    assert ids[:5] == [h["id"] for h in stored["results"]]
    # against an exact scan: the same neighbours, nearly all, with the same scores
    x16 = x.astype(np.float16).astype(np.float32)
    want = np.argsort(-(x16 @ x16[7]))[1:31]
    assert len(set(ids) & {f"v{i}" for i in want}) >= 27
    scores = [h["score"] for h in beyond["results"]]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, [float(x16[int(i[1:])] @ x16[7]) for i in ids], atol=1e-4)

    # without the index the server scans exactly
    match(tmp_path / "c", k=5, progress=False)
    exact_served = ServedCollection.open(tmp_path / "c")
    assert exact_served.search.ann is None
    rows, _, source = exact_served.similar(7, 30)
    assert source == "exact" and set(rows.tolist()) == set(want.tolist())


def test_similar_answers_from_the_index(cli_here, tmp_path: Path) -> None:
    """A deliberately narrow IVF search (uniform random rows, target recall 0.3): what
    `bannermatch similar` and the server answer past the stored k is the index's answer,
    not the exact one."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    write_collection(tmp_path / "c", x / np.linalg.norm(x, axis=1, keepdims=True))
    info = match(tmp_path / "c", k=5, index="ivf", target_recall=0.3, progress=False).index
    assert info["nprobe"] < info["nlist"] and info["recall"] < 0.9
    served = ServedCollection.open(tmp_path / "c")
    rows, _, source = served.similar(7, 30)
    assert source == "ann"
    data = Collection(tmp_path / "c").load()
    exact_rows, _ = nearest(data.embeddings, data.embeddings[7], 30, exclude=7)
    assert set(rows.tolist()) != set(exact_rows.tolist())
    out = json.loads(cli_here("similar", tmp_path / "c", "v7", "-k", "30", "--json").stdout)
    assert [h["id"] for h in out["results"]] == [f"v{r}" for r in rows.tolist()]


def test_bad_index_options(cli_here, tmp_path: Path, vectors: np.ndarray) -> None:
    write_collection(tmp_path / "c", vectors[:500])
    proc = cli_here("match", tmp_path / "c", "--index", "hnsw", "--memory", "1K", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("bannermatch: error: an HNSW index of 500 x 64")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli_here(
        "match", tmp_path / "c", "--index", "ivf", "--target-recall", "1.5", check=False
    )
    assert proc.returncode == 1 and "target recall must be in (0, 1]" in proc.stderr
    proc = cli_here("match", tmp_path / "c", "--index", "ivf", "--memory", "lots", check=False)
    assert proc.returncode == 2 and "not a size: 'lots'" in proc.stderr
    proc = cli_here("match", tmp_path / "c", "--index", "annoy", check=False)
    assert proc.returncode == 2
