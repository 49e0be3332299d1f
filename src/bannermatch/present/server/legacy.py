"""The routes of the original API, kept for existing clients (docs/api.md, "Original API").

Each app is ``{index, id, name, steam_store_url, steam_illustration_url, steamdb_url,
query_url}``; lists and single values are plain JSON (no envelope), as the original
Flask app gave them. As in the original, a similar-apps list starts with the app itself
(its own best match) followed by its ``n - 1`` nearest neighbours; ``n`` is capped at
the API's maximum rather than refused.

Every route that lists neighbours (``similar_apps``, ``similar_apps_from_id``,
``similar_apps_from_name``, ``matches``, ``render``, ``store``) also answers under the
suffixes ``_x`` (the query image mirrored), ``_y`` (flipped upside down) and ``_xy``
(both), and takes ``mirror=1`` / ``flip=1``: see :mod:`.transformed`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from bannermatch.present.server import schemas
from bannermatch.present.server.api import DEFAULT_N, MAX_N
from bannermatch.present.server.data import ServedCollection
from bannermatch.present.server.legacy_pages import grid_page
from bannermatch.present.server.transformed import SUFFIXES, similar_transformed
from bannermatch.present.server.views import legacy_app, legacy_id, row_or_404

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Message, "description": "no such app"}
}
#: a page's 404 is JSON like every other error (the page itself is HTML)
HTML_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "no such app",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}},
    }
}
Id = Annotated[str, Query(min_length=1, max_length=200, description="a Steam appID or item id")]
Name = Annotated[str, Query(min_length=1, max_length=200, description="an app name (fuzzy)")]
Index = Annotated[int, Query(ge=0, description="the app's row index")]
N = Annotated[int, Query(ge=1, description=f"list length, the app included (capped at {MAX_N})")]
Flag = Annotated[int, Query(ge=0, le=1, description="1: transform the query image")]


class Apps:
    """The lookups every original route shares: rows by index or name (404 otherwise),
    an app's JSON, and its neighbours' rows."""

    def __init__(self, served: ServedCollection) -> None:
        self.served = served

    def by_name(self, name: str) -> int:
        found = self.served.row_by_name(name)
        if found is None:
            raise HTTPException(404, f"no app named like {name!r}")
        return found[0]

    def by_index(self, index: int) -> int:
        if index >= self.served.count:
            raise HTTPException(404, f"no app with index {index} (there are {self.served.count})")
        return index

    def by_id(self, item_id: str) -> int:
        return row_or_404(self.served, item_id)

    async def match_rows(self, row: int, n: int, mirror: bool, flip: bool) -> list[int]:
        """The app's row, then the rows of its ``n - 1`` nearest neighbours."""
        served, k = self.served, min(n, MAX_N) - 1
        if k < 1:
            return [row]
        if mirror or flip:
            rows, _ = await run_in_threadpool(similar_transformed, served, row, k, mirror, flip)
        elif k <= served.stored_k:
            rows, _, _ = served.similar(row, k)
        else:
            rows, _, _ = await run_in_threadpool(served.similar, row, k)
        return [row, *(int(r) for r in rows.tolist())]

    def app_of(self, row: int, request: Request) -> dict[str, Any]:
        return legacy_app(self.served, row, request)

    def value(self, item_id: str) -> int | str:
        row = self.served.row(item_id)
        return item_id if row is None else legacy_id(self.served, row)


def build_router(served: ServedCollection) -> APIRouter:
    router = APIRouter(tags=["original API"])
    apps = Apps(served)
    _value_routes(router, apps)
    # neighbour lists, each with its _x, _y, _xy variants
    for suffix, (mx, fy) in SUFFIXES.items():
        _add_lists(router, suffix, mx, fy, apps)
        _add_pages(router, suffix, mx, fy, apps)
    return router


def _value_routes(router: APIRouter, apps: Apps) -> None:
    """Lists and single values: indices, ids, names, one app."""
    served = apps.served

    @router.get("/index", response_model=list[int])
    async def indices() -> list[int]:
        """Every app's index."""
        return list(range(served.count))

    @router.get("/id", response_model=list[int | str])
    async def ids() -> list[int | str]:
        """Every app's id, in index order (ints for Steam appIDs)."""
        return [apps.value(i) for i in served.ids]

    @router.get("/name", response_model=list[str])
    async def names() -> list[str]:
        """Every app's name, in index order."""
        return list(served.names)

    @router.get("/app", response_model=schemas.LegacyApp, responses=NOT_FOUND)
    async def app(index: Index, request: Request) -> dict[str, Any]:
        """The app at this index."""
        return apps.app_of(apps.by_index(index), request)

    @router.get("/index_from_id", response_model=int, responses=NOT_FOUND)
    async def index_from_id(id: Id) -> int:
        return apps.by_id(id)

    @router.get("/name_from_id", response_model=str, responses=NOT_FOUND)
    async def name_from_id(id: Id) -> str:
        return served.names[apps.by_id(id)]

    @router.get("/index_from_name", response_model=int, responses=NOT_FOUND)
    def index_from_name(name: Name) -> int:
        return apps.by_name(name)

    @router.get("/id_from_name", response_model=int | str, responses=NOT_FOUND)
    def id_from_name(name: Name) -> int | str:
        return apps.value(served.ids[apps.by_name(name)])

    @router.get("/app_from_id", response_model=schemas.LegacyApp, responses=NOT_FOUND)
    async def app_from_id(id: Id, request: Request) -> dict[str, Any]:
        """The app with this id."""
        return apps.app_of(apps.by_id(id), request)

    @router.get("/app_from_name", response_model=schemas.LegacyApp, responses=NOT_FOUND)
    def app_from_name(name: Name, request: Request) -> dict[str, Any]:
        """The app whose name matches best (exact, prefix, word, then fuzzy)."""
        return apps.app_of(apps.by_name(name), request)


