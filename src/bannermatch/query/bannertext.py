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
are folded with :func:`bannermatch.query.names.fold`, the name resolver's own folding.

For large collections the texts a query can match are found first with rapidfuzz's
C-speed ``process.cdist`` (each query word against every text, on every core); only
those are scored in Python.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bannermatch.query.names import fold, fold_many

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
#: from this many texts on, a query word is compared only with the texts that share
#: enough letters with it to match (an index of letter counts; docs/scaling.md)
GRAMS_FROM = 20_000
#: letters OCR reads in place of a stylised digit ("RAGEZ", "FARCRYA", "MASSB"), counted
#: only where they end a word of two letters or more, and less surely than the digit
LOOK_ALIKES = {"0": "od", "1": "il", "2": "z", "3": "b", "4": "a", "5": "s", "6": "gb"}
LOOK_ALIKES |= {"8": "b", "9": "g"}
LOOK_ALIKE_SCORE = 0.8


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


def _is_short(word: str) -> bool:
    """A word matched exactly, not by alignment: two letters or fewer, or a number."""
    return len(word) <= 2 or _is_number(word)


def _initials_word(word: str) -> bool:
    """A word that may stand for the initials of the text's words ("gta")."""
    return 2 <= len(word) <= 5 and word.isalpha()


class _Text:
    """One item's folded text, its letters run together, and its words' initials."""

    __slots__ = ("compact", "ends", "initials", "spaced")

    def __init__(self, spaced: str):
        self.spaced = spaced  # folded (:func:`fold`)
        self.compact = spaced.replace(" ", "")
        words = spaced.split()
        self.initials = "".join(w[0] for w in words)
        self.ends = [int(n) for n in np.cumsum([len(w) for w in words])]  # in compact

    def roman_at(self, start: int, end: int) -> bool:
        """Whether compact[start:end] can be a Roman numeral: it ends a word and follows
        no other numeral letter."""
        return end in self.ends and (start == 0 or self.compact[start - 1] not in "ivx")

    def word_start(self, i: int) -> bool:
        return i == 0 or i in self.ends

    def initials_span(self, word: str) -> tuple[int, int] | None:
        """Where, in ``compact``, the words whose initials spell ``word`` are."""
        first = self.initials.find(word)
        if first < 0:
            return None
        return (self.ends[first - 1] if first else 0), self.ends[first + len(word) - 1]


def _exact(word: str, text: _Text) -> tuple[float, int, int] | None:
    """A short word or number, or its Roman/Arabic twin, found as it is; else a digit's
    look-alike letter ending a word (``RAGEZ`` for "rage 2")."""
    best = None
    for v in dict.fromkeys([word, ROMAN.get(word, word), ARABIC.get(word, word)]):
        i = text.compact.find(v)
        if v.isalpha() and v in ARABIC:  # a whole numeral ending a word: CREEDII, not
            while i >= 0 and not text.roman_at(i, i + len(v)):  # WILDIIIHUNT or CREEDIII
                i = text.compact.find(v, i + 1)
        if i >= 0 and (best is None or len(v) > best[2] - best[1]):
            best = (1.0, i, i + len(v))
    return best or _look_alike(word, text)


def _look_alike(word: str, text: _Text) -> tuple[float, int, int] | None:
    for letter in LOOK_ALIKES.get(word, ""):
        i = text.compact.find(letter)
        while i >= 0 and (text.word_start(i) or i + 1 not in text.ends):
            i = text.compact.find(letter, i + 1)
        if i >= 0:
            return LOOK_ALIKE_SCORE, i, i + 1
    return None


def match_word(word: str, text: _Text) -> tuple[float, int, int] | None:
    """How well ``word`` is found in ``text`` (0-1) and where (compact start, end)."""
    from rapidfuzz import fuzz

    t = text.compact
    if not t:
        return None
    if _is_short(word):
        found = _exact(word, text)
    elif len(t) < len(word):  # the text is shorter than the word: compare them whole
        found = (fuzz.ratio(word, t) / 100, 0, len(t))
    else:
        al = fuzz.partial_ratio_alignment(word, t)
        found = None if al is None else (al.score / 100, al.dest_start, al.dest_end)
    if (found is None or found[0] * 100 < MIN_WORD) and _initials_word(word):
        span = text.initials_span(word)  # "gta": grand theft auto
        if span is not None:
            return (INITIALS_SCORE, *span)
    return found if found is not None and found[0] * 100 >= MIN_WORD else None


