"""The one name resolver: ``similar``/``search`` queries, ``/api/names``, the page.

Tiers, best first: the exact id, the exact name, names starting with the text,
names with a word starting with it, names holding every word of it as word
starts in any order ("breath zelda"), names containing it, then close (fuzzy)
names. Names are folded once (case, accents and punctuation dropped) and joined
into one string, one name a line. A prefix is a binary search over the sorted
names; a word start (" q") or a substring is a few C-speed ``str.find`` scans of
the joined string rather than a Python loop over every name. Fuzzy matching
(rapidfuzz's WRatio) only runs when the other tiers do not fill the requested
count, and respects numbers: "portl 2" can be Portal 2 but never Portal or
Assassin's Creed 2 for "witchr 2". Every tier is ranked on its own, so the first
answer does not depend on how many answers are asked for.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the lowest rapidfuzz score (0-100) a fuzzy suggestion needs
FUZZY_CUTOFF = 75.0
#: word/substring occurrences examined per scan: bounds the work of short queries
MAX_OCCURRENCES = 5_000
#: at most this many names sharing a prefix with the query are compared for typos
MAX_FUZZY_CANDIDATES = 5_000
#: fuzzy matches are ranked among at least this many candidates, whatever the limit
FUZZY_POOL = 20
_NUMBER = re.compile(r"\d+")
_MARKS = re.compile(r"[\u0300-\u036f]")
_SYMBOLS = re.compile(r"[\u2122\u00ae\u00a9\u2120]")  # ™ ® © ℠: not part of a name's words
_PUNCT = re.compile(r"[^\w\n ]+|_+")  # plain spaces are left alone: most names have many
_SPACES = re.compile(r"  +")
_EDGES = re.compile(r"^ | $", re.M)


def fold(text: str) -> str:
    """Case-folded, accent-free, punctuation as single spaces: ``Pokémon™ X`` -> ``pokemon x``."""
    return _fold_block(text.replace("\n", " "))


def fold_many(texts: Sequence[str]) -> list[str]:
    """:func:`fold` of each text, folded in one block (much faster for many)."""
    if not texts:
        return []
    return _fold_block("\n".join(t.replace("\n", " ") for t in texts)).split("\n")


def _fold_block(text: str) -> str:
    text = unicodedata.normalize("NFKD", _SYMBOLS.sub("", text)).casefold()
    text = _MARKS.sub("", text)
    return _EDGES.sub("", _SPACES.sub(" ", _PUNCT.sub(" ", text)))


@dataclass(frozen=True)
class Suggestion:
    row: int
    match: str  # "id", "name", "prefix", "word", "words", "substring" or "fuzzy"
    score: float  # 100 for exact kinds, the rapidfuzz score for fuzzy ones


class NameIndex:
    """Rows of a collection searchable by name (and by exact id)."""

    def __init__(self, ids: Sequence[str], names: Sequence[str]):
        if len(ids) != len(names):
            raise ValueError("ids and names differ in length")
        self.row_of_id = {item_id: row for row, item_id in enumerate(ids)}
        self.folded = folded = fold_many(names)
        # prefixes: a binary search over the sorted names
        order = sorted(range(len(folded)), key=folded.__getitem__)
        self._sorted = [folded[r] for r in order]
        self._sorted_rows = np.asarray(order, np.int64)
        self._rank = np.empty(len(order), np.int64)  # a row's place in name order
        self._rank[self._sorted_rows] = np.arange(len(order))
        # words and substrings: "\n" before every name, so " q" finds a word start
        self._joined = "\n" + "\n".join(folded) + "\n"
        lengths = np.fromiter((len(f) for f in folded), np.int64, len(folded))
        self._starts = (
            np.concatenate([[1], np.cumsum(lengths + 1)[:-1] + 1])
            if len(folded)
            else np.zeros(0, np.int64)
        )
        self._lengths = lengths
        self._row_of_name: dict[str, int] = {}
        for row, f in enumerate(folded):
            self._row_of_name.setdefault(f, row)

    def __len__(self) -> int:
        return len(self.folded)

    def _prefixed(self, prefix: str) -> np.ndarray:
        """Rows whose folded name starts with ``prefix``, in name order."""
        lo = bisect.bisect_left(self._sorted, prefix)
        hi = bisect.bisect_left(self._sorted, prefix + "\U0010ffff", lo)
        return self._sorted_rows[lo:hi]

    def _scan(self, needle: str, offset: int) -> np.ndarray:
        """Rows whose line contains ``needle`` (the first char of the match is at +offset);
        at most :data:`MAX_OCCURRENCES` occurrences are looked at."""
        found: list[int] = []
        joined = self._joined
        i = joined.find(needle)
        while i >= 0 and len(found) < MAX_OCCURRENCES:
            found.append(i + offset)
            i = joined.find(needle, i + 1)
        if not found:
            return np.zeros(0, np.int64)
        rows = np.searchsorted(self._starts, np.asarray(found, np.int64), side="right") - 1
        return np.unique(rows)

    def _shortest(self, rows: np.ndarray, limit: int) -> list[int]:
        """Up to ``limit`` of ``rows``: shortest names first, then alphabetical."""
        keys = self._lengths[rows] * max(1, len(self.folded)) + self._rank[rows]
        if len(rows) > limit:
            keep = np.argpartition(keys, limit - 1)[:limit]
            rows, keys = rows[keep], keys[keep]
        shortest: list[int] = rows[np.argsort(keys, kind="stable")].tolist()
        return shortest

    def search(self, query: str, limit: int = 10) -> list[Suggestion]:
        """Best matches for ``query``: the id, the exact name, prefixes, words, then fuzzy."""
        out: list[Suggestion] = []
        seen: set[int] = set()

        def add(rows: list[int], kind: str, score: float = 100.0) -> None:
            for r in rows:
                if len(out) >= limit:
                    return
                if r not in seen:
                    seen.add(r)
                    out.append(Suggestion(r, kind, score))

        text = query.strip()
        if text in self.row_of_id:
            add([self.row_of_id[text]], "id")
        q = fold(text)
        if not q or limit < 1:
            return out
        if q in self._row_of_name:
            add([self._row_of_name[q]], "name")
        add(self._shortest(self._prefixed(q), limit + len(seen)), "prefix")
        if len(out) < limit:
            add(self._shortest(self._scan(" " + q, 1), limit + len(seen)), "word")
        if len(out) < limit and " " in q:
            add(self._shortest(self._all_words(q), limit + len(seen)), "words")
        if len(out) < limit and len(q) >= 3:
            add(self._shortest(self._scan(q, 0), limit + len(seen)), "substring")
        if len(out) < limit and len(q) >= 3:
            for row, score in self._fuzzy(q, max(FUZZY_POOL, limit + len(seen))):
                add([row], "fuzzy", score)
        return out

    def _all_words(self, q: str) -> np.ndarray:
        """Rows holding every word of ``q`` as a word start, in any order."""
        rows: np.ndarray | None = None
        for word in sorted(set(q.split()), key=len, reverse=True):
            found = np.union1d(self._scan("\n" + word, 1), self._scan(" " + word, 1))
            rows = found if rows is None else np.intersect1d(rows, found)
            if not len(rows):
                break
        return np.zeros(0, np.int64) if rows is None else rows

    def _fuzzy(self, q: str, limit: int) -> list[tuple[int, float]]:
        """Typo-tolerant matches: of a name's first ``len(q)`` characters (among the names
        sharing a shorter prefix with ``q``), of the whole name, or word by word (each word
        of the text against the name's closest word: "witchr 3" finds "The Witcher 3"). A
        number in the text must be a number of the name."""
        from rapidfuzz import fuzz, process

        best: dict[int, float] = {}
        for cut in range(max(2, len(q) // 2), len(q)):  # the shortest shared prefix not too common
            rows = self._prefixed(q[:cut])
            if len(rows) <= MAX_FUZZY_CANDIDATES:
                heads = [self.folded[r][: len(q)] for r in rows.tolist()]
                for _, score, i in process.extract(
                    q, heads, scorer=fuzz.ratio, processor=None, limit=limit,
                    score_cutoff=FUZZY_CUTOFF,
                ):  # fmt: skip
                    best[int(rows[i])] = float(score)
                break
        for _, score, row in process.extract(
            q, self.folded, scorer=fuzz.ratio, processor=None, limit=limit,
            score_cutoff=FUZZY_CUTOFF,
        ):  # fmt: skip
            best[row] = max(best.get(row, 0.0), float(score))
        for row, score in self._word_fuzzy(q).items():
            best[row] = max(best.get(row, 0.0), score)
        numbers = set(_NUMBER.findall(q))
        if numbers:
            best = {r: v for r, v in best.items() if numbers <= self._numbers(r)}
        ranked = sorted(best.items(), key=lambda rs: (-rs[1], self._lengths[rs[0]], rs[0]))
        return [(row, round(score, 1)) for row, score in ranked[:limit]]

    def _word_fuzzy(self, q: str) -> dict[int, float]:
        """Rows whose words come close to every word of ``q`` (numbers aside): the mean of
        each word's best ratio, scored through the names' vocabulary, not name by name."""
        from rapidfuzz import fuzz, process

        words = [w for w in q.split() if not w.isdigit() and len(w) >= 3]
        if not words:
            return {}
        vocabulary, rows_of = self._words()
        total: dict[int, float] = {}
        for n, word in enumerate(words):
            scores: dict[int, float] = {}
            for _, score, v in process.extract(
                word, vocabulary, scorer=fuzz.ratio, limit=None, score_cutoff=FUZZY_CUTOFF
            ):
                for row in rows_of[v]:
                    scores[row] = max(scores.get(row, 0.0), float(score))
            total = scores if n == 0 else {r: total[r] + v for r, v in scores.items() if r in total}
        return {r: v / len(words) for r, v in total.items()}

    @functools.cache  # noqa: B019 - one index per collection, kept as long as it is
    def _words(self) -> tuple[list[str], list[list[int]]]:
        """The distinct words of all names, and the rows holding each."""
        rows_of: dict[str, list[int]] = {}
        for row, name in enumerate(self.folded):
            for word in set(name.split()):
                rows_of.setdefault(word, []).append(row)
        vocabulary = sorted(rows_of)
        return vocabulary, [rows_of[w] for w in vocabulary]

    def _numbers(self, row: int) -> set[str]:
        return set(_NUMBER.findall(self.folded[row]))
