"""`similar COLLECTION APPID` for a game outside the collection fetches its banner."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bannermatch.embed.index import index
from bannermatch.query.match import match
from support.steam import Cdn, FakeServer, closed_port_url


@pytest.fixture(scope="module")
def coll(tmp_path_factory, covers_dir: Path, model) -> Path:
    src = tmp_path_factory.mktemp("covers")
    for path in sorted((covers_dir / "images").glob("*.jpg"))[:24]:
        shutil.copy(path, src / path.name)
    out = tmp_path_factory.mktemp("coll")
    index(src, out, model, progress=False)
    match(out, k=5, progress=False)
    return out


def _steam(url: str) -> tuple[str, ...]:
    """Options pointing the CDN and the store API at one stand-in."""
    return ("--cdn-url", url, "--steam-api-url", url)


def _banner_of(path: Path) -> bytes:
    """A re-encoded, resized copy of an indexed cover, as the CDN would serve it."""
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((300, 450)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def test_app_outside_the_collection_is_fetched_and_matched(coll, covers_dir, cli_here):
    cover = sorted((covers_dir / "images").glob("*.jpg"))[7]
    with FakeServer(Cdn({"4242": _banner_of(cover)})) as cdn:
        out = json.loads(
            cli_here("similar", coll, "4242", "-k", "3", *_steam(cdn.url), "--json").stdout
        )
    assert out["query"]["kind"] == "steam-app"
    assert out["results"][0]["id"] == cover.stem
    assert out["results"][0]["score"] > 0.9


def test_missing_banner_and_unreachable_cdn_are_one_line_errors(coll, cli_here):
    with FakeServer(Cdn({})) as cdn:
        proc = cli_here("similar", coll, "4243", *_steam(cdn.url), check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "app 4243 is not in the collection" in proc.stderr and "no library banner" in proc.stderr
    proc = cli_here("similar", coll, "4244", *_steam(closed_port_url()), check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "cannot reach the Steam CDN" in proc.stderr
