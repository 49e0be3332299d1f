"""Many short strings joined into one, searchable at C speed: exact substrings, and
(:class:`GramIndex`) how many letters each row shares with a word.

The banner-text search (:mod:`bannermatch.query.bannertext`) uses it to find the texts
a query can match without a Python loop over a million of them:

- :meth:`Joined.containing`: the rows holding a substring, by ``str.find`` over the
  strings joined with ``\\x00`` (a character folded text never has) and a binary search
  of where each string starts;
- :meth:`GramIndex.overlap`: for each row, the size of the multiset intersection of its
  letters with a word's, from an inverted index ((character, k-th occurrence) -> rows, as
  numpy arrays: the rows of gram ``c`` are ``rows[start[c]:start[c + 1]]``) built with
  numpy from the joined codepoints, so building it for a million texts takes seconds.

Letters rather than bigrams or trigrams: the common letters bound the longest common
subsequence that rapidfuzz's ratios are made of, so filtering on them loses no fuzzy
match, where a misread word can share no bigram with the right one. Written here rather
than taken from a library: SQLite FTS5's trigram tokenizer answers substrings and LIKE,
not "shares enough letters", and a scikit-learn vectoriser builds its vocabulary in a
Python loop (slower at a million strings) for a matrix this needs only the columns of.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEP = "\x00"
_K_BITS = np.uint64(8)  # (character << 8) | k: its k-th occurrence (k < 256)
_ROW_SHIFT = np.uint64(42)  # (row << 42) | gram: one sortable key (a codepoint: 21 bits)


class Joined:
    """Strings joined in one, for C-speed substring search."""

    def __init__(self, strings: Sequence[str]):
        self.strings = list(strings)
        lengths = np.fromiter((len(s) for s in self.strings), np.int64, len(self.strings))
        self.starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
        self.joined = SEP.join(self.strings)

    def __len__(self) -> int:
        return len(self.strings)

    def row_of(self, positions: np.ndarray) -> np.ndarray:
        """The row each position of the joined string falls in."""
        return np.searchsorted(self.starts, positions, side="right") - 1

    def containing(self, sub: str) -> np.ndarray:
        """The rows (sorted, unique) whose string holds ``sub``."""
        if not sub or SEP in sub:
            return np.empty(0, np.int64)
        found, find, i = [], self.joined.find, self.joined.find(sub)
        while i >= 0:
            found.append(i)
            i = find(sub, i + 1)
        return np.unique(self.row_of(np.asarray(found, np.int64)))


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.uint64)


def _letter_keys(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(row << 42) | (character << 8) | k, for k = 1 .. how often the row has it."""
    keys, counts = np.unique((rows.astype(np.uint64) << _ROW_SHIFT) | (codes << _K_BITS),
                             return_counts=True)  # fmt: skip
    counts = np.minimum(counts, 255)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(int(counts.sum())) - first + 1
    return np.repeat(keys, counts) | k.astype(np.uint64)


def letter_grams(word: str) -> np.ndarray:
    """``word``'s letters counted: one code per (character, k-th occurrence)."""
    if not word:
        return np.empty(0, np.uint64)
    return _letter_keys(_codes(word), np.zeros(len(word), np.int64))


class GramIndex(Joined):
    """:class:`Joined`, with an inverted index of each string's letters counted: the
    "gram" (c, k) is in a row whose string has the character c at least k times. The
    number of a word's grams a row has is then the size of the multiset intersection of
    their letters, an upper bound of their longest common subsequence (the quantity
    rapidfuzz's ratios are made of), so a filter on it loses no match."""

    def __init__(self, strings: Sequence[str]):
        super().__init__(strings)
        codes = _codes(self.joined)
        pos = np.flatnonzero(codes != 0)
        keys = _letter_keys(codes[pos], self.row_of(pos))
        grams = keys & ((np.uint64(1) << _ROW_SHIFT) - np.uint64(1))
        self.vocab, column = np.unique(grams, return_inverse=True)
        order = np.argsort(column, kind="stable")  # rows grouped by gram, in row order
        self.rows = (keys[order] >> _ROW_SHIFT).astype(np.int32)
        self.start = np.searchsorted(column[order], np.arange(len(self.vocab) + 1))

    def overlap(self, word: str) -> np.ndarray:
        """For each row, how many letters (with their counts) it shares with ``word``."""
        counts = np.zeros(len(self), np.int32)
        grams = letter_grams(word)
        cols = np.minimum(np.searchsorted(self.vocab, grams), len(self.vocab) - 1)
        for c, g in zip(cols.tolist(), grams.tolist(), strict=True):
            if len(self.vocab) and int(self.vocab[c]) == g:
                counts[self.rows[self.start[c] : self.start[c + 1]]] += 1
        return counts

    @property
    def nbytes(self) -> int:
        """The memory the index's arrays hold (the joined string aside)."""
        return int(self.rows.nbytes + self.start.nbytes + self.vocab.nbytes + self.starts.nbytes)
