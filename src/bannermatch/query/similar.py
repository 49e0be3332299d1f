"""Queries on a collection: ``similar`` (by id, name or image file) and ``unique``."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bannermatch.defaults import DEFAULT_K, UNIQUE_N
from bannermatch.embed.models.factory import create_model_for
from bannermatch.errors import BannermatchError, ImageError
from bannermatch.images import DecodedImage, Draft, decode_bytes, load_image
from bannermatch.mirror import transform_decoded, transform_name
from bannermatch.ocr.mask import prepare_query
from bannermatch.query.match import shown_score, unique_order
from bannermatch.query.names import NameIndex
from bannermatch.query.neighbours import Neighbours
from bannermatch.store.catalog import Catalog, is_app_id
from bannermatch.store.collection import Collection, ModelData
from bannermatch.tables import format_table

if TYPE_CHECKING:
    from bannermatch.ocr.engine import OcrResult

#: candidates shown beside a name chosen by a prefix, word or fuzzy match
ALTERNATIVES = 3


@dataclass
class Hit:
    rank: int
    id: str
    name: str
    score: float
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # a names sidecar's columns, ...
    inliers: int | None = None  # with --rerank: verified local-feature inliers
    verified: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Query:
    """What a QUERY argument resolved to."""

    kind: str  # "id", "name", "fuzzy-name", "image" or "steam-app"
    text: str
    id: str | None = None
    name: str | None = None
    match_score: float | None = None
    match: str | None = None  # how a name matched: names.Suggestion.match
    alternatives: list[dict[str, str]] = field(default_factory=list)  # the next candidates
    transform: str | None = None  # "mirror", "flip" or "mirror+flip": the image turned
    banner_text: str | None = None  # with a text weight: the text OCR read on an outside image

    def describe(self) -> str:
        turned = {"mirror": "mirrored", "flip": "flipped"}.get(self.transform or "", "")
        what = self._what()
        if self.banner_text is not None:
            what += f" (banner text read: {self.banner_text!r})"
        if self.transform:
            return f"{what}, {turned or 'mirrored and flipped'}"
        return what

    def _what(self) -> str:
        if self.kind == "image":
            return f"image {self.text}"
        if self.kind == "steam-app":
            return f"Steam app {self.text} (its banner, fetched from the CDN)"
        if self.kind == "fuzzy-name":
            how = f"{self.match} match" if self.match != "fuzzy" else "closest name"
            score = f", score {self.match_score:.0f}" if self.match == "fuzzy" else ""
            others = "; ".join(f"{a['id']} {a['name']!r}" for a in self.alternatives)
            return f"{self.id} {self.name!r} ({how} for {self.text!r}{score}" + (
                f"; next: {others})" if others else ")"
            )
        return f"{self.id} {self.name!r}"

    def item_id(self) -> str:
        """The collection item the query names (every kind but an image or a Steam app)."""
        if self.id is None:
            raise BannermatchError(f"{self.describe()} names no item of the collection")
        return self.id


def resolve_query(cat: Catalog, data: ModelData, text: str) -> Query:
    """An indexed id, an exact name, an image file, a Steam app id to fetch, or else the
    name the one name resolver (:class:`bannermatch.query.names.NameIndex`) picks."""
    if text in data.row_of:
        item = cat.get(text)
        return Query("id", text, text, item.name if item else text)
    ids, names = _names(cat, data)
    index = NameIndex(ids, names)
    found = index.search(text, 1 + ALTERNATIVES)
    if found and found[0].match == "name":
        return Query("name", text, ids[found[0].row], names[found[0].row])
    if os.path.lexists(text):  # a file, or what stands where one is named (a broken link...)
        return Query("image", text)
    item = cat.get(text)
    if item is not None:
        raise BannermatchError(
            f"item {text} is in the catalogue but has no embedding (status {item.status}"
            + (f": {item.reason})" if item.reason else ")")
        )
    if is_app_id(text):
        return Query("steam-app", text, text)
    if not found:
        raise BannermatchError(f"no item, name or image file matches {text!r}")
    first, *rest = found
    others = [{"id": ids[s.row], "name": names[s.row]} for s in rest]
    return Query(
        "fuzzy-name", text, ids[first.row], names[first.row], first.score, first.match, others
    )


def _names(cat: Catalog, data: ModelData) -> tuple[list[str], list[str]]:
    by_id = cat.names(data.ids)
    return data.ids, [by_id.get(i, i) for i in data.ids]


def _hits(cat: Catalog, data: ModelData, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
    ids = [data.ids[int(r)] for r in rows]
    items = {i: cat.get(i) for i in ids}
    hits = []
    for rank, (i, s) in enumerate(zip(ids, scores, strict=True), start=1):
        item = items[i]
        name, source = (item.name, item.source) if item else (i, None)
        hits.append(Hit(rank, i, name, shown_score(s), source, item.metadata if item else {}))
    return hits


@dataclass
class SimilarResult:
    query: Query
    model_key: str
    hits: list[Hit]

    def summary(self) -> str:
        if any(h.inliers is not None for h in self.hits):  # --rerank: say what was verified
            rows = [[h.rank, h.id, h.name, h.score, _verified(h)] for h in self.hits]
            table = format_table(["#", "id", "name", "score", "verified (inliers)"], rows)
        else:
            rows = [[h.rank, h.id, h.name, h.score] for h in self.hits]
            table = format_table(["#", "id", "name", "score"], rows)
        return f"most similar to {self.query.describe()}:\n{table}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": asdict(self.query),
            "model_key": self.model_key,
            "results": [h.to_dict() for h in self.hits],
        }


def _verified(hit: Hit) -> str:
    return f"{'yes' if hit.verified else 'no'} ({hit.inliers})"


def similar(
    collection: str | os.PathLike[str],
    query: str,
    *,
    k: int = DEFAULT_K,
    model: str | None = None,
    engine: str = "auto",
    device: str = "cpu",
    cdn_url: str | None = None,
    steam_api_url: str | None = None,
    rerank: int | None = None,
    mirror: bool = False,
    flip: bool = False,
    text_weight: float = 0.0,
) -> SimilarResult:
    """The ``k`` items most similar to ``query``: an item id, a name, an image file, or the
    app id of a Steam game outside the collection, whose current banner the store API names.
    With ``rerank=K`` the top ``max(K, k)`` are verified with local features first. With
    ``mirror`` / ``flip`` the query's image is mirrored / flipped and embedded on the fly.
    ``text_weight=W`` ranks by ``(1 - W) * image + W * banner-text`` similarity (the text
    ``index --ocr`` read; :mod:`bannermatch.query.textweight`)."""
    want, k = k, max(k, rerank or 0)
    if k < 1:
        raise BannermatchError("k must be at least 1")
    coll = Collection(collection)
    data = coll.load(model)
    with coll.catalog() as cat:
        q = resolve_query(cat, data, query)
        q.transform = transform_name(mirror, flip)
        own = data.row_of.get(q.id) if q.kind not in {"image", "steam-app"} else None  # type: ignore[arg-type]
        img: DecodedImage | None = None
        vector: np.ndarray | None = None
        read: OcrResult | None = None  # an outside image's banner text, for text_weight
        if own is None or q.transform:
            net = create_model_for(
                data.manifest, engine=engine, device=device, few_images=True, folder=data.folder
            )
            draft = net.preprocess.draft_size  # decoded as the collection's images were
            img = _decoded_query(coll, cat, q, draft, cdn_url, steam_api_url)
            if text_weight and own is None:  # an outside image: its banner text read now
                read = _outside_text(coll, cat, q, img, cdn_url, steam_api_url)
            img = transform_decoded(img, mirror, flip)
            # art-only keys: the text masked (the boxes just read serve when not turned)
            image = prepare_query(data.manifest, img.image, None if q.transform else read)
            vector = net.embed_images([image])[0]
        if text_weight:
            from bannermatch.query.textweight import nearest_with_text

            text = q.banner_text or ""  # an item's own is stored
            rows, scores = nearest_with_text(coll.root, data, own, vector, text, k, text_weight)
        elif vector is not None:
            rows, scores = Neighbours(data).nearest(vector, k, exclude=own)
        else:
            row = data.row_of[q.item_id()]
            info = data.match_info
            if info is not None and k <= info["k"]:
                nb, sc = data.neighbors()
                rows, scores = np.asarray(nb[row, :k]), np.asarray(sc[row, :k], np.float32)
            else:
                rows, scores = Neighbours(data).nearest(data.embeddings[row], k, exclude=row)
        if rerank:
            query_in = q.item_id() if img is None or vector is None else (img, vector)
            return _reranked(coll, data, cat, q, query_in, (rows, scores), want)
        return SimilarResult(q, data.key, _hits(cat, data, rows[:want], scores[:want]))


def _reranked(
    coll: Collection,
    data: ModelData,
    cat: Catalog,
    q: Query,
    query: str | tuple[DecodedImage, np.ndarray],
    candidates: tuple[np.ndarray, np.ndarray],
    k: int,
) -> SimilarResult:
    from bannermatch.verify.rerank import MIN_INLIERS
    from bannermatch.verify.search import verified_similar

    out = verified_similar(coll.root, data, query, candidates, k)
    hits = _hits(cat, data, out.rows, out.scores)
    for hit, n in zip(hits, out.inliers, strict=True):
        hit.inliers, hit.verified = int(n), bool(n >= MIN_INLIERS)
    return SimilarResult(q, data.key, hits)


def _decoded_query(
    coll: Collection,
    cat: Catalog,
    q: Query,
    draft: Draft,
    cdn_url: str | None,
    api_url: str | None,
) -> DecodedImage:
    """The image of a query: an image file, a Steam app's banner, or an item's own image."""
    if q.kind == "image":
        return _query_image(q.text, draft)
    if q.kind == "steam-app":
        return _steam_banner(q.text, cdn_url, api_url, draft)
    return _item_image(coll, cat, q.item_id(), draft)


def _outside_text(
    coll: Collection,
    cat: Catalog,
    q: Query,
    img: DecodedImage,
    cdn_url: str | None,
    api_url: str | None,
) -> OcrResult:
    """The banner text of a query image from outside the collection (kept in
    ``q.banner_text``), read as ``index --ocr`` reads: at full size (decoded again where a
    JPEG draft reduced it for the model) and before any turning."""
    from bannermatch.query.textweight import query_text

    full = img if img.full_size else _decoded_query(coll, cat, q, None, cdn_url, api_url)
    read = query_text(coll.root, full.image)
    q.banner_text = read.text
    return read


def _item_image(coll: Collection, cat: Catalog, item_id: str, draft: Draft) -> DecodedImage:
    """An indexed item's own image (to transform it); an error when it cannot be read."""
    item = cat.get(item_id)
    if item is None or not item.source:
        raise BannermatchError(f"item {item_id} has no image in the catalogue to transform")
    try:
        return load_image(coll.resolve_source(item.source), draft_size=draft)
    except (ImageError, OSError) as exc:
        raise ImageError(f"the image of item {item_id} cannot be read: {exc}") from None


