"""Request pacing: a token bucket per host (async) and a minimum interval (sync)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` requests per second on average, bursts of up to ``burst``; rate 0 = no limit.

    A server that answers 429 can :meth:`pause` the bucket, which holds every
    request to that host until the pause is over.
    """

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                if self.rate <= 0:
                    return
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


class HostLimiter:
    """One :class:`TokenBucket` per host."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, TokenBucket] = {}

    def bucket(self, host: str) -> TokenBucket:
        if host not in self.buckets:
            self.buckets[host] = TokenBucket(self.rate, self.burst)
        return self.buckets[host]


class IntervalGate:
    """At least ``interval`` seconds between requests, across runs too.

    Call :meth:`wait` before a request and :meth:`mark` when it is over: the
    interval counts from the end of the previous request, so that the server
    sees its requests spaced by no less than ``interval`` whatever the network
    delays. ``last`` is the time of the previous request's end (for instance
    one that a previous run stored), so that a rerun keeps its distance too.
    """

    def __init__(
        self,
        interval: float,
        last: float | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = interval
        self.last = last
        self.clock, self.sleep = clock, sleep

    def remaining(self) -> float:
        if self.last is None:
            return 0.0
        # a stored time in the future (a clock change) is waited out at most once
        return min(self.interval, max(0.0, self.last + self.interval - self.clock()))

    def wait(self) -> None:
        """Sleep until the interval since the last request has passed."""
        remaining = self.remaining()
        if remaining > 0:
            self.sleep(remaining)

    def mark(self) -> float:
        """Note the end of a request; return its time."""
        self.last = self.clock()
        return self.last
