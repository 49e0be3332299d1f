"""``bannermatch steam catalog``: Steam app ids and names into a collection's catalogue.

Sources: SteamSpy (``request=all`` pages, once a minute, resumable by page),
the Steam Web API (``IStoreService/GetAppList``, resumable by ``last_appid``),
or a snapshot file (:mod:`bannermatch.acquire.steam.snapshots`). New apps become
``pending`` items; an app already in the catalogue keeps its status and file
and only has its name updated. The query set is the popular games (SteamSpy's
``top100in2weeks`` or a top-100 snapshot) plus the games of the original notebooks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bannermatch.acquire.steam import defaults
from bannermatch.acquire.steam.client import ServiceClient
from bannermatch.acquire.steam.endpoints import (
    API_KEY_ENV,
    API_KEY_PAGE,
    CURATED_GAMES,
    STEAM_API,
    STEAMSPY,
    redact,
)
from bannermatch.acquire.steam.lock import exclusive
from bannermatch.acquire.steam.ratelimit import IntervalGate
from bannermatch.acquire.steam.retry import RetryPolicy
from bannermatch.acquire.steam.snapshots import (
    App,
    Snapshot,
    load_snapshot,
    steamspy_apps,
    webapi_apps,
)
from bannermatch.errors import BannermatchError
from bannermatch.store.catalog import Catalog, Item, app_meta
from bannermatch.store.collection import Collection

#: SteamSpy allows one ``request=all`` a minute (defaults.STEAMSPY_ALL_INTERVAL) and one
#: other request a second
STEAMSPY_OTHER_INTERVAL = 1.0

# catalogue meta keys (resume state)
META_SPY_PAGE = "steam.steamspy.next_page"
META_SPY_DONE = "steam.steamspy.complete"
META_SPY_LAST = "steam.steamspy.last_all_request"  # wall-clock time
META_API_LAST = "steam.webapi.last_appid"
META_API_DONE = "steam.webapi.complete"


log = logging.getLogger(__name__)


@dataclass
class CatalogResult:
    collection: str
    source: str
    fetched: int = 0  # apps read from the source in this run
    added: int = 0
    renamed: int = 0
    total: int = 0  # items in the catalogue afterwards
    pages: int = 0
    complete: bool = False
    queries: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "source": self.source,
            "fetched": self.fetched,
            "added": self.added,
            "renamed": self.renamed,
            "total": self.total,
            "pages": self.pages,
            "complete": self.complete,
            "queries": self.queries,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        state = "complete" if self.complete else "incomplete: rerun to continue"
        lines = [
            f"catalogue {self.collection}: {self.total} items; this run read {self.fetched} "
            f"apps from {self.source} ({self.pages} page(s), {state}), "
            f"{self.added} new, {self.renamed} renamed; {self.queries} query games "
            f"in {self.seconds:.1f}s"
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


class AppWriter:
    """Adds apps to the catalogue: new ones ``pending``, known ones only renamed."""

    def __init__(self, cat: Catalog, result: CatalogResult):
        self.cat, self.result = cat, result
        self.known: dict[str, Item] = {it.id: it for it in cat.items()}

    def add(self, apps: Iterable[App], *, count: bool = True) -> None:
        """Upsert what is new or renamed; ``count`` them as read from the source."""
        rows: dict[str, Item] = {}
        for app_id, name in apps:
            self.result.fetched += count
            item = self.known.get(app_id)
            if item is None:
                item = Item(id=app_id, name=name, meta=app_meta(app_id))
                self.result.added += 1
            elif name and name != item.name:
                item.name = name
                self.result.renamed += 1
            else:
                continue
            self.known[app_id] = rows[app_id] = item
        self.cat.upsert(rows.values())

    def ensure(self, ids: Iterable[str]) -> None:
        """Make sure ``ids`` are items (nameless ones keep their id until a source names them)."""
        self.add([(i, CURATED_GAMES.get(i, "")) for i in ids if i not in self.known], count=False)


# SteamSpy --------------------------------------------------------------------


def _steamspy_page(resp: httpx.Response, path: Path) -> tuple[list[App] | None, str]:
    """A page's apps, or None and the reason when it is an error page."""
    if resp.status_code != 200:
        return None, f"HTTP {resp.status_code}"
    try:
        data = resp.json()
    except ValueError:
        snippet = " ".join(resp.text.split())[:80]
        return None, f"not JSON: {snippet!r}"
    if isinstance(data, list) and not data:
        return [], ""
    if not isinstance(data, dict):
        return None, f"unexpected JSON {type(data).__name__}"
    if "error" in data or not all(isinstance(v, dict) for v in data.values()):
        return None, f"error page: {str(data)[:80]!r}"
    try:
        return steamspy_apps(data, path), ""
    except BannermatchError as exc:
        return None, str(exc)


