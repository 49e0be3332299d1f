"""``bannermatch steam download``: every catalogued game's banner, current, concurrent, resumable.

Where the art is: the store API (:mod:`.store`) names each app's current file
(often a hashed path that cannot be guessed) and its ``t`` stamp, asked for in
batches before the downloads start. ``library_capsule_2x`` is tried, then
``library_capsule`` (or the fields of another ``--asset``). When the API cannot
be reached, the legacy URLs are tried instead and every row says so.

Freshness: the catalogue keeps, per app, the URL and stamp the API gave and
when it was asked. A rerun asks again for the ``ok`` apps last asked more than
``refresh_after`` seconds ago and downloads exactly those whose art changed,
replacing the file atomically (its new checksum makes ``index`` embed it again).

Server errors, timeouts, broken connections and bodies that are not a whole
image are retried with exponential backoff and jitter; a 429 holds every request
to its host for the ``Retry-After`` it asks for. A game whose every URL answers
404 is ``missing``; one that still fails after the retries is ``bad``, with the
reason. When the first requests to the CDN all fail the same way (all 404, all
not images), the run stops with one line instead of marking every game missing.
Files are written atomically and catalogue rows are committed in small batches,
so a killed run loses at most the images in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bannermatch.acquire.steam import defaults
from bannermatch.acquire.steam.client import (
    USER_AGENT,
    ServiceClient,
    describe_error,
    timeouts,
    unreachable,
)
from bannermatch.acquire.steam.endpoints import (
    ASSET_FIELDS,
    LANGUAGES,
    LEGACY_TEMPLATES,
    STEAM_CDN,
    art_stamp,
    host_of,
    legacy_urls,
    redact,
)
from bannermatch.acquire.steam.lock import exclusive
from bannermatch.acquire.steam.payload import check_image, file_intact, store
from bannermatch.acquire.steam.ratelimit import HostLimiter
from bannermatch.acquire.steam.retry import RETRY_STATUSES, RetryPolicy
from bannermatch.acquire.steam.store import StoreApi, StoreApiError, StoreArt
from bannermatch.errors import BannermatchError, ImageError
from bannermatch.progress import progress_bar
from bannermatch.store import atomic
from bannermatch.store.catalog import ArtState, Catalog, Item, app_meta, is_app_id, steam_meta
from bannermatch.store.collection import Collection

log = logging.getLogger(__name__)

META_ASSET = "steam.asset"
#: a body larger than this is not a banner
MAX_BYTES = 32 << 20
#: catalogue rows are committed at least this often (seconds) and in batches of at most ...
FLUSH_SECONDS = 0.25
FLUSH_ROWS = 64
#: statuses that mean "this URL has no such file": try the next one, no retries
NOT_FOUND_STATUSES = frozenset({400, 401, 403, 404, 410, 451})
#: the first this many games decide whether the CDN is the right one (see Sanity)
SANITY_REQUESTS = 24
#: ``ok`` apps are asked about their art again after this long (seconds): a week
#: the reason of an item downloaded from a legacy URL
LEGACY_NOTE = "legacy URL (the store API could not be reached)"


class BannerNotFound(BannermatchError):
    """The CDN has no such banner for the game (every URL answered 404 or the like)."""


@dataclass
class _Tally:
    """One game's tries so far, across its URLs."""

    budget: int  # retries left
    tries: int = 0
    host: str = ""
    failure: str = ""
    failed_url: str = ""
    not_image: bool = False
    not_found: list[str] = field(default_factory=list)


@dataclass
class _Attempt:
    """What one GET came to: a stored ``row``, ``gone`` (not on the CDN), or a
    ``failure`` worth another try, after ``wait`` seconds when the server asked."""

    row: Item | None = None
    gone: bool = False
    failure: str = ""
    wait: float | None = None


class _HostDown(Exception):
    """The CDN cannot be reached: the whole download stops (and can be rerun)."""

    def __init__(self, error: BannermatchError):
        super().__init__(str(error))
        self.error = error


def resolve_templates(asset: str, templates: Sequence[str] | None = None) -> tuple[str, ...]:
    """The legacy URL templates to try: the user's, else the asset's."""
    if templates:
        for t in templates:
            if "{appid}" not in t:
                raise BannermatchError(f"a URL template needs {{appid}}: {t!r}")
        return tuple(templates)
    check_asset(asset)
    return LEGACY_TEMPLATES[asset]


