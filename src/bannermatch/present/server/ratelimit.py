"""A per-client token-bucket rate limit as plain ASGI middleware (429 with Retry-After)."""

from __future__ import annotations

import ipaddress
import json
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"\s*(\d+)\s*(?:/\s*([a-z]+))?\s*")


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period`` seconds, with bursts of up to ``count``."""

    count: int
    period: float = 60.0

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``120/min``, ``5/s``, ``1000/hour`` or a bare number (per minute); 0 or off: None."""
        if text.strip().lower() in {"0", "off", "none", "no"}:
            return None
        m = _RATE.fullmatch(text.lower())
        if not m or (m.group(2) and m.group(2) not in _PERIODS):
            raise ValueError(f"bad rate {text!r}: expected N/s, N/min or N/hour")
        count = int(m.group(1))
        return cls(count, _PERIODS[m.group(2) or "min"]) if count else None

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "hour"}.get(self.period, f"{self.period:g}s")
        return f"{self.count}/{unit}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenBuckets:
    """One bucket per client key; thread-safe; forgets full buckets when it grows big."""

    def __init__(
        self, rate: Rate, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ):
        self.rate = rate
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if the request may go on, else the seconds until it could."""
        per_second = self.rate.count / self.rate.period
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.rate.count), now))
            tokens = min(float(self.rate.count), tokens + (now - at) * per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:
                    self._prune(now, per_second)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / per_second

    def _prune(self, now: float, per_second: float) -> None:
        full = [
            k
            for k, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * per_second >= self.rate.count
        ]
        for k in full:
            del self._buckets[k]


class RateLimitMiddleware:
    """Limit requests whose path starts with one of ``prefixes`` (and that ``exempt``
    does not let through) per client address."""

    def __init__(
        self,
        app: ASGIApp,
        rate: Rate,
        prefixes: tuple[str, ...] = ("/",),
        exempt: Callable[[str], bool] | None = None,
    ):
        self.app = app
        self.buckets = TokenBuckets(rate)
        self.prefixes = prefixes
        self.exempt = exempt

    def limits(self, path: str) -> bool:
        return path.startswith(self.prefixes) and not (self.exempt and self.exempt(path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limits(scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "?")
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        body = json.dumps(
            {"detail": f"rate limit of {self.buckets.rate} exceeded: retry in {retry}s"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
