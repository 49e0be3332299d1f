"""The JSON API (and the original API) over a real small collection, with TestClient."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bannermatch.present.server import ServedCollection, create_app
from bannermatch.present.server.api import MAX_N
from bannermatch.present.server.ratelimit import Rate, TokenBuckets
from bannermatch.present.server.run import default_rate
from bannermatch.store.collection import Collection
from support.servers import NESTED_ID, STEAM, K


@pytest.fixture(scope="module")
def client(served: ServedCollection) -> TestClient:
    return TestClient(create_app(served))


def _png_bytes(size: tuple[int, int] = (8, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (10 gigapixels)."""
    png = bytearray(_png_bytes((1, 1)))
    ihdr = png.index(b"IHDR")
    png[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(png[ihdr : ihdr + 17]))
    png[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(png)


# info, page, docs ----------------------------------------------------------------


def test_info(client: TestClient, served: ServedCollection) -> None:
    info = client.get("/api/info").json()
    assert info["count"] == served.count == len(served.ids)
    assert info["stored_k"] == K
    assert info["dim"] == 1280 and info["model"] == "effnet-lite0"
    assert info["model_key"].startswith("effnet-lite0__")
    assert info["max_n"] == MAX_N
    assert info["text_search"] is True and info["text_mode"] == "labels"  # effnet: labels
    assert info["featured_from"] == "queries"


def test_page_static_and_docs(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'role="combobox"' in page.text and 'role="listbox"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for route in (
        "/api/items/{item_id}",
        "/api/items/{item_id}/similar",
        "/api/items/{item_id}/image",
        "/api/names",
        "/api/search/image",
        "/api/unique",
        "/api/random",
        "/api/featured",
        "/app_from_id",
        "/similar_apps_from_id",
        "/app_from_name",
        "/similar_apps_from_name",
    ):
        assert route in paths, route


# items ---------------------------------------------------------------------------


def test_item_steam_id(client: TestClient, served: ServedCollection) -> None:
    item = client.get("/api/items/620").json()
    assert item == {
        "id": "620",
        "index": served.row("620"),
        "name": "Portal 2",
        "image_url": "/api/items/620/image",
        "store_url": "https://store.steampowered.com/app/620/",
        "steamdb_url": "https://steamdb.info/app/620/",
        "metadata": {"steam_appid": "620"},
        "banner_text": None,  # no `index --ocr` here
    }


def test_item_file_stem_and_nested_id(client: TestClient) -> None:
    item = client.get("/api/items/a-hat-in-time-0").json()
    assert item["name"] == "A Hat In Time 0"
    assert item["store_url"] is None and item["steamdb_url"] is None
    nested = client.get("/api/items/extra%2Fabzu-0")
    assert nested.status_code == 200 and nested.json()["id"] == NESTED_ID
    assert nested.json()["image_url"] == "/api/items/extra%2Fabzu-0/image"
    assert client.get(f"/api/items/{NESTED_ID}").json()["id"] == NESTED_ID
    assert client.get(f"/api/items/{NESTED_ID}/similar?n=3").json()["query"]["id"] == NESTED_ID
    assert client.get(nested.json()["image_url"]).status_code == 200


def test_unknown_item_is_404_json(client: TestClient) -> None:
    for path in ("/api/items/nope", "/api/items/nope/similar", "/api/items/nope/image"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/json"
        assert "nope" in r.json()["detail"]


# similar -------------------------------------------------------------------------


def test_similar_from_stored_neighbors(client: TestClient, served: ServedCollection) -> None:
    data = client.get("/api/items/620/similar").json()
    assert data["source"] == "neighbors"
    assert data["query"]["id"] == "620"
    results = data["results"]
    assert len(results) == 10
    assert [h["rank"] for h in results] == list(range(1, 11))
    assert "620" not in {h["id"] for h in results}
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)
    row = served.row("620")
    assert served.neighbors is not None
    assert [h["index"] for h in results] == served.neighbors[row, :10].tolist()


def test_similar_beyond_stored_k_is_exact(client: TestClient, served: ServedCollection) -> None:
    stored = client.get("/api/items/abzu-1/similar?n=10").json()["results"]
    exact = client.get("/api/items/abzu-1/similar?n=25").json()
    assert exact["source"] == "exact"
    results = exact["results"]
    assert len(results) == 25 and "abzu-1" not in {h["id"] for h in results}
    assert [h["score"] for h in results] == sorted((h["score"] for h in results), reverse=True)
    assert [h["score"] for h in results[:10]] == pytest.approx(
        [h["score"] for h in stored], abs=2e-3
    )
    everything = client.get(f"/api/items/abzu-1/similar?n={MAX_N}").json()["results"]
    assert len(everything) == served.count - 1  # n beyond the collection: all the others


def test_duplicate_is_the_nearest(client: TestClient) -> None:
    """``extra/abzu-0`` is a copy of ``abzu-0``: each is the other's best match."""
    top = client.get("/api/items/abzu-0/similar?n=1").json()["results"][0]
    assert top["id"] == NESTED_ID and top["score"] > 0.99


@pytest.mark.parametrize("n", ["0", "-3", str(MAX_N + 1), "10000000000000", "ten", "1.5"])
def test_similar_bad_n_is_422(client: TestClient, n: str) -> None:
    r = client.get(f"/api/items/620/similar?n={n}")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "n"]


