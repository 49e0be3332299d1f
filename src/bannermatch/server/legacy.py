"""The routes of the original API, kept for existing clients.

Each app is ``{index, id, name, steam_store_url, steam_illustration_url, steamdb_url,
query_url}``. As in the original, a similar-apps list starts with the app itself
(its own best match) followed by its ``n - 1`` nearest neighbours; ``n`` is capped
at the API's maximum rather than refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool

from . import schemas
from .api import DEFAULT_N, MAX_N
from .data import ServedCollection
from .views import legacy_app, row_or_404

NOT_FOUND = {404: {"model": schemas.Message, "description": "no such app"}}
Id = Annotated[str, Query(min_length=1, max_length=200, description="a Steam appID or item id")]
Name = Annotated[str, Query(min_length=1, max_length=200, description="an app name (fuzzy)")]
N = Annotated[int, Query(ge=1, description=f"list length, the app included (capped at {MAX_N})")]


def build_router(served: ServedCollection) -> APIRouter:
    router = APIRouter(tags=["original API"])

    def by_name(name: str) -> int:
        found = served.row_by_name(name)
        if found is None:
            raise HTTPException(404, f"no app named like {name!r}")
        return found[0]

    async def similar_apps(row: int, n: int, request: Request) -> list[dict[str, Any]]:
        n = min(n, MAX_N)
        apps = [legacy_app(served, row, request)]
        if n > 1:
            k = n - 1
            if k <= served.stored_k:
                rows, _, _ = served.similar(row, k)
            else:
                rows, _, _ = await run_in_threadpool(served.similar, row, k)
            apps += [legacy_app(served, int(r), request) for r in rows.tolist()]
        return apps

    @router.get("/app_from_id", response_model=schemas.LegacyApp, responses=NOT_FOUND)
    async def app_from_id(id: Id, request: Request) -> dict[str, Any]:
        """The app with this id."""
        return legacy_app(served, row_or_404(served, id), request)

    @router.get(
        "/similar_apps_from_id", response_model=list[schemas.LegacyApp], responses=NOT_FOUND
    )
    async def similar_apps_from_id(
        id: Id, request: Request, n: N = DEFAULT_N
    ) -> list[dict[str, Any]]:
        """The app, then the apps whose banners look most like it."""
        return await similar_apps(row_or_404(served, id), n, request)

    @router.get("/app_from_name", response_model=schemas.LegacyApp, responses=NOT_FOUND)
    def app_from_name(name: Name, request: Request) -> dict[str, Any]:
        """The app whose name matches best (exact, prefix, word, then fuzzy)."""
        return legacy_app(served, by_name(name), request)

    @router.get(
        "/similar_apps_from_name", response_model=list[schemas.LegacyApp], responses=NOT_FOUND
    )
    async def similar_apps_from_name(
        name: Name, request: Request, n: N = DEFAULT_N
    ) -> list[dict[str, Any]]:
        """The best-matching app, then the apps whose banners look most like it."""
        row = await run_in_threadpool(by_name, name)
        return await similar_apps(row, n, request)

    return router
