"""``steam catalog`` and ``steam download`` against a stand-in of Steam as it is today.

:class:`steam_fakes.SteamToday` serves the store API (``IStoreBrowseService/GetItems``),
art at hashed paths only the API names, legacy paths that 404 or serve the previous
art, ``ISteamApps/GetAppList/v2`` gone, 429s and 5xx from the API, and art that
changes between two runs. Everything goes through the CLI.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bannermatch.store.catalog import Catalog, Item
from support.steam import FakeServer, SteamToday, closed_port_url, make_jpeg, steam_env

PER_KIND = 4


def _catalogue(coll: Path, ids: list[str], name: str = "") -> None:
    with Catalog(coll / "catalog.sqlite") as cat:
        cat.upsert(Item(i, name) for i in ids)


def _collection_of(steam: SteamToday, tmp_path: Path) -> Path:
    """A collection whose catalogue lists every app of ``steam``, nameless."""
    coll = tmp_path / "coll"
    _catalogue(coll, list(steam.apps))
    return coll


def _rows(coll: Path) -> dict[str, Item]:
    with Catalog(coll / "catalog.sqlite") as cat:
        return {it.id: it for it in cat.items()}


def _download(cli, coll: Path, url: str, *args: object, check: bool = True, **env: str):
    return cli(
        "steam", "download", coll, "--json", "-q", "--backoff", "0.05", *args,
        env=steam_env(url, **env), check=check,
    )  # fmt: skip


def _right_stale_wrong(steam: SteamToday, coll: Path) -> tuple[int, int, int]:
    """Apps whose outcome is right, stale (old art) and wrong (other bytes or status)."""
    right = stale = wrong = 0
    rows = _rows(coll)
    for appid, app in steam.apps.items():
        row = rows[appid]
        if not app.art:
            right += row.status == "missing"
            wrong += row.status != "missing"
            continue
        data = (coll / row.source).read_bytes() if row.status == "ok" and row.source else b""
        right += data == app.art
        stale += data != app.art and bool(data) and data == app.old_art
        wrong += data != app.art and not (data and data == app.old_art)
    return right, stale, wrong


def test_every_app_ends_with_its_current_art_or_missing(cli, tmp_path):
    steam = SteamToday.mixed(PER_KIND)
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        out = json.loads(_download(cli, coll, server.url).stdout)
    assert _right_stale_wrong(steam, coll) == (len(steam.apps), 0, 0)
    assert (out["ok"], out["missing"], out["bad"]) == (3 * PER_KIND, 2 * PER_KIND, 0)
    assert out["api_calls"] == 1 and not out["legacy"]
    rows = _rows(coll)
    for appid, app in steam.apps.items():
        row = rows[appid]
        assert row.name == ("" if app.kind == "unknown" else app.name)  # named by the store
        if app.kind == "unknown":
            assert row.reason == "not on the Steam store"
        elif app.kind == "nobanner":
            assert row.reason == "no library art on the store"
        else:
            assert row.url is not None and "/store_item_assets/steam/apps/" in row.url
            assert f"t={app.stamp}" in row.url and row.reason is None
        if app.kind == "hashed":
            assert app.hash in (row.url or "")
    # nothing was asked of the legacy paths, and the app list that Steam removed is never used
    assert not any(s.path.startswith("/steam/apps/") for s in server.seen)


def test_changed_art_is_downloaded_again_and_embedded_again(cli, tmp_path):
    steam = SteamToday.mixed(2)
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        _download(cli, coll, server.url)
        cli("index", coll, "--out", coll, "-q")
        before = _embeddings(coll)
        changed = [a for a, app in steam.apps.items() if app.kind in ("legacy", "hashed")][:2]
        for n, appid in enumerate(changed):
            steam.update_art(appid, make_jpeg(500 + n))
        # a plain rerun within a week asks nothing and changes nothing
        calls = steam.api_calls
        quiet = json.loads(_download(cli, coll, server.url).stdout)
        assert steam.api_calls == calls and quiet["planned"] == 0 and quiet["done_before"] == 6
        _age_art_checks(coll, days=8)
        out = json.loads(_download(cli, coll, server.url).stdout)
        cli("index", coll, "--out", coll, "-q")
    assert (out["rechecked"], out["updated"], out["unchanged"]) == (6, 2, 4)
    assert out["planned"] == 2 and out["ok"] == 2
    assert _right_stale_wrong(steam, coll) == (len(steam.apps), 0, 0)
    after = _embeddings(coll)
    moved = {i for i in after if not np.array_equal(after[i], before[i])}
    assert moved == set(changed)


def _embeddings(coll: Path) -> dict[str, np.ndarray]:
    (folder,) = (coll / "models").iterdir()
    ids = json.loads((folder / "items.json").read_text())
    vectors = np.load(folder / "embeddings.npy")
    return dict(zip(ids, vectors, strict=True))


def _age_art_checks(coll: Path, days: float) -> None:
    """Move the store checks ``days`` into the past (as if the collection were that old)."""
    db = sqlite3.connect(coll / "catalog.sqlite")
    with db:
        db.execute("UPDATE steam_art SET checked = checked - ?", (days * 86400,))
    db.close()


def test_refresh_after_zero_checks_every_run(cli, tmp_path):
    steam = SteamToday.mixed(1)
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        _download(cli, coll, server.url)
        steam.update_art("12", make_jpeg(77))  # the legacy app: its art is replaced
        out = json.loads(_download(cli, coll, server.url, "--refresh-after", "0").stdout)
    assert (out["rechecked"], out["updated"]) == (3, 1)
    assert (coll / _rows(coll)["12"].source).read_bytes() == make_jpeg(77)
    assert _right_stale_wrong(steam, coll) == (len(steam.apps), 0, 0)


def test_api_429_and_5xx_are_retried(cli, tmp_path):
    steam = SteamToday.mixed(1)
    steam.api_faults = ["429", "503", "500"]
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        out = json.loads(_download(cli, coll, server.url).stdout)
        gets = [s for s in server.seen if "GetItems" in s.path]
    assert len(gets) == 4 and out["api_calls"] == 1
    assert gets[1].time - gets[0].time >= 0.3  # Retry-After honoured
    assert _right_stale_wrong(steam, coll) == (len(steam.apps), 0, 0)


def test_unreachable_api_falls_back_to_legacy_urls_and_says_so(cli, tmp_path):
    steam = SteamToday.mixed(2)
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        proc = _download(cli, coll, server.url, "--steam-api-url", closed_port_url())
    out = json.loads(proc.stdout)
    assert out["legacy"] and "cannot reach the Steam Web API" in out["api_error"]
    rows = _rows(coll)
    for appid, app in steam.apps.items():
        if app.kind in ("legacy", "replaced"):  # replaced: the legacy URL serves the old art
            assert rows[appid].status == "ok"
            assert rows[appid].reason == "legacy URL (the store API could not be reached)"
        else:
            assert rows[appid].status == "missing"
    right, stale, _ = _right_stale_wrong(steam, coll)
    assert stale == 2 and right == len(steam.apps) - 4


def test_api_answering_html_is_one_line(cli, tmp_path):
    steam = SteamToday.mixed(1)
    steam.api_faults = ["html"]
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        proc = _download(cli, coll, server.url, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "sent no store items" in proc.stderr and "--steam-api-url" in proc.stderr
    assert {r.status for r in _rows(coll).values()} == {"pending"}


@pytest.mark.parametrize("what", ["html", "404"])
def test_a_wrong_cdn_stops_the_run_and_marks_nothing(cli, tmp_path, what):
    steam = SteamToday.mixed(10)  # 50 apps, 30 with art
    coll = _collection_of(steam, tmp_path)
    wrong = SteamToday({}) if what == "404" else SteamToday({}, html_cdn=True)
    with FakeServer(steam) as api, FakeServer(wrong) as cdn:
        proc = cli(
            "steam", "download", coll, "-q", "--concurrency", "4", "--backoff", "0.05",
            "--retries", "1",  # a game counts once its tries are spent: few, for speed
            env=steam_env(cdn.url, BANNERMATCH_STEAM_API_URL=api.url), check=False,
        )  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "127.0.0.1" in proc.stderr and "--cdn-url" in proc.stderr
    assert ("answered 404" if what == "404" else "not an image") in proc.stderr
    statuses = {r.status for r in _rows(coll).values() if steam.apps[r.id].art}
    assert statuses == {"pending"}


def test_language_picks_localised_art_else_english(cli, tmp_path):
    steam = SteamToday.mixed(1)
    french = make_jpeg(4242)
    steam.apps["10"].localized["french"] = french
    steam.update_art("10", steam.apps["10"].art)  # publish the localised file
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        _download(cli, coll, server.url, "--language", "french")
        proc = _download(cli, coll, server.url, "--language", "klingon", check=False)
    rows = _rows(coll)
    assert (coll / rows["10"].source).read_bytes() == french
    assert (coll / rows["11"].source).read_bytes() == steam.apps["11"].art
    assert proc.returncode == 2 and "klingon" in proc.stderr


def test_catalogue_uses_the_store_service_with_a_key_never_getapplist_v2(cli, tmp_path):
    steam = SteamToday.mixed(2)
    coll = tmp_path / "coll"
    with FakeServer(steam) as server:
        env = steam_env(server.url, STEAM_API_KEY=steam.key)
        out = json.loads(cli("steam", "catalog", coll, "--no-top", "--json", "-q", env=env).stdout)
    assert out["source"] == "webapi" and out["fetched"] == len(steam.apps)
    paths = {s.path for s in server.seen}
    assert paths == {"/IStoreService/GetAppList/v1/"}


def test_on_demand_banner_is_the_current_art(tmp_path):
    from bannermatch.acquire.steam import BannerNotFound, fetch_banner

    steam = SteamToday.mixed(1)
    with FakeServer(steam) as server:
        assert fetch_banner("10", server.url, api_url=server.url) == steam.apps["10"].art
        assert fetch_banner("11", server.url, api_url=server.url) == steam.apps["11"].art
        with pytest.raises(BannerNotFound, match="no library art"):
            fetch_banner("13", server.url, api_url=server.url)
        with pytest.raises(BannerNotFound, match="not on the Steam store"):
            fetch_banner("14", server.url, api_url=server.url)
    asked = {s.path.split("/")[1] for s in server.seen}
    assert asked == {"IStoreBrowseService", "store_item_assets"}


def test_report_links_the_art_the_store_named(cli, tmp_path):
    steam = SteamToday.mixed(2)
    coll = _collection_of(steam, tmp_path)
    with FakeServer(steam) as server:
        _download(cli, coll, server.url)
    cli("index", coll, "--out", coll, "-q")
    cli("match", coll, "-k", "3", "-q")
    cli("report", coll, "-q")
    bb = (coll / "report" / "similar.bbcode.txt").read_text("utf-8")
    hashed = steam.apps["10"]
    assert f"/store_item_assets/steam/apps/10/{hashed.hash}/library_600x900_2x.jpg" in bb
    assert "[url=https://store.steampowered.com/app/10/]" in bb