def _runs(words: Sequence[str]) -> list[tuple[int, int, str]]:
    """Runs of 2-3 query words of 3+ letters (start, stop, their initials), longest
    first: a banner may spell a run as its initials (``MW3``, "modern warfare 3")."""
    out = []
    for n in (3, 2):
        for a in range(len(words) - n + 1):
            run = words[a : a + n]
            if all(w.isalpha() and len(w) >= 3 for w in run):
                out.append((a, a + n, "".join(w[0] for w in run)))
    return out


def _run_initials(words: Sequence[str], text: _Text) -> dict[int, tuple[float, int, int]]:
    """The query words (by position) found as a run's initials starting a word of the text."""
    found: dict[int, tuple[float, int, int]] = {}
    for a, b, initials in _runs(words):
        i = text.compact.find(initials)
        while i >= 0 and not text.word_start(i):
            i = text.compact.find(initials, i + 1)
        if i >= 0:
            for k in range(a, b):
                found.setdefault(k, (INITIALS_SCORE, i + k - a, i + k - a + 1))
    return found


def _weight(word: str) -> int:
    return max(len(word), 3) if _is_number(word) else len(word)


def score_text(words: Sequence[str], text: _Text) -> tuple[float, float]:
    """The score (0-100) of ``text`` for the query ``words`` (see the module doc), and its
    query coverage (0-1)."""
    if not text.compact or not words:
        return 0.0, 0.0
    found: list[tuple[float, int, int] | None] = [match_word(w, text) for w in words]
    runs = _run_initials(words, text)
    if any(f is not None and j not in runs for j, f in enumerate(found)):  # runs refine
        for j, run in runs.items():  # a text found by another word: MW3 beside CALLDUTY
            before = found[j]
            if before is None or before[0] < INITIALS_SCORE:
                found[j] = run
    covered = np.zeros(len(text.compact), bool)
    weights = [_weight(w) for w in words]
    got = 0.0
    for weight, f in zip(weights, found, strict=True):
        if f is not None:
            got += weight * f[0] ** 2
            covered[f[1] : f[2]] = True
    total = sum(weights)
    w = TEXT_COVERAGE_WEIGHT
    return round(100 * got / total * ((1 - w) + w * float(covered.mean())), 2), got / total


