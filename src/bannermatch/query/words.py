"""``bannermatch search``: words against every signal a collection has.

Three signals answer a text:

- ``"banner text"``: the words read on the banners (``index --ocr``;
  :class:`bannermatch.query.bannertext.BannerTextIndex`);
- ``"name"``: the items' names, through the one name resolver
  (:class:`bannermatch.query.names.NameIndex`);
- ``"image"``: CLIP text-to-image, or the ImageNet label search of a classifier
  (:class:`bannermatch.query.text.TextSearcher`).

The words a user types are most often a title, and a title found in a banner's text or
name is a surer answer than a picture that looks like the words: items found by banner
text or name come first, by their better score (0-100; a bonus when both agree), then
the image search's items. With CLIP, banner texts that hold the words only weakly (a
misread title: under :data:`MIN_QUERY_COVERAGE`) come after CLIP's items; a label search
knows no titles, and its items come after every banner-text hit. Each hit says which
signals found it and with what score.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bannermatch.defaults import DEFAULT_K
from bannermatch.errors import BannermatchError
from bannermatch.ocr.store import load_ocr
from bannermatch.query.bannertext import BannerTextIndex
from bannermatch.query.match import shown_score
from bannermatch.query.names import NameIndex
from bannermatch.query.similar import Hit, _hits, _names
from bannermatch.query.text import LabelClass, NoClassMatches, TextSearcher
from bannermatch.store.collection import Collection, ModelData
from bannermatch.tables import format_table

BANNER_TEXT, NAME, IMAGE = "banner text", "name", "image"
#: a banner text is a match when the query's words are found in it this well (0-1: the
#: length-weighted, squared alignment scores; a long subtitle on the banner is no matter).
#: Low enough for a misread title (CRAUL for Crawl: 0.64) to rank first. With CLIP, texts
#: that hold the words less well are weak hits, ranked after CLIP's rows; a label search
#: knows no titles and comes after every banner-text hit (docs/ocr.md: the floor measured)
MIN_QUERY_COVERAGE = 0.4
#: added to a word match that both the name and the banner text found
AGREEMENT_BONUS = 5.0


@dataclass
class Ranked:
    row: int
    score: float  # the score the hit is ranked by: 0-1 for words, the image score else
    signals: dict[str, float] = field(default_factory=dict)  # signal -> its own score


@dataclass
class Ranking:
    rows: list[Ranked]
    signals: list[str] = field(default_factory=list)  # the signals the collection has
    image_mode: str | None = None  # "clip", "labels" or None (no image search)
    classes: list[LabelClass] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    image_note: str | None = None  # why the image search gave nothing, when it did not


class WordSearcher:
    """Ranks a collection's rows for a text by banner text, name and image."""

    def __init__(
        self,
        names: list[str],
        banner_texts: list[str] | None,
        image: TextSearcher | None,
        ids: list[str] | None = None,
        name_index: NameIndex | None = None,  # one built already (the server has one)
    ):
        self.names = name_index or NameIndex(ids or [str(i) for i in range(len(names))], names)
        self.banner = BannerTextIndex(banner_texts) if banner_texts is not None else None
        self.image = image

    @property
    def signals(self) -> list[str]:
        image = self.image is not None and self.image.mode is not None
        return [BANNER_TEXT] * (self.banner is not None) + [NAME] + [IMAGE] * image

    def _words(self, text: str, k: int, floor: float) -> dict[int, dict[str, float]]:
        found: dict[int, dict[str, float]] = {}
        if self.banner is not None:
            for m in self.banner.search(text, k, min_coverage=floor):
                found.setdefault(m.row, {})[BANNER_TEXT] = m.score
        for s in self.names.search(text, k):
            found.setdefault(s.row, {})[NAME] = s.score
        return found

    def _weak(self, text: str, k: int, strong: dict[int, dict[str, float]]) -> list[Ranked]:
        """Banner texts that hold the query's words under the floor (a title misread),
        when the words found fewer than ``k`` rows: best first."""
        if self.banner is None or len(strong) >= k:
            return []
        return [
            Ranked(m.row, m.score / 100, {BANNER_TEXT: m.score})
            for m in self.banner.search(text, k)
            if m.row not in strong
        ]

    def rank(self, text: str, k: int) -> Ranking:
        """Rows found by their words first, then the image search's rows. With CLIP, a
        banner text that holds the words under :data:`MIN_QUERY_COVERAGE` (a weak hit)
        comes after CLIP's rows; a label search knows no titles, and every banner-text
        hit ranks by its score before the label rows."""
        if not text.strip():
            raise BannermatchError("the text to search is empty")
        if k < 1:
            raise BannermatchError("k must be at least 1")
        clip = self.image is not None and self.image.mode == "clip"
        words = self._words(text, k, MIN_QUERY_COVERAGE if clip else 0.0)
        ranking = Ranking([], self.signals)
        for row, sig in words.items():
            best = max(sig.values()) + AGREEMENT_BONUS * (len(sig) > 1)
            ranking.rows.append(Ranked(row, min(best, 100.0) / 100, sig))
        ranking.rows.sort(key=lambda r: (-r.score, r.row))
        weak = self._weak(text, k, words) if clip else []
        self._add_image(text, k, ranking, bool(words) or bool(weak))
        _add_weak(ranking, weak)
        ranking.rows = ranking.rows[:k]
        return ranking

    def _add_image(self, text: str, k: int, ranking: Ranking, have_words: bool) -> None:
        if self.image is None:
            return
        ranking.image_mode = self.image.mode
        try:
            rows, scores, classes, unmatched = self.image.rank_words(text, k)
        except BannermatchError as exc:  # no class has the words, no text tower, ...
            if not have_words and isinstance(exc, NoClassMatches):  # nothing matches at all
                held = "no name or banner text holds" if self.banner else "no name holds"
                raise BannermatchError(f"{held} the words, and {exc}") from None
            if not have_words:  # a refusal of its own (no norms, no text tower): as it is
                raise
            ranking.image_note = str(exc)
            return
        ranking.classes, ranking.unmatched = classes, unmatched
        by_row = {r.row: r for r in ranking.rows}
        for row, score in zip(rows.tolist(), scores.tolist(), strict=True):
            if row in by_row:
                by_row[row].signals[IMAGE] = shown_score(score)
            else:
                ranking.rows.append(Ranked(row, float(score), {IMAGE: shown_score(score)}))


