"""Queries on a collection: ``similar`` (by id, name or image file) and ``unique``."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog
from .cli_output import format_table
from .collection import Collection, ModelData
from .errors import BannermatchError, ImageError
from .images import DecodedImage, Draft, decode_bytes, load_image
from .matching import DEFAULT_K, shown_score, unique_order
from .names import NameIndex
from .steam.endpoints import is_app_id

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

    def describe(self) -> str:
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


def resolve_query(cat: Catalog, data: ModelData, text: str) -> Query:
    """An indexed id, an exact name, an image file, a Steam app id to fetch, or else the
    name the one name resolver (:class:`bannermatch.names.NameIndex`) picks."""
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


def nearest(
    data: ModelData, vector: np.ndarray, k: int, exclude: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows for one L2-normalised query vector, blocked over the rows."""
    k = min(k, len(data.ids) - (exclude is not None))
    best_rows = np.zeros(0, np.int64)
    best_scores = np.zeros(0, np.float32)
    q = np.asarray(vector, np.float32).ravel()
    for start in range(0, len(data.ids), 65536):
        block = np.asarray(data.embeddings[start : start + 65536], np.float32) @ q
        if exclude is not None and start <= exclude < start + len(block):
            block[exclude - start] = -np.inf
        rows = np.arange(start, start + len(block))
        best_rows = np.concatenate([best_rows, rows])
        best_scores = np.concatenate([best_scores, block])
        if len(best_scores) > k:
            top = np.argpartition(-best_scores, k - 1)[:k]
            best_rows, best_scores = best_rows[top], best_scores[top]
    order = np.lexsort((best_rows, -best_scores))
    return best_rows[order], best_scores[order]


def _nearest(
    data: ModelData, vector: np.ndarray, k: int, exclude: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """From the approximate index `match --index` stored, if any, else exact."""
    from .ann import AnnIndex

    index = AnnIndex.load(data)
    if index is not None:
        return index.nearest(vector, k, exclude)
    return nearest(data, vector, k, exclude)


@dataclass
class SimilarResult:
    query: Query
    model_key: str
    hits: list[Hit]

    def summary(self) -> str:
        rows = [[h.rank, h.id, h.name, h.score] for h in self.hits]
        table = format_table(["#", "id", "name", "score"], rows)
        return f"most similar to {self.query.describe()}:\n{table}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": asdict(self.query),
            "model_key": self.model_key,
            "results": [h.to_dict() for h in self.hits],
        }


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
) -> SimilarResult:
    """The ``k`` items most similar to ``query``: an item id, a name, an image file, or the
    app id of a Steam game outside the collection, whose current banner the store API names.
    With ``rerank=K`` the top ``max(K, k)`` are verified with local features first."""
    want, k = k, max(k, rerank or 0)
    if k < 1:
        raise BannermatchError("k must be at least 1")
    coll = Collection(collection)
    data = coll.load(model)
    with coll.catalog() as cat:
        q = resolve_query(cat, data, query)
        img: DecodedImage | None = None
        if q.kind in {"image", "steam-app"}:
            model = create_model_for(
                data.manifest, engine=engine, device=device, few_images=True, folder=data.folder
            )
            draft = model.preprocess.draft_size  # decoded as the collection's images were
            if q.kind == "image":
                img = _query_image(query, draft)
            else:
                img = _steam_banner(query, cdn_url, steam_api_url, draft)
            rows, scores = _nearest(data, model.embed_images([img.image])[0], k)
        else:
            row = data.row_of[q.id]  # type: ignore[index]
            info = data.match_info
            if info is not None and k <= info["k"]:
                nb, sc = data.neighbors()
                rows, scores = np.asarray(nb[row, :k]), np.asarray(sc[row, :k], np.float32)
            else:
                rows, scores = _nearest(data, data.embeddings[row], k, exclude=row)
        if rerank:
            return _reranked(coll, data, cat, q, img, (rows, scores), want)
        return SimilarResult(q, data.key, _hits(cat, data, rows[:want], scores[:want]))


def _reranked(
    coll: Collection,
    data: ModelData,
    cat: Catalog,
    q: Query,
    img: DecodedImage | None,
    candidates: tuple[np.ndarray, np.ndarray],
    k: int,
) -> SimilarResult:
    from .verify.features import extract_array
    from .verify.rerank import MIN_INLIERS, rerank_for_query

    rows, scores = candidates
    query = q.id if img is None else extract_array(np.asarray(img.image))
    out = rerank_for_query(coll.root, data.ids, query, rows, scores, k)
    hits = _hits(cat, data, out.rows, out.scores)
    for hit, n in zip(hits, out.inliers, strict=True):
        hit.inliers, hit.verified = int(n), bool(n >= MIN_INLIERS)
    return SimilarResult(q, data.key, hits)


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
    from .steam.download import fetch_banner

    try:
        data = fetch_banner(appid, cdn_url, timeout=10.0, api_url=api_url)
        return decode_bytes(data, draft_size=draft)
    except BannermatchError as exc:
        raise BannermatchError(f"app {appid} is not in the collection, and {exc}") from None


def create_model_for(
    manifest: dict[str, Any],
    *,
    engine: str = "auto",
    device: str = "cpu",
    few_images: bool = False,
    folder: Path | None = None,
) -> Any:
    """The model that wrote ``manifest``: same preset, preprocessing, strategy and weights
    (random weights too, for a collection a test built with them); for an int8 manifest,
    the int8 model stored beside it in ``folder``."""
    from .models import create_model
    from .models.precision import int8_options

    pre = manifest["preprocess"]
    options = {k: pre[k] for k in ("fit", "resize_size", "crop_size", "interpolation") if k in pre}
    if "keep_ratio" in pre:
        options["keep_ratio"] = pre["keep_ratio"]
    options["draft"] = pre.get("draft", False)  # written before drafts: every pixel decoded
    model = create_model(
        manifest["model"],
        engine=engine,
        device=device,
        strategy=manifest["strategy"],
        augment=manifest.get("augment", "none"),
        pretrained=False if manifest.get("weights", {}).get("random") else None,
        few_images=few_images,
        **options,
        **int8_options(manifest, folder),
    )
    if model.key != manifest["key"]:
        raise BannermatchError(
            f"cannot rebuild model {manifest['key']}: this bannermatch gives {model.key} "
            "(written by another version); run `bannermatch index` again to re-embed it"
        )
    return model


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
    collection: str | os.PathLike[str], *, n: int = 250, model: str | None = None
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
