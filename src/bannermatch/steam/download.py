"""``bannermatch steam download``: every catalogued game's banner, concurrent and resumable.

Each game's URLs are tried in order (``library_600x900_2x.jpg``, then
``library_600x900.jpg``). Server errors, timeouts, broken connections and
bodies that are not a whole image are retried with exponential backoff and
jitter; a 429 holds every request to its host for the ``Retry-After`` it asks
for. A game whose every URL answers 404 is ``missing``; one that still fails
after the retries is ``bad``, with the reason. Files are written atomically and
catalogue rows are committed in small batches, so a killed run loses at most
the images in flight, and a rerun picks up the games that are not finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import ssl
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .. import atomic
from ..catalog import Catalog, Item
from ..collection import Collection
from ..errors import BannermatchError, ImageError
from ..progress import progress_bar
from .client import USER_AGENT, ServiceClient, describe_error, timeouts, unreachable
from .endpoints import ASSETS, STEAM_CDN, host_of, is_app_id, redact
from .lock import exclusive
from .payload import check_image, file_intact, store
from .ratelimit import HostLimiter
from .retry import RETRY_STATUSES, RetryPolicy

META_ASSET = "steam.asset"
#: a body larger than this is not a banner
MAX_BYTES = 32 << 20
#: catalogue rows are committed at least this often (seconds) and in batches of at most ...
FLUSH_SECONDS = 0.25
FLUSH_ROWS = 64
#: statuses that mean "this URL has no such file": try the next one, no retries
NOT_FOUND_STATUSES = frozenset({400, 401, 403, 404, 410, 451})


class BannerNotFound(BannermatchError):
    """The CDN has no such banner for the game (every URL answered 404 or the like)."""


class _HostDown(Exception):
    """The CDN cannot be reached: the whole download stops (and can be rerun)."""

    def __init__(self, error: BannermatchError):
        super().__init__(str(error))
        self.error = error


def resolve_templates(asset: str, templates: Sequence[str] | None = None) -> tuple[str, ...]:
    """The URL templates to try: the user's, else the asset's."""
    if templates:
        for t in templates:
            if "{appid}" not in t:
                raise BannermatchError(f"a URL template needs {{appid}}: {t!r}")
        return tuple(templates)
    if asset not in ASSETS:
        raise BannermatchError(f"unknown asset {asset!r}: choose from {', '.join(ASSETS)}")
    return ASSETS[asset]


def banner_urls(appid: str, cdn: str, templates: Sequence[str]) -> list[str]:
    return [t.format(cdn=cdn, appid=appid) for t in templates]


def _file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def _ext(template: str) -> str:
    name = _file_name(template)
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
    done_before: int = 0  # ok items whose file is intact
    skipped_missing: int = 0  # missing items left alone (see retry_missing)
    not_apps: int = 0  # items whose id is not a Steam app id
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
        return {
            "collection": self.collection,
            "asset": self.asset,
            "planned": self.planned,
            "ok": self.ok,
            "missing": self.missing,
            "bad": self.bad,
            "retried": self.retried,
            "done_before": self.done_before,
            "skipped_missing": self.skipped_missing,
            "not_apps": self.not_apps,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "banners_per_second": round(self.banners_per_second, 2),
            "failures": self.failures,
            "catalog": self.counts,
        }

    def summary(self, max_failures: int = 10) -> str:
        lines = [
            f"{self.asset} banners for {self.collection}: {self.ok} ok, {self.missing} missing, "
            f"{self.bad} bad, {self.retried} retries; {self.finished} games in "
            f"{self.seconds:.1f}s ({self.banners_per_second:.1f}/s, {self.bytes / 1e6:.1f} MB)"
        ]
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


class Downloader:
    """The download loop of one run: workers, retries, rate limits, batched commits."""

    def __init__(
        self,
        coll: Collection,
        cat: Catalog,
        result: DownloadResult,
        *,
        cdn: str,
        templates: Sequence[str],
        concurrency: int,
        rate: float,
        policy: RetryPolicy,
        timeout: float,
        connect_timeout: float,
        resize: tuple[int, int] | None,
        progress: bool,
    ):
        self.coll, self.cat, self.result = coll, cat, result
        self.cdn, self.templates = cdn, tuple(templates)
        self.concurrency, self.policy = concurrency, policy
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.resize = resize
        self.limiter = HostLimiter(rate)
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
        """Download, check and store one game's banner; return its catalogue row."""
        loop = asyncio.get_running_loop()
        budget = self.policy.retries
        tries = 0
        not_found: list[str] = []
        failure, failed_url = "", ""
        for n, url in enumerate(banner_urls(item.id, self.cdn, self.templates)):
            host = host_of(url)
            bucket = self.limiter.bucket(host)
            retry = 0
            while True:
                await bucket.acquire()
                tries += 1
                wait = None
                try:
                    async with asyncio.timeout(self.timeout * 4):
                        status, headers, body = await self._get(client, url)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    if host not in self.answered or budget == 0:
                        raise _HostDown(unreachable(STEAM_CDN, url, exc)) from None
                    failure = describe_error(exc)
                except httpx.TransportError as exc:  # read timeouts, resets, broken bodies
                    failure = describe_error(exc)
                except TimeoutError:
                    failure = f"no complete answer within {self.timeout * 4:g}s"
                except ImageError as exc:
                    failure = str(exc)
                else:
                    self.answered.add(host)
                    if status == 200:
                        self.result.bytes += len(body)
                        try:
                            stored = await loop.run_in_executor(
                                self.pool, self._store, item.id, body, n
                            )
                        except ImageError as exc:
                            failure = str(exc)
                        else:
                            return self._ok_row(item, url, stored)
                    elif status in NOT_FOUND_STATUSES or (
                        400 <= status < 500 and status not in RETRY_STATUSES
                    ):
                        not_found.append(f"HTTP {status} for {_file_name(url)}")
                        break
                    else:
                        failure = f"HTTP {status}"
                        if status in (429, 503) and headers.get("Retry-After"):
                            wait = self.policy.retry_after(headers.get("Retry-After"), retry + 1)
                            bucket.pause(wait)
                failed_url = url
                if budget == 0:
                    break  # this URL is done; a fallback URL still gets one try
                budget -= 1
                retry += 1
                self.result.retried += 1
                await asyncio.sleep(self.policy.delay(retry) if wait is None else wait)
        if not failure:
            return self._row(item, "missing", "not on the CDN: " + ", ".join(not_found))
        return self._row(item, "bad", f"{failure} ({_file_name(failed_url)}, {tries} tries)")

    def _store(self, appid: str, body: bytes, n: int) -> Any:
        return store(
            self.coll.images_dir,
            appid,
            body,
            default_ext=_ext(self.templates[n]),
            resize=self.resize,
        )

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
            reason=None,
            size=stored.size,
            mtime=stored.mtime,
        )

    @staticmethod
    def _row(item: Item, status: str, reason: str) -> Item:
        return dataclasses.replace(item, status=status, reason=reason)

    # the run ----------------------------------------------------------------

    def record(self, row: Item) -> None:
        r = self.result
        if row.status == "ok":
            r.ok += 1
        else:
            setattr(r, row.status, getattr(r, row.status) + 1)
            r.failures.append({"id": row.id, "status": row.status, "reason": row.reason or ""})
        self.rows.append(row)
        if len(self.rows) >= FLUSH_ROWS or time.monotonic() - self.flushed >= FLUSH_SECONDS:
            self.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                ok=r.ok, missing=r.missing, bad=r.bad, retried=r.retried, refresh=False
            )

    def flush(self) -> None:
        if self.rows:
            self.cat.upsert(self.rows)
            self.rows = []
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

    async def _worker(self, ssl_context: ssl.SSLContext, todo: Iterator[Item]) -> None:
        async with self._client(ssl_context) as client:
            for item in todo:  # one iterator shared by every worker
                self.record(await self.fetch(client, item))

    async def run(self, todo: list[Item]) -> None:
        """Download ``todo`` with ``concurrency`` workers, each with its own connection."""
        self.bar = progress_bar(len(todo), "downloading", enabled=self.progress, unit="banner")
        ssl_context = ssl.create_default_context()
        shared = iter(todo)
        workers = [
            asyncio.create_task(self._worker(ssl_context, shared))
            for _ in range(min(self.concurrency, len(todo)))
        ]
        try:
            try:
                await asyncio.gather(*workers)
            except _HostDown as down:
                raise down.error from None
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.flush()
            self.bar.close()
            self.pool.shutdown(wait=True)


