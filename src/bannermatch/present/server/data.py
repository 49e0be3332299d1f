"""What the server holds in memory: one model's rows of a collection, read once at start.

Embeddings, neighbours and scores stay memory-mapped; ids, names, image sources
and download URLs are plain lists aligned with the rows; the name index is
built once. Everything a request needs is then a list index or a slice.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bannermatch.embed.models.factory import create_model_for
from bannermatch.errors import BannermatchError, CollectionError
from bannermatch.images import TAR_SEPARATOR, DecodedImage, decode_bytes
from bannermatch.ocr.mask import prepare_query
from bannermatch.query.match import unique_order
from bannermatch.query.names import NameIndex
from bannermatch.query.neighbours import Neighbours
from bannermatch.query.text import LabelClass, TextSearcher
from bannermatch.query.words import Ranking, WordSearcher, banner_texts
from bannermatch.store.catalog import Item, steam_appid
from bannermatch.store.collection import Collection, ModelData

if TYPE_CHECKING:
    from bannermatch.embed.models import EmbeddingModel
    from bannermatch.ocr.engine import OcrEngine, OcrResult
    from bannermatch.verify.search import VerifiedNeighbours

#: how many items the featured list shows when the catalogue has no query set
FEATURED_SAMPLE = 24


@dataclass
class ServedCollection:
    """A collection ready to answer requests; build it with :meth:`open`."""

    root: Path
    data: ModelData
    names: list[str]
    sources: list[str | None]
    urls: list[str | None]
    steam_ids: list[str | None]  # the Steam app each row is (catalog.steam_appid), if any
    metadata: list[dict[str, Any]]  # each row's metadata (a names sidecar's columns, ...)
    featured_rows: list[int]
    featured_from: str  # "queries" (the catalogue's query set) or "sample"
    name_index: NameIndex
    neighbors: np.ndarray | None  # uint32 (N, k), memory-mapped; None before `match`
    scores: np.ndarray | None
    #: searches past the stored k: `match --index ivf|hnsw`'s index, else exact scans
    search: Neighbours
    #: the neighbours `match --rerank` verified with local features, shown when present
    verified: VerifiedNeighbours | None = None
    banner_texts: list[str] | None = None  # each row's OCR text (index --ocr); None without
    load_seconds: float = 0.0
    _unique: np.ndarray | None = field(default=None, repr=False)
    _model: EmbeddingModel | None = field(default=None, repr=False)
    _model_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _text: TextSearcher | None = field(default=None, repr=False)
    _text_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _words: WordSearcher | None = field(default=None, repr=False)
    _row_texts: Any = field(default=None, repr=False)  # query.textweight.RowTexts, on first use
    _ocr: OcrEngine | None = field(default=None, repr=False)  # for uploads, on first use
    _ocr_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str], model: str | None = None) -> ServedCollection:
        t0 = time.perf_counter()
        from bannermatch.verify.search import load_verified

        coll = Collection(root)
        data = coll.load(model)
        neighbors: np.ndarray | None
        scores: np.ndarray | None
        try:
            neighbors, scores = data.neighbors()
        except CollectionError:
            neighbors = scores = None
        row_of = data.row_of
        n = len(data.ids)
        names: list[str] = list(data.ids)
        sources: list[str | None] = [None] * n
        urls: list[str | None] = [None] * n
        steam_ids: list[str | None] = [None] * n
        metadata: list[dict[str, Any]] = [{} for _ in range(n)]
        with coll.catalog() as cat:
            for item_id, name, source, url, meta in cat.columns(
                "id", "name", "source", "url", "meta"
            ):
                row = row_of.get(item_id)
                if row is not None:
                    names[row] = name or item_id
                    sources[row] = coll.resolve_source(source) if source else None
                    urls[row] = url
                    item = Item(item_id, name, url=url, meta=meta)
                    steam_ids[row], metadata[row] = steam_appid(item), item.metadata
            queries = cat.queries()
        featured = [row_of[i] for i in queries if i in row_of]
        featured_from = "queries"
        if not featured:
            step = max(1, n // FEATURED_SAMPLE)
            featured, featured_from = list(range(0, n, step))[:FEATURED_SAMPLE], "sample"
        served = cls(
            root=coll.root,
            data=data,
            names=names,
            sources=sources,
            urls=urls,
            steam_ids=steam_ids,
            metadata=metadata,
            featured_rows=featured,
            featured_from=featured_from,
            name_index=NameIndex(data.ids, names),
            neighbors=neighbors,
            scores=scores,
            search=Neighbours(data),
            verified=load_verified(data) if neighbors is not None else None,
            banner_texts=banner_texts(coll.root, data),
        )
        served.load_seconds = time.perf_counter() - t0
        return served

    # lookups ------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        return self.data.ids

    @property
    def count(self) -> int:
        return len(self.data.ids)

    @property
    def stored_k(self) -> int:
        return 0 if self.neighbors is None else int(self.neighbors.shape[1])

    def row(self, item_id: str) -> int | None:
        return self.data.row_of.get(item_id)

    def random_row(self, rng: random.Random | None = None) -> int:
        if not self.count:
            raise BannermatchError("the collection is empty")
        return (rng or random).randrange(self.count)

    def row_by_name(self, text: str) -> tuple[int, str] | None:
        """The row an id or name stands for (exact, else the best prefix or fuzzy match)."""
        hits = self.name_index.search(text, 1)
        return (hits[0].row, hits[0].match) if hits else None

    # neighbours -----------------------------------------------------------------

    @property
    def ann_recall(self) -> float | None:
        info = self.data.match_info or {}
        return info.get("index", {}).get("recall") if self.search.ann is not None else None

    def similar(self, row: int, n: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The ``n`` rows nearest ``row``: from neighbors.npy when it holds them, else from
        the approximate index when there is one, else exact. Verified neighbours
        (``match --rerank``) come first when they hold ``n``."""
        if self.verified is not None and n <= self.verified.k:
            rows = np.asarray(self.verified.rows[row, :n], np.int64)
            return rows, np.asarray(self.verified.scores[row, :n], np.float32), "verified"
        if self.neighbors is not None and self.scores is not None and n <= self.stored_k:
            rows = np.asarray(self.neighbors[row, :n], np.int64)
            return rows, np.asarray(self.scores[row, :n], np.float32), "neighbors"
        vector = np.asarray(self.data.embeddings[row], np.float32)
        rows, scores = self.search.nearest(vector, n, exclude=row)
        return rows, scores, self.search.kind

    def nearest_to(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` rows nearest a query vector: the approximate index, else an exact scan."""
        return self.search.nearest(vector, n)

    def unique_rows(self) -> np.ndarray:
        """Rows by ascending similarity to their first neighbour; an error before `match`."""
        if self.neighbors is None or self.scores is None:
            raise CollectionError(
                f"no up-to-date neighbours for {self.data.key}: run `bannermatch match {self.root}`"
            )
        if self.stored_k == 0:
            raise BannermatchError("the collection has a single item: nothing to compare")
        if self._unique is None:
            self._unique = unique_order(self.scores)
        return self._unique

    # images ---------------------------------------------------------------------

    def model(self) -> EmbeddingModel:
        """The collection's own model, loaded on first use; it resamples one upload at a
        time with Pillow's filters, as `similar C IMAGE` does (no PyTorch import)."""
        with self._model_lock:
            if self._model is None:
                self._model = create_model_for(
                    self.data.manifest, folder=self.data.folder, few_images=True
                )
            return self._model

    def decode(self, data: bytes, max_pixels: int) -> DecodedImage:
        """Decode an uploaded image as the collection's model reads its images."""
        return decode_bytes(
            data, max_pixels=max_pixels, draft_size=self.model().preprocess.draft_size
        )

    def embed(self, image: DecodedImage, text: OcrResult | None = None) -> np.ndarray:
        """Embed an uploaded image (from :meth:`decode`) with the collection's own model;
        for an art-only key, with its text (``text``, else read now) painted over."""
        model = self.model()
        if text is None and self.data.manifest.get("text_mask"):
            text = self.read_text(image)
        picture = prepare_query(self.data.manifest, image.image, text)
        with self._model_lock:
            vector = model.embed_images([picture])[0]
        return np.asarray(vector, np.float32)

    def read_text(self, image: DecodedImage) -> OcrResult:
        """The text on an uploaded image, read as the collection's was: one OCR engine,
        loaded on first use and used by one request at a time; a BannermatchError when the
        collection has no banner text or the 'ocr' extra is missing."""
        from bannermatch.ocr.engine import OcrEngine
        from bannermatch.query.textweight import query_det_side

        with self._ocr_lock:
            if self._ocr is None:
                self._ocr = OcrEngine(det_side=query_det_side(self.root))
            return self._ocr.read_image(image.image)

    @property
    def text(self) -> TextSearcher:
        """Text search over the rows (its model loads on the first query)."""
        if self._text is None:
            self._text = TextSearcher(self.data)
        return self._text

    def search_text(
        self, text: str, n: int
    ) -> tuple[np.ndarray, np.ndarray, list[LabelClass], list[str]]:
        """Rows, scores, the ImageNet classes of a label search and the words none has."""
        with self._text_lock:  # one model load, one scan at a time
            return self.text.rank_words(text, n)

    @property
    def can_search_words(self) -> bool:
        """Whether a text finds anything beyond names: banner text or an image search."""
        return self.banner_texts is not None or self.text.mode is not None

    def search_words(self, text: str, n: int) -> Ranking:
        """Rows for a text by banner text, name and image (:mod:`bannermatch.query.words`)."""
        with self._text_lock:
            if self._words is None:
                self._words = WordSearcher(
                    self.names, self.banner_texts, self.text, name_index=self.name_index
                )
            return self._words.rank(text, n)

    def row_texts(self) -> Any:
        """The rows' banner text for ``text_weight`` (:mod:`bannermatch.query.textweight`),
        read on first use; a BannermatchError when the collection has none."""
        from bannermatch.query.textweight import RowTexts

        with self._text_lock:
            if self._row_texts is None:
                self._row_texts = RowTexts.of(self.banner_texts, self.root)
            return self._row_texts

    def image_source(self, row: int) -> str | None:
        return self.sources[row]

    @staticmethod
    def is_tar_member(source: str) -> bool:
        shard, sep, _ = source.partition(TAR_SEPARATOR)
        return bool(sep) and shard.endswith(".tar") and not os.path.exists(source)
