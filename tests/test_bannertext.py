"""The banner-text matcher on its own (no OCR needed): run-together words, word order,
numbers as Roman numerals, initials, and the ranking of whole titles."""

from __future__ import annotations

import itertools

import pytest

from bannermatch.ocr.search import BannerTextIndex, query_words

TEXTS = [
    "APLAGUETALE INNOCENCE",  # 0
    "PLAGUE INC",  # 1
    "ASSASSIN'S CREEDII",  # 2
    "ASSASSIN'S CREEDIII",  # 3
    "ASSASSINS CREED",  # 4
    "THE WITCHER WILDIIIHUNT",  # 5
    "THE WITCHER2 ASSASSINSOFKINGS",  # 6
    "GRAND THEFT AUTO IV",  # 7
    "DOOM",  # 8
    "DOOM ETERNAL",  # 9
    "",  # 10: a banner without text
    "RE",  # 11: a text shorter than the words looked for
]


@pytest.fixture(scope="module")
def index() -> BannerTextIndex:
    return BannerTextIndex(TEXTS)


def first(index: BannerTextIndex, query: str) -> int | None:
    found = index.search(query, 3)
    return found[0].row if found else None


@pytest.mark.parametrize(
    ("query", "row"),
    [
        ("plague tale", 0),  # run together
        ("Tale Plague", 0),  # any order
        ("A Plague Tale: Innocence", 0),  # punctuation, case, stop words
        ("plage tale", 0),  # a typo
        ("plague inc", 1),
        ("Assassin's Creed 2", 2),  # 2 = II at a word's end, not inside III
        ("assassins creed iii", 3),
        ("assassins creed 3", 3),
        ("assassins creed", 4),  # the whole text matched beats a longer one
        ("the witcher 2", 6),  # not the III inside WILDIIIHUNT
        ("GTA IV", 7),  # initials
        ("doom", 8),  # DOOM above DOOM ETERNAL
        ("doom eternal", 9),
    ],
)
def test_finds_the_title(index: BannerTextIndex, query: str, row: int) -> None:
    assert first(index, query) == row, [(m.row, m.score) for m in index.search(query, 3)]


def test_scores_and_limits(index: BannerTextIndex) -> None:
    found = index.search("plague tale", 10)
    assert [m.row for m in found][:1] == [0] and found[0].score > 50
    assert all(a.score >= b.score for a, b in itertools.pairwise(found))
    assert 10 not in {m.row for m in found}  # no text, never a hit
    assert 11 not in {m.row for m in index.search("adventure", 10)}  # RE is not "adventure"
    assert index.search("plague tale", 0) == []
    assert index.search("zzzzqx", 5) == []
    strict = index.search("plague tale", 10, min_coverage=0.99)
    assert {m.row for m in strict} == {0}
    assert query_words("The Of") == ["the", "of"]  # only stop words: they count
    assert BannerTextIndex([]).search("doom") == []
