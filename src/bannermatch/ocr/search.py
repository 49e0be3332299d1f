"""Find banners by the words on them: a fuzzy, word-order tolerant match of a query
against each item's OCR text, robust to the run-together words OCR gives.

OCR reads "A Plague Tale" as ``APLAGUETALE`` and "Assassin's Creed II" as
``CREEDII``, so a text is compared without its spaces. Each query word (stop words
aside) is looked for in it: a word of three letters or more by rapidfuzz's best
partial alignment (typos tolerated), a shorter word or a number exactly, with its
Roman/Arabic twin ("2" finds ``CREEDII``; a Roman numeral only where a word ends), and a
short word that the text does not hold also as the initials of its words ("gta" in
"grand theft auto"). The score, 0-100, is

    query coverage x (1/2 + 1/2 x text coverage)

query coverage: the words' length-weighted alignment scores (squared: a half-found word
counts for little); text coverage: the share of the text's letters the words were
aligned to, so "Doom" ranks the banner reading DOOM above DOOM ETERNAL. Texts and queries
are folded with :func:`bannermatch.names.fold`, the name resolver's own folding.

For large collections the texts a query can match are found first with rapidfuzz's
C-speed ``process.cdist`` (each query word against every text, on every core); only
those are scored in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..names import fold

#: words that never count (a title's "The", "of" are often small or absent on a banner)
STOPWORDS = frozenset({"a", "an", "the", "of", "and", "in", "on", "to", "for", "at", "by"})
#: a word aligned worse than this (0-100) is not found
MIN_WORD = 70.0
#: how much a text's unmatched letters weigh against it (0: not at all)
TEXT_COVERAGE_WEIGHT = 0.5
#: initials stand for a word a little less surely than its letters do
INITIALS_SCORE = 0.9
_ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
ROMAN = {str(n): r for n, r in enumerate(_ROMAN, 1)}
ARABIC = {r: a for a, r in ROMAN.items()}


@dataclass(frozen=True)
class TextMatch:
    row: int
    score: float  # 0-100


def query_words(query: str) -> list[str]:
    """The folded words of ``query`` that count (all of them when all are stop words)."""
    words = fold(query).split()
    return [w for w in words if w not in STOPWORDS] or words


def _is_number(word: str) -> bool:
    return word.isdigit() or word in ARABIC


class _Text:
    """One item's folded text, its letters run together, and its words' initials."""

    __slots__ = ("compact", "initials", "spaced")

    def __init__(self, text: str):
        self.spaced = fold(text)
        self.compact = self.spaced.replace(" ", "")
        self.initials = "".join(w[0] for w in self.spaced.split())

    def _ends(self) -> list[int]:
        """Where each word ends in ``compact``."""
        return np.cumsum([len(w) for w in self.spaced.split()]).tolist()

    def roman_at(self, start: int, end: int) -> bool:
        """Whether compact[start:end] can be a Roman numeral: it ends a word and follows
        no other numeral letter."""
        return end in self._ends() and (start == 0 or self.compact[start - 1] not in "ivx")

    def initials_span(self, word: str) -> tuple[int, int] | None:
        """Where, in ``compact``, the words whose initials spell ``word`` are."""
        first = self.initials.find(word)
        if first < 0:
            return None
        ends = self._ends()
        return (ends[first - 1] if first else 0), ends[first + len(word) - 1]


def _exact(word: str, text: _Text) -> tuple[float, int, int] | None:
    """A short word or number, or its Roman/Arabic twin, found as it is."""
    best = None
    for v in dict.fromkeys([word, ROMAN.get(word, word), ARABIC.get(word, word)]):
        i = text.compact.find(v)
        if v.isalpha() and v in ARABIC:  # a whole numeral ending a word: CREEDII, not
            while i >= 0 and not text.roman_at(i, i + len(v)):  # WILDIIIHUNT or CREEDIII
                i = text.compact.find(v, i + 1)
        if i >= 0 and (best is None or len(v) > best[2] - best[1]):
            best = (1.0, i, i + len(v))
    return best


def match_word(word: str, text: _Text) -> tuple[float, int, int] | None:
    """How well ``word`` is found in ``text`` (0-1) and where (compact start, end)."""
    from rapidfuzz import fuzz

    t = text.compact
    if not t:
        return None
    if len(word) <= 2 or _is_number(word):
        found = _exact(word, text)
    elif len(t) < len(word):  # the text is shorter than the word: compare them whole
        found = (fuzz.ratio(word, t) / 100, 0, len(t))
    else:
        al = fuzz.partial_ratio_alignment(word, t)
        found = None if al is None else (al.score / 100, al.dest_start, al.dest_end)
    if (found is None or found[0] * 100 < MIN_WORD) and 2 <= len(word) <= 5 and word.isalpha():
        span = text.initials_span(word)  # "gta": grand theft auto
        if span is not None:
            return (INITIALS_SCORE, *span)
    return found if found is not None and found[0] * 100 >= MIN_WORD else None


def score_text(words: Sequence[str], text: _Text) -> tuple[float, float]:
    """The score (0-100) of ``text`` for the query ``words`` (see the module doc), and its
    query coverage (0-1)."""
    if not text.compact or not words:
        return 0.0, 0.0
    covered = np.zeros(len(text.compact), bool)
    total = got = 0.0
    for word in words:
        weight = max(len(word), 3) if _is_number(word) else len(word)
        total += weight
        found = match_word(word, text)
        if found is None:
            continue
        got += weight * found[0] ** 2
        covered[found[1] : found[2]] = True
    coverage = float(covered.mean())
    w = TEXT_COVERAGE_WEIGHT
    return round(100 * got / total * ((1 - w) + w * coverage), 2), got / total


class BannerTextIndex:
    """Rows of a collection searchable by the text read on their images."""

    def __init__(self, texts: Sequence[str]):
        self.texts = [_Text(t) for t in texts]
        self._compact = [t.compact for t in self.texts]

    def __len__(self) -> int:
        return len(self.texts)

    def _candidates(self, words: list[str]) -> np.ndarray:
        """Rows that can score: a word found (C-speed scans), or initials for short words."""
        from rapidfuzz import fuzz, process

        rows: set[int] = set()
        for word in words:
            if len(word) <= 2 or _is_number(word):
                twins = {word, ROMAN.get(word, word), ARABIC.get(word, word)}
                rows.update(r for r, t in enumerate(self._compact) if any(v in t for v in twins))
            else:
                scores = process.cdist(
                    [word], self._compact, scorer=fuzz.partial_ratio, processor=None,
                    score_cutoff=MIN_WORD, dtype=np.uint8, workers=-1,
                )  # fmt: skip
                rows.update(np.flatnonzero(scores[0]).tolist())
            if 2 <= len(word) <= 5 and word.isalpha():
                rows.update(r for r, t in enumerate(self.texts) if word in t.initials)
        return np.fromiter(sorted(rows), np.int64, len(rows))

    def search(self, query: str, limit: int = 10, min_coverage: float = 0.0) -> list[TextMatch]:
        """The best ``limit`` rows for ``query``, best first (ties: the shorter text, then
        row order), whose query coverage is at least ``min_coverage`` (0-1)."""
        words = query_words(query)
        if not words or limit < 1:
            return []
        rows = self._candidates(words)
        scored = np.array([score_text(words, self.texts[r]) for r in rows.tolist()]).reshape(-1, 2)
        scores = scored[:, 0]
        keep = (scores > 0) & (scored[:, 1] >= min_coverage)
        rows, scores = rows[keep], scores[keep]
        lengths = np.array([len(self._compact[r]) for r in rows.tolist()], np.int64)
        order = np.lexsort((rows, lengths, -scores))[:limit]
        return [TextMatch(int(rows[i]), float(scores[i])) for i in order]
