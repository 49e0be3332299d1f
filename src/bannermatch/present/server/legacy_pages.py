"""The original API's HTML result pages (``/render/<id>/<n>``, ``/store/<id>/<n>``),
from the Jinja2 template ``templates/legacy_grid.html``."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request

from bannermatch.acquire.steam.endpoints import store_page_url
from bannermatch.present.server.data import ServedCollection
from bannermatch.present.server.views import image_path, root_path
from bannermatch.present.templating import render


def grid_page(
    served: ServedCollection, rows: list[int], request: Request, kind: str, suffix: str, n: int
) -> str:
    """The query (``rows[0]``) and its neighbours; each banner links to its own page of
    the same kind (``render``) or to its Steam store page (``store``; other items keep
    linking to their own page)."""
    root = root_path(request)

    def entry(row: int) -> dict[str, str]:
        item_id = served.ids[row]
        own = f"{root}/{kind}{suffix}/{quote(item_id, safe='')}/{n}"
        appid = served.steam_ids[row]
        store = store_page_url(appid) if appid else None
        return {
            "id": item_id,
            "name": served.names[row],
            "image": root + image_path(item_id),
            "href": store if kind == "store" and store else own,
        }

    query, *neighbours = (entry(r) for r in rows)
    return render(
        "legacy_grid.html",
        query=query,
        neighbours=neighbours,
        kind=kind,
        suffix=suffix,
        n=n,
        root=root,
    )
