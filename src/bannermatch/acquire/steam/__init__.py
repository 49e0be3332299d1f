"""Steam: app catalogues (SteamSpy, the Steam Web API, snapshot files) and banner downloads.

    from bannermatch.acquire.steam import fetch_catalog, download, fetch_banner
    fetch_catalog("my-coll", "steamspy")      # app ids and names, resumable
    download("my-coll", concurrency=16)       # banners into my-coll/images/
    data = fetch_banner(620)                  # one banner as bytes

Base URLs come from ``BANNERMATCH_STEAMSPY_URL``, ``BANNERMATCH_STEAM_API_URL``
and ``BANNERMATCH_STEAM_CDN`` (or the functions' arguments).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fetch_catalog": "catalog",
    "CatalogResult": "catalog",
    "download": "download",
    "fetch_banner": "download",
    "BannerNotFound": "download",
    "DownloadResult": "download",
    "load_snapshot": "snapshots",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'bannermatch.acquire.steam' has no attribute {name!r}")
