"""Find banners by the words on them: a fuzzy, word-order tolerant match of a query
against each item's OCR text, robust to the run-together words OCR gives.

OCR reads "A Plague Tale" as ``APLAGUETALE`` and "Assassin's Creed II" as
``CREEDII``, so a text is compared without its spaces. Each query word (stop words
aside) is looked for in it: a word of three letters or more by rapidfuzz's best
partial alignment (typos tolerated), a shorter word or a number exactly, with its
Roman/Arabic twin ("2" finds ``CREEDII``; a Roman numeral only where a word ends), and a
short word that the text does not hold also as the initials of its words ("gta" in
"grand theft auto"), a digit as the letter OCR reads for a stylised one where it ends
a word ("rage 2" in ``RAGEZ``), and a run of query words as their initials when another
word is found ("modern warfare 3" in ``CALLDUTY MW3``); an abbreviation banners spell
out is looked for in words too ("goty" in ``GAMEOFTHE YEAR``). The score, 0-100, is

    query coverage x (1/2 + 1/2 x text coverage)

query coverage: the words' length-weighted alignment scores (squared: a half-found word
counts for little); text coverage: the share of the text's letters the words were
aligned to, so "Doom" ranks the banner reading DOOM above DOOM ETERNAL. Texts and queries
are folded with :func:`bannermatch.query.names.fold`, the name resolver's own folding.

The texts a query word aligns with are found with rapidfuzz's C-speed
``process.cdist`` (every core); from GRAMS_FROM texts on, only against the texts that
share enough letters with the word (:class:`bannermatch.query.grams.GramIndex`, no
match lost). Words are looked for rarest first, candidates scored in Python best upper
bound first, and the search stops when no text left can enter the answer (MAX_COMPARED
and MAX_SCORED bound the work at a million texts; ``last_exact`` says when they cut it).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bannermatch.query.names import fold, fold_many

log = logging.getLogger(__name__)

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
#: at most this many distinct texts are scored in Python for one query, best bound
#: first; the answer is exact unless a query needs more (common words at a million texts)
MAX_SCORED = 2_000
#: at most about this many texts are compared with one query word (those with the most
#: letters in common with it; docs/scaling.md)
MAX_COMPARED = 50_000
#: letters OCR reads in place of a stylised digit ("RAGEZ", "FARCRYA", "MASSB"), counted
#: only where they end a word of two letters or more, and less surely than the digit
LOOK_ALIKES = {"0": "od", "1": "il", "2": "z", "3": "b", "4": "a", "5": "s", "6": "gb"}
LOOK_ALIKES |= {"8": "b", "9": "g"}
LOOK_ALIKE_SCORE = 0.8
#: abbreviations players type for what banners spell out in words run together (OCR
#: reads "Game of the Year" as ``GAMEOFTHE YEAR``, where no initials are left to find): a
#: query holding one is searched spelled out too, and each text keeps its better score
SPELLED_OUT = {"goty": "game of the year"}


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
        self.ends = list(itertools.accumulate(map(len, words)))  # word ends, in compact

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


@functools.cache
def _fuzz() -> Any:
    """rapidfuzz's ``fuzz`` (imported on first use: ``--help`` does not need it)."""
    from rapidfuzz import fuzz

    return fuzz


def match_word(word: str, text: _Text) -> tuple[float, int, int] | None:
    """How well ``word`` is found in ``text`` (0-1) and where (compact start, end)."""
    fuzz = _fuzz()
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


def _run_initials(
    words: Sequence[str], text: _Text, runs: list[tuple[int, int, str]] | None = None
) -> dict[int, tuple[float, int, int]]:
    """The query words (by position) found as a run's initials starting a word of the text."""
    found: dict[int, tuple[float, int, int]] = {}
    for a, b, initials in _runs(words) if runs is None else runs:
        i = text.compact.find(initials)
        while i >= 0 and not text.word_start(i):
            i = text.compact.find(initials, i + 1)
        if i >= 0:
            for k in range(a, b):
                found.setdefault(k, (INITIALS_SCORE, i + k - a, i + k - a + 1))
    return found


def _weight(word: str) -> int:
    return max(len(word), 3) if _is_number(word) else len(word)


