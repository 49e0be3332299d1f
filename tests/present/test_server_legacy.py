"""Every route of the original API: its JSON shape (plain lists and values), its variants
(``_x``, ``_y``, ``_xy``, ``mirror=1``, ``flip=1``) and its HTML pages."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from bannermatch.present.server import ServedCollection, create_app
from bannermatch.present.server.api import MAX_N

LEGACY_KEYS = {
    "index",
    "id",
    "name",
    "steam_store_url",
    "steam_illustration_url",
    "steamdb_url",
    "query_url",
}


@pytest.fixture(scope="module")
def client(served: ServedCollection) -> TestClient:
    return TestClient(create_app(served))


def test_lists_of_every_index_id_and_name(client: TestClient, served: ServedCollection) -> None:
    assert client.get("/index").json() == list(range(served.count))
    ids = client.get("/id").json()
    assert len(ids) == served.count and 620 in ids and "abzu-1" in ids  # ints for Steam apps
    assert ids[served.row("620")] == 620
    assert client.get("/name").json() == served.names


def test_single_values_from_ids_and_names(client: TestClient, served: ServedCollection) -> None:
    row = served.row("620")
    assert client.get("/index_from_id?id=620").json() == row
    assert client.get("/name_from_id?id=620").json() == "Portal 2"
    assert client.get("/index_from_name?name=portal 2").json() == row
    assert client.get("/id_from_name?name=Portal 2").json() == 620
    assert client.get("/id_from_name?name=abzu-1").json() == "abzu-1"
    app = client.get(f"/app?index={row}").json()
    assert set(app) == LEGACY_KEYS and app["id"] == 620 and app["index"] == row


def test_matches_and_similar_apps_by_index(client: TestClient, served: ServedCollection) -> None:
    row = served.row("620")
    assert served.neighbors is not None
    stored = served.neighbors[row, :4].tolist()
    assert client.get(f"/matches?index={row}&n=5").json() == [row, *stored]
    apps = client.get(f"/similar_apps?index={row}&n=5").json()
    assert [a["index"] for a in apps] == [row, *stored]
    assert all(set(a) == LEGACY_KEYS for a in apps)
    assert len(client.get(f"/similar_apps?index={row}&n=100000").json()) == min(MAX_N, served.count)


@pytest.mark.parametrize("suffix", ["_x", "_y", "_xy"])
def test_transformed_variants_embed_the_turned_query(
    client: TestClient, served: ServedCollection, suffix: str
) -> None:
    row = served.row("620")
    plain = client.get(f"/matches?index={row}&n=6").json()
    turned = client.get(f"/matches{suffix}?index={row}&n=6").json()
    assert turned[0] == row and len(turned) == 6 and row not in turned[1:]
    flags = {"_x": "mirror=1", "_y": "flip=1", "_xy": "mirror=1&flip=1"}[suffix]
    assert client.get(f"/matches?index={row}&n=6&{flags}").json() == turned
    by_id = client.get(f"/similar_apps_from_id{suffix}?id=620&n=6").json()
    assert [a["index"] for a in by_id] == turned
    by_name = client.get(f"/similar_apps_from_name{suffix}?name=Portal 2&n=6").json()
    assert [a["index"] for a in by_name] == turned
    if suffix == "_y":  # upside down, the banner is another picture: the list changes
        assert turned != plain


class Links(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "img" and a.get("src"):
            self.images.append(str(a["src"]))


def test_render_and_store_pages(client: TestClient, served: ServedCollection) -> None:
    page = client.get("/render/620/4")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = Links(page.text)
    assert len(links.images) == 4 and links.images[0] == "/api/items/620/image"
    assert all(re.fullmatch(r"/render/[^/]+/4", h) for h in links.hrefs[:4])
    for image in links.images:
        assert client.get(image).status_code == 200
    store = Links(client.get("/store/620/4").text)
    steam = [h for h in store.hrefs if "store.steampowered.com" in h]
    assert store.hrefs[0] == "https://store.steampowered.com/app/620/" and steam
    allowed = ("https://store.steampowered.com/app/", "/store")
    assert all(h.startswith(allowed) for h in store.hrefs)
    mirrored = Links(client.get("/render_x/620/4").text)
    assert all(h.startswith("/render_x/") for h in mirrored.hrefs[:-1])
    assert mirrored.hrefs[-1] == "/render_x"  # another random banner
    assert "mirrored" in client.get("/render_x/620/4").text
    assert client.get("/render/620").status_code == 200  # n defaults
    random = client.get("/render")  # no id: a random app
    assert random.status_code == 200 and len(Links(random.text).images) == 10


@pytest.mark.parametrize(
    "path",
    [
        "/app?index=999999",
        "/matches?index=999999",
        "/similar_apps?index=999999",
        "/index_from_id?id=nope",
        "/name_from_id?id=nope",
        "/index_from_name?name=zzqqxxjj",
        "/id_from_name?name=zzqqxxjj",
        "/render/nope/3",
        "/store_xy/nope",
        "/app_from_id?id=999999999",
        "/similar_apps_from_id?id=nope",
        "/app_from_name?name=zzqqxxjj",
        "/similar_apps_from_name?name=zzqqxxjj",
    ],
)
def test_unknown_is_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and isinstance(r.json()["detail"], str)


@pytest.mark.parametrize(
    "path",
    [
        "/app",
        "/app?index=-1",
        "/matches?index=0&n=0",
        "/matches_x?index=0&mirror=2",
        "/render/620/0",
        "/app_from_id",
        "/app_from_id?id=",
        "/similar_apps_from_id?id=620&n=0",
        "/similar_apps_from_id?id=620&n=x",
        "/app_from_name",
        "/similar_apps_from_name?name=portal&n=-1",
    ],
)
def test_bad_parameters_are_422(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 422
