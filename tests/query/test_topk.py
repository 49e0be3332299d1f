"""Exact all-pairs top-k from symmetric blocks: the same neighbours as a brute-force
sort and as faiss's own exhaustive search, whatever the block size, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from bannermatch.query.topk import topk_all_pairs


def unit_rows(n: int, d: int, seed: int, *, coarse: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, d)).astype(np.float32)
    if n > 11:
        e[10] = e[3]  # exact duplicates: ties at the top
        e[11] = e[3]
    if coarse:  # values on a coarse grid: many tied scores
        e = np.round(e, 1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def brute_force(e: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = e.astype(np.float64) @ e.astype(np.float64).T
    np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


def assert_exact(e: np.ndarray, ids: np.ndarray, scores: np.ndarray, k: int) -> None:
    want_ids, want = brute_force(e, k)
    assert ids.shape == scores.shape == (len(e), k)
    np.testing.assert_allclose(scores, want, atol=1e-6)
    s = e.astype(np.float64) @ e.astype(np.float64).T
    for row in range(len(e)):
        assert row not in ids[row] and len(set(ids[row].tolist())) == k
        # where the order differs from the sort, the scores tie (to float32 rounding)
        np.testing.assert_allclose(s[row, ids[row]], s[row, want_ids[row]], atol=1e-6)


@pytest.mark.parametrize(
    ("n", "d", "k", "block"),
    [
        (50, 8, 5, 7),  # blocks that do not divide n
        (50, 8, 49, 6),  # k = n - 1: every other row
        (120, 16, 10, 32),
        (97, 5, 1, 10),
        (300, 4, 3, 1000),  # one block larger than n
        (2, 3, 1, 4096),  # the smallest collection
    ],
)
@pytest.mark.parametrize("coarse", [False, True])
def test_equals_brute_force(n: int, d: int, k: int, block: int, coarse: bool) -> None:
    e = unit_rows(n, d, seed=n + k, coarse=coarse)
    ids, scores = topk_all_pairs(e, k, block=block)
    assert_exact(e, ids, scores, k)


def test_block_size_does_not_change_the_result() -> None:
    e = unit_rows(500, 24, seed=3)
    ids, scores = topk_all_pairs(e, 10, block=64)
    for block in (37, 128, 499, 4096):
        other_ids, other = topk_all_pairs(e, 10, block=block)
        np.testing.assert_allclose(other, scores, atol=1e-6)
        assert (other_ids == ids).mean() > 0.99  # only float-rounding ties may swap


def test_agrees_with_a_faiss_search() -> None:
    import faiss

    e = unit_rows(3000, 64, seed=5)
    index = faiss.IndexFlatIP(64)
    index.add(e)
    want, want_ids = index.search(e, 11)
    ids, scores = topk_all_pairs(e, 10, block=1024)
    # faiss finds each row itself first (similarity 1), except where a duplicate ties
    assert (want_ids[:, 0] == np.arange(3000)).mean() > 0.99
    np.testing.assert_allclose(scores, want[:, 1:], atol=1e-5)
    assert (ids == want_ids[:, 1:]).mean() > 0.999
