"""``/api/map``: the map of the collection (:mod:`bannermatch.present.maps`) for the page.

Two shapes: JSON pages of points (``/api/map?offset=&limit=``), and one compact binary
(``/api/map.bin``) that the page draws 100,000 points from without parsing JSON:
``count`` little-endian float32 pairs (x, y in [0, 1]), then ``count`` int32 near-duplicate
group numbers (-1: none), then ``count`` int32 ranks among the most unique items (-1:
not among the first :data:`UNIQUE_MARKED`). The map is computed on the first request
when the collection has none stored (and stored then), once per server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from bannermatch.errors import BannermatchError
from bannermatch.present.maps import collection_map, map_info
from bannermatch.present.server.data import ServedCollection
from bannermatch.query.match import load_duplicates

UNIQUE_MARKED = 100  # at most; and at most a twentieth of the items
MAX_MAP_PAGE = 20_000


@dataclass
class MapData:
    points: np.ndarray  # float32 (N, 2)
    groups: np.ndarray  # int32 (N,)
    unique: np.ndarray  # int32 (N,)
    method: str


def load_map(served: ServedCollection) -> MapData:
    if served.count < 1:
        raise BannermatchError("the collection is empty: nothing to map")
    points = collection_map(served.data)
    groups = np.full(served.count, -1, np.int32)
    for number, group in enumerate(load_duplicates(served.data)):
        for item_id in group:
            row = served.row(item_id)
            if row is not None:
                groups[row] = number
    unique = np.full(served.count, -1, np.int32)
    if served.neighbors is not None and served.stored_k > 0:
        top = served.unique_rows()[: min(UNIQUE_MARKED, max(1, served.count // 20))]
        unique[top] = np.arange(1, len(top) + 1, dtype=np.int32)
    method = str((map_info(served.data) or {}).get("method", ""))
    return MapData(points, groups, unique, method)


def build_router(served: ServedCollection) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"])
    lock = threading.Lock()
    cache: list[MapData] = []

    def get() -> MapData:
        with lock:  # one computation, however many requests wait for it
            if not cache:
                cache.append(load_map(served))
            return cache[0]

    async def the_map() -> MapData:
        return cache[0] if cache else await run_in_threadpool(get)

    @router.get("/map")
    async def map_page(
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_MAP_PAGE)] = 1000,
    ) -> dict[str, Any]:
        """Points of the map, ``limit`` from ``offset``: id, name, x, y in [0, 1], the
        near-duplicate group (or null) and the rank among the most unique (or null)."""
        m = await the_map()
        stop = min(served.count, offset + limit)
        points = [
            {
                "index": row,
                "id": served.ids[row],
                "name": served.names[row],
                "x": round(float(m.points[row, 0]), 5),
                "y": round(float(m.points[row, 1]), 5),
                "group": int(m.groups[row]) if m.groups[row] >= 0 else None,
                "unique_rank": int(m.unique[row]) if m.unique[row] >= 0 else None,
            }
            for row in range(offset, stop)
        ]
        return {"count": served.count, "offset": offset, "method": m.method, "points": points}

    @router.get("/map.bin", response_class=Response)
    async def map_binary() -> Response:
        """The whole map as little-endian float32 (x, y) pairs, then int32 groups, then
        int32 unique ranks; the count is in ``X-Map-Count``."""
        m = await the_map()
        body = (
            m.points.astype("<f4").tobytes()
            + m.groups.astype("<i4").tobytes()
            + m.unique.astype("<i4").tobytes()
        )
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"X-Map-Count": str(served.count), "Cache-Control": "no-cache"},
        )

    return router