def _add_weak(ranking: Ranking, weak: list[Ranked]) -> None:
    """Weak banner-text hits after the rows ranked: a row the image search found gains
    the banner-text signal, the others are added."""
    by_row = {r.row: r for r in ranking.rows}
    for hit in weak:
        if hit.row in by_row:
            by_row[hit.row].signals.update(hit.signals)
        else:
            ranking.rows.append(hit)


@dataclass
class WordHit(Hit):
    matched: list[str] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    banner_text: str | None = None


@dataclass
class WordSearchResult:
    query: str
    mode: str | None  # the image signal's mode: "clip", "labels" or None
    model_key: str
    signals: list[str]  # the signals the collection has
    hits: list[WordHit]
    classes: list[LabelClass] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    image_note: str | None = None

    def summary(self) -> str:
        rows = [
            [h.rank, h.id, h.name, h.score, ", ".join(h.matched), _short(h.banner_text)]
            for h in self.hits
        ]
        table = format_table(["#", "id", "name", "score", "matched", "banner text"], rows)
        lines = [f"{self.query!r} by {', '.join(self.signals)} ({self.model_key}):", table]
        if self.mode == "labels" and self.classes:
            names = "; ".join(c.name for c in self.classes[:6])
            more = f" and {len(self.classes) - 6} more" if len(self.classes) > 6 else ""
            lines.append(
                f"image: label search ({self.model_key} cannot read text): the probability "
                f"of the ImageNet classes matching the words: {names}{more}"
            )
        if self.mode == "labels" and self.unmatched:
            lines.append(
                f"image: no ImageNet class has the word(s) {', '.join(map(repr, self.unmatched))}"
                ": they play no part in the image ranking"
            )
        if self.image_note:
            lines.append(f"image: {self.image_note}")
        if BANNER_TEXT not in self.signals:
            lines.append("(no banner text: `bannermatch index ... --ocr` reads it)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "model_key": self.model_key,
            "signals": self.signals,
            "classes": [c.to_dict() for c in self.classes],
            "unmatched_words": self.unmatched,
            "image_note": self.image_note,
            "results": [h.to_dict() for h in self.hits],
        }


def _short(text: str | None, width: int = 40) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def banner_texts(collection: str | os.PathLike[str], data: ModelData) -> list[str] | None:
    """Each row's banner text ("" when none was read), or None without ``index --ocr``."""
    read = load_ocr(collection)
    if not read:
        return None
    return [read[i].text if i in read else "" for i in data.ids]


def search(
    collection: str | os.PathLike[str],
    text: str,
    *,
    k: int = DEFAULT_K,
    model: str | None = None,
    device: str = "cpu",
) -> WordSearchResult:
    """The ``k`` items that best match ``text`` by banner text, name and image."""
    coll = Collection(collection)
    data = coll.load(model)
    texts = banner_texts(collection, data)
    with coll.catalog() as cat:
        ids, names = _names(cat, data)
        searcher = WordSearcher(names, texts, TextSearcher(data, device=device), ids)
        ranking = searcher.rank(text, k)
        rows = np.asarray([r.row for r in ranking.rows], np.int64)
        plain = _hits(cat, data, rows, np.asarray([r.score for r in ranking.rows]))
    hits = [
        WordHit(**vars(h), matched=list(r.signals), signals=r.signals,
                banner_text=texts[r.row] if texts is not None else None)
        for h, r in zip(plain, ranking.rows, strict=True)
    ]  # fmt: skip
    return WordSearchResult(
        text, ranking.image_mode, data.key, ranking.signals, hits,
        ranking.classes, ranking.unmatched, ranking.image_note,
    )  # fmt: skip