# names ---------------------------------------------------------------------------


def test_names_prefix_then_word_then_fuzzy(client: TestClient) -> None:
    results = client.get("/api/names?q=port").json()["results"]
    assert [(r["name"], r["match"]) for r in results[:2]] == [
        ("Portal", "prefix"),
        ("Portal 2", "prefix"),
    ]
    words = client.get("/api/names?q=creed").json()["results"]
    assert words and all(r["match"] == "word" for r in words)
    assert all("Creed" in r["name"] for r in words)
    typo = client.get("/api/names?q=portla").json()["results"]
    assert typo[0]["name"] in {"Portal", "Portal 2"} and typo[0]["match"] == "fuzzy"
    assert typo[0]["score"] < 100


def test_names_accepts_ids_and_exact_names(client: TestClient) -> None:
    first = client.get("/api/names?q=570").json()["results"][0]
    assert (first["id"], first["match"], first["name"]) == ("570", "id", "Dota 2")
    assert first["store_url"] == "https://store.steampowered.com/app/570/"
    exact = client.get("/api/names?q=PORTAL").json()["results"][0]
    assert (exact["name"], exact["match"]) == ("Portal", "name")


def test_names_limit_and_no_match(client: TestClient) -> None:
    assert len(client.get("/api/names?q=a&limit=3").json()["results"]) == 3
    assert client.get("/api/names?q=zzqqxxjj").json()["results"] == []


@pytest.mark.parametrize("query", ["", "q=", "q=a&limit=0", "q=a&limit=51", "q=" + "x" * 201])
def test_names_bad_parameters_are_422(client: TestClient, query: str) -> None:
    assert client.get(f"/api/names?{query}").status_code == 422


# image search --------------------------------------------------------------------


