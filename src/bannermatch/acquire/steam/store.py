"""The store API: which file is each app's current art, and its name.

``IStoreBrowseService/GetItems`` needs no key and answers many apps a call::

    GET <api>/IStoreBrowseService/GetItems/v1/?input_json={"ids":[{"appid":620}],
        "context":{"language":"english","country_code":"US"},
        "data_request":{"include_assets":true}}

Each ``store_items`` entry has ``success`` (1: a known app), ``name`` and
``assets``: ``asset_url_format`` (``steam/apps/620/<hash>/${FILENAME}?t=...``)
and one file name per asset field. The client asks in batches, one call at a
time and at most ``rate`` calls a second, and retries 429 and 5xx answers with
the HTTP client's policy (honouring ``Retry-After``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bannermatch.acquire.steam.client import ServiceClient
from bannermatch.acquire.steam.endpoints import (
    ASSET_FIELDS,
    GET_ITEMS_PATH,
    STEAM_API,
    asset_url,
    redact,
)
from bannermatch.acquire.steam.ratelimit import IntervalGate
from bannermatch.acquire.steam.retry import RetryPolicy
from bannermatch.errors import BannermatchError

log = logging.getLogger(__name__)

#: apps per GetItems call (the ids travel in the query string: about 30 bytes each)
BATCH = 100
#: GetItems calls per second
RATE = 4.0


@dataclass(frozen=True)
class StoreArt:
    """What the store says of one app's art for one asset."""

    appid: str
    known: bool  # the store knows the app (success == 1)
    name: str = ""
    urls: tuple[str, ...] = ()  # the asset's URLs, best first; empty: the app has no such art


class StoreApiError(BannermatchError):
    """The store API cannot be reached or keeps failing (the caller may fall back)."""


def items_query(appids: Sequence[str], language: str) -> dict[str, str]:
    """The query string of one GetItems call."""
    request = {
        "ids": [{"appid": int(a)} for a in appids],
        "context": {"language": language, "country_code": "US"},
        "data_request": {"include_assets": True},
    }
    return {"input_json": json.dumps(request, separators=(",", ":"))}


def parse_items(reply: Any, asset: str, cdn: str) -> dict[str, StoreArt]:
    """The apps of one GetItems reply, by app id; ValueError if it is not such a reply."""
    if not isinstance(reply, dict) or not isinstance(reply.get("response"), dict):
        raise ValueError("no 'response' object")
    found: dict[str, StoreArt] = {}
    for entry in reply["response"].get("store_items") or []:
        appid = str(entry.get("appid") or entry.get("id") or "")
        if not appid:
            continue
        if entry.get("success") != 1:
            found[appid] = StoreArt(appid, known=False)
            continue
        assets = entry.get("assets") or {}
        url_format = assets.get("asset_url_format") or ""
        fields = [f for f in ASSET_FIELDS[asset] if url_format and assets.get(f)]
        urls = tuple(asset_url(cdn, url_format, str(assets[f])) for f in fields)
        name = str(entry.get("name") or "")
        found[appid] = StoreArt(appid, True, name, urls)
    return found


class StoreApi:
    """GetItems calls through one :class:`ServiceClient`: batched, paced, retried."""

    def __init__(
        self,
        *,
        api_url: str | None = None,
        cdn: str,
        policy: RetryPolicy,
        timeout: float = 30.0,
        rate: float = RATE,
        batch: int = BATCH,
    ):
        self.base, self.cdn, self.batch = STEAM_API.url(api_url), cdn, batch
        self.client = ServiceClient(STEAM_API, policy, timeout=timeout)
        self.gate = IntervalGate(1.0 / rate if rate > 0 else 0.0)
        self.calls = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> StoreApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, appids: Sequence[str], asset: str, language: str) -> dict[str, StoreArt]:
        url = self.base + GET_ITEMS_PATH
        try:
            resp = self.client.get(
                url,
                params=items_query(appids, language),
                before=self.gate.wait,
                after=self.gate.mark,
            )
        except BannermatchError as exc:
            raise StoreApiError(str(exc)) from None
        self.calls += 1
        where = redact(url)
        if resp.status_code != 200:
            raise StoreApiError(f"the Steam store API answered HTTP {resp.status_code} at {where}")
        try:
            return parse_items(resp.json(), asset, self.cdn)
        except ValueError as exc:
            snippet = " ".join(resp.text.split())[:60]
            raise BannermatchError(
                f"the Steam store API at {self.client.service.name} {where} sent no store "
                f"items ({exc}; it began {snippet!r}): is {STEAM_API.option} right, or is a "
                "proxy answering for it?"
            ) from None

    def lookup(
        self,
        appids: Iterable[str],
        asset: str,
        language: str = "english",
        progress: Callable[[int], object] | None = None,
    ) -> Iterator[StoreArt]:
        """The art of every app in ``appids``, in batches; unknown apps too (known=False).

        A localised language falls back to the English art of apps that have none.
        """
        ids = list(dict.fromkeys(appids))
        for start in range(0, len(ids), self.batch):
            chunk = ids[start : start + self.batch]
            found = self._call(chunk, asset, language)
            if language != "english":
                bare = [a for a in chunk if a in found and found[a].known and not found[a].urls]
                if bare:
                    found.update(self._call(bare, asset, "english"))
            for appid in chunk:
                yield found.get(appid, StoreArt(appid, known=False))
            if progress is not None:
                progress(len(chunk))
