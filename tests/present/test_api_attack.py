"""The API under attack: schemathesis finds no 5xx; traversal, oversized and bomb uploads,
huge numbers and malformed bodies get 4xx over a real socket; the rate limit answers 429;
nothing fetches a URL a client gives (no SSRF); a mixed load over loopback gets no error
for a valid request, with the server's memory bounded."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bannermatch.present.server import ServedCollection, create_app
from bannermatch.present.server.api import MAX_N, MAX_UPLOAD, MAX_UPLOAD_PIXELS
from support.bad_inputs import png_chunk
from support.servers import STEAM, free_port, running_server, wait_until_serving
from support.steam import FakeServer, make_jpeg


@pytest.fixture(scope="module")
def base_url(served: ServedCollection) -> Any:
    with running_server(create_app(served)) as url:
        yield url


def flat_png(width: int, height: int, *, real_rows: bool = False) -> bytes:
    """A PNG declaring ``width`` x ``height`` grey pixels; with ``real_rows`` its data is
    all there (a "pixel flood": a few hundred KB that decode to width*height*3 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    if real_rows:
        pack = zlib.compressobj(9)
        row = b"\0" + b"\x80" * (width * 3)
        data = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    else:
        data = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def raw_request(base: str, request: bytes, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``request`` as it is (no client normalises its path) and read the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                break
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


def get_raw(base: str, target: str) -> tuple[int, bytes]:
    return raw_request(
        base, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1")
    )


# schemathesis ---------------------------------------------------------------------------

#: generated cases per operation and generation mode
SCHEMA_EXAMPLES = 8


def test_schemathesis_finds_no_server_error(served: ServedCollection) -> None:
    """Every operation of the OpenAPI schema, with data that fits it and data that does not:
    no 5xx, and every answer conforms to the schema (status, content type, body).

    :data:`SCHEMA_EXAMPLES` cases per operation and mode (derandomised, so the same ones on
    every run): the count is not what is checked, only that every operation meets both."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(served))
    statuses: Counter[int] = Counter()
    operations = 0
    # an upload that fits the schema may still not be an image: 415 or 422 is right there
    excluded = [positive_data_acceptance]
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=SCHEMA_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                response = case.call_and_validate(excluded_checks=excluded)
                statuses[response.status_code] += 1
                assert response.status_code < 500

            try:
                check()
            except Unsatisfiable:  # no parameter to get wrong (GET /api/info, ...)
                assert mode == GenerationMode.NEGATIVE
    assert operations >= 14
    assert not [s for s in statuses if s >= 500]
    print(f"\nschemathesis: {operations} operations, {sum(statuses.values())} calls: {statuses}")


# hostile requests over a real socket ----------------------------------------------------

TRAVERSALS = [
    "/static/../../../../etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/app.py",
    "/static/..%5c..%5capp.py",
    "/static/%2e%2e%2fapp.py",
    "/static//etc/passwd",
    "/static/app.js%00.png",
    "/api/items/../../../etc/passwd/image",
    "/api/items/..%2f..%2f..%2fetc%2fpasswd/image",
    "/api/items/%2e%2e%2f%2e%2e%2fcatalog.sqlite/image",
    "/api/items/%00/image",
    "/api/items/620%00/image",
    "//etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/api/items/620/image/../../../../etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_path_traversal_gets_4xx_and_nothing_leaks(base_url: str, target: str) -> None:
    status, data = get_raw(base_url, target)
    assert 400 <= status < 500, (target, data[:300])
    assert b"root:" not in data and b"SQLite format" not in data and b"import " not in data


def test_oversized_uploads_are_refused_before_they_are_read(base_url: str) -> None:
    # a declared length over the cap: 413 at once, without waiting for a byte of body
    started = time.monotonic()
    status, data = raw_request(
        base_url,
        b"POST /api/search/image HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        + f"Content-Length: {50 * MAX_UPLOAD}\r\n\r\n".encode(),
    )
    assert status == 413 and b"too large" in data
    assert time.monotonic() - started < 5
    # a chunked body with no length: cut off once it passes the cap
    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )

    def chunks() -> Any:
        yield head
        block = b"\0" * (1 << 20)
        for _ in range(MAX_UPLOAD // len(block) + 3):
            yield block

    r = httpx.post(
        f"{base_url}/api/search/image",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=30,
    )
    assert r.status_code == 413
    # and the server still answers
    assert httpx.get(f"{base_url}/api/info", timeout=10).status_code == 200


def test_bombs_and_pixel_floods_get_422(base_url: str) -> None:
    def upload(data: bytes) -> httpx.Response:
        files = {"file": ("x.png", data, "image/png")}
        return httpx.post(f"{base_url}/api/search/image", files=files, timeout=30)

    r = upload(flat_png(40_000, 40_000))
    assert r.status_code == 422 and "decompression bomb" in r.json()["detail"]
    flood = flat_png(7_999, 7_999, real_rows=True)  # 64 megapixels in ~200 KB
    assert len(flood) < 300_000
    started = time.monotonic()
    r = upload(flood)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        f"cannot use this image: too many pixels: 7999x7999 is over the limit of "
        f"{MAX_UPLOAD_PIXELS:,}; scale it down"
    )
    assert time.monotonic() - started < 2  # refused from its header, not decoded
    assert upload(make_jpeg(1, (300, 450))).status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        f"/api/items/620/similar?n={10**30}",
        "/api/items/620/similar?n=-1",
        "/api/items/620/similar?n=0",
        f"/api/items/620/similar?n={MAX_N + 1}",
        "/api/items/620/similar?n=1e3",
        "/api/items/620/similar?n=NaN",
        "/api/items/620/similar?n=%00",
        f"/api/unique?limit={10**9}",
        "/api/unique?offset=-5",
        f"/api/names?q={'x' * 201}",
        "/api/names?q=",
        "/api/names?q=abc&limit=100000",
        f"/api/search/text?q={'x' * 301}",
        f"/similar_apps_from_id?id={'9' * 201}",
        "/similar_apps_from_id?id=620&n=0",
        "/app_from_name?name=",
        "/api/random?featured=maybe",
    ],
)
def test_huge_or_malformed_parameters_get_422(base_url: str, target: str) -> None:
    status, data = get_raw(base_url, target)
    assert status == 422, (target, data[-300:])


@pytest.mark.parametrize(
    "target",
    [f"/api/unique?offset={10**30}&limit=5", f"/similar_apps_from_id?id=620&n={10**30}"],
)
def test_huge_numbers_that_are_valid_are_answered(
    base_url: str, served: ServedCollection, target: str
) -> None:
    """A page far past the end is empty; the original API caps n rather than refusing it."""
    r = httpx.get(base_url + target, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert (body["results"] == []) if isinstance(body, dict) else (len(body) == served.count)


def test_malformed_bodies_and_methods_get_4xx(base_url: str) -> None:
    url = f"{base_url}/api/search/image"
    cases = {
        "malformed JSON": dict(
            content=b'{"file": "x",', headers={"content-type": "application/json"}
        ),
        "JSON that is valid": dict(json={"file": "aGVsbG8="}),
        "multipart without a boundary": dict(
            content=b"abc", headers={"content-type": "multipart/form-data"}
        ),
        "multipart cut short": dict(
            content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a',
            headers={"content-type": "multipart/form-data; boundary=b"},
        ),
        "a text field instead of a file": dict(data={"file": "not a file"}),
        "form-encoded garbage": dict(
            content=b"%%%&&&===", headers={"content-type": "application/x-www-form-urlencoded"}
        ),
        "no body": {},
    }
    for what, kwargs in cases.items():
        r = httpx.post(url, timeout=10, **kwargs)
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
    for method in ("PUT", "DELETE", "PATCH"):
        assert httpx.request(method, url, timeout=10).status_code == 405
    assert httpx.post(f"{base_url}/api/names?q=a", timeout=10).status_code == 405
    status, _ = raw_request(
        base_url, b"GET /api/info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    )
    assert status < 500  # answered, refused, or the connection dropped: never a 5xx
    status, _ = raw_request(base_url, b"GARBAGE\r\n\r\n")
    assert status in (0, 400)
    assert httpx.get(f"{base_url}/api/info", timeout=10).status_code == 200


def test_rate_limit_answers_429_over_a_real_socket(served: ServedCollection) -> None:
    with running_server(create_app(served, rate_limit="20/hour")) as url:
        # running_server's readiness probe used some of the budget
        codes = [httpx.get(f"{url}/api/names?q=po", timeout=10).status_code for _ in range(25)]
        assert codes.count(429) >= 5 and set(codes) <= {200, 429}
        first = codes.index(429)
        assert set(codes[first:]) == {429}
        r = httpx.get(f"{url}/api/random", timeout=10)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "rate limit" in r.json()["detail"]
        # the page and the image files stay available
        assert httpx.get(f"{url}/", timeout=10).status_code == 200
        assert httpx.get(f"{url}/api/items/620/image", timeout=10).status_code == 200


# SSRF ------------------------------------------------------------------------------------

URL_WORDS = re.compile(r"(?i)url|uri|href|src|link|callback|webhook|host|fetch")


def _parameters(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    components = openapi.get("components", {}).get("schemas", {})
    for path, methods in openapi["paths"].items():
        for method, op in methods.items():
            for p in op.get("parameters", []):
                out.append((f"{method} {path}", p["name"], p.get("schema", {})))
            body = op.get("requestBody", {}).get("content", {})
            for media in body.values():
                ref = media.get("schema", {}).get("$ref", "")
                props = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
                for name, schema in props.items():
                    out.append((f"{method} {path}", name, schema))
    return out


def test_no_request_can_make_the_server_fetch_a_url(
    served: ServedCollection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No parameter takes a URL; URLs of loopback and private hosts given in every parameter,
    and Steam app ids that are not in the collection, make the server fetch nothing."""
    app = create_app(served)
    client = TestClient(app)
    params = _parameters(client.get("/openapi.json").json())
    assert len(params) >= 15
    for where, name, schema in params:
        assert not URL_WORDS.search(name), (where, name)
        assert schema.get("format") not in ("uri", "url", "uri-reference"), (where, name)

    requests: list[str] = []

    def record(h: Any, seen: Any) -> None:
        requests.append(seen.path)
        h.send(200, make_jpeg(5), "image/jpeg")

    with FakeServer(record) as internal:
        # the Steam CDN a CLI `similar 12345` would fetch from: the API must not
        monkeypatch.setenv("BANNERMATCH_STEAM_CDN", internal.url)
        targets = [
            f"{internal.url}/steam/apps/10/library_600x900.jpg",
            "http://127.0.0.1:22/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[::1]/",
            "file:///etc/passwd",
        ]
        for target in targets:
            q = httpx.QueryParams({"q": target, "id": target, "name": target})
            for path in (
                "/api/names",
                "/app_from_id",
                "/app_from_name",
                "/similar_apps_from_id",
                "/similar_apps_from_name",
                "/api/search/text",
            ):
                assert client.get(f"{path}?{q}").status_code < 500
            item = httpx.URL(target).raw_path.decode() if "://" in target else target
            assert client.get(f"/api/items/{item.lstrip('/')}/similar").status_code == 404
            files = {"file": ("x.jpg", target.encode(), "image/jpeg")}
            assert client.post("/api/search/image", files=files).status_code == 422
        for appid in ("10", "999999", "1227690"):  # Steam ids not in the collection
            assert appid not in served.ids
            assert client.get(f"/api/items/{appid}/similar").status_code == 404
            assert client.get(f"/api/items/{appid}/image").status_code == 404
            assert client.get(f"/app_from_id?id={appid}").status_code == 404
        assert requests == []


# the load -------------------------------------------------------------------------------

#: how long the load runs, and from when on the server counts as warm (the model loads
#: with the first upload, in the first second): the length is not what is checked, only
#: that valid requests never fail and the memory stays flat once warm
LOAD_SECONDS = 10.0
WARM_AFTER = 4.0
CLIENTS = 8


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _mix(root: Path) -> list[tuple[str, bool, int, dict[str, Any]]]:
    """(label, valid, weight, request) for the load; a valid request must get 200."""
    photo = sorted((root.parent / "images-in").glob("*.jpg"))[3].read_bytes()
    upload = {"files": {"file": ("q.jpg", photo, "image/jpeg")}}
    return [
        ("info", True, 4, {"method": "GET", "url": "/api/info"}),
        ("item", True, 8, {"method": "GET", "url": "/api/items/{id}"}),
        ("similar", True, 10, {"method": "GET", "url": "/api/items/{id}/similar?n=10"}),
        ("similar exact", True, 4, {"method": "GET", "url": "/api/items/{id}/similar?n=60"}),
        ("names", True, 8, {"method": "GET", "url": "/api/names?q=po"}),
        ("unique", True, 3, {"method": "GET", "url": "/api/unique?limit=50"}),
        ("random", True, 3, {"method": "GET", "url": "/api/random"}),
        ("featured", True, 2, {"method": "GET", "url": "/api/featured"}),
        ("image", True, 6, {"method": "GET", "url": "/api/items/{id}/image"}),
        ("legacy", True, 3, {"method": "GET", "url": "/similar_apps_from_name?name=portal&n=8"}),
        ("upload", True, 3, {"method": "POST", "url": "/api/search/image?n=5", **upload}),
        ("page", True, 1, {"method": "GET", "url": "/"}),
        ("unknown id", False, 4, {"method": "GET", "url": "/api/items/no-such-id/similar"}),
        ("bad n", False, 4, {"method": "GET", "url": f"/api/items/620/similar?n={10**30}"}),
        ("traversal", False, 3, {"method": "GET", "url": "/static/..%2f..%2fapp.py"}),
        (
            "bomb",
            False,
            2,
            {
                "method": "POST",
                "url": "/api/search/image",
                "files": {"file": ("b.png", flat_png(40_000, 40_000), "image/png")},
            },
        ),
        (
            "pixel flood",
            False,
            1,
            {
                "method": "POST",
                "url": "/api/search/image",
                "files": {"file": ("f.png", flat_png(7_999, 7_999, real_rows=True), "image/png")},
            },
        ),
        (
            "not an image",
            False,
            2,
            {
                "method": "POST",
                "url": "/api/search/image",
                "files": {"file": ("a.jpg", b"<html>x</html>", "image/jpeg")},
            },
        ),
        (
            "malformed JSON",
            False,
            2,
            {
                "method": "POST",
                "url": "/api/search/image",
                "content": b"{bad",
                "headers": {"content-type": "application/json"},
            },
        ),
        (
            "oversized",
            False,
            1,
            {
                "method": "POST",
                "url": "/api/search/image",
                "files": {"file": ("big.png", b"\0" * (MAX_UPLOAD + 100), "image/png")},
            },
        ),
        ("wrong method", False, 1, {"method": "DELETE", "url": "/api/info"}),
    ]


@pytest.mark.slow
def test_mixed_load_gets_no_error_for_valid_requests(served_root: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANNERMATCH_STEAM")}
    server = subprocess.Popen(
        [sys.executable, "-m", "bannermatch.cli", "serve", str(served_root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, lambda: server.poll() is None, 120)
        results = asyncio.run(_load(base, _mix(served_root), server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    codes, latencies, rss, errors = results
    assert errors == [], errors[:5]
    bad_valid = {k: c for k, c in codes.items() if k[1] and set(c) != {200}}
    assert bad_valid == {}, bad_valid
    for (label, valid), c in codes.items():
        if not valid:
            assert all(400 <= s < 500 for s in c), (label, c)
    total = sum(sum(c.values()) for c in codes.values())
    assert total > 1000
    # memory: flat once warm (the model loads with the first upload)
    warm = [kb for t, kb in rss if t >= WARM_AFTER]
    growth_mb = (max(warm) - warm[0]) / 1024
    assert growth_mb < 64, f"the server grew by {growth_mb:.0f} MB under load"
    p99 = sorted(latencies)[int(0.99 * len(latencies))]
    print(
        f"\nload: {total} requests in {LOAD_SECONDS:.0f}s ({total / LOAD_SECONDS:.0f}/s) from "
        f"{CLIENTS} clients; "
        + "; ".join(f"{label}: {dict(c)}" for (label, _), c in sorted(codes.items()))
        + f"; p99 {p99 * 1000:.0f} ms; RSS {rss[0][1] / 1024:.0f} MB at start, "
        f"{warm[0] / 1024:.0f} MB at {WARM_AFTER:.0f} s, "
        f"{max(kb for _, kb in rss) / 1024:.0f} MB at most, "
        f"growth after warm-up {growth_mb:.1f} MB"
    )


async def _load(
    base: str, mix: list[tuple[str, bool, int, dict[str, Any]]], pid: int
) -> tuple[dict[tuple[str, bool], Counter[int]], list[float], list[tuple[float, int]], list[str]]:
    codes: dict[tuple[str, bool], Counter[int]] = defaultdict(Counter)
    latencies: list[float] = []
    rss: list[tuple[float, int]] = []
    errors: list[str] = []
    weights = [w for _, _, w, _ in mix]
    ids = [*STEAM, "abzu-0", "extra/abzu-0"]
    start = time.monotonic()
    end = start + LOAD_SECONDS

    async def client(n: int) -> None:
        rng = random.Random(n)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            while time.monotonic() < end:
                label, valid, _, spec = rng.choices(mix, weights)[0]
                spec = dict(spec)
                spec["url"] = spec["url"].replace("{id}", httpx.URL(rng.choice(ids)).path)
                t0 = time.monotonic()
                try:
                    r = await http.request(**spec)
                except httpx.HTTPError as exc:
                    errors.append(f"{label}: {type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.monotonic() - t0)
                codes[label, valid][r.status_code] += 1

    async def watch() -> None:
        while time.monotonic() < end:
            rss.append((time.monotonic() - start, _rss_kb(pid)))
            await asyncio.sleep(0.5)

    await asyncio.gather(watch(), *(client(n) for n in range(CLIENTS)))
    return dict(codes), latencies, rss, errors
