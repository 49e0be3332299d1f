"""How alike two banners' texts are, and how much a ranking follows the text.

- :class:`TextSimilarity`: cosine of TF-IDF character trigrams of the OCR text with
  everything but letters and digits taken out, so "A PLAGUE TALE" and the run-together
  "APLAGUETALE" OCR often gives are the same text; trigrams common to many banners
  ("THE", "ION") count for little. scikit-learn builds the sparse vectors. A banner
  without text is like no other (similarity 0).
- :func:`combine`: the image similarity and the text similarity mixed with a weight
  (``similar --text-weight W``, ``match``, the API), for finding the same game under
  other art (editions, DLC, regional versions).
- :func:`text_bias`: the share of a ranking's top-5 neighbours from another group whose
  text shares a word of 4 or more letters with the query's (``eval --text-bias``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: letters and digits of any script: the rest (spaces, punctuation) is dropped
_KEEP = re.compile(r"[^\w]|_", re.UNICODE)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
#: a word counts for the text-bias measure from this many letters
MIN_WORD = 4
#: neighbours looked at by the text-bias measure
BIAS_K = 5


def normalise(text: str) -> str:
    """Lower case, letters and digits only, no spaces (OCR runs words together)."""
    return _KEEP.sub("", text.casefold())


def words(text: str, min_len: int = MIN_WORD) -> frozenset[str]:
    """The words of ``min_len`` or more letters, lower case."""
    return frozenset(w for w in _WORD.findall(text.casefold()) if len(w) >= min_len)


class TextSimilarity:
    """Text-to-text cosine similarities over a fixed list of texts (a collection's rows)."""

    def __init__(self, texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.texts = [normalise(t) for t in texts]
        self._has_text = np.array([len(t) >= 3 for t in self.texts])
        self._vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=(3, 3), lowercase=False, sublinear_tf=True
        )
        if self._has_text.any():
            self._rows = self._vectorizer.fit_transform(self.texts)
        else:  # no banner has text: every similarity is 0
            self._rows = None

    def __len__(self) -> int:
        return len(self.texts)

    def of_rows(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (len(rows), N): the similarity of each given row's text to every row's."""
        rows = np.asarray(rows, np.int64)
        if self._rows is None:
            return np.zeros((len(rows), len(self)), np.float32)
        return np.asarray((self._rows[rows] @ self._rows.T).toarray(), np.float32)

    def of_text(self, text: str) -> np.ndarray:
        """float32 (N,): the similarity of a text (a query's, not a row's) to every row's."""
        if self._rows is None or len(normalise(text)) < 3:
            return np.zeros(len(self), np.float32)
        vector = self._vectorizer.transform([normalise(text)])
        return np.asarray((vector @ self._rows.T).toarray()[0], np.float32)


def combine(image: np.ndarray, text: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * image + weight * text``: 0 is the image alone, 1 the text alone."""
    if weight == 0:
        return image
    return (1.0 - weight) * image + weight * text


def check_weight(weight: float) -> float:
    from bannermatch.errors import BannermatchError

    if not 0.0 <= weight <= 1.0:
        raise BannermatchError(f"--text-weight is between 0 and 1, not {weight:g}")
    return weight


def top_k(scores: np.ndarray, exclude: np.ndarray | None, k: int) -> np.ndarray:
    """Rows of the ``k`` best scores of each row of ``scores`` (best first); ``exclude[i]``
    (the query itself) is never one of them."""
    scores = np.array(scores, np.float32, copy=True)
    if exclude is not None:
        scores[np.arange(len(scores)), exclude] = -np.inf
    k = min(k, scores.shape[1] - (exclude is not None))
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def text_bias(
    neighbours: np.ndarray,
    queries: np.ndarray,
    labels: np.ndarray,
    texts: Sequence[str],
    k: int = BIAS_K,
) -> dict[str, float | int]:
    """Of the top-``k`` neighbours of each query that are from another group, the share
    whose text shares a word of :data:`MIN_WORD` or more letters with the query's text.

    ``neighbours[i]`` ranks the rows for ``queries[i]``. Beside it: ``chance``, the same
    share over every pair of rows from different groups (what a ranking blind to the text
    would give), and the counts.
    """
    vocab = [words(t) for t in texts]
    other = shared = 0
    for query, row in zip(queries, neighbours[:, :k], strict=True):
        for n in row:
            if labels[n] >= 0 and labels[n] == labels[query]:
                continue
            other += 1
            shared += bool(vocab[query] & vocab[n])
    return {
        "text_bias": round(shared / other, 6) if other else 0.0,
        "text_bias_chance": round(_chance(vocab, labels, queries), 6),
        "other_group_neighbours": other,
        "sharing_a_word": shared,
    }


def _chance(vocab: list[frozenset[str]], labels: np.ndarray, queries: np.ndarray) -> float:
    """The share of (query, other-group row) pairs whose texts share a word."""
    by_word: dict[str, set[int]] = {}
    for row, ws in enumerate(vocab):
        for w in ws:
            by_word.setdefault(w, set()).add(row)
    pairs = shared = 0
    n = len(vocab)
    for q in queries:
        same = np.flatnonzero(labels == labels[q]) if labels[q] >= 0 else np.array([q])
        pairs += n - len(same)
        sharing: set[int] = set()
        for w in vocab[q]:
            sharing |= by_word[w]
        shared += len(sharing - set(same.tolist()))
    return shared / pairs if pairs else 0.0