def score_text(
    words: Sequence[str], text: _Text, runs: list[tuple[int, int, str]] | None = None
) -> tuple[float, float]:
    """The score (0-100) of ``text`` for the query ``words`` (see the module doc), and its
    query coverage (0-1). ``runs``: :func:`_runs` of ``words``, when known."""
    if not text.compact or not words:
        return 0.0, 0.0
    found: list[tuple[float, int, int] | None] = [match_word(w, text) for w in words]
    by_runs = _run_initials(words, text, runs)
    if any(f is not None and j not in by_runs for j, f in enumerate(found)):  # runs refine
        for j, run in by_runs.items():  # a text found by another word: MW3 beside CALLDUTY
            before = found[j]
            if before is None or before[0] < INITIALS_SCORE:
                found[j] = run
    covered = bytearray(len(text.compact))
    weights = [_weight(w) for w in words]
    got = 0.0
    for weight, f in zip(weights, found, strict=True):
        if f is not None:
            got += weight * f[0] ** 2
            covered[f[1] : f[2]] = b"\x01" * (f[2] - f[1])
    total = sum(weights)
    w = TEXT_COVERAGE_WEIGHT
    coverage = sum(covered) / len(covered)
    return round(100 * got / total * ((1 - w) + w * coverage), 2), got / total