def fetch_steamspy_all(
    client: ServiceClient,
    base: str,
    cat: Catalog,
    writer: AppWriter,
    result: CatalogResult,
    *,
    interval: float,
    max_pages: int | None,
) -> None:
    """``request=all`` page by page from where the last run stopped, ``interval`` apart."""
    if cat.get_meta(META_SPY_DONE) == "1":
        result.complete = True
        result.notes.append("the SteamSpy listing was complete already (--refresh reads it again)")
        return
    page = int(cat.get_meta(META_SPY_PAGE) or 0)
    last = cat.get_meta(META_SPY_LAST)
    gate = IntervalGate(interval, float(last) if last else None)

    def before() -> None:
        if gate.remaining() > 1:
            log.info(f"SteamSpy: waiting {gate.remaining():.0f}s (one `request=all` a minute)")
        gate.wait()
        cat.set_meta(META_SPY_LAST, repr(gate.mark()))  # if this run dies in the request

    def after() -> None:
        cat.set_meta(META_SPY_LAST, repr(gate.mark()))

    url = f"{base}/api.php"
    while max_pages is None or result.pages < max_pages:
        try:
            resp = client.get(
                url, params={"request": "all", "page": str(page)}, before=before, after=after
            )
        except BannermatchError as exc:
            if page == 0 or str(exc).startswith("cannot reach"):
                raise
            raise BannermatchError(
                f"{exc}; pages 0-{page - 1} are saved: rerun to continue from page {page}"
            ) from None
        apps, reason = _steamspy_page(resp, Path(redact(str(resp.url))))
        if apps is None:
            result.notes.append(
                f"SteamSpy page {page} was an error page ({reason}): the listing stops there; "
                "a rerun tries that page again"
            )
            return
        if not apps:
            cat.set_meta(META_SPY_DONE, "1")
            result.complete = True
            return
        writer.add(apps)
        result.pages += 1
        page += 1
        cat.set_meta(META_SPY_PAGE, str(page))
        log.info(f"SteamSpy page {page - 1}: {len(apps)} apps ({len(writer.known)} in all)")


def fetch_steamspy_top(client: ServiceClient, base: str, interval: float) -> list[App]:
    """SteamSpy's ``top100in2weeks``: the games most played in the last two weeks."""
    gate = IntervalGate(interval)
    resp = client.get(
        f"{base}/api.php", params={"request": "top100in2weeks"}, before=gate.wait, after=gate.mark
    )
    apps, reason = _steamspy_page(resp, Path("top100in2weeks"))
    if apps is None:
        raise BannermatchError(f"SteamSpy top100in2weeks failed: {reason} from {resp.url}")
    return apps


# Steam Web API ---------------------------------------------------------------


def fetch_webapi(
    client: ServiceClient,
    base: str,
    cat: Catalog,
    writer: AppWriter,
    result: CatalogResult,
    *,
    page_size: int,
    max_pages: int | None,
) -> None:
    """``IStoreService/GetAppList`` page by page, continuing from the stored ``last_appid``."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise BannermatchError(
            f"the Steam Web API needs a key: set {API_KEY_ENV} "
            f"(get one at {API_KEY_PAGE}), or use --source steamspy or FILE"
        )
    if cat.get_meta(META_API_DONE) == "1":
        result.complete = True
        result.notes.append("the Web API listing was complete already (--refresh reads it again)")
        return
    last = int(cat.get_meta(META_API_LAST) or 0)
    url = f"{base}/IStoreService/GetAppList/v1/"
    while max_pages is None or result.pages < max_pages:
        params = {
            "key": key,
            "max_results": str(page_size),
            "last_appid": str(last),
            "include_games": "true",
        }
        resp = client.get(url, params=params)
        where = redact(str(resp.url))
        if resp.status_code in (401, 403):
            raise BannermatchError(
                f"the Steam Web API refused the key in {API_KEY_ENV} (HTTP {resp.status_code})"
            )
        if resp.status_code != 200:
            raise BannermatchError(f"the Steam Web API answered HTTP {resp.status_code}: {where}")
        try:
            reply = resp.json()["response"]
            apps = webapi_apps(reply.get("apps", []), Path(where))
            more = bool(reply.get("have_more_results"))
            next_last = int(reply.get("last_appid") or (apps[-1][0] if apps else 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BannermatchError(f"the Steam Web API sent an unexpected reply: {where}") from None
        writer.add(apps)
        result.pages += 1
        log.info(f"Web API page {result.pages}: {len(apps)} apps ({len(writer.known)} in all)")
        if not more:
            cat.set_meta(META_API_DONE, "1")
            result.complete = True
            return
        if next_last <= last:
            raise BannermatchError(
                f"the Steam Web API says it has more apps but its last_appid ({next_last}) "
                f"does not advance past {last}: {where}"
            )
        last = next_last
        cat.set_meta(META_API_LAST, str(last))


# the command -----------------------------------------------------------------


@dataclass
class Top:
    """Where the query set's popular games come from."""

    spy: ServiceClient
    spy_base: str
    interval: float
    network: bool

    def ids(
        self,
        writer: AppWriter,
        result: CatalogResult,
        top_snapshot: Snapshot | None,
        top_file: str | None,
        snapshot: Snapshot | None,
    ) -> tuple[list[str], str]:
        """The popular games' ids and where they came from: ``--top-file``, a snapshot
        that is itself a top list, else SteamSpy's top 100 of two weeks (a note, not a
        failure, when that cannot be had beside another listing)."""
        if top_snapshot is not None:
            writer.add((a for a in top_snapshot.apps if a[1]), count=False)
            return [a for a, _ in top_snapshot.apps], f"top: {top_file}"
        if snapshot is not None and snapshot.is_top_list:
            return [a for a, _ in snapshot.apps], f"top: {snapshot.path.name}"
        if not self.network:
            result.notes.append(
                "no top list with a snapshot source: pass --top-file FILE for the popular games"
            )
            return [], ""
        try:
            apps = fetch_steamspy_top(self.spy, self.spy_base, self.interval)
        except BannermatchError as exc:
            if result.source == "steamspy":
                raise
            # the listing is saved; a missing top list is not worth failing for
            result.notes.append(f"no top list ({exc}): pass --top-file FILE for the popular games")
            return [], ""
        writer.add(apps, count=False)
        return [a for a, _ in apps], "top100in2weeks (SteamSpy)" if apps else ""