def check_asset(asset: str, language: str = "english") -> None:
    if asset not in ASSET_FIELDS:
        raise BannermatchError(f"unknown asset {asset!r}: choose from {', '.join(ASSET_FIELDS)}")
    if language not in LANGUAGES:
        raise BannermatchError(
            f"unknown language {language!r}: Steam's names are {', '.join(LANGUAGES)}"
        )


def banner_urls(appid: str, cdn: str, templates: Sequence[str]) -> list[str]:
    return [t.format(cdn=cdn, appid=appid) for t in templates]


def _file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def _ext(url: str) -> str:
    name = _file_name(url)
    return name.rsplit(".", 1)[-1].lower() if "." in name else "jpg"


@dataclass
class DownloadResult:
    collection: str
    asset: str
    planned: int = 0
    ok: int = 0
    missing: int = 0
    bad: int = 0
    retried: int = 0  # retries, all games together
    done_before: int = 0  # ok items whose file is intact and whose art was checked recently
    rechecked: int = 0  # ok items whose art the store API was asked about again
    unchanged: int = 0  # ... of which the art had not changed
    updated: int = 0  # ok items downloaded again because their art changed
    skipped_missing: int = 0  # missing items left alone (see retry_missing)
    not_apps: int = 0  # items whose id is not a Steam app id
    api_calls: int = 0  # store API calls
    legacy: bool = False  # the store API could not be reached: legacy URLs were used
    api_error: str = ""
    bytes: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # catalogue status counts afterwards

    @property
    def finished(self) -> int:
        return self.ok + self.missing + self.bad

    @property
    def banners_per_second(self) -> float:
        return self.finished / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.pop("counts")
        return data | {
            "seconds": round(self.seconds, 3),
            "banners_per_second": round(self.banners_per_second, 2),
            "catalog": self.counts,
        }

    def summary(self, max_failures: int = 10) -> str:
        lines = [
            f"{self.asset} banners for {self.collection}: {self.ok} ok, {self.missing} missing, "
            f"{self.bad} bad, {self.retried} retries; {self.finished} games in "
            f"{self.seconds:.1f}s ({self.banners_per_second:.1f}/s, {self.bytes / 1e6:.1f} MB); "
            f"{self.api_calls} store API calls"
        ]
        if self.legacy:
            lines.append(f"note: legacy URLs used, they may be stale: {self.api_error}")
        if self.rechecked:
            lines.append(
                f"art checked again: {self.rechecked} games, {self.updated} changed and "
                f"downloaded again, {self.unchanged} unchanged"
            )
        extra = []
        if self.done_before:
            extra.append(f"{self.done_before} already downloaded")
        if self.skipped_missing:
            extra.append(f"{self.skipped_missing} missing before (--retry-missing tries again)")
        if self.not_apps:
            extra.append(f"{self.not_apps} items are not Steam apps")
        if extra:
            lines.append("skipped: " + ", ".join(extra))
        for f in self.failures[:max_failures]:
            lines.append(f"  {f['status']:<7} {f['id']}: {f['reason']}")
        if len(self.failures) > max_failures:
            lines.append(f"  ... and {len(self.failures) - max_failures} more (--json lists all)")
        return "\n".join(lines)


class Sanity:
    """Stops a run whose first games all fail the same way at the CDN (a wrong host, a proxy).

    Until then, rows other than ``ok`` are held back, so that such a run marks nothing.
    """

    def __init__(self, cdn: str, window: int = SANITY_REQUESTS):
        self.cdn, self.window = cdn, window
        self.kinds: list[str] = []
        self.trusted = False

    def note(self, kind: str, host: str) -> None:
        """Count one game's outcome: ``ok``, ``404``, ``not-image`` or ``error``."""
        if self.trusted:
            return
        self.kinds.append(kind)
        if kind == "ok" or len(set(self.kinds)) > 1:
            self.trusted = True
        elif len(self.kinds) >= self.window and kind in ("404", "not-image"):
            what = "answered 404" if kind == "404" else "sent something that is not an image"
            raise _HostDown(
                BannermatchError(
                    f"the first {len(self.kinds)} games asked of {host} all {what}: is "
                    f"{STEAM_CDN.option} {self.cdn} Steam's CDN? (a wrong URL, a proxy answering "
                    "for it, or Steam changed its URLs again); no game was marked"
                )
            )
        elif len(self.kinds) >= self.window:
            self.trusted = True


