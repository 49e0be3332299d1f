"""When and how long to wait before trying a request again."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

#: statuses worth another try: server trouble, timeouts, rate limits
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` tries after the first, exponential backoff with jitter in between."""

    retries: int = 5
    backoff: float = 0.5  # seconds before the first retry (before jitter)
    max_backoff: float = 30.0
    max_retry_after: float = 120.0  # a server's Retry-After is honoured up to this

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): half fixed, half random."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))
        return base / 2 + random.uniform(0, base / 2)

    def retry_after(self, header: str | None, retry: int) -> float:
        """The wait a 429 or 503 asks for, capped; the backoff when it asks for none."""
        asked = parse_retry_after(header)
        if asked is None:
            return self.delay(retry)
        return min(asked, self.max_retry_after)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)
