"""Local stand-ins for SteamSpy, the Steam Web API, the store API and the CDN, with faults.

Each is a real HTTP/1.1 server (``ThreadingHTTPServer``) on 127.0.0.1 that
speaks the service's protocol and logs every request it sees. :class:`SteamToday`
models Steam as it is today: the store API names each app's art, new and
replaced art sits at hashed paths, legacy paths 404 or serve the old art, and
``ISteamApps/GetAppList/v2`` is gone. :class:`Cdn` and :class:`FlakyCdn` serve
art at the legacy paths (and name them through the store API too).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image


@dataclass
class Seen:
    """One request as the server saw it."""

    time: float  # time.time() when it arrived
    path: str
    query: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as real web servers set it: the headers and the body go in two writes,
    # and with Nagle's algorithm the body waited for the client's delayed ACK (40 ms an
    # answer on a kept-alive connection)
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        seen = Seen(time.time(), parts.path, query)
        with self.server.lock:
            self.server.seen.append(seen)
        try:
            self.server.app(self, seen)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.send(status, json.dumps(obj).encode("utf-8"))

    def reset_mid_body(self, body: bytes) -> None:
        """Promise the whole body, send half of it, then reset the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; never drop a SYN

    def __init__(self, app: Callable[[_Handler, Seen], None]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up between requests is no error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """Runs ``app(handler, seen)`` for every GET on 127.0.0.1; use as a context manager."""

    def __init__(self, app: Callable[[_Handler, Seen], None]):
        self.server = _Server(app)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def seen(self) -> list[Seen]:
        with self.server.lock:
            return list(self.server.seen)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def steam_env(url: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment with every Steam service (CDN and store API) at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANNERMATCH_STEAM")}
    env.pop("STEAM_API_KEY", None)
    if url is not None:
        env |= {"BANNERMATCH_STEAM_CDN": url, "BANNERMATCH_STEAM_API_URL": url}
    return env | extra


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# the store API ---------------------------------------------------------------------

GET_ITEMS = "/IStoreBrowseService/GetItems/v1"
ASSETS_PREFIX = "/store_item_assets"


def get_items_request(seen: Seen) -> tuple[list[str], str]:
    """The app ids and language of a GetItems call."""
    request = json.loads(seen.query.get("input_json", "{}"))
    ids = [str(entry["appid"]) for entry in request.get("ids", [])]
    return ids, request.get("context", {}).get("language", "english")


def store_item(appid: str, name: str, assets: dict[str, str] | None) -> dict[str, Any]:
    """One ``store_items`` entry: ``assets`` None for an app the store does not know."""
    if assets is None:
        return {"appid": int(appid), "success": 42}
    return {
        "item_type": 0,
        "id": int(appid),
        "success": 1,
        "visible": True,
        "name": name,
        "appid": int(appid),
        "assets": assets,
    }


def legacy_assets(appid: str, stamp: int = 1600000000) -> dict[str, str]:
    """Assets at the legacy paths, as the API names them for art older than 2024."""
    return {
        "asset_url_format": f"steam/apps/{appid}/${{FILENAME}}?t={stamp}",
        "main_capsule": "capsule_616x353.jpg",
        "header": "header.jpg",
        "library_capsule": "library_600x900.jpg",
        "library_capsule_2x": "library_600x900_2x.jpg",
        "library_hero": "library_hero.jpg",
    }


def answer_legacy_items(h: _Handler, seen: Seen) -> None:
    """GetItems for a legacy-path CDN: every app is known, its art at the legacy paths."""
    ids, _ = get_items_request(seen)
    items = [store_item(a, f"Game {a}", legacy_assets(a)) for a in ids]
    h.send_json({"response": {"store_items": items}})


def cdn_requests(server: FakeServer) -> list[Seen]:
    """The requests a server saw for files (store API calls left out)."""
    return [s for s in server.seen if s.path.rstrip("/") != GET_ITEMS]


def cdn_path(path: str) -> str:
    """A CDN path with the store-assets prefix taken off (legacy fakes serve both)."""
    return path.removeprefix(ASSETS_PREFIX)


# SteamSpy ----------------------------------------------------------------------


@dataclass
class SteamSpy:
    """``/api.php?request=all&page=N`` (``page_size`` apps a page) and ``top100in2weeks``.

    ``faults`` maps a page to a list of faults served one per request, in order:
    ``"500"``, ``"html"`` (an error page with status 200), ``"reset"``.
    A ``request=all`` sooner than ``min_interval`` after the last one gets an error page.
    """

    apps: dict[str, dict[str, Any]]
    top: list[str] = field(default_factory=list)
    page_size: int = 1000
    min_interval: float = 0.0
    faults: dict[int, list[str]] = field(default_factory=dict)
    last_all: float | None = None
    too_soon: int = 0

    def __call__(self, h: _Handler, seen: Seen) -> None:
        if seen.path != "/api.php":
            h.send(404, b"not found", "text/plain")
            return
        request = seen.query.get("request")
        if request == "top100in2weeks":
            h.send_json({a: {"appid": int(a), **self.apps.get(a, {"name": ""})} for a in self.top})
            return
        if request != "all":
            h.send_json({"error": "unknown request"})
            return
        page = int(seen.query.get("page", "0"))
        if self.last_all is not None and seen.time - self.last_all < self.min_interval:
            self.too_soon += 1
            h.send(200, b"Connection failed: too many requests", "text/html")
            return
        self.last_all = seen.time
        pending = self.faults.get(page)
        if pending:
            fault = pending.pop(0)
            if fault == "500":
                h.send(500, b"<html>internal error</html>", "text/html")
            elif fault == "html":
                h.send(200, b"<html><body>Error: database busy</body></html>", "text/html")
            elif fault == "reset":
                h.reset_mid_body(json.dumps({"x": "y" * 200}).encode())
            return
        ids = list(self.apps)[page * self.page_size : (page + 1) * self.page_size]
        h.send_json({a: {"appid": int(a), **self.apps[a]} for a in ids})

    def all_pages(self, server: FakeServer) -> list[tuple[float, int]]:
        return [
            (s.time, int(s.query["page"])) for s in server.seen if s.query.get("request") == "all"
        ]


# Steam Web API -------------------------------------------------------------------


@dataclass
class WebApi:
    """``/IStoreService/GetAppList/v1/``: apps by ascending appid after ``last_appid``."""

    apps: list[dict[str, Any]]
    key: str = "test-key-123"
    faults: list[str] = field(default_factory=list)

    def __call__(self, h: _Handler, seen: Seen) -> None:
        if seen.path.rstrip("/") != "/IStoreService/GetAppList/v1":
            h.send(404, b"<html>Not Found</html>", "text/html")
            return
        if seen.query.get("key") != self.key:
            h.send(403, b"<html><body>Access is denied.</body></html>", "text/html")
            return
        if self.faults:
            h.send(int(self.faults.pop(0)), b"<html>busy</html>", "text/html")
            return
        last = int(seen.query.get("last_appid", "0"))
        limit = int(seen.query.get("max_results", "10000"))
        after = sorted((a for a in self.apps if a["appid"] > last), key=lambda a: a["appid"])
        page = after[:limit]
        response: dict[str, Any] = {"apps": page}
        if len(after) > limit:
            response["have_more_results"] = True
            response["last_appid"] = page[-1]["appid"]
        h.send_json({"response": response})


# Steam CDN -----------------------------------------------------------------------


def make_jpeg(seed: int, size: tuple[int, int] = (120, 180), quality: int = 85) -> bytes:
    """A distinct JPEG for every seed: a colour gradient plus noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, 3)
    ramp = np.linspace(0, 1, h)[:, None, None] * rng.integers(-120, 120, 3)
    noise = rng.normal(0, 25, (h, w, 3))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass
class Cdn:
    """``/steam/apps/<appid>/<file>``: ``images[appid]`` for every library file name.

    ``faults[appid]`` (see the module's tests for their meaning): ``404``, ``no2x``,
    ``429``, ``429date``, ``500once``, ``500``, ``stall``, ``reset``, ``html``, ``truncated``.
    ``latency`` seconds are added to every request.
    """

    images: dict[str, bytes]
    faults: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0
    stall: float = 3.0
    retry_after: float = 1.0
    hits: dict[str, int] = field(default_factory=dict)
    retry_dates: dict[str, float] = field(default_factory=dict)  # appid -> Retry-After date
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, h: _Handler, seen: Seen) -> None:
        if self.latency:
            time.sleep(self.latency)
        if seen.path.rstrip("/") == GET_ITEMS:
            answer_legacy_items(h, seen)
            return
        parts = cdn_path(seen.path).strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["steam", "apps"]:
            h.send(404, b"<html>Not Found</html>", "text/html")
            return
        appid, name = parts[2], parts[3]
        with self.lock:
            n = self.hits[appid] = self.hits.get(appid, 0) + 1
        fault = self.faults.get(appid, "")
        body = self.images.get(appid)
        if body is None or fault == "404" or (fault == "no2x" and name.endswith("_2x.jpg")):
            h.send(404, b"<html><body>404 Not Found</body></html>", "text/html")
        elif fault == "429" and n == 1:
            h.send(429, b"slow down", "text/plain", {"Retry-After": f"{self.retry_after:g}"})
        elif fault == "429date" and n == 1:
            when = time.time() + 2
            self.retry_dates[appid] = float(int(when))
            h.send(429, b"slow down", "text/plain", {"Retry-After": formatdate(when, usegmt=True)})
        elif (fault == "500once" and n == 1) or fault == "500":
            h.send(500, b"<html>Internal Server Error</html>", "text/html")
        elif fault == "503once" and n == 1:
            h.send(503, b"<html>Service Unavailable</html>", "text/html")
        elif fault == "stall" and n == 1:
            time.sleep(self.stall)
            h.send(200, body, "image/jpeg")
        elif fault == "reset" and n == 1:
            h.reset_mid_body(body)
        elif fault == "html":
            h.send(200, b"<!DOCTYPE html><html><body>Sorry!</body></html>", "text/html")
        elif fault == "truncated":
            h.send(200, body[: len(body) * 2 // 3], "image/jpeg")
        else:
            h.send(200, body, "image/jpeg" if name.endswith(".jpg") else "image/png")

    def requests_for(self, server: FakeServer, appid: str) -> list[Seen]:
        """The CDN requests for ``appid``'s files."""
        return [s for s in server.seen if cdn_path(s.path).split("/")[3:4] == [appid]]


# a CDN that fails a share of all requests, in every way a CDN fails ----------------------

#: the faults a :class:`FlakyCdn` injects at random, and what each does
FLAKY_FAULTS = {
    "500": "HTTP 500 with an HTML error page",
    "502": "HTTP 502 with an HTML error page",
    "503": "HTTP 503 with Retry-After: 1",
    "429": "HTTP 429 with Retry-After: 2 (seconds)",
    "429date": "HTTP 429 with Retry-After as an HTTP date 3 s ahead",
    "reset": "half the body, then a TCP reset",
    "short": "half the body, then the connection closed (Content-Length promised more)",
    "truncated": "HTTP 200 with the first two thirds of the JPEG (an honest Content-Length)",
    "html": "HTTP 200 with an HTML page instead of the image",
    "stall": "no answer at all until past the client's timeout",
    "stall-body": "headers and part of the body, then silence past the timeout",
    "slow": "the whole body in 8 pieces with pauses (slow but within every limit)",
    "drip": "the body in 40 pieces with pauses: past the client's cap on a whole answer",
}


@dataclass
class Hit:
    """One request a :class:`FlakyCdn` answered."""

    time: float
    appid: str
    file: str
    fault: str  # "" when served normally


def _client_connected(sock: socket.socket) -> bool:
    """Whether the client at the other end of ``sock`` has not closed it (a client sends
    nothing while it waits for an answer, so anything readable is its close or reset)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


@dataclass
class FlakyCdn:
    """``/steam/apps/<appid>/<file>`` where each request fails with probability ``rate``
    in one of :data:`FLAKY_FAULTS` (drawn from a seeded generator), and some apps fail
    every time: ``permanent[appid]`` is ``"404"``, ``"html"``, ``"500"`` or ``"no2x"``."""

    images: dict[str, bytes]
    rate: float = 0.10
    seed: int = 0
    permanent: dict[str, str] = field(default_factory=dict)
    stall: float = 1.2  # seconds: past the client's timeout
    piece_pause: float = 0.02  # seconds between pieces of a slow body
    drip_pause: float = 0.1  # seconds between pieces of a dripping body
    hits: list[Hit] = field(default_factory=list)
    #: the most requests in flight at once whose client was still connected (a request the
    #: client gave up on stays in a handler here until its stall or its next write ends)
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _open: set[socket.socket] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._kinds = list(FLAKY_FAULTS)

    def _draw(self) -> str:
        with self.lock:
            if self._rng.random() >= self.rate:
                return ""
            return self._kinds[int(self._rng.integers(len(self._kinds)))]

    def __call__(self, h: _Handler, seen: Seen) -> None:
        if seen.path.rstrip("/") == GET_ITEMS:
            answer_legacy_items(h, seen)
            return
        parts = cdn_path(seen.path).strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["steam", "apps"] or parts[2] not in self.images:
            h.send(404, b"<html>Not Found</html>", "text/html")
            return
        appid, name = parts[2], parts[3]
        permanent = self.permanent.get(appid, "")
        fault = "" if permanent else self._draw()
        with self.lock:
            self.hits.append(Hit(seen.time, appid, name, permanent or fault))
            self._open.add(h.connection)
            live = sum(map(_client_connected, self._open))
            self.max_in_flight = max(self.max_in_flight, live)
        try:
            self._answer(h, appid, name, permanent or fault)
        finally:
            with self.lock:
                self._open.discard(h.connection)

    def _answer(self, h: _Handler, appid: str, name: str, fault: str) -> None:
        body = self.images[appid]
        if fault == "404" or (fault == "no2x" and name.endswith("_2x.jpg")):
            h.send(404, b"<html><body>404 Not Found</body></html>", "text/html")
        elif fault in ("500", "502"):
            h.send(int(fault), b"<html><body>Server Error</body></html>", "text/html")
        elif fault == "503":
            h.send(503, b"<html>busy</html>", "text/html", {"Retry-After": "1"})
        elif fault == "429":
            h.send(429, b"slow down", "text/plain", {"Retry-After": "2"})
        elif fault == "429date":
            later = formatdate(time.time() + 3, usegmt=True)
            h.send(429, b"slow down", "text/plain", {"Retry-After": later})
        elif fault == "reset":
            h.reset_mid_body(body)
        elif fault == "short":
            self._pieces(h, body, 1, 0.0, stop=len(body) // 2)
            h.close_connection = True
        elif fault == "truncated":
            h.send(200, body[: len(body) * 2 // 3], "image/jpeg")
        elif fault == "html":
            h.send(200, b"<!DOCTYPE html><html><body>Please wait</body></html>", "text/html")
        elif fault == "stall":
            time.sleep(self.stall)
            h.send(200, body, "image/jpeg")
        elif fault == "stall-body":
            self._pieces(h, body, 1, 0.0, stop=len(body) // 3)
            time.sleep(self.stall)
            h.wfile.write(body[len(body) // 3 :])
        elif fault == "slow":
            self._pieces(h, body, 8, self.piece_pause)
        elif fault == "drip":
            self._pieces(h, body, 40, self.drip_pause)
        else:
            h.send(200, body, "image/jpeg")

    @staticmethod
    def _pieces(h: _Handler, body: bytes, n: int, pause: float, stop: int | None = None) -> None:
        """A 200 whose body goes out in ``n`` pieces ``pause`` seconds apart (up to ``stop``)."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        end = len(body) if stop is None else stop
        step = max(1, -(-end // n))
        for start in range(0, end, step):
            h.wfile.write(body[start : start + step])
            h.wfile.flush()
            if pause:
                time.sleep(pause)


# Steam as it is today ------------------------------------------------------------------

#: kinds of app in :class:`SteamToday`
#: ``hashed``: art uploaded since 2024, at a hashed path; the legacy path answers 404
#: ``replaced``: art replaced since 2024, at a hashed path; the legacy path serves the OLD art
#: ``legacy``: art older than 2024, at the plain path (the API names that path)
#: ``nobanner``: a known app with a header but no library capsule
#: ``unknown``: the store does not know the app (``success`` 42)
KINDS = ("hashed", "replaced", "legacy", "nobanner", "unknown")


@dataclass
class StoreApp:
    appid: str
    name: str
    kind: str
    art: bytes = b""  # the current art
    old_art: bytes = b""  # what a legacy path serves for replaced art
    version: int = 1  # bumped by every art update
    localized: dict[str, bytes] = field(default_factory=dict)  # language -> art

    @property
    def hash(self) -> str:
        return hashlib.sha1(f"{self.appid}:{self.version}".encode()).hexdigest()

    @property
    def stamp(self) -> int:
        return 1_700_000_000 + 1000 * self.version + int(self.appid) % 1000


@dataclass
class SteamToday:
    """The store API, the CDN (store assets and legacy paths) and the app lists of today.

    ``api_faults`` are answers the next GetItems calls get instead of the reply:
    ``"429"`` (with ``Retry-After: retry_after``), ``"500"``, ``"502"``, ``"html"``.
    """

    apps: dict[str, StoreApp]
    api_faults: list[str] = field(default_factory=list)
    retry_after: float = 0.3
    latency: float = 0.0
    key: str = "test-key-123"
    html_cdn: bool = False  # every CDN answer an HTML page (a captive proxy)
    api_calls: int = 0
    cdn_hits: dict[str, int] = field(default_factory=dict)  # appid -> CDN requests
    served: dict[str, bytes] = field(default_factory=dict)  # hashed file path -> bytes
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for app in self.apps.values():
            self._publish(app)

    @classmethod
    def mixed(cls, per_kind: int, first: int = 10) -> SteamToday:
        """``per_kind`` apps of each kind, with distinct art; ids from ``first`` upwards."""
        apps: dict[str, StoreApp] = {}
        for n in range(per_kind * len(KINDS)):
            appid, kind = str(first + n), KINDS[n % len(KINDS)]
            art = make_jpeg(first + n) if kind in ("hashed", "replaced", "legacy") else b""
            old = make_jpeg(100_000 + first + n) if kind == "replaced" else b""
            apps[appid] = StoreApp(appid, f"{kind.title()} Game {appid}", kind, art, old)
        return cls(apps)

    def _publish(self, app: StoreApp) -> None:
        if app.kind in ("hashed", "replaced"):
            base = f"/steam/apps/{app.appid}/{app.hash}/"
            self.served[base + "library_600x900_2x.jpg"] = app.art
            self.served[base + "library_600x900.jpg"] = app.art
            for language, art in app.localized.items():
                self.served[base + f"library_600x900_2x_{language}.jpg"] = art

    def update_art(self, appid: str, art: bytes) -> None:
        """New art for ``appid``: a new hashed path and stamp; old URLs keep the old art."""
        with self.lock:
            app = self.apps[appid]
            if app.kind == "legacy":
                app.kind, app.old_art = "replaced", app.art
            app.art, app.version = art, app.version + 1
            self._publish(app)

    def assets(self, app: StoreApp, language: str) -> dict[str, str] | None:
        if app.kind == "unknown":
            return None
        if app.kind == "legacy":
            return legacy_assets(app.appid, app.stamp)
        assets = {
            "asset_url_format": f"steam/apps/{app.appid}/${{FILENAME}}?t={app.stamp}",
            "header": f"{app.hash}/header.jpg",
        }
        if app.kind == "nobanner":
            return assets
        suffix = f"_{language}" if language in app.localized else ""
        return assets | {
            "library_capsule": f"{app.hash}/library_600x900.jpg",
            "library_capsule_2x": f"{app.hash}/library_600x900_2x{suffix}.jpg",
        }

    def __call__(self, h: _Handler, seen: Seen) -> None:
        if self.latency:
            time.sleep(self.latency)
        path = seen.path.rstrip("/")
        if path == GET_ITEMS:
            self._items(h, seen)
        elif path == "/ISteamApps/GetAppList/v2":
            h.send(404, b"<html><head><title>Not Found</title></head><body><h1>Not Found</h1>"
                   b"Method not found</body></html>", "text/html")  # fmt: skip
        elif path == "/IStoreService/GetAppList/v1":
            apps = [{"appid": int(a.appid), "name": a.name} for a in self.apps.values()]
            WebApi(apps, key=self.key)(h, seen)
        elif self.html_cdn:
            h.send(200, b"<!DOCTYPE html><html><body>Sign in to the network</body></html>",
                   "text/html")  # fmt: skip
        elif path.startswith(ASSETS_PREFIX + "/"):
            self._asset(h, path.removeprefix(ASSETS_PREFIX))
        else:
            self._legacy(h, path)

    def _items(self, h: _Handler, seen: Seen) -> None:
        with self.lock:
            self.api_calls += 1
            fault = self.api_faults.pop(0) if self.api_faults else ""
        if fault == "429":
            h.send(429, b"Too Many Requests", "text/plain", {"Retry-After": f"{self.retry_after}"})
        elif fault in ("500", "502", "503"):
            h.send(int(fault), b"<html><body>Server Error</body></html>", "text/html")
        elif fault == "html":
            h.send(200, b"<!DOCTYPE html><html><body>Access denied</body></html>", "text/html")
        else:
            ids, language = get_items_request(seen)
            with self.lock:
                items = [
                    store_item(a, app.name, self.assets(app, language))
                    if (app := self.apps.get(a)) is not None
                    else store_item(a, "", None)
                    for a in ids
                ]
            h.send_json({"response": {"store_items": items}})

    def _count(self, appid: str) -> None:
        with self.lock:
            self.cdn_hits[appid] = self.cdn_hits.get(appid, 0) + 1

    def _asset(self, h: _Handler, path: str) -> None:
        parts = path.strip("/").split("/")
        appid = parts[2] if len(parts) > 2 else ""
        self._count(appid)
        app = self.apps.get(appid)
        body = self.served.get(path)
        if body is None and app is not None and app.kind == "legacy" and len(parts) == 4:
            body = app.art if parts[3].startswith("library_600x900") else None
        if body is None:
            h.send(404, b"<html><body>404 Not Found</body></html>", "text/html")
        else:
            h.send(200, body, "image/jpeg")

    def _legacy(self, h: _Handler, path: str) -> None:
        parts = path.strip("/").split("/")
        appid = parts[2] if len(parts) == 4 and parts[:2] == ["steam", "apps"] else ""
        self._count(appid)
        app = self.apps.get(appid)
        body = None
        if app is not None and parts[3].startswith("library_600x900"):
            body = {"legacy": app.art, "replaced": app.old_art}.get(app.kind)
        if body:
            h.send(200, body, "image/jpeg")
        else:
            h.send(404, b"<html><body>404 Not Found</body></html>", "text/html")