def _query_image(path: str, draft: Draft) -> DecodedImage:
    """The image file a query names; an error names the file."""
    try:
        return load_image(path, draft_size=draft)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def _steam_banner(
    appid: str, cdn_url: str | None, api_url: str | None, draft: Draft = None
) -> DecodedImage:
    """The current banner of a Steam game that is not in the collection."""
    from bannermatch.acquire.steam.download import fetch_banner

    try:
        data = fetch_banner(appid, cdn_url, timeout=10.0, api_url=api_url)
        return decode_bytes(data, draft_size=draft)
    except BannermatchError as exc:
        raise BannermatchError(f"app {appid} is not in the collection, and {exc}") from None


@dataclass
class UniqueResult:
    model_key: str
    hits: list[Hit]  # score = similarity to the first neighbour
    neighbors: list[Hit]

    def summary(self) -> str:
        return format_table(
            ["#", "id", "name", "nearest", "nearest name", "similarity"],
            [
                [h.rank, h.id, h.name, nb.id, nb.name, h.score]
                for h, nb in zip(self.hits, self.neighbors, strict=True)
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_key": self.model_key,
            "results": [
                h.to_dict() | {"nearest": n.to_dict()}
                for h, n in zip(self.hits, self.neighbors, strict=True)
            ],
        }


def unique(
    collection: str | os.PathLike[str], *, n: int = UNIQUE_N, model: str | None = None
) -> UniqueResult:
    """The ``n`` items least similar to their nearest neighbour, most unique first."""
    if n < 1:
        raise BannermatchError("n must be at least 1")
    coll = Collection(collection)
    data = coll.load(model)
    nb, sc = data.neighbors()
    if nb.shape[1] == 0:
        raise BannermatchError("the collection has a single item: nothing to compare")
    order = unique_order(sc)[:n]
    first = np.asarray(sc[order, 0], np.float32)
    with coll.catalog() as cat:
        hits = _hits(cat, data, order, first)
        neighbors = _hits(cat, data, np.asarray(nb[order, 0]), first)
    return UniqueResult(data.key, hits, neighbors)
