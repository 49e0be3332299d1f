"""The query banner mirrored or flipped (``similar --mirror/--flip``, ``mirror=1``/``flip=1`` on
the API), embedded on the fly from the item's own image, over the small served collection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from bannermatch.present.server import ServedCollection, create_app
from bannermatch.query.similar import similar


@pytest.fixture(scope="module")
def client(served: ServedCollection) -> TestClient:
    return TestClient(create_app(served))


def _ids(result: dict) -> list[str]:
    return [h["id"] for h in result["results"]]


def test_cli_mirror_flip_embed_the_turned_item(cli_here, served_root: Path) -> None:  # type: ignore[no-untyped-def]
    plain = json.loads(cli_here("similar", served_root, "620", "-k", "5", "--json").stdout)
    out = json.loads(cli_here("similar", served_root, "620", "-k", "5", "--flip", "--json").stdout)
    assert out["query"]["transform"] == "flip" and out["query"]["id"] == "620"
    assert len(out["results"]) == 5 and "620" not in _ids(out)
    assert _ids(out) != _ids(plain)  # upside down, the banner is another picture
    both = cli_here("similar", served_root, "Portal 2", "-k", "3", "--mirror", "--flip").stdout
    assert "mirrored and flipped" in both


def test_cli_matches_the_api(cli_here, client: TestClient, served_root: Path) -> None:  # type: ignore[no-untyped-def]
    for flags, query in ((["--mirror"], "mirror=1"), (["--mirror", "--flip"], "mirror=1&flip=1")):
        out = json.loads(
            cli_here("similar", served_root, "620", "-k", "6", *flags, "--json").stdout
        )
        api = client.get(f"/api/items/620/similar?n=6&{query}").json()
        assert api["source"] == "transformed" and api["query"]["id"] == "620"
        scores = [h["score"] for h in api["results"]]
        assert scores == pytest.approx([h["score"] for h in out["results"]], abs=1e-2)
        # the same hits; two near ties may swap: the CLI resamples the turned image with
        # Pillow, the server with PyTorch's kernels (within 2 levels), which int8 rounds
        for a, b in zip(api["results"], out["results"], strict=True):
            assert a["id"] == b["id"] or abs(a["score"] - b["score"]) < 1e-2, (a, b)
        assert _ids(api)[0] == _ids(out)[0]
        legacy = client.get(f"/matches?index={api['query']['index']}&n=7&{query}").json()
        assert [client.get(f"/app?index={r}").json()["id"] for r in legacy[1:]] == [
            int(i) if i.isdigit() else i for i in _ids(api)
        ]


def test_mirrored_copy_is_found_by_the_mirrored_query(served_root: Path, tmp_path: Path) -> None:
    """A mirrored copy of a banner, queried mirrored back, is the banner itself again."""
    from bannermatch.store.collection import Collection

    with Collection(served_root).catalog() as cat:
        item = next(i for i in cat.items() if i.id == "abzu-0")
    source = Collection(served_root).resolve_source(str(item.source))
    copy = tmp_path / "abzu-mirrored.png"
    ImageOps.mirror(Image.open(source).convert("RGB")).save(copy)
    plain = similar(served_root, str(copy), k=3)
    turned = similar(served_root, str(copy), k=3, mirror=True)
    assert turned.hits[0].id in {"abzu-0", "extra/abzu-0"} and turned.hits[0].score > 0.99
    assert turned.hits[0].score > plain.hits[0].score
    assert turned.query.describe().endswith("mirrored")


def test_api_flags_are_validated(client: TestClient) -> None:
    for bad in ("mirror=2", "flip=-1", "mirror=yes"):
        response = client.get(f"/api/items/620/similar?{bad}")
        assert response.status_code == 422, bad
    missing = client.get("/api/items/nope/similar?mirror=1")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_item_without_a_readable_image(cli_here, served_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A moved-away image file: one line naming the item, not a traceback; the API a 404."""
    import shutil

    from bannermatch.store.collection import Collection

    root = tmp_path / "coll"
    shutil.copytree(served_root, root)
    with Collection(root).catalog() as cat:  # the image moved away (in this copy only:
        item = next(i for i in cat.items() if i.id == "620")  # the session shares the file)
        item.source = str(tmp_path / "moved-away" / "620.jpg")
        cat.upsert([item])
    proc = cli_here("similar", root, "620", "--mirror", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "620" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    api = TestClient(create_app(ServedCollection.open(root)))
    response = api.get("/api/items/620/similar?flip=1")
    assert response.status_code == 404 and "620" in response.json()["detail"]
