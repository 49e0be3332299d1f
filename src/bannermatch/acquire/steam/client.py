"""Synchronous GETs with retries, and errors a user can act on.

Used by the catalogue fetchers, the store API and the on-demand banner. The bulk
downloader (``download.Downloader``) drives the same :class:`RetryPolicy`, statuses and
error descriptions from its asynchronous loop, where each CDN host has its own rate
bucket and a game's fallback URLs share one retry budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from bannermatch import __version__
from bannermatch.acquire.steam.endpoints import Service, redact
from bannermatch.acquire.steam.retry import RETRY_STATUSES, RetryPolicy
from bannermatch.errors import BannermatchError

USER_AGENT = f"bannermatch/{__version__}"
#: seconds to wait for a TCP connection: an unreachable host fails fast
CONNECT_TIMEOUT = 5.0


def timeouts(timeout: float, connect_timeout: float = CONNECT_TIMEOUT) -> httpx.Timeout:
    return httpx.Timeout(timeout, connect=min(timeout, connect_timeout))


def describe_error(exc: BaseException) -> str:
    """A short reason for a transport error: what happened, not a traceback."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the server"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def unreachable(service: Service, url: str, exc: BaseException) -> BannermatchError:
    return BannermatchError(
        f"cannot reach {service.name} at {redact(url)} ({describe_error(exc)}); {service.hint()}"
    )


class ServiceClient:
    """GETs to one service: retries with backoff, Retry-After, fail-fast when unreachable.

    A host that refuses the very first connection is reported at once (it is
    down or the URL is wrong); later connection failures are retried.
    """

    def __init__(
        self,
        service: Service,
        policy: RetryPolicy,
        *,
        timeout: float = 30.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.service, self.policy, self.sleep = service, policy, sleep
        self.answered = False
        self.retried = 0
        self.http = httpx.Client(
            timeout=timeouts(timeout, connect_timeout),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
            trust_env=False,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        before: Callable[[], object] | None = None,
        after: Callable[[], object] | None = None,
    ) -> httpx.Response:
        """GET ``url``; return the first response not worth retrying (2xx, 404, ...).

        ``before`` runs before every try and ``after`` after it, answered or not
        (rate limiting: the interval counts from the end of the previous request).
        """
        full = str(httpx.URL(url, params=params)) if params else url
        policy = self.policy
        reason, wait = "", 0.0
        for attempt in range(policy.retries + 1):
            if attempt:
                self.retried += 1
                self.sleep(wait)
            if before is not None:
                before()
            try:
                try:
                    resp = self.http.get(url, params=params)
                finally:
                    if after is not None:
                        after()
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if not self.answered:
                    raise unreachable(self.service, full, exc) from None
                reason, wait = describe_error(exc), policy.delay(attempt + 1)
                continue
            except httpx.TransportError as exc:  # read timeouts, resets, protocol errors
                reason, wait = describe_error(exc), policy.delay(attempt + 1)
                continue
            self.answered = True
            if resp.status_code not in RETRY_STATUSES:
                return resp
            reason = f"HTTP {resp.status_code}"
            if resp.status_code in (429, 503):
                wait = policy.retry_after(resp.headers.get("Retry-After"), attempt + 1)
            else:
                wait = policy.delay(attempt + 1)
        raise BannermatchError(
            f"{self.service.name} failed: {reason} from {redact(full)} "
            f"after {policy.retries + 1} tries"
        )