def test_search_by_image_finds_the_same_cover(client: TestClient, served_root: Path) -> None:
    with Collection(served_root).catalog() as cat:
        item = cat.get("abzu-1")
        assert item is not None and item.source is not None
        path = Collection(served_root).resolve_source(item.source)
    data = Path(path).read_bytes()
    r = client.post("/api/search/image?n=5", files={"file": ("my cover.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"]["filename"] == "my cover.jpg"
    assert body["query"]["format"] == "JPEG" and body["query"]["width"] == 342
    assert len(body["results"]) == 5
    assert body["results"][0]["id"] == "abzu-1" and body["results"][0]["score"] > 0.99


def test_search_by_image_small_png(client: TestClient) -> None:
    r = client.post("/api/search/image", files={"file": ("red.png", _png_bytes(), "image/png")})
    assert r.status_code == 200 and len(r.json()["results"]) == 10


def test_search_by_image_refuses_non_images(client: TestClient) -> None:
    r = client.post("/api/search/image", files={"file": ("a.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "image" in r.json()["detail"]
    html = b"<!doctype html><html><body>hi</body></html>"
    r = client.post("/api/search/image", files={"file": ("a.png", html, "image/png")})
    assert r.status_code == 422 and "HTML" in r.json()["detail"]
    cut = b"\xff\xd8\xff\xe0xx"
    r = client.post("/api/search/image", files={"file": ("a.jpg", cut, "image/jpeg")})
    assert r.status_code == 422 and "cannot use this image" in r.json()["detail"]


def test_search_by_image_refuses_a_bomb(client: TestClient) -> None:
    r = client.post("/api/search/image", files={"file": ("b.png", _bomb_png(), "image/png")})
    assert r.status_code == 422
    assert "decompression bomb" in r.json()["detail"]


def test_search_by_image_oversized_is_413(client: TestClient) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024 + 10)
    r = client.post("/api/search/image", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_search_by_image_oversized_without_length_is_413(served: ServedCollection) -> None:
    """A chunked body (no Content-Length) is cut off once it passes the cap."""
    small = TestClient(create_app(served, max_upload=1000))
    boundary = "xyzzy"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + b"\0" * 5000
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks():
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    r = small.post(
        "/api/search/image",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413
    assert (
        small.post(
            "/api/search/image", files={"file": ("red.png", _png_bytes(), "image/png")}
        ).status_code
        == 200
    )


def test_search_by_image_bad_requests(client: TestClient) -> None:
    assert client.post("/api/search/image").status_code == 422  # no file
    png = {"file": ("red.png", _png_bytes(), "image/png")}
    assert client.post("/api/search/image?n=0", files=png).status_code == 422
    assert client.post(f"/api/search/image?n={MAX_N + 1}", files=png).status_code == 422
    assert client.get("/api/search/image").status_code == 405


# unique, random, featured ----------------------------------------------------------


def test_unique_pages(client: TestClient, served: ServedCollection) -> None:
    first = client.get("/api/unique?limit=5").json()
    assert first["total"] == served.count and first["offset"] == 0
    assert [h["rank"] for h in first["results"]] == [1, 2, 3, 4, 5]
    second = client.get("/api/unique?offset=5&limit=5").json()
    assert [h["rank"] for h in second["results"]] == [6, 7, 8, 9, 10]
    scores = [h["score"] for h in first["results"] + second["results"]]
    assert scores == sorted(scores)
    everything = client.get("/api/unique?limit=200").json()["results"]
    assert len(everything) == served.count
    assert [h["id"] for h in everything[:10]] == [
        h["id"] for h in first["results"] + second["results"]
    ]
    for h in everything[:3]:
        nearest = client.get(f"/api/items/{h['id']}/similar?n=1").json()["results"][0]
        assert h["nearest"]["id"] == nearest["id"]
        assert h["score"] == pytest.approx(nearest["score"], abs=1e-3)
    # the duplicated cover is among the least unique
    assert {h["id"] for h in everything[-2:]} == {"abzu-0", NESTED_ID}
    assert client.get(f"/api/unique?offset={served.count + 5}").json()["results"] == []


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=201", "offset=x"])
def test_unique_bad_parameters_are_422(client: TestClient, query: str) -> None:
    assert client.get(f"/api/unique?{query}").status_code == 422


def test_random_and_featured(client: TestClient, served: ServedCollection) -> None:
    seen = {client.get("/api/random").json()["id"] for _ in range(20)}
    assert seen <= set(served.ids) and len(seen) > 1
    for _ in range(5):
        assert client.get("/api/random?featured=true").json()["id"] in {"620", "570", "abzu-0"}
    featured = client.get("/api/featured").json()
    assert featured["source"] == "queries"
    assert [i["id"] for i in featured["results"]] == ["620", "570", "abzu-0"]


def test_featured_sample_and_degraded_without_neighbours(served_root: Path, tmp_path: Path) -> None:
    """No query set: an even sample; no match.json: exact search, and unique explains."""
    copy = tmp_path / "coll"
    shutil.copytree(served_root, copy)
    with Collection(copy).catalog() as cat:
        cat.set_queries([], "none", replace=True)
    for path in copy.glob("models/*/match.json"):
        path.unlink()
    client = TestClient(create_app(copy))
    featured = client.get("/api/featured").json()
    assert featured["source"] == "sample" and 0 < len(featured["results"]) <= 24
    assert client.get("/api/info").json()["stored_k"] == 0
    assert client.get("/api/items/620/similar?n=3").json()["source"] == "exact"
    r = client.get("/api/unique")
    assert r.status_code == 409 and "bannermatch match" in r.json()["detail"]


# image files -----------------------------------------------------------------------


def test_image_file_with_caching_headers(client: TestClient, served_root: Path) -> None:
    r = client.get("/api/items/620/image")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(r.content)).size == (342, 482)
    again = client.get("/api/items/620/image", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/items/..%2F..%2F..%2Fetc%2Fpasswd/image",
        "/api/items/%2e%2e/%2e%2e/%2e%2e/etc/passwd/image",
        "/api/items/..%5c..%5ccatalog.sqlite/image",
        "/api/items/%2Fetc%2Fpasswd/image",
        "/api/items//etc/passwd/image",
        "/api/items/catalog.sqlite/image",
        "/api/items/images-in%2F620.jpg/image",
        "/static/..%2Fcatalog.sqlite",
        "/static/%2e%2e/data.py",
    ],
)
def test_image_route_has_no_traversal(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"root:" not in r.content and b"SQLite" not in r.content


def test_missing_image_file_is_404(served_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "coll"
    shutil.copytree(served_root, copy)
    served = ServedCollection.open(copy)
    row = served.row("620")
    assert row is not None
    served.sources[row] = str(tmp_path / "gone.jpg")
    r = TestClient(create_app(served)).get("/api/items/620/image")
    assert r.status_code == 404 and "missing" in r.json()["detail"]


# the original API --------------------------------------------------------------------

LEGACY_KEYS = {
    "index",
    "id",
    "name",
    "steam_store_url",
    "steam_illustration_url",
    "steamdb_url",
    "query_url",
}


def test_legacy_app_from_id(client: TestClient, served: ServedCollection) -> None:
    app = client.get("/app_from_id?id=620").json()
    assert set(app) == LEGACY_KEYS
    assert app["id"] == 620 and app["index"] == served.row("620") and app["name"] == "Portal 2"
    assert app["steam_store_url"] == "https://store.steampowered.com/app/620/"
    assert app["steamdb_url"] == "https://steamdb.info/app/620/"
    assert app["steam_illustration_url"].endswith("/api/items/620/image")
    assert app["query_url"] == "http://testserver/similar_apps_from_id?id=620"
    other = client.get("/app_from_id?id=abzu-1").json()
    assert other["id"] == "abzu-1" and other["steam_store_url"] is None


def test_legacy_similar_apps(client: TestClient, served: ServedCollection) -> None:
    apps = client.get("/similar_apps_from_id?id=620&n=5").json()
    assert len(apps) == 5 and all(set(a) == LEGACY_KEYS for a in apps)
    assert apps[0]["id"] == 620  # the app itself first, as the original API did
    assert served.neighbors is not None
    assert [a["index"] for a in apps[1:]] == served.neighbors[served.row("620"), :4].tolist()
    assert len(client.get("/similar_apps_from_id?id=620").json()) == 10
    capped = client.get("/similar_apps_from_id?id=620&n=100000").json()
    assert len(capped) == min(MAX_N, served.count)  # capped, not refused
    follow = client.get(apps[1]["query_url"]).json()
    assert follow[0]["index"] == apps[1]["index"]


def test_legacy_by_name(client: TestClient) -> None:
    assert client.get("/app_from_name?name=Dota 2").json()["id"] == 570
    assert client.get("/app_from_name?name=dota").json()["id"] == 570
    apps = client.get("/similar_apps_from_name?name=portal 2&n=3").json()
    assert [a["id"] for a in apps][:1] == [620] and len(apps) == 3


# rate limit and CORS ----------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(served: ServedCollection) -> None:
    client = TestClient(create_app(served, rate_limit="3/min"))
    assert [client.get("/api/items/620").status_code for _ in range(3)] == [200] * 3
    r = client.get("/api/items/620/similar")
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 20
    assert "rate limit" in r.json()["detail"]
    assert client.get("/app_from_id?id=620").status_code == 429  # the original API too
    assert client.get("/api/items/620/image").status_code == 200  # image files are not limited
    assert client.get("/").status_code == 200


def test_rate_limit_is_per_client() -> None:
    now = [0.0]
    buckets = TokenBuckets(Rate(2, 60.0), clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(30.0)
    assert buckets.take("b") == 0.0
    now[0] = 30.0
    assert buckets.take("a") == 0.0


def test_rate_parsing_and_defaults() -> None:
    assert Rate.parse("120/min") == Rate(120, 60.0)
    assert Rate.parse("5/s") == Rate(5, 1.0)
    assert Rate.parse("1000/hour") == Rate(1000, 3600.0)
    assert Rate.parse("30") == Rate(30, 60.0)
    assert Rate.parse("0") is None and Rate.parse("off") is None
    with pytest.raises(ValueError):
        Rate.parse("lots")
    assert default_rate("127.0.0.1", None) is None
    assert default_rate("::1", None) is None
    assert default_rate("localhost", None) is None
    assert default_rate("0.0.0.0", None) == Rate(120, 60.0)
    assert default_rate("0.0.0.0", "0") is None
    assert default_rate("127.0.0.1", "10/s") == Rate(10, 1.0)


def test_cors_allow_list(served: ServedCollection) -> None:
    plain = TestClient(create_app(served))
    r = plain.get("/api/info", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in r.headers
    allowed = TestClient(create_app(served, cors=["https://example.org"]))
    r = allowed.get("/api/info", headers={"Origin": "https://example.org"})
    assert r.headers["access-control-allow-origin"] == "https://example.org"
    r = allowed.get("/api/info", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = allowed.options(
        "/api/search/image",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 200


def test_served_collection_loads_aligned_rows(served: ServedCollection) -> None:
    assert len(served.names) == len(served.sources) == len(served.urls) == served.count
    assert isinstance(served.data.embeddings, np.memmap)
    assert isinstance(served.neighbors, np.memmap)
    for steam_id, name in STEAM.items():
        row = served.row(steam_id)
        assert row is not None and served.names[row] == name
        assert served.sources[row] and Path(served.sources[row]).is_file()


def test_serve_cli_refuses_a_bad_rate(cli, served_root: Path) -> None:
    proc = cli("serve", served_root, "--rate-limit", "lots", check=False)
    assert proc.returncode == 1 and "--rate-limit" in proc.stderr
    assert "--cors" in cli("serve", "--help").stdout