class BannerTextIndex:
    """Rows of a collection searchable by the text read on their images.

    ``grams``: find the texts a query word can match through a bigram index
    (:class:`bannermatch.query.grams.GramIndex`) instead of comparing the word with every
    text; None: from :data:`GRAMS_FROM` texts on."""

    def __init__(self, texts: Sequence[str], *, grams: bool | None = None):
        from bannermatch.query.grams import GramIndex, Joined

        self._spaced = fold_many(texts)
        self._compact = [t.replace(" ", "") for t in self._spaced]
        self._texts: dict[int, _Text] = {}
        use_grams = len(texts) >= GRAMS_FROM if grams is None else grams
        self.compact = GramIndex(self._compact) if use_grams else Joined(self._compact)
        self.initials = Joined(["".join(w[0] for w in t.split()) for t in self._spaced])

    def __len__(self) -> int:
        return len(self._spaced)

    @property
    def uses_grams(self) -> bool:
        from bannermatch.query.grams import GramIndex

        return isinstance(self.compact, GramIndex)

    def text(self, row: int) -> _Text:
        found = self._texts.get(row)
        if found is None:
            found = self._texts[row] = _Text(self._spaced[row])
        return found

    def _fuzzy(self, word: str, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows (of ``rows``, or all) where ``word`` aligns at MIN_WORD or better, and
        the alignment (0-1): rapidfuzz's C-speed ``process.cdist``, on every core."""
        from rapidfuzz import fuzz, process

        if rows is None:
            rows = np.arange(len(self), dtype=np.int64)
        if not len(rows):
            return rows, np.empty(0, np.float32)
        texts = [self._compact[r] for r in rows.tolist()]
        scores = process.cdist(
            [word], texts, scorer=fuzz.partial_ratio, processor=None,
            score_cutoff=MIN_WORD, dtype=np.uint8, workers=-1,
        )[0]  # fmt: skip
        short = np.flatnonzero(np.fromiter(map(len, texts), np.int64, len(texts)) < len(word))
        if len(short):  # a text shorter than the word is compared whole (match_word)
            scores[short] = process.cdist(
                [word], [texts[i] for i in short.tolist()], scorer=fuzz.ratio,
                processor=None, score_cutoff=MIN_WORD, dtype=np.uint8,
            )[0]  # fmt: skip
        keep = np.flatnonzero(scores)
        return rows[keep], scores[keep].astype(np.float32) / 100

    def _prefilter(self, word: str) -> np.ndarray | None:
        """With the letter index, the rows sharing enough letters with ``word`` to align
        with it at MIN_WORD: 2 x common / (len(word) + window) >= MIN_WORD / 100, with
        common <= window, needs common >= len(word) x m / (2 - m), m = MIN_WORD / 100."""
        from bannermatch.query.grams import GramIndex

        if not isinstance(self.compact, GramIndex):
            return None
        m = MIN_WORD / 100
        need = max(1, math.ceil(len(word) * m / (2 - m) - 1e-9))
        return np.flatnonzero(self.compact.overlap(word) >= need)

    def _bounds(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The candidate rows, and for each an upper bound of its query coverage (0-1).

        A text is a candidate when one of the query's long words (3+ letters, not a
        number) aligns with it, or one of its short words spells the text's initials;
        when the query has no long word, when it holds one of its short words."""
        weights = np.array([_weight(w) for w in words], np.float64)
        found: dict[int, np.ndarray] = {}  # row -> each word's best possible score
        seeds = [j for j, w in enumerate(words) if not _is_short(w)] or range(len(words))
        for j in seeds:
            w = words[j]
            if _is_short(w):
                rows = np.unique(np.concatenate([self.compact.containing(v) for v in _twins(w)]))
                scores = np.ones(len(rows), np.float32)
            else:
                rows, scores = self._fuzzy(w, self._prefilter(w))
            if _initials_word(w):
                more = self.initials.containing(w)
                rows = np.concatenate([rows, more])
                scores = np.concatenate([scores, np.full(len(more), INITIALS_SCORE, np.float32)])
            for r, sc in zip(rows.tolist(), scores.tolist(), strict=True):
                best = found.setdefault(r, self._ceiling(words))
                best[j] = max(best[j], sc)
        rows = np.fromiter(found, np.int64, len(found))
        if not len(rows):
            return rows, np.empty(0)
        ceil = np.stack([found[r] for r in rows.tolist()])
        return rows, (ceil**2 @ weights) / weights.sum()

    @staticmethod
    def _ceiling(words: list[str]) -> np.ndarray:
        """What each word can score in a text before it is looked at: a short word or
        number up to 1, a long word up to a run's initials (0 when in no run)."""
        out = np.array([1.0 if _is_short(w) else 0.0 for w in words])
        for a, b, _ in _runs(words):
            out[a:b] = np.maximum(out[a:b], INITIALS_SCORE)
        return out

    def search(self, query: str, limit: int = 10, min_coverage: float = 0.0) -> list[TextMatch]:
        """The best ``limit`` rows for ``query``, best first (ties: the shorter text, then
        row order), whose query coverage is at least ``min_coverage`` (0-1).

        Candidates are scored in the order of their upper bound, and scoring stops once
        no candidate left can reach the ``limit``-th score found: the answer is the one
        scoring every candidate gives."""
        words = query_words(query)
        if not words or limit < 1:
            return []
        rows, bound = self._bounds(words)
        keep = bound >= max(min_coverage, 1e-9)
        rows, bound = rows[keep], bound[keep]
        order = np.lexsort((rows, -bound))
        best: list[tuple[float, int, int]] = []  # (-score, length, row)
        for i in order.tolist():
            if len(best) >= limit and 100 * bound[i] + 0.01 < -best[limit - 1][0]:
                break
            score, coverage = score_text(words, self.text(int(rows[i])))
            if score > 0 and coverage >= min_coverage:
                row = int(rows[i])
                bisect.insort(best, (-score, len(self._compact[row]), row))
        return [TextMatch(row, -neg) for neg, _, row in best[:limit]]


def _twins(word: str) -> list[str]:
    """A short word, and a number's Roman/Arabic twin."""
    return list(dict.fromkeys([word, ROMAN.get(word, word), ARABIC.get(word, word)]))
