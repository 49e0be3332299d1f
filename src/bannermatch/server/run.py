"""Run the app with uvicorn: what ``bannermatch serve`` calls."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from ..errors import BannermatchError
from .ratelimit import Rate, is_loopback

#: the per-client limit when serving on a non-loopback address and none is given
DEFAULT_RATE = "120/min"


def default_rate(host: str, rate_limit: str | None) -> Rate | None:
    """``rate_limit`` parsed; when None: off on loopback, :data:`DEFAULT_RATE` elsewhere."""
    if rate_limit is None:
        return None if is_loopback(host) else Rate.parse(DEFAULT_RATE)
    try:
        return Rate.parse(rate_limit)
    except ValueError as exc:
        raise BannermatchError(f"--rate-limit: {exc}") from None


def serve(
    collection: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    rate_limit: str | None = None,
    cors: Sequence[str] = (),
    access_log: bool = False,
) -> None:
    """Serve ``collection`` until interrupted."""
    import uvicorn

    from .app import create_app
    from .data import ServedCollection

    t0 = time.perf_counter()
    rate = default_rate(host, rate_limit)
    served = ServedCollection.open(collection, model)
    app = create_app(served, rate_limit=rate, cors=cors)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"bannermatch: {served.count:,} items of {served.data.key} loaded in "
        f"{time.perf_counter() - t0:.2f}s; serving http://{shown}:{port}/ "
        f"(rate limit: {rate or 'off'}; CORS: {', '.join(cors) or 'none'})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        server_header=False,
    )