def plan(
    coll: Collection,
    cat: Catalog,
    result: DownloadResult,
    *,
    only: Sequence[str] | None,
    retry_missing: bool,
    force: bool,
    limit: int | None,
) -> list[Item]:
    """The games to download: not finished, or whose file is gone or changed."""
    items: list[Item]
    if only:
        wanted = [str(i).strip() for i in only]
        for i in wanted:
            if not is_app_id(i):
                raise BannermatchError(f"--only takes Steam app ids, and {i!r} is not one")
        new = [Item(id=i, name="") for i in dict.fromkeys(wanted) if cat.get(i) is None]
        cat.upsert(new)
        items = [it for i in dict.fromkeys(wanted) if (it := cat.get(i)) is not None]
    else:
        items = list(cat.items())
    todo = []
    for it in items:
        if not is_app_id(it.id):
            result.not_apps += 1
            continue
        if it.status == "ok" and not force:
            path = Path(coll.resolve_source(it.source)) if it.source else None
            if path is not None and file_intact(path, it.size, it.mtime, it.sha256):
                result.done_before += 1
                continue
        if it.status == "missing" and not (retry_missing or force):
            result.skipped_missing += 1
            continue
        todo.append(it)
    return todo[:limit] if limit is not None else todo


def download(
    collection: str | os.PathLike[str],
    *,
    asset: str = "library",
    cdn_url: str | None = None,
    templates: Sequence[str] | None = None,
    concurrency: int = 16,
    rate: float = 50.0,
    retries: int = 5,
    backoff: float = 0.5,
    max_retry_after: float = 120.0,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    resize: tuple[int, int] | None = None,
    only: Sequence[str] | None = None,
    retry_missing: bool = False,
    force: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> DownloadResult:
    """Download the banners of ``collection``'s catalogued games into ``images/``."""
    coll = Collection(collection)
    if not coll.catalog_path.is_file():
        raise BannermatchError(
            f"no catalogue at {coll.catalog_path}: "
            f"run `bannermatch steam catalog {collection}` first"
        )
    if concurrency < 1:
        raise BannermatchError("--concurrency must be at least 1")
    templates = resolve_templates(asset, templates)
    cdn = STEAM_CDN.url(cdn_url)
    policy = RetryPolicy(retries=retries, backoff=backoff, max_retry_after=max_retry_after)
    result = DownloadResult(str(coll.root), asset)
    with exclusive(coll.root, "download"), coll.catalog() as cat:
        stored_asset = cat.get_meta(META_ASSET)
        if stored_asset and stored_asset != asset:
            raise BannermatchError(
                f"{coll.root} holds {stored_asset} images: download {asset} images "
                "into another collection"
            )
        cat.set_meta(META_ASSET, asset)
        if coll.images_dir.is_dir():
            atomic.recover(coll.images_dir)  # temporary files of a killed run
        coll.images_dir.mkdir(parents=True, exist_ok=True)
        todo = plan(
            coll, cat, result, only=only, retry_missing=retry_missing, force=force, limit=limit
        )
        result.planned = len(todo)
        started = time.perf_counter()
        if todo:
            loader = Downloader(
                coll,
                cat,
                result,
                cdn=cdn,
                templates=templates,
                concurrency=concurrency,
                rate=rate,
                policy=policy,
                timeout=timeout,
                connect_timeout=connect_timeout,
                resize=resize,
                progress=progress,
            )
            asyncio.run(loader.run(todo))
        result.seconds = time.perf_counter() - started
        result.counts = cat.counts()
    return result


def fetch_banner(
    appid: int | str,
    cdn_url: str | None = None,
    timeout: float = 10.0,
    *,
    asset: str = "library",
    retries: int = 2,
) -> bytes:
    """One game's banner as bytes, checked to be a whole image (for on-demand queries).

    Tries the same URLs as :func:`download`. Raises :class:`BannerNotFound` when
    the CDN has no such file and :class:`BannermatchError` when it cannot be
    reached or keeps failing.
    """
    appid = str(appid).strip()
    if not is_app_id(appid):
        raise BannermatchError(f"{appid!r} is not a Steam app id")
    cdn = STEAM_CDN.url(cdn_url)
    policy = RetryPolicy(retries=retries, backoff=0.5)
    not_found = []
    failure = ""
    with ServiceClient(STEAM_CDN, policy, timeout=timeout) as client:
        for url in banner_urls(appid, cdn, resolve_templates(asset)):
            for _ in range(retries + 1):
                resp = client.get(url)
                if resp.status_code != 200:
                    not_found.append(f"HTTP {resp.status_code} for {_file_name(url)}")
                    break
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
