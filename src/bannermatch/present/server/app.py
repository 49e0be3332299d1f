"""``create_app``: the FastAPI application over one collection (API, original API, page)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from bannermatch import __version__
from bannermatch.errors import BannermatchError
from bannermatch.present.server import api, legacy, maproutes
from bannermatch.present.server.data import ServedCollection
from bannermatch.present.server.ratelimit import Rate, RateLimitMiddleware
from bannermatch.present.server.uploads import BodyLimitMiddleware

STATIC = Path(__file__).with_name("static")
#: paths the rate limit applies to (image files and the page itself are not limited)
LIMITED = (
    "/api/",
    *("/app", "/similar_apps", "/matches", "/render", "/store", "/index", "/id", "/name"),
)

DESCRIPTION = """
Find the items of a collection (Steam games or any folder of images) whose images look
alike. Items are addressed by id; `/api/names` turns typed text into ids.
The routes tagged *original API* keep the first version's shapes for existing clients.
"""


def _is_image_file(path: str) -> bool:
    return path.startswith("/api/items/") and path.endswith("/image")


def create_app(
    collection: ServedCollection | str | os.PathLike[str],
    model: str | None = None,
    *,
    rate_limit: Rate | str | None = None,
    cors: Sequence[str] = (),
    max_upload: int = api.MAX_UPLOAD,
) -> FastAPI:
    """The app serving ``collection`` (a folder, or one already opened).

    ``rate_limit``: per-client limit of the API routes (``"120/min"``; None: off).
    ``cors``: origins allowed to call the API from other sites (``"*"``: any).
    """
    served = (
        collection
        if isinstance(collection, ServedCollection)
        else ServedCollection.open(collection, model)
    )
    rate = Rate.parse(rate_limit) if isinstance(rate_limit, str) else rate_limit
    app = FastAPI(title="bannermatch", version=__version__, description=DESCRIPTION)
    app.state.served = served
    app.state.rate_limit = rate
    app.include_router(api.build_router(served, max_upload=max_upload))
    app.include_router(maproutes.build_router(served))
    app.include_router(legacy.build_router(served))

    @app.exception_handler(BannermatchError)
    async def bannermatch_error(request: Request, exc: BannermatchError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # added innermost first: CORS wraps everything, so even a 429 carries its headers
    app.add_middleware(BodyLimitMiddleware, limit=max_upload, paths=(api.IMAGE_PATH,))
    if rate is not None:
        app.add_middleware(RateLimitMiddleware, rate=rate, prefixes=LIMITED, exempt=_is_image_file)
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            max_age=600,
        )
    return app
