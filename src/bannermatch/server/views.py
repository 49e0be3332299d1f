"""Rows of a served collection as the JSON the API returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import HTTPException, Request

from ..matching import shown_score
from ..steam.endpoints import steamdb_url, store_page_url
from .data import ServedCollection


def root_path(request: Request) -> str:
    """The path prefix the app is mounted under (empty when served at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def image_path(item_id: str) -> str:
    return f"/api/items/{quote(item_id, safe='')}/image"


def item(served: ServedCollection, row: int, root: str = "") -> dict[str, Any]:
    item_id = served.ids[row]
    appid = served.steam_ids[row]
    return {
        "id": item_id,
        "index": row,
        "name": served.names[row],
        "image_url": root + image_path(item_id),
        "store_url": store_page_url(appid) if appid else None,
        "steamdb_url": steamdb_url(appid) if appid else None,
        "metadata": served.metadata[row],
        "banner_text": served.banner_texts[row] if served.banner_texts is not None else None,
    }


def hits(
    served: ServedCollection, rows: Iterable[int], scores: np.ndarray, root: str = ""
) -> list[dict[str, Any]]:
    return [
        item(served, int(r), root) | {"rank": rank, "score": shown_score(s)}
        for rank, (r, s) in enumerate(zip(rows, scores.tolist(), strict=True), start=1)
    ]


def row_or_404(served: ServedCollection, item_id: str) -> int:
    row = served.row(item_id)
    if row is None:
        raise HTTPException(404, f"no item with id {item_id!r} in this collection")
    return row


def legacy_app(served: ServedCollection, row: int, request: Request) -> dict[str, Any]:
    """An app as the original API gave it: ``{index, id, name, steam_store_url, ...}``."""
    item_id = served.ids[row]
    appid = served.steam_ids[row]
    base = str(request.base_url).rstrip("/")
    url = served.urls[row]
    illustration = url if url and url.startswith(("http://", "https://")) else None
    return {
        "index": row,
        "id": legacy_id(served, row),
        "name": served.names[row],
        "steam_store_url": store_page_url(appid) if appid else None,
        "steam_illustration_url": illustration or base + image_path(item_id),
        "steamdb_url": steamdb_url(appid) if appid else None,
        "query_url": f"{base}/similar_apps_from_id?id={quote(item_id, safe='')}",
    }


def legacy_id(served: ServedCollection, row: int) -> int | str:
    """An id as the original API wrote it: the Steam app id (an int) for Steam apps."""
    appid = served.steam_ids[row]
    return int(appid) if appid else served.ids[row]
