"""Run the app with uvicorn: what ``bannermatch serve`` calls."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import BannermatchError
from ..textsearch import text_mode
from .ratelimit import Rate, is_loopback

if TYPE_CHECKING:
    from .data import ServedCollection

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
    sock = listening_socket(host, port)  # a busy port is an error before anything is served
    try:
        served = ServedCollection.open(collection, model)
        app = create_app(served, rate_limit=rate, cors=cors)
        for warning in start_warnings(served):
            print(f"bannermatch: warning: {warning}", file=sys.stderr, flush=True)
        shown = f"[{host}]" if ":" in host else host
        print(
            f"bannermatch: {served.count:,} items of {served.data.key} loaded in "
            f"{time.perf_counter() - t0:.2f}s; serving http://{shown}:{port}/ "
            f"(rate limit: {rate or 'off'}; CORS: {', '.join(cors) or 'none'})",
            file=sys.stderr,
            flush=True,
        )
        config = uvicorn.Config(
            app, host=host, port=port, access_log=access_log, log_level="info",
            server_header=False,
        )  # fmt: skip
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; one line naming the address when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BannermatchError(
                f"port {port} on {host} is in use by another program: choose another with --port"
            ) from None
        raise BannermatchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def start_warnings(served: ServedCollection) -> list[str]:
    """What a user should know before browsing: no neighbours stored, no text search."""
    warnings = []
    if served.neighbors is None:
        warnings.append(
            f"{served.root} has no `match` results: every similar view is computed on "
            f"request (run `bannermatch match {served.root}` for stored neighbours)"
        )
    if text_mode(served.data.manifest) is None and served.banner_texts is None:
        warnings.append(f"{served.data.key} has no text search: the page's text mode is off")
    return warnings