class Downloader:
    """The download loop of one run: workers, retries, rate limits, batched commits."""

    def __init__(
        self,
        coll: Collection,
        cat: Catalog,
        result: DownloadResult,
        *,
        concurrency: int,
        rate: float,
        policy: RetryPolicy,
        timeout: float,
        connect_timeout: float,
        resize: tuple[int, int] | None,
        progress: bool,
        sanity: Sanity,
    ):
        self.coll, self.cat, self.result = coll, cat, result
        self.urls: dict[str, list[str]] = {}
        self.notes: dict[str, str] = {}  # id -> reason of a legacy download
        self.settled: list[Item] = []  # rows the store API decided
        self.states: dict[str, ArtState] = {}  # the store API's answers to keep
        self.concurrency, self.policy = concurrency, policy
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.resize = resize
        self.limiter = HostLimiter(rate)
        self.sanity = sanity
        self.answered: set[str] = set()
        self.rows: list[Item] = []
        self.flushed = time.monotonic()
        self.progress = progress
        self.bar: Any = None
        self.pool = ThreadPoolExecutor(max_workers=min(4, concurrency), thread_name_prefix="store")

    # one game ---------------------------------------------------------------

    async def _get(self, client: httpx.AsyncClient, url: str) -> tuple[int, Any, bytes]:
        async with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                await resp.aclose()
                return resp.status_code, resp.headers, b""
            length = int(resp.headers.get("Content-Length") or 0)
            if length > MAX_BYTES:
                raise ImageError(f"too large for a banner: {length:,} bytes")
            chunks, total = [], 0
            async for chunk in resp.aiter_bytes():
                total += len(chunk)
                if total > MAX_BYTES:
                    raise ImageError(f"too large for a banner: over {MAX_BYTES:,} bytes")
                chunks.append(chunk)
            return 200, resp.headers, b"".join(chunks)

    async def fetch(self, client: httpx.AsyncClient, item: Item) -> Item:
        """Download, check and store one game's banner; return its catalogue row. Each of
        the game's URLs is tried in turn; the retries (``policy.retries``) are shared."""
        tally = _Tally(budget=self.policy.retries)
        for url in self.urls[item.id]:
            row = await self._fetch_url(client, item, url, tally)
            if row is not None:
                return row
        if not tally.failure:
            self.sanity.note("404", tally.host)
            return self._row(item, "missing", "not on the CDN: " + ", ".join(tally.not_found))
        if not tally.not_image:
            self.sanity.note("error", tally.host)
        reason = f"{tally.failure} ({_file_name(tally.failed_url)}, {tally.tries} tries)"
        return self._row(item, "bad", reason)

    async def _fetch_url(
        self, client: httpx.AsyncClient, item: Item, url: str, tally: _Tally
    ) -> Item | None:
        """The stored row, or None when this URL is done with (missing, or out of tries)."""
        tally.host = host = host_of(url)
        bucket = self.limiter.bucket(host)
        retry = 0
        while True:
            await bucket.acquire()
            tally.tries += 1
            got = await self._attempt(client, item, url, tally)
            if got.row is not None or got.gone:
                return got.row
            tally.failure, tally.failed_url = got.failure, url
            if got.wait is not None:
                bucket.pause(got.wait)
            if tally.budget == 0:
                return None  # this URL is done; a fallback URL still gets one try
            tally.budget -= 1
            retry += 1
            self.result.retried += 1
            await asyncio.sleep(self.policy.delay(retry) if got.wait is None else got.wait)

    async def _attempt(
        self, client: httpx.AsyncClient, item: Item, url: str, tally: _Tally
    ) -> _Attempt:
        """One GET of ``url``: stored, gone (a 404 and its kind), or a failure to retry."""
        host = tally.host
        try:
            async with asyncio.timeout(self.timeout * 4):
                status, headers, body = await self._get(client, url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if host not in self.answered or tally.budget == 0:
                raise _HostDown(unreachable(STEAM_CDN, url, exc)) from None
            return _Attempt(failure=describe_error(exc))
        except httpx.TransportError as exc:  # read timeouts, resets, broken bodies
            return _Attempt(failure=describe_error(exc))
        except TimeoutError:
            return _Attempt(failure=f"no complete answer within {self.timeout * 4:g}s")
        except ImageError as exc:
            return _Attempt(failure=str(exc))
        self.answered.add(host)
        if status == 200:
            return await self._keep(item, url, body, tally)
        if status in NOT_FOUND_STATUSES or (400 <= status < 500 and status not in RETRY_STATUSES):
            tally.not_found.append(f"HTTP {status} for {_file_name(url)}")
            return _Attempt(gone=True)
        wait = None
        if status in (429, 503) and headers.get("Retry-After"):
            wait = self.policy.retry_after(headers.get("Retry-After"), tally.tries)
        return _Attempt(failure=f"HTTP {status}", wait=wait)

    async def _keep(self, item: Item, url: str, body: bytes, tally: _Tally) -> _Attempt:
        """Check and store a 200's body: the new row, or why it is not an image."""
        self.result.bytes += len(body)
        loop = asyncio.get_running_loop()
        try:
            stored = await loop.run_in_executor(self.pool, self._store, item.id, body, url)
        except ImageError as exc:
            if not tally.not_image:  # a proxy's page shows at the first answer
                self.sanity.note("not-image", tally.host)
            tally.not_image = True
            return _Attempt(failure=str(exc))
        self.sanity.note("ok", tally.host)
        return _Attempt(row=self._ok_row(item, url, stored))

    def _store(self, appid: str, body: bytes, url: str) -> Any:
        return store(self.coll.images_dir, appid, body, default_ext=_ext(url), resize=self.resize)

    def _ok_row(self, item: Item, url: str, stored: Any) -> Item:
        source = self.coll.source_key(str(stored.path.resolve()))
        if item.source and item.source != source and item.source.startswith("images/"):
            with contextlib.suppress(OSError):  # the same game under another extension
                os.unlink(self.coll.resolve_source(item.source))
        return Item(
            id=item.id,
            name=item.name,
            source=source,
            url=url,
            sha256=stored.sha256,
            width=stored.width,
            height=stored.height,
            mode=stored.mode,
            format=stored.format,
            status="ok",
            reason=self.notes.get(item.id),
            size=stored.size,
            mtime=stored.mtime,
            meta=steam_meta(item),
        )

    @staticmethod
    def _row(item: Item, status: str, reason: str) -> Item:
        return dataclasses.replace(item, status=status, reason=reason, meta=steam_meta(item))

    # the run ----------------------------------------------------------------

    def record(self, row: Item, *, settled: bool = False) -> None:
        """Count a finished game; ``settled``: decided by the store API, not by the CDN."""
        r = self.result
        if row.status == "ok":
            r.ok += 1
        else:
            setattr(r, row.status, getattr(r, row.status) + 1)
            r.failures.append({"id": row.id, "status": row.status, "reason": row.reason or ""})
        (self.settled if settled else self.rows).append(row)
        self._tick()

    def note_state(self, appid: str, state: ArtState) -> None:
        self.states[appid] = state

    def _tick(self) -> None:
        due = len(self.rows) >= FLUSH_ROWS or time.monotonic() - self.flushed >= FLUSH_SECONDS
        if due and self.sanity.trusted:
            self.flush()
        if self.bar is not None:
            r = self.result
            self.bar.update(1)
            self.bar.set_postfix(
                ok=r.ok, missing=r.missing, bad=r.bad, retried=r.retried, refresh=False
            )

    def flush(self) -> None:
        if not self.sanity.trusted:  # a stopped run keeps what it found, and marks nothing
            self.rows = [r for r in self.rows if r.status == "ok"]
        now = time.time()
        for r in self.rows:
            if r.status == "ok" and r.id not in self.notes:  # art the store named
                self.states[r.id] = ArtState(r.url, art_stamp(r.url or ""), now)
        if self.rows or self.settled:
            self.cat.upsert([*self.settled, *self.rows])
        if self.states:
            self.cat.set_art(self.states)
        self.rows, self.settled, self.states = [], [], {}
        self.flushed = time.monotonic()

    def _client(self, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
        # one connection per worker: httpcore's pool scans every connection for every
        # request, which costs more than the downloads once dozens share one pool
        return httpx.AsyncClient(
            http1=True,
            http2=False,
            verify=ssl_context,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=timeouts(self.timeout, self.connect_timeout),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
            trust_env=False,
        )

    async def _worker(self, ssl_context: ssl.SSLContext, queue: asyncio.Queue[Any]) -> None:
        async with self._client(ssl_context) as client:
            while (job := await queue.get()) is not None:
                if isinstance(job, BaseException):
                    raise job
                if job.state is not None:
                    self.note_state(job.item.id, job.state)
                if job.urls:
                    self.urls[job.item.id] = job.urls
                    if job.note:
                        self.notes[job.item.id] = job.note
                    self.result.planned += 1
                    self.record(await self.fetch(client, job.item))
                elif job.row is not None:
                    self.record(job.row, settled=True)
                else:
                    self._tick()

    async def run(self, jobs: Iterator[Job], total: int) -> None:
        """Work through ``jobs`` (made in a thread: they ask the store API as they go) with
        ``concurrency`` workers, each with its own connection."""
        self.bar = progress_bar(total, "downloading", enabled=self.progress, unit="game")
        ssl_context = ssl.create_default_context()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        n = max(1, min(self.concurrency, total))

        stop = threading.Event()

        def put(job: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
                loop.call_soon_threadsafe(queue.put_nowait, job)

        def produce() -> None:
            try:
                for job in jobs:
                    if stop.is_set():
                        return
                    put(job)
            except BaseException as exc:  # delivered to a worker, which raises it
                put(exc)
            finally:
                for _ in range(n):
                    put(None)

        producer = threading.Thread(target=produce, name="store-api", daemon=True)
        producer.start()
        workers = [asyncio.create_task(self._worker(ssl_context, queue)) for _ in range(n)]
        try:
            try:
                await asyncio.gather(*workers)
            except _HostDown as down:
                raise down.error from None
            self.sanity.trusted = True  # a run that ends: what it found stands
        finally:
            stop.set()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.to_thread(producer.join)
            self.flush()
            self.bar.close()
            self.pool.shutdown(wait=True)


@dataclass
class Job:
    """One game of a run: download it from ``urls``, or record ``row`` and ``state`` only."""

    item: Item
    urls: list[str] = field(default_factory=list)
    note: str | None = None  # the reason an ok row gets (a legacy URL was used)
    row: Item | None = None  # a row decided without a download (missing, renamed)
    state: ArtState | None = None  # the store API's answer to keep


@dataclass
class Plan:
    """What one run does: download ``todo``; ask the store about ``todo`` and ``recheck``."""

    todo: list[Item] = field(default_factory=list)
    recheck: list[Item] = field(default_factory=list)  # ok, file intact, art not asked lately


def plan(
    coll: Collection,
    cat: Catalog,
    result: DownloadResult,
    *,
    only: Sequence[str] | None,
    retry_missing: bool,
    force: bool,
    refresh_after: float,
) -> Plan:
    """The games to download (not finished, or whose file is gone) and those to check again."""
    items: list[Item]
    if only:
        wanted = [str(i).strip() for i in only]
        for i in wanted:
            if not is_app_id(i):
                raise BannermatchError(f"--only takes Steam app ids, and {i!r} is not one")
        fresh = [i for i in dict.fromkeys(wanted) if cat.get(i) is None]
        new = [Item(id=i, name="", meta=app_meta(i)) for i in fresh]
        cat.upsert(new)
        items = [it for i in dict.fromkeys(wanted) if (it := cat.get(i)) is not None]
    else:
        items = list(cat.items())
    art = cat.art()
    now = time.time()
    out = Plan()
    for it in items:
        if not is_app_id(it.id):
            result.not_apps += 1
            continue
        if it.status == "ok" and not force:
            path = Path(coll.resolve_source(it.source)) if it.source else None
            if path is not None and file_intact(path, it.size, it.mtime, it.sha256):
                known = art.get(it.id)
                if known is not None and now - known.checked < refresh_after:
                    result.done_before += 1
                else:
                    out.recheck.append(it)
                continue
        if it.status == "missing" and not (retry_missing or force):
            result.skipped_missing += 1
            continue
        out.todo.append(it)
    return out


@dataclass(frozen=True)
class Sources:
    """Where a run looks for the art."""

    cdn: str
    legacy: Sequence[str]  # legacy URL templates
    api_url: str | None
    user_templates: bool  # the user gave the templates: no store API
    asset: str
    language: str


def resolve(
    work: Plan,
    known: dict[str, ArtState],
    result: DownloadResult,
    src: Sources,
    api: StoreApi,
) -> Iterator[Job]:
    """A job per game: the store API's URLs (asked in batches as the jobs are taken), or
    the legacy ones when the API cannot be reached or the user gave templates."""
    if src.user_templates:
        yield from (Job(it, banner_urls(it.id, src.cdn, src.legacy)) for it in work.todo)
        return
    items = {it.id: it for it in [*work.todo, *work.recheck]}
    stale = {it.id for it in work.recheck}
    result.rechecked = len(stale)
    done: set[str] = set()
    try:
        for art in api.lookup(items, src.asset, src.language):
            result.api_calls = api.calls
            done.add(art.appid)
            yield _job(art, items[art.appid], known.get(art.appid), art.appid in stale, result)
    except StoreApiError as exc:
        result.api_calls, result.api_error, result.legacy = api.calls, str(exc), True
        result.rechecked -= len(stale - done)
        log.debug("the Steam store API cannot be reached (%s): trying legacy URLs", exc)
        for it in work.todo:
            if it.id not in done:
                yield Job(it, banner_urls(it.id, src.cdn, src.legacy), LEGACY_NOTE)


def _job(
    art: StoreArt, item: Item, before: ArtState | None, stale: bool, result: DownloadResult
) -> Job:
    """What to do with one game, given the store API's answer."""
    now = time.time()
    renamed = bool(art.name and not item.name)
    if renamed:
        item.name = art.name
    if not art.known or not art.urls:
        why = "not on the Steam store" if not art.known else f"no {result.asset} art on the store"
        row = dataclasses.replace(item, status="missing", reason=why, meta=steam_meta(item))
        return Job(item, row=row, state=ArtState(None, None, now))
    if stale and before is not None and before.url in art.urls:
        result.unchanged += 1
        state = ArtState(before.url, before.stamp, now)
        return Job(item, row=item if renamed else None, state=state)
    result.updated += stale
    return Job(item, urls=list(art.urls))


def _catalogued(collection: str | os.PathLike[str]) -> Collection:
    coll = Collection(collection)
    if not coll.catalog_path.is_file():
        raise BannermatchError(
            f"no catalogue at {coll.catalog_path}: "
            f"run `bannermatch steam catalog {collection}` first"
        )
    return coll


def download(
    collection: str | os.PathLike[str],
    *,
    asset: str = defaults.ASSET,
    language: str = defaults.LANGUAGE,
    cdn_url: str | None = None,
    api_url: str | None = None,
    templates: Sequence[str] | None = None,
    concurrency: int = defaults.CONCURRENCY,
    rate: float = defaults.RATE,
    retries: int = defaults.RETRIES,
    backoff: float = defaults.BACKOFF,
    max_retry_after: float = defaults.MAX_RETRY_AFTER,
    timeout: float = defaults.TIMEOUT,
    connect_timeout: float = defaults.CONNECT_TIMEOUT,
    resize: tuple[int, int] | None = None,
    only: Sequence[str] | None = None,
    retry_missing: bool = False,
    force: bool = False,
    refresh_after: float = defaults.REFRESH_AFTER,
    limit: int | None = None,
    progress: bool = True,
) -> DownloadResult:
    """Download the current banners of ``collection``'s catalogued games into ``images/``.

    ``templates`` (legacy URL templates with ``{cdn}`` and ``{appid}``) skip the store API.
    """
    coll = _catalogued(collection)
    if concurrency < 1:
        raise BannermatchError("--concurrency must be at least 1")
    check_asset(asset, language)
    legacy = resolve_templates(asset, templates)
    cdn = STEAM_CDN.url(cdn_url)
    policy = RetryPolicy(retries=retries, backoff=backoff, max_retry_after=max_retry_after)
    result = DownloadResult(str(coll.root), asset)
    with exclusive(coll.root, "download"), coll.catalog() as cat:
        _claim_asset(cat, coll, asset)
        work = plan(coll, cat, result, only=only, retry_missing=retry_missing, force=force,
                    refresh_after=refresh_after)  # fmt: skip
        work.todo = work.todo[:limit] if limit is not None else work.todo
        started = time.perf_counter()
        total = len(work.todo) + len(work.recheck)
        if total:
            src = Sources(cdn, legacy, api_url, bool(templates), asset, language)
            loader = Downloader(coll, cat, result, concurrency=concurrency, rate=rate,
                                policy=policy, timeout=timeout, connect_timeout=connect_timeout,
                                resize=resize, progress=progress, sanity=Sanity(cdn))  # fmt: skip
            with StoreApi(api_url=api_url, cdn=cdn, policy=policy, timeout=timeout) as api:
                jobs = resolve(work, cat.art(), result, src, api)
                asyncio.run(loader.run(jobs, total))
        result.seconds = time.perf_counter() - started
        result.counts = cat.counts()
    return result


def _claim_asset(cat: Catalog, coll: Collection, asset: str) -> None:
    """One kind of asset per collection; temporary files of a killed run cleaned up."""
    stored_asset = cat.get_meta(META_ASSET)
    if stored_asset and stored_asset != asset:
        raise BannermatchError(
            f"{coll.root} holds {stored_asset} images: download {asset} images "
            "into another collection"
        )
    cat.set_meta(META_ASSET, asset)
    if coll.images_dir.is_dir():
        atomic.recover(coll.images_dir)
    coll.images_dir.mkdir(parents=True, exist_ok=True)


def fetch_banner(
    appid: int | str,
    cdn_url: str | None = None,
    timeout: float = 10.0,
    *,
    asset: str = "library",
    language: str = "english",
    api_url: str | None = None,
    retries: int = 2,
) -> bytes:
    """One game's current banner as bytes, checked to be a whole image (on-demand queries).

    Asks the store API where the art is, as :func:`download` does (legacy URLs when
    the API cannot be reached). Raises :class:`BannerNotFound` when Steam has no
    such art and :class:`BannermatchError` when it cannot be reached or keeps failing.
    """
    appid = str(appid).strip()
    if not is_app_id(appid):
        raise BannermatchError(f"{appid!r} is not a Steam app id")
    check_asset(asset, language)
    cdn = STEAM_CDN.url(cdn_url)
    policy = RetryPolicy(retries=retries, backoff=0.5)
    urls = _banner_urls(appid, cdn, api_url, policy, timeout, asset, language)
    not_found, failure = [], ""
    with ServiceClient(STEAM_CDN, policy, timeout=timeout) as client:
        for url in urls:
            resp = client.get(url)
            if resp.status_code != 200:
                not_found.append(f"HTTP {resp.status_code} for {_file_name(url)}")
                continue
            try:
                check_image(resp.content)
            except ImageError as exc:
                failure = f"{exc} ({redact(url)})"
                continue
            return resp.content
    if failure:
        raise BannermatchError(f"the {asset} banner of app {appid} is damaged: {failure}")
    raise BannerNotFound(
        f"no {asset} banner for app {appid} on the Steam CDN: " + ", ".join(not_found)
    )


def _banner_urls(
    appid: str,
    cdn: str,
    api_url: str | None,
    policy: RetryPolicy,
    timeout: float,
    asset: str,
    language: str,
) -> list[str]:
    """The store API's URLs of one app's art; the legacy ones when the API is out of reach."""
    with StoreApi(api_url=api_url, cdn=cdn, policy=policy, timeout=timeout) as api:
        try:
            art: StoreArt = next(api.lookup([appid], asset, language))
        except StoreApiError as exc:
            log.debug("the Steam store API cannot be reached (%s): trying legacy URLs", exc)
            return legacy_urls(asset, appid, cdn)
    if not art.known:
        raise BannerNotFound(f"app {appid} is not on the Steam store")
    if not art.urls:
        raise BannerNotFound(f"app {appid} has no {asset} art on the Steam store")
    return list(art.urls)
