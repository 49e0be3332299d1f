"""The name index behind autocomplete: prefix and word matches first, then fuzzy ones.

Names are folded once (case, accents and punctuation dropped) and joined into one
string, one name a line. A prefix is a binary search over the sorted names; a
word start (" q") or a substring is a few C-speed ``str.find`` scans of the
joined string rather than a Python loop over every name. Fuzzy matching
(rapidfuzz) only runs when exact matches do not fill the requested count.
"""

from __future__ import annotations

import bisect
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
_MARKS = re.compile(r"[\u0300-\u036f]")
_SYMBOLS = re.compile(r"[\u2122\u00ae\u00a9\u2120]")  # ™ ® © ℠: not part of a name's words
_PUNCT = re.compile(r"[^\w\n ]+|_+")  # plain spaces are left alone: most names have many
_SPACES = re.compile(r"  +")
_EDGES = re.compile(r"^ | $", re.M)


def fold(text: str) -> str:
    """Case-folded, accent-free, punctuation as single spaces: ``Pokémon™ X`` -> ``pokemon x``."""
    return _fold_block(text.replace("\n", " "))


def _fold_block(text: str) -> str:
    text = unicodedata.normalize("NFKD", _SYMBOLS.sub("", text)).casefold()
    text = _MARKS.sub("", text)
    return _EDGES.sub("", _SPACES.sub(" ", _PUNCT.sub(" ", text)))


@dataclass(frozen=True)
class Suggestion:
    row: int
    match: str  # "id", "name", "prefix", "word", "substring" or "fuzzy"
    score: float  # 100 for exact kinds, the rapidfuzz score for fuzzy ones


class NameIndex:
    """Rows of a collection searchable by name (and by exact id)."""

    def __init__(self, ids: Sequence[str], names: Sequence[str]):
        if len(ids) != len(names):
            raise ValueError("ids and names differ in length")
        self.row_of_id = {item_id: row for row, item_id in enumerate(ids)}
        folded = _fold_block("\n".join(n.replace("\n", " ") for n in names)).split("\n")
        if not names:
            folded = []
        self.folded = folded
        # prefixes: a binary search over the sorted names
        order = sorted(range(len(folded)), key=folded.__getitem__)
        self._sorted = [folded[r] for r in order]
        self._sorted_rows = np.asarray(order, np.int64)
        self._rank = np.empty(len(order), np.int64)  # a row's place in name order
        self._rank[self._sorted_rows] = np.arange(len(order))
        # words and substrings: "\n" before every name, so " q" finds a word start
        self._joined = "\n" + "\n".join(folded) + "\n"
        lengths = np.fromiter((len(f) for f in folded), np.int64, len(folded))
        self._starts = np.concatenate([[1], np.cumsum(lengths + 1)[:-1] + 1]) if len(folded) else []
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
        return rows[np.argsort(keys, kind="stable")].tolist()

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
        if len(out) < limit and len(q) >= 3:
            add(self._shortest(self._scan(q, 0), limit + len(seen)), "substring")
        if len(out) < limit and len(q) >= 3:
            for row, score in self._fuzzy(q, limit + len(seen)):
                add([row], "fuzzy", score)
        return out

    def _fuzzy(self, q: str, limit: int) -> list[tuple[int, float]]:
        """Typo-tolerant matches: of a name's first ``len(q)`` characters (among the names
        sharing a shorter prefix with ``q``), or of the whole name."""
        from rapidfuzz import fuzz, process

        best: dict[int, float] = {}
        for cut in range(max(2, len(q) // 2), len(q)):  # the shortest shared prefix not too common
            rows = self._prefixed(q[:cut])
            if len(rows) <= MAX_FUZZY_CANDIDATES:
                heads = [self.folded[r][: len(q)] for r in rows.tolist()]
                for _, score, i in process.extract(
                    q,
                    heads,
                    scorer=fuzz.ratio,
                    processor=None,
                    limit=limit,
                    score_cutoff=FUZZY_CUTOFF,
                ):
                    best[int(rows[i])] = float(score)
                break
        for _, score, row in process.extract(
            q,
            self.folded,
            scorer=fuzz.ratio,
            processor=None,
            limit=limit,
            score_cutoff=FUZZY_CUTOFF,
        ):
            best[row] = max(best.get(row, 0.0), float(score))
        ranked = sorted(best.items(), key=lambda rs: (-rs[1], self._lengths[rs[0]], rs[0]))
        return [(row, round(score, 1)) for row, score in ranked[:limit]]
