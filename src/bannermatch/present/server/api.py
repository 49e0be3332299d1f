"""The JSON API under ``/api/``: items, similar items, names, images, unique, random."""

from __future__ import annotations

import mimetypes
import os
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from bannermatch.errors import BannermatchError, CollectionError, ImageError
from bannermatch.images import ReadError, decode_bytes, read_source
from bannermatch.present.server import schemas
from bannermatch.present.server.data import ServedCollection
from bannermatch.present.server.transformed import (
    row_texts,
    similar_transformed,
    similar_with_text,
    upload_text,
)
from bannermatch.present.server.views import hits, item, root_path, row_or_404
from bannermatch.query.textweight import nearest_weighted

DEFAULT_N = 10
MAX_N = 100
MAX_SUGGESTIONS = 50
MAX_PAGE = 200
MAX_UPLOAD = 10 * 1024 * 1024
#: an uploaded image may have at most this many pixels (6000 x 4000, a 24-megapixel photo):
#: decoding takes several bytes a pixel, and a small PNG can declare 64 megapixels
MAX_UPLOAD_PIXELS = 24_000_000
#: uploads decoded at once; the others wait their turn, so memory stays bounded
UPLOAD_SLOTS = 2
IMAGE_PATH = "/api/search/image"
CACHE_CONTROL = "public, max-age=86400"
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Message, "description": "no such item"}
}
TEXT_WEIGHT_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": schemas.Message, "description": "text_weight: the collection has no text"}
}

N = Annotated[int, Query(ge=1, le=MAX_N, description=f"how many results (1 to {MAX_N})")]
Flag = Annotated[int, Query(ge=0, le=1, description="1: transform the query item's image")]
TextWeight = Annotated[
    float, Query(ge=0, le=1, description="weight of the banner-text similarity (0: image only)")
]


def media_type(name: str, head: bytes) -> str:
    """The image's MIME type from its first bytes, else from its name."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def build_router(served: ServedCollection, *, max_upload: int = MAX_UPLOAD) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"])
    _item_routes(router, served)  # before the others: /items/{id:path} takes any path
    _name_routes(router, served)
    _image_search_routes(router, served, max_upload)
    _text_search_routes(router, served)
    _browse_routes(router, served)
    return router


def _item_routes(router: APIRouter, served: ServedCollection) -> None:
    @router.get("/info", response_model=schemas.Info)
    async def info() -> dict[str, Any]:
        """The collection and model this server answers for."""
        return info_of(served)

    @router.get(
        "/items/{item_id:path}/similar",
        response_model=schemas.Similar,
        responses=NOT_FOUND | TEXT_WEIGHT_ERRORS,
    )
    async def similar(
        item_id: str,
        request: Request,
        n: N = DEFAULT_N,
        mirror: Flag = 0,
        flip: Flag = 0,
        text_weight: TextWeight = 0.0,
    ) -> dict[str, Any]:
        """The ``n`` items whose images look most like this item's, most similar first.

        From the stored neighbours when ``n`` is at most the stored k, else the approximate
        index `match --index` stored, else an exact scan. With ``mirror=1`` / ``flip=1``
        the item's image is mirrored / flipped and embedded on the fly (``source:
        transformed``), which weakens the pull of the text on it. ``text_weight=W`` ranks
        by ``(1 - W) * image + W * banner-text`` similarity (``source: text-weighted``).
        """
        row = row_or_404(served, item_id)
        rows, scores, source = await similar_rows(served, row, n, mirror, flip, text_weight)
        root = root_path(request)
        results = hits(served, rows.tolist(), scores, root)
        if source == "verified" and served.verified is not None:
            for hit, extra in zip(results, served.verified.hit_fields(row, n), strict=False):
                hit |= extra
        return {
            "query": item(served, row, root),
            "model_key": served.data.key,
            "source": source,
            "results": results,
        }

    @router.get(
        "/items/{item_id:path}/image",
        response_class=FileResponse,
        responses={
            200: {"content": {"image/*": {}}, "description": "the image file"},
            304: {"description": "not modified (If-None-Match)"},
            **NOT_FOUND,
        },
    )
    def image(item_id: str, request: Request) -> Response:
        """The item's image file, from the collection's catalogue; cacheable."""
        return image_response(served, item_id, request)

    @router.get("/items/{item_id:path}", response_model=schemas.Item, responses=NOT_FOUND)
    async def get_item(item_id: str, request: Request) -> dict[str, Any]:
        """One item by id."""
        return item(served, row_or_404(served, item_id), root_path(request))


def _name_routes(router: APIRouter, served: ServedCollection) -> None:
    @router.get("/names", response_model=schemas.Suggestions)
    def names(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=200, description="name or id")],
        limit: Annotated[int, Query(ge=1, le=MAX_SUGGESTIONS)] = 10,
    ) -> dict[str, Any]:
        """Autocomplete: the id itself, then names starting with ``q``, names with a word
        starting with ``q``, names containing it, then close (fuzzy) matches."""
        root = root_path(request)
        results = [
            item(served, s.row, root) | {"match": s.match, "score": s.score}
            for s in served.name_index.search(q, limit)
        ]
        return {"query": q, "results": results}


def _image_search_routes(router: APIRouter, served: ServedCollection, max_upload: int) -> None:
    upload_slots = threading.BoundedSemaphore(UPLOAD_SLOTS)

    @router.post(
        "/search/image",
        response_model=schemas.ImageSearch,
        responses={
            400: {"model": schemas.Message, "description": "a malformed multipart body"},
            409: {
                "model": schemas.Message,
                "description": "text_weight: the collection has no banner text, or the server "
                "cannot read text (no 'ocr' extra)",
            },
            413: {"model": schemas.Message, "description": "upload over the size cap"},
            415: {"model": schemas.Message, "description": "not an image type"},
            422: {"description": "not a decodable image (the reason), or bad parameters"},
        },
    )
    def search_image(
        request: Request,
        file: Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, ...)")],
        n: N = DEFAULT_N,
        text_weight: TextWeight = 0.0,
    ) -> dict[str, Any]:
        """The ``n`` items that look most like an uploaded image (not in the collection).

        ``text_weight=W`` ranks by ``(1 - W) * image + W * banner-text`` similarity, as for
        an item: the upload's text is read now by OCR (``query.banner_text``)."""
        query, rows, scores = upload_neighbours(
            served, file, max_upload, upload_slots, n, text_weight
        )
        return {
            "query": query,
            "model_key": served.data.key,
            "results": hits(served, rows.tolist(), scores, root_path(request)),
        }


