"""The banner-text matcher on its own (no OCR needed): run-together words, word order,
numbers as Roman numerals, initials, the ranking of whole titles, and the candidate
index answering as scoring every text does."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from bannermatch.query import bannertext
from bannermatch.query.bannertext import (
    ARABIC,
    BannerTextIndex,
    match_word,
    query_words,
    score_text,
)
from bannermatch.query.grams import GramIndex, Joined

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


def test_digits_read_as_letters_and_titles_as_initials() -> None:
    texts = ["RAGEZ", "RAGE", "CALLDUTY MW3", "CALLDUTY GHOSTS", "RE", "ZRAGE"]
    index = BannerTextIndex(texts)
    assert first(index, "rage 2") == 0  # Z ending a word: a stylised 2
    assert first(index, "rage") == 1
    assert 5 not in {m.row for m in index.search("rage 2", 3)[:1]}  # Z starting a word is not
    assert first(index, "Call of Duty Modern Warfare 3") == 2  # MW3: modern warfare 3
    assert first(index, "call of duty ghosts") == 3
    # initials alone do not make a match: RE is not "Remains Edith"
    assert 4 not in {m.row for m in index.search("What Remains of Edith Finch", 10)}


def test_an_abbreviation_the_banner_spells_out() -> None:
    texts = ["BORDERLANDS", "BORDERLANDS2", "BORDERLANDS GAMEOFTHE YEARENHANGED", "FALLOUT3 GOTY"]
    index = BannerTextIndex(texts)
    assert first(index, "Borderlands GOTY") == 2  # as OCR read "Game of the Year Enhanced"
    assert first(index, "fallout 3 goty") == 3  # and a banner that prints GOTY
    assert [m.row for m in index.search("borderlands goty", 5)] == [2, 0, 1, 3]  # each once


def _corpus(n: int, seed: int) -> list[str]:
    """Texts made of the words above, recombined, some letters misread or dropped."""
    rng = np.random.default_rng(seed)
    words = " ".join([*TEXTS, "CALLDUTY MW3 HALF-LIFE2 LOSTCOAST THIS WAR OF MINE"]).split()
    out = []
    for _ in range(n):
        text = list(" ".join(rng.choice(words, rng.integers(1, 4))))
        for _ in range(rng.integers(0, 3)):
            i = int(rng.integers(len(text)))
            text[i] = str(rng.choice(list("AEIOZ2 ")))
        out.append("".join(text))
    return out


def _every_text(texts: list[str], query: str, limit: int) -> list[tuple[int, float]]:
    """The answer by scoring every text a query's word is found in, in Python."""
    words = query_words(query)
    long = [w for w in words if len(w) > 2 and not (w.isdigit() or w in ARABIC)]
    scored = []
    for row, text in enumerate(texts):
        t = BannerTextIndex([text]).text(0)
        if not any(match_word(w, t) for w in long or words):
            continue
        score, _ = score_text(words, t)
        if score > 0:
            scored.append((-score, len(t.compact), row))
    return [(row, -neg) for neg, _, row in sorted(scored)[:limit]]


QUERIES = ["plague tale", "Assassin's Creed 2", "doom", "GTA IV", "the witcher 3",
           "call of duty modern warfare 3", "half life 2 lost coast", "this war of mine",
           "plage inc", "ii", "2"]  # fmt: skip


@pytest.mark.parametrize("grams", [False, True])
def test_index_answers_as_scoring_every_text(grams: bool) -> None:
    texts = _corpus(1500, 3)
    index = BannerTextIndex(texts, grams=grams)
    assert index.uses_grams == grams
    others = [t for t in texts if "PLAGUE" not in t and "TALE" not in t]
    run_together = BannerTextIndex(["PLAGUE INC", *others, "APLAGUETALE"], grams=grams)
    assert first(run_together, "A Plague Tale") == len(others) + 1
    for query in QUERIES:
        got = [(m.row, m.score) for m in index.search(query, 10)]
        assert index.last_exact
        assert got == _every_text(texts, query, 10), query


def test_capped_comparisons_say_when_they_may_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _corpus(1500, 4)
    monkeypatch.setattr(bannertext, "MAX_COMPARED", 40)  # few texts compared a word
    index = BannerTextIndex(texts, grams=True)
    exact = 0
    for query in QUERIES:
        got = [(m.row, m.score) for m in index.search(query, 5)]
        if index.last_exact:  # the bound proved the texts left out could not enter
            exact += 1
            assert got == _every_text(texts, query, 5), query
    assert 0 < exact < len(QUERIES)


def test_letter_index_counts_common_letters() -> None:
    strings = ["abracadabra", "", "cab", "zzz", "élan", "aab"]
    index = GramIndex(strings)
    for word in ["abc", "aab", "zz", "éla", "q"]:
        want = [sum((Counter(word) & Counter(s)).values()) for s in strings]
        assert index.overlap(word).tolist() == want, word
    assert index.containing("ab").tolist() == [0, 2, 5] and index.containing("ab\0c").size == 0
    assert Joined([]).containing("a").size == 0
    assert BannerTextIndex([], grams=True).search("doom") == []
