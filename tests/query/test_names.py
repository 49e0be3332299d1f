"""The autocomplete name index: folding, tiers, ranking, limits."""

from __future__ import annotations

import random

import pytest

from bannermatch.query.names import NameIndex, fold

IDS = ["620", "400", "570", "x1", "x2", "x3", "x4"]
NAMES = [
    "Portal 2",
    "Portal",
    "Dota 2",
    "Pokémon™ Adventure",
    "Half-Life: Portal Stories",
    "Minecraft Portals",
    "Café_Racer",
]


@pytest.fixture(scope="module")
def index() -> NameIndex:
    return NameIndex(IDS, NAMES)


def _found(index: NameIndex, query: str, limit: int = 10) -> list[tuple[str, str]]:
    return [(IDS[s.row], s.match) for s in index.search(query, limit)]


def test_fold() -> None:
    assert fold("  Half-Life:  Portal™ Stories® ") == "half life portal stories"
    assert fold("ÉCOLE ﬁn") == "ecole fin"
    assert fold("Café_Racer\tGT") == "cafe racer gt"
    assert fold("!!!") == ""


def test_tiers_in_order(index: NameIndex) -> None:
    assert _found(index, "port") == [
        ("400", "prefix"),
        ("620", "prefix"),
        ("x3", "word"),
        ("x2", "word"),
    ]
    assert _found(index, "Portal")[0] == ("400", "name")
    assert _found(index, "craft") == [("x3", "substring")]
    assert _found(index, "life port") == [("x2", "word")]


def test_ids_accents_and_punctuation(index: NameIndex) -> None:
    assert _found(index, "620")[0] == ("620", "id")
    assert _found(index, "pokemon") == [("x1", "prefix")]
    assert _found(index, "cafe racer") == [("x4", "name")]
    assert _found(index, "half-life:") == [("x2", "prefix")]


def test_fuzzy_for_typos(index: NameIndex) -> None:
    hits = index.search("portla")
    assert {IDS[h.row] for h in hits} >= {"400"}
    assert all(h.match == "fuzzy" and 75 <= h.score < 100 for h in hits)
    assert index.search("zzqqxxjj") == []
    assert index.search("po", 10) == index.search("po", 10)  # deterministic


def test_limits_and_empty(index: NameIndex) -> None:
    assert len(index.search("p", 2)) == 2
    assert index.search("", 5) == [] and index.search("   ", 5) == []
    assert index.search("port", 0) == []
    assert NameIndex([], []).search("abc") == []
    with pytest.raises(ValueError):
        NameIndex(["a"], [])


def test_prefix_ranking_matches_brute_force() -> None:
    rng = random.Random(1)
    syllables = ["ka", "to", "ri", "mo", "ne", "sa", "dor", "zan"]
    names = [
        " ".join("".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(3))
        for _ in range(3000)
    ]
    ids = [str(i) for i in range(len(names))]
    index = NameIndex(ids, names)
    for q in ["ka", "tori", "dorzan", "s"]:
        got = [s.row for s in index.search(q, 10) if s.match in {"name", "prefix"}]
        want = sorted(
            (r for r, n in enumerate(names) if n.startswith(q)),
            key=lambda r: (len(names[r]), names[r], r),
        )[:10]
        assert got == want, q