def _text_search_routes(router: APIRouter, served: ServedCollection) -> None:
    @router.get(
        "/search/text",
        response_model=schemas.TextSearch,
        responses={
            404: {"model": schemas.Message, "description": "text search is not available"},
            409: {"model": schemas.Message, "description": "the collection needs re-indexing"},
            422: {"description": "no ImageNet class matches the text, or bad parameters"},
        },
    )
    def search_text(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=300, description="what to look for")],
        n: N = DEFAULT_N,
    ) -> dict[str, Any]:
        """Images matching a text by the text read on the banners (``index --ocr``), their
        names, and the image: CLIP text-to-image search (``mode: clip``), or for an ImageNet
        model a label search (``mode: labels``, with the matched ``classes``). Banner-text
        and name matches come first; each hit says which signals found it."""
        if not served.can_search_words:
            raise HTTPException(404, f"{served.data.key} cannot search by text")
        try:
            found = served.search_words(q, n)
        except CollectionError:
            raise
        except BannermatchError as exc:
            raise HTTPException(422, str(exc)) from None
        root = root_path(request)
        return {
            "query": q,
            "mode": found.image_mode,
            "model_key": served.data.key,
            "signals": found.signals,
            "image_note": found.image_note,
            "classes": [c.to_dict() for c in found.classes],
            "unmatched_words": found.unmatched,
            "results": [
                item(served, r.row, root)
                | {"rank": n, "score": round(r.score, 4), "matched": list(r.signals)}
                | {"signals": r.signals}
                for n, r in enumerate(found.rows, start=1)
            ],
        }


