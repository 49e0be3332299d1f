"""The name index behind autocomplete: prefix and word matches first, then fuzzy ones.

Names are folded once (case, accents and punctuation dropped) and joined into one
string, one name a line, so a prefix or word-start lookup is a few C-speed
``str.find`` scans rather than a Python loop over every name. Fuzzy matching
(rapidfuzz) only runs when exact matches do not fill the requested count.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the lowest rapidfuzz score (0-100) a fuzzy suggestion needs
FUZZY_CUTOFF = 75.0
#: occurrences examined per scan: bounds the work of very short queries
MAX_OCCURRENCES = 50_000
_MARKS = re.compile(r"[\u0300-\u036f]")
_SYMBOLS = re.compile(r"[\u2122\u00ae\u00a9\u2120]")  # ™ ® © ℠: not part of a name's words
_PUNCT = re.compile(r"[^\w\n]+|_")
_SPACES = re.compile(r" +")
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
        # "\n" before every name: "\nq" finds prefixes, " q" word starts
        self._joined = "\n" + "\n".join(folded) + "\n"
        lengths = np.fromiter((len(f) for f in folded), np.int64, len(folded))
        self._starts = np.concatenate([[1], np.cumsum(lengths + 1)[:-1] + 1]) if len(folded) else []
        self._lengths = lengths
        self._row_of_name: dict[str, int] = {}
        for row, f in enumerate(folded):
            self._row_of_name.setdefault(f, row)

    def __len__(self) -> int:
        return len(self.folded)

    def _rows_at(self, positions: list[int]) -> np.ndarray:
        pos = np.asarray(positions, np.int64)
        return np.searchsorted(self._starts, pos, side="right") - 1

    def _scan(self, needle: str, offset: int) -> np.ndarray:
        """Rows whose line contains ``needle`` (the first char of the match is at +offset)."""
        found: list[int] = []
        joined = self._joined
        i = joined.find(needle)
        while i >= 0 and len(found) < MAX_OCCURRENCES:
            found.append(i + offset)
            i = joined.find(needle, i + 1)
        return np.unique(self._rows_at(found)) if found else np.zeros(0, np.int64)

    def _shortest(self, rows: np.ndarray, limit: int) -> list[int]:
        """Up to ``limit`` of ``rows``, shortest names first, then alphabetical."""
        if len(rows) > limit:
            keep = np.argpartition(self._lengths[rows], limit - 1)[:limit]
            rows = rows[keep]
        return sorted(rows.tolist(), key=lambda r: (self._lengths[r], self.folded[r], r))

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
        for needle, kind in (("\n" + q, "prefix"), (" " + q, "word")):
            if len(out) < limit:
                add(self._shortest(self._scan(needle, 1), limit + len(seen)), kind)
        if len(out) < limit and len(q) >= 3:
            add(self._shortest(self._scan(q, 0), limit + len(seen)), "substring")
        if len(out) < limit and len(q) >= 3:
            for row, score in self._fuzzy(q, limit + len(seen)):
                add([row], "fuzzy", score)
        return out

    def _fuzzy(self, q: str, limit: int) -> list[tuple[int, float]]:
        """Typo-tolerant matches of the whole name or of its first ``len(q)`` characters."""
        from rapidfuzz import fuzz, process

        best: dict[int, float] = {}
        heads = [f[: len(q)] for f in self.folded]
        for choices in (heads, self.folded):
            for _, score, row in process.extract(
                q,
                choices,
                scorer=fuzz.ratio,
                processor=None,
                limit=limit,
                score_cutoff=FUZZY_CUTOFF,
            ):
                best[row] = max(best.get(row, 0.0), float(score))
        ranked = sorted(best.items(), key=lambda rs: (-rs[1], self._lengths[rs[0]], rs[0]))
        return [(row, round(score, 1)) for row, score in ranked[:limit]]