def fetch_catalog(
    collection: str | os.PathLike[str],
    source: str = "auto",
    *,
    names: str | None = None,
    top: bool = True,
    top_file: str | None = None,
    steamspy_url: str | None = None,
    api_url: str | None = None,
    steamspy_interval: float = defaults.STEAMSPY_ALL_INTERVAL,
    max_pages: int | None = None,
    page_size: int = defaults.WEBAPI_PAGE_SIZE,
    refresh: bool = False,
    timeout: float = defaults.CATALOG_TIMEOUT,
    retries: int = defaults.CATALOG_RETRIES,
    backoff: float = defaults.CATALOG_BACKOFF,
) -> CatalogResult:
    """Fill ``collection``'s catalogue with Steam apps from ``source`` and set its query set.

    ``source``: ``auto`` (``webapi`` when ``STEAM_API_KEY`` is set, else ``steamspy``),
    ``steamspy``, ``webapi`` or the path of a snapshot file.
    """
    started = time.perf_counter()
    if source == "auto":
        source = "webapi" if os.environ.get(API_KEY_ENV, "").strip() else "steamspy"
    coll = Collection(collection)
    policy = RetryPolicy(retries=retries, backoff=backoff)
    network = source in ("steamspy", "webapi")
    snapshot = None if network else load_snapshot(source, names)
    if network and names is not None:
        raise BannermatchError("--names goes with a snapshot file given as --source")
    top_snapshot = load_snapshot(top_file) if top and top_file else None
    result = CatalogResult(str(coll.root), source if snapshot is None else str(snapshot.path))
    spy_base = STEAMSPY.url(steamspy_url)

    with (
        exclusive(coll.root, "catalogue update"),
        coll.catalog(create=True) as cat,
        ServiceClient(STEAMSPY, policy, timeout=timeout) as spy,
        ServiceClient(STEAM_API, policy, timeout=timeout) as api,
    ):
        writer = AppWriter(cat, result)
        if refresh:
            for key in (META_SPY_PAGE, META_SPY_DONE, META_API_LAST, META_API_DONE):
                cat.set_meta(key, "")
        if source == "steamspy":
            fetch_steamspy_all(spy, spy_base, cat, writer, result,
                               interval=steamspy_interval, max_pages=max_pages)  # fmt: skip
        elif source == "webapi":
            fetch_webapi(api, STEAM_API.url(api_url), cat, writer, result,
                         page_size=page_size, max_pages=max_pages)  # fmt: skip
        else:
            assert snapshot is not None
            writer.add(snapshot.apps)
            result.pages, result.complete = 1, True
        top_ids: list[str] = []
        top_reason = ""
        if top:
            finder = Top(spy, spy_base, min(STEAMSPY_OTHER_INTERVAL, steamspy_interval), network)
            top_ids, top_reason = finder.ids(writer, result, top_snapshot, top_file, snapshot)
        curated = [i for i in CURATED_GAMES if i not in top_ids]
        writer.ensure([*top_ids, *curated])
        if top_ids:
            cat.set_queries(top_ids, top_reason, replace=True)
        cat.set_queries(curated, "curated (original notebooks)")
        result.queries = len(cat.queries())
        result.total = sum(cat.counts().values())
    result.seconds = time.perf_counter() - started
    return result
