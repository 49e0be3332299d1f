"""Response shapes of the JSON API (they document themselves at ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Item(BaseModel):
    id: str = Field(description="the item id: a Steam appID or a file stem")
    index: int = Field(description="the item's row in the collection")
    name: str
    image_url: str = Field(description="this server's URL of the item's image")
    store_url: str | None = Field(None, description="Steam store page (Steam apps only)")
    steamdb_url: str | None = Field(None, description="SteamDB page (Steam apps only)")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="the item's metadata: a names sidecar's columns"
    )
    banner_text: str | None = Field(
        None, description="the text read on the image (`index --ocr`); null when not read"
    )


class Hit(Item):
    rank: int = Field(description="1 for the most similar")
    score: float = Field(description="cosine similarity, -1 to 1 (verified: the combined score)")
    inliers: int | None = Field(
        None, description="source 'verified': local-feature matches that agree on one geometry"
    )
    verified: bool | None = Field(
        None, description="source 'verified': whether the inliers confirm the match"
    )


class Info(BaseModel):
    name: str = Field(description="the collection folder's name")
    count: int
    model_key: str
    model: str
    dim: int
    stored_k: int = Field(description="neighbours stored per item; 0 before `bannermatch match`")
    max_n: int = Field(description="the largest n a similarity request accepts")
    featured_from: str = Field(description="'queries' (the catalogue's query set) or 'sample'")
    text_search: bool = Field(description="whether /api/search/text is available")
    text_mode: str | None = Field(
        None, description="'clip' (CLIP text tower) or 'labels' (ImageNet label search)"
    )
    banner_text: bool = Field(
        False, description="whether the banners' text was read (`index --ocr`): text search uses it"
    )
    index: str = Field(
        "exact",
        description="what answers past the stored neighbours and by image: 'exact' (a full "
        "scan) or the approximate index `match --index` stored (ivf-flat, ivf-pq, hnsw)",
    )
    index_recall: float | None = Field(
        None, description="that index's recall@k against exact, measured by `match`"
    )
    load_seconds: float


class Similar(BaseModel):
    query: Item
    model_key: str
    source: str = Field(
        description="'neighbors' (stored top-k), 'verified' (stored by `match --rerank`), "
        "'exact' (a full scan), 'ann' (the approximate index), 'transformed' (the query "
        "image mirrored or flipped, embedded) or 'text-weighted' (image and banner-text "
        "similarity together)"
    )
    results: list[Hit]


class Suggestion(Item):
    match: str = Field(description="id, name, prefix, word, substring or fuzzy")
    score: float = Field(description="100 for exact kinds, the rapidfuzz score for fuzzy ones")


class Suggestions(BaseModel):
    query: str
    results: list[Suggestion]


class UniqueHit(Hit):
    nearest: Item = Field(description="the item's nearest neighbour; score is their similarity")


class UniquePage(BaseModel):
    model_key: str
    total: int
    offset: int
    limit: int
    results: list[UniqueHit]


class ImageQuery(BaseModel):
    filename: str | None
    sha256: str
    width: int
    height: int
    format: str
    banner_text: str | None = Field(
        default=None, description="with text_weight: the text OCR read on the upload"
    )


class ImageSearch(BaseModel):
    query: ImageQuery
    model_key: str
    results: list[Hit]


class LabelClass(BaseModel):
    index: int = Field(description="the ImageNet class number")
    name: str = Field(description="the class's names, as timm gives them")
    definition: str


class TextHit(Hit):
    score: float = Field(
        description="what the hit is ranked by: for a banner text or name match its score "
        "(0-1), else the image signal's score (cosine for CLIP, probability for labels)"
    )
    matched: list[str] = Field(
        description="the signals that found it: 'banner text', 'name', 'image'"
    )
    signals: dict[str, float] = Field(
        description="each matching signal's own score: banner text and name 0-100, image as above"
    )


class TextSearch(BaseModel):
    query: str
    mode: str | None = Field(
        description="the image signal: 'clip' (cosine to the CLIP text embedding), 'labels' "
        "(the summed probability of the ImageNet classes matching the text: a label search) "
        "or null (a model that cannot search by text)"
    )
    signals: list[str] = Field(description="the signals this collection has")
    image_note: str | None = Field(
        None, description="why the image signal found nothing (e.g. no ImageNet class matches)"
    )
    model_key: str
    classes: list[LabelClass] = Field(description="the classes a label search used")
    unmatched_words: list[str] = Field(
        default_factory=list, description="words of the text no ImageNet class has (ignored)"
    )
    results: list[TextHit]


class Featured(BaseModel):
    source: str = Field(description="'queries' (the catalogue's query set) or 'sample'")
    results: list[Item]


class LegacyApp(BaseModel):
    index: int
    id: int | str = Field(description="an int for Steam appIDs, as the original API gave")
    name: str
    steam_store_url: str | None
    steam_illustration_url: str
    steamdb_url: str | None
    query_url: str


class Message(BaseModel):
    detail: str