class BannerTextIndex:
    """Rows of a collection searchable by the text read on their images.

    ``grams``: compare a query word only with the texts that share enough letters with
    it (:class:`bannermatch.query.grams.GramIndex`) instead of with every text; None:
    from :data:`GRAMS_FROM` texts on. Both give the same answers."""

    def __init__(self, texts: Sequence[str], *, grams: bool | None = None):
        from bannermatch.query.grams import GramIndex, Joined

        self._spaced = fold_many(texts)
        self._compact = [t.replace(" ", "") for t in self._spaced]
        self._lengths = np.fromiter(map(len, self._compact), np.int64, len(self._compact))
        self._compact_array = np.empty(len(self._compact), object)
        self._compact_array[:] = self._compact
        use_grams = len(texts) >= GRAMS_FROM if grams is None else grams
        self.compact = GramIndex(self._compact) if use_grams else Joined(self._compact)
        #: whether the last search's answer is the one scoring every candidate gives
        #: (False when MAX_COMPARED or MAX_SCORED cut it short and it may differ)
        self.last_exact = True
        self.initials = Joined(["".join(w[0] for w in t.split()) for t in self._spaced])

    def __len__(self) -> int:
        return len(self._spaced)

    @property
    def uses_grams(self) -> bool:
        from bannermatch.query.grams import GramIndex

        return isinstance(self.compact, GramIndex)

    def text(self, row: int) -> _Text:
        """Row ``row``'s text, ready to score (made on demand: a million kept would cost
        hundreds of MB for a few microseconds a text saved)."""
        return _Text(self._spaced[row])

    def _fuzzy(self, word: str, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows (of ``rows``, or all) where ``word`` aligns at MIN_WORD or better, and
        the alignment (0-1): rapidfuzz's C-speed ``process.cdist``, on every core."""
        from rapidfuzz import fuzz, process

        if rows is None:
            rows = np.arange(len(self), dtype=np.int64)
        if not len(rows):
            return rows, np.empty(0, np.float32)
        texts = self._compact_array[rows].tolist()  # a gather in C, not a Python loop
        scores = process.cdist(
            [word], texts, scorer=fuzz.partial_ratio, processor=None,
            score_cutoff=MIN_WORD, dtype=np.uint8, workers=-1,
        )[0]  # fmt: skip
        short = np.flatnonzero(self._lengths[rows] < len(word))
        if len(short):  # a text shorter than the word is compared whole (match_word)
            scores[short] = process.cdist(
                [word], [texts[i] for i in short.tolist()], scorer=fuzz.ratio,
                processor=None, score_cutoff=MIN_WORD, dtype=np.uint8,
            )[0]  # fmt: skip
        keep = np.flatnonzero(scores)
        return rows[keep], scores[keep].astype(np.float32) / 100

    def _prefilter(self, word: str) -> tuple[np.ndarray | None, float]:
        """With the letter index, the rows sharing enough letters with ``word`` to align
        with it, and the best alignment (0-1) the rows left out can have.

        Aligning at MIN_WORD (m = MIN_WORD / 100) takes a window of the text with
        2 x common / (len(word) + window) >= m, common <= window: common >= len(word) x
        m / (2 - m) letters in common at least. When more than MAX_COMPARED rows have
        that many, only those with the most letters in common are compared (whole levels
        of the count), and the rest can align at most at 2 (t - 1) / (len(word) + t - 1),
        t the level cut."""
        from bannermatch.query.grams import GramIndex

        if not isinstance(self.compact, GramIndex):
            return None, 0.0
        m = MIN_WORD / 100
        need = max(1, math.ceil(len(word) * m / (2 - m) - 1e-9))
        common = self.compact.overlap(word)
        at_least = np.cumsum(np.bincount(common, minlength=len(word) + 1)[::-1])[::-1]
        level = need
        while level < len(word) and at_least[level] > MAX_COMPARED:
            level += 1
        left = 0.0 if level == need else 2 * (level - 1) / (len(word) + level - 1)
        return np.flatnonzero(common >= level), left

    def _may_hold(self, word: str) -> np.ndarray:
        """Whether each row may hold the short word ``word``, a twin, or spell it with its
        initials (a superset: with the letter index, the rows with each of its letters
        often enough)."""
        from bannermatch.query.grams import GramIndex

        holds = np.zeros(len(self), bool)
        for v in _twins(word):
            if isinstance(self.compact, GramIndex):
                holds |= self.compact.overlap(v) >= len(v)
            else:
                holds[self.compact.containing(v)] = True
        if _initials_word(word):  # "ex" may be the initials of two words of the text
            holds[self.initials.containing(word)] = True
        return holds

    def _seed(self, word: str, prefilter: np.ndarray | None) -> list[_Found]:
        """The rows ``word`` can be found in, and how well (0-1) at most."""
        if _is_short(word):
            rows = np.unique(np.concatenate([self.compact.containing(v) for v in _twins(word)]))
            found = [_Found(rows, np.ones(len(rows)), False)]  # its look-alike: the ceiling
        else:
            found = [_Found(*self._fuzzy(word, prefilter), False)]
        if _initials_word(word):
            more = self.initials.containing(word)
            found.append(_Found(more, np.full(len(more), INITIALS_SCORE), True))
        return found

    def search(self, query: str, limit: int = 10, min_coverage: float = 0.0) -> list[TextMatch]:
        """The best ``limit`` rows for ``query``, best first (ties: the shorter text, then
        row order), whose query coverage is at least ``min_coverage`` (0-1); a query
        holding an abbreviation of :data:`SPELLED_OUT` is searched spelled out too."""
        found = self._search(query, limit, min_coverage)
        words = fold(query).split()
        if not SPELLED_OUT.keys() & set(words):
            return found
        exact = self.last_exact
        best = {m.row: m for m in found}
        for m in self._search(" ".join(SPELLED_OUT.get(w, w) for w in words), limit, min_coverage):
            if m.row not in best or m.score > best[m.row].score:
                best[m.row] = m
        self.last_exact = exact and self.last_exact
        return sorted(best.values(), key=lambda m: self.rank_key(m.score, m.row))[:limit]

    def rank_key(self, score: float, row: int) -> tuple[float, int, int]:
        """How hits are ordered: best score first, then the shorter text, then row order."""
        return -score, int(self._lengths[row]), row

    def _search(self, query: str, limit: int, min_coverage: float) -> list[TextMatch]:
        """:meth:`search` for ``query`` as it is.

        A text is a candidate when one of the query's long words (3+ letters, not a
        number) aligns with it, or one of its short words spells the text's initials;
        when the query has no long word, when it holds one of its short words. The words
        are looked for rarest first (the fewest texts left by the letter index), and the
        candidates scored in the order of an upper bound of their score; the search stops
        when no text left, found or not, can reach the ``limit``-th score: the answer is
        the one scoring every candidate gives (unless MAX_SCORED is reached)."""
        words = query_words(query)
        if not words or limit < 1:
            return []
        seeds = [j for j, w in enumerate(words) if not _is_short(w)] or list(range(len(words)))
        by_word = {w: self._prefilter(w) for w in {words[j] for j in seeds}}  # once a word
        filters = {j: by_word[words[j]] for j in seeds}
        seeds.sort(key=lambda j: len(self) if (f := filters[j][0]) is None else len(f))
        seeded: dict[str, list[_Found]] = {}
        pool = _Pool(self, words, limit, min_coverage)
        for j in set(range(len(words))) - set(seeds):  # short words: where they can be
            pool.holds[j] = self._may_hold(words[j])
        for step, j in enumerate(seeds):
            pool.looked(j, filters[j][1])
            if words[j] not in seeded:
                seeded[words[j]] = self._seed(words[j], filters[j][0])
            for found in seeded[words[j]]:
                pool.add(j, found)
            pool.score(query)
            if pool.settled(seeds[step + 1 :]):
                break
        else:  # left-out texts could have entered the best: the answer may miss them
            log.debug("%r: approximate (texts left out by the letter index)", query)
            self.last_exact = False
            return pool.result()
        self.last_exact = not pool.capped
        return pool.result()


@dataclass
class _Found:
    rows: np.ndarray
    scores: np.ndarray  # 0-1, at most what the word scores there
    initials: bool  # found as the initials of the text's words (spanning whole words)


class _Pool:
    """The candidates of one search, the bounds of their scores, and the best scored."""

    def __init__(self, index: BannerTextIndex, words: list[str], limit: int, min_cov: float):
        self.index, self.words, self.limit, self.min_cov = index, words, limit, min_cov
        # what a word can score in a text it was not found in: 1 before it is looked for
        # (short words never are, when the query has long ones)
        self.ceiling = np.ones(len(words))
        self.weights = np.array([_weight(w) for w in words], np.float64)
        self.spans = np.array([max(map(len, _twins(w))) for w in words], np.float64)
        self.runs = _runs(words)
        self.rows = np.empty(0, np.int64)  # the candidates, in the order found
        self.slot = np.full(len(index), -1, np.int64)  # row -> its place in self.rows
        self.holds: dict[int, np.ndarray] = {}  # short word -> the rows that may hold it
        self.table = np.empty((0, len(words)))  # each row's words' best possible scores
        self.whole = np.empty(0, bool)  # found as initials: the words span whole words
        self.scored = np.empty(0, bool)
        self.seen: dict[str, tuple[float, float]] = {}  # text -> score, coverage
        self.left = 0.0  # the best alignment of a word in texts the letter index left out
        self.capped = False  # MAX_SCORED texts were scored
        self.best: list[tuple[float, int, int]] = []  # (-score, length, row)

    def looked(self, j: int, left: float) -> None:
        """Word ``j`` is looked for: where it is not found, it scores at most as the
        initials of a run of words, a digit's look-alike, or ``left`` (texts the letter
        index left out)."""
        in_run = any(a <= j < b for a, b, _ in self.runs)
        alike = _is_short(self.words[j]) and self.words[j] in LOOK_ALIKES
        self.ceiling[j] = max(INITIALS_SCORE * in_run, LOOK_ALIKE_SCORE * alike, left)
        self.left = max(self.left, left)
        self.table[:, j] = self.ceiling[j]

    def add(self, j: int, found: _Found) -> None:
        new = found.rows[self.slot[found.rows] < 0]
        if len(new):
            self.slot[new] = np.arange(len(self.rows), len(self.rows) + len(new))
            self.rows = np.concatenate([self.rows, new])
            fresh = np.tile(self.ceiling, (len(new), 1))
            for k, holds in self.holds.items():  # a short word it cannot hold: a look-alike
                fresh[~holds[new], k] = LOOK_ALIKE_SCORE * (self.words[k] in LOOK_ALIKES)
            self.table = np.concatenate([self.table, fresh])
            self.whole = np.concatenate([self.whole, np.zeros(len(new), bool)])
            self.scored = np.concatenate([self.scored, np.zeros(len(new), bool)])
        at = self.slot[found.rows]
        self.table[at, j] = np.maximum(self.table[at, j], found.scores)
        self.whole[at] |= found.initials

    def bound(self, best: np.ndarray, lengths: np.ndarray, whole: np.ndarray) -> np.ndarray:
        """Upper bounds of the scores of texts whose words score at most ``best`` (-1:
        under the query coverage asked for)."""
        coverage = (best**2 @ self.weights) / self.weights.sum()
        span = (best > 0) @ self.spans  # a word covers at most its own length of the text
        covered = np.where(whole, 1.0, np.minimum(1.0, span / np.maximum(lengths, 1)))
        w = TEXT_COVERAGE_WEIGHT
        score = 100 * coverage * (1 - w + w * covered)
        return np.where(coverage >= max(self.min_cov, 1e-9), score, -1.0)

    def kth(self) -> float:
        return -self.best[self.limit - 1][0] if len(self.best) >= self.limit else -1.0

    def score(self, query: str) -> None:
        """Score the candidates not scored yet, best bound first, while they can still
        enter the best ``limit``."""
        todo = np.flatnonzero(~self.scored)
        rows = self.rows[todo]
        bound = self.bound(self.table[todo], self.index._lengths[rows], self.whole[todo])
        for i in np.lexsort((rows, -bound)).tolist():
            if bound[i] < 0 or bound[i] + 0.01 < self.kth():
                break
            row = int(rows[i])
            key = self.index._compact[row]
            if key not in self.seen:
                if len(self.seen) >= MAX_SCORED:
                    log.debug("%r: stopped after scoring %d texts", query, MAX_SCORED)
                    self.capped = True
                    break
                self.seen[key] = score_text(self.words, self.index.text(row), self.runs)
            self.scored[todo[i]] = True
            score, cov = self.seen[key]
            if score > 0 and cov >= self.min_cov:
                bisect.insort(self.best, self.index.rank_key(score, row))

    def settled(self, rest: list[int]) -> bool:
        """Whether no text found only by the words still to look for (``rest``) can
        enter the best ``limit`` (it scores at most as if they all matched)."""
        if not rest and not self.left:
            return True
        bound = self.bound(self.ceiling[None, :], np.ones(1, np.int64), np.ones(1, bool))[0]
        return bool(bound < 0 or bound + 0.01 < self.kth())

    def result(self) -> list[TextMatch]:
        return [TextMatch(row, -neg) for neg, _, row in self.best[: self.limit]]


def _twins(word: str) -> list[str]:
    """A short word, and a number's Roman/Arabic twin."""
    return list(dict.fromkeys([word, ROMAN.get(word, word), ARABIC.get(word, word)]))
