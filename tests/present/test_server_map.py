"""``/api/map`` and ``/api/map.bin``: one point per item, the stored map, paging."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bannermatch.present.maps import MAP_FILE, MAP_MANIFEST, stored_map
from bannermatch.present.server import ServedCollection, create_app
from bannermatch.present.server.maproutes import MAX_MAP_PAGE
from bannermatch.query.match import load_duplicates


@pytest.fixture(scope="module")
def client(served: ServedCollection) -> TestClient:
    return TestClient(create_app(served))


def test_map_has_one_point_per_item_and_is_stored(
    client: TestClient, served: ServedCollection
) -> None:
    for name in (MAP_FILE, MAP_MANIFEST):  # the collection is shared: start without a map
        (served.data.folder / name).unlink(missing_ok=True)
    body = client.get(f"/api/map?limit={MAX_MAP_PAGE}").json()
    assert body["count"] == served.count == len(body["points"])
    assert body["method"] == "umap"
    assert [p["index"] for p in body["points"]] == list(range(served.count))
    assert [p["id"] for p in body["points"]] == served.ids
    assert [p["name"] for p in body["points"]] == served.names
    xy = np.array([[p["x"], p["y"]] for p in body["points"]])
    assert xy.min() >= 0 and xy.max() <= 1 and xy.std(axis=0).min() > 0.05
    stored = stored_map(served.data)
    assert stored is not None and np.allclose(stored, xy, atol=1e-4)


def test_binary_map_matches_the_json(client: TestClient, served: ServedCollection) -> None:
    r = client.get("/api/map.bin")
    assert r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["x-map-count"])
    assert n == served.count and len(r.content) == 16 * n
    xy = np.frombuffer(r.content, "<f4", 2 * n).reshape(n, 2)
    groups = np.frombuffer(r.content, "<i4", n, offset=8 * n)
    unique = np.frombuffer(r.content, "<i4", n, offset=12 * n)
    body = client.get(f"/api/map?limit={MAX_MAP_PAGE}").json()["points"]
    assert np.allclose(xy, [[p["x"], p["y"]] for p in body], atol=1e-4)
    assert [g if g >= 0 else None for g in groups.tolist()] == [p["group"] for p in body]
    assert [u if u >= 0 else None for u in unique.tolist()] == [p["unique_rank"] for p in body]
    dup_groups = load_duplicates(served.data)
    assert (groups >= 0).sum() == sum(len(g) for g in dup_groups)
    first = served.unique_rows()[0]
    assert unique[first] == 1


def test_map_pages_and_bad_parameters(client: TestClient, served: ServedCollection) -> None:
    page = client.get("/api/map?offset=5&limit=7").json()
    assert [p["index"] for p in page["points"]] == list(range(5, 12))
    assert client.get(f"/api/map?offset={served.count}").json()["points"] == []
    for bad in ["offset=-1", "limit=0", f"limit={MAX_MAP_PAGE + 1}", "limit=x"]:
        assert client.get(f"/api/map?{bad}").status_code == 422


def test_neighbours_are_near_on_the_map(client: TestClient, served: ServedCollection) -> None:
    n = served.count
    xy = np.frombuffer(client.get("/api/map.bin").content, "<f4", 2 * n).reshape(n, 2)
    assert served.neighbors is not None
    first = np.asarray(served.neighbors[:, 0], np.int64)
    near = np.linalg.norm(xy - xy[first], axis=1).mean()
    rng = np.random.default_rng(0)
    anyone = np.linalg.norm(xy - xy[rng.permutation(n)], axis=1).mean()
    assert near < 0.6 * anyone  # the map keeps look-alikes together