def _add_lists(
    router: APIRouter,
    suffix: str,
    mx: bool,
    fy: bool,
    apps: Apps,
) -> None:
    what = {"": "", "_x": " (query mirrored)", "_y": " (query flipped)", "_xy": " (both)"}[suffix]
    listed: dict[str, Any] = {"response_model": list[schemas.LegacyApp], "responses": NOT_FOUND}
    match_rows, app_of = apps.match_rows, apps.app_of

    @router.get(f"/matches{suffix}", response_model=list[int], responses=NOT_FOUND)
    async def matches(
        index: Index, n: N = DEFAULT_N, mirror: Flag = 0, flip: Flag = 0
    ) -> list[int]:
        return await match_rows(apps.by_index(index), n, mx or bool(mirror), fy or bool(flip))

    @router.get(f"/similar_apps{suffix}", **listed)
    async def similar_apps(
        index: Index, request: Request, n: N = DEFAULT_N, mirror: Flag = 0, flip: Flag = 0
    ) -> list[dict[str, Any]]:
        rows = await match_rows(apps.by_index(index), n, mx or bool(mirror), fy or bool(flip))
        return [app_of(r, request) for r in rows]

    @router.get(f"/similar_apps_from_id{suffix}", **listed)
    async def similar_apps_from_id(
        id: Id, request: Request, n: N = DEFAULT_N, mirror: Flag = 0, flip: Flag = 0
    ) -> list[dict[str, Any]]:
        rows = await match_rows(apps.by_id(id), n, mx or bool(mirror), fy or bool(flip))
        return [app_of(r, request) for r in rows]

    @router.get(f"/similar_apps_from_name{suffix}", **listed)
    async def similar_apps_from_name(
        name: Name, request: Request, n: N = DEFAULT_N, mirror: Flag = 0, flip: Flag = 0
    ) -> list[dict[str, Any]]:
        row = await run_in_threadpool(apps.by_name, name)
        rows = await match_rows(row, n, mx or bool(mirror), fy or bool(flip))
        return [app_of(r, request) for r in rows]

    for endpoint in (matches, similar_apps, similar_apps_from_id, similar_apps_from_name):
        endpoint.__doc__ = f"The app, then the apps whose banners look most like it{what}."


def _add_pages(router: APIRouter, suffix: str, mx: bool, fy: bool, apps: Apps) -> None:
    for kind in ("render", "store"):
        pages = _page_endpoints(kind, suffix, mx, fy, apps)
        links = "its own result page" if kind == "render" else "its Steam store page"
        base = f"/{kind}{suffix}"
        for path, page in zip((base, base + "/{id}", base + "/{id}/{n}"), pages, strict=True):
            router.add_api_route(
                path,
                page,
                methods=["GET"],
                response_class=HTMLResponse,
                responses=HTML_NOT_FOUND,
                summary=f"HTML grid of similar banners ({kind}{suffix})",
                description=f"The query banner and its neighbours, each linking to {links}. "
                "Without an id: a random app.",
            )


PathN = Annotated[int, Path(ge=1, description=f"grid length, the app included (capped at {MAX_N})")]


def _page_endpoints(
    kind: str, suffix: str, mx: bool, fy: bool, apps: Apps
) -> tuple[Callable[..., Awaitable[HTMLResponse]], ...]:
    """The endpoints of ``/{kind}{suffix}``, ``.../{id}`` and ``.../{id}/{n}``."""

    async def page(
        request: Request, id: str | None, n: int, mirror: int, flip: int
    ) -> HTMLResponse:
        row = apps.served.random_row() if id is None else apps.by_id(id)
        rows = await apps.match_rows(row, n, mx or bool(mirror), fy or bool(flip))
        return HTMLResponse(grid_page(apps.served, rows, request, kind, suffix, min(n, MAX_N)))

    async def random_page(
        request: Request, n: N = DEFAULT_N, mirror: Flag = 0, flip: Flag = 0
    ) -> HTMLResponse:
        return await page(request, None, n, mirror, flip)

    async def id_page(
        request: Request, id: str, n: N = DEFAULT_N, mirror: Flag = 0, flip: Flag = 0
    ) -> HTMLResponse:
        return await page(request, id, n, mirror, flip)

    async def id_n_page(
        request: Request, id: str, n: PathN, mirror: Flag = 0, flip: Flag = 0
    ) -> HTMLResponse:
        return await page(request, id, n, mirror, flip)

    return random_page, id_page, id_n_page