def _browse_routes(router: APIRouter, served: ServedCollection) -> None:
    @router.get("/unique", response_model=schemas.UniquePage)
    def unique(
        request: Request,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """Items least like any other (by similarity to their nearest neighbour), paged."""
        order = served.unique_rows()
        page = order[offset : offset + limit]
        root = root_path(request)
        assert served.scores is not None and served.neighbors is not None
        first = np.asarray(served.scores[page, 0], np.float32) if len(page) else np.zeros(0)
        nearest = served.neighbors[page, 0].tolist() if len(page) else []
        results = [
            h | {"rank": offset + h["rank"], "nearest": item(served, int(nb), root)}
            for h, nb in zip(hits(served, page.tolist(), first, root), nearest, strict=True)
        ]
        return {
            "model_key": served.data.key,
            "total": len(order),
            "offset": offset,
            "limit": limit,
            "results": results,
        }

    @router.get("/random", response_model=schemas.Item)
    async def random_item(
        request: Request,
        featured: Annotated[bool, Query(description="pick among the featured items")] = False,
    ) -> dict[str, Any]:
        """A random item (for "surprise me")."""
        import random

        if featured and served.featured_rows:
            row = random.choice(served.featured_rows)
        else:
            row = served.random_row()
        return item(served, row, root_path(request))

    @router.get("/featured", response_model=schemas.Featured)
    async def featured(request: Request) -> dict[str, Any]:
        """The catalogue's query set when it has one, else an even sample of the items."""
        root = root_path(request)
        return {
            "source": served.featured_from,
            "results": [item(served, r, root) for r in served.featured_rows],
        }


def image_response(served: ServedCollection, item_id: str, request: Request) -> Response:
    """The item's image file (or tar member), with an ETag; 404 with the reason."""
    row = row_or_404(served, item_id)
    source = served.image_source(row)
    if source is None:
        raise HTTPException(404, f"item {item_id!r} has no image file")
    headers = {"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if served.is_tar_member(source):
        try:
            data = read_source(source)
        except ReadError as exc:
            raise HTTPException(404, f"the image of {item_id!r} is unreadable: {exc}") from None
        return Response(data, media_type=media_type(source, data[:16]), headers=headers)
    path = Path(source)
    try:
        st = path.stat()
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        raise HTTPException(404, f"the image file of {item_id!r} is missing") from None
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    headers["ETag"] = etag
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return FileResponse(
        path, media_type=media_type(path.name, head), headers=headers, stat_result=st
    )


def upload_neighbours(
    served: ServedCollection,
    file: UploadFile,
    max_upload: int,
    slots: threading.BoundedSemaphore,
    n: int,
    weight: float,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """What is known of an upload and its ``n`` nearest rows: by the image, or with a text
    ``weight`` by image and banner text (its text read now, holding one of the ``slots``)."""
    texts = row_texts(served) if weight else None  # a 409 before any work
    with slots:
        vector, query = embed_upload(served, file, max_upload, read_text=texts is not None)
    if texts is None:
        rows, scores = served.nearest_to(vector, n)
    else:
        text = query["banner_text"]
        rows, scores = nearest_weighted(served.data, texts, vector, n, weight, text=text)
    return query, rows, scores


def embed_upload(
    served: ServedCollection, file: UploadFile, max_upload: int, *, read_text: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """The vector of an uploaded image and what is known of it (with ``read_text``, its
    banner text too, read by OCR); 409/413/415/422 with the reason. Call it holding an
    upload slot: the decoded pixels are freed before it returns."""
    ctype = (file.content_type or "").split(";")[0].strip().lower()
    if not ctype.startswith("image/"):
        raise HTTPException(415, f"expected an image upload, got {ctype or 'no type'}")
    data = file.file.read(max_upload + 1)
    if len(data) > max_upload:
        raise HTTPException(413, f"upload too large: the limit is {max_upload:,} bytes")
    try:
        decoded = served.decode(data, MAX_UPLOAD_PIXELS)
    except ImageError as exc:
        raise HTTPException(422, f"cannot use this image: {exc}") from None
    query = {
        "filename": os.path.basename(file.filename or "") or None,
        "sha256": decoded.sha256,
        "width": decoded.width,
        "height": decoded.height,
        "format": decoded.format,
    }
    if not read_text:
        return served.embed(decoded), query
    # read as index --ocr reads: at full size, also where a JPEG draft reduced it for the
    # model; once, since an art-only key masks the same boxes
    full = decoded if decoded.full_size else decode_bytes(data, max_pixels=MAX_UPLOAD_PIXELS)
    text = upload_text(served, full)
    return served.embed(decoded, text), query | {"banner_text": text.text}


def info_of(served: ServedCollection) -> dict[str, Any]:
    """``/api/info``: the collection, its model, and what the server can answer."""
    manifest = served.data.manifest
    return {
        "name": served.root.resolve().name,
        "count": served.count,
        "model_key": served.data.key,
        "model": str(manifest.get("model", "")),
        "dim": int(manifest.get("dim", 0)),
        "stored_k": served.stored_k,
        "max_n": MAX_N,
        "featured_from": served.featured_from,
        "text_search": served.can_search_words,
        "text_mode": served.text.mode,
        "banner_text": served.banner_texts is not None,
        "index": served.search.ann.params.kind if served.search.ann else "exact",
        "index_recall": served.ann_recall,
        "load_seconds": round(served.load_seconds, 3),
    }


async def similar_rows(
    served: ServedCollection, row: int, n: int, mirror: int, flip: int, text_weight: float
) -> tuple[Any, Any, str]:
    """An item's ``n`` neighbours and where they came from: text-weighted, transformed,
    stored (``verified`` or ``neighbors``), approximate or exact. The slow ones run in
    the thread pool."""
    if text_weight:
        rows, scores = await run_in_threadpool(
            similar_with_text, served, row, n, text_weight, bool(mirror), bool(flip)
        )
        return rows, scores, "text-weighted"
    if mirror or flip:
        rows, scores = await run_in_threadpool(
            similar_transformed, served, row, n, bool(mirror), bool(flip)
        )
        return rows, scores, "transformed"
    if n <= served.stored_k:
        return served.similar(row, n)
    return await run_in_threadpool(served.similar, row, n)
